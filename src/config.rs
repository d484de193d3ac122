//! Application and strategy configuration.
//!
//! The application config is layered with the `config` crate: the built-in
//! `config/default.toml`, then the file given with `--config`, then environment
//! variables such as `PAPERTRADER__KAFKA__BROKERS=localhost:9092` (double
//! underscore between levels). Strategies live in their own TOML files, listed
//! under `strategies` in the application config.
//!
//! Every struct denies unknown keys, and every problem, whether a typo, a wrong
//! type or a value out of range, stops start-up with a [`ConfigError`] that names
//! the file, the key and the fix.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::domain::{Ts, NANOS_PER_MILLI};
use crate::sim::InstrumentConfig;

/// The built-in defaults, compiled into the binary from `config/default.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");
/// The name the built-in defaults go by in error messages.
pub const DEFAULT_CONFIG_NAME: &str = "config/default.toml";

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
    fn new(
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

/// The whole application configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub input: InputConfig,
    pub engine: EngineConfig,
    pub demo: DemoConfig,
    pub log: LogConfig,
    pub venue: VenueConfig,
    /// The dashboard, JSON API, `/health` and `/metrics` of paper mode.
    pub http: HttpConfig,
    /// Alert rules over prices, volumes, drawdowns and feed staleness.
    pub alerts: AlertsConfig,
    /// Checkpoints of the engine's state (crash safety, `src/state.rs`).
    pub state: StateConfig,
    /// Paths of the strategy files to run, relative to the working directory.
    pub strategies: Vec<String>,
}

/// How to reach Kafka.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, or `embedded` to start a tansu broker in-process.
    pub brokers: String,
    /// Consumer group of paper mode.
    pub group_id: String,
    /// Create missing topics at start-up.
    pub create_topics: bool,
    /// Partitions of topics that papertrader creates.
    pub partitions: i32,
    /// Extra librdkafka properties for every client (for example `security.protocol`).
    pub properties: BTreeMap<String, String>,
    /// How a restart resumes a partition: `offset` (fetch from the offset),
    /// `rescan` (read the partition from its start and skip what is done, for
    /// brokers that cannot fetch from inside a record batch, such as tansu 0.6),
    /// or `auto` (`rescan` for the embedded broker, else `offset`).
    pub seek: String,
}

impl KafkaConfig {
    /// Whether resumed partitions are read from their start (see `seek`).
    pub fn rescan(&self) -> bool {
        self.seek == "rescan" || (self.seek == "auto" && self.brokers == "embedded")
    }
}

/// Topic names, all configurable.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    pub live_prices: String,
    pub news_sentiment: String,
    pub order_book: String,
    pub signals: String,
    pub orders: String,
    pub fills: String,
    pub pnl: String,
    pub dead_letters: String,
    pub alerts: String,
}

impl TopicsConfig {
    /// The input topics with the kind of message each carries.
    pub fn inputs(&self) -> [(&str, crate::wire::InputKind); 3] {
        use crate::wire::InputKind::*;
        [
            (self.live_prices.as_str(), Prices),
            (self.news_sentiment.as_str(), Sentiment),
            (self.order_book.as_str(), OrderBook),
        ]
    }

    /// The output topics.
    pub fn outputs(&self) -> [&str; 6] {
        [
            &self.signals,
            &self.orders,
            &self.fills,
            &self.pnl,
            &self.dead_letters,
            &self.alerts,
        ]
    }

    fn all(&self) -> [(&'static str, &str); 9] {
        [
            ("topics.live_prices", &self.live_prices),
            ("topics.news_sentiment", &self.news_sentiment),
            ("topics.order_book", &self.order_book),
            ("topics.signals", &self.signals),
            ("topics.orders", &self.orders),
            ("topics.fills", &self.fills),
            ("topics.pnl", &self.pnl),
            ("topics.dead_letters", &self.dead_letters),
            ("topics.alerts", &self.alerts),
        ]
    }
}

/// Input validation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Symbols to accept; empty accepts every symbol. Others go to dead letters.
    pub symbols: Vec<String>,
    /// How far (event time) a message may lag the newest one seen for its symbol
    /// and topic before it is dead-lettered as out of order, e.g. "60s".
    pub max_out_of_order: String,
    /// Paper mode: a message whose event time is ahead of the wall clock by more
    /// than this is dead-lettered (`ahead_of_clock`), so that one bad timestamp
    /// cannot put every later message of its symbol out of order. "off" turns
    /// the check off. Backtests have no wall clock and do not check.
    pub max_ahead: String,
}

/// Engine behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Publish a P&L snapshot for a strategy and symbol every N ticks of that
    /// symbol (and after every fill). 0 publishes only after fills.
    pub pnl_every_ticks: u64,
    /// Most input messages processed between two offset commits.
    pub max_batch: usize,
    /// `single`: one engine, one account per strategy. `partition`: one engine
    /// (and account per strategy) per input partition number, so that several
    /// processes in one consumer group split the work and hand a partition's
    /// state over through its checkpoint.
    pub shards: String,
    /// `event_time`: hold input messages until every assigned input partition has
    /// one held or nothing more to give, and take the earliest first, as a
    /// backtest does ([`crate::merge`]). `arrival`: take messages as they come.
    pub order: String,
    /// With `event_time`: how long (wall time) a message waits at least when a
    /// partition behind it is caught up rather than holding a message, for
    /// messages of other partitions that are still on their way, e.g. "100ms".
    pub order_hold: String,
    /// With `event_time`: a partition that delivers nothing for this long (wall
    /// time) stops holding the others back, e.g. "1s".
    pub order_idle: String,
    /// With `event_time`: most messages held; past it the earliest is taken anyway.
    pub order_max_held: usize,
}

