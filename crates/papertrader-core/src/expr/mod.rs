//! The rule language: strategies written as expressions in the strategy file
//! (`kind = "expr"`, docs/strategies.md).
//!
//! ```toml
//! [rule]
//! kind = "expr"
//! long_entry = "cross_above(ema(close, fast), ema(close, 30)) and rsi(close, 14) < 70"
//! long_exit  = "cross_below(ema(close, fast), ema(close, 30))"
//! [rule.params]
//! fast = 10
//! ```
//!
//! Each condition is parsed and type-checked once, when the strategy file loads
//! ([`parse`], [`program::Builder`]); all conditions of a rule share one graph,
//! so `ema(close, 10)` used twice is computed once per update. A condition
//! signals when it *becomes* true (false or unknown on the previous update,
//! true on this one): `long_entry` buys towards the target position,
//! `long_exit` sells the long position (only that: it does not open a short),
//! `short_entry` sells towards a short one (with `account.allow_short`),
//! `short_exit` buys the short position back. A buy and a sell on the same
//! update cancel out.

pub mod parse;
pub mod program;

use std::collections::BTreeMap;

use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::bars::Bar;
use crate::config::ExprRule;
use crate::domain::{Sentiment, Side, Tick};
use crate::strategy::{Decision, StateValue, Strategy};
pub use parse::{ExprError, Span};
pub use program::{Input, KeyedError, ModelLoader, PriceInput, Program, Ty};

/// The conditions of an `expr` rule, in the order of [`Roots`].
pub const CONDITIONS: [&str; 4] = ["long_entry", "long_exit", "short_entry", "short_exit"];

/// The node of each condition the rule gives, in [`CONDITIONS`] order.
pub type Roots = [Option<usize>; 4];

/// Compile a rule's conditions (and every `let`, used or not) into one program;
/// `models` finds the model of each `model("...")` by its spec path.
///
/// # Errors
/// The first error, with the key it is in: `rule.long_entry`, `rule.let.NAME`, ...
pub fn compile<'a>(
    rule: &'a ExprRule,
    models: &'a mut program::ModelLoader<'a>,
) -> Result<(Program, Roots), KeyedError> {
    let mut b = program::Builder::new(&rule.params, &rule.lets, models);
    let mut roots = [None; 4];
    for (i, src) in rule.conditions().into_iter().enumerate() {
        if let Some(src) = src {
            roots[i] = Some(b.add(&format!("rule.{}", CONDITIONS[i]), src, Ty::Bool)?);
        }
    }
    b.add_lets()?;
    Ok((b.finish(), roots))
}

/// A strategy instance of an `expr` rule.
pub struct ExprStrategy {
    program: Program,
    /// Whether an expression reads `volume`, `bid`, `ask`: a tick's decimals
    /// are converted to `f64` only then.
    reads: [bool; 3],
    /// Whether an expression reads a position series.
    reads_position: bool,
    /// The position as the engine last gave it: quantity and entry price.
    position: (rust_decimal::Decimal, rust_decimal::Decimal),
    /// Price updates since the position was opened (None when flat), and the
    /// side it was opened on.
    entry: EntryClock,
    last_close: f64,
    roots: Roots,
    /// Each condition's truth at the previous update.
    held: [bool; 4],
    /// The reason values of each condition: its series and indicators.
    reasons: [Vec<usize>; 4],
}

#[derive(Serialize, Deserialize)]
struct ExprState {
    program: program::ProgramState,
    held: [bool; 4],
    entry: EntryClock,
    last_close: f64,
}

/// `bars_since_entry`: price updates since the position was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct EntryClock {
    /// 1 long, -1 short, 0 flat.
    side: i8,
    bars: u64,
    /// The best close since entry: the highest for a long, the lowest for a short.
    best: f64,
}

