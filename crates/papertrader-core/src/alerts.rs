//! Alerts: rules over prices, volumes, drawdowns and feed staleness. An alert
//! is an output ([`crate::domain::AlertMsg`]) of the same step that turns an
//! input message into the engine's outputs ([`crate::step`]), in every mode;
//! the webhook that forwards them is the root package's (`alerts::post_webhook`).
//!
//! [`Alerts`] is pure and deterministic: fed with input events and P&L
//! snapshots, it returns the alerts they fire, each once per crossing of its
//! condition (the rule re-arms when the condition clears). Alert ids derive from
//! the rule, the symbol or strategy, and the origin of the event that fired it.
//! Only `stale_feed` looks at the wall clock, and only through the `now` its
//! caller passes to [`Alerts::check_stale`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rust_decimal::prelude::ToPrimitive;

use crate::config::{AlertRule, AlertsConfig, ZscoreField};
use crate::domain::{AlertMsg, PnlMsg};
use crate::domain::{MarketEvent, Origin, Ts};
use crate::expr::{Input, KeyedError, PriceInput, Program, Ty};
use crate::indicators::ZScore;

enum State {
    Breakout {
        period: usize,
        window: BTreeMap<String, VecDeque<f64>>,
    },
    Zscore {
        volume: bool,
        period: usize,
        threshold: f64,
        z: BTreeMap<String, ZScore>,
    },
    Drawdown {
        strategies: Vec<String>,
        level: f64,
    },
    StaleFeed {
        after: Duration,
        /// symbol -> (wall time of its last tick, event time, origin), once seen.
        last: BTreeMap<String, (Duration, Ts, String)>,
    },
    Expr {
        when: String,
        /// symbol -> its program and the condition's node, built on its first event.
        programs: BTreeMap<String, (Program, usize)>,
    },
    Arbitrage(Arbitrage),
}

/// One leg's latest quote: bid and ask (the trade price where the tick
/// carries none) at event time `ts`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quote {
    bid: f64,
    ask: f64,
    ts: Ts,
}

/// A cross-venue pair: the same instrument under two symbols.
struct Arbitrage {
    legs: [String; 2],
    /// Taker fees as fractions (10 bp = 0.001), per leg.
    fees: [f64; 2],
    threshold_bps: f64,
    max_age: Option<Ts>,
    last: [Option<Quote>; 2],
}

/// The better way round of a pair at one moment: sell `sell` at its bid,
/// buy the other at its ask.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    /// 0: sell the first symbol (it is above the second); 1: sell the second.
    sell: usize,
    /// (bid of the sold leg x (1 - its fee)) / (ask of the bought leg x
    /// (1 + its fee)) - 1, in basis points.
    net_bps: f64,
}

impl Arbitrage {
    /// The better direction's net spread, once both legs are quoted (and,
    /// with `max_age`, neither quote is older than it at `now`).
    fn spread(&self, now: Ts) -> Option<Spread> {
        let (Some(a), Some(b)) = (self.last[0], self.last[1]) else {
            return None;
        };
        if let Some(age) = self.max_age {
            if now - a.ts > age || now - b.ts > age {
                return None;
            }
        }
        let [fa, fb] = self.fees;
        let net = |sold: Quote, f_sold: f64, bought: Quote, f_bought: f64| {
            (sold.bid * (1.0 - f_sold) / (bought.ask * (1.0 + f_bought)) - 1.0) * 1e4
        };
        let first = net(a, fa, b, fb);
        let second = net(b, fb, a, fa);
        Some(if first >= second {
            Spread {
                sell: 0,
                net_bps: first,
            }
        } else {
            Spread {
                sell: 1,
                net_bps: second,
            }
        })
    }
}

/// Compile an `expr` alert's condition (no `model(...)`: alerts load no models).
///
/// # Errors
/// As a strategy condition's, under the key `when`.
pub fn compile_when(when: &str) -> Result<(Program, usize), KeyedError> {
    let (params, lets) = (BTreeMap::new(), BTreeMap::new());
    let mut no_models = |p: &str| {
        Err(crate::model::ModelError {
            file: p.to_string(),
            problem: "alert rules cannot score models".into(),
            fix: "use model(...) in a strategy's condition".into(),
        })
    };
    let mut b = crate::expr::program::Builder::new(&params, &lets, &mut no_models);
    let root = b.add("when", when, Ty::Bool)?;
    Ok((b.finish(), root))
}

