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
use crate::domain::{Output, PnlMsg, Tick};

mod candles;
mod plots;
pub use candles::{Candle, Candles};
pub use plots::plots;

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
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
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
            prometheus::exponential_buckets(0.000_01, 2.5, 14).expect("buckets"),
        );
        let engine_step = hist(
            "papertrader_engine_step_seconds",
            "Wall time of one engine step (decode, admission, venue, strategies and any model inference) per input message",
            // 1-2-5 steps from 1 us to 0.5 s: tick-to-decision is microseconds,
            // and 20 us (issue 20's target) is a bucket bound.
            vec![
                1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2,
                2e-2, 5e-2, 0.1, 0.2, 0.5,
            ],
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

    /// The registry behind `/metrics`, where other parts of the process (the
    /// in-process `[[sources]]`) register their metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
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
    /// The symbol's P&L (realized + unrealized, fees included in realized).
    pub pnl: f64,
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
    /// (analytics, symbol) -> its last values per candle interval (the
    /// interval's number, the message), oldest first.
    indicators: BTreeMap<(String, String), VecDeque<(i64, Value)>>,
    /// topic -> wall time of its last input message.
    last_input: BTreeMap<String, Instant>,
    /// Input messages counted at recent wall times, for events per second.
    rate: VecDeque<(Instant, u64)>,
    inputs: u64,
    /// strategy -> paused / halted, as the engine reports after each control.
    status: BTreeMap<String, papertrader_core::engine::StrategyStatus>,
    /// Operator actions, newest first.
    controls: VecDeque<Value>,
    /// strategy -> (UTC day of its newest fill, fills that day), event time.
    fills_day: BTreeMap<String, (String, u64)>,
    /// symbol -> its fills for the price chart's markers, oldest first, as
    /// many as candles are kept.
    fill_marks: BTreeMap<String, VecDeque<Value>>,
}

