//! A backtest's outputs on Kafka, in topics named after the run:
//! `{run_id}.{topic}` (`bt-2026-11-25.orders`), so that downstream tools consume a
//! backtest as they consume a live run (`papertrader backtest --publish RUN_ID`).
//!
//! The messages are the ones paper mode publishes: the same JSON
//! ([`Output::to_json`]), key ([`Output::key`]: the symbol) and `papertrader-id`
//! header, sent by the same [`Publisher`], which waits for the broker's
//! acknowledgements. Within a topic partition they are in the order the engine
//! emitted them (one producer, keyed partitioning, in-order sends); a send that
//! fails and is retried can land after later ones, as in paper mode.
//!
//! The engine runs on a blocking thread and hands its outputs over a bounded
//! channel, in batches of [`BATCH`], to the task that publishes them. The backtest
//! runs at most [`QUEUED_BATCHES`] batches ahead of the broker's acks, so memory
//! stays bounded however long the run.
//!
//! A run id names one run. [`RunPublisher::connect`] refuses run topics that
//! already hold messages (two runs appended to one topic would read as one run)
//! and creates the missing ones when `kafka.create_topics` is set. The broker must
//! outlive the backtest: `kafka.brokers = "embedded"` is refused by the caller
//! ([`crate::app::backtest`]), since that broker and its topics end with the process.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;

use crate::backtest::{self, Backtest, Event};
use crate::config::{Loaded, TopicsConfig};
use crate::domain::{Output, OutputKind};
use crate::kafka::{self, Publisher};

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;
/// Outputs per batch handed from the engine to the publisher.
pub const BATCH: usize = 5000;
/// Batches the engine may run ahead of the broker's acknowledgements.
pub const QUEUED_BATCHES: usize = 4;
/// Attempts per output before the run fails (each send already retries inside
/// librdkafka for up to its 60 s message timeout).
const ATTEMPTS: u32 = 3;

/// The topics of run `run_id`: every configured topic prefixed with `{run_id}.`.
///
/// # Errors
/// An empty run id, a character that Kafka refuses in topic names (only ASCII
/// letters, digits, `.`, `_` and `-` are allowed), or a run id that makes a topic
/// name longer than [`MAX_TOPIC_LEN`]. The message says what to use instead.
pub fn run_topics(run_id: &str, topics: &TopicsConfig) -> Result<TopicsConfig, String> {
    const EXAMPLE: &str = "e.g. bt-2026-11-25";
    if run_id.is_empty() {
        return Err(format!("the run id is empty: name the run, {EXAMPLE}"));
    }
    if let Some((at, c)) = run_id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{c:?} (byte {at}) cannot be part of a Kafka topic name, which allows only ASCII \
             letters, digits, '.', '_' and '-': use a run id made of those, {EXAMPLE}"
        ));
    }
    let mut t = topics.clone();
    for name in [
        &mut t.live_prices,
        &mut t.news_sentiment,
        &mut t.order_book,
        &mut t.signals,
        &mut t.orders,
        &mut t.fills,
        &mut t.pnl,
        &mut t.dead_letters,
        &mut t.alerts,
        &mut t.indicators,
        &mut t.control,
        &mut t.news,
    ] {
        *name = format!("{run_id}.{name}");
    }
    let longest = output_topics(&t)
        .into_iter()
        .max_by_key(|n| n.len())
        .expect("seven output topics");
    if longest.len() > MAX_TOPIC_LEN {
        let room = MAX_TOPIC_LEN - (longest.len() - run_id.len());
        return Err(format!(
            "the run id is {} characters long, which makes the topic {}... {} characters; Kafka \
             allows {MAX_TOPIC_LEN}: use a run id of at most {room} characters, {EXAMPLE}",
            run_id.len(),
            &longest[..40],
            longest.len()
        ));
    }
    Ok(t)
}

/// The topics a backtest publishes to, in `TopicsConfig::outputs` order (alerts and indicators included).
pub fn output_topics(t: &TopicsConfig) -> [String; 7] {
    t.outputs().map(str::to_string)
}

