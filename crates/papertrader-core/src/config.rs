//! Strategy files: their typed configuration and its checks.
//!
//! A strategy lives in its own TOML file (`strategies/*.toml`). Every struct
//! denies unknown keys, and every problem, whether a typo, a wrong type or a
//! value out of range, is a [`ConfigError`] that names the file, the key and
//! the fix. The application config that lists the strategy files is the root
//! package's (`papertrader::config`).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use crate::analytics::AnalyticsConfig;
use crate::domain::{Ts, NANOS_PER_MILLI};
pub use crate::exits::{Distance, ExitsConfig};
use crate::model::Models;

/// A configuration problem: which file, which key, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error in {file}, key `{key}`: {problem}\n  fix: {fix}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    pub fn new(
        file: impl Into<String>,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.into(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// A problem with one key of a configuration: the key, what is wrong and the
/// fix. The loader adds the file (or environment variable) it came from.
pub type Problem = (String, String, String);

/// A [`Problem`].
pub fn problem(key: impl Into<String>, what: impl Into<String>, fix: impl Into<String>) -> Problem {
    (key.into(), what.into(), fix.into())
}

/// One strategy file (`strategies/*.toml`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyConfig {
    /// Unique name; it keys the strategy's account and its outputs.
    pub name: String,
    /// Symbols this strategy trades; one instance per symbol, one shared account.
    pub symbols: Vec<String>,
    /// The rule and its parameters.
    pub rule: RuleConfig,
    #[serde(default)]
    pub account: AccountConfig,
    pub sizing: SizingConfig,
    /// Pre-trade limits and the drawdown kill switch.
    #[serde(default)]
    pub risk: RiskConfig,
    /// How a signal becomes an order.
    #[serde(default)]
    pub orders: OrdersConfig,
    /// Run the rule on bars aggregated from ticks instead of on every tick.
    #[serde(default)]
    pub bars: Option<BarsConfig>,
    /// Stop loss, take profit, trailing and time stops, minimal ROI (`exits`).
    #[serde(default, skip_serializing_if = "ExitsConfig::is_empty")]
    pub exits: ExitsConfig,
}

/// Bars a rule runs on (see `bars`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BarsConfig {
    /// `time`, `ticks` or `volume`.
    pub kind: BarKind,
    /// A duration for time bars (`"5m"`), a count for tick bars (`"100"` or
    /// `100`), a quantity for volume bars (`"5000"`, `5000` or `2.5`).
    #[serde(deserialize_with = "string_or_number")]
    pub size: String,
}

/// A TOML string, or a number taken as its text (`size = 100` as `"100"`).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string such as \"5m\" or \"100\", or a number such as 100")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

/// Kinds of bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BarKind {
    Time,
    Ticks,
    Volume,
}

impl BarsConfig {
    /// The bar spec, or why `size` does not fit `kind`.
    pub fn spec(&self) -> Result<crate::bars::BarSpec, String> {
        use crate::bars::BarSpec;
        match self.kind {
            BarKind::Time => parse_duration(&self.size).map(BarSpec::Time),
            BarKind::Ticks => match self.size.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(BarSpec::Ticks(n)),
                _ => Err(format!(
                    "{:?} is not a positive whole number of ticks",
                    self.size
                )),
            },
            BarKind::Volume => match self.size.trim().parse::<Decimal>() {
                Ok(v) if v > Decimal::ZERO => Ok(BarSpec::Volume(v)),
                _ => Err(format!("{:?} is not a positive quantity", self.size)),
            },
        }
    }
}

/// Pre-trade risk limits of one strategy; an absent limit is not checked. The
/// cash check (buys must be paid from cash) and the short-selling check
/// (`account.allow_short`) always apply.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RiskConfig {
    /// Largest absolute position per symbol, counting open orders.
    pub max_position: Option<Decimal>,
    /// Largest sum of |position| * price over the strategy's symbols, plus the new order.
    pub max_gross_notional: Option<Decimal>,
    /// Largest quantity of one order.
    pub max_order_qty: Option<Decimal>,
    /// Most orders per second of event time.
    pub max_orders_per_sec: Option<u32>,
    /// Kill switch: at this drawdown of the account from its peak (a fraction,
    /// 0.2 = 20%), cancel every order, flatten every position and halt.
    pub max_drawdown: Option<Decimal>,
}

impl RiskConfig {
    /// Every limit given is positive; the drawdown is a fraction in (0, 1).
    fn check(&self) -> Result<(), Problem> {
        for (key, v) in [
            ("risk.max_position", self.max_position),
            ("risk.max_gross_notional", self.max_gross_notional),
            ("risk.max_order_qty", self.max_order_qty),
        ] {
            if v.is_some_and(|v| v <= Decimal::ZERO) {
                return Err(problem(
                    key,
                    "must be positive",
                    "give a positive limit as a string, e.g. \"1000\", or remove the key",
                ));
            }
        }
        if self.max_orders_per_sec == Some(0) {
            return Err(problem(
                "risk.max_orders_per_sec",
                "is 0",
                "use 1 or more, or remove the key",
            ));
        }
        if self
            .max_drawdown
            .is_some_and(|d| d <= Decimal::ZERO || d >= Decimal::ONE)
        {
            return Err(problem(
                "risk.max_drawdown",
                "must be a fraction between 0 and 1",
                "e.g. max_drawdown = \"0.2\" for 20%",
            ));
        }
        Ok(())
    }
}

/// The order type a signal is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStyle {
    /// A market order (immediate or cancel): walks the book.
    #[default]
    Market,
    /// A limit order at the best price of the order's own side (best bid for a
    /// buy), moved `limit_offset_ticks` towards the other side.
    Limit,
}

/// Time in force of limit orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TifConfig {
    Gtc,
    Ioc,
    Fok,
    #[default]
    Day,
}

/// How a signal becomes an order.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersConfig {
    /// `market` or `limit`.
    #[serde(rename = "type", default)]
    pub style: OrderStyle,
    /// Limit orders: ticks from the own side's best price towards the other side
    /// (0 joins the best bid or ask; the spread in ticks or more crosses it).
    #[serde(default)]
    pub limit_offset_ticks: i64,
    /// Limit orders: `gtc`, `ioc`, `fok` or `day` (expires at UTC midnight, event time).
    #[serde(default)]
    pub tif: TifConfig,
    /// Limit orders: reject instead of taking liquidity.
    #[serde(default)]
    pub post_only: bool,
    /// A signal that turns a position around: one order for the whole
    /// quantity (`net`, default), or a reduce-only order closing the position
    /// and a second one opening the new one (`close_then_open`, as
    /// NautilusTrader's `close_all_positions` then `buy`).
    #[serde(default, skip_serializing_if = "Reverse::is_net")]
    pub reverse: Reverse,
    /// Market orders decided on a bar fill at that bar's close (sized at it
    /// too), not at the tick that closed the bar: backtesting.py's
    /// `trade_on_close=True`. Needs `[bars]` and a fill model from trades.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trade_on_close: bool,
}

/// How a signal turns a position around (`[orders] reverse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reverse {
    #[default]
    Net,
    CloseThenOpen,
}

impl Reverse {
    pub fn is_net(&self) -> bool {
        *self == Reverse::Net
    }
}

impl OrdersConfig {
    /// `post_only`, `limit_offset_ticks` and a `tif` other than the default
    /// only with limit orders.
    fn check(&self) -> Result<(), Problem> {
        if self.style == OrderStyle::Market && (self.post_only || self.limit_offset_ticks != 0) {
            return Err(problem(
                "orders.type",
                "post_only and limit_offset_ticks apply to limit orders only",
                "set type = \"limit\", or remove those keys",
            ));
        }
        if self.style == OrderStyle::Market && self.tif != TifConfig::default() {
            return Err(problem(
                "orders.tif",
                format!(
                    "tif = {:?} applies to limit orders only: a market order takes what the book holds and cancels the rest",
                    match self.tif {
                        TifConfig::Gtc => "gtc",
                        TifConfig::Ioc => "ioc",
                        TifConfig::Fok => "fok",
                        TifConfig::Day => "day",
                    }
                ),
                "set type = \"limit\" (e.g. tif = \"fok\" with limit_offset_ticks to cross the spread), or remove tif",
            ));
        }
        Ok(())
    }
}

