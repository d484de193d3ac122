//! Backtest statistics from an equity series marked on a cadence and the
//! closed round trips: what backtesting.py's `compute_stats` reports, with the
//! same formulas, plus the quantstats conventions of Sharpe, Sortino and
//! volatility. Every formula is in docs/metrics.md.
//!
//! Money stays `Decimal` up to here; statistics are `f64`. `None` where a
//! statistic is undefined (no returns, a zero deviation, no losing trade),
//! where backtesting.py reports NaN or infinity.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::domain::Ts;

const NANOS_PER_DAY: Ts = 86_400_000_000_000;

/// The equity of a strategy at the end of a marking period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    /// The time of the period's last event.
    pub ts: Ts,
    pub equity: Decimal,
    /// The strategy held a position in any symbol.
    pub exposed: bool,
}

/// A closed round trip as the statistics need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClosedTrade {
    pub entry_ts: Ts,
    pub exit_ts: Ts,
    /// Net of commissions.
    pub pnl: f64,
    /// `pnl / (|size| * entry price)`.
    pub ret: f64,
}

/// The statistics of one strategy (docs/metrics.md, "Statistics").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// From the first mark to the last, in ns.
    pub duration: Ts,
    /// Fraction of the marks at which a position was held.
    pub exposure: Option<f64>,
    pub equity_peak: Decimal,
    /// Trading days per year used to annualise: 365 when more than 60 % of
    /// 2/7 of the marks fall on a weekend (markets that trade every day), else 252.
    pub periods_per_year: f64,
    /// Number of daily returns.
    pub daily_returns: usize,
    /// backtesting.py: `(1 + g)^D - 1`, `g` the geometric mean daily return.
    pub return_ann: Option<f64>,
    /// backtesting.py: `sqrt((var + (1 + g)^2)^D - (1 + g)^(2D))`.
    pub volatility_ann: Option<f64>,
    /// `(final / starting cash)^(1 / years) - 1`, years of 365.25 days.
    pub cagr: Option<f64>,
    /// backtesting.py: `return_ann / volatility_ann`.
    pub sharpe: Option<f64>,
    /// backtesting.py: `return_ann / (sqrt(mean(min(r, 0)^2)) * sqrt(D))`.
    pub sortino: Option<f64>,
    /// `return_ann / max_drawdown`.
    pub calmar: Option<f64>,
    /// quantstats: `mean / sd * sqrt(D)` (sample sd).
    pub sharpe_qs: Option<f64>,
    /// quantstats: `mean / sqrt(sum(min(r, 0)^2) / n) * sqrt(D)`.
    pub sortino_qs: Option<f64>,
    /// quantstats: `sd * sqrt(D)`.
    pub volatility_qs: Option<f64>,
    /// Largest `1 - equity / running peak`.
    pub max_drawdown: f64,
    /// Mean of the deepest point of each drawdown.
    pub avg_drawdown: Option<f64>,
    /// Longest and mean drawdown, peak to recovery (or to the last mark), ns.
    pub max_drawdown_duration: Option<Ts>,
    pub avg_drawdown_duration: Option<f64>,
    pub trades: usize,
    pub win_rate: Option<f64>,
    pub best_trade: Option<f64>,
    pub worst_trade: Option<f64>,
    /// Geometric mean of the trades' returns.
    pub avg_trade: Option<f64>,
    /// ns.
    pub max_trade_duration: Option<Ts>,
    pub avg_trade_duration: Option<f64>,
    /// Sum of winning returns over the sum of losing ones (backtesting.py
    /// takes returns, not P&L).
    pub profit_factor: Option<f64>,
    /// Arithmetic mean of the trades' returns.
    pub expectancy: Option<f64>,
    /// `sqrt(n) * mean(pnl) / sd(pnl)`.
    pub sqn: Option<f64>,
    /// `w - (1 - w) / (mean win / mean loss)`, P&L.
    pub kelly: Option<f64>,
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// backtesting.py's `geometric_mean`: `exp(mean(ln(1 + r))) - 1`, zero when
/// some `1 + r <= 0`, `None` without returns.
pub fn geometric_mean(r: &[f64]) -> Option<f64> {
    if r.is_empty() {
        return None;
    }
    if r.iter().any(|x| 1.0 + x <= 0.0) {
        return Some(0.0);
    }
    let s: f64 = r.iter().map(|x| (1.0 + x).ln()).sum();
    finite((s / r.len() as f64).exp() - 1.0)
}

