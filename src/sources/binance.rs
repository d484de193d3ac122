//! Binance spot public streams: `<symbol>@trade` into `live_prices`, and
//! `<symbol>@depth@100ms` kept in sync with the REST snapshot
//! (`/api/v3/depth`) into `order_book`, as Binance documents it ("How to
//! manage a local order book correctly",
//! <https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams>):
//!
//! 1. buffer the depth events of a symbol and ask for a snapshot;
//! 2. drop buffered events with `u <= lastUpdateId`;
//! 3. the first event kept must have `U <= lastUpdateId + 1` (and `u >= lastUpdateId + 1`);
//! 4. then each event's `U` must be the previous event's `u + 1`;
//!
//! anything else is a gap: counted, the book dropped, a new snapshot fetched
//! (at most one per `snapshot_min_interval` per symbol; a 429 or 418 answer's
//! `Retry-After` is honoured). After each (re)sync the whole book goes out as
//! a `snapshot`, then every event as an `update`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;

use super::ws::{Action, Fetched, WsVenue};
use super::{book_record, decimal, fitting_snapshot, tick_record, Sink};
use crate::config::SourceConfig;

/// Binance: at most 5 incoming messages per second per connection
/// (subscriptions, pongs); the loop spaces its frames by this.
const SEND_INTERVAL: Duration = Duration::from_millis(250);

pub struct Binance {
    ws_url: String,
    rest_url: String,
    /// Venue symbol (upper case) -> published symbol.
    symbols: HashMap<String, String>,
    trades: bool,
    depth: bool,
    depth_limit: u32,
    snapshot_every: Duration,
    /// Newest trade id published per venue symbol (ids grow): older ones,
    /// replayed after a reconnect, are dropped.
    last_trade: HashMap<String, u64>,
    books: HashMap<String, Depth>,
    next_id: u64,
}

/// Depth events kept per symbol while its snapshot is awaited.
const MAX_BUFFERED: usize = 10_000;

/// Price levels, best first.
type Levels = Vec<(Decimal, Decimal)>;

/// One depth event (`depthUpdate`).
#[derive(Debug, Clone)]
struct DepthEvent {
    first: u64,
    last: u64,
    ts_ms: i64,
    bids: Vec<(Decimal, Decimal)>,
    asks: Vec<(Decimal, Decimal)>,
}

#[derive(Debug)]
enum SyncState {
    /// Events buffered until the snapshot comes; `requested`: it is on its way.
    Waiting {
        buffer: Vec<DepthEvent>,
        requested: bool,
    },
    /// In sync up to `last_u`; `first`: the next event is the first after the
    /// snapshot (rule 3 rather than 4).
    Synced { last_u: u64, first: bool },
}

#[derive(Debug)]
struct Depth {
    sync: SyncState,
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
    last_event_ms: i64,
    next_allowed: Instant,
}

impl Depth {
    fn new() -> Self {
        Depth {
            sync: SyncState::Waiting {
                buffer: Vec::new(),
                requested: false,
            },
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            last_event_ms: 0,
            next_allowed: Instant::now(),
        }
    }

    fn apply(&mut self, ev: &DepthEvent) {
        for (side, levels) in [(&mut self.bids, &ev.bids), (&mut self.asks, &ev.asks)] {
            for (p, q) in levels {
                if q.is_zero() {
                    side.remove(p);
                } else {
                    side.insert(*p, *q);
                }
            }
        }
    }

    /// The book, best first, at most the wire's 1000 levels a side.
    fn levels(&self) -> (Levels, Levels) {
        let max = crate::wire::MAX_BOOK_LEVELS;
        let bids = self
            .bids
            .iter()
            .rev()
            .take(max)
            .map(|(p, q)| (*p, *q))
            .collect();
        let asks = self.asks.iter().take(max).map(|(p, q)| (*p, *q)).collect();
        (bids, asks)
    }
}

fn levels(v: &Value) -> Option<Vec<(Decimal, Decimal)>> {
    v.as_array()?
        .iter()
        .map(|l| Some((decimal(l.get(0)?)?, decimal(l.get(1)?)?)))
        .collect()
}

impl Binance {
    pub fn new(cfg: &SourceConfig) -> Self {
        let symbols = cfg
            .venue_symbols()
            .iter()
            .map(|s| (s.to_ascii_uppercase(), cfg.publish_symbol(s)))
            .collect();
        Binance {
            ws_url: cfg
                .ws_url
                .clone()
                .unwrap_or_else(|| "wss://stream.binance.com:9443".into()),
            rest_url: cfg
                .rest_url
                .clone()
                .unwrap_or_else(|| "https://api.binance.com".into()),
            symbols,
            trades: cfg.trades,
            depth: cfg.depth,
            depth_limit: cfg.depth_limit,
            snapshot_every: cfg.snapshot_min_interval.to_std(),
            last_trade: HashMap::new(),
            books: HashMap::new(),
            next_id: 1,
        }
    }

