//! How fills are decided: the matching engine of one symbol (its book, our
//! working orders, the queue model and the session rule).
//!
//! # Taking liquidity (market, marketable limit, triggered stops)
//! When an order reaches the venue it walks the opposite side of the book best
//! level first, up to its limit price (market orders: no limit). Each level gives
//! `min(remaining, level size)`, one [`Fill`] per level at the level's price, as
//! taker, with slippage measured against the best opposite price when the order
//! arrived. The quantity taken is removed from the book ([`Book::take`]) and stays
//! gone until the next depth update of that level or the next snapshot: a large
//! order cannot fill twice at the same level.
//! - Market and IOC: what cannot fill at once is cancelled (`Cancelled{reason}`).
//! - FOK: rejected at arrival when the depth within its limit is less than its quantity.
//! - Post-only: rejected at arrival when its limit would cross the best opposite price.
//! - GTC and DAY limits: the remainder rests at its limit price.
//!
//! # Resting (maker) fills
//! A resting order joins the back of the queue at its level: its queue-ahead is
//! the visible size of that level on its side at arrival, plus our own earlier
//! orders resting there. Then, per [`QueueModel`] ([`TradesReduceQueue`] by default):
//! - a trade at the order's price first reduces the queue ahead; whatever of the
//!   trade's size is left over fills the order (at most its remaining quantity);
//! - a depth update that shrinks the level caps the queue ahead at the new size
//!   plus our own earlier orders there (cancels are taken to be ahead of us;
//!   growth goes behind us); a synthesized book's rebuild is not a depth update
//!   (its levels are a model): there only trades move the queue;
//! - a trade **through** the level (below a resting buy, above a resting sell)
//!   fills the whole remainder at the order's limit price.
//!
//! Resting fills are maker fills at the order's limit price. Depth updates alone
//! never fill a resting order (the book is the market's, our orders are not in it).
//!
//! # Stops
//! A buy stop triggers on a trade at or above its stop price, a sell stop at or
//! below; an order whose stop is already reached by the last trade when it arrives
//! triggers at once. When triggered (`Triggered`), a stop becomes a market order
//! and a stop-limit a limit order at its limit, and both take liquidity as above
//! (after the resting orders have been filled by the same trade).
//!
//! A trailing stop keeps the best trade price since it reached the venue (the
//! highest for a sell, the lowest for a buy; the last trade at arrival to begin
//! with); its stop lies its offset behind that price (a price distance, or a
//! fraction of the best price) and moves only towards the market. It triggers
//! as a stop does and becomes a market order.
//!
//! # Reduce-only and one-updates-other (exit orders)
//! The venue knows the owner's position in its symbol (every fill passes
//! through it). A reduce-only order fills at most the position left on the
//! other side; one with nothing left to reduce, when it would fill or after a
//! fill anywhere closes the position, is cancelled (`reduce-only: ...`), so
//! an exit never opens or flips a position. A fill of an order in a
//! one-updates-other group (`Order::oco`) reduces every other open order of
//! the group by the filled quantity, and cancels those left with nothing
//! (`oco: ...`): a take profit that fills takes its stop loss with it, before
//! the same trade could trigger the stop.
//!
//! # Fill models
//! With `fill = "last_price"` the book is the last trade: one level each side
//! at the last price (bid and ask equal), or `slippage` ticks below and above
//! it, deep enough for any order, rebuilt at every trade; depth messages are
//! ignored. A market order fills whole at the last price plus or minus the
//! slippage, a stop on the trade that triggers it at that trade's price (so a
//! gap fills at the gap's price), a resting limit when a trade reaches it.
//! With `fill = "last_trade"` the level at the last price holds only the last
//! trade's size and a level one tick worse holds the rest (NautilusTrader's
//! L1 book from trade ticks); the book is rebuilt for every order that takes,
//! so two orders on one trade each meet the trade's size.
//!
//! # Volume cap
//! With `volume_cap = f`, own orders take at most `f` of each trade's size,
//! together: a market order takes what the last trade leaves it, and with
//! `volume_cap_rest = "work"` the rest works, taking again at each later
//! trade (at that trade's book) until filled or cancelled; with `"cancel"`
//! the rest is cancelled. Resting limits fill by at most what the cap leaves
//! of the trade that reaches them. A bar of a bar file is four trades
//! (docs/topics.md), each with its share of the bar's volume.
//!
//! # Session (DAY orders)
//! [`Session`]: DAY orders expire at the first session end strictly after they
//! reach the venue; session ends are `offset_ns + k * length_ns` in event time
//! (default: every UTC midnight). An order is expired as soon as event time
//! reaches its session end, before anything else happens at that time.
//!
//! # Fees
//! [`InstrumentConfig::fee`]: `max(min_fee, qty * price * bps / 10_000)` per fill,
//! with the maker or taker rate.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::book::Book;
use super::instrument::{to_ticks_exact, CapRest, FillModel, InstrumentConfig};
use super::order::{EventKind, Fill, Liquidity, Order, OrderKind, SimEvent, Tif};
use crate::domain::{BookUpdate, Side, Ts, NANOS_PER_SEC};

