//! What paper mode shows while it runs: Prometheus metrics and the dashboard's
//! state (accounts, positions, equity curves, recent signals, orders, fills and
//! alerts), fed by the paper loop once per batch from the outputs it published.
//!
//! One lock per batch, bounded tables, and a broadcast of the batch's changes
//! to the dashboard's server-sent events only when someone listens.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::alerts::AlertMsg;
use crate::domain::{Output, PnlMsg};

/// The Prometheus metrics of paper mode (names in docs/dashboard.md).
pub struct Metrics {
    registry: Registry,
    pub events_in: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub signals: IntCounterVec,
    pub orders: IntCounterVec,
    pub fills: IntCounterVec,
    pub rejections: IntCounterVec,
    pub alerts: IntCounterVec,
    /// Resumed input partitions re-read from their start (see `paper::Session::verify_resumed`).
    pub resume_rescans: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    /// 1 while the broker answers, 0 while publishing or the metadata probe fails.
    pub broker_connected: prometheus::IntGauge,
    pub tick_to_order: Histogram,
    pub engine_step: Histogram,
    pub equity: GaugeVec,
    pub drawdown: GaugeVec,
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("metric");
            registry.register(Box::new(g.clone())).expect("register");
            g
        };
        let hist = |name: &str, help: &str| {
            let buckets = prometheus::exponential_buckets(0.000_01, 2.5, 14).expect("buckets");
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("metric");
            registry.register(Box::new(h.clone())).expect("register");
            h
        };
        let events_in = counter(
            "papertrader_events_in_total",
            "Input messages received, by topic (valid and dead-lettered)",
            &["topic"],
        );
        let dead_letters = counter(
            "papertrader_dead_letters_total",
            "Input messages dead-lettered, by reason",
            &["reason"],
        );
        let signals = counter(
            "papertrader_signals_total",
            "Signals published, by strategy",
            &["strategy"],
        );
        let orders = counter(
            "papertrader_orders_total",
            "Order lifecycle events published, by status",
            &["status"],
        );
        let fills = counter(
            "papertrader_fills_total",
            "Fills published, by strategy",
            &["strategy"],
        );
        let rejections = counter(
            "papertrader_rejections_total",
            "Orders rejected, by reason",
            &["reason"],
        );
        let alerts = counter(
            "papertrader_alerts_total",
            "Alerts fired, by rule",
            &["rule"],
        );
        let resume_rescans = counter(
            "papertrader_resume_rescans_total",
            "Resumed input partitions re-read from their start because the broker delivered a later offset than asked for; outcome: skipped_records (records lay in between) or empty_gap (compaction or transaction markers)",
            &["outcome"],
        );
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "papertrader_consumer_lag",
                "Messages between the consumer's position and the partition's high watermark (as last fetched)",
            ),
            &["topic", "partition"],
        )
        .expect("metric");
        registry
            .register(Box::new(consumer_lag.clone()))
            .expect("register");
        let broker_connected = prometheus::IntGauge::new(
            "papertrader_broker_connected",
            "1 while the broker answers, 0 while publishing to it or asking it for metadata fails",
        )
        .expect("metric");
        registry
            .register(Box::new(broker_connected.clone()))
            .expect("register");
        let tick_to_order = hist(
            "papertrader_tick_to_order_seconds",
            "Wall time from receiving an input message to the broker's ack of the orders it caused",
        );
        let engine_step = hist(
            "papertrader_engine_step_seconds",
            "Wall time of one engine step (decode, admission, venue, strategies and any model inference) per input message",
        );
        let equity = gauge(
            "papertrader_equity",
            "Account equity per strategy, at its latest P&L snapshot",
            &["strategy"],
        );
        let drawdown = gauge(
            "papertrader_drawdown",
            "Account drawdown per strategy (fraction of the peak), at its latest P&L snapshot",
            &["strategy"],
        );
        Metrics {
            registry,
            events_in,
            dead_letters,
            signals,
            orders,
            fills,
            rejections,
            alerts,
            resume_rescans,
            consumer_lag,
            broker_connected,
            tick_to_order,
            engine_step,
            equity,
            drawdown,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("utf-8")
    }
}

/// One point of an equity curve.
#[derive(Debug, Clone, Serialize)]
pub struct EquityPoint {
    pub ts: String,
    pub equity: f64,
    pub drawdown: f64,
}

/// The latest account of a strategy.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub cash: String,
    pub equity: String,
    pub drawdown: String,
    pub max_drawdown: String,
}

