//! Compiled expressions: one shared graph of nodes per strategy instance,
//! evaluated in place on every event with no allocation.
//!
//! Every node holds one `f64`: a number, or for conditions 1 (true) and 0
//! (false). NaN means "not known yet": an indicator that is not warm, a series
//! without a value (`bid` on a tick without one), and everything computed from
//! those. A condition that is NaN counts as false, so an expression is false
//! until every indicator in it is warm.
//!
//! Nodes are updated on their own clock: a series on the events that carry it
//! (prices on ticks or bars, `sentiment` on sentiment readings, the time of day
//! on both), and any other node when one of its inputs was updated in this
//! event. History (`x[n]`, `highest`, crosses) therefore counts updates of its
//! own input, so `cross_above(sentiment_ema(3), 0.2)` compares consecutive
//! sentiment readings, and ticks in between do not count as readings. A cross
//! is true only on the update where it happens.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::parse::{parse, Ast, AstKind, BinOp, ExprError, Span, UnOp};
use crate::config::parse_duration;
use crate::domain::{Ts, NANOS_PER_SEC};
use crate::features::FeaturePipeline;
use crate::indicators::{Atr, Bollinger, Ema, Macd, Rsi, Sma, TimeEma, TimeSma, Vwap, ZScore};
use crate::model::{Model, ModelError, Scorer};
use std::sync::Arc;

/// Finds a loaded model by its spec path (`model("models/trend.toml")`).
pub type ModelLoader<'a> = dyn FnMut(&str) -> Result<Arc<Model>, ModelError> + 'a;

/// A price update: a trade tick (open = high = low = close = its price, volume
/// its size) or a completed bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceInput {
    pub ts: Ts,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    /// NaN when the event has no quote.
    pub bid: f64,
    pub ask: f64,
}

/// One event a program sees.
#[derive(Debug, Clone, Copy)]
pub enum Input {
    Price(PriceInput),
    Sentiment { ts: Ts, score: f64 },
}