/// Depth of each side under `fill = "last_price"` (10^12): any order of a
/// sane size fills whole.
const LAST_PRICE_DEPTH: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

/// How the queue ahead of a resting order is consumed.
pub trait QueueModel: Send {
    /// A trade of `trade_qty` printed at the order's price. Update `queue_ahead`
    /// and return the quantity of the order filled (at most `leaves`).
    fn trade(&self, queue_ahead: &mut Decimal, trade_qty: Decimal, leaves: Decimal) -> Decimal;
    /// The visible size of the order's level changed to `new_size`.
    fn depth(&self, queue_ahead: &mut Decimal, new_size: Decimal);
}

/// Trades at our price drain the queue ahead, then fill us; a shrinking level
/// caps the queue ahead at its new size.
#[derive(Debug, Clone, Copy, Default)]
pub struct TradesReduceQueue;

impl QueueModel for TradesReduceQueue {
    fn trade(&self, queue_ahead: &mut Decimal, trade_qty: Decimal, leaves: Decimal) -> Decimal {
        if trade_qty <= *queue_ahead {
            *queue_ahead -= trade_qty;
            Decimal::ZERO
        } else {
            let excess = trade_qty - *queue_ahead;
            *queue_ahead = Decimal::ZERO;
            excess.min(leaves)
        }
    }

    fn depth(&self, queue_ahead: &mut Decimal, new_size: Decimal) {
        if new_size < *queue_ahead {
            *queue_ahead = new_size;
        }
    }
}

/// When DAY orders expire (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// Length of a session in nanoseconds (default one day).
    #[serde(default = "default_day")]
    pub length_ns: i64,
    /// Offset of the session ends from the Unix epoch in nanoseconds (default 0:
    /// UTC midnight).
    #[serde(default)]
    pub offset_ns: i64,
}

fn default_day() -> i64 {
    86_400 * NANOS_PER_SEC
}

impl Default for Session {
    fn default() -> Self {
        Session {
            length_ns: default_day(),
            offset_ns: 0,
        }
    }
}

impl Session {
    /// The first session end strictly after `ts`.
    pub fn end_after(&self, ts: Ts) -> Ts {
        let len = self.length_ns.max(1);
        self.offset_ns + ((ts - self.offset_ns).div_euclid(len) + 1) * len
    }
}

/// An order at the venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Working {
    pub order: Order,
    /// Quantity still to fill.
    pub leaves: Decimal,
    /// Fills so far (for fill ids).
    pub fills: u32,
    /// Limit price in ticks, for limit and stop-limit orders.
    pub limit: Option<i64>,
    /// When a DAY order expires.
    pub expire_at: Option<Ts>,
    /// Quantity ahead of a resting order at its level.
    pub queue_ahead: Decimal,
    /// Best opposite price (ticks) when the order arrived or triggered.
    pub reference: Option<i64>,
    /// Whether `Accepted` has been emitted.
    pub accepted: bool,
    /// Trailing stops: the best trade price since arrival.
    #[serde(default)]
    pub trail_best: Option<Decimal>,
}