struct Rule {
    name: String,
    symbols: Vec<String>,
    state: State,
    /// Subjects whose condition holds now (fired, not re-armed yet).
    active: BTreeMap<String, bool>,
}

impl Rule {
    fn watches(&self, symbol: &str) -> bool {
        self.symbols.iter().any(|s| s == symbol)
    }

    /// Record the condition of `subject`; true when it just became true.
    fn crossed(&mut self, subject: &str, holds: bool) -> bool {
        let was = self
            .active
            .insert(subject.to_string(), holds)
            .unwrap_or(false);
        holds && !was
    }
}

/// The alert rules of a run and their state.
pub struct Alerts {
    rules: Vec<Rule>,
}

fn origin_id(o: &Origin) -> String {
    format!("{}-{}-{}", o.topic, o.partition, o.offset)
}

impl Alerts {
    /// Build the rules of `[alerts]` (validated when the config was loaded).
    pub fn new(cfg: &AlertsConfig) -> Self {
        let rules = cfg
            .rules
            .iter()
            .map(|r| {
                let (symbols, state) = match r {
                    AlertRule::Breakout {
                        symbols, period, ..
                    } => (
                        symbols.clone(),
                        State::Breakout {
                            period: *period,
                            window: BTreeMap::new(),
                        },
                    ),
                    AlertRule::Zscore {
                        symbols,
                        field,
                        period,
                        threshold,
                        ..
                    } => (
                        symbols.clone(),
                        State::Zscore {
                            volume: *field == ZscoreField::Volume,
                            period: *period,
                            threshold: *threshold,
                            z: BTreeMap::new(),
                        },
                    ),
                    AlertRule::Drawdown {
                        strategies, level, ..
                    } => (
                        Vec::new(),
                        State::Drawdown {
                            strategies: strategies.clone(),
                            level: *level,
                        },
                    ),
                    AlertRule::Expr { symbols, when, .. } => (
                        symbols.clone(),
                        State::Expr {
                            when: when.clone(),
                            programs: BTreeMap::new(),
                        },
                    ),
                    AlertRule::Arbitrage {
                        symbols,
                        threshold_bps,
                        fees_bps,
                        max_age,
                        ..
                    } => (
                        symbols.clone(),
                        State::Arbitrage(Arbitrage {
                            legs: [symbols[0].clone(), symbols[1].clone()],
                            fees: [0, 1].map(|i| fees_bps.get(i).copied().unwrap_or(0.0) / 1e4),
                            threshold_bps: *threshold_bps,
                            max_age: max_age.map(|m| m.nanos()),
                            last: [None, None],
                        }),
                    ),
                    AlertRule::StaleFeed { symbols, after, .. } => (
                        symbols.clone(),
                        State::StaleFeed {
                            after: after.to_std(),
                            last: BTreeMap::new(),
                        },
                    ),
                };
                Rule {
                    name: r.name().to_string(),
                    symbols,
                    state,
                    active: BTreeMap::new(),
                }
            })
            .collect();
        Alerts { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True when a `stale_feed` rule needs [`Alerts::check_stale`] called on a timer.
    pub fn has_stale_rules(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.state, State::StaleFeed { .. }))
    }

