//! What the engine emits: signals, order lifecycle events, fills, P&L
//! snapshots and dead letters, one [`Output`] per message bound for an output
//! topic. Plain facts in domain types; their JSON is [`crate::wire`]'s
//! (`Output::to_json`, and a `Serialize` impl per message).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{Side, Ts};

/// An event the engine emits, bound for one output topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Signal(SignalMsg),
    Order(OrderMsg),
    Fill(FillMsg),
    Pnl(PnlMsg),
    DeadLetter(DeadLetterMsg),
    /// An alert rule fired (`[[alerts.rules]]`; [`crate::alerts`]).
    Alert(AlertMsg),
    /// Values of an analytics stream (`[[analytics]]`; [`crate::analytics`]).
    Indicator(IndicatorMsg),
}

/// Which output topic an [`Output`] goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputKind {
    Signals,
    Orders,
    Fills,
    Pnl,
    DeadLetters,
    Alerts,
    Indicators,
}

impl Output {
    pub fn kind(&self) -> OutputKind {
        match self {
            Output::Signal(_) => OutputKind::Signals,
            Output::Order(_) => OutputKind::Orders,
            Output::Fill(_) => OutputKind::Fills,
            Output::Pnl(_) => OutputKind::Pnl,
            Output::DeadLetter(_) => OutputKind::DeadLetters,
            Output::Alert(_) => OutputKind::Alerts,
            Output::Indicator(_) => OutputKind::Indicators,
        }
    }

    /// The message key: the symbol (or, for a dead letter, the input's key).
    pub fn key(&self) -> Option<&str> {
        match self {
            Output::Signal(m) => Some(&m.symbol),
            Output::Order(m) => Some(&m.symbol),
            Output::Fill(m) => Some(&m.symbol),
            Output::Pnl(m) => Some(&m.symbol),
            Output::DeadLetter(m) => m.key.as_deref(),
            Output::Alert(m) => Some(&m.subject),
            Output::Indicator(m) => Some(&m.symbol),
        }
    }

    /// The deterministic id of this output.
    pub fn id(&self) -> &str {
        match self {
            Output::Signal(m) => &m.signal_id,
            Output::Order(m) => &m.event_id,
            Output::Fill(m) => &m.fill_id,
            Output::Pnl(m) => &m.pnl_id,
            Output::DeadLetter(m) => &m.dead_letter_id,
            Output::Alert(m) => &m.alert_id,
            Output::Indicator(m) => &m.indicator_id,
        }
    }
}

/// The name, version and file of a model, for signals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// sha256 of the `.onnx` file.
    pub version: String,
    /// The spec file.
    pub spec: String,
}

/// A scored buy or sell signal (`signals`).
#[derive(Debug, Clone, PartialEq)]
pub struct SignalMsg {
    pub signal_id: String,
    pub strategy: String,
    /// The rule kind (`ma_crossover`, `model`, ...).
    pub kind: &'static str,
    pub symbol: String,
    pub ts: Ts,
    pub side: Side,
    pub strength: f64,
    pub price: Option<Decimal>,
    pub reason: BTreeMap<String, f64>,
    pub origin: String,
    /// The model behind a `model` strategy's signal: name, version (sha256 of
    /// the `.onnx` file) and spec file; `None` for rules and ensembles.
    pub model: Option<ModelInfo>,
}

/// An order type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    Market,
    Limit,
    Stop,
    StopLimit,
    TrailingStop,
}

/// Time in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tif {
    /// Good till cancelled.
    Gtc,
    /// Immediate or cancel: fill what can fill at arrival, cancel the rest.
    Ioc,
    /// Fill or kill: fill the whole quantity at arrival or reject it.
    Fok,
    /// Good for the session: expires at the session end (see `sim::matching::Session`).
    Day,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    New,
    Accepted,
    Triggered,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
    Expired,
    /// A cancel request for an order that is not open.
    CancelRejected,
}

impl OrderStatus {
    /// Nothing more happens to the order.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Expired
        )
    }
}

/// Who provided the liquidity of a fill from our side's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liquidity {
    /// Our resting order was hit.
    Maker,
    /// Our order took resting liquidity.
    Taker,
}

crate::closed_set! {
    OrderType {
        Market => "market",
        Limit => "limit",
        Stop => "stop",
        StopLimit => "stop_limit",
        TrailingStop => "trailing_stop",
    }
    Tif { Gtc => "gtc", Ioc => "ioc", Fok => "fok", Day => "day" }
    OrderStatus {
        New => "new",
        Accepted => "accepted",
        Triggered => "triggered",
        PartiallyFilled => "partially_filled",
        Filled => "filled",
        Cancelled => "cancelled",
        Rejected => "rejected",
        Expired => "expired",
        CancelRejected => "cancel_rejected",
    }
    Liquidity { Maker => "maker", Taker => "taker" }
}

