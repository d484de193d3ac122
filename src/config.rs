//! The application configuration, and the strategy files it lists.
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

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::domain::Ts;
use crate::sim::InstrumentConfig;

/// Strategy files, their checks, [`ConfigError`] and the duration parsers
/// live in the core crate; they are re-exported here so that one module names
/// every configuration type.
pub use papertrader_core::config::*;

/// The built-in defaults, compiled into the binary from `config/default.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");
/// The name the built-in defaults go by in error messages.
pub const DEFAULT_CONFIG_NAME: &str = "config/default.toml";

/// A span that must not be zero.
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
    /// Analytics streams: named expressions per symbol, on `topics.indicators`.
    #[serde(default)]
    pub analytics: Vec<AnalyticsConfig>,
    /// Backtest reports.
    #[serde(default)]
    pub report: ReportConfig,
    /// The news-sentiment stage (`papertrader sentiment`, docs/sentiment.md).
    #[serde(default)]
    pub sentiment: crate::sentiment::SentimentConfig,
    /// Market-data and news connectors (`[[sources]]`): run by `papertrader
    /// ingest`, and in-process by paper mode (docs/sources.md).
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

/// Backtest reports (`[report]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Each strategy's equity is marked at the end of every period of this
    /// length (event time, UTC-aligned) in which its symbols had events: the
    /// equity curve, drawdowns, exposure and daily returns are taken from the
    /// marks (docs/metrics.md).
    pub mark_every: Span,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            mark_every: Span::from_nanos(60_000_000_000),
        }
    }
}

impl ReportConfig {
    fn check(&self) -> Result<(), Problem> {
        positive(
            "report.mark_every",
            self.mark_every,
            "write a duration such as \"1m\" or \"1d\"",
        )
    }
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
    pub seek: SeekMode,
    /// With `brokers = "embedded"`: where the embedded broker listens
    /// (`host:port`); unset, a free loopback port. A fixed port lets other
    /// clients (kcat, a producer of your own) reach the broker paper mode
    /// runs in.
    #[serde(default)]
    pub embedded_listen: Option<String>,
    /// Longest time a fetch of paper mode's input consumer waits for data
    /// (librdkafka's `fetch.wait.max.ms`; `kafka.properties` overrides it).
    /// tansu answers a fetch only when this has passed, data or not, so it
    /// bounds the latency from a tick to its order; Apache Kafka answers as
    /// soon as data arrives, so there it only sets how often an idle
    /// consumer asks.
    #[serde(default = "default_fetch_wait")]
    pub fetch_wait: Span,
}

fn default_fetch_wait() -> Span {
    Span::from_nanos(2_000_000)
}

impl KafkaConfig {
    /// [`KafkaConfig::embedded_listen`], parsed.
    pub fn embedded_addr(&self) -> Option<std::net::SocketAddr> {
        self.embedded_listen.as_deref().and_then(|a| a.parse().ok())
    }

    fn check(&self) -> Result<(), Problem> {
        if let Some(a) = &self.embedded_listen {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return Err(problem(
                    "kafka.embedded_listen",
                    format!("{a:?} is not an address"),
                    "write host:port, e.g. \"127.0.0.1:9092\"",
                ));
            }
        }
        if self.fetch_wait.nanos() < 1_000_000 || self.fetch_wait.nanos() > 60_000_000_000 {
            return Err(problem(
                "kafka.fetch_wait",
                "is out of range",
                "use a time between \"1ms\" and \"60s\"",
            ));
        }
        if self.brokers.trim().is_empty() {
            return Err(problem(
                "kafka.brokers",
                "is empty",
                "set it to host:port[,host:port...] or to \"embedded\"",
            ));
        }
        if self.group_id.trim().is_empty() {
            return Err(problem(
                "kafka.group_id",
                "is empty",
                "name a consumer group",
            ));
        }
        if !(1..=1024).contains(&self.partitions) {
            return Err(problem(
                "kafka.partitions",
                format!("{} is out of range", self.partitions),
                "use a value between 1 and 1024",
            ));
        }
        for (name, value) in &self.properties {
            let mut c = rdkafka::ClientConfig::new();
            c.set(name, value);
            if let Err(e) = c.create_native_config() {
                return Err(problem(
                    format!("kafka.properties.{name}"),
                    e.to_string(),
                    "use a librdkafka property name and value (see librdkafka's CONFIGURATION.md)",
                ));
            }
        }
        Ok(())
    }
}

impl KafkaConfig {
    /// Whether resumed partitions are read from their start (see `seek`), on
    /// the cluster whose id the brokers report: `auto` means `rescan` on tansu
    /// (the embedded broker, `papertrader broker`, and `tansu broker`, whose
    /// cluster ids are `papertrader` and `tansu...`), `offset` on any other.
    pub fn rescan_on(&self, cluster_id: &str) -> bool {
        match self.seek {
            SeekMode::Rescan => true,
            SeekMode::Offset => false,
            SeekMode::Auto => self.brokers == "embedded" || is_tansu_cluster(cluster_id),
        }
    }
}

