//! Exits from a strategy file's `[exits]`, for every rule kind
//! (docs/strategies.md, "Exits").
//!
//! When a position opens, the engine sends its exits to the strategy's venue as
//! reduce-only orders of one one-updates-other group (`sim::matching`): the
//! stop loss as a stop order, the take profit as a resting limit, the trailing
//! stop as a trailing-stop order. So a gap through a stop fills as the venue
//! models a triggered stop, a take profit fills as a maker at its limit, and
//! the first of them to fill takes the others with it. The time stop and the
//! minimal-ROI table depend on time in the trade: the engine checks them on
//! every tick of the symbol and closes with a market order (a signal of its
//! own, `...:exit`).
//!
//! Distances are a fraction of the entry price (`"2%"`, `0.02`) or a multiple
//! of the average true range at entry (`"1.5atr"`; ATR over the strategy's bars,
//! or over ticks without bars, Wilder's with `atr_period`). An ATR leg whose ATR
//! is not warm at entry is not placed.

use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;

use crate::config::{problem, Problem, Span, Window};
use crate::domain::{Side, Ts};
use crate::indicators::Atr;
use crate::sim::instrument::{to_ticks, Snap};
use crate::sim::OrderKind;

/// How far an exit lies from the entry price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distance {
    /// A fraction of the entry price (`"2%"` or `0.02`).
    Fraction(Decimal),
    /// A multiple of the ATR at entry (`"1.5atr"`).
    Atr(Decimal),
}

impl Distance {
    /// Parse `"2%"`, `"0.02"`, `"1.5atr"` (spaces allowed before the unit).
    ///
    /// # Errors
    /// Text that is none of these; the message shows the forms.
    pub fn parse(s: &str) -> Result<Distance, String> {
        let t = s.trim();
        let bad = || {
            format!("{s:?} is not a distance: write a percent (\"2%\"), a fraction (0.02) or an ATR multiple (\"1.5atr\")")
        };
        let num = |n: &str| Decimal::from_str(n.trim()).map_err(|_| bad());
        if let Some(n) = t.strip_suffix('%') {
            Ok(Distance::Fraction(num(n)? / Decimal::ONE_HUNDRED))
        } else if let Some(n) = t.strip_suffix("atr").or_else(|| t.strip_suffix("ATR")) {
            Ok(Distance::Atr(num(n)?))
        } else {
            Ok(Distance::Fraction(num(t)?))
        }
    }

    fn value(self) -> Decimal {
        match self {
            Distance::Fraction(v) | Distance::Atr(v) => v,
        }
    }

    /// The distance in price at `entry`, with `atr` at entry; `None` for an
    /// ATR multiple without a warm ATR.
    fn price(self, entry: Decimal, atr: Option<f64>) -> Option<Decimal> {
        match self {
            Distance::Fraction(f) => Some(entry * f),
            Distance::Atr(k) => atr.and_then(Decimal::from_f64).map(|a| a * k),
        }
    }
}

impl std::fmt::Display for Distance {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Distance::Fraction(v) => write!(f, "{}%", (v * Decimal::ONE_HUNDRED).normalize()),
            Distance::Atr(k) => write!(f, "{}atr", k.normalize()),
        }
    }
}

