//! The price chart's data in a backtest report: every admitted trade of a
//! symbol grouped into time bars (open, high, low, close, volume) and the
//! values of the `[[analytics]]` streams on it (the last value in each bar),
//! in constant memory: when a symbol has more than [`MAX_BARS`] bars, its bars
//! are merged into the next interval of [`LADDER`] (each divides the next, so
//! merging is exact: the result equals grouping the trades at the longer
//! interval from the start). Prices are `f64`: a chart, not the books.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::domain::{f64_of, IndicatorMsg, Tick, Ts, NANOS_PER_SEC};

/// Bar intervals in seconds; each divides the next.
pub const LADDER: [i64; 14] = [
    1, 2, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14_400, 43_200, 86_400, 604_800,
];

/// The start (seconds since the epoch) of the bar of `step` seconds that
/// holds `secs`: a multiple of `step`, weeks from Monday 00:00 UTC (the
/// epoch was a Thursday; 1970-01-05 a Monday).
pub fn bar_start(secs: i64, step: i64) -> i64 {
    const MONDAY: i64 = 4 * 86_400;
    if step == 604_800 {
        (secs - MONDAY).div_euclid(step) * step + MONDAY
    } else {
        secs.div_euclid(step) * step
    }
}

/// Most bars kept per symbol: a chart of about this many candles.
pub const MAX_BARS: usize = 300;

/// One bar; `t` is its start in seconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub t: i64,
    pub o: f64,
    pub h: f64,
    pub l: f64,
    pub c: f64,
    pub v: f64,
    /// Event time of the first and last trade in it, for late trades.
    first: Ts,
    last: Ts,
}

/// One symbol's bars and indicator lines at its current interval.
#[derive(Debug, Clone)]
pub struct SymbolBars {
    /// Index into [`LADDER`].
    step: usize,
    pub bars: Vec<Bar>,
    /// `analytics.value` -> (bar start, the last value in that bar).
    pub lines: BTreeMap<String, Vec<(i64, f64)>>,
}

impl SymbolBars {
    pub fn interval(&self) -> i64 {
        LADDER[self.step]
    }

    fn start(&self, ts: Ts) -> i64 {
        bar_start(ts.div_euclid(NANOS_PER_SEC), self.interval())
    }

    fn push(&mut self, ts: Ts, price: f64, size: f64) {
        let t = self.start(ts);
        // In time order a trade falls in the last bar or opens the next.
        let found = match self.bars.last() {
            Some(b) if b.t == t => Ok(self.bars.len() - 1),
            Some(b) if b.t < t => Err(self.bars.len()),
            _ => self.bars.binary_search_by_key(&t, |b| b.t),
        };
        match found {
            Ok(i) => {
                let b = &mut self.bars[i];
                b.h = b.h.max(price);
                b.l = b.l.min(price);
                b.v += size;
                if ts >= b.last {
                    b.c = price;
                    b.last = ts;
                }
                if ts < b.first {
                    b.o = price;
                    b.first = ts;
                }
            }
            Err(i) => self.bars.insert(
                i,
                Bar {
                    t,
                    o: price,
                    h: price,
                    l: price,
                    c: price,
                    v: size,
                    first: ts,
                    last: ts,
                },
            ),
        }
        while self.bars.len() > MAX_BARS && self.step + 1 < LADDER.len() {
            self.coarsen();
        }
    }

    fn line(&mut self, name: &str, ts: Ts, v: f64) {
        let t = self.start(ts);
        let l = self.lines.entry(name.to_string()).or_default();
        match l.last_mut() {
            Some(last) if last.0 == t => last.1 = v,
            Some(last) if last.0 > t => {}
            _ => l.push((t, v)),
        }
    }

    /// Merge into the next interval of the ladder.
    fn coarsen(&mut self) {
        self.step += 1;
        let s = self.interval();
        let mut out: Vec<Bar> = Vec::with_capacity(self.bars.len() / 2 + 1);
        for b in self.bars.drain(..) {
            let t = bar_start(b.t, s);
            match out.last_mut() {
                Some(m) if m.t == t => {
                    m.h = m.h.max(b.h);
                    m.l = m.l.min(b.l);
                    m.c = b.c;
                    m.v += b.v;
                    m.last = b.last;
                }
                _ => out.push(Bar { t, ..b }),
            }
        }
        self.bars = out;
        for l in self.lines.values_mut() {
            let mut merged: Vec<(i64, f64)> = Vec::with_capacity(l.len() / 2 + 1);
            for &(t, v) in l.iter() {
                let t = bar_start(t, s);
                match merged.last_mut() {
                    Some(m) if m.0 == t => m.1 = v,
                    _ => merged.push((t, v)),
                }
            }
            *l = merged;
        }
    }
}

