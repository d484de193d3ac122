//! The engine: one synchronous event loop shared by every mode.
//!
//! It consumes input messages (bytes with their [`Origin`]) or already decoded
//! [`MarketEvent`]s, and appends the events they cause to an output buffer:
//! dead letters, signals, orders, fills and P&L snapshots. It does no I/O and
//! reads no wall clock; time is the event time of the data. Paper mode feeds it
//! from a Kafka consumer group, backtests from a replay or a file: only the source
//! and the clock around it differ.
//!
//! Flow of one tick: validate (wire decode, symbol list, ordering) -> mark every
//! account that trades the symbol -> each strategy instance of the symbol may
//! decide -> the decision becomes a signal, then (sizing, cash check) an order ->
//! the order fills at the last trade price -> the account applies the fill -> a P&L
//! snapshot is emitted. Output ids derive from the origin of the input, so a replay
//! produces the same ids.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::account::Account;
use crate::config::{Loaded, SizingMode, StrategyConfig};
use crate::domain::{MarketEvent, Origin, Side, Tick, Ts};
use crate::strategy::{self, Decision, Strategy};
use crate::wire::{self, InputKind, Rejection};

/// An event the engine emits, bound for one output topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Output {
    Signal(SignalMsg),
    Order(OrderMsg),
    Fill(FillMsg),
    Pnl(PnlMsg),
    DeadLetter(DeadLetterMsg),
}

/// Which output topic an [`Output`] goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputKind {
    Signals,
    Orders,
    Fills,
    Pnl,
    DeadLetters,
}

impl Output {
    pub fn kind(&self) -> OutputKind {
        match self {
            Output::Signal(_) => OutputKind::Signals,
            Output::Order(_) => OutputKind::Orders,
            Output::Fill(_) => OutputKind::Fills,
            Output::Pnl(_) => OutputKind::Pnl,
            Output::DeadLetter(_) => OutputKind::DeadLetters,
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
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("outputs serialize")
    }
}

/// A scored buy or sell signal (`signals`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalMsg {
    pub signal_id: String,
    pub strategy: String,
    pub kind: &'static str,
    pub symbol: String,
    #[serde(with = "wire::ts_format")]
    pub ts: Ts,
    pub side: Side,
    pub strength: f64,
    pub price: Option<Decimal>,
    pub reason: BTreeMap<String, f64>,
    pub origin: String,
}

/// An order lifecycle event (`orders`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderMsg {
    pub event_id: String,
    pub order_id: String,
    pub signal_id: String,
    pub strategy: String,
    pub symbol: String,
    #[serde(with = "wire::ts_format")]
    pub ts: Ts,
    pub side: Side,
    #[serde(rename = "type")]
    pub order_type: &'static str,
    pub qty: Decimal,
    /// `new`, `filled` or `rejected`.
    pub status: &'static str,
    pub filled_qty: Decimal,
    pub avg_price: Option<Decimal>,
    pub reason: Option<String>,
}

/// A fill (`fills`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FillMsg {
    pub fill_id: String,
    pub order_id: String,
    pub strategy: String,
    pub symbol: String,
    #[serde(with = "wire::ts_format")]
    pub ts: Ts,
    pub side: Side,
    pub qty: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub liquidity: &'static str,
}

/// A P&L snapshot of one strategy and symbol, with its whole account (`pnl`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PnlMsg {
    pub pnl_id: String,
    pub strategy: String,
    pub symbol: String,
    #[serde(with = "wire::ts_format")]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterMsg {
    pub dead_letter_id: String,
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
    /// [`DEAD_LETTER_PAYLOAD_LIMIT`] bytes (messages refused as `too_large`).
    pub payload_truncated: bool,
}

/// Most payload bytes a dead letter carries. Every message the decoder accepts for
/// inspection is smaller (`wire::MAX_MESSAGE_BYTES`); only `too_large` ones are cut,
/// so that a dead letter always fits in a broker's message size limit.
pub const DEAD_LETTER_PAYLOAD_LIMIT: usize = wire::MAX_MESSAGE_BYTES;

/// Counts per strategy and symbol.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SymbolCounts {
    pub ticks: u64,
    pub sentiment: u64,
    pub signals: u64,
    pub orders: u64,
    pub fills: u64,
    pub rejected: u64,
}