impl Working {
    /// Signed open quantity (+ buy, - sell).
    pub fn signed_leaves(&self) -> Decimal {
        self.leaves * self.order.side.sign()
    }
}

/// The event-driven state of a [`Venue`]: its book and open orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VenueState {
    pub book: Book,
    pub last_trade: Option<Decimal>,
    pub resting: Vec<Working>,
    pub stops: Vec<Working>,
    pub synth_at: Option<Decimal>,
    /// Size of the last trade (the level of `fill = "last_trade"`).
    #[serde(default)]
    pub last_size: Decimal,
    /// Market orders held back by `volume_cap`, working.
    #[serde(default)]
    pub participating: Vec<Working>,
    /// What `volume_cap` leaves of the last trade's size.
    #[serde(default)]
    pub cap_left: Decimal,
}

/// The matching engine of one symbol.
#[derive(Debug, Clone)]
pub struct Venue {
    pub symbol: String,
    pub cfg: InstrumentConfig,
    pub book: Book,
    /// Last trade price.
    pub last_trade: Option<Decimal>,
    /// Last trade size.
    last_size: Decimal,
    /// Market orders held back by `volume_cap`, in arrival order: each trade
    /// lets them take again.
    participating: Vec<Working>,
    /// What own orders may still take of the last trade under `volume_cap`.
    cap_left: Decimal,
    /// Resting limit orders in arrival order.
    resting: Vec<Working>,
    /// Untriggered stop orders in arrival order.
    stops: Vec<Working>,
    /// A trade price the synthesized book has not been rebuilt around yet: the
    /// rebuild waits until something reads the book (an order arrives, a stop
    /// triggers, a caller asks), so ticks without orders cost no rebuild.
    synth_at: Option<Decimal>,
    /// The owner's signed position in this symbol, followed fill by fill (the
    /// simulator sets it on restore): what reduce-only orders may reduce.
    pub(crate) position: Decimal,
    /// Fills of orders in a one-updates-other group not yet applied to the
    /// group: (group, order id, quantity).
    oco_fills: Vec<(String, String, Decimal)>,
}

impl Venue {
    pub fn new(symbol: &str, cfg: InstrumentConfig) -> Self {
        Venue {
            symbol: symbol.to_string(),
            book: Book::new(cfg.tick_size),
            cfg,
            last_trade: None,
            last_size: Decimal::ZERO,
            participating: Vec::new(),
            cap_left: Decimal::ZERO,
            resting: Vec::new(),
            stops: Vec::new(),
            synth_at: None,
            position: Decimal::ZERO,
            oco_fills: Vec::new(),
        }
    }

    /// Everything that changes with events (not the instrument config), for checkpoints.
    pub fn state(&self) -> VenueState {
        VenueState {
            book: self.book.clone(),
            last_trade: self.last_trade,
            resting: self.resting.clone(),
            stops: self.stops.clone(),
            synth_at: self.synth_at,
            last_size: self.last_size,
            participating: self.participating.clone(),
            cap_left: self.cap_left,
        }
    }

    /// Restore what [`Venue::state`] saved.
    pub fn restore(&mut self, s: VenueState) {
        self.book = s.book;
        self.last_trade = s.last_trade;
        self.resting = s.resting;
        self.stops = s.stops;
        self.synth_at = s.synth_at;
        self.last_size = s.last_size;
        self.participating = s.participating;
        self.cap_left = s.cap_left;
    }

    /// Bring a synthesized book up to the last trade (see `synth_at`).
    pub fn sync_book(&mut self) {
        if let Some(price) = self.synth_at.take() {
            let slip = self.cfg.slippage_ticks(price);
            if self.cfg.fill == FillModel::LastPrice {
                self.book.at_last_price(price, slip, LAST_PRICE_DEPTH);
            } else if self.cfg.fill == FillModel::LastTrade {
                self.book
                    .at_last_trade(price, slip, self.last_size, LAST_PRICE_DEPTH);
            } else if self.cfg.synth.enabled && !self.book.observed() {
                self.book
                    .synthesize(price, &self.cfg.synth, self.cfg.lot_size);
            }
        }
    }

