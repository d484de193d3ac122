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

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The engine's maps by symbol, looked up on every event: FxHash (a few
/// multiplications) rather than SipHash, whose DoS resistance input symbols
/// do not need (they are checked against the configuration).
type SymbolMap<V> = rustc_hash::FxHashMap<String, V>;

use crate::account::Account;
use crate::analytics::{Analytics, AnalyticsConfig, AnalyticsState};
use crate::bars::BarBuilder;
use crate::config::{OrderStyle, Reverse, SizingMode, StrategyConfig, TifConfig};
pub use crate::domain::{
    DeadLetterMsg, FillMsg, OrderMsg, OrderStatus, OrderType, Output, OutputKind, PnlMsg, SignalMsg,
};
use crate::domain::{MarketEvent, Origin, Side, Tick, Ts};
use crate::exits::ExitState;
use crate::model::{ModelError, Models};
use crate::sim::instrument::{to_ticks, Snap};
use crate::sim::{EventKind, Order, OrderKind, RiskLimits, SimEvent, Simulator, Tif};
use crate::sim::{InstrumentConfig, SimState};
use crate::strategy::{self, Decision, StateValue, Strategy};
pub use crate::summary::{InputCounts, SymbolCounts};
use crate::wire::{self, InputKind, Rejection};

mod control;
pub use control::{ControlAction, ControlError, StrategyStatus};

/// Most payload bytes a dead letter carries. Every message the decoder accepts for
/// inspection is smaller (`wire::MAX_MESSAGE_BYTES`); only `too_large` ones are cut,
/// so that a dead letter always fits in a broker's message size limit.
pub const DEAD_LETTER_PAYLOAD_LIMIT: usize = wire::MAX_MESSAGE_BYTES;

/// The dead letter of a refused message: `dl:{origin}`, the reason, and the
/// payload up to [`DEAD_LETTER_PAYLOAD_LIMIT`] bytes, as text when it is
/// UTF-8 and as hex otherwise. Every stage that refuses input writes this
/// shape (the engine, the sentiment stage).
pub fn dead_letter_msg(
    origin: &Origin,
    key: Option<&[u8]>,
    payload: &[u8],
    r: Rejection,
) -> DeadLetterMsg {
    let kept = &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_LIMIT)];
    let (text, hex) = match std::str::from_utf8(kept) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (
            None,
            Some(kept.iter().map(|b| format!("{b:02x}")).collect()),
        ),
    };
    DeadLetterMsg {
        dead_letter_id: format!("dl:{origin}"),
        reason: r.code,
        detail: r.detail,
        topic: origin.topic.to_string(),
        partition: origin.partition,
        offset: origin.offset,
        key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
        payload: text,
        payload_hex: hex,
        payload_bytes: payload.len(),
        payload_truncated: kept.len() < payload.len(),
    }
}

struct Instance {
    rule: Box<dyn Strategy>,
    /// The bars the rule runs on, when it does not run on every tick.
    bars: Option<BarBuilder>,
    counts: SymbolCounts,
    /// The strategy's `[exits]` on this symbol, when it has any.
    exits: Option<ExitState>,
}

/// What the engine remembers of a working order to describe its events.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LiveOrder {
    signal_id: String,
    strategy_symbol: String,
    side: Side,
    order_type: OrderType,
    price: Option<Decimal>,
    #[serde(default)]
    stop: Option<Decimal>,
    tif: Tif,
    qty: Decimal,
    filled: Decimal,
    notional: Decimal,
    partials: u32,
}

impl LiveOrder {
    /// What the engine keeps of `order`, sent for `signal_id` (empty for
    /// exits and the end of a backtest).
    fn of(order: &Order, signal_id: String) -> Self {
        LiveOrder {
            signal_id,
            strategy_symbol: order.symbol.clone(),
            side: order.side,
            order_type: order_type(&order.kind),
            price: order.limit_price(),
            stop: order.stop_price(),
            tif: order.tif,
            qty: order.qty,
            filled: Decimal::ZERO,
            notional: Decimal::ZERO,
            partials: 0,
        }
    }
}

struct Slot {
    cfg: StrategyConfig,
    /// The strategy's own venue, risk manager and account.
    sim: Simulator,
    instances: BTreeMap<String, Instance>,
    /// Orders not yet in a final state, by id.
    live: BTreeMap<String, LiveOrder>,
    /// symbol -> the order a signal left working (one per symbol).
    working: BTreeMap<String, String>,
    /// The drawdown kill switch fired, or an operator tripped it.
    killed: bool,
    /// Paused by an operator: signals go out, orders do not ([`control`]).
    paused: bool,
}

impl Slot {
    /// Strategy `s` of `spec`: an instance of its rule per symbol, its own
    /// venue over the symbols' instruments, its risk limits and account.
    fn new(s: &StrategyConfig, spec: &EngineSpec) -> Result<Slot, SpecError> {
        let strategy = || s.name.clone();
        let mut instances = BTreeMap::new();
        let mut instruments = BTreeMap::new();
        for sym in &s.symbols {
            let rule =
                strategy::try_build(&s.rule, &spec.models).map_err(|error| SpecError::Model {
                    strategy: strategy(),
                    error,
                })?;
            let bars = match &s.bars {
                Some(b) => Some(BarBuilder::new(b.spec().map_err(|problem| {
                    SpecError::Bars {
                        strategy: strategy(),
                        problem,
                    }
                })?)),
                None => None,
            };
            instances.insert(
                sym.clone(),
                Instance {
                    rule,
                    bars,
                    counts: SymbolCounts::default(),
                    exits: s.exits.follows_trades().then(|| ExitState::new(&s.exits)),
                },
            );
            let inst =
                spec.instruments
                    .get(sym)
                    .cloned()
                    .ok_or_else(|| SpecError::NoInstrument {
                        strategy: strategy(),
                        symbol: sym.clone(),
                    })?;
            if s.orders.trade_on_close && (s.bars.is_none() || !inst.fill.from_trades()) {
                return Err(SpecError::Instrument {
                    strategy: strategy(),
                    problem: format!(
                        "orders.trade_on_close needs [bars] and fill = \"last_price\" or \"last_trade\" for {sym} \
                         (it fills at the close of the bar that decided): add [bars], or set fill in [venue.default] \
                         or [venue.symbols.{sym}], or remove trade_on_close"
                    ),
                });
            }
            instruments.insert(sym.clone(), inst);
        }
        let limits = RiskLimits {
            max_position: s.risk.max_position,
            max_gross_notional: s.risk.max_gross_notional,
            max_order_qty: s.risk.max_order_qty,
            max_orders_per_sec: s.risk.max_orders_per_sec,
            check_cash: true,
            allow_short: s.account.allow_short,
        };
        let sim = Simulator::new(
            instruments,
            spec.venue_latency,
            limits,
            s.account.starting_cash,
        )
        .map_err(|e| SpecError::Instrument {
            strategy: strategy(),
            problem: e.to_string(),
        })?;
        Ok(Slot {
            cfg: s.clone(),
            sim,
            instances,
            live: BTreeMap::new(),
            working: BTreeMap::new(),
            killed: false,
            paused: false,
        })
    }