    /// Feed an admitted input event received at wall time `now` (time since any
    /// fixed instant; only `stale_feed` uses it). Appends the alerts it fires.
    pub fn on_event(
        &mut self,
        ev: &MarketEvent,
        origin: &Origin,
        now: Duration,
        out: &mut Vec<AlertMsg>,
    ) {
        self.on_expr_event(ev, origin, out);
        let MarketEvent::Tick(t) = ev else { return };
        let (Some(price), Some(size)) = (t.price.to_f64(), t.size.to_f64()) else {
            return;
        };
        self.on_arbitrage_tick(t, price, origin, out);
        for rule in &mut self.rules {
            if !rule.watches(&t.symbol) {
                continue;
            }
            let subject = t.symbol.as_str();
            let fired = match &mut rule.state {
                State::Breakout { period, window } => {
                    let w = window.entry(t.symbol.to_string()).or_default();
                    let verdict = if w.len() == *period {
                        let hi = w.iter().copied().fold(f64::MIN, f64::max);
                        let lo = w.iter().copied().fold(f64::MAX, f64::min);
                        if price > hi {
                            Some(("above", hi))
                        } else if price < lo {
                            Some(("below", lo))
                        } else {
                            None
                        }
                    } else {
                        None
                    };
                    w.push_back(price);
                    if w.len() > *period {
                        w.pop_front();
                    }
                    verdict.map(|(dir, bound)| {
                        (
                            dir,
                            price,
                            bound,
                            format!(
                            "{subject} at {price} broke {dir} the {period}-tick range ({bound})"
                        ),
                        )
                    })
                }
                State::Zscore {
                    volume,
                    period,
                    threshold,
                    z,
                } => {
                    let x = if *volume { size } else { price };
                    let field = if *volume { "volume" } else { "price" };
                    let zs = z
                        .entry(t.symbol.to_string())
                        .or_insert_with(|| ZScore::new(*period))
                        .update(x);
                    zs.filter(|v| v.abs() > *threshold).map(|v| {
                        let dir = if v > 0.0 { "above" } else { "below" };
                        (dir, v, *threshold, format!(
                            "{subject} {field} z-score {v:.2} over {period} events beyond {threshold}"
                        ))
                    })
                }
                State::StaleFeed { last, .. } => {
                    last.insert(t.symbol.to_string(), (now, t.ts, origin_id(origin)));
                    None
                }
                State::Drawdown { .. } | State::Expr { .. } | State::Arbitrage(_) => continue,
            };
            // Above and below are separate conditions: a jump from one to the
            // other is a new crossing.
            let dir = fired.as_ref().map(|f| f.0);
            let up = rule.crossed(&format!("{subject}:above"), dir == Some("above"));
            let down = rule.crossed(&format!("{subject}:below"), dir == Some("below"));
            let crossed = up || down;
            if let (true, Some((direction, value, threshold, message))) = (crossed, fired) {
                out.push(AlertMsg {
                    alert_id: format!("alert:{}:{}:{}", rule.name, subject, origin_id(origin)),
                    rule: rule.name.clone(),
                    kind: kind_of(&rule.state),
                    subject: subject.to_string(),
                    ts: t.ts,
                    direction,
                    value,
                    threshold,
                    message,
                });
            }
        }
    }

    /// The `expr` rules: each symbol's program sees its ticks and sentiment
    /// readings; an alert when the condition becomes true, with the values of
    /// the series and indicators in it.
    fn on_expr_event(&mut self, ev: &MarketEvent, origin: &Origin, out: &mut Vec<AlertMsg>) {
        let (symbol, ts, input) = match ev {
            MarketEvent::Tick(t) => {
                let price = t.price.to_f64().unwrap_or(f64::NAN);
                let f = |d: Option<rust_decimal::Decimal>| {
                    d.and_then(|d| d.to_f64()).unwrap_or(f64::NAN)
                };
                let p = PriceInput {
                    ts: t.ts,
                    open: price,
                    high: price,
                    low: price,
                    close: price,
                    volume: t.size.to_f64().unwrap_or(f64::NAN),
                    bid: f(t.bid),
                    ask: f(t.ask),
                };
                (&t.symbol, t.ts, Input::Price(p))
            }
            MarketEvent::Sentiment(s) => (
                &s.symbol,
                s.ts,
                Input::Sentiment {
                    ts: s.ts,
                    score: s.score,
                },
            ),
            _ => return,
        };
        for rule in &mut self.rules {
            if !rule.watches(symbol) {
                continue;
            }
            let State::Expr { when, programs } = &mut rule.state else {
                continue;
            };
            let (program, root) = programs
                .entry(symbol.to_string())
                .or_insert_with(|| compile_when(when).expect("checked when the config loaded"));
            program.update(&input);
            let holds = program.holds(*root);
            // As `Rule::crossed`, on the field: `program` borrows the state.
            let was = rule
                .active
                .insert(symbol.to_string(), holds)
                .unwrap_or(false);
            if !holds || was {
                continue;
            }
            let values: Vec<String> = program
                .inputs_of(*root)
                .into_iter()
                .map(|n| format!("{} = {}", program.name(n), program.value(n)))
                .collect();
            let message = format!("{symbol}: {when} ({})", values.join(", "));
            out.push(AlertMsg {
                alert_id: format!("alert:{}:{}:{}", rule.name, symbol, origin_id(origin)),
                rule: rule.name.clone(),
                kind: "expr",
                subject: symbol.to_string(),
                ts,
                direction: "true",
                value: 1.0,
                threshold: 0.0,
                message,
            });
        }
    }

