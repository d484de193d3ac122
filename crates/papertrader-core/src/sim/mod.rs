//! The mock venue: per-symbol order books and a fill simulator. Pure and
//! synchronous: no I/O, no wall clock; time is the event time ([`Ts`]) of the
//! inputs.
//!
//! | module | owns |
//! |---|---|
//! | [`instrument`] | [`InstrumentConfig`]: tick and lot size, fees, the synthesized book's model; price <-> ticks |
//! | [`fee`] | [`FeeModel`]: the fee of a fill by its [`Liquidity`] |
//! | [`book`] | the L2 book keyed by integer ticks, and the book synthesized around the last trade |
//! | [`order`] | order types, TIF, validation, lifecycle events ([`SimEvent`]) and [`order::Fill`] |
//! | [`matching`] | **how fills are decided**: book walking, queue position, stops, DAY expiry, fees |
//! | [`latency`] | when orders and cancels reach the venue |
//! | [`risk`] | why an order is refused before it is sent |
//!
//! [`Simulator`] ties them together. Its inputs are `on_trade`, `on_book`,
//! `submit`, `cancel`, `cancel_all` and `advance`; each appends the events it
//! causes to a `&mut Vec<SimEvent>`. Order of processing:
//! 1. A submitted order is checked at once (known symbol, unique id, tick and lot
//!    sizes, risk): `New`, then `Rejected{reason}` or a pending entry that reaches
//!    the venue at `LatencyModel::entry(ts)`. Cancels likewise reach the venue
//!    after `LatencyModel::cancel(ts)`.
//! 2. A request that reaches the venue at `a` is executed when event time passes
//!    `a`: before any market event with `ts > a`, or at `submit`/`cancel`/`advance`
//!    with `ts >= a`. A market event at exactly `a` is applied first, so an order
//!    arriving at `a` sees the book as of `a`.
//! 3. DAY orders expire at their session end before anything later is processed.
//!
//! The simulator keeps an [`Account`] to which it applies its own fills: the risk
//! checks read position and cash from it. Events and ids are deterministic: the
//! same inputs in the same order give the same events.

pub mod book;
pub mod fee;
pub mod instrument;
pub mod latency;
pub mod matching;
pub mod order;
pub mod risk;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

use crate::account::Account;
use crate::domain::{BookUpdate, Side, Ts};
pub use book::Book;
pub use fee::{BpsFee, FeeModel, Liquidity};
use instrument::to_ticks_exact;
pub use instrument::{CapRest, FillModel, InstrumentConfig, Spread, SynthBook};
pub use latency::{ConstantLatency, LatencyModel};
pub use matching::{QueueModel, Session, TradesReduceQueue, Venue, VenueState};
pub use order::{EventKind, Fill, Order, OrderKind, SimEvent, Tif};
pub use risk::{RiskContext, RiskLimits, RiskManager};

/// A request on its way to the venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Action {
    Submit(Order),
    Cancel(String),
    CancelAll(Option<String>),
}

/// The fill simulator over several symbols.
pub struct Simulator {
    venues: BTreeMap<String, Venue>,
    latency: Box<dyn LatencyModel>,
    queue: Box<dyn QueueModel>,
    session: Session,
    risk: RiskManager,
    account: Account,
    /// (arrival ts, sequence) -> request.
    pending: BTreeMap<(Ts, u64), Action>,
    seq: u64,
    /// Every order id admitted so far -> its symbol (ids are never reused).
    ids: BTreeMap<String, String>,
}

/// Everything of a [`Simulator`] that events change: venues (books, open
/// orders), requests in flight, the risk manager's state and the account. The
/// instruments, latency and queue models come from the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimState {
    venues: BTreeMap<String, VenueState>,
    halted: bool,
    recent_orders: VecDeque<Ts>,
    account: Account,
    pending: Vec<((Ts, u64), Action)>,
    seq: u64,
    ids: BTreeMap<String, String>,
}