impl Serialize for Distance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Distance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Distance;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a percent (\"2%\"), a fraction (0.02) or an ATR multiple (\"1.5atr\")")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Distance, E> {
                Distance::parse(v).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Distance, E> {
                Distance::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Distance, E> {
                Ok(Distance::Fraction(Decimal::from(v)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Distance, E> {
                Ok(Distance::Fraction(Decimal::from(v)))
            }
        }
        d.deserialize_any(V)
    }
}

fn default_atr_period() -> usize {
    14
}

/// A strategy file's `[exits]`: every key is optional; none at all means the
/// rule's own signals are the only exits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExitsConfig {
    /// Stop loss below a long's entry (above a short's): a stop order.
    #[serde(default)]
    pub stop_loss: Option<Distance>,
    /// Take profit above a long's entry (below a short's): a resting limit.
    #[serde(default)]
    pub take_profit: Option<Distance>,
    /// Trailing stop at this distance behind the best price since entry: a
    /// trailing-stop order (a fraction trails by a fraction of the best price,
    /// an ATR multiple by a fixed price distance).
    #[serde(default)]
    pub trailing_stop: Option<Distance>,
    /// Close after this long in the trade: a duration (`"4h"`) or a count of
    /// the rule's updates (`20`: bars with `[bars]`, ticks without).
    #[serde(default)]
    pub time_stop: Option<Window>,
    /// Period of the ATR behind `atr` distances.
    #[serde(default = "default_atr_period")]
    pub atr_period: usize,
    /// Minimal ROI over time in the trade, as Freqtrade's `minimal_roi`: from
    /// each duration on (`"0"`, `"30m"`, `"1h"`), close once the return since
    /// entry reaches the value (`"2%"`, `0.02`; `"0%"`: close at break-even or
    /// better). The latest duration reached applies.
    #[serde(default)]
    pub roi: BTreeMap<String, Distance>,
    /// Backtests: close every open position with a market order after the
    /// last event (`{strategy}:{symbol}:end:o`), as backtesting.py's
    /// `finalize_trades` and NautilusTrader's close on stop do; the report
    /// counts those fills apart (`fills_at_end`).
    #[serde(default)]
    pub close_at_end: bool,
}

impl Default for ExitsConfig {
    fn default() -> Self {
        ExitsConfig {
            stop_loss: None,
            take_profit: None,
            trailing_stop: None,
            time_stop: None,
            atr_period: default_atr_period(),
            roi: BTreeMap::new(),
            close_at_end: false,
        }
    }
}

impl ExitsConfig {
    /// Whether any exit is configured.
    pub fn is_empty(&self) -> bool {
        self.stop_loss.is_none()
            && self.take_profit.is_none()
            && self.trailing_stop.is_none()
            && self.time_stop.is_none()
            && self.roi.is_empty()
            && !self.close_at_end
    }

    /// Whether any exit follows an open trade (all but `close_at_end`).
    pub fn follows_trades(&self) -> bool {
        !ExitsConfig {
            close_at_end: false,
            ..self.clone()
        }
        .is_empty()
    }

    /// Distances positive (a fraction below 1 for stops), the ATR period at
    /// least 1, ROI keys durations and values fractions, no ATR in the ROI.
    pub fn check(&self) -> Result<(), Problem> {
        for (key, d) in [
            ("exits.stop_loss", self.stop_loss),
            ("exits.take_profit", self.take_profit),
            ("exits.trailing_stop", self.trailing_stop),
        ] {
            let Some(d) = d else { continue };
            if d.value() <= Decimal::ZERO {
                return Err(problem(
                    key,
                    format!("is {d}, which is not a distance from the entry"),
                    "give a positive distance, e.g. \"2%\" or \"1.5atr\"",
                ));
            }
            if key != "exits.take_profit" && matches!(d, Distance::Fraction(f) if f >= Decimal::ONE)
            {
                return Err(problem(
                    key,
                    format!("is {d}: a stop 100% or more away can never trigger"),
                    "give a percent below 100, e.g. \"5%\"",
                ));
            }
        }
        if self.atr_period == 0 {
            return Err(problem(
                "exits.atr_period",
                "is 0",
                "use 1 or more, e.g. 14",
            ));
        }
        for (k, v) in &self.roi {
            let key = format!("exits.roi.\"{k}\"");
            Span::parse(k).map_err(|e| {
                problem(
                    &key,
                    e,
                    "key the table by time in the trade: \"0\", \"30m\", \"1h\"",
                )
            })?;
            match v {
                Distance::Atr(_) => {
                    return Err(problem(
                        &key,
                        "is an ATR multiple; the ROI table holds returns",
                        "give a return such as \"2%\" or 0.02",
                    ))
                }
                Distance::Fraction(f) if *f <= -Decimal::ONE => {
                    return Err(problem(
                        &key,
                        format!("is {v}, a loss of all or more"),
                        "give a return above -100%, e.g. \"0%\"",
                    ))
                }
                Distance::Fraction(_) => {}
            }
        }
        Ok(())
    }