    fn on_trade(&mut self, v: &Value, raw: &[u8], sink: &Sink, out: &mut Vec<Action>) {
        let parsed = (|| {
            let s = v.get("s")?.as_str()?.to_string();
            let id = v.get("t")?.as_u64()?;
            let price = decimal(v.get("p")?)?;
            let qty = decimal(v.get("q")?)?;
            let ts = v.get("T")?.as_i64()?;
            Some((s, id, price, qty, ts))
        })();
        let Some((s, id, price, qty, ts_ms)) = parsed else {
            let d = sink.dead(
                "live_prices",
                "invalid_field",
                "a trade without s, t, p, q or T",
                raw,
            );
            return out.push(Action::Emit(d));
        };
        let Some(symbol) = sink.admit_trade(&self.symbols, &mut self.last_trade, (s, id), raw, out)
        else {
            return;
        };
        let r = tick_record(symbol.clone(), ts_ms * 1_000_000, price, qty, None, "trade");
        out.push(Action::Emit(r));
    }

    fn parse_depth(v: &Value) -> Option<(String, DepthEvent)> {
        Some((
            v.get("s")?.as_str()?.to_string(),
            DepthEvent {
                first: v.get("U")?.as_u64()?,
                last: v.get("u")?.as_u64()?,
                ts_ms: v.get("E")?.as_i64()?,
                bids: levels(v.get("b")?)?,
                asks: levels(v.get("a")?)?,
            },
        ))
    }

    fn on_depth(&mut self, v: &Value, raw: &[u8], sink: &Sink, out: &mut Vec<Action>) {
        let Some((s, ev)) = Self::parse_depth(v) else {
            let d = sink.dead(
                "order_book",
                "invalid_field",
                "a depthUpdate without s, E, U, u, b or a, or with a bad level",
                raw,
            );
            return out.push(Action::Emit(d));
        };
        let Some(symbol) = self.symbols.get(&s).cloned() else {
            let d = sink.dead(
                "order_book",
                "unknown_symbol",
                &format!("{s} was not subscribed"),
                raw,
            );
            return out.push(Action::Emit(d));
        };
        let d = self.books.entry(s.clone()).or_insert_with(Depth::new);
        d.last_event_ms = d.last_event_ms.max(ev.ts_ms);
        match &mut d.sync {
            SyncState::Waiting { buffer, .. } => {
                // While snapshots fail, keep the newest events only: a
                // snapshot newer than the oldest kept event still syncs.
                if buffer.len() >= MAX_BUFFERED {
                    buffer.remove(0);
                }
                buffer.push(ev);
            }
            SyncState::Synced { last_u, first } => {
                if ev.last <= *last_u {
                    return sink.duplicate();
                }
                let continuous = if *first {
                    ev.first <= *last_u + 1
                } else {
                    ev.first == *last_u + 1
                };
                if !continuous {
                    tracing::warn!(source = %sink.source, symbol = %s, expected = *last_u + 1, got = ev.first, "depth gap: resyncing from a snapshot");
                    sink.metrics
                        .gaps
                        .with_label_values(&[sink.source.as_str(), symbol.as_str()])
                        .inc();
                    d.sync = SyncState::Waiting {
                        buffer: vec![ev],
                        requested: false,
                    };
                } else {
                    *last_u = ev.last;
                    *first = false;
                    d.apply(&ev);
                    if !(ev.bids.is_empty() && ev.asks.is_empty()) {
                        let ts = ev.ts_ms * 1_000_000;
                        out.push(Action::Emit(book_record(
                            &symbol, ts, false, &ev.bids, &ev.asks,
                        )));
                    }
                }
            }
        }
        self.request_snapshot(&s, out);
    }

    /// Ask for a snapshot of `s` when it waits for one and none is on its way
    /// (not before `snapshot_min_interval` since the last request).
    fn request_snapshot(&mut self, s: &str, out: &mut Vec<Action>) {
        let Some(d) = self.books.get_mut(s) else {
            return;
        };
        if let SyncState::Waiting { requested, .. } = &mut d.sync {
            if !*requested && Instant::now() >= d.next_allowed {
                *requested = true;
                d.next_allowed = Instant::now() + self.snapshot_every;
                out.push(Action::Snapshot {
                    symbol: s.to_string(),
                    url: format!(
                        "{}/api/v3/depth?symbol={s}&limit={}",
                        self.rest_url.trim_end_matches('/'),
                        self.depth_limit
                    ),
                });
            }
        }
    }

