//! The per-symbol L2 order book, keyed by integer ticks (the instrument and the
//! synthesized book's model: [`super::instrument`]).
//!
//! Prices are `i64` ticks inside the book (`price = ticks * tick_size`); `Decimal`
//! prices appear only at the edges ([`Book::apply`] and the accessors that return
//! prices). Sizes are `Decimal`.
//!
//! # Updates
//! - A snapshot replaces both sides; an incremental update sets each listed level,
//!   and a level with size zero removes it.
//! - Prices off the tick grid are snapped conservatively: bids down, asks up
//!   (sizes of levels that snap to the same tick are added in a snapshot, and the
//!   last one wins in an incremental update).
//! - **Never crossed.** Levels are applied in message order, bids first, then asks;
//!   setting a bid at `b` removes every ask at `<= b`, setting an ask at `a` removes
//!   every bid at `>= a`. The newest level wins: the crossed opposite levels are
//!   taken to be stale.
//!
//! # Our own fills
//! The matching engine removes the quantity our orders take from the levels
//! ([`Book::take`]), so that liquidity is gone until the next update of that level
//! (or the next snapshot) restores it: a large order cannot fill twice at the same
//! level.
//!
//! # Synthesized book (a model)
//! When a symbol has trades but no depth messages, [`Book::synthesize`] builds a
//! book around the last trade price `p` (in ticks) from [`SynthBook`]: with a spread
//! of `s` ticks (at least 1; from `spread = "X bps"` it is
//! `ceil(p * bps / 10_000)` ticks), the best bid is `p - floor(s / 2)` and the best
//! ask is `best bid + s`; `levels` levels on each side, one tick apart, level `i`
//! (from 0) holding `depth * decay^i`, rounded down to the lot size (empty levels
//! are left out). Each trade rebuilds it after the trade has been matched against
//! resting orders; a rebuild does not move resting orders' queue positions.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use super::instrument::{to_ticks, to_ticks_exact, InstrumentConfig, Snap, Spread, SynthBook};
use crate::domain::{BookUpdate, Side};

/// One symbol's L2 book.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Book {
    tick_size: Decimal,
    /// Bid levels: ticks -> size (best = highest).
    bids: BTreeMap<i64, Decimal>,
    /// Ask levels: ticks -> size (best = lowest).
    asks: BTreeMap<i64, Decimal>,
    /// Whether a depth message has ever been applied (then no synthesizing).
    observed: bool,
}

impl Book {
    pub fn new(tick_size: Decimal) -> Self {
        Book {
            tick_size,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            observed: false,
        }
    }

    pub fn tick_size(&self) -> Decimal {
        self.tick_size
    }

    /// Ticks -> price.
    pub fn price(&self, ticks: i64) -> Decimal {
        Decimal::from(ticks) * self.tick_size
    }

    /// Whether any depth message has been applied.
    pub fn observed(&self) -> bool {
        self.observed
    }

    /// Apply a snapshot or an incremental update (see the module docs).
    pub fn apply(&mut self, u: &BookUpdate) {
        self.observed = true;
        if u.snapshot {
            self.bids.clear();
            self.asks.clear();
        }
        for l in &u.bids {
            let t = to_ticks(l.price, self.tick_size, Snap::Down);
            let size = if u.snapshot {
                self.bids.get(&t).copied().unwrap_or_default() + l.size
            } else {
                l.size
            };
            self.set(Side::Buy, t, size);
        }
        for l in &u.asks {
            let t = to_ticks(l.price, self.tick_size, Snap::Up);
            let size = if u.snapshot {
                self.asks.get(&t).copied().unwrap_or_default() + l.size
            } else {
                l.size
            };
            self.set(Side::Sell, t, size);
        }
    }

    /// Set one level (size <= 0 removes it) and remove the crossed opposite levels.
    pub fn set(&mut self, side: Side, ticks: i64, size: Decimal) {
        let (own, other) = match side {
            Side::Buy => (&mut self.bids, &mut self.asks),
            Side::Sell => (&mut self.asks, &mut self.bids),
        };
        if size <= Decimal::ZERO {
            own.remove(&ticks);
            return;
        }
        own.insert(ticks, size);
        match side {
            // Remove asks at or below the new bid.
            Side::Buy => {
                let keep = other.split_off(&(ticks.saturating_add(1)));
                *other = keep;
            }
            // Remove bids at or above the new ask.
            Side::Sell => {
                other.split_off(&ticks);
            }
        }
    }