/// A window over events (`20`) or over event time (`"50d"`, `"15m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Window {
    Events(usize),
    Time(Ts),
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Window;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of events (e.g. 20) or a duration string (e.g. \"50d\")")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Window, E> {
                if v == 0 {
                    return Err(E::custom("a window must be at least 1 event"));
                }
                Ok(Window::Events(v as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Window, E> {
                if v <= 0 {
                    return Err(E::custom("a window must be at least 1 event"));
                }
                Ok(Window::Events(v as usize))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Window, E> {
                parse_duration(v).map(Window::Time).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Which moving average a crossover uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaKind {
    #[default]
    Sma,
    Ema,
}

/// The rule-based strategies, chosen by `kind`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleConfig {
    Expr(ExprRule),
    Custom(CustomRule),
    MaCrossover(MaCrossoverRule),
    RsiMeanReversion(RsiRule),
    BollingerBreakout(BollingerRule),
    SentimentMomentum(SentimentRule),
    Model(ModelRule),
    Ensemble(EnsembleRule),
}

/// A rule written in the rule language (`crate::expr`, docs/strategies.md):
/// up to four conditions, named sub-expressions and named numbers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExprRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_entry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_exit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_entry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_exit: Option<String>,
    /// `[rule.let]`: named sub-expressions the conditions (and other lets) use.
    #[serde(
        default,
        rename = "let",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub lets: std::collections::BTreeMap<String, String>,
    /// `[rule.params]`: named numbers, usable wherever a number is.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, f64>,
}

impl ExprRule {
    /// The four conditions in `crate::expr::CONDITIONS` order.
    pub fn conditions(&self) -> [Option<&str>; 4] {
        [
            self.long_entry.as_deref(),
            self.long_exit.as_deref(),
            self.short_entry.as_deref(),
            self.short_exit.as_deref(),
        ]
    }

    /// Every condition compiles; `text` (the strategy file's TOML) places an
    /// error at its line and column.
    fn check(
        &self,
        file: &str,
        text: Option<&str>,
        models: &mut Models,
    ) -> Result<(), ConfigError> {
        if self.conditions().iter().all(Option::is_none) {
            return Err(ConfigError::new(
                file,
                "rule.long_entry",
                "an expr rule has no condition",
                "give at least one of long_entry, long_exit, short_entry, short_exit, e.g. \
                 long_entry = \"cross_above(ema(close, 10), ema(close, 30))\"",
            ));
        }
        for (name, x) in &self.params {
            if !x.is_finite() {
                return Err(ConfigError::new(
                    file,
                    format!("rule.params.{name}"),
                    format!("{x} is not a finite number"),
                    "give the parameter a number, e.g. fast = 10",
                ));
            }
        }
        crate::expr::compile(self, &mut |p| models.load(p))
            .map(|_| ())
            .map_err(|e| {
                let src = match e.key.strip_prefix("rule.let.") {
                    Some(name) => self.lets.get(name).map(String::as_str),
                    None => e
                        .key
                        .strip_prefix("rule.")
                        .and_then(|c| crate::expr::CONDITIONS.iter().position(|k| *k == c))
                        .and_then(|i| self.conditions()[i]),
                }
                .unwrap_or_default();
                ConfigError::new(
                    file,
                    e.key.clone(),
                    crate::expr::render(&e, src, text),
                    e.error.fix.clone(),
                )
            })
    }
}

/// A strategy kind written in Rust and registered by the program
/// (`crate::strategy::register`; `examples/custom_strategy.rs`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// The registered name.
    pub name: String,
    /// `[rule.params]`, given to the kind's factory as they are.
    #[serde(default)]
    pub params: toml::Table,
}

impl CustomRule {
    fn check(&self, file: &str) -> Result<(), ConfigError> {
        use crate::strategy::{build_custom, registered, CustomError};
        match build_custom(self) {
            Ok(_) => Ok(()),
            Err(CustomError::Unknown(name)) => {
                let known = registered();
                Err(ConfigError::new(
                    file,
                    "rule.name",
                    format!(
                        "no strategy kind {name:?} is registered in this program{}",
                        if known.is_empty() {
                            " (it registers none)".to_string()
                        } else {
                            format!(" (it registers: {})", known.join(", "))
                        }
                    ),
                    "a custom kind runs in a program that registers it with \
                     papertrader::strategy::register before papertrader::cli::main \
                     (examples/custom_strategy.rs); the papertrader binary has the built-in \
                     kinds and kind = \"expr\"",
                ))
            }
            Err(CustomError::Params(why)) => Err(ConfigError::new(
                file,
                "rule.params",
                why,
                format!("give [rule.params] that the {:?} kind accepts", self.name),
            )),
        }
    }
}

/// Buy when the fast average crosses above the slow one, sell on the cross below.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaCrossoverRule {
    pub fast: Window,
    pub slow: Window,
    #[serde(default)]
    pub average: MaKind,
    /// `cross` (default) or `state`.
    #[serde(default, skip_serializing_if = "SignalOn::is_cross")]
    pub signal: SignalOn,
    /// How an EMA starts: `sma` (default, TA-Lib) or `first`
    /// (NautilusTrader, pandas `ewm(adjust=False)`).
    #[serde(default, skip_serializing_if = "EmaSeed::is_sma")]
    pub seed: EmaSeed,
}

/// How an event-count EMA starts ([`crate::indicators::Ema`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmaSeed {
    /// The mean of the first `period` values (TA-Lib).
    #[default]
    Sma,
    /// The first value, smoothed from there (NautilusTrader).
    First,
}

impl EmaSeed {
    pub fn is_sma(&self) -> bool {
        *self == EmaSeed::Sma
    }
}

/// When a crossover signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalOn {
    /// On a cross only: fast from at or below slow to above buys, from at or
    /// above to below sells. The state when both averages become ready is
    /// not a signal.
    #[default]
    Cross,
    /// On the state: the first update with both averages ready signals it
    /// (fast >= slow buys, fast < slow sells), and every change of it after:
    /// NautilusTrader's EMACross enters as soon as its averages are ready.
    State,
}

impl SignalOn {
    pub fn is_cross(&self) -> bool {
        *self == SignalOn::Cross
    }
}

impl MaCrossoverRule {
    /// `fast` shorter than `slow`, both counts or both durations.
    fn check(&self) -> Result<(), Problem> {
        let ok = match (self.fast, self.slow) {
            (Window::Events(f), Window::Events(sl)) => f < sl,
            (Window::Time(f), Window::Time(sl)) => f < sl,
            _ => false,
        };
        if !ok {
            return Err(problem(
                "rule.fast",
                "fast must be shorter than slow, and both counts or both durations",
                "e.g. fast = 10, slow = 30, or fast = \"5m\", slow = \"30m\"",
            ));
        }
        let counts = matches!(self.fast, Window::Events(_));
        if self.seed == EmaSeed::First && (self.average != MaKind::Ema || !counts) {
            return Err(problem(
                "rule.seed",
                "seed = \"first\" applies to an EMA over a count of updates",
                "set average = \"ema\" and fast and slow as counts, or remove seed",
            ));
        }
        Ok(())
    }
}

/// Buy when RSI falls below `oversold`, sell when it rises above `overbought`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RsiRule {
    pub period: usize,
    pub oversold: f64,
    pub overbought: f64,
}

impl RsiRule {
    /// A period of 2 or more; `0 < oversold < overbought < 100`.
    fn check(&self) -> Result<(), Problem> {
        let RsiRule {
            period,
            oversold,
            overbought,
        } = *self;
        if period < 2 {
            return Err(problem(
                "rule.period",
                format!("{period} is too short"),
                "use 2 or more, e.g. 14",
            ));
        }
        if !(0.0 < oversold && oversold < overbought && overbought < 100.0) {
            return Err(problem(
                "rule.oversold",
                format!("need 0 < oversold < overbought < 100, got {oversold} and {overbought}"),
                "e.g. oversold = 30, overbought = 70",
            ));
        }
        Ok(())
    }
}

