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
    let m = d.mantissa().unsigned_abs();
    let scale = d.scale();
    if scale == 0 || scale > 19 || m > u128::from(u64::MAX) {
        return rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap_or(f64::NAN);
    }
    let m = m as u64;
    let precision = 10u64.pow(scale);
    let integral = (m / precision) as f64;
    let frac = (m % precision) as f64 / precision as f64;
    if frac == 0.0 {
        return if d.is_sign_negative() {
            -integral
        } else {
            integral
        };
    }
    let round_to = 10f64.powi(scale as i32);
    let rounded = ((integral + frac) * round_to).round() / round_to;
    if d.is_sign_negative() {
        -rounded
    } else {
        rounded
    }
}

/// A trade tick from `live_prices`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub symbol: String,
    pub ts: Ts,
    pub price: Decimal,
    pub size: Decimal,
    pub bid: Option<Decimal>,
    pub ask: Option<Decimal>,
}

/// A news-sentiment reading from `news_sentiment`: `score` lies in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Sentiment {
    pub symbol: String,
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
    pub symbol: String,
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
    pub topic: String,
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
        ] {
            let d: Decimal = s.parse().or_else(|_| Decimal::from_scientific(s)).unwrap();
            assert_eq!(f64_of(d).to_bits(), d.to_f64().unwrap().to_bits(), "{s}");
        }
    }
}
