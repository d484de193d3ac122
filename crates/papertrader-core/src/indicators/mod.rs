//! Streaming technical indicators.
//!
//! This module owns the per-symbol statistics that strategies read: each
//! indicator is a small state machine fed one observation at a time, O(1)
//! (amortized) per update and allocation-free in steady state (ring buffers
//! are sized once, or grow only while a time window fills). Indicator state
//! derives `Serialize`/`Deserialize` so that it can be checkpointed and
//! restored mid-stream. (Through JSON the restore is only bit-exact if
//! serde_json's `float_roundtrip` feature is on: without it, serde_json
//! parses some f64s back 1 ulp off.)
//!
//! # Conventions
//!
//! - Values are `f64`: these are statistics, not money (prices are exact
//!   `Decimal`s in [`crate::domain`] and are converted at the call site).
//!   Timestamps are [`crate::domain::Ts`], nanoseconds since the epoch, event
//!   time.
//! - `update` returns `None` until the indicator is warm (has seen enough
//!   data), then `Some` (with the exceptions in the table). The count-based
//!   indicators follow TA-Lib's definitions, seeding and warm-up (its
//!   "lookback": the number of inputs consumed before the first output), with
//!   the unstable period at its default of 0; the golden tests in
//!   `tests/it/indicators.rs` check them value by value against TA-Lib.
//! - Time windows are `(ts - window, ts]`: a value exactly `window` old is
//!   out. Timestamps must be non-decreasing; an older timestamp is treated as
//!   arriving at the latest one seen. Time-window indicators are warm once
//!   the data spans a full window (first timestamp `<= ts - window`).
//! - Non-finite input (NaN, ±inf; and negative volume) is ignored: the state
//!   is left exactly as it was and `update` returns `None`, so one bad value
//!   can neither panic nor poison a running sum. `value()` still gives the
//!   last output. Finite inputs large enough to overflow intermediate sums
//!   (|x| near `f64::MAX`, or near its square root for the variance-based
//!   indicators) yield non-finite outputs rather than a panic.
//! - Drift: rolling sums are compensated (Neumaier) and periodically
//!   recomputed from their buffer (after as many updates as the buffer
//!   holds, so O(1) amortized); rolling variances use sliding Welford
//!   updates with the same periodic two-pass recompute. A window of equal
//!   values is detected exactly, so its variance is exactly 0.
//! - Constructors panic on meaningless parameters (period 0, window <= 0,
//!   negative or non-finite Bollinger `k`).
//!
//! # Indicators
//!
//! | indicator | constructor | `update` | first output (warm-up) |
//! |---|---|---|---|
//! | [`Sma`] | `Sma::new(n)` | `update(x) -> Option<f64>` | n-th value (lookback n-1) |
//! | [`Ema`] | `Ema::new(n)`, alpha 2/(n+1), SMA seed | `update(x) -> Option<f64>` | n-th value (lookback n-1) |
//! | [`TimeSma`] | `TimeSma::new(window_ns)` | `update(ts, x) -> Option<f64>` | first `ts` with first ts <= ts - window |
//! | [`TimeEma`] | `TimeEma::new(window_ns)`, alpha 1 - exp(-dt/window) | `update(ts, x) -> Option<f64>` | first `ts` with first ts <= ts - window |
//! | [`Rsi`] | `Rsi::new(n)`, Wilder | `update(x) -> Option<f64>` | (n+1)-th price (lookback n) |
//! | [`Macd`] | `Macd::new(fast, slow, signal)` | `update(x) -> Option<MacdValue>` | (slow+signal-1)-th value (lookback slow+signal-2; 33 for 12/26/9) |
//! | [`Bollinger`] | `Bollinger::new(n, k)`, population sigma | `update(x) -> Option<Bands>` | n-th value (lookback n-1) |
//! | [`Atr`] | `Atr::new(n)`, Wilder | `update(high, low, close) -> Option<f64>` | (n+1)-th bar (lookback n) |
//! | [`Vwap`] | `Vwap::new()` (cumulative) | `update(ts, price, volume) -> Option<f64>` | first positive volume |
//! | [`Vwap`] | `Vwap::windowed(window_ns)` | `update(ts, price, volume) -> Option<f64>` | spans the window; `None` while the window's volume is 0 |
//! | [`ZScore`] | `ZScore::new(n)`, population sigma | `update(x) -> Option<f64>` | n-th value (lookback n-1); `None` when sigma is 0 |

mod atr;
mod bollinger;
mod macd;
mod moving_average;
mod rsi;
mod stats;
mod time_window;
mod vwap;
mod zscore;

pub use atr::Atr;
pub use bollinger::{Bands, Bollinger};
pub use macd::{Macd, MacdValue};
pub use moving_average::{Ema, Sma};
pub use rsi::Rsi;
pub use time_window::{TimeEma, TimeSma};
pub use vwap::Vwap;
pub use zscore::ZScore;
