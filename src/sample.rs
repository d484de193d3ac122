//! A seeded generator of **synthetic** intraday ticks and news sentiment.
//!
//! Everything this module produces is SYNTHETIC: made up by a random model
//! from a seed, not market data and not derived from any. It exists so demos,
//! tests and benchmarks have intraday ticks and a sentiment stream, which no
//! public dataset reachable here provides. Every sentiment reading says so:
//! its `source` is `"synthetic"` and its headline ends in `(synthetic)`.
//!
//! ## The model
//!
//! Each symbol is simulated on its own, in continuous time, from its own
//! random stream (`ChaCha8Rng` seeded with [`SampleSpec::seed`], stream = the
//! symbol's index), so adding a symbol does not change the others.
//!
//! * **News factor** `f`: an Ornstein-Uhlenbeck process with mean 0,
//!   stationary standard deviation 1 and half-life
//!   [`SampleSpec::news_half_life_minutes`]. It is the hidden "news flow".
//! * **Log price** `x`: a random walk with volatility `sigma` (the symbol's
//!   annualised [`SymbolSpec::volatility`] over a trading-time year of
//!   [`TRADING_SECONDS_PER_YEAR`]) and drift
//!   `news_drift * sigma_hour * f` per hour, where `sigma_hour` is the hourly
//!   volatility. So the news factor moves the price *after* it is observed.
//! * **Regimes**, switching at exponential times with mean
//!   [`SampleSpec::regime_mean_minutes`], each time to one of the two other
//!   regimes: trending up, trending down (an extra drift of
//!   `± trend_drift * sigma_hour` per hour) and mean-reverting (the log price
//!   is pulled toward an anchor with half-life
//!   [`SampleSpec::reversion_half_life_s`]; the anchor itself follows the news
//!   drift). Trends give moving-average strategies something to follow,
//!   mean-reverting phases give RSI-style strategies something to fade.
//! * **Ticks** arrive with exponential inter-arrival times of mean
//!   [`SampleSpec::mean_interval_ms`], rounded to whole milliseconds (at least
//!   1 ms). The price is `exp(x)` rounded to the symbol's tick size, never below
//!   one tick, so always > 0. Sizes are whole numbers >= 1, exponential with
//!   mean [`SymbolSpec::mean_size`]. With [`SampleSpec::quotes`] each tick has a
//!   bid and an ask 1..=[`SymbolSpec::max_spread_ticks`] ticks apart, the trade
//!   printing at the ask or at the bid with equal odds.
//! * **Sentiment** readings are published at Poisson times,
//!   [`SampleSpec::sentiment_per_hour`] per symbol on average, with score
//!   `clip(0.5 f + sentiment_noise * z, -1, 1)` rounded to 3 decimals
//!   (`z` standard normal). Because `f` drives the drift of the coming hour,
//!   the score is positively correlated with the symbol's return over the next
//!   hour: a sentiment-momentum strategy has something real to find.
//!
//! The simulation runs in continuous time with no sessions, nights or
//! weekends. Ticks of all symbols are merged in timestamp order (ties: symbol
//! order in the spec), and so is the sentiment. The same spec always gives
//! the same output, bit for bit; a different seed gives a different output.

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, StandardNormal};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::domain::{Sentiment, Tick, Ts, NANOS_PER_MILLI, NANOS_PER_SEC};

/// Seconds in a trading-time year: 252 sessions of 6.5 hours. Annualised
/// volatilities are converted to per-second ones over this year.
pub const TRADING_SECONDS_PER_YEAR: f64 = 252.0 * 6.5 * 3600.0;

/// One simulated instrument.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSpec {
    pub name: String,
    /// First price, > 0.
    pub start_price: Decimal,
    /// Price increment, > 0; every price is a whole multiple of it.
    pub tick_size: Decimal,
    /// Annualised volatility of the log price (e.g. 0.3 for 30 %).
    pub volatility: f64,
    /// Mean trade size; sizes are whole numbers >= 1.
    pub mean_size: f64,
    /// Widest bid/ask spread in ticks (>= 1) when quotes are generated.
    pub max_spread_ticks: u32,
}

