//! Volume-weighted average price.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::stats::CompensatedSum;
use super::time_window::MIN_RECOMPUTE_INTERVAL;
use crate::domain::Ts;

/// Volume-weighted average price, `sum(price * volume) / sum(volume)`.
///
/// Two forms:
/// - [`Vwap::new`]: cumulative over everything fed since construction or the
///   last [`Vwap::reset`] (call `reset` at each session open for the usual
///   intraday VWAP). A value as soon as the total volume is positive.
/// - [`Vwap::windowed`]: over the events whose timestamp lies in
///   `(ts - window, ts]`, like [`super::TimeSma`]: `None` until the data spans
///   the full window (first timestamp `<= ts - window`). Events are kept in a
///   ring buffer (memory proportional to the events in one window), O(1)
///   amortized per update, compensated sums recomputed from the buffer after
///   as many updates as it holds.
///
/// Both return `None` while the total volume in scope is zero (tracked
/// exactly by counting events with positive volume, not by comparing a
/// floating sum with 0). Timestamps must be non-decreasing; an older `ts` is
/// treated as arriving at the latest one seen. An event with a non-finite
/// price or volume, or a negative volume, is ignored: the state is unchanged
/// and `update` returns `None`. For bars, the conventional price is the
/// typical price `(high + low + close) / 3`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vwap {
    window_ns: Option<i64>,
    /// (ts, price * volume, volume); only used when windowed.
    buf: VecDeque<(Ts, f64, f64)>,
    pv: CompensatedSum,
    volume: CompensatedSum,
    /// Events in scope with volume > 0.
    positive: usize,
    first_ts: Option<Ts>,
    last_ts: Ts,
    since_recompute: usize,
}

impl Default for Vwap {
    fn default() -> Self {
        Self::new()
    }
}

impl Vwap {
    /// Cumulative VWAP.
    pub fn new() -> Self {
        Self {
            window_ns: None,
            buf: VecDeque::new(),
            pv: CompensatedSum::default(),
            volume: CompensatedSum::default(),
            positive: 0,
            first_ts: None,
            last_ts: Ts::MIN,
            since_recompute: 0,
        }
    }

    /// VWAP over the event-time window `(ts - window_ns, ts]`.
    ///
    /// # Panics
    /// If `window_ns` is not positive.
    pub fn windowed(window_ns: i64) -> Self {
        assert!(window_ns > 0, "time window must be positive");
        Self {
            window_ns: Some(window_ns),
            ..Self::new()
        }
    }

    pub fn window_ns(&self) -> Option<i64> {
        self.window_ns
    }

    /// Forget everything (e.g. at a session open), keeping the configuration
    /// and the buffer's allocation.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pv.reset();
        self.volume.reset();
        self.positive = 0;
        self.first_ts = None;
        self.last_ts = Ts::MIN;
        self.since_recompute = 0;
    }

    /// Feed one trade (or bar) at event time `ts`.
    pub fn update(&mut self, ts: Ts, price: f64, volume: f64) -> Option<f64> {
        if !(price.is_finite() && volume.is_finite() && volume >= 0.0) {
            return None;
        }
        let pv = price * volume;
        if !pv.is_finite() {
            return None;
        }
        let ts = ts.max(self.last_ts);
        self.last_ts = ts;
        self.first_ts.get_or_insert(ts);
        self.pv.add(pv);
        self.volume.add(volume);
        if volume > 0.0 {
            self.positive += 1;
        }
        if let Some(window) = self.window_ns {
            self.buf.push_back((ts, pv, volume));
            let cutoff = ts.saturating_sub(window);
            while let Some(&(t, old_pv, old_volume)) = self.buf.front() {
                if t > cutoff {
                    break;
                }
                self.buf.pop_front();
                self.pv.add(-old_pv);
                self.volume.add(-old_volume);
                if old_volume > 0.0 {
                    self.positive -= 1;
                }
            }
            self.since_recompute += 1;
            if self.since_recompute >= self.buf.len().max(MIN_RECOMPUTE_INTERVAL) {
                self.since_recompute = 0;
                self.pv.reset();
                self.volume.reset();
                for &(_, pv, v) in &self.buf {
                    self.pv.add(pv);
                    self.volume.add(v);
                }
            }
        }
        self.value()
    }

    /// The current VWAP, if warm and the volume in scope is positive.
    pub fn value(&self) -> Option<f64> {
        if self.positive == 0 {
            return None;
        }
        if let (Some(window), Some(first)) = (self.window_ns, self.first_ts) {
            if first > self.last_ts.saturating_sub(window) {
                return None;
            }
        }
        Some(self.pv.value() / self.volume.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn cumulative_by_hand() {
        // (10 * 100 + 11 * 300) / 400 = 4300 / 400 = 10.75
        let mut v = Vwap::new();
        assert_eq!(v.update(0, 10.0, 0.0), None); // no volume yet
        assert_eq!(v.update(S, 10.0, 100.0), Some(10.0));
        assert_eq!(v.update(2 * S, 11.0, 300.0), Some(10.75));
        assert_eq!(v.update(3 * S, f64::NAN, 1.0), None);
        assert_eq!(v.update(3 * S, 12.0, -1.0), None);
        assert_eq!(v.value(), Some(10.75));
        v.reset();
        assert_eq!(v.value(), None);
        assert_eq!(v.update(4 * S, 9.0, 5.0), Some(9.0));
    }

    #[test]
    fn windowed_by_hand() {
        // window 10 s, (ts - 10, ts]
        let mut v = Vwap::windowed(10 * S);
        assert_eq!(v.update(0, 10.0, 100.0), None);
        assert_eq!(v.update(5 * S, 12.0, 100.0), None);
        // at 10: window (0, 10] = {12 x 100, 11 x 200}: (1200 + 2200) / 300
        assert_eq!(v.update(10 * S, 11.0, 200.0), Some(3400.0 / 300.0));
        // at 20: (10, 20] = {13 x 0}: no volume
        assert_eq!(v.update(20 * S, 13.0, 0.0), None);
        // late event: counted at 20
        assert_eq!(v.update(19 * S, 14.0, 10.0), Some(14.0));
    }
}
