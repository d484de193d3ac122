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
use serde_json::Value::Null;

use crate::account::Account;
use crate::config::Loaded;
use crate::domain::{AlertMsg, FillMsg, Output};
use crate::domain::{Side, Ts, NANOS_PER_SEC};
use crate::engine::Engine;
use crate::spill::{get_dec, get_str, get_ts, put_dec, put_str, put_ts, Record, Spill};
use crate::stats::{self, ClosedTrade, Mark};
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

impl Record for Trade {
    fn put(&self, out: &mut Vec<u8>) {
        self.fill.put(out);
        put_dec(out, &self.realized);
    }

    fn get(b: &mut &[u8]) -> Option<Self> {
        Some(Trade {
            fill: FillMsg::get(b)?,
            realized: get_dec(b)?,
        })
    }
}

impl Record for RoundTrip {
    fn put(&self, out: &mut Vec<u8>) {
        put_str(out, &self.strategy);
        put_str(out, &self.symbol);
        put_ts(out, self.entry_ts);
        put_ts(out, self.exit_ts);
        let d = [
            &self.size,
            &self.entry_price,
            &self.exit_price,
            &self.commission,
            &self.pnl,
            &self.return_pct,
        ];
        for d in d {
            put_dec(out, d);
        }
    }

    fn get(b: &mut &[u8]) -> Option<Self> {
        Some(RoundTrip {
            strategy: get_str(b)?,
            symbol: get_str(b)?,
            entry_ts: get_ts(b)?,
            exit_ts: get_ts(b)?,
            size: get_dec(b)?,
            entry_price: get_dec(b)?,
            exit_price: get_dec(b)?,
            commission: get_dec(b)?,
            pnl: get_dec(b)?,
            return_pct: get_dec(b)?,
        })
    }
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

/// Collects what the report needs from the engine's outputs.
#[derive(Debug)]
pub struct Collector {
    starting_cash: BTreeMap<String, Decimal>,
    /// The fills in output order (all but the last few thousand in a
    /// temporary file: [`Spill`]).
    pub trades: Spill<Trade>,
    /// Closed round trips in the order they closed (as `trades`).
    pub round_trips: Spill<RoundTrip>,
    open_trips: BTreeMap<(String, String), OpenTrip>,
    /// Per strategy: its equity at the end of every marking period
    /// (`report.mark_every`) in which its symbols had events.
    pub marks: BTreeMap<String, Vec<Mark>>,
    /// Replays the fills to attribute realized P&L to each one.
    books: BTreeMap<String, Account>,
    /// Per strategy: its symbols' events (ticks and sentiment) at the last mark.
    seen: BTreeMap<String, u64>,
    /// Per strategy: its symbols.
    symbols: BTreeMap<String, Vec<String>>,
    /// Each symbol's last price at its first mark, and at the last one.
    first_price: BTreeMap<String, Decimal>,
    last_price: BTreeMap<String, Decimal>,
    /// The alerts the run's `[[alerts.rules]]` fired, in output order.
    pub alerts: Vec<AlertMsg>,
    /// The run has alert rules (`alerts.csv` is written, empty or not).
    pub has_alert_rules: bool,
    /// The price chart's bars and indicator lines per symbol (report.html).
    pub prices: crate::price_bars::PriceBars,
    /// Per strategy: buy and hold of its symbols at every mark, starting
    /// cash split equally, each bought at its first marked price (cash until
    /// then): the curve beside the equity whose end is `buy_and_hold_return`.
    /// A chart's line, so `f64` (converted here, not when drawn: half the
    /// memory of a long run's curve).
    pub buy_hold: BTreeMap<String, Vec<(Ts, f64)>>,
}

impl Collector {
    pub fn new(cfg: &Loaded) -> Self {
        Collector {
            starting_cash: cfg
                .strategies
                .iter()
                .map(|s| (s.name.clone(), s.account.starting_cash))
                .collect(),
            trades: Spill::new(),
            round_trips: Spill::new(),
            open_trips: BTreeMap::new(),
            marks: BTreeMap::new(),
            books: BTreeMap::new(),
            seen: BTreeMap::new(),
            symbols: cfg
                .strategies
                .iter()
                .map(|s| (s.name.clone(), s.symbols.clone()))
                .collect(),
            first_price: BTreeMap::new(),
            last_price: BTreeMap::new(),
            alerts: Vec::new(),
            has_alert_rules: !cfg.app.alerts.rules.is_empty(),
            prices: crate::price_bars::PriceBars::default(),
            buy_hold: BTreeMap::new(),
        }
    }

