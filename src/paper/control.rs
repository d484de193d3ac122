//! Operator actions in paper mode: the HTTP API (`POST /api/control`) hands a
//! [`ControlRequest`] to the loop, which applies it between batches to every
//! engine ([`crate::engine::Engine::control`]), publishes what it caused
//! (orders, fills, P&L) and then the action itself on the `control` topic (who,
//! when, what it caused), writes a checkpoint at once, so that a restart keeps
//! a pause or a halt, and answers the API with the control message.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{json, Value};

use super::Session;
use crate::domain::{OrderStatus, Output};
use crate::monitor::ControlRequest;

impl Session<'_> {
    /// Apply `req`. `false`: the outputs could not be published and the loop
    /// stops (the API is told).
    pub(super) async fn control<F: Future<Output = ()>>(
        &mut self,
        req: ControlRequest,
        shutdown: &mut Pin<&mut F>,
    ) -> anyhow::Result<bool> {
        let ControlRequest {
            action,
            strategy,
            symbol,
            by,
            reply,
        } = req;
        let sym = symbol.as_deref();
        let mut engines = self.shards.engines_mut();
        let Some(first) = engines.next() else {
            let _ = reply.send(Err(
                "no engine is loaded yet: paper mode has not read its first message".into(),
            ));
            return Ok(true);
        };
        if let Err(e) = first.check_control(action, &strategy, sym) {
            tracing::warn!(action = action.name(), %strategy, error = %e, %by, "control refused");
            let _ = reply.send(Err(e.to_string()));
            return Ok(true);
        }
        let before = self.out.len();
        let seq = first.control(action, &strategy, sym, &mut self.out)?;
        let event_ts = first.last_ts();
        for e in engines {
            e.control(action, &strategy, sym, &mut self.out)?;
        }
        let caused = &self.out[before..];
        let orders = caused
            .iter()
            .filter(|o| matches!(o, Output::Order(m) if m.status == OrderStatus::New))
            .count();
        let fills = caused
            .iter()
            .filter(|o| matches!(o, Output::Fill(_)))
            .count();
        if !self.publish(shutdown).await? {
            let _ = reply.send(Err(
                "the broker did not take the action's outputs; paper mode stops".into(),
            ));
            return Ok(false);
        }
        let now = chrono::Utc::now();
        let msg = json!({
            "control_id": format!("ctl{seq}:{strategy}"),
            "action": action.name(),
            "strategy": strategy,
            "symbol": symbol,
            "by": by,
            "at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "ts": now.timestamp_millis(),
            "event_ts": crate::wire::format_ts(event_ts),
            "orders": orders,
            "fills": fills,
        });
        publish_control(&self.sinks.producer, &self.cfg.app.topics.control, &msg).await?;
        if self.store.is_some() {
            match self.save_checkpoints().await {
                Ok(()) => self.checkpoint.written(std::time::Instant::now()),
                Err(e) => {
                    tracing::error!(error = %e, "the checkpoint after a control failed; the next one keeps it")
                }
            }
        }
        if let Some(e) = self.shards.engines_mut().next() {
            self.monitor.set_status(e.status());
        }
        self.monitor.on_control(&msg);
        tracing::info!(action = action.name(), %strategy, symbol = ?symbol, %by, orders, fills, "control applied");
        let _ = reply.send(Ok(msg));
        Ok(true)
    }
}

/// Publish one control message, keyed by strategy, and wait for the ack.
async fn publish_control(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    msg: &Value,
) -> anyhow::Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let payload = msg.to_string();
    let key = msg["strategy"].as_str().unwrap_or_default();
    let id = msg["control_id"].as_str().unwrap_or_default();
    let headers = OwnedHeaders::new().insert(Header {
        key: "papertrader-id",
        value: Some(id),
    });
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(&payload)
                .headers(headers),
            Duration::from_secs(60),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| anyhow::anyhow!("control {id} to {topic}: {e}"))
}
