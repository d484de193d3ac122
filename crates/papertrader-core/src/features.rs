//! Model features: named, parameterized values built from the streaming
//! indicators, once per event, for one symbol.
//!
//! A [`FeatureSpec`] is one feature with its parameters, as a model spec
//! (`models/NAME.toml`) lists it. A [`FeaturePipeline`] holds the state of
//! every feature registered with it and updates each exactly once per event;
//! registering the same spec twice (two models asking for `rsi` 14) returns the
//! same slot, so features are shared by every model that reads the pipeline.
//!
//! Values are `f64` (statistics, not money) and `None` until the feature is
//! warm. The definitions are mirrored by `models/train.py`, and the fixture
//! `tests/fixtures/features_reference.csv` written by it pins them (`tests/it/models.rs`).
//!
//! | kind | parameters | value | warm after |
//! |---|---|---|---|
//! | `return_n` | `n` | `price / price n ticks ago - 1` | n + 1 ticks |
//! | `rsi` | `period` | Wilder RSI in [0, 100] ([`Rsi`]) | period + 1 ticks |
//! | `macd_hist` | `fast`, `slow`, `signal` | MACD histogram divided by the price ([`Macd`]) | slow + signal - 1 ticks |
//! | `bb_percent_b` | `period`, `k` | Bollinger %b, 0.5 on zero-width bands ([`Bollinger`]) | period ticks |
//! | `volume_zscore` | `period` | z-score of the tick size over `period` ticks, 0 when sigma is 0 ([`ZScore`]) | period ticks |
//! | `sentiment_ema` | `period` | EMA of the symbol's sentiment scores, held between readings ([`Ema`]) | period readings |
//! | `time_of_day` | `component` = `sin` / `cos` | sin or cos of 2 pi (UTC time of day / 24 h) | first tick |
//!
//! Ticks update the price and volume features; sentiment readings update only
//! `sentiment_ema`. Non-finite inputs are ignored (the state is unchanged).

use serde::{Deserialize, Serialize};

use crate::domain::{Ts, NANOS_PER_SEC};
use crate::indicators::{Bollinger, Ema, Macd, Rsi, ZScore};

const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SEC;

/// Which component of the time-of-day cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cycle {
    Sin,
    Cos,
}

/// One feature and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureSpec {
    /// Simple return over `n` ticks.
    ReturnN { n: usize },
    /// Wilder RSI.
    Rsi { period: usize },
    /// MACD histogram over the price.
    MacdHist {
        fast: usize,
        slow: usize,
        signal: usize,
    },
    /// Bollinger %b (population sigma, `k` sigmas).
    BbPercentB { period: usize, k: f64 },
    /// z-score of the tick size.
    VolumeZscore { period: usize },
    /// EMA of the sentiment scores.
    SentimentEma { period: usize },
    /// sin or cos of the UTC time of day.
    TimeOfDay { component: Cycle },
}

impl FeatureSpec {
    /// The canonical name: the kind and its parameters, e.g. `rsi_14`,
    /// `bb_percent_b_20_2`. Two specs with the same name are the same feature.
    pub fn name(&self) -> String {
        match *self {
            FeatureSpec::ReturnN { n } => format!("return_{n}"),
            FeatureSpec::Rsi { period } => format!("rsi_{period}"),
            FeatureSpec::MacdHist { fast, slow, signal } => {
                format!("macd_hist_{fast}_{slow}_{signal}")
            }
            FeatureSpec::BbPercentB { period, k } => format!("bb_percent_b_{period}_{k}"),
            FeatureSpec::VolumeZscore { period } => format!("volume_zscore_{period}"),
            FeatureSpec::SentimentEma { period } => format!("sentiment_ema_{period}"),
            FeatureSpec::TimeOfDay { component } => match component {
                Cycle::Sin => "time_of_day_sin".into(),
                Cycle::Cos => "time_of_day_cos".into(),
            },
        }
    }

    /// Check the parameters; the error says which one is wrong.
    pub fn check(&self) -> Result<(), String> {
        let positive = |what: &str, v: usize| {
            if v == 0 {
                Err(format!("{}: `{what}` must be at least 1", self.name()))
            } else {
                Ok(())
            }
        };
        match *self {
            FeatureSpec::ReturnN { n } => positive("n", n),
            FeatureSpec::Rsi { period }
            | FeatureSpec::VolumeZscore { period }
            | FeatureSpec::SentimentEma { period } => positive("period", period),
            FeatureSpec::MacdHist { fast, slow, signal } => {
                positive("fast", fast)?;
                positive("slow", slow)?;
                positive("signal", signal)
            }
            FeatureSpec::BbPercentB { period, k } => {
                positive("period", period)?;
                if k.is_finite() && k > 0.0 {
                    Ok(())
                } else {
                    Err(format!("{}: `k` must be positive and finite", self.name()))
                }
            }
            FeatureSpec::TimeOfDay { .. } => Ok(()),
        }
    }
}