    fn account(&self) -> &Account {
        self.sim.account()
    }
}

/// What an engine is built from: the checked strategies and everything
/// resolved for them (the root package's `config::Loaded::engine_spec` builds
/// it from the application config).
#[derive(Debug, Clone)]
pub struct EngineSpec {
    /// The strategies, in configuration order (the order of their outputs).
    pub strategies: Vec<StrategyConfig>,
    /// The instrument of every symbol a strategy trades, resolved and checked.
    pub instruments: BTreeMap<String, InstrumentConfig>,
    /// Event-time delay from an order to the venue (`venue.latency`), ns.
    pub venue_latency: Ts,
    /// Slack for out-of-order event times per symbol and topic (`input.max_out_of_order`), ns.
    pub max_out_of_order: Ts,
    /// The symbols admitted (`input.symbols`); empty admits every symbol.
    pub symbols: Vec<String>,
    /// A P&L snapshot every N ticks of a symbol (`engine.pnl_every_ticks`); 0: only after fills.
    pub pnl_every_ticks: u64,
    /// The models the strategies' rules name, loaded and checked.
    pub models: Models,
    /// Analytics streams (`[[analytics]]`), checked.
    pub analytics: Vec<AnalyticsConfig>,
}

/// One strategy's state for an equity mark ([`Engine::marks`]).
#[derive(Debug, Clone, Copy)]
pub struct StrategyMark<'a> {
    pub strategy: &'a str,
    pub equity: Decimal,
    /// It holds a position in some symbol.
    pub exposed: bool,
    /// Ticks and sentiment of its symbols admitted so far.
    pub events: u64,
}

/// The engine. Build it from a loaded configuration.
pub struct Engine {
    slots: Vec<Slot>,
    /// Each symbol traded or admitted so far -> its place in `seen`: the one
    /// lookup by name of an event.
    symbol_ids: SymbolMap<usize>,
    seen: Vec<Seen>,
    symbols: Option<BTreeSet<String>>,
    max_out_of_order: Ts,
    /// Paper mode: the latest event time admitted (wall clock + input.max_ahead).
    not_after: Option<Ts>,
    pnl_every: u64,
    counts: InputCounts,
    /// Messages processed since `counts` was set, by [`InputKind`] (counted
    /// here, per event, rather than in `counts`' map by name).
    processed: [u64; 3],
    last_ts: Ts,
    analytics: Analytics,
    /// `venue.latency`, ns.
    venue_latency: Ts,
    /// Operator actions applied so far ([`Engine::control`]): the sequence
    /// number in their output ids.
    controls: u64,
}

/// What the engine keeps of one symbol.
#[derive(Debug, Default)]
struct Seen {
    /// Indexes of the slots that trade it.
    slots: Vec<usize>,
    /// Per input kind (by `InputKind as usize`): the newest event time admitted.
    newest: [Option<Ts>; 3],
    last_price: Option<Decimal>,
}

/// The input kinds, in the order of `InputKind as usize`.
const KINDS: [InputKind; 3] = [
    InputKind::Prices,
    InputKind::Sentiment,
    InputKind::OrderBook,
];

/// The place of `symbol` in `seen`, made on first sight.
fn seen_id(ids: &mut SymbolMap<usize>, seen: &mut Vec<Seen>, symbol: &str) -> usize {
    if let Some(&id) = ids.get(symbol) {
        return id;
    }
    ids.insert(symbol.to_string(), seen.len());
    seen.push(Seen::default());
    seen.len() - 1
}

/// A specification an engine cannot be built from: a strategy that trades a
/// symbol without a (valid) instrument, names a model that is not loaded, or
/// has bars that do not parse. [`crate::config`] checks all of it when a
/// configuration loads, so a spec built from a loaded configuration has none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("strategy {strategy}: no instrument for {symbol}")]
    NoInstrument { strategy: String, symbol: String },
    #[error("strategy {strategy}: {problem}")]
    Instrument { strategy: String, problem: String },
    #[error("strategy {strategy}: {error}")]
    Model { strategy: String, error: ModelError },
    #[error("strategy {strategy}: bars.size {problem}")]
    Bars { strategy: String, problem: String },
    #[error("{0}")]
    Analytics(String),
}

