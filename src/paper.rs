//! Paper mode: the engine fed by a Kafka consumer group, on the wall clock.
//!
//! The loop takes a batch of input messages, runs each through the engine,
//! publishes the outputs and waits for their acknowledgements. Then, with a
//! checkpoint store (`[state]`, [`crate::state`]), it checkpoints every
//! `state.every_events` messages or `state.every` and commits the offsets of
//! the checkpoint; without one, it commits the batch's offsets.
//!
//! A restart loads the checkpoint, seeks every assigned input partition to the
//! checkpoint's offset (on assignment, [`SeekOnAssign`]), and first reads back
//! what the output partitions hold past the checkpoint: outputs whose ids are
//! there are not published again. A crash at any point therefore neither loses
//! nor doubles an output. When publishing fails (broker unreachable), the loop
//! keeps its state, retries with backoff, and before each retry reads back what
//! did reach the topics.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::alerts::{AlertMsg, Alerts};
use crate::config::{Loaded, StateStore};
use crate::domain::Origin;
use crate::engine::{self, Engine, Output};
use crate::kafka::{self, Publisher};
use crate::merge::{Merge, PartitionId, Start};
use crate::monitor::Monitor;
use crate::state::{self, Checkpoint, Offsets, Store};
use crate::summary::Summary;
use crate::wire::InputKind;

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
    let app = &cfg.app;
    let base = kafka::client_config(&app.kafka, bootstrap);
    kafka::check_reachable(&base, bootstrap).await?;
    monitor.set_broker_ok(true);
    let clock = Instant::now();
    let alerts = Arc::new(Mutex::new(Alerts::new(&app.alerts)));
    let alert_producer = kafka::producer(&base)?;
    let (server_stop, server_stopped) = tokio::sync::watch::channel(false);
    let mut background = Vec::new();
    if app.http.enabled {
        let listener = tokio::net::TcpListener::bind(&app.http.bind)
            .await
            .with_context(|| {
                format!(
                    "listening on {} (http.bind): choose a free address or set http.enabled = false",
                    app.http.bind
                )
            })?;
        let addr = listener.local_addr()?;
        monitor.set_http_addr(addr);
        tracing::info!(url = %format!("http://{addr}/"), "dashboard listening");
        let mut stopped = server_stopped.clone();
        let m = monitor.clone();
        background.push(tokio::spawn(async move {
            let done = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::http::serve(listener, m, done).await {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        }));
        background.push(tokio::spawn(watch_broker(base.clone(), monitor.clone())));
    }
    let webhook = webhook_sender(app);
    if alerts.lock().expect("alerts lock").has_stale_rules() {
        let (a, m, p, t, w) = (
            alerts.clone(),
            monitor.clone(),
            alert_producer.clone(),
            app.topics.alerts.clone(),
            webhook.clone(),
        );
        background.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            loop {
                every.tick().await;
                let mut fired = Vec::new();
                a.lock()
                    .expect("alerts lock")
                    .check_stale(clock.elapsed(), &mut fired);
                if fired.is_empty() {
                    continue;
                }
                if let Err(e) = publish_alerts(&p, &t, &fired).await {
                    tracing::error!(error = %e, "publishing stale-feed alerts failed");
                }
                m.on_published(&[], &fired);
                if let Some(w) = &w {
                    for f in fired {
                        let _ = w.send(f);
                    }
                }
            }
        }));
    }
    if app.kafka.create_topics {
        let mut names: Vec<&str> = app.topics.inputs().iter().map(|(t, _)| *t).collect();
        names.extend(app.topics.outputs());
        kafka::ensure_topics(&base, &names, app.kafka.partitions).await?;
    }
    let publisher = Publisher::new(kafka::output_producer(&base)?, &app.topics);
    let fingerprint = engine::config_fingerprint(cfg);
    let cluster = cluster_id(&base).await;
    let ident = Ident {
        fingerprint: &fingerprint,
        cluster: &cluster,
    };
    let store = open_store(cfg, &base).await?;
    // Next offset per input partition: from the checkpoint, then as processed.
    let positions: Arc<Mutex<BTreeMap<(String, i32), i64>>> = Arc::default();
    // The input partitions this process holds (kept by the rebalance callback).
    let assigned: Arc<Mutex<BTreeSet<(String, i32)>>> = Arc::default();
    let mut published: HashSet<String> = HashSet::new();
    let rescan = app.kafka.rescan();
    let by_partition = app.engine.shards == "partition";
    let snap = Snap {
        cfg,
        by_partition,
        ident: &ident,
    };
    // One engine, or (engine.shards = "partition") one per input partition number.
    let mut engines: BTreeMap<i32, Engine> = BTreeMap::new();
    if !by_partition {
        let (engine, ids) = load_shard(
            store.as_ref(),
            cfg,
            &ident,
            &base,
            &publisher,
            rescan,
            &positions,
        )
        .await?;
        engines.insert(0, engine);
        published = ids;
    }

    let mut cc = base.clone();
    cc.set("group.id", &app.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    let consumer: StreamConsumer<SeekOnAssign> = cc
        .create_with_context(SeekOnAssign {
            positions: positions.clone(),
            assigned: assigned.clone(),
            rescan,
        })
        .context("creating the Kafka consumer")?;
    if rescan && positions.lock().expect("positions lock").is_empty() {
        // No checkpoint: resume where the group's committed offsets say.
        let committed = group_offsets(&consumer, &base, &app.topics.inputs().map(|(t, _)| t));
        positions.lock().expect("positions lock").extend(committed);
    }
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

    let mut out = Vec::new();
    let mut fired: Vec<AlertMsg> = Vec::new();
    let mut order_causes: Vec<Instant> = Vec::new();
    let watch_alerts = !alerts.lock().expect("alerts lock").is_empty();
    let mut seen: u64 = 0;
    let mut started = false;
    let mut last_input = Instant::now();
    // Input offsets reached: the checkpoint's, then as processed.
    let mut committed: BTreeMap<(String, i32), i64> =
        positions.lock().expect("positions lock").clone();
    let every_events = app.state.every_events;
    let every = Duration::from_nanos(
        crate::config::parse_duration(&app.state.every)
            .unwrap_or(10_000_000_000)
            .max(1) as u64,
    );
    let mut since_checkpoint: u64 = 0;
    let mut last_checkpoint = Instant::now();
    let mut duplicates: u64 = 0;
    // Shards handed over to another process (kept for the summary only).
    let mut retired: Vec<(i32, Engine)> = Vec::new();
    let first_wait = stop.idle.map(|i| i.max(Duration::from_secs(30)));
    // engine.order = "event_time": messages wait here for the partitions behind.
    let event_time = app.engine.order == "event_time";
    let wall = |s: &str| {
        Duration::from_nanos(crate::config::parse_duration_or_zero(s).unwrap_or(0).max(0) as u64)
    };
    let mut merge: Merge<Item> = Merge::new(
        wall(&app.engine.order_hold),
        wall(&app.engine.order_idle),
        app.engine.order_max_held,
    );
    let mut forced_seen = 0;
    // Messages delivered again at an offset the merge already had (a seek back).
    let mut redelivered: u64 = 0;
    let max_ahead = (app.input.max_ahead != "off")
        .then(|| crate::config::parse_duration(&app.input.max_ahead).ok())
        .flatten();
    tokio::pin!(shutdown);

    'run: loop {
        if stop.max_events.is_some_and(|m| seen >= m) {
            break;
        }
        let wait = if started { stop.idle } else { first_wait };
        let idle_at = wait.map(|w| last_input + w);
        // The input went idle with messages still held: take them all, then stop.
        let mut drain = false;
        let first = loop {
            // A checkpoint falls due with time even when no input comes.
            let checkpoint_at =
                (store.is_some() && since_checkpoint > 0).then(|| last_checkpoint + every);
            // Held messages are looked at again when a partition behind turns idle.
            let wake_at = merge.wake_at(Instant::now());
            let until = [idle_at, checkpoint_at, wake_at]
                .into_iter()
                .flatten()
                .min();
            let m = tokio::select! {
                _ = &mut shutdown => break 'run,
                m = recv_within(&consumer, until.map(|u| u.saturating_duration_since(Instant::now()))) => m,
            };
            if m.is_some() {
                break m;
            }
            if let (Some(store), Some(at)) = (&store, checkpoint_at) {
                if Instant::now() >= at {
                    match save_all(checkpoints(store, &snap, &engines, &committed, &publisher))
                        .await
                    {
                        Ok(()) => {
                            since_checkpoint = 0;
                            commit(&consumer, &committed, CommitMode::Async);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "writing the checkpoint failed; retrying")
                        }
                    }
                    last_checkpoint = Instant::now();
                    continue;
                }
            }
            if wake_at.is_some_and(|a| Instant::now() >= a) {
                break None;
            }
            if idle_at.is_some_and(|a| Instant::now() >= a) {
                if !merge.is_empty() {
                    drain = true;
                    break None;
                }
                tracing::info!("input idle, stopping");
                break 'run;
            }
        };
        let mut batch: Vec<Item> = Vec::new();
        if let Some(first) = first {
            started = true;
            last_input = Instant::now();
            batch.push((first, last_input, None));
        }
        let room = app
            .engine
            .max_batch
            .min(stop.max_events.map_or(usize::MAX, |m| (m - seen) as usize));
        while !batch.is_empty() && batch.len() < room {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push((m.detach(), Instant::now(), None)),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                None => break,
            }
        }

        // Messages of partitions revoked while the batch was gathered are
        // another process's now.
        {
            let held = assigned.lock().expect("assignment lock");
            batch.retain(|(m, _, _)| held.contains(&(m.topic().to_string(), m.partition())));
            if event_time {
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
                let now = Instant::now();
                let dropped = merge.assign(&held, start, now);
                if dropped > 0 {
                    tracing::info!(dropped, "held messages of revoked partitions dropped");
                }
                for (m, received, _) in batch.drain(..) {
                    let decoded = crate::wire::decode(kinds[m.topic()], m.payload().unwrap_or(&[]));
                    let ts = decoded.as_ref().ok().map(|e| e.ts());
                    let (topic, partition, offset) =
                        (m.topic().to_string(), m.partition(), m.offset());
                    if !merge.push(
                        &topic,
                        partition,
                        offset,
                        ts,
                        (m, received, Some(decoded)),
                        now,
                    ) {
                        redelivered += 1;
                    }
                }
                let marks = |t: &str, p: i32| cached_watermarks(&consumer, t, p);
                if drain {
                    while batch.len() < room {
                        match merge.pop_any() {
                            Some(item) => batch.push(item),
                            None => break,
                        }
                    }
                } else {
                    batch = merge.pop_up_to(room, &marks, now);
                }
                if batch.is_empty() && !merge.is_empty() && tracing::enabled!(tracing::Level::DEBUG)
                {
                    let behind: Vec<String> = merge
                        .waiting_for(&marks, now)
                        .into_iter()
                        .map(|(t, p)| {
                            format!("{t}/{p} at {:?}", cached_watermarks(&consumer, t, *p))
                        })
                        .collect();
                    tracing::debug!(held = merge.len(), ?behind, "event-time order: waiting");
                }
                if merge.forced() > forced_seen {
                    if forced_seen == 0 {
                        tracing::warn!(held = merge.len(), max_held = app.engine.order_max_held,
                            "engine.order_max_held reached: taking messages before every input partition could speak, so the order now depends on fetch timing");
                    }
                    forced_seen = merge.forced();
                }
            }
            if by_partition {
                let gone: Vec<i32> = engines
                    .keys()
                    .copied()
                    .filter(|p| !held.iter().any(|(_, q)| q == p))
                    .collect();
                for p in gone {
                    tracing::info!(
                        partition = p,
                        "shard handed over; its state goes with its checkpoint"
                    );
                    retired.push((p, engines.remove(&p).expect("a held shard")));
                    committed.retain(|(_, q), _| *q != p);
                    positions
                        .lock()
                        .expect("positions lock")
                        .retain(|(_, q), _| *q != p);
                }
            }
        }
        if by_partition {
            // A partition number seen for the first time: its shard from the checkpoint.
            let new: BTreeSet<i32> = batch
                .iter()
                .map(|(m, _, _)| m.partition())
                .filter(|p| !engines.contains_key(p))
                .collect();
            for p in new {
                let shard_store = store.as_ref().map(|s| s.shard(p));
                let (engine, ids) = load_shard(
                    shard_store.as_ref(),
                    cfg,
                    &ident,
                    &base,
                    &publisher,
                    rescan,
                    &positions,
                )
                .await?;
                engines.insert(p, engine);
                published.extend(ids);
                let pos = positions.lock().expect("positions lock");
                committed.extend(
                    pos.iter()
                        .filter(|((_, q), _)| *q == p)
                        .map(|(k, v)| (k.clone(), *v)),
                );
            }
        }
        // Skip what a checkpoint already covers (a partition read from its
        // start, or resumed at a committed offset behind the checkpoint).
        batch.retain(|(m, _, _)| {
            committed
                .get(&(m.topic().to_string(), m.partition()))
                .is_none_or(|next| m.offset() >= *next)
        });
        if batch.is_empty() {
            if drain && merge.is_empty() {
                tracing::info!("input idle, stopping");
                break 'run;
            }
            continue;
        }
        let not_after = max_ahead.map(|a| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            now.saturating_add(a)
        });
        for engine in engines.values_mut() {
            engine.set_not_after(not_after);
        }
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        monitor.on_inputs(batch.iter().map(|(m, _, _)| m.topic()), Instant::now());
        for (m, received, decoded) in &mut batch {
            let origin = Origin {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
            };
            let kind = kinds[m.topic()];
            let payload = m.payload().unwrap_or(&[]);
            let before = out.len();
            let engine = engines
                .get_mut(&if by_partition { m.partition() } else { 0 })
                .expect("the shard of every held partition is loaded");
            let step = Instant::now();
            let decoded = decoded
                .take()
                .unwrap_or_else(|| crate::wire::decode(kind, payload));
            match decoded {
                Ok(ev) if watch_alerts => {
                    let copy = ev.clone();
                    engine.on_event(kind, &origin, m.key(), payload, ev, &mut out);
                    let refused = out[before..]
                        .iter()
                        .any(|o| matches!(o, Output::DeadLetter(_)));
                    if !refused {
                        alerts.lock().expect("alerts lock").on_event(
                            &copy,
                            &origin,
                            received.duration_since(clock),
                            &mut fired,
                        );
                    }
                }
                Ok(ev) => engine.on_event(kind, &origin, m.key(), payload, ev, &mut out),
                Err(_) => engine.on_message(kind, &origin, m.key(), payload, &mut out),
            }
            monitor
                .metrics
                .engine_step
                .observe(step.elapsed().as_secs_f64());
            if out[before..].iter().any(|o| matches!(o, Output::Order(_))) {
                order_causes.push(*received);
            }
            offsets.insert((origin.topic, origin.partition), origin.offset + 1);
        }
        seen += batch.len() as u64;
        if watch_alerts {
            let mut a = alerts.lock().expect("alerts lock");
            for o in &out {
                if let Output::Pnl(p) = o {
                    a.on_pnl(p, &mut fired);
                }
            }
        }

        // What a run before a restart already published is not published again.
        if !published.is_empty() {
            let before = out.len();
            out.retain(|o| !published.remove(o.id()));
            duplicates += (before - out.len()) as u64;
        }

        // Outputs first, acknowledged by the broker; then the checkpoint and offsets.
        let written_before = publisher.written();
        let mut pending: Vec<usize> = (0..out.len()).collect();
        let mut attempt = 0u32;
        loop {
            let failed = publisher.publish(&out, &pending).await;
            if failed.is_empty() {
                if attempt > 0 {
                    tracing::info!(attempt, "outputs published; the broker is back");
                    monitor.set_broker_ok(true);
                }
                break;
            }
            if let Some((_, e)) = failed.iter().find(|(_, e)| kafka::is_permanent(e)) {
                anyhow::bail!(
                    "the broker refused an output ({e}); stopping without committing the offsets of this batch"
                );
            }
            monitor.set_broker_ok(false);
            pending = failed.iter().map(|(i, _)| *i).collect();
            // Wait, then find out which of the failed sends reached the topics
            // anyway (a lost acknowledgement) and resend only the others.
            loop {
                attempt += 1;
                let backoff = Duration::from_millis(100 * 2u64.pow(attempt.min(6)));
                tracing::warn!(error = %failed[0].1, unpublished = pending.len(), attempt, ?backoff,
                    "publishing outputs failed; keeping the state and retrying");
                tokio::select! {
                    _ = &mut shutdown => {
                        tracing::warn!(unpublished = pending.len(),
                            "stopping with unpublished outputs; the offsets of this batch stay uncommitted and it will be replayed");
                        break 'run;
                    }
                    _ = tokio::time::sleep(backoff) => {}
                }
                match read_back(&base, &publisher, &written_before, rescan).await {
                    Ok(there) => {
                        pending.retain(|&i| !there.contains(out[i].id()));
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "the broker is still unreachable"),
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        if !fired.is_empty() {
            publish_alerts(&alert_producer, &app.topics.alerts, &fired)
                .await
                .context("publishing alerts; this batch's offsets stay uncommitted")?;
        }
        let acked = Instant::now();
        for t in order_causes.drain(..) {
            monitor
                .metrics
                .tick_to_order
                .observe(acked.duration_since(t).as_secs_f64());
        }
        monitor.on_published(&out, &fired);
        if let Some(w) = &webhook {
            for f in fired.drain(..) {
                let _ = w.send(f);
            }
        }
        fired.clear();
        out.clear();
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &offsets {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
            if let Some(high) = cached_high_watermark(&consumer, t, *p) {
                monitor
                    .metrics
                    .consumer_lag
                    .with_label_values(&[t.as_str(), &p.to_string()])
                    .set((high - o).max(0));
            }
        }
        positions
            .lock()
            .expect("positions lock")
            .extend(offsets.iter().map(|(k, v)| (k.clone(), *v)));
        committed.extend(offsets);
        since_checkpoint += batch.len() as u64;
        match &store {
            None => {
                if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                    tracing::warn!(error = %e, "committing offsets failed; they will be committed with the next batch");
                }
            }
            Some(store) => {
                let due = (every_events > 0 && since_checkpoint >= every_events)
                    || last_checkpoint.elapsed() >= every;
                if due {
                    match save_all(checkpoints(store, &snap, &engines, &committed, &publisher))
                        .await
                    {
                        Ok(()) => {
                            since_checkpoint = 0;
                            last_checkpoint = Instant::now();
                            commit(&consumer, &committed, CommitMode::Async);
                        }
                        Err(e) => tracing::error!(error = %e,
                            "writing the checkpoint failed; offsets stay uncommitted, retrying after the next batch"),
                    }
                }
            }
        }
    }

    publisher.flush();
    if let Some(store) = &store {
        if since_checkpoint > 0 {
            match save_all(checkpoints(store, &snap, &engines, &committed, &publisher)).await {
                Ok(()) => {
                    tracing::info!(store = %store.describe(), "checkpoint written at shutdown")
                }
                Err(e) => {
                    tracing::error!(error = %e, "the checkpoint at shutdown failed; the next run continues from the previous one")
                }
            }
        }
    }
    if !merge.is_empty() || merge.forced() > 0 || redelivered > 0 {
        tracing::info!(
            held = merge.len(),
            forced = merge.forced(),
            redelivered,
            "event-time order: messages held at the stop (unprocessed, their offsets uncommitted), taken past order_max_held, and delivered twice (held once)"
        );
    }
    if duplicates > 0 {
        tracing::info!(
            duplicates,
            "outputs already published before the restart were not published again"
        );
    }
    commit(&consumer, &committed, CommitMode::Sync);
    let _ = server_stop.send(true);
    for task in background {
        task.abort();
        let _ = task.await;
    }
    let summary = if by_partition {
        let mut parts: Vec<(i32, crate::summary::Summary)> =
            engines.iter().map(|(p, e)| (*p, e.summary())).collect();
        parts.extend(retired.iter().map(|(p, e)| (*p, e.summary())));
        crate::summary::Summary::of_shards(parts)
    } else {
        engines[&0].summary()
    };
    tracing::info!(
        processed = summary.inputs.total_processed(),
        dead_letters = summary.inputs.total_dead(),
        fills = summary.total_fills(),
        "paper mode stopped"
    );
    Ok(summary)
}