/// Counts of what the engine consumed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InputCounts {
    /// Valid messages processed, by input kind.
    pub processed: BTreeMap<String, u64>,
    /// Dead letters by reason.
    pub dead_letters: BTreeMap<String, u64>,
}

impl InputCounts {
    pub fn total_processed(&self) -> u64 {
        self.processed.values().sum()
    }
    pub fn total_dead(&self) -> u64 {
        self.dead_letters.values().sum()
    }
}

struct Instance {
    rule: Box<dyn Strategy>,
    counts: SymbolCounts,
}

struct Slot {
    cfg: StrategyConfig,
    account: Account,
    instances: BTreeMap<String, Instance>,
}

/// The engine. Build it from a loaded configuration.
pub struct Engine {
    slots: Vec<Slot>,
    /// symbol -> indexes of the slots that trade it.
    by_symbol: HashMap<String, Vec<usize>>,
    symbols: Option<BTreeSet<String>>,
    max_out_of_order: Ts,
    newest: HashMap<(InputKind, String), Ts>,
    last_price: HashMap<String, Decimal>,
    pnl_every: u64,
    counts: InputCounts,
    last_ts: Ts,
}

impl Engine {
    pub fn new(cfg: &Loaded) -> Self {
        let mut by_symbol: HashMap<String, Vec<usize>> = HashMap::new();
        let slots = cfg
            .strategies
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut instances = BTreeMap::new();
                for sym in &s.symbols {
                    instances.insert(
                        sym.clone(),
                        Instance {
                            rule: strategy::build(&s.rule),
                            counts: SymbolCounts::default(),
                        },
                    );
                    let v = by_symbol.entry(sym.clone()).or_default();
                    if !v.contains(&i) {
                        v.push(i);
                    }
                }
                Slot {
                    cfg: s.clone(),
                    account: Account::new(s.account.starting_cash),
                    instances,
                }
            })
            .collect();
        let symbols = if cfg.app.input.symbols.is_empty() {
            None
        } else {
            Some(cfg.app.input.symbols.iter().cloned().collect())
        };
        Engine {
            slots,
            by_symbol,
            symbols,
            max_out_of_order: cfg.max_out_of_order,
            newest: HashMap::new(),
            last_price: HashMap::new(),
            pnl_every: cfg.app.engine.pnl_every_ticks,
            counts: InputCounts::default(),
            last_ts: 0,
        }
    }

    /// Process one raw input message.
    pub fn on_message(
        &mut self,
        kind: InputKind,
        origin: &Origin,
        key: Option<&[u8]>,
        payload: &[u8],
        out: &mut Vec<Output>,
    ) {
        match wire::decode(kind, payload) {
            Ok(ev) => self.on_event(kind, origin, key, payload, ev, out),
            Err(r) => self.dead_letter(origin, key, payload, r, out),
        }
    }

    /// Process one decoded input event. `key` and `payload` are kept for a dead letter.
    pub fn on_event(
        &mut self,
        kind: InputKind,
        origin: &Origin,
        key: Option<&[u8]>,
        payload: &[u8],
        ev: MarketEvent,
        out: &mut Vec<Output>,
    ) {
        if let Err(r) = self.admit(kind, &ev) {
            return self.dead_letter(origin, key, payload, r, out);
        }
        *self
            .counts
            .processed
            .entry(kind_name(kind).to_string())
            .or_default() += 1;
        self.last_ts = self.last_ts.max(ev.ts());
        match ev {
            MarketEvent::Tick(t) => self.on_tick(origin, &t, out),
            MarketEvent::Sentiment(s) => {
                let Some(slots) = self.by_symbol.get(&s.symbol) else {
                    return;
                };
                for &i in slots {
                    let slot = &mut self.slots[i];
                    let inst = slot
                        .instances
                        .get_mut(&s.symbol)
                        .expect("instance per symbol");
                    inst.counts.sentiment += 1;
                    if let Some(d) = inst.rule.on_sentiment(&s) {
                        let price = self.last_price.get(&s.symbol).copied();
                        decide(slot, &s.symbol, s.ts, price, d, origin, out);
                    }
                }
            }
            // Depth is accepted and counted; fills against it arrive with the order book.
            MarketEvent::Book(_) => {}
        }
    }

    /// The checks that need state: the symbol list and event-time ordering.
    fn admit(&mut self, kind: InputKind, ev: &MarketEvent) -> Result<(), Rejection> {
        let symbol = ev.symbol();
        if let Some(allowed) = &self.symbols {
            if !allowed.contains(symbol) {
                return Err(Rejection::new(
                    "unknown_symbol",
                    format!("symbol {symbol:?} is not in input.symbols"),
                ));
            }
        }
        let ts = ev.ts();
        match self.newest.get_mut(&(kind, symbol.to_string())) {
            Some(newest) => {
                if ts < *newest - self.max_out_of_order {
                    return Err(Rejection::new(
                        "out_of_order",
                        format!(
                            "ts {} is more than input.max_out_of_order behind the newest {} seen for {symbol}",
                            wire::format_ts(ts),
                            wire::format_ts(*newest)
                        ),
                    ));
                }
                *newest = (*newest).max(ts);
            }
            None => {
                self.newest.insert((kind, symbol.to_string()), ts);
            }
        }
        Ok(())
    }

    fn on_tick(&mut self, origin: &Origin, t: &Tick, out: &mut Vec<Output>) {
        self.last_price.insert(t.symbol.clone(), t.price);
        let Some(slots) = self.by_symbol.get(&t.symbol) else {
            return;
        };
        let price = t.price.to_f64().unwrap_or(f64::NAN);
        for &i in slots {
            let slot = &mut self.slots[i];
            slot.account.mark(&t.symbol, t.price);
            let inst = slot
                .instances
                .get_mut(&t.symbol)
                .expect("instance per symbol");
            inst.counts.ticks += 1;
            let ticks = inst.counts.ticks;
            let mut filled = false;
            if let Some(d) = inst.rule.on_tick(t, price) {
                filled = decide(slot, &t.symbol, t.ts, Some(t.price), d, origin, out);
            }
            if !filled && self.pnl_every > 0 && ticks.is_multiple_of(self.pnl_every) {
                out.push(pnl(slot, &t.symbol, t.ts, origin));
            }
        }
    }

    fn dead_letter(
        &mut self,
        origin: &Origin,
        key: Option<&[u8]>,
        payload: &[u8],
        r: Rejection,
        out: &mut Vec<Output>,
    ) {
        *self
            .counts
            .dead_letters
            .entry(r.code.to_string())
            .or_default() += 1;
        let kept = &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_LIMIT)];
        let (text, hex) = match std::str::from_utf8(kept) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (
                None,
                Some(kept.iter().map(|b| format!("{b:02x}")).collect()),
            ),
        };
        out.push(Output::DeadLetter(DeadLetterMsg {
            dead_letter_id: format!("dl:{origin}"),
            reason: r.code,
            detail: r.detail,
            topic: origin.topic.clone(),
            partition: origin.partition,
            offset: origin.offset,
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: text,
            payload_hex: hex,
            payload_bytes: payload.len(),
            payload_truncated: kept.len() < payload.len(),
        }));
    }

    pub fn counts(&self) -> &InputCounts {
        &self.counts
    }

    /// The newest event time seen.
    pub fn last_ts(&self) -> Ts {
        self.last_ts
    }

    /// A summary of every strategy, symbol and account.
    pub fn summary(&self) -> crate::summary::Summary {
        crate::summary::Summary::new(
            self.slots.iter().map(|s| {
                (
                    &s.cfg,
                    &s.account,
                    s.instances.iter().map(|(k, v)| (k, &v.counts)),
                )
            }),
            &self.counts,
        )
    }
}

