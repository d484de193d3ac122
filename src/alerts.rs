//! Alerts: the rules and their state live in the core
//! ([`papertrader_core::alerts`]); this module adds the webhook that forwards
//! each alert (`alerts.webhook_url`).

use std::time::Duration;

pub use papertrader_core::alerts::*;
pub use papertrader_core::domain::AlertMsg;

/// POST `alert` as JSON to `url`, up to `attempts` times, waiting `backoff`
/// before the first retry and twice as long before each next one. A 2xx answer
/// succeeds; anything else (refused connection, 5xx, 4xx) is retried.
///
/// # Errors
/// The last failure, once every attempt failed.
pub async fn post_webhook(
    client: &reqwest::Client,
    url: &str,
    alert: &AlertMsg,
    attempts: u32,
    backoff: Duration,
) -> Result<(), String> {
    let mut wait = backoff;
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        match client.post(url).json(alert).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tracing::warn!(url, attempt, error = %last, alert = %alert.alert_id, "alert webhook failed");
        if attempt < attempts {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Err(last)
}
