//! Analytics streams: named rule-language expressions computed per symbol on
//! the input stream and published as [`IndicatorMsg`]s on the `indicators`
//! topic (docs/strategies.md, "Analytics streams"). The same expression code
//! as `kind = "expr"` strategies and `expr` alerts ([`crate::expr`]).
//!
//! ```toml
//! [[analytics]]
//! name = "trend"
//! symbols = ["ACME"]            # optional: every admitted symbol
//! bars = { kind = "time", size = "1m" }   # optional: every tick
//! [analytics.values]
//! sma_50d = 'sma(close, "50d")'
//! rsi_14 = "rsi(close, 14)"
//! ```
//!
//! Each entry has one program per symbol, built on the symbol's first event.
//! Prices update it per tick, or per completed bar with `bars`; sentiment
//! readings update `sentiment` series. A message goes out on every price
//! update (every tick, or every bar), with every value: `null` while an
//! indicator is warming up. Ids are `{name}:{symbol}:{origin}`; the state is in
//! the engine's checkpoint.

use std::collections::BTreeMap;

use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::bars::{Bar, BarBuilder};
use crate::config::{problem, BarsConfig, Problem};
use crate::domain::{IndicatorMsg, MarketEvent, Origin};
use crate::expr::{Input, KeyedError, PriceInput, Program, Ty};

/// One `[[analytics]]` entry of the application config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// Names the entry: the `analytics` field and the first part of the id.
    pub name: String,
    /// Symbols to compute for; empty: every admitted symbol.
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Compute on bars built from the ticks (and publish once per bar)
    /// instead of on every tick.
    #[serde(default)]
    pub bars: Option<BarsConfig>,
    /// Value name -> expression (a number; a condition as `if(c, 1, 0)`).
    pub values: BTreeMap<String, String>,
}

impl AnalyticsConfig {
    /// Compile the values into one program (shared sub-expressions computed
    /// once); the nodes in `values` order.
    ///
    /// # Errors
    /// The first value that does not compile, keyed `values.NAME`.
    pub fn compile(&self) -> Result<(Program, Vec<usize>), KeyedError> {
        let (params, lets) = (BTreeMap::new(), BTreeMap::new());
        let mut no_models = |p: &str| {
            Err(crate::model::ModelError {
                file: p.to_string(),
                problem: "analytics cannot score models".into(),
                fix: "use model(...) in a strategy's condition; feature(\"NAME\") reads a model feature here".into(),
            })
        };
        let mut b = crate::expr::program::Builder::new(&params, &lets, &mut no_models);
        let mut roots = Vec::with_capacity(self.values.len());
        for (k, src) in &self.values {
            roots.push(b.add(&format!("values.{k}"), src, Ty::Num)?);
        }
        Ok((b.finish(), roots))
    }

    /// A name, at least one value, every value compiles, bars that parse.
    /// `key` is the entry's key (`analytics[0]`).
    pub fn check(&self, key: &str) -> Result<(), Problem> {
        if self.name.trim().is_empty() || self.name.contains(char::is_whitespace) {
            return Err(problem(
                format!("{key}.name"),
                format!("{:?} is not a usable name", self.name),
                "use a name without spaces, e.g. name = \"trend\"",
            ));
        }
        if self.values.is_empty() {
            return Err(problem(
                format!("{key}.values"),
                "is empty",
                "name at least one expression, e.g. [analytics.values] rsi_14 = \"rsi(close, 14)\"",
            ));
        }
        if let Some(b) = &self.bars {
            b.spec().map_err(|what| {
                problem(
                    format!("{key}.bars.size"),
                    what,
                    "time bars: a duration such as \"1m\"; tick bars: a count such as \"100\"",
                )
            })?;
        }
        if let Err(e) = self.compile() {
            let src = e
                .key
                .strip_prefix("values.")
                .and_then(|k| self.values.get(k))
                .cloned()
                .unwrap_or_default();
            return Err(problem(
                format!("{key}.{}", e.key),
                crate::expr::render(&e, &src, None),
                e.error.fix,
            ));
        }
        Ok(())
    }
}

/// One symbol's program of one entry.
struct Series {
    program: Program,
    bars: Option<BarBuilder>,
}

/// What a checkpoint keeps of one symbol's series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesState {
    /// The program's `ProgramState`, as plain data.
    program: crate::strategy::StateValue,
    bars: Option<BarBuilder>,
}

struct Entry {
    cfg: AnalyticsConfig,
    roots: Vec<usize>,
    names: Vec<String>,
    series: BTreeMap<String, Series>,
}

/// The analytics of a run and their state.
pub struct Analytics {
    entries: Vec<Entry>,
}