/// Buy when the price closes above the upper band, sell below the lower band.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BollingerRule {
    pub period: usize,
    pub k: f64,
}

impl BollingerRule {
    /// A period of 2 or more and a positive, finite width.
    fn check(&self) -> Result<(), Problem> {
        let BollingerRule { period, k } = *self;
        if period < 2 {
            return Err(problem(
                "rule.period",
                format!("{period} is too short"),
                "use 2 or more, e.g. 20",
            ));
        }
        if !(k > 0.0 && k.is_finite()) {
            return Err(problem(
                "rule.k",
                format!("{k} is not a positive width"),
                "e.g. k = 2.0",
            ));
        }
        Ok(())
    }
}

/// Buy when smoothed sentiment rises above `enter`, sell when it falls below
/// `exit`; with `trend` set, buys need the price above its moving average over
/// that window and sells need it below.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SentimentRule {
    /// EMA period over sentiment readings.
    pub smoothing: usize,
    pub enter: f64,
    pub exit: f64,
    #[serde(default)]
    pub trend: Option<Window>,
}

impl SentimentRule {
    /// Smoothing of 1 or more; `-1 <= exit < enter <= 1`.
    fn check(&self) -> Result<(), Problem> {
        let SentimentRule {
            smoothing,
            enter,
            exit,
            ..
        } = *self;
        if smoothing == 0 {
            return Err(problem("rule.smoothing", "is 0", "use 1 or more, e.g. 5"));
        }
        if !((-1.0..=1.0).contains(&enter) && (-1.0..=1.0).contains(&exit) && exit < enter) {
            return Err(problem(
                "rule.enter",
                format!("need -1 <= exit < enter <= 1, got enter {enter}, exit {exit}"),
                "e.g. enter = 0.3, exit = -0.3",
            ));
        }
        Ok(())
    }
}

/// Score every tick with an ONNX model (`models/NAME.toml`); buy when the
/// output rises above `buy_above`, sell when it falls below `sell_below`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRule {
    /// The model spec file, relative to the working directory.
    pub model: String,
    /// Overrides the spec's `signal.buy_above`.
    #[serde(default)]
    pub buy_above: Option<f64>,
    /// Overrides the spec's `signal.sell_below`.
    #[serde(default)]
    pub sell_below: Option<f64>,
}

/// A weighted vote of models and rule-based strategies: buy when the combined
/// score rises above `threshold`, sell when it falls below `-threshold`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleRule {
    /// In (0, 1]: the combined score is a weighted mean of scores in [-1, 1].
    pub threshold: f64,
    pub members: Vec<EnsembleMember>,
}

/// One voter of an ensemble: a model (`model = "models/trend.toml"`) or a rule
/// (`rule = { kind = "rsi_mean_reversion", ... }`), with a weight.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleMember {
    /// Non-zero; a negative weight votes against the member.
    pub weight: f64,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub rule: Option<Box<RuleConfig>>,
}

impl RuleConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            RuleConfig::Expr(_) => "expr",
            RuleConfig::Custom(_) => "custom",
            RuleConfig::MaCrossover(_) => "ma_crossover",
            RuleConfig::RsiMeanReversion(_) => "rsi_mean_reversion",
            RuleConfig::BollingerBreakout(_) => "bollinger_breakout",
            RuleConfig::SentimentMomentum(_) => "sentiment_momentum",
            RuleConfig::Model(_) => "model",
            RuleConfig::Ensemble(_) => "ensemble",
        }
    }
}

/// The paper account of one strategy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Starting cash, e.g. "100000". Write it as a string to keep it exact.
    #[serde(default = "default_cash")]
    pub starting_cash: Decimal,
    /// Allow sell signals to open short positions.
    #[serde(default)]
    pub allow_short: bool,
}

impl AccountConfig {
    fn check(&self) -> Result<(), Problem> {
        if self.starting_cash <= Decimal::ZERO {
            return Err(problem(
                "account.starting_cash",
                "must be positive",
                "e.g. starting_cash = \"100000\"",
            ));
        }
        Ok(())
    }
}

fn default_cash() -> Decimal {
    Decimal::from(100_000)
}

impl Default for AccountConfig {
    fn default() -> Self {
        AccountConfig {
            starting_cash: default_cash(),
            allow_short: false,
        }
    }
}

/// How big an order a signal opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SizingMode {
    FixedQuantity,
    FixedNotional,
    FractionOfEquity,
}

/// Position sizing. `mode` chooses which of `quantity`, `notional` or `fraction`
/// applies; quantities are rounded down to a multiple of `lot_size`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SizingConfig {
    pub mode: SizingMode,
    #[serde(default)]
    pub quantity: Option<Decimal>,
    #[serde(default)]
    pub notional: Option<Decimal>,
    #[serde(default)]
    pub fraction: Option<Decimal>,
    #[serde(default = "default_lot")]
    pub lot_size: Decimal,
}

impl SizingConfig {
    /// A positive lot size, and the amount the mode needs (a fraction at most 1).
    fn check(&self) -> Result<(), Problem> {
        if self.lot_size <= Decimal::ZERO {
            return Err(problem(
                "sizing.lot_size",
                "must be positive",
                "e.g. lot_size = \"1\" or \"0.001\"",
            ));
        }
        let (key, value, example) = match self.mode {
            SizingMode::FixedQuantity => ("sizing.quantity", self.quantity, "quantity = \"100\""),
            SizingMode::FixedNotional => ("sizing.notional", self.notional, "notional = \"10000\""),
            SizingMode::FractionOfEquity => {
                ("sizing.fraction", self.fraction, "fraction = \"0.25\"")
            }
        };
        match value {
            None => {
                let mode = serde_json::to_value(self.mode).ok();
                let mode = mode.as_ref().and_then(|m| m.as_str()).unwrap_or("");
                Err(problem(
                    key,
                    format!("is required by mode {mode:?}"),
                    example,
                ))
            }
            Some(v) if v <= Decimal::ZERO => Err(problem(key, "must be positive", example)),
            Some(v) if self.mode == SizingMode::FractionOfEquity && v > Decimal::ONE => Err(
                problem(key, "must not exceed 1", "use a fraction in (0, 1]"),
            ),
            _ => Ok(()),
        }
    }
}

fn default_lot() -> Decimal {
    Decimal::ONE
}

/// A span of time in a configuration file, written with a unit: `"250ms"`,
/// `"30s"`, `"15m"`, `"4h"`, `"50d"`; zero as `"0s"`, `"0ms"` or `"0"`. This is
/// the one parser of durations: keys that must be positive check
/// [`Span::is_zero`] beside their other checks, and keys that can be switched
/// off are `Option<Span>` read by [`off_or_span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(Ts);

impl Span {
    pub const ZERO: Span = Span(0);

    /// A span of `ns` nanoseconds (negative is taken as zero).
    pub fn from_nanos(ns: Ts) -> Span {
        Span(ns.max(0))
    }

