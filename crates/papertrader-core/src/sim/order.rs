//! Orders and their lifecycle events: types, time in force, validation against
//! the instrument's tick and lot sizes, and the events the simulator emits.
//!
//! Ids are deterministic: the caller gives each order its id (derived from the
//! input's origin); fill ids are `{order_id}:f{n}` with `n` counting from 1 per order.
//!
//! Lifecycle: `New` (when submitted, at the submitter's event time) -> `Accepted`
//! (when it reaches the venue, after the latency) or `Rejected{reason}` -> zero or
//! more `PartiallyFilled` -> `Filled`, or `Cancelled{reason}` / `Expired`.
//! Stop orders also emit `Triggered` when a trade reaches their stop price.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use super::fee::Liquidity;
use super::instrument::{to_ticks_exact, InstrumentConfig};
use crate::domain::{Side, Ts};

/// Order type and its prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum OrderKind {
    /// Takes liquidity at any price; what cannot fill at once is cancelled.
    Market,
    /// Takes liquidity up to `price`, then rests at `price` (by its TIF).
    Limit { price: Decimal },
    /// Becomes a market order when a trade prints at or through `stop`
    /// (a buy stop at `>= stop`, a sell stop at `<= stop`).
    Stop { stop: Decimal },
    /// Becomes a limit order at `limit` when a trade prints at or through `stop`.
    StopLimit { stop: Decimal, limit: Decimal },
    /// A stop that follows the market: its stop lies `offset` behind the best
    /// trade price since it reached the venue (below the highest for a sell,
    /// above the lowest for a buy), as a price distance or, with `percent`, as
    /// a fraction of that best price; it becomes a market order when a trade
    /// prints at or through it.
    TrailingStop { offset: Decimal, percent: bool },
}

pub use crate::domain::Tif;

/// An order as submitted by the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Caller-given, unique, deterministic id.
    pub id: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub kind: OrderKind,
    pub tif: Tif,
    /// Reject instead of taking liquidity (limit orders only).
    pub post_only: bool,
    /// Only ever reduce the position: a fill is capped at the position left on
    /// the other side, and an order with nothing left to reduce is cancelled.
    /// Exit orders are reduce-only; the pre-trade position and cash checks do
    /// not apply to them, and they do not count against other orders.
    #[serde(default)]
    pub reduce_only: bool,
    /// One-updates-other group: a fill of one order reduces every other open
    /// order of the group by the same quantity, and cancels those left with
    /// nothing (a stop loss and its take profit).
    #[serde(default)]
    pub oco: Option<String>,
    /// A market order to fill as if the last trade were at this price
    /// (`[orders] trade_on_close`: the close of the bar that decided it),
    /// under `fill = "last_price"` or `"last_trade"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_price: Option<Decimal>,
}

impl Order {
    pub fn market(id: &str, symbol: &str, side: Side, qty: Decimal) -> Self {
        Order {
            id: id.to_string(),
            symbol: symbol.to_string(),
            side,
            qty,
            kind: OrderKind::Market,
            tif: Tif::Ioc,
            post_only: false,
            reduce_only: false,
            oco: None,
            at_price: None,
        }
    }

    pub fn limit(
        id: &str,
        symbol: &str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        tif: Tif,
    ) -> Self {
        Order {
            id: id.to_string(),
            symbol: symbol.to_string(),
            side,
            qty,
            kind: OrderKind::Limit { price },
            tif,
            post_only: false,
            reduce_only: false,
            oco: None,
            at_price: None,
        }
    }

    /// A stop (market on trigger), good till cancelled.
    pub fn stop(id: &str, symbol: &str, side: Side, qty: Decimal, stop: Decimal) -> Self {
        Order {
            kind: OrderKind::Stop { stop },
            tif: Tif::Gtc,
            ..Order::market(id, symbol, side, qty)
        }
    }

