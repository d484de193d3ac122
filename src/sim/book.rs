//! The per-symbol L2 order book, keyed by integer ticks, and the instrument
//! configuration (tick size, lot size, fees, synthesized book).
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

use crate::domain::{BookUpdate, Side};

/// Per-symbol instrument configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentConfig {
    /// Smallest price increment; every order price must be a multiple of it.
    pub tick_size: Decimal,
    /// Smallest quantity increment; every order quantity must be a multiple of it.
    pub lot_size: Decimal,
    /// Fee on passive (maker) fills, in basis points of the notional.
    #[serde(default)]
    pub maker_fee_bps: Decimal,
    /// Fee on aggressive (taker) fills, in basis points of the notional.
    #[serde(default)]
    pub taker_fee_bps: Decimal,
    /// Lowest fee charged per fill (applies when `fee_bps * notional` is smaller).
    #[serde(default)]
    pub min_fee: Decimal,
    /// The book synthesized around the last trade when no depth arrives.
    #[serde(default)]
    pub synth: SynthBook,
}

impl InstrumentConfig {
    /// A config with the given tick and lot sizes, no fees and the default synthesized book.
    pub fn new(tick_size: Decimal, lot_size: Decimal) -> Self {
        InstrumentConfig {
            tick_size,
            lot_size,
            maker_fee_bps: Decimal::ZERO,
            taker_fee_bps: Decimal::ZERO,
            min_fee: Decimal::ZERO,
            synth: SynthBook::default(),
        }
    }

    /// Check the values serde cannot: positive tick and lot sizes, fees and
    /// `min_fee` not negative, a synthesized book with `0 < decay <= 1`, a positive
    /// depth and spread.
    ///
    /// # Errors
    /// The first invalid field and why.
    pub fn validate(&self) -> Result<(), String> {
        let z = Decimal::ZERO;
        if self.tick_size <= z {
            return Err(format!("tick_size must be > 0, got {}", self.tick_size));
        }
        if self.lot_size <= z {
            return Err(format!("lot_size must be > 0, got {}", self.lot_size));
        }
        for (name, v) in [
            ("maker_fee_bps", self.maker_fee_bps),
            ("taker_fee_bps", self.taker_fee_bps),
            ("min_fee", self.min_fee),
        ] {
            if v < z {
                return Err(format!("{name} must be >= 0, got {v}"));
            }
        }
        let s = &self.synth;
        if s.decay <= z || s.decay > Decimal::ONE {
            return Err(format!("synth.decay must be in (0, 1], got {}", s.decay));
        }
        if s.depth <= z {
            return Err(format!("synth.depth must be > 0, got {}", s.depth));
        }
        match s.spread {
            Spread::Ticks(t) if t < 1 => Err(format!("synth.spread ticks must be >= 1, got {t}")),
            Spread::Bps(b) if b <= z => Err(format!("synth.spread bps must be > 0, got {b}")),
            _ => Ok(()),
        }
    }

    /// Fee of one fill: `max(min_fee, qty * price * bps / 10_000)`.
    pub fn fee(&self, qty: Decimal, price: Decimal, liquidity: super::order::Liquidity) -> Decimal {
        let bps = match liquidity {
            super::order::Liquidity::Maker => self.maker_fee_bps,
            super::order::Liquidity::Taker => self.taker_fee_bps,
        };
        (qty * price * bps / Decimal::from(10_000)).max(self.min_fee)
    }
}

/// Spread of the synthesized book, written `"2 ticks"` or `"3 bps"` (a string,
/// so that a config layer replaces the default's value instead of merging into it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spread {
    /// A fixed number of ticks (at least 1).
    Ticks(i64),
    /// Basis points of the last trade price, rounded up to whole ticks (at least 1).
    Bps(Decimal),
}

impl std::str::FromStr for Spread {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(|| format!("spread {s:?} has no unit: write \"2 ticks\" or \"3 bps\""))?;
        let (num, unit) = t.split_at(split);
        let num = num.trim();
        match unit {
            "tick" | "ticks" => num
                .parse()
                .map(Spread::Ticks)
                .map_err(|_| format!("spread {s:?}: ticks must be a whole number")),
            "bps" | "bp" => num
                .parse()
                .map(Spread::Bps)
                .map_err(|_| format!("spread {s:?}: bps must be a number")),
            _ => Err(format!(
                "spread {s:?} has unknown unit {unit:?}: write \"2 ticks\" or \"3 bps\""
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Spread {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The model of a book synthesized around the last trade (see the module docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthBook {
    /// Synthesize a book from trades while no depth message has arrived for the symbol.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Distance between best bid and best ask.
    #[serde(default = "default_spread")]
    pub spread: Spread,
    /// Levels on each side.
    #[serde(default = "default_levels")]
    pub levels: u32,
    /// Size of the best level on each side.
    #[serde(default = "default_depth")]
    pub depth: Decimal,
    /// Ratio of each level's size to the previous one's (0 < decay <= 1).
    #[serde(default = "default_decay")]
    pub decay: Decimal,
}

fn default_true() -> bool {
    true
}
fn default_spread() -> Spread {
    Spread::Ticks(2)
}
fn default_levels() -> u32 {
    5
}
fn default_depth() -> Decimal {
    Decimal::from(100)
}
fn default_decay() -> Decimal {
    Decimal::new(8, 1)
}

impl Default for SynthBook {
    fn default() -> Self {
        SynthBook {
            enabled: true,
            spread: default_spread(),
            levels: default_levels(),
            depth: default_depth(),
            decay: default_decay(),
        }
    }
}

/// Which way to snap a price that is off the tick grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snap {
    Down,
    Up,
}

/// Price -> ticks, or `None` when the price is not a multiple of `tick_size`.
pub fn to_ticks_exact(price: Decimal, tick_size: Decimal) -> Option<i64> {
    let q = price / tick_size;
    if q.fract().is_zero() {
        q.to_i64()
    } else {
        None
    }
}

/// Price -> ticks, snapping off-grid prices down or up.
pub fn to_ticks(price: Decimal, tick_size: Decimal, snap: Snap) -> i64 {
    let q = price / tick_size;
    let q = match snap {
        Snap::Down => q.floor(),
        Snap::Up => q.ceil(),
    };
    q.to_i64().unwrap_or(if q.is_sign_negative() {
        i64::MIN
    } else {
        i64::MAX
    })
}

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

    /// Whether best bid >= best ask (never true after any update; tested).
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
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

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
