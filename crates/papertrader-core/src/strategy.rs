//! Rule-based strategies: pure functions of the events they see.
//!
//! A strategy instance trades one symbol. It receives ticks and sentiment readings
//! of that symbol and may answer with a [`Decision`]: a side, a strength in
//! [-1, 1] and the indicator values behind it. It does no I/O and knows nothing
//! about accounts or orders; the engine turns decisions into signals and orders.
//!
//! Every rule signals on a *transition* (a cross, a band break, a threshold
//! crossing), never on every event while a condition holds.
//!
//! Two kinds are not hand-written rules: `model` scores every tick with an
//! ONNX model ([`crate::model`]) over features from [`crate::features`], and
//! `ensemble` combines the scores of models and rules with weights.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bars::Bar;
use crate::config::{
    BollingerRule, CustomRule, EmaSeed, EnsembleRule, MaCrossoverRule, MaKind, ModelRule, RsiRule,
    RuleConfig, SentimentRule, SignalOn, Window,
};
use crate::domain::{Sentiment, Side, Tick, Ts};
use crate::features::FeaturePipeline;
use crate::indicators::{Bollinger, Ema, Rsi, Sma, TimeEma, TimeSma};
use crate::model::{Model, ModelError, ModelInfo, Models, Scorer};

/// What a strategy wants, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub side: Side,
    /// Conviction in [-1, 1]: positive for buys, negative for sells.
    pub strength: f64,
    /// The indicator values behind the decision, by name. A model decision
    /// carries its feature values and `model_output`.
    pub reason: BTreeMap<String, f64>,
    /// The model behind a `model` decision: name and version (sha256 of the
    /// `.onnx` file). `None` for rule-based strategies and ensembles.
    pub model: Option<ModelInfo>,
    /// Only close the position on the other side (an `expr` rule's
    /// `long_exit` / `short_exit`): a sell that does not open a short, a buy
    /// that does not open a long.
    pub close_only: bool,
}

impl Decision {
    pub fn new(side: Side, strength: f64, reason: &[(&str, f64)]) -> Self {
        Decision {
            side,
            strength: strength.clamp(-1.0, 1.0),
            reason: reason.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            model: None,
            close_only: false,
        }
    }
}

/// A strategy instance for one symbol.
pub trait Strategy: Send {
    /// A trade tick; `price` is the tick's price as `f64` (the statistics boundary).
    fn on_tick(&mut self, tick: &Tick, price: f64) -> Option<Decision>;
    /// A completed bar (with `[bars]`); the default sees it as one tick at its close.
    fn on_bar(&mut self, bar: &Bar) -> Option<Decision> {
        let t = bar.as_tick();
        let close = crate::domain::f64_of(t.price);
        self.on_tick(&t, close)
    }
    /// The strategy's position in the symbol (signed quantity, average entry
    /// price; both zero when flat), given before each event. Rules that do not
    /// read it ignore it.
    fn set_position(&mut self, _qty: rust_decimal::Decimal, _avg_cost: rust_decimal::Decimal) {}
    /// A news-sentiment reading.
    fn on_sentiment(&mut self, _s: &Sentiment) -> Option<Decision> {
        None
    }
    /// Everything the strategy has learned from events, for checkpoints.
    fn save(&self) -> StateValue;
    /// Restore what [`Strategy::save`] returned, into an instance built from
    /// the same rule.
    ///
    /// # Errors
    /// The state does not fit this strategy.
    fn restore(&mut self, state: StateValue) -> Result<(), String>;
}

/// A strategy's checkpointed state: CBOR's data model (exact `f64`, NaN included).
pub type StateValue = ciborium::Value;

fn to_state<T: Serialize>(t: &T) -> StateValue {
    StateValue::serialized(t).expect("strategy state is plain data")
}

fn from_state<T: DeserializeOwned>(v: StateValue) -> Result<T, String> {
    v.deserialized().map_err(|e| e.to_string())
}

