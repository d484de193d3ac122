//! Distributed sweeps over a Kafka consumer group (docs/sweeps.md).
//!
//! The coordinator (`papertrader sweep --distributed`) publishes one task per
//! parameter set to the tasks topic, keyed by its deterministic task id
//! ([`crate::sweep_task`]), and reads the results topic until every task it
//! waits for has a result. Workers (`papertrader worker`) share the tasks
//! topic's partitions as one consumer group; each task is backtested, its
//! result published and acknowledged, and only then is the task's offset
//! committed. A worker killed mid-task has not committed it: the partition
//! goes to another member after the rebalance, which runs the task again. A
//! task run twice gives two results with the same task id; the coordinator
//! keeps the first.
//!
//! On start the coordinator reads the results topic (what is done) and the
//! tasks topic (what is already queued) from their start: a coordinator
//! restarted with the same sweep id publishes only the tasks that are neither.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Deserialize;

use crate::config::Loaded;
use crate::kafka;
use crate::sweep::{self, Metric, Outcome, ParamSet, Row, Sweep};
use crate::sweep_task::{Status, Task, TaskFactory, TaskResult, VERSION};
use crate::wire::Rejection;

/// The default tasks topic.
pub const TASKS_TOPIC: &str = "sweep_tasks";
/// The default results topic.
pub const RESULTS_TOPIC: &str = "sweep_results";
/// Partitions of the tasks topic when a coordinator or worker creates it:
/// the most workers that share one sweep.
pub const TASK_PARTITIONS: i32 = 12;
/// The default consumer group of the workers.
pub const WORKER_GROUP: &str = "papertrader-sweep-workers";

/// The two topics of a distributed sweep.
#[derive(Debug, Clone)]
pub struct Topics {
    pub tasks: String,
    pub results: String,
}

/// The coordinator's readers' context: a partition's end is expected, not
/// an error to log.
struct EndsExpected;

impl rdkafka::ClientContext for EndsExpected {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_))
            && !reason.contains("reached end of partition")
        {
            tracing::error!(%error, reason, "librdkafka error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndsExpected {}

type Reader = StreamConsumer<EndsExpected>;

/// A consumer with every partition of `topic` assigned from its start, that
/// reports each partition's end (`enable.partition.eof`).
fn reader(base: &ClientConfig, topic: &str) -> anyhow::Result<(Reader, usize)> {
    let mut c = base.clone();
    c.set("group.id", "papertrader-sweep-coordinator")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    kafka::set_default(&mut c, "fetch.wait.max.ms", "100");
    let consumer: Reader = c
        .create_with_context(EndsExpected)
        .context("creating a Kafka consumer")?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(15))
        .with_context(|| format!("reading the partitions of {topic}"))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| p.id())
        .collect();
    anyhow::ensure!(!parts.is_empty(), "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok((consumer, parts.len()))
}

/// Read `consumer` until every one of its `partitions` reported its end,
/// handing each payload to `on`.
async fn read_to_end(
    consumer: &Reader,
    partitions: usize,
    topic: &str,
    on: &mut dyn FnMut(&[u8]),
) -> anyhow::Result<()> {
    let mut ended = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ended.len() < partitions {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topic} to its end took over 120 s ({} of {partitions} partitions read)",
            ended.len()
        );
        match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            Ok(Ok(m)) => on(m.payload().unwrap_or_default()),
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Ok(Err(e)) => return Err(e).with_context(|| format!("reading {topic}")),
            Err(_) => {}
        }
    }
    Ok(())
}

/// The ids of a task or result message, read without the rest.
#[derive(Deserialize)]
struct Head {
    sweep_id: String,
    task_id: String,
}

/// The coordinator's side: publishes tasks and collects their results.
pub struct Coordinator {
    pub factory: TaskFactory,
    metric: Metric,
    topics: Topics,
    producer: FutureProducer,
    results: Reader,
    /// The first final result (ok or failed) of each task id of this sweep.
    done: HashMap<String, TaskResult>,
    /// Task ids some worker said it started.
    started: HashSet<String>,
    /// Task ids already on the tasks topic (found at start or published).
    queued: HashSet<String>,
    /// The tasks this run waits for: id -> set.
    wanted: BTreeMap<String, ParamSet>,
    progress: Progress,
    /// Partitions of the tasks topic.
    task_partitions: i32,
    /// After this long without a result, the missing tasks are queued again.
    pub requeue_after: Duration,
    requeues: i32,
}