/// A simulator that cannot be built: an instrument's config is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instrument {symbol}: {reason}")]
pub struct InstrumentError {
    pub symbol: String,
    pub reason: String,
}

impl Simulator {
    /// A simulator for the given instruments, with constant latency, the
    /// trades-reduce-queue model, UTC-midnight sessions, an account with
    /// `starting_cash` and the given risk limits.
    ///
    /// # Errors
    /// An instrument whose config fails [`InstrumentConfig::validate`].
    pub fn new(
        instruments: BTreeMap<String, InstrumentConfig>,
        latency_ns: i64,
        limits: RiskLimits,
        starting_cash: Decimal,
    ) -> Result<Self, InstrumentError> {
        Simulator::with_models(
            instruments,
            Box::new(ConstantLatency::new(latency_ns)),
            Box::new(TradesReduceQueue),
            Session::default(),
            RiskManager::new(limits),
            Account::new(starting_cash),
        )
    }

    /// A simulator with explicit models.
    ///
    /// # Errors
    /// An instrument whose config fails [`InstrumentConfig::validate`].
    pub fn with_models(
        instruments: BTreeMap<String, InstrumentConfig>,
        latency: Box<dyn LatencyModel>,
        queue: Box<dyn QueueModel>,
        session: Session,
        risk: RiskManager,
        account: Account,
    ) -> Result<Self, InstrumentError> {
        for (symbol, c) in &instruments {
            c.validate().map_err(|reason| InstrumentError {
                symbol: symbol.clone(),
                reason,
            })?;
        }
        Ok(Simulator {
            venues: instruments
                .into_iter()
                .map(|(s, c)| (s.clone(), Venue::new(&s, c)))
                .collect(),
            latency,
            queue,
            session,
            risk,
            account,
            pending: BTreeMap::new(),
            seq: 0,
            ids: BTreeMap::new(),
        })
    }

    /// The state a checkpoint keeps (see [`SimState`]).
    pub fn state(&self) -> SimState {
        let (halted, recent_orders) = self.risk.state();
        SimState {
            venues: self
                .venues
                .iter()
                .map(|(s, v)| (s.clone(), v.state()))
                .collect(),
            halted,
            recent_orders,
            account: self.account.clone(),
            pending: self.pending.iter().map(|(k, a)| (*k, a.clone())).collect(),
            seq: self.seq,
            ids: self.ids.clone(),
        }
    }

    /// Restore a checkpoint's state into a simulator built from the same
    /// configuration.
    ///
    /// # Errors
    /// The state names a symbol this simulator does not trade.
    pub fn restore(&mut self, s: SimState) -> Result<(), String> {
        for (symbol, v) in s.venues {
            self.venues
                .get_mut(&symbol)
                .ok_or_else(|| format!("the checkpoint has a venue for {symbol}, which the strategy no longer trades"))?
                .restore(v);
        }
        self.risk.restore((s.halted, s.recent_orders));
        self.account = s.account;
        for (symbol, v) in &mut self.venues {
            v.position = self.account.position(symbol);
        }
        self.pending = s.pending.into_iter().collect();
        self.seq = s.seq;
        self.ids = s.ids;
        Ok(())
    }

    pub fn venue(&self, symbol: &str) -> Option<&Venue> {
        self.venues.get(symbol)
    }

    /// The book of `symbol` as of the last event (a synthesized book is
    /// brought up to the last trade first).
    pub fn book(&mut self, symbol: &str) -> Option<&Book> {
        self.venues.get_mut(symbol).map(|v| {
            v.sync_book();
            &v.book
        })
    }

    /// The account the simulator's own fills are applied to.
    pub fn account(&self) -> &Account {
        &self.account
    }

    pub fn risk_mut(&mut self) -> &mut RiskManager {
        &mut self.risk
    }

    /// Kill switch: every new order is rejected until `resume`.
    pub fn halt(&mut self) {
        self.risk.halt();
    }