/// The state of every entry's series: entry name -> symbol -> state.
pub type AnalyticsState = BTreeMap<String, BTreeMap<String, SeriesState>>;

impl Analytics {
    /// Build the entries (checked when the configuration loaded).
    ///
    /// # Errors
    /// An entry that does not compile, with its name.
    pub fn new(cfg: &[AnalyticsConfig]) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(cfg.len());
        for c in cfg {
            let (_, roots) = c
                .compile()
                .map_err(|e| format!("analytics {}: {}: {}", c.name, e.key, e.error.message))?;
            entries.push(Entry {
                names: c.values.keys().cloned().collect(),
                roots,
                cfg: c.clone(),
                series: BTreeMap::new(),
            });
        }
        Ok(Analytics { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Feed an admitted input event; append the messages it produces.
    pub fn on_event(&mut self, ev: &MarketEvent, origin: &Origin, out: &mut Vec<IndicatorMsg>) {
        let (symbol, ts) = match ev {
            MarketEvent::Tick(t) => (&t.symbol, t.ts),
            MarketEvent::Sentiment(s) => (&s.symbol, s.ts),
            MarketEvent::Book(_) => return,
        };
        for e in &mut self.entries {
            if !e.cfg.symbols.is_empty() && !e.cfg.symbols.iter().any(|s| s == symbol) {
                continue;
            }
            let s = e
                .series
                .entry(symbol.to_string())
                .or_insert_with(|| Series {
                    program: e.cfg.compile().expect("checked when the config loaded").0,
                    bars: e.cfg.bars.as_ref().map(|b| {
                        BarBuilder::new(b.spec().expect("checked when the config loaded"))
                    }),
                });
            let mut at = ts;
            let input = match (ev, &mut s.bars) {
                (MarketEvent::Sentiment(r), _) => {
                    s.program.update(&Input::Sentiment {
                        ts: r.ts,
                        score: r.score,
                    });
                    continue;
                }
                (MarketEvent::Tick(t), None) => tick_input(t),
                (MarketEvent::Tick(t), Some(b)) => match b.push(t) {
                    Some(bar) => {
                        at = bar.last_ts;
                        bar_input(&bar)
                    }
                    None => continue,
                },
                (MarketEvent::Book(_), _) => continue,
            };
            s.program.update(&input);
            let values = e
                .names
                .iter()
                .zip(&e.roots)
                .map(|(n, &r)| {
                    let v = s.program.value(r);
                    (n.clone(), v.is_finite().then_some(v))
                })
                .collect();
            out.push(IndicatorMsg {
                indicator_id: format!("{}:{symbol}:{origin}", e.cfg.name),
                analytics: e.cfg.name.clone(),
                symbol: symbol.to_string(),
                ts: at,
                values,
                origin: origin.to_string(),
            });
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> AnalyticsState {
        self.entries
            .iter()
            .map(|e| {
                let series = e
                    .series
                    .iter()
                    .map(|(sym, s)| {
                        (
                            sym.clone(),
                            SeriesState {
                                program: crate::strategy::StateValue::serialized(&s.program.save())
                                    .expect("program state is plain data"),
                                bars: s.bars.clone(),
                            },
                        )
                    })
                    .collect();
                (e.cfg.name.clone(), series)
            })
            .collect()
    }

    /// Continue from a checkpoint's state (built from the same configuration).
    ///
    /// # Errors
    /// The state names an entry this configuration does not have, or a program
    /// state does not fit.
    pub fn restore(&mut self, st: AnalyticsState) -> Result<(), String> {
        for (name, series) in st {
            let e = self
                .entries
                .iter_mut()
                .find(|e| e.cfg.name == name)
                .ok_or_else(|| {
                    format!("the checkpoint has analytics {name:?}, the configuration does not")
                })?;
            for (sym, s) in series {
                let mut program = e.cfg.compile().map_err(|k| k.error.message)?.0;
                program.restore(s.program.deserialized().map_err(|e| e.to_string())?)?;
                e.series.insert(
                    sym,
                    Series {
                        program,
                        bars: s.bars,
                    },
                );
            }
        }
        Ok(())
    }
}

fn tick_input(t: &crate::domain::Tick) -> Input {
    let price = t.price.to_f64().unwrap_or(f64::NAN);
    let f = |d: Option<rust_decimal::Decimal>| d.and_then(|d| d.to_f64()).unwrap_or(f64::NAN);
    Input::Price(PriceInput {
        ts: t.ts,
        open: price,
        high: price,
        low: price,
        close: price,
        volume: t.size.to_f64().unwrap_or(f64::NAN),
        bid: f(t.bid),
        ask: f(t.ask),
    })
}

fn bar_input(b: &Bar) -> Input {
    let f = |d: rust_decimal::Decimal| d.to_f64().unwrap_or(f64::NAN);
    Input::Price(PriceInput {
        ts: b.last_ts,
        open: f(b.open),
        high: f(b.high),
        low: f(b.low),
        close: f(b.close),
        volume: f(b.volume),
        bid: f64::NAN,
        ask: f64::NAN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Sentiment, Tick};
    use crate::test_util::d;

    fn entry(text: &str) -> AnalyticsConfig {
        toml::from_str(text).unwrap()
    }

    fn tick(ts: i64, px: &str) -> MarketEvent {
        MarketEvent::Tick(Tick {
            symbol: "X".into(),
            ts,
            price: d(px),
            size: d("2"),
            bid: None,
            ask: None,
        })
    }

    fn origin(i: i64) -> Origin {
        Origin {
            topic: "p".into(),
            partition: 0,
            offset: i,
        }
    }

    #[test]
    fn values_per_tick_null_while_warming() {
        let c = entry("name = \"a\"\n[values]\nsma3 = \"sma(close, 3)\"\nup = \"if(close > close[1], 1, 0)\"\nsent = \"sentiment\"");
        assert!(c.check("analytics[0]").is_ok());
        let mut a = Analytics::new(&[c]).unwrap();
        let mut out = Vec::new();
        for (i, px) in ["10", "11", "13"].iter().enumerate() {
            a.on_event(&tick(i as i64, px), &origin(i as i64), &mut out);
        }
        // Sentiment updates the series, publishes nothing.
        let s = MarketEvent::Sentiment(Sentiment {
            symbol: "X".into(),
            ts: 3,
            score: 0.5,
            source: "n".into(),
            headline: None,
        });
        a.on_event(&s, &origin(3), &mut out);
        a.on_event(&tick(4, "12"), &origin(4), &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].values["sma3"], None);
        assert_eq!(
            out[0].values["up"], None,
            "close[1] is unknown on the first tick"
        );
        assert_eq!(out[1].values["up"], Some(1.0));
        // (10 + 11 + 13) / 3, then (11 + 13 + 12) / 3.
        assert_eq!(out[2].values["sma3"], Some(34.0 / 3.0));
        assert_eq!(out[3].values["sma3"], Some(12.0));
        assert_eq!(out[3].values["up"], Some(0.0));
        assert_eq!(out[3].values["sent"], Some(0.5));
        assert_eq!(out[3].indicator_id, "a:X:p-0-4");
    }

    #[test]
    fn on_bars_one_message_per_bar_and_state_restores() {
        let c = entry("name = \"b\"\nsymbols = [\"X\"]\nbars = { kind = \"ticks\", size = \"2\" }\n[values]\nhi = \"high\"\nema = \"ema(close, 2)\"");
        let mut a = Analytics::new(std::slice::from_ref(&c)).unwrap();
        let mut out = Vec::new();
        let pxs = ["10", "12", "11", "9", "14", "15"];
        for (i, px) in pxs[..3].iter().enumerate() {
            a.on_event(&tick(i as i64, px), &origin(i as i64), &mut out);
        }
        let saved = a.state();
        let mut b = Analytics::new(std::slice::from_ref(&c)).unwrap();
        b.restore(saved).unwrap();
        let mut rest = Vec::new();
        for (i, px) in pxs.iter().enumerate().skip(3) {
            a.on_event(&tick(i as i64, px), &origin(i as i64), &mut out);
            b.on_event(&tick(i as i64, px), &origin(i as i64), &mut rest);
        }
        // Bars (10, 12), (11, 9), (14, 15): highs 12, 11, 15; EMA(2) seeds with
        // the mean of the first two closes (12 + 9) / 2 = 10.5, then
        // 15 * 2/3 + 10.5 / 3 = 13.5.
        let his: Vec<_> = out.iter().map(|m| m.values["hi"]).collect();
        assert_eq!(his, [Some(12.0), Some(11.0), Some(15.0)]);
        assert_eq!(out[2].values["ema"], Some(13.5));
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[1].values, out[2].values);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let c = entry("name = \"a\"\n[values]\nx = \"emaa(close, 3)\"");
        let (key, what, _) = c.check("analytics[1]").unwrap_err();
        assert_eq!(key, "analytics[1].values.x");
        assert!(what.contains("did you mean `ema`"), "{what}");
        let c = entry("name = \"a\"\n[values]\nx = \"close > 3\"");
        assert_eq!(
            c.check("analytics[0]").unwrap_err().0,
            "analytics[0].values.x"
        );
    }
}