    /// Rebuild the book around a trade price from the [`SynthBook`] model.
    pub fn synthesize(&mut self, last: Decimal, synth: &SynthBook, lot_size: Decimal) {
        self.bids.clear();
        self.asks.clear();
        let p = to_ticks(last, self.tick_size, Snap::Down);
        let s = match synth.spread {
            Spread::Ticks(t) => t.max(1),
            Spread::Bps(bps) => (last * bps / Decimal::from(10_000) / self.tick_size)
                .ceil()
                .to_i64()
                .unwrap_or(1)
                .max(1),
        };
        let best_bid = p - s / 2;
        let best_ask = best_bid + s;
        let mut size = synth.depth;
        for i in 0..i64::from(synth.levels) {
            let lots = if lot_size > Decimal::ZERO {
                (size / lot_size).floor() * lot_size
            } else {
                size
            };
            if lots > Decimal::ZERO {
                if best_bid - i > 0 {
                    self.bids.insert(best_bid - i, lots);
                }
                self.asks.insert(best_ask + i, lots);
            }
            size *= synth.decay;
        }
    }

    /// The book of `fill = "last_price"`: one level each side, `slip` ticks
    /// from the last trade (snapped outwards to the grid), holding `depth`:
    /// with no slippage bid and ask are both the last price.
    pub fn at_last_price(&mut self, last: Decimal, slip: i64, depth: Decimal) {
        self.bids.clear();
        self.asks.clear();
        let bid = to_ticks(last, self.tick_size, Snap::Down) - slip;
        let ask = to_ticks(last, self.tick_size, Snap::Up) + slip;
        if bid > 0 {
            self.bids.insert(bid, depth);
        }
        self.asks.insert(ask, depth);
    }

    /// The book of `fill = "last_trade"`: the last trade's price (`slip`
    /// ticks out) holding its `size` each side, and one tick further out a
    /// level holding `rest`.
    pub fn at_last_trade(&mut self, last: Decimal, slip: i64, size: Decimal, rest: Decimal) {
        self.bids.clear();
        self.asks.clear();
        let bid = to_ticks(last, self.tick_size, Snap::Down) - slip;
        let ask = to_ticks(last, self.tick_size, Snap::Up) + slip;
        for (t, s) in [(bid, size), (bid - 1, rest)] {
            if t > 0 && s > Decimal::ZERO {
                self.bids.insert(t, s);
            }
        }
        for (t, s) in [(ask, size), (ask + 1, rest)] {
            if s > Decimal::ZERO {
                self.asks.insert(t, s);
            }
        }
    }

    /// Best bid as (ticks, size).
    pub fn best_bid(&self) -> Option<(i64, Decimal)> {
        self.bids.iter().next_back().map(|(t, s)| (*t, *s))
    }

    /// Best ask as (ticks, size).
    pub fn best_ask(&self) -> Option<(i64, Decimal)> {
        self.asks.iter().next().map(|(t, s)| (*t, *s))
    }

    /// Best level on the side an order of `side` would take from (asks for a buy).
    pub fn best_opposite(&self, side: Side) -> Option<(i64, Decimal)> {
        match side {
            Side::Buy => self.best_ask(),
            Side::Sell => self.best_bid(),
        }
    }

    /// Size at a level of one side (zero when absent).
    pub fn size_at(&self, side: Side, ticks: i64) -> Decimal {
        let m = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        m.get(&ticks).copied().unwrap_or_default()
    }

