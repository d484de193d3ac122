//! What paper mode runs beside its loop: alerts published to their topic and
//! posted to the webhook, and the broker's health for `/health`.

use std::sync::Arc;
use std::time::Duration;

use crate::alerts::AlertMsg;
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

/// A queue to the webhook task of `alerts.webhook_url`, when one is set. Alerts
/// are posted in order, each with its retries, off the hot path.
pub(super) fn webhook_sender(
    app: &crate::config::AppConfig,
) -> Option<tokio::sync::mpsc::UnboundedSender<AlertMsg>> {
    let url = app.alerts.webhook_url.trim().to_string();
    if url.is_empty() {
        return None;
    }
    let attempts = app.alerts.webhook_attempts;
    let backoff = app.alerts.webhook_backoff.to_std();
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
    pub(super) webhook: Option<tokio::sync::mpsc::UnboundedSender<AlertMsg>>,
}

impl Background {
    /// Start the HTTP server (when `http.enabled`) and the stale-feed check
    /// (when a `stale_feed` rule exists). `clock` is the run's start, the
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
    webhook: Option<tokio::sync::mpsc::UnboundedSender<AlertMsg>>,
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
