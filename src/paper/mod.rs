//! Paper mode: the engine fed by a Kafka consumer group, on the wall clock.
//!
//! [`run_with`] is a [`Session`] stepped in a loop: wait for input
//! ([`Session::wait`]), gather a batch ([`Session::gather`]), put it in order and
//! route it to the shards ([`Session::route`]), run it through the engines
//! ([`Session::process`]), publish the outputs and wait for their
//! acknowledgements ([`Session::publish`]), then checkpoint and commit
//! ([`Session::checkpoint_and_commit`]). With a checkpoint store (`[state]`,
//! [`crate::state`]) it checkpoints every `state.every_events` messages or
//! `state.every` and commits the offsets of the checkpoint; without one, it
//! commits the batch's offsets.
//!
//! A restart loads the checkpoint, seeks every assigned input partition to the
//! checkpoint's offset (on assignment, [`SeekOnAssign`]), and first reads back
//! what the output partitions hold past the checkpoint: outputs whose ids are
//! there are not published again. A crash at any point therefore neither loses
//! nor doubles an output. When publishing fails (broker unreachable), the loop
//! keeps its state, retries with backoff ([`policy::publish_backoff`]), and
//! before each retry reads back what did reach the topics.

mod background;
mod consumer;
mod control;
pub mod policy;
mod shards;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::alerts::Alerts;
use crate::config::{InputOrder, Loaded, ShardMode, Span};
use crate::domain::Origin;
use crate::domain::Output;
use crate::engine;
use crate::kafka::{self, Publisher};
use crate::merge::{Merge, PartitionId, Start};
use crate::monitor::{ControlRequest, Monitor};
use crate::state::Store;
use crate::step::{step, Input};
use crate::summary::Summary;
use crate::wire::InputKind;

use background::{AlertSinks, Background};
pub use consumer::SeekOnAssign;
use consumer::{
    cached_high_watermark, cached_watermarks, commit, group_offsets, recv_within, Resumed,
};
use policy::{publish_backoff, CheckpointClock};
use shards::{Ident, Positions, Shards};

/// An input message as received, with its decoding when the event-time merge
/// has already decoded it.
type Item = (
    rdkafka::message::OwnedMessage,
    Instant,
    Option<Result<crate::domain::MarketEvent, crate::wire::Rejection>>,
);

/// When paper mode stops by itself.
#[derive(Debug, Clone, Default)]
pub struct StopWhen {
    /// Stop after this long without an input message. Before the first one,
    /// `max(idle, startup_grace)` is waited: joining the consumer group and
    /// getting partitions can take that long.
    pub idle: Option<Duration>,
    /// Stop after this many input messages (valid or dead-lettered).
    pub max_events: Option<u64>,
    /// The least wait for the first input with `idle` set; `None`:
    /// [`STARTUP_GRACE`].
    pub startup_grace: Option<Duration>,
}

/// The default least wait for the first input (`paper --startup-grace`).
pub const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// Run paper mode against `bootstrap` until `stop` or `shutdown`, and return the summary.
///
/// A `shutdown` that comes while the broker is unreachable does not drop the
/// outputs being published: they are retried until the broker takes them, so
/// bound the wait from outside (the CLI's `--shutdown-timeout` and second
/// Ctrl-C end the process; the last checkpoint and committed offsets stand).
pub async fn run(
    cfg: &Loaded,
    bootstrap: &str,
    stop: StopWhen,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let monitor = Arc::new(Monitor::from_config(cfg));
    run_with(cfg, bootstrap, stop, shutdown, monitor).await
}

/// [`run`] feeding the given `monitor` (metrics and dashboard state), which the
/// HTTP server of `[http]` serves while the run lasts; its bound address is
/// [`Monitor::http_addr`] once listening.
pub async fn run_with(
    cfg: &Loaded,
    bootstrap: &str,
    stop: StopWhen,
    shutdown: impl Future<Output = ()>,
    monitor: Arc<Monitor>,
) -> anyhow::Result<Summary> {
    let mut session = Session::start(cfg, bootstrap, stop, monitor).await?;
    tokio::pin!(shutdown);
    while !session.reached_max_events() {
        let Some(first) = session.wait(&mut shutdown).await else {
            break;
        };
        let first = match first {
            Wake::Control(req) => {
                if session.control(req, &mut shutdown).await? {
                    continue;
                }
                break;
            }
            w => w,
        };
        let mut batch = session.gather(first);
        session.route(&mut batch).await?;
        if batch.is_empty() {
            if session.drained() {
                tracing::info!("input idle, stopping");
                break;
            }
            continue;
        }
        session.process(&mut batch);
        if !session.publish(&mut shutdown).await? {
            break;
        }
        session.checkpoint_and_commit(&batch).await?;
        if session.stopping {
            // The stop came while publishing; the shutdown future is spent.
            break;
        }
    }
    session.finish().await
}