    /// The `arbitrage` rules: the tick updates its leg's quote; an alert when
    /// the pair's net spread rises above the threshold, once per crossing and
    /// direction.
    fn on_arbitrage_tick(
        &mut self,
        t: &crate::domain::Tick,
        price: f64,
        origin: &Origin,
        out: &mut Vec<AlertMsg>,
    ) {
        let side = |d: Option<rust_decimal::Decimal>| {
            d.and_then(|d| d.to_f64())
                .filter(|x| *x > 0.0)
                .unwrap_or(price)
        };
        let quote = Quote {
            bid: side(t.bid),
            ask: side(t.ask),
            ts: t.ts,
        };
        for rule in &mut self.rules {
            let State::Arbitrage(arb) = &mut rule.state else {
                continue;
            };
            let Some(leg) = arb.legs.iter().position(|l| *l == t.symbol) else {
                continue;
            };
            arb.last[leg] = Some(quote);
            let subject = format!("{}/{}", arb.legs[0], arb.legs[1]);
            let threshold = arb.threshold_bps;
            let fired = arb.spread(t.ts).filter(|s| s.net_bps > threshold);
            let message = fired.map(|s| {
                let (sold, bought) = (s.sell, 1 - s.sell);
                let q = |i: usize| arb.last[i].expect("both legs quoted");
                format!(
                    "{} bid {} over {} ask {}: {:.2} bp net of fees ({} and {} bp), above {} bp",
                    arb.legs[sold],
                    q(sold).bid,
                    arb.legs[bought],
                    q(bought).ask,
                    s.net_bps,
                    arb.fees[sold] * 1e4,
                    arb.fees[bought] * 1e4,
                    threshold
                )
            });
            // "above": the first symbol is the dearer one; "below": the second.
            let dir = fired.map(|s| if s.sell == 0 { "above" } else { "below" });
            let up = rule.crossed(&format!("{subject}:above"), dir == Some("above"));
            let down = rule.crossed(&format!("{subject}:below"), dir == Some("below"));
            if let (true, Some(s), Some(direction), Some(message)) =
                (up || down, fired, dir, message)
            {
                out.push(AlertMsg {
                    alert_id: format!("alert:{}:{}:{}", rule.name, subject, origin_id(origin)),
                    rule: rule.name.clone(),
                    kind: "arbitrage",
                    subject,
                    ts: t.ts,
                    direction,
                    value: s.net_bps,
                    threshold,
                    message,
                });
            }
        }
    }

    /// Feed a P&L snapshot (the engine's output); drawdown rules fire on it.
    pub fn on_pnl(&mut self, p: &PnlMsg, out: &mut Vec<AlertMsg>) {
        let dd = p.account_drawdown.to_f64().unwrap_or(0.0);
        for rule in &mut self.rules {
            let State::Drawdown { strategies, level } = &rule.state else {
                continue;
            };
            if !strategies.is_empty() && !strategies.contains(&p.strategy) {
                continue;
            }
            let level = *level;
            if rule.crossed(&p.strategy, dd >= level) {
                out.push(AlertMsg {
                    alert_id: format!("alert:{}:{}:{}", rule.name, p.strategy, p.pnl_id),
                    rule: rule.name.clone(),
                    kind: "drawdown",
                    subject: p.strategy.clone(),
                    ts: p.ts,
                    direction: "beyond",
                    value: dd,
                    threshold: level,
                    message: format!(
                        "strategy {} drawdown {:.2}% reached {:.2}%",
                        p.strategy,
                        dd * 100.0,
                        level * 100.0
                    ),
                });
            }
        }
    }