fn mean(x: &[f64]) -> Option<f64> {
    (!x.is_empty()).then(|| x.iter().sum::<f64>() / x.len() as f64)
}

/// Sample variance (n - 1); `None` below two values.
fn variance(x: &[f64]) -> Option<f64> {
    let m = mean(x)?;
    (x.len() >= 2).then(|| x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => finite(a / b),
        _ => None,
    }
}

/// Day of the week of `ts`, Monday 0 (1970-01-01 was a Thursday).
fn weekday(ts: Ts) -> i64 {
    (ts.div_euclid(NANOS_PER_DAY) + 3).rem_euclid(7)
}

/// The daily returns of the marks: the last equity of each UTC day with
/// marks, as simple returns. The first base is the first day's close, or the
/// starting cash when the first day already moved the equity.
pub fn daily_returns(starting_cash: Decimal, marks: &[Mark]) -> Vec<f64> {
    let mut closes: Vec<Decimal> = Vec::new();
    let mut day = None;
    for m in marks {
        let d = m.ts.div_euclid(NANOS_PER_DAY);
        if day == Some(d) {
            *closes.last_mut().expect("a close per day seen") = m.equity;
        } else {
            closes.push(m.equity);
            day = Some(d);
        }
    }
    if closes.first().is_some_and(|c| *c != starting_cash) {
        closes.insert(0, starting_cash);
    }
    closes
        .windows(2)
        .filter(|w| !w[0].is_zero())
        .map(|w| f(w[1]) / f(w[0]) - 1.0)
        .collect()
}

