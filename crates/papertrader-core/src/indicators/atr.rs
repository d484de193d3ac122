//! Average true range.

use serde::{Deserialize, Serialize};

/// Wilder's average true range (TA-Lib `TA_ATR`).
///
/// True range of a bar = `max(high - low, |high - prev_close|,
/// |low - prev_close|)`; the first bar has no previous close and therefore no
/// true range. As TA-Lib does, the first ATR is the simple mean of the first
/// `period` true ranges (bars 2 ..= period + 1) and later ones use Wilder
/// smoothing, `atr = (atr * (period - 1) + tr) / period`.
///
/// Warm-up: the first value comes with bar number `period + 1` (lookback
/// `period`). A bar with any non-finite field is ignored: the state is
/// unchanged and `update` returns `None`. Bars are not checked for
/// `low <= close <= high` (as in TA-Lib).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Atr {
    period: usize,
    prev_close: Option<f64>,
    seeded: usize,
    /// Sum of true ranges while seeding, then the ATR.
    atr: f64,
    ready: bool,
}

impl Atr {
    /// # Panics
    /// If `period` is 0.
    pub fn new(period: usize) -> Self {
        assert!(period >= 1, "ATR period must be at least 1");
        Self {
            period,
            prev_close: None,
            seeded: 0,
            atr: 0.0,
            ready: false,
        }
    }

    pub fn period(&self) -> usize {
        self.period
    }

    /// Feed one bar; the ATR once warm.
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        if !(high.is_finite() && low.is_finite() && close.is_finite()) {
            return None;
        }
        let prev_close = self.prev_close.replace(close)?;
        let tr = (high - low)
            .max((high - prev_close).abs())
            .max((low - prev_close).abs());
        let n = self.period as f64;
        if self.ready {
            self.atr = (self.atr * (n - 1.0) + tr) / n;
        } else {
            self.atr += tr;
            self.seeded += 1;
            if self.seeded < self.period {
                return None;
            }
            self.atr /= n;
            self.ready = true;
        }
        Some(self.atr)
    }

    /// The current ATR, if warm.
    pub fn value(&self) -> Option<f64> {
        self.ready.then_some(self.atr)
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atr_period_two_by_hand() {
        // bar 1: (h 10, l 8, c 9): no previous close, no TR
        // bar 2: (h 11, l 9, c 10): TR = max(2, |11-9|, |9-9|) = 2
        // bar 3: (h 10.5, l 10, c 10.2): TR = max(0.5, 0.5, 0) = 0.5
        //   first ATR = (2 + 0.5)/2 = 1.25
        // bar 4: gap up (h 14, l 13, c 13.5): TR = max(1, |14-10.2|, |13-10.2|) = 3.8
        //   ATR = (1.25*1 + 3.8)/2 = 2.525
        // bar 5: gap down (h 12, l 11, c 11): TR = max(1, 1.5, 2.5) = 2.5
        //   ATR = (2.525 + 2.5)/2 = 2.5125
        let mut atr = Atr::new(2);
        assert_eq!(atr.update(10.0, 8.0, 9.0), None);
        assert_eq!(atr.update(11.0, 9.0, 10.0), None);
        assert_eq!(atr.update(10.5, 10.0, 10.2), Some(1.25));
        assert!((atr.update(14.0, 13.0, 13.5).unwrap() - 2.525).abs() < 1e-12);
        assert_eq!(atr.update(f64::NAN, 13.0, 13.5), None);
        assert!((atr.update(12.0, 11.0, 11.0).unwrap() - 2.5125).abs() < 1e-12);
    }
}
