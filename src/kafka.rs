//! Kafka edges: client configuration, topic creation and the output publisher.
//!
//! The publisher sends every output of a batch and waits until the broker has
//! acknowledged each one; only then does the caller checkpoint and commit the
//! input offsets that caused them. Each output carries its deterministic id in
//! the `papertrader-id` header (and in its JSON); the publisher remembers how far
//! each output partition has been written, where a restarted run or a retry
//! starts reading back what is already there ([`crate::state`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{KafkaConfig, TopicsConfig};
use crate::domain::{Output, OutputKind};

/// The cluster id the brokers report (empty when they report none).
pub async fn cluster_id(base: &ClientConfig) -> String {
    let base = base.clone();
    tokio::task::spawn_blocking(move || {
        let probe: rdkafka::producer::BaseProducer = base.create().ok()?;
        probe.client().fetch_cluster_id(Duration::from_secs(10))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Whether the brokers of `base` need partitions read from their start
/// instead of from a committed offset (`kafka.seek`, docs/recovery.md).
pub async fn needs_rescan(kafka: &KafkaConfig, base: &ClientConfig) -> bool {
    kafka.rescan_on(&cluster_id(base).await)
}

/// Base client configuration: bootstrap servers plus the user's extra properties.
pub fn client_config(kafka: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// Create the topics that do not exist yet.
pub async fn ensure_topics(
    base: &ClientConfig,
    names: &[&str],
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        base.create().context("creating the Kafka admin client")?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .context("creating topics")?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Errors that retrying cannot mend: the broker refuses the message itself.
pub fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            MessageSizeTooLarge
                | InvalidMessageSize
                | InvalidMessage
                | MessageBatchTooLarge
                | InvalidRecord
                | TopicAuthorizationFailed
                | ClusterAuthorizationFailed
                | InvalidTopic
        )
    )
}

/// Check that the brokers answer, with an error that names them and the key.
pub async fn check_reachable(base: &ClientConfig, bootstrap: &str) -> anyhow::Result<()> {
    check_reachable_from(
        base,
        bootstrap,
        "kafka.brokers",
        "start the cluster, correct kafka.brokers (or PAPERTRADER__KAFKA__BROKERS), or use \"embedded\"",
    )
    .await
}

/// [`check_reachable`] for `bootstrap`, named as the `--brokers` option when it
/// is not `kafka.brokers` (a command line that gave `--brokers`).
///
/// # Errors
/// As [`check_reachable`].
pub async fn check_reachable_named(
    base: &ClientConfig,
    bootstrap: &str,
    kafka: &KafkaConfig,
) -> anyhow::Result<()> {
    if bootstrap == kafka.brokers {
        return check_reachable(base, bootstrap).await;
    }
    check_reachable_from(
        base,
        bootstrap,
        "--brokers",
        "start the cluster, or correct --brokers (no cluster? `papertrader broker --listen 127.0.0.1:9092`)",
    )
    .await
}

/// [`check_reachable`] for brokers named by `source` (a key or an option), with
/// `fix` as the advice.
pub async fn check_reachable_from(
    base: &ClientConfig,
    bootstrap: &str,
    source: &'static str,
    fix: &'static str,
) -> anyhow::Result<()> {
    let base = base.clone();
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        let probe: rdkafka::producer::BaseProducer = base
            .create()
            .context("creating a Kafka client (check [kafka.properties])")?;
        probe
            .client()
            .fetch_metadata(None, Duration::from_secs(15))
            .map(|_| ())
            .map_err(|e| {
                anyhow::anyhow!("cannot reach Kafka at {bootstrap:?} ({source}): {e}\n  fix: {fix}")
            })
    })
    .await?
}

/// Set `key` unless the user's `kafka.properties` already did.
pub fn set_default(c: &mut ClientConfig, key: &str, value: &str) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

/// A producer configured for safe delivery.
pub fn producer(base: &ClientConfig) -> anyhow::Result<FutureProducer> {
    let mut c = base.clone();
    set_default(&mut c, "linger.ms", "5");
    c.set("acks", "all")
        .set("message.timeout.ms", "60000")
        .set("compression.type", "none");
    c.create().context("creating the Kafka producer")
}

/// The producer of engine outputs: librdkafka does not retry by itself, so a
/// send whose acknowledgement was lost is never silently written twice; the
/// caller reads back what reached the topic and resends only the rest.
///
/// `linger.ms` is 1: a batch's outputs are sent together anyway, and each
/// millisecond of linger is a millisecond from a tick to its order.
pub fn output_producer(base: &ClientConfig) -> anyhow::Result<FutureProducer> {
    let mut c = base.clone();
    set_default(&mut c, "linger.ms", "1");
    c.set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("message.send.max.retries", "0")
        .set("enable.idempotence", "false")
        .set("compression.type", "none");
    c.create().context("creating the Kafka producer")
}

/// Publishes engine outputs to their topics and waits for the broker's acks.
pub struct Publisher {
    producer: FutureProducer,
    topics: HashMap<OutputKind, String>,
    /// Per output topic and partition, one past the highest acknowledged offset.
    written: Mutex<BTreeMap<String, BTreeMap<i32, i64>>>,
}

