//! Alpaca's market-data WebSocket v2 (`kind = "alpaca"`: trades, quotes,
//! minute bars of US equities, <https://docs.alpaca.markets/docs/real-time-stock-pricing-data>)
//! and its news stream (`kind = "alpaca_news"`,
//! <https://docs.alpaca.markets/docs/streaming-real-time-news>).
//!
//! The server greets with `[{"T":"success","msg":"connected"}]`; papertrader
//! sends `{"action":"auth","key":...,"secret":...}` and, once
//! `authenticated`, the subscription. Frames are arrays of messages:
//!
//! - trade `t` -> a `live_prices` tick (with the symbol's last quote as
//!   bid/ask when there is one and it is not crossed); duplicates (same
//!   symbol, exchange and trade id, e.g. after a reconnect) are dropped;
//! - quote `q` -> a one-level `order_book` snapshot (a side with price or
//!   size 0 is left empty);
//! - bar `b` -> one tick at the bar's close: price `c`, size `v`, time the
//!   bar's start + 1 minute (subscribe bars instead of trades, not both, or
//!   the volume counts twice);
//! - news `n` -> a `news` item, id `alpaca:{id}`; an update of an item already
//!   published (same id) is dropped.
//!
//! Prices arrive as JSON numbers and are read from their text (exact).

use std::collections::HashMap;

use papertrader_core::news::NewsItem;
use rust_decimal::Decimal;
use serde_json::Value;

use super::ws::{Action, WsVenue};
use super::{book_record, decimal, news_record, tick_record, Dedup, Sink};
use crate::config::{SourceConfig, SourceKind};

/// One minute in nanoseconds: a minute bar's close is its start + this.
const MINUTE_NS: i64 = 60_000_000_000;
/// News summaries are cut to this many characters (messages stay small).
const SUMMARY_CHARS: usize = 4000;

pub struct Alpaca {
    url: String,
    news: bool,
    key: String,
    secret: String,
    symbols: HashMap<String, String>,
    prefix: String,
    rename: std::collections::BTreeMap<String, String>,
    trades: bool,
    quotes: bool,
    bars: bool,
    source: String,
    dedup: Dedup,
    last_quote: HashMap<String, (Decimal, Decimal)>,
}

impl Alpaca {
    pub fn new(cfg: &SourceConfig, key: String, secret: String) -> Self {
        let base = cfg
            .ws_url
            .clone()
            .unwrap_or_else(|| "wss://stream.data.alpaca.markets".into());
        let base = base.trim_end_matches('/');
        let news = cfg.kind == SourceKind::AlpacaNews;
        let url = if news {
            format!("{base}/v1beta1/news")
        } else {
            format!("{base}/v2/{}", cfg.feed.as_deref().unwrap_or("iex"))
        };
        Alpaca {
            url,
            news,
            key,
            secret,
            symbols: cfg
                .venue_symbols()
                .iter()
                .map(|s| (s.clone(), cfg.publish_symbol(s)))
                .collect(),
            prefix: cfg.symbol_prefix.clone(),
            rename: cfg.rename.clone(),
            trades: cfg.trades,
            quotes: cfg.quotes,
            bars: cfg.bars,
            source: cfg.name.clone(),
            dedup: Dedup::new(cfg.dedup_capacity),
            last_quote: HashMap::new(),
        }
    }

    fn subscription(&self) -> String {
        let mut syms: Vec<&str> = self.symbols.keys().map(String::as_str).collect();
        syms.sort();
        let list = |on: bool| if on { syms.clone() } else { Vec::new() };
        let v = if self.news {
            let news = if syms.is_empty() {
                vec!["*"]
            } else {
                syms.clone()
            };
            serde_json::json!({"action": "subscribe", "news": news})
        } else {
            serde_json::json!({"action": "subscribe", "trades": list(self.trades),
                "quotes": list(self.quotes), "bars": list(self.bars)})
        };
        v.to_string()
    }

    fn symbol(&self, s: &str) -> Option<String> {
        self.symbols.get(s).cloned()
    }

