//! Event-time indicators for irregularly spaced data: [`TimeSma`] and
//! [`TimeEma`].

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::stats::CompensatedSum;
use crate::domain::Ts;

/// Below this many buffered values a time window's sums are recomputed no
/// less often than every `MIN_RECOMPUTE_INTERVAL` updates.
pub(crate) const MIN_RECOMPUTE_INTERVAL: usize = 16;

/// Mean of the values whose timestamp lies in `(ts - window, ts]`.
///
/// Meant for tick data over long windows (e.g. a 50-day mean of trades):
/// every value in the window is kept in a ring buffer of `(Ts, f64)`, so
/// memory is proportional to the number of events in one window; each update
/// is O(1) amortized (one push, evictions that each value undergoes once, and
/// a compensated running sum recomputed from the buffer after as many updates
/// as the buffer holds, which bounds drift).
///
/// Warm-up: `None` until the data spans the full window, i.e. until the first
/// timestamp ever seen is `<= ts - window`; from then on always `Some` (the
/// window always holds at least the newest value, even after a gap longer than
/// the window).
///
/// Timestamps must be non-decreasing. A value whose `ts` is older than the
/// latest one seen is treated as arriving at that latest timestamp (it is
/// clamped forward, never reordered), so late data neither panics nor
/// rewinds the window. Several values at the same `ts` are all counted.
/// Non-finite input is ignored: the state is unchanged and `update` returns
/// `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeSma {
    window_ns: i64,
    buf: VecDeque<(Ts, f64)>,
    sum: CompensatedSum,
    first_ts: Option<Ts>,
    last_ts: Ts,
    since_recompute: usize,
}

impl TimeSma {
    /// # Panics
    /// If `window_ns` is not positive.
    pub fn new(window_ns: i64) -> Self {
        assert!(window_ns > 0, "time window must be positive");
        Self {
            window_ns,
            buf: VecDeque::new(),
            sum: CompensatedSum::default(),
            first_ts: None,
            last_ts: Ts::MIN,
            since_recompute: 0,
        }
    }

    pub fn window_ns(&self) -> i64 {
        self.window_ns
    }

    /// Feed one value at event time `ts` (nanoseconds).
    pub fn update(&mut self, ts: Ts, x: f64) -> Option<f64> {
        if !x.is_finite() {
            return None;
        }
        let ts = ts.max(self.last_ts);
        self.last_ts = ts;
        self.first_ts.get_or_insert(ts);
        self.buf.push_back((ts, x));
        self.sum.add(x);
        let cutoff = ts.saturating_sub(self.window_ns);
        while let Some(&(t, v)) = self.buf.front() {
            if t > cutoff {
                break;
            }
            self.buf.pop_front();
            self.sum.add(-v);
        }
        self.since_recompute += 1;
        if self.since_recompute >= self.buf.len().max(MIN_RECOMPUTE_INTERVAL) {
            self.since_recompute = 0;
            self.sum.reset();
            for &(_, v) in &self.buf {
                self.sum.add(v);
            }
        }
        self.value()
    }

    /// The current mean, if warm.
    pub fn value(&self) -> Option<f64> {
        if !self.is_ready() {
            return None;
        }
        Some(self.sum.value() / self.buf.len() as f64)
    }

    pub fn is_ready(&self) -> bool {
        match self.first_ts {
            Some(first) => first <= self.last_ts.saturating_sub(self.window_ns),
            None => false,
        }
    }

    /// Number of values currently in the window.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Exponential moving average for irregularly spaced events.
///
/// Each value is weighted by the time elapsed since the previous one:
/// `alpha = 1 - exp(-dt / window)` and `ema += alpha * (x - ema)`, so after a
/// gap of `window` the old average keeps weight `1/e`. This is the "next
/// point" scheme of Eckner, *Algorithms for unevenly spaced time series*: the
/// new value is taken to have held over the whole gap. The EMA is seeded with
/// the first value; a value arriving at the same `ts` as the previous one has
/// `dt = 0` and therefore weight 0 (it does not move the average).
///
/// Warm-up: `None` until the data spans one window (first timestamp
/// `<= ts - window`); the state is updated during warm-up, so the first value
/// returned already discounts the seed by at least `1/e`.
///
/// Timestamps must be non-decreasing; an older `ts` is treated as arriving at
/// the latest timestamp seen (so with `dt = 0` it is ignored). Non-finite
/// input is ignored: the state is unchanged and `update` returns `None`.
/// O(1) per update, no buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeEma {
    window_ns: i64,
    first_ts: Option<Ts>,
    last_ts: Ts,
    ema: f64,
}

