//! Crash safety: checkpoints of the engine's state and the read-back of what
//! was already published.
//!
//! A [`Checkpoint`] holds the engine's whole event-driven state (accounts,
//! positions, open orders and orders in flight, strategy and indicator state,
//! bar builders, counts), the input offsets it corresponds to, and how far each
//! output partition had been written when it was taken. Paper mode writes one
//! every `state.every_events` messages or `state.every` of wall time and at
//! shutdown, *after* the outputs of the messages it covers are acknowledged, and
//! commits the consumer group's offsets right after it.
//!
//! On restart, paper mode loads the checkpoint, seeks each input partition to
//! its offset, and scans the output partitions from the checkpoint's positions
//! to their end ([`published_ids`]): every output carries its deterministic id
//! in the `papertrader-id` header, and an output whose id is already there is
//! not published again. The same scan runs after a failed publish, before the
//! failed outputs are retried, so a send whose acknowledgement was lost is not
//! doubled either.
//!
//! Encoding: a magic line, the CBOR of the checkpoint (exact `f64`, NaN
//! included; decimals as strings), and its SHA-256, so a torn or foreign file is
//! refused rather than half-read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::EngineState;

/// The checkpoint format this build writes and reads.
pub const FORMAT: u32 = 1;
const MAGIC: &[u8] = b"papertrader checkpoint\n";

/// Offsets per topic and partition.
pub type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// Everything a restart needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    /// The consumer group the state belongs to.
    pub group: String,
    /// The Kafka cluster id of the brokers the offsets refer to.
    pub cluster: String,
    /// Per input topic and partition, the next offset to read.
    pub inputs: Offsets,
    /// Per output topic and partition, the offset just past the last output
    /// acknowledged before the checkpoint: where the read-back starts.
    pub outputs: Offsets,
    pub engine: EngineState,
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        ciborium::into_writer(self, &mut body).expect("a checkpoint serializes");
        let mut out = Vec::with_capacity(MAGIC.len() + body.len() + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&body);
        out.extend_from_slice(&Sha256::digest(&body));
        out
    }

    /// # Errors
    /// Not a checkpoint, torn, or of another format.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or("not a papertrader checkpoint (no magic line)")?;
        if rest.len() < 32 {
            return Err("truncated checkpoint".into());
        }
        let (body, sum) = rest.split_at(rest.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err("checksum mismatch (torn or altered checkpoint)".into());
        }
        let c: Checkpoint = ciborium::from_reader(body).map_err(|e| e.to_string())?;
        if c.format != FORMAT {
            return Err(format!(
                "checkpoint format {} (this build reads {FORMAT})",
                c.format
            ));
        }
        Ok(c)
    }
}

/// Where checkpoints live.
#[derive(Clone)]
pub enum Store {
    /// A local file, replaced atomically (write, fsync, rename, fsync the directory).
    File(PathBuf),
    /// A compacted topic, keyed by consumer group; the last record of the key wins.
    Kafka {
        base: ClientConfig,
        producer: FutureProducer,
        topic: String,
        key: String,
    },
}

impl Store {
    /// The store of shard `p` (`engine.shards = "partition"`): the file
    /// `NAME.pP.EXT` beside the configured one, or the key `GROUP/pP`.
    pub fn shard(&self, p: i32) -> Store {
        match self {
            Store::File(path) => {
                let stem = path
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                let name = match path.extension() {
                    Some(ext) => format!("{stem}.p{p}.{}", ext.to_string_lossy()),
                    None => format!("{stem}.p{p}"),
                };
                Store::File(path.with_file_name(name))
            }
            Store::Kafka {
                base,
                producer,
                topic,
                key,
            } => Store::Kafka {
                base: base.clone(),
                producer: producer.clone(),
                topic: topic.clone(),
                key: format!("{key}/p{p}"),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Store::File(p) => format!("file {}", p.display()),
            Store::Kafka { topic, key, .. } => format!("topic {topic} (key {key})"),
        }
    }

    /// The last checkpoint, if any.
    ///
    /// # Errors
    /// The store cannot be read, or holds something that is not a usable checkpoint.
    pub async fn load(&self) -> anyhow::Result<Option<Checkpoint>> {
        let bytes = match self {
            Store::File(p) => match std::fs::read(p) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            },
            Store::Kafka {
                base, topic, key, ..
            } => {
                let (base, topic, key) = (base.clone(), topic.clone(), key.clone());
                tokio::task::spawn_blocking(move || last_record(&base, &topic, &key)).await??
            }
        };
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        Checkpoint::decode(&bytes).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "the checkpoint in {} is unusable: {e}\n  fix: move it away to start from scratch (state.store, state.path)",
                self.describe()
            )
        })
    }

    /// Write `c` so that a crash leaves either the old or the new checkpoint.
    ///
    /// # Errors
    /// The file cannot be written or the broker does not acknowledge.
    pub async fn save(&self, c: &Checkpoint) -> anyhow::Result<()> {
        let bytes = c.encode();
        match self {
            Store::File(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || write_atomically(&p, &bytes)).await?
            }
            Store::Kafka {
                producer,
                topic,
                key,
                ..
            } => {
                producer
                    .send(
                        FutureRecord::to(topic).key(key).payload(&bytes),
                        Duration::from_secs(60),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("writing the checkpoint to {topic}: {e}"))?;
                Ok(())
            }
        }
    }
}

