//! The report's statistics (docs/metrics.md), each worked out by hand on a
//! small example: seven daily marks and three closed round trips.

use papertrader::stats::{self, ClosedTrade, Mark};
use rust_decimal::Decimal;
use std::str::FromStr;

const DAY: i64 = 86_400_000_000_000;
const HOUR: i64 = 3_600_000_000_000;
/// 2024-01-01, a Monday, 00:00 UTC.
const MONDAY: i64 = 19_723 * DAY;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn close(got: Option<f64>, want: f64) -> bool {
    got.is_some_and(|g| ((g - want) / want).abs() < 1e-9)
}

/// Marks at 18:00 on Mon 1, Tue 2, Wed 3, Thu 4, Fri 5, Mon 8, Tue 9 January.
fn marks() -> Vec<Mark> {
    let days = [0, 1, 2, 3, 4, 7, 8];
    let equity = ["100", "101", "99", "100.5", "102", "101", "103"];
    let exposed = [false, true, true, true, false, true, true];
    days.iter()
        .zip(equity)
        .zip(exposed)
        .map(|((k, e), x)| Mark {
            ts: MONDAY + k * DAY + 18 * HOUR,
            equity: d(e),
            exposed: x,
        })
        .collect()
}

fn trades() -> Vec<ClosedTrade> {
    let t = |entry: i64, exit: i64, pnl: f64, ret: f64| ClosedTrade {
        entry_ts: MONDAY + entry * DAY,
        exit_ts: MONDAY + exit * DAY,
        pnl,
        ret,
    };
    // 2, 1 and 4 days long.
    vec![
        t(1, 3, 10.0, 0.05),
        t(3, 4, -4.0, -0.02),
        t(4, 8, 6.0, 0.03),
    ]
}

#[test]
fn equity_statistics_by_hand() {
    let st = stats::compute(d("100"), &marks(), &[]);
    // No mark on a weekend: 252 trading days a year.
    assert_eq!(st.periods_per_year, 252.0);
    // Exposure: 5 of the 7 marks hold a position.
    assert!(close(st.exposure, 5.0 / 7.0));
    assert_eq!(st.equity_peak, d("103"));
    assert_eq!(st.duration, 8 * DAY);
    // Daily returns: the first day's close (100, the starting cash) is the
    // base: 101/100 - 1, 99/101 - 1, 100.5/99 - 1, 102/100.5 - 1,
    // 101/102 - 1, 103/101 - 1 = 0.01, -0.0198020, 0.0151515, 0.0149254,
    // -0.0098039, 0.0198020.
    assert_eq!(st.daily_returns, 6);
    // Geometric mean g: the product of (1 + r) telescopes to 103/100, so
    // g = 1.03^(1/6) - 1 = 0.00493862; annualised (1 + g)^252 - 1 =
    // 1.03^42 - 1 = 2.46069589.
    assert!(close(st.return_ann, 1.03f64.powi(42) - 1.0));
    // Sample variance of r: mean 0.00667989, squared deviations summed over
    // n - 1 = 5; volatility (backtesting.py) =
    // sqrt((var + (1 + g)^2)^252 - (1 + g)^504) = 0.88874870.
    assert!(close(st.volatility_ann, 0.888_748_698_320_992_5), "{st:?}");
    // Sharpe (backtesting.py) = 2.46069589 / 0.88874870 = 2.76871955.
    assert!(close(st.sharpe, 2.768_719_547_134_567), "{st:?}");
    // Downside deviation sqrt((0.0198020^2 + 0.0098039^2) / 6) = 0.00902068;
    // Sortino (backtesting.py) = 2.46069589 / (0.00902068 * sqrt(252)) = 17.1837803.
    assert!(close(st.sortino, 17.183_780_325_955_777), "{st:?}");
    // quantstats: mean / sd * sqrt(252) = 5.00602536, mean / downside *
    // sqrt(252) = 8.87902015, sd * sqrt(252) = 0.25398685.
    assert!(close(st.sharpe_qs, 5.006_025_356_024_172), "{st:?}");
    assert!(close(st.sortino_qs, 8.879_020_147_326_45), "{st:?}");
    assert!(close(st.volatility_qs, 0.253_986_848_187_458_2), "{st:?}");
    // CAGR: 8 days are 8/365.25 years: 1.03^(365.25/8) - 1 = 2.85566720.
    assert!(close(st.cagr, 1.03f64.powf(365.25 / 8.0) - 1.0));
    // Drawdowns: 1 - 99/101 = 0.01980198 (Tue to Fri: 3 days under 101)
    // and 1 - 101/102 = 0.00980392 (Fri to the next Tue: 4 days under 102).
    assert!((st.max_drawdown - (1.0 - 99.0 / 101.0)).abs() < 1e-12);
    assert!(close(
        st.avg_drawdown,
        ((1.0 - 99.0 / 101.0) + (1.0 - 101.0 / 102.0)) / 2.0
    ));
    assert_eq!(st.max_drawdown_duration, Some(4 * DAY));
    assert!(close(st.avg_drawdown_duration, 3.5 * DAY as f64));
    // Calmar = 2.46069589 / 0.01980198 = 124.265143.
    assert!(close(
        st.calmar,
        (1.03f64.powi(42) - 1.0) / (1.0 - 99.0 / 101.0)
    ));
}