impl TimeEma {
    /// # Panics
    /// If `window_ns` is not positive.
    pub fn new(window_ns: i64) -> Self {
        assert!(window_ns > 0, "time window must be positive");
        Self {
            window_ns,
            first_ts: None,
            last_ts: Ts::MIN,
            ema: 0.0,
        }
    }

    pub fn window_ns(&self) -> i64 {
        self.window_ns
    }

    /// Feed one value at event time `ts` (nanoseconds).
    pub fn update(&mut self, ts: Ts, x: f64) -> Option<f64> {
        if !x.is_finite() {
            return None;
        }
        if self.first_ts.is_none() {
            self.first_ts = Some(ts);
            self.last_ts = ts;
            self.ema = x;
        } else {
            let ts = ts.max(self.last_ts);
            // Exact integer difference, then scaled: no precision lost to
            // epoch-sized nanosecond values.
            let dt = ts.saturating_sub(self.last_ts) as f64;
            let alpha = -(-dt / self.window_ns as f64).exp_m1();
            self.ema += alpha * (x - self.ema);
            self.last_ts = ts;
        }
        self.value()
    }

    /// The current average, if warm.
    pub fn value(&self) -> Option<f64> {
        self.is_ready().then_some(self.ema)
    }

    pub fn is_ready(&self) -> bool {
        match self.first_ts {
            Some(first) => first <= self.last_ts.saturating_sub(self.window_ns),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn time_sma_window_is_open_left_closed_right() {
        // window 10 s: at t=10 the window is (0, 10], so the value at t=0 is out.
        let mut m = TimeSma::new(10 * S);
        assert_eq!(m.update(0, 100.0), None);
        assert_eq!(m.update(4 * S, 2.0), None);
        assert_eq!(m.update(9 * S, 4.0), None);
        // first ts 0 <= 10 - 10: warm; window (0, 10] = {2, 4, 6}
        assert_eq!(m.update(10 * S, 6.0), Some(4.0));
        // window (5, 15] = {4, 6, 8}
        assert_eq!(m.update(15 * S, 8.0), Some(6.0));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn time_sma_same_ts_and_late_ts() {
        let mut m = TimeSma::new(10 * S);
        m.update(0, 1.0);
        assert_eq!(m.update(10 * S, 3.0), Some(3.0));
        // same ts: both counted
        assert_eq!(m.update(10 * S, 5.0), Some(4.0));
        // older ts: treated as arriving at 10 s, still counted
        assert_eq!(m.update(2 * S, 7.0), Some(5.0));
        // (11, 21]: everything above is gone
        assert_eq!(m.update(21 * S, 9.0), Some(9.0));
        assert_eq!(m.update(21 * S, f64::NAN), None);
        assert_eq!(m.value(), Some(9.0));
    }

    #[test]
    fn time_sma_after_gap_keeps_only_newest() {
        let mut m = TimeSma::new(10 * S);
        m.update(0, 1.0);
        m.update(S, 2.0);
        assert_eq!(m.update(100 * S, 42.0), Some(42.0));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn time_ema_by_hand() {
        // window 10 s. Seed 10 at t=0; t=5 brings 10 again, so ema stays 10.
        // t=10: dt = 5 s, alpha = 1 - e^-0.5, ema = 10 + alpha*(20-10) = 20 - 10 e^-0.5
        // t=10 again: dt=0, alpha=0, unchanged
        // t=15: alpha = 1 - e^-0.5, ema = prev + alpha*(0 - prev) = prev*e^-0.5
        let mut m = TimeEma::new(10 * S);
        assert_eq!(m.update(0, 10.0), None);
        assert_eq!(m.update(5 * S, 10.0), None);
        let e1 = 20.0 - 10.0 * (-0.5f64).exp();
        let got = m.update(10 * S, 20.0).unwrap();
        assert!((got - e1).abs() < 1e-12, "{got} vs {e1}");
        assert!((m.update(10 * S, 1000.0).unwrap() - e1).abs() < 1e-12);
        assert!((m.update(3 * S, 1000.0).unwrap() - e1).abs() < 1e-12);
        let e2 = e1 * (-0.5f64).exp();
        assert!((m.update(15 * S, 0.0).unwrap() - e2).abs() < 1e-12);
        assert_eq!(m.update(16 * S, f64::INFINITY), None);
    }

    #[test]
    fn time_ema_warm_up_follows_the_first_timestamp() {
        let mut m = TimeEma::new(10 * S);
        assert_eq!(m.update(5 * S, 1.0), None);
        assert_eq!(m.update(14 * S, 1.0), None);
        assert_eq!(m.update(15 * S, 1.0), Some(1.0));
    }
}
