//! Count-based moving averages: [`Sma`] and [`Ema`].

use serde::{Deserialize, Serialize};

use super::stats::{CompensatedSum, RollingMoments};

/// Simple moving average of the last `period` values (TA-Lib `TA_SMA`).
///
/// Warm-up: the first value is returned with the `period`-th input
/// (lookback `period - 1`). Drift is bounded by a periodic two-pass
/// recompute; a window of identical values averages to exactly that value.
/// Non-finite input is ignored: the state is unchanged and `update` returns
/// `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sma {
    window: RollingMoments,
}

impl Sma {
    /// # Panics
    /// If `period` is 0.
    pub fn new(period: usize) -> Self {
        Self {
            window: RollingMoments::new(period),
        }
    }

    pub fn period(&self) -> usize {
        self.window.period()
    }

    /// Feed one value; the mean of the last `period` values once warm.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if !x.is_finite() {
            return None;
        }
        self.window.push(x);
        self.value()
    }

    /// The current mean, if warm.
    pub fn value(&self) -> Option<f64> {
        self.window.is_full().then(|| self.window.mean())
    }

    pub fn is_ready(&self) -> bool {
        self.window.is_full()
    }
}

/// Exponential moving average (TA-Lib `TA_EMA`, default compatibility).
///
/// `alpha = 2 / (period + 1)`. TA-Lib seeds the EMA with the simple mean of
/// its first `period` values, so the first value is returned with the
/// `period`-th input (lookback `period - 1`), and every later value is
/// `ema += alpha * (x - ema)` (TA-Lib's `(x - prev) * k + prev`).
/// Non-finite input is ignored: the state is unchanged and `update` returns
/// `None`.
///
/// [`Ema::from_first`] seeds with the first value instead, as NautilusTrader
/// (and pandas' `ewm(adjust=False)`) do: `ema = alpha * x + (1 - alpha) * ema`
/// from the first input on (the first input is `x` itself), ready with the
/// `period`-th input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ema {
    period: usize,
    alpha: f64,
    seen: usize,
    seed: CompensatedSum,
    value: Option<f64>,
    /// Seeded with the first value ([`Ema::from_first`]).
    #[serde(default)]
    first: bool,
    /// The running average of a first-seeded EMA before it is ready.
    #[serde(default)]
    running: Option<f64>,
}

impl Ema {
    /// # Panics
    /// If `period` is 0.
    pub fn new(period: usize) -> Self {
        assert!(period >= 1, "EMA period must be at least 1");
        Self {
            period,
            alpha: 2.0 / (period as f64 + 1.0),
            seen: 0,
            seed: CompensatedSum::default(),
            value: None,
            first: false,
            running: None,
        }
    }

    /// An EMA seeded with its first value (type docs), NautilusTrader's
    /// `ExponentialMovingAverage` to the bit.
    ///
    /// # Panics
    /// If `period` is 0.
    pub fn from_first(period: usize) -> Self {
        Self {
            first: true,
            ..Self::new(period)
        }
    }

    pub fn period(&self) -> usize {
        self.period
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Feed one value; the EMA once `period` values have been seen.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if !x.is_finite() {
            return None;
        }
        if self.first {
            let prev = self.running.unwrap_or(x);
            let v = self.alpha * x + ((1.0 - self.alpha) * prev);
            self.running = Some(v);
            self.seen += 1;
            if self.seen >= self.period {
                self.value = Some(v);
            }
            return self.value;
        }
        match self.value {
            Some(prev) => self.value = Some((x - prev) * self.alpha + prev),
            None => {
                self.seen += 1;
                self.seed.add(x);
                if self.seen == self.period {
                    self.value = Some(self.seed.value() / self.period as f64);
                }
            }
        }
        self.value
    }

    /// The current EMA, if warm.
    pub fn value(&self) -> Option<f64> {
        self.value
    }

    pub fn is_ready(&self) -> bool {
        self.value.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sma_of_one_to_five() {
        let mut sma = Sma::new(3);
        let out: Vec<_> = (1..=5).map(|x| sma.update(x as f64)).collect();
        // (1+2+3)/3 = 2, (2+3+4)/3 = 3, (3+4+5)/3 = 4
        assert_eq!(out, vec![None, None, Some(2.0), Some(3.0), Some(4.0)]);

        let mut sma5 = Sma::new(5);
        let last = (1..=5).map(|x| sma5.update(x as f64)).last().unwrap();
        assert_eq!(last, Some(3.0));
    }

    #[test]
    fn sma_ignores_non_finite_input() {
        let mut sma = Sma::new(2);
        assert_eq!(sma.update(1.0), None);
        assert_eq!(sma.update(f64::NAN), None);
        assert_eq!(sma.update(f64::INFINITY), None);
        assert_eq!(sma.update(3.0), Some(2.0));
        assert_eq!(sma.update(f64::NEG_INFINITY), None);
        assert_eq!(sma.value(), Some(2.0));
        assert_eq!(sma.update(5.0), Some(4.0));
    }

    #[test]
    fn ema_seeds_with_sma_then_smooths() {
        // period 3: alpha = 0.5; seed = (1+2+3)/3 = 2
        // then 2 + 0.5*(10-2) = 6, then 6 + 0.5*(0-6) = 3
        let mut ema = Ema::new(3);
        let out: Vec<_> = [1.0, 2.0, 3.0, 10.0, 0.0]
            .into_iter()
            .map(|x| ema.update(x))
            .collect();
        assert_eq!(out, vec![None, None, Some(2.0), Some(6.0), Some(3.0)]);
    }

    #[test]
    fn ema_from_first_by_hand() {
        // period 3, alpha 0.5: 1, then 0.5*2 + 0.5*1 = 1.5, then
        // 0.5*3 + 0.5*1.5 = 2.25 (ready), then 0.5*10 + 0.5*2.25 = 6.125.
        let mut ema = Ema::from_first(3);
        let out: Vec<_> = [1.0, 2.0, 3.0, 10.0]
            .into_iter()
            .map(|x| ema.update(x))
            .collect();
        assert_eq!(out, vec![None, None, Some(2.25), Some(6.125)]);
    }

    #[test]
    fn ema_period_four_by_hand() {
        // alpha = 2/5 = 0.4; seed = (2+4+6+8)/4 = 5; next = 5 + 0.4*(10-5) = 7
        let mut ema = Ema::new(4);
        for x in [2.0, 4.0, 6.0] {
            assert_eq!(ema.update(x), None);
        }
        assert_eq!(ema.update(8.0), Some(5.0));
        assert!((ema.update(10.0).unwrap() - 7.0).abs() < 1e-15);
        assert_eq!(ema.update(f64::NAN), None);
        assert!((ema.value().unwrap() - 7.0).abs() < 1e-15);
    }

    #[test]
    fn state_round_trips_through_serde() {
        let mut a = Sma::new(4);
        let mut e = Ema::new(4);
        for x in [1.0, 5.0, 2.0] {
            a.update(x);
            e.update(x);
        }
        let mut a2: Sma = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        let mut e2: Ema = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        for x in [7.0, 3.5, 9.25] {
            assert_eq!(a.update(x), a2.update(x));
            assert_eq!(e.update(x), e2.update(x));
        }
    }
}