impl Engine {
    /// An engine over `spec`.
    ///
    /// # Errors
    /// A strategy of `spec` trades a symbol without a valid instrument, names a
    /// model `spec.models` does not hold, or has bars that do not parse.
    pub fn new(cfg: &EngineSpec) -> Result<Self, SpecError> {
        let (mut symbol_ids, mut seen) = (SymbolMap::default(), Vec::new());
        let mut slots = Vec::with_capacity(cfg.strategies.len());
        for (i, s) in cfg.strategies.iter().enumerate() {
            for sym in &s.symbols {
                let id = seen_id(&mut symbol_ids, &mut seen, sym);
                let v = &mut seen[id].slots;
                if !v.contains(&i) {
                    v.push(i);
                }
            }
            slots.push(Slot::new(s, cfg)?);
        }
        let symbols = if cfg.symbols.is_empty() {
            None
        } else {
            Some(cfg.symbols.iter().cloned().collect())
        };
        Ok(Engine {
            slots,
            symbol_ids,
            seen,
            symbols,
            max_out_of_order: cfg.max_out_of_order,
            not_after: None,
            pnl_every: cfg.pnl_every_ticks,
            analytics: Analytics::new(&cfg.analytics).map_err(SpecError::Analytics)?,
            venue_latency: cfg.venue_latency,
            counts: InputCounts::default(),
            processed: [0; 3],
            last_ts: 0,
            controls: 0,
        })
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
        let id = match self.admit(kind, &ev) {
            Ok(id) => id,
            Err(r) => {
                return self.refuse(origin, key, payload, &ev, r, out);
            }
        };
        self.processed[kind as usize] += 1;
        self.last_ts = self.last_ts.max(ev.ts());
        if !self.analytics.is_empty() {
            let mut values = Vec::new();
            self.analytics.on_event(&ev, origin, &mut values);
            out.extend(values.into_iter().map(Output::Indicator));
        }
        let ts = ev.ts();
        // The slots that trade this symbol, taken out for the event (and put
        // back below) so that the slots themselves can be borrowed.
        let here = std::mem::take(&mut self.seen[id].slots);
        // Requests of strategies that do not trade this symbol reach their venue
        // as event time passes.
        let mut evs = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !here.contains(&i) {
                slot.sim.catch_up(ts, &mut evs);
                if !evs.is_empty() {
                    let mut filled = BTreeSet::new();
                    report(slot, &mut evs, origin, &mut filled, out);
                    settle(slot, &mut filled, ts, origin, &mut evs, out);
                }
            }
        }
        match ev {
            MarketEvent::Tick(t) => {
                self.seen[id].last_price = Some(t.price);
                self.on_tick(&here, origin, &t, out);
            }
            MarketEvent::Sentiment(s) => {
                let price = self.seen[id].last_price;
                for &i in &here {
                    let slot = &mut self.slots[i];
                    let mut filled = BTreeSet::new();
                    slot.sim.catch_up(s.ts, &mut evs);
                    let inst = slot
                        .instances
                        .get_mut(s.symbol.as_str())
                        .expect("instance per symbol");
                    inst.counts.sentiment += 1;
                    let (qty, cost) = position_of(slot.sim.account(), &s.symbol);
                    inst.rule.set_position(qty, cost);
                    if let Some(d) = inst.rule.on_sentiment(&s) {
                        decide(
                            slot, &s.symbol, s.ts, price, d, origin, "", None, &mut evs, out,
                        );
                    }
                    report(slot, &mut evs, origin, &mut filled, out);
                    kill_switch(slot, s.ts, origin, &mut evs, &mut filled, out);
                    settle(slot, &mut filled, s.ts, origin, &mut evs, out);
                }
            }
            MarketEvent::Book(u) => {
                for &i in &here {
                    let slot = &mut self.slots[i];
                    let mut filled = BTreeSet::new();
                    slot.sim.on_book(&u, &mut evs);
                    report(slot, &mut evs, origin, &mut filled, out);
                    settle(slot, &mut filled, u.ts, origin, &mut evs, out);
                }
            }
        }
        self.seen[id].slots = here;
    }

    /// A refused event's dead letter.
    fn refuse(
        &mut self,
        origin: &Origin,
        key: Option<&[u8]>,
        payload: &[u8],
        ev: &MarketEvent,
        r: Rejection,
        out: &mut Vec<Output>,
    ) {
        // An empty payload stands for the event's own encoding, and then
        // a missing key for its symbol: a source that hands over decoded
        // events (a file backtest) makes them only for a dead letter.
        let own;
        let (key, payload) = if payload.is_empty() {
            own = wire::encode_event(ev);
            (key.or(Some(ev.symbol().as_bytes())), &own[..])
        } else {
            (key, payload)
        };
        self.dead_letter(origin, key, payload, r, out);
    }

    /// After a backtest's last event: every strategy with
    /// `exits.close_at_end` closes each open position with a market order
    /// (`{strategy}:{symbol}:end:o`), and its venue runs until those orders
    /// (and whatever was in flight) have reached it. The outputs carry the
    /// origin `end-0-0`.
    pub fn close_at_end(&mut self, out: &mut Vec<Output>) {
        let origin = Origin {
            topic: "end".into(),
            partition: 0,
            offset: 0,
        };
        let ts = self.last_ts;
        for slot in &mut self.slots {
            if !slot.cfg.exits.close_at_end || slot.killed {
                continue;
            }
            let mut evs = Vec::new();
            let mut filled = BTreeSet::new();
            // What is in flight reaches the venue first; then everything still
            // open (resting rule orders, exits) is cancelled.
            let arrived = ts.saturating_add(self.venue_latency);
            slot.sim.advance(arrived, &mut evs);
            report(slot, &mut evs, &origin, &mut filled, out);
            slot.sim.cancel_all(arrived, None, &mut evs);
            let ts = arrived.saturating_add(self.venue_latency);
            slot.sim.advance(ts, &mut evs);
            report(slot, &mut evs, &origin, &mut filled, out);
            slot.working.clear();
            let open: Vec<(String, Decimal)> = slot
                .instances
                .keys()
                .map(|s| (s.clone(), slot.sim.account().position(s)))
                .filter(|(_, q)| !q.is_zero())
                .collect();
            for (symbol, qty) in open {
                let side = if qty > Decimal::ZERO {
                    Side::Sell
                } else {
                    Side::Buy
                };
                let id = format!("{}:{symbol}:end:o", slot.cfg.name);
                let order = Order {
                    reduce_only: true,
                    ..Order::market(&id, &symbol, side, qty.abs())
                };
                slot.live.insert(id, LiveOrder::of(&order, String::new()));
                inst_counts(slot, &symbol).orders += 1;
                slot.sim.submit(ts, order, &mut evs);
            }
            slot.sim
                .advance(ts.saturating_add(self.venue_latency), &mut evs);
            report(slot, &mut evs, &origin, &mut filled, out);
            settle(slot, &mut filled, ts, &origin, &mut evs, out);
        }
    }

    /// The checks that need state: the symbol list and event-time ordering.
    /// Dead-letter messages with an event time after `t` (`ahead_of_clock`):
    /// paper mode sets it from the wall clock before each batch; `None` (the
    /// default, and backtests) admits any time.
    pub fn set_not_after(&mut self, t: Option<Ts>) {
        self.not_after = t;
    }

    /// Admit an event or say why not; its symbol's place in `seen`.
    fn admit(&mut self, kind: InputKind, ev: &MarketEvent) -> Result<usize, Rejection> {
        let symbol = ev.symbol();
        if let Some(limit) = self.not_after {
            if ev.ts() > limit {
                return Err(Rejection::new(
                    "ahead_of_clock",
                    format!(
                        "ts {} is ahead of the wall clock by more than input.max_ahead (latest accepted {})",
                        wire::format_ts(ev.ts()),
                        wire::format_ts(limit)
                    ),
                ));
            }
        }
        if let Some(allowed) = &self.symbols {
            if !allowed.contains(symbol) {
                return Err(Rejection::new(
                    "unknown_symbol",
                    format!("symbol {symbol:?} is not in input.symbols"),
                ));
            }
        }
        let ts = ev.ts();
        let id = seen_id(&mut self.symbol_ids, &mut self.seen, symbol);
        match &mut self.seen[id].newest[kind as usize] {
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
            none => *none = Some(ts),
        }
        Ok(id)
    }

    /// A tick, to the slots that trade its symbol.
    fn on_tick(&mut self, slots: &[usize], origin: &Origin, t: &Tick, out: &mut Vec<Output>) {
        let price = f64_of(t.price);
        let mut evs = Vec::new();
        for &i in slots {
            let slot = &mut self.slots[i];
            // The venue first: resting orders fill against this trade and the
            // synthesized book moves to it; then the strategy sees the tick.
            slot.sim
                .on_trade(&t.symbol, t.ts, t.price, t.size, &mut evs);
            let mut filled = BTreeSet::new();
            report(slot, &mut evs, origin, &mut filled, out);
            // Risk before the rule: a drawdown past the limit flattens and
            // halts before the strategy acts on this tick.
            kill_switch(slot, t.ts, origin, &mut evs, &mut filled, out);
            // The exits follow what the venue filled before anything decides:
            // a position closed by a stop and reopened on this tick is a new trade.
            follow_symbol(slot, &t.symbol, &mut filled, t.ts, origin, &mut evs, out);
            let mut inst = slot
                .instances
                .get_mut(t.symbol.as_str())
                .expect("instance per symbol");
            inst.counts.ticks += 1;
            let ticks = inst.counts.ticks;
            // On bars, the rule sees a completed bar as one tick at its
            // close; the order still trades at this tick.
            let bar = inst.bars.as_mut().map(|b| b.push(t));
            let timed = inst.exits.is_some() && !slot.killed;
            if let Some(x) = &mut inst.exits {
                match &bar {
                    None => x.on_update(price, price, price),
                    Some(Some(b)) => x.on_update(f64_of(b.high), f64_of(b.low), f64_of(b.close)),
                    Some(None) => {}
                }
            }
            // Time stop and minimal ROI before the rule (`exits`).
            if timed {
                timed_exit(slot, &t.symbol, t.ts, t.price, origin, &mut evs, out);
                report(slot, &mut evs, origin, &mut filled, out);
                follow_symbol(slot, &t.symbol, &mut filled, t.ts, origin, &mut evs, out);
                // Found again only after the exits, which needed the slot.
                inst = slot
                    .instances
                    .get_mut(t.symbol.as_str())
                    .expect("instance per symbol");
            }
            let (qty, cost) = position_of(slot.sim.account(), &t.symbol);
            inst.rule.set_position(qty, cost);
            // `orders.trade_on_close`: a bar's decision is sized and filled
            // at the bar's close.
            let at_close = match &bar {
                Some(Some(b)) if slot.cfg.orders.trade_on_close => Some(b.close),
                _ => None,
            };
            let decision = match bar {
                None => inst.rule.on_tick(t, price),
                Some(bar) => bar.and_then(|bar| inst.rule.on_bar(&bar)),
            };
            if let Some(d) = decision {
                let p = Some(at_close.unwrap_or(t.price));
                decide(
                    slot, &t.symbol, t.ts, p, d, origin, "", at_close, &mut evs, out,
                );
                report(slot, &mut evs, origin, &mut filled, out);
            }
            settle(slot, &mut filled, t.ts, origin, &mut evs, out);
            if !filled.contains(t.symbol.as_str())
                && self.pnl_every > 0
                && ticks.is_multiple_of(self.pnl_every)
            {
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
        out.push(Output::DeadLetter(dead_letter_msg(origin, key, payload, r)));
    }

    /// Messages processed and dead-lettered so far.
    pub fn counts(&self) -> InputCounts {
        let mut c = self.counts.clone();
        for kind in KINDS {
            let n = self.processed[kind as usize];
            if n > 0 {
                *c.processed.entry(kind_name(kind).to_string()).or_default() += n;
            }
        }
        c
    }

    /// The newest event time seen.
    pub fn last_ts(&self) -> Ts {
        self.last_ts
    }

    /// Every strategy's state for an equity mark (`stats::Mark`), cheaper
    /// than a [`Engine::summary`].
    pub fn marks(&self) -> impl Iterator<Item = StrategyMark<'_>> {
        self.slots.iter().map(|s| {
            let a = s.account();
            StrategyMark {
                strategy: &s.cfg.name,
                equity: a.equity(),
                exposed: a.positions.values().any(|p| !p.qty.is_zero()),
                events: s
                    .instances
                    .values()
                    .map(|i| i.counts.ticks + i.counts.sentiment)
                    .sum(),
            }
        })
    }

    /// The last trade price of `symbol`, if it has traded.
    pub fn last_price(&self, symbol: &str) -> Option<Decimal> {
        self.symbol_ids
            .get(symbol)
            .and_then(|&id| self.seen[id].last_price)
    }

    /// A summary of every strategy, symbol and account.
    pub fn summary(&self) -> crate::summary::Summary {
        crate::summary::Summary::new(
            self.slots.iter().map(|s| {
                (
                    &s.cfg,
                    s.account(),
                    s.instances.iter().map(|(k, v)| (k, &v.counts)),
                )
            }),
            &self.counts(),
        )
    }
}