    /// Take one engine output.
    pub fn push(&mut self, o: Output) {
        match o {
            Output::Fill(f) => self.fill(f),
            Output::Alert(a) => self.alerts.push(a),
            Output::Indicator(i) => self.prices.on_indicator(&i),
            _ => {}
        }
    }

    /// Mark every strategy whose symbols had events since its last mark, at
    /// `ts` (the end of a marking period). With `last`, the end of the run:
    /// a strategy without new events has the equity and exposure of its last
    /// mark brought up to date (what `exits.close_at_end` changed), its time
    /// left as it was.
    pub fn mark(&mut self, ts: Ts, engine: &Engine, last: bool) {
        for m in engine.marks() {
            let before = self.seen.insert(m.strategy.to_string(), m.events);
            let marks = self.marks.entry(m.strategy.to_string()).or_default();
            let mark = Mark {
                ts,
                equity: m.equity,
                exposed: m.exposed,
            };
            if m.events > before.unwrap_or(0) {
                marks.push(mark);
            } else if last {
                if let Some(l) = marks.last_mut() {
                    l.equity = m.equity;
                    l.exposed = m.exposed;
                }
            }
        }
        for symbols in self.symbols.values() {
            for sym in symbols {
                if let Some(p) = engine.last_price(sym) {
                    self.first_price.entry(sym.clone()).or_insert(p);
                    self.last_price.insert(sym.clone(), p);
                }
            }
        }
        let now: Vec<(String, Ts, f64)> = self
            .marks
            .iter()
            .filter_map(|(s, m)| Some((s.clone(), m.last()?.ts, to_f64(self.buy_hold_value(s)))))
            .collect();
        for (strategy, ts, value) in now {
            let curve = self.buy_hold.entry(strategy).or_default();
            match curve.last_mut() {
                Some(l) if l.0 == ts => l.1 = value,
                _ => curve.push((ts, value)),
            }
        }
    }

    /// Buy and hold of `strategy`'s symbols now: the starting cash times the
    /// mean of last price over first among its symbols with prices (the
    /// starting cash before any has one), so that the curve ends at
    /// [`Collector::buy_and_hold`].
    fn buy_hold_value(&self, strategy: &str) -> Decimal {
        let cash = self
            .starting_cash
            .get(strategy)
            .copied()
            .unwrap_or_default();
        let symbols = self.symbols.get(strategy).map_or(&[][..], Vec::as_slice);
        let ratios: Vec<Decimal> = symbols
            .iter()
            .filter_map(|s| {
                let (a, b) = (self.first_price.get(s)?, self.last_price.get(s)?);
                (!a.is_zero()).then(|| *b / *a)
            })
            .collect();
        if ratios.is_empty() {
            return cash;
        }
        cash * (ratios.iter().sum::<Decimal>() / Decimal::from(ratios.len()))
    }

    /// The buy-and-hold return of a strategy's symbols from the first mark to
    /// the last: the mean of `last / first - 1` over those with prices.
    pub fn buy_and_hold(&self, strategy: &str) -> Option<f64> {
        let r: Vec<f64> = self
            .symbols
            .get(strategy)?
            .iter()
            .filter_map(|s| {
                let (a, b) = (self.first_price.get(s)?, self.last_price.get(s)?);
                (!a.is_zero()).then(|| to_f64(*b / *a) - 1.0)
            })
            .collect();
        (!r.is_empty()).then(|| r.iter().sum::<f64>() / r.len() as f64)
    }

    fn fill(&mut self, f: FillMsg) {
        let book = self
            .books
            .entry(f.strategy.clone())
            .or_insert_with(|| Account::new(Decimal::ZERO));
        let before = book
            .positions
            .get(&f.symbol)
            .map_or(Decimal::ZERO, |p| p.realized);
        book.apply_fill(&f.symbol, f.side, f.qty, f.price, f.fee);
        let realized = book.positions[&f.symbol].realized - before;
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

    /// The equity series of a strategy for the report: its starting cash at
    /// its first mark's time (`start` without marks), then its marks (or,
    /// without any, its final equity at `end`). Drawdown durations are so
    /// measured as the statistics measure them (`stats::compute`).
    pub fn series(
        &self,
        strategy: &str,
        start: Ts,
        end: Ts,
        final_equity: Decimal,
    ) -> Vec<(Ts, Decimal)> {
        self.series_iter(strategy, start, end, final_equity)
            .collect()
    }

    /// [`Collector::series`] point by point, without a copy of the marks (a
    /// long run's report reads its curve this way).
    pub fn series_iter<'a>(
        &'a self,
        strategy: &str,
        start: Ts,
        end: Ts,
        final_equity: Decimal,
    ) -> impl Iterator<Item = (Ts, Decimal)> + Clone + 'a {
        let marks = self.marks.get(strategy).map_or(&[][..], Vec::as_slice);
        let cash = self
            .starting_cash
            .get(strategy)
            .copied()
            .unwrap_or_default();
        let first = (marks.first().map_or(start, |m| m.ts), cash);
        let last = marks.is_empty().then_some((end, final_equity));
        std::iter::once(first)
            .chain(marks.iter().map(|m| (m.ts, m.equity)))
            .chain(last)
    }

