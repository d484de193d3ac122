//! Domain types: the validated facts the engine consumes and the events it emits.
//!
//! Everything past the [`crate::wire`] boundary speaks in these types. Prices,
//! quantities and money are exact [`Decimal`]s; timestamps are [`Ts`], integer
//! nanoseconds since the Unix epoch in event time.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub mod output;
pub use output::*;

/// Event time: nanoseconds since the Unix epoch (UTC).
pub type Ts = i64;

/// A symbol or topic name as an event carries it: a string kept inline up
/// to 24 bytes (`compact_str`), so decoding an event makes no heap block for
/// its symbol or topic. It derefs to `&str`, compares with `&str` and
/// `String`, and serializes as a string.
pub type Name = compact_str::CompactString;

/// Nanoseconds per millisecond.
pub const NANOS_PER_MILLI: i64 = 1_000_000;
/// Nanoseconds per second.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The one place a [`Decimal`] becomes an `f64` on a hot path (a tick's
/// price for the indicators, the report's chart): the same value as
/// `Decimal::to_f64` (rust_decimal's `as_f64`: integral part plus fraction,
/// rounded at the scale), computed in `u64` when the mantissa fits, which is
/// every price and size a feed sends, instead of `u128` division.
#[inline]
pub fn f64_of(d: Decimal) -> f64 {
    const POW10_U64: [u64; 20] = {
        let mut t = [1u64; 20];
        let mut i = 1;
        while i < 20 {
            t[i] = t[i - 1] * 10;
            i += 1;
        }
        t
    };
    const POW10_F64: [f64; 20] = {
        let mut t = [1f64; 20];
        let mut i = 1;
        while i < 20 {
            t[i] = POW10_U64[i] as f64;
            i += 1;
        }
        t
    };
    let m = d.mantissa().unsigned_abs();
    let scale = d.scale();
    if scale > 19 || m > u128::from(u64::MAX) {
        return rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap_or(f64::NAN);
    }
    let m = m as u64;
    if scale == 0 {
        // A whole number: the one rounding of `u64` to `f64`, as `to_f64`'s
        // (which makes a negative zero 0.0).
        return if d.is_sign_negative() && m != 0 {
            -(m as f64)
        } else {
            m as f64
        };
    }
    let precision = POW10_U64[scale as usize];
    let integral = (m / precision) as f64;
    let frac = (m % precision) as f64 / precision as f64;
    if frac == 0.0 {
        return if d.is_sign_negative() {
            -integral
        } else {
            integral
        };
    }
    // Every power of ten up to 10^22 is exact in f64, as `powi` makes it.
    let round_to = POW10_F64[scale as usize];
    let rounded = ((integral + frac) * round_to).round() / round_to;
    if d.is_sign_negative() {
        -rounded
    } else {
        rounded
    }
}

/// `a.cmp(&b)`, without bringing the two to one scale when they already
/// share it (two prices of one instrument, a bar's high and a trade).
#[inline]
pub fn dec_cmp(a: Decimal, b: Decimal) -> std::cmp::Ordering {
    if a.scale() == b.scale() {
        a.mantissa().cmp(&b.mantissa())
    } else {
        a.cmp(&b)
    }
}

/// `a.max(b)` ([`Decimal::max`]: `b` only when greater, so of two equal
/// values of different scales `a` stays).
#[inline]
pub fn dec_max(a: Decimal, b: Decimal) -> Decimal {
    if dec_cmp(a, b).is_lt() {
        b
    } else {
        a
    }
}

/// `a.min(b)` ([`Decimal::min`]: `b` only when smaller).
#[inline]
pub fn dec_min(a: Decimal, b: Decimal) -> Decimal {
    if dec_cmp(a, b).is_gt() {
        b
    } else {
        a
    }
}

/// `d > 0`, from its sign alone (a comparison of two decimals first brings
/// them to one scale).
#[inline]
pub fn is_positive(d: Decimal) -> bool {
    !d.is_zero() && d.is_sign_positive()
}

/// `d < 0`, from its sign alone (a negative zero is zero).
#[inline]
pub fn is_negative(d: Decimal) -> bool {
    !d.is_zero() && d.is_sign_negative()
}

/// A trade tick from `live_prices`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub symbol: Name,
    pub ts: Ts,
    pub price: Decimal,
    pub size: Decimal,
    pub bid: Option<Decimal>,
    pub ask: Option<Decimal>,
}