fn kind_name(kind: InputKind) -> &'static str {
    match kind {
        InputKind::Prices => "prices",
        InputKind::Sentiment => "sentiment",
        InputKind::OrderBook => "order_book",
    }
}

/// Turn a decision into a signal and, when it changes the position, an order that
/// fills at the last trade price. Returns whether a fill happened (a P&L snapshot
/// is then emitted).
fn decide(
    slot: &mut Slot,
    symbol: &str,
    ts: Ts,
    price: Option<Decimal>,
    d: Decision,
    origin: &Origin,
    out: &mut Vec<Output>,
) -> bool {
    let strategy = slot.cfg.name.clone();
    let signal_id = format!("{strategy}:{symbol}:{origin}");
    let inst = slot.instances.get_mut(symbol).expect("instance per symbol");
    inst.counts.signals += 1;
    out.push(Output::Signal(SignalMsg {
        signal_id: signal_id.clone(),
        strategy: strategy.clone(),
        kind: slot.cfg.rule.kind(),
        symbol: symbol.to_string(),
        ts,
        side: d.side,
        strength: d.strength,
        price,
        reason: d.reason,
        origin: origin.to_string(),
    }));

    let Some(price) = price else {
        // A sentiment signal before any trade of the symbol: nothing to price an order at.
        return false;
    };
    let position = slot.account.position(symbol);
    let target = target_qty(&slot.cfg, &slot.account, price);
    let allow_short = slot.cfg.account.allow_short;
    let qty = match d.side {
        Side::Buy if position > Decimal::ZERO => Decimal::ZERO,
        Side::Buy => target - position,
        Side::Sell if position < Decimal::ZERO => Decimal::ZERO,
        Side::Sell => position + if allow_short { target } else { Decimal::ZERO },
    };
    if qty <= Decimal::ZERO {
        return false;
    }
    let order_id = format!("{signal_id}:o");
    let fee = qty * price * slot.cfg.account.fee_bps / Decimal::from(10_000);
    let order =
        |status: &'static str, filled: Decimal, avg: Option<Decimal>, reason: Option<String>| {
            OrderMsg {
                event_id: format!("{order_id}:{status}"),
                order_id: order_id.clone(),
                signal_id: signal_id.clone(),
                strategy: strategy.clone(),
                symbol: symbol.to_string(),
                ts,
                side: d.side,
                order_type: "market",
                qty,
                status,
                filled_qty: filled,
                avg_price: avg,
                reason,
            }
        };
    inst.counts.orders += 1;
    out.push(Output::Order(order("new", Decimal::ZERO, None, None)));
    // Cash check: a buy that opens or adds to a long must be paid for in cash.
    if d.side == Side::Buy {
        let cost = qty * price + fee;
        let cover = (-position).max(Decimal::ZERO).min(qty);
        // Covering a short is paid from the short sale's proceeds, held in cash.
        if cover < qty && cost > slot.account.cash {
            inst.counts.rejected += 1;
            out.push(Output::Order(order(
                "rejected",
                Decimal::ZERO,
                None,
                Some(format!(
                    "insufficient_cash: needs {} (with fee), has {}",
                    cost.round_dp(2),
                    slot.account.cash.round_dp(2)
                )),
            )));
            return false;
        }
    }
    slot.account.apply_fill(symbol, d.side, qty, price, fee);
    inst.counts.fills += 1;
    out.push(Output::Order(order("filled", qty, Some(price), None)));
    out.push(Output::Fill(FillMsg {
        fill_id: format!("{order_id}:f1"),
        order_id: order_id.clone(),
        strategy: strategy.clone(),
        symbol: symbol.to_string(),
        ts,
        side: d.side,
        qty,
        price,
        fee,
        liquidity: "taker",
    }));
    out.push(pnl(slot, symbol, ts, origin));
    true
}