    /// The closed round trips of `strategy` (and of `symbol`, if given) as
    /// the statistics take them.
    pub fn closed_trades(&self, strategy: &str, symbol: Option<&str>) -> Vec<ClosedTrade> {
        self.round_trips
            .iter()
            .filter(|r| r.strategy == strategy && symbol.is_none_or(|s| r.symbol == s))
            .map(|r| r.closed())
            .collect()
    }
}

impl RoundTrip {
    fn closed(&self) -> ClosedTrade {
        ClosedTrade {
            entry_ts: self.entry_ts,
            exit_ts: self.exit_ts,
            pnl: to_f64(self.pnl),
            ret: to_f64(self.return_pct),
        }
    }
}

fn to_f64(d: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    d.to_f64().unwrap_or(f64::NAN)
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
    with_drawdowns(series.iter().copied())
        .map(|(_, _, dd)| dd)
        .collect()
}

/// Each point of `series` with its drawdown (as [`drawdowns`]), point by point.
pub fn with_drawdowns(
    series: impl Iterator<Item = (Ts, Decimal)>,
) -> impl Iterator<Item = (Ts, Decimal, Decimal)> {
    let mut peak: Option<Decimal> = None;
    series.map(move |(t, e)| {
        let p = peak.map_or(e, |p| p.max(e));
        peak = Some(p);
        (t, e, fraction_below(p, e))
    })
}

fn fraction_below(peak: Decimal, e: Decimal) -> Decimal {
    if peak <= Decimal::ZERO || e >= peak {
        Decimal::ZERO
    } else {
        ((peak - e) / peak).round_dp(10)
    }
}

/// Max drawdown, when it happened, how long it lasted, and the longest time under water.
pub fn drawdown_stats<P: std::borrow::Borrow<(Ts, Decimal)>>(
    series: impl IntoIterator<Item = P>,
) -> DrawdownStats {
    let mut st = DrawdownStats::default();
    let mut points = series.into_iter().map(|p| *p.borrow()).peekable();
    let Some(&(t0, e0)) = points.peek() else {
        return st;
    };
    let mut end = t0;
    let (mut peak, mut peak_ts) = (e0, t0);
    let mut under = false;
    for (ts, e) in points {
        end = ts;
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
    secs_f(ns as f64)
}

fn secs_f(ns: f64) -> serde_json::Value {
    fixed(ns / NANOS_PER_SEC as f64, 3)
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
    /// Over every strategy's closed round trips.
    #[serde(flatten)]
    pub trades: TradeStats,
}

/// The statistics of closed round trips (docs/metrics.md).
#[derive(Debug, Clone, Serialize)]
pub struct TradeStats {
    pub round_trips: usize,
    pub wins: usize,
    pub win_rate: serde_json::Value,
    pub best_trade: serde_json::Value,
    pub worst_trade: serde_json::Value,
    pub avg_trade: serde_json::Value,
    pub max_trade_duration_s: serde_json::Value,
    pub avg_trade_duration_s: serde_json::Value,
    pub profit_factor: serde_json::Value,
    pub expectancy: serde_json::Value,
    pub sqn: serde_json::Value,
    pub kelly: serde_json::Value,
}

impl TradeStats {
    fn of(trades: &[ClosedTrade]) -> Self {
        let st = stats::compute(Decimal::ZERO, &[], trades);
        TradeStats {
            round_trips: st.trades,
            wins: trades.iter().filter(|t| t.pnl > 0.0).count(),
            win_rate: opt(st.win_rate),
            best_trade: opt(st.best_trade),
            worst_trade: opt(st.worst_trade),
            avg_trade: opt(st.avg_trade),
            max_trade_duration_s: st.max_trade_duration.map_or(Null, secs),
            avg_trade_duration_s: st.avg_trade_duration.map_or(Null, secs_f),
            profit_factor: opt(st.profit_factor),
            expectancy: opt(st.expectancy),
            sqn: opt(st.sqn),
            kelly: opt(st.kelly),
        }
    }
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
    #[serde(flatten)]
    pub trades: TradeStats,
    /// Fraction of the equity marks with a position open.
    pub exposure: serde_json::Value,
    pub equity_peak: Decimal,
    /// Buy-and-hold return of its symbols over the marks (mean over symbols).
    pub buy_and_hold_return: serde_json::Value,
    /// From the equity marks (`report.mark_every`), with the starting cash first.
    pub marks: usize,
    pub max_drawdown: Decimal,
    pub max_drawdown_peak: Option<String>,
    pub max_drawdown_trough: Option<String>,
    pub max_drawdown_recovery: Option<String>,
    pub max_drawdown_duration_s: serde_json::Value,
    pub longest_drawdown_s: serde_json::Value,
    pub avg_drawdown: serde_json::Value,
    pub avg_drawdown_duration_s: serde_json::Value,
    /// The account's own max drawdown, marked at every tick (finer than the marks).
    pub max_drawdown_marked: Decimal,
    /// Daily returns (UTC days with marks) and the trading days per year.
    pub daily_returns: usize,
    pub periods_per_year: serde_json::Value,
    pub cagr: serde_json::Value,
    /// backtesting.py's conventions (geometric): annualised return and
    /// volatility, Sharpe, Sortino, Calmar.
    pub return_ann: serde_json::Value,
    pub volatility_ann: serde_json::Value,
    pub sharpe_bt: serde_json::Value,
    pub sortino_bt: serde_json::Value,
    pub calmar: serde_json::Value,
    /// quantstats' conventions (arithmetic mean, sample deviation).
    pub volatility: serde_json::Value,
    pub sharpe: serde_json::Value,
    pub sortino: serde_json::Value,
    pub symbols: BTreeMap<String, SymbolReport>,
}

#[derive(Debug, Clone, Serialize)]
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
    #[serde(flatten)]
    pub trades: TradeStats,
}