/// The engine's whole event-driven state: what a checkpoint holds. The
/// configuration is not in it; [`Engine::restore`] needs an engine built from
/// the configuration the state was saved under (checked by `fingerprint`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineState {
    /// [`config_fingerprint`] of the configuration the state belongs to.
    pub fingerprint: String,
    slots: Vec<SlotState>,
    newest: Vec<((InputKind, String), Ts)>,
    last_price: Vec<(String, Decimal)>,
    counts: InputCounts,
    last_ts: Ts,
    #[serde(default)]
    analytics: AnalyticsState,
    #[serde(default)]
    controls: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SlotState {
    name: String,
    sim: SimState,
    instances: BTreeMap<String, InstanceState>,
    live: BTreeMap<String, LiveOrder>,
    working: BTreeMap<String, String>,
    killed: bool,
    #[serde(default)]
    paused: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstanceState {
    rule: StateValue,
    bars: Option<BarBuilder>,
    counts: SymbolCounts,
    #[serde(default)]
    exits: Option<ExitState>,
}

/// A digest of everything in the configuration that shapes the engine's state
/// and outputs: the strategies, the instruments, latency, symbol list,
/// ordering slack and P&L cadence.
/// The instruments as the fingerprint hashes them: fields added later are
/// left out at their defaults, each on its own, so that a checkpoint written
/// before they existed still restores (whatever its fill model).
fn instruments_digest(instruments: &BTreeMap<String, InstrumentConfig>) -> String {
    format!("{instruments:?}")
        .replace(", volume_cap: None, volume_cap_rest: Work", "")
        .replace(", fill: SynthBook, slippage: None", "")
}

pub fn config_fingerprint(cfg: &EngineSpec) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&cfg.strategies).expect("strategies serialize"));
    // The fill model's fields at their defaults are left out, so that
    // checkpoints written before they existed still restore.
    let instruments = instruments_digest(&cfg.instruments);
    h.update(format!(
        "{instruments}|{}|{}|{:?}|{}",
        cfg.venue_latency, cfg.max_out_of_order, cfg.symbols, cfg.pnl_every_ticks
    ));
    if !cfg.analytics.is_empty() {
        h.update(serde_json::to_vec(&cfg.analytics).expect("analytics serialize"));
    }
    format!("{:x}", h.finalize())
}

impl Engine {
    /// The state to checkpoint. Deterministic: the same state gives the same value.
    pub fn state(&self, fingerprint: &str) -> EngineState {
        let named = || {
            self.symbol_ids
                .iter()
                .map(|(name, &id)| (name, &self.seen[id]))
        };
        let mut newest: Vec<_> = named()
            .flat_map(|(name, s)| {
                KINDS
                    .iter()
                    .filter_map(move |&k| s.newest[k as usize].map(|ts| ((k, name.clone()), ts)))
            })
            .collect();
        newest.sort();
        let mut last_price: Vec<_> = named()
            .filter_map(|(name, s)| s.last_price.map(|p| (name.clone(), p)))
            .collect();
        last_price.sort();
        EngineState {
            fingerprint: fingerprint.to_string(),
            slots: self
                .slots
                .iter()
                .map(|s| SlotState {
                    name: s.cfg.name.clone(),
                    sim: s.sim.state(),
                    instances: s
                        .instances
                        .iter()
                        .map(|(sym, i)| {
                            (
                                sym.clone(),
                                InstanceState {
                                    rule: i.rule.save(),
                                    bars: i.bars.clone(),
                                    counts: i.counts.clone(),
                                    exits: i.exits.clone(),
                                },
                            )
                        })
                        .collect(),
                    live: s.live.clone(),
                    working: s.working.clone(),
                    killed: s.killed,
                    paused: s.paused,
                })
                .collect(),
            newest,
            last_price,
            counts: self.counts(),
            last_ts: self.last_ts,
            analytics: self.analytics.state(),
            controls: self.controls,
        }
    }