/// What the embedded demo feeds into the input topics before trading.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Feed the files below when the broker is `embedded`.
    pub feed: bool,
    /// CSV files (ticks or OHLCV bars) for the prices topic.
    pub prices: Vec<String>,
    /// CSV files of sentiment readings for the sentiment topic.
    pub sentiment: Vec<String>,
}

/// The HTTP server of paper mode (`src/http.rs`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve the dashboard, API, `/health` and `/metrics` while paper mode runs.
    pub enabled: bool,
    /// Address to listen on; loopback unless you mean to expose it. Port 0 picks a free port.
    pub bind: String,
    /// `/health` answers 503 when the newest input message is older than this (wall time).
    pub stale_after: String,
    /// Rows kept per table (signals, orders, fills, alerts) and points per equity curve.
    pub history: usize,
}

/// Where and how often paper mode checkpoints the engine's state.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `auto`, `file`, `kafka` or `none`; `auto` is `file` for a real cluster and
    /// `none` for the embedded broker (whose in-memory topics end with the process).
    pub store: String,
    /// The checkpoint file of `store = "file"`; `{group}` is replaced by `kafka.group_id`.
    pub path: String,
    /// The compacted topic of `store = "kafka"`, keyed by consumer group.
    pub topic: String,
    /// Checkpoint after this many input messages (0: not by count) ...
    pub every_events: u64,
    /// ... or when this much wall time has passed since the last one (and at shutdown).
    pub every: String,
}

/// Which checkpoint store paper mode uses (`state.store` resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateStore {
    None,
    File,
    Kafka,
}

impl StateConfig {
    /// The store, with `auto` resolved against the broker setting.
    pub fn resolve(&self, embedded: bool) -> StateStore {
        match self.store.as_str() {
            "file" => StateStore::File,
            "kafka" => StateStore::Kafka,
            "auto" if !embedded => StateStore::File,
            _ => StateStore::None,
        }
    }

    /// The checkpoint file for consumer group `group`.
    pub fn file_for(&self, group: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(self.path.replace("{group}", group))
    }
}

/// Alert rules and where alerts go besides the `alerts` topic (`src/alerts.rs`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// POST every alert as JSON to this URL; empty for none.
    pub webhook_url: String,
    /// Attempts per webhook call (the first one included).
    pub webhook_attempts: u32,
    /// Wait before the first retry; doubled after each failed attempt.
    pub webhook_backoff: String,
    /// The rules, each `[[alerts.rules]]` with a `kind`.
    pub rules: Vec<AlertRule>,
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
        #[serde(default = "default_zscore_field")]
        field: String,
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
        after: String,
    },
}

fn default_zscore_field() -> String {
    "price".into()
}

impl AlertRule {
    pub fn name(&self) -> &str {
        match self {
            AlertRule::Breakout { name, .. }
            | AlertRule::Zscore { name, .. }
            | AlertRule::Drawdown { name, .. }
            | AlertRule::StaleFeed { name, .. } => name,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (readable) or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `papertrader=debug,rdkafka=warn`.
    pub level: String,
}

/// The simulated venue every strategy trades on (see `sim`): how long orders
/// take to reach it, and each symbol's instrument (tick and lot size, fees, the
/// synthesized book). Tables are kept raw here and resolved per symbol by
/// [`Loaded::instrument`] (`symbols.X` overrides keys of `default`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VenueConfig {
    /// Event-time delay from an order or cancel to the venue: "0ms" (none), "1ms", "250ms".
    pub latency: String,
    /// Instrument settings of every symbol.
    pub default: toml::Table,
    /// Per-symbol overrides of keys of `default`.
    pub symbols: BTreeMap<String, toml::Table>,
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
}

/// Bars a rule runs on (see `bars`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BarsConfig {
    /// `time`, `ticks` or `volume`.
    pub kind: BarKind,
    /// A duration for time bars (`"5m"`), a count for tick bars (`"100"`), a
    /// quantity for volume bars (`"5000"`).
    pub size: String,
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
    MaCrossover(MaCrossoverRule),
    RsiMeanReversion(RsiRule),
    BollingerBreakout(BollingerRule),
    SentimentMomentum(SentimentRule),
    Model(ModelRule),
    Ensemble(EnsembleRule),
}

/// Buy when the fast average crosses above the slow one, sell on the cross below.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaCrossoverRule {
    pub fast: Window,
    pub slow: Window,
    #[serde(default)]
    pub average: MaKind,
}

/// Buy when RSI falls below `oversold`, sell when it rises above `overbought`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RsiRule {
    pub period: usize,
    pub oversold: f64,
    pub overbought: f64,
}

/// Buy when the price closes above the upper band, sell below the lower band.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BollingerRule {
    pub period: usize,
    pub k: f64,
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

fn default_lot() -> Decimal {
    Decimal::ONE
}