    /// The snapshot applied with the buffered events (rules 2 to 4); the
    /// events left over on a gap stay buffered for the next snapshot.
    fn sync_from(d: &mut Depth, last_update_id: u64) -> Result<(), String> {
        let SyncState::Waiting { buffer, .. } = &mut d.sync else {
            return Ok(());
        };
        let mut buffer: Vec<DepthEvent> = std::mem::take(buffer)
            .into_iter()
            .filter(|e| e.last > last_update_id)
            .collect();
        let mut last = last_update_id;
        let mut broken = None;
        for (i, ev) in buffer.iter().enumerate() {
            let ok = if i == 0 {
                ev.first <= last + 1
            } else {
                ev.first == last + 1
            };
            if !ok {
                broken = Some((i, format!("buffered event U={} after u={last}", ev.first)));
                break;
            }
            last = ev.last;
        }
        if let Some((i, why)) = broken {
            d.sync = SyncState::Waiting {
                buffer: buffer.split_off(i),
                requested: false,
            };
            return Err(why);
        }
        for ev in &buffer {
            d.apply(ev);
        }
        d.sync = SyncState::Synced {
            last_u: last,
            first: buffer.is_empty(),
        };
        Ok(())
    }
}

impl WsVenue for Binance {
    fn url(&self) -> String {
        let base = self.ws_url.trim_end_matches('/');
        if base.ends_with("/ws") {
            base.to_string()
        } else {
            format!("{base}/ws")
        }
    }

    fn on_open(&mut self) -> Vec<String> {
        let mut syms: Vec<&String> = self.symbols.keys().collect();
        syms.sort();
        let mut streams = Vec::new();
        for s in syms {
            let l = s.to_ascii_lowercase();
            if self.trades {
                streams.push(format!("{l}@trade"));
            }
            if self.depth {
                streams.push(format!("{l}@depth@100ms"));
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        vec![serde_json::json!({"method": "SUBSCRIBE", "params": streams, "id": id}).to_string()]
    }

    fn min_send_interval(&self) -> Duration {
        SEND_INTERVAL
    }

    fn on_frame(&mut self, raw: &[u8], sink: &Sink, out: &mut Vec<Action>) {
        let Some(v) = sink.json(raw, out) else {
            return;
        };
        // A combined stream wraps the event: {"stream": ..., "data": {...}}.
        let ev = v
            .get("data")
            .filter(|_| v.get("stream").is_some())
            .unwrap_or(&v);
        match ev.get("e").and_then(Value::as_str) {
            Some("trade") => self.on_trade(ev, raw, sink, out),
            Some("depthUpdate") => self.on_depth(ev, raw, sink, out),
            Some(other) => {
                let d = sink.dead(
                    "",
                    "unexpected_message",
                    &format!("event type {other:?}"),
                    raw,
                );
                out.push(Action::Emit(d));
            }
            None if v.get("result").is_some() && v.get("id").is_some() => {}
            None if v.get("code").is_some() => {
                let d = sink.dead("", "venue_error", "an error answer to a request", raw);
                out.push(Action::Emit(d));
            }
            None => {
                let d = sink.dead(
                    "",
                    "unexpected_message",
                    "neither an event nor an answer",
                    raw,
                );
                out.push(Action::Emit(d));
            }
        }
    }

    fn on_snapshot(&mut self, s: &str, got: Fetched, sink: &Sink, out: &mut Vec<Action>) {
        let Some(symbol) = self.symbols.get(s).cloned() else {
            return;
        };
        let Some(d) = self.books.get_mut(s) else {
            return;
        };
        let reset = |d: &mut Depth| {
            if let SyncState::Waiting { requested, .. } = &mut d.sync {
                *requested = false;
            }
        };
        let body = match got {
            Ok(b) => b,
            Err((why, retry)) => {
                tracing::warn!(source = %sink.source, symbol = %s, %why, "depth snapshot failed");
                if let Some(r) = retry {
                    d.next_allowed = Instant::now() + r;
                }
                return reset(d);
            }
        };
        let parsed = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
            Some((
                v.get("lastUpdateId")?.as_u64()?,
                levels(v.get("bids")?)?,
                levels(v.get("asks")?)?,
            ))
        });
        let Some((last_id, bids, asks)) = parsed else {
            reset(d);
            let dl = sink.dead(
                "order_book",
                "invalid_snapshot",
                "a depth snapshot without lastUpdateId, bids or asks",
                &body,
            );
            return out.push(Action::Emit(dl));
        };
        d.bids = bids.into_iter().filter(|(_, q)| !q.is_zero()).collect();
        d.asks = asks.into_iter().filter(|(_, q)| !q.is_zero()).collect();
        if let Err(why) = Self::sync_from(d, last_id) {
            tracing::warn!(source = %sink.source, symbol = %s, %why, "depth snapshot older than the stream: fetching another");
            sink.metrics
                .gaps
                .with_label_values(&[sink.source.as_str(), symbol.as_str()])
                .inc();
            return self.request_snapshot(s, out);
        }
        let (b, a) = d.levels();
        let ts = d.last_event_ms.max(0) * 1_000_000;
        out.push(Action::Emit(fitting_snapshot(&symbol, ts, &b, &a)));
    }

    fn on_close(&mut self) {
        // A new connection starts every book over from a snapshot.
        self.books.clear();
    }
}