    /// Check `stale_feed` rules at wall time `now` (the same clock as
    /// [`Alerts::on_event`]'s). A symbol is stale once seen and then silent for
    /// the rule's `after`; a new tick re-arms it.
    pub fn check_stale(&mut self, now: Duration, out: &mut Vec<AlertMsg>) {
        for rule in &mut self.rules {
            let State::StaleFeed { after, last } = &rule.state else {
                continue;
            };
            let after = *after;
            let due: Vec<(String, Duration, Ts, String)> = last
                .iter()
                .map(|(s, (seen, ts, o))| (s.clone(), now.saturating_sub(*seen), *ts, o.clone()))
                .collect();
            for (symbol, silent, ts, origin) in due {
                if rule.crossed(&symbol, silent >= after) {
                    out.push(AlertMsg {
                        alert_id: format!("alert:{}:{}:after:{}", rule.name, symbol, origin),
                        rule: rule.name.clone(),
                        kind: "stale_feed",
                        subject: symbol.to_string(),
                        ts,
                        direction: "stale",
                        value: silent.as_secs_f64(),
                        threshold: after.as_secs_f64(),
                        message: format!(
                            "no tick of {symbol} for {:.1}s (limit {:.1}s)",
                            silent.as_secs_f64(),
                            after.as_secs_f64()
                        ),
                    });
                }
            }
        }
    }
}

