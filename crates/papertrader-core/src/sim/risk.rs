//! Why an order is refused before it is sent: pre-trade risk checks.
//!
//! Each check returns a reason; the simulator turns it into a `Rejected{reason}`
//! event at submission time. Checks, in order: kill switch, max order size, max
//! orders per second (event time, trailing one-second window of the orders that
//! passed the other checks), max position per symbol, max gross notional, and
//! buying power / no short selling.
//!
//! Open orders count: the projected position is the position plus every open and
//! pending order of the symbol on the same side plus the new one. The reference
//! price of an order is its limit (stop-limit: limit; stop: stop), otherwise the
//! best opposite price, otherwise the last trade.
//!
//! The kill switch is a flag: [`RiskManager::halt`] (the engine calls it, e.g. on
//! a drawdown trigger) makes every new order fail until [`RiskManager::resume`].
//! Cancels are never refused. Reduce-only orders (exits, closing orders) meet
//! the kill switch only: the venue caps them at the position, so they cannot
//! open, grow or flip one, and closing is never held back by a limit.
//!
//! Simplifications: short sales (with `allow_short`) are not margin-checked, and
//! the cash check prices open buys at their reference price now, not at the price
//! they will fill at.

use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::VecDeque;

use super::order::Order;
use crate::domain::{Side, Ts, NANOS_PER_SEC};

/// Pre-trade limits; a `None` limit is not checked.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskLimits {
    /// Largest absolute position per symbol, counting open orders.
    #[serde(default)]
    pub max_position: Option<Decimal>,
    /// Largest sum of `|position| * mark` over all symbols, plus the new order's notional.
    #[serde(default)]
    pub max_gross_notional: Option<Decimal>,
    /// Largest quantity of one order.
    #[serde(default)]
    pub max_order_qty: Option<Decimal>,
    /// Most orders per second of event time.
    #[serde(default)]
    pub max_orders_per_sec: Option<u32>,
    /// Check that buys can be paid from cash (open buys included).
    #[serde(default = "default_true")]
    pub check_cash: bool,
    /// Allow sells beyond the long position.
    #[serde(default)]
    pub allow_short: bool,
}

fn default_true() -> bool {
    true
}

/// What the checks need to know about the account and the symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskContext {
    /// Current position of the symbol.
    pub position: Decimal,
    /// Signed sum of the symbol's open and pending buys (positive).
    pub open_buys: Decimal,
    /// Signed sum of the symbol's open and pending sells (negative).
    pub open_sells: Decimal,
    /// Notional of all open and pending buys, all symbols.
    pub open_buy_notional: Decimal,
    /// Sum of `|position| * mark` over all symbols.
    pub gross_notional: Decimal,
    pub cash: Decimal,
    /// Reference price of the order, if any.
    pub price: Option<Decimal>,
    /// Taker fee rate of the symbol, in bps (for the cash check).
    pub taker_fee_bps: Decimal,
}

/// The pre-trade risk checks and the kill switch.
#[derive(Debug, Clone, Default)]
pub struct RiskManager {
    pub limits: RiskLimits,
    halted: bool,
    recent: VecDeque<Ts>,
}

impl RiskManager {
    pub fn new(limits: RiskLimits) -> Self {
        RiskManager {
            limits,
            halted: false,
            recent: VecDeque::new(),
        }
    }

    /// The mutable part (kill switch, recent order times), for checkpoints.
    pub fn state(&self) -> (bool, VecDeque<Ts>) {
        (self.halted, self.recent.clone())
    }

    /// Restore what [`RiskManager::state`] saved.
    pub fn restore(&mut self, (halted, recent): (bool, VecDeque<Ts>)) {
        self.halted = halted;
        self.recent = recent;
    }

    /// Kill switch: refuse every new order from now on.
    pub fn halt(&mut self) {
        self.halted = true;
    }