    /// Continue from a checkpoint: take over its state. The engine must be
    /// fresh and built from the configuration the state was saved under.
    ///
    /// # Errors
    /// The fingerprint differs, or a strategy, symbol or model in the state does
    /// not fit this configuration.
    pub fn restore(&mut self, st: EngineState, fingerprint: &str) -> Result<(), String> {
        if st.fingerprint != fingerprint {
            return Err("the checkpoint was written under a different configuration (strategies, venue, input.symbols, input.max_out_of_order or engine.pnl_every_ticks changed)".into());
        }
        if st.slots.len() != self.slots.len() {
            return Err(format!(
                "the checkpoint has {} strategies, the configuration {}",
                st.slots.len(),
                self.slots.len()
            ));
        }
        for (slot, saved) in self.slots.iter_mut().zip(st.slots) {
            if slot.cfg.name != saved.name {
                return Err(format!(
                    "the checkpoint has strategy {:?} where the configuration has {:?}",
                    saved.name, slot.cfg.name
                ));
            }
            slot.sim
                .restore(saved.sim)
                .map_err(|e| format!("strategy {}: {e}", saved.name))?;
            for (sym, inst) in saved.instances {
                let i = slot.instances.get_mut(&sym).ok_or_else(|| {
                    format!(
                        "strategy {}: the checkpoint trades {sym}, the configuration does not",
                        saved.name
                    )
                })?;
                i.rule
                    .restore(inst.rule)
                    .map_err(|e| format!("strategy {} on {sym}: {e}", saved.name))?;
                i.bars = inst.bars;
                i.counts = inst.counts;
                if let Some(x) = inst.exits {
                    i.exits = Some(x);
                }
            }
            slot.live = saved.live;
            slot.working = saved.working;
            slot.killed = saved.killed;
            slot.paused = saved.paused;
        }
        self.controls = st.controls;
        for s in &mut self.seen {
            s.newest = [None; 3];
            s.last_price = None;
        }
        for ((kind, symbol), ts) in st.newest {
            let id = seen_id(&mut self.symbol_ids, &mut self.seen, &symbol);
            self.seen[id].newest[kind as usize] = Some(ts);
        }
        for (symbol, price) in st.last_price {
            let id = seen_id(&mut self.symbol_ids, &mut self.seen, &symbol);
            self.seen[id].last_price = Some(price);
        }
        self.counts = st.counts;
        self.processed = [0; 3];
        self.last_ts = st.last_ts;
        self.analytics
            .restore(st.analytics)
            .map_err(|e| format!("analytics: {e}"))?;
        Ok(())
    }
}

fn kind_name(kind: InputKind) -> &'static str {
    match kind {
        InputKind::Prices => "prices",
        InputKind::Sentiment => "sentiment",
        InputKind::OrderBook => "order_book",
    }
}

/// Publish a decision as a signal, `{strategy}:{symbol}:{origin}{suffix}`; its id.
#[allow(clippy::too_many_arguments)]
fn signal(
    slot: &mut Slot,
    symbol: &str,
    ts: Ts,
    price: Option<Decimal>,
    d: Decision,
    origin: &Origin,
    suffix: &str,
    out: &mut Vec<Output>,
) -> String {
    let strategy = slot.cfg.name.clone();
    let signal_id = format!("{strategy}:{symbol}:{origin}{suffix}");
    inst_counts(slot, symbol).signals += 1;
    out.push(Output::Signal(SignalMsg {
        signal_id: signal_id.clone(),
        strategy,
        kind: slot.cfg.rule.kind(),
        symbol: symbol.to_string(),
        ts,
        side: d.side,
        strength: d.strength,
        price,
        reason: d.reason,
        origin: origin.to_string(),
        model: d.model,
    }));
    signal_id
}

/// Turn a decision into a signal and, when it changes the position, an order
/// submitted to the strategy's simulated venue. The venue's events land in `evs`
/// (see [`report`]). The signal's id is `{strategy}:{symbol}:{origin}{suffix}`
/// (`suffix` tells an engine exit, `:exit`, from the rule's signal).
#[allow(clippy::too_many_arguments)]
fn decide(
    slot: &mut Slot,
    symbol: &str,
    ts: Ts,
    price: Option<Decimal>,
    d: Decision,
    origin: &Origin,
    suffix: &str,
    at_close: Option<Decimal>,
    evs: &mut Vec<SimEvent>,
    out: &mut Vec<Output>,
) {
    let (side, close_only) = (d.side, d.close_only);
    let signal_id = signal(slot, symbol, ts, price, d, origin, suffix, out);
    if slot.paused {
        // Paused by an operator: the signal is published, no order follows.
        return;
    }

    let Some(price) = price else {
        // A sentiment signal before any trade of the symbol: nothing to size an order at.
        return;
    };
    // One working order per symbol: a signal on its side leaves it working, a
    // signal on the other side cancels it first.
    if let Some(id) = slot.working.get(symbol).cloned() {
        match slot.live.get(&id) {
            Some(o) if o.side == side => return,
            Some(_) => {
                slot.sim.cancel(ts, &id, evs);
                // The close of a `close_then_open` reversal goes with it.
                let close = id.strip_suffix(":o").map(|p| format!("{p}:c"));
                if let Some(c) = close.filter(|c| slot.live.contains_key(c)) {
                    slot.sim.cancel(ts, &c, evs);
                }
            }
            None => {}
        }
        slot.working.remove(symbol);
    }
    let mut qty = order_qty(slot, symbol, side, price, close_only);
    if qty <= Decimal::ZERO {
        return;
    }
    let opposite = match side {
        Side::Buy => (-slot.sim.account().position(symbol)).max(Decimal::ZERO),
        Side::Sell => slot.sim.account().position(symbol).max(Decimal::ZERO),
    };
    if slot.cfg.orders.reverse == Reverse::CloseThenOpen
        && qty > opposite
        && opposite > Decimal::ZERO
    {
        // Close first, reduce-only, then open what is left.
        let close_id = format!("{signal_id}:c");
        let mut close = new_order(slot, &close_id, symbol, side, opposite, price);
        close.reduce_only = true;
        close.at_price = at_close.filter(|_| close.kind == OrderKind::Market);
        slot.live
            .insert(close_id, LiveOrder::of(&close, signal_id.clone()));
        inst_counts(slot, symbol).orders += 1;
        slot.sim.submit(ts, close, evs);
        qty -= opposite;
    }
    let order_id = format!("{signal_id}:o");
    let mut order = new_order(slot, &order_id, symbol, side, qty, price);
    order.at_price = at_close.filter(|_| order.kind == OrderKind::Market);
    // An order that can only close is reduce-only at the venue: an exit that
    // fills first (a stop loss, a timed exit) cannot turn it into a new
    // position on the other side.
    order.reduce_only = close_only || (side == Side::Sell && !slot.cfg.account.allow_short);
    // A buy is sized down to what the cash pays for, fee included, at the
    // price the venue's cash check uses; one that cannot buy a single lot is
    // sent as sized, and refused with the check's reason.
    let lot = slot
        .sim
        .venue(symbol)
        .expect("a venue per symbol")
        .cfg
        .lot_size;
    if let Some(cap) = slot.sim.affordable(&order).filter(|_| !order.reduce_only) {
        let cap = (cap / lot).floor() * lot;
        let sizing_lot = slot.cfg.sizing.lot_size;
        let cap = (cap / sizing_lot).floor() * sizing_lot;
        if cap > Decimal::ZERO && cap < order.qty {
            order.qty = cap;
        }
    }
    slot.live
        .insert(order_id.clone(), LiveOrder::of(&order, signal_id));
    slot.working.insert(symbol.to_string(), order_id);
    inst_counts(slot, symbol).orders += 1;
    slot.sim.submit(ts, order, evs);
}

