//! Bars aggregated from ticks, for strategies that run on bars (`[bars]` in a
//! strategy file): time bars, tick-count bars and volume bars.
//!
//! A bar is emitted when it is complete:
//! - **time** bars of length `L` cover `[k*L, (k+1)*L)` in event time (UTC
//!   aligned); a bar is complete when the first tick of a later bar arrives, so
//!   the strategy acts on it at that tick (an empty interval emits nothing);
//! - **tick** bars of `N` ticks are complete with their `N`th tick;
//! - **volume** bars are complete with the tick that brings their volume to at
//!   least `V` (the tick is not split; the next bar starts empty).
//!
//! The strategy sees a bar as one tick at the bar's close price, with the bar's
//! volume as size and its last tick's time. Orders still go to the venue at the
//! tick being processed: bars change what the rule sees, not how it trades.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::{dec_max, dec_min, Name, Tick, Ts};

/// How ticks are grouped into bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarSpec {
    /// Event-time bars of this many nanoseconds.
    Time(Ts),
    /// Bars of this many ticks.
    Ticks(u64),
    /// Bars of at least this much traded quantity.
    Volume(Decimal),
}

/// One bar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub symbol: Name,
    /// Time of the first and the last tick in the bar.
    pub first_ts: Ts,
    pub last_ts: Ts,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
    pub ticks: u64,
}

impl Bar {
    fn start(t: &Tick) -> Self {
        Bar {
            symbol: t.symbol.clone(),
            first_ts: t.ts,
            last_ts: t.ts,
            open: t.price,
            high: t.price,
            low: t.price,
            close: t.price,
            volume: t.size,
            ticks: 1,
        }
    }

    fn add(&mut self, t: &Tick) {
        self.last_ts = t.ts;
        self.high = dec_max(self.high, t.price);
        self.low = dec_min(self.low, t.price);
        self.close = t.price;
        self.volume += t.size;
        self.ticks += 1;
    }

    /// The bar as the one tick a rule sees: close price, bar volume, last time.
    pub fn as_tick(&self) -> Tick {
        Tick {
            symbol: self.symbol.clone(),
            ts: self.last_ts,
            price: self.close,
            size: self.volume,
            bid: None,
            ask: None,
        }
    }
}

/// Builds the bars of one symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarBuilder {
    spec: BarSpec,
    current: Option<Bar>,
}

impl BarBuilder {
    pub fn new(spec: BarSpec) -> Self {
        BarBuilder {
            spec,
            current: None,
        }
    }

    /// Feed one tick; the bar it completes, if any.
    pub fn push(&mut self, t: &Tick) -> Option<Bar> {
        match self.spec {
            BarSpec::Time(len) => {
                let bucket = |ts: Ts| ts.div_euclid(len.max(1));
                match &mut self.current {
                    Some(b) if bucket(b.first_ts) == bucket(t.ts) => {
                        b.add(t);
                        None
                    }
                    // A tick older than the open bar (allowed out-of-order
                    // input) joins the open bar rather than reopening a closed one.
                    Some(b) if bucket(t.ts) < bucket(b.first_ts) => {
                        let last = b.last_ts;
                        b.add(t);
                        b.last_ts = last;
                        None
                    }
                    _ => self.current.replace(Bar::start(t)),
                }
            }
            BarSpec::Ticks(n) => {
                match &mut self.current {
                    Some(b) => b.add(t),
                    None => self.current = Some(Bar::start(t)),
                }
                if self.current.as_ref().is_some_and(|b| b.ticks >= n) {
                    self.current.take()
                } else {
                    None
                }
            }
            BarSpec::Volume(v) => {
                match &mut self.current {
                    Some(b) => b.add(t),
                    None => self.current = Some(Bar::start(t)),
                }
                if self.current.as_ref().is_some_and(|b| b.volume >= v) {
                    self.current.take()
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NANOS_PER_SEC;
    use std::str::FromStr;

    fn t(s: i64, price: &str, size: &str) -> Tick {
        Tick {
            symbol: "X".into(),
            ts: s * NANOS_PER_SEC,
            price: Decimal::from_str(price).unwrap(),
            size: Decimal::from_str(size).unwrap(),
            bid: None,
            ask: None,
        }
    }

    fn ohlcv(b: &Bar) -> [String; 5] {
        [b.open, b.high, b.low, b.close, b.volume].map(|d| d.normalize().to_string())
    }

    #[test]
    fn time_bars_close_when_a_later_bar_starts() {
        let mut bb = BarBuilder::new(BarSpec::Time(60 * NANOS_PER_SEC));
        // Minute [0, 60): 10 12 9 11; [60, 120): 20; nothing in [120, 180); [180, 240): 5.
        let out: Vec<Option<Bar>> = [
            t(0, "10", "1"),
            t(10, "12", "2"),
            t(30, "9", "3"),
            t(59, "11", "4"),
            t(60, "20", "1"),
            t(200, "5", "1"),
        ]
        .iter()
        .map(|x| bb.push(x))
        .collect();
        assert!(out[..4].iter().all(Option::is_none));
        let first = out[4].as_ref().unwrap();
        assert_eq!(ohlcv(first), ["10", "12", "9", "11", "10"]);
        assert_eq!(
            (first.first_ts, first.last_ts, first.ticks),
            (0, 59 * NANOS_PER_SEC, 4)
        );
        let second = out[5].as_ref().unwrap();
        assert_eq!(ohlcv(second), ["20", "20", "20", "20", "1"]);
        assert_eq!(second.as_tick().price.to_string(), "20");
    }

    #[test]
    fn tick_bars_close_with_their_nth_tick() {
        let mut bb = BarBuilder::new(BarSpec::Ticks(3));
        let px = ["1", "3", "2", "4", "6", "5", "7"];
        let bars: Vec<Bar> = px
            .iter()
            .enumerate()
            .filter_map(|(i, p)| bb.push(&t(i as i64, p, "1")))
            .collect();
        assert_eq!(bars.len(), 2);
        assert_eq!(ohlcv(&bars[0]), ["1", "3", "1", "2", "3"]);
        assert_eq!(ohlcv(&bars[1]), ["4", "6", "4", "5", "3"]);
    }

    #[test]
    fn volume_bars_close_when_volume_reaches_the_size() {
        let mut bb = BarBuilder::new(BarSpec::Volume(Decimal::from(10)));
        let ticks = [("1", "4"), ("2", "4"), ("3", "4"), ("4", "10"), ("5", "3")];
        let bars: Vec<Bar> = ticks
            .iter()
            .enumerate()
            .filter_map(|(i, (p, s))| bb.push(&t(i as i64, p, s)))
            .collect();
        // 4 + 4 + 4 = 12 >= 10 closes the first bar; 10 alone closes the second.
        assert_eq!(bars.len(), 2);
        assert_eq!(ohlcv(&bars[0]), ["1", "3", "1", "3", "12"]);
        assert_eq!(ohlcv(&bars[1]), ["4", "4", "4", "4", "10"]);
    }
}