#[test]
fn trade_statistics_by_hand() {
    let st = stats::compute(d("100"), &marks(), &trades());
    assert_eq!(st.trades, 3);
    // Two of three trades won.
    assert!(close(st.win_rate, 2.0 / 3.0));
    assert!(close(st.best_trade, 0.05));
    assert!(close(st.worst_trade, -0.02));
    // Geometric mean of the returns: (1.05 * 0.98 * 1.03)^(1/3) - 1 = 0.01957114.
    assert!(close(st.avg_trade, (1.05f64 * 0.98 * 1.03).cbrt() - 1.0));
    assert_eq!(st.max_trade_duration, Some(4 * DAY));
    assert!(close(st.avg_trade_duration, 7.0 / 3.0 * DAY as f64));
    // Profit factor on returns: (0.05 + 0.03) / 0.02 = 4.
    assert!(close(st.profit_factor, 4.0));
    // Expectancy: (0.05 - 0.02 + 0.03) / 3 = 0.02.
    assert!(close(st.expectancy, 0.02));
    // SQN: P&L mean 4, deviations 6, -8, 2: sd = sqrt(104 / 2) = 7.2111026;
    // sqrt(3) * 4 / 7.2111026 = 0.96076892.
    assert!(close(st.sqn, 3f64.sqrt() * 4.0 / 52f64.sqrt()));
    // Kelly: w = 2/3, mean win 8, mean loss 4: 2/3 - (1/3) / (8/4) = 0.5.
    assert!(close(st.kelly, 0.5));
}

#[test]
fn undefined_statistics_are_none_and_weekends_mean_365_days() {
    // No trades, no marks: nothing but the defaults.
    let st = stats::compute(d("100"), &[], &[]);
    assert_eq!((st.trades, st.daily_returns), (0, 0));
    assert!(st.sharpe.is_none() && st.cagr.is_none() && st.exposure.is_none());
    // Only winners: no profit factor or Kelly (no losses to divide by).
    let win = ClosedTrade {
        entry_ts: 0,
        exit_ts: DAY,
        pnl: 1.0,
        ret: 0.01,
    };
    let st = stats::compute(d("100"), &[], &[win, win]);
    assert!(st.profit_factor.is_none() && st.kelly.is_none());
    // A zero deviation leaves SQN undefined.
    assert!(st.sqn.is_none());
    // Marks on all seven days of a week (crypto): 365 days a year.
    let week: Vec<Mark> = (0..7)
        .map(|k| Mark {
            ts: MONDAY + k * DAY,
            equity: d("100") + Decimal::from(k),
            exposed: true,
        })
        .collect();
    assert_eq!(stats::compute(d("100"), &week, &[]).periods_per_year, 365.0);
    // A first day that already moved the equity counts from the starting cash.
    let r = stats::daily_returns(d("100"), &week[1..3]);
    assert_eq!(r.len(), 2);
    assert!((r[0] - 0.01).abs() < 1e-12);
}