/// The streaming state of one feature.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum FeatureState {
    Return {
        n: usize,
        prices: std::collections::VecDeque<f64>,
    },
    Rsi(Rsi),
    MacdHist(Macd),
    PercentB(Bollinger),
    VolumeZ(ZScore),
    SentimentEma(Ema),
    TimeOfDay(Cycle),
}

impl FeatureState {
    fn new(spec: &FeatureSpec) -> Self {
        match *spec {
            FeatureSpec::ReturnN { n } => FeatureState::Return {
                n,
                prices: std::collections::VecDeque::with_capacity(n + 1),
            },
            FeatureSpec::Rsi { period } => FeatureState::Rsi(Rsi::new(period)),
            FeatureSpec::MacdHist { fast, slow, signal } => {
                FeatureState::MacdHist(Macd::new(fast, slow, signal))
            }
            FeatureSpec::BbPercentB { period, k } => {
                FeatureState::PercentB(Bollinger::new(period, k))
            }
            FeatureSpec::VolumeZscore { period } => FeatureState::VolumeZ(ZScore::new(period)),
            FeatureSpec::SentimentEma { period } => FeatureState::SentimentEma(Ema::new(period)),
            FeatureSpec::TimeOfDay { component } => FeatureState::TimeOfDay(component),
        }
    }

    /// Update with a tick; the new value, or `previous` when the feature is
    /// not moved by ticks (or the input was ignored).
    fn on_tick(&mut self, ts: Ts, price: f64, size: f64, previous: Option<f64>) -> Option<f64> {
        match self {
            FeatureState::Return { n, prices } => {
                if !price.is_finite() {
                    return previous;
                }
                if prices.len() == *n + 1 {
                    prices.pop_front();
                }
                prices.push_back(price);
                if prices.len() == *n + 1 {
                    Some(price / prices[0] - 1.0)
                } else {
                    None
                }
            }
            FeatureState::Rsi(r) => {
                if price.is_finite() {
                    r.update(price)
                } else {
                    previous
                }
            }
            FeatureState::MacdHist(m) => {
                if price.is_finite() {
                    m.update(price).map(|v| v.histogram / price)
                } else {
                    previous
                }
            }
            FeatureState::PercentB(b) => {
                if price.is_finite() {
                    b.update(price).map(|v| v.percent_b)
                } else {
                    previous
                }
            }
            FeatureState::VolumeZ(z) => {
                if !size.is_finite() {
                    return previous;
                }
                match z.update(size) {
                    Some(v) => Some(v),
                    // Warm, but every size in the window is equal.
                    None if z.is_ready() => Some(0.0),
                    None => None,
                }
            }
            FeatureState::SentimentEma(_) => previous,
            FeatureState::TimeOfDay(c) => {
                let angle = ts.rem_euclid(NANOS_PER_DAY) as f64 / NANOS_PER_DAY as f64
                    * std::f64::consts::TAU;
                Some(match c {
                    Cycle::Sin => angle.sin(),
                    Cycle::Cos => angle.cos(),
                })
            }
        }
    }

    fn on_sentiment(&mut self, score: f64, previous: Option<f64>) -> Option<f64> {
        match self {
            FeatureState::SentimentEma(e) if score.is_finite() => e.update(score),
            _ => previous,
        }
    }
}

/// The features of one symbol, each updated once per event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeaturePipeline {
    specs: Vec<FeatureSpec>,
    names: Vec<String>,
    states: Vec<FeatureState>,
    values: Vec<Option<f64>>,
}