/// Whether a cluster id is tansu's: `papertrader` (the embedded broker and
/// `papertrader broker`) or tansu's own default `tansu_cluster` (`tansu broker`).
pub fn is_tansu_cluster(cluster_id: &str) -> bool {
    cluster_id == "papertrader" || cluster_id.starts_with("tansu")
}

/// How a restart resumes an input partition (`kafka.seek`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeekMode {
    /// `rescan` for tansu (the embedded broker, `papertrader broker`, `tansu
    /// broker`: told by the cluster id), `offset` for any other.
    Auto,
    /// Fetch from the checkpoint's offset.
    Offset,
    /// Read the partition from its start and skip what the checkpoint covers.
    Rescan,
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
    pub indicators: String,
    /// Operator actions of paper mode's controls (pause, resume, flatten,
    /// kill), each with who and when: an audit log, keyed by strategy.
    pub control: String,
    /// Raw news headlines from `ingest`'s news sources (RSS/Atom, Alpaca
    /// news), read by the `sentiment` stage, which scores them into
    /// `news_sentiment`. Not an input of the engine.
    #[serde(default = "default_news_topic")]
    pub news: String,
}

fn default_news_topic() -> String {
    "news".to_string()
}

impl TopicsConfig {
    /// Every topic named, 1..=249 characters, no two alike.
    fn check(&self) -> Result<(), Problem> {
        let mut seen = BTreeMap::new();
        for (key, name) in self.all() {
            if name.trim().is_empty() || name.len() > 249 {
                return Err(problem(
                    key,
                    format!("topic name {name:?} is invalid"),
                    "use 1..=249 characters",
                ));
            }
            if let Some(other) = seen.insert(name.to_string(), key) {
                return Err(problem(
                    key,
                    format!("topic {name:?} is also used for {other}"),
                    "give every topic its own name",
                ));
            }
        }
        Ok(())
    }
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
    pub fn outputs(&self) -> [&str; 7] {
        [
            &self.signals,
            &self.orders,
            &self.fills,
            &self.pnl,
            &self.dead_letters,
            &self.alerts,
            &self.indicators,
        ]
    }

    fn all(&self) -> [(&'static str, &str); 12] {
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
            ("topics.indicators", &self.indicators),
            ("topics.control", &self.control),
            ("topics.news", &self.news),
        ]
    }
}

/// The kind of a `[[sources]]` entry (docs/sources.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Binance spot public streams: trades and diff depth synced with the REST snapshot.
    Binance,
    /// Coinbase Exchange: the `matches` channel (trades).
    Coinbase,
    /// Alpaca market data v2: trades, quotes, minute bars.
    Alpaca,
    /// The Alpaca news stream.
    AlpacaNews,
    /// An RSS 2.0 or Atom feed, polled.
    Rss,
}

papertrader_core::closed_set! {
    deserialize;
    SourceKind { Binance => "binance", Coinbase => "coinbase", Alpaca => "alpaca", AlpacaNews => "alpaca_news", Rss => "rss" }
}

fn yes() -> bool {
    true
}
fn default_depth_limit() -> u32 {
    1000
}
fn default_dedup() -> usize {
    100_000
}
fn span_default(s: &str) -> Span {
    Span::parse(s).expect("a valid default span")
}
fn default_heartbeat() -> Span {
    span_default("30s")
}
fn default_backoff_min() -> Span {
    span_default("500ms")
}
fn default_backoff_max() -> Span {
    span_default("30s")
}
fn default_poll() -> Span {
    span_default("60s")
}
fn default_snapshot_interval() -> Span {
    span_default("5s")
}

