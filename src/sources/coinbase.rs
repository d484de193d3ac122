//! Coinbase Exchange's public WebSocket feed: the `matches` channel (trades)
//! into `live_prices`, with the `heartbeat` channel as liveness
//! (<https://docs.cdp.coinbase.com/exchange/websocket-feed/channels>).
//! Trade ids grow per product: ids at or below the newest published one
//! (replays after a reconnect, the `last_match` of a new subscription) are
//! dropped. The `level2` channel needs authentication and is not read.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::ws::{Action, WsVenue};
use super::{decimal, tick_record, Sink};
use crate::config::SourceConfig;

pub struct Coinbase {
    ws_url: String,
    /// Product id -> published symbol.
    symbols: HashMap<String, String>,
    last_trade: HashMap<String, u64>,
}

impl Coinbase {
    pub fn new(cfg: &SourceConfig) -> Self {
        Coinbase {
            ws_url: cfg
                .ws_url
                .clone()
                .unwrap_or_else(|| "wss://ws-feed.exchange.coinbase.com".into()),
            symbols: cfg
                .venue_symbols()
                .iter()
                .map(|s| (s.clone(), cfg.publish_symbol(s)))
                .collect(),
            last_trade: HashMap::new(),
        }
    }

    fn on_match(&mut self, v: &Value, raw: &[u8], sink: &Sink, out: &mut Vec<Action>) {
        let parsed = (|| {
            let product = v.get("product_id")?.as_str()?.to_string();
            let id = v.get("trade_id")?.as_u64()?;
            let price = decimal(v.get("price")?)?;
            let size = decimal(v.get("size")?)?;
            let ts = crate::wire::parse_ts_str(v.get("time")?.as_str()?)?;
            Some((product, id, price, size, ts))
        })();
        let Some((product, id, price, size, ts)) = parsed else {
            let d = sink.dead(
                "live_prices",
                "invalid_field",
                "a match without product_id, trade_id, price, size or time",
                raw,
            );
            return out.push(Action::Emit(d));
        };
        let Some(symbol) =
            sink.admit_trade(&self.symbols, &mut self.last_trade, (product, id), raw, out)
        else {
            return;
        };
        out.push(Action::Emit(tick_record(
            symbol.clone(),
            ts,
            price,
            size,
            None,
            "trade",
        )));
    }
}

impl WsVenue for Coinbase {
    fn url(&self) -> String {
        self.ws_url.clone()
    }

    fn on_open(&mut self) -> Vec<String> {
        let mut products: Vec<&String> = self.symbols.keys().collect();
        products.sort();
        vec![serde_json::json!({
            "type": "subscribe",
            "product_ids": products,
            "channels": ["matches", "heartbeat"],
        })
        .to_string()]
    }

    /// Coinbase allows 8 messages a second per IP (bursts of 16); one
    /// subscription is all that is sent.
    fn min_send_interval(&self) -> Duration {
        Duration::from_millis(125)
    }

    fn on_frame(&mut self, raw: &[u8], sink: &Sink, out: &mut Vec<Action>) {
        let Some(v) = sink.json(raw, out) else {
            return;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("match" | "last_match") => self.on_match(&v, raw, sink, out),
            Some("subscriptions" | "heartbeat") => {}
            Some("error") => {
                let d = sink.dead("", "venue_error", "an error message from the feed", raw);
                out.push(Action::Emit(d));
            }
            other => {
                let d = sink.dead(
                    "",
                    "unexpected_message",
                    &format!("message type {other:?}"),
                    raw,
                );
                out.push(Action::Emit(d));
            }
        }
    }
}
