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
        // The API gave up waiting (it answered 504): not applied now.
        if reply.is_closed() {
            tracing::warn!(action = action.name(), %strategy, %by, "control not applied: the request timed out while paper mode was busy");
            return Ok(true);
        }
        let refuse = |reply: tokio::sync::oneshot::Sender<Result<Value, String>>, why: String| {
            tracing::warn!(action = action.name(), %strategy, error = %why, %by, "control refused");
            let _ = reply.send(Err(why));
            Ok(true)
        };
        // Catching up after a restart: the outputs replayed now are matched
        // by id against what the previous run published.
        if !self.published.is_empty() {
            return refuse(
                reply,
                "paper mode is catching up after a restart; try again in a moment".into(),
            );
        }
        let sym = symbol.as_deref();
        // Every engine accepts it before any changes.
        let mut checked = 0;
        for e in self.shards.engines_mut() {
            if let Err(e) = e.check_control(action, &strategy, sym) {
                return refuse(reply, e.to_string());
            }
            checked += 1;
        }
        if checked == 0 {
            return refuse(
                reply,
                "no engine is loaded yet: paper mode has not read its first message".into(),
            );
        }
        let now = chrono::Utc::now();
        let at = now.timestamp_millis();
        let before = self.out.len();
        let (mut seq, mut event_ts) = (0, 0);
        for (i, e) in self.shards.engines_mut().enumerate() {
            let n = e
                .control(action, &strategy, sym, at, &mut self.out)
                .expect("checked");
            if i == 0 {
                (seq, event_ts) = (n, e.last_ts());
            }
        }
        if action != crate::engine::ControlAction::Flatten {
            self.controls_applied.push((action, strategy.clone()));
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
        if self.store.is_some() {
            match self.save_checkpoints().await {
                Ok(()) => self.checkpoint.written(std::time::Instant::now()),
                Err(e) => {
                    tracing::error!(error = %e, "the checkpoint after a control failed; the next one keeps it")
                }
            }
        }
        let msg = json!({
            "control_id": format!("ctl{seq}-{at}:{strategy}"),
            "action": action.name(),
            "strategy": strategy,
            "symbol": symbol,
            "by": by,
            "at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "ts": at,
            "event_ts": crate::wire::format_ts(event_ts),
            "orders": orders,
            "fills": fills,
        });
        if let Err(e) =
            publish_control(&self.sinks.producer, &self.cfg.app.topics.control, &msg).await
        {
            tracing::error!(error = %e, "the control was applied and its outputs published, but its message did not reach the control topic");
        }
        self.monitor.on_control(&msg);
        tracing::info!(action = action.name(), %strategy, symbol = ?symbol, %by, orders, fills, "control applied");
        let _ = reply.send(Ok(msg));
        Ok(true)
    }

    /// Pause, resume and kill actions of this run, applied to a shard loaded
    /// after them (`engine.shards = "partition"`), its outputs into the batch.
    pub(super) fn catch_up_controls(&mut self, engine: &mut crate::engine::Engine) {
        let at = chrono::Utc::now().timestamp_millis();
        for (action, strategy) in &self.controls_applied {
            if engine.check_control(*action, strategy, None).is_ok() {
                let _ = engine.control(*action, strategy, None, at, &mut self.out);
            }
        }
    }

    /// The strategies' pause and halt state for the dashboard: paused or
    /// halted when any engine has it so; sent when it changed.
    pub(super) fn refresh_status(&mut self) {
        let mut merged: Vec<crate::engine::StrategyStatus> = Vec::new();
        for e in self.shards.engines_mut() {
            for (i, s) in e.status().into_iter().enumerate() {
                match merged.get_mut(i) {
                    Some(m) => {
                        m.paused |= s.paused;
                        m.halted |= s.halted;
                    }
                    None => merged.push(s),
                }
            }
        }
        if merged != self.status_seen {
            self.monitor.set_status(merged.clone());
            self.status_seen = merged;
        }
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