/// The queue of operator actions from the HTTP API, the strategies' state for
/// the dashboard, and the controls token printed once when it was made at start.
fn open_controls(
    app: &crate::config::AppConfig,
    monitor: &Monitor,
    shards: &mut Shards,
) -> tokio::sync::mpsc::Receiver<ControlRequest> {
    let (tx, controls) = tokio::sync::mpsc::channel(16);
    monitor.set_controls(tx);
    if let Some(e) = shards.engines_mut().next() {
        monitor.set_status(e.status());
    }
    if app.http.enabled {
        if let Some(token) = monitor.made_token() {
            // Printed once, not logged: the controls API's credential.
            let url = monitor.http_addr().map_or(String::new(), |a| {
                format!(" open http://{a}/#token={token} for the dashboard's buttons;")
            });
            eprintln!(
                "papertrader: controls token {token}:{url} the API takes `Authorization: Bearer {token}` (http.token sets a fixed one)"
            );
        }
    }
    controls
}

/// How long a resumed partition may deliver nothing before it is checked for
/// a broker that stalls it (see `Session::stalled_resumes`).
const RESUME_GRACE: Duration = Duration::from_secs(3);

/// What [`Session::wait`] ended with.
enum Wake {
    /// A message arrived.
    Message(rdkafka::message::OwnedMessage),
    /// Held messages are due to be looked at again, or (`drain`) the input went
    /// idle with messages still held: take them all, then stop.
    Held { drain: bool },
    /// An operator's action from the HTTP API.
    Control(ControlRequest),
}

/// One paper-mode run: the consumer, the engines, the publisher, the
/// checkpoint store and everything the loop carries from batch to batch.
struct Session<'a> {
    cfg: &'a Loaded,
    stop: StopWhen,
    monitor: Arc<Monitor>,
    base: rdkafka::ClientConfig,
    /// The run's start: the origin of the alert rules' wall time.
    clock: Instant,
    background: Background,
    sinks: AlertSinks,
    watch_alerts: bool,
    publisher: Publisher,
    store: Option<Store>,
    shards: Shards,
    consumer: StreamConsumer<SeekOnAssign>,
    kinds: HashMap<String, InputKind>,
    /// Read every assigned partition from its start (`kafka.seek = "rescan"`).
    rescan: bool,
    /// Next offset per input partition: from the checkpoint, then as processed
    /// (shared with the rebalance callback).
    positions: Arc<Mutex<Positions>>,
    /// The input partitions this process holds (kept by the rebalance callback).
    assigned: Arc<Mutex<BTreeSet<(String, i32)>>>,
    /// The offset each partition was resumed at, until its first record is
    /// checked (noted by the rebalance callback).
    resumed: Arc<Mutex<Resumed>>,
    /// Partitions re-read from their start because the broker delivered a later
    /// offset than asked for: (asked, delivered), until the re-read passes `asked`.
    rescanning: BTreeMap<(String, i32), (i64, i64)>,
    /// Input offsets reached: the checkpoint's, then as processed.
    committed: Positions,
    /// Ids a run before a restart already published: not published again.
    published: HashSet<String>,
    duplicates: u64,
    /// `engine.order = "event_time"`: messages wait in `merge` for the partitions behind.
    event_time: bool,
    merge: Merge<Item>,
    forced_seen: u64,
    /// Messages delivered again at an offset the merge already had (a seek back).
    redelivered: u64,
    /// `input.max_ahead`, ns.
    max_ahead: Option<i64>,
    checkpoint: CheckpointClock,
    /// The current batch: the input went idle with messages held.
    drain: bool,
    seen: u64,
    started: bool,
    last_input: Instant,
    /// The batch's outputs, alerts included.
    out: Vec<Output>,
    /// A stop was requested while outputs were being retried: finish once they
    /// are published.
    stopping: bool,
    /// Receive times of the inputs that caused orders (tick-to-order latency).
    order_causes: Vec<Instant>,
    /// The batch's next offset per input partition.
    offsets: Positions,
    /// Operator actions from the HTTP API ([`control`]).
    controls: tokio::sync::mpsc::Receiver<ControlRequest>,
    /// The batch's admitted trades, for the dashboard's candles.
    ticks: Vec<crate::domain::Tick>,
    /// Pause, resume and kill actions of this run, for shards loaded later.
    controls_applied: Vec<(crate::engine::ControlAction, String)>,
    /// The strategies' state last shown on the dashboard.
    status_seen: Vec<crate::engine::StrategyStatus>,
}

