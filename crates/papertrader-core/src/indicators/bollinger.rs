//! Bollinger bands.

use serde::{Deserialize, Serialize};

use super::stats::RollingMoments;

/// One Bollinger output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bands {
    /// SMA of the last `period` values.
    pub middle: f64,
    /// `middle + k * sigma`.
    pub upper: f64,
    /// `middle - k * sigma`.
    pub lower: f64,
    /// `(x - lower) / (upper - lower)`; 0.5 when the bands have zero width.
    pub percent_b: f64,
    /// `(upper - lower) / middle`; 0 when the bands have zero width (and
    /// infinite when `middle` is 0 but the width is not: meant for prices).
    pub bandwidth: f64,
}

/// Bollinger bands (TA-Lib `TA_BBANDS` with `matype = 0`, SMA, and
/// `nbdevup = nbdevdn = k`).
///
/// `sigma` is the **population** standard deviation (divides by `period`, as
/// TA-Lib does) of the same `period` values as the middle band, the current
/// value included.
///
/// Warm-up: the first value comes with the `period`-th input (lookback
/// `period - 1`). Non-finite input is ignored: the state is unchanged and
/// `update` returns `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bollinger {
    k: f64,
    window: RollingMoments,
    last: Option<Bands>,
}

impl Bollinger {
    /// # Panics
    /// If `period` is 0 or `k` is negative or not finite.
    pub fn new(period: usize, k: f64) -> Self {
        assert!(
            k.is_finite() && k >= 0.0,
            "Bollinger k must be finite and non-negative"
        );
        Self {
            k,
            window: RollingMoments::new(period),
            last: None,
        }
    }

    pub fn period(&self) -> usize {
        self.window.period()
    }

    pub fn k(&self) -> f64 {
        self.k
    }

    /// Feed one value; the bands once `period` values have been seen.
    pub fn update(&mut self, x: f64) -> Option<Bands> {
        if !x.is_finite() {
            return None;
        }
        self.window.push(x);
        if !self.window.is_full() {
            return None;
        }
        let middle = self.window.mean();
        let offset = self.k * self.window.std_dev();
        let upper = middle + offset;
        let lower = middle - offset;
        let width = upper - lower;
        let (percent_b, bandwidth) = if width > 0.0 {
            ((x - lower) / width, width / middle)
        } else {
            (0.5, 0.0)
        };
        self.last = Some(Bands {
            middle,
            upper,
            lower,
            percent_b,
            bandwidth,
        });
        self.last
    }

    /// The latest output, if warm.
    pub fn value(&self) -> Option<Bands> {
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
    fn bands_by_hand() {
        // window 2, 4, 6: mean 4, squared deviations 4+0+4 = 8,
        // population variance 8/3, sigma = sqrt(8/3) = 1.63299...
        let mut bb = Bollinger::new(3, 2.0);
        assert_eq!(bb.update(2.0), None);
        assert_eq!(bb.update(4.0), None);
        let b = bb.update(6.0).unwrap();
        let sigma = (8.0f64 / 3.0).sqrt();
        assert!((b.middle - 4.0).abs() < 1e-12);
        assert!((b.upper - (4.0 + 2.0 * sigma)).abs() < 1e-12);
        assert!((b.lower - (4.0 - 2.0 * sigma)).abs() < 1e-12);
        // x = 6 sits at (6 - lower) / (4 sigma) = (2 + 2 sigma) / (4 sigma)
        assert!((b.percent_b - (2.0 + 2.0 * sigma) / (4.0 * sigma)).abs() < 1e-12);
        assert!((b.bandwidth - sigma).abs() < 1e-12); // 4 sigma / 4
    }

    #[test]
    fn flat_window_collapses_bands() {
        let mut bb = Bollinger::new(3, 2.0);
        let b = [0.3, 0.3, 0.3].map(|x| bb.update(x))[2].unwrap();
        assert_eq!((b.middle, b.upper, b.lower), (0.3, 0.3, 0.3));
        assert_eq!((b.percent_b, b.bandwidth), (0.5, 0.0));
    }
}