/// The civil (proleptic Gregorian) year and month of `ts`, UTC (Howard
/// Hinnant's `civil_from_days`).
pub fn year_month(ts: Ts) -> (i64, u32) {
    let z = ts.div_euclid(NANOS_PER_DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// The return of every calendar month (UTC) with marks: its last mark over
/// the last mark before it (the starting cash for the first month).
pub fn monthly_returns(starting_cash: Decimal, marks: &[Mark]) -> Vec<((i64, u32), f64)> {
    let mut closes: Vec<((i64, u32), Decimal)> = Vec::new();
    for m in marks {
        let ym = year_month(m.ts);
        match closes.last_mut() {
            Some((k, e)) if *k == ym => *e = m.equity,
            _ => closes.push((ym, m.equity)),
        }
    }
    let mut base = starting_cash;
    closes
        .into_iter()
        .map(|(ym, e)| {
            let r = if base.is_zero() {
                f64::NAN
            } else {
                f(e) / f(base) - 1.0
            };
            base = e;
            (ym, r)
        })
        .collect()
}

/// Drawdown episodes of `series` as backtesting.py finds them: between two
/// consecutive points at a running peak (or the last point) with points
/// under water between them; each as (duration in ns, deepest drawdown).
fn drawdown_episodes(series: impl Iterator<Item = (Ts, f64)>) -> (f64, Vec<(Ts, f64)>) {
    // One pass, nothing held per point (a long run's curve is not copied):
    // `open` is the last point at a peak (drawdown exactly 0), with the
    // deepest drawdown since it (a fold from 0.0 with `f64::max`, in order);
    // an episode runs from one such point to the next more than one point
    // later, or to the last point.
    let mut peak = f64::NEG_INFINITY;
    let mut max = 0.0f64;
    let mut episodes = Vec::new();
    let mut open: Option<(usize, Ts, f64)> = None;
    let mut last: Option<(usize, Ts, f64)> = None;
    for (i, (t, e)) in series.enumerate() {
        peak = peak.max(e);
        let dd = 1.0 - e / peak;
        if dd.is_finite() {
            max = f64::max(max, dd);
        }
        if let Some(o) = &mut open {
            o.2 = f64::max(o.2, dd);
        }
        if dd == 0.0 {
            if let Some((a, ta, deepest)) = open {
                if i > a + 1 {
                    episodes.push((t - ta, deepest));
                }
            }
            open = Some((i, t, f64::max(0.0, dd)));
        }
        last = Some((i, t, dd));
    }
    if let (Some((a, ta, deepest)), Some((l, tl, dd))) = (open, last) {
        if dd != 0.0 && l > a + 1 {
            episodes.push((tl - ta, deepest));
        }
    }
    (max, episodes)
}

/// The statistics of a strategy from its starting cash, its equity marks in
/// time order and its closed round trips in closing order. Drawdowns are taken
/// over the starting cash followed by the marks.
pub fn compute(starting_cash: Decimal, marks: &[Mark], trades: &[ClosedTrade]) -> Stats {
    let mut st = Stats {
        periods_per_year: 252.0,
        equity_peak: starting_cash,
        ..Stats::default()
    };
    if let (Some(a), Some(b)) = (marks.first(), marks.last()) {
        st.duration = b.ts - a.ts;
        let exposed = marks.iter().filter(|m| m.exposed).count();
        st.exposure = Some(exposed as f64 / marks.len() as f64);
        let weekend = marks.iter().filter(|m| weekday(m.ts) >= 5).count();
        if weekend as f64 / marks.len() as f64 > 2.0 / 7.0 * 0.6 {
            st.periods_per_year = 365.0;
        }
    }
    for m in marks {
        st.equity_peak = st.equity_peak.max(m.equity);
    }
    equity_stats(&mut st, starting_cash, marks);
    trade_stats(&mut st, trades);
    st
}

fn equity_stats(st: &mut Stats, cash: Decimal, marks: &[Mark]) {
    let d = st.periods_per_year;
    let r = daily_returns(cash, marks);
    st.daily_returns = r.len();
    let g = geometric_mean(&r);
    st.return_ann = g.and_then(|g| finite((1.0 + g).powf(d) - 1.0));
    st.volatility_ann = match (g, variance(&r)) {
        (Some(g), Some(var)) => {
            finite(((var + (1.0 + g).powi(2)).powf(d) - (1.0 + g).powf(2.0 * d)).sqrt())
        }
        _ => None,
    };
    let final_equity = marks.last().map_or(cash, |m| m.equity);
    let years = st.duration as f64 / NANOS_PER_DAY as f64 / 365.25;
    if years > 0.0 && !cash.is_zero() {
        st.cagr = finite((f(final_equity) / f(cash)).powf(1.0 / years) - 1.0);
    }
    st.sharpe = ratio(st.return_ann, st.volatility_ann);
    let downside = mean(&r.iter().map(|x| x.min(0.0).powi(2)).collect::<Vec<_>>());
    st.sortino = ratio(st.return_ann, downside.map(|m| m.sqrt() * d.sqrt()));
    let (m, sd) = (mean(&r), variance(&r).map(f64::sqrt));
    st.volatility_qs = sd.map(|s| s * d.sqrt());
    st.sharpe_qs = ratio(m, sd).map(|x| x * d.sqrt());
    st.sortino_qs = ratio(m, downside.map(f64::sqrt)).map(|x| x * d.sqrt());

    let series = std::iter::once((marks.first().map_or(0, |m| m.ts), f(cash)))
        .chain(marks.iter().map(|m| (m.ts, f(m.equity))));
    let (max, episodes) = drawdown_episodes(series);
    st.max_drawdown = max;
    st.calmar = ratio(st.return_ann, Some(max));
    let deepest: Vec<f64> = episodes.iter().map(|e| e.1).collect();
    st.avg_drawdown = mean(&deepest);
    st.max_drawdown_duration = episodes.iter().map(|e| e.0).max();
    st.avg_drawdown_duration = mean(&episodes.iter().map(|e| e.0 as f64).collect::<Vec<_>>());
}

fn trade_stats(st: &mut Stats, trades: &[ClosedTrade]) {
    let n = trades.len();
    st.trades = n;
    if n == 0 {
        return;
    }
    let pnl: Vec<f64> = trades.iter().map(|t| t.pnl).collect();
    let ret: Vec<f64> = trades.iter().map(|t| t.ret).collect();
    let wins: Vec<f64> = pnl.iter().copied().filter(|p| *p > 0.0).collect();
    let losses: Vec<f64> = pnl.iter().copied().filter(|p| *p < 0.0).collect();
    let w = wins.len() as f64 / n as f64;
    st.win_rate = Some(w);
    st.best_trade = ret.iter().copied().reduce(f64::max);
    st.worst_trade = ret.iter().copied().reduce(f64::min);
    st.avg_trade = geometric_mean(&ret);
    let durations: Vec<Ts> = trades.iter().map(|t| t.exit_ts - t.entry_ts).collect();
    st.max_trade_duration = durations.iter().copied().max();
    st.avg_trade_duration = mean(&durations.iter().map(|&d| d as f64).collect::<Vec<_>>());
    let up: f64 = ret.iter().filter(|r| **r > 0.0).sum();
    let down: f64 = ret.iter().filter(|r| **r < 0.0).sum::<f64>().abs();
    st.profit_factor = ratio(Some(up), Some(down));
    st.expectancy = mean(&ret);
    st.sqn = ratio(mean(&pnl), variance(&pnl).map(f64::sqrt)).map(|x| x * (n as f64).sqrt());
    let payoff = ratio(mean(&wins), mean(&losses).map(|l| -l));
    st.kelly = payoff.and_then(|b| finite(w - (1.0 - w) / b));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The episodes as backtesting.py's `_compute_drawdown_duration_peaks`
    /// finds them, over a whole drawdown array (the form `drawdown_episodes`
    /// had before it became one pass).
    fn episodes_by_array(series: &[(Ts, f64)]) -> (f64, Vec<(Ts, f64)>) {
        let mut peak = f64::NEG_INFINITY;
        let dd: Vec<f64> = series
            .iter()
            .map(|&(_, e)| {
                peak = peak.max(e);
                1.0 - e / peak
            })
            .collect();
        let max = dd
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(0.0, f64::max);
        let mut at_peak: Vec<usize> = (0..dd.len()).filter(|&i| dd[i] == 0.0).collect();
        if let Some(last) = dd.len().checked_sub(1) {
            if at_peak.last() != Some(&last) {
                at_peak.push(last);
            }
        }
        let episodes = at_peak
            .windows(2)
            .filter(|w| w[1] > w[0] + 1)
            .map(|w| {
                let deepest = dd[w[0]..=w[1]].iter().copied().fold(0.0, f64::max);
                (series[w[1]].0 - series[w[0]].0, deepest)
            })
            .collect();
        (max, episodes)
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn one_pass_episodes_equal_the_array_form(
            eq in proptest::collection::vec(prop_oneof![-3i64..=50, Just(0)], 0..60)
        ) {
            let series: Vec<(Ts, f64)> =
                eq.iter().enumerate().map(|(i, &e)| (i as Ts * 7, (e as f64) / 4.0)).collect();
            let (m1, e1) = drawdown_episodes(series.iter().copied());
            let (m2, e2) = episodes_by_array(&series);
            prop_assert_eq!(m1.to_bits(), m2.to_bits());
            prop_assert_eq!(e1.len(), e2.len());
            for (a, b) in e1.iter().zip(&e2) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }
    }

    #[test]
    fn geometric_mean_by_hand() {
        // (1.1 * 0.9)^(1/2) - 1 = sqrt(0.99) - 1 = -0.0050125629
        let g = geometric_mean(&[0.1, -0.1]).unwrap();
        assert!((g - (-0.005_012_562_9)).abs() < 1e-9, "{g}");
        assert_eq!(geometric_mean(&[0.1, -1.0]), Some(0.0));
        assert_eq!(geometric_mean(&[]), None);
    }

    #[test]
    fn civil_months() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(-1), (1969, 12));
        // 2024-02-29 (a leap day) and 2024-03-01.
        assert_eq!(year_month(19_782 * NANOS_PER_DAY), (2024, 2));
        assert_eq!(year_month(19_783 * NANOS_PER_DAY), (2024, 3));
        // 2000-12-31T23:59:59.999999999
        assert_eq!(year_month(11_323 * NANOS_PER_DAY - 1), (2000, 12));
    }

    #[test]
    fn monthly_returns_by_hand() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let at = |days: i64, e: &str| Mark {
            ts: days * NANOS_PER_DAY,
            equity: d(e),
            exposed: true,
        };
        // January 1970: 100 -> 110 (10 %); February: 110 -> 99 (-10 %);
        // April (no March): 99 -> 108.9 (10 %).
        let marks = [at(0, "105"), at(30, "110"), at(40, "99"), at(95, "108.9")];
        let r = monthly_returns(d("100"), &marks);
        let keys: Vec<_> = r.iter().map(|x| x.0).collect();
        assert_eq!(keys, [(1970, 1), (1970, 2), (1970, 4)]);
        for (got, want) in r.iter().map(|x| x.1).zip([0.1, -0.1, 0.1]) {
            assert!((got - want).abs() < 1e-12, "{got}");
        }
    }

    #[test]
    fn weekdays() {
        assert_eq!(weekday(0), 3); // 1970-01-01, a Thursday
        assert_eq!(weekday(2 * NANOS_PER_DAY), 5); // Saturday
        assert_eq!(weekday(-NANOS_PER_DAY), 2); // Wednesday
    }
}