/// Replace `path` with `bytes` atomically.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// A consumer context that keeps partition-EOF notices out of the error log.
pub struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
            || reason.contains("PartitionEOF")
        {
            tracing::debug!(%reason, "partition EOF");
        } else {
            tracing::warn!(error = %error, %reason, "librdkafka error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// Read every partition of `topic` from `from` (its beginning where absent)
/// to its end, calling `f` on each message. With `rescan`, each partition is
/// read from its start and messages before `from` are skipped (for brokers
/// that cannot fetch from inside a record batch). Without it, the first record
/// of each partition is checked against `from`: a broker that answered from a
/// later record batch (tansu, asked for an offset inside one) has that
/// partition read again from its start, skipping what lies before `from`.
/// Blocking.
///
/// # Errors
/// The broker does not answer within `timeout`.
pub fn scan_topic(
    base: &ClientConfig,
    topic: &str,
    from: Option<&BTreeMap<i32, i64>>,
    rescan: bool,
    timeout: Duration,
    mut f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> anyhow::Result<()> {
    let mut cc = base.clone();
    cc.set("group.id", "papertrader-scan")
        .set("fetch.wait.max.ms", "20")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer<QuietEof> = cc
        .create_with_context(QuietEof)
        .context("creating a Kafka consumer")?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(15))
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let Some(tm) = md.topics().first() else {
        return Ok(());
    };
    if tm.error().is_some() || tm.partitions().is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    let mut open: HashSet<i32> = HashSet::new();
    for p in tm.partitions() {
        let start = match from.and_then(|m| m.get(&p.id())) {
            Some(o) if !rescan => Offset::Offset(*o),
            _ => Offset::Beginning,
        };
        tpl.add_partition_offset(topic, p.id(), start)?;
        open.insert(p.id());
    }
    consumer.assign(&tpl)?;
    // Partitions whose first record is still to be checked against `from`, and
    // those re-read from their start until they pass the first record delivered.
    let mut check: HashMap<i32, i64> = match from {
        Some(f) if !rescan => f.clone().into_iter().collect(),
        _ => HashMap::new(),
    };
    let mut reread: HashMap<i32, i64> = HashMap::new();
    let started = Instant::now();
    let deadline = started + timeout;
    while !open.is_empty() || !reread.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} reading {topic} to its end"
        );
        // A partition asked for an offset inside its last record batch gets
        // nothing from tansu, and no end-of-partition either.
        if !check.is_empty() && started.elapsed() >= STALL_GRACE {
            for p in stalled(&consumer, topic, &mut check) {
                tracing::info!(%topic, partition = p, "read-back delivered nothing although records lie past its offset; reading the partition again from its start");
                reread.insert(p, from.and_then(|f| f.get(&p)).copied().unwrap_or(0));
                consumer
                    .seek(topic, p, Offset::Beginning, Duration::from_secs(10))
                    .with_context(|| format!("re-reading {topic}/{p} from its start"))?;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                check.remove(&p);
                if !reread.contains_key(&p) {
                    open.remove(&p);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, %topic, "reading back; retrying"),
            Some(Ok(m)) => {
                let p = m.partition();
                if let Some(asked) = check.remove(&p) {
                    if m.offset() > asked {
                        tracing::info!(%topic, partition = p, asked, delivered = m.offset(),
                            "read-back began past its offset; reading the partition again from its start");
                        reread.insert(p, m.offset());
                        consumer
                            .seek(topic, p, Offset::Beginning, Duration::from_secs(10))
                            .with_context(|| format!("re-reading {topic}/{p} from its start"))?;
                        continue;
                    }
                }
                if reread.get(&p).is_some_and(|first| m.offset() >= *first) {
                    reread.remove(&p);
                }
                open.insert(p);
                let skip = from
                    .and_then(|f| f.get(&m.partition()))
                    .is_some_and(|o| m.offset() < *o);
                if !skip {
                    f(&m);
                }
            }
        }
    }
    Ok(())
}

/// How long a read-back waits for the first record of a partition positioned
/// at an offset before it checks for a broker that stalls it.
const STALL_GRACE: Duration = Duration::from_secs(2);

/// The partitions of `check` (not yet delivered a record) whose high watermark,
/// as the last fetch answer reported it, lies past the offset asked for: the
/// broker stalls them. Taken out of `check`.
fn stalled<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    check: &mut HashMap<i32, i64>,
) -> Vec<i32> {
    let stalled: Vec<i32> = check
        .iter()
        .filter(|(p, asked)| {
            crate::kafka::cached_watermarks(consumer.client(), topic, **p)
                .is_some_and(|(_, high)| high > **asked)
        })
        .map(|(p, _)| *p)
        .collect();
    for p in &stalled {
        check.remove(p);
    }
    stalled
}

/// The `papertrader-id` of every message on `topics` from `from` to the end.
/// Blocking.
///
/// # Errors
/// See [`scan_topic`].
pub fn published_ids(
    base: &ClientConfig,
    topics: &[String],
    from: &Offsets,
    rescan: bool,
    timeout: Duration,
) -> anyhow::Result<HashSet<String>> {
    let mut ids = HashSet::new();
    for t in topics {
        scan_topic(base, t, from.get(t), rescan, timeout, |m| {
            if let Some(h) = m.headers() {
                for h in h.iter() {
                    if h.key == "papertrader-id" {
                        if let Some(v) = h.value.and_then(|v| std::str::from_utf8(v).ok()) {
                            ids.insert(v.to_string());
                        }
                    }
                }
            }
        })?;
    }
    Ok(ids)
}

/// The value of the last record keyed `key` on `topic`.
fn last_record(base: &ClientConfig, topic: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let mut last: Option<(i64, Vec<u8>)> = None;
    scan_topic(base, topic, None, true, Duration::from_secs(120), |m| {
        if m.key() == Some(key.as_bytes()) {
            if let Some(p) = m.payload() {
                // A key lives in one partition: offsets order its records.
                if last.as_ref().is_none_or(|(o, _)| m.offset() > *o) {
                    last = Some((m.offset(), p.to_vec()));
                }
            }
        }
    })?;
    Ok(last.map(|(_, v)| v))
}