impl SymbolSpec {
    /// A symbol with tick size 0.01, mean size 100 and spreads of 1-2 ticks.
    pub fn new(name: &str, start_price: Decimal, volatility: f64) -> Self {
        SymbolSpec {
            name: name.to_string(),
            start_price,
            tick_size: Decimal::new(1, 2),
            volatility,
            mean_size: 100.0,
            max_spread_ticks: 2,
        }
    }
}

/// What to generate. See the module documentation for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSpec {
    pub symbols: Vec<SymbolSpec>,
    /// Time of the start of the simulation; the first tick comes after it.
    pub start_ts: Ts,
    /// Ticks generated for each symbol.
    pub ticks_per_symbol: usize,
    /// Mean time between two ticks of one symbol, in milliseconds.
    pub mean_interval_ms: f64,
    pub seed: u64,
    /// Mean number of sentiment readings per symbol per hour (0: none).
    pub sentiment_per_hour: f64,
    /// Generate bid and ask with every tick.
    pub quotes: bool,
    /// Half-life of the news factor, in minutes.
    pub news_half_life_minutes: f64,
    /// Drift of the log price per unit of news factor, in hourly
    /// volatilities per hour.
    pub news_drift: f64,
    /// Standard deviation of the noise in a sentiment score.
    pub sentiment_noise: f64,
    /// Mean duration of a regime, in minutes.
    pub regime_mean_minutes: f64,
    /// Extra drift in a trending regime, in hourly volatilities per hour.
    pub trend_drift: f64,
    /// Half-life of the pull toward the anchor in a mean-reverting regime, in seconds.
    pub reversion_half_life_s: f64,
}

/// 2026-01-05 14:30:00 UTC (a Monday, the US equity open) in nanoseconds.
pub const DEFAULT_START_TS: Ts = 1_767_623_400 * NANOS_PER_SEC;

impl Default for SampleSpec {
    /// ACME (100.00, 35 % vol) and GLOBEX (42.50, 25 % vol, mean size 200),
    /// 6,000 ticks each, one every 3.9 s on average (about one 6.5-hour
    /// session), from 2026-01-05 14:30 UTC, 4 sentiment readings per symbol
    /// per hour, with bid/ask, seed 42.
    fn default() -> Self {
        let mut globex = SymbolSpec::new("GLOBEX", Decimal::new(4250, 2), 0.25);
        globex.mean_size = 200.0;
        SampleSpec {
            symbols: vec![
                SymbolSpec::new("ACME", Decimal::new(10000, 2), 0.35),
                globex,
            ],
            start_ts: DEFAULT_START_TS,
            ticks_per_symbol: 6_000,
            mean_interval_ms: 3_900.0,
            seed: 42,
            sentiment_per_hour: 20.0,
            quotes: true,
            news_half_life_minutes: 60.0,
            news_drift: 0.8,
            sentiment_noise: 0.25,
            regime_mean_minutes: 40.0,
            trend_drift: 1.0,
            reversion_half_life_s: 300.0,
        }
    }
}