/// An operator's action from the HTTP API, for the paper loop to apply; the
/// loop answers on `reply` with the published control message, or the reason
/// it was refused.
pub struct ControlRequest {
    pub action: papertrader_core::engine::ControlAction,
    pub strategy: String,
    pub symbol: Option<String>,
    /// Who asked: the API caller's name and address.
    pub by: String,
    pub reply: tokio::sync::oneshot::Sender<Result<Value, String>>,
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
    candles: Mutex<Candles>,
    /// The controls API's bearer token, and whether it was made at start.
    token: String,
    token_made: bool,
    /// To the paper loop, once it runs.
    controls: Mutex<Option<tokio::sync::mpsc::Sender<ControlRequest>>>,
    /// The strategies' own indicators, drawn beside `[[analytics]]` ([`plots`]).
    plots: Mutex<Option<crate::analytics::Analytics>>,
    /// The candle interval (ns) and how many candles are kept per symbol.
    candle_ns: i64,
    candles_kept: usize,
    /// What the page formats with: starting cash per strategy, lot-size
    /// decimals and tick-size decimals per symbol, each strategy's symbols.
    meta: Value,
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
            candles: Mutex::new(Candles::new(1_000_000_000, 5000)),
            token: random_token(),
            token_made: true,
            controls: Mutex::new(None),
            meta: json!({}),
            plots: Mutex::new(None),
            candle_ns: 1_000_000_000,
            candles_kept: 5000,
        }
    }

    /// From `[http]`.
    pub fn from_config(cfg: &crate::config::Loaded) -> Self {
        let h = &cfg.app.http;
        let mut m = Monitor::new(h.history, h.stale_after.to_std());
        m.candles = Mutex::new(Candles::new(h.candle.nanos(), h.candles_kept));
        m.candle_ns = h.candle.nanos().max(1_000_000_000) / 1_000_000_000 * 1_000_000_000;
        m.candles_kept = h.candles_kept.max(1);
        if !h.token.trim().is_empty() {
            m.token = h.token.trim().to_string();
            m.token_made = false;
        }
        let spec = cfg.engine_spec();
        let strategies: BTreeMap<&str, Value> = cfg
            .strategies
            .iter()
            .map(|s| {
                let v = json!({"starting_cash": s.account.starting_cash, "symbols": s.symbols});
                (s.name.as_str(), v)
            })
            .collect();
        let symbols: BTreeMap<&str, Value> = spec
            .instruments
            .iter()
            .map(|(sym, i)| {
                let v = json!({"lot_decimals": i.lot_size.normalize().scale(),
                    "price_decimals": i.tick_size.normalize().scale()});
                (sym.as_str(), v)
            })
            .collect();
        m.meta = json!({"strategies": strategies, "symbols": symbols,
            "candles_kept": h.candles_kept, "history": h.history});
        m.plots = Mutex::new(plots::strategy_plots(&cfg.strategies));
        m
    }

    /// The controls API's token, when it was made at start (to print once).
    pub fn made_token(&self) -> Option<&str> {
        self.token_made.then_some(self.token.as_str())
    }

    /// Whether `header` (an `Authorization` value) carries the token; the
    /// comparison takes the same time wherever the first difference is.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        // The scheme is case-insensitive (RFC 9110, 11.1).
        let Some(given) = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t)
        else {
            return false;
        };
        let (a, b) = (given.trim().as_bytes(), self.token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Where the paper loop takes operator actions from.
    pub fn set_controls(&self, tx: tokio::sync::mpsc::Sender<ControlRequest>) {
        *self.controls.lock().expect("controls lock") = Some(tx);
    }

    /// The paper loop's queue of operator actions (`None` before it runs).
    pub fn controls(&self) -> Option<tokio::sync::mpsc::Sender<ControlRequest>> {
        self.controls.lock().expect("controls lock").clone()
    }

    /// The strategies' pause and halt state, from the engine.
    pub fn set_status(&self, status: Vec<papertrader_core::engine::StrategyStatus>) {
        let mut st = self.state.lock().expect("monitor lock");
        for s in status {
            st.status.insert(s.strategy.clone(), s);
        }
        let v = json!({"status": st.status.values().collect::<Vec<_>>()});
        drop(st);
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(v.to_string());
        }
    }

    /// An operator action the paper loop applied and published.
    pub fn on_control(&self, msg: &Value) {
        let mut st = self.state.lock().expect("monitor lock");
        push_front(&mut st.controls, msg.clone(), self.history);
        drop(st);
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(json!({"controls": [msg]}).to_string());
        }
    }

    /// The trades of a batch, into the candles (after the batch is published).
    pub fn on_ticks(&self, ticks: &[Tick]) {
        if ticks.is_empty() {
            return;
        }
        let mut candles = self.candles.lock().expect("candles lock");
        let mut touched: BTreeMap<(String, i64), Candle> = BTreeMap::new();
        for t in ticks {
            if let Some((sym, c)) = candles.push(t) {
                touched.insert((sym, c.t), c);
            }
        }
        drop(candles);
        self.plot(ticks);
        if self.events.receiver_count() > 0 {
            let list: Vec<Value> = touched
                .into_iter()
                .map(|((sym, _), c)| json!({"symbol": sym, "candle": c}))
                .collect();
            let _ = self.events.send(json!({ "candles": list }).to_string());
        }
    }

    /// The strategies' indicators over `ticks`, into the indicator series
    /// (and to the page) like an analytics stream's.
    fn plot(&self, ticks: &[Tick]) {
        let mut plots = self.plots.lock().expect("plots lock");
        let Some(a) = plots.as_mut() else { return };
        let origin = crate::domain::Origin {
            topic: "dashboard".into(),
            partition: 0,
            offset: 0,
        };
        let mut msgs = Vec::new();
        for t in ticks {
            a.on_event(
                &crate::domain::MarketEvent::Tick(t.clone()),
                &origin,
                &mut msgs,
            );
        }
        drop(plots);
        let outs: Vec<Output> = msgs.into_iter().map(Output::Indicator).collect();
        self.on_published(&outs, &[]);
    }

    /// `/api/status`: the status line (broker, consumer lag, events per
    /// second, feed age per topic).
    pub fn status_json(&self) -> Value {
        let mut lag: BTreeMap<String, i64> = BTreeMap::new();
        for family in self.metrics.registry.gather() {
            if family.name() != "papertrader_consumer_lag" {
                continue;
            }
            for m in family.get_metric() {
                let topic = m
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "topic")
                    .map(|l| l.value().to_string())
                    .unwrap_or_default();
                *lag.entry(topic).or_default() += m.get_gauge().get_value() as i64;
            }
        }
        let st = self.state.lock().expect("monitor lock");
        // Inputs over the last five seconds (none counted lately: 0).
        let now = Instant::now();
        let window = Duration::from_secs(5);
        let recent: Vec<&(Instant, u64)> = st
            .rate
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= window)
            .collect();
        let rate = match (recent.first(), st.rate.back()) {
            (Some(a), Some(b)) if now > a.0 => (b.1 - a.1) as f64 / window.as_secs_f64(),
            _ => 0.0,
        };
        drop(st);
        json!({
            "broker_connected": self.broker_ok.load(Ordering::Relaxed),
            "consumer_lag": lag,
            "events_per_second": rate,
            "feed_age_seconds": self.staleness(),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
        })
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
            st.inputs += n;
        }
        // Events per second over the last five seconds.
        let total = st.inputs;
        st.rate.push_back((now, total));
        while st
            .rate
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(5))
        {
            st.rate.pop_front();
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
                    let marks = st.fill_marks.entry(f.symbol.clone()).or_default();
                    marks.push_back(
                        json!({"ts": crate::wire::format_ts(f.ts), "strategy": f.strategy,
                        "symbol": f.symbol, "side": f.side, "qty": f.qty, "price": f.price}),
                    );
                    if marks.len() > self.candles_kept {
                        marks.pop_front();
                    }
                    let day = crate::wire::format_ts(f.ts)[..10].to_string();
                    let e = st.fills_day.entry(f.strategy.clone()).or_default();
                    if e.0 == day {
                        e.1 += 1;
                    } else if e.0 < day {
                        *e = (day, 1);
                    }
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
                    // The last values of each candle interval, as many as candles kept.
                    let bucket = i.ts.div_euclid(self.candle_ns);
                    let key = (i.analytics.clone(), i.symbol.clone());
                    let series = st.indicators.entry(key).or_default();
                    match series.back_mut() {
                        Some((b, last)) if *b == bucket => *last = v,
                        _ => series.push_back((bucket, v)),
                    }
                    if series.len() > self.candles_kept {
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
            pnl: (p.realized + p.unrealized).to_f64().unwrap_or(0.0),
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
            .map(|((a, y), points)| {
                let points: Vec<&Value> = points.iter().map(|(_, v)| v).collect();
                json!({"analytics": a, "symbol": y, "points": points})
            })
            .collect();
        let candles = self.candles.lock().expect("candles lock");
        let series: Vec<Value> = candles
            .all()
            .iter()
            .map(|(sym, c)| json!({"symbol": sym, "candles": c}))
            .collect();
        json!({
            "strategies": st.accounts.keys().collect::<Vec<_>>(),
            "accounts": st.accounts,
            "positions": st.positions.values().collect::<Vec<_>>(),
            "equity": curves,
            "indicators": indicators,
            "candle_seconds": candles.interval_seconds(),
            "candles": series,
            "status": st.status.values().collect::<Vec<_>>(),
            "fills_day": st.fills_day,
            "fill_marks": st.fill_marks,
            "meta": self.meta,
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
            "controls" => &st.controls,
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

/// 32 random hex digits from the operating system's generator.
fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