impl ExprStrategy {
    /// # Errors
    /// The rule does not compile (a rule that passed the configuration check does).
    pub fn new(rule: &ExprRule, models: &crate::model::Models) -> Result<Self, KeyedError> {
        let (program, roots) = compile(rule, &mut |p| models.get(p))?;
        let reasons = roots.map(|r| r.map(|r| program.inputs_of(r)).unwrap_or_default());
        Ok(ExprStrategy {
            reads: ["volume", "bid", "ask"].map(|s| program.reads(s)),
            reads_position: program::POSITION_SERIES.iter().any(|s| program.reads(s)),
            position: Default::default(),
            entry: EntryClock::default(),
            last_close: f64::NAN,
            program,
            roots,
            held: [false; 4],
            reasons,
        })
    }

    /// Before an update: the position series from the engine's position and,
    /// on a price update (`close`), the entry clock.
    fn position_series(&mut self, close: Option<f64>) {
        if !self.reads_position {
            return;
        }
        let (qty, cost) = self.position;
        let side = if qty.is_sign_positive() && !qty.is_zero() {
            1
        } else if qty.is_zero() {
            0
        } else {
            -1
        };
        if let Some(c) = close {
            self.last_close = c;
            let better = |a: f64, b: f64| if side > 0 { a.max(b) } else { a.min(b) };
            self.entry = match (self.entry.side == side, side) {
                (_, 0) => EntryClock::default(),
                (true, _) => EntryClock {
                    side,
                    bars: self.entry.bars + 1,
                    best: better(self.entry.best, c),
                },
                (false, _) => EntryClock {
                    side,
                    bars: 0,
                    best: c,
                },
            };
        }
        let values = if side == 0 {
            [0.0, f64::NAN, f64::NAN, f64::NAN, f64::NAN]
        } else {
            let entry = f(cost);
            let s = f64::from(side);
            let pct = (self.last_close - entry) / entry * 100.0 * s;
            // Opened since the last price update: no entry clock yet.
            let (bars, from_best) = if self.entry.side == side {
                let best = self.entry.best;
                (
                    self.entry.bars as f64,
                    (best - self.last_close) / best * 100.0 * s,
                )
            } else {
                (f64::NAN, f64::NAN)
            };
            [f(qty), entry, bars, pct, from_best]
        };
        self.program.set_position(values);
    }

    fn decide(&mut self, price: Option<f64>) -> Option<Decision> {
        let mut rose = [false; 4];
        for (i, root) in self.roots.iter().enumerate() {
            let now = root.is_some_and(|r| self.program.holds(r));
            rose[i] = now && !self.held[i];
            self.held[i] = now;
        }
        let [long_entry, long_exit, short_entry, short_exit] = rose;
        let buy = long_entry || short_exit;
        let sell = short_entry || long_exit;
        let (side, close_only) = match (buy, sell) {
            (true, false) => (Side::Buy, !long_entry),
            (false, true) => (Side::Sell, !short_entry),
            _ => return None,
        };
        let mut reason = BTreeMap::new();
        for (i, _) in rose.iter().enumerate().filter(|(_, r)| **r) {
            reason.insert(CONDITIONS[i].to_string(), 1.0);
            for &n in &self.reasons[i] {
                reason.insert(self.program.name(n).to_string(), self.program.value(n));
            }
        }
        if let Some(p) = price {
            reason.insert("price".into(), p);
        }
        let strength = if side == Side::Buy { 1.0 } else { -1.0 };
        Some(Decision {
            side,
            strength,
            reason,
            model: None,
            close_only,
        })
    }
}