/// One `[[sources]]` entry: a connector to a venue or feed (`src/sources/`).
/// Keys a kind does not use are refused by [`SourceConfig::check`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name: the `source` label of metrics and dead letters, and a news item's `source`.
    pub name: String,
    pub kind: SourceKind,
    /// The venue's symbols to subscribe (`BTCUSDT`, `BTC-USD`, `AAPL`); for
    /// `rss`: symbols to tag every item with.
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Published symbol = prefix + venue symbol (unless `rename` names it).
    #[serde(default)]
    pub symbol_prefix: String,
    /// Venue symbol -> published symbol; its keys are subscribed too.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// WebSocket base URL (default: the venue's).
    #[serde(default)]
    pub ws_url: Option<String>,
    /// REST base URL (Binance's depth snapshot; default `https://api.binance.com`).
    #[serde(default)]
    pub rest_url: Option<String>,
    /// The feed URL (`rss`).
    #[serde(default)]
    pub url: Option<String>,
    /// Subscribe trades (binance, coinbase, alpaca).
    #[serde(default = "yes")]
    pub trades: bool,
    /// Binance: diff depth kept in sync with the REST snapshot, on `order_book`.
    #[serde(default)]
    pub depth: bool,
    /// Binance: levels of the REST snapshot (5..5000; weight grows with it).
    #[serde(default = "default_depth_limit")]
    pub depth_limit: u32,
    /// Binance: least wall time between two snapshot requests of one symbol.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_min_interval: Span,
    /// Alpaca: quotes, as one-level `order_book` snapshots (and bid/ask on trades).
    #[serde(default)]
    pub quotes: bool,
    /// Alpaca: minute bars, each one tick at its close (use instead of trades).
    #[serde(default)]
    pub bars: bool,
    /// Alpaca: `iex` or `sip` (or `test`, the sandbox stream of FAKEPACA).
    #[serde(default)]
    pub feed: Option<String>,
    /// Alpaca: the environment variables holding the key id and the secret.
    #[serde(default)]
    pub key_env: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    /// RSS: the polling interval.
    #[serde(default = "default_poll")]
    pub poll_every: Span,
    /// Reconnect when nothing (not even a heartbeat or ping) came for this long.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_timeout: Span,
    /// Reconnect delays: exponential from `backoff_min` to `backoff_max`, with jitter.
    #[serde(default = "default_backoff_min")]
    pub backoff_min: Span,
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Span,
    /// Ids remembered to drop duplicates (trades, news items).
    #[serde(default = "default_dedup")]
    pub dedup_capacity: usize,
}

impl SourceConfig {
    /// The venue symbols to subscribe: `symbols` and the keys of `rename`.
    pub fn venue_symbols(&self) -> Vec<String> {
        let mut v = self.symbols.clone();
        for k in self.rename.keys() {
            if !v.contains(k) {
                v.push(k.clone());
            }
        }
        v
    }

    /// The published symbol of a venue symbol.
    pub fn publish_symbol(&self, venue: &str) -> String {
        match self.rename.get(venue) {
            Some(s) => s.clone(),
            None => format!("{}{venue}", self.symbol_prefix),
        }
    }

    fn check(&self, key: &str) -> Result<(), Problem> {
        use SourceKind::*;
        let k = |f: &str| format!("{key}.{f}");
        let ok_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !ok_name {
            return Err(problem(
                k("name"),
                format!("{:?} is not a source name", self.name),
                "use ASCII letters, digits, '_', '-' or '.', such as \"binance\"",
            ));
        }
        let symbols = self.venue_symbols();
        let needs_symbols = matches!(self.kind, Binance | Coinbase | Alpaca);
        if needs_symbols && symbols.is_empty() {
            return Err(problem(
                k("symbols"),
                "no symbols to subscribe",
                "list the venue's symbols, such as symbols = [\"BTCUSDT\"]",
            ));
        }
        for s in &symbols {
            let published = self.publish_symbol(s);
            if s.is_empty()
                || s.chars().any(char::is_whitespace)
                || published.len() > crate::wire::MAX_SYMBOL_LEN
            {
                return Err(problem(
                    k("symbols"),
                    format!("{s:?} (published as {published:?}) is not a valid symbol"),
                    "use symbols without spaces, at most 32 bytes with the prefix",
                ));
            }
        }
        for (f, url) in [
            ("ws_url", &self.ws_url),
            ("rest_url", &self.rest_url),
            ("url", &self.url),
        ] {
            if let Some(u) = url {
                let schemes: &[&str] = if f == "ws_url" {
                    &["ws://", "wss://"]
                } else {
                    &["http://", "https://"]
                };
                if !schemes.iter().any(|p| u.starts_with(p)) {
                    return Err(problem(
                        k(f),
                        format!("{u:?} is not a URL"),
                        format!("write a URL starting with {}", schemes.join(" or ")),
                    ));
                }
            }
        }
        self.check_kind(key)?;
        positive(
            &k("heartbeat_timeout"),
            self.heartbeat_timeout,
            "write a duration such as \"30s\"",
        )?;
        positive(
            &k("backoff_min"),
            self.backoff_min,
            "write a duration such as \"500ms\"",
        )?;
        if self.backoff_max.nanos() < self.backoff_min.nanos() {
            return Err(problem(
                k("backoff_max"),
                "is below backoff_min",
                "make backoff_max at least backoff_min, such as \"30s\"",
            ));
        }
        if self.dedup_capacity == 0 {
            return Err(problem(
                k("dedup_capacity"),
                "is 0",
                "use a positive number such as 100000",
            ));
        }
        Ok(())
    }