    /// The ROI table as (time in trade ns, return), by time.
    fn roi_table(&self) -> Vec<(Ts, Decimal)> {
        let mut t: Vec<(Ts, Decimal)> = self
            .roi
            .iter()
            .filter_map(|(k, v)| Some((Span::parse(k).ok()?.nanos(), v.value())))
            .collect();
        t.sort();
        t
    }
}

/// The trade an exit state follows: one position from open to flat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    /// +1 long, -1 short.
    pub sign: i8,
    /// |position| the legs were placed for.
    pub qty: Decimal,
    /// Average entry price the legs were placed at.
    pub entry: Decimal,
    pub entry_ts: Ts,
    /// The rule update count at entry.
    pub entry_update: u64,
    /// ATR at entry.
    pub atr: Option<f64>,
    /// Ids of the exit orders at the venue.
    pub legs: Vec<String>,
    /// A timed exit was sent; no second one while its order works.
    pub exiting: bool,
    /// The timed exit's order.
    #[serde(default)]
    pub exit_order: Option<String>,
}

/// One strategy instance's exits: the ATR, the update count and the trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitState {
    atr: Atr,
    updates: u64,
    pub trade: Option<Trade>,
    /// The input of the last placement and how many placements it made, so
    /// that ids stay unique when one input places twice.
    #[serde(default)]
    placed_at: (String, u32),
}

/// What [`ExitState::on_position`] asks of the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Legs to cancel (still open at the venue, to be replaced or orphaned).
    pub cancel: Vec<String>,
    /// Legs to send: (name, side, qty, kind).
    pub send: Vec<(&'static str, Side, Decimal, OrderKind)>,
}

impl ExitState {
    pub fn new(cfg: &ExitsConfig) -> Self {
        ExitState {
            atr: Atr::new(cfg.atr_period.max(1)),
            updates: 0,
            trade: None,
            placed_at: (String::new(), 0),
        }
    }

    /// The suffix of the legs placed now for `origin`: `""` the first time in
    /// an input, then `"2"`, `"3"`, ... (`...:sl`, `...:sl2`).
    pub fn leg_suffix(&mut self, origin: &str) -> String {
        if self.placed_at.0 == origin {
            self.placed_at.1 += 1;
        } else {
            self.placed_at = (origin.to_string(), 1);
        }
        match self.placed_at.1 {
            1 => String::new(),
            n => n.to_string(),
        }
    }

    /// One rule update (a bar, or a tick without bars).
    pub fn on_update(&mut self, high: f64, low: f64, close: f64) {
        self.atr.update(high, low, close);
        self.updates += 1;
    }