    pub fn resume(&mut self) {
        self.risk.resume();
    }

    /// Requests on their way to the venue.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A trade printed on `symbol` (unknown symbols are ignored).
    pub fn on_trade(
        &mut self,
        symbol: &str,
        ts: Ts,
        price: Decimal,
        size: Decimal,
        out: &mut Vec<SimEvent>,
    ) {
        self.step(ts, false, out);
        let start = out.len();
        if let Some(v) = self.venues.get_mut(symbol) {
            v.on_trade(ts, price, size, &*self.queue, out);
            self.account.mark(symbol, price);
        }
        self.settle(start, out);
    }

    /// A depth message (unknown symbols are ignored).
    pub fn on_book(&mut self, u: &BookUpdate, out: &mut Vec<SimEvent>) {
        self.step(u.ts, false, out);
        if let Some(v) = self.venues.get_mut(u.symbol.as_str()) {
            v.on_book(u, &*self.queue);
        }
    }

    /// Event time has reached `ts`: execute the requests that arrived by then and
    /// expire DAY orders.
    pub fn advance(&mut self, ts: Ts, out: &mut Vec<SimEvent>) {
        self.step(ts, true, out);
    }

    /// Event time has passed up to `ts` (exclusive): execute the requests that
    /// arrived before it. A market event at `ts` may still follow and is applied
    /// before requests arriving at `ts`.
    pub fn catch_up(&mut self, ts: Ts, out: &mut Vec<SimEvent>) {
        self.step(ts, false, out);
    }

    /// True when trading is halted (kill switch).
    pub fn is_halted(&self) -> bool {
        self.risk.is_halted()
    }

    /// Kill switch: cancel every open order, send a market order (immediate or
    /// cancel, past the risk checks) that closes each open position, and halt:
    /// every later order is rejected. Order ids are `{id_prefix}:{symbol}`.
    /// Called again while halted, it sends new closing orders for what is still
    /// open (a thin book may close a position over several calls).
    pub fn flatten_and_halt(&mut self, ts: Ts, id_prefix: &str, out: &mut Vec<SimEvent>) {
        self.step(ts, true, out);
        self.risk.halt();
        let at = self.latency.cancel(ts, "*").max(ts);
        self.enqueue(at, Action::CancelAll(None));
        let open: Vec<(String, Decimal)> = self
            .account
            .positions
            .iter()
            .filter(|(s, p)| !p.qty.is_zero() && self.venues.contains_key(*s))
            .map(|(s, p)| (s.clone(), p.qty))
            .collect();
        for (symbol, qty) in open {
            let lot = self.venues[&symbol].cfg.lot_size;
            let abs = (qty.abs() / lot).floor() * lot;
            if abs.is_zero() {
                continue;
            }
            let side = if qty > Decimal::ZERO {
                Side::Sell
            } else {
                Side::Buy
            };
            let order = Order {
                reduce_only: true,
                ..Order::market(&format!("{id_prefix}:{symbol}"), &symbol, side, abs)
            };
            out.push(SimEvent {
                ts,
                order_id: order.id.clone(),
                symbol: symbol.clone(),
                kind: EventKind::New,
            });
            if self.ids.contains_key(&order.id) {
                out.push(SimEvent {
                    ts,
                    order_id: order.id.clone(),
                    symbol,
                    kind: EventKind::Rejected {
                        reason: format!("duplicate order id {:?}", order.id),
                    },
                });
                continue;
            }
            self.ids.insert(order.id.clone(), symbol);
            let at = self.latency.entry(ts, &order).max(ts);
            self.enqueue(at, Action::Submit(order));
        }
        self.step(ts, true, out);
    }