#[derive(Default)]
struct State {
    accounts: BTreeMap<String, AccountView>,
    /// (strategy, symbol) -> the latest P&L snapshot.
    positions: BTreeMap<(String, String), Value>,
    /// (strategy, symbol) -> equity curve, oldest first.
    equity: BTreeMap<(String, String), VecDeque<EquityPoint>>,
    /// Newest first.
    signals: VecDeque<Value>,
    orders: VecDeque<Value>,
    fills: VecDeque<Value>,
    alerts: VecDeque<Value>,
    /// (analytics, symbol) -> its values over time, oldest first.
    indicators: BTreeMap<(String, String), VecDeque<Value>>,
    /// topic -> wall time of its last input message.
    last_input: BTreeMap<String, Instant>,
}

/// Shared between the paper loop (writer) and the HTTP server (readers).
pub struct Monitor {
    pub metrics: Metrics,
    state: Mutex<State>,
    history: usize,
    stale_after: Duration,
    events: broadcast::Sender<String>,
    broker_ok: AtomicBool,
    http_addr: OnceLock<SocketAddr>,
    started: Instant,
}

fn push_front(q: &mut VecDeque<Value>, v: Value, cap: usize) {
    q.push_front(v);
    q.truncate(cap);
}

impl Monitor {
    /// `history`: rows per table and points per curve; `stale_after`: when `/health` reports a stale feed.
    pub fn new(history: usize, stale_after: Duration) -> Self {
        Monitor {
            metrics: Metrics::new(),
            state: Mutex::new(State::default()),
            history: history.max(1),
            stale_after,
            events: broadcast::channel(256).0,
            broker_ok: AtomicBool::new(false),
            http_addr: OnceLock::new(),
            started: Instant::now(),
        }
    }

    /// From `[http]`.
    pub fn from_config(cfg: &crate::config::Loaded) -> Self {
        Monitor::new(cfg.app.http.history, cfg.app.http.stale_after.to_std())
    }