    /// The position is now `position` at average cost `avg` (after fills at
    /// `ts`): a new trade gets its legs; a grown one gets them again for the
    /// whole position; a flat one forgets its trade. A position that shrank
    /// keeps its legs (the venue caps reduce-only orders at the position),
    /// unless none of them is still open (`live` says which are): then they
    /// are sent again, for a new trade when the average cost moved (the
    /// position closed and reopened in between), else for the same one.
    #[allow(clippy::too_many_arguments)]
    pub fn on_position(
        &mut self,
        cfg: &ExitsConfig,
        position: Decimal,
        avg: Decimal,
        ts: Ts,
        tick: Decimal,
        lot: Decimal,
        live: &dyn Fn(&str) -> bool,
    ) -> Placement {
        let mut p = Placement {
            cancel: Vec::new(),
            send: Vec::new(),
        };
        let sign: i8 = if position > Decimal::ZERO { 1 } else { -1 };
        let qty = position.abs();
        let old = self.trade.take();
        if position.is_zero() {
            p.cancel = old.map(|t| t.legs).unwrap_or_default();
            return p;
        }
        let gone = |t: &Trade| !t.legs.is_empty() && !t.legs.iter().any(|id| live(id));
        let trade = match old {
            // Unchanged or shrunk (a reduction keeps the average cost).
            Some(t) if t.sign == sign && qty <= t.qty && avg == t.entry && !gone(&t) => {
                self.trade = Some(Trade { qty, ..t });
                return p;
            }
            Some(t) if t.sign == sign && (qty > t.qty || avg == t.entry) => {
                p.cancel = t.legs;
                Trade {
                    qty,
                    entry: avg,
                    legs: Vec::new(),
                    ..t
                }
            }
            other => {
                p.cancel = other.map(|t| t.legs).unwrap_or_default();
                Trade {
                    sign,
                    qty,
                    entry: avg,
                    entry_ts: ts,
                    entry_update: self.updates,
                    atr: self.atr.value(),
                    legs: Vec::new(),
                    exiting: false,
                    exit_order: None,
                }
            }
        };
        let qty = if lot > Decimal::ZERO {
            (qty / lot).floor() * lot
        } else {
            qty
        };
        if !qty.is_zero() {
            p.send = legs(cfg, &trade, qty, tick);
        }
        self.trade = Some(trade);
        p
    }

    /// A timed exit due at `ts` with the last price `price`: the time stop or
    /// the ROI table. Returns the reason (its values by name) once per trade.
    pub fn timed_exit(
        &mut self,
        cfg: &ExitsConfig,
        ts: Ts,
        price: Decimal,
        live: &dyn Fn(&str) -> bool,
    ) -> Option<BTreeMap<String, f64>> {
        let updates = self.updates;
        let t = self.trade.as_mut()?;
        // An exit whose order ended with the position still open (no
        // liquidity, cancelled) may fire again.
        if t.exiting && !t.exit_order.as_deref().is_some_and(live) {
            t.exiting = false;
        }
        if t.exiting {
            return None;
        }
        let held = ts - t.entry_ts;
        let mut reason = BTreeMap::new();
        match cfg.time_stop {
            Some(Window::Time(span)) if held >= span => {
                reason.insert("time_stop_minutes".into(), span as f64 / 60e9);
                reason.insert("minutes_in_trade".into(), held as f64 / 60e9);
            }
            Some(Window::Events(n)) if updates - t.entry_update >= n as u64 => {
                reason.insert("time_stop_bars".into(), n as f64);
                reason.insert("bars_in_trade".into(), (updates - t.entry_update) as f64);
            }
            _ => {}
        }
        if reason.is_empty() {
            let roi = cfg.roi_table();
            let due = roi.iter().rev().find(|(after, _)| held >= *after)?;
            let ret = (price - t.entry) / t.entry * Decimal::from(t.sign);
            if ret < due.1 {
                return None;
            }
            reason.insert("roi_threshold".into(), due.1.to_f64().unwrap_or(f64::NAN));
            reason.insert("return".into(), ret.to_f64().unwrap_or(f64::NAN));
            reason.insert("minutes_in_trade".into(), held as f64 / 60e9);
        }
        t.exiting = true;
        Some(reason)
    }
}