    /// Submit an order at event time `ts` (see the module docs for what follows).
    pub fn submit(&mut self, ts: Ts, order: Order, out: &mut Vec<SimEvent>) {
        self.step(ts, true, out);
        out.push(SimEvent {
            ts,
            order_id: order.id.clone(),
            symbol: order.symbol.clone(),
            kind: EventKind::New,
        });
        if let Some(v) = self.venues.get_mut(&order.symbol) {
            // The risk checks price the order off the book it will meet.
            v.book_for(&order);
        }
        if let Err(reason) = self.admit(ts, &order) {
            out.push(SimEvent {
                ts,
                order_id: order.id.clone(),
                symbol: order.symbol.clone(),
                kind: EventKind::Rejected { reason },
            });
            return;
        }
        self.ids.insert(order.id.clone(), order.symbol.clone());
        let at = self.latency.entry(ts, &order).max(ts);
        self.enqueue(at, Action::Submit(order));
        self.step(ts, true, out);
    }

    /// The largest quantity of the buy `order` (its kind and limit; its
    /// quantity is ignored) that the pre-trade cash check admits now: cash,
    /// less the open buys, over the reference price with the taker fee, the
    /// price the check uses (`sim::risk`). `None` for a sell, an unknown
    /// symbol or no price to check against. Not rounded to the lot size.
    pub fn affordable(&mut self, order: &Order) -> Option<Decimal> {
        if order.side != Side::Buy {
            return None;
        }
        let v = self.venues.get_mut(&order.symbol)?;
        v.book_for(order);
        let v = self.venues.get(&order.symbol)?;
        let ctx = self.risk_context(order, v);
        let price = ctx.price.filter(|p| *p > Decimal::ZERO)?;
        let rate = Decimal::ONE + ctx.taker_fee_bps / Decimal::from(10_000);
        // The minimum fee set aside; then the levels the order would take, at
        // their prices (a market buy walks past the best ask), and the
        // reference price beyond them.
        let mut left = ctx.cash - ctx.open_buy_notional - v.cfg.min_fee;
        if left <= Decimal::ZERO {
            return Some(Decimal::ZERO);
        }
        let limit = order
            .limit_price()
            .and_then(|p| to_ticks_exact(p, v.cfg.tick_size));
        let mut qty = Decimal::ZERO;
        for (t, size) in v.book.takeable(Side::Buy, limit) {
            let unit = v.book.price(t).max(price) * rate;
            if left <= size * unit {
                return Some(qty + left / unit);
            }
            qty += size;
            left -= size * unit;
        }
        Some(qty + left / (price * rate))
    }

    /// Request the cancel of one order at event time `ts`.
    pub fn cancel(&mut self, ts: Ts, order_id: &str, out: &mut Vec<SimEvent>) {
        self.step(ts, true, out);
        let at = self.latency.cancel(ts, order_id).max(ts);
        self.enqueue(at, Action::Cancel(order_id.to_string()));
        self.step(ts, true, out);
    }

    /// Request the cancel of every open order (of one symbol, or all).
    pub fn cancel_all(&mut self, ts: Ts, symbol: Option<&str>, out: &mut Vec<SimEvent>) {
        self.step(ts, true, out);
        let at = self.latency.cancel(ts, "*").max(ts);
        self.enqueue(at, Action::CancelAll(symbol.map(str::to_string)));
        self.step(ts, true, out);
    }

    fn enqueue(&mut self, at: Ts, a: Action) {
        self.seq += 1;
        self.pending.insert((at, self.seq), a);
    }

    /// Static and risk checks at submission.
    fn admit(&mut self, ts: Ts, order: &Order) -> Result<(), String> {
        let Some(v) = self.venues.get(&order.symbol) else {
            return Err(format!("unknown symbol {:?}", order.symbol));
        };
        if self.ids.contains_key(&order.id) {
            return Err(format!("duplicate order id {:?}", order.id));
        }
        order.validate(&v.cfg)?;
        let ctx = self.risk_context(order, v);
        self.risk.check(ts, order, &ctx)
    }