fn kind_of(s: &State) -> &'static str {
    match s {
        State::Breakout { .. } => "breakout",
        State::Zscore { .. } => "zscore",
        State::Drawdown { .. } => "drawdown",
        State::StaleFeed { .. } => "stale_feed",
        State::Expr { .. } => "expr",
        State::Arbitrage(_) => "arbitrage",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Tick;
    use rust_decimal::Decimal;

    fn rules(toml_rules: &str) -> Alerts {
        #[derive(serde::Deserialize)]
        struct W {
            rules: Vec<AlertRule>,
        }
        let w: W = toml::from_str(toml_rules).unwrap();
        Alerts::new(&AlertsConfig {
            webhook_url: String::new(),
            webhook_attempts: 1,
            webhook_backoff: crate::config::Span::ZERO,
            rules: w.rules,
            telegram: Default::default(),
            slack: Default::default(),
            discord: Default::default(),
        })
    }

    fn feed(a: &mut Alerts, ticks: &[(f64, f64)]) -> Vec<AlertMsg> {
        let mut out = Vec::new();
        for (i, (p, s)) in ticks.iter().enumerate() {
            let ev = MarketEvent::Tick(Tick {
                symbol: "X".into(),
                ts: i as i64,
                price: Decimal::try_from(*p).unwrap(),
                size: Decimal::try_from(*s).unwrap(),
                bid: None,
                ask: None,
            });
            let o = Origin {
                topic: "t".into(),
                partition: 0,
                offset: i as i64,
            };
            a.on_event(&ev, &o, Duration::from_secs(i as u64), &mut out);
        }
        out
    }

    #[test]
    fn expr_alert_fires_when_its_condition_becomes_true() {
        let mut a = rules(
            "[[rules]]\nkind = \"expr\"\nname = \"hot\"\nsymbols = [\"X\"]\n\
             when = \"close > sma(close, 3) and volume >= 10\"\n",
        );
        // sma(3) from the third tick: 2 (1,2,3 -> 3 > 2, volume 10: fires),
        // 3 (2,3,4 -> 4 > 3 still holds: no new alert), 3 (3,4,2 -> 2 < 3:
        // re-arms), 11/3 (4,2,5 -> 5 > 3.67 with volume 10: fires again).
        let out = feed(
            &mut a,
            &[
                (1.0, 10.0),
                (2.0, 10.0),
                (3.0, 10.0),
                (4.0, 10.0),
                (2.0, 10.0),
                (5.0, 10.0),
            ],
        );
        let at: Vec<i64> = out.iter().map(|m| m.ts).collect();
        assert_eq!(at, vec![2, 5]);
        assert_eq!(out[0].kind, "expr");
        assert_eq!(out[0].alert_id, "alert:hot:X:t-0-2");
        assert!(
            out[0]
                .message
                .starts_with("X: close > sma(close, 3) and volume >= 10 (")
                && out[0].message.contains("sma(close, 3) = 2"),
            "{}",
            out[0].message
        );
        // The example of docs/dashboard.md compiles.
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/dashboard.md"
        ))
        .unwrap();
        let when = doc
            .lines()
            .find_map(|l| l.strip_prefix("when = \"")?.strip_suffix('"'))
            .expect("an expr alert in docs/dashboard.md");
        compile_when(when).unwrap_or_else(|e| panic!("{when}: {e:?}"));
        // A condition that does not compile is refused with the key and a caret.
        let bad = AlertRule::Expr {
            name: "bad".into(),
            symbols: vec!["X".into()],
            when: "rsi(close) > 80".into(),
        };
        let (key, what, _) = bad.check("alerts.rules[0]").unwrap_err();
        assert_eq!(key, "alerts.rules[0].when");
        assert!(
            what.contains("`rsi` takes 2 arguments, not 1") && what.contains('^'),
            "{what}"
        );
    }

    #[test]
    fn breakout_fires_once_per_crossing_and_rearms() {
        let mut a = rules("[[rules]]\nname='b'\nkind='breakout'\nsymbols=['X']\nperiod=2\n");
        // 1 2 | 3 (above 2) 4 (still above) 3 (inside 3..4) 5 (above again) 0 (below)
        let out = feed(
            &mut a,
            &[
                (1., 1.),
                (2., 1.),
                (3., 1.),
                (4., 1.),
                (3., 1.),
                (5., 1.),
                (0.5, 1.),
            ],
        );
        let got: Vec<_> = out.iter().map(|m| (m.ts, m.direction)).collect();
        assert_eq!(got, [(2, "above"), (5, "above"), (6, "below")]);
        assert_eq!(out[0].alert_id, "alert:b:X:t-0-2");
    }

    #[test]
    fn zscore_on_volume_needs_a_full_window_and_rearms() {
        let mut a = rules(
            "[[rules]]\nname='z'\nkind='zscore'\nfield='volume'\nsymbols=['X']\nperiod=3\nthreshold=1.2\n",
        );
        // window of 3, population sigma: max |z| is sqrt(2) = 1.41.
        let out = feed(
            &mut a,
            &[
                (1., 9.),
                (1., 1.),
                (1., 1.),
                (1., 9.),
                (1., 9.),
                (1., 1.),
                (1., 1.),
                (1., 9.),
            ],
        );
        // z at ticks 2..: -0.71, 1.41, 0.71, -1.41, -0.71, 1.41
        let got: Vec<_> = out.iter().map(|m| (m.ts, m.direction)).collect();
        assert_eq!(got, [(3, "above"), (5, "below"), (7, "above")]);
        assert!(out.iter().all(|m| m.value.abs() > 1.2));
    }

    /// A tick of one of two symbols: (symbol, seconds, price, bid and ask).
    type PairTick<'a> = (&'a str, i64, f64, Option<(f64, f64)>);

    fn feed_pair(a: &mut Alerts, ticks: &[PairTick]) -> Vec<AlertMsg> {
        let d = |x: f64| Decimal::try_from(x).unwrap();
        let mut out = Vec::new();
        for (i, (sym, secs, p, quote)) in ticks.iter().enumerate() {
            let ev = MarketEvent::Tick(Tick {
                symbol: (*sym).into(),
                ts: secs * 1_000_000_000,
                price: d(*p),
                size: d(1.0),
                bid: quote.map(|q| d(q.0)),
                ask: quote.map(|q| d(q.1)),
            });
            let o = Origin {
                topic: "t".into(),
                partition: 0,
                offset: i as i64,
            };
            a.on_event(&ev, &o, Duration::ZERO, &mut out);
        }
        out
    }

    #[test]
    fn arbitrage_fires_on_the_net_spread_once_per_crossing() {
        let mut a = rules(
            "[[rules]]\nname='arb'\nkind='arbitrage'\nsymbols=['BTCUSDT','CB:BTC-USD']\n\
             threshold_bps=20\nfees_bps=[10.0, 60.0]\nmax_age='5s'\n",
        );
        let (b, c) = ("BTCUSDT", "CB:BTC-USD");
        // Fees 10 bp (BTCUSDT) and 60 bp (CB). Selling CB at p and buying
        // BTCUSDT at q nets p * 0.994 / (q * 1.001) - 1.
        let out = feed_pair(
            &mut a,
            &[
                (b, 0, 100_000.0, None),
                // 100100 * .994 / 100100 - 1 = -60 bp
                (c, 1, 100_100.0, None),
                // 100800 * .994 / 100100 - 1 = 9.51 bp: below 20
                (c, 2, 100_800.0, None),
                // 101000 * .994 / 100100 - 1 = 29.37 bp: fires, CB the dearer
                (c, 3, 101_000.0, None),
                // 39.30 bp: still above, no new alert
                (c, 4, 101_100.0, None),
                // BTCUSDT quoted 100400 / 100500: buying at the ask, 101100 *
                // .994 / (100500 * 1.001) - 1 = -10.65 bp: re-arms
                (b, 5, 100_450.0, Some((100_400.0, 100_500.0))),
                // back to 100000: 39.30 bp, fires again
                (b, 6, 100_000.0, None),
                // CB's quote is 8 s old at 12 s (max_age 5 s): no spread, re-arms
                (b, 12, 100_000.0, None),
                // CB fresh again: 39.30 bp, fires
                (c, 13, 101_100.0, None),
                // BTCUSDT the dearer: 102000 * .999 / (101100 * 1.006) - 1 = 18.82 bp
                (b, 14, 102_000.0, None),
                // 102100 * .999 / (101100 * 1.006) - 1 = 28.64 bp: fires "above"
                (b, 15, 102_100.0, None),
            ],
        );
        let got: Vec<(i64, &str)> = out
            .iter()
            .map(|m| (m.ts / 1_000_000_000, m.direction))
            .collect();
        assert_eq!(
            got,
            [(3, "below"), (6, "below"), (13, "below"), (15, "above")]
        );
        let close = |x: f64, want: f64| assert!((x - want).abs() < 1e-9, "{x} vs {want}");
        close(out[0].value, 29.370_629_370_630_84);
        close(out[1].value, 39.300_699_300_699_46);
        close(out[3].value, 28.641_209_125_070_954);
        assert!(out
            .iter()
            .all(|m| m.threshold == 20.0 && m.kind == "arbitrage"));
        assert_eq!(out[0].subject, "BTCUSDT/CB:BTC-USD");
        assert_eq!(out[0].alert_id, "alert:arb:BTCUSDT/CB:BTC-USD:t-0-3");
        assert_eq!(
            out[0].message,
            "CB:BTC-USD bid 101000 over BTCUSDT ask 100000: 29.37 bp net of fees (60 and 10 bp), above 20 bp"
        );
    }

    #[test]
    fn arbitrage_rules_are_checked() {
        let check = |extra: &str| {
            #[derive(serde::Deserialize)]
            struct W {
                rules: Vec<AlertRule>,
            }
            let text = format!("[[rules]]\nname='a'\nkind='arbitrage'\n{extra}");
            let w: W = toml::from_str(&text).unwrap();
            w.rules[0].check("alerts.rules[0]").map_err(|e| e.0)
        };
        let two = "symbols=['X','Y']\n";
        assert_eq!(check(&format!("{two}threshold_bps=5")), Ok(()));
        assert_eq!(
            check(&format!("{two}threshold_bps=5\nmax_age='off'")),
            Ok(())
        );
        assert_eq!(
            check("symbols=['X','X']\nthreshold_bps=5").unwrap_err(),
            "alerts.rules[0].symbols"
        );
        assert_eq!(
            check(&format!("{two}threshold_bps=-1")).unwrap_err(),
            "alerts.rules[0].threshold_bps"
        );
        assert_eq!(
            check(&format!("{two}threshold_bps=5\nfees_bps=[10.0]")).unwrap_err(),
            "alerts.rules[0].fees_bps"
        );
        assert_eq!(
            check(&format!("{two}threshold_bps=5\nmax_age='0s'")).unwrap_err(),
            "alerts.rules[0].max_age"
        );
    }

    #[test]
    fn stale_feed_fires_after_silence_and_rearms_on_a_tick() {
        let mut a = rules("[[rules]]\nname='s'\nkind='stale_feed'\nsymbols=['X']\nafter='2s'\n");
        let mut out = feed(&mut a, &[(1., 1.)]);
        a.check_stale(Duration::from_secs(1), &mut out);
        assert!(out.is_empty());
        a.check_stale(Duration::from_secs(2), &mut out);
        a.check_stale(Duration::from_secs(5), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].alert_id, "alert:s:X:after:t-0-0");
    }
}
