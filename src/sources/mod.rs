//! Market-data and news connectors (`[[sources]]`, `papertrader ingest`):
//! venues' WebSocket streams and feeds into the input topics (`live_prices`,
//! `order_book`) and the `news` topic (docs/sources.md).
//!
//! The seam: each WebSocket venue is a [`ws::WsVenue`] (what to subscribe, what
//! a frame means), driven by one loop ([`ws::run`]) that connects, reconnects
//! with [`Backoff`], answers pings, detects silence and honours a venue's
//! frame rate; RSS is a poller ([`rss`]). Every connector hands [`Record`]s to
//! one publisher task over a bounded channel: a slow broker slows the readers
//! (backpressure) and nothing is dropped. Frames that cannot be used become
//! dead letters ([`dead_letter`]) with the reason and the raw bytes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::{IntCounterVec, Opts, Registry};
use rand::Rng;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rust_decimal::Decimal;
use serde_json::json;
use tokio::sync::mpsc;

use crate::config::{Loaded, SourceConfig, SourceKind, TopicsConfig};
use crate::domain::Ts;

pub mod alpaca;
pub mod binance;
pub mod coinbase;
pub mod rss;
pub mod ws;

/// Records waiting for the publisher; a full channel holds the connectors back.
pub const CHANNEL_CAPACITY: usize = 10_000;
/// Dead letters keep the first 64 KiB of a frame, as the engine's do.
const DEAD_PAYLOAD_LIMIT: usize = 64 * 1024;

/// Which topic a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Prices,
    Book,
    News,
    DeadLetters,
}

impl Topic {
    fn name(self, t: &TopicsConfig) -> &str {
        match self {
            Topic::Prices => &t.live_prices,
            Topic::Book => &t.order_book,
            Topic::News => &t.news,
            Topic::DeadLetters => &t.dead_letters,
        }
    }
}

/// One message for the broker: the Kafka timestamp is the event time.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: Topic,
    pub key: String,
    pub payload: Vec<u8>,
    /// Event time in milliseconds (the Kafka message timestamp).
    pub ts_ms: i64,
    /// The metrics label: `trade`, `book_snapshot`, `book_update`, `quote`,
    /// `bar`, `news`, `dead_letter`.
    pub kind: &'static str,
}

/// A tick on `live_prices`; `quote` (bid, ask) is attached when it is not crossed.
pub fn tick_record(
    symbol: String,
    ts: Ts,
    price: Decimal,
    size: Decimal,
    quote: Option<(Decimal, Decimal)>,
    kind: &'static str,
) -> Record {
    let (bid, ask) = match quote {
        Some((b, a)) if b > Decimal::ZERO && a >= b => (Some(b), Some(a)),
        _ => (None, None),
    };
    let t = crate::domain::Tick {
        symbol: symbol.into(),
        ts,
        price,
        size,
        bid,
        ask,
    };
    Record {
        topic: Topic::Prices,
        key: t.symbol.to_string(),
        payload: crate::wire::encode_tick(&t),
        ts_ms: ts.div_euclid(1_000_000),
        kind,
    }
}

/// A depth message on `order_book` (docs/topics.md): levels as `[price, size]`.
pub fn book_record(
    symbol: &str,
    ts: Ts,
    snapshot: bool,
    bids: &[(Decimal, Decimal)],
    asks: &[(Decimal, Decimal)],
) -> Record {
    // Normalized ("97000.10000000" -> "97000.1"): the same values, and a
    // deep snapshot fits in the wire's 64 KiB.
    let side = |l: &[(Decimal, Decimal)]| -> Vec<[String; 2]> {
        l.iter()
            .map(|(p, s)| [p.normalize().to_string(), s.normalize().to_string()])
            .collect()
    };
    let v = json!({
        "symbol": symbol,
        "ts": crate::wire::format_ts(ts),
        "type": if snapshot { "snapshot" } else { "update" },
        "bids": side(bids),
        "asks": side(asks),
    });
    Record {
        topic: Topic::Book,
        key: symbol.to_string(),
        payload: serde_json::to_vec(&v).expect("json"),
        ts_ms: ts.div_euclid(1_000_000),
        kind: if snapshot {
            "book_snapshot"
        } else {
            "book_update"
        },
    }
}

