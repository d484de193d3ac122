//! Moving average convergence/divergence.

use serde::{Deserialize, Serialize};

use super::moving_average::Ema;
use super::stats::CompensatedSum;

/// One MACD output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MacdValue {
    /// Fast EMA minus slow EMA.
    pub macd: f64,
    /// EMA of `macd` over the signal period.
    pub signal: f64,
    /// `macd - signal`.
    pub histogram: f64,
}

/// MACD exactly as TA-Lib's `TA_MACD` computes it.
///
/// Both EMAs use `alpha = 2 / (period + 1)` and are SMA-seeded, but TA-Lib
/// aligns them on the slow EMA: both are seeded at the `slow`-th value, the
/// slow one with the mean of the first `slow` values and the fast one with the
/// mean of the **last `fast`** of those (values `slow - fast + 1 ..= slow`),
/// not of the first `fast` values. The signal line is an [`Ema`] of the MACD
/// line (seeded with the mean of its first `signal` values), and TA-Lib emits
/// nothing until the signal exists.
///
/// Warm-up: the first value comes with input number `slow + signal - 1`
/// (lookback `(slow - 1) + (signal - 1)`; 33 for 12/26/9).
///
/// As TA-Lib does, if `slow < fast` the two are swapped.
/// Non-finite input is ignored: the state is unchanged and `update` returns
/// `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Macd {
    fast: usize,
    slow: usize,
    k_fast: f64,
    k_slow: f64,
    seen: usize,
    fast_seed: CompensatedSum,
    slow_seed: CompensatedSum,
    /// (fast EMA, slow EMA) once seeded.
    emas: Option<(f64, f64)>,
    signal: Ema,
    last: Option<MacdValue>,
}

impl Macd {
    /// # Panics
    /// If any period is 0.
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        assert!(
            fast >= 1 && slow >= 1 && signal >= 1,
            "MACD periods must be at least 1"
        );
        let (fast, slow) = if slow < fast {
            (slow, fast)
        } else {
            (fast, slow)
        };
        Self {
            fast,
            slow,
            k_fast: 2.0 / (fast as f64 + 1.0),
            k_slow: 2.0 / (slow as f64 + 1.0),
            seen: 0,
            fast_seed: CompensatedSum::default(),
            slow_seed: CompensatedSum::default(),
            emas: None,
            signal: Ema::new(signal),
            last: None,
        }
    }

    /// (fast, slow, signal) after TA-Lib's swap.
    pub fn periods(&self) -> (usize, usize, usize) {
        (self.fast, self.slow, self.signal.period())
    }

    /// Feed one value; the MACD triple once the signal line is warm.
    pub fn update(&mut self, x: f64) -> Option<MacdValue> {
        if !x.is_finite() {
            return None;
        }
        let (fast, slow) = match self.emas {
            Some((f, s)) => ((x - f) * self.k_fast + f, (x - s) * self.k_slow + s),
            None => {
                self.seen += 1;
                self.slow_seed.add(x);
                if self.seen > self.slow - self.fast {
                    self.fast_seed.add(x);
                }
                if self.seen < self.slow {
                    return None;
                }
                (
                    self.fast_seed.value() / self.fast as f64,
                    self.slow_seed.value() / self.slow as f64,
                )
            }
        };
        self.emas = Some((fast, slow));
        let macd = fast - slow;
        let signal = self.signal.update(macd)?;
        let value = MacdValue {
            macd,
            signal,
            histogram: macd - signal,
        };
        self.last = Some(value);
        self.last
    }

    /// The latest output, if warm.
    pub fn value(&self) -> Option<MacdValue> {
        self.last
    }

    pub fn is_ready(&self) -> bool {
        self.last.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macd_2_3_2_by_hand() {
        // fast 2 (k = 2/3), slow 3 (k = 1/2), signal 2 (k = 2/3).
        // inputs 1, 2, 3, 5, 4
        // at the 3rd value: slow = (1+2+3)/3 = 2, fast = mean of the last 2 = 2.5
        //   macd = 0.5 (signal seeding: 1 of 2)
        // 4th (5): fast = 2.5 + 2/3*(5-2.5) = 25/6, slow = 2 + 0.5*3 = 3.5
        //   macd = 25/6 - 21/6 = 2/3; signal = (0.5 + 2/3)/2 = 7/12
        //   histogram = 8/12 - 7/12 = 1/12
        // 5th (4): fast = 25/6 + 2/3*(4 - 25/6) = 25/6 - 1/9 = 73/18
        //   slow = 3.5 + 0.5*0.5 = 3.75, macd = 73/18 - 3.75 = 11/36
        //   signal = 7/12 + 2/3*(11/36 - 21/36) = 7/12 - 20/108 = 43/108
        let mut m = Macd::new(2, 3, 2);
        assert_eq!(m.update(1.0), None);
        assert_eq!(m.update(2.0), None);
        assert_eq!(m.update(3.0), None);
        let v = m.update(5.0).unwrap();
        assert!((v.macd - 2.0 / 3.0).abs() < 1e-12);
        assert!((v.signal - 7.0 / 12.0).abs() < 1e-12);
        assert!((v.histogram - 1.0 / 12.0).abs() < 1e-12);
        let v = m.update(4.0).unwrap();
        assert!((v.macd - 11.0 / 36.0).abs() < 1e-12);
        assert!((v.signal - 43.0 / 108.0).abs() < 1e-12);
        assert!((v.histogram - (33.0 - 43.0) / 108.0).abs() < 1e-12);
    }

    #[test]
    fn macd_warm_up_is_slow_plus_signal_minus_one() {
        let mut m = Macd::new(12, 26, 9);
        let first = (1..=100)
            .position(|i| m.update((i as f64).sin() + 50.0).is_some())
            .unwrap();
        assert_eq!(first, 33);
        assert_eq!(Macd::new(26, 12, 9).periods(), (12, 26, 9));
    }
}
