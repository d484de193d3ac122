//! Paper mode: the engine fed by a Kafka consumer group, on the wall clock.
//!
//! The loop takes a batch of input messages, runs each through the engine,
//! publishes the outputs and waits for their acknowledgements, and only then
//! commits the batch's offsets. A crash at any point therefore replays at most the
//! uncommitted batch, whose outputs carry the same deterministic ids.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Loaded;
use crate::domain::Origin;
use crate::engine::Engine;
use crate::kafka::{self, Publisher};
use crate::summary::Summary;
use crate::wire::InputKind;

/// When paper mode stops by itself.
#[derive(Debug, Clone, Default)]
pub struct StopWhen {
    /// Stop after this long without an input message (counted from the first one;
    /// before it, at most `max(idle, 30 s)` is waited).
    pub idle: Option<Duration>,
    /// Stop after this many input messages (valid or dead-lettered).
    pub max_events: Option<u64>,
}

/// Run paper mode against `bootstrap` until `stop` or `shutdown`, and return the summary.
pub async fn run(
    cfg: &Loaded,
    bootstrap: &str,
    stop: StopWhen,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let app = &cfg.app;
    let base = kafka::client_config(&app.kafka, bootstrap);
    kafka::check_reachable(&base, bootstrap).await?;
    if app.kafka.create_topics {
        let mut names: Vec<&str> = app.topics.inputs().iter().map(|(t, _)| *t).collect();
        names.extend(app.topics.outputs());
        kafka::ensure_topics(&base, &names, app.kafka.partitions).await?;
    }
    let publisher = Publisher::new(kafka::producer(&base)?, &app.topics);

    let mut cc = base.clone();
    cc.set("group.id", &app.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    let consumer: StreamConsumer = cc.create().context("creating the Kafka consumer")?;
    let kinds: HashMap<String, InputKind> = app
        .topics
        .inputs()
        .iter()
        .map(|(t, k)| (t.to_string(), *k))
        .collect();
    let topics: Vec<&str> = kinds.keys().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("subscribing to the input topics")?;
    tracing::info!(?topics, group = %app.kafka.group_id, "paper mode consuming");

    let mut engine = Engine::new(cfg);
    let mut out = Vec::new();
    let mut seen: u64 = 0;
    let mut started = false;
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let first_wait = stop.idle.map(|i| i.max(Duration::from_secs(30)));
    tokio::pin!(shutdown);

    'run: loop {
        if stop.max_events.is_some_and(|m| seen >= m) {
            break;
        }
        let wait = if started { stop.idle } else { first_wait };
        let first = tokio::select! {
            _ = &mut shutdown => break 'run,
            m = recv_within(&consumer, wait) => m,
        };
        let Some(first) = first else {
            tracing::info!("input idle, stopping");
            break;
        };
        started = true;
        let mut batch = vec![first];
        let room = app
            .engine
            .max_batch
            .min(stop.max_events.map_or(usize::MAX, |m| (m - seen) as usize));
        while batch.len() < room {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                None => break,
            }
        }

        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in &batch {
            let origin = Origin {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
            };
            let kind = kinds[m.topic()];
            engine.on_message(kind, &origin, m.key(), m.payload().unwrap_or(&[]), &mut out);
            offsets.insert((origin.topic, origin.partition), origin.offset + 1);
        }
        seen += batch.len() as u64;

        // Outputs first, acknowledged by the broker; then the offsets.
        let mut pending: Vec<usize> = (0..out.len()).collect();
        let mut attempt = 0u32;
        loop {
            let failed = publisher.publish(&out, &pending).await;
            if failed.is_empty() {
                break;
            }
            if let Some((_, e)) = failed.iter().find(|(_, e)| kafka::is_permanent(e)) {
                anyhow::bail!(
                    "the broker refused an output ({e}); stopping without committing the offsets of this batch"
                );
            }
            attempt += 1;
            let backoff = Duration::from_millis(200 * 2u64.pow(attempt.min(6)));
            tracing::warn!(error = %failed[0].1, unpublished = failed.len(), attempt, ?backoff,
                "publishing outputs failed; retrying the failed ones");
            pending = failed.into_iter().map(|(i, _)| i).collect();
            tokio::select! {
                _ = &mut shutdown => {
                    tracing::warn!(unpublished = pending.len(),
                        "stopping with unpublished outputs; this batch's offsets stay uncommitted and it will be replayed");
                    break 'run;
                }
                _ = tokio::time::sleep(backoff) => {}
            }
        }
        out.clear();
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &offsets {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, "committing offsets failed; they will be committed with the next batch");
        }
        committed.extend(offsets);
    }

    publisher.flush();
    if !committed.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &committed {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(error = %e, "final offset commit failed");
        }
    }
    let summary = engine.summary();
    tracing::info!(
        processed = summary.inputs.total_processed(),
        dead_letters = summary.inputs.total_dead(),
        fills = summary.total_fills(),
        "paper mode stopped"
    );
    Ok(summary)
}

/// The next message, or `None` after `wait` without one.
async fn recv_within(
    consumer: &StreamConsumer,
    wait: Option<Duration>,
) -> Option<rdkafka::message::OwnedMessage> {
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, consumer.recv()).await {
                Ok(r) => r,
                Err(_) => return None,
            },
            None => consumer.recv().await,
        };
        match next {
            Ok(m) => return Some(m.detach()),
            Err(e) => {
                tracing::warn!(error = %e, "consumer error; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
