//! What paper mode runs beside its loop: alerts published to their topic and
//! posted to the webhook and chat services (fills too, where asked), and the
//! broker's health for `/health`.

use std::sync::Arc;
use std::time::Duration;

use crate::alerts::{AlertMsg, Notifier};
use crate::monitor::Monitor;

/// Publish alerts to `topic`, keyed by subject, and wait for every ack.
pub(super) async fn publish_alerts(
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

/// The queues to the notification tasks of `[alerts]` (the webhook, Telegram,
/// Slack, Discord), when any is configured. Alerts are posted in order per
/// destination, each with its retries, off the hot path.
pub(super) fn webhook_sender(app: &crate::config::AppConfig) -> Option<Notifier> {
    match Notifier::from_config(&app.alerts) {
        Ok(n) => n,
        Err((key, problem, fix)) => {
            // The loader checked the section at start-up; only a variable
            // unset since could get here.
            tracing::error!(key, problem, fix, "alert notifications are off");
            None
        }
    }
}

/// Forward the fills the loop publishes (the monitor's live updates) to the
/// destinations with `fills = true`. A receiver that falls more than the
/// channel's capacity behind skips batches, and says how many.
async fn forward_fills(mut updates: tokio::sync::broadcast::Receiver<String>, notifier: Notifier) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match updates.recv().await {
            Ok(delta) => {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&delta) else {
                    continue;
                };
                for f in v["fills"].as_array().into_iter().flatten() {
                    notifier.send_fill(f);
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "fill notifications skipped batches of outputs");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Ask the brokers for metadata every few seconds; `/health` reports the answer.
pub(super) async fn watch_broker(base: rdkafka::ClientConfig, monitor: Arc<Monitor>) {
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

/// The tasks that run beside paper mode's loop: the HTTP server of `[http]`
/// with its broker watch, and the stale-feed alert check.
pub(super) struct Background {
    server_stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the stale-feed check publishes to, shared with the loop.
pub(super) struct AlertSinks {
    pub(super) alerts: Arc<std::sync::Mutex<crate::alerts::Alerts>>,
    pub(super) producer: rdkafka::producer::FutureProducer,
    pub(super) topic: String,
    /// Where alerts (and fills) are posted besides the topic.
    pub(super) webhook: Option<Notifier>,
}

impl Background {
    /// Start the HTTP server (when `http.enabled`) and the stale-feed check
    /// (when a `stale_feed` rule exists), and the fill notifications (when a
    /// destination takes fills). `clock` is the run's start, the
    /// origin of the alert rules' wall time.
    pub(super) async fn start(
        app: &crate::config::AppConfig,
        base: &rdkafka::ClientConfig,
        monitor: &Arc<Monitor>,
        sinks: &AlertSinks,
        clock: std::time::Instant,
    ) -> anyhow::Result<Background> {
        let (server_stop, server_stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        if app.http.enabled {
            tasks.push(serve_http(app, monitor, server_stopped).await?);
            tasks.push(tokio::spawn(watch_broker(base.clone(), monitor.clone())));
        }
        if let Some(n) = sinks.webhook.as_ref().filter(|n| n.wants_fills()) {
            tasks.push(tokio::spawn(forward_fills(monitor.subscribe(), n.clone())));
        }
        if sinks.alerts.lock().expect("alerts lock").has_stale_rules() {
            tasks.push(tokio::spawn(check_stale(
                sinks.alerts.clone(),
                monitor.clone(),
                sinks.producer.clone(),
                sinks.topic.clone(),
                sinks.webhook.clone(),
                clock,
            )));
        }
        Ok(Background { server_stop, tasks })
    }

    /// Stop the server and the tasks.
    pub(super) async fn stop(self) {
        let _ = self.server_stop.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Bind `http.bind` and serve the dashboard, API, `/health` and `/metrics`
/// until `stopped` turns true.
async fn serve_http(
    app: &crate::config::AppConfig,
    monitor: &Arc<Monitor>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use anyhow::Context;
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
    let m = monitor.clone();
    Ok(tokio::spawn(async move {
        let done = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = crate::http::serve(listener, m, done).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    }))
}

/// Every 250 ms: fire the stale-feed rules whose feed has been quiet too long,
/// publish what fired and post it to the webhook.
async fn check_stale(
    alerts: Arc<std::sync::Mutex<crate::alerts::Alerts>>,
    monitor: Arc<Monitor>,
    producer: rdkafka::producer::FutureProducer,
    topic: String,
    webhook: Option<Notifier>,
    clock: std::time::Instant,
) {
    let mut every = tokio::time::interval(Duration::from_millis(250));
    loop {
        every.tick().await;
        let mut fired = Vec::new();
        alerts
            .lock()
            .expect("alerts lock")
            .check_stale(clock.elapsed(), &mut fired);
        if fired.is_empty() {
            continue;
        }
        if let Err(e) = publish_alerts(&producer, &topic, &fired).await {
            tracing::error!(error = %e, "publishing stale-feed alerts failed");
        }
        monitor.on_published(&[], &fired);
        if let Some(w) = &webhook {
            for f in fired {
                let _ = w.send(f);
            }
        }
    }
}
