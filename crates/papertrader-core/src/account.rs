//! The paper account of one strategy: cash, positions, average cost, realized and
//! unrealized P&L, fees, equity and drawdown, all exact.
//!
//! Accounting identity, held after every fill and mark (tested):
//! `equity = starting_cash + realized + unrealized - fees`, where
//! `equity = cash + sum(position * last_price)`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::domain::Side;

/// One symbol's position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Signed quantity: positive long, negative short.
    pub qty: Decimal,
    /// Average entry price of the open quantity (zero when flat).
    pub avg_cost: Decimal,
    /// P&L realized by closing quantity, before fees.
    pub realized: Decimal,
    /// Fees paid on this symbol.
    pub fees: Decimal,
    /// Last price seen, used to mark the position.
    pub last_price: Decimal,
    pub fills: u64,
}

impl Position {
    /// Unrealized P&L at the last price.
    pub fn unrealized(&self) -> Decimal {
        (self.last_price - self.avg_cost) * self.qty
    }

    pub fn market_value(&self) -> Decimal {
        self.qty * self.last_price
    }
}

/// A strategy's paper account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub starting_cash: Decimal,
    pub cash: Decimal,
    pub positions: BTreeMap<String, Position>,
    /// Highest equity seen.
    pub peak_equity: Decimal,
    /// Largest drawdown seen, as a fraction of the peak (0.1 = 10%).
    pub max_drawdown: Decimal,
    /// Prices at which a mark leaves the peak and the drawdown as they are
    /// (a cache, not state: not saved, not compared).
    #[serde(skip)]
    band: MarkBand,
}

/// The prices of an account's one position at which its equity lies strictly
/// between `peak * (1 - max_drawdown)` and the peak: a mark there changes
/// neither, so [`Account::mark`] need not sum the equity in `Decimal`. The
/// band is worked out in `f64` and narrowed by a margin (1e-9 of the sizes
/// involved) far wider than `f64`'s error, so a price inside it is inside the
/// exact band too; a price near an edge takes the exact path. It holds while
/// cash, quantity, peak and largest drawdown are bit for bit those it was
/// worked out from and the account has no other open position.
#[derive(Debug, Clone, Default)]
struct MarkBand(Option<Band>);

#[derive(Debug, Clone)]
struct Band {
    key: [[u8; 16]; 4],
    lo: f64,
    hi: f64,
}

impl PartialEq for MarkBand {
    /// A cache: two accounts with the same state are equal whatever it holds.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

fn band_key(cash: Decimal, qty: Decimal, peak: Decimal, max_dd: Decimal) -> [[u8; 16]; 4] {
    [
        cash.serialize(),
        qty.serialize(),
        peak.serialize(),
        max_dd.serialize(),
    ]
}

impl Band {
    /// The band of a position of `qty` with `cash` beside it, or `None`
    /// when there is none to speak of (no peak above zero, no drawdown yet).
    fn new(cash: Decimal, qty: Decimal, peak: Decimal, max_dd: Decimal) -> Option<Band> {
        if !crate::domain::is_positive(peak) || !crate::domain::is_positive(max_dd) || qty.is_zero()
        {
            return None;
        }
        let f = crate::domain::f64_of;
        let (cash_f, qty_f, peak_f) = (f(cash), f(qty), f(peak));
        let floor_f = peak_f - f(max_dd) * peak_f;
        // equity = cash + qty * price, so the equity band maps to prices.
        let (a, b) = ((floor_f - cash_f) / qty_f, (peak_f - cash_f) / qty_f);
        let (lo, hi) = if qty_f > 0.0 { (a, b) } else { (b, a) };
        let margin = 1e-9
            * ((floor_f.abs() + peak_f.abs() + cash_f.abs()) / qty_f.abs() + lo.abs() + hi.abs());
        let (lo, hi) = (lo + margin, hi - margin);
        (lo.is_finite() && hi.is_finite() && lo < hi).then(|| Band {
            key: band_key(cash, qty, peak, max_dd),
            lo,
            hi,
        })
    }
}

impl Account {
    pub fn new(starting_cash: Decimal) -> Self {
        Account {
            starting_cash,
            cash: starting_cash,
            positions: BTreeMap::new(),
            peak_equity: starting_cash,
            max_drawdown: Decimal::ZERO,
            band: MarkBand::default(),
        }
    }

    pub fn position(&self, symbol: &str) -> Decimal {
        self.positions.get(symbol).map_or(Decimal::ZERO, |p| p.qty)
    }