    /// Bring the book up to date for `order`: a market order with
    /// `at_price` under a fill model from trades meets the book of a last
    /// trade at that price (the next read of the book returns to the real
    /// last trade).
    pub fn book_for(&mut self, order: &Order) {
        match order.at_price {
            Some(p) if self.cfg.fill.from_trades() && order.kind == OrderKind::Market => {
                self.synth_at = Some(p);
                self.sync_book();
                self.synth_at = self.last_trade;
            }
            _ => {
                if self.cfg.fill == FillModel::LastTrade {
                    // Every order meets the last trade's level whole.
                    self.synth_at = self.last_trade.or(self.synth_at);
                }
                self.sync_book();
            }
        }
    }

    /// Open orders: resting limits, then untriggered stops, then market
    /// orders working under `volume_cap`.
    pub fn open_orders(&self) -> impl Iterator<Item = &Working> {
        self.resting
            .iter()
            .chain(self.stops.iter())
            .chain(self.participating.iter())
    }

    /// Apply a depth message; resting orders' queues follow the new level sizes.
    pub fn on_book(&mut self, u: &BookUpdate, q: &dyn QueueModel) {
        if self.cfg.fill.from_trades() {
            // The last trade is the book; depth messages do not change it.
            return;
        }
        self.book.apply(u);
        self.requeue(q);
    }

    /// The level sizes changed: each resting order's queue ahead follows the new
    /// visible size plus our own earlier orders at its level.
    fn requeue(&mut self, q: &dyn QueueModel) {
        let mut own: Vec<((Side, i64), Decimal)> = Vec::new();
        for w in &mut self.resting {
            let t = w.limit.expect("resting orders have a limit");
            let key = (w.order.side, t);
            let ahead = match own.iter_mut().find(|(k, _)| *k == key) {
                Some((_, a)) => {
                    let before = *a;
                    *a += w.leaves;
                    before
                }
                None => {
                    own.push((key, w.leaves));
                    Decimal::ZERO
                }
            };
            q.depth(
                &mut w.queue_ahead,
                self.book.size_at(w.order.side, t) + ahead,
            );
        }
    }

    /// A trade printed: synthesize the book if there is no depth, fill resting
    /// orders, trigger stops.
    pub fn on_trade(
        &mut self,
        ts: Ts,
        price: Decimal,
        size: Decimal,
        q: &dyn QueueModel,
        out: &mut Vec<SimEvent>,
    ) {
        self.last_trade = Some(price);
        self.last_size = size;
        if let Some(cap) = self.cfg.volume_cap {
            self.cap_left = cap * size;
        }
        let rebuild =
            self.cfg.fill.from_trades() || (self.cfg.synth.enabled && !self.book.observed());
        // Nothing working: what follows would only move a synthesized book
        // to the trade (most ticks of most strategies).
        if self.resting.is_empty()
            && self.participating.is_empty()
            && self.stops.is_empty()
            && self.oco_fills.is_empty()
        {
            if rebuild {
                self.synth_at = Some(price);
            }
            return;
        }
        // The trade printed against the book as it was: resting orders fill
        // first. Only then does a synthesized book move to the new price (its
        // levels are a model, not observed cancels: queue positions keep what
        // trades left of them), and stops trigger into it.
        let mut resting = std::mem::take(&mut self.resting);
        for w in &mut resting {
            let t = w.limit.expect("resting orders have a limit");
            let own = self.book.price(t);
            // Under `last_price` a trade at the order's price fills it whole,
            // as a trade through it does.
            let touch = self.cfg.fill.from_trades() && price == own;
            let through = touch
                || match w.order.side {
                    Side::Buy => price < own,
                    Side::Sell => price > own,
                };
            let qty = if through {
                w.leaves
            } else if price == own {
                q.trade(&mut w.queue_ahead, size, w.leaves)
            } else {
                Decimal::ZERO
            };
            let qty = self.by_volume(self.capped(&w.order, qty));
            if qty > Decimal::ZERO {
                self.fill(w, ts, qty, t, Liquidity::Maker, out);
            }
        }
        resting.retain(|w| w.leaves > Decimal::ZERO);
        self.resting = resting;
        let worked = !self.participating.is_empty();
        if worked {
            // Market orders held back by the cap take again from this trade,
            // from the book rebuilt at it (what they take stays taken).
            if rebuild {
                self.synth_at = Some(price);
            }
            self.sync_book();
            for w in std::mem::take(&mut self.participating) {
                self.execute(ts, w, out);
            }
        }
        self.settle_exits(ts, out);
        if rebuild && !worked {
            self.synth_at = Some(price);
        }

        for w in &mut self.stops {
            if matches!(w.order.kind, OrderKind::TrailingStop { .. }) {
                w.trail_best = Some(match (w.trail_best, w.order.side) {
                    (None, _) => price,
                    (Some(b), Side::Sell) => b.max(price),
                    (Some(b), Side::Buy) => b.min(price),
                });
            }
        }
        let (triggered, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.stops)
            .into_iter()
            .partition(|w| stop_reached(w, price));
        self.stops = waiting;
        if !triggered.is_empty() {
            self.sync_book();
        }
        for w in triggered {
            self.trigger(ts, w, out);
        }
        self.settle_exits(ts, out);
    }

