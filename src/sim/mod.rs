//! The mock venue: order book and fill simulator (pure, synchronous, event time).
pub mod book;
pub mod order;