    /// Mark a symbol at a new price and update the drawdown.
    ///
    /// Equity moves only when a held position's price changes, so a flat
    /// symbol, or an unchanged price, leaves the drawdown as it was (every
    /// other change of equity, a fill, updates it itself).
    pub fn mark(&mut self, symbol: &str, price: Decimal) {
        let p = match self.positions.get_mut(symbol) {
            Some(p) => p,
            None => self.positions.entry(symbol.to_string()).or_default(),
        };
        let moved = !p.qty.is_zero() && crate::domain::dec_cmp(p.last_price, price).is_ne();
        p.last_price = price;
        if !moved {
            return;
        }
        let qty = p.qty;
        // A flat position adds nothing to the equity, whatever its price:
        // the band holds while this is the only open one.
        let single = self.positions.values().filter(|p| !p.qty.is_zero()).count() == 1;
        if single {
            if let Some(b) = &self.band.0 {
                let x = crate::domain::f64_of(price);
                if b.lo < x
                    && x < b.hi
                    && b.key == band_key(self.cash, qty, self.peak_equity, self.max_drawdown)
                {
                    return;
                }
            }
        }
        let before = (self.peak_equity, self.max_drawdown);
        self.update_drawdown();
        // Worked out once the price is back inside: a mark that moved the
        // peak or the drawdown is likely followed by another.
        self.band.0 = if single && before == (self.peak_equity, self.max_drawdown) {
            Band::new(self.cash, qty, self.peak_equity, self.max_drawdown)
        } else {
            None
        };
    }

    /// Apply a fill: cash, position, average cost, realized P&L and fees.
    pub fn apply_fill(
        &mut self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        fee: Decimal,
    ) {
        let p = self.positions.entry(symbol.to_string()).or_default();
        let signed = qty * side.sign();
        self.cash -= signed * price + fee;
        p.fees += fee;
        p.fills += 1;
        p.last_price = price;
        if p.qty.is_zero() || p.qty.is_sign_positive() == signed.is_sign_positive() {
            // Opening or adding: the average cost is the quantity-weighted mean.
            let new_qty = p.qty + signed;
            p.avg_cost = (p.avg_cost * p.qty.abs() + price * qty) / new_qty.abs();
            p.qty = new_qty;
        } else {
            // Reducing, closing or flipping.
            let closing = qty.min(p.qty.abs());
            let direction = if p.qty.is_sign_positive() {
                Decimal::ONE
            } else {
                Decimal::NEGATIVE_ONE
            };
            p.realized += (price - p.avg_cost) * closing * direction;
            p.qty += signed;
            if p.qty.is_zero() {
                p.avg_cost = Decimal::ZERO;
            } else if p.qty.is_sign_positive() != direction.is_sign_positive() {
                // Flipped: the remainder opened at this price.
                p.avg_cost = price;
            }
        }
        self.update_drawdown();
    }

    pub fn equity(&self) -> Decimal {
        self.cash
            + self
                .positions
                .values()
                .map(Position::market_value)
                .sum::<Decimal>()
    }

    pub fn realized(&self) -> Decimal {
        self.positions.values().map(|p| p.realized).sum()
    }

    pub fn unrealized(&self) -> Decimal {
        self.positions.values().map(Position::unrealized).sum()
    }

    pub fn fees(&self) -> Decimal {
        self.positions.values().map(|p| p.fees).sum()
    }

    /// Current drawdown from the peak, as a fraction of the peak.
    pub fn drawdown(&self) -> Decimal {
        drawdown(self.peak_equity, self.equity())
    }