    fn check_kind(&self, key: &str) -> Result<(), Problem> {
        use SourceKind::*;
        let k = |f: &str| format!("{key}.{f}");
        let unused = |f: &str, set: bool| -> Result<(), Problem> {
            if set {
                return Err(problem(
                    k(f),
                    format!("is not used by kind {:?}", self.kind.as_str()),
                    "remove the key (docs/sources.md lists the keys of each kind)",
                ));
            }
            Ok(())
        };
        unused("depth", self.depth && self.kind != Binance)?;
        unused("quotes", self.quotes && self.kind != Alpaca)?;
        unused("bars", self.bars && self.kind != Alpaca)?;
        unused("feed", self.feed.is_some() && self.kind != Alpaca)?;
        unused("rest_url", self.rest_url.is_some() && self.kind != Binance)?;
        unused("url", self.url.is_some() && self.kind != Rss)?;
        unused("ws_url", self.ws_url.is_some() && self.kind == Rss)?;
        let alpaca = matches!(self.kind, Alpaca | AlpacaNews);
        unused("key_env", self.key_env.is_some() && !alpaca)?;
        unused("secret_env", self.secret_env.is_some() && !alpaca)?;
        match self.kind {
            Rss if self.url.is_none() => Err(problem(
                k("url"),
                "no feed URL",
                "set url = \"https://example.com/feed.xml\"",
            )),
            Rss => positive(
                &k("poll_every"),
                self.poll_every,
                "write a duration such as \"60s\"",
            ),
            Alpaca => match self.feed.as_deref() {
                None | Some("iex" | "sip" | "test") => Ok(()),
                Some(other) => Err(problem(
                    k("feed"),
                    format!("{other:?} is not an Alpaca feed"),
                    "use \"iex\" (free) or \"sip\"",
                )),
            },
            Binance if !(5..=5000).contains(&self.depth_limit) => Err(problem(
                k("depth_limit"),
                format!("{} is out of range", self.depth_limit),
                "use 5..5000, such as 1000",
            )),
            Binance if !self.trades && !self.depth => Err(problem(
                k("trades"),
                "neither trades nor depth is on",
                "set trades = true or depth = true",
            )),
            _ => Ok(()),
        }
    }
}

/// Every `[[sources]]` entry checked, names unique.
fn check_sources(entries: &[SourceConfig]) -> Vec<Result<(), Problem>> {
    let mut seen = BTreeSet::new();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let key = format!("sources[{i}]");
            e.check(&key)?;
            if !seen.insert(e.name.as_str()) {
                return Err(problem(
                    format!("{key}.name"),
                    format!("{:?} names an earlier source too", e.name),
                    "give every [[sources]] entry its own name",
                ));
            }
            Ok(())
        })
        .collect()
}

/// Input validation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Symbols to accept; empty accepts every symbol. Others go to dead letters.
    pub symbols: Vec<String>,
    /// How far (event time) a message may lag the newest one seen for its symbol
    /// and topic before it is dead-lettered as out of order, e.g. "60s".
    pub max_out_of_order: Span,
    /// Paper mode: a message whose event time is ahead of the wall clock by more
    /// than this is dead-lettered (`ahead_of_clock`), so that one bad timestamp
    /// cannot put every later message of its symbol out of order. "off" turns
    /// the check off. Backtests have no wall clock and do not check.
    #[serde(
        deserialize_with = "off_or_span",
        serialize_with = "serialize_off_or_span"
    )]
    pub max_ahead: Option<Span>,
}

impl InputConfig {
    fn check(&self) -> Result<(), Problem> {
        positive(
            "input.max_out_of_order",
            self.max_out_of_order,
            "write a duration such as \"60s\"",
        )?;
        if let Some(ahead) = self.max_ahead {
            positive(
                "input.max_ahead",
                ahead,
                "write a duration such as \"1h\", or \"off\"",
            )?;
        }
        Ok(())
    }
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
    pub shards: ShardMode,
    /// `event_time`: hold input messages until every assigned input partition has
    /// one held or nothing more to give, and take the earliest first, as a
    /// backtest does ([`crate::merge`]). `arrival`: take messages as they come.
    pub order: InputOrder,
    /// With `event_time`: how long (wall time) a message waits at least when a
    /// partition behind it is caught up rather than holding a message, for
    /// messages of other partitions that are still on their way, e.g. "1ms" (the default).
    pub order_hold: Span,
    /// With `event_time`: a partition that delivers nothing for this long (wall
    /// time) stops holding the others back, e.g. "1s".
    pub order_idle: Span,
    /// With `event_time`: most messages held; past it the earliest is taken anyway.
    pub order_max_held: usize,
}

