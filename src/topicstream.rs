//! A Kafka backtest's input, streamed: every input partition read by a thread
//! of its own into a bounded queue, and the queues merged by their heads, in
//! the order documented in [`crate::backtest`]: smallest `(event ts, topic,
//! partition, offset)` first, each partition in offset order, a message that
//! does not decode at the time of the message before it in its partition.
//!
//! At most [`QUEUED`] messages per partition are held, so memory does not
//! grow with the length of the topics, and the broker is read while the engine
//! runs. A partition's thread blocks when its queue is full; the merge always
//! waits on the partition whose head it lacks, whose thread is free to read,
//! so the threads never wait on each other. A partition ends as
//! [`crate::backtest`] says (past its queried watermark, and EOF or quiet).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::ProgressBar;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::backtest::{Event, KafkaRange};
use crate::domain::{Origin, Ts};
use crate::state::QuietEof;
use crate::wire::{self, InputKind};

/// Messages held per partition at most.
pub const QUEUED: usize = 4096;

/// One input partition to read.
#[derive(Debug, Clone)]
struct Part {
    topic: String,
    kind: InputKind,
    partition: i32,
    /// The queried high watermark: a lower bound of the end on tansu.
    at_least: i64,
}

/// A partition's head in the merge: its event time, the partition's rank in
/// `(topic, partition)` order, its offset, and its queue.
type Head = (Ts, usize, i64, usize);

/// The merged events of every input partition, read as they are taken.
pub struct TopicStream {
    queues: Vec<Receiver<anyhow::Result<Event>>>,
    heads: Vec<Option<Event>>,
    /// Each queue's rank in `(topic, partition)` order: the merge's tie-break
    /// after the event time, without comparing topic names per event.
    ranks: Vec<usize>,
    heap: BinaryHeap<Reverse<Head>>,
    range: crate::backtest::TimeRange,
    error: Option<anyhow::Error>,
    primed: bool,
}

impl TopicStream {
    /// Find the input topics' partitions and start a reader per partition.
    ///
    /// # Errors
    /// The metadata or watermarks cannot be read, or none of the topics exists.
    pub fn open(
        cc: &ClientConfig,
        kinds: &[(String, InputKind)],
        opts: &KafkaRange,
        bar: &ProgressBar,
    ) -> anyhow::Result<TopicStream> {
        let parts = partitions(cc, kinds)?;
        let mut order: Vec<(&str, i32, usize)> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| (p.topic.as_str(), p.partition, i))
            .collect();
        order.sort_unstable();
        let mut ranks = vec![0; parts.len()];
        for (rank, &(.., i)) in order.iter().enumerate() {
            ranks[i] = rank;
        }
        let deadline = Instant::now() + opts.timeout;
        let mut queues = Vec::with_capacity(parts.len());
        for part in parts {
            let (tx, rx) = sync_channel(QUEUED);
            let (cc, bar, quiet) = (cc.clone(), bar.clone(), opts.quiet);
            std::thread::Builder::new()
                .name(format!("read {}/{}", part.topic, part.partition))
                .spawn(move || {
                    if let Err(e) = read_partition(&cc, &part, quiet, deadline, &bar, &tx) {
                        let _ = tx.send(Err(e));
                    }
                })
                .context("starting a partition reader")?;
            queues.push(rx);
        }
        Ok(TopicStream {
            heads: (0..queues.len()).map(|_| None).collect(),
            queues,
            ranks,
            heap: BinaryHeap::new(),
            range: opts.range,
            error: None,
            primed: false,
        })
    }

    /// What stopped the stream before the end of the topics, if anything.
    pub fn take_error(&mut self) -> Option<anyhow::Error> {
        self.error.take()
    }

    /// Take partition `i`'s next message as its head (none: the partition ended).
    fn refill(&mut self, i: usize) {
        match self.queues[i].recv() {
            Ok(Ok(e)) => {
                self.heap
                    .push(Reverse((e.ts, self.ranks[i], e.origin.offset, i)));
                self.heads[i] = Some(e);
            }
            Ok(Err(e)) => self.error = Some(e),
            Err(_) => {}
        }
    }
}