impl<'a> Session<'a> {
    /// Check the broker, start the background tasks, create the topics, open
    /// the checkpoint store, load the engine(s) and subscribe.
    async fn start(
        cfg: &'a Loaded,
        bootstrap: &str,
        stop: StopWhen,
        monitor: Arc<Monitor>,
    ) -> anyhow::Result<Session<'a>> {
        let app = &cfg.app;
        let base = kafka::client_config(&app.kafka, bootstrap);
        kafka::check_reachable(&base, bootstrap).await?;
        monitor.set_broker_ok(true);
        let clock = Instant::now();
        let sinks = AlertSinks {
            alerts: Arc::new(Mutex::new(Alerts::new(&app.alerts))),
            producer: kafka::producer(&base)?,
            topic: app.topics.alerts.clone(),
            webhook: background::webhook_sender(app),
        };
        let watch_alerts = !sinks.alerts.lock().expect("alerts lock").is_empty();
        let background = Background::start(app, &base, &monitor, &sinks, clock).await?;
        if app.kafka.create_topics {
            let mut names: Vec<&str> = app.topics.inputs().iter().map(|(t, _)| *t).collect();
            names.extend(app.topics.outputs());
            names.push(&app.topics.control);
            kafka::ensure_topics(&base, &names, app.kafka.partitions).await?;
        }
        let publisher = Publisher::new(kafka::output_producer(&base)?, &app.topics);
        let spec = cfg.engine_spec();
        let ident = Ident {
            group: app.kafka.group_id.clone(),
            fingerprint: engine::config_fingerprint(&spec),
            cluster: crate::kafka::cluster_id(&base).await,
        };
        let store = shards::open_store(cfg, &base).await?;
        let positions: Arc<Mutex<Positions>> = Arc::default();
        let assigned: Arc<Mutex<BTreeSet<(String, i32)>>> = Arc::default();
        let resumed: Arc<Mutex<Resumed>> = Arc::default();
        let rescan = app.kafka.rescan_on(&ident.cluster);
        tracing::info!(seek = ?app.kafka.seek, cluster = %ident.cluster, resume = if rescan { "rescan" } else { "offset" },
            "how resumed partitions are positioned (kafka.seek; docs/recovery.md)");
        let mut shards = Shards::new(spec, ident, app.engine.shards == ShardMode::Partition);
        let mut published = HashSet::new();
        if !shards.by_partition() {
            let (engine, ids) = shards::load(
                &shards.loading(),
                store.as_ref(),
                &base,
                &publisher,
                rescan,
                &positions,
            )
            .await?;
            shards.insert(0, engine);
            published = ids;
        }
        let consumer = subscribe(cfg, &base, &positions, &assigned, &resumed, rescan)?;
        let controls = open_controls(app, &monitor, &mut shards);
        let kinds: HashMap<String, InputKind> = app
            .topics
            .inputs()
            .iter()
            .map(|(t, k)| (t.to_string(), *k))
            .collect();
        let committed = positions.lock().expect("positions lock").clone();
        let merge = Merge::new(
            app.engine.order_hold.to_std(),
            app.engine.order_idle.to_std(),
            app.engine.order_max_held,
        );
        Ok(Session {
            cfg,
            stop,
            monitor,
            base,
            clock,
            background,
            sinks,
            watch_alerts,
            publisher,
            store,
            shards,
            consumer,
            kinds,
            rescan,
            positions,
            assigned,
            resumed,
            rescanning: BTreeMap::new(),
            committed,
            published,
            duplicates: 0,
            event_time: app.engine.order == InputOrder::EventTime,
            merge,
            forced_seen: 0,
            redelivered: 0,
            max_ahead: app.input.max_ahead.map(Span::nanos),
            checkpoint: CheckpointClock::new(
                app.state.every_events,
                app.state.every.to_std(),
                Instant::now(),
            ),
            drain: false,
            seen: 0,
            started: false,
            last_input: Instant::now(),
            out: Vec::new(),
            order_causes: Vec::new(),
            stopping: false,
            offsets: BTreeMap::new(),
            controls,
            ticks: Vec::new(),
            controls_applied: Vec::new(),
            status_seen: Vec::new(),
        })
    }

    fn reached_max_events(&self) -> bool {
        self.stop.max_events.is_some_and(|m| self.seen >= m)
    }

    /// This batch drained the held messages of an idle input, and none are left.
    fn drained(&self) -> bool {
        self.drain && self.merge.is_empty()
    }

    /// Wait for the next input message, writing a checkpoint that falls due
    /// meanwhile. `None`: stop (shutdown, or the input went idle with nothing held).
    async fn wait<F: Future<Output = ()>>(&mut self, shutdown: &mut Pin<&mut F>) -> Option<Wake> {
        let grace = self.stop.startup_grace.unwrap_or(STARTUP_GRACE);
        let first_wait = self.stop.idle.map(|i| i.max(grace));
        let wait = if self.started {
            self.stop.idle
        } else {
            first_wait
        };
        let idle_at = wait.map(|w| self.last_input + w);
        loop {
            // A checkpoint falls due with time even when no input comes.
            let checkpoint_at = self
                .store
                .is_some()
                .then(|| self.checkpoint.due_while_idle())
                .flatten();
            // Held messages are looked at again when a partition behind turns
            // idle, and resumed partitions when their grace has passed.
            let resume_at = self
                .resumed
                .lock()
                .expect("resumed lock")
                .values()
                .map(|(_, at)| *at + RESUME_GRACE)
                .min();
            let wake_at = [self.merge.wake_at(Instant::now()), resume_at]
                .into_iter()
                .flatten()
                .min();
            // At most a second per receive: partitions assigned meanwhile (in the
            // receive) bring resume deadlines that this loop must see.
            let tick = Some(Instant::now() + Duration::from_secs(1));
            let until = [idle_at, checkpoint_at, wake_at, tick]
                .into_iter()
                .flatten()
                .min();
            let m = tokio::select! {
                _ = shutdown.as_mut() => return None,
                Some(req) = self.controls.recv() => return Some(Wake::Control(req)),
                m = recv_within(&self.consumer, until.map(|u| u.saturating_duration_since(Instant::now()))) => m,
            };
            if let Some(m) = m {
                return Some(Wake::Message(m));
            }
            if checkpoint_at.is_some_and(|at| Instant::now() >= at) {
                self.checkpoint_while_idle().await;
                continue;
            }
            if wake_at.is_some_and(|a| Instant::now() >= a) {
                return Some(Wake::Held { drain: false });
            }
            if idle_at.is_some_and(|a| Instant::now() >= a) {
                if !self.merge.is_empty() {
                    return Some(Wake::Held { drain: true });
                }
                tracing::info!("input idle, stopping");
                return None;
            }
        }
    }

    /// The checkpoint of what is pending while the input is quiet.
    async fn checkpoint_while_idle(&mut self) {
        match self.save_checkpoints().await {
            Ok(()) => {
                self.checkpoint.written(Instant::now());
                commit(&self.consumer, &self.committed, CommitMode::Async);
            }
            Err(e) => {
                tracing::error!(error = %e, "writing the checkpoint failed; retrying");
                self.checkpoint.idle_attempt_failed(Instant::now());
            }
        }
    }

    /// The first message and what else is ready at once, up to `engine.max_batch`
    /// (and `--max-events`).
    fn gather(&mut self, first: Wake) -> Vec<Item> {
        let mut batch: Vec<Item> = Vec::new();
        self.drain = false;
        match first {
            Wake::Message(m) => {
                self.started = true;
                self.last_input = Instant::now();
                batch.push((m, self.last_input, None));
            }
            Wake::Held { drain } => self.drain = drain,
            Wake::Control(_) => unreachable!("controls are applied before gathering"),
        }
        let room = self.room();
        while !batch.is_empty() && batch.len() < room {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push((m.detach(), Instant::now(), None)),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                None => break,
            }
        }
        batch
    }

    fn room(&self) -> usize {
        self.cfg.app.engine.max_batch.min(
            self.stop
                .max_events
                .map_or(usize::MAX, |m| (m - self.seen) as usize),
        )
    }

    /// Keep what this process still holds, put it in event-time order (or
    /// arrival order), hand over and load shards, and drop what a checkpoint
    /// already covers.
    async fn route(&mut self, batch: &mut Vec<Item>) -> anyhow::Result<()> {
        {
            // Messages of partitions revoked while the batch was gathered are
            // another process's now.
            let held = self.assigned.lock().expect("assignment lock").clone();
            batch.retain(|(m, _, _)| held.contains(&(m.topic().to_string(), m.partition())));
            self.verify_resumed(batch)?;
            if self.event_time {
                self.order(batch, &held);
            }
            for p in self.shards.hand_over(&held) {
                self.committed.retain(|(_, q), _| *q != p);
                self.positions
                    .lock()
                    .expect("positions lock")
                    .retain(|(_, q), _| *q != p);
            }
        }
        self.load_new_shards(batch).await?;
        // Skip what a checkpoint already covers (a partition read from its
        // start, or resumed at a committed offset behind the checkpoint).
        let committed = &self.committed;
        batch.retain(|(m, _, _)| {
            committed
                .get(&(m.topic().to_string(), m.partition()))
                .is_none_or(|next| m.offset() >= *next)
        });
        Ok(())
    }

    /// The first record of a resumed partition must be at the offset it was
    /// resumed at. A broker that cannot fetch from inside a record batch (tansu)
    /// answers an offset inside one with the next batch: then the partition is
    /// read again from its start, what the checkpoint covers is skipped as on
    /// any re-read, and the batch's records of it wait for the re-read. Whether
    /// the broker really skipped records is known once the re-read passes the
    /// asked offset: a record below the delivered one means it did (logged as
    /// a warning); none means the gap holds no records (compaction, transaction
    /// markers), logged as information. Both are counted
    /// (`papertrader_resume_rescans_total`).
    fn verify_resumed(&mut self, batch: &mut Vec<Item>) -> anyhow::Result<()> {
        let mut jumped: BTreeSet<(String, i32)> = BTreeSet::new();
        {
            let mut resumed = self.resumed.lock().expect("resumed lock");
            if resumed.is_empty() && self.rescanning.is_empty() {
                return Ok(());
            }
            for (m, _, _) in batch.iter() {
                let id = (m.topic().to_string(), m.partition());
                if jumped.contains(&id) {
                    continue;
                }
                if let Some((asked, _)) = resumed.remove(&id) {
                    if m.offset() > asked {
                        tracing::info!(topic = %id.0, partition = id.1, asked, delivered = m.offset(),
                            "a resumed partition began past its offset; reading it again from its start");
                        self.rescanning.insert(id.clone(), (asked, m.offset()));
                        jumped.insert(id);
                    }
                } else if let Some(&(asked, delivered)) = self.rescanning.get(&id) {
                    if m.offset() >= asked {
                        self.rescanning.remove(&id);
                        let outcome = if m.offset() < delivered {
                            tracing::warn!(topic = %id.0, partition = id.1, asked, delivered, first = m.offset(),
                                "the broker skipped records when asked for an offset inside a record batch; they are read now (kafka.seek = \"rescan\" avoids the re-read)");
                            "skipped_records"
                        } else {
                            tracing::info!(topic = %id.0, partition = id.1, asked, delivered,
                                "the offsets between hold no records (compaction or transaction markers)");
                            "empty_gap"
                        };
                        self.monitor
                            .metrics
                            .resume_rescans
                            .with_label_values(&[outcome])
                            .inc();
                    }
                }
            }
        }
        jumped.extend(self.stalled_resumes());
        for (t, p) in &jumped {
            self.consumer
                .seek(t, *p, Offset::Beginning, Duration::from_secs(10))
                .with_context(|| format!("re-reading {t}/{p} from its start"))?;
        }
        if !jumped.is_empty() {
            batch.retain(|(m, _, _)| !jumped.contains(&(m.topic().to_string(), m.partition())));
        }
        Ok(())
    }

    /// Resumed partitions that delivered nothing for [`RESUME_GRACE`] although
    /// records lie at or past the offset asked for: a broker that answers an
    /// offset inside the last record batch with nothing (tansu) stalls them.
    /// They are re-read from their start like a partition that began past its
    /// offset; one with nothing to read yet is looked at again later.
    fn stalled_resumes(&mut self) -> Vec<(String, i32)> {
        let now = Instant::now();
        let due: Vec<((String, i32), i64)> = self
            .resumed
            .lock()
            .expect("resumed lock")
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) >= RESUME_GRACE)
            .map(|(id, (asked, _))| (id.clone(), *asked))
            .collect();
        let mut stalled = Vec::new();
        for (id, asked) in due {
            // The high watermark of the broker's last fetch answer (which a
            // stalled fetch carries too); asked for only when no fetch has
            // answered yet. tansu's ListOffsets answers the last record batch's
            // base offset + 1, too low for a batch of several records.
            let high = match cached_watermarks(&self.consumer, &id.0, id.1) {
                Some((_, high)) => Ok(high),
                None => self
                    .consumer
                    .fetch_watermarks(&id.0, id.1, Duration::from_secs(5))
                    .map(|(_, high)| high),
            };
            if let Err(e) = &high {
                tracing::warn!(topic = %id.0, partition = id.1, error = %e, "the watermarks of a resumed partition");
            }
            let mut resumed = self.resumed.lock().expect("resumed lock");
            match high {
                Ok(high) if high > asked => {
                    tracing::info!(topic = %id.0, partition = id.1, asked, high,
                        "a resumed partition delivered nothing although records lie past its offset; reading it again from its start");
                    resumed.remove(&id);
                    self.rescanning.insert(id.clone(), (asked, high));
                    stalled.push(id);
                }
                // Nothing to read yet (or no answer): look again later.
                _ => {
                    tracing::debug!(topic = %id.0, partition = id.1, asked, ?high,
                        "a resumed partition has nothing past its offset yet");
                    resumed.insert(id, (asked, now));
                }
            }
        }
        stalled
    }

    /// `engine.order = "event_time"`: hold the batch's messages in the merge and
    /// take out those that no partition behind can still precede.
    fn order(&mut self, batch: &mut Vec<Item>, held: &BTreeSet<(String, i32)>) {
        let now = Instant::now();
        let (rescan, positions) = (self.rescan, &self.positions);
        let start = |p: &PartitionId| {
            if rescan {
                Start::Beginning
            } else {
                positions
                    .lock()
                    .expect("positions lock")
                    .get(p)
                    .map_or(Start::Unknown, |o| Start::At(*o))
            }
        };
        let dropped = self.merge.assign(held, start, now);
        // A resumed partition that has delivered nothing yet may be stalled by
        // the broker: it holds the others back until its grace has passed.
        for (id, (_, at)) in self.resumed.lock().expect("resumed lock").iter() {
            if now < *at + RESUME_GRACE {
                self.merge.keep_waiting(id, now);
            }
        }
        if dropped > 0 {
            tracing::info!(dropped, "held messages of revoked partitions dropped");
        }
        for (m, received, _) in batch.drain(..) {
            let decoded = crate::wire::decode(self.kinds[m.topic()], m.payload().unwrap_or(&[]));
            let ts = decoded.as_ref().ok().map(|e| e.ts());
            let (topic, partition, offset) = (m.topic().to_string(), m.partition(), m.offset());
            if !self.merge.push(
                &topic,
                partition,
                offset,
                ts,
                (m, received, Some(decoded)),
                now,
            ) {
                self.redelivered += 1;
            }
        }
        let room = self.room();
        let consumer = &self.consumer;
        let marks = |t: &str, p: i32| cached_watermarks(consumer, t, p);
        if self.drain {
            while batch.len() < room {
                match self.merge.pop_any() {
                    Some(item) => batch.push(item),
                    None => break,
                }
            }
        } else {
            *batch = self.merge.pop_up_to(room, &marks, now);
        }
        if batch.is_empty() && !self.merge.is_empty() && tracing::enabled!(tracing::Level::DEBUG) {
            let behind: Vec<String> = self
                .merge
                .waiting_for(&marks, now)
                .into_iter()
                .map(|(t, p)| format!("{t}/{p} at {:?}", cached_watermarks(consumer, t, *p)))
                .collect();
            tracing::debug!(
                held = self.merge.len(),
                ?behind,
                "event-time order: waiting"
            );
        }
        if self.merge.forced() > self.forced_seen {
            if self.forced_seen == 0 {
                tracing::warn!(held = self.merge.len(), max_held = self.cfg.app.engine.order_max_held,
                    "engine.order_max_held reached: taking messages before every input partition could speak, so the order now depends on fetch timing");
            }
            self.forced_seen = self.merge.forced();
        }
    }

    /// `engine.shards = "partition"`: a partition number seen for the first
    /// time gets its shard from the checkpoint.
    async fn load_new_shards(&mut self, batch: &[Item]) -> anyhow::Result<()> {
        if !self.shards.by_partition() {
            return Ok(());
        }
        let new: BTreeSet<i32> = batch
            .iter()
            .map(|(m, _, _)| m.partition())
            .filter(|p| !self.shards.has(*p))
            .collect();
        for p in new {
            let shard_store = self.store.as_ref().map(|s| s.shard(p));
            let (engine, ids) = shards::load(
                &self.shards.loading(),
                shard_store.as_ref(),
                &self.base,
                &self.publisher,
                self.rescan,
                &self.positions,
            )
            .await?;
            let mut engine = engine;
            self.catch_up_controls(&mut engine);
            self.shards.insert(p, engine);
            self.published.extend(ids);
            let pos = self.positions.lock().expect("positions lock");
            self.committed.extend(
                pos.iter()
                    .filter(|((_, q), _)| *q == p)
                    .map(|(k, v)| (k.clone(), *v)),
            );
        }
        Ok(())
    }

    /// Run every message of the batch through its shard's engine and the alert
    /// rules, and drop the outputs a run before a restart already published.
    fn process(&mut self, batch: &mut [Item]) {
        let not_after = self.max_ahead.map(|a| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            now.saturating_add(a)
        });
        for engine in self.shards.engines_mut() {
            engine.set_not_after(not_after);
        }
        self.offsets.clear();
        self.monitor
            .on_inputs(batch.iter().map(|(m, _, _)| m.topic()), Instant::now());
        for (m, received, decoded) in batch.iter_mut() {
            self.process_one(m, *received, decoded.take());
        }
        self.seen += batch.len() as u64;
        // What a run before a restart already published is not published again.
        if !self.published.is_empty() {
            let before = self.out.len();
            let published = &mut self.published;
            self.out.retain(|o| !published.remove(o.id()));
            self.duplicates += (before - self.out.len()) as u64;
        }
    }

    /// One input message: decoded (unless the merge did), through the engine,
    /// then the alert rules when the engine admitted it.
    fn process_one(
        &mut self,
        m: &rdkafka::message::OwnedMessage,
        received: Instant,
        decoded: Option<Result<crate::domain::MarketEvent, crate::wire::Rejection>>,
    ) {
        let origin = Origin {
            topic: m.topic().into(),
            partition: m.partition(),
            offset: m.offset(),
        };
        let kind = self.kinds[m.topic()];
        let payload = m.payload().unwrap_or(&[]);
        let decoded = decoded.unwrap_or_else(|| crate::wire::decode(kind, payload));
        let tick = match &decoded {
            Ok(crate::domain::MarketEvent::Tick(t)) => Some(t.clone()),
            _ => None,
        };
        let before = self.out.len();
        let engine = self.shards.engine(m.partition());
        let started = Instant::now();
        let mut alerts = self
            .watch_alerts
            .then(|| self.sinks.alerts.lock().expect("alerts lock"));
        let input = Input {
            kind,
            origin: &origin,
            key: m.key(),
            payload,
            decoded: Some(decoded),
        };
        let now = received.duration_since(self.clock);
        step(engine, alerts.as_deref_mut(), input, now, &mut self.out);
        drop(alerts);
        // Admitted trades go into the dashboard's candles.
        if let Some(t) = tick {
            if !self.out[before..]
                .iter()
                .any(|o| matches!(o, Output::DeadLetter(_)))
            {
                self.ticks.push(t);
            }
        }
        self.monitor
            .metrics
            .engine_step
            .observe(started.elapsed().as_secs_f64());
        if self.out[before..]
            .iter()
            .any(|o| matches!(o, Output::Order(_)))
        {
            self.order_causes.push(received);
        }
        self.offsets
            .insert((origin.topic.into(), origin.partition), origin.offset + 1);
    }

    /// Publish the batch's outputs (alerts included) and wait for every
    /// acknowledgement, retrying with backoff while the broker is unreachable,
    /// also after a stop was requested (`stopping`): the caller bounds that
    /// wait. `false`: not published (the batch's offsets stay uncommitted, so
    /// it is replayed by the next run).
    async fn publish<F: Future<Output = ()>>(
        &mut self,
        shutdown: &mut Pin<&mut F>,
    ) -> anyhow::Result<bool> {
        if !self.publish_outputs(shutdown).await? {
            return Ok(false);
        }
        let acked = Instant::now();
        for t in self.order_causes.drain(..) {
            self.monitor
                .metrics
                .tick_to_order
                .observe(acked.duration_since(t).as_secs_f64());
        }
        self.monitor.on_published(&self.out, &[]);
        self.monitor.on_ticks(&self.ticks);
        self.ticks.clear();
        self.refresh_status();
        if let Some(w) = &self.sinks.webhook {
            for o in &self.out {
                if let Output::Alert(a) = o {
                    let _ = w.send(a.clone());
                }
            }
        }
        self.out.clear();
        Ok(true)
    }

    /// The outputs, acknowledged by the broker. A failed send is retried after
    /// a backoff, once a read-back of the topics shows it did not arrive after all.
    async fn publish_outputs<F: Future<Output = ()>>(
        &mut self,
        shutdown: &mut Pin<&mut F>,
    ) -> anyhow::Result<bool> {
        let written_before = self.publisher.written();
        let mut pending: Vec<usize> = (0..self.out.len()).collect();
        let mut attempt = 0u32;
        loop {
            let failed = self.publisher.publish(&self.out, &pending).await;
            if failed.is_empty() {
                if attempt > 0 {
                    tracing::info!(attempt, "outputs published; the broker is back");
                    self.monitor.set_broker_ok(true);
                }
                return Ok(true);
            }
            if let Some((_, e)) = failed.iter().find(|(_, e)| kafka::is_permanent(e)) {
                anyhow::bail!(
                    "the broker refused an output ({e}); stopping without committing the offsets of this batch"
                );
            }
            self.monitor.set_broker_ok(false);
            pending = failed.iter().map(|(i, _)| *i).collect();
            // Wait, then find out which of the failed sends reached the topics
            // anyway (a lost acknowledgement) and resend only the others.
            loop {
                attempt += 1;
                let backoff = publish_backoff(attempt);
                tracing::warn!(error = %failed[0].1, unpublished = pending.len(), attempt, ?backoff,
                    "publishing outputs failed; keeping the state and retrying");
                tokio::select! {
                    _ = shutdown.as_mut(), if !self.stopping => {
                        // Keep trying: the outputs are published before the
                        // stop, or the caller bounds the wait (the CLI's
                        // --shutdown-timeout; a second Ctrl-C). Either way the
                        // offsets of this batch stay uncommitted until then.
                        self.stopping = true;
                        tracing::warn!(unpublished = pending.len(),
                            "stop requested while outputs are unpublished: still trying to publish them; the offsets of this batch stay uncommitted until they are");
                    }
                    _ = tokio::time::sleep(backoff) => {}
                }
                match shards::read_back(&self.base, &self.publisher, &written_before, self.rescan)
                    .await
                {
                    Ok(there) => {
                        let out = &self.out;
                        pending.retain(|&i| !there.contains(out[i].id()));
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "the broker is still unreachable"),
                }
            }
            if pending.is_empty() {
                return Ok(true);
            }
        }
    }

    /// The batch is published: advance the input positions, report the lag,
    /// and commit (every batch without a store; after a due checkpoint with one).
    async fn checkpoint_and_commit(&mut self, batch: &[Item]) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &self.offsets {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
            if let Some(high) = cached_high_watermark(&self.consumer, t, *p) {
                self.monitor
                    .metrics
                    .consumer_lag
                    .with_label_values(&[t.as_str(), &p.to_string()])
                    .set((high - o).max(0));
            }
        }
        self.positions
            .lock()
            .expect("positions lock")
            .extend(self.offsets.iter().map(|(k, v)| (k.clone(), *v)));
        self.committed.extend(std::mem::take(&mut self.offsets));
        self.checkpoint.processed(batch.len() as u64);
        if self.store.is_none() {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(error = %e, "committing offsets failed; they will be committed with the next batch");
            }
            return Ok(());
        }
        if self.checkpoint.due_after_batch(Instant::now()) {
            match self.save_checkpoints().await {
                Ok(()) => {
                    self.checkpoint.written(Instant::now());
                    commit(&self.consumer, &self.committed, CommitMode::Async);
                }
                Err(e) => tracing::error!(error = %e,
                    "writing the checkpoint failed; offsets stay uncommitted, retrying after the next batch"),
            }
        }
        Ok(())
    }

    /// Write the checkpoint of every engine at the offsets reached (each
    /// atomically). The checkpoints are taken before the first await: the
    /// engines are `Send` but not `Sync`, and never cross an await.
    fn save_checkpoints(&self) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        let cks = match &self.store {
            Some(store) => self
                .shards
                .checkpoints(store, &self.committed, &self.publisher),
            None => Vec::new(),
        };
        shards::save_all(cks)
    }

    /// Flush, write the last checkpoint, commit, stop the background tasks and
    /// return the summary.
    async fn finish(self) -> anyhow::Result<Summary> {
        self.publisher.flush();
        if let Some(store) = &self.store {
            if self.checkpoint.pending() {
                match self.save_checkpoints().await {
                    Ok(()) => {
                        tracing::info!(store = %store.describe(), "checkpoint written at shutdown")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the checkpoint at shutdown failed; the next run continues from the previous one")
                    }
                }
            }
        }
        if !self.merge.is_empty() || self.merge.forced() > 0 || self.redelivered > 0 {
            tracing::info!(
                held = self.merge.len(),
                forced = self.merge.forced(),
                redelivered = self.redelivered,
                "event-time order: messages held at the stop (unprocessed, their offsets uncommitted), taken past order_max_held, and delivered twice (held once)"
            );
        }
        if self.duplicates > 0 {
            tracing::info!(
                duplicates = self.duplicates,
                "outputs already published before the restart were not published again"
            );
        }
        commit(&self.consumer, &self.committed, CommitMode::Sync);
        self.background.stop().await;
        let summary = self.shards.summary();
        tracing::info!(
            processed = summary.inputs.total_processed(),
            dead_letters = summary.inputs.total_dead(),
            fills = summary.total_fills(),
            "paper mode stopped"
        );
        Ok(summary)
    }
}