    pub fn nanos(self) -> Ts {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The span as wall time.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0 as u64)
    }

    /// Parse `"250ms"`, `"30s"`, `"15m"`, `"4h"`, `"50d"`, or zero (`"0"`, `"0s"`, ...).
    ///
    /// # Errors
    /// No unit or an unknown one, a number that is not whole, or a span too long
    /// for 64-bit nanoseconds; the message quotes the text and lists the units.
    pub fn parse(s: &str) -> Result<Span, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b == b'0') {
            return Ok(Span::ZERO);
        }
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration {s:?} has no unit (use ms, s, m, h or d)"))?;
        let (num, unit) = s.split_at(split);
        let n: i64 = num
            .parse()
            .map_err(|_| format!("duration {s:?} must start with a whole number"))?;
        let mult = match unit {
            "ms" => NANOS_PER_MILLI,
            "s" => 1_000 * NANOS_PER_MILLI,
            "m" => 60_000 * NANOS_PER_MILLI,
            "h" => 3_600_000 * NANOS_PER_MILLI,
            "d" => 86_400_000 * NANOS_PER_MILLI,
            _ => {
                return Err(format!(
                    "duration {s:?} has unknown unit {unit:?} (use ms, s, m, h or d)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Span)
            .ok_or_else(|| format!("duration {s:?} is too long"))
    }

    /// [`Span::parse`], refusing zero.
    ///
    /// # Errors
    /// As [`Span::parse`], and zero.
    pub fn parse_positive(s: &str) -> Result<Span, String> {
        let span = Span::parse(s)?;
        if span.is_zero() {
            return Err(format!("duration {:?} must be positive", s.trim()));
        }
        Ok(span)
    }
}

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Span, String> {
        Span::parse(s)
    }
}

impl std::fmt::Display for Span {
    /// The largest unit that divides the span exactly: `"250ms"`, `"90s"`, `"0s"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [(&str, i64); 5] = [
            ("d", 86_400_000 * NANOS_PER_MILLI),
            ("h", 3_600_000 * NANOS_PER_MILLI),
            ("m", 60_000 * NANOS_PER_MILLI),
            ("s", 1_000 * NANOS_PER_MILLI),
            ("ms", NANOS_PER_MILLI),
        ];
        if self.0 == 0 {
            return f.write_str("0s");
        }
        for (unit, ns) in UNITS {
            if self.0 % ns == 0 {
                return write!(f, "{}{unit}", self.0 / ns);
            }
        }
        write!(f, "{}ms", self.0 as f64 / NANOS_PER_MILLI as f64)
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SpanVisitor)
    }
}

/// A span from a string; a bare number (an environment variable such as
/// `PAPERTRADER__INPUT__MAX_OUT_OF_ORDER=5`) is refused for its missing unit.
struct SpanVisitor;

impl serde::de::Visitor<'_> for SpanVisitor {
    type Value = Span;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a duration with a unit, such as \"250ms\" or \"30s\"")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Span, E> {
        Span::parse(v).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Span, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Span, E> {
        self.visit_str(&v.to_string())
    }
}

/// Deserialize `"off"` as `None` and anything else as a [`Span`]
/// (`#[serde(deserialize_with = "off_or_span")]`).
///
/// # Errors
/// Neither `"off"` nor a span.
pub fn off_or_span<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Span>, D::Error> {
    struct OffOrSpan;
    impl serde::de::Visitor<'_> for OffOrSpan {
        type Value = Option<Span>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration with a unit, such as \"1h\", or \"off\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<Span>, E> {
            if v.trim() == "off" {
                return Ok(None);
            }
            Span::parse(v)
                .map(Some)
                .map_err(|e| E::custom(format!("{e}, or \"off\"")))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<Span>, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<Span>, E> {
            self.visit_str(&v.to_string())
        }
    }
    d.deserialize_any(OffOrSpan)
}

/// Serialize `None` as `"off"` (the inverse of [`off_or_span`]).
///
/// # Errors
/// Those of the serializer.
pub fn serialize_off_or_span<S: serde::Serializer>(
    v: &Option<Span>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(span) => s.collect_str(span),
        None => s.serialize_str("off"),
    }
}

/// Parse a positive duration such as `500ms`, `30s`, `15m`, `4h` or `50d` into
/// nanoseconds ([`Span::parse_positive`]).
///
/// # Errors
/// See [`Span::parse_positive`].
pub fn parse_duration(s: &str) -> Result<Ts, String> {
    Span::parse_positive(s).map(Span::nanos)
}

/// A duration where zero (`"0s"`, `"0ms"`, `"0"`) is allowed ([`Span::parse`]).
///
/// # Errors
/// See [`Span::parse`].
pub fn parse_duration_or_zero(s: &str) -> Result<Ts, String> {
    Span::parse(s).map(Span::nanos)
}

/// Load and check one strategy file (its models loaded for the check only:
/// [`load_strategy_with`] keeps them).
pub fn load_strategy(path: &Path) -> Result<StrategyConfig, ConfigError> {
    load_strategy_with(path, &mut Models::new())
}

/// Load and check one strategy file; the models it names are loaded into
/// `models` (once each), for the engine to build its strategies from.
pub fn load_strategy_with(path: &Path, models: &mut Models) -> Result<StrategyConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "",
            "",
            format!("cannot read strategy file {file}: {e}"),
            "list existing files under `strategies`; relative paths are taken from the working directory \
             (run from the repository root, or use absolute paths)",
        )
    })?;
    parse_strategy_with(&text, &file, models)
}

/// Parse and check a strategy from TOML text; `file` names it in errors.
pub fn parse_strategy(text: &str, file: &str) -> Result<StrategyConfig, ConfigError> {
    parse_strategy_with(text, file, &mut Models::new())
}

/// [`parse_strategy`], loading the models it names into `models` (a model
/// already there is not loaded again).
pub fn parse_strategy_with(
    text: &str,
    file: &str,
    models: &mut Models,
) -> Result<StrategyConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        ConfigError::new(
            file,
            "(syntax)",
            e.to_string().trim().to_string(),
            "correct the TOML syntax",
        )
    })?;
    let s: StrategyConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let mut key = e.path().to_string();
        let inner = e.into_inner();
        let mut msg = inner.message().to_string();
        // `[rule]` is read through its `kind` tag, which hides the key path: read
        // the table again as the chosen rule to name the key.
        if key == "rule" {
            if let Some((k, m)) = diagnose_rule(text) {
                key = k;
                msg = m;
            }
        }
        // toml appends where it was (`\nin `k``): the key says it already.
        if let Some(cut) = msg.find("\nin `") {
            msg.truncate(cut);
        }
        let msg = msg.trim().to_string();
        if let Some(k) = nested_ensemble(text) {
            return ConfigError::new(
                file,
                k,
                "an ensemble cannot be a member of an ensemble (ensembles do not nest)",
                "list the inner ensemble's members directly, or give the member a model or a rule of another kind",
            );
        }
        let quoted_number = msg.starts_with("invalid type: string")
            && ["f64", "i64", "u64", "usize", "u32", "integer", "number"]
                .iter()
                .any(|t| msg.contains(&format!("expected {t}")) || msg.contains(&format!("expected a {t}")) || msg.contains(&format!("expected an {t}")));
        let number_fix;
        let fix = if key == "account.fee_bps" {
            "fees are set per symbol on the venue now: remove the key and set \
             venue.default.taker_fee_bps / maker_fee_bps (or venue.symbols.SYMBOL.*) in the app config"
        } else if quoted_number {
            let name = key.rsplit('.').next().unwrap_or(&key);
            let value = msg.split('"').nth(1).unwrap_or("2");
            number_fix = format!("write the number without quotes, e.g. {name} = {value}");
            number_fix.as_str()
        } else if msg.contains("unknown field") {
            "remove or rename the key; see the examples in strategies/ and docs/strategies.md"
        } else if msg.contains("missing field") {
            "add the key; see the examples in strategies/"
        } else if msg.contains("unknown variant") {
            "use one of the listed values"
        } else {
            "give the key a value of the expected type"
        };
        ConfigError::new(file, key, msg, fix)
    })?;
    // An expression error points at its line and column in the file.
    if let RuleConfig::Expr(r) = &s.rule {
        r.check(file, Some(text), models)?;
    }
    check_strategy(&s, file, models)?;
    Ok(s)
}

/// `rule.members[i].rule` of the first member whose rule is itself an
/// ensemble, which the deserializer reports as a missing `members`.
fn nested_ensemble(text: &str) -> Option<String> {
    let table: toml::Table = text.parse().ok()?;
    let members = table.get("rule")?.get("members")?.as_array()?;
    members.iter().enumerate().find_map(|(i, m)| {
        (m.get("rule")?.get("kind")?.as_str()? == "ensemble")
            .then(|| format!("rule.members[{i}].rule"))
    })
}