    /// What of `qty` `volume_cap` lets own orders take of the last trade
    /// (all of it without a cap), taken from what is left of it.
    fn by_volume(&mut self, qty: Decimal) -> Decimal {
        if self.cfg.volume_cap.is_none() {
            return qty;
        }
        let q = qty.min(self.cap_left).max(Decimal::ZERO);
        self.cap_left -= q;
        q
    }

    /// What of `qty` a fill of `order` may take: all of it, or for a
    /// reduce-only order at most the position left on the other side.
    fn capped(&self, order: &Order, qty: Decimal) -> Decimal {
        if !order.reduce_only {
            return qty;
        }
        qty.min(reducible(self.position, order.side))
    }

    /// Apply the fills of one-updates-other groups to their other orders, then
    /// cancel the reduce-only orders with no position left to reduce.
    fn settle_exits(&mut self, ts: Ts, out: &mut Vec<SimEvent>) {
        for (group, id, qty) in std::mem::take(&mut self.oco_fills) {
            for list in [&mut self.resting, &mut self.stops, &mut self.participating] {
                list.retain_mut(|w| {
                    if w.order.oco.as_deref() != Some(group.as_str()) || w.order.id == id {
                        return true;
                    }
                    w.leaves -= qty.min(w.leaves);
                    if w.leaves.is_zero() {
                        let reason = format!("oco: {id} of the same group filled");
                        push(out, ts, &w.order, EventKind::Cancelled { reason });
                    }
                    !w.leaves.is_zero()
                });
            }
        }
        let position = self.position;
        for list in [&mut self.resting, &mut self.stops, &mut self.participating] {
            list.retain(|w| {
                let keep =
                    !w.order.reduce_only || reducible(position, w.order.side) > Decimal::ZERO;
                if !keep {
                    let reason = "reduce-only: the position is closed".to_string();
                    push(out, ts, &w.order, EventKind::Cancelled { reason });
                }
                keep
            });
        }
    }