impl EngineConfig {
    fn check(&self) -> Result<(), Problem> {
        positive(
            "engine.order_idle",
            self.order_idle,
            "use a positive duration such as \"1s\"",
        )?;
        if self.order_max_held == 0 {
            return Err(problem(
                "engine.order_max_held",
                "is 0",
                "use a positive number such as 200000",
            ));
        }
        if self.max_batch == 0 {
            return Err(problem(
                "engine.max_batch",
                "is 0",
                "use a positive number such as 1000",
            ));
        }
        Ok(())
    }
}

/// How paper mode's engines divide the input (`engine.shards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardMode {
    /// One engine, one account per strategy.
    Single,
    /// One engine (and account per strategy) per input partition number.
    Partition,
}

/// In what order paper mode takes its input messages (`engine.order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputOrder {
    /// By event time across partitions, as a backtest does (reproducible).
    EventTime,
    /// As messages arrive.
    Arrival,
}

/// The checkpoint store as configured (`state.store`); [`StateConfig::resolve`]
/// turns `auto` into a [`StateStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Auto,
    File,
    Kafka,
    None,
}

/// How log lines are written (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

papertrader_core::closed_set! {
    deserialize;
    SeekMode { Auto => "auto", Offset => "offset", Rescan => "rescan" }
    ShardMode { Single => "single", Partition => "partition" }
    InputOrder { EventTime => "event_time", Arrival => "arrival" }
    StoreKind { Auto => "auto", File => "file", Kafka => "kafka", None => "none" }
    LogFormat { Text => "text", Json => "json" }
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
    pub stale_after: Span,
    /// Rows kept per table (signals, orders, fills, alerts) and points per equity curve.
    pub history: usize,
    /// The bearer token of the controls API (`POST /api/control`); empty: a
    /// random one is made at start and printed once.
    pub token: String,
    /// The interval of the dashboard's candles (the page groups them into
    /// longer ones); candles kept per symbol: `candles_kept`.
    pub candle: Span,
    pub candles_kept: usize,
}

impl HttpConfig {
    fn check(&self) -> Result<(), Problem> {
        if self.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(problem(
                "http.bind",
                format!("{:?} is not an address", self.bind),
                "write ip:port, such as \"127.0.0.1:8080\" (port 0 picks a free one)",
            ));
        }
        if !self.token.is_empty() && self.token.trim().len() < 16 {
            return Err(problem(
                "http.token",
                "the controls token is shorter than 16 characters".to_string(),
                "use a long random string (or leave it empty for one made at start)",
            ));
        }
        positive(
            "http.candle",
            self.candle,
            "write a duration such as \"1s\" or \"1m\"",
        )?;
        positive(
            "http.stale_after",
            self.stale_after,
            "write a duration such as \"30s\"",
        )
    }
}

/// Where and how often paper mode checkpoints the engine's state.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `auto`, `file`, `kafka` or `none`; `auto` is `file` for a real cluster and
    /// `none` for the embedded broker (whose in-memory topics end with the process).
    pub store: StoreKind,
    /// The checkpoint file of `store = "file"`; `{group}` is replaced by `kafka.group_id`.
    pub path: String,
    /// The compacted topic of `store = "kafka"`, keyed by consumer group.
    pub topic: String,
    /// Checkpoint after this many input messages (0: not by count) ...
    pub every_events: u64,
    /// ... or when this much wall time has passed since the last one (and at shutdown).
    pub every: Span,
}

impl StateConfig {
    fn check(&self) -> Result<(), Problem> {
        if self.path.trim().is_empty() {
            return Err(problem(
                "state.path",
                "the checkpoint path is empty",
                "write a file path such as \"state/{group}.ckpt\"",
            ));
        }
        if self.topic.trim().is_empty() {
            return Err(problem(
                "state.topic",
                "the state topic is empty",
                "write a topic name such as \"papertrader_state\"",
            ));
        }
        positive(
            "state.every",
            self.every,
            "write a duration such as \"10s\"",
        )
    }
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
        match self.store {
            StoreKind::File => StateStore::File,
            StoreKind::Kafka => StateStore::Kafka,
            StoreKind::Auto if !embedded => StateStore::File,
            StoreKind::Auto | StoreKind::None => StateStore::None,
        }
    }

    /// The checkpoint file for consumer group `group`.
    pub fn file_for(&self, group: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(self.path.replace("{group}", group))
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (readable) or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `papertrader=debug,rdkafka=warn`.
    pub level: String,
}

impl LogConfig {
    fn check(&self) -> Result<(), Problem> {
        for directive in self.level.split(',').map(str::trim) {
            let level = directive.rsplit('=').next().unwrap_or("");
            let known = ["trace", "debug", "info", "warn", "error", "off"];
            if !known.contains(&level.to_ascii_lowercase().as_str()) {
                return Err(problem(
                    "log.level",
                    format!("{directive:?} is not a log level"),
                    "use trace, debug, info, warn, error or off, optionally per target: \"info,papertrader=debug\"",
                ));
            }
        }
        Ok(())
    }
}