/// `save` and `restore` of a strategy whose whole struct is its state.
macro_rules! whole_state {
    () => {
        fn save(&self) -> StateValue {
            to_state(self)
        }
        fn restore(&mut self, state: StateValue) -> Result<(), String> {
            *self = from_state(state)?;
            Ok(())
        }
    };
}

/// Build the strategy a rule describes, its models taken from `models`
/// (loaded when the configuration loaded: [`Models::for_rule`] for a rule from
/// elsewhere).
///
/// # Errors
/// A model the rule names is not in `models`, or cannot make a scorer.
pub fn try_build(rule: &RuleConfig, models: &Models) -> Result<Box<dyn Strategy>, ModelError> {
    Ok(match *rule {
        RuleConfig::Expr(ref r) => Box::new(crate::expr::ExprStrategy::new(r, models).map_err(
            |e| ModelError {
                file: e.key.clone(),
                problem: e.error.message,
                fix: e.error.fix,
            },
        )?),
        RuleConfig::Custom(ref r) => build_custom(r).map_err(|e| ModelError {
            file: format!("custom strategy {}", r.name),
            problem: match e {
                CustomError::Unknown(n) => format!("{n:?} is not registered"),
                CustomError::Params(why) => why,
            },
            fix: "register the kind before loading (examples/custom_strategy.rs)".into(),
        })?,
        RuleConfig::Model(ref r) => Box::new(ModelStrategy::new(r, models)?),
        RuleConfig::Ensemble(ref r) => Box::new(Ensemble::new(r, models)?),
        RuleConfig::MaCrossover(MaCrossoverRule {
            fast,
            slow,
            average,
            signal,
            seed,
        }) => Box::new(MaCrossover {
            fast: MovingAverage::seeded(fast, average, seed),
            slow: MovingAverage::seeded(slow, average, seed),
            last_diff: None,
            on_state: signal == SignalOn::State,
        }),
        RuleConfig::RsiMeanReversion(RsiRule {
            period,
            oversold,
            overbought,
        }) => Box::new(RsiMeanReversion {
            rsi: Rsi::new(period),
            period,
            oversold,
            overbought,
            last: None,
            last_price: None,
            unchanged: 0,
        }),
        RuleConfig::BollingerBreakout(BollingerRule { period, k }) => Box::new(BollingerBreakout {
            bands: Bollinger::new(period, k),
            zone: Zone::Inside,
        }),
        RuleConfig::SentimentMomentum(SentimentRule {
            smoothing,
            enter,
            exit,
            trend,
        }) => Box::new(SentimentMomentum {
            smooth: Ema::new(smoothing),
            enter,
            exit,
            trend: trend.map(|w| MovingAverage::new(w, MaKind::Sma)),
            trend_value: None,
            last_price: None,
            last: None,
        }),
    })
}

/// Builds an instance of a strategy kind written in Rust from its
/// `[rule.params]` (one instance per symbol); `Err` says what is wrong with them.
pub type Factory = dyn Fn(&toml::Table) -> Result<Box<dyn Strategy>, String> + Send + Sync;

fn registry() -> &'static RwLock<BTreeMap<String, Arc<Factory>>> {
    static REGISTRY: OnceLock<RwLock<BTreeMap<String, Arc<Factory>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Register a strategy kind written in Rust under `name`: strategy files use it
/// with `kind = "custom"`, `name = "NAME"` and its parameters in `[rule.params]`.
/// Register before loading the configuration (before `papertrader::cli::main`):
/// `examples/custom_strategy.rs`. A second registration of a name replaces the first.
pub fn register(
    name: &str,
    factory: impl Fn(&toml::Table) -> Result<Box<dyn Strategy>, String> + Send + Sync + 'static,
) {
    registry()
        .write()
        .expect("strategy registry")
        .insert(name.to_string(), Arc::new(factory));
}

/// The names registered with [`register`].
pub fn registered() -> Vec<String> {
    registry()
        .read()
        .expect("strategy registry")
        .keys()
        .cloned()
        .collect()
}

