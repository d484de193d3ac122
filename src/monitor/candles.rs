//! The dashboard's candles: every admitted trade of a symbol, grouped into
//! time bars of `http.candle` in event time (open, high, low, close, volume),
//! the newest `http.candles_kept` per symbol. Prices are `f64` here: this is
//! the display boundary, the engine's money stays exact.

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

use crate::domain::{Tick, Ts};

/// One candle; `t` is its start in seconds since the epoch (the chart's time).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Candle {
    pub t: i64,
    pub o: f64,
    pub h: f64,
    pub l: f64,
    pub c: f64,
    pub v: f64,
}

/// Candles per symbol, oldest first.
pub struct Candles {
    /// Interval, ns (a whole number of seconds).
    interval: Ts,
    kept: usize,
    by_symbol: BTreeMap<String, VecDeque<Candle>>,
}

impl Candles {
    /// `interval` in ns, at least a second (the chart's time is in seconds).
    pub fn new(interval: Ts, kept: usize) -> Self {
        let second = 1_000_000_000;
        Candles {
            interval: (interval / second).max(1) * second,
            kept: kept.max(1),
            by_symbol: BTreeMap::new(),
        }
    }

    pub fn interval_seconds(&self) -> i64 {
        self.interval / 1_000_000_000
    }

    /// Add a trade; returns the candle it went into, or `None` for a trade
    /// older than every candle kept.
    pub fn push(&mut self, t: &Tick) -> Option<(String, Candle)> {
        let price = t.price.to_f64()?;
        let size = t.size.to_f64().unwrap_or(0.0);
        let start = t.ts.div_euclid(self.interval) * self.interval;
        let secs = start.div_euclid(1_000_000_000);
        let series = self.by_symbol.entry(t.symbol.to_string()).or_default();
        let fresh = Candle {
            t: secs,
            o: price,
            h: price,
            l: price,
            c: price,
            v: size,
        };
        let candle = match series.iter().rposition(|c| c.t <= secs) {
            Some(i) if series[i].t == secs => {
                let newest = i + 1 == series.len();
                let c = &mut series[i];
                c.h = c.h.max(price);
                c.l = c.l.min(price);
                // A late trade (event time before the candle's newest) keeps the close.
                if newest {
                    c.c = price;
                }
                c.v += size;
                *c
            }
            Some(i) => {
                series.insert(i + 1, fresh);
                fresh
            }
            None if series.is_empty() => {
                series.push_back(fresh);
                fresh
            }
            None => return None,
        };
        while series.len() > self.kept {
            series.pop_front();
        }
        Some((t.symbol.to_string(), candle))
    }

    pub fn all(&self) -> &BTreeMap<String, VecDeque<Candle>> {
        &self.by_symbol
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn tick(ts_ms: i64, price: i64, size: i64) -> Tick {
        Tick {
            symbol: "AAA".into(),
            ts: ts_ms * 1_000_000,
            price: Decimal::from(price),
            size: Decimal::from(size),
            bid: None,
            ask: None,
        }
    }

    #[test]
    fn trades_group_into_open_high_low_close_volume() {
        let mut c = Candles::new(2_000_000_000, 10);
        // 0.0 s 10, 0.5 s 12, 1.9 s 9, 2.0 s 11 (next candle), 5.0 s 13.
        for (ms, p, s) in [
            (0, 10, 1),
            (500, 12, 2),
            (1900, 9, 3),
            (2000, 11, 4),
            (5000, 13, 5),
        ] {
            c.push(&tick(ms, p, s));
        }
        let s: Vec<Candle> = c.all()["AAA"].iter().copied().collect();
        let want = |t, o, h, l, cl, v| Candle {
            t,
            o,
            h,
            l,
            c: cl,
            v,
        };
        assert_eq!(
            s,
            vec![
                want(0, 10.0, 12.0, 9.0, 9.0, 6.0),
                want(2, 11.0, 11.0, 11.0, 11.0, 4.0),
                want(4, 13.0, 13.0, 13.0, 13.0, 5.0),
            ]
        );
    }

    #[test]
    fn a_late_trade_joins_its_candle_and_the_oldest_are_dropped() {
        let mut c = Candles::new(1_000_000_000, 2);
        c.push(&tick(0, 10, 1));
        c.push(&tick(1000, 11, 1));
        // Late, into the first candle: high and volume change, close does not.
        let (_, got) = c.push(&tick(500, 15, 1)).unwrap();
        assert_eq!((got.t, got.h, got.c, got.v), (0, 15.0, 10.0, 2.0));
        c.push(&tick(2000, 12, 1));
        let starts: Vec<i64> = c.all()["AAA"].iter().map(|x| x.t).collect();
        assert_eq!(starts, vec![1, 2]);
        // Older than every candle kept: not drawn.
        assert!(c.push(&tick(100, 9, 1)).is_none());
    }
}
