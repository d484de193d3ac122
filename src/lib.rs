//! papertrader: a Kafka-native paper-trading engine.
//!
//! See `ARCHITECTURE.md` for the modules and the flow of one event through them.

pub mod csvdata;
pub mod domain;
pub mod sample;
