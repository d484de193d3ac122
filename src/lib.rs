//! papertrader: a Kafka-native paper-trading engine.
//!
//! See `ARCHITECTURE.md` for the modules and the flow of one event through them.

pub mod account;
pub mod alerts;
pub mod app;
pub mod backtest;
pub mod bars;
pub mod config;
pub mod csvdata;
pub mod domain;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod engine;
pub mod features;
pub mod http;
pub mod indicators;
pub mod kafka;
pub mod merge;
pub mod model;
pub mod monitor;
pub mod paper;
pub mod publish;
pub mod replay;
pub mod report;
pub mod report_html;
pub mod sample;
pub mod sim;
pub mod state;
pub mod strategy;
pub mod summary;
pub mod sweep;
pub mod wire;