/// An order lifecycle event (`orders`).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderMsg {
    pub event_id: String,
    pub order_id: String,
    pub signal_id: String,
    pub strategy: String,
    pub symbol: String,
    pub ts: Ts,
    pub side: Side,
    /// `market` or `limit` for the orders of signals; `stop`, `limit` and
    /// `trailing_stop` for the exits of a strategy's `[exits]`.
    pub order_type: OrderType,
    /// Limit price of a limit order.
    pub price: Option<Decimal>,
    /// Stop price of a stop order (a trailing stop's moves with the market).
    pub stop_price: Option<Decimal>,
    /// `ioc` for market orders; the configured time in force for limits.
    pub tif: Tif,
    pub qty: Decimal,
    pub status: OrderStatus,
    /// Quantity filled so far, and its volume-weighted average price.
    pub filled_qty: Decimal,
    pub avg_price: Option<Decimal>,
    /// Quantity still working.
    pub leaves_qty: Decimal,
    /// Why, for `cancelled`, `rejected` and `cancel_rejected`.
    pub reason: Option<String>,
}

/// A fill (`fills`).
#[derive(Debug, Clone, PartialEq)]
pub struct FillMsg {
    pub fill_id: String,
    pub order_id: String,
    pub strategy: String,
    pub symbol: String,
    pub ts: Ts,
    pub side: Side,
    pub qty: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    /// `taker` (our order took resting liquidity) or `maker` (ours was hit).
    pub liquidity: Liquidity,
    /// `(price - reference) * side sign`, positive is worse for us: the reference
    /// is the best opposite price when the order reached the venue (or its stop
    /// triggered); `None` when that side of the book was empty.
    pub slippage: Option<Decimal>,
}

/// A P&L snapshot of one strategy and symbol, with its whole account (`pnl`).
#[derive(Debug, Clone, PartialEq)]
pub struct PnlMsg {
    pub pnl_id: String,
    pub strategy: String,
    pub symbol: String,
    pub ts: Ts,
    pub position: Decimal,
    pub avg_cost: Decimal,
    pub last_price: Decimal,
    pub realized: Decimal,
    pub unrealized: Decimal,
    pub fees: Decimal,
    pub account_cash: Decimal,
    pub account_equity: Decimal,
    pub account_drawdown: Decimal,
    pub account_max_drawdown: Decimal,
}

/// A refused input message with its reason and its original bytes (`dead_letters`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterMsg {
    pub dead_letter_id: String,
    /// The refusal's code (`bad_json`, `out_of_order`, ...: `crate::wire::Rejection`).
    pub reason: &'static str,
    pub detail: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The original payload when it is UTF-8 text.
    pub payload: Option<String>,
    /// The original payload in hex when it is not UTF-8.
    pub payload_hex: Option<String>,
    /// Size of the original payload in bytes.
    pub payload_bytes: usize,
    /// True when the payload fields hold only the first
    /// `engine::DEAD_LETTER_PAYLOAD_LIMIT` bytes (messages refused as `too_large`).
    pub payload_truncated: bool,
}

/// One alert (`alerts` topic, dashboard, webhook, report).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertMsg {
    /// `alert:RULE:SUBJECT:ORIGIN`, the same for the same inputs.
    pub alert_id: String,
    pub rule: String,
    pub kind: &'static str,
    /// The symbol (breakout, zscore, stale_feed) or the strategy (drawdown).
    pub subject: String,
    /// Event time of the event that fired it (for stale_feed: of the last tick).
    pub ts: Ts,
    /// `above` / `below` (breakout, zscore), `beyond` (drawdown), `stale`.
    pub direction: &'static str,
    /// The observed value: price, z-score, drawdown fraction or seconds without a tick.
    pub value: f64,
    /// The bound it crossed.
    pub threshold: f64,
    pub message: String,
}

/// The values of one analytics stream for one symbol at one update
/// (`indicators` topic, dashboard).
#[derive(Debug, Clone, PartialEq)]
pub struct IndicatorMsg {
    /// `{analytics}:{symbol}:{origin}`, the same for the same inputs.
    pub indicator_id: String,
    /// The `[[analytics]]` entry's name.
    pub analytics: String,
    pub symbol: String,
    /// Event time of the tick (or of the last tick of the bar).
    pub ts: Ts,
    /// Value name -> value; `None` (JSON `null`) while warming up.
    pub values: BTreeMap<String, Option<f64>>,
    /// The input that produced it.
    pub origin: String,
}