fn topic_of(t: &TopicsConfig, kind: OutputKind) -> &str {
    match kind {
        OutputKind::Signals => &t.signals,
        OutputKind::Orders => &t.orders,
        OutputKind::Fills => &t.fills,
        OutputKind::Pnl => &t.pnl,
        OutputKind::DeadLetters => &t.dead_letters,
        OutputKind::Alerts => &t.alerts,
        OutputKind::Indicators => &t.indicators,
    }
}

/// A connection to the cluster that receives one run's outputs.
pub struct RunPublisher {
    topics: TopicsConfig,
    publisher: Publisher,
}

impl RunPublisher {
    /// Check that `bootstrap` answers, refuse run topics that already hold
    /// messages, create the missing ones (with `kafka.create_topics`, with
    /// `kafka.partitions` partitions) and open the producer.
    ///
    /// `topics` are the run's topics, from [`run_topics`].
    pub async fn connect(
        cfg: &Loaded,
        bootstrap: &str,
        topics: TopicsConfig,
    ) -> anyhow::Result<Self> {
        let base = kafka::client_config(&cfg.app.kafka, bootstrap);
        kafka::check_reachable_named(&base, bootstrap, &cfg.app.kafka).await?;
        let names = output_topics(&topics);
        refuse_used(&base, names.to_vec()).await?;
        if cfg.app.kafka.create_topics {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            kafka::ensure_topics(&base, &refs, cfg.app.kafka.partitions).await?;
        }
        let publisher = Publisher::new(kafka::producer(&base)?, &topics);
        Ok(RunPublisher { topics, publisher })
    }

    /// Publish `batch` and wait for every acknowledgement, retrying failed sends.
    async fn send(&self, batch: &[Output]) -> anyhow::Result<()> {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failed = self.publisher.publish(batch, &pending).await;
            let Some((i, e)) = failed.first() else {
                return Ok(());
            };
            if kafka::is_permanent(e) || attempt >= ATTEMPTS {
                anyhow::bail!(
                    "publishing {} to {} failed after {attempt} attempts: {e} ({} outputs of this batch unpublished)",
                    batch[*i].id(),
                    topic_of(&self.topics, batch[*i].kind()),
                    failed.len()
                );
            }
            let backoff = Duration::from_millis(500 * 2u64.pow(attempt));
            tracing::warn!(error = %e, unpublished = failed.len(), attempt, ?backoff,
                "publishing outputs failed; retrying the failed ones");
            pending = failed.into_iter().map(|(i, _)| i).collect();
            tokio::time::sleep(backoff).await;
        }
    }
}

/// Refuse topics of `names` that exist and hold messages, naming each of them.
async fn refuse_used(base: &rdkafka::ClientConfig, names: Vec<String>) -> anyhow::Result<()> {
    use rdkafka::producer::{BaseProducer, Producer};
    let base = base.clone();
    tokio::task::spawn_blocking(move || {
        let probe: BaseProducer = base.create().context("creating a Kafka client")?;
        let client = probe.client();
        let t = Duration::from_secs(15);
        let md = client
            .fetch_metadata(None, t)
            .context("listing the topics of the cluster")?;
        let mut used = Vec::new();
        for name in &names {
            let Some(topic) = md
                .topics()
                .iter()
                .find(|m| m.name() == name && m.error().is_none())
            else {
                continue;
            };
            let mut held = 0;
            for p in topic.partitions() {
                let (lo, hi) = client
                    .fetch_watermarks(name, p.id(), t)
                    .with_context(|| format!("watermarks of {name}/{}", p.id()))?;
                held += (hi - lo).max(0);
            }
            if held > 0 {
                // ListOffsets can undercount (tansu); the fetch answers' count is exact.
                let ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
                used.push(match crate::kafka::held_records(&base, name, &ids, t)? {
                    Some(n) => format!("{name} ({n} messages)"),
                    None => format!("{name} (at least {held} messages)"),
                });
            }
        }
        anyhow::ensure!(
            used.is_empty(),
            "--publish: the run's topics already hold messages from an earlier run: {}; a run id \
             names one run: choose a new run id (or delete those topics)",
            used.join(", ")
        );
        Ok(())
    })
    .await?
}