impl FeaturePipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take over the streaming state of a checkpointed pipeline with the same features.
    ///
    /// # Errors
    /// The checkpoint's features differ from this pipeline's.
    pub fn restore(&mut self, saved: FeaturePipeline) -> Result<(), String> {
        if saved.names != self.names {
            return Err(format!(
                "the checkpoint has features {:?}, the model needs {:?}",
                saved.names, self.names
            ));
        }
        *self = saved;
        Ok(())
    }

    /// Add a feature (or find the one already registered under its name) and
    /// return its slot. Register before the first event: a feature added later
    /// starts cold.
    pub fn register(&mut self, spec: &FeatureSpec) -> usize {
        let name = spec.name();
        if let Some(i) = self.names.iter().position(|n| *n == name) {
            return i;
        }
        self.specs.push(*spec);
        self.names.push(name);
        self.states.push(FeatureState::new(spec));
        self.values.push(None);
        self.names.len() - 1
    }

    /// Register every spec; the slots in the same order.
    pub fn register_all(&mut self, specs: &[FeatureSpec]) -> Vec<usize> {
        specs.iter().map(|s| self.register(s)).collect()
    }

    /// A trade tick: price and size as `f64`, event time `ts`.
    pub fn on_tick(&mut self, ts: Ts, price: f64, size: f64) {
        for (state, value) in self.states.iter_mut().zip(self.values.iter_mut()) {
            *value = state.on_tick(ts, price, size, *value);
        }
    }

    /// A sentiment reading of the symbol.
    pub fn on_sentiment(&mut self, score: f64) {
        for (state, value) in self.states.iter_mut().zip(self.values.iter_mut()) {
            *value = state.on_sentiment(score, *value);
        }
    }

    /// The current value of a slot (`None` until warm).
    pub fn value(&self, slot: usize) -> Option<f64> {
        self.values[slot]
    }

    /// Copy the values of `slots` into `out` (cleared first); `false`, with
    /// `out` incomplete, if any of them is not warm.
    pub fn gather(&self, slots: &[usize], out: &mut Vec<f64>) -> bool {
        out.clear();
        for &s in slots {
            match self.values[s] {
                Some(v) => out.push(v),
                None => return false,
            }
        }
        true
    }

    /// The canonical name of a slot.
    pub fn name(&self, slot: usize) -> &str {
        &self.names[slot]
    }

    /// Number of distinct features.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_spec_is_one_slot() {
        let mut p = FeaturePipeline::new();
        let a = p.register(&FeatureSpec::Rsi { period: 14 });
        let b = p.register(&FeatureSpec::ReturnN { n: 3 });
        let c = p.register(&FeatureSpec::Rsi { period: 14 });
        assert_eq!(a, c);
        assert_ne!(a, b);
        assert_eq!(p.len(), 2);
        assert_eq!(
            FeatureSpec::BbPercentB { period: 20, k: 2.0 }.name(),
            "bb_percent_b_20_2"
        );
    }

    #[test]
    fn return_n_and_warm_up() {
        let mut p = FeaturePipeline::new();
        let r = p.register(&FeatureSpec::ReturnN { n: 2 });
        let s = p.register(&FeatureSpec::SentimentEma { period: 2 });
        let mut out = Vec::new();
        for (i, price) in [10.0, 11.0, 12.5, 10.0].into_iter().enumerate() {
            p.on_tick(i as Ts, price, 1.0);
            match i {
                0 | 1 => assert_eq!(p.value(r), None),
                2 => assert!((p.value(r).unwrap() - 0.25).abs() < 1e-15),
                _ => assert!((p.value(r).unwrap() - (10.0 / 11.0 - 1.0)).abs() < 1e-15),
            }
        }
        assert!(!p.gather(&[r, s], &mut out));
        p.on_sentiment(0.2);
        p.on_sentiment(0.4);
        assert!((p.value(s).unwrap() - 0.3).abs() < 1e-15);
        // Ticks leave the sentiment feature alone.
        p.on_tick(10, 10.0, 1.0);
        assert!((p.value(s).unwrap() - 0.3).abs() < 1e-15);
        assert!(p.gather(&[r, s], &mut out));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn time_of_day_is_a_cycle() {
        let mut p = FeaturePipeline::new();
        let s = p.register(&FeatureSpec::TimeOfDay {
            component: Cycle::Sin,
        });
        let c = p.register(&FeatureSpec::TimeOfDay {
            component: Cycle::Cos,
        });
        // 06:00 UTC: a quarter of the day.
        p.on_tick(6 * 3600 * NANOS_PER_SEC, 1.0, 1.0);
        assert!((p.value(s).unwrap() - 1.0).abs() < 1e-12);
        assert!(p.value(c).unwrap().abs() < 1e-12);
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = FeatureSpec::MacdHist {
            fast: 0,
            slow: 26,
            signal: 9,
        }
        .check()
        .unwrap_err();
        assert!(e.contains("fast"), "{e}");
        assert!(FeatureSpec::BbPercentB { period: 5, k: -1.0 }
            .check()
            .is_err());
    }
}