/// The simulated venue every strategy trades on (see `sim`): how long orders
/// take to reach it, and each symbol's instrument (tick and lot size, fees, the
/// synthesized book). Tables are kept raw here and resolved per symbol by
/// [`Loaded::instrument`] (`symbols.X` overrides keys of `default`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VenueConfig {
    /// Event-time delay from an order or cancel to the venue: "0ms" (none), "1ms", "250ms".
    pub latency: Span,
    /// Instrument settings of every symbol.
    pub default: toml::Table,
    /// Per-symbol overrides of keys of `default`.
    pub symbols: BTreeMap<String, toml::Table>,
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
    /// The models the strategies name, each loaded and checked once.
    pub models: crate::model::Models,
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

    /// What the engine is built from: the strategies, the instrument of every
    /// symbol they trade, the venue latency and the input limits.
    ///
    /// # Panics
    /// If a strategy added after loading trades a symbol whose instrument does
    /// not resolve ([`load`] resolves and checks every symbol of the strategies
    /// it loads).
    pub fn engine_spec(&self) -> crate::engine::EngineSpec {
        let mut instruments = self.instruments.clone();
        for sym in self.strategies.iter().flat_map(|s| &s.symbols) {
            if !instruments.contains_key(sym) {
                let inst = self
                    .instrument(sym)
                    .unwrap_or_else(|(key, problem)| panic!("{key}: {problem}"));
                instruments.insert(sym.clone(), inst);
            }
        }
        crate::engine::EngineSpec {
            strategies: self.strategies.clone(),
            instruments,
            venue_latency: self.venue_latency,
            max_out_of_order: self.max_out_of_order,
            symbols: self.app.input.symbols.clone(),
            pnl_every_ticks: self.app.engine.pnl_every_ticks,
            models: self.models.clone(),
            analytics: self.app.analytics.clone(),
        }
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

/// Load the layered application config and every strategy it names.
pub fn load(user_file: Option<&Path>) -> Result<Loaded, ConfigError> {
    load_with_strategies(user_file, &[])
}

/// [`load`], with `strategies` (the command line's `--strategy` files, when
/// there are any) in place of the configuration's `strategies` list.
pub fn load_with_strategies(
    user_file: Option<&Path>,
    strategies: &[std::path::PathBuf],
) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PAPERTRADER__"))
        .collect();
    let list: Vec<String> = strategies.iter().map(|p| p.display().to_string()).collect();
    load_inner(
        user_file,
        &env,
        true,
        (!list.is_empty()).then_some(&list[..]),
    )
}

/// Load the layered application config alone, for commands that run no strategy
/// (`broker`, `replay`, `generate`): `strategies` is left empty.
pub fn load_app(user_file: Option<&Path>) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PAPERTRADER__"))
        .collect();
    load_inner(user_file, &env, false, None)
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
    load_inner(user_file, env, true, None)
}

fn load_inner(
    user_file: Option<&Path>,
    env: &[(String, String)],
    with_strategies: bool,
    strategies: Option<&[String]>,
) -> Result<Loaded, ConfigError> {
    let user = read_user_file(user_file)?;
    let (user_text, user_name) = match &user {
        Some((text, name)) => (Some(text.as_str()), Some(name.as_str())),
        None => (None, None),
    };
    let file_of = |key: &str| {
        if strategies.is_some() && key.starts_with("strategies") {
            "--strategy".to_string()
        } else {
            origin_of(key, user_text, user_name, env)
        }
    };
    let mut app = layered_app(user.as_ref(), env, &file_of)?;
    if let Some(list) = strategies {
        app.strategies = list.to_vec();
    }
    check_app(&app, &file_of)?;
    let paths = if with_strategies {
        &app.strategies[..]
    } else {
        &[]
    };
    let mut models = crate::model::Models::new();
    let strategies = load_strategies(paths, &file_of, &mut models)?;
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
        max_out_of_order: app.input.max_out_of_order.nanos(),
        venue_latency: app.venue.latency.nanos(),
        app,
        strategies,
        instruments,
        models,
    })
}

/// The `--config` file's text and name, its syntax and value types checked
/// against the defaults.
fn read_user_file(user_file: Option<&Path>) -> Result<Option<(String, String)>, ConfigError> {
    let Some(p) = user_file else {
        return Ok(None);
    };
    let name = p.display().to_string();
    let text = std::fs::read_to_string(p).map_err(|e| {
        ConfigError::new(
            name.clone(),
            "(file)",
            format!("cannot read the file: {e}"),
            "pass an existing TOML file to --config",
        )
    })?;
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
    check_types(&defaults, &table, "", &name)?;
    Ok(Some((text, name)))
}