/// An instance of the registered kind a `custom` rule names.
///
/// # Errors
/// The kind is not registered (`Ok(Err(..))` is not used: the outer error
/// names the problem), or its factory refuses the parameters.
pub fn build_custom(rule: &CustomRule) -> Result<Box<dyn Strategy>, CustomError> {
    let factory = registry()
        .read()
        .expect("strategy registry")
        .get(&rule.name)
        .cloned()
        .ok_or_else(|| CustomError::Unknown(rule.name.clone()))?;
    factory(&rule.params).map_err(CustomError::Params)
}

/// Why a `custom` rule cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomError {
    /// No kind of that name is registered in this program.
    Unknown(String),
    /// The kind's factory refused the parameters.
    Params(String),
}

/// A moving average over a count of events or over an event-time window.
#[derive(Serialize, Deserialize)]
pub enum MovingAverage {
    Sma(Sma),
    Ema(Ema),
    TimeSma(TimeSma),
    TimeEma(TimeEma),
}

impl MovingAverage {
    pub fn new(window: Window, kind: MaKind) -> Self {
        match (window, kind) {
            (Window::Events(n), MaKind::Sma) => MovingAverage::Sma(Sma::new(n)),
            (Window::Events(n), MaKind::Ema) => MovingAverage::Ema(Ema::new(n)),
            (Window::Time(w), MaKind::Sma) => MovingAverage::TimeSma(TimeSma::new(w)),
            (Window::Time(w), MaKind::Ema) => MovingAverage::TimeEma(TimeEma::new(w)),
        }
    }

    /// [`MovingAverage::new`], with an EMA over a count seeded by `seed`.
    pub fn seeded(window: Window, kind: MaKind, seed: EmaSeed) -> Self {
        match (window, kind, seed) {
            (Window::Events(n), MaKind::Ema, EmaSeed::First) => {
                MovingAverage::Ema(Ema::from_first(n))
            }
            _ => MovingAverage::new(window, kind),
        }
    }

