//! The backtest report: what a run collected ([`Backtest`], [`Collector`]) and the
//! metrics computed from it ([`Report`]); `report_files` writes them out.
//!
//! The [`Collector`] takes the engine's outputs as they are produced and keeps what
//! the report needs: the fills (with the realized P&L each one caused, and closed
//! round trips) and the equity of each strategy at every P&L snapshot. Money is
//! `Decimal`; ratios that are statistics (win rate) and durations are `f64` written
//! with a fixed number of decimals. Maps are `BTreeMap`s, so the files are
//! byte-identical for the same inputs. Formulas: `docs/metrics.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::account::Account;
use crate::config::Loaded;
use crate::domain::{AlertMsg, FillMsg, Output};
use crate::domain::{Side, Ts, NANOS_PER_SEC};
use crate::summary::InputCounts;
use crate::summary::Summary;
use crate::wire::format_ts;

/// The result of a backtest.
pub struct Backtest {
    pub summary: Summary,
    /// Fills and P&L snapshots, collected for the report.
    pub collector: Collector,
    /// Input messages fed to the engine (valid or dead-lettered).
    pub events: u64,
    /// Earliest and latest event time of the messages fed.
    pub start: Option<Ts>,
    pub end: Option<Ts>,
    /// Wall-clock time spent in the engine loop (not part of any report).
    pub elapsed: Duration,
}

impl Backtest {
    /// Input messages per second of wall-clock time in the engine loop.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One fill with the realized P&L it caused (before fees).
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub fill: FillMsg,
    pub realized: Decimal,
}

/// One closed round trip, as backtesting.py's trades table has them: a
/// quantity that fills opened and one fill closed (a fill that closes part of
/// a position closes a round trip of that part).
#[derive(Debug, Clone, PartialEq)]
pub struct RoundTrip {
    pub strategy: String,
    pub symbol: String,
    /// The first fill that opened it, and the fill that closed it.
    pub entry_ts: Ts,
    pub exit_ts: Ts,
    /// Signed: positive for a long, negative for a short.
    pub size: Decimal,
    /// The average price of the fills that opened it (not FIFO lots).
    pub entry_price: Decimal,
    pub exit_price: Decimal,
    /// Its share of the opening fills' fees and of the closing fill's fee.
    pub commission: Decimal,
    /// `(exit_price - entry_price) * size - commission`.
    pub pnl: Decimal,
    /// `pnl / (|size| * entry_price)`.
    pub return_pct: Decimal,
}

/// What is open of a symbol's position, for [`RoundTrip`]s.
#[derive(Debug, Clone, Default)]
struct OpenTrip {
    entry_ts: Ts,
    /// Signed quantity.
    qty: Decimal,
    /// Sum of quantity * price of what is open.
    value: Decimal,
    fees: Decimal,
}

#[derive(Debug, Clone, Default)]
struct Trips {
    /// Net P&L (realized minus fees) of the round trip now open, if any.
    open: Option<Decimal>,
    /// Net P&L of each closed round trip, in order.
    closed: Vec<Decimal>,
}

/// Collects what the report needs from the engine's outputs.
#[derive(Debug, Clone)]
pub struct Collector {
    starting_cash: BTreeMap<String, Decimal>,
    pub trades: Vec<Trade>,
    /// Closed round trips in the order they closed.
    pub round_trips: Vec<RoundTrip>,
    open_trips: BTreeMap<(String, String), OpenTrip>,
    /// Per strategy: `(ts, account equity)` of every P&L snapshot, in output order.
    pub equity: BTreeMap<String, Vec<(Ts, Decimal)>>,
    /// Replays the fills to attribute realized P&L to each one.
    books: BTreeMap<String, Account>,
    trips: BTreeMap<(String, String), Trips>,
    /// Per strategy: equity at the close of each period (UTC day with events).
    pub closes: BTreeMap<String, Vec<Decimal>>,
    /// Per strategy, beside `closes`: whether its own symbols had events in
    /// that period.
    pub active: BTreeMap<String, Vec<bool>>,
    /// Per strategy: its symbols' events (ticks and sentiment) up to the last close.
    seen: BTreeMap<String, u64>,
    /// The alerts the run's `[[alerts.rules]]` fired, in output order.
    pub alerts: Vec<AlertMsg>,
    /// The run has alert rules (`alerts.csv` is written, empty or not).
    pub has_alert_rules: bool,
}