    /// The limit price, if any (the limit of a stop-limit).
    pub fn limit_price(&self) -> Option<Decimal> {
        match self.kind {
            OrderKind::Limit { price } => Some(price),
            OrderKind::StopLimit { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// Whether the order waits for a trigger (stop, stop-limit, trailing stop).
    pub fn is_stop(&self) -> bool {
        matches!(
            self.kind,
            OrderKind::Stop { .. } | OrderKind::StopLimit { .. } | OrderKind::TrailingStop { .. }
        )
    }

    /// The fixed stop price, if any (a trailing stop's moves: see `sim::matching`).
    pub fn stop_price(&self) -> Option<Decimal> {
        match self.kind {
            OrderKind::Stop { stop } | OrderKind::StopLimit { stop, .. } => Some(stop),
            _ => None,
        }
    }

    /// Static checks against the instrument: positive quantity on the lot grid,
    /// positive prices on the tick grid, post-only only on limit orders.
    ///
    /// # Errors
    /// The reason, as a sentence naming the field.
    pub fn validate(&self, inst: &InstrumentConfig) -> Result<(), String> {
        if self.qty <= Decimal::ZERO {
            return Err(format!("qty must be > 0, got {}", self.qty));
        }
        if inst.lot_size > Decimal::ZERO && !(self.qty % inst.lot_size).is_zero() {
            return Err(format!(
                "qty {} is not a multiple of lot_size {}",
                self.qty, inst.lot_size
            ));
        }
        for (name, p) in [("price", self.limit_price()), ("stop", self.stop_price())] {
            if let Some(p) = p {
                if p <= Decimal::ZERO {
                    return Err(format!("{name} must be > 0, got {p}"));
                }
                if to_ticks_exact(p, inst.tick_size).is_none() {
                    return Err(format!(
                        "{name} {p} is not a multiple of tick_size {}",
                        inst.tick_size
                    ));
                }
            }
        }
        if let OrderKind::TrailingStop { offset, percent } = self.kind {
            if offset <= Decimal::ZERO || (percent && offset >= Decimal::ONE) {
                return Err(format!(
                    "trailing offset must be > 0{}, got {offset}",
                    if percent {
                        " and < 1 as a fraction"
                    } else {
                        ""
                    }
                ));
            }
        }
        if self.post_only && !matches!(self.kind, OrderKind::Limit { .. }) {
            return Err("post_only applies to limit orders only".to_string());
        }
        if self.post_only && matches!(self.tif, Tif::Ioc | Tif::Fok) {
            return Err("post_only cannot be IOC or FOK".to_string());
        }
        Ok(())
    }
}

/// One fill of one order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fill {
    /// `{order_id}:f{n}`.
    pub fill_id: String,
    pub order_id: String,
    pub symbol: String,
    pub ts: Ts,
    pub side: Side,
    pub qty: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub liquidity: Liquidity,
    /// `(price - reference) * sign(side)`: positive is worse for us. The reference
    /// is the best opposite price when the order reached the venue (or, for a stop,
    /// when it triggered); `None` when that side of the book was empty then.
    pub slippage: Option<Decimal>,
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum EventKind {
    New,
    Accepted,
    Triggered,
    PartiallyFilled {
        fill: Fill,
        leaves_qty: Decimal,
    },
    Filled {
        fill: Fill,
    },
    Cancelled {
        reason: String,
    },
    Rejected {
        reason: String,
    },
    /// A cancel request for an order that is not open (unknown, filled or cancelled).
    CancelRejected {
        reason: String,
    },
    Expired,
}

/// One simulator event: a fact about one order at one event time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimEvent {
    pub ts: Ts,
    pub order_id: String,
    pub symbol: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl SimEvent {
    /// The fill this event carries, if any.
    pub fn fill(&self) -> Option<&Fill> {
        match &self.kind {
            EventKind::PartiallyFilled { fill, .. } | EventKind::Filled { fill } => Some(fill),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::d;

    #[test]
    fn validation_reasons() {
        let inst = InstrumentConfig::new(d("0.05"), d("10"));
        let ok = Order::limit("o", "X", Side::Buy, d("20"), d("100.05"), Tif::Gtc);
        assert_eq!(ok.validate(&inst), Ok(()));
        let e = Order::limit("o", "X", Side::Buy, d("15"), d("100.05"), Tif::Gtc).validate(&inst);
        assert!(e.unwrap_err().contains("lot_size"));
        let e = Order::limit("o", "X", Side::Buy, d("10"), d("100.03"), Tif::Gtc).validate(&inst);
        assert!(e.unwrap_err().contains("tick_size"));
        let e = Order::market("o", "X", Side::Buy, d("0")).validate(&inst);
        assert!(e.unwrap_err().contains("qty must be > 0"));
        let mut pm = Order::market("o", "X", Side::Buy, d("10"));
        pm.post_only = true;
        assert!(pm.validate(&inst).unwrap_err().contains("post_only"));
        let stop = Order {
            kind: OrderKind::StopLimit {
                stop: d("101"),
                limit: d("101.01"),
            },
            ..ok
        };
        assert!(stop
            .validate(&inst)
            .unwrap_err()
            .starts_with("price 101.01"));
    }
}