/// The high watermark of a partition as last reported by a fetch response
/// (librdkafka's cache: no request to the broker, so cheap per batch).
fn cached_high_watermark<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    cached_watermarks(consumer, topic, partition).map(|(_, high)| high)
}

/// `(low, high)` watermarks of a partition from librdkafka's cache, as last
/// reported by a fetch response; `None` before the first.
fn cached_watermarks<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let name = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the out
    // pointers refer to locals; librdkafka only reads its own cache.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            name.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low.max(0), high))
}

/// Assigns each input partition at the offset paper mode has reached (from the
/// checkpoint, then as it processes), or at the group's committed offset for a
/// partition it has not seen.
pub struct SeekOnAssign {
    positions: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
    assigned: Arc<Mutex<BTreeSet<(String, i32)>>>,
    /// Read every assigned partition from its start; the loop skips what is done.
    rescan: bool,
}

impl rdkafka::ClientContext for SeekOnAssign {}

impl ConsumerContext for SeekOnAssign {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::bindings::rd_kafka_resp_err_t,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::bindings::rd_kafka_resp_err_t as E;
        use rdkafka::consumer::RebalanceProtocol;
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = if err == E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            let pos = self.positions.lock().expect("positions lock");
            let parts: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            for (t, p) in parts {
                if self.rescan {
                    let _ = tpl.set_partition_offset(&t, p, Offset::Beginning);
                } else if let Some(o) = pos.get(&(t.clone(), p)) {
                    let _ = tpl.set_partition_offset(&t, p, Offset::Offset(*o));
                }
            }
            drop(pos);
            let mut held = self.assigned.lock().expect("assignment lock");
            if !cooperative {
                held.clear();
            }
            held.extend(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition())),
            );
            drop(held);
            tracing::info!(partitions = ?tpl.to_topic_map(), "input partitions assigned");
            if cooperative {
                consumer.incremental_assign(tpl)
            } else {
                consumer.assign(tpl)
            }
        } else if err == E::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
            tracing::info!(partitions = ?tpl.to_topic_map(), "input partitions revoked");
            let mut held = self.assigned.lock().expect("assignment lock");
            if cooperative {
                for e in tpl.elements() {
                    held.remove(&(e.topic().to_string(), e.partition()));
                }
            } else {
                held.clear();
            }
            drop(held);
            if cooperative {
                consumer.incremental_unassign(tpl)
            } else {
                consumer.unassign()
            }
        } else {
            tracing::error!(?err, "rebalance error");
            self.assigned.lock().expect("assignment lock").clear();
            consumer.unassign()
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the assignment failed");
        }
    }
}