impl Collector {
    pub fn new(cfg: &Loaded) -> Self {
        Collector {
            starting_cash: cfg
                .strategies
                .iter()
                .map(|s| (s.name.clone(), s.account.starting_cash))
                .collect(),
            trades: Vec::new(),
            round_trips: Vec::new(),
            open_trips: BTreeMap::new(),
            equity: BTreeMap::new(),
            books: BTreeMap::new(),
            trips: BTreeMap::new(),
            closes: BTreeMap::new(),
            active: BTreeMap::new(),
            seen: BTreeMap::new(),
            alerts: Vec::new(),
            has_alert_rules: !cfg.app.alerts.rules.is_empty(),
        }
    }

    /// Take one engine output.
    pub fn push(&mut self, o: Output) {
        match o {
            Output::Fill(f) => self.fill(f),
            Output::Pnl(p) => self
                .equity
                .entry(p.strategy)
                .or_default()
                .push((p.ts, p.account_equity)),
            Output::Alert(a) => self.alerts.push(a),
            _ => {}
        }
    }

    /// Record every strategy's equity as the close of a period, and whether
    /// its own symbols had events in it (`active`).
    pub fn close_period(&mut self, summary: &Summary) {
        for s in &summary.strategies {
            self.closes
                .entry(s.name.clone())
                .or_default()
                .push(s.equity);
            let seen: u64 = s
                .symbols
                .values()
                .map(|c| c.counts.ticks + c.counts.sentiment)
                .sum();
            let before = self.seen.insert(s.name.clone(), seen).unwrap_or(0);
            self.active
                .entry(s.name.clone())
                .or_default()
                .push(seen > before);
        }
    }

    /// The closes of the periods in which `strategy`'s own symbols had events
    /// (the periods of its return statistics: a day on which nothing it trades
    /// moved is not a zero return of it).
    pub fn active_closes(&self, strategy: &str) -> Vec<Decimal> {
        let closes = self.closes.get(strategy).map_or(&[][..], Vec::as_slice);
        let active = self.active.get(strategy).map_or(&[][..], Vec::as_slice);
        closes
            .iter()
            .zip(active)
            .filter(|(_, a)| **a)
            .map(|(c, _)| *c)
            .collect()
    }

    fn fill(&mut self, f: FillMsg) {
        let book = self
            .books
            .entry(f.strategy.clone())
            .or_insert_with(|| Account::new(Decimal::ZERO));
        let before_qty = book.position(&f.symbol);
        let before = book
            .positions
            .get(&f.symbol)
            .map_or(Decimal::ZERO, |p| p.realized);
        book.apply_fill(&f.symbol, f.side, f.qty, f.price, f.fee);
        let after_qty = book.position(&f.symbol);
        let realized = book.positions[&f.symbol].realized - before;
        let trips = self
            .trips
            .entry((f.strategy.clone(), f.symbol.clone()))
            .or_default();
        let net = realized - f.fee;
        if before_qty.is_zero() {
            trips.open = Some(net);
        } else {
            *trips.open.get_or_insert(Decimal::ZERO) += net;
            let flipped = before_qty.is_sign_positive() != after_qty.is_sign_positive();
            if after_qty.is_zero() || flipped {
                trips.closed.push(trips.open.take().unwrap_or_default());
                if !after_qty.is_zero() {
                    // The remainder of a flip opens a new round trip (the whole fee
                    // went to the closing one).
                    trips.open = Some(Decimal::ZERO);
                }
            }
        }
        self.round_trip(&f);
        self.trades.push(Trade { fill: f, realized });
    }

    /// Follow `f` in the open round trip of its strategy and symbol: what it
    /// closes becomes a [`RoundTrip`], the rest opens or adds to one.
    fn round_trip(&mut self, f: &FillMsg) {
        let key = (f.strategy.clone(), f.symbol.clone());
        let open = self.open_trips.entry(key).or_default();
        let sign = f.side.sign();
        let (mut left, mut fee_left) = (f.qty, f.fee);
        if !open.qty.is_zero() && open.qty.is_sign_positive() != sign.is_sign_positive() {
            let closing = left.min(open.qty.abs());
            let exit_fee = f.fee * closing / f.qty;
            let part = closing / open.qty.abs();
            let (value, fees) = (open.value * part, open.fees * part);
            let entry_price = open.value / open.qty.abs();
            let size = if open.qty.is_sign_positive() {
                closing
            } else {
                -closing
            };
            let commission = fees + exit_fee;
            let pnl = (f.price - entry_price) * size - commission;
            self.round_trips.push(RoundTrip {
                strategy: f.strategy.clone(),
                symbol: f.symbol.clone(),
                entry_ts: open.entry_ts,
                exit_ts: f.ts,
                size,
                entry_price,
                exit_price: f.price,
                commission,
                pnl,
                return_pct: pnl / value,
            });
            open.qty -= size;
            open.value -= value;
            open.fees -= fees;
            left -= closing;
            fee_left -= exit_fee;
        }
        if left > Decimal::ZERO {
            if open.qty.is_zero() {
                open.entry_ts = f.ts;
            }
            open.qty += left * sign;
            open.value += left * f.price;
            open.fees += fee_left;
        }
    }