    fn update_drawdown(&mut self) {
        let eq = self.equity();
        if eq >= self.peak_equity {
            // No drawdown at or above the peak.
            self.peak_equity = eq;
            return;
        }
        // (peak - eq) / peak <= max_drawdown needs no division: rounding is
        // monotone and max_drawdown is already rounded, so the rounded
        // drawdown cannot exceed it either.
        if self.peak_equity > Decimal::ZERO
            && self.peak_equity - eq <= self.max_drawdown * self.peak_equity
        {
            return;
        }
        let dd = drawdown(self.peak_equity, eq);
        if dd > self.max_drawdown {
            self.max_drawdown = dd;
        }
    }
}

fn drawdown(peak: Decimal, equity: Decimal) -> Decimal {
    if peak <= Decimal::ZERO || equity >= peak {
        Decimal::ZERO
    } else {
        ((peak - equity) / peak).round_dp(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::d;
    use proptest::prelude::*;

    proptest! {
        /// Marks through the band give the peak and the drawdown of marks
        /// that always sum the equity, bit for bit, whatever fills, second
        /// symbols and price paths (steps of a cent, so prices dwell near
        /// the band's edges) come between them.
        #[test]
        fn band_marks_equal_exact_marks(
            steps in proptest::collection::vec((0u8..20, -300i64..300, 1u32..40), 1..400),
            start in 5_000i64..20_000,
        ) {
            let mut fast = Account::new(d("100000"));
            let mut exact = Account::new(d("100000"));
            let mut cents = start;
            for (op, step, q) in steps {
                cents = (cents + step).max(1);
                let price = Decimal::new(cents, 2);
                match op {
                    0 | 1 => {
                        let side = if op == 0 { Side::Buy } else { Side::Sell };
                        let qty = Decimal::from(q);
                        fast.apply_fill("X", side, qty, price, Decimal::ONE);
                        exact.apply_fill("X", side, qty, price, Decimal::ONE);
                    }
                    2 => {
                        fast.mark("Y", price);
                        exact.mark("Y", price);
                    }
                    3 | 4 => {
                        // Y opens and goes flat again: a flat Y beside X
                        // leaves the band in use.
                        let side = if op == 3 { Side::Buy } else { Side::Sell };
                        fast.apply_fill("Y", side, Decimal::ONE, price, Decimal::ZERO);
                        exact.apply_fill("Y", side, Decimal::ONE, price, Decimal::ZERO);
                    }
                    _ => {
                        fast.mark("X", price);
                        exact.band.0 = None;
                        exact.mark("X", price);
                    }
                }
                prop_assert_eq!(fast.peak_equity.serialize(), exact.peak_equity.serialize());
                prop_assert_eq!(fast.max_drawdown.serialize(), exact.max_drawdown.serialize());
                prop_assert_eq!(&fast, &exact);
            }
        }
    }

    #[test]
    fn a_mark_inside_the_band_leaves_peak_and_drawdown() {
        let mut a = Account::new(d("10000"));
        // Long 10 at 100 (no fee): equity 10000 at 100.
        a.apply_fill("X", Side::Buy, d("10"), d("100"), d("0"));
        a.mark("X", d("90")); // equity 9900: drawdown 1%
        assert_eq!(a.max_drawdown, d("0.01"));
        a.mark("X", d("95")); // 9950: inside, and the band is worked out
        let b = a
            .band
            .0
            .clone()
            .expect("a band after a mark that changed nothing");
        // equity in (9900, 10000) <=> price in (90, 100), less the margin.
        assert!(b.lo > 90.0 && b.lo < 90.0 + 1e-5, "{}", b.lo);
        assert!(b.hi < 100.0 && b.hi > 100.0 - 1e-5, "{}", b.hi);
        a.mark("X", d("99.99"));
        assert_eq!((a.peak_equity, a.max_drawdown), (d("10000"), d("0.01")));
        a.mark("X", d("89")); // 9890: a new largest drawdown, 1.1%
        assert_eq!(a.max_drawdown, d("0.011"));
        a.mark("X", d("101")); // 10010: a new peak
        assert_eq!(a.peak_equity, d("10010"));
    }

    #[test]
    fn round_trip_worked_by_hand() {
        let mut a = Account::new(d("10000"));
        // Buy 10 @ 100, fee 1: cash 10000 - 1000 - 1 = 8999.
        a.apply_fill("X", Side::Buy, d("10"), d("100"), d("1"));
        assert_eq!(a.cash, d("8999"));
        assert_eq!(a.position("X"), d("10"));
        // Buy 10 more @ 110: avg (1000 + 1100) / 20 = 105.
        a.apply_fill("X", Side::Buy, d("10"), d("110"), d("1"));
        assert_eq!(a.positions["X"].avg_cost, d("105"));
        // Mark at 120: unrealized (120 - 105) * 20 = 300; equity 10000 + 300 - 2.
        a.mark("X", d("120"));
        assert_eq!(a.unrealized(), d("300"));
        assert_eq!(a.equity(), d("10298"));
        // Sell 15 @ 100: realized (100 - 105) * 15 = -75; 5 left at avg 105.
        a.apply_fill("X", Side::Sell, d("15"), d("100"), d("1"));
        assert_eq!(a.realized(), d("-75"));
        assert_eq!(a.position("X"), d("5"));
        assert_eq!(a.positions["X"].avg_cost, d("105"));
        // Equity 10298 at the peak; now 10000 - 75 + (100-105)*5 - 3 = 9897.
        assert_eq!(a.equity(), d("9897"));
        assert_eq!(
            a.max_drawdown,
            ((d("10298") - d("9897")) / d("10298")).round_dp(10)
        );
        // Sell 10 @ 90 flips to short 5 at 90: realized += (90 - 105) * 5 = -75.
        a.apply_fill("X", Side::Sell, d("10"), d("90"), d("0"));
        assert_eq!(a.realized(), d("-150"));
        assert_eq!(a.position("X"), d("-5"));
        assert_eq!(a.positions["X"].avg_cost, d("90"));
        // Buy 5 @ 80 closes the short: realized += (80 - 90) * -5 = +50.
        a.apply_fill("X", Side::Buy, d("5"), d("80"), d("0"));
        assert_eq!(a.realized(), d("-100"));
        assert!(a.position("X").is_zero());
        assert_eq!(a.cash, d("10000") - d("100") - d("3"));
    }

    proptest! {
        #[test]
        fn equity_identity_holds(fills in proptest::collection::vec((any::<bool>(), 1u32..50, 50u32..150, 0u32..3), 1..40)) {
            let mut a = Account::new(d("100000"));
            for (buy, q, p, f) in fills {
                let side = if buy { Side::Buy } else { Side::Sell };
                a.apply_fill("X", side, Decimal::from(q), Decimal::from(p), Decimal::from(f));
                let identity = a.starting_cash + a.realized() + a.unrealized() - a.fees();
                // Exact up to the rounding of the average cost (a repeating decimal
                // is cut at 28 digits).
                prop_assert!((a.equity() - identity).abs() < Decimal::new(1, 15), "{} vs {}", a.equity(), identity);
                prop_assert!(a.max_drawdown >= Decimal::ZERO && a.max_drawdown <= Decimal::ONE);
            }
        }
    }
}