/// A symbol's position in an account: signed quantity and average entry price.
fn position_of(account: &Account, symbol: &str) -> (Decimal, Decimal) {
    account
        .positions
        .get(symbol)
        .map_or((Decimal::ZERO, Decimal::ZERO), |p| (p.qty, p.avg_cost))
}

fn inst_counts<'a>(slot: &'a mut Slot, symbol: &str) -> &'a mut SymbolCounts {
    &mut slot
        .instances
        .get_mut(symbol)
        .expect("instance per symbol")
        .counts
}

/// The quantity a signal on `side` orders: towards the target position
/// (`[sizing]`, rounded down to the lot size), not past flat unless shorting
/// is allowed, nothing when already positioned on that side. A close-only
/// decision orders the opposite position back to flat, or nothing.
fn order_qty(slot: &Slot, symbol: &str, side: Side, price: Decimal, close_only: bool) -> Decimal {
    let inst = &slot.sim.venue(symbol).expect("a venue per symbol").cfg;
    let (lot, fee_bps) = (inst.lot_size, inst.taker_fee_bps);
    let account = slot.sim.account();
    let position = account.position(symbol);
    // A position the order closes first pays its fee out of the equity.
    let closing = match side {
        Side::Buy => (-position).max(Decimal::ZERO),
        Side::Sell => position.max(Decimal::ZERO),
    };
    let target = target_qty(&slot.cfg, account, symbol, price, fee_bps, closing);
    let target = (target / lot).floor() * lot;
    let allow_short = slot.cfg.account.allow_short;
    if close_only {
        return match side {
            Side::Buy => (-position).max(Decimal::ZERO),
            Side::Sell => position.max(Decimal::ZERO),
        };
    }
    match side {
        Side::Buy if position > Decimal::ZERO => Decimal::ZERO,
        Side::Buy => target - position,
        Side::Sell if position < Decimal::ZERO => Decimal::ZERO,
        Side::Sell => position + if allow_short { target } else { Decimal::ZERO },
    }
}

/// The order a signal sends (`[orders]`): a market order, or a limit order at
/// the own side's best price (the last trade's, snapped, on an empty side)
/// moved `limit_offset_ticks` towards the other side.
fn new_order(
    slot: &mut Slot,
    order_id: &str,
    symbol: &str,
    side: Side,
    qty: Decimal,
    price: Decimal,
) -> Order {
    let o = &slot.cfg.orders;
    match o.style {
        OrderStyle::Market => Order::market(order_id, symbol, side, qty),
        OrderStyle::Limit => {
            let book = slot.sim.book(symbol).expect("a venue per symbol");
            let tick = book.tick_size();
            let own = match side {
                Side::Buy => book.best_bid(),
                Side::Sell => book.best_ask(),
            };
            let base = match own {
                Some((t, _)) => t,
                None => to_ticks(
                    price,
                    tick,
                    if side == Side::Buy {
                        Snap::Down
                    } else {
                        Snap::Up
                    },
                ),
            };
            let offset = match side {
                Side::Buy => o.limit_offset_ticks,
                Side::Sell => -o.limit_offset_ticks,
            };
            let mut ticks = base + offset;
            if o.post_only {
                // A locked book (`fill = "last_price"`) has the own best at
                // the opposite best: step back so the order can rest.
                let opposite = match side {
                    Side::Buy => book.best_ask().map(|(t, _)| t - 1),
                    Side::Sell => book.best_bid().map(|(t, _)| t + 1),
                };
                ticks = match (side, opposite) {
                    (Side::Buy, Some(max)) => ticks.min(max),
                    (Side::Sell, Some(min)) => ticks.max(min),
                    (_, None) => ticks,
                };
            }
            let mut order = Order::limit(
                order_id,
                symbol,
                side,
                qty,
                book.price(ticks.max(1)),
                tif(o.tif),
            );
            order.post_only = o.post_only;
            order
        }
    }
}

/// The kill switch: when the account's drawdown reaches `risk.max_drawdown`,
/// cancel everything, close every position and halt the strategy. While halted,
/// what a thin book left open is closed on later events.
fn kill_switch(
    slot: &mut Slot,
    ts: Ts,
    origin: &Origin,
    evs: &mut Vec<SimEvent>,
    filled: &mut BTreeSet<String>,
    out: &mut Vec<Output>,
) {
    // Halted (by the drawdown limit or an operator): close again what is
    // left, once nothing is working.
    let fire = if slot.killed {
        slot.live.is_empty()
            && slot.sim.pending() == 0
            && slot.account().positions.values().any(|p| !p.qty.is_zero())
    } else {
        slot.cfg
            .risk
            .max_drawdown
            .is_some_and(|limit| slot.account().drawdown() >= limit)
    };
    if !fire {
        return;
    }
    if !slot.killed {
        tracing::warn!(
            strategy = %slot.cfg.name,
            drawdown = %slot.account().drawdown(),
            limit = ?slot.cfg.risk.max_drawdown,
            "kill switch: drawdown limit reached; cancelling, flattening and halting"
        );
    }
    let prefix = format!("{}:kill:{origin}", slot.cfg.name);
    halt(slot, ts, &prefix, origin, evs, filled, out);
}