impl Coordinator {
    /// Connect to `bootstrap`, create the topics if missing (the tasks topic
    /// with `partitions` partitions), and read what the topics already hold
    /// for this sweep.
    pub async fn connect(
        cfg: &Loaded,
        bootstrap: &str,
        factory: TaskFactory,
        topics: Topics,
        partitions: i32,
        metric: Metric,
    ) -> anyhow::Result<Coordinator> {
        let base = kafka::client_config(&cfg.app.kafka, bootstrap);
        kafka::check_reachable_named(&base, bootstrap, &cfg.app.kafka).await?;
        kafka::ensure_topics(&base, &[topics.tasks.as_str()], partitions).await?;
        kafka::ensure_topics(&base, &[topics.results.as_str()], cfg.app.kafka.partitions).await?;
        let producer = kafka::producer(&base)?;
        let mut queued = HashSet::new();
        let (tasks, n) = reader(&base, &topics.tasks)?;
        read_to_end(&tasks, n, &topics.tasks, &mut |p| {
            if let Ok(h) = serde_json::from_slice::<Head>(p) {
                if h.sweep_id == factory.sweep_id {
                    queued.insert(h.task_id);
                }
            }
        })
        .await?;
        drop(tasks);
        let task_partitions = n as i32;
        let (results, n) = reader(&base, &topics.results)?;
        let mut c = Coordinator {
            progress: Progress::new(metric),
            factory,
            metric,
            topics,
            producer,
            results,
            done: HashMap::new(),
            started: HashSet::new(),
            queued,
            wanted: BTreeMap::new(),
            task_partitions,
            requeue_after: Duration::from_secs(120),
            requeues: 0,
        };
        let mut seen = Vec::new();
        read_to_end(&c.results, n, &c.topics.results, &mut |p| {
            seen.push(p.to_vec())
        })
        .await?;
        for p in seen {
            c.take(&p);
        }
        tracing::info!(sweep_id = %c.factory.sweep_id, done = c.done.len(), queued = c.queued.len(), "sweep coordinator: read the results and tasks topics");
        Ok(c)
    }

    /// One message of the results topic.
    fn take(&mut self, payload: &[u8]) {
        let Ok(r) = serde_json::from_slice::<TaskResult>(payload) else {
            return;
        };
        if r.sweep_id != self.factory.sweep_id {
            return;
        }
        match r.status {
            Status::Started => {
                self.started.insert(r.task_id);
            }
            Status::Ok | Status::Failed => {
                if !self.done.contains_key(&r.task_id) {
                    if let Some(set) = self.wanted.get(&r.task_id) {
                        let row = r.metrics.as_ref().and_then(|m| m.row(set.clone()).ok());
                        self.progress.result(row, &r.worker);
                    }
                    self.done.insert(r.task_id.clone(), r);
                }
            }
        }
    }