    /// The equity series of a strategy for the report: its starting cash at `start`,
    /// every P&L snapshot, and its final equity (open positions marked at their last
    /// price) at `end`.
    pub fn series(
        &self,
        strategy: &str,
        start: Ts,
        end: Ts,
        final_equity: Decimal,
    ) -> Vec<(Ts, Decimal)> {
        let mut s = vec![(
            start,
            self.starting_cash
                .get(strategy)
                .copied()
                .unwrap_or_default(),
        )];
        if let Some(v) = self.equity.get(strategy) {
            s.extend(v.iter().copied());
        }
        s.push((end, final_equity));
        s
    }
}

// ---------------------------------------------------------------------------
// Metrics

/// Drawdown statistics of an equity series (see docs/metrics.md).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DrawdownStats {
    /// Largest fall from a running peak, as a fraction of the peak.
    pub max_drawdown: Decimal,
    /// When the peak before the largest fall was set.
    pub peak_ts: Option<Ts>,
    /// The lowest point of the largest fall.
    pub trough_ts: Option<Ts>,
    /// When equity first got back to that peak (`None`: not by the end).
    pub recovery_ts: Option<Ts>,
    /// Peak to recovery (or to the end of the series) of the largest fall, in ns.
    pub max_drawdown_duration: Ts,
    /// The longest time under a previous peak, in ns.
    pub longest_drawdown: Ts,
}

/// The drawdown of each point from the running peak, as a fraction of the peak.
pub fn drawdowns(series: &[(Ts, Decimal)]) -> Vec<Decimal> {
    let mut peak: Option<Decimal> = None;
    series
        .iter()
        .map(|&(_, e)| {
            let p = peak.map_or(e, |p| p.max(e));
            peak = Some(p);
            fraction_below(p, e)
        })
        .collect()
}

fn fraction_below(peak: Decimal, e: Decimal) -> Decimal {
    if peak <= Decimal::ZERO || e >= peak {
        Decimal::ZERO
    } else {
        ((peak - e) / peak).round_dp(10)
    }
}

/// Max drawdown, when it happened, how long it lasted, and the longest time under water.
pub fn drawdown_stats(series: &[(Ts, Decimal)]) -> DrawdownStats {
    let mut st = DrawdownStats::default();
    let Some(&(t0, e0)) = series.first() else {
        return st;
    };
    let end = series.last().map_or(t0, |p| p.0);
    let (mut peak, mut peak_ts) = (e0, t0);
    let mut under = false;
    for &(ts, e) in series {
        if e >= peak {
            if under {
                st.longest_drawdown = st.longest_drawdown.max(ts - peak_ts);
                if st.peak_ts == Some(peak_ts) && st.recovery_ts.is_none() {
                    st.recovery_ts = Some(ts);
                }
                under = false;
            }
            peak = e;
            peak_ts = ts;
        } else {
            under = true;
            let dd = fraction_below(peak, e);
            if dd > st.max_drawdown {
                st.max_drawdown = dd;
                st.peak_ts = Some(peak_ts);
                st.trough_ts = Some(ts);
                st.recovery_ts = None;
            }
        }
    }
    if under {
        st.longest_drawdown = st.longest_drawdown.max(end - peak_ts);
    }
    if let Some(p) = st.peak_ts {
        st.max_drawdown_duration = st.recovery_ts.unwrap_or(end) - p;
    }
    st
}

/// `(last - first) / first` of a series (zero when it starts at zero or is empty).
pub fn total_return(series: &[(Ts, Decimal)]) -> Decimal {
    match (series.first(), series.last()) {
        (Some(&(_, a)), Some(&(_, b))) if !a.is_zero() => ((b - a) / a).round_dp(10),
        _ => Decimal::ZERO,
    }
}

/// Periods per year used to annualize daily statistics (trading days).
pub const PERIODS_PER_YEAR: f64 = 252.0;

/// Return statistics of a series of period closes (see docs/metrics.md).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReturnStats {
    /// Number of period returns.
    pub periods: usize,
    pub mean: Option<f64>,
    /// Sample standard deviation (n - 1) times `sqrt(PERIODS_PER_YEAR)`.
    pub volatility: Option<f64>,
    /// `mean / stdev * sqrt(PERIODS_PER_YEAR)`, risk-free rate 0.
    pub sharpe: Option<f64>,
    /// `mean / downside deviation * sqrt(PERIODS_PER_YEAR)`, where the downside
    /// deviation is `sqrt(sum(min(r, 0)^2) / n)`.
    pub sortino: Option<f64>,
}

