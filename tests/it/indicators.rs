//! Golden and property tests for `papertrader::indicators`.
//!
//! The golden tests replay the real daily bars in
//! `data/aapl_msft_daily_2011_2013.csv` through every indicator and compare
//! each output with `tests/fixtures/indicators_reference.csv`, which
//! `scripts/reference_indicators.py` computed independently (TA-Lib's C
//! library for the TA-Lib indicators, pandas/numpy for the rest). Warm-up must
//! match exactly (value vs no value on every bar) and every value must agree
//! within `REL_TOL`.

use std::collections::HashMap;

use chrono::NaiveDate;
use papertrader::domain::Ts;
use papertrader::indicators::{
    Atr, Bollinger, Ema, Macd, Rsi, Sma, TimeEma, TimeSma, Vwap, ZScore,
};
use proptest::prelude::*;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/aapl_msft_daily_2011_2013.csv"
);
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/indicators_reference.csv"
);

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// Relative tolerance for golden values.
///
/// Both sides are double precision but round differently: TA-Lib keeps naive
/// running sums (and its BBANDS variance is `E[x^2] - E[x]^2`, which loses
/// about `log10(mean^2 / variance)` ~ 4 digits on these prices), pandas'
/// rolling sums are Kahan-compensated, the z-score and time EMA references
/// are brute-force/closed-form evaluations. The observed disagreement is
/// ~1e-12 relative or better; 1e-9 leaves three orders of margin while still
/// catching any real formula, seeding or alignment difference (those show up
/// at 1e-3 or worse).
const REL_TOL: f64 = 1e-9;

/// Columns that cross or approach zero (MACD, histogram, %b, z-score, RSI)
/// cannot be compared relatively near 0: for them the tolerance is
/// `REL_TOL * max(|expected|, 1)`, i.e. an absolute floor of 1e-9. Their
/// rounding errors are absolute and of order `price * 1e-16 * steps`, far
/// below that floor.
const NEAR_ZERO_SCALE: f64 = 1.0;

#[derive(Debug, Clone)]
struct Bar {
    ticker: String,
    date: String,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

fn bars() -> Vec<Bar> {
    let mut rdr = csv::Reader::from_path(DATA).expect("open data file");
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (t, d, h, l, c, v) = (
        col("Ticker"),
        col("Date"),
        col("High"),
        col("Low"),
        col("Close"),
        col("Volume"),
    );
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            let num = |i: usize| r[i].parse::<f64>().unwrap();
            Bar {
                ticker: r[t].to_string(),
                date: r[d].to_string(),
                high: num(h),
                low: num(l),
                close: num(c),
                volume: num(v),
            }
        })
        .collect()
}

fn bar_ts(date: &str) -> Ts {
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_nanos_opt()
        .unwrap()
}

struct Fixture {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Fixture {
    fn load() -> Self {
        let mut rdr = csv::Reader::from_path(FIXTURE).expect("open fixture");
        let headers = rdr.headers().unwrap().iter().map(String::from).collect();
        let rows = rdr
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        Self { headers, rows }
    }

    fn column(&self, name: &str) -> Vec<Option<f64>> {
        let i = self
            .headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("fixture has no column {name}"));
        self.rows
            .iter()
            .map(|r| (!r[i].is_empty()).then(|| r[i].parse().unwrap()))
            .collect()
    }

    fn text(&self, name: &str) -> Vec<String> {
        let i = self.headers.iter().position(|h| h == name).unwrap();
        self.rows.iter().map(|r| r[i].clone()).collect()
    }
}