    /// Wait for `tasks` (publishing those neither done nor queued) and give
    /// their outcomes in the order of `tasks`: a row, or the set and why it failed.
    pub async fn run(&mut self, tasks: &[(ParamSet, Task)]) -> anyhow::Result<Vec<RunResult>> {
        for (set, t) in tasks {
            self.wanted.insert(t.task_id.clone(), set.clone());
            if let Some(r) = self.done.get(&t.task_id) {
                let row = r.metrics.as_ref().and_then(|m| m.row(set.clone()).ok());
                self.progress.result(row, "earlier run");
            }
        }
        self.progress.add(tasks.len());
        let fresh: Vec<&Task> = tasks
            .iter()
            .map(|(_, t)| t)
            .filter(|t| !self.done.contains_key(&t.task_id) && !self.queued.contains(&t.task_id))
            .collect();
        let already = tasks
            .iter()
            .filter(|(_, t)| self.done.contains_key(&t.task_id))
            .count();
        tracing::info!(
            sweep_id = %self.factory.sweep_id,
            tasks = tasks.len(),
            already_done = already,
            already_queued = tasks.len() - already - fresh.len(),
            publishing = fresh.len(),
            "sweep coordinator: publishing tasks"
        );
        self.publish_to(&fresh, None).await?;
        self.wait(tasks).await?;
        Ok(tasks
            .iter()
            .map(|(set, t)| {
                let r = &self.done[&t.task_id];
                match (&r.status, &r.metrics) {
                    (Status::Ok, Some(m)) => {
                        m.row(set.clone()).map_err(|e| (set.clone(), e.to_string()))
                    }
                    _ => Err((
                        set.clone(),
                        r.error
                            .clone()
                            .unwrap_or_else(|| "the worker gave no metrics".into()),
                    )),
                }
            })
            .collect())
    }

    /// Publish `tasks`, keyed by task id; `spread`: to partitions in turn
    /// (starting at `spread`) rather than by key.
    async fn publish_to(&mut self, tasks: &[&Task], spread: Option<i32>) -> anyhow::Result<()> {
        let n = self.task_partitions.max(1);
        let sends = tasks.iter().enumerate().map(|(i, t)| {
            let payload = serde_json::to_vec(t).expect("a task serializes");
            let topic = self.topics.tasks.clone();
            let producer = &self.producer;
            let partition = spread.map(|s| (s + i as i32) % n);
            async move {
                let mut record = FutureRecord::to(&topic).key(&t.task_id).payload(&payload);
                if let Some(p) = partition {
                    record = record.partition(p);
                }
                producer
                    .send(record, Duration::from_secs(60))
                    .await
                    .map_err(|(e, _)| {
                        anyhow::anyhow!("publishing task {} to {topic}: {e}", t.task_id)
                    })
            }
        });
        for r in futures::future::join_all(sends).await {
            r?;
        }
        for t in tasks {
            self.queued.insert(t.task_id.clone());
        }
        Ok(())
    }

    /// Read results until every task of `tasks` has one. After
    /// `requeue_after` without a new result, the missing tasks are queued
    /// again, spread over the partitions: a member that died without leaving
    /// can keep its partitions for long on some brokers (tansu 0.6 does not
    /// always rebalance them away), and a task run twice is counted once.
    async fn wait(&mut self, tasks: &[(ParamSet, Task)]) -> anyhow::Result<()> {
        let mut last_log = Instant::now();
        let mut last_result = (Instant::now(), self.done.len());
        loop {
            if self.done.len() != last_result.1 {
                last_result = (Instant::now(), self.done.len());
            }
            if last_result.0.elapsed() > self.requeue_after {
                let missing: Vec<&Task> = tasks
                    .iter()
                    .map(|(_, t)| t)
                    .filter(|t| !self.done.contains_key(&t.task_id))
                    .collect();
                self.requeues += 1;
                tracing::warn!(tasks = missing.len(), after = ?self.requeue_after, "sweep coordinator: no result for a while: queuing the missing tasks again");
                let start = self.requeues * 5;
                self.publish_to(&missing, Some(start)).await?;
                last_result.0 = Instant::now();
            }
            let missing = tasks
                .iter()
                .filter(|(_, t)| !self.done.contains_key(&t.task_id))
                .count();
            let running = tasks
                .iter()
                .filter(|(_, t)| {
                    self.started.contains(&t.task_id) && !self.done.contains_key(&t.task_id)
                })
                .count();
            self.progress.show(running);
            if missing == 0 {
                return Ok(());
            }
            if last_log.elapsed() > Duration::from_secs(2) {
                self.progress.log(running);
                last_log = Instant::now();
            }
            match tokio::time::timeout(Duration::from_millis(500), self.results.recv()).await {
                Ok(Ok(m)) => {
                    let p = m.payload().unwrap_or_default().to_vec();
                    self.take(&p);
                }
                Ok(Err(KafkaError::PartitionEOF(_))) | Err(_) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "reading the results topic"),
            }
        }
    }

    /// Close the progress bar and log the totals.
    pub fn finish(&self) {
        self.progress.log(0);
        self.progress.bar.finish_and_clear();
    }
}

