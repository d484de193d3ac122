//! papertrader's core: everything that decides, and nothing that waits.
//!
//! Domain types, the JSON wire format, strategy files, streaming indicators,
//! model features, ONNX models, strategies, the simulated venue, paper
//! accounts and the engine. This crate depends on no Kafka client, async
//! runtime or HTTP stack: the engine consumes domain events and emits domain
//! events, and the root package `papertrader` wires it to Kafka, files and
//! HTTP. See `ARCHITECTURE.md`.

/// The names a closed set's values go by in files, on the wire and in
/// metrics: `as_str`, `Display` and comparison with a `&str` for each enum
/// listed; with a leading `deserialize;`, also `Deserialize` from those names,
/// refusing others with serde's "unknown variant `x`, expected ..." (which the
/// `config` crate's own enum error does not list).
#[macro_export]
macro_rules! closed_set {
    (deserialize; $($t:ty { $($v:ident => $name:literal),+ $(,)? })+) => {
        $crate::closed_set! { $($t { $($v => $name),+ })+ }
        $(
            impl<'de> ::serde::Deserialize<'de> for $t {
                fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    const NAMES: &[&str] = &[$($name),+];
                    let text = <String as ::serde::Deserialize>::deserialize(d)?;
                    match text.as_str() {
                        $($name => Ok(<$t>::$v),)+
                        _ => Err(<D::Error as ::serde::de::Error>::unknown_variant(&text, NAMES)),
                    }
                }
            }
        )+
    };
    ($($t:ty { $($v:ident => $name:literal),+ $(,)? })+) => {$(
        impl $t {
            /// The value as written in files and on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(<$t>::$v => $name,)+
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    )+};
}

pub mod account;
pub mod alerts;
pub mod analytics;
pub mod bars;
pub mod config;
pub mod domain;
pub mod engine;
pub mod exits;
pub mod expr;
pub mod features;
pub mod indicators;
pub mod model;
pub mod news;
pub mod sentiment;
pub mod sim;
pub mod stats;
pub mod step;
pub mod strategy;
pub mod summary;
pub mod wire;

/// Helpers of the unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use rust_decimal::Decimal;
    use std::str::FromStr;

    /// A decimal from its text (panics on a typo in a test).
    pub fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }
}