/// How many outputs went to each topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub per_topic: BTreeMap<String, u64>,
}

impl Published {
    pub fn total(&self) -> u64 {
        self.per_topic.values().sum()
    }

    /// One line: the total and the count of each topic.
    pub fn render(&self) -> String {
        let parts: Vec<String> = self
            .per_topic
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        format!(
            "published {} outputs, acknowledged by the broker: {}",
            self.total(),
            parts.join(", ")
        )
    }
}

/// Run the backtest over `events` (in the order given, as [`backtest::run`]) and
/// publish every output through `publisher` as the engine emits it.
///
/// # Errors
/// A send that still fails after retries (or that the broker refuses outright).
/// The backtest then runs to its end without publishing more, and the error is
/// returned instead of its result.
pub async fn run(
    cfg: &Loaded,
    events: Vec<Event>,
    progress: bool,
    publisher: RunPublisher,
) -> anyhow::Result<(Backtest, Published)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Output>>(QUEUED_BATCHES);
    let engine_cfg = cfg.clone();
    let engine = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(BATCH);
        let mut open = true;
        let mut sink = |o: &Output| {
            if !open {
                return;
            }
            batch.push(o.clone());
            if batch.len() >= BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                // Closed when publishing failed: finish without publishing.
                open = tx.blocking_send(full).is_ok();
            }
        };
        let bt = backtest::run_with(&engine_cfg, events, progress, &mut sink);
        if open && !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        bt
    });
    let mut published = Published::default();
    for t in output_topics(&publisher.topics) {
        published.per_topic.insert(t, 0);
    }
    let mut failure = None;
    while let Some(batch) = rx.recv().await {
        if let Err(e) = publisher.send(&batch).await {
            failure = Some(e);
            break;
        }
        for o in &batch {
            *published
                .per_topic
                .entry(topic_of(&publisher.topics, o.kind()).to_string())
                .or_default() += 1;
        }
    }
    drop(rx);
    let bt = engine.await.context("the backtest thread")??;
    publisher.publisher.flush();
    match failure {
        Some(e) => Err(e),
        None => Ok((bt, published)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> TopicsConfig {
        crate::config::load_app(None)
            .expect("the default config")
            .app
            .topics
    }

    #[test]
    fn run_topics_prefix_every_topic() {
        let t = run_topics("bt-2026-11-25", &topics()).unwrap();
        assert_eq!(t.orders, "bt-2026-11-25.orders");
        assert_eq!(t.dead_letters, "bt-2026-11-25.dead_letters");
        assert_eq!(
            output_topics(&t),
            [
                "bt-2026-11-25.signals",
                "bt-2026-11-25.orders",
                "bt-2026-11-25.fills",
                "bt-2026-11-25.pnl",
                "bt-2026-11-25.dead_letters",
                "bt-2026-11-25.alerts",
                "bt-2026-11-25.indicators"
            ]
        );
        assert!(run_topics("A.b_C-9", &topics()).is_ok());
    }

    #[test]
    fn run_ids_kafka_refuses_are_refused_with_the_fix() {
        let t = topics();
        let e = run_topics("", &t).unwrap_err();
        assert!(e.contains("empty") && e.contains("bt-2026-11-25"), "{e}");
        for bad in ["bt/1", "bt 1", "bt:1", "Ä", "bt\n"] {
            let e = run_topics(bad, &t).unwrap_err();
            assert!(e.contains("letters, digits"), "{bad:?}: {e}");
        }
        // "dead_letters" is the longest output topic: 12 characters and a dot.
        let fits = "x".repeat(MAX_TOPIC_LEN - 13);
        assert!(run_topics(&fits, &t).is_ok());
        let e = run_topics(&format!("{fits}x"), &t).unwrap_err();
        assert!(e.contains("at most 236 characters"), "{e}");
    }
}