/// A set's row, or the set and why it did not run.
pub type RunResult = Result<Row, (ParamSet, String)>;

/// Tasks done, running, failed and the best so far, on a progress bar and in
/// the log.
struct Progress {
    metric: Metric,
    bar: indicatif::ProgressBar,
    total: usize,
    ok: usize,
    failed: usize,
    best: Option<Row>,
}

impl Progress {
    fn new(metric: Metric) -> Progress {
        let bar = crate::backtest::sets_bar(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} tasks ({elapsed}) {msg}")
                .expect("valid template"),
        );
        Progress {
            metric,
            bar,
            total: 0,
            ok: 0,
            failed: 0,
            best: None,
        }
    }

    fn add(&mut self, n: usize) {
        self.total += n;
        self.bar.set_length(self.total as u64);
    }

    fn result(&mut self, row: Option<Row>, worker: &str) {
        let Some(row) = row else {
            self.failed += 1;
            tracing::warn!(%worker, "sweep task failed");
            return;
        };
        self.ok += 1;
        let better = match &self.best {
            None => true,
            Some(b) => {
                let mut two = [b.clone(), row.clone()];
                sweep::rank(&mut two, self.metric);
                two[0].set.index == row.set.index
            }
        };
        if better {
            self.best = Some(row);
        }
    }

    fn best_text(&self) -> String {
        self.best.as_ref().map_or("none yet".into(), |b| {
            format!(
                "{} {} (set {})",
                self.metric.name(),
                b.shown(self.metric),
                b.set.index
            )
        })
    }

    fn show(&self, running: usize) {
        self.bar.set_position((self.ok + self.failed) as u64);
        self.bar.set_message(format!(
            "running {running}, failed {}, best {}",
            self.failed,
            self.best_text()
        ));
    }

    fn log(&self, running: usize) {
        tracing::info!(
            done = self.ok,
            running,
            failed = self.failed,
            total = self.total,
            best = %self.best_text(),
            "sweep progress"
        );
    }
}

/// Every set of the grid through the workers, ranked as a local sweep ranks.
pub async fn run_grid(sweep: &Sweep, coord: &mut Coordinator) -> anyhow::Result<Outcome> {
    let mut skipped = Vec::new();
    let mut tasks = Vec::new();
    for set in sweep::expand(&sweep.axes) {
        match sweep.config(&set) {
            Ok(_) => {
                let t = coord.factory.task(&set, None);
                tasks.push((set, t));
            }
            Err(why) => skipped.push((set, why)),
        }
    }
    let done = coord.run(&tasks).await?;
    coord.finish();
    Ok(sweep::outcome(sweep, coord.metric, done, skipped))
}

/// A random or TPE search through the workers: each batch is published and
/// waited for before the next is proposed (the same runs as a local search
/// with the same seed and batch). Returns the outcome and why the search
/// stopped early, if it did.
pub async fn run_search(
    sweep: &Sweep,
    coord: &mut Coordinator,
    opts: crate::optimise::SearchOptions,
) -> anyhow::Result<(Outcome, Option<String>)> {
    let mut search = crate::optimise::Search::new(crate::optimise::Space::of(&sweep.axes), opts);
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    loop {
        let work = crate::optimise::next_work(&mut search, sweep, &mut skipped);
        let Some(work) = work else { break };
        let tasks: Vec<(ParamSet, Task)> = work
            .into_iter()
            .map(|(set, _)| {
                let t = coord.factory.task(&set, None);
                (set, t)
            })
            .collect();
        let done = coord.run(&tasks).await?;
        crate::optimise::observe(&mut search, coord.metric, &done);
        rows.extend(done);
    }
    coord.finish();
    let stopped = search.stopped_early().map(String::from);
    Ok((sweep::outcome(sweep, coord.metric, rows, skipped), stopped))
}