    /// Lift the kill switch.
    pub fn resume(&mut self) {
        self.halted = false;
    }

    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// Check one order at event time `ts`; on success the order counts towards
    /// the rate limit.
    ///
    /// # Errors
    /// The reason the order is refused.
    pub fn check(&mut self, ts: Ts, order: &Order, ctx: &RiskContext) -> Result<(), String> {
        let l = &self.limits;
        if self.halted {
            return Err("risk: trading halted (kill switch)".to_string());
        }
        if order.reduce_only {
            // It can only reduce a position (the venue caps its fills): the
            // limits bound what adds risk, and closing is never held back.
            return Ok(());
        }
        if let Some(max) = l.max_order_qty {
            if order.qty > max {
                return Err(format!(
                    "risk: order qty {} exceeds max_order_qty {max}",
                    order.qty
                ));
            }
        }
        while self
            .recent
            .front()
            .is_some_and(|t| *t <= ts - NANOS_PER_SEC)
        {
            self.recent.pop_front();
        }
        if let Some(max) = l.max_orders_per_sec {
            if self.recent.len() >= max as usize {
                return Err(format!(
                    "risk: more than max_orders_per_sec {max} in the last second"
                ));
            }
        }
        let signed = order.qty * order.side.sign();
        let open_same = match order.side {
            Side::Buy => ctx.open_buys,
            Side::Sell => ctx.open_sells,
        };
        let projected = ctx.position + open_same + signed;
        if let Some(max) = l.max_position {
            if projected.abs() > max {
                return Err(format!(
                    "risk: projected position {projected} exceeds max_position {max}"
                ));
            }
        }
        let need_price =
            l.max_gross_notional.is_some() || (l.check_cash && order.side == Side::Buy);
        let price = match (ctx.price, need_price) {
            (Some(p), _) => p,
            (None, false) => Decimal::ZERO,
            (None, true) => return Err("risk: no price to check the order against".to_string()),
        };
        let notional = order.qty * price;
        if let Some(max) = l.max_gross_notional {
            if ctx.gross_notional + notional > max {
                return Err(format!(
                    "risk: gross notional {} would exceed max_gross_notional {max}",
                    ctx.gross_notional + notional
                ));
            }
        }
        if l.check_cash && order.side == Side::Buy {
            let cost = notional * (Decimal::ONE + ctx.taker_fee_bps / Decimal::from(10_000));
            if cost + ctx.open_buy_notional > ctx.cash {
                return Err(format!(
                    "risk: buying power {} is less than {} (order) + {} (open buys)",
                    ctx.cash, cost, ctx.open_buy_notional
                ));
            }
        }
        if !l.allow_short && order.side == Side::Sell && projected < Decimal::ZERO {
            return Err(format!(
                "risk: selling {} with position {} and {} open sells would go short (allow_short = false)",
                order.qty, ctx.position, -ctx.open_sells
            ));
        }
        self.recent.push_back(ts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RiskContext {
        RiskContext {
            position: Decimal::ZERO,
            open_buys: Decimal::ZERO,
            open_sells: Decimal::ZERO,
            open_buy_notional: Decimal::ZERO,
            gross_notional: Decimal::ZERO,
            cash: Decimal::from(1000),
            price: Some(Decimal::from(100)),
            taker_fee_bps: Decimal::ZERO,
        }
    }

    fn buy(q: i64) -> Order {
        Order::market("o", "X", Side::Buy, Decimal::from(q))
    }

    #[test]
    fn each_limit_has_a_reason() {
        let mut r = RiskManager::new(RiskLimits {
            max_position: Some(Decimal::from(8)),
            max_gross_notional: Some(Decimal::from(700)),
            max_order_qty: Some(Decimal::from(9)),
            max_orders_per_sec: Some(2),
            check_cash: true,
            allow_short: false,
        });
        assert!(r
            .check(0, &buy(10), &ctx())
            .unwrap_err()
            .contains("max_order_qty"));
        assert!(r
            .check(0, &buy(9), &ctx())
            .unwrap_err()
            .contains("max_position"));
        // 8 * 100 = 800 > 700.
        assert!(r
            .check(0, &buy(8), &ctx())
            .unwrap_err()
            .contains("max_gross_notional"));
        let sell = Order::market("o", "X", Side::Sell, Decimal::ONE);
        assert!(r.check(0, &sell, &ctx()).unwrap_err().contains("short"));
        r.limits.max_gross_notional = None;
        // Cash 1000 < 6 * 100 + open buys 500.
        let c = RiskContext {
            open_buy_notional: Decimal::from(500),
            ..ctx()
        };
        assert!(r
            .check(0, &buy(6), &c)
            .unwrap_err()
            .contains("buying power"));
        // Rate: two pass within one second, the third fails, and passes a second later.
        assert!(r.check(0, &buy(1), &ctx()).is_ok());
        assert!(r.check(10, &buy(1), &ctx()).is_ok());
        assert!(r
            .check(20, &buy(1), &ctx())
            .unwrap_err()
            .contains("max_orders_per_sec"));
        assert!(r.check(NANOS_PER_SEC, &buy(1), &ctx()).is_ok());
        r.halt();
        assert!(r
            .check(5 * NANOS_PER_SEC, &buy(1), &ctx())
            .unwrap_err()
            .contains("halted"));
        r.resume();
        assert!(r.check(5 * NANOS_PER_SEC, &buy(1), &ctx()).is_ok());
    }
}