/// The checkpoint store of `[state]`, if any.
async fn open_store(cfg: &Loaded, base: &rdkafka::ClientConfig) -> anyhow::Result<Option<Store>> {
    let app = &cfg.app;
    Ok(match app.state.resolve(app.kafka.brokers == "embedded") {
        StateStore::None => None,
        StateStore::File => Some(Store::File(app.state.file_for(&app.kafka.group_id))),
        StateStore::Kafka => {
            if app.kafka.create_topics {
                kafka::ensure_topics(base, &[app.state.topic.as_str()], 1).await?;
            }
            let mut pc = base.clone();
            pc.set("message.max.bytes", "100000000");
            Some(Store::Kafka {
                base: base.clone(),
                producer: kafka::producer(&pc)?,
                topic: app.state.topic.clone(),
                key: app.kafka.group_id.clone(),
            })
        }
    })
}

/// What a checkpoint must match to be continued from: the configuration and
/// the Kafka cluster.
struct Ident<'a> {
    fingerprint: &'a str,
    cluster: &'a str,
}

/// What every checkpoint of a run shares.
struct Snap<'a> {
    cfg: &'a Loaded,
    by_partition: bool,
    ident: &'a Ident<'a>,
}

/// The cluster id the brokers report (empty when they report none).
async fn cluster_id(base: &rdkafka::ClientConfig) -> String {
    let base = base.clone();
    tokio::task::spawn_blocking(move || {
        let probe: rdkafka::producer::BaseProducer = base.create().ok()?;
        use rdkafka::producer::Producer;
        probe.client().fetch_cluster_id(Duration::from_secs(10))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// The checkpoint of every engine (one, or one per shard) at the given input
/// offsets, each with the store it goes to. Synchronous: the engines never
/// cross an await.
fn checkpoints(
    store: &Store,
    snap: &Snap<'_>,
    engines: &BTreeMap<i32, Engine>,
    inputs: &BTreeMap<(String, i32), i64>,
    publisher: &Publisher,
) -> Vec<(Store, Checkpoint)> {
    let outputs = publisher.written();
    engines
        .iter()
        .map(|(p, engine)| {
            let mut by_topic: Offsets = BTreeMap::new();
            for ((t, q), o) in inputs {
                if !snap.by_partition || q == p {
                    by_topic.entry(t.clone()).or_default().insert(*q, *o);
                }
            }
            let ck = Checkpoint {
                format: state::FORMAT,
                group: snap.cfg.app.kafka.group_id.clone(),
                cluster: snap.ident.cluster.to_string(),
                inputs: by_topic,
                outputs: outputs.clone(),
                engine: engine.state(snap.ident.fingerprint),
            };
            let target = if snap.by_partition {
                store.shard(*p)
            } else {
                store.clone()
            };
            (target, ck)
        })
        .collect()
}

/// Write checkpoints (each atomically).
async fn save_all(checkpoints: Vec<(Store, Checkpoint)>) -> anyhow::Result<()> {
    for (target, ck) in &checkpoints {
        target.save(ck).await?;
    }
    Ok(())
}

/// A fresh engine, or the one in `store`'s checkpoint (then its input
/// positions go to `positions`, and the ids already published past it are
/// returned).
async fn load_shard(
    store: Option<&Store>,
    cfg: &Loaded,
    ident: &Ident<'_>,
    base: &rdkafka::ClientConfig,
    publisher: &Publisher,
    rescan: bool,
    positions: &Mutex<BTreeMap<(String, i32), i64>>,
) -> anyhow::Result<(Engine, HashSet<String>)> {
    let app = &cfg.app;
    let mut engine = Engine::new(cfg);
    let Some(store) = store else {
        return Ok((engine, HashSet::new()));
    };
    let Some(ck) = store.load().await? else {
        tracing::info!(store = %store.describe(), "no checkpoint; starting fresh");
        return Ok((engine, HashSet::new()));
    };
    let fix = "move the checkpoint away to start from scratch, or run with the configuration it was written under";
    anyhow::ensure!(
        ck.group == app.kafka.group_id,
        "the checkpoint in {} belongs to consumer group {:?}, not {:?} (kafka.group_id)\n  fix: {fix}",
        store.describe(),
        ck.group,
        app.kafka.group_id
    );
    anyhow::ensure!(
        ck.cluster == ident.cluster,
        "the checkpoint in {} was written against Kafka cluster {:?}, and kafka.brokers is cluster {:?}: its offsets mean nothing here\n  fix: {fix}",
        store.describe(),
        ck.cluster,
        ident.cluster
    );
    engine.restore(ck.engine, ident.fingerprint).map_err(|e| {
        anyhow::anyhow!(
            "cannot continue from the checkpoint in {}: {e}\n  fix: {fix}",
            store.describe()
        )
    })?;
    {
        let mut pos = positions.lock().expect("positions lock");
        for (t, parts) in &ck.inputs {
            for (p, o) in parts {
                pos.insert((t.clone(), *p), *o);
            }
        }
    }
    publisher.merge_written(&ck.outputs);
    let published = read_back(base, publisher, &ck.outputs, rescan).await?;
    tracing::info!(
        store = %store.describe(),
        inputs = ?ck.inputs,
        already_published = published.len(),
        "continuing from the checkpoint"
    );
    Ok((engine, published))
}

/// Commit `offsets` to the consumer group; a failure is logged (the checkpoint
/// is what a restart goes by).
fn commit<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    offsets: &BTreeMap<(String, i32), i64>,
    mode: CommitMode,
) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in offsets {
        if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*o)) {
            tracing::warn!(error = %e, "offset list");
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(error = %e, "committing offsets failed");
    }
}

