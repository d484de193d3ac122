//! Numerical building blocks shared by the indicators: a compensated sum and
//! fixed-length rolling moments with drift control.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Neumaier (improved Kahan–Babuška) compensated sum.
///
/// Adding and later subtracting the same values leaves a result within a few
/// ulps of the exact sum of what remains, instead of accumulating one rounding
/// error per operation as a naive running sum does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub(crate) fn value(&self) -> f64 {
        self.sum + self.compensation
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Mean and population variance of the last `period` values.
///
/// Each push is an O(1) sliding Welford update (add the new value, remove the
/// oldest). To stop rounding drift from accumulating over a long stream, the
/// moments are recomputed from the buffer with a compensated two-pass
/// algorithm every `period` pushes: O(period) work every `period` pushes, so
/// O(1) amortized, and the result never carries more than `period` updates'
/// worth of rounding error. A slide that cancels more than six digits of the
/// sum of squared deviations (a large outlier leaving the window) also
/// triggers the recomputation, since its residue would otherwise dominate the
/// small variance left. The buffer is allocated once, at construction.
///
/// A window whose values are all bit-for-bit equal is tracked exactly (by the
/// length of the run of equal values at its end): its mean is that value and
/// its variance exactly 0, with no rounding residue.
/// A sliding update that leaves less than this fraction of the previous m2
/// triggers an exact recomputation (see [`RollingMoments::push`]).
const CANCELLATION_LIMIT: f64 = 1e-6;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RollingMoments {
    period: usize,
    buf: VecDeque<f64>,
    mean: f64,
    m2: f64,
    since_recompute: usize,
    /// Length of the run of equal values ending at the newest value.
    equal_run: usize,
}

impl RollingMoments {
    pub(crate) fn new(period: usize) -> Self {
        assert!(period >= 1, "period must be at least 1");
        Self {
            period,
            buf: VecDeque::with_capacity(period),
            mean: 0.0,
            m2: 0.0,
            since_recompute: 0,
            equal_run: 0,
        }
    }

    pub(crate) fn period(&self) -> usize {
        self.period
    }

    /// Push a finite value (callers filter non-finite input).
    pub(crate) fn push(&mut self, x: f64) {
        match self.buf.back() {
            Some(&last) if last == x => self.equal_run = self.equal_run.saturating_add(1),
            _ => self.equal_run = 1,
        }
        if self.buf.len() == self.period {
            let old = self.buf.pop_front().expect("full buffer is non-empty");
            self.buf.push_back(x);
            let n = self.period as f64;
            let old_mean = self.mean;
            let old_m2 = self.m2;
            self.mean += (x - old) / n;
            self.m2 += (x - old) * ((x - self.mean) + (old - old_mean));
            // An outlier leaving the window can cancel most of m2; the
            // rounding error left behind is relative to the old m2, so when
            // more than six digits cancel, recompute from the buffer.
            if self.m2 < old_m2 * CANCELLATION_LIMIT {
                self.since_recompute = self.period;
            }
        } else {
            self.buf.push_back(x);
            let n = self.buf.len() as f64;
            let d = x - self.mean;
            self.mean += d / n;
            self.m2 += d * (x - self.mean);
        }
        self.since_recompute += 1;
        if self.since_recompute >= self.period {
            self.recompute();
        }
    }

    /// Compensated two-pass recomputation from the buffer.
    fn recompute(&mut self) {
        self.since_recompute = 0;
        let n = self.buf.len();
        if n == 0 {
            self.mean = 0.0;
            self.m2 = 0.0;
            return;
        }
        let mut sum = CompensatedSum::default();
        for &x in &self.buf {
            sum.add(x);
        }
        let mean = sum.value() / n as f64;
        let mut sq = CompensatedSum::default();
        let mut dev = CompensatedSum::default();
        for &x in &self.buf {
            let d = x - mean;
            sq.add(d * d);
            dev.add(d);
        }
        // Corrected two-pass: remove the residual of the mean's rounding.
        let dev = dev.value();
        self.mean = mean + dev / n as f64;
        self.m2 = sq.value() - dev * dev / n as f64;
    }

    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() == self.period
    }

    /// True when every value in the window is bit-for-bit the same.
    pub(crate) fn is_constant(&self) -> bool {
        !self.buf.is_empty() && self.equal_run >= self.buf.len()
    }

    pub(crate) fn mean(&self) -> f64 {
        if self.is_constant() {
            *self.buf.back().expect("constant window is non-empty")
        } else {
            self.mean
        }
    }

    /// Population variance (divides by the number of values).
    pub(crate) fn variance(&self) -> f64 {
        if self.is_constant() || self.buf.is_empty() {
            0.0
        } else {
            (self.m2 / self.buf.len() as f64).max(0.0)
        }
    }

    pub(crate) fn std_dev(&self) -> f64 {
        self.variance().sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensated_sum_survives_add_then_remove() {
        let mut s = CompensatedSum::default();
        s.add(1e16);
        s.add(1.0);
        s.add(1.0);
        s.add(-1e16);
        assert_eq!(s.value(), 2.0);
    }

    #[test]
    fn moments_of_one_to_five() {
        let mut m = RollingMoments::new(5);
        for x in 1..=5 {
            m.push(x as f64);
        }
        // mean 3, squared deviations 4+1+0+1+4 = 10, population variance 2
        assert_eq!(m.mean(), 3.0);
        assert!((m.variance() - 2.0).abs() < 1e-15);
        m.push(6.0); // window 2..6
        assert!((m.mean() - 4.0).abs() < 1e-15);
        assert!((m.variance() - 2.0).abs() < 1e-15);
    }

    #[test]
    fn constant_window_has_exact_zero_variance() {
        let mut m = RollingMoments::new(3);
        for x in [5.0, 0.1, 0.1, 0.1] {
            m.push(x);
        }
        assert!(m.is_constant());
        assert_eq!(m.mean(), 0.1);
        assert_eq!(m.variance(), 0.0);
    }

    #[test]
    fn no_drift_over_a_long_stream() {
        // Large offset, small variation: the worst case for running sums.
        let mut m = RollingMoments::new(7);
        let mut xs = Vec::new();
        for i in 0..100_000u64 {
            let x = 1e9 + ((i * 7919) % 13) as f64 * 0.25;
            xs.push(x);
            m.push(x);
        }
        let w = &xs[xs.len() - 7..];
        let mean = w.iter().sum::<f64>() / 7.0;
        let var = w.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 7.0;
        assert!((m.mean() - mean).abs() <= 1e-6 * 1e-9 * mean);
        assert!((m.variance() - var).abs() <= 1e-6 * var);
    }
}