    fn risk_context(&self, order: &Order, v: &Venue) -> RiskContext {
        let mut open_buys = Decimal::ZERO;
        let mut open_sells = Decimal::ZERO;
        let mut open_buy_notional = Decimal::ZERO;
        let mut count = |o: &Order, leaves: Decimal, venue: &Venue| {
            // Exits only ever reduce: they reserve neither position nor cash.
            if o.reduce_only {
                return;
            }
            if o.side == Side::Buy {
                let p = reference_price(o, venue).unwrap_or_default();
                open_buy_notional += leaves * p;
            }
            if o.symbol == order.symbol {
                match o.side {
                    Side::Buy => open_buys += leaves,
                    Side::Sell => open_sells -= leaves,
                }
            }
        };
        for venue in self.venues.values() {
            for w in venue.open_orders() {
                count(&w.order, w.leaves, venue);
            }
        }
        for a in self.pending.values() {
            if let Action::Submit(o) = a {
                if let Some(venue) = self.venues.get(&o.symbol) {
                    count(o, o.qty, venue);
                }
            }
        }
        RiskContext {
            position: self.account.position(&order.symbol),
            open_buys,
            open_sells,
            open_buy_notional,
            gross_notional: self
                .account
                .positions
                .values()
                .map(|p| p.market_value().abs())
                .sum(),
            cash: self.account.cash,
            price: reference_price(order, v),
            taker_fee_bps: v.cfg.taker_fee_bps,
        }
    }

    /// Execute the pending requests that reached the venue before `ts` (or at
    /// `ts` when `inclusive`), expiring DAY orders on the way.
    fn step(&mut self, ts: Ts, inclusive: bool, out: &mut Vec<SimEvent>) {
        // Nothing in flight and nothing that could expire.
        if self.pending.is_empty() && self.venues.values().all(Venue::is_idle) {
            return;
        }
        let start = out.len();
        while let Some((&(at, seq), _)) = self.pending.first_key_value() {
            if at > ts || (at == ts && !inclusive) {
                break;
            }
            let action = self.pending.remove(&(at, seq)).expect("present");
            for v in self.venues.values_mut() {
                v.expire(at, out);
            }
            self.execute(at, action, out);
        }
        for v in self.venues.values_mut() {
            v.expire(ts, out);
        }
        self.settle(start, out);
    }

    fn execute(&mut self, at: Ts, action: Action, out: &mut Vec<SimEvent>) {
        match action {
            Action::Submit(o) => {
                let v = self.venues.get_mut(&o.symbol).expect("admitted symbol");
                v.arrive(at, o, &self.session, out);
            }
            Action::Cancel(id) => {
                let done = self
                    .venues
                    .values_mut()
                    .any(|v| v.cancel(at, &id, "cancelled by request", out));
                if !done {
                    out.push(SimEvent {
                        ts: at,
                        symbol: self.ids.get(&id).cloned().unwrap_or_default(),
                        kind: EventKind::CancelRejected {
                            reason: format!("order {id:?} is not open"),
                        },
                        order_id: id,
                    });
                }
            }
            Action::CancelAll(symbol) => {
                for (s, v) in &mut self.venues {
                    if symbol.as_ref().is_none_or(|x| x == s) {
                        v.cancel_all(at, out);
                    }
                }
            }
        }
    }

    /// Apply the fills among `out[start..]` to the account.
    fn settle(&mut self, start: usize, out: &[SimEvent]) {
        for f in out[start..].iter().filter_map(SimEvent::fill) {
            self.account
                .apply_fill(&f.symbol, f.side, f.qty, f.price, f.fee);
        }
    }
}

/// The price an order is checked at: its limit, its stop, the best opposite
/// price, or the last trade.
fn reference_price(o: &Order, v: &Venue) -> Option<Decimal> {
    o.limit_price()
        .or(o.stop_price())
        .or_else(|| v.book.best_opposite(o.side).map(|(t, _)| v.book.price(t)))
        .or(v.last_trade)
}

#[cfg(test)]
mod tests;
