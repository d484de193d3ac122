//! Fees of the simulated venue: who provided a fill's liquidity, and what the
//! fill costs. One small trait, as hftbacktest's `FeeModel`: the matching
//! engine asks the instrument's model for each fill's fee.

use rust_decimal::Decimal;

pub use crate::domain::Liquidity;

/// The fee of one fill.
pub trait FeeModel {
    /// Fee in quote currency of a fill of `qty` at `price`.
    fn fee(&self, qty: Decimal, price: Decimal, liquidity: Liquidity) -> Decimal;
}

/// Basis points of the notional, by liquidity, with a floor per fill:
/// `max(min_fee, qty * price * bps / 10_000)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpsFee {
    pub maker_bps: Decimal,
    pub taker_bps: Decimal,
    pub min_fee: Decimal,
}

impl FeeModel for BpsFee {
    fn fee(&self, qty: Decimal, price: Decimal, liquidity: Liquidity) -> Decimal {
        let bps = match liquidity {
            Liquidity::Maker => self.maker_bps,
            Liquidity::Taker => self.taker_bps,
        };
        (qty * price * bps / Decimal::from(10_000)).max(self.min_fee)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::d;

    #[test]
    fn bps_of_notional_by_liquidity_with_a_floor() {
        let m = BpsFee {
            maker_bps: d("1"),
            taker_bps: d("5"),
            min_fee: d("0.10"),
        };
        // 100 @ 50 = 5,000 notional: taker 5 bps = 2.50, maker 1 bp = 0.50.
        assert_eq!(m.fee(d("100"), d("50"), Liquidity::Taker), d("2.5"));
        assert_eq!(m.fee(d("100"), d("50"), Liquidity::Maker), d("0.5"));
        // 1 @ 50: 0.025 taker is under the floor.
        assert_eq!(m.fee(d("1"), d("50"), Liquidity::Taker), d("0.10"));
    }
}