/// The ids on the output topics from `from` to their end.
async fn read_back(
    base: &rdkafka::ClientConfig,
    publisher: &Publisher,
    from: &Offsets,
    rescan: bool,
) -> anyhow::Result<HashSet<String>> {
    let (base, topics, from) = (base.clone(), publisher.topic_names(), from.clone());
    tokio::task::spawn_blocking(move || {
        state::published_ids(&base, &topics, &from, rescan, Duration::from_secs(30))
    })
    .await?
}

/// The group's committed offsets of every partition of `topics`.
fn group_offsets<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    base: &rdkafka::ClientConfig,
    topics: &[&str],
) -> BTreeMap<(String, i32), i64> {
    let mut out = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    let probe: Result<BaseConsumer, _> = base.create();
    for t in topics {
        let parts = probe
            .as_ref()
            .ok()
            .and_then(|c| c.fetch_metadata(Some(t), Duration::from_secs(10)).ok())
            .map(|md| {
                md.topics()
                    .first()
                    .map(|tm| tm.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        for p in parts {
            tpl.add_partition(t, p);
        }
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(c) => {
            for e in c.elements() {
                if let Offset::Offset(o) = e.offset() {
                    out.insert((e.topic().to_string(), e.partition()), o);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the group's committed offsets"),
    }
    out
}

/// Publish alerts to `topic`, keyed by subject, and wait for every ack.
async fn publish_alerts(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    alerts: &[AlertMsg],
) -> anyhow::Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let sends = alerts.iter().map(|a| async move {
        let payload = serde_json::to_vec(a).expect("alerts serialize");
        let headers = OwnedHeaders::new().insert(Header {
            key: "papertrader-id",
            value: Some(a.alert_id.as_str()),
        });
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&a.subject)
                    .payload(&payload)
                    .headers(headers),
                Duration::from_secs(60),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| anyhow::anyhow!("alert {}: {e}", a.alert_id))
    });
    for r in futures::future::join_all(sends).await {
        r?;
    }
    Ok(())
}

/// A queue to the webhook task of `alerts.webhook_url`, when one is set. Alerts
/// are posted in order, each with its retries, off the hot path.
fn webhook_sender(
    app: &crate::config::AppConfig,
) -> Option<tokio::sync::mpsc::UnboundedSender<AlertMsg>> {
    let url = app.alerts.webhook_url.trim().to_string();
    if url.is_empty() {
        return None;
    }
    let attempts = app.alerts.webhook_attempts;
    let backoff = Duration::from_nanos(
        crate::config::parse_duration(&app.alerts.webhook_backoff)
            .unwrap_or(0)
            .max(0) as u64,
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<AlertMsg>();
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        while let Some(a) = rx.recv().await {
            if let Err(e) = crate::alerts::post_webhook(&client, &url, &a, attempts, backoff).await
            {
                tracing::error!(url = %url, alert = %a.alert_id, error = %e, "alert webhook gave up");
            }
        }
    });
    Some(tx)
}

/// Ask the brokers for metadata every few seconds; `/health` reports the answer.
async fn watch_broker(base: rdkafka::ClientConfig, monitor: Arc<Monitor>) {
    let Ok(probe) = base.create::<rdkafka::producer::BaseProducer>() else {
        monitor.set_broker_ok(false);
        return;
    };
    let probe = Arc::new(probe);
    loop {
        let p = probe.clone();
        let ok = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            p.client()
                .fetch_metadata(None, Duration::from_secs(3))
                .is_ok()
        })
        .await
        .unwrap_or(false);
        monitor.set_broker_ok(ok);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The next message, or `None` after `wait` without one.
async fn recv_within<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
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
            // librdkafka queues one error event per failed connection attempt
            // and reconnects by itself: take the next event at once, or the
            // backlog of an outage delays the rejoin and the fetches behind it.
            Err(e) => tracing::warn!(error = %e, "consumer error; retrying"),
        }
    }
}
