//! papertrader's integration tests, compiled into one binary so that the test
//! build links the program (and the embedded tansu broker) once.
//!
//! Each module is one area; the shared harness (a real tansu broker on a
//! loopback port, plain rdkafka clients) is `tests/common`. `tests/soak.rs`
//! stays a binary of its own: it measures this process's memory, which other
//! tests running beside it would disturb.

#[path = "../common/mod.rs"]
mod common;

mod backtest;
mod backtest_publish;
mod broker_restart;
mod checkpoint;
mod cli;
mod crash;
mod custom_strategy;
mod dashboard;
mod dist_sweep;
mod engine_replay;
mod execution;
mod exits;
mod export;
mod expr_strategies;
mod fuzz_inputs;
mod indicators;
mod kcat_client;
mod metrics;
mod models;
mod notify;
mod order_book_e2e;
mod paper_e2e;
mod parity;
mod replay;
mod report_html;
mod restart_standalone;
mod scale_out;
mod sentiment;
mod sources;
mod sweep;