    pub fn update(&mut self, ts: Ts, x: f64) -> Option<f64> {
        match self {
            MovingAverage::Sma(m) => m.update(x),
            MovingAverage::Ema(m) => m.update(x),
            MovingAverage::TimeSma(m) => m.update(ts, x),
            MovingAverage::TimeEma(m) => m.update(ts, x),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct MaCrossover {
    fast: MovingAverage,
    slow: MovingAverage,
    last_diff: Option<f64>,
    /// `signal = "state"`.
    #[serde(default)]
    on_state: bool,
}

impl Strategy for MaCrossover {
    whole_state!();

    fn on_tick(&mut self, tick: &Tick, price: f64) -> Option<Decision> {
        let fast = self.fast.update(tick.ts, price);
        let slow = self.slow.update(tick.ts, price);
        let (fast, slow) = (fast?, slow?);
        let diff = fast - slow;
        let prev = self.last_diff.replace(diff);
        // Strength: the gap between the averages, full strength at 1% of the slow one.
        let strength = if slow != 0.0 {
            diff / (0.01 * slow.abs())
        } else {
            0.0
        };
        let reason = [("fast", fast), ("slow", slow), ("price", price)];
        if self.on_state {
            let long = diff >= 0.0;
            if prev.is_some_and(|p| (p >= 0.0) == long) {
                return None;
            }
            return Some(if long {
                Decision::new(Side::Buy, strength.max(0.01), &reason)
            } else {
                Decision::new(Side::Sell, strength.min(-0.01), &reason)
            });
        }
        let prev = prev?;
        if prev <= 0.0 && diff > 0.0 {
            Some(Decision::new(Side::Buy, strength.max(0.01), &reason))
        } else if prev >= 0.0 && diff < 0.0 {
            Some(Decision::new(Side::Sell, strength.min(-0.01), &reason))
        } else {
            None
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RsiMeanReversion {
    rsi: Rsi,
    period: usize,
    oversold: f64,
    overbought: f64,
    last: Option<f64>,
    last_price: Option<f64>,
    /// Consecutive ticks without a price change.
    unchanged: usize,
}

impl Strategy for RsiMeanReversion {
    whole_state!();

    fn on_tick(&mut self, _tick: &Tick, price: f64) -> Option<Decision> {
        if self.last_price.replace(price) == Some(price) {
            self.unchanged += 1;
        } else {
            self.unchanged = 0;
        }
        let rsi = self.rsi.update(price)?;
        // After `period` unchanged prices TA-Lib's RSI is 0 (no gains, no losses):
        // a quiet market, not an oversold one. No signal, and no cross from it.
        if self.unchanged >= self.period {
            self.last = None;
            return None;
        }
        let prev = self.last.replace(rsi)?;
        // Strength: distance from the neutral 50, full strength at 0 or 100.
        let strength = (50.0 - rsi) / 50.0;
        let reason = [
            ("rsi", rsi),
            ("oversold", self.oversold),
            ("overbought", self.overbought),
            ("price", price),
        ];
        if prev >= self.oversold && rsi < self.oversold {
            Some(Decision::new(Side::Buy, strength, &reason))
        } else if prev <= self.overbought && rsi > self.overbought {
            Some(Decision::new(Side::Sell, strength, &reason))
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Zone {
    Below,
    Inside,
    Above,
}

#[derive(Serialize, Deserialize)]
struct BollingerBreakout {
    bands: Bollinger,
    zone: Zone,
}

impl Strategy for BollingerBreakout {
    whole_state!();

    fn on_tick(&mut self, _tick: &Tick, price: f64) -> Option<Decision> {
        let b = self.bands.update(price)?;
        let zone = if price > b.upper {
            Zone::Above
        } else if price < b.lower {
            Zone::Below
        } else {
            Zone::Inside
        };
        let prev = std::mem::replace(&mut self.zone, zone);
        // Strength: %b mapped so that the upper band is +1 and the lower band -1.
        let strength = (b.percent_b - 0.5) * 2.0;
        let reason = [
            ("upper", b.upper),
            ("middle", b.middle),
            ("lower", b.lower),
            ("percent_b", b.percent_b),
            ("price", price),
        ];
        match (prev, zone) {
            (p, Zone::Above) if p != Zone::Above => {
                Some(Decision::new(Side::Buy, strength, &reason))
            }
            (p, Zone::Below) if p != Zone::Below => {
                Some(Decision::new(Side::Sell, strength, &reason))
            }
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SentimentMomentum {
    smooth: Ema,
    enter: f64,
    exit: f64,
    trend: Option<MovingAverage>,
    trend_value: Option<f64>,
    last_price: Option<f64>,
    last: Option<f64>,
}

impl Strategy for SentimentMomentum {
    whole_state!();

    fn on_tick(&mut self, tick: &Tick, price: f64) -> Option<Decision> {
        self.last_price = Some(price);
        if let Some(t) = &mut self.trend {
            self.trend_value = t.update(tick.ts, price);
        }
        None
    }

    fn on_sentiment(&mut self, s: &Sentiment) -> Option<Decision> {
        let smoothed = self.smooth.update(s.score)?;
        let prev = self.last.replace(smoothed)?;
        let mut reason = vec![("sentiment", smoothed), ("score", s.score)];
        // With a trend filter, trade only with the trend (and only once it is known).
        let (up, down) = match (&self.trend, self.trend_value, self.last_price) {
            (None, _, _) => (true, true),
            (Some(_), Some(ma), Some(p)) => {
                reason.push(("trend", ma));
                reason.push(("price", p));
                (p > ma, p < ma)
            }
            (Some(_), _, _) => (false, false),
        };
        if prev <= self.enter && smoothed > self.enter && up {
            Some(Decision::new(Side::Buy, smoothed, &reason))
        } else if prev >= self.exit && smoothed < self.exit && down {
            Some(Decision::new(Side::Sell, smoothed, &reason))
        } else {
            None
        }
    }
}

/// Which side of the thresholds a score is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
enum ScoreZone {
    Sell,
    Neutral,
    Buy,
}

impl ScoreZone {
    fn of(score: f64, buy_above: f64, sell_below: f64) -> Self {
        if score > buy_above {
            ScoreZone::Buy
        } else if score < sell_below {
            ScoreZone::Sell
        } else {
            ScoreZone::Neutral
        }
    }

    /// The side to signal on entering `self` from `prev`.
    fn entered(self, prev: Option<ScoreZone>) -> Option<Side> {
        match (prev, self) {
            (Some(p), ScoreZone::Buy) if p != ScoreZone::Buy => Some(Side::Buy),
            (Some(p), ScoreZone::Sell) if p != ScoreZone::Sell => Some(Side::Sell),
            _ => None,
        }
    }
}

/// A model over a feature pipeline: the slots of its features, in input order.
struct ScoredModel {
    scorer: Scorer,
    slots: Vec<usize>,
}

impl ScoredModel {
    fn new(
        path: &str,
        models: &Models,
        features: &mut FeaturePipeline,
    ) -> Result<Self, ModelError> {
        let model = models.get(path)?;
        let slots = features.register_all(&model.spec.features);
        Ok(ScoredModel {
            scorer: model.scorer()?,
            slots,
        })
    }

    fn model(&self) -> &Arc<Model> {
        self.scorer.model()
    }

    /// The model output once every feature is warm (`row` is scratch space).
    fn score(&mut self, features: &FeaturePipeline, row: &mut Vec<f64>) -> Option<f64> {
        if !features.gather(&self.slots, row) {
            return None;
        }
        match self.scorer.score(row) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(model = %self.model().spec.name, "{e}");
                None
            }
        }
    }
}

/// Scores every tick with a model once its features are warm; signals when
/// the output crosses into the buy zone (above `buy_above`) or the sell zone
/// (below `sell_below`). Sentiment readings update the features only.
struct ModelStrategy {
    features: FeaturePipeline,
    scored: ScoredModel,
    buy_above: f64,
    sell_below: f64,
    zone: Option<ScoreZone>,
    row: Vec<f64>,
}

impl ModelStrategy {
    fn new(rule: &ModelRule, models: &Models) -> Result<Self, ModelError> {
        let mut features = FeaturePipeline::new();
        let scored = ScoredModel::new(&rule.model, models, &mut features)?;
        let signal = scored.model().spec.signal;
        Ok(ModelStrategy {
            buy_above: rule.buy_above.unwrap_or(signal.buy_above),
            sell_below: rule.sell_below.unwrap_or(signal.sell_below),
            row: Vec::with_capacity(scored.slots.len()),
            features,
            scored,
            zone: None,
        })
    }
}

fn size_f64(tick: &Tick) -> f64 {
    crate::domain::f64_of(tick.size)
}

impl Strategy for ModelStrategy {
    fn save(&self) -> StateValue {
        to_state(&(&self.features, self.zone))
    }

    fn restore(&mut self, state: StateValue) -> Result<(), String> {
        let (features, zone): (FeaturePipeline, Option<ScoreZone>) = from_state(state)?;
        self.features.restore(features)?;
        self.zone = zone;
        Ok(())
    }

    fn on_tick(&mut self, tick: &Tick, price: f64) -> Option<Decision> {
        self.features.on_tick(tick.ts, price, size_f64(tick));
        let output = self.scored.score(&self.features, &mut self.row)?;
        let zone = ScoreZone::of(output, self.buy_above, self.sell_below);
        let side = zone.entered(self.zone.replace(zone))?;
        let m = self.scored.model();
        let mut reason: BTreeMap<String, f64> = self
            .scored
            .slots
            .iter()
            .zip(&self.row)
            .map(|(&s, &v)| (self.features.name(s).to_string(), v))
            .collect();
        reason.insert("model_output".into(), output);
        reason.insert("price".into(), price);
        Some(Decision {
            side,
            strength: m.strength(output),
            reason,
            model: Some(m.info()),
            close_only: false,
        })
    }

    fn on_sentiment(&mut self, s: &Sentiment) -> Option<Decision> {
        self.features.on_sentiment(s.score);
        None
    }
}

/// A voter of an ensemble.
enum Voter {
    /// Scores every tick: the model's strength.
    Model(Box<ScoredModel>),
    /// Scores when it decides: its latest decision's strength, held until the
    /// next one (0 before the first).
    Rule {
        strategy: Box<dyn Strategy>,
        score: f64,
    },
}

/// A weighted mean of member scores in [-1, 1]; signals when it crosses above
/// `threshold` (buy) or below `-threshold` (sell). The models share one
/// feature pipeline, so a feature two models read is computed once. The
/// combined score is evaluated on ticks, once every model member is warm.
struct Ensemble {
    features: FeaturePipeline,
    voters: Vec<(f64, Voter)>,
    names: Vec<String>,
    total_weight: f64,
    threshold: f64,
    zone: Option<ScoreZone>,
    row: Vec<f64>,
}

impl Ensemble {
    fn new(rule: &EnsembleRule, models: &Models) -> Result<Self, ModelError> {
        let mut features = FeaturePipeline::new();
        let mut voters = Vec::new();
        let mut names = Vec::new();
        for (i, m) in rule.members.iter().enumerate() {
            let voter = match (&m.model, &m.rule) {
                (Some(path), _) => {
                    let scored = ScoredModel::new(path, models, &mut features)?;
                    names.push(format!("member_{i}_{}", scored.model().spec.name));
                    Voter::Model(Box::new(scored))
                }
                (None, Some(rule)) => {
                    names.push(format!("member_{i}_{}", rule.kind()));
                    Voter::Rule {
                        strategy: try_build(rule, models)?,
                        score: 0.0,
                    }
                }
                (None, None) => {
                    return Err(ModelError {
                        file: String::new(),
                        problem: format!("ensemble member {i} has neither a model nor a rule"),
                        fix: "give each member `model` or `rule`".into(),
                    })
                }
            };
            voters.push((m.weight, voter));
        }
        Ok(Ensemble {
            total_weight: rule.members.iter().map(|m| m.weight.abs()).sum(),
            threshold: rule.threshold,
            features,
            voters,
            names,
            zone: None,
            row: Vec::new(),
        })
    }
}

impl Strategy for Ensemble {
    fn save(&self) -> StateValue {
        let rules: Vec<Option<(StateValue, f64)>> = self
            .voters
            .iter()
            .map(|(_, v)| match v {
                Voter::Model(_) => None,
                Voter::Rule { strategy, score } => Some((strategy.save(), *score)),
            })
            .collect();
        to_state(&(&self.features, self.zone, rules))
    }

    fn restore(&mut self, state: StateValue) -> Result<(), String> {
        type Saved = (
            FeaturePipeline,
            Option<ScoreZone>,
            Vec<Option<(StateValue, f64)>>,
        );
        let (features, zone, rules): Saved = from_state(state)?;
        if rules.len() != self.voters.len() {
            return Err(format!(
                "the ensemble has {} members, the checkpoint {}",
                self.voters.len(),
                rules.len()
            ));
        }
        self.features.restore(features)?;
        self.zone = zone;
        for ((_, voter), saved) in self.voters.iter_mut().zip(rules) {
            match (voter, saved) {
                (Voter::Model(_), None) => {}
                (Voter::Rule { strategy, score }, Some((st, sc))) => {
                    strategy.restore(st)?;
                    *score = sc;
                }
                _ => return Err("the ensemble's members changed since the checkpoint".into()),
            }
        }
        Ok(())
    }

    fn on_tick(&mut self, tick: &Tick, price: f64) -> Option<Decision> {
        self.features.on_tick(tick.ts, price, size_f64(tick));
        let mut scores = Vec::with_capacity(self.voters.len());
        let mut warm = true;
        for (_, voter) in &mut self.voters {
            match voter {
                Voter::Model(m) => match m.score(&self.features, &mut self.row) {
                    Some(out) => scores.push(m.model().strength(out)),
                    None => {
                        warm = false;
                        scores.push(0.0);
                    }
                },
                Voter::Rule { strategy, score } => {
                    if let Some(d) = strategy.on_tick(tick, price) {
                        *score = d.strength;
                    }
                    scores.push(*score);
                }
            }
        }
        if !warm {
            return None;
        }
        let combined = self
            .voters
            .iter()
            .zip(&scores)
            .map(|((w, _), s)| w * s)
            .sum::<f64>()
            / self.total_weight;
        let zone = ScoreZone::of(combined, self.threshold, -self.threshold);
        let side = zone.entered(self.zone.replace(zone))?;
        let mut reason: BTreeMap<String, f64> = self
            .names
            .iter()
            .zip(&scores)
            .map(|(n, &s)| (n.clone(), s))
            .collect();
        reason.insert("ensemble_score".into(), combined);
        reason.insert("price".into(), price);
        Some(Decision {
            side,
            strength: combined.clamp(-1.0, 1.0),
            reason,
            model: None,
            close_only: false,
        })
    }

    fn on_sentiment(&mut self, s: &Sentiment) -> Option<Decision> {
        self.features.on_sentiment(s.score);
        for (_, voter) in &mut self.voters {
            if let Voter::Rule { strategy, score } = voter {
                if let Some(d) = strategy.on_sentiment(s) {
                    *score = d.strength;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    /// A rule without models, built as the engine builds it.
    fn build(rule: &RuleConfig) -> Box<dyn Strategy> {
        try_build(rule, &Models::new()).unwrap()
    }

    use super::*;
    use rust_decimal::Decimal;

    fn tick(ts: Ts, p: f64) -> Tick {
        Tick {
            symbol: "X".into(),
            ts,
            price: Decimal::try_from(p).unwrap(),
            size: Decimal::ONE,
            bid: None,
            ask: None,
        }
    }

    fn run(s: &mut dyn Strategy, prices: &[f64]) -> Vec<(usize, Side)> {
        prices
            .iter()
            .enumerate()
            .filter_map(|(i, &p)| s.on_tick(&tick(i as i64, p), p).map(|d| (i, d.side)))
            .collect()
    }

    #[test]
    fn sma_crossover_signals_on_the_cross_only() {
        let rule = MaCrossoverRule {
            fast: Window::Events(2),
            slow: Window::Events(3),
            average: MaKind::Sma,
            signal: SignalOn::Cross,
            seed: EmaSeed::Sma,
        };
        let mut s = build(&RuleConfig::MaCrossover(rule));
        // i=2: fast (2+1)/2=1.5, slow (3+2+1)/3=2 -> diff -0.5 (first, no signal)
        // i=3: fast (1+5)/2=3, slow (2+1+5)/3=2.667 -> cross up: buy
        // i=4: fast (5+6)/2=5.5 > slow 4 -> no new signal
        // i=5: fast (6+1)/2=3.5, slow (5+6+1)/3=4 -> cross down: sell
        let prices = [3.0, 2.0, 1.0, 5.0, 6.0, 1.0];
        let signals = run(s.as_mut(), &prices);
        assert_eq!(signals, vec![(3, Side::Buy), (5, Side::Sell)]);
        // On the state, the first ready update signals too (i=2: fast < slow).
        let mut s = build(&RuleConfig::MaCrossover(MaCrossoverRule {
            signal: SignalOn::State,
            ..rule
        }));
        let signals = run(s.as_mut(), &prices);
        assert_eq!(
            signals,
            vec![(2, Side::Sell), (3, Side::Buy), (5, Side::Sell)]
        );
        // fast == slow counts as long on the state (as EMACross's >=): 2 2 2
        // makes both averages 2 at i=2.
        let mut s = build(&RuleConfig::MaCrossover(MaCrossoverRule {
            signal: SignalOn::State,
            ..rule
        }));
        assert_eq!(run(s.as_mut(), &[2.0, 2.0, 2.0]), vec![(2, Side::Buy)]);
    }

    #[test]
    fn rsi_buys_when_falling_through_oversold() {
        let mut s = build(&RuleConfig::RsiMeanReversion(RsiRule {
            period: 2,
            oversold: 30.0,
            overbought: 70.0,
        }));
        // Rising prices push RSI to 100, then a sharp fall drops it below 30.
        let signals = run(s.as_mut(), &[10.0, 11.0, 12.0, 13.0, 8.0, 5.0, 9.0, 14.0]);
        assert!(
            signals.contains(&(4, Side::Buy)) || signals.contains(&(5, Side::Buy)),
            "{signals:?}"
        );
        assert!(
            signals.iter().any(|&(i, s)| s == Side::Sell && i >= 6),
            "{signals:?}"
        );
    }

    #[test]
    fn rsi_ignores_a_flat_market() {
        let mut s = build(&RuleConfig::RsiMeanReversion(RsiRule {
            period: 2,
            oversold: 30.0,
            overbought: 50.0,
        }));
        // Up moves keep RSI at 100; a flat stretch makes TA-Lib's RSI 0, which must
        // not read as oversold.
        let signals = run(s.as_mut(), &[10.0, 11.0, 12.0, 12.0, 12.0, 12.0, 12.0]);
        assert!(
            signals.iter().all(|&(_, side)| side != Side::Buy),
            "{signals:?}"
        );
    }

    #[test]
    fn bollinger_breakout_fires_once_per_break() {
        let mut s = build(&RuleConfig::BollingerBreakout(BollingerRule {
            period: 5,
            k: 1.0,
        }));
        let mut prices = vec![10.0, 10.1, 9.9, 10.0, 10.05, 10.0];
        prices.extend([12.0, 12.5, 10.0, 7.0]);
        let signals = run(s.as_mut(), &prices);
        assert_eq!(signals[0], (6, Side::Buy));
        assert_eq!(
            signals.iter().filter(|(_, s)| *s == Side::Buy).count(),
            1,
            "{signals:?}"
        );
        assert!(
            signals.iter().any(|&(i, s)| s == Side::Sell && i >= 8),
            "{signals:?}"
        );
    }

    #[test]
    fn sentiment_momentum_respects_trend_gate() {
        let rule = |trend| {
            RuleConfig::SentimentMomentum(SentimentRule {
                smoothing: 1,
                enter: 0.3,
                exit: -0.3,
                trend,
            })
        };
        let sent = |ts, score| Sentiment {
            symbol: "X".into(),
            ts,
            score,
            source: "t".into(),
            headline: None,
        };
        // Without a gate: 0 -> 0.5 crosses enter: buy; 0.5 -> -0.5 crosses exit: sell.
        let mut s = build(&rule(None));
        assert!(s.on_sentiment(&sent(1, 0.0)).is_none());
        assert_eq!(s.on_sentiment(&sent(2, 0.5)).unwrap().side, Side::Buy);
        assert_eq!(s.on_sentiment(&sent(3, -0.5)).unwrap().side, Side::Sell);
        // With a 2-event trend gate and a falling price, the buy is blocked.
        let mut s = build(&rule(Some(Window::Events(2))));
        s.on_tick(&tick(1, 10.0), 10.0);
        s.on_tick(&tick(2, 9.0), 9.0);
        assert!(s.on_sentiment(&sent(3, 0.0)).is_none());
        assert!(s.on_sentiment(&sent(4, 0.5)).is_none());
        assert_eq!(s.on_sentiment(&sent(5, -0.5)).unwrap().side, Side::Sell);
    }
}