    /// An order reached the venue.
    pub fn arrive(&mut self, ts: Ts, order: Order, session: &Session, out: &mut Vec<SimEvent>) {
        self.sync_book();
        let limit = order
            .limit_price()
            .and_then(|p| to_ticks_exact(p, self.cfg.tick_size));
        let w = Working {
            expire_at: (order.tif == Tif::Day).then(|| session.end_after(ts)),
            leaves: order.qty,
            order,
            fills: 0,
            limit,
            queue_ahead: Decimal::ZERO,
            reference: None,
            accepted: false,
            trail_best: None,
        };
        if w.order.is_stop() {
            let mut w = w;
            if w.order.reduce_only && reducible(self.position, w.order.side).is_zero() {
                let reason = "reduce-only: no position to reduce".to_string();
                return push(out, ts, &w.order, EventKind::Rejected { reason });
            }
            push(out, ts, &w.order, EventKind::Accepted);
            w.accepted = true;
            w.trail_best = self.last_trade;
            if self.last_trade.is_some_and(|p| stop_reached(&w, p)) {
                self.trigger(ts, w, out);
            } else {
                self.stops.push(w);
            }
        } else {
            self.execute(ts, w, out);
        }
        self.settle_exits(ts, out);
    }

    fn trigger(&mut self, ts: Ts, mut w: Working, out: &mut Vec<SimEvent>) {
        push(out, ts, &w.order, EventKind::Triggered);
        w.order.kind = match w.order.kind {
            OrderKind::Stop { .. } | OrderKind::TrailingStop { .. } => OrderKind::Market,
            OrderKind::StopLimit { limit, .. } => OrderKind::Limit { price: limit },
            k => k,
        };
        self.execute(ts, w, out);
    }

    /// Take liquidity, then cancel, reject or rest the remainder (module docs).
    fn execute(&mut self, ts: Ts, w: Working, out: &mut Vec<SimEvent>) {
        let at_price = w.order.at_price.is_some();
        self.book_for(&w.order);
        if at_price {
            // book_for left the real last trade to be rebuilt: the order
            // walks the book at its price now.
            let real = self.synth_at.take();
            self.take_or_rest(ts, w, out);
            self.synth_at = real.or(self.synth_at);
        } else {
            self.take_or_rest(ts, w, out);
        }
    }

    /// Why `w` may not take or rest now (post-only that would cross, FOK
    /// short of depth, reduce-only with nothing to reduce), if it may not.
    fn refusal(&self, w: &Working, best: Option<i64>) -> Option<String> {
        let side = w.order.side;
        if w.order.post_only {
            if let (Some(l), Some(b)) = (w.limit, best) {
                let crosses = match side {
                    Side::Buy => l >= b,
                    Side::Sell => l <= b,
                };
                if crosses {
                    let reason = format!(
                        "post-only {side} at {} would cross the best {} {}",
                        self.book.price(l),
                        if side == Side::Buy { "ask" } else { "bid" },
                        self.book.price(b)
                    );
                    return Some(reason);
                }
            }
        }
        if w.order.tif == Tif::Fok {
            let mut depth: Decimal = self.book.takeable(side, w.limit).map(|(_, s)| s).sum();
            if self.cfg.volume_cap.is_some() {
                depth = depth.min(self.cap_left);
            }
            if depth < w.leaves {
                let reason = format!(
                    "FOK: {} available within the limit, {} needed",
                    depth.normalize(),
                    w.leaves
                );
                return Some(reason);
            }
        }
        if w.order.reduce_only && reducible(self.position, side).is_zero() {
            let reason = "reduce-only: no position to reduce".to_string();
            return Some(reason);
        }
        None
    }