/// Statistics of the simple returns `c[i] / c[i-1] - 1` of `closes` (the first
/// close is the starting cash). `None` where undefined: fewer than two returns,
/// or a zero deviation.
pub fn return_stats(closes: &[Decimal]) -> ReturnStats {
    use rust_decimal::prelude::ToPrimitive;
    let c: Vec<f64> = closes
        .iter()
        .map(|d| d.to_f64().unwrap_or(f64::NAN))
        .collect();
    let r: Vec<f64> = c
        .windows(2)
        .filter(|w| w[0] != 0.0)
        .map(|w| w[1] / w[0] - 1.0)
        .collect();
    let n = r.len();
    let mut st = ReturnStats {
        periods: n,
        ..ReturnStats::default()
    };
    if n < 2 {
        return st;
    }
    let mean = r.iter().sum::<f64>() / n as f64;
    let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let down = (r.iter().map(|x| x.min(0.0).powi(2)).sum::<f64>() / n as f64).sqrt();
    let k = PERIODS_PER_YEAR.sqrt();
    st.mean = Some(mean);
    st.volatility = Some(sd * k);
    st.sharpe = (sd > 0.0).then(|| mean / sd * k);
    st.sortino = (down > 0.0).then(|| mean / down * k);
    st
}

fn opt(x: Option<f64>) -> serde_json::Value {
    x.map_or(serde_json::Value::Null, |v| fixed(v, 6))
}

/// A number written with exactly `dp` decimals (a JSON number, not a string).
fn fixed(x: f64, dp: usize) -> serde_json::Value {
    if !x.is_finite() {
        return serde_json::Value::Null;
    }
    let s = format!("{x:.dp$}");
    serde_json::Value::Number(s.parse().expect("a formatted float is a JSON number"))
}

fn secs(ns: Ts) -> serde_json::Value {
    fixed(ns as f64 / NANOS_PER_SEC as f64, 3)
}

fn ratio(wins: usize, n: usize) -> serde_json::Value {
    if n == 0 {
        serde_json::Value::Null
    } else {
        fixed(wins as f64 / n as f64, 6)
    }
}