// ---------------------------------------------------------------------------
// The worker

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub group: String,
    pub topics: Topics,
    /// Stop after this many tasks (run or failed).
    pub max_tasks: Option<u64>,
    /// Stop after this long without a task (at least `startup_grace` before the first).
    pub idle: Option<Duration>,
    pub startup_grace: Duration,
}

/// What a task message says of itself before it is read as a task.
#[derive(Deserialize)]
struct TaskHead {
    version: u32,
    #[serde(default)]
    task_id: String,
}

/// What a worker did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkerSummary {
    /// Tasks run to a result.
    pub ran: u64,
    /// Tasks that failed (their result says why).
    pub failed: u64,
    /// Task messages skipped: run before by this process.
    pub skipped: u64,
    /// Task messages sent to `topics.dead_letters` with the reason: not a
    /// task (`not_a_task`), or a task of another version (`task_version`).
    pub dead_letters: u64,
}

/// The worker's consumer context: with `rescan` every assigned partition is
/// read from its start and the loop skips what the group had committed
/// (tansu cannot fetch from inside a record batch, docs/recovery.md); each
/// assigned partition is marked so that the loop reads its committed offset
/// again before taking its next message.
struct WorkerContext {
    rescan: bool,
    assigned: Arc<Mutex<BTreeSet<i32>>>,
}

impl rdkafka::ClientContext for WorkerContext {}

impl rdkafka::consumer::ConsumerContext for WorkerContext {
    fn rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::bindings::rd_kafka_resp_err_t,
        tpl: &mut TopicPartitionList,
    ) {
        kafka::apply_rebalance(consumer, err, tpl, self.rescan, |parts| {
            self.assigned
                .lock()
                .expect("assigned lock")
                .extend(parts.iter().map(|p| p.1));
            tracing::info!(partitions = ?parts.iter().map(|p| p.1).collect::<Vec<_>>(), "sweep worker: task partitions assigned");
        });
    }
}

/// The worker's identity in its results: `host:pid`.
fn worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}:{}", std::process::id())
}

/// The worker's Kafka clients and state.
struct Worker {
    cfg: Loaded,
    bootstrap: String,
    opts: WorkerOptions,
    consumer: StreamConsumer<WorkerContext>,
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    producer: FutureProducer,
    name: String,
    /// Per partition, the group's committed offset as last read.
    committed: HashMap<i32, i64>,
    /// Task ids this process finished.
    finished: HashSet<String>,
    /// The events of the last data source read (its JSON, the events).
    cache: Option<(String, Arc<Vec<crate::backtest::Event>>)>,
    summary: WorkerSummary,
}