    fn take_or_rest(&mut self, ts: Ts, mut w: Working, out: &mut Vec<SimEvent>) {
        let side = w.order.side;
        let best = self.book.best_opposite(side).map(|(t, _)| t);
        w.reference = best;
        let refuse = |w: &Working, out: &mut Vec<SimEvent>, reason: String| {
            let kind = if w.accepted {
                EventKind::Cancelled { reason }
            } else {
                EventKind::Rejected { reason }
            };
            push(out, ts, &w.order, kind);
        };
        if let Some(reason) = self.refusal(&w, best) {
            return refuse(&w, out, reason);
        }
        if !w.accepted {
            w.accepted = true;
            push(out, ts, &w.order, EventKind::Accepted);
        }
        // Walk the book, as far as `volume_cap` lets it.
        let mut levels = Vec::new();
        let capped = self.capped(&w.order, w.leaves);
        let mut want = self.by_volume(capped);
        let held_back = want < capped;
        for (t, s) in self.book.takeable(side, w.limit) {
            if want <= Decimal::ZERO {
                break;
            }
            let q = want.min(s);
            levels.push((t, q));
            want -= q;
        }
        if want > Decimal::ZERO && self.cfg.volume_cap.is_some() {
            // The book had less than the cap allowed: give the rest back.
            self.cap_left += want;
        }
        for (t, q) in levels {
            self.book.take(side, t, q);
            self.fill(&mut w, ts, q, t, Liquidity::Taker, out);
        }
        if w.leaves.is_zero() {
            return;
        }
        if held_back && want.is_zero() && w.order.kind == OrderKind::Market {
            if self.cfg.volume_cap_rest == CapRest::Work {
                // The rest trades at the later trades' prices, not at the
                // bar close it was decided on.
                w.order.at_price = None;
                self.participating.push(w);
            } else {
                let reason = format!(
                    "volume cap: {} of the last trade's {} taken, remainder cancelled",
                    self.cfg.volume_cap.unwrap_or_default(),
                    self.last_size
                );
                push(out, ts, &w.order, EventKind::Cancelled { reason });
            }
            return;
        }
        if w.order.reduce_only && reducible(self.position, side).is_zero() {
            let reason = "reduce-only: the position is closed, remainder cancelled".to_string();
            return push(out, ts, &w.order, EventKind::Cancelled { reason });
        }
        let rests = matches!(w.order.kind, OrderKind::Limit { .. })
            && matches!(w.order.tif, Tif::Gtc | Tif::Day);
        if rests {
            let t = w.limit.expect("limit orders have a limit");
            let own_ahead: Decimal = self
                .resting
                .iter()
                .filter(|r| r.order.side == side && r.limit == Some(t))
                .map(|r| r.leaves)
                .sum();
            w.queue_ahead = self.book.size_at(side, t) + own_ahead;
            self.resting.push(w);
        } else {
            let reason = match (w.order.kind, w.fills) {
                (OrderKind::Market, 0) => "market order: no liquidity".to_string(),
                (OrderKind::Market, _) => {
                    "market order: book exhausted, remainder cancelled".to_string()
                }
                (_, _) => format!(
                    "{}: unfilled remainder cancelled",
                    format!("{:?}", w.order.tif).to_uppercase()
                ),
            };
            push(out, ts, &w.order, EventKind::Cancelled { reason });
        }
    }

    fn fill(
        &mut self,
        w: &mut Working,
        ts: Ts,
        qty: Decimal,
        ticks: i64,
        liquidity: Liquidity,
        out: &mut Vec<SimEvent>,
    ) {
        w.fills += 1;
        w.leaves -= qty;
        self.position += qty * w.order.side.sign();
        if let Some(group) = &w.order.oco {
            self.oco_fills
                .push((group.clone(), w.order.id.clone(), qty));
        }
        let price = self.book.price(ticks);
        let fill = Fill {
            fill_id: format!("{}:f{}", w.order.id, w.fills),
            order_id: w.order.id.clone(),
            symbol: self.symbol.clone(),
            ts,
            side: w.order.side,
            qty,
            price,
            fee: self.cfg.fee(qty, price, liquidity),
            liquidity,
            slippage: w
                .reference
                .map(|r| (price - self.book.price(r)) * w.order.side.sign()),
        };
        let kind = if w.leaves.is_zero() {
            EventKind::Filled { fill }
        } else {
            EventKind::PartiallyFilled {
                fill,
                leaves_qty: w.leaves,
            }
        };
        push(out, ts, &w.order, kind);
    }

    /// Cancel one open order. Returns false when it is not open here.
    pub fn cancel(&mut self, ts: Ts, id: &str, reason: &str, out: &mut Vec<SimEvent>) -> bool {
        for list in [&mut self.resting, &mut self.stops, &mut self.participating] {
            if let Some(i) = list.iter().position(|w| w.order.id == id) {
                let w = list.remove(i);
                push(
                    out,
                    ts,
                    &w.order,
                    EventKind::Cancelled {
                        reason: reason.to_string(),
                    },
                );
                return true;
            }
        }
        false
    }