/// [`book_record`] of a snapshot, with the deepest levels left out until
/// the message fits the wire's limit (`wire::MAX_MESSAGE_BYTES`).
pub fn fitting_snapshot(
    symbol: &str,
    ts: Ts,
    bids: &[(Decimal, Decimal)],
    asks: &[(Decimal, Decimal)],
) -> Record {
    let mut n = bids.len().max(asks.len());
    loop {
        let r = book_record(
            symbol,
            ts,
            true,
            &bids[..n.min(bids.len())],
            &asks[..n.min(asks.len())],
        );
        if r.payload.len() <= crate::wire::MAX_MESSAGE_BYTES || n <= 1 {
            if n < bids.len().max(asks.len()) {
                tracing::info!(%symbol, levels = n, "the depth snapshot keeps the best {n} levels a side (64 KiB)");
            }
            return r;
        }
        n = n * 3 / 4;
    }
}

/// A news item on `news`, keyed by its id.
pub fn news_record(item: &papertrader_core::news::NewsItem) -> Record {
    Record {
        topic: Topic::News,
        key: item.id.clone(),
        payload: item.to_json(),
        ts_ms: item.ts.div_euclid(1_000_000),
        kind: "news",
    }
}

/// A frame a connector could not use, on `dead_letters`: the engine's dead
/// letter shape (docs/topics.md) with `source`, the topic the frame was meant
/// for (empty when unknown), no Kafka origin (`partition` and `offset` -1), and
/// the raw bytes.
pub fn dead_letter(
    source: &str,
    topic: &str,
    reason: &str,
    detail: &str,
    raw: &[u8],
    now_ms: i64,
    seq: u64,
) -> Record {
    let truncated = raw.len() > DEAD_PAYLOAD_LIMIT;
    let kept = &raw[..raw.len().min(DEAD_PAYLOAD_LIMIT)];
    let (payload, hex) = match std::str::from_utf8(kept) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (
            None,
            Some(kept.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        ),
    };
    let v = json!({
        "dead_letter_id": format!("dl:source:{source}:{now_ms}:{seq}"),
        "reason": reason,
        "detail": detail,
        "source": source,
        "topic": topic,
        "partition": -1,
        "offset": -1,
        "key": source,
        "payload": payload,
        "payload_hex": hex,
        "payload_bytes": raw.len(),
        "payload_truncated": truncated,
    });
    Record {
        topic: Topic::DeadLetters,
        key: source.to_string(),
        payload: serde_json::to_vec(&v).expect("json"),
        ts_ms: now_ms,
        kind: "dead_letter",
    }
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A decimal from a provider's text (or a JSON number's text, kept exact by
/// serde_json's `arbitrary_precision`), never through `f64`.
pub fn decimal(v: &serde_json::Value) -> Option<Decimal> {
    use std::str::FromStr;
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

/// Exponential reconnect delays with jitter: attempt n waits a random time
/// in `[d/2, d]`, `d = min(max, min * 2^n)`; [`Backoff::reset`] after a
/// session that delivered data.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        let d = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A bounded set of recently seen ids: the oldest is forgotten first.
#[derive(Debug)]
pub struct Dedup {
    seen: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Dedup {
    pub fn new(capacity: usize) -> Self {
        Dedup {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// True the first time `id` is seen (while it is remembered).
    pub fn first(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The connectors' Prometheus metrics (names in docs/sources.md), labelled by
/// source name.
pub struct SourceMetrics {
    pub messages: IntCounterVec,
    pub reconnects: IntCounterVec,
    pub gaps: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub duplicates: IntCounterVec,
    last: Arc<Mutex<HashMap<String, Instant>>>,
}

/// `papertrader_source_last_message_age_seconds`, computed when scraped.
struct AgeCollector {
    desc: prometheus::core::Desc,
    last: Arc<Mutex<HashMap<String, Instant>>>,
}

const AGE_NAME: &str = "papertrader_source_last_message_age_seconds";
const AGE_HELP: &str = "Seconds since the source's last frame (data, heartbeat or 304), by source";

impl prometheus::core::Collector for AgeCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let g =
            prometheus::GaugeVec::new(Opts::new(AGE_NAME, AGE_HELP), &["source"]).expect("metric");
        for (s, t) in self.last.lock().expect("metrics lock").iter() {
            g.with_label_values(&[s.as_str()])
                .set(t.elapsed().as_secs_f64());
        }
        prometheus::core::Collector::collect(&g)
    }
}

impl SourceMetrics {
    /// The metrics, registered in `registry` (paper mode's, or ingest's own).
    pub fn new(registry: &Registry) -> anyhow::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> anyhow::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let last = Arc::new(Mutex::new(HashMap::new()));
        let age = AgeCollector {
            desc: prometheus::core::Desc::new(
                AGE_NAME.into(),
                AGE_HELP.into(),
                vec!["source".into()],
                HashMap::new(),
            )?,
            last: last.clone(),
        };
        registry.register(Box::new(age))?;
        Ok(SourceMetrics {
            messages: counter(
                "papertrader_source_messages_total",
                "Messages published by the connectors, by source and kind (trade, book_snapshot, book_update, quote, bar, news, dead_letter)",
                &["source", "kind"],
            )?,
            reconnects: counter(
                "papertrader_source_reconnects_total",
                "Connections lost or refused and tried again, by source",
                &["source"],
            )?,
            gaps: counter(
                "papertrader_source_gaps_total",
                "Depth sequence gaps (each followed by a resync from a snapshot), by source and symbol",
                &["source", "symbol"],
            )?,
            dead_letters: counter(
                "papertrader_source_dead_letters_total",
                "Frames a connector could not use, by source and reason",
                &["source", "reason"],
            )?,
            duplicates: counter(
                "papertrader_source_duplicates_total",
                "Trades, depth updates and news items dropped as already published, by source",
                &["source"],
            )?,
            last,
        })
    }

    /// A frame (or a heartbeat, or a 304) came from `source` now.
    pub fn alive(&self, source: &str) {
        self.last
            .lock()
            .expect("metrics lock")
            .insert(source.to_string(), Instant::now());
    }
}

/// What a connector hands its records to, with its name and metrics.
#[derive(Clone)]
pub struct Sink {
    pub source: String,
    tx: mpsc::Sender<Record>,
    pub metrics: Arc<SourceMetrics>,
    seq: Arc<std::sync::atomic::AtomicU64>,
}

impl Sink {
    pub fn new(source: &str, tx: mpsc::Sender<Record>, metrics: Arc<SourceMetrics>) -> Self {
        Sink {
            source: source.to_string(),
            tx,
            metrics,
            seq: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Hand a record over, waiting while the publisher is behind. Err: the
    /// publisher is gone (shutting down).
    pub async fn send(&self, r: Record) -> Result<(), ()> {
        let kind = r.kind;
        self.tx.send(r).await.map_err(|_| ())?;
        self.metrics
            .messages
            .with_label_values(&[self.source.as_str(), kind])
            .inc();
        Ok(())
    }

    /// A dead letter for `raw`, counted by reason.
    pub fn dead(&self, topic: &str, reason: &str, detail: &str, raw: &[u8]) -> Record {
        tracing::warn!(source = %self.source, reason, detail, bytes = raw.len(), "dead letter");
        self.metrics
            .dead_letters
            .with_label_values(&[self.source.as_str(), reason])
            .inc();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        dead_letter(&self.source, topic, reason, detail, raw, now_ms(), seq)
    }

    pub fn duplicate(&self) {
        self.metrics
            .duplicates
            .with_label_values(&[self.source.as_str()])
            .inc();
    }

    /// A frame's JSON, or its dead letter (`malformed_json`) in `out`.
    pub fn json(&self, raw: &[u8], out: &mut Vec<ws::Action>) -> Option<serde_json::Value> {
        match serde_json::from_slice(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                out.push(ws::Action::Emit(self.dead(
                    "",
                    "malformed_json",
                    &e.to_string(),
                    raw,
                )));
                None
            }
        }
    }

    /// A venue's trade `id` of `venue_symbol`, admitted: its published
    /// symbol, or `None` when the symbol was not subscribed (a dead letter in
    /// `out`) or the id is not past the last one seen (a duplicate after a
    /// reconnect, counted).
    pub fn admit_trade<'a>(
        &self,
        symbols: &'a HashMap<String, String>,
        last_trade: &mut HashMap<String, u64>,
        (venue_symbol, id): (String, u64),
        raw: &[u8],
        out: &mut Vec<ws::Action>,
    ) -> Option<&'a String> {
        let Some(symbol) = symbols.get(&venue_symbol) else {
            let detail = format!("{venue_symbol} was not subscribed");
            let d = self.dead("live_prices", "unknown_symbol", &detail, raw);
            out.push(ws::Action::Emit(d));
            return None;
        };
        let last = last_trade.entry(venue_symbol).or_insert(0);
        if *last != 0 && id <= *last {
            self.duplicate();
            return None;
        }
        *last = id;
        Some(symbol)
    }
}

/// Check what the sources need from the environment (Alpaca's key and
/// secret), naming the source and the variable; the values.
fn credentials(s: &SourceConfig) -> anyhow::Result<Option<(String, String)>> {
    if !matches!(s.kind, SourceKind::Alpaca | SourceKind::AlpacaNews) {
        return Ok(None);
    }
    let key_var = s.key_env.as_deref().unwrap_or("APCA_API_KEY_ID");
    let secret_var = s.secret_env.as_deref().unwrap_or("APCA_API_SECRET_KEY");
    let get = |var: &str, what: &str| {
        std::env::var(var).map_err(|_| {
            anyhow::anyhow!(
                "source {:?}: the environment variable {var} (the Alpaca {what}) is not set; fix: export {var}=... or name another variable with key_env / secret_env",
                s.name
            )
        })
    };
    Ok(Some((get(key_var, "key id")?, get(secret_var, "secret")?)))
}

/// The connectors of `sources` and their publisher, running until the
/// returned handle is stopped or dropped.
pub struct Running {
    tasks: tokio::task::JoinSet<()>,
    publisher: Option<tokio::task::JoinHandle<u64>>,
}

impl Running {
    /// Stop the connectors, then let the publisher deliver what they handed
    /// over; the number of records published.
    pub async fn stop(mut self) -> u64 {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        match self.publisher.take() {
            Some(p) => p.await.unwrap_or(0),
            None => 0,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Start every source of `cfg` publishing to `bootstrap`.
///
/// # Errors
/// A missing credential, or a Kafka client that cannot be made.
pub fn spawn(
    cfg: &Loaded,
    bootstrap: &str,
    metrics: Arc<SourceMetrics>,
) -> anyhow::Result<Running> {
    // Both rustls back ends are linked (tansu's and ours); wss needs one chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let creds: Vec<_> = cfg
        .app
        .sources
        .iter()
        .map(credentials)
        .collect::<anyhow::Result<_>>()?;
    let base = crate::kafka::client_config(&cfg.app.kafka, bootstrap);
    let producer = crate::kafka::producer(&base)?;
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let publisher = tokio::spawn(publish(producer, cfg.app.topics.clone(), rx));
    let mut tasks = tokio::task::JoinSet::new();
    for (s, cred) in cfg.app.sources.iter().zip(creds) {
        let sink = Sink::new(&s.name, tx.clone(), metrics.clone());
        let s = s.clone();
        tracing::info!(source = %s.name, kind = %s.kind, "starting source");
        match s.kind {
            SourceKind::Binance => {
                tasks.spawn(ws::run(binance::Binance::new(&s), s, sink));
            }
            SourceKind::Coinbase => {
                tasks.spawn(ws::run(coinbase::Coinbase::new(&s), s, sink));
            }
            SourceKind::Alpaca | SourceKind::AlpacaNews => {
                let (key, secret) = cred.context("alpaca credentials")?;
                tasks.spawn(ws::run(alpaca::Alpaca::new(&s, key, secret), s, sink));
            }
            SourceKind::Rss => {
                tasks.spawn(rss::run(s, sink));
            }
        }
    }
    Ok(Running {
        tasks,
        publisher: Some(publisher),
    })
}

/// `papertrader ingest`: the sources until `shutdown`.
pub async fn run(
    cfg: &Loaded,
    bootstrap: &str,
    metrics: Arc<SourceMetrics>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<u64> {
    let running = spawn(cfg, bootstrap, metrics)?;
    shutdown.await;
    Ok(running.stop().await)
}

/// The publisher: every record to its topic, keyed, with its event time as
/// the Kafka timestamp; up to [`CHANNEL_CAPACITY`] sends in flight, so the
/// channel (and behind it the connectors) waits when the broker is slow. A
/// record the broker refuses is logged and counted; librdkafka retries the
/// rest for `message.timeout.ms`.
async fn publish(
    producer: FutureProducer,
    topics: TopicsConfig,
    mut rx: mpsc::Receiver<Record>,
) -> u64 {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut inflight = FuturesUnordered::new();
    let mut published = 0u64;
    loop {
        tokio::select! {
            r = rx.recv(), if inflight.len() < CHANNEL_CAPACITY => {
                let Some(r) = r else { break };
                let fut = send_one(&producer, &topics, r);
                inflight.push(fut);
            }
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                published += u64::from(done);
            }
        }
    }
    while let Some(done) = inflight.next().await {
        published += u64::from(done);
    }
    published
}

/// Enqueue one record (waiting while librdkafka's queue is full) and its ack.
fn send_one(
    producer: &FutureProducer,
    topics: &TopicsConfig,
    r: Record,
) -> impl Future<Output = bool> + use<> {
    let producer = producer.clone();
    let topic = r.topic.name(topics).to_string();
    async move {
        loop {
            let rec = FutureRecord::to(&topic)
                .key(&r.key)
                .payload(&r.payload)
                .timestamp(r.ts_ms);
            match producer.send_result(rec) {
                Ok(delivery) => {
                    return match delivery.await {
                        Ok(Ok(_)) => true,
                        Ok(Err((e, _))) => {
                            tracing::error!(%topic, key = %r.key, error = %e, "the broker refused a record");
                            false
                        }
                        Err(_) => false,
                    };
                }
                Err((e, _)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        tracing::error!(%topic, error = %e, "cannot enqueue a record");
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800));
        assert!(d[5] >= Duration::from_millis(500) && d[5] <= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn dedup_forgets_the_oldest() {
        let mut d = Dedup::new(2);
        assert!(d.first("a") && d.first("b") && !d.first("a"));
        assert!(d.first("c"));
        assert!(d.first("a"), "a was forgotten when c came");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_deep_snapshot_is_cut_to_fit_the_wire() {
        use std::str::FromStr;
        let level = |i: i64| {
            let p = Decimal::from_str(&format!("97000.{:08}", 12_345_601 + i)).unwrap();
            (p, Decimal::from_str("123.45678901").unwrap())
        };
        let bids: Vec<_> = (0..1000).map(|i| level(-i - 1000)).collect();
        let asks: Vec<_> = (0..1000).map(level).collect();
        let r = fitting_snapshot("BTCUSDT", 0, &bids, &asks);
        assert!(r.payload.len() <= crate::wire::MAX_MESSAGE_BYTES);
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let n = v["bids"].as_array().unwrap().len();
        assert!(n > 500 && n < 1000, "{n}");
        assert_eq!(v["bids"][0], json!(["97000.12344601", "123.45678901"]));
        let small = fitting_snapshot("X", 0, &bids[..3], &asks[..3]);
        let v: serde_json::Value = serde_json::from_slice(&small.payload).unwrap();
        assert_eq!(v["asks"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn decimals_stay_exact() {
        let v: serde_json::Value = serde_json::from_str(r#"[126.55, "0.00000001", 1e-3]"#).unwrap();
        assert_eq!(decimal(&v[0]).unwrap().to_string(), "126.55");
        assert_eq!(decimal(&v[1]).unwrap().to_string(), "0.00000001");
        assert_eq!(decimal(&v[2]).unwrap().to_string(), "0.001");
    }
}
