//! `papertrader sentiment`: the news-sentiment stage. Reads raw headlines
//! from `topics.news` ([`NewsItem`]), scores and tags each with the core's
//! [`Stage`] (`[sentiment]`: VADER or Loughran-McDonald, cashtags, tickers,
//! names), and publishes one `news_sentiment` message per (item, symbol),
//! keyed by symbol, with the item's time as `ts` and as the Kafka timestamp.
//! A message that is not a news item goes to `topics.dead_letters` with its
//! reason.
//!
//! The loop: gather a batch, publish its outputs and wait for every
//! acknowledgement, then commit the batch's offsets. A crash before the commit
//! replays the batch, and since the stage is deterministic (the same item
//! gives the same bytes, ids and keys) a replay republishes identical
//! messages: at least once, never different. docs/sentiment.md.
//!
//! The core's sentiment types are re-exported here (`papertrader::sentiment::Vader`, ...).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

pub use papertrader_core::sentiment::*;

use crate::config::Loaded;
use crate::domain::{Origin, Output};
use crate::paper::{StopWhen, STARTUP_GRACE};
use papertrader_core::news::NewsItem;

/// The most messages handled between two commits.
const MAX_BATCH: usize = 500;

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SentimentSummary {
    /// Messages read from the news topic (valid or not).
    pub messages: u64,
    /// The stage's counts over the valid items.
    pub stage: StageCounts,
    /// Dead letters by reason.
    pub dead_letters: BTreeMap<String, u64>,
    /// `{scorer}-{version}`.
    pub source: String,
}

/// One message to publish.
struct Out {
    topic: String,
    key: Option<String>,
    id: String,
    ts_ms: Option<i64>,
    payload: Vec<u8>,
}

/// The outputs of one consumed message: its readings, or its dead letter.
fn outputs_of(
    stage: &mut Stage,
    topics: &crate::config::TopicsConfig,
    origin: &Origin,
    key: Option<&[u8]>,
    payload: &[u8],
    summary: &mut SentimentSummary,
) -> Vec<Out> {
    let decoded = if payload.is_empty() {
        Err(crate::wire::Rejection::new(
            "empty",
            "message has no payload",
        ))
    } else {
        NewsItem::decode(payload)
    };
    match decoded {
        Ok(item) => stage
            .on_item(&item)
            .into_iter()
            .map(|s| Out {
                topic: topics.news_sentiment.clone(),
                key: Some(s.symbol.clone()),
                id: format!("sent:{}:{}", s.news_id, s.symbol),
                ts_ms: Some(s.ts.div_euclid(1_000_000)),
                payload: s.to_json(),
            })
            .collect(),
        Err(r) => {
            tracing::warn!(%origin, reason = r.code, detail = %r.detail, "news message dead-lettered");
            *summary.dead_letters.entry(r.code.to_string()).or_default() += 1;
            let dl = dead_letter(origin, key, payload, r);
            vec![Out {
                topic: topics.dead_letters.clone(),
                key: dl.key.clone(),
                id: dl.dead_letter_id.clone(),
                ts_ms: None,
                payload: Output::DeadLetter(dl).to_json(),
            }]
        }
    }
}

/// Send every output and wait for the broker's acknowledgements.
async fn publish(producer: &FutureProducer, outs: &[Out]) -> anyhow::Result<()> {
    let sends = outs.iter().map(|o| async move {
        let headers = OwnedHeaders::new().insert(Header {
            key: "papertrader-id",
            value: Some(o.id.as_str()),
        });
        let mut record = FutureRecord::to(&o.topic)
            .payload(&o.payload)
            .headers(headers);
        if let Some(k) = &o.key {
            record = record.key(k);
        }
        if let Some(ts) = o.ts_ms {
            record = record.timestamp(ts);
        }
        producer
            .send(record, Duration::from_secs(60))
            .await
            .map(|_| ())
            .map_err(|(e, _)| anyhow::anyhow!("publishing {} to {}: {e}", o.id, o.topic))
    });
    for r in join_all(sends).await {
        r?;
    }
    Ok(())
}

/// With `rescan`, every assigned partition is read from its start and the
/// loop skips what the group had committed: tansu cannot fetch from inside a
/// record batch (docs/recovery.md, "Resuming a partition"), so resuming at a
/// committed offset could skip headlines there. Otherwise librdkafka resumes
/// at the committed offsets.
struct FromStart {
    rescan: bool,
}

impl rdkafka::ClientContext for FromStart {}

impl rdkafka::consumer::ConsumerContext for FromStart {
    fn rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::bindings::rd_kafka_resp_err_t,
        tpl: &mut TopicPartitionList,
    ) {
        crate::kafka::apply_rebalance(consumer, err, tpl, self.rescan, |_| {});
    }
}

/// Offsets committed per (topic, partition).
type Committed = HashMap<(String, i32), i64>;