/// The key and message of an error inside `[rule]`, found by reading the table as
/// the rule its `kind` names.
fn diagnose_rule(text: &str) -> Option<(String, String)> {
    fn as_rule<T: serde::de::DeserializeOwned>(v: toml::Value) -> Option<(String, String)> {
        serde_path_to_error::deserialize::<_, T>(v).err().map(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            // A field missing from the rule itself has the path ".": name it.
            let key = match (path.as_str(), msg.split('`').nth(1)) {
                (".", Some(field)) if msg.starts_with("missing field") => format!("rule.{field}"),
                (".", _) => "rule".to_string(),
                _ => format!("rule.{path}"),
            };
            (key, msg)
        })
    }
    let table: toml::Table = text.parse().ok()?;
    let mut rule = table.get("rule")?.as_table()?.clone();
    let kind = rule.remove("kind")?.as_str()?.to_string();
    let v = toml::Value::Table(rule);
    match kind.as_str() {
        "expr" => as_rule::<ExprRule>(v),
        "custom" => as_rule::<CustomRule>(v),
        "ma_crossover" => as_rule::<MaCrossoverRule>(v),
        "rsi_mean_reversion" => as_rule::<RsiRule>(v),
        "bollinger_breakout" => as_rule::<BollingerRule>(v),
        "sentiment_momentum" => as_rule::<SentimentRule>(v),
        "model" => as_rule::<ModelRule>(v),
        "ensemble" => as_rule::<EnsembleRule>(v),
        _ => None,
    }
}

fn check_strategy(s: &StrategyConfig, file: &str, models: &mut Models) -> Result<(), ConfigError> {
    let err = |(key, problem, fix): Problem| ConfigError::new(file, key, problem, fix);
    if s.name.trim().is_empty() || s.name.contains(char::is_whitespace) {
        return Err(err(problem(
            "name",
            format!("{:?} is not a usable name", s.name),
            "use a name without spaces",
        )));
    }
    if s.symbols.is_empty() {
        return Err(err(problem(
            "symbols",
            "is empty",
            "list the symbols to trade, e.g. [\"ACME\"]",
        )));
    }
    match &s.rule {
        RuleConfig::Expr(r) => r.check(file, None, models)?,
        RuleConfig::Custom(r) => r.check(file)?,
        RuleConfig::MaCrossover(r) => r.check().map_err(err)?,
        RuleConfig::RsiMeanReversion(r) => r.check().map_err(err)?,
        RuleConfig::BollingerBreakout(r) => r.check().map_err(err)?,
        RuleConfig::SentimentMomentum(r) => r.check().map_err(err)?,
        RuleConfig::Model(rule) => check_model_rule(rule, file, models)?,
        RuleConfig::Ensemble(rule) => check_ensemble_rule(rule, s, file, models)?,
    }
    s.account.check().map_err(err)?;
    s.risk.check().map_err(err)?;
    if let Some(b) = &s.bars {
        if let Err(what) = b.spec() {
            return Err(err(problem(
                "bars.size",
                what,
                "time bars: a duration such as \"5m\"; tick bars: a count such as \"100\"; volume bars: a quantity such as \"5000\"",
            )));
        }
    }
    s.orders.check().map_err(err)?;
    s.exits.check().map_err(err)?;
    s.sizing.check().map_err(err)
}

/// Load the model (into `models`, once per path) and check the thresholds
/// against it: a model that does not load stops start-up here, naming the
/// model file.
fn check_model_rule(rule: &ModelRule, file: &str, models: &mut Models) -> Result<(), ConfigError> {
    let model = models.load(&rule.model).map_err(|e| {
        ConfigError::new(
            file,
            "rule.model",
            format!("model {}: {}", e.file, e.problem),
            e.fix,
        )
    })?;
    let buy = rule.buy_above.unwrap_or(model.spec.signal.buy_above);
    let sell = rule.sell_below.unwrap_or(model.spec.signal.sell_below);
    if !(0.0 <= sell && sell <= buy && buy <= 1.0) {
        return Err(ConfigError::new(
            file,
            "rule.buy_above",
            format!(
                "need 0 <= sell_below <= buy_above <= 1, got sell_below {sell} and buy_above {buy}"
            ),
            "e.g. buy_above = 0.6, sell_below = 0.4",
        ));
    }
    Ok(())
}

/// Check every member; a member rule is checked as its own strategy would be.
fn check_ensemble_rule(
    rule: &EnsembleRule,
    s: &StrategyConfig,
    file: &str,
    models: &mut Models,
) -> Result<(), ConfigError> {
    if !(rule.threshold > 0.0 && rule.threshold <= 1.0) {
        return Err(ConfigError::new(
            file,
            "rule.threshold",
            format!("{} is not in (0, 1]", rule.threshold),
            "e.g. threshold = 0.3",
        ));
    }
    if rule.members.is_empty() {
        return Err(ConfigError::new(
            file,
            "rule.members",
            "is empty",
            "add [[rule.members]] entries with a weight and a model or a rule",
        ));
    }
    for (i, m) in rule.members.iter().enumerate() {
        let key = format!("rule.members[{i}]");
        if !(m.weight.is_finite() && m.weight != 0.0) {
            return Err(ConfigError::new(
                file,
                format!("{key}.weight"),
                format!("{} is not a usable weight", m.weight),
                "use a finite, non-zero weight, e.g. weight = 0.5",
            ));
        }
        match (&m.model, &m.rule) {
            (Some(model), None) => {
                let as_rule = ModelRule {
                    model: model.clone(),
                    buy_above: None,
                    sell_below: None,
                };
                check_model_rule(&as_rule, file, models).map_err(|mut e| {
                    e.key = format!("{key}.model");
                    e
                })?;
            }
            (None, Some(inner)) => {
                if matches!(**inner, RuleConfig::Ensemble(_)) {
                    return Err(ConfigError::new(
                        file,
                        format!("{key}.rule"),
                        "an ensemble cannot be a member of an ensemble",
                        "list the inner ensemble's members directly",
                    ));
                }
                let mut alone = s.clone();
                alone.rule = (**inner).clone();
                check_strategy(&alone, file, models).map_err(|mut e| {
                    if let Some(rest) = e.key.strip_prefix("rule.") {
                        e.key = format!("{key}.rule.{rest}");
                    }
                    e
                })?;
            }
            _ => {
                return Err(ConfigError::new(
                    file,
                    key,
                    "needs exactly one of `model` and `rule`",
                    "e.g. model = \"models/trend.toml\", or rule = { kind = \"rsi_mean_reversion\", period = 14, oversold = 30.0, overbought = 70.0 }",
                ))
            }
        }
    }
    Ok(())
}

/// `span` must not be zero.
///
/// # Errors
/// `key` is 0, with `fix`.
pub fn positive(key: &str, span: Span, fix: &str) -> Result<(), Problem> {
    if span.is_zero() {
        return Err(problem(key, "is 0", fix));
    }
    Ok(())
}

/// Alert rules and where alerts go besides the `alerts` topic (`alerts`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// POST every alert as JSON to this URL; empty for none.
    pub webhook_url: String,
    /// Attempts per webhook call (the first one included).
    pub webhook_attempts: u32,
    /// Wait before the first retry; doubled after each failed attempt.
    pub webhook_backoff: Span,
    /// The rules, each `[[alerts.rules]]` with a `kind`.
    pub rules: Vec<AlertRule>,
    /// A Telegram chat, through a bot (`[alerts.telegram]`).
    pub telegram: TelegramConfig,
    /// A Slack incoming webhook (`[alerts.slack]`).
    pub slack: ChatWebhookConfig,
    /// A Discord webhook (`[alerts.discord]`).
    pub discord: ChatWebhookConfig,
}

