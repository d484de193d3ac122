//! Paper mode: the engine fed by a Kafka consumer group, on the wall clock.
//!
//! The loop takes a batch of input messages, runs each through the engine,
//! publishes the outputs and waits for their acknowledgements, and only then
//! commits the batch's offsets. A crash at any point therefore replays at most the
//! uncommitted batch, whose outputs carry the same deterministic ids.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::alerts::{AlertMsg, Alerts};
use crate::config::Loaded;
use crate::domain::Origin;
use crate::engine::{Engine, Output};
use crate::kafka::{self, Publisher};
use crate::monitor::Monitor;
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
    let mut fired: Vec<AlertMsg> = Vec::new();
    let mut order_causes: Vec<Instant> = Vec::new();
    let watch_alerts = !alerts.lock().expect("alerts lock").is_empty();
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
        let mut batch = vec![(first, Instant::now())];
        let room = app
            .engine
            .max_batch
            .min(stop.max_events.map_or(usize::MAX, |m| (m - seen) as usize));
        while batch.len() < room {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push((m.detach(), Instant::now())),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                None => break,
            }
        }

        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        monitor.on_inputs(batch.iter().map(|(m, _)| m.topic()), Instant::now());
        for (m, received) in &batch {
            let origin = Origin {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
            };
            let kind = kinds[m.topic()];
            let payload = m.payload().unwrap_or(&[]);
            let before = out.len();
            let step = Instant::now();
            match crate::wire::decode(kind, payload) {
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
    let _ = server_stop.send(true);
    for task in background {
        task.abort();
        let _ = task.await;
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

/// The high watermark of a partition as last reported by a fetch response
/// (librdkafka's cache: no request to the broker, so cheap per batch).
fn cached_high_watermark(consumer: &StreamConsumer, topic: &str, partition: i32) -> Option<i64> {
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
        .then_some(high)
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