/// The exit orders of `trade` for `qty`: prices snapped away from the entry
/// to the tick grid (a stop never tighter, a take profit never nearer than
/// asked); a leg whose price would not be positive is left out.
fn legs(
    cfg: &ExitsConfig,
    trade: &Trade,
    qty: Decimal,
    tick: Decimal,
) -> Vec<(&'static str, Side, Decimal, OrderKind)> {
    let long = trade.sign > 0;
    let side = if long { Side::Sell } else { Side::Buy };
    let snap = |p: Decimal, s: Snap| Decimal::from(to_ticks(p, tick, s)) * tick;
    let (below, above) = (Snap::Down, Snap::Up);
    let mut out = Vec::new();
    if let Some(d) = cfg.stop_loss.and_then(|d| d.price(trade.entry, trade.atr)) {
        let stop = if long {
            snap(trade.entry - d, below)
        } else {
            snap(trade.entry + d, above)
        };
        if stop > Decimal::ZERO {
            out.push(("sl", side, qty, OrderKind::Stop { stop }));
        }
    }
    if let Some(d) = cfg
        .take_profit
        .and_then(|d| d.price(trade.entry, trade.atr))
    {
        let price = if long {
            snap(trade.entry + d, above)
        } else {
            snap(trade.entry - d, below)
        };
        if price > Decimal::ZERO {
            out.push(("tp", side, qty, OrderKind::Limit { price }));
        }
    }
    match cfg.trailing_stop {
        Some(Distance::Fraction(f)) => out.push((
            "trail",
            side,
            qty,
            OrderKind::TrailingStop {
                offset: f,
                percent: true,
            },
        )),
        Some(d @ Distance::Atr(_)) => {
            if let Some(offset) = d.price(trade.entry, trade.atr) {
                let offset = snap(offset, Snap::Up).max(tick);
                out.push((
                    "trail",
                    side,
                    qty,
                    OrderKind::TrailingStop {
                        offset,
                        percent: false,
                    },
                ));
            }
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::d;

    fn cfg(toml_text: &str) -> ExitsConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn distances_parse_and_print() {
        assert_eq!(
            Distance::parse("2%").unwrap(),
            Distance::Fraction(d("0.02"))
        );
        assert_eq!(
            Distance::parse("0.02").unwrap(),
            Distance::Fraction(d("0.02"))
        );
        assert_eq!(Distance::parse("1.5 atr").unwrap(), Distance::Atr(d("1.5")));
        assert_eq!(Distance::Fraction(d("0.025")).to_string(), "2.5%");
        assert_eq!(Distance::Atr(d("2")).to_string(), "2atr");
        let e = Distance::parse("2 pips").unwrap_err();
        assert!(e.contains("\"1.5atr\""), "{e}");
        let c = cfg("stop_loss = 0.02\ntake_profit = \"3%\"\n[roi]\n\"0\" = \"4%\"\n\"30m\" = 0");
        assert_eq!(c.stop_loss, Some(Distance::Fraction(d("0.02"))));
        assert_eq!(
            c.roi_table(),
            vec![(0, d("0.04")), (30 * 60_000_000_000, d("0"))]
        );
        assert!(c.check().is_ok());
    }

    #[test]
    fn checks_name_the_key() {
        let e = cfg("stop_loss = \"150%\"").check().unwrap_err();
        assert_eq!(e.0, "exits.stop_loss");
        let e = cfg("take_profit = \"-1%\"").check().unwrap_err();
        assert_eq!(e.0, "exits.take_profit");
        let e = cfg("[roi]\n\"30x\" = \"1%\"").check().unwrap_err();
        assert_eq!(e.0, "exits.roi.\"30x\"");
        let e = cfg("[roi]\n\"0\" = \"1atr\"").check().unwrap_err();
        assert!(e.1.contains("ATR"), "{e:?}");
        assert!(toml::from_str::<ExitsConfig>("stop = \"1%\"").is_err());
    }

    #[test]
    fn legs_of_a_long_and_a_short_snap_away_from_the_entry() {
        let c = cfg("stop_loss = \"2%\"\ntake_profit = \"3%\"\ntrailing_stop = \"1%\"");
        let mut s = ExitState::new(&c);
        // Long 10 at 100.05, tick 0.1: stop 98.049 -> 98.0, take profit 103.0515 -> 103.1.
        let p = s.on_position(&c, d("10"), d("100.05"), 5, d("0.1"), d("1"), &|_| true);
        assert!(p.cancel.is_empty());
        assert_eq!(
            p.send,
            vec![
                (
                    "sl",
                    Side::Sell,
                    d("10"),
                    OrderKind::Stop { stop: d("98.0") }
                ),
                (
                    "tp",
                    Side::Sell,
                    d("10"),
                    OrderKind::Limit { price: d("103.1") }
                ),
                (
                    "trail",
                    Side::Sell,
                    d("10"),
                    OrderKind::TrailingStop {
                        offset: d("0.01"),
                        percent: true
                    }
                ),
            ]
        );
        s.trade.as_mut().unwrap().legs = vec!["a".into(), "b".into()];
        // Shrinking keeps the legs; flat cancels them.
        assert_eq!(
            s.on_position(&c, d("4"), d("100.05"), 6, d("0.1"), d("1"), &|_| true)
                .send,
            vec![]
        );
        let p = s.on_position(&c, d("0"), d("0"), 7, d("0.1"), d("1"), &|_| true);
        assert_eq!(p.cancel, vec!["a".to_string(), "b".to_string()]);
        assert!(s.trade.is_none());
        // Short 5 at 50: stop 51 (above), take profit 48.5 (below), buys.
        let p = s.on_position(&c, d("-5"), d("50"), 8, d("0.1"), d("1"), &|_| true);
        assert_eq!(
            p.send[0],
            ("sl", Side::Buy, d("5"), OrderKind::Stop { stop: d("51.0") })
        );
        assert_eq!(
            p.send[1],
            (
                "tp",
                Side::Buy,
                d("5"),
                OrderKind::Limit { price: d("48.5") }
            )
        );
    }

    #[test]
    fn atr_legs_wait_for_a_warm_atr() {
        let c = cfg("stop_loss = \"2atr\"\natr_period = 3\ntrailing_stop = \"1atr\"");
        let mut s = ExitState::new(&c);
        // Not warm: no ATR legs.
        assert!(s
            .on_position(&c, d("1"), d("100"), 0, d("0.01"), d("1"), &|_| true)
            .send
            .is_empty());
        s.on_position(&c, d("0"), d("0"), 1, d("0.01"), d("1"), &|_| true);
        // Bars (h, l, c): TRs of bars 2..4 are 2, 3, 1 (|h - prev close| etc.): ATR 2.
        for (h, l, cl) in [
            (101.0, 99.0, 100.0),
            (101.0, 99.0, 100.0),
            (103.0, 100.0, 102.0),
            (102.5, 101.5, 102.0),
        ] {
            s.on_update(h, l, cl);
        }
        let p = s.on_position(&c, d("1"), d("100"), 2, d("0.01"), d("1"), &|_| true);
        assert_eq!(p.send[0].3, OrderKind::Stop { stop: d("96") });
        assert_eq!(
            p.send[1].3,
            OrderKind::TrailingStop {
                offset: d("2"),
                percent: false
            }
        );
    }

    #[test]
    fn time_stop_and_roi_fire_once() {
        let min = 60_000_000_000;
        let c = cfg("time_stop = 3\n[roi]\n\"0\" = \"5%\"\n\"10m\" = \"1%\"");
        let mut s = ExitState::new(&c);
        s.on_position(&c, d("1"), d("100"), 0, d("0.01"), d("1"), &|_| true);
        // 4% after 5 minutes: below the 5% of the first row.
        assert_eq!(s.timed_exit(&c, 5 * min, d("104"), &|_| true), None);
        // 2% after 10 minutes: the 1% row applies.
        let r = s.timed_exit(&c, 10 * min, d("102"), &|_| true).unwrap();
        assert_eq!(r["roi_threshold"], 0.01);
        assert_eq!(r["return"], 0.02);
        s.trade.as_mut().unwrap().exit_order = Some("x:exit:o".into());
        assert_eq!(
            s.timed_exit(&c, 11 * min, d("110"), &|_| true),
            None,
            "not again while its order works"
        );
        assert!(
            s.timed_exit(&c, 12 * min, d("110"), &|_| false).is_some(),
            "again once its order ended with the position open"
        );
        // Time stop in updates: 3 updates after entry.
        let mut s = ExitState::new(&c);
        s.on_position(&c, d("-1"), d("100"), 0, d("0.01"), d("1"), &|_| true);
        for _ in 0..2 {
            s.on_update(100.0, 100.0, 100.0);
        }
        // A short up 0%... below the ROI, and 2 updates: nothing yet.
        assert_eq!(s.timed_exit(&c, min, d("100"), &|_| true), None);
        s.on_update(100.0, 100.0, 100.0);
        let r = s.timed_exit(&c, min, d("100"), &|_| true).unwrap();
        assert_eq!(r["bars_in_trade"], 3.0);
    }

    fn doc_blocks(start: &str) -> Vec<String> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/strategies.md");
        let doc = std::fs::read_to_string(p).unwrap();
        doc.split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .filter(|b| b.starts_with(start))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_docs_exits_and_analytics_examples_load() {
        let exits = doc_blocks("[exits]");
        assert_eq!(exits.len(), 1, "one [exits] example in docs/strategies.md");
        #[derive(Deserialize)]
        struct File {
            exits: ExitsConfig,
        }
        let f: File = toml::from_str(&exits[0]).unwrap();
        f.exits.check().unwrap();
        assert_eq!(f.exits.take_profit, Some(Distance::Atr(d("3"))));
        assert_eq!(f.exits.roi.len(), 3);
        let analytics = doc_blocks("[[analytics]]");
        assert_eq!(
            analytics.len(),
            1,
            "one [[analytics]] example in docs/strategies.md"
        );
        #[derive(Deserialize)]
        struct App {
            analytics: Vec<crate::analytics::AnalyticsConfig>,
        }
        let a: App = toml::from_str(&analytics[0]).unwrap();
        a.analytics[0].check("analytics[0]").unwrap();
        assert_eq!(a.analytics[0].values.len(), 3);
    }

    #[test]
    fn legs_gone_with_the_position_open_are_sent_again() {
        let c = cfg("stop_loss = \"2%\"");
        let mut s = ExitState::new(&c);
        let tick = d("0.01");
        s.on_position(&c, d("10"), d("100"), 1, tick, d("1"), &|_| true);
        s.trade.as_mut().unwrap().legs = vec!["sl".into()];
        // A partial take profit: 4 left, the legs still open: kept, qty follows.
        let p = s.on_position(&c, d("4"), d("100"), 2, tick, d("1"), &|_| true);
        assert!(p.send.is_empty() && p.cancel.is_empty());
        assert_eq!(s.trade.as_ref().unwrap().qty, d("4"));
        // The stop's remainder was cancelled (thin book): the same trade gets
        // its stop again, for what is left, at the same price.
        let p = s.on_position(&c, d("4"), d("100"), 3, tick, d("1"), &|_| false);
        assert_eq!(
            p.send,
            vec![("sl", Side::Sell, d("4"), OrderKind::Stop { stop: d("98") })]
        );
        assert_eq!(s.trade.as_ref().unwrap().entry_ts, 1);
        // Closed and reopened in one input at another price: a new trade.
        s.trade.as_mut().unwrap().legs = vec!["sl2".into()];
        let p = s.on_position(&c, d("3"), d("90"), 4, tick, d("1"), &|_| false);
        assert_eq!(p.send[0].3, OrderKind::Stop { stop: d("88.2") });
        assert_eq!(s.trade.as_ref().unwrap().entry_ts, 4);
        // Ids: one input that places twice gets a second suffix.
        assert_eq!(s.leg_suffix("in-0-4"), "");
        assert_eq!(s.leg_suffix("in-0-4"), "2");
        assert_eq!(s.leg_suffix("in-0-5"), "");
    }
}