fn f(d: rust_decimal::Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

impl Strategy for ExprStrategy {
    fn set_position(&mut self, qty: rust_decimal::Decimal, avg_cost: rust_decimal::Decimal) {
        self.position = (qty, avg_cost);
    }

    fn on_tick(&mut self, tick: &Tick, price: f64) -> Option<Decision> {
        self.position_series(Some(price));
        self.program.update(&Input::Price(PriceInput {
            ts: tick.ts,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: if self.reads[0] {
                f(tick.size)
            } else {
                f64::NAN
            },
            bid: tick.bid.filter(|_| self.reads[1]).map_or(f64::NAN, f),
            ask: tick.ask.filter(|_| self.reads[2]).map_or(f64::NAN, f),
        }));
        self.decide(Some(price))
    }

    fn on_bar(&mut self, bar: &Bar) -> Option<Decision> {
        let close = f(bar.close);
        self.position_series(Some(close));
        self.program.update(&Input::Price(PriceInput {
            ts: bar.last_ts,
            open: f(bar.open),
            high: f(bar.high),
            low: f(bar.low),
            close,
            volume: f(bar.volume),
            bid: f64::NAN,
            ask: f64::NAN,
        }));
        self.decide(Some(close))
    }

    fn on_sentiment(&mut self, s: &Sentiment) -> Option<Decision> {
        self.position_series(None);
        self.program.update(&Input::Sentiment {
            ts: s.ts,
            score: s.score,
        });
        self.decide(None)
    }

    fn save(&self) -> StateValue {
        StateValue::serialized(&ExprState {
            program: self.program.save(),
            held: self.held,
            entry: self.entry,
            last_close: self.last_close,
        })
        .expect("expression state is plain data")
    }

    fn restore(&mut self, state: StateValue) -> Result<(), String> {
        let st: ExprState = state.deserialized().map_err(|e| e.to_string())?;
        self.program.restore(st.program)?;
        self.held = st.held;
        self.entry = st.entry;
        self.last_close = st.last_close;
        Ok(())
    }
}

/// Where the expression of `key` sits in the TOML `text`: its line (1-based),
/// the line's text, and the column (1-based) of each byte offset of the
/// expression, for keys written as one-line strings under `[rule]` or
/// `[rule.let]`.
pub fn locate(text: &str, key: &str) -> Option<(usize, String, Vec<usize>)> {
    let (table, name) = key.rsplit_once('.')?;
    let mut current = String::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        if current != table {
            continue;
        }
        let Some(rest) = t.strip_prefix(name) else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let quote = value.chars().next()?;
        if !(quote == '"' || quote == '\'')
            || value.starts_with("\"\"\"")
            || value.starts_with("'''")
        {
            return None;
        }
        let start = line.len() - value.len() + 1;
        return Some((
            n + 1,
            line.to_string(),
            columns(&line[start..], quote, start),
        ));
    }
    None
}

/// The 1-based column in the line of each byte of the decoded string whose raw
/// text starts at byte `start` of the line (after the opening quote).
fn columns(raw: &str, quote: char, start: usize) -> Vec<usize> {
    let mut cols = Vec::new();
    let mut it = raw.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c == quote {
            cols.push(start + i + 1);
            break;
        }
        let col = start + i + 1;
        let decoded_len = if quote == '"' && c == '\\' {
            match it.next() {
                Some((_, 'u')) => {
                    it.nth(3);
                    1
                }
                Some((_, 'U')) => {
                    it.nth(7);
                    1
                }
                Some((_, e)) => e.len_utf8(),
                None => 1,
            }
        } else {
            c.len_utf8()
        };
        cols.extend(std::iter::repeat_n(col, decoded_len));
    }
    cols
}

/// An expression error as the text of a configuration error: where (line and
/// column in the file when `text` is given, else in the expression), what, and
/// the line with a caret under the fault.
pub fn render(e: &KeyedError, src: &str, text: Option<&str>) -> String {
    let (s, end) = e.error.span;
    let end = end.max(s + 1);
    if let Some((line, line_text, cols)) = text.and_then(|t| locate(t, &e.key)) {
        let col = |i: usize| cols.get(i).or(cols.last()).copied().unwrap_or(1);
        // The fault's last column is the one before the column of its end
        // (`cols` ends with the closing quote's column).
        let c0 = col(s);
        let width = if s >= src.len() {
            1
        } else {
            (col(end.min(src.len())) - 1).max(c0) - c0 + 1
        };
        return format!(
            "line {line}, column {c0}: {}\n    {line_text}\n    {}{}",
            e.error.message,
            " ".repeat(c0 - 1),
            "^".repeat(width)
        );
    }
    let width = end.min(src.len().max(s + 1)) - s;
    format!(
        "column {} of the expression: {}\n    {src}\n    {}{}",
        s + 1,
        e.error.message,
        " ".repeat(s),
        "^".repeat(width.max(1))
    )
}

#[cfg(test)]
mod tests;