impl Iterator for TopicStream {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if !self.primed {
            self.primed = true;
            for i in 0..self.queues.len() {
                self.refill(i);
            }
        }
        loop {
            if self.error.is_some() {
                return None;
            }
            let Reverse((.., i)) = self.heap.pop()?;
            let ev = self.heads[i].take().expect("a head for each heap entry");
            self.refill(i);
            if self.range.contains(ev.ts) {
                return Some(ev);
            }
        }
    }
}

/// The partitions of the input topics that exist, with their watermarks.
fn partitions(cc: &ClientConfig, kinds: &[(String, InputKind)]) -> anyhow::Result<Vec<Part>> {
    let consumer: BaseConsumer<QuietEof> = cc
        .create_with_context(QuietEof)
        .context("creating the Kafka consumer")?;
    let t = Duration::from_secs(15);
    let mut parts = Vec::new();
    let mut found = 0;
    for (topic, kind) in kinds {
        let md = consumer
            .fetch_metadata(Some(topic), t)
            .with_context(|| format!("reading the metadata of topic {topic}"))?;
        let Some(tm) = md.topics().first() else {
            continue;
        };
        if tm.error().is_some() || tm.partitions().is_empty() {
            tracing::warn!(%topic, "input topic does not exist; skipped");
            continue;
        }
        found += 1;
        for p in tm.partitions() {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p.id(), t)
                .with_context(|| format!("watermarks of {topic}/{}", p.id()))?;
            parts.push(Part {
                topic: topic.clone(),
                kind: *kind,
                partition: p.id(),
                at_least: hi.max(lo),
            });
        }
    }
    anyhow::ensure!(
        found > 0,
        "none of the input topics {:?} exists on the cluster: nothing to backtest",
        kinds.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );
    Ok(parts)
}

/// Read one partition to its end into `tx`, in offset order. Stops early,
/// without an error, when the stream is dropped.
fn read_partition(
    cc: &ClientConfig,
    part: &Part,
    quiet: Duration,
    deadline: Instant,
    bar: &ProgressBar,
    tx: &SyncSender<anyhow::Result<Event>>,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer<QuietEof> = cc
        .create_with_context(QuietEof)
        .context("creating the Kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&part.topic, part.partition, Offset::Beginning)?;
    consumer
        .assign(&tpl)
        .with_context(|| format!("assigning {}/{}", part.topic, part.partition))?;
    let (mut next, mut eof, mut last) = (0i64, false, Instant::now());
    let mut prev_ts = Ts::MIN;
    while !(next >= part.at_least && (eof || last.elapsed() >= quiet)) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out reading the input topics to their end ({}/{})",
            part.topic,
            part.partition
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => eof = true,
            Some(Err(e)) => {
                tracing::warn!(error = %e, topic = %part.topic, "consumer error; retrying")
            }
            Some(Ok(m)) => {
                next = m.offset() + 1;
                last = Instant::now();
                eof = false;
                bar.inc(1);
                let payload = m.payload().unwrap_or(&[]).to_vec();
                let decoded = wire::decode(part.kind, &payload).ok();
                let ts = decoded.as_ref().map_or(prev_ts, |ev| ev.ts());
                prev_ts = ts;
                let ev = Event {
                    kind: part.kind,
                    origin: Origin {
                        topic: part.topic.as_str().into(),
                        partition: m.partition(),
                        offset: m.offset(),
                    },
                    key: m.key().map(<[u8]>::to_vec),
                    payload,
                    ts,
                    decoded,
                };
                if tx.send(Ok(ev)).is_err() {
                    return Ok(());
                }
            }
        }
    }
    tracing::debug!(topic = %part.topic, partition = part.partition, next, watermark = part.at_least,
        by_eof = eof, "partition read to its end");
    // Closing the consumer waits for its fetch in flight, which tansu answers
    // only when `fetch.wait.max.ms` has passed (500 ms by librdkafka's
    // default): closed on a thread of its own, so that this partition's queue
    // ends now and the backtest does not wait for it.
    let _ = std::thread::Builder::new()
        .name("close consumer".into())
        .spawn(move || drop(consumer));
    Ok(())
}