/// Run a worker against `bootstrap` until `opts` or `shutdown` stop it.
///
/// # Errors
/// The broker unreachable or `"embedded"`, or a failed publish (nothing of
/// the task is committed then).
pub async fn work(
    cfg: &Loaded,
    bootstrap: &str,
    opts: WorkerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<WorkerSummary> {
    anyhow::ensure!(
        bootstrap != "embedded",
        "a sweep worker needs the coordinator's Kafka cluster: pass --brokers HOST:PORT or set kafka.brokers (no cluster? `papertrader broker --listen 0.0.0.0:9092`)"
    );
    let base = kafka::client_config(&cfg.app.kafka, bootstrap);
    kafka::check_reachable_named(&base, bootstrap, &cfg.app.kafka).await?;
    kafka::ensure_topics(&base, &[opts.topics.tasks.as_str()], TASK_PARTITIONS).await?;
    kafka::ensure_topics(
        &base,
        &[
            opts.topics.results.as_str(),
            cfg.app.topics.dead_letters.as_str(),
        ],
        cfg.app.kafka.partitions,
    )
    .await?;
    let rescan = crate::kafka::needs_rescan(&cfg.app.kafka, &base).await;
    let assigned = Arc::new(Mutex::new(BTreeSet::new()));
    let mut cc = base.clone();
    cc.set("group.id", &opts.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    kafka::set_default(&mut cc, "fetch.wait.max.ms", "100");
    // A backtest may take long between two polls.
    kafka::set_default(&mut cc, "max.poll.interval.ms", "3600000");
    let consumer: StreamConsumer<WorkerContext> = cc
        .create_with_context(WorkerContext {
            rescan,
            assigned: assigned.clone(),
        })
        .context("creating the Kafka consumer")?;
    consumer
        .subscribe(&[opts.topics.tasks.as_str()])
        .context("subscribing to the tasks topic")?;
    let mut w = Worker {
        cfg: cfg.clone(),
        bootstrap: bootstrap.to_string(),
        producer: kafka::producer(&base)?,
        consumer,
        assigned,
        name: worker_name(),
        committed: HashMap::new(),
        finished: HashSet::new(),
        cache: None,
        summary: WorkerSummary::default(),
        opts,
    };
    tracing::info!(worker = %w.name, group = %w.opts.group, tasks = %w.opts.topics.tasks, results = %w.opts.topics.results, rescan, "sweep worker consuming");
    w.run(shutdown).await?;
    tracing::info!(
        ran = w.summary.ran,
        failed = w.summary.failed,
        skipped = w.summary.skipped,
        dead_letters = w.summary.dead_letters,
        "sweep worker stopped"
    );
    Ok(w.summary)
}

impl Worker {
    async fn run(&mut self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let started = Instant::now();
        let mut last: Option<Instant> = None;
        loop {
            let taken = self.summary.ran + self.summary.failed;
            if self.opts.max_tasks.is_some_and(|m| taken >= m) {
                return Ok(());
            }
            let wait = match (self.opts.idle, last) {
                (Some(idle), Some(at)) => Some(idle.saturating_sub(at.elapsed())),
                (Some(idle), None) => Some(
                    idle.max(self.opts.startup_grace)
                        .saturating_sub(started.elapsed()),
                ),
                (None, _) => None,
            };
            let m = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                m = tokio::time::timeout(wait.unwrap_or(Duration::from_secs(3600)), self.consumer.recv()) => m,
            };
            let Ok(m) = m else {
                if wait.is_some() {
                    return Ok(());
                }
                continue;
            };
            let m = m.context("reading the tasks topic")?.detach();
            if self.take(&m).await? {
                last = Some(Instant::now());
            }
        }
    }

    /// Whether `offset` of `partition` was committed by the group already
    /// (reading the committed offset again after an assignment).
    fn is_committed(&mut self, partition: i32, offset: i64) -> anyhow::Result<bool> {
        let fresh = self
            .assigned
            .lock()
            .expect("assigned lock")
            .remove(&partition);
        if fresh {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.opts.topics.tasks, partition);
            let c = tokio::task::block_in_place(|| {
                self.consumer
                    .committed_offsets(tpl, Duration::from_secs(10))
            })
            .context("reading the group's committed offsets")?;
            for e in c.elements() {
                if let Offset::Offset(o) = e.offset() {
                    self.committed.insert(partition, o);
                }
            }
        }
        Ok(self.committed.get(&partition).is_some_and(|c| offset < *c))
    }

    /// Handle one task message; `false` when it was skipped.
    async fn take(&mut self, m: &rdkafka::message::OwnedMessage) -> anyhow::Result<bool> {
        let (partition, offset) = (m.partition(), m.offset());
        if self.is_committed(partition, offset)? {
            return Ok(false);
        }
        // The version first: a task of another version may have another shape.
        let payload = m.payload().unwrap_or_default();
        let task = match serde_json::from_slice::<TaskHead>(payload) {
            Ok(h) if h.version != VERSION => Err(Rejection::new(
                "task_version",
                format!(
                    "task {} is of version {}, this worker runs version {VERSION}: run workers and coordinator of one papertrader version",
                    h.task_id, h.version
                ),
            )),
            _ => serde_json::from_slice::<Task>(payload).map_err(|e| {
                Rejection::new(
                    "not_a_task",
                    format!("not a sweep task (docs/sweeps.md has the task JSON): {e}"),
                )
            }),
        };
        let task = match task {
            Ok(t) if self.finished.contains(&t.task_id) => {
                self.summary.skipped += 1;
                self.commit(partition, offset)?;
                return Ok(false);
            }
            Ok(t) => t,
            Err(r) => {
                self.dead_letter(m, r).await?;
                return Ok(false);
            }
        };
        self.send(&task, Status::Started, None, None).await?;
        tracing::info!(task_id = %task.task_id, set = task.set, "sweep task started");
        let outcome = self.execute(&task).await;
        let (status, metrics, error) = match outcome {
            Ok(m) => (Status::Ok, Some(m), None),
            Err(e) => (Status::Failed, None, Some(format!("{e:#}"))),
        };
        tracing::info!(task_id = %task.task_id, set = task.set, ?status, "sweep task done");
        self.send(&task, status, metrics, error).await?;
        if status == Status::Ok {
            self.summary.ran += 1;
        } else {
            self.summary.failed += 1;
        }
        self.finished.insert(task.task_id.clone());
        self.commit(partition, offset)?;
        Ok(true)
    }

    /// Send an unusable task message to `topics.dead_letters` with the
    /// reason, wait for the broker's ack, then commit past it.
    async fn dead_letter(
        &mut self,
        m: &rdkafka::message::OwnedMessage,
        r: Rejection,
    ) -> anyhow::Result<()> {
        let origin = crate::domain::Origin {
            topic: m.topic().into(),
            partition: m.partition(),
            offset: m.offset(),
        };
        tracing::warn!(%origin, reason = r.code, detail = %r.detail, "sweep task dead-lettered");
        let dl =
            crate::engine::dead_letter_msg(&origin, m.key(), m.payload().unwrap_or_default(), r);
        let topic = self.cfg.app.topics.dead_letters.clone();
        let payload = crate::domain::Output::DeadLetter(dl).to_json();
        let mut record = FutureRecord::to(&topic).payload(&payload);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        self.producer
            .send(record, Duration::from_secs(60))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("publishing the dead letter of {origin}: {e}"))?;
        self.summary.dead_letters += 1;
        self.commit(origin.partition, origin.offset)
    }

    /// The task's events (cached per data source) and its backtest.
    async fn execute(&mut self, task: &Task) -> anyhow::Result<crate::sweep_task::Metrics> {
        let key = format!(
            "{}{}",
            serde_json::to_string(&task.data)?,
            serde_json::to_string(&task.app)?
        );
        let events = match &self.cache {
            Some((k, ev)) if *k == key => ev.clone(),
            _ => {
                let mut cfg = task.config()?;
                cfg.app.kafka = self.cfg.app.kafka.clone();
                let ev = Arc::new(task.data.events(&cfg, &self.bootstrap).await?);
                self.cache = Some((key, ev.clone()));
                ev
            }
        };
        let task = task.clone();
        tokio::task::spawn_blocking(move || task.run(&events)).await?
    }

    async fn send(
        &self,
        task: &Task,
        status: Status,
        metrics: Option<crate::sweep_task::Metrics>,
        error: Option<String>,
    ) -> anyhow::Result<()> {
        let r = TaskResult {
            version: VERSION,
            sweep_id: task.sweep_id.clone(),
            task_id: task.task_id.clone(),
            set: task.set,
            status,
            worker: self.name.clone(),
            metrics,
            error,
        };
        let payload = serde_json::to_vec(&r)?;
        self.producer
            .send(
                FutureRecord::to(&self.opts.topics.results)
                    .key(&task.task_id)
                    .payload(&payload),
                Duration::from_secs(60),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("publishing the result of {}: {e}", task.task_id))?;
        Ok(())
    }

    /// Commit past `offset`; a partition lost to a rebalance meanwhile is not
    /// an error (its next owner runs the task again, counted once).
    fn commit(&mut self, partition: i32, offset: i64) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.opts.topics.tasks,
            partition,
            Offset::Offset(offset + 1),
        )?;
        let r = tokio::task::block_in_place(|| self.consumer.commit(&tpl, CommitMode::Sync));
        match r {
            Ok(()) => {
                self.committed.insert(partition, offset + 1);
            }
            Err(e) => {
                tracing::warn!(partition, offset, error = %e, "committing a task's offset failed (the partition moved?); another worker may run it again")
            }
        }
        Ok(())
    }
}