impl Default for SymbolReport {
    fn default() -> Self {
        SymbolReport {
            fills: 0,
            buys: 0,
            sells: 0,
            qty_bought: Decimal::ZERO,
            qty_sold: Decimal::ZERO,
            turnover: Decimal::ZERO,
            fees: Decimal::ZERO,
            realized: Decimal::ZERO,
            unrealized: Decimal::ZERO,
            net_pnl: Decimal::ZERO,
            position: Decimal::ZERO,
            last_price: Decimal::ZERO,
            trades: TradeStats::of(&[]),
        }
    }
}

/// The report of each symbol of strategy `s`.
fn symbol_reports(
    c: &Collector,
    s: &crate::summary::StrategySummary,
) -> BTreeMap<String, SymbolReport> {
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
    for (sym, r) in symbols.iter_mut() {
        r.trades = TradeStats::of(&c.closed_trades(&s.name, Some(sym)));
    }
    symbols
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
            trades: TradeStats::of(&[]),
        };
        let mut all_trades = Vec::new();
        for s in &bt.summary.strategies {
            let symbols = symbol_reports(c, s);
            let trades = c.closed_trades(&s.name, None);
            let marks = c.marks.get(&s.name).map_or(&[][..], Vec::as_slice);
            let st = stats::compute(s.starting_cash, marks, &trades);
            all_trades.extend(trades.iter().copied());
            let dd = drawdown_stats(c.series_iter(&s.name, start, end, s.equity));
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
                    trades: TradeStats::of(&trades),
                    exposure: opt(st.exposure),
                    equity_peak: st.equity_peak,
                    buy_and_hold_return: opt(c.buy_and_hold(&s.name)),
                    marks: marks.len(),
                    max_drawdown: dd.max_drawdown,
                    max_drawdown_peak: dd.peak_ts.map(format_ts),
                    max_drawdown_trough: dd.trough_ts.map(format_ts),
                    max_drawdown_recovery: dd.recovery_ts.map(format_ts),
                    max_drawdown_duration_s: secs(dd.max_drawdown_duration),
                    longest_drawdown_s: secs(dd.longest_drawdown),
                    avg_drawdown: opt(st.avg_drawdown),
                    avg_drawdown_duration_s: st.avg_drawdown_duration.map_or(Null, secs_f),
                    max_drawdown_marked: s.max_drawdown,
                    daily_returns: st.daily_returns,
                    periods_per_year: fixed(st.periods_per_year, 0),
                    cagr: opt(st.cagr),
                    return_ann: opt(st.return_ann),
                    volatility_ann: opt(st.volatility_ann),
                    sharpe_bt: opt(st.sharpe),
                    sortino_bt: opt(st.sortino),
                    calmar: opt(st.calmar),
                    volatility: opt(st.volatility_qs),
                    sharpe: opt(st.sharpe_qs),
                    sortino: opt(st.sortino_qs),
                    symbols,
                },
            );
        }
        totals.trades = TradeStats::of(&all_trades);
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