    fn on_message(&mut self, m: &Value, sink: &Sink, out: &mut Vec<Action>) {
        let raw = serde_json::to_vec(m).unwrap_or_default();
        let bad = |sink: &Sink, topic: &str, what: &str| {
            Action::Emit(sink.dead(topic, "invalid_field", what, &raw))
        };
        match m.get("T").and_then(Value::as_str) {
            Some("success") => {
                if m.get("msg").and_then(Value::as_str) == Some("authenticated") {
                    out.push(Action::Send(self.subscription()));
                }
            }
            Some("subscription") => {
                tracing::info!(source = %sink.source, subscription = %m, "subscribed")
            }
            Some("error") => {
                out.push(Action::Emit(sink.dead(
                    "",
                    "venue_error",
                    "an error message from Alpaca",
                    &raw,
                )));
                let code = m.get("code").and_then(Value::as_i64).unwrap_or(0);
                // 401 not authenticated, 402 auth failed, 404 auth timeout,
                // 406 connection limit exceeded: this connection is of no use.
                if matches!(code, 401 | 402 | 404 | 406 | 407 | 409) {
                    out.push(Action::Reconnect(format!("Alpaca error {code}: {m}")));
                }
            }
            Some("t") => match self.trade(m) {
                Some(Some(r)) => out.push(Action::Emit(r)),
                Some(None) => sink.duplicate(),
                None => out.push(bad(
                    sink,
                    "live_prices",
                    "a trade without S, i, p, s or t, or of a symbol not subscribed",
                )),
            },
            Some("q") => match self.quote(m) {
                Some(Some(r)) => out.push(Action::Emit(r)),
                Some(None) => {}
                None => out.push(bad(
                    sink,
                    "order_book",
                    "a quote without S, bp, bs, ap, as or t, or of a symbol not subscribed",
                )),
            },
            Some("b") => match self.bar(m) {
                Some(r) => out.push(Action::Emit(r)),
                None => out.push(bad(
                    sink,
                    "live_prices",
                    "a bar without S, c, v or t, or of a symbol not subscribed",
                )),
            },
            Some("n") => match self.news_item(m) {
                Some(Some(item)) => out.push(Action::Emit(news_record(&item))),
                Some(None) => sink.duplicate(),
                None => out.push(bad(
                    sink,
                    "news",
                    "a news item without id, headline or created_at",
                )),
            },
            // Daily and updated bars, trading status, LULDs, corrections and
            // cancels are not used.
            Some("d" | "u" | "s" | "l" | "c" | "x") => {}
            other => {
                let d = sink.dead(
                    "",
                    "unexpected_message",
                    &format!("message type {other:?}"),
                    &raw,
                );
                out.push(Action::Emit(d));
            }
        }
    }

    /// `None`: unusable; `Some(None)`: a duplicate.
    fn trade(&mut self, m: &Value) -> Option<Option<super::Record>> {
        let s = m.get("S")?.as_str()?;
        let symbol = self.symbol(s)?;
        let id = m.get("i")?;
        let exchange = m.get("x").and_then(Value::as_str).unwrap_or("");
        let price = decimal(m.get("p")?)?;
        let size = decimal(m.get("s")?)?;
        let ts = crate::wire::parse_ts_str(m.get("t")?.as_str()?)?;
        if !self.dedup.first(&format!("t:{s}:{exchange}:{id}")) {
            return Some(None);
        }
        let quote = self.last_quote.get(s).copied();
        Some(Some(tick_record(symbol, ts, price, size, quote, "trade")))
    }

    fn quote(&mut self, m: &Value) -> Option<Option<super::Record>> {
        let s = m.get("S")?.as_str()?;
        let symbol = self.symbol(s)?;
        let (bp, bs) = (decimal(m.get("bp")?)?, decimal(m.get("bs")?)?);
        let (ap, asz) = (decimal(m.get("ap")?)?, decimal(m.get("as")?)?);
        let ts = crate::wire::parse_ts_str(m.get("t")?.as_str()?)?;
        let live = |p: Decimal, q: Decimal| p > Decimal::ZERO && q > Decimal::ZERO;
        let bids: Vec<_> = live(bp, bs).then_some((bp, bs)).into_iter().collect();
        let asks: Vec<_> = live(ap, asz).then_some((ap, asz)).into_iter().collect();
        if !bids.is_empty() && !asks.is_empty() {
            self.last_quote.insert(s.to_string(), (bp, ap));
        }
        if bids.is_empty() && asks.is_empty() {
            return Some(None);
        }
        let mut r = book_record(&symbol, ts, true, &bids, &asks);
        r.kind = "quote";
        Some(Some(r))
    }

    fn bar(&mut self, m: &Value) -> Option<super::Record> {
        let s = m.get("S")?.as_str()?;
        let symbol = self.symbol(s)?;
        let close = decimal(m.get("c")?)?;
        let volume = decimal(m.get("v")?)?;
        let ts = crate::wire::parse_ts_str(m.get("t")?.as_str()?)? + MINUTE_NS;
        Some(tick_record(symbol, ts, close, volume, None, "bar"))
    }

    fn news_item(&mut self, m: &Value) -> Option<Option<NewsItem>> {
        let id = m.get("id")?;
        let id = match id {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let headline = m.get("headline")?.as_str()?.trim().to_string();
        if headline.is_empty() {
            return None;
        }
        let ts = crate::wire::parse_ts_str(m.get("created_at")?.as_str()?)?;
        let id = format!("alpaca:{id}");
        if !self.dedup.first(&id) {
            return Some(None);
        }
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let symbols = m
            .get("symbols")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| match self.rename.get(s) {
                        Some(r) => r.clone(),
                        None => format!("{}{s}", self.prefix),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Some(NewsItem {
            id,
            ts,
            symbols,
            headline,
            summary: text("summary").chars().take(SUMMARY_CHARS).collect(),
            source: self.source.clone(),
            url: text("url"),
        }))
    }
}

impl WsVenue for Alpaca {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn on_open(&mut self) -> Vec<String> {
        vec![
            serde_json::json!({"action": "auth", "key": self.key, "secret": self.secret})
                .to_string(),
        ]
    }

    fn on_frame(&mut self, raw: &[u8], sink: &Sink, out: &mut Vec<Action>) {
        let Some(v) = sink.json(raw, out) else {
            return;
        };
        match v {
            Value::Array(items) => {
                for m in &items {
                    self.on_message(m, sink, out);
                }
            }
            other => self.on_message(&other, sink, out),
        }
    }
}