/// Bars per symbol.
#[derive(Debug, Clone, Default)]
pub struct PriceBars {
    pub symbols: BTreeMap<String, SymbolBars>,
}

impl PriceBars {
    /// An admitted trade.
    pub fn on_tick(&mut self, t: &Tick) {
        self.on_trade(&t.symbol, t.ts, t.price, t.size);
    }

    /// An admitted trade, by its parts.
    pub fn on_trade(&mut self, symbol: &str, ts: Ts, price: Decimal, size: Decimal) {
        let (p, v) = (f64_of(price), f64_of(size));
        if let Some(s) = self.symbols.get_mut(symbol) {
            return s.push(ts, p, v);
        }
        let mut s = SymbolBars {
            step: 0,
            bars: Vec::new(),
            lines: BTreeMap::new(),
        };
        s.push(ts, p, v);
        self.symbols.insert(symbol.to_string(), s);
    }

    /// An analytics stream's values: each warm value into its line.
    pub fn on_indicator(&mut self, i: &IndicatorMsg) {
        let Some(s) = self.symbols.get_mut(&i.symbol) else {
            return;
        };
        for (name, v) in &i.values {
            if let Some(v) = (*v).filter(|v| v.is_finite()) {
                s.line(&format!("{}.{name}", i.analytics), i.ts, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn tick(sec: i64, price: i64) -> Tick {
        Tick {
            symbol: "X".into(),
            ts: sec * NANOS_PER_SEC,
            price: Decimal::from(price),
            size: Decimal::ONE,
            bid: None,
            ask: None,
        }
    }

    #[test]
    fn merged_bars_equal_bars_grouped_at_the_longer_interval() {
        let mut pb = PriceBars::default();
        // 1000 trades, one a second, a sawtooth price: more than MAX_BARS
        // seconds, so 1 s bars are merged into 2 s, then 10 s ones.
        let price = |s: i64| 100 + (s * 7) % 13;
        for s in 0..1000 {
            pb.on_tick(&tick(s, price(s)));
        }
        let x = &pb.symbols["X"];
        assert_eq!(x.interval(), 10);
        assert_eq!(x.bars.len(), 100);
        // Grouped by hand at 10 s.
        for (k, b) in x.bars.iter().enumerate() {
            let secs: Vec<i64> = (k as i64 * 10..k as i64 * 10 + 10).collect();
            let ps: Vec<f64> = secs.iter().map(|s| price(*s) as f64).collect();
            assert_eq!(b.t, k as i64 * 10);
            assert_eq!(b.o, ps[0]);
            assert_eq!(b.c, ps[9]);
            assert_eq!(b.h, ps.iter().copied().fold(f64::MIN, f64::max));
            assert_eq!(b.l, ps.iter().copied().fold(f64::MAX, f64::min));
            assert_eq!(b.v, 10.0);
        }
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-12-03 is a Thursday; its week began on Monday 2026-11-30.
        let thursday = 1_796_256_000 + 12 * 3600; // 2026-12-03T12:00:00Z
        assert_eq!(bar_start(thursday, 604_800), 1_795_996_800); // 2026-11-30T00:00:00Z
        assert_eq!(bar_start(thursday, 86_400), 1_796_256_000);
    }

    #[test]
    fn a_late_trade_changes_its_bars_range_not_its_open_or_close() {
        let mut pb = PriceBars::default();
        // 5.0 s at 10, 5.5 s at 11, then 5.2 s at 9 arrives late.
        let at = |ms: i64, price: i64| Tick {
            ts: 5 * NANOS_PER_SEC + ms * 1_000_000,
            ..tick(5, price)
        };
        pb.on_tick(&at(0, 10));
        pb.on_tick(&at(500, 11));
        pb.on_tick(&at(200, 9));
        let b = pb.symbols["X"].bars[0];
        assert_eq!(pb.symbols["X"].bars.len(), 1);
        assert_eq!((b.o, b.h, b.l, b.c, b.v), (10.0, 11.0, 9.0, 11.0, 3.0));
    }

    #[test]
    fn indicator_lines_keep_the_last_value_per_bar() {
        let mut pb = PriceBars::default();
        pb.on_tick(&tick(0, 10));
        let msg = |sec: i64, v: Option<f64>| IndicatorMsg {
            indicator_id: String::new(),
            analytics: "a".into(),
            symbol: "X".into(),
            ts: sec * NANOS_PER_SEC,
            values: BTreeMap::from([("m".to_string(), v)]),
            origin: String::new(),
        };
        pb.on_indicator(&msg(0, None));
        pb.on_indicator(&msg(1, Some(1.0)));
        pb.on_indicator(&msg(1, Some(2.0)));
        pb.on_indicator(&msg(2, Some(3.0)));
        assert_eq!(pb.symbols["X"].lines["a.m"], vec![(1, 2.0), (2, 3.0)]);
    }
}