/// Parse a duration such as `500ms`, `30s`, `15m`, `4h` or `50d` into nanoseconds.
pub fn parse_duration(s: &str) -> Result<Ts, String> {
    let s = s.trim();
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
    if n <= 0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    n.checked_mul(mult)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

/// [`parse_duration`], where zero (`"0s"`, `"0ms"`) is allowed.
pub fn parse_duration_or_zero(s: &str) -> Result<Ts, String> {
    let t = s.trim();
    if t.strip_suffix("ms")
        .or_else(|| t.strip_suffix('s'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b == b'0'))
    {
        return Ok(0);
    }
    parse_duration(s)
}

/// A loaded, checked configuration: the application config and its strategies.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub app: AppConfig,
    pub strategies: Vec<StrategyConfig>,
    /// `input.max_out_of_order`, parsed.
    pub max_out_of_order: Ts,
    /// `venue.latency`, parsed.
    pub venue_latency: Ts,
    /// The instrument of every symbol a strategy trades, resolved and checked.
    pub instruments: BTreeMap<String, InstrumentConfig>,
}

impl Loaded {
    /// The instrument of `symbol`: `venue.default` with `venue.symbols.SYMBOL`'s
    /// keys laid over it (tables merge key by key, e.g. `synth`).
    ///
    /// # Errors
    /// A value of the wrong type or out of range, naming the key.
    pub fn instrument(&self, symbol: &str) -> Result<InstrumentConfig, (String, String)> {
        resolve_instrument(&self.app.venue, symbol)
    }
}

fn merge_tables(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `venue.default` merged with `venue.symbols.SYMBOL`, deserialized and checked;
/// an error is (key, problem).
fn resolve_instrument(v: &VenueConfig, symbol: &str) -> Result<InstrumentConfig, (String, String)> {
    let mut table = v.default.clone();
    let prefix = match v.symbols.get(symbol) {
        Some(over) => {
            merge_tables(&mut table, over);
            format!("venue.symbols.{symbol}")
        }
        None => "venue.default".to_string(),
    };
    let inst: InstrumentConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
        .map_err(|e| (format!("{prefix}.{}", e.path()), e.into_inner().to_string()))?;
    inst.validate().map_err(|problem| {
        let field = problem.split_whitespace().next().unwrap_or("").to_string();
        (format!("{prefix}.{field}"), problem)
    })?;
    Ok(inst)
}

/// A latency: a duration, or zero ("0", "0ms").
fn parse_latency(s: &str) -> Result<Ts, String> {
    if s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" {
        return Ok(0);
    }
    parse_duration(s)
}

/// Load the layered application config and every strategy it names.
pub fn load(user_file: Option<&Path>) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PAPERTRADER__"))
        .collect();
    load_with_env(user_file, &env)
}

/// Load the layered application config alone, for commands that run no strategy
/// (`broker`, `replay`, `generate`): `strategies` is left empty.
pub fn load_app(user_file: Option<&Path>) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PAPERTRADER__"))
        .collect();
    load_inner(user_file, &env, false)
}

/// Environment variables that look like papertrader settings but are ignored
/// because they use a single underscore after the prefix.
pub fn ignored_env_vars() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("PAPERTRADER_") && !k.starts_with("PAPERTRADER__"))
        .collect()
}

/// [`load`] with the environment given explicitly (for tests).
pub fn load_with_env(
    user_file: Option<&Path>,
    env: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    load_inner(user_file, env, true)
}

fn load_inner(
    user_file: Option<&Path>,
    env: &[(String, String)],
    with_strategies: bool,
) -> Result<Loaded, ConfigError> {
    use config::{Config, Environment, File, FileFormat};

    let user_name = user_file.map(|p| p.display().to_string());
    let user_text = match user_file {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            ConfigError::new(
                p.display().to_string(),
                "(file)",
                format!("cannot read the file: {e}"),
                "pass an existing TOML file to --config",
            )
        })?),
        None => None,
    };
    let mut builder =
        Config::builder().add_source(File::from_str(DEFAULT_CONFIG, FileFormat::Toml));
    if let (Some(text), Some(name)) = (&user_text, &user_name) {
        // Parse once ourselves for a precise syntax error, and to check value
        // types strictly (the layered `config` crate would turn 3.5 into 3).
        let table = text.parse::<toml::Table>().map_err(|e| {
            ConfigError::new(
                name.clone(),
                "(syntax)",
                e.to_string().trim().to_string(),
                "correct the TOML syntax",
            )
        })?;
        let defaults: toml::Table = DEFAULT_CONFIG.parse().expect("the built-in defaults parse");
        check_types(&defaults, &table, "", name)?;
        builder = builder.add_source(File::from_str(text, FileFormat::Toml));
    }
    let env_map: std::collections::HashMap<String, String> = env.iter().cloned().collect();
    builder = builder.add_source(
        Environment::with_prefix("PAPERTRADER")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("input.symbols")
            .with_list_parse_key("strategies")
            .with_list_parse_key("demo.prices")
            .with_list_parse_key("demo.sentiment")
            .source(Some(env_map)),
    );
    let merged = builder.build().map_err(|e| {
        ConfigError::new(
            user_name
                .clone()
                .unwrap_or_else(|| DEFAULT_CONFIG_NAME.into()),
            "(file)",
            e.to_string(),
            "correct the file",
        )
    })?;

    let app: AppConfig = serde_path_to_error::deserialize(merged).map_err(|e| {
        let key = e.path().to_string();
        let file = origin_of(&key, user_text.as_deref(), user_name.as_deref(), env);
        let inner = e.into_inner().to_string();
        let fix = if inner.contains("unknown field") && file.starts_with("environment variable") {
            "unset or rename the variable (PAPERTRADER__SECTION__KEY, sections and keys as in config/default.toml)"
                .to_string()
        } else if inner.contains("unknown field") {
            "remove or rename the key; the accepted keys are listed in config/default.toml"
                .to_string()
        } else if inner.contains("missing field") {
            "add the key (see config/default.toml for its default)".to_string()
        } else {
            "give the key a value of the expected type (see config/default.toml)".to_string()
        };
        ConfigError::new(file, key, inner, fix)
    })?;
    let file_of = |key: &str| origin_of(key, user_text.as_deref(), user_name.as_deref(), env);
    let max_out_of_order = check_app(&app, &file_of)?;

    let mut strategies = Vec::new();
    let mut names = BTreeSet::new();
    let paths = if with_strategies {
        &app.strategies[..]
    } else {
        &[]
    };
    for (i, path) in paths.iter().enumerate() {
        let s = load_strategy(Path::new(path)).map_err(|mut e| {
            if e.file.is_empty() {
                e.file = file_of(&format!("strategies[{i}]"));
                e.key = format!("strategies[{i}]");
            }
            e
        })?;
        if !names.insert(s.name.clone()) {
            return Err(ConfigError::new(
                path.clone(),
                "name",
                format!(
                    "strategy name {:?} is used by another strategy file",
                    s.name
                ),
                "give every strategy a unique name",
            ));
        }
        strategies.push(s);
    }
    let venue_latency = parse_latency(&app.venue.latency).map_err(|e| {
        ConfigError::new(
            file_of("venue.latency"),
            "venue.latency",
            e,
            "write a duration such as \"1ms\", or \"0ms\" for none",
        )
    })?;
    let mut instruments = BTreeMap::new();
    let wanted = strategies
        .iter()
        .flat_map(|s| s.symbols.iter())
        .chain(app.venue.symbols.keys());
    for sym in wanted {
        let inst = resolve_instrument(&app.venue, sym).map_err(|(key, problem)| {
            ConfigError::new(
                file_of(&key),
                key,
                problem,
                "give the key a valid value (see [venue.default] in config/default.toml and docs/execution.md)",
            )
        })?;
        instruments.insert(sym.clone(), inst);
    }
    Ok(Loaded {
        app,
        strategies,
        max_out_of_order,
        venue_latency,
        instruments,
    })
}