    /// Cancel every open order, resting first, each in arrival order.
    pub fn cancel_all(&mut self, ts: Ts, out: &mut Vec<SimEvent>) {
        for w in std::mem::take(&mut self.resting)
            .into_iter()
            .chain(std::mem::take(&mut self.stops))
            .chain(std::mem::take(&mut self.participating))
        {
            push(
                out,
                ts,
                &w.order,
                EventKind::Cancelled {
                    reason: "cancel-all".to_string(),
                },
            );
        }
    }

    /// Expire DAY orders whose session ended at or before `ts`.
    /// No order resting and no stop waiting: nothing that could expire.
    pub fn is_idle(&self) -> bool {
        self.resting.is_empty() && self.stops.is_empty()
    }

    pub fn expire(&mut self, ts: Ts, out: &mut Vec<SimEvent>) {
        for list in [&mut self.resting, &mut self.stops] {
            list.retain(|w| {
                let expired = w.expire_at.is_some_and(|e| e <= ts);
                if expired {
                    push(out, w.expire_at.unwrap_or(ts), &w.order, EventKind::Expired);
                }
                !expired
            });
        }
    }
}

/// The stop price of a waiting stop: fixed, or for a trailing stop its
/// offset behind the best trade since arrival.
pub fn stop_of(w: &Working) -> Option<Decimal> {
    match (w.order.kind, w.trail_best) {
        (OrderKind::TrailingStop { offset, percent }, Some(best)) => {
            let distance = if percent { best * offset } else { offset };
            Some(match w.order.side {
                Side::Sell => best - distance,
                Side::Buy => best + distance,
            })
        }
        _ => w.order.stop_price(),
    }
}

fn stop_reached(w: &Working, trade: Decimal) -> bool {
    match (stop_of(w), w.order.side) {
        (Some(s), Side::Buy) => trade >= s,
        (Some(s), Side::Sell) => trade <= s,
        (None, _) => false,
    }
}

/// How much an order on `side` can reduce a signed `position`.
fn reducible(position: Decimal, side: Side) -> Decimal {
    match side {
        Side::Sell => position.max(Decimal::ZERO),
        Side::Buy => (-position).max(Decimal::ZERO),
    }
}

fn push(out: &mut Vec<SimEvent>, ts: Ts, order: &Order, kind: EventKind) {
    out.push(SimEvent {
        ts,
        order_id: order.id.clone(),
        symbol: order.symbol.clone(),
        kind,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_model_worked_by_hand() {
        let q = TradesReduceQueue;
        let mut ahead = Decimal::from(10);
        // Trade 4: 6 ahead, nothing for us.
        assert_eq!(
            q.trade(&mut ahead, Decimal::from(4), Decimal::from(5)),
            Decimal::ZERO
        );
        assert_eq!(ahead, Decimal::from(6));
        // Level shrinks to 3 (cancels ahead): 3 ahead; grows to 20: still 3.
        q.depth(&mut ahead, Decimal::from(3));
        q.depth(&mut ahead, Decimal::from(20));
        assert_eq!(ahead, Decimal::from(3));
        // Trade 10: 3 drain the queue, 7 left, we need 5: fill 5.
        assert_eq!(
            q.trade(&mut ahead, Decimal::from(10), Decimal::from(5)),
            Decimal::from(5)
        );
        assert_eq!(ahead, Decimal::ZERO);
    }

    #[test]
    fn session_ends_at_utc_midnight() {
        let s = Session::default();
        let day = 86_400 * NANOS_PER_SEC;
        assert_eq!(s.end_after(0), day);
        assert_eq!(s.end_after(day - 1), day);
        assert_eq!(s.end_after(day), 2 * day);
        let ny = Session {
            length_ns: day,
            offset_ns: 21 * 3600 * NANOS_PER_SEC,
        };
        assert_eq!(ny.end_after(day), day + 21 * 3600 * NANOS_PER_SEC);
    }
}