/// The quantity a new position should have, rounded down to the lot size.
fn target_qty(cfg: &StrategyConfig, account: &Account, price: Decimal) -> Decimal {
    let z = &cfg.sizing;
    let raw = match z.mode {
        SizingMode::FixedQuantity => z.quantity.unwrap_or_default(),
        SizingMode::FixedNotional => z.notional.unwrap_or_default() / price,
        SizingMode::FractionOfEquity => z.fraction.unwrap_or_default() * account.equity() / price,
    };
    ((raw / z.lot_size).floor() * z.lot_size).max(Decimal::ZERO)
}

fn pnl(slot: &Slot, symbol: &str, ts: Ts, origin: &Origin) -> Output {
    let a = &slot.account;
    let p = a.positions.get(symbol).cloned().unwrap_or_default();
    Output::Pnl(PnlMsg {
        pnl_id: format!("{}:{symbol}:{origin}:pnl", slot.cfg.name),
        strategy: slot.cfg.name.clone(),
        symbol: symbol.to_string(),
        ts,
        position: p.qty,
        avg_cost: p.avg_cost,
        last_price: p.last_price,
        realized: p.realized,
        unrealized: p.unrealized(),
        fees: p.fees,
        account_cash: a.cash,
        account_equity: a.equity(),
        account_drawdown: a.drawdown(),
        account_max_drawdown: a.max_drawdown,
    })
}