/// The keys whose environment variables hold lists: `A,B` or TOML `["A", "B"]`.
const LIST_KEYS: [&str; 5] = [
    "input.symbols",
    "strategies",
    "demo.prices",
    "demo.sentiment",
    "sentiment.symbols",
];

/// The environment, with a list variable written as a TOML array
/// (`PAPERTRADER__INPUT__SYMBOLS='["ACME","GLOBEX"]'`) turned into the
/// comma-separated form the `config` crate splits (`ACME,GLOBEX`).
///
/// # Errors
/// A value that starts with `[` but is not an array of strings.
fn list_env(
    env: &[(String, String)],
) -> Result<std::collections::HashMap<String, String>, ConfigError> {
    let mut out = std::collections::HashMap::new();
    for (var, value) in env {
        let key = var
            .strip_prefix("PAPERTRADER__")
            .map(|k| k.to_ascii_lowercase().replace("__", "."));
        let is_list = key.as_deref().is_some_and(|k| LIST_KEYS.contains(&k));
        let v = value.trim();
        if !(is_list && v.starts_with('[')) {
            out.insert(var.clone(), value.clone());
            continue;
        }
        #[derive(Deserialize)]
        struct List {
            v: Vec<String>,
        }
        let list: List = toml::from_str(&format!("v = {v}")).map_err(|_| {
            ConfigError::new(
                format!("environment variable {var}"),
                key.clone().unwrap_or_default(),
                format!("{value:?} is not a list of strings"),
                "write the items comma-separated (ACME,GLOBEX) or as a TOML array ([\"ACME\", \"GLOBEX\"])",
            )
        })?;
        if let Some(bad) = list.v.iter().find(|s| s.contains(',')) {
            return Err(ConfigError::new(
                format!("environment variable {var}"),
                key.unwrap_or_default(),
                format!("the item {bad:?} holds a comma"),
                "items of a list in an environment variable cannot hold commas",
            ));
        }
        out.insert(var.clone(), list.v.join(","));
    }
    Ok(out)
}

/// The defaults, the user's file and the environment, layered and deserialized.
fn layered_app(
    user: Option<&(String, String)>,
    env: &[(String, String)],
    file_of: &dyn Fn(&str) -> String,
) -> Result<AppConfig, ConfigError> {
    use config::{Config, Environment, File, FileFormat};
    let mut builder =
        Config::builder().add_source(File::from_str(DEFAULT_CONFIG, FileFormat::Toml));
    if let Some((text, _)) = user {
        builder = builder.add_source(File::from_str(text, FileFormat::Toml));
    }
    let env_map = list_env(env)?;
    let mut source = Environment::with_prefix("PAPERTRADER")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",");
    for key in LIST_KEYS {
        source = source.with_list_parse_key(key);
    }
    builder = builder.add_source(source.source(Some(env_map)));
    let merged = builder.build().map_err(|e| {
        ConfigError::new(
            user.map_or_else(|| DEFAULT_CONFIG_NAME.to_string(), |(_, name)| name.clone()),
            "(file)",
            e.to_string(),
            "correct the file",
        )
    })?;
    serde_path_to_error::deserialize(merged).map_err(|e| {
        let key = e.path().to_string();
        let file = file_of(&key);
        let inner = e.into_inner().to_string();
        let fix = if inner.contains("unknown field") && file.starts_with("environment variable") {
            "unset or rename the variable (PAPERTRADER__SECTION__KEY, sections and keys as in config/default.toml)"
        } else if inner.contains("unknown field") {
            "remove or rename the key; the accepted keys are listed in config/default.toml"
        } else if inner.contains("missing field") {
            "add the key (see config/default.toml for its default)"
        } else if inner.contains("unknown variant") {
            "use one of the listed values (see config/default.toml)"
        } else if inner.contains("duration") {
            "write a duration with a unit: ms, s, m, h or d, such as \"250ms\" or \"30s\""
        } else {
            "give the key a value of the expected type (see config/default.toml)"
        };
        ConfigError::new(file, key, inner, fix)
    })
}