impl Publisher {
    pub fn new(producer: FutureProducer, topics: &TopicsConfig) -> Self {
        let topics = HashMap::from([
            (OutputKind::Signals, topics.signals.clone()),
            (OutputKind::Orders, topics.orders.clone()),
            (OutputKind::Fills, topics.fills.clone()),
            (OutputKind::Pnl, topics.pnl.clone()),
            (OutputKind::DeadLetters, topics.dead_letters.clone()),
            (OutputKind::Alerts, topics.alerts.clone()),
            (OutputKind::Indicators, topics.indicators.clone()),
        ]);
        Publisher {
            producer,
            topics,
            written: Mutex::new(BTreeMap::new()),
        }
    }

    /// The output topics, in a fixed order.
    pub fn topic_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.topics.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    }

    /// Take a checkpoint's written positions into account (the higher of each wins).
    pub fn merge_written(&self, w: &BTreeMap<String, BTreeMap<i32, i64>>) {
        let mut mine = self.written.lock().expect("publisher lock");
        for (t, parts) in w {
            for (p, o) in parts {
                let e = mine.entry(t.clone()).or_default().entry(*p).or_insert(0);
                *e = (*e).max(*o);
            }
        }
    }

    /// Per output topic and partition, one past the highest acknowledged offset.
    pub fn written(&self) -> BTreeMap<String, BTreeMap<i32, i64>> {
        self.written.lock().expect("publisher lock").clone()
    }

    /// Send the outputs at `indexes` and wait for every acknowledgement. Returns
    /// the indexes that failed, with their errors (empty when all were acked).
    /// Messages of one key keep their order (one producer, keyed partitioning,
    /// in-order sends).
    pub async fn publish(&self, outputs: &[Output], indexes: &[usize]) -> Vec<(usize, KafkaError)> {
        let sends = indexes.iter().map(|&i| {
            let o = &outputs[i];
            let payload = o.to_json();
            let topic = &self.topics[&o.kind()];
            async move {
                let headers = OwnedHeaders::new().insert(Header {
                    key: "papertrader-id",
                    value: Some(o.id()),
                });
                let mut record = FutureRecord::to(topic).payload(&payload).headers(headers);
                if let Some(k) = o.key() {
                    record = record.key(k);
                }
                let d = self
                    .producer
                    .send(record, Duration::from_secs(60))
                    .await
                    .map_err(|(e, _)| (i, e))?;
                let mut w = self.written.lock().expect("publisher lock");
                let end = w
                    .entry(topic.clone())
                    .or_default()
                    .entry(d.partition)
                    .or_insert(0);
                *end = (*end).max(d.offset + 1);
                Ok(())
            }
        });
        join_all(sends)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect()
    }

    pub fn flush(&self) {
        let _ = self.producer.flush(Duration::from_secs(30));
    }
}

/// `(low, high)` watermarks of a partition from librdkafka's cache, as last
/// reported by a fetch response (no request to the broker); `None` before the
/// first. A fetch that returns no records carries them too, which is how a
/// stalled partition is told from one with nothing to read: tansu's
/// ListOffsets answers the last record batch's base offset + 1, too low when
/// that batch holds several records.
pub fn cached_watermarks<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let name = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `client` lives; the out
    // pointers refer to locals; librdkafka only reads its own cache.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            client.native_ptr(),
            name.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low.max(0), high))
}

/// How many records the `partitions` of `topic` hold together (high minus low
/// watermark, summed), from the high watermarks that fetch answers carry:
/// tansu's ListOffsets (latest) undercounts (docs/broker.md, item 1). Reads each
/// partition from its start until a fetch answer (a record or the partition's
/// end) has come in, at most `wait`; `None` if one has not by then.
pub fn held_records(
    base: &ClientConfig,
    topic: &str,
    partitions: &[i32],
    wait: Duration,
) -> anyhow::Result<Option<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = base
        .clone()
        .set("group.id", "papertrader-probe")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100")
        .create()
        .context("creating a Kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    let mut answered = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + wait;
    while answered.len() < partitions.len() && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                answered.insert(m.partition());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                answered.insert(p);
            }
            _ => {}
        }
    }
    if answered.len() < partitions.len() {
        return Ok(None);
    }
    let mut held = 0;
    for p in partitions {
        let Some((low, high)) = cached_watermarks(consumer.client(), topic, *p) else {
            return Ok(None);
        };
        held += (high - low).max(0);
    }
    Ok(Some(held))
}

/// Apply a consumer group's rebalance, eager or cooperative. With `rescan`,
/// every assigned partition is read from its start (tansu cannot fetch from
/// inside a record batch, so resuming at a committed offset could skip
/// records: docs/recovery.md, "Resuming a partition"), and the caller skips
/// what the group had committed. `on_assign` sees the assigned partitions
/// first.
pub fn apply_rebalance<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    err: rdkafka::bindings::rd_kafka_resp_err_t,
    tpl: &mut rdkafka::TopicPartitionList,
    rescan: bool,
    on_assign: impl FnOnce(&[(String, i32)]),
) {
    use rdkafka::bindings::rd_kafka_resp_err_t as E;
    use rdkafka::consumer::{Consumer, RebalanceProtocol};
    let cooperative = matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    );
    let result = if err == E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        on_assign(&parts);
        if rescan {
            for (t, p) in &parts {
                let _ = tpl.set_partition_offset(t, *p, rdkafka::Offset::Beginning);
            }
        }
        if cooperative {
            consumer.incremental_assign(tpl)
        } else {
            consumer.assign(tpl)
        }
    } else if err == E::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
        if cooperative {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        }
    } else {
        tracing::error!(?err, "rebalance error");
        consumer.unassign()
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "applying the assignment failed");
    }
}