impl SampleSpec {
    /// Checks the parameters [`generate`] relies on.
    pub fn check(&self) -> Result<(), String> {
        let positive = |v: f64, what: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{what} must be finite and > 0, got {v}"))
            }
        };
        positive(self.mean_interval_ms, "mean_interval_ms")?;
        positive(self.news_half_life_minutes, "news_half_life_minutes")?;
        positive(self.regime_mean_minutes, "regime_mean_minutes")?;
        positive(self.reversion_half_life_s, "reversion_half_life_s")?;
        if !(self.sentiment_per_hour.is_finite() && self.sentiment_per_hour >= 0.0) {
            return Err("sentiment_per_hour must be finite and >= 0".into());
        }
        for v in [self.news_drift, self.sentiment_noise, self.trend_drift] {
            if !v.is_finite() {
                return Err("news_drift, sentiment_noise and trend_drift must be finite".into());
            }
        }
        for s in &self.symbols {
            if s.start_price <= Decimal::ZERO || s.tick_size <= Decimal::ZERO {
                return Err(format!("{}: start_price and tick_size must be > 0", s.name));
            }
            if !(s.volatility.is_finite() && s.volatility >= 0.0) {
                return Err(format!("{}: volatility must be finite and >= 0", s.name));
            }
            positive(s.mean_size, "mean_size")?;
            if self.quotes && s.max_spread_ticks == 0 {
                return Err(format!("{}: max_spread_ticks must be >= 1", s.name));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Regime {
    Up,
    Down,
    Revert,
}

fn exp_ms(rng: &mut ChaCha8Rng, mean_ms: f64) -> i64 {
    let d = Exp::new(1.0 / mean_ms).expect("mean checked > 0");
    let v: f64 = d.sample(rng);
    (v.round() as i64).max(1)
}

fn headline(name: &str, score: f64) -> String {
    let mood = if score >= 0.5 {
        "strongly positive"
    } else if score >= 0.15 {
        "positive"
    } else if score > -0.15 {
        "mixed"
    } else if score > -0.5 {
        "negative"
    } else {
        "strongly negative"
    };
    format!("{name}: {mood} news flow (synthetic)")
}

fn simulate(spec: &SampleSpec, index: usize) -> (Vec<Tick>, Vec<Sentiment>) {
    let sym = &spec.symbols[index];
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(index as u64);

    let tick_size = sym.tick_size;
    let tick_f = tick_size.to_f64().unwrap_or(0.01);
    let sigma = sym.volatility / TRADING_SECONDS_PER_YEAR.sqrt(); // per sqrt(second)
    let sigma_hour = sigma * 60.0;
    let news_mu = spec.news_drift * sigma_hour / 3600.0; // per second per unit f
    let trend_mu = spec.trend_drift * sigma_hour / 3600.0; // per second
    let tau = spec.news_half_life_minutes * 60.0 / std::f64::consts::LN_2; // seconds
    let kappa = std::f64::consts::LN_2 / spec.reversion_half_life_s; // per second
    let regime_ms = spec.regime_mean_minutes * 60_000.0;
    let size_dist = Exp::new(1.0 / sym.mean_size).expect("mean_size checked > 0");

    let mut x = sym.start_price.to_f64().unwrap_or(1.0).ln();
    let mut f: f64 = rng.sample(StandardNormal);
    let mut regime = match rng.gen_range(0..3) {
        0 => Regime::Up,
        1 => Regime::Down,
        _ => Regime::Revert,
    };
    let mut anchor = x;
    let mut regime_end = exp_ms(&mut rng, regime_ms);

    let mut t: i64 = 0; // ms since start
    let mut next_tick = exp_ms(&mut rng, spec.mean_interval_ms);
    let sentiment_mean_ms = if spec.sentiment_per_hour > 0.0 {
        Some(3_600_000.0 / spec.sentiment_per_hour)
    } else {
        None
    };
    let mut next_news = match sentiment_mean_ms {
        Some(m) => exp_ms(&mut rng, m),
        None => i64::MAX,
    };

    let mut ticks = Vec::with_capacity(spec.ticks_per_symbol);
    let mut news = Vec::new();
    while ticks.len() < spec.ticks_per_symbol {
        let is_tick = next_tick <= next_news;
        let until = if is_tick { next_tick } else { next_news };

        // Advance the hidden state from t to `until`.
        let dt = (until - t) as f64 / 1000.0;
        let trend = match regime {
            Regime::Up => trend_mu,
            Regime::Down => -trend_mu,
            Regime::Revert => 0.0,
        };
        let z: f64 = rng.sample(StandardNormal);
        let drift_news = news_mu * f;
        x += (drift_news + trend - 0.5 * sigma * sigma) * dt + sigma * dt.sqrt() * z;
        if regime == Regime::Revert {
            anchor += drift_news * dt;
            x -= (1.0 - (-kappa * dt).exp()) * (x - anchor);
        }
        let a = (-dt / tau).exp();
        let zf: f64 = rng.sample(StandardNormal);
        f = a * f + (1.0 - a * a).sqrt() * zf;
        t = until;
        if t >= regime_end {
            let r = rng.gen_bool(0.5);
            regime = match (regime, r) {
                (Regime::Up, true) | (Regime::Revert, true) => Regime::Down,
                (Regime::Up, false) | (Regime::Down, false) => Regime::Revert,
                (Regime::Down, true) | (Regime::Revert, false) => Regime::Up,
            };
            anchor = x;
            regime_end = t + exp_ms(&mut rng, regime_ms);
        }

        let ts = spec.start_ts + t * NANOS_PER_MILLI;
        if is_tick {
            let n = ((x.exp() / tick_f).round() as i64).max(1);
            let price = Decimal::from(n) * tick_size;
            let size_f: f64 = size_dist.sample(&mut rng);
            let size = Decimal::from((size_f.round() as i64).max(1));
            let (bid, ask) = if spec.quotes {
                let s = rng.gen_range(1..=sym.max_spread_ticks) as i64;
                let at_ask = rng.gen_bool(0.5);
                let spread = Decimal::from(s) * tick_size;
                if at_ask && n > s {
                    (Some(price - spread), Some(price))
                } else {
                    (Some(price), Some(price + spread))
                }
            } else {
                (None, None)
            };
            ticks.push(Tick {
                symbol: sym.name.as_str().into(),
                ts,
                price,
                size,
                bid,
                ask,
            });
            next_tick = t + exp_ms(&mut rng, spec.mean_interval_ms);
        } else {
            let z: f64 = rng.sample(StandardNormal);
            let raw = (0.5 * f + spec.sentiment_noise * z).clamp(-1.0, 1.0);
            let mut score = (raw * 1000.0).round() / 1000.0;
            if score == 0.0 {
                score = 0.0; // no "-0"
            }
            news.push(Sentiment {
                symbol: sym.name.as_str().into(),
                ts,
                score,
                source: "synthetic".to_string(),
                headline: Some(headline(&sym.name, score)),
            });
            next_news = t + exp_ms(&mut rng, sentiment_mean_ms.unwrap_or(f64::MAX));
        }
    }
    (ticks, news)
}

/// Generates the ticks and sentiment of all symbols, each merged in timestamp
/// order (ties in symbol order). Deterministic in `spec`.
///
/// # Panics
///
/// If [`SampleSpec::check`] fails.
pub fn generate(spec: &SampleSpec) -> (Vec<Tick>, Vec<Sentiment>) {
    if let Err(e) = spec.check() {
        panic!("invalid SampleSpec: {e}");
    }
    let mut ticks = Vec::new();
    let mut news = Vec::new();
    for i in 0..spec.symbols.len() {
        let (t, n) = simulate(spec, i);
        ticks.extend(t);
        news.extend(n);
    }
    ticks.sort_by_key(|t| t.ts);
    news.sort_by_key(|s| s.ts);
    (ticks, news)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csvdata::{parse_ts, write_sentiment_csv, write_ticks_csv};

    fn csv_bytes(ticks: &[Tick], news: &[Sentiment]) -> (Vec<u8>, Vec<u8>) {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_ticks_csv(&mut a, ticks).unwrap();
        write_sentiment_csv(&mut b, news).unwrap();
        (a, b)
    }

    fn small(seed: u64) -> SampleSpec {
        SampleSpec {
            ticks_per_symbol: 2_000,
            seed,
            ..SampleSpec::default()
        }
    }

    #[test]
    fn default_spec() {
        let spec = SampleSpec::default();
        assert_eq!(Some(spec.start_ts), parse_ts("2026-01-05T14:30:00Z"));
        let names: Vec<&str> = spec.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ACME", "GLOBEX"]);
        assert_eq!(spec.check(), Ok(()));
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different_output() {
        let (t1, n1) = generate(&small(7));
        let (t2, n2) = generate(&small(7));
        assert_eq!(csv_bytes(&t1, &n1), csv_bytes(&t2, &n2));
        let (t3, n3) = generate(&small(8));
        assert_ne!(t1, t3);
        assert_ne!(n1, n3);
    }

    #[test]
    fn adding_a_symbol_leaves_the_others_unchanged() {
        let spec = small(3);
        let mut more = spec.clone();
        more.symbols
            .push(SymbolSpec::new("INITECH", Decimal::new(2000, 2), 0.5));
        let (t1, n1) = generate(&spec);
        let (t2, n2) = generate(&more);
        let t2: Vec<Tick> = t2.into_iter().filter(|t| t.symbol != "INITECH").collect();
        let n2: Vec<Sentiment> = n2.into_iter().filter(|s| s.symbol != "INITECH").collect();
        assert_eq!(t1, t2);
        assert_eq!(n1, n2);
    }

    #[test]
    fn output_invariants() {
        let spec = SampleSpec::default();
        let (ticks, news) = generate(&spec);
        assert_eq!(ticks.len(), 2 * spec.ticks_per_symbol);
        assert!(ticks.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(news.windows(2).all(|w| w[0].ts <= w[1].ts));
        for sym in &spec.symbols {
            let mine: Vec<&Tick> = ticks.iter().filter(|t| t.symbol == sym.name).collect();
            assert_eq!(mine.len(), spec.ticks_per_symbol);
            assert!(mine[0].ts > spec.start_ts);
            assert!(mine.windows(2).all(|w| w[0].ts < w[1].ts));
            for t in &mine {
                assert!(t.price > Decimal::ZERO);
                assert!((t.price % sym.tick_size).is_zero(), "{t:?}");
                assert!(t.size >= Decimal::ONE && t.size.fract().is_zero(), "{t:?}");
                let (bid, ask) = (t.bid.unwrap(), t.ask.unwrap());
                assert!(bid > Decimal::ZERO && bid < ask, "{t:?}");
                assert!(bid <= t.price && t.price <= ask, "{t:?}");
                assert!(t.ts % NANOS_PER_MILLI == 0);
            }
            // Prices move: the synthetic session is not flat.
            let lo = mine.iter().map(|t| t.price).min().unwrap();
            let hi = mine.iter().map(|t| t.price).max().unwrap();
            assert!(
                hi - lo > sym.tick_size * Decimal::from(20),
                "{} {lo}..{hi}",
                sym.name
            );
            let n = news.iter().filter(|s| s.symbol == sym.name).count();
            assert!(n >= 10, "{}: only {n} sentiment readings", sym.name);
        }
        let last_tick = ticks.last().unwrap().ts;
        for s in &news {
            assert!((-1.0..=1.0).contains(&s.score), "{s:?}");
            assert_eq!(s.source, "synthetic");
            let h = s.headline.as_deref().unwrap();
            assert!(
                h.starts_with(&format!("{}: ", s.symbol)) && h.ends_with("(synthetic)"),
                "{h}"
            );
            assert!(s.ts > spec.start_ts && s.ts <= last_tick);
        }
    }

    #[test]
    fn prices_stay_positive_for_tiny_wild_symbols() {
        let mut sym = SymbolSpec::new("PENNY", Decimal::new(3, 2), 5.0);
        sym.max_spread_ticks = 3;
        let spec = SampleSpec {
            symbols: vec![sym],
            ticks_per_symbol: 20_000,
            trend_drift: 5.0,
            ..SampleSpec::default()
        };
        let (ticks, _) = generate(&spec);
        assert!(ticks
            .iter()
            .all(|t| t.price >= Decimal::new(1, 2) && t.bid.unwrap() > Decimal::ZERO));
    }

    #[test]
    fn no_quotes_no_sentiment() {
        let spec = SampleSpec {
            quotes: false,
            sentiment_per_hour: 0.0,
            ..small(1)
        };
        let (ticks, news) = generate(&spec);
        assert!(news.is_empty());
        assert!(ticks.iter().all(|t| t.bid.is_none() && t.ask.is_none()));
    }

    #[test]
    fn check_rejects_bad_specs() {
        let s = SampleSpec {
            mean_interval_ms: 0.0,
            ..SampleSpec::default()
        };
        assert!(s.check().is_err());
        let mut s = SampleSpec::default();
        s.symbols[0].tick_size = Decimal::ZERO;
        assert!(s.check().is_err());
        let s = SampleSpec {
            sentiment_per_hour: f64::NAN,
            ..SampleSpec::default()
        };
        assert!(s.check().is_err());
    }

    /// Pearson correlation between each sentiment score and its symbol's log
    /// return over the following hour (last trade at or before `ts` to last
    /// trade at or before `ts + 1h`).
    fn score_return_correlation(spec: &SampleSpec) -> (f64, usize) {
        let (ticks, news) = generate(spec);
        let hour = 3600 * NANOS_PER_SEC;
        let mut pairs = Vec::new();
        for sym in &spec.symbols {
            let mine: Vec<(Ts, f64)> = ticks
                .iter()
                .filter(|t| t.symbol == sym.name)
                .map(|t| (t.ts, t.price.to_f64().unwrap()))
                .collect();
            let price_at = |ts: Ts| {
                let i = mine.partition_point(|(t, _)| *t <= ts);
                (i > 0).then(|| mine[i - 1].1)
            };
            let end = mine.last().unwrap().0;
            for s in news.iter().filter(|s| s.symbol == sym.name) {
                if s.ts + hour > end {
                    continue;
                }
                if let (Some(p0), Some(p1)) = (price_at(s.ts), price_at(s.ts + hour)) {
                    pairs.push((s.score, (p1 / p0).ln()));
                }
            }
        }
        let n = pairs.len() as f64;
        let (mx, my) = pairs
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for (x, y) in &pairs {
            sxy += (x - mx) * (y - my);
            sxx += (x - mx) * (x - mx);
            syy += (y - my) * (y - my);
        }
        (sxy / (sxx * syy).sqrt(), pairs.len())
    }

    #[test]
    fn sentiment_predicts_next_hour_return() {
        // About 55 hours per symbol, ~550 readings per symbol.
        let spec = SampleSpec {
            ticks_per_symbol: 200_000,
            mean_interval_ms: 1_000.0,
            sentiment_per_hour: 10.0,
            seed: 2026,
            ..SampleSpec::default()
        };
        let (corr, n) = score_return_correlation(&spec);
        eprintln!("corr(score, next-hour return) = {corr:.3} over {n} readings");
        assert!(n > 800, "{n}");
        assert!(corr > 0.15, "correlation {corr:.3} over {n} readings");
    }

    /// The bundled files are exactly what `papertrader generate`
    /// writes, and read back through `csvdata` without errors.
    #[test]
    fn bundled_files_match_the_default_spec() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let ticks_path = dir.join("synthetic_ticks.csv");
        let news_path = dir.join("synthetic_sentiment.csv");
        let (ticks, news) = generate(&SampleSpec::default());
        let (a, b) = csv_bytes(&ticks, &news);
        assert!(
            std::fs::read(&ticks_path).unwrap() == a,
            "data/synthetic_ticks.csv is stale: run `cargo run --release -- generate`"
        );
        assert!(
            std::fs::read(&news_path).unwrap() == b,
            "data/synthetic_sentiment.csv is stale: run `cargo run --release -- generate`"
        );
        let (records, bad) = crate::csvdata::read_records(&ticks_path, None).unwrap();
        assert!(bad.is_empty());
        let back: Vec<crate::csvdata::Record> = ticks
            .into_iter()
            .map(crate::csvdata::Record::Tick)
            .collect();
        assert_eq!(records, back);
        let (records, bad) = crate::csvdata::read_records(&news_path, None).unwrap();
        assert!(bad.is_empty());
        let back: Vec<crate::csvdata::Record> = news
            .into_iter()
            .map(crate::csvdata::Record::Sentiment)
            .collect();
        assert_eq!(records, back);
    }
}