/// Every strategy file of `paths`, checked, with names unique.
fn load_strategies(
    paths: &[String],
    file_of: &dyn Fn(&str) -> String,
    models: &mut crate::model::Models,
) -> Result<Vec<StrategyConfig>, ConfigError> {
    let mut strategies = Vec::new();
    let mut names = BTreeSet::new();
    for (i, path) in paths.iter().enumerate() {
        let s = load_strategy_with(Path::new(path), models).map_err(|mut e| {
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
    Ok(strategies)
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

/// Each `[[analytics]]` entry checked, and no name used twice.
fn check_analytics(entries: &[AnalyticsConfig]) -> Vec<Result<(), Problem>> {
    let mut seen = std::collections::BTreeSet::new();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let key = format!("analytics[{i}]");
            e.check(&key)?;
            if !seen.insert(e.name.as_str()) {
                return Err(problem(
                    format!("{key}.name"),
                    format!("{:?} names an earlier entry too", e.name),
                    "give every [[analytics]] entry its own name",
                ));
            }
            Ok(())
        })
        .collect()
}

fn check_app(app: &AppConfig, file_of: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let checks = [
        app.kafka.check(),
        app.topics.check(),
        app.input.check(),
        app.engine.check(),
        app.log.check(),
        app.http.check(),
        app.state.check(),
        app.alerts.check(),
        app.report.check(),
        app.sentiment.check(),
    ];
    for c in checks
        .into_iter()
        .chain(check_analytics(&app.analytics))
        .chain(check_sources(&app.sources))
    {
        c.map_err(|(key, problem, fix)| ConfigError::new(file_of(&key), key, problem, fix))?;
    }
    if app.strategies.is_empty() {
        return Err(ConfigError::new(
            file_of("strategies"),
            "strategies",
            "no strategy files are listed",
            "list at least one file, e.g. strategies = [\"strategies/ma_crossover.toml\"]",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::path::PathBuf;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Regression ("`PAPERTRADER__INPUT__SYMBOLS='[\"ACME\"]'` is taken as one
    /// symbol named `[\"ACME\"]`").
    #[test]
    fn list_variables_take_commas_or_a_toml_array() {
        let var = "PAPERTRADER__INPUT__SYMBOLS";
        let symbols = |v: &str| {
            load_inner(None, &[(var.to_string(), v.to_string())], false, None)
                .map(|l| l.app.input.symbols)
        };
        let want = vec!["ACME".to_string(), "GLOBEX".to_string()];
        assert_eq!(symbols("ACME,GLOBEX").unwrap(), want);
        assert_eq!(symbols(r#"["ACME", "GLOBEX"]"#).unwrap(), want);
        assert_eq!(symbols("['ACME','GLOBEX']").unwrap(), want);
        assert_eq!(symbols(r#"["ACME"]"#).unwrap(), vec!["ACME".to_string()]);
        let e = symbols(r#"["ACME""#).unwrap_err();
        assert!(
            e.file.contains(var) && e.key == "input.symbols" && e.fix.contains("comma-separated"),
            "{e}"
        );
    }

    #[test]
    fn seek_auto_rescans_on_tansu_only() {
        let dir = tempfile::tempdir().unwrap();
        let app = |brokers: &str, seek: &str| {
            let p = write(
                dir.path(),
                "app.toml",
                &format!("[kafka]\nbrokers = {brokers:?}\nseek = {seek:?}\n"),
            );
            load_with_env(Some(&p), &[]).unwrap().app.kafka
        };
        let remote = app("10.0.0.1:9092", "auto");
        // `papertrader broker` and the embedded broker say `papertrader`;
        // `tansu broker` says `tansu_cluster` unless told otherwise.
        assert!(remote.rescan_on("papertrader"));
        assert!(remote.rescan_on("tansu_cluster"));
        // Apache Kafka's ids are random base64; Redpanda's and MSK's likewise.
        assert!(!remote.rescan_on("MkU3OEVBNTcwNTJENDM2Qk"));
        assert!(!remote.rescan_on(""));
        assert!(app("embedded", "auto").rescan_on(""));
        assert!(!app("embedded", "offset").rescan_on("papertrader"));
        assert!(app("10.0.0.1:9092", "rescan").rescan_on("MkU3OEVBNTcwNTJENDM2Qk"));
    }

    #[test]
    fn embedded_listen_and_fetch_wait_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let load = |extra: &str| {
            let p = write(dir.path(), "app.toml", &format!("[kafka]\n{extra}\n"));
            load_with_env(Some(&p), &[])
        };
        let k = load("").unwrap().app.kafka;
        assert_eq!(k.fetch_wait.nanos(), 2_000_000);
        assert_eq!(k.embedded_addr(), None);
        let k = load("embedded_listen = \"127.0.0.1:19092\"\nfetch_wait = \"50ms\"")
            .unwrap()
            .app
            .kafka;
        assert_eq!(k.embedded_addr().unwrap().port(), 19092);
        assert_eq!(k.fetch_wait.nanos(), 50_000_000);
        let e = load("embedded_listen = \"localhost\"").unwrap_err();
        assert!(
            e.key == "kafka.embedded_listen" && e.fix.contains("host:port"),
            "{e}"
        );
        let e = load("fetch_wait = \"0s\"").unwrap_err();
        assert!(e.key == "kafka.fetch_wait" && e.fix.contains("1ms"), "{e}");
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