/// The consumer of the news topic, and (with `rescan`) the group's committed
/// offsets, below which the loop skips.
fn consumer(
    cfg: &Loaded,
    base: &rdkafka::ClientConfig,
    rescan: bool,
) -> anyhow::Result<(StreamConsumer<FromStart>, Committed)> {
    let mut cc = base.clone();
    cc.set("group.id", &cfg.app.sentiment.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    let consumer: StreamConsumer<FromStart> = cc
        .create_with_context(FromStart { rescan })
        .context("creating the Kafka consumer")?;
    let topic = cfg.app.topics.news.as_str();
    let mut done = HashMap::new();
    if rescan {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .context("reading the news topic's partitions")?;
        let mut tpl = TopicPartitionList::new();
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            tpl.add_partition(topic, p.id());
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .context("reading the group's committed offsets")?;
        for e in committed.elements() {
            if let Offset::Offset(o) = e.offset() {
                done.insert((e.topic().to_string(), e.partition()), o);
            }
        }
    }
    consumer
        .subscribe(&[topic])
        .context("subscribing to the news topic")?;
    Ok((consumer, done))
}

/// A message the group had committed before this run (rescan only).
fn skipped(done: &Committed, m: &rdkafka::message::OwnedMessage) -> bool {
    done.get(&(m.topic().to_string(), m.partition()))
        .is_some_and(|committed| m.offset() < *committed)
}

/// Run the stage against `bootstrap` until `stop` says so or `shutdown`
/// resolves; what was read is published and committed before it returns.
///
/// # Errors
/// The broker unreachable, `kafka.brokers = "embedded"`, or a publish or
/// commit that failed (nothing of the failed batch is committed).
pub async fn run(
    cfg: &Loaded,
    bootstrap: &str,
    stop: StopWhen,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<SentimentSummary> {
    anyhow::ensure!(
        bootstrap != "embedded",
        "the sentiment stage needs a running broker: pass --brokers HOST:PORT or set kafka.brokers (start one with `papertrader broker --listen 127.0.0.1:9092`)"
    );
    let app = &cfg.app;
    let base = crate::kafka::client_config(&app.kafka, bootstrap);
    crate::kafka::check_reachable_named(&base, bootstrap, &app.kafka).await?;
    let topics = &app.topics;
    if app.kafka.create_topics {
        let names = [&topics.news, &topics.news_sentiment, &topics.dead_letters];
        crate::kafka::ensure_topics(&base, &names.map(String::as_str), app.kafka.partitions)
            .await?;
    }
    let mut stage = Stage::new(&app.sentiment)
        .map_err(|(key, what, fix)| anyhow::anyhow!("{key}: {what}\n  fix: {fix}"))?;
    let mut summary = SentimentSummary {
        source: format!("{}-{}", stage.scorer().name(), stage.scorer().version()),
        ..SentimentSummary::default()
    };
    let producer = crate::kafka::producer(&base)?;
    let rescan = crate::kafka::needs_rescan(&cfg.app.kafka, &base).await;
    let (consumer, done) = consumer(cfg, &base, rescan)?;
    tracing::info!(news = %topics.news, out = %topics.news_sentiment, source = %summary.source, group = %app.sentiment.group_id, rescan, "sentiment stage consuming");
    tokio::pin!(shutdown);
    let started = Instant::now();
    let mut last_input: Option<Instant> = None;
    loop {
        if stop.max_events.is_some_and(|max| summary.messages >= max) {
            break;
        }
        let idle_for = match (stop.idle, last_input) {
            (Some(idle), Some(at)) => Some(idle.saturating_sub(at.elapsed())),
            (Some(idle), None) => Some(
                idle.max(stop.startup_grace.unwrap_or(STARTUP_GRACE))
                    .saturating_sub(started.elapsed()),
            ),
            (None, _) => None,
        };
        let wait = idle_for.unwrap_or(Duration::from_secs(3600));
        let first = tokio::select! {
            _ = &mut shutdown => break,
            m = tokio::time::timeout(wait, consumer.recv()) => m,
        };
        let Ok(first) = first else {
            if idle_for.is_some() {
                break;
            }
            continue;
        };
        let first = first.context("reading the news topic")?.detach();
        if skipped(&done, &first) {
            continue;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && stop
                .max_events
                .is_none_or(|max| summary.messages + (batch.len() as u64) < max)
        {
            match tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await {
                Ok(m) => {
                    let m = m.context("reading the news topic")?.detach();
                    if !skipped(&done, &m) {
                        batch.push(m);
                    }
                }
                Err(_) => break,
            }
        }
        last_input = Some(Instant::now());
        let mut outs = Vec::new();
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for m in &batch {
            let origin = Origin {
                topic: m.topic().into(),
                partition: m.partition(),
                offset: m.offset(),
            };
            summary.messages += 1;
            outs.extend(outputs_of(
                &mut stage,
                topics,
                &origin,
                m.key(),
                m.payload().unwrap_or_default(),
                &mut summary,
            ));
            next.insert((origin.topic.into(), origin.partition), origin.offset + 1);
        }
        publish(&producer, &outs).await?;
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &next {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                .context("offsets to commit")?;
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .context("committing the news offsets")?;
    }
    summary.stage = stage.counts;
    tracing::info!(messages = summary.messages, published = summary.stage.published, untagged = summary.stage.untagged, duplicates = summary.stage.duplicates, below_min = summary.stage.below_min, dead_letters = ?summary.dead_letters, "sentiment stage stopped");
    Ok(summary)
}