impl Input {
    fn ts(&self) -> Ts {
        match self {
            Input::Price(p) => p.ts,
            Input::Sentiment { ts, .. } => *ts,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Series {
    Open,
    High,
    Low,
    Close,
    Volume,
    Bid,
    Ask,
    Sentiment,
    Hour,
    Minute,
    Position,
    EntryPrice,
    BarsSinceEntry,
    UnrealizedPct,
    FromBestPct,
}

/// The series, by the names an expression uses (`price` is `close`, `size` is
/// `volume`).
pub const SERIES: [&str; 17] = [
    "open",
    "high",
    "low",
    "close",
    "volume",
    "price",
    "size",
    "bid",
    "ask",
    "sentiment",
    "hour",
    "minute",
    "position",
    "entry_price",
    "bars_since_entry",
    "unrealized_pct",
    "from_best_pct",
];

/// The position series, in the order of [`Program::set_position`].
pub const POSITION_SERIES: [&str; 5] = [
    "position",
    "entry_price",
    "bars_since_entry",
    "unrealized_pct",
    "from_best_pct",
];

fn series(name: &str) -> Option<(Series, &'static str)> {
    Some(match name {
        "open" => (Series::Open, "open"),
        "high" => (Series::High, "high"),
        "low" => (Series::Low, "low"),
        "close" | "price" => (Series::Close, "close"),
        "volume" | "size" => (Series::Volume, "volume"),
        "bid" => (Series::Bid, "bid"),
        "ask" => (Series::Ask, "ask"),
        "sentiment" => (Series::Sentiment, "sentiment"),
        "hour" => (Series::Hour, "hour"),
        "minute" => (Series::Minute, "minute"),
        "position" => (Series::Position, "position"),
        "entry_price" => (Series::EntryPrice, "entry_price"),
        "bars_since_entry" => (Series::BarsSinceEntry, "bars_since_entry"),
        "unrealized_pct" => (Series::UnrealizedPct, "unrealized_pct"),
        "from_best_pct" => (Series::FromBestPct, "from_best_pct"),
        _ => return None,
    })
}

impl Series {
    /// The value this event gives the series, `None` if the event does not carry it.
    fn read(self, ev: &Input, pos: &[f64; 5]) -> Option<f64> {
        match (self, ev) {
            (Series::Position, _) => Some(pos[0]),
            (Series::EntryPrice, _) => Some(pos[1]),
            (Series::BarsSinceEntry, _) => Some(pos[2]),
            (Series::UnrealizedPct, _) => Some(pos[3]),
            (Series::FromBestPct, _) => Some(pos[4]),
            (Series::Hour, _) => Some(time_of_day(ev.ts(), 3_600, 24)),
            (Series::Minute, _) => Some(time_of_day(ev.ts(), 60, 60)),
            (Series::Sentiment, Input::Sentiment { score, .. }) => Some(*score),
            (_, Input::Sentiment { .. }) | (Series::Sentiment, _) => None,
            (s, Input::Price(p)) => Some(match s {
                Series::Open => p.open,
                Series::High => p.high,
                Series::Low => p.low,
                Series::Close => p.close,
                Series::Volume => p.volume,
                Series::Bid => p.bid,
                _ => p.ask,
            }),
        }
    }
}

/// Whole `unit_s` seconds of the UTC day, modulo `modulo`. Not inlined: the
/// division is then not computed speculatively for every other series.
#[inline(never)]
fn time_of_day(ts: Ts, unit_s: i64, modulo: i64) -> f64 {
    let day_ns = ts.rem_euclid(86_400 * NANOS_PER_SEC);
    ((day_ns / (unit_s * NANOS_PER_SEC)) % modulo) as f64
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Indicator {
    Sma(Sma),
    Ema(Ema),
    TimeSma(TimeSma),
    TimeEma(TimeEma),
    Rsi(Rsi),
    /// 0 macd, 1 signal, 2 histogram.
    Macd(Macd, u8),
    /// 0 upper, 1 middle, 2 lower, 3 %b.
    Bollinger(Bollinger, u8),
    ZScore(ZScore),
}

impl Indicator {
    fn update(&mut self, ts: Ts, x: f64) -> Option<f64> {
        match self {
            Indicator::Sma(m) => m.update(x),
            Indicator::Ema(m) => m.update(x),
            Indicator::TimeSma(m) => m.update(ts, x),
            Indicator::TimeEma(m) => m.update(ts, x),
            Indicator::Rsi(m) => m.update(x),
            Indicator::Macd(m, part) => m.update(x).map(|v| match part {
                0 => v.macd,
                1 => v.signal,
                _ => v.histogram,
            }),
            Indicator::Bollinger(m, part) => m.update(x).map(|b| match part {
                0 => b.upper,
                1 => b.middle,
                2 => b.lower,
                _ => b.percent_b,
            }),
            Indicator::ZScore(m) => m.update(x),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum HistKind {
    Lag,
    Highest,
    Lowest,
    Change,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Op {
    Const,
    Series(Series),
    Neg(usize),
    Not(usize),
    Abs(usize),
    Bin(BinOp, usize, usize),
    Min(usize, usize),
    Max(usize, usize),
    If(usize, usize, usize),
    Ind(usize, Indicator),
    /// Over the high, low and close series nodes.
    Atr([usize; 3], Atr),
    /// Over the close and volume series nodes.
    Vwap([usize; 2], Vwap),
    /// `n` and the last `n + 1` values of the input.
    Hist(usize, HistKind, usize, VecDeque<f64>),
    /// `above`, and the inputs at the previous update where both were known.
    Cross(usize, usize, bool, Option<(f64, f64)>),
    /// A model's score: the index of its [`ModelNode`].
    Model(usize),
    /// A model feature: its slot in the program's feature pipeline.
    Feature(usize),
}

fn truth(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

impl BinOp {
    fn apply(self, a: f64, b: f64) -> f64 {
        if a.is_nan() || b.is_nan() {
            return f64::NAN;
        }
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            BinOp::Lt => truth(a < b),
            BinOp::Le => truth(a <= b),
            BinOp::Gt => truth(a > b),
            BinOp::Ge => truth(a >= b),
            BinOp::Eq => truth(a == b),
            BinOp::Ne => truth(a != b),
            BinOp::And => truth(a != 0.0 && b != 0.0),
            BinOp::Or => truth(a != 0.0 || b != 0.0),
        }
    }
}

impl Op {
    /// Was an input of this node updated in this event (`ticked` holds the
    /// answers of the nodes before it)?
    fn input_ticked(&self, t: &[bool]) -> bool {
        match *self {
            Op::Const | Op::Series(_) | Op::Model(_) | Op::Feature(_) => false,
            Op::Neg(a) | Op::Not(a) | Op::Abs(a) | Op::Ind(a, _) | Op::Hist(a, ..) => t[a],
            Op::Bin(_, a, b) | Op::Min(a, b) | Op::Max(a, b) | Op::Cross(a, b, ..) => t[a] || t[b],
            Op::If(c, a, b) => t[c] || t[a] || t[b],
            Op::Atr(ref i, _) => i.iter().any(|&j| t[j]),
            Op::Vwap(ref i, _) => i.iter().any(|&j| t[j]),
        }
    }
}

/// A value's type in the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Num,
    Bool,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Num => "a number",
            Ty::Bool => "a condition (true or false)",
        }
    }
}

/// A compiled set of expressions: the shared graph and its state.
#[derive(Debug)]
pub struct Program {
    ops: Vec<Op>,
    /// The features every `model(...)` of the program reads, computed once.
    features: FeaturePipeline,
    models: Vec<ModelNode>,
    values: Vec<f64>,
    ticked: Vec<bool>,
    /// The nodes that are not constants, in graph order: those an update visits.
    active: Vec<usize>,
    /// The position series' values for the next update ([`Program::set_position`]).
    position: [f64; 5],
    /// Each node's text, canonical (`ema(close, 10)`): the key that shares
    /// identical sub-expressions, and the name a signal's reason uses.
    names: Vec<String>,
    types: Vec<Ty>,
}

/// A model scored by the program: its scorer and the slots of its features.
#[derive(Debug)]
struct ModelNode {
    scorer: Scorer,
    slots: Vec<usize>,
    row: Vec<f64>,
}

impl ModelNode {
    /// The model's output once its features are warm; NaN before (or if tract fails).
    fn score(&mut self, features: &FeaturePipeline) -> f64 {
        if !features.gather(&self.slots, &mut self.row) {
            return f64::NAN;
        }
        self.scorer.score(&self.row).unwrap_or_else(|e| {
            tracing::warn!("{e}");
            f64::NAN
        })
    }
}

/// The checkpointed part of a [`Program`].
#[derive(Serialize, Deserialize)]
pub struct ProgramState {
    ops: Vec<Op>,
    values: Vec<f64>,
    features: FeaturePipeline,
}

/// An expression error in a key of the rule: which key, and what and where.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedError {
    /// `rule.long_entry`, `rule.let.trend`, ...
    pub key: String,
    pub error: ExprError,
}

impl Program {
    /// Evaluate every node for one event.
    pub fn update(&mut self, ev: &Input) {
        let ts = ev.ts();
        if !self.features.is_empty() {
            match ev {
                Input::Price(p) => self.features.on_tick(p.ts, p.close, p.volume),
                Input::Sentiment { score, .. } => self.features.on_sentiment(*score),
            }
        }
        for &i in &self.active {
            let op = &mut self.ops[i];
            let v = &mut self.values;
            let mut ticked = op.input_ticked(&self.ticked);
            match op {
                Op::Const => {}
                Op::Series(s) => match s.read(ev, &self.position) {
                    Some(x) => {
                        v[i] = x;
                        ticked = true;
                    }
                    None => ticked = false,
                },
                Op::Model(m) => {
                    v[i] = self.models[*m].score(&self.features);
                    ticked = true;
                }
                Op::Feature(slot) => {
                    v[i] = self.features.value(*slot).unwrap_or(f64::NAN);
                    ticked = true;
                }
                _ if !ticked => {
                    // A cross is an event: false on updates that are not its own.
                    if matches!(op, Op::Cross(..)) && !v[i].is_nan() {
                        v[i] = 0.0;
                    }
                }
                Op::Neg(a) => v[i] = -v[*a],
                Op::Not(a) => {
                    v[i] = if v[*a].is_nan() {
                        f64::NAN
                    } else {
                        truth(v[*a] == 0.0)
                    }
                }
                Op::Abs(a) => v[i] = v[*a].abs(),
                Op::Bin(b, x, y) => v[i] = b.apply(v[*x], v[*y]),
                Op::Min(x, y) => v[i] = nan_or(v[*x], v[*y], f64::min),
                Op::Max(x, y) => v[i] = nan_or(v[*x], v[*y], f64::max),
                Op::If(c, x, y) => {
                    v[i] = match v[*c] {
                        c if c.is_nan() => f64::NAN,
                        c if c != 0.0 => v[*x],
                        _ => v[*y],
                    }
                }
                Op::Ind(x, ind) => {
                    let x = v[*x];
                    if x.is_nan() {
                        ticked = false;
                    } else {
                        v[i] = ind.update(ts, x).unwrap_or(f64::NAN);
                    }
                }
                Op::Atr([h, l, c], atr) => {
                    v[i] = atr.update(v[*h], v[*l], v[*c]).unwrap_or(f64::NAN);
                }
                Op::Vwap([p, q], vw) => {
                    v[i] = vw.update(ts, v[*p], v[*q]).unwrap_or(f64::NAN);
                }
                Op::Hist(x, kind, n, ring) => {
                    ring.push_back(v[*x]);
                    if ring.len() > *n + 1 {
                        ring.pop_front();
                    }
                    v[i] = history(*kind, *n, ring);
                }
                Op::Cross(a, b, above, prev) => {
                    let (a, b) = (v[*a], v[*b]);
                    if a.is_nan() || b.is_nan() {
                        v[i] = f64::NAN;
                    } else {
                        v[i] = match prev.replace((a, b)) {
                            Some((pa, pb)) if *above => truth(pa <= pb && a > b),
                            Some((pa, pb)) => truth(pa >= pb && a < b),
                            None => f64::NAN,
                        };
                    }
                }
            }
            self.ticked[i] = ticked;
        }
    }

    /// The values of [`POSITION_SERIES`] for the next updates (NaN: unknown,
    /// e.g. flat).
    pub fn set_position(&mut self, values: [f64; 5]) {
        self.position = values;
    }

    /// Does any expression read the series `name` (`volume`, `bid`, ...)? A
    /// caller can skip converting what no expression reads.
    pub fn reads(&self, name: &str) -> bool {
        let Some((s, _)) = series(name) else {
            return false;
        };
        // Model features read prices and sizes.
        if s == Series::Volume && !self.features.is_empty() {
            return true;
        }
        self.ops
            .iter()
            .any(|op| matches!(op, Op::Series(x) if *x == s))
    }

    /// The value of node `id` after the last update (NaN: not known yet).
    pub fn value(&self, id: usize) -> f64 {
        self.values[id]
    }

    /// Is condition `id` true (known and not 0)?
    pub fn holds(&self, id: usize) -> bool {
        let v = self.values[id];
        !v.is_nan() && v != 0.0
    }

    /// The canonical text of node `id`.
    pub fn name(&self, id: usize) -> &str {
        &self.names[id]
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The numeric series and indicator nodes that `root` reads (its reason
    /// values), in graph order.
    pub fn inputs_of(&self, root: usize) -> Vec<usize> {
        let mut seen = vec![false; root + 1];
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            match &self.ops[i] {
                Op::Const | Op::Model(_) | Op::Feature(_) => {}
                Op::Series(_) | Op::Atr(..) | Op::Vwap(..) => {}
                Op::Neg(a) | Op::Not(a) | Op::Abs(a) | Op::Hist(a, ..) => stack.push(*a),
                Op::Ind(a, _) => stack.push(*a),
                Op::Bin(_, a, b) | Op::Min(a, b) | Op::Max(a, b) | Op::Cross(a, b, ..) => {
                    stack.extend([*a, *b])
                }
                Op::If(c, a, b) => stack.extend([*c, *a, *b]),
            }
        }
        (0..=root)
            .filter(|&i| {
                seen[i]
                    && self.types[i] == Ty::Num
                    && matches!(
                        self.ops[i],
                        Op::Series(_)
                            | Op::Ind(..)
                            | Op::Atr(..)
                            | Op::Vwap(..)
                            | Op::Hist(..)
                            | Op::Model(_)
                            | Op::Feature(_)
                    )
            })
            .collect()
    }

    pub fn save(&self) -> ProgramState {
        ProgramState {
            ops: self.ops.clone(),
            values: self.values.clone(),
            features: self.features.clone(),
        }
    }

    /// Restore what [`Program::save`] returned into a program compiled from the
    /// same rule.
    ///
    /// # Errors
    /// The state was saved by a different program.
    pub fn restore(&mut self, st: ProgramState) -> Result<(), String> {
        let same = st.ops.len() == self.ops.len()
            && st.values.len() == self.values.len()
            && st
                .ops
                .iter()
                .zip(&self.ops)
                .all(|(a, b)| std::mem::discriminant(a) == std::mem::discriminant(b));
        if !same {
            return Err("the expression state was saved by a different rule".into());
        }
        self.features.restore(st.features)?;
        self.ops = st.ops;
        self.values = st.values;
        Ok(())
    }
}

fn nan_or(a: f64, b: f64, f: fn(f64, f64) -> f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        f(a, b)
    }
}

fn history(kind: HistKind, n: usize, ring: &VecDeque<f64>) -> f64 {
    let len = ring.len();
    match kind {
        HistKind::Lag if len == n + 1 => ring[0],
        HistKind::Change if len == n + 1 => ring[n] - ring[0],
        HistKind::Highest | HistKind::Lowest if len >= n => {
            let last = ring.iter().skip(len - n);
            let mut acc = if kind == HistKind::Highest {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
            for &x in last {
                if x.is_nan() {
                    return f64::NAN;
                }
                acc = if kind == HistKind::Highest {
                    acc.max(x)
                } else {
                    acc.min(x)
                };
            }
            acc
        }
        _ => f64::NAN,
    }
}

/// Every function of the language, for "did you mean" and the docs' check.
pub const FUNCTIONS: [&str; 25] = [
    "sma",
    "ema",
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "bb_percent_b",
    "atr",
    "vwap",
    "zscore",
    "sentiment_ema",
    "cross_above",
    "cross_below",
    "highest",
    "lowest",
    "change",
    "abs",
    "min",
    "max",
    "if",
    "model",
    "feature",
];

/// Builds a [`Program`] from the expressions of a rule.
pub struct Builder<'a> {
    ops: Vec<Op>,
    values: Vec<f64>,
    names: Vec<String>,
    types: Vec<Ty>,
    shared: HashMap<String, usize>,
    params: &'a BTreeMap<String, f64>,
    lets: &'a BTreeMap<String, String>,
    /// `let` names compiled (to their node) and being compiled (cycle check).
    let_nodes: HashMap<String, usize>,
    compiling: Vec<String>,
    loader: &'a mut ModelLoader<'a>,
    features: FeaturePipeline,
    models: Vec<ModelNode>,
}

type R<T> = Result<T, KeyedError>;

impl<'a> Builder<'a> {
    pub fn new(
        params: &'a BTreeMap<String, f64>,
        lets: &'a BTreeMap<String, String>,
        loader: &'a mut ModelLoader<'a>,
    ) -> Self {
        Builder {
            loader,
            features: FeaturePipeline::new(),
            models: Vec::new(),
            ops: Vec::new(),
            values: Vec::new(),
            names: Vec::new(),
            types: Vec::new(),
            shared: HashMap::new(),
            params,
            lets,
            let_nodes: HashMap::new(),
            compiling: Vec::new(),
        }
    }

    /// Compile the expression `src` of `key`; its node, of type `want`.
    ///
    /// # Errors
    /// A syntax or type error, or an unknown name, in `src` or a `let` it uses.
    pub fn add(&mut self, key: &str, src: &str, want: Ty) -> R<usize> {
        let ast = parse(src).map_err(|error| KeyedError {
            key: key.to_string(),
            error,
        })?;
        let id = self.node(&ast, key)?;
        self.expect(id, want, ast.span, key, "this key")?;
        Ok(id)
    }

    /// Compile every `let` (also those no condition uses), so errors in them show.
    ///
    /// # Errors
    /// As [`Builder::add`].
    pub fn add_lets(&mut self) -> R<()> {
        for name in self.lets.keys() {
            self.let_node(name, (0, 0), "rule.let")?;
        }
        Ok(())
    }

    pub fn finish(self) -> Program {
        let n = self.ops.len();
        let active = (0..n)
            .filter(|&i| !matches!(self.ops[i], Op::Const))
            .collect();
        Program {
            features: self.features,
            models: self.models,
            active,
            position: [0.0, f64::NAN, f64::NAN, f64::NAN, f64::NAN],
            ops: self.ops,
            values: self.values,
            ticked: vec![false; n],
            names: self.names,
            types: self.types,
        }
    }

    fn err<T>(key: &str, span: Span, message: impl Into<String>, fix: impl Into<String>) -> R<T> {
        Err(KeyedError {
            key: key.to_string(),
            error: ExprError::new(span, message, fix),
        })
    }

    fn expect(&self, id: usize, want: Ty, span: Span, key: &str, what: &str) -> R<()> {
        let got = self.types[id];
        if got == want {
            return Ok(());
        }
        let fix = match want {
            Ty::Bool => "compare it, e.g. `rsi(close, 14) < 30`",
            Ty::Num => "use a number here, e.g. `close` or `ema(close, 10)`",
        };
        Self::err(
            key,
            span,
            format!(
                "{what} must be {}, but `{}` is {}",
                want.name(),
                self.names[id],
                got.name()
            ),
            fix,
        )
    }

    /// The node for `name`, shared if it exists.
    fn push(&mut self, name: String, ty: Ty, op: Op, value: f64) -> usize {
        if let Some(&i) = self.shared.get(&name) {
            return i;
        }
        let i = self.ops.len();
        self.ops.push(op);
        self.values.push(value);
        self.names.push(name.clone());
        self.types.push(ty);
        self.shared.insert(name, i);
        i
    }

    fn constant(&mut self, x: f64) -> usize {
        self.push(format!("{x}"), Ty::Num, Op::Const, x)
    }

    fn let_node(&mut self, name: &str, span: Span, key: &str) -> R<usize> {
        if let Some(&i) = self.let_nodes.get(name) {
            return Ok(i);
        }
        let let_key = format!("rule.let.{name}");
        if self.compiling.iter().any(|n| n == name) {
            return Self::err(
                key,
                span,
                format!(
                    "`{name}` is defined through itself ({} -> {name})",
                    self.compiling.join(" -> ")
                ),
                "break the cycle: a let may use only lets that do not use it",
            );
        }
        let src = &self.lets[name];
        let ast = parse(src).map_err(|error| KeyedError {
            key: let_key.clone(),
            error,
        })?;
        self.compiling.push(name.to_string());
        let id = self.node(&ast, &let_key);
        self.compiling.pop();
        let id = id?;
        self.let_nodes.insert(name.to_string(), id);
        Ok(id)
    }

    fn name_node(&mut self, name: &str, span: Span, key: &str) -> R<usize> {
        if let Some((s, canon)) = series(name) {
            return Ok(self.push(canon.to_string(), Ty::Num, Op::Series(s), f64::NAN));
        }
        if let Some(&x) = self.params.get(name) {
            return Ok(self.constant(x));
        }
        if self.lets.contains_key(name) {
            return self.let_node(name, span, key);
        }
        if FUNCTIONS.contains(&name) {
            return Self::err(
                key,
                span,
                format!("`{name}` is a function, not a series"),
                format!("call it: `{name}(...)`; see docs/strategies.md"),
            );
        }
        let known: Vec<&str> = SERIES
            .iter()
            .copied()
            .chain(self.params.keys().map(String::as_str))
            .chain(self.lets.keys().map(String::as_str))
            .collect();
        Self::err(
            key,
            span,
            format!(
                "`{name}` is not a series, a parameter or a let{}",
                did_you_mean(name, &known)
            ),
            format!(
                "use one of the series ({}), or define it under [rule.params] or [rule.let]",
                SERIES.join(", ")
            ),
        )
    }

    fn node(&mut self, ast: &Ast, key: &str) -> R<usize> {
        match &ast.kind {
            AstKind::Num(x) => Ok(self.constant(*x)),
            AstKind::Bool(b) => Ok(self.push(format!("{b}"), Ty::Bool, Op::Const, truth(*b))),
            AstKind::Str(s) => Self::err(
                key,
                ast.span,
                format!("the string \"{s}\" is not a value"),
                "strings are durations given to a function, e.g. sma(close, \"50d\")",
            ),
            AstKind::Name(n) => self.name_node(n, ast.span, key),
            AstKind::Unary(UnOp::Neg, e) => {
                let a = self.node(e, key)?;
                self.expect(a, Ty::Num, e.span, key, "the operand of `-`")?;
                if matches!(self.ops[a], Op::Const) {
                    let x = -self.values[a];
                    return Ok(self.constant(x));
                }
                let name = format!("-{}", self.paren(a));
                Ok(self.push(name, Ty::Num, Op::Neg(a), f64::NAN))
            }
            AstKind::Unary(UnOp::Not, e) => {
                let a = self.node(e, key)?;
                self.expect(a, Ty::Bool, e.span, key, "the operand of `not`")?;
                let name = format!("not {}", self.paren(a));
                Ok(self.push(name, Ty::Bool, Op::Not(a), f64::NAN))
            }
            AstKind::Binary(op, l, r) => self.binary(*op, l, r, key),
            AstKind::Index(x, n) => {
                let a = self.node(x, key)?;
                self.expect(a, Ty::Num, x.span, key, "what `[n]` indexes")?;
                let n = self.count(n, key, "the index", 0)?;
                if n == 0 {
                    return Ok(a);
                }
                let name = format!("{}[{n}]", self.paren(a));
                Ok(self.push(
                    name,
                    Ty::Num,
                    Op::Hist(a, HistKind::Lag, n, VecDeque::with_capacity(n + 1)),
                    f64::NAN,
                ))
            }
            AstKind::Call {
                name,
                name_span,
                args,
            } => self.call(name, *name_span, args, ast.span, key),
        }
    }

    /// `name` of node `a`, in parentheses when it is an operation.
    fn paren(&self, a: usize) -> String {
        let n = &self.names[a];
        if matches!(self.ops[a], Op::Bin(..) | Op::Neg(_) | Op::Not(_)) {
            format!("({n})")
        } else {
            n.clone()
        }
    }

    fn binary(&mut self, op: BinOp, l: &Ast, r: &Ast, key: &str) -> R<usize> {
        let a = self.node(l, key)?;
        let b = self.node(r, key)?;
        let (operand, result) = match op {
            BinOp::And | BinOp::Or => (Ty::Bool, Ty::Bool),
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => (Ty::Num, Ty::Num),
            _ => (Ty::Num, Ty::Bool),
        };
        let what = format!("an operand of `{}`", op.symbol());
        self.expect(a, operand, l.span, key, &what)?;
        self.expect(b, operand, r.span, key, &what)?;
        if matches!(self.ops[a], Op::Const) && matches!(self.ops[b], Op::Const) {
            let x = op.apply(self.values[a], self.values[b]);
            let name = if result == Ty::Bool {
                format!("{}", x != 0.0)
            } else {
                format!("{x}")
            };
            return Ok(self.push(name, result, Op::Const, x));
        }
        let name = format!("{} {} {}", self.paren(a), op.symbol(), self.paren(b));
        Ok(self.push(name, result, Op::Bin(op, a, b), f64::NAN))
    }

    /// A whole-number constant argument of at least `min`.
    fn count(&mut self, ast: &Ast, key: &str, what: &str, min: usize) -> R<usize> {
        let fix =
            format!("write a whole number of at least {min}, e.g. 14, or a [rule.params] name");
        let id = match &ast.kind {
            AstKind::Str(_) => {
                return Self::err(
                    key,
                    ast.span,
                    format!("{what} must be a count of updates, not a duration"),
                    fix,
                )
            }
            _ => self.node(ast, key)?,
        };
        let x = self.values[id];
        if !matches!(self.ops[id], Op::Const) || self.types[id] != Ty::Num {
            return Self::err(
                key,
                ast.span,
                format!("{what} must be a constant number"),
                fix,
            );
        }
        if x.fract() != 0.0 || x < min as f64 || x > 1e7 {
            return Self::err(
                key,
                ast.span,
                format!("{what} must be a whole number of at least {min}, not {x}"),
                fix,
            );
        }
        Ok(x as usize)
    }

    /// A constant number argument.
    fn number(&mut self, ast: &Ast, key: &str, what: &str) -> R<f64> {
        let id = self.node(ast, key)?;
        if !matches!(self.ops[id], Op::Const) || self.types[id] != Ty::Num {
            return Self::err(
                key,
                ast.span,
                format!("{what} must be a constant number"),
                "write a number, e.g. 2, or a [rule.params] name",
            );
        }
        Ok(self.values[id])
    }

    /// A window: a count of updates, or a duration string ("50d").
    fn window(&mut self, ast: &Ast, key: &str) -> R<Result<usize, (Ts, String)>> {
        if let AstKind::Str(s) = &ast.kind {
            return match parse_duration(s) {
                Ok(ns) => Ok(Err((ns, s.clone()))),
                Err(e) => Self::err(
                    key,
                    ast.span,
                    format!("\"{s}\" is not a duration: {e}"),
                    "write a duration such as \"15m\", \"4h\" or \"50d\"",
                ),
            };
        }
        self.count(ast, key, "the window", 1).map(Ok)
    }

    /// A numeric series argument.
    fn series_arg(&mut self, ast: &Ast, key: &str, fname: &str, i: usize) -> R<usize> {
        let id = self.node(ast, key)?;
        self.expect(
            id,
            Ty::Num,
            ast.span,
            key,
            &format!("argument {} of `{fname}`", i + 1),
        )?;
        Ok(id)
    }

    fn arity(name: &str, args: &[Ast], span: Span, key: &str, ok: &[usize], usage: &str) -> R<()> {
        if ok.contains(&args.len()) {
            return Ok(());
        }
        Self::err(
            key,
            span,
            format!(
                "`{name}` takes {} arguments, not {}",
                ok.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" or "),
                args.len()
            ),
            format!("call it as {usage}"),
        )
    }

    fn call(
        &mut self,
        name: &str,
        name_span: Span,
        args: &[Ast],
        span: Span,
        key: &str,
    ) -> R<usize> {
        let usage = usage(name);
        let Some(usage) = usage else {
            let hint = did_you_mean(name, &FUNCTIONS);
            let fix = if series(name).is_some()
                || self.params.contains_key(name)
                || self.lets.contains_key(name)
            {
                format!("`{name}` is a value: write it without parentheses")
            } else {
                "see docs/strategies.md for the functions".to_string()
            };
            return Self::err(
                key,
                name_span,
                format!("`{name}` is not a function{hint}"),
                fix,
            );
        };
        Self::arity(name, args, span, key, usage.0, usage.1)?;
        match name {
            "cross_above" | "cross_below" | "highest" | "lowest" | "change" | "abs" | "min"
            | "max" | "if" => self.combinator(name, args, key),
            "model" => self.model(&args[0], key),
            "feature" => self.feature(&args[0], key),
            _ => self.indicator(name, args, span, key),
        }
    }

    /// `model("spec.toml")`: the model's score, over features shared by every
    /// model of the program.
    fn model(&mut self, arg: &Ast, key: &str) -> R<usize> {
        let AstKind::Str(path) = &arg.kind else {
            return Self::err(
                key,
                arg.span,
                "model takes the path of a model spec as a string",
                "e.g. model(\"models/trend_sentiment.toml\")",
            );
        };
        let label = format!("model(\"{path}\")");
        if let Some(&i) = self.shared.get(&label) {
            return Ok(i);
        }
        let keyed = |e: ModelError| KeyedError {
            key: key.to_string(),
            error: ExprError::new(arg.span, format!("model {}: {}", e.file, e.problem), e.fix),
        };
        let model = (self.loader)(path).map_err(keyed)?;
        let slots = self.features.register_all(&model.spec.features);
        let scorer = model.scorer().map_err(keyed)?;
        self.models.push(ModelNode {
            scorer,
            row: Vec::with_capacity(slots.len()),
            slots,
        });
        let m = self.models.len() - 1;
        Ok(self.push(label, Ty::Num, Op::Model(m), f64::NAN))
    }

    /// `feature("return_10")`: a model feature by its canonical name, computed
    /// by the same code that feeds the models.
    fn feature(&mut self, arg: &Ast, key: &str) -> R<usize> {
        let fix = "name a model feature: return_N, rsi_N, macd_hist_F_S_G, bb_percent_b_N_K, \
                   volume_zscore_N, sentiment_ema_N, time_of_day_sin, time_of_day_cos";
        let AstKind::Str(name) = &arg.kind else {
            return Self::err(
                key,
                arg.span,
                "feature takes a feature name as a string",
                fix,
            );
        };
        let Some(spec) = feature_spec(name) else {
            return Self::err(
                key,
                arg.span,
                format!("\"{name}\" is not a model feature"),
                fix,
            );
        };
        if let Err(why) = spec.check() {
            return Self::err(key, arg.span, why, fix);
        }
        let slot = self.features.register(&spec);
        Ok(self.push(
            format!("feature(\"{}\")", spec.name()),
            Ty::Num,
            Op::Feature(slot),
            f64::NAN,
        ))
    }

    /// The indicator functions of [`FUNCTIONS`].
    fn indicator(&mut self, name: &str, args: &[Ast], span: Span, key: &str) -> R<usize> {
        match name {
            "sma" | "ema" => {
                let x = self.series_arg(&args[0], key, name, 0)?;
                let w = self.window(&args[1], key)?;
                let (ind, wtext) = match (name, w) {
                    ("sma", Ok(n)) => (Indicator::Sma(Sma::new(n)), n.to_string()),
                    (_, Ok(n)) => (Indicator::Ema(Ema::new(n)), n.to_string()),
                    ("sma", Err((ns, s))) => {
                        (Indicator::TimeSma(TimeSma::new(ns)), format!("\"{s}\""))
                    }
                    (_, Err((ns, s))) => (Indicator::TimeEma(TimeEma::new(ns)), format!("\"{s}\"")),
                };
                let label = format!("{name}({}, {wtext})", self.names[x]);
                Ok(self.push(label, Ty::Num, Op::Ind(x, ind), f64::NAN))
            }
            "sentiment_ema" => {
                let x = self.name_node("sentiment", span, key)?;
                let w = self.window(&args[0], key)?;
                let (ind, wtext) = match w {
                    Ok(n) => (Indicator::Ema(Ema::new(n)), n.to_string()),
                    Err((ns, s)) => (Indicator::TimeEma(TimeEma::new(ns)), format!("\"{s}\"")),
                };
                Ok(self.push(
                    format!("ema(sentiment, {wtext})"),
                    Ty::Num,
                    Op::Ind(x, ind),
                    f64::NAN,
                ))
            }
            "rsi" | "zscore" => {
                let x = self.series_arg(&args[0], key, name, 0)?;
                let n = self.count(
                    &args[1],
                    key,
                    "the period",
                    if name == "rsi" { 1 } else { 2 },
                )?;
                let ind = if name == "rsi" {
                    Indicator::Rsi(Rsi::new(n))
                } else {
                    Indicator::ZScore(ZScore::new(n))
                };
                let label = format!("{name}({}, {n})", self.names[x]);
                Ok(self.push(label, Ty::Num, Op::Ind(x, ind), f64::NAN))
            }
            _ => self.band_indicator(name, args, span, key),
        }
    }

    /// MACD, Bollinger bands, ATR and VWAP.
    fn band_indicator(&mut self, name: &str, args: &[Ast], span: Span, key: &str) -> R<usize> {
        match name {
            "macd" | "macd_signal" | "macd_hist" => {
                let x = self.series_arg(&args[0], key, name, 0)?;
                let (f, s, g) = if args.len() == 4 {
                    (
                        self.count(&args[1], key, "the fast period", 1)?,
                        self.count(&args[2], key, "the slow period", 2)?,
                        self.count(&args[3], key, "the signal period", 1)?,
                    )
                } else {
                    (12, 26, 9)
                };
                if f >= s {
                    return Self::err(
                        key,
                        span,
                        format!("the fast period ({f}) must be shorter than the slow one ({s})"),
                        "e.g. macd(close, 12, 26, 9)",
                    );
                }
                let part = match name {
                    "macd" => 0,
                    "macd_signal" => 1,
                    _ => 2,
                };
                let label = format!("{name}({}, {f}, {s}, {g})", self.names[x]);
                Ok(self.push(
                    label,
                    Ty::Num,
                    Op::Ind(x, Indicator::Macd(Macd::new(f, s, g), part)),
                    f64::NAN,
                ))
            }
            "bb_upper" | "bb_middle" | "bb_lower" | "bb_percent_b" => {
                let x = self.series_arg(&args[0], key, name, 0)?;
                let n = self.count(&args[1], key, "the period", 2)?;
                let k = if args.len() == 3 {
                    self.number(&args[2], key, "k")?
                } else {
                    2.0
                };
                if !(k > 0.0 && k.is_finite()) {
                    return Self::err(
                        key,
                        args[2].span,
                        format!("k must be positive, not {k}"),
                        "e.g. bb_upper(close, 20, 2)",
                    );
                }
                let part = match name {
                    "bb_upper" => 0,
                    "bb_middle" => 1,
                    "bb_lower" => 2,
                    _ => 3,
                };
                let label = format!("{name}({}, {n}, {k})", self.names[x]);
                Ok(self.push(
                    label,
                    Ty::Num,
                    Op::Ind(x, Indicator::Bollinger(Bollinger::new(n, k), part)),
                    f64::NAN,
                ))
            }
            "atr" => {
                let n = self.count(&args[0], key, "the period", 1)?;
                let h = self.name_node("high", span, key)?;
                let l = self.name_node("low", span, key)?;
                let c = self.name_node("close", span, key)?;
                Ok(self.push(
                    format!("atr({n})"),
                    Ty::Num,
                    Op::Atr([h, l, c], Atr::new(n)),
                    f64::NAN,
                ))
            }
            "vwap" => {
                let p = self.name_node("close", span, key)?;
                let q = self.name_node("volume", span, key)?;
                let (vw, label) = match args.first() {
                    None => (Vwap::new(), "vwap()".to_string()),
                    Some(a) => match self.window(a, key)? {
                        Err((ns, s)) => (Vwap::windowed(ns), format!("vwap(\"{s}\")")),
                        Ok(_) => {
                            return Self::err(
                                key,
                                a.span,
                                "vwap's window is a duration",
                                "e.g. vwap(\"1d\"), or vwap() since the start",
                            )
                        }
                    },
                };
                Ok(self.push(label, Ty::Num, Op::Vwap([p, q], vw), f64::NAN))
            }
            _ => unreachable!("every function with a usage line is handled"),
        }
    }

    /// Crosses, history and arithmetic functions of [`FUNCTIONS`].
    fn combinator(&mut self, name: &str, args: &[Ast], key: &str) -> R<usize> {
        match name {
            "cross_above" | "cross_below" => {
                let a = self.series_arg(&args[0], key, name, 0)?;
                let b = self.series_arg(&args[1], key, name, 1)?;
                let label = format!("{name}({}, {})", self.names[a], self.names[b]);
                Ok(self.push(
                    label,
                    Ty::Bool,
                    Op::Cross(a, b, name == "cross_above", None),
                    f64::NAN,
                ))
            }
            "highest" | "lowest" | "change" => {
                let x = self.series_arg(&args[0], key, name, 0)?;
                let n = self.count(&args[1], key, "the count", 1)?;
                let kind = match name {
                    "highest" => HistKind::Highest,
                    "lowest" => HistKind::Lowest,
                    _ => HistKind::Change,
                };
                let label = format!("{name}({}, {n})", self.names[x]);
                Ok(self.push(
                    label,
                    Ty::Num,
                    Op::Hist(x, kind, n, VecDeque::with_capacity(n + 1)),
                    f64::NAN,
                ))
            }
            "abs" => {
                let x = self.series_arg(&args[0], key, name, 0)?;
                Ok(self.push(
                    format!("abs({})", self.names[x]),
                    Ty::Num,
                    Op::Abs(x),
                    f64::NAN,
                ))
            }
            "min" | "max" => {
                let a = self.series_arg(&args[0], key, name, 0)?;
                let b = self.series_arg(&args[1], key, name, 1)?;
                let label = format!("{name}({}, {})", self.names[a], self.names[b]);
                let op = if name == "min" {
                    Op::Min(a, b)
                } else {
                    Op::Max(a, b)
                };
                Ok(self.push(label, Ty::Num, op, f64::NAN))
            }
            "if" => {
                let c = self.node(&args[0], key)?;
                self.expect(c, Ty::Bool, args[0].span, key, "the condition of `if`")?;
                let a = self.node(&args[1], key)?;
                let b = self.node(&args[2], key)?;
                let ty = self.types[a];
                self.expect(
                    b,
                    ty,
                    args[2].span,
                    key,
                    "the third argument of `if` (like the second)",
                )?;
                let label = format!(
                    "if({}, {}, {})",
                    self.names[c], self.names[a], self.names[b]
                );
                Ok(self.push(label, ty, Op::If(c, a, b), f64::NAN))
            }
            _ => unreachable!("every function with a usage line is handled"),
        }
    }
}

/// The feature a canonical name (`FeatureSpec::name`) stands for.
fn feature_spec(name: &str) -> Option<crate::features::FeatureSpec> {
    use crate::features::{Cycle, FeatureSpec as F};
    let nums =
        |rest: &str| -> Option<Vec<usize>> { rest.split('_').map(|x| x.parse().ok()).collect() };
    Some(match name {
        "time_of_day_sin" => F::TimeOfDay {
            component: Cycle::Sin,
        },
        "time_of_day_cos" => F::TimeOfDay {
            component: Cycle::Cos,
        },
        _ => {
            if let Some(r) = name.strip_prefix("bb_percent_b_") {
                let (p, k) = r.split_once('_')?;
                F::BbPercentB {
                    period: p.parse().ok()?,
                    k: k.parse().ok()?,
                }
            } else if let Some(r) = name.strip_prefix("macd_hist_") {
                let [fast, slow, signal] = nums(r)?[..] else {
                    return None;
                };
                F::MacdHist { fast, slow, signal }
            } else if let Some(r) = name.strip_prefix("volume_zscore_") {
                F::VolumeZscore {
                    period: r.parse().ok()?,
                }
            } else if let Some(r) = name.strip_prefix("sentiment_ema_") {
                F::SentimentEma {
                    period: r.parse().ok()?,
                }
            } else if let Some(r) = name.strip_prefix("return_") {
                F::ReturnN { n: r.parse().ok()? }
            } else if let Some(r) = name.strip_prefix("rsi_") {
                F::Rsi {
                    period: r.parse().ok()?,
                }
            } else {
                return None;
            }
        }
    })
}

/// Argument counts and a usage line per function.
fn usage(name: &str) -> Option<(&'static [usize], &'static str)> {
    Some(match name {
        "sma" => (&[2], "sma(close, 20) or sma(close, \"50d\")"),
        "ema" => (&[2], "ema(close, 10) or ema(close, \"1h\")"),
        "sentiment_ema" => (&[1], "sentiment_ema(3)"),
        "rsi" => (&[2], "rsi(close, 14)"),
        "zscore" => (&[2], "zscore(close, 20)"),
        "macd" => (&[1, 4], "macd(close) or macd(close, 12, 26, 9)"),
        "macd_signal" => (&[1, 4], "macd_signal(close, 12, 26, 9)"),
        "macd_hist" => (&[1, 4], "macd_hist(close, 12, 26, 9)"),
        "bb_upper" => (&[2, 3], "bb_upper(close, 20, 2)"),
        "bb_middle" => (&[2, 3], "bb_middle(close, 20, 2)"),
        "bb_lower" => (&[2, 3], "bb_lower(close, 20, 2)"),
        "bb_percent_b" => (&[2, 3], "bb_percent_b(close, 20, 2)"),
        "atr" => (&[1], "atr(14)"),
        "vwap" => (&[0, 1], "vwap() or vwap(\"1d\")"),
        "cross_above" => (&[2], "cross_above(ema(close, 10), ema(close, 30))"),
        "cross_below" => (&[2], "cross_below(ema(close, 10), ema(close, 30))"),
        "highest" => (&[2], "highest(high, 20)"),
        "lowest" => (&[2], "lowest(low, 20)"),
        "change" => (&[2], "change(close, 5)"),
        "abs" => (&[1], "abs(change(close, 1))"),
        "min" => (&[2], "min(open, close)"),
        "max" => (&[2], "max(open, close)"),
        "if" => (&[3], "if(close > open, high, low)"),
        "model" => (&[1], "model(\"models/trend_sentiment.toml\")"),
        "feature" => (&[1], "feature(\"return_10\")"),
        _ => return None,
    })
}

/// "; did you mean `x`?" for the closest of `known` within two edits, or "".
pub fn did_you_mean(name: &str, known: &[&str]) -> String {
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        let d = edit_distance(name, k);
        if d <= 2.max(name.len() / 4) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