    /// The levels an order of `side` can take, best first, up to `limit` ticks
    /// (inclusive) when given.
    pub fn takeable(
        &self,
        side: Side,
        limit: Option<i64>,
    ) -> Box<dyn Iterator<Item = (i64, Decimal)> + '_> {
        match side {
            Side::Buy => Box::new(
                self.asks
                    .iter()
                    .take_while(move |(t, _)| limit.is_none_or(|l| **t <= l))
                    .map(|(t, s)| (*t, *s)),
            ),
            Side::Sell => Box::new(
                self.bids
                    .iter()
                    .rev()
                    .take_while(move |(t, _)| limit.is_none_or(|l| **t >= l))
                    .map(|(t, s)| (*t, *s)),
            ),
        }
    }

    /// Remove `qty` taken by our order of `side` from the opposite level `ticks`.
    pub fn take(&mut self, side: Side, ticks: i64, qty: Decimal) {
        let m = match side {
            Side::Buy => &mut self.asks,
            Side::Sell => &mut self.bids,
        };
        if let Some(s) = m.get_mut(&ticks) {
            *s -= qty;
            if *s <= Decimal::ZERO {
                m.remove(&ticks);
            }
        }
    }

    /// Whether best bid >= best ask: never true of an observed or
    /// synthesized book (tested); the book of `fill = "last_price"` without
    /// slippage is locked (bid == ask) by design.
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some((b, _)), Some((a, _))) if b >= a)
    }

    /// Bid levels, best first, as (ticks, size).
    pub fn bids(&self) -> impl Iterator<Item = (i64, Decimal)> + '_ {
        self.bids.iter().rev().map(|(t, s)| (*t, *s))
    }

    /// Ask levels, best first, as (ticks, size).
    pub fn asks(&self) -> impl Iterator<Item = (i64, Decimal)> + '_ {
        self.asks.iter().map(|(t, s)| (*t, *s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Level;
    use crate::test_util::d;
    use proptest::prelude::*;

    fn upd(snapshot: bool, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> BookUpdate {
        crate::sim::tests::book(0, snapshot, bids, asks)
    }

    #[test]
    fn snapshot_then_updates() {
        let mut b = Book::new(d("0.01"));
        b.apply(&upd(
            true,
            &[("99.99", "5"), ("99.98", "7")],
            &[("100.01", "3")],
        ));
        assert_eq!(b.best_bid(), Some((9999, d("5"))));
        assert_eq!(b.best_ask(), Some((10001, d("3"))));
        // Size 0 removes the best bid.
        b.apply(&upd(false, &[("99.99", "0")], &[]));
        assert_eq!(b.best_bid(), Some((9998, d("7"))));
        // A new ask at 99.98 crosses the bid at 99.98: that bid is removed.
        b.apply(&upd(false, &[], &[("99.98", "1")]));
        assert_eq!(b.best_bid(), None);
        assert_eq!(b.best_ask(), Some((9998, d("1"))));
        assert!(!b.is_crossed());
    }

    #[test]
    fn off_grid_prices_snap_conservatively() {
        let mut b = Book::new(d("0.5"));
        b.apply(&upd(true, &[("99.7", "1")], &[("100.2", "1")]));
        assert_eq!(b.best_bid().unwrap().0, 199); // 99.5
        assert_eq!(b.best_ask().unwrap().0, 201); // 100.5
    }

    #[test]
    fn synthesized_book_worked_by_hand() {
        // Last trade 100.00, tick 0.01 -> p = 10000 ticks; spread 4 ticks:
        // bid 10000 - 2 = 9998, ask 10002. Depth 100, decay 0.5, 3 levels:
        // sizes 100, 50, 25.
        let synth = SynthBook {
            enabled: true,
            spread: Spread::Ticks(4),
            levels: 3,
            depth: d("100"),
            decay: d("0.5"),
        };
        let mut b = Book::new(d("0.01"));
        b.synthesize(d("100"), &synth, d("1"));
        assert_eq!(
            b.bids().collect::<Vec<_>>(),
            vec![(9998, d("100")), (9997, d("50")), (9996, d("25"))]
        );
        assert_eq!(
            b.asks().collect::<Vec<_>>(),
            vec![(10002, d("100")), (10003, d("50")), (10004, d("25"))]
        );
        // 5 bps of 100 = 0.05 = 5 ticks: bid 10000 - 2, ask 9998 + 5.
        let synth = SynthBook {
            spread: Spread::Bps(d("5")),
            ..synth
        };
        b.synthesize(d("100"), &synth, d("1"));
        assert_eq!(b.best_bid().unwrap().0, 9998);
        assert_eq!(b.best_ask().unwrap().0, 10003);
    }

    #[test]
    fn instrument_config_denies_unknown_fields() {
        let ok: InstrumentConfig = toml::from_str(
            "tick_size = 0.01\nlot_size = 1\ntaker_fee_bps = 5\n[synth]\nspread = \"3 bps\"\nlevels = 2\n",
        )
        .unwrap();
        assert_eq!(ok.synth.spread, Spread::Bps(d("3")));
        assert_eq!("2 ticks".parse::<Spread>(), Ok(Spread::Ticks(2)));
        assert_eq!("1tick".parse::<Spread>(), Ok(Spread::Ticks(1)));
        assert!("2".parse::<Spread>().unwrap_err().contains("no unit"));
        assert!("2 pips"
            .parse::<Spread>()
            .unwrap_err()
            .contains("unknown unit"));
        assert!(
            toml::from_str::<InstrumentConfig>("tick_size = 0.01\nlot_size = 1\ntick = 1\n")
                .is_err()
        );
    }

    fn arb_update() -> impl Strategy<Value = BookUpdate> {
        let level = (1u32..60, 0u32..5).prop_map(|(p, s)| Level {
            price: Decimal::from(p),
            size: Decimal::from(s),
        });
        (
            any::<bool>(),
            proptest::collection::vec(level.clone(), 0..6),
            proptest::collection::vec(level, 0..6),
        )
            .prop_map(|(snapshot, bids, asks)| BookUpdate {
                symbol: "X".into(),
                ts: 0,
                snapshot,
                bids,
                asks,
            })
    }

    proptest! {
        #[test]
        fn never_crossed_after_any_updates(us in proptest::collection::vec(arb_update(), 1..30)) {
            let mut b = Book::new(Decimal::ONE);
            for u in &us {
                b.apply(u);
                prop_assert!(!b.is_crossed(), "{:?}", b);
                prop_assert!(b.bids().chain(b.asks()).all(|(_, s)| s > Decimal::ZERO));
            }
        }
    }
}