    /// The address the HTTP server listens on, once bound.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr.get().copied()
    }

    pub(crate) fn set_http_addr(&self, a: SocketAddr) {
        let _ = self.http_addr.set(a);
    }

    /// Whether the broker answers: `/health` and `papertrader_broker_connected`.
    pub fn set_broker_ok(&self, ok: bool) {
        self.broker_ok.store(ok, Ordering::Relaxed);
        self.metrics.broker_connected.set(i64::from(ok));
    }

    /// A receiver of the dashboard's live updates (JSON, one per batch).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    /// Count the input messages of a batch by topic, and note when they arrived.
    pub fn on_inputs<'a>(&self, topics: impl IntoIterator<Item = &'a str>, now: Instant) {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for t in topics {
            *counts.entry(t).or_default() += 1;
        }
        let mut st = self.state.lock().expect("monitor lock");
        for (t, n) in counts {
            self.metrics.events_in.with_label_values(&[t]).inc_by(n);
            st.last_input.insert(t.to_string(), now);
        }
    }

    /// Record the outputs and alerts a batch published.
    pub fn on_published(&self, outputs: &[Output], alerts: &[AlertMsg]) {
        let m = &self.metrics;
        let cap = self.history;
        let live = self.events.receiver_count() > 0;
        let mut delta = json!({});
        let mut add = |k: &str, v: &Value| {
            if live {
                delta
                    .as_object_mut()
                    .expect("object")
                    .entry(k)
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .expect("array")
                    .push(v.clone());
            }
        };
        let mut st = self.state.lock().expect("monitor lock");
        for o in outputs {
            match o {
                Output::Signal(s) => {
                    m.signals.with_label_values(&[&s.strategy]).inc();
                    let v = serde_json::to_value(s).expect("serializes");
                    add("signals", &v);
                    push_front(&mut st.signals, v, cap);
                }
                Output::Order(x) => {
                    m.orders.with_label_values(&[x.status.as_str()]).inc();
                    if x.status == crate::domain::OrderStatus::Rejected {
                        let reason = x.reason.as_deref().unwrap_or("unknown");
                        let reason = reason.split(':').next().unwrap_or(reason).trim();
                        m.rejections.with_label_values(&[reason]).inc();
                    }
                    let v = serde_json::to_value(x).expect("serializes");
                    add("orders", &v);
                    push_front(&mut st.orders, v, cap);
                }
                Output::Fill(f) => {
                    m.fills.with_label_values(&[&f.strategy]).inc();
                    let v = serde_json::to_value(f).expect("serializes");
                    add("fills", &v);
                    push_front(&mut st.fills, v, cap);
                }
                Output::Pnl(p) => {
                    let (point, v) = Self::pnl(&mut st, p, cap);
                    m.equity.with_label_values(&[&p.strategy]).set(point.equity);
                    m.drawdown
                        .with_label_values(&[&p.strategy])
                        .set(point.drawdown);
                    add("pnl", &v);
                }
                Output::DeadLetter(d) => {
                    m.dead_letters.with_label_values(&[d.reason]).inc();
                }
                Output::Alert(a) => {
                    m.alerts.with_label_values(&[&a.rule]).inc();
                    let v = serde_json::to_value(a).expect("serializes");
                    add("alerts", &v);
                    push_front(&mut st.alerts, v, cap);
                }
                Output::Indicator(i) => {
                    let v = json!({"analytics": i.analytics, "symbol": i.symbol,
                        "ts": crate::wire::format_ts(i.ts), "values": i.values});
                    add("indicators", &v);
                    let key = (i.analytics.clone(), i.symbol.clone());
                    let series = st.indicators.entry(key).or_default();
                    series.push_back(v);
                    if series.len() > cap {
                        series.pop_front();
                    }
                }
            }
        }
        // Alerts fired outside the step (stale_feed, on a wall-clock timer).
        for a in alerts {
            m.alerts.with_label_values(&[&a.rule]).inc();
            let v = serde_json::to_value(a).expect("serializes");
            add("alerts", &v);
            push_front(&mut st.alerts, v, cap);
        }
        drop(st);
        if live && !delta.as_object().expect("object").is_empty() {
            let _ = self.events.send(delta.to_string());
        }
    }

    fn pnl(st: &mut State, p: &PnlMsg, cap: usize) -> (EquityPoint, Value) {
        let point = EquityPoint {
            ts: crate::wire::format_ts(p.ts),
            equity: p.account_equity.to_f64().unwrap_or(0.0),
            drawdown: p.account_drawdown.to_f64().unwrap_or(0.0),
        };
        st.accounts.insert(
            p.strategy.clone(),
            AccountView {
                cash: p.account_cash.to_string(),
                equity: p.account_equity.to_string(),
                drawdown: p.account_drawdown.to_string(),
                max_drawdown: p.account_max_drawdown.to_string(),
            },
        );
        let key = (p.strategy.clone(), p.symbol.clone());
        let v = serde_json::to_value(p).expect("serializes");
        st.positions.insert(key.clone(), v.clone());
        let curve = st.equity.entry(key).or_default();
        curve.push_back(point.clone());
        if curve.len() > cap {
            curve.pop_front();
        }
        (point, v)
    }

    /// `/api/state`: strategies, accounts, positions, equity curves and the
    /// analytics streams' values.
    pub fn state_json(&self) -> Value {
        let st = self.state.lock().expect("monitor lock");
        let curves: Vec<Value> = st
            .equity
            .iter()
            .map(|((s, y), c)| json!({"strategy": s, "symbol": y, "points": c}))
            .collect();
        let indicators: Vec<Value> = st
            .indicators
            .iter()
            .map(|((a, y), points)| json!({"analytics": a, "symbol": y, "points": points}))
            .collect();
        json!({
            "strategies": st.accounts.keys().collect::<Vec<_>>(),
            "accounts": st.accounts,
            "positions": st.positions.values().collect::<Vec<_>>(),
            "equity": curves,
            "indicators": indicators,
        })
    }

    /// `/api/signals`, `/api/orders`, `/api/fills`, `/api/alerts`: newest first.
    pub fn table_json(&self, table: &str) -> Option<Value> {
        let st = self.state.lock().expect("monitor lock");
        let q = match table {
            "signals" => &st.signals,
            "orders" => &st.orders,
            "fills" => &st.fills,
            "alerts" => &st.alerts,
            _ => return None,
        };
        Some(Value::Array(q.iter().cloned().collect()))
    }

    /// Wall time since the last input message of each topic (`None`: none yet).
    pub fn staleness(&self) -> BTreeMap<String, f64> {
        let st = self.state.lock().expect("monitor lock");
        st.last_input
            .iter()
            .map(|(t, i)| (t.clone(), i.elapsed().as_secs_f64()))
            .collect()
    }

    /// `/health`: healthy when the broker answers and the newest input message
    /// is at most `stale_after` old (or none has arrived yet).
    pub fn health(&self) -> (bool, Value) {
        let stale = self.staleness();
        let broker = self.broker_ok.load(Ordering::Relaxed);
        let newest = stale
            .values()
            .copied()
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.min(x))));
        let fresh = newest.is_none_or(|s| s <= self.stale_after.as_secs_f64());
        let ok = broker && fresh;
        (
            ok,
            json!({
                "status": if ok { "ok" } else { "unhealthy" },
                "broker_connected": broker,
                "feed_fresh": fresh,
                "stale_after_seconds": self.stale_after.as_secs_f64(),
                "seconds_since_last_input": stale,
                "uptime_seconds": self.started.elapsed().as_secs_f64(),
            }),
        )
    }
}