/// Alerts (and, with `fills`, every fill) as messages from a Telegram bot to
/// one chat (`alerts.telegram`). Off while `chat_id` is empty.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot's token (from @BotFather); or leave it empty and name an
    /// environment variable in `bot_token_env`.
    pub bot_token: String,
    /// The environment variable that holds the token, e.g. "TELEGRAM_BOT_TOKEN".
    pub bot_token_env: String,
    /// The chat: a numeric id (negative for groups) or "@channelusername".
    pub chat_id: String,
    /// The Bot API's base URL; messages go to `{api_url}/bot{token}/sendMessage`.
    pub api_url: String,
    /// Send a message for every fill too.
    pub fills: bool,
}

/// Alerts (and, with `fills`, every fill) to a Slack or Discord incoming
/// webhook (`alerts.slack`, `alerts.discord`). Off while both URL keys are empty.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChatWebhookConfig {
    /// The webhook's URL; or leave it empty and name an environment variable
    /// in `webhook_url_env` (the URL is a secret: whoever has it can post).
    pub webhook_url: String,
    /// The environment variable that holds the URL, e.g. "SLACK_WEBHOOK_URL".
    pub webhook_url_env: String,
    /// Send a message for every fill too.
    pub fills: bool,
}

/// A secret given literally (`literal`) or through an environment variable
/// (`env`): `Ok(None)` when neither is set.
fn secret(
    key: &str,
    literal: &str,
    env: &str,
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, Problem> {
    let (literal, env) = (literal.trim(), env.trim());
    match (literal.is_empty(), env.is_empty()) {
        (true, true) => Ok(None),
        (false, true) => Ok(Some(literal.to_string())),
        (false, false) => Err(problem(
            format!("{key}_env"),
            format!("is set together with {key}"),
            format!(
                "keep one: {key} (the value) or {key}_env (the environment variable that holds it)"
            ),
        )),
        (true, false) => match read(env).map(|v| v.trim().to_string()) {
            Some(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(problem(
                format!("{key}_env"),
                format!("names the environment variable {env}, which is not set or empty"),
                format!("export {env}=... before starting, or set {key} instead"),
            )),
        },
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `url` must be an http(s) URL.
fn http_url(key: &str, url: &str) -> Result<(), Problem> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(());
    }
    Err(problem(
        key,
        format!("{url:?} is not an http:// or https:// URL"),
        "write the full URL, e.g. \"https://...\"",
    ))
}

impl TelegramConfig {
    /// The bot token and the chat, once `chat_id` is set; `read` looks up
    /// environment variables.
    ///
    /// # Errors
    /// The key, what is wrong, and the fix: a chat without a token, a token
    /// without a chat, both `bot_token` and `bot_token_env`, an unset variable,
    /// a bad `api_url`, or `fills` with no chat.
    pub fn resolve_with(
        &self,
        read: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(String, String)>, Problem> {
        let token = secret(
            "alerts.telegram.bot_token",
            &self.bot_token,
            &self.bot_token_env,
            read,
        )?;
        let chat = self.chat_id.trim();
        match (token, chat.is_empty()) {
            (None, true) if self.fills => Err(problem(
                "alerts.telegram.fills",
                "is true but no chat is configured",
                "set alerts.telegram.chat_id and bot_token (or bot_token_env), or fills = false",
            )),
            (None, true) => Ok(None),
            (None, false) => Err(problem(
                "alerts.telegram.bot_token",
                format!("is empty, but chat_id = {chat:?} asks for Telegram"),
                "set bot_token = \"123456:ABC...\" (from @BotFather), or bot_token_env = \"TELEGRAM_BOT_TOKEN\" and export that variable; or empty chat_id",
            )),
            (Some(_), true) => Err(problem(
                "alerts.telegram.chat_id",
                "is empty, but a bot token is set",
                "set chat_id to the chat's id (e.g. \"-1001234567890\") or \"@channelusername\", or remove the token",
            )),
            (Some(token), false) => {
                http_url("alerts.telegram.api_url", self.api_url.trim())?;
                if token.chars().any(|c| c.is_whitespace() || c == '/') {
                    return Err(problem(
                        "alerts.telegram.bot_token",
                        "contains a space or a '/'",
                        "copy the token exactly as @BotFather gave it, e.g. \"123456:ABC-DEF...\"",
                    ));
                }
                Ok(Some((token, chat.to_string())))
            }
        }
    }

    /// [`TelegramConfig::resolve_with`] on the process's environment.
    ///
    /// # Errors
    /// As [`TelegramConfig::resolve_with`].
    pub fn resolve(&self) -> Result<Option<(String, String)>, Problem> {
        self.resolve_with(&env_var)
    }
}

impl ChatWebhookConfig {
    /// The webhook URL, when one is set; `section` is `alerts.slack` or
    /// `alerts.discord`, and `read` looks up environment variables.
    ///
    /// # Errors
    /// The key, what is wrong, and the fix: both keys set, an unset variable,
    /// a URL that is not http(s), or `fills` with no URL.
    pub fn resolve_with(
        &self,
        section: &str,
        read: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, Problem> {
        let key = format!("{section}.webhook_url");
        match secret(&key, &self.webhook_url, &self.webhook_url_env, read)? {
            None if self.fills => Err(problem(
                format!("{section}.fills"),
                "is true but no webhook is configured",
                format!("set {section}.webhook_url (or webhook_url_env), or fills = false"),
            )),
            None => Ok(None),
            Some(url) => {
                // Never echo the URL: it is the webhook's secret.
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(problem(
                        key,
                        "is not an http:// or https:// URL",
                        "paste the webhook URL exactly as the service shows it",
                    ));
                }
                Ok(Some(url))
            }
        }
    }

    /// [`ChatWebhookConfig::resolve_with`] on the process's environment.
    ///
    /// # Errors
    /// As [`ChatWebhookConfig::resolve_with`].
    pub fn resolve(&self, section: &str) -> Result<Option<String>, Problem> {
        self.resolve_with(section, &env_var)
    }
}

#[cfg(test)]
mod notification_config_tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TG_TOKEN").then(|| " 123:abc ".to_string())
    }

    fn tg(token: &str, token_env: &str, chat: &str, fills: bool) -> TelegramConfig {
        TelegramConfig {
            bot_token: token.into(),
            bot_token_env: token_env.into(),
            chat_id: chat.into(),
            api_url: "https://api.telegram.org".into(),
            fills,
        }
    }

    fn key(r: Result<impl std::fmt::Debug, Problem>) -> String {
        r.expect_err("a problem").0
    }

    #[test]
    fn telegram_needs_a_token_and_a_chat_together() {
        assert_eq!(tg("", "", "", false).resolve_with(&env), Ok(None));
        assert_eq!(
            tg("1:a", "", "-100", false).resolve_with(&env),
            Ok(Some(("1:a".into(), "-100".into())))
        );
        assert_eq!(
            tg("", "TG_TOKEN", "@desk", false).resolve_with(&env),
            Ok(Some(("123:abc".into(), "@desk".into())))
        );
        let e = tg("", "", "-100", false).resolve_with(&env).unwrap_err();
        assert_eq!(e.0, "alerts.telegram.bot_token");
        assert!(e.2.contains("bot_token_env"), "{e:?}");
        assert_eq!(
            key(tg("1:a", "", "", false).resolve_with(&env)),
            "alerts.telegram.chat_id"
        );
        assert_eq!(
            key(tg("1:a", "TG_TOKEN", "-1", false).resolve_with(&env)),
            "alerts.telegram.bot_token_env"
        );
        let e = tg("", "NOT_SET_ANYWHERE", "-1", false)
            .resolve_with(&env)
            .unwrap_err();
        assert_eq!(e.0, "alerts.telegram.bot_token_env");
        assert!(
            e.1.contains("NOT_SET_ANYWHERE") && e.2.contains("export"),
            "{e:?}"
        );
        assert_eq!(
            key(tg("", "", "", true).resolve_with(&env)),
            "alerts.telegram.fills"
        );
        let mut bad = tg("1:a", "", "-1", false);
        bad.api_url = "api.telegram.org".into();
        assert_eq!(key(bad.resolve_with(&env)), "alerts.telegram.api_url");
    }

    #[test]
    fn chat_webhooks_take_a_url_or_a_variable_and_never_echo_it() {
        let hook = |url: &str, env_name: &str, fills: bool| ChatWebhookConfig {
            webhook_url: url.into(),
            webhook_url_env: env_name.into(),
            fills,
        };
        let read = |n: &str| (n == "HOOK").then(|| "https://hooks.example/T/secret".to_string());
        assert_eq!(
            hook("", "", false).resolve_with("alerts.slack", &read),
            Ok(None)
        );
        assert_eq!(
            hook("", "HOOK", false).resolve_with("alerts.slack", &read),
            Ok(Some("https://hooks.example/T/secret".into()))
        );
        assert_eq!(
            key(hook("", "", true).resolve_with("alerts.discord", &read)),
            "alerts.discord.fills"
        );
        assert_eq!(
            key(hook("x", "HOOK", false).resolve_with("alerts.slack", &read)),
            "alerts.slack.webhook_url_env"
        );
        let e = hook("hooks/secret", "", false)
            .resolve_with("alerts.slack", &read)
            .unwrap_err();
        assert_eq!(e.0, "alerts.slack.webhook_url");
        assert!(!format!("{e:?}").contains("secret"), "{e:?}");
    }
}

impl AlertsConfig {
    /// The section's own values (`alerts.*`).
    ///
    /// # Errors
    /// The key, what is wrong, and the fix.
    pub fn check(&self) -> Result<(), Problem> {
        positive(
            "alerts.webhook_backoff",
            self.webhook_backoff,
            "write a duration such as \"500ms\"",
        )?;
        let mut names = std::collections::BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let key = format!("alerts.rules[{i}]");
            if rule.name().trim().is_empty() || !names.insert(rule.name().to_string()) {
                return Err(problem(
                    format!("{key}.name"),
                    format!("{:?} is empty or used twice", rule.name()),
                    "give every rule its own name",
                ));
            }
            rule.check(&key)?;
        }
        self.telegram.resolve()?;
        self.slack.resolve("alerts.slack")?;
        self.discord.resolve("alerts.discord")?;
        Ok(())
    }
}