/// Compare one computed column with the reference; returns the worst error
/// relative to the tolerance's scale, panics with the first mismatches.
fn compare(name: &str, bars: &[Bar], got: &[Option<f64>], want: &[Option<f64>], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let mut failures = Vec::new();
    let mut worst: f64 = 0.0;
    let mut warm = 0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let where_ = format!("{} {} {}", name, bars[i].ticker, bars[i].date);
        match (g, w) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                warm += 1;
                let scale = w.abs().max(floor);
                let err = (g - w).abs() / scale;
                worst = worst.max(err);
                if err.is_nan() || err > REL_TOL {
                    failures.push(format!(
                        "{where_}: got {g:.17e}, want {w:.17e} (rel {err:.2e})"
                    ));
                }
            }
            (Some(g), None) => failures.push(format!("{where_}: got {g} but reference not warm")),
            (None, Some(w)) => failures.push(format!("{where_}: not warm but reference has {w}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches in {name}, first:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(warm > 100, "{name}: only {warm} warm values compared");
    println!("{name:>28}: {warm:4} values, worst error {worst:.2e} of scale");
    worst
}

/// Run `f` over each ticker's bars in file order (fresh state per ticker),
/// giving one output per bar.
fn per_ticker<T>(
    bars: &[Bar],
    mut make: impl FnMut() -> T,
    mut f: impl FnMut(&mut T, &Bar) -> Option<f64>,
) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(bars.len());
    let mut state: Option<(String, T)> = None;
    for bar in bars {
        if state
            .as_ref()
            .map(|(t, _)| t != &bar.ticker)
            .unwrap_or(true)
        {
            state = Some((bar.ticker.clone(), make()));
        }
        let (_, s) = state.as_mut().unwrap();
        out.push(f(s, bar));
    }
    out
}

#[test]
fn fixture_rows_line_up_with_the_data() {
    let bars = bars();
    let fx = Fixture::load();
    assert_eq!(bars.len(), fx.rows.len());
    assert!(bars.len() > 1000);
    let tickers = fx.text("ticker");
    let dates = fx.text("date");
    let ts = fx.column("ts_ns");
    for (i, bar) in bars.iter().enumerate() {
        assert_eq!(bar.ticker, tickers[i]);
        assert_eq!(bar.date, dates[i]);
        assert_eq!(bar_ts(&bar.date) as f64, ts[i].unwrap());
    }
}

#[test]
fn golden_sma_ema() {
    let bars = bars();
    let fx = Fixture::load();
    for n in [5, 20, 50] {
        let got = per_ticker(&bars, || Sma::new(n), |s, b| s.update(b.close));
        compare(
            &format!("sma_{n}"),
            &bars,
            &got,
            &fx.column(&format!("sma_{n}")),
            0.0,
        );
    }
    for n in [10, 30] {
        let got = per_ticker(&bars, || Ema::new(n), |s, b| s.update(b.close));
        compare(
            &format!("ema_{n}"),
            &bars,
            &got,
            &fx.column(&format!("ema_{n}")),
            0.0,
        );
    }
}

#[test]
fn golden_rsi() {
    let bars = bars();
    let fx = Fixture::load();
    for n in [5, 14] {
        let got = per_ticker(&bars, || Rsi::new(n), |s, b| s.update(b.close));
        let name = format!("rsi_{n}");
        compare(&name, &bars, &got, &fx.column(&name), NEAR_ZERO_SCALE);
    }
}

#[test]
fn golden_macd() {
    let bars = bars();
    let fx = Fixture::load();
    for (f, s, g) in [(12, 26, 9), (5, 35, 5)] {
        let prefix = format!("macd_{f}_{s}_{g}");
        let field = |pick: fn(&papertrader::indicators::MacdValue) -> f64| {
            per_ticker(
                &bars,
                || Macd::new(f, s, g),
                move |m, b| m.update(b.close).map(|v| pick(&v)),
            )
        };
        compare(
            &format!("{prefix}_macd"),
            &bars,
            &field(|v| v.macd),
            &fx.column(&format!("{prefix}_macd")),
            NEAR_ZERO_SCALE,
        );
        compare(
            &format!("{prefix}_signal"),
            &bars,
            &field(|v| v.signal),
            &fx.column(&format!("{prefix}_signal")),
            NEAR_ZERO_SCALE,
        );
        compare(
            &format!("{prefix}_hist"),
            &bars,
            &field(|v| v.histogram),
            &fx.column(&format!("{prefix}_hist")),
            NEAR_ZERO_SCALE,
        );
    }
}