/// Cancel everything, close every open position with a market order
/// (`{prefix}:{symbol}`) and halt the strategy: the kill switch's action.
fn halt(
    slot: &mut Slot,
    ts: Ts,
    prefix: &str,
    origin: &Origin,
    evs: &mut Vec<SimEvent>,
    filled: &mut BTreeSet<String>,
    out: &mut Vec<Output>,
) {
    slot.killed = true;
    let positions: Vec<(String, Decimal)> = slot
        .account()
        .positions
        .iter()
        .map(|(s, p)| (s.clone(), p.qty))
        .collect();
    for (symbol, qty) in positions {
        if qty.is_zero() || !slot.instances.contains_key(&symbol) {
            continue;
        }
        let id = format!("{prefix}:{symbol}");
        slot.live.insert(
            id,
            LiveOrder {
                signal_id: String::new(),
                strategy_symbol: symbol.clone(),
                side: if qty > Decimal::ZERO {
                    Side::Sell
                } else {
                    Side::Buy
                },
                order_type: OrderType::Market,
                price: None,
                stop: None,
                tif: Tif::Ioc,
                qty: qty.abs(),
                filled: Decimal::ZERO,
                notional: Decimal::ZERO,
                partials: 0,
            },
        );
    }
    slot.working.clear();
    slot.sim.flatten_and_halt(ts, prefix, evs);
    report(slot, evs, origin, filled, out);
}

/// Turn the simulator's events into order and fill outputs, drain `evs`, and
/// add the symbols that had fills to `filled` (their P&L snapshots follow once
/// the input is done, see [`pnl_after`]).
fn report(
    slot: &mut Slot,
    evs: &mut Vec<SimEvent>,
    origin: &Origin,
    filled: &mut BTreeSet<String>,
    out: &mut Vec<Output>,
) {
    if evs.is_empty() {
        return;
    }
    let strategy = slot.cfg.name.clone();
    for ev in evs.drain(..) {
        let Some(live) = slot.live.get_mut(&ev.order_id) else {
            // The flatten orders' lifecycle is registered before submission;
            // nothing else submits orders.
            continue;
        };
        let (status, reason) = match &ev.kind {
            EventKind::New => (OrderStatus::New, None),
            EventKind::Accepted => (OrderStatus::Accepted, None),
            EventKind::Triggered => (OrderStatus::Triggered, None),
            EventKind::PartiallyFilled { .. } => (OrderStatus::PartiallyFilled, None),
            EventKind::Filled { .. } => (OrderStatus::Filled, None),
            EventKind::Cancelled { reason } => (OrderStatus::Cancelled, Some(reason.clone())),
            EventKind::Rejected { reason } => (OrderStatus::Rejected, Some(reason.clone())),
            EventKind::CancelRejected { reason } => {
                (OrderStatus::CancelRejected, Some(reason.clone()))
            }
            EventKind::Expired => (OrderStatus::Expired, None),
        };
        let terminal = status.is_terminal();
        let inst = slot.instances.get_mut(&live.strategy_symbol);
        if let Some(f) = ev.fill() {
            live.filled += f.qty;
            live.notional += f.qty * f.price;
            out.push(Output::Fill(FillMsg {
                fill_id: f.fill_id.clone(),
                order_id: ev.order_id.clone(),
                strategy: strategy.clone(),
                symbol: f.symbol.clone(),
                ts: f.ts,
                side: f.side,
                qty: f.qty,
                price: f.price,
                fee: f.fee,
                liquidity: f.liquidity,
                slippage: f.slippage,
            }));
            filled.insert(f.symbol.clone());
        }
        if let Some(inst) = inst {
            match status {
                OrderStatus::Filled | OrderStatus::PartiallyFilled => inst.counts.fills += 1,
                OrderStatus::Rejected => inst.counts.rejected += 1,
                _ => {}
            }
        }
        let event_id = match status {
            OrderStatus::PartiallyFilled => {
                live.partials += 1;
                format!("{}:partially_filled:{}", ev.order_id, live.partials)
            }
            OrderStatus::CancelRejected => format!("{}:cancel_rejected:{origin}", ev.order_id),
            _ => format!("{}:{status}", ev.order_id),
        };
        out.push(Output::Order(OrderMsg {
            event_id,
            order_id: ev.order_id.clone(),
            signal_id: live.signal_id.clone(),
            strategy: strategy.clone(),
            symbol: ev.symbol.clone(),
            ts: ev.ts,
            side: live.side,
            order_type: live.order_type,
            price: live.price,
            stop_price: live.stop,
            tif: live.tif,
            qty: live.qty,
            status,
            filled_qty: live.filled,
            avg_price: (!live.filled.is_zero()).then(|| live.notional / live.filled),
            leaves_qty: if terminal {
                Decimal::ZERO
            } else {
                live.qty - live.filled
            },
            reason,
        }));
        if terminal {
            let sym = live.strategy_symbol.clone();
            slot.live.remove(&ev.order_id);
            if slot.working.get(&sym) == Some(&ev.order_id) {
                slot.working.remove(&sym);
            }
        }
    }
}

fn f64_of(d: Decimal) -> f64 {
    crate::domain::f64_of(d)
}

/// The time stop or minimal ROI of `[exits]` is due: a close-only signal
/// (`...:exit`) and its market order.
fn timed_exit(
    slot: &mut Slot,
    symbol: &str,
    ts: Ts,
    price: Decimal,
    origin: &Origin,
    evs: &mut Vec<SimEvent>,
    out: &mut Vec<Output>,
) {
    let inst = slot.instances.get_mut(symbol).expect("instance per symbol");
    let Some(x) = &mut inst.exits else { return };
    let live = &slot.live;
    let Some(reason) = x.timed_exit(&slot.cfg.exits, ts, price, &|id| live.contains_key(id)) else {
        return;
    };
    let long = x.trade.as_ref().is_some_and(|t| t.sign > 0);
    let d = Decision {
        side: if long { Side::Sell } else { Side::Buy },
        strength: if long { -1.0 } else { 1.0 },
        reason,
        model: None,
        close_only: true,
    };
    let side = d.side;
    let signal_id = signal(slot, symbol, ts, Some(price), d, origin, ":exit", out);
    // Whatever the rule left working on the symbol gives way to the exit.
    if let Some(id) = slot.working.remove(symbol) {
        if slot.live.contains_key(&id) {
            slot.sim.cancel(ts, &id, evs);
        }
    }
    let qty = slot.sim.account().position(symbol).abs();
    let id = format!("{signal_id}:o");
    let order = Order {
        reduce_only: true,
        ..Order::market(&id, symbol, side, qty)
    };
    slot.live
        .insert(id.clone(), LiveOrder::of(&order, signal_id));
    slot.working.insert(symbol.to_string(), id.clone());
    let inst = slot.instances.get_mut(symbol).expect("instance per symbol");
    inst.counts.orders += 1;
    if let Some(t) = inst.exits.as_mut().and_then(|x| x.trade.as_mut()) {
        t.exit_order = Some(id);
    }
    slot.sim.submit(ts, order, evs);
}