/// One alert rule. Each fires once per crossing of its condition and re-arms
/// when the condition clears.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AlertRule {
    /// The price leaves the range (highest high, lowest low) of the previous `period` ticks.
    Breakout {
        name: String,
        symbols: Vec<String>,
        period: usize,
    },
    /// The z-score of `field` (`price` or `volume`) against the previous `period`
    /// events exceeds `threshold` in absolute value.
    Zscore {
        name: String,
        symbols: Vec<String>,
        #[serde(default)]
        field: ZscoreField,
        period: usize,
        threshold: f64,
    },
    /// A strategy's account drawdown (a fraction of the peak: 0.05 = 5%) reaches `level`.
    /// `strategies` empty means every strategy; `symbols` is unused.
    Drawdown {
        name: String,
        #[serde(default)]
        strategies: Vec<String>,
        level: f64,
    },
    /// No tick of a symbol for `after` (wall time, paper mode only), counted from its last tick.
    StaleFeed {
        name: String,
        symbols: Vec<String>,
        after: Span,
    },
    /// A condition in the rule language (`docs/strategies.md`) becomes true,
    /// per symbol, e.g. `when = "rsi(close, 14) > 80"`.
    Expr {
        name: String,
        symbols: Vec<String>,
        when: String,
    },
    /// Cross-venue arbitrage: the same instrument quoted under two symbols
    /// (`symbols = ["BTCUSDT", "CB:BTC-USD"]`, from two sources). Fires when
    /// selling one at its bid and buying the other at its ask (the last
    /// price where a tick has no quote) earns more than `threshold_bps` of the
    /// purchase after each leg's taker fee (`fees_bps`, one per symbol); with
    /// `max_age`, only while both quotes are at most that old in event time.
    Arbitrage {
        name: String,
        symbols: Vec<String>,
        threshold_bps: f64,
        #[serde(default)]
        fees_bps: Vec<f64>,
        #[serde(
            default,
            deserialize_with = "off_or_span",
            serialize_with = "serialize_off_or_span"
        )]
        max_age: Option<Span>,
    },
}

impl AlertRule {
    /// The rule's own values; `key` is its place, `alerts.rules[i]`.
    pub(crate) fn check(&self, key: &str) -> Result<(), Problem> {
        let symbols = |symbols: &[String]| {
            if symbols.is_empty() {
                return Err(problem(
                    format!("{key}.symbols"),
                    "is empty",
                    "list the symbols to watch",
                ));
            }
            Ok(())
        };
        match self {
            AlertRule::Breakout {
                symbols: s, period, ..
            }
            | AlertRule::Zscore {
                symbols: s, period, ..
            } => {
                symbols(s)?;
                if *period < 2 {
                    return Err(problem(
                        format!("{key}.period"),
                        format!("{period} is too small"),
                        "use 2 or more events",
                    ));
                }
            }
            AlertRule::StaleFeed {
                symbols: s, after, ..
            } => {
                symbols(s)?;
                positive(
                    &format!("{key}.after"),
                    *after,
                    "write a duration such as \"30s\"",
                )?;
            }
            AlertRule::Expr {
                symbols: s, when, ..
            } => {
                symbols(s)?;
                if let Err(e) = crate::alerts::compile_when(when) {
                    return Err(problem(
                        format!("{key}.when"),
                        crate::expr::render(&e, when, None),
                        e.error.fix,
                    ));
                }
            }
            AlertRule::Arbitrage {
                symbols: s,
                threshold_bps,
                fees_bps,
                max_age,
                ..
            } => check_arbitrage(key, s, *threshold_bps, fees_bps, *max_age)?,
            AlertRule::Drawdown { level, .. } => {
                if !(*level > 0.0 && *level < 1.0) {
                    return Err(problem(
                        format!("{key}.level"),
                        format!("{level} is out of range"),
                        "use a fraction of the peak between 0 and 1, such as 0.05",
                    ));
                }
            }
        }
        if let AlertRule::Zscore { threshold, .. } = self {
            if !(threshold.is_finite() && *threshold > 0.0) {
                return Err(problem(
                    format!("{key}.threshold"),
                    format!("{threshold} is not positive"),
                    "use a z-score such as 3.0",
                ));
            }
        }
        Ok(())
    }
}

/// An `arbitrage` rule's values.
fn check_arbitrage(
    key: &str,
    symbols: &[String],
    threshold_bps: f64,
    fees_bps: &[f64],
    max_age: Option<Span>,
) -> Result<(), Problem> {
    if symbols.len() != 2 || symbols[0] == symbols[1] {
        return Err(problem(
            format!("{key}.symbols"),
            format!("{symbols:?} is not two different symbols"),
            "name the instrument's symbol on each of the two venues, such as [\"BTCUSDT\", \"CB:BTC-USD\"]",
        ));
    }
    if !(threshold_bps.is_finite() && threshold_bps >= 0.0) {
        return Err(problem(
            format!("{key}.threshold_bps"),
            format!("{threshold_bps} is not a spread"),
            "give the least net spread in basis points, 0 or more, such as 20.0",
        ));
    }
    let fee_ok = |f: &f64| f.is_finite() && (0.0..10_000.0).contains(f);
    if !(fees_bps.is_empty() || fees_bps.len() == 2) || !fees_bps.iter().all(fee_ok) {
        return Err(problem(
            format!("{key}.fees_bps"),
            format!("{fees_bps:?} is not one fee per symbol"),
            "give each leg's taker fee in basis points, in the order of symbols, such as [10.0, 60.0] (or leave it out for none)",
        ));
    }
    if max_age.is_some_and(Span::is_zero) {
        return Err(problem(
            format!("{key}.max_age"),
            "is 0",
            "write a duration such as \"5s\", or \"off\"",
        ));
    }
    Ok(())
}

/// What a z-score alert watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ZscoreField {
    #[default]
    Price,
    Volume,
}

impl AlertRule {
    pub fn name(&self) -> &str {
        match self {
            AlertRule::Breakout { name, .. }
            | AlertRule::Zscore { name, .. }
            | AlertRule::Drawdown { name, .. }
            | AlertRule::StaleFeed { name, .. }
            | AlertRule::Expr { name, .. }
            | AlertRule::Arbitrage { name, .. } => name,
        }
    }
}

