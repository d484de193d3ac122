//! papertrader: a Kafka-native paper-trading engine.
//!
//! See `ARCHITECTURE.md` for the modules and the flow of one event through them.
//! The core without I/O is the `papertrader-core` crate; its modules are
//! re-exported here under their own names (`papertrader::engine`, ...).

pub use papertrader_core::{
    account, analytics, bars, domain, engine, exits, expr, features, indicators, model, sim, stats,
    step, strategy, summary, wire,
};

pub mod alerts;
pub mod app;
pub mod backtest;
pub mod cli;
pub mod config;
pub mod csvdata;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod export;
pub mod filestream;
pub mod http;
pub mod init;
pub mod kafka;
pub mod merge;
pub mod monitor;
pub mod optimise;
pub mod paper;
pub mod price_bars;
pub mod publish;
pub mod replay;
pub mod report;
pub mod report_files;
pub mod report_html;
pub mod report_price;
pub mod sample;
pub mod sentiment;
pub mod sources;
pub mod spill;
pub mod state;
pub mod sweep;
pub mod sweep_dist;
pub mod sweep_task;
pub mod topicstream;