/// After an input: the exits of every symbol whose position changed follow
/// the position (`exits::ExitState::on_position`: legs sent, replaced or
/// cancelled; legs that fill at once change it again, so up to three rounds),
/// then one P&L snapshot per symbol that had fills.
fn settle(
    slot: &mut Slot,
    filled: &mut BTreeSet<String>,
    ts: Ts,
    origin: &Origin,
    evs: &mut Vec<SimEvent>,
    out: &mut Vec<Output>,
) {
    if filled.is_empty() {
        return;
    }
    let changed = filled.clone();
    follow_exits(slot, changed, filled, ts, origin, evs, out);
    pnl_after(slot, filled, ts, origin, out);
}

/// [`follow_exits`] for `symbol` when it had fills.
fn follow_symbol(
    slot: &mut Slot,
    symbol: &str,
    filled: &mut BTreeSet<String>,
    ts: Ts,
    origin: &Origin,
    evs: &mut Vec<SimEvent>,
    out: &mut Vec<Output>,
) {
    if filled.contains(symbol) {
        let changed = BTreeSet::from([symbol.to_string()]);
        follow_exits(slot, changed, filled, ts, origin, evs, out);
    }
}

/// The exits of the symbols in `changed` follow their positions; fills this
/// causes join `filled` (and are followed in turn, up to three rounds).
fn follow_exits(
    slot: &mut Slot,
    mut changed: BTreeSet<String>,
    filled: &mut BTreeSet<String>,
    ts: Ts,
    origin: &Origin,
    evs: &mut Vec<SimEvent>,
    out: &mut Vec<Output>,
) {
    for _ in 0..3 {
        if changed.is_empty() {
            break;
        }
        for symbol in std::mem::take(&mut changed) {
            place_exits(slot, &symbol, ts, origin, evs);
            report(slot, evs, origin, &mut changed, out);
        }
        filled.extend(changed.iter().cloned());
    }
}

/// Bring the exit orders of `symbol` in line with its position.
fn place_exits(slot: &mut Slot, symbol: &str, ts: Ts, origin: &Origin, evs: &mut Vec<SimEvent>) {
    let Some(inst) = slot.instances.get_mut(symbol) else {
        return;
    };
    let Some(x) = &mut inst.exits else { return };
    if slot.killed {
        // The kill switch cancelled everything and closes what is open.
        x.trade = None;
        return;
    }
    let (position, avg) = position_of(slot.sim.account(), symbol);
    let cfg = &slot.sim.venue(symbol).expect("a venue per symbol").cfg;
    let (tick, lot) = (cfg.tick_size, cfg.lot_size);
    let live = &slot.live;
    let p = x.on_position(&slot.cfg.exits, position, avg, ts, tick, lot, &|id| {
        live.contains_key(id)
    });
    for id in p.cancel {
        if slot.live.contains_key(&id) {
            slot.sim.cancel(ts, &id, evs);
        }
    }
    let prefix = format!("{}:{symbol}:{origin}", slot.cfg.name);
    let again = if p.send.is_empty() {
        String::new()
    } else {
        x.leg_suffix(&origin.to_string())
    };
    let mut legs = Vec::new();
    for (name, side, qty, kind) in p.send {
        let order = Order {
            id: format!("{prefix}:{name}{again}"),
            symbol: symbol.to_string(),
            side,
            qty,
            kind,
            tif: Tif::Gtc,
            post_only: false,
            reduce_only: true,
            oco: Some(format!("{prefix}:exit{again}")),
            at_price: None,
        };
        slot.live
            .insert(order.id.clone(), LiveOrder::of(&order, String::new()));
        legs.push(order.id.clone());
        inst.counts.orders += 1;
        slot.sim.submit(ts, order, evs);
    }
    if let Some(t) = &mut x.trade {
        if !legs.is_empty() {
            t.legs = legs;
        }
    }
}

/// One P&L snapshot per symbol that had fills while the slot handled an input.
fn pnl_after(
    slot: &Slot,
    filled: &BTreeSet<String>,
    ts: Ts,
    origin: &Origin,
    out: &mut Vec<Output>,
) {
    for symbol in filled {
        if slot.instances.contains_key(symbol) {
            out.push(pnl(slot, symbol, ts, origin));
        }
    }
}

fn tif(t: TifConfig) -> Tif {
    match t {
        TifConfig::Gtc => Tif::Gtc,
        TifConfig::Ioc => Tif::Ioc,
        TifConfig::Fok => Tif::Fok,
        TifConfig::Day => Tif::Day,
    }
}

fn order_type(k: &OrderKind) -> OrderType {
    match k {
        OrderKind::Market => OrderType::Market,
        OrderKind::Limit { .. } => OrderType::Limit,
        OrderKind::Stop { .. } => OrderType::Stop,
        OrderKind::StopLimit { .. } => OrderType::StopLimit,
        OrderKind::TrailingStop { .. } => OrderType::TrailingStop,
    }
}

/// The quantity a new position should have, rounded down to the lot size.
/// `fraction_of_equity` pays the taker fee out of the fraction: of the
/// equity less the fee of closing `closing` first, it buys what the fraction
/// pays for at `price * (1 + fee)` (backtesting.py's sizing of orders given as
/// a fraction).
fn target_qty(
    cfg: &StrategyConfig,
    account: &Account,
    symbol: &str,
    price: Decimal,
    fee_bps: Decimal,
    closing: Decimal,
) -> Decimal {
    let z = &cfg.sizing;
    let rate = fee_bps / Decimal::from(10_000);
    let raw = match z.mode {
        SizingMode::FixedQuantity => z.quantity.unwrap_or_default(),
        SizingMode::FixedNotional => z.notional.unwrap_or_default() / price,
        SizingMode::FractionOfEquity => {
            // The symbol's position marked at the sizing price (the bar's
            // close under `trade_on_close`; otherwise the last price itself).
            let remark = account
                .positions
                .get(symbol)
                .map_or(Decimal::ZERO, |p| p.qty * (price - p.last_price));
            let equity = account.equity() + remark - closing * price * rate;
            z.fraction.unwrap_or_default() * equity / (price * (Decimal::ONE + rate))
        }
    };
    ((raw / z.lot_size).floor() * z.lot_size).max(Decimal::ZERO)
}

fn pnl(slot: &Slot, symbol: &str, ts: Ts, origin: &Origin) -> Output {
    let a = slot.account();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::FillModel;

    #[test]
    fn instrument_fields_added_later_leave_the_fingerprint_alone() {
        let d = |v: i64| Decimal::new(v, 2);
        let mut inst = InstrumentConfig::new(d(1), d(100));
        let one = |i: &InstrumentConfig| {
            instruments_digest(&BTreeMap::from([("X".to_string(), i.clone())]))
        };
        // As before the fill models and the volume cap existed...
        let s = one(&inst);
        assert!(!s.contains("fill:") && !s.contains("volume_cap"), "{s}");
        // ...and with a fill model from before the volume cap.
        inst.fill = FillModel::LastPrice;
        let s = one(&inst);
        assert!(s.contains(", fill: LastPrice, slippage: None }"), "{s}");
        assert!(!s.contains("volume_cap"), "{s}");
        inst.volume_cap = Some(d(10));
        assert!(one(&inst).contains("volume_cap: Some(0.10)"));
    }
}