/// Every value of the user's file must have the type of the same key in the
/// defaults (an integer stays an integer, a boolean a boolean). Unknown keys are
/// left to the deserializer, which names them.
fn check_types(
    defaults: &toml::Table,
    user: &toml::Table,
    prefix: &str,
    file: &str,
) -> Result<(), ConfigError> {
    for (k, v) in user {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let Some(d) = defaults.get(k) else { continue };
        match (d, v) {
            (toml::Value::Table(dt), toml::Value::Table(ut)) if !dt.is_empty() => {
                check_types(dt, ut, &key, file)?;
            }
            (toml::Value::Table(_), toml::Value::Table(_)) => {}
            (d, v) if d.type_str() != v.type_str() => {
                return Err(ConfigError::new(
                    file,
                    key,
                    format!("expected {}, found {} {v}", d.type_str(), v.type_str()),
                    format!(
                        "write {}, like the default {d} in config/default.toml",
                        d.type_str()
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Which layer a key most likely came from: the user file, the environment or the defaults.
fn origin_of(
    key: &str,
    user_text: Option<&str>,
    user_name: Option<&str>,
    env: &[(String, String)],
) -> String {
    let parts: Vec<String> = key
        .split('.')
        .map(|p| p.split('[').next().unwrap_or(p).to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let env_name = format!("PAPERTRADER__{}", parts.join("__").to_uppercase());
    // The variable of the key itself, or one below it (a typo in a section name:
    // PAPERTRADER__KAFAK__BROKERS for the unknown key `kafak`).
    let below = format!("{env_name}__");
    if let Some((k, _)) = env.iter().find(|(k, _)| {
        k.eq_ignore_ascii_case(&env_name) || k.to_ascii_uppercase().starts_with(&below)
    }) {
        return format!("environment variable {}", k.to_ascii_uppercase());
    }
    if let (Some(text), Some(name)) = (user_text, user_name) {
        if let Ok(table) = text.parse::<toml::Table>() {
            // The deepest existing prefix of the key decides.
            let mut node: Option<&toml::Value> = None;
            let mut found = false;
            for (i, p) in parts.iter().enumerate() {
                let next = if i == 0 {
                    table.get(p)
                } else {
                    node.and_then(|n| n.get(p))
                };
                match next {
                    Some(v) => {
                        node = Some(v);
                        found = true;
                    }
                    None => break,
                }
            }
            if found {
                return name.to_string();
            }
        }
    }
    DEFAULT_CONFIG_NAME.to_string()
}

fn check_app(app: &AppConfig, file_of: &dyn Fn(&str) -> String) -> Result<Ts, ConfigError> {
    let err = |key: &str, problem: String, fix: &str| {
        Err(ConfigError::new(file_of(key), key, problem, fix))
    };
    if app.kafka.brokers.trim().is_empty() {
        return err(
            "kafka.brokers",
            "is empty".into(),
            "set it to host:port[,host:port...] or to \"embedded\"",
        );
    }
    if app.kafka.group_id.trim().is_empty() {
        return err("kafka.group_id", "is empty".into(), "name a consumer group");
    }
    if !["single", "partition"].contains(&app.engine.shards.as_str()) {
        return err(
            "engine.shards",
            format!("{:?} is not a sharding mode", app.engine.shards),
            "write \"single\" (one account per strategy) or \"partition\" (one per input partition, for scale-out)",
        );
    }
    if !["event_time", "arrival"].contains(&app.engine.order.as_str()) {
        return err(
            "engine.order",
            format!("{:?} is not an input order", app.engine.order),
            "write \"event_time\" (reproducible, the backtest's order) or \"arrival\" (as messages come)",
        );
    }
    if let Err(e) = parse_duration_or_zero(&app.engine.order_hold) {
        return err(
            "engine.order_hold",
            e,
            "write a duration such as \"100ms\" (or \"0s\")",
        );
    }
    match parse_duration(&app.engine.order_idle) {
        Ok(d) if d > 0 => {}
        Ok(_) => {
            return err(
                "engine.order_idle",
                "is 0".into(),
                "use a positive duration such as \"1s\"",
            )
        }
        Err(e) => return err("engine.order_idle", e, "write a duration such as \"1s\""),
    }
    if app.engine.order_max_held == 0 {
        return err(
            "engine.order_max_held",
            "is 0".into(),
            "use a positive number such as 200000",
        );
    }
    if !["auto", "offset", "rescan"].contains(&app.kafka.seek.as_str()) {
        return err(
            "kafka.seek",
            format!("{:?} is not a seek mode", app.kafka.seek),
            "write \"auto\", \"offset\" or \"rescan\"",
        );
    }
    if !(1..=1024).contains(&app.kafka.partitions) {
        return err(
            "kafka.partitions",
            format!("{} is out of range", app.kafka.partitions),
            "use a value between 1 and 1024",
        );
    }
    let mut seen = BTreeMap::new();
    for (key, name) in app.topics.all() {
        if name.trim().is_empty() || name.len() > 249 {
            return err(
                key,
                format!("topic name {name:?} is invalid"),
                "use 1..=249 characters",
            );
        }
        if let Some(other) = seen.insert(name.to_string(), key) {
            return err(
                key,
                format!("topic {name:?} is also used for {other}"),
                "give every topic its own name",
            );
        }
    }
    let max_ooo = match parse_duration(&app.input.max_out_of_order) {
        Ok(d) => d,
        Err(e) => {
            return err(
                "input.max_out_of_order",
                e,
                "write a duration such as \"60s\"",
            )
        }
    };
    if app.input.max_ahead != "off" {
        if let Err(e) = parse_duration(&app.input.max_ahead) {
            return err(
                "input.max_ahead",
                e,
                "write a duration such as \"1h\", or \"off\"",
            );
        }
    }
    if app.engine.max_batch == 0 {
        return err(
            "engine.max_batch",
            "is 0".into(),
            "use a positive number such as 1000",
        );
    }
    for directive in app.log.level.split(',').map(str::trim) {
        let level = directive.rsplit('=').next().unwrap_or("");
        let known = ["trace", "debug", "info", "warn", "error", "off"];
        if !known.contains(&level.to_ascii_lowercase().as_str()) {
            return err(
                "log.level",
                format!("{directive:?} is not a log level"),
                "use trace, debug, info, warn, error or off, optionally per target: \"info,papertrader=debug\"",
            );
        }
    }
    for (name, value) in &app.kafka.properties {
        let mut c = rdkafka::ClientConfig::new();
        c.set(name, value);
        if let Err(e) = c.create_native_config() {
            return err(
                &format!("kafka.properties.{name}"),
                e.to_string(),
                "use a librdkafka property name and value (see librdkafka's CONFIGURATION.md)",
            );
        }
    }
    if app.http.bind.parse::<std::net::SocketAddr>().is_err() {
        return err(
            "http.bind",
            format!("{:?} is not an address", app.http.bind),
            "write ip:port, such as \"127.0.0.1:8080\" (port 0 picks a free one)",
        );
    }
    if let Err(e) = parse_duration(&app.http.stale_after) {
        return err("http.stale_after", e, "write a duration such as \"30s\"");
    }
    if !["auto", "file", "kafka", "none"].contains(&app.state.store.as_str()) {
        return err(
            "state.store",
            format!("{:?} is not a checkpoint store", app.state.store),
            "write \"auto\", \"file\", \"kafka\" or \"none\"",
        );
    }
    if app.state.path.trim().is_empty() {
        return err(
            "state.path",
            "the checkpoint path is empty".to_string(),
            "write a file path such as \"state/{group}.ckpt\"",
        );
    }
    if app.state.topic.trim().is_empty() {
        return err(
            "state.topic",
            "the state topic is empty".to_string(),
            "write a topic name such as \"papertrader_state\"",
        );
    }
    match parse_duration(&app.state.every) {
        Ok(d) if d > 0 => {}
        Ok(_) => {
            return err(
                "state.every",
                "the interval must be positive".to_string(),
                "write a duration such as \"10s\"",
            )
        }
        Err(e) => return err("state.every", e, "write a duration such as \"10s\""),
    }
    if let Err(e) = parse_duration(&app.alerts.webhook_backoff) {
        return err(
            "alerts.webhook_backoff",
            e,
            "write a duration such as \"500ms\"",
        );
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, rule) in app.alerts.rules.iter().enumerate() {
        let key = format!("alerts.rules[{i}]");
        if rule.name().trim().is_empty() || !names.insert(rule.name().to_string()) {
            return err(
                &format!("{key}.name"),
                format!("{:?} is empty or used twice", rule.name()),
                "give every rule its own name",
            );
        }
        match rule {
            AlertRule::Breakout {
                symbols, period, ..
            }
            | AlertRule::Zscore {
                symbols, period, ..
            } => {
                if symbols.is_empty() {
                    return err(
                        &format!("{key}.symbols"),
                        "is empty".into(),
                        "list the symbols to watch",
                    );
                }
                if *period < 2 {
                    return err(
                        &format!("{key}.period"),
                        format!("{period} is too small"),
                        "use 2 or more events",
                    );
                }
            }
            AlertRule::StaleFeed { symbols, after, .. } => {
                if symbols.is_empty() {
                    return err(
                        &format!("{key}.symbols"),
                        "is empty".into(),
                        "list the symbols to watch",
                    );
                }
                if let Err(e) = parse_duration(after) {
                    return err(
                        &format!("{key}.after"),
                        e,
                        "write a duration such as \"30s\"",
                    );
                }
            }
            AlertRule::Drawdown { level, .. } => {
                if !(*level > 0.0 && *level < 1.0) {
                    return err(
                        &format!("{key}.level"),
                        format!("{level} is out of range"),
                        "use a fraction of the peak between 0 and 1, such as 0.05",
                    );
                }
            }
        }
        if let AlertRule::Zscore {
            field, threshold, ..
        } = rule
        {
            if !matches!(field.as_str(), "price" | "volume") {
                return err(
                    &format!("{key}.field"),
                    format!("{field:?} is not a field"),
                    "use \"price\" or \"volume\"",
                );
            }
            if !(threshold.is_finite() && *threshold > 0.0) {
                return err(
                    &format!("{key}.threshold"),
                    format!("{threshold} is not positive"),
                    "use a z-score such as 3.0",
                );
            }
        }
    }
    if !matches!(app.log.format.as_str(), "text" | "json") {
        return err(
            "log.format",
            format!("{:?} is not a log format", app.log.format),
            "use \"text\" or \"json\"",
        );
    }
    if app.strategies.is_empty() {
        return err(
            "strategies",
            "no strategy files are listed".into(),
            "list at least one file, e.g. strategies = [\"strategies/ma_crossover.toml\"]",
        );
    }
    Ok(max_ooo)
}

/// Load and check one strategy file.
pub fn load_strategy(path: &Path) -> Result<StrategyConfig, ConfigError> {
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
    parse_strategy(&text, &file)
}

/// Parse and check a strategy from TOML text; `file` names it in errors.
pub fn parse_strategy(text: &str, file: &str) -> Result<StrategyConfig, ConfigError> {
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
        let fix = if key == "account.fee_bps" {
            "fees are set per symbol on the venue now: remove the key and set \
             venue.default.taker_fee_bps / maker_fee_bps (or venue.symbols.SYMBOL.*) in the app config"
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
    check_strategy(&s, file)?;
    Ok(s)
}

/// The key and message of an error inside `[rule]`, found by reading the table as
/// the rule its `kind` names.
fn diagnose_rule(text: &str) -> Option<(String, String)> {
    fn as_rule<T: serde::de::DeserializeOwned>(v: toml::Value) -> Option<(String, String)> {
        serde_path_to_error::deserialize::<_, T>(v)
            .err()
            .map(|e| (format!("rule.{}", e.path()), e.into_inner().to_string()))
    }
    let table: toml::Table = text.parse().ok()?;
    let mut rule = table.get("rule")?.as_table()?.clone();
    let kind = rule.remove("kind")?.as_str()?.to_string();
    let v = toml::Value::Table(rule);
    match kind.as_str() {
        "ma_crossover" => as_rule::<MaCrossoverRule>(v),
        "rsi_mean_reversion" => as_rule::<RsiRule>(v),
        "bollinger_breakout" => as_rule::<BollingerRule>(v),
        "sentiment_momentum" => as_rule::<SentimentRule>(v),
        "model" => as_rule::<ModelRule>(v),
        "ensemble" => as_rule::<EnsembleRule>(v),
        _ => None,
    }
}

fn check_strategy(s: &StrategyConfig, file: &str) -> Result<(), ConfigError> {
    let err =
        |key: &str, problem: String, fix: &str| Err(ConfigError::new(file, key, problem, fix));
    if s.name.trim().is_empty() || s.name.contains(char::is_whitespace) {
        return err(
            "name",
            format!("{:?} is not a usable name", s.name),
            "use a name without spaces",
        );
    }
    if s.symbols.is_empty() {
        return err(
            "symbols",
            "is empty".into(),
            "list the symbols to trade, e.g. [\"ACME\"]",
        );
    }
    match &s.rule {
        RuleConfig::MaCrossover(MaCrossoverRule { fast, slow, .. }) => {
            let ok = match (fast, slow) {
                (Window::Events(f), Window::Events(sl)) => f < sl,
                (Window::Time(f), Window::Time(sl)) => f < sl,
                _ => false,
            };
            if !ok {
                return err(
                    "rule.fast",
                    "fast must be shorter than slow, and both counts or both durations".into(),
                    "e.g. fast = 10, slow = 30, or fast = \"5m\", slow = \"30m\"",
                );
            }
        }
        RuleConfig::RsiMeanReversion(RsiRule {
            period,
            oversold,
            overbought,
        }) => {
            if *period < 2 {
                return err(
                    "rule.period",
                    format!("{period} is too short"),
                    "use 2 or more, e.g. 14",
                );
            }
            if !(0.0 < *oversold && oversold < overbought && *overbought < 100.0) {
                return err(
                    "rule.oversold",
                    format!(
                        "need 0 < oversold < overbought < 100, got {oversold} and {overbought}"
                    ),
                    "e.g. oversold = 30, overbought = 70",
                );
            }
        }
        RuleConfig::BollingerBreakout(BollingerRule { period, k }) => {
            if *period < 2 {
                return err(
                    "rule.period",
                    format!("{period} is too short"),
                    "use 2 or more, e.g. 20",
                );
            }
            if !(*k > 0.0 && k.is_finite()) {
                return err(
                    "rule.k",
                    format!("{k} is not a positive width"),
                    "e.g. k = 2.0",
                );
            }
        }
        RuleConfig::SentimentMomentum(SentimentRule {
            smoothing,
            enter,
            exit,
            ..
        }) => {
            if *smoothing == 0 {
                return err("rule.smoothing", "is 0".into(), "use 1 or more, e.g. 5");
            }
            if !((-1.0..=1.0).contains(enter) && (-1.0..=1.0).contains(exit) && exit < enter) {
                return err(
                    "rule.enter",
                    format!("need -1 <= exit < enter <= 1, got enter {enter}, exit {exit}"),
                    "e.g. enter = 0.3, exit = -0.3",
                );
            }
        }
        RuleConfig::Model(rule) => check_model_rule(rule, file)?,
        RuleConfig::Ensemble(rule) => check_ensemble_rule(rule, s, file)?,
    }
    if s.account.starting_cash <= Decimal::ZERO {
        return err(
            "account.starting_cash",
            "must be positive".into(),
            "e.g. starting_cash = \"100000\"",
        );
    }
    let r = &s.risk;
    for (key, v) in [
        ("risk.max_position", r.max_position),
        ("risk.max_gross_notional", r.max_gross_notional),
        ("risk.max_order_qty", r.max_order_qty),
    ] {
        if v.is_some_and(|v| v <= Decimal::ZERO) {
            return err(
                key,
                "must be positive".into(),
                "give a positive limit as a string, e.g. \"1000\", or remove the key",
            );
        }
    }
    if r.max_orders_per_sec == Some(0) {
        return err(
            "risk.max_orders_per_sec",
            "is 0".into(),
            "use 1 or more, or remove the key",
        );
    }
    if r.max_drawdown
        .is_some_and(|d| d <= Decimal::ZERO || d >= Decimal::ONE)
    {
        return err(
            "risk.max_drawdown",
            "must be a fraction between 0 and 1".into(),
            "e.g. max_drawdown = \"0.2\" for 20%",
        );
    }
    if let Some(b) = &s.bars {
        if let Err(problem) = b.spec() {
            return err(
                "bars.size",
                problem,
                "time bars: a duration such as \"5m\"; tick bars: a count such as \"100\"; volume bars: a quantity such as \"5000\"",
            );
        }
    }
    if s.orders.style == OrderStyle::Market
        && (s.orders.post_only || s.orders.limit_offset_ticks != 0)
    {
        return err(
            "orders.type",
            "post_only and limit_offset_ticks apply to limit orders only".into(),
            "set type = \"limit\", or remove those keys",
        );
    }
    let z = &s.sizing;
    if z.lot_size <= Decimal::ZERO {
        return err(
            "sizing.lot_size",
            "must be positive".into(),
            "e.g. lot_size = \"1\" or \"0.001\"",
        );
    }
    let (key, value, example) = match z.mode {
        SizingMode::FixedQuantity => ("sizing.quantity", z.quantity, "quantity = \"100\""),
        SizingMode::FixedNotional => ("sizing.notional", z.notional, "notional = \"10000\""),
        SizingMode::FractionOfEquity => ("sizing.fraction", z.fraction, "fraction = \"0.25\""),
    };
    match value {
        None => {
            let mode = serde_json::to_value(z.mode).ok();
            let mode = mode.as_ref().and_then(|m| m.as_str()).unwrap_or("");
            return err(key, format!("is required by mode {mode:?}"), example);
        }
        Some(v) if v <= Decimal::ZERO => return err(key, "must be positive".into(), example),
        Some(v) if z.mode == SizingMode::FractionOfEquity && v > Decimal::ONE => {
            return err(key, "must not exceed 1".into(), "use a fraction in (0, 1]")
        }
        _ => {}
    }
    Ok(())
}

/// Load the model (once per process) and check the thresholds against it: a
/// model that does not load stops start-up here, naming the model file.
fn check_model_rule(rule: &ModelRule, file: &str) -> Result<(), ConfigError> {
    let model = crate::model::load_shared(Path::new(&rule.model)).map_err(|e| {
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
                check_model_rule(&as_rule, file).map_err(|mut e| {
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
                check_strategy(&alone, file).map_err(|mut e| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
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

    #[test]
    fn venue_instruments_layer_per_symbol_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let strat = write(
            dir.path(),
            "s.toml",
            "name='a'\nsymbols=['X', 'EURUSD']\n[rule]\nkind='ma_crossover'\nfast=5\nslow=20\n[sizing]\nmode='fixed_quantity'\nquantity='1000'\n",
        );
        let app =
            |venue: &str| format!("strategies = [{:?}]\n{venue}", strat.display().to_string());
        let user = write(
            dir.path(),
            "app.toml",
            &app(
                "[venue]\nlatency = '0ms'\n[venue.default]\ntaker_fee_bps = '2.5'\n\
                  [venue.symbols.EURUSD]\ntick_size = '0.00001'\nlot_size = '1000'\n\
                  [venue.symbols.EURUSD.synth]\nspread = '3 ticks'\n",
            ),
        );
        let l = load_with_env(Some(&user), &[]).unwrap();
        assert_eq!(l.venue_latency, 0);
        let x = &l.instruments["X"];
        assert_eq!(x.tick_size.to_string(), "0.01");
        assert_eq!(x.taker_fee_bps.to_string(), "2.5");
        assert_eq!(x.synth.spread, crate::sim::Spread::Bps(Decimal::from(2)));
        let e = &l.instruments["EURUSD"];
        assert_eq!(e.tick_size.to_string(), "0.00001");
        assert_eq!(e.lot_size.to_string(), "1000");
        // Keys not overridden come from venue.default, table by table.
        assert_eq!(e.taker_fee_bps.to_string(), "2.5");
        assert_eq!(e.synth.spread, crate::sim::Spread::Ticks(3));
        assert_eq!(e.synth.levels, 5);

        // Bad values name the file and the key.
        let bad = write(
            dir.path(),
            "bad.toml",
            &app("[venue.symbols.EURUSD]\ntick_size = '-1'\n"),
        );
        let err = load_with_env(Some(&bad), &[]).unwrap_err();
        assert_eq!(err.key, "venue.symbols.EURUSD.tick_size", "{err}");
        assert_eq!(err.file, bad.display().to_string());
        let bad = write(
            dir.path(),
            "spread.toml",
            &app("[venue.default.synth]\nspread = '2 pips'\n"),
        );
        let err = load_with_env(Some(&bad), &[]).unwrap_err();
        assert_eq!(err.key, "venue.default.synth.spread", "{err}");
        assert!(err.problem.contains("unknown unit"), "{err}");
        let bad = write(dir.path(), "lat.toml", &app("[venue]\nlatency = 'soon'\n"));
        let err = load_with_env(Some(&bad), &[]).unwrap_err();
        assert_eq!(err.key, "venue.latency", "{err}");

        // fee_bps moved from the strategy's account to the venue: the fix says where.
        let old = write(
            dir.path(),
            "old.toml",
            "name='a'\nsymbols=['X']\n[rule]\nkind='ma_crossover'\nfast=5\nslow=20\n[account]\nfee_bps='1'\n[sizing]\nmode='fixed_quantity'\nquantity='1'\n",
        );
        let err = load_strategy(&old).unwrap_err();
        assert_eq!(err.key, "account.fee_bps");
        assert!(err.fix.contains("venue.default.taker_fee_bps"), "{err}");
        // Risk limits are checked.
        let risky = write(
            dir.path(),
            "risky.toml",
            "name='a'\nsymbols=['X']\n[rule]\nkind='ma_crossover'\nfast=5\nslow=20\n[sizing]\nmode='fixed_quantity'\nquantity='1'\n[risk]\nmax_drawdown='1.5'\n",
        );
        let err = load_strategy(&risky).unwrap_err();
        assert_eq!(err.key, "risk.max_drawdown", "{err}");
    }

    #[test]
    fn app_config_layers_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let strat = write(
            dir.path(),
            "s.toml",
            "name='a'\nsymbols=['X']\n[rule]\nkind='ma_crossover'\nfast=5\nslow=20\n[sizing]\nmode='fixed_quantity'\nquantity='1'\n",
        );
        let user = write(
            dir.path(),
            "app.toml",
            &format!(
                "strategies = [{:?}]\n[kafka]\nbrokers = 'localhost:1'\n",
                strat.display().to_string()
            ),
        );
        let loaded = load_with_env(Some(&user), &[]).unwrap();
        assert_eq!(loaded.app.kafka.brokers, "localhost:1");
        assert_eq!(loaded.strategies.len(), 1);

        // The environment overrides the file.
        let env = vec![("PAPERTRADER__KAFKA__BROKERS".to_string(), "h:2".to_string())];
        assert_eq!(
            load_with_env(Some(&user), &env).unwrap().app.kafka.brokers,
            "h:2"
        );

        // An unknown key names the user file and the key.
        let bad = write(dir.path(), "bad.toml", "[kafka]\nbrokres = 'x'\n");
        let e = load_with_env(Some(&bad), &[]).unwrap_err();
        assert_eq!(e.file, bad.display().to_string());
        assert!(e.key.starts_with("kafka"), "{e}");
        assert!(e.problem.contains("brokres"), "{e}");

        // A float where an integer belongs is refused, not truncated.
        let bad = write(dir.path(), "float.toml", "[kafka]\npartitions = 3.5\n");
        let e = load_with_env(Some(&bad), &[]).unwrap_err();
        assert_eq!(e.key, "kafka.partitions", "{e}");
        let bad = write(
            dir.path(),
            "bool.toml",
            "[kafka]\ncreate_topics = \"yes\"\n",
        );
        let e = load_with_env(Some(&bad), &[]).unwrap_err();
        assert_eq!(e.key, "kafka.create_topics", "{e}");

        // A bad value from the environment names the variable.
        let env = vec![(
            "PAPERTRADER__KAFKA__PARTITIONS".to_string(),
            "0".to_string(),
        )];
        let e = load_with_env(Some(&user), &env).unwrap_err();
        assert_eq!(e.key, "kafka.partitions");
        assert_eq!(
            e.file,
            "environment variable PAPERTRADER__KAFKA__PARTITIONS"
        );
    }
}