#[test]
fn golden_bollinger() {
    let bars = bars();
    let fx = Fixture::load();
    for (n, k, label) in [(20, 2.0, "20_2"), (10, 1.5, "10_1.5")] {
        let run = |pick: fn(&papertrader::indicators::Bands) -> f64| {
            per_ticker(
                &bars,
                || Bollinger::new(n, k),
                move |bb, b| bb.update(b.close).map(|v| pick(&v)),
            )
        };
        let prefix = format!("bb_{label}");
        compare(
            &format!("{prefix}_middle"),
            &bars,
            &run(|v| v.middle),
            &fx.column(&format!("{prefix}_middle")),
            0.0,
        );
        compare(
            &format!("{prefix}_upper"),
            &bars,
            &run(|v| v.upper),
            &fx.column(&format!("{prefix}_upper")),
            0.0,
        );
        compare(
            &format!("{prefix}_lower"),
            &bars,
            &run(|v| v.lower),
            &fx.column(&format!("{prefix}_lower")),
            0.0,
        );
        compare(
            &format!("{prefix}_percent_b"),
            &bars,
            &run(|v| v.percent_b),
            &fx.column(&format!("{prefix}_percent_b")),
            NEAR_ZERO_SCALE,
        );
        compare(
            &format!("{prefix}_bandwidth"),
            &bars,
            &run(|v| v.bandwidth),
            &fx.column(&format!("{prefix}_bandwidth")),
            0.0,
        );
    }
}

#[test]
fn golden_atr() {
    let bars = bars();
    let fx = Fixture::load();
    for n in [5, 14] {
        let got = per_ticker(
            &bars,
            || Atr::new(n),
            |a, b| a.update(b.high, b.low, b.close),
        );
        let name = format!("atr_{n}");
        compare(&name, &bars, &got, &fx.column(&name), 0.0);
    }
}

#[test]
fn golden_zscore() {
    let bars = bars();
    let fx = Fixture::load();
    let got = per_ticker(&bars, || ZScore::new(20), |z, b| z.update(b.close));
    compare(
        "zscore_20",
        &bars,
        &got,
        &fx.column("zscore_20"),
        NEAR_ZERO_SCALE,
    );
}

#[test]
fn golden_time_windows() {
    let bars = bars();
    let fx = Fixture::load();
    for d in [7, 50] {
        let got = per_ticker(
            &bars,
            || TimeSma::new(d * DAY_NS),
            |m, b| m.update(bar_ts(&b.date), b.close),
        );
        let name = format!("time_sma_{d}d");
        compare(&name, &bars, &got, &fx.column(&name), 0.0);
    }
    let got = per_ticker(
        &bars,
        || TimeEma::new(20 * DAY_NS),
        |m, b| m.update(bar_ts(&b.date), b.close),
    );
    compare("time_ema_20d", &bars, &got, &fx.column("time_ema_20d"), 0.0);
}

#[test]
fn golden_vwap() {
    let bars = bars();
    let fx = Fixture::load();
    let typical = |b: &Bar| (b.high + b.low + b.close) / 3.0;
    let got = per_ticker(&bars, Vwap::new, |v, b| {
        v.update(bar_ts(&b.date), typical(b), b.volume)
    });
    compare("vwap_cum", &bars, &got, &fx.column("vwap_cum"), 0.0);
    let got = per_ticker(
        &bars,
        || Vwap::windowed(20 * DAY_NS),
        |v, b| v.update(bar_ts(&b.date), typical(b), b.volume),
    );
    compare("vwap_20d", &bars, &got, &fx.column("vwap_20d"), 0.0);
}