/// The consumer of the input topics, in `kafka.group_id`, positioned by
/// [`SeekOnAssign`]; subscribed.
fn subscribe(
    cfg: &Loaded,
    base: &rdkafka::ClientConfig,
    positions: &Arc<Mutex<Positions>>,
    assigned: &Arc<Mutex<BTreeSet<(String, i32)>>>,
    resumed: &Arc<Mutex<Resumed>>,
    rescan: bool,
) -> anyhow::Result<StreamConsumer<SeekOnAssign>> {
    let app = &cfg.app;
    let mut cc = base.clone();
    cc.set("group.id", &app.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    let fetch_wait = app.kafka.fetch_wait.to_std().as_millis().max(1).to_string();
    crate::kafka::set_default(&mut cc, "fetch.wait.max.ms", &fetch_wait);
    let consumer: StreamConsumer<SeekOnAssign> = cc
        .create_with_context(SeekOnAssign {
            positions: positions.clone(),
            assigned: assigned.clone(),
            rescan,
            resumed: resumed.clone(),
        })
        .context("creating the Kafka consumer")?;
    let inputs = app.topics.inputs();
    if rescan && positions.lock().expect("positions lock").is_empty() {
        // No checkpoint: resume where the group's committed offsets say.
        let committed = group_offsets(&consumer, base, &inputs.map(|(t, _)| t));
        positions.lock().expect("positions lock").extend(committed);
    }
    let topics: Vec<&str> = inputs.iter().map(|(t, _)| *t).collect();
    consumer
        .subscribe(&topics)
        .context("subscribing to the input topics")?;
    tracing::info!(?topics, group = %app.kafka.group_id, "paper mode consuming");
    Ok(consumer)
}
