//! When orders and cancels reach the venue: the latency model.
//!
//! The simulator asks the model, at submission time `ts`, for the event time at
//! which the request reaches the venue; until then the request is pending and the
//! book moves on without it. With a latency above zero an order therefore cannot
//! trade at the prices that prompted it.

use super::order::Order;
use crate::domain::Ts;

/// Entry latency of orders and cancels, in event time.
pub trait LatencyModel: Send {
    /// When an order submitted at `ts` reaches the venue (`>= ts`).
    fn entry(&mut self, ts: Ts, order: &Order) -> Ts;
    /// When a cancel of `order_id` sent at `ts` reaches the venue (`>= ts`).
    fn cancel(&mut self, ts: Ts, order_id: &str) -> Ts;
}

/// The same delay for every order and cancel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConstantLatency {
    /// Delay in nanoseconds (negative values count as zero).
    pub nanos: i64,
}

impl ConstantLatency {
    pub fn new(nanos: i64) -> Self {
        ConstantLatency { nanos }
    }
}

impl LatencyModel for ConstantLatency {
    fn entry(&mut self, ts: Ts, _order: &Order) -> Ts {
        ts.saturating_add(self.nanos.max(0))
    }

    fn cancel(&mut self, ts: Ts, _order_id: &str) -> Ts {
        ts.saturating_add(self.nanos.max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Side;
    use rust_decimal::Decimal;

    #[test]
    fn constant_latency_adds_the_delay() {
        let mut l = ConstantLatency::new(5);
        let o = Order::market("o", "X", Side::Buy, Decimal::ONE);
        assert_eq!(l.entry(100, &o), 105);
        assert_eq!(l.cancel(100, "o"), 105);
        assert_eq!(ConstantLatency::new(-3).entry(100, &o), 100);
    }
}