/// Every indicator's state survives a JSON checkpoint mid-stream.
///
/// Not bit-exact: serde_json writes every f64 exactly (shortest round-trip
/// form) but, without its `float_roundtrip` feature (not enabled in this
/// crate), parses some of them back 1 ulp off (seen here on `Ema::alpha`).
/// The restored indicators therefore agree to ~1e-15 relative, not bitwise;
/// checked at 1e-12.
#[test]
fn state_checkpoints_round_trip_through_serde() {
    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(t: &T) -> T {
        serde_json::from_str(&serde_json::to_string(t).unwrap()).unwrap()
    }
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct All {
        sma: Sma,
        ema: Ema,
        rsi: Rsi,
        macd: Macd,
        bb: Bollinger,
        atr: Atr,
        z: ZScore,
        tsma: TimeSma,
        tema: TimeEma,
        vwap: Vwap,
        vwap_w: Vwap,
    }
    impl All {
        fn feed(&mut self, b: &Bar) -> Vec<Option<f64>> {
            let ts = bar_ts(&b.date);
            let macd = self.macd.update(b.close);
            let bb = self.bb.update(b.close);
            vec![
                self.sma.update(b.close),
                self.ema.update(b.close),
                self.rsi.update(b.close),
                macd.map(|m| m.macd),
                macd.map(|m| m.signal),
                macd.map(|m| m.histogram),
                bb.map(|v| v.middle),
                bb.map(|v| v.upper),
                bb.map(|v| v.lower),
                bb.map(|v| v.percent_b),
                bb.map(|v| v.bandwidth),
                self.atr.update(b.high, b.low, b.close),
                self.z.update(b.close),
                self.tsma.update(ts, b.close),
                self.tema.update(ts, b.close),
                self.vwap.update(ts, b.close, b.volume),
                self.vwap_w.update(ts, b.close, b.volume),
            ]
        }
    }
    let bars: Vec<Bar> = bars().into_iter().filter(|b| b.ticker == "MSFT").collect();
    let mut a = All {
        sma: Sma::new(20),
        ema: Ema::new(20),
        rsi: Rsi::new(14),
        macd: Macd::new(12, 26, 9),
        bb: Bollinger::new(20, 2.0),
        atr: Atr::new(14),
        z: ZScore::new(20),
        tsma: TimeSma::new(50 * DAY_NS),
        tema: TimeEma::new(20 * DAY_NS),
        vwap: Vwap::new(),
        vwap_w: Vwap::windowed(20 * DAY_NS),
    };
    let (head, tail) = bars.split_at(bars.len() / 2);
    for b in head {
        a.feed(b);
    }
    let mut restored = round_trip(&a);
    for b in tail {
        let (x, y) = (a.feed(b), restored.feed(b));
        for (i, (x, y)) in x.iter().zip(&y).enumerate() {
            match (x, y) {
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                    "output {i} diverged at {}: {x} vs {y}",
                    b.date
                ),
                _ => assert_eq!(x.is_some(), y.is_some(), "output {i} at {}", b.date),
            }
        }
    }
}

/// Deterministic irregular ticks: several per day (0 to ~12, some days
/// empty, some repeated timestamps), a random-walk price and random sizes.
fn synthetic_ticks(days: i64, seed: u64) -> Vec<(Ts, f64, f64)> {
    // xorshift64*: enough randomness for a test, no dependency.
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let start: Ts = 1_600_000_000 * 1_000_000_000;
    let mut price = 100.0;
    let mut ticks = Vec::new();
    for day in 0..days {
        let count = next() % 13;
        let mut offsets: Vec<i64> = (0..count)
            .map(|_| (next() % DAY_NS as u64) as i64)
            .collect();
        offsets.sort_unstable();
        for (i, off) in offsets.iter().enumerate() {
            // every 7th tick repeats the previous timestamp
            let ts = if i > 0 && next() % 7 == 0 {
                offsets[i - 1]
            } else {
                *off
            };
            price += ((next() % 2001) as f64 - 1000.0) / 1000.0;
            let size = (next() % 500) as f64;
            ticks.push((start + day * DAY_NS + ts, price, size));
        }
    }
    ticks
}