/// A news-sentiment reading from `news_sentiment`: `score` lies in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Sentiment {
    pub symbol: Name,
    pub ts: Ts,
    pub score: f64,
    pub source: String,
    pub headline: Option<String>,
}

/// One price level of a depth message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub price: Decimal,
    pub size: Decimal,
}

/// A depth message from `order_book`: a full snapshot or an incremental update
/// (a level with size zero removes that level).
#[derive(Debug, Clone, PartialEq)]
pub struct BookUpdate {
    pub symbol: Name,
    pub ts: Ts,
    pub snapshot: bool,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

/// What the engine consumes: one validated input message.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketEvent {
    Tick(Tick),
    Sentiment(Sentiment),
    Book(BookUpdate),
}

impl MarketEvent {
    pub fn symbol(&self) -> &str {
        match self {
            MarketEvent::Tick(t) => &t.symbol,
            MarketEvent::Sentiment(s) => &s.symbol,
            MarketEvent::Book(b) => &b.symbol,
        }
    }

    pub fn ts(&self) -> Ts {
        match self {
            MarketEvent::Tick(t) => t.ts,
            MarketEvent::Sentiment(s) => s.ts,
            MarketEvent::Book(b) => b.ts,
        }
    }
}

/// Where an input message came from: the basis of every deterministic output id.
///
/// For Kafka this is topic, partition and offset; for a file, the file's stem,
/// partition 0 and the record number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub topic: Name,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.topic, self.partition, self.offset)
    }
}

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// +1 for a buy, -1 for a sell.
    pub fn sign(self) -> Decimal {
        match self {
            Side::Buy => Decimal::ONE,
            Side::Sell => Decimal::NEGATIVE_ONE,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::prelude::ToPrimitive;

    proptest! {
        /// `f64_of` is bit-for-bit `Decimal::to_f64`, over every scale and
        /// sign and mantissas on both sides of the u64 fast path.
        #[test]
        fn f64_of_equals_to_f64(m in any::<i64>(), wide in any::<i128>(), scale in 0u32..=28, use_wide in any::<bool>()) {
            let m = if use_wide { wide >> 32 } else { i128::from(m) };
            let d = Decimal::from_i128_with_scale(m, scale);
            prop_assert_eq!(f64_of(d).to_bits(), d.to_f64().unwrap().to_bits());
        }
    }

    #[test]
    fn f64_of_prices() {
        for s in [
            "0",
            "-0.00",
            "101.37",
            "0.00000001",
            "-42.5",
            "99999999.99999999",
            "1e-28",
            "-0",
            "274",
            "-18446744073709551615",
        ] {
            let d: Decimal = s.parse().or_else(|_| Decimal::from_scientific(s)).unwrap();
            assert_eq!(f64_of(d).to_bits(), d.to_f64().unwrap().to_bits(), "{s}");
        }
        // A negative zero of scale 0, which parsing "-0" may not make.
        let z = Decimal::from_parts(0, 0, 0, true, 0);
        assert_eq!(f64_of(z).to_bits(), z.to_f64().unwrap().to_bits());
    }

    proptest! {
        /// The same-scale shortcut orders as `Decimal`'s own comparison, and
        /// `dec_max` / `dec_min` keep the operand `Decimal::max` / `min` keep
        /// (bit for bit: of equal values, the scale matters).
        #[test]
        fn dec_cmp_equals_decimal_cmp(a in any::<i64>(), b in any::<i64>(), sa in 0u32..=28, sb in 0u32..=28, same in any::<bool>(), zeros in any::<bool>()) {
            let sb = if same { sa } else { sb };
            let (a, b) = if zeros { (a % 3, b % 3) } else { (a, b) };
            let x = Decimal::new(a, sa);
            let y = Decimal::new(b, sb);
            prop_assert_eq!(dec_cmp(x, y), x.cmp(&y));
            prop_assert_eq!(dec_max(x, y).serialize(), x.max(y).serialize());
            prop_assert_eq!(dec_min(x, y).serialize(), x.min(y).serialize());
        }
    }

    #[test]
    fn sign_checks_equal_comparisons_with_zero() {
        for s in ["0", "-0", "0.000", "-0.000", "1", "-1", "0.01", "-0.01"] {
            let d: Decimal = s.parse().unwrap();
            assert_eq!(is_positive(d), d > Decimal::ZERO, "{s}");
            assert_eq!(is_negative(d), d < Decimal::ZERO, "{s}");
        }
        let z = Decimal::from_parts(0, 0, 0, true, 3);
        assert!(!is_positive(z) && !is_negative(z));
    }
}