// ---------------------------------------------------------------------------
// The report

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub start: Option<String>,
    pub end: Option<String>,
    pub events: u64,
    pub inputs: InputCounts,
    pub total: Totals,
    pub strategies: BTreeMap<String, StrategyReport>,
    /// Alerts fired, by rule (`[[alerts.rules]]`; each alert in `alerts.csv`).
    pub alerts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub starting_cash: Decimal,
    pub final_equity: Decimal,
    pub total_return: Decimal,
    pub fills: u64,
    pub fees: Decimal,
    pub turnover: Decimal,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategyReport {
    pub kind: String,
    pub starting_cash: Decimal,
    pub final_equity: Decimal,
    pub total_return: Decimal,
    pub realized: Decimal,
    pub unrealized: Decimal,
    pub fees: Decimal,
    pub turnover: Decimal,
    pub fills: u64,
    /// Of `fills`, those of the orders `exits.close_at_end` sent after the
    /// last event (`...:end:o`), not the strategy's own decisions.
    pub fills_at_end: u64,
    pub round_trips: usize,
    pub wins: usize,
    pub win_rate: serde_json::Value,
    /// From the equity series (P&L snapshots, start and end).
    pub max_drawdown: Decimal,
    pub max_drawdown_peak: Option<String>,
    pub max_drawdown_trough: Option<String>,
    pub max_drawdown_recovery: Option<String>,
    pub max_drawdown_duration_s: serde_json::Value,
    pub longest_drawdown_s: serde_json::Value,
    /// The account's own max drawdown, marked at every tick (finer than the series).
    pub max_drawdown_marked: Decimal,
    /// Daily returns (UTC days with events): count, annualized volatility, Sharpe, Sortino.
    pub daily_returns: usize,
    pub volatility: serde_json::Value,
    pub sharpe: serde_json::Value,
    pub sortino: serde_json::Value,
    pub symbols: BTreeMap<String, SymbolReport>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SymbolReport {
    pub fills: u64,
    pub buys: u64,
    pub sells: u64,
    pub qty_bought: Decimal,
    pub qty_sold: Decimal,
    pub turnover: Decimal,
    pub fees: Decimal,
    pub realized: Decimal,
    pub unrealized: Decimal,
    /// realized + unrealized - fees.
    pub net_pnl: Decimal,
    pub position: Decimal,
    pub last_price: Decimal,
    pub round_trips: usize,
    pub wins: usize,
    pub win_rate: serde_json::Value,
}

impl Report {
    pub fn new(bt: &Backtest) -> Self {
        let (start, end) = (bt.start.unwrap_or(0), bt.end.unwrap_or(0));
        let c = &bt.collector;
        let mut strategies = BTreeMap::new();
        let mut totals = Totals {
            starting_cash: Decimal::ZERO,
            final_equity: Decimal::ZERO,
            total_return: Decimal::ZERO,
            fills: 0,
            fees: Decimal::ZERO,
            turnover: Decimal::ZERO,
        };
        for s in &bt.summary.strategies {
            let mut symbols: BTreeMap<String, SymbolReport> = BTreeMap::new();
            for (sym, x) in &s.symbols {
                let r = symbols.entry(sym.clone()).or_default();
                r.fees = x.fees;
                r.realized = x.realized;
                r.unrealized = x.unrealized;
                r.net_pnl = x.realized + x.unrealized - x.fees;
                r.position = x.position;
                r.last_price = x.last_price;
            }
            for t in c.trades.iter().filter(|t| t.fill.strategy == s.name) {
                let f = &t.fill;
                let r = symbols.entry(f.symbol.clone()).or_default();
                r.fills += 1;
                match f.side {
                    Side::Buy => {
                        r.buys += 1;
                        r.qty_bought += f.qty;
                    }
                    Side::Sell => {
                        r.sells += 1;
                        r.qty_sold += f.qty;
                    }
                }
                r.turnover += (f.qty * f.price).abs();
            }
            let (mut trips, mut wins) = (0, 0);
            for (sym, r) in symbols.iter_mut() {
                if let Some(tr) = c.trips.get(&(s.name.clone(), sym.clone())) {
                    r.round_trips = tr.closed.len();
                    r.wins = tr.closed.iter().filter(|p| **p > Decimal::ZERO).count();
                }
                r.win_rate = ratio(r.wins, r.round_trips);
                trips += r.round_trips;
                wins += r.wins;
            }
            let series = c.series(&s.name, start, end, s.equity);
            let dd = drawdown_stats(&series);
            let mut closes = vec![s.starting_cash];
            closes.extend(c.active_closes(&s.name));
            let rs = return_stats(&closes);
            let fills: u64 = symbols.values().map(|r| r.fills).sum();
            let fills_at_end = c
                .trades
                .iter()
                .filter(|t| t.fill.strategy == s.name && t.fill.order_id.ends_with(":end:o"))
                .count() as u64;
            let turnover: Decimal = symbols.values().map(|r| r.turnover).sum();
            totals.starting_cash += s.starting_cash;
            totals.final_equity += s.equity;
            totals.fills += fills;
            totals.fees += s.fees;
            totals.turnover += turnover;
            strategies.insert(
                s.name.clone(),
                StrategyReport {
                    kind: s.kind.clone(),
                    starting_cash: s.starting_cash,
                    final_equity: s.equity,
                    total_return: s.total_return,
                    realized: s.realized,
                    unrealized: s.unrealized,
                    fees: s.fees,
                    turnover,
                    fills,
                    fills_at_end,
                    round_trips: trips,
                    wins,
                    win_rate: ratio(wins, trips),
                    max_drawdown: dd.max_drawdown,
                    max_drawdown_peak: dd.peak_ts.map(format_ts),
                    max_drawdown_trough: dd.trough_ts.map(format_ts),
                    max_drawdown_recovery: dd.recovery_ts.map(format_ts),
                    max_drawdown_duration_s: secs(dd.max_drawdown_duration),
                    longest_drawdown_s: secs(dd.longest_drawdown),
                    max_drawdown_marked: s.max_drawdown,
                    daily_returns: rs.periods,
                    volatility: opt(rs.volatility),
                    sharpe: opt(rs.sharpe),
                    sortino: opt(rs.sortino),
                    symbols,
                },
            );
        }
        if !totals.starting_cash.is_zero() {
            totals.total_return =
                ((totals.final_equity - totals.starting_cash) / totals.starting_cash).round_dp(8);
        }
        Report {
            start: bt.start.map(format_ts),
            end: bt.end.map(format_ts),
            events: bt.events,
            inputs: bt.summary.inputs.clone(),
            total: totals,
            strategies,
            alerts: c.alerts.iter().fold(BTreeMap::new(), |mut by, a| {
                *by.entry(a.rule.clone()).or_default() += 1;
                by
            }),
        }
    }
}