#[test]
fn time_sma_50_days_over_ticks_matches_brute_force() {
    let ticks = synthetic_ticks(200, 42);
    assert!(ticks.len() > 1000);
    let window = 50 * DAY_NS;
    let mut sma = TimeSma::new(window);
    let first = ticks[0].0;
    let mut warm = 0;
    for (i, &(ts, price, _)) in ticks.iter().enumerate() {
        let got = sma.update(ts, price);
        let in_window: Vec<f64> = ticks[..=i]
            .iter()
            .filter(|(t, _, _)| *t > ts - window)
            .map(|(_, p, _)| *p)
            .collect();
        let mean = in_window.iter().sum::<f64>() / in_window.len() as f64;
        if first <= ts - window {
            warm += 1;
            let got = got.unwrap_or_else(|| panic!("tick {i} should be warm"));
            assert!(
                (got - mean).abs() <= REL_TOL * mean.abs(),
                "tick {i}: {got} vs {mean}"
            );
            assert_eq!(sma.len(), in_window.len());
        } else {
            assert_eq!(got, None, "tick {i} should not be warm");
        }
    }
    assert!(warm > 500);
}

#[test]
fn windowed_vwap_and_time_ema_over_ticks_match_brute_force() {
    let ticks = synthetic_ticks(60, 7);
    let window = 5 * DAY_NS;
    let mut vwap = Vwap::windowed(window);
    let mut ema = TimeEma::new(window);
    let first = ticks[0].0;
    for (i, &(ts, price, size)) in ticks.iter().enumerate() {
        let got_vwap = vwap.update(ts, price, size);
        let got_ema = ema.update(ts, price);
        let in_window = ticks[..=i].iter().filter(|(t, _, _)| *t > ts - window);
        let (pv, v) = in_window.fold((0.0, 0.0), |(pv, v), (_, p, s)| (pv + p * s, v + s));
        // closed form of the irregular EMA
        let w = window as f64;
        let mut closed = (-((ts - first) as f64) / w).exp() * ticks[0].1;
        for j in 1..=i {
            let alpha = 1.0 - (-((ticks[j].0 - ticks[j - 1].0) as f64) / w).exp();
            closed += alpha * (-((ts - ticks[j].0) as f64) / w).exp() * ticks[j].1;
        }
        if first <= ts - window {
            if v > 0.0 {
                let want = pv / v;
                let got = got_vwap.unwrap();
                assert!(
                    (got - want).abs() <= REL_TOL * want.abs(),
                    "tick {i}: {got} vs {want}"
                );
            } else {
                assert_eq!(got_vwap, None);
            }
            let got = got_ema.unwrap();
            assert!(
                (got - closed).abs() <= REL_TOL * closed.abs(),
                "tick {i}: {got} vs {closed}"
            );
        } else {
            assert_eq!(got_vwap, None);
            assert_eq!(got_ema, None);
        }
    }
}

#[test]
fn golden_checks_cover_every_fixture_column() {
    let fx = Fixture::load();
    let checked: HashMap<&str, ()> = [
        "sma_5",
        "sma_20",
        "sma_50",
        "ema_10",
        "ema_30",
        "rsi_5",
        "rsi_14",
        "macd_12_26_9_macd",
        "macd_12_26_9_signal",
        "macd_12_26_9_hist",
        "macd_5_35_5_macd",
        "macd_5_35_5_signal",
        "macd_5_35_5_hist",
        "bb_20_2_middle",
        "bb_20_2_upper",
        "bb_20_2_lower",
        "bb_20_2_percent_b",
        "bb_20_2_bandwidth",
        "bb_10_1.5_middle",
        "bb_10_1.5_upper",
        "bb_10_1.5_lower",
        "bb_10_1.5_percent_b",
        "bb_10_1.5_bandwidth",
        "atr_5",
        "atr_14",
        "zscore_20",
        "time_sma_7d",
        "time_sma_50d",
        "time_ema_20d",
        "vwap_cum",
        "vwap_20d",
        "ticker",
        "date",
        "ts_ns",
    ]
    .into_iter()
    .map(|c| (c, ()))
    .collect();
    for h in &fx.headers {
        assert!(
            checked.contains_key(h.as_str()),
            "fixture column {h} is not checked"
        );
    }
}

