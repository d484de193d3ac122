//! Relative strength index.

use serde::{Deserialize, Serialize};

/// Wilder's relative strength index (TA-Lib `TA_RSI`, default compatibility).
///
/// Each price after the first gives a change `d`; gain = `max(d, 0)`,
/// loss = `max(-d, 0)`. TA-Lib seeds the average gain and loss with the
/// simple mean of the first `period` changes, then applies Wilder smoothing:
/// `avg = (avg * (period - 1) + new) / period`.
/// `RSI = 100 * avg_gain / (avg_gain + avg_loss)`.
///
/// Warm-up: the first value comes with the `(period + 1)`-th price (lookback
/// `period`), computed from the seed averages themselves.
///
/// Degenerate cases, as TA-Lib 0.6+ (checked against the `TA-Lib` Python
/// package, C library 0.8.1): avg loss 0 and avg gain > 0 gives 100; avg gain
/// and avg loss both exactly 0 (a perfectly flat series) gives **0**, not 50.
/// Strategies reading "RSI < 30" as oversold should be aware that a flat
/// (e.g. halted) instrument reads 0.
///
/// Non-finite input is ignored: the state is unchanged and `update` returns
/// `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rsi {
    period: usize,
    prev: Option<f64>,
    /// Changes seen while seeding.
    seeded: usize,
    avg_gain: f64,
    avg_loss: f64,
    ready: bool,
}

impl Rsi {
    /// # Panics
    /// If `period` is 0.
    pub fn new(period: usize) -> Self {
        assert!(period >= 1, "RSI period must be at least 1");
        Self {
            period,
            prev: None,
            seeded: 0,
            avg_gain: 0.0,
            avg_loss: 0.0,
            ready: false,
        }
    }

    pub fn period(&self) -> usize {
        self.period
    }

    /// Feed one price; the RSI in [0, 100] once warm.
    pub fn update(&mut self, price: f64) -> Option<f64> {
        if !price.is_finite() {
            return None;
        }
        let prev = self.prev.replace(price)?;
        let change = price - prev;
        let (gain, loss) = if change < 0.0 {
            (0.0, -change)
        } else {
            (change, 0.0)
        };
        let n = self.period as f64;
        if self.ready {
            self.avg_gain = (self.avg_gain * (n - 1.0) + gain) / n;
            self.avg_loss = (self.avg_loss * (n - 1.0) + loss) / n;
        } else {
            // Sums while seeding, divided once complete (as TA-Lib does).
            self.avg_gain += gain;
            self.avg_loss += loss;
            self.seeded += 1;
            if self.seeded < self.period {
                return None;
            }
            self.avg_gain /= n;
            self.avg_loss /= n;
            self.ready = true;
        }
        self.value()
    }

    /// The current RSI, if warm.
    pub fn value(&self) -> Option<f64> {
        if !self.ready {
            return None;
        }
        let total = self.avg_gain + self.avg_loss;
        Some(if total == 0.0 {
            0.0
        } else {
            // gain / total <= 1 exactly (rounding is monotone), so the
            // result never leaves [0, 100]; 100 * gain / total can.
            100.0 * (self.avg_gain / total)
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsi_period_three_by_hand() {
        // prices 10, 11, 10.5, 12, 11, 11.5
        // changes +1, -0.5, +1.5 | -1, +0.5
        // seed: avg gain (1 + 0 + 1.5)/3 = 5/6, avg loss 0.5/3 = 1/6
        //   RSI = 100 * (5/6) / (6/6) = 83.333...
        // -1: gain (5/6*2 + 0)/3 = 5/9, loss (1/6*2 + 1)/3 = 4/9
        //   RSI = 100 * 5/9 = 55.555...
        // +0.5: gain (5/9*2 + 0.5)/3 = (10/9 + 4.5/9)/3 = 14.5/27, loss (8/9)/3 = 8/27
        //   RSI = 100 * 14.5 / 22.5 = 64.444...
        let mut rsi = Rsi::new(3);
        let out: Vec<_> = [10.0, 11.0, 10.5, 12.0, 11.0, 11.5]
            .into_iter()
            .map(|p| rsi.update(p))
            .collect();
        assert_eq!(&out[..3], &[None, None, None]);
        let expected = [250.0 / 3.0, 500.0 / 9.0, 1450.0 / 22.5];
        for (got, want) in out[3..].iter().zip(expected) {
            let got = got.unwrap();
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn rsi_extremes_follow_ta_lib() {
        let mut up = Rsi::new(3);
        let last = [1.0, 2.0, 3.0, 4.0, 5.0].map(|p| up.update(p));
        assert_eq!(last[3], Some(100.0));
        assert_eq!(last[4], Some(100.0));

        let mut down = Rsi::new(3);
        let last = [5.0, 4.0, 3.0, 2.0].map(|p| down.update(p));
        assert_eq!(last[3], Some(0.0));

        // Both averages zero: TA-Lib returns 0.
        let mut flat = Rsi::new(3);
        let last = [7.0; 6].map(|p| flat.update(p));
        assert_eq!(last, [None, None, None, Some(0.0), Some(0.0), Some(0.0)]);
    }

    #[test]
    fn rsi_ignores_non_finite_input() {
        let mut a = Rsi::new(2);
        let mut b = Rsi::new(2);
        for p in [1.0, 2.0, 1.5, 3.0] {
            a.update(p);
            b.update(p);
            assert_eq!(b.update(f64::NAN), None);
        }
        assert_eq!(a, b);
    }
}