crate::closed_set! {
    deserialize;
    ZscoreField { Price => "price", Volume => "volume" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_zero_off_and_units_and_print_back() {
        assert_eq!(Span::parse("0").unwrap(), Span::ZERO);
        assert_eq!(Span::parse("0s").unwrap(), Span::ZERO);
        assert_eq!(Span::parse("0ms").unwrap(), Span::ZERO);
        assert_eq!(Span::parse("250ms").unwrap().nanos(), 250 * NANOS_PER_MILLI);
        assert_eq!(
            Span::parse(" 4h ").unwrap().nanos(),
            4 * 3_600_000 * NANOS_PER_MILLI
        );
        assert!(Span::parse("off").is_err());
        assert!(Span::parse("-5s").is_err());
        assert!(Span::parse("1.5s").is_err());
        assert!(Span::parse_positive("0s").is_err());
        for text in ["250ms", "90s", "15m", "4h", "50d", "0s"] {
            assert_eq!(Span::parse(text).unwrap().to_string(), text);
        }
        #[derive(Deserialize, Serialize)]
        struct K {
            #[serde(
                deserialize_with = "off_or_span",
                serialize_with = "serialize_off_or_span"
            )]
            v: Option<Span>,
        }
        let k: K = toml::from_str("v = 'off'").unwrap();
        assert_eq!(k.v, None);
        let k: K = toml::from_str("v = '1h'").unwrap();
        assert_eq!(k.v, Some(Span::from_nanos(3_600_000 * NANOS_PER_MILLI)));
        assert_eq!(toml::to_string(&k).unwrap().trim(), "v = \"1h\"");
        let e = toml::from_str::<K>("v = 'soon'").err().unwrap().to_string();
        assert!(
            e.contains("\"soon\" must start with a whole number") && e.contains("\"off\""),
            "{e}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50d").unwrap(), 50 * 86_400 * 1_000_000_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250 * NANOS_PER_MILLI);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn strategy_unknown_key_names_file_and_key() {
        let e = parse_strategy(
            "name='a'\nsymbols=['X']\n[rule]\nkind='ma_crossover'\nfast=5\nslow=20\nfats=3\n[sizing]\nmode='fixed_quantity'\nquantity='1'\n",
            "strategies/a.toml",
        )
        .unwrap_err();
        assert_eq!(e.file, "strategies/a.toml");
        assert!(e.problem.contains("fats"), "{e}");
        assert!(e.key.starts_with("rule"), "{e}");
        // Keys inside [rule] are named.
        let e = parse_strategy(
            "name='a'\nsymbols=['X']\n[rule]\nkind='ma_crossover'\nfast='5x'\nslow=20\n[sizing]\nmode='fixed_quantity'\nquantity='1'\n",
            "s.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "rule.fast", "{e}");
        assert!(e.problem.contains("unknown unit"), "{e}");
        let e = parse_strategy(
            "name='a'\nsymbols=['X']\n[rule]\nkind='bollinger_breakout'\nperiod=20\nk='wide'\n[sizing]\nmode='fixed_quantity'\nquantity='1'\n",
            "s.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "rule.k", "{e}");
    }

    /// Regression ("uneven configuration errors"): `[bars] size = 100` is
    /// accepted like `fast = 20`; a quoted number says how to write it; a
    /// nested ensemble says ensembles do not nest; an ensemble without members
    /// names `rule.members`.
    #[test]
    fn rule_errors_name_the_key_and_give_a_fix() {
        let strategy = |rule: &str, more: &str| {
            format!(
                "name='a'\nsymbols=['X']\n[rule]\n{rule}\n[sizing]\nmode='fixed_quantity'\nquantity='1'\n{more}"
            )
        };
        let bars = strategy(
            "kind='ma_crossover'\nfast=5\nslow=20",
            "[bars]\nkind='ticks'\nsize=100\n",
        );
        let s = parse_strategy(&bars, "s.toml").unwrap();
        assert_eq!(s.bars.unwrap().size, "100");

        let e = parse_strategy(
            &strategy("kind='bollinger_breakout'\nperiod=20\nk=\"2\"", ""),
            "s.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "rule.k", "{e}");
        assert!(!e.problem.contains("in `k`"), "{e}");
        assert_eq!(e.fix, "write the number without quotes, e.g. k = 2", "{e}");

        let nested = strategy(
            "kind='ensemble'\nthreshold=0.5\n[[rule.members]]\nweight=1.0\n[rule.members.rule]\nkind='ensemble'\nthreshold=0.5",
            "",
        );
        let e = parse_strategy(&nested, "s.toml").unwrap_err();
        assert_eq!(e.key, "rule.members[0].rule", "{e}");
        assert!(e.problem.contains("do not nest"), "{e}");

        let e =
            parse_strategy(&strategy("kind='ensemble'\nthreshold=0.5", ""), "s.toml").unwrap_err();
        assert_eq!(e.key, "rule.members", "{e}");
        assert!(e.problem.contains("missing field `members`"), "{e}");
    }

    /// Regression ("`[orders] type = \"market\"` with `tif = \"fok\"` is
    /// accepted silently").
    #[test]
    fn a_market_order_with_a_time_in_force_is_refused() {
        let text = |orders: &str| {
            format!(
                "name='a'\nsymbols=['X']\n[rule]\nkind='ma_crossover'\nfast=5\nslow=20\n\
                 [sizing]\nmode='fixed_quantity'\nquantity='1'\n[orders]\n{orders}\n"
            )
        };
        let e = parse_strategy(&text("type='market'\ntif='fok'"), "s.toml").unwrap_err();
        assert_eq!(e.key, "orders.tif", "{e}");
        assert!(
            e.problem.contains("\"fok\"") && e.fix.contains("type = \"limit\""),
            "{e}"
        );
        assert!(parse_strategy(&text("type='limit'\ntif='fok'"), "s.toml").is_ok());
        assert!(parse_strategy(&text("type='market'"), "s.toml").is_ok());
    }

    #[test]
    fn strategy_bad_values_are_refused() {
        let base = |rule: &str, sizing: &str| {
            format!("name='a'\nsymbols=['X']\n[rule]\n{rule}\n[sizing]\n{sizing}\n")
        };
        let cases = [
            (
                base(
                    "kind='ma_crossover'\nfast=30\nslow=10",
                    "mode='fixed_quantity'\nquantity='1'",
                ),
                "rule.fast",
            ),
            (
                base(
                    "kind='rsi_mean_reversion'\nperiod=14\noversold=80\noverbought=70",
                    "mode='fixed_quantity'\nquantity='1'",
                ),
                "rule.oversold",
            ),
            (
                base(
                    "kind='bollinger_breakout'\nperiod=20\nk=2.0",
                    "mode='fraction_of_equity'",
                ),
                "sizing.fraction",
            ),
            (
                base(
                    "kind='bollinger_breakout'\nperiod=20\nk=2.0",
                    "mode='fraction_of_equity'\nfraction='1.5'",
                ),
                "sizing.fraction",
            ),
            (
                base("kind='teleport'", "mode='fixed_quantity'\nquantity='1'"),
                "rule.kind",
            ),
        ];
        for (text, key) in cases {
            let e = parse_strategy(&text, "s.toml").unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn time_windows_parse() {
        let s = parse_strategy(
            "name='a'\nsymbols=['X']\n[rule]\nkind='ma_crossover'\nfast='5d'\nslow='50d'\n[sizing]\nmode='fixed_notional'\nnotional='1000'\n",
            "s.toml",
        )
        .unwrap();
        match s.rule {
            RuleConfig::MaCrossover(MaCrossoverRule { fast, slow, .. }) => {
                assert_eq!(fast, Window::Time(5 * 86_400_000_000_000));
                assert_eq!(slow, Window::Time(50 * 86_400_000_000_000));
            }
            _ => panic!(),
        }
    }
}