fn values() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1e6f64..1e6, 0..300)
}

proptest! {
    // Integration tests have no lib.rs beside them for proptest's failure
    // persistence files; shrunk failures are printed instead.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sma_equals_brute_force_mean(xs in values(), n in 1usize..40) {
        let mut sma = Sma::new(n);
        for (i, &x) in xs.iter().enumerate() {
            let got = sma.update(x);
            if i + 1 < n {
                prop_assert_eq!(got, None);
            } else {
                let w = &xs[i + 1 - n..=i];
                let mean = w.iter().sum::<f64>() / n as f64;
                let scale = w.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                let got = got.unwrap();
                prop_assert!((got - mean).abs() <= 1e-9 * scale, "{} vs {}", got, mean);
            }
        }
    }

    #[test]
    fn bollinger_bands_are_ordered(xs in values(), n in 1usize..40, k in 0.0f64..4.0) {
        let mut bb = Bollinger::new(n, k);
        for x in xs {
            if let Some(b) = bb.update(x) {
                prop_assert!(b.upper >= b.middle && b.middle >= b.lower, "{:?}", b);
                prop_assert!(b.percent_b.is_finite());
            }
        }
    }

    #[test]
    fn zscore_and_rsi_stay_in_range(xs in values(), n in 2usize..40) {
        // With the population sigma, |z| <= sqrt(n - 1) for any window.
        let bound = ((n - 1) as f64).sqrt() * (1.0 + 1e-9);
        let mut z = ZScore::new(n);
        let mut rsi = Rsi::new(n);
        for &x in &xs {
            if let Some(v) = z.update(x) {
                prop_assert!(v.abs() <= bound, "{} > {}", v, bound);
            }
            if let Some(r) = rsi.update(x) {
                prop_assert!((0.0..=100.0).contains(&r), "{}", r);
            }
        }
    }

    #[test]
    fn non_finite_inputs_leave_state_untouched(
        xs in prop::collection::vec(1.0f64..1000.0, 0..120),
        bad_at in prop::collection::vec(any::<bool>(), 120),
        n in 1usize..10,
    ) {
        let bads = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
        let mut clean = (Sma::new(n), Ema::new(n), Rsi::new(n), Macd::new(n, n + 3, n), Bollinger::new(n, 2.0), ZScore::new(n), Atr::new(n), TimeSma::new(5), TimeEma::new(5), Vwap::windowed(5));
        let mut dirty = clean.clone();
        for (i, &x) in xs.iter().enumerate() {
            let ts = i as i64;
            if bad_at[i] {
                let b = bads[i % 3];
                prop_assert_eq!(dirty.0.update(b), None);
                prop_assert_eq!(dirty.1.update(b), None);
                prop_assert_eq!(dirty.2.update(b), None);
                prop_assert_eq!(dirty.3.update(b), None);
                prop_assert_eq!(dirty.4.update(b), None);
                prop_assert_eq!(dirty.5.update(b), None);
                prop_assert_eq!(dirty.6.update(b, x, x), None);
                prop_assert_eq!(dirty.7.update(ts, b), None);
                prop_assert_eq!(dirty.8.update(ts, b), None);
                prop_assert_eq!(dirty.9.update(ts, x, b), None);
            }
            clean.0.update(x); dirty.0.update(x);
            clean.1.update(x); dirty.1.update(x);
            clean.2.update(x); dirty.2.update(x);
            clean.3.update(x); dirty.3.update(x);
            clean.4.update(x); dirty.4.update(x);
            clean.5.update(x); dirty.5.update(x);
            clean.6.update(x + 1.0, x - 1.0, x); dirty.6.update(x + 1.0, x - 1.0, x);
            clean.7.update(ts, x); dirty.7.update(ts, x);
            clean.8.update(ts, x); dirty.8.update(ts, x);
            clean.9.update(ts, x, x); dirty.9.update(ts, x, x);
        }
        prop_assert_eq!(format!("{:?}", clean), format!("{:?}", dirty));
    }
}
