//! Parameter sweeps: one backtest per point of a grid over `[rule]` parameters,
//! run in parallel over one shared copy of the events, ranked by a metric.
//!
//! A grid is `key=values` items separated by commas: `fast=5..20:5,slow=50,100`.
//! Values are a range `a..b:step` (inclusive; step 1 when omitted; decimals step
//! exactly) or a comma list; a comma item without `=` adds a value to the key
//! before it. A key names a `[rule]` parameter (`fast` or `rule.fast`) of every
//! strategy whose rule has it, or of one strategy (`ma_cross.fast`,
//! `ma_cross.rule.fast`); of an expression rule (`kind = "expr"`) or a custom
//! kind, a key names one of its `[rule.params]`. Sets are the cartesian product in the order the keys are
//! written (the first key varies slowest); that order numbers them and breaks
//! ties in the ranking. A set the strategy checks refuse (e.g. `fast` not shorter
//! than `slow`) is skipped with its reason.
//!
//! Each set runs the whole configuration (every strategy file) through
//! [`backtest::run_shared`]; its metrics are those of the portfolio of all
//! strategies: total return and fills and fees from the report totals; Sharpe and
//! Sortino from the summed daily closes; max drawdown from the summed equity
//! series. With one strategy they are exactly that strategy's figures in
//! `report.json` (`docs/metrics.md`). Results do not depend on `--jobs`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use rust_decimal::Decimal;

use crate::backtest::{self, Backtest, Event};
use crate::config::{self, Loaded, RuleConfig, StrategyConfig};
use crate::domain::Ts;
use crate::report::{drawdown_stats, Report};
use crate::stats::{self, Mark};

/// Errors in a sweep's grid, named with the key and the fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SweepError {
    #[error("--grid {item:?}: {problem}; {fix}")]
    Grid {
        item: String,
        problem: String,
        fix: String,
    },
    #[error("--grid key {key:?}: {problem}; {fix}")]
    Key {
        key: String,
        problem: String,
        fix: String,
    },
}

fn grid_err(item: &str, problem: impl Into<String>, fix: &str) -> SweepError {
    SweepError::Grid {
        item: item.to_string(),
        problem: problem.into(),
        fix: fix.to_string(),
    }
}

/// The parameters of each rule kind, as its strategy files spell them.
pub fn rule_keys(rule: &RuleConfig) -> Vec<&str> {
    let fixed: &[&str] = match rule {
        // An expression rule's parameters are its `[rule.params]` names.
        RuleConfig::Expr(r) => return r.params.keys().map(String::as_str).collect(),
        // A custom kind's parameters are the `[rule.params]` its file gives.
        RuleConfig::Custom(r) => return r.params.keys().map(String::as_str).collect(),
        RuleConfig::MaCrossover(_) => &["fast", "slow", "average"],
        RuleConfig::RsiMeanReversion(_) => &["period", "oversold", "overbought"],
        RuleConfig::BollingerBreakout(_) => &["period", "k"],
        RuleConfig::SentimentMomentum(_) => &["smoothing", "enter", "exit", "trend"],
        RuleConfig::Model(_) | RuleConfig::Ensemble(_) => &[],
    };
    fixed.to_vec()
}

/// One grid value: the TOML value given to the strategy file, and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub text: String,
    pub toml: toml::Value,
}

impl Value {
    /// The value of `s` as a grid gives it: an integer, a float, a boolean or
    /// else a string.
    pub fn parse(s: &str) -> Value {
        let toml = if let Ok(i) = s.parse::<i64>() {
            toml::Value::Integer(i)
        } else if let Ok(f) = s.parse::<f64>() {
            toml::Value::Float(f)
        } else if let Ok(b) = s.parse::<bool>() {
            toml::Value::Boolean(b)
        } else {
            toml::Value::String(s.to_string())
        };
        Value {
            text: s.to_string(),
            toml,
        }
    }
}

/// One key of the grid and its values, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The key as written (`fast`, `rule.fast`, `ma_cross.fast`).
    pub key: String,
    /// The strategy it is scoped to, if any.
    pub strategy: Option<String>,
    /// The `[rule]` parameter.
    pub param: String,
    pub values: Vec<Value>,
}

/// Most sets a grid may have.
pub const MAX_SETS: usize = 100_000;

/// Parse `--grid` arguments (each one or more comma-separated items).
pub fn parse_grid(specs: &[String]) -> Result<Vec<Axis>, SweepError> {
    let mut axes: Vec<Axis> = Vec::new();
    for spec in specs {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, vals) = match item.split_once('=') {
                Some((k, v)) => (Some(k.trim()), v.trim()),
                None => (None, item),
            };
            if let Some(key) = key {
                if key.is_empty() {
                    return Err(grid_err(
                        item,
                        "no key before `=`",
                        "write KEY=VALUES, e.g. fast=5..20:5",
                    ));
                }
                if axes.iter().any(|a| a.key == key) {
                    return Err(grid_err(
                        item,
                        format!("{key} is given twice"),
                        "list all its values once, e.g. fast=5,10,20",
                    ));
                }
                let (strategy, param) = split_key(key);
                axes.push(Axis {
                    key: key.to_string(),
                    strategy,
                    param,
                    values: Vec::new(),
                });
            }
            let Some(axis) = axes.last_mut() else {
                return Err(grid_err(
                    item,
                    "a value without a key",
                    "start with KEY=VALUES, e.g. fast=5..20:5",
                ));
            };
            axis.values.extend(parse_values(item, vals)?);
        }
    }
    if axes.is_empty() {
        return Err(grid_err(
            "",
            "the grid is empty",
            "pass e.g. --grid 'fast=5..20:5,slow=50,100'",
        ));
    }
    for a in &axes {
        let mut seen = BTreeSet::new();
        if let Some(v) = a.values.iter().find(|v| !seen.insert(v.text.clone())) {
            return Err(grid_err(
                &a.key,
                format!("value {} is listed twice", v.text),
                "list each value once",
            ));
        }
    }
    let sets = axes
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
        .unwrap_or(usize::MAX);
    if sets > MAX_SETS {
        return Err(grid_err(
            &specs.join(","),
            format!("{sets} parameter sets"),
            &format!("use at most {MAX_SETS}: coarser steps or fewer keys"),
        ));
    }
    Ok(axes)
}

/// `fast`, `rule.fast` -> (None, fast); `s.fast`, `s.rule.fast` -> (Some(s), fast).
pub fn split_key(key: &str) -> (Option<String>, String) {
    match key.rsplit_once('.') {
        None => (None, key.to_string()),
        Some((prefix, param)) => {
            let prefix = if prefix == "rule" {
                ""
            } else {
                prefix.strip_suffix(".rule").unwrap_or(prefix)
            };
            (
                (!prefix.is_empty()).then(|| prefix.to_string()),
                param.to_string(),
            )
        }
    }
}

/// One value, or the values of an inclusive range `a..b[:step]`.
fn parse_values(item: &str, s: &str) -> Result<Vec<Value>, SweepError> {
    if s.is_empty() {
        return Err(grid_err(
            item,
            "no value",
            "give a value, a list (5,10) or a range (5..20:5)",
        ));
    }
    let Some((a, rest)) = s.split_once("..") else {
        return Ok(vec![Value::parse(s)]);
    };
    let (b, step) = rest.split_once(':').unwrap_or((rest, "1"));
    let num = |x: &str| {
        x.trim().parse::<Decimal>().map_err(|_| {
            grid_err(
                item,
                format!("{x:?} is not a number"),
                "ranges are numeric: a..b:step, e.g. 5..20:5 or 1.5..2.5:0.5",
            )
        })
    };
    let (a, b, step) = (num(a)?, num(b)?, num(step)?);
    if step <= Decimal::ZERO {
        return Err(grid_err(
            item,
            "the step is not positive",
            "use a positive step, e.g. 5..20:5",
        ));
    }
    if b < a {
        return Err(grid_err(
            item,
            "the range ends before it starts",
            "write the smaller bound first, e.g. 5..20",
        ));
    }
    let count = ((b - a) / step).floor() + Decimal::ONE;
    if count > Decimal::from(MAX_SETS) {
        return Err(grid_err(
            item,
            format!("{count} values"),
            "use a coarser step",
        ));
    }
    let mut out = Vec::new();
    let mut v = a;
    while v <= b {
        out.push(Value::parse(&v.normalize().to_string()));
        v += step;
    }
    Ok(out)
}

/// One parameter set: the value of each axis, in axis order.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSet {
    /// Position in the expansion (the tie-break of the ranking).
    pub index: usize,
    pub values: Vec<Value>,
}

impl ParamSet {
    /// The set numbered `index` in [`expand`]'s order (the first axis varies
    /// slowest), without expanding the grid; `None` past its end.
    pub fn at(axes: &[Axis], index: usize) -> Option<ParamSet> {
        let mut rest = index;
        let mut values = vec![None; axes.len()];
        for (slot, a) in values.iter_mut().zip(axes).rev() {
            let n = a.values.len().max(1);
            *slot = a.values.get(rest % n).cloned();
            rest /= n;
        }
        (rest == 0)
            .then(|| values.into_iter().collect::<Option<Vec<Value>>>())
            .flatten()
            .map(|values| ParamSet { index, values })
    }
}

/// The cartesian product of the axes; the first axis varies slowest.
pub fn expand(axes: &[Axis]) -> Vec<ParamSet> {
    let mut sets = vec![Vec::new()];
    for a in axes {
        sets = sets
            .into_iter()
            .flat_map(|prefix: Vec<Value>| {
                a.values.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push(v.clone());
                    p
                })
            })
            .collect();
    }
    sets.into_iter()
        .enumerate()
        .map(|(index, values)| ParamSet { index, values })
        .collect()
}

/// The strategy files of a configuration, read again so that grid values can be
/// written into their `[rule]` tables and checked exactly as at start-up.
#[derive(Debug, Clone)]
pub struct Sweep {
    base: Loaded,
    /// Per strategy (configuration order): file name and parsed TOML.
    files: Vec<(String, toml::Table)>,
    pub axes: Vec<Axis>,
    /// Per axis: the indices of the strategies it sets.
    targets: Vec<Vec<usize>>,
}

impl Sweep {
    /// Check the axes against the configured strategies: every key must name a
    /// parameter of at least one strategy's rule (or of the strategy it names).
    pub fn new(cfg: &Loaded, axes: Vec<Axis>) -> anyhow::Result<Sweep> {
        let mut texts = Vec::new();
        for path in &cfg.app.strategies {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading strategy file {path}"))?;
            texts.push((path.clone(), text));
        }
        Sweep::from_texts(cfg, &texts, axes)
    }

    /// [`Sweep::new`] over the strategy files' texts (file name, TOML), in
    /// configuration order: what a sweep worker gets in its task.
    pub fn from_texts(
        cfg: &Loaded,
        texts: &[(String, String)],
        axes: Vec<Axis>,
    ) -> anyhow::Result<Sweep> {
        let mut files = Vec::new();
        for (path, text) in texts {
            let table: toml::Table = text
                .parse()
                .with_context(|| format!("parsing strategy file {path}"))?;
            files.push((path.clone(), table));
        }
        anyhow::ensure!(
            files.len() == cfg.strategies.len(),
            "the strategy files changed while loading"
        );
        let mut targets = Vec::new();
        for a in &axes {
            targets.push(resolve(&cfg.strategies, a)?);
        }
        Ok(Sweep {
            base: cfg.clone(),
            files,
            axes,
            targets,
        })
    }

    /// The strategy files as (file name, TOML text), in configuration order:
    /// [`Sweep::from_texts`] of them gives this sweep again.
    pub fn file_texts(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.files
            .iter()
            .map(|(f, t)| Ok((f.clone(), toml::to_string(t)?)))
            .collect()
    }

    /// The configuration every set starts from.
    pub fn base(&self) -> &Loaded {
        &self.base
    }

    /// The configuration of one set, checked like a strategy file at start-up;
    /// `Err` says why the set is refused.
    pub fn config(&self, set: &ParamSet) -> Result<Loaded, String> {
        let mut tables: Vec<Option<toml::Table>> = vec![None; self.files.len()];
        for ((axis, targets), value) in self.axes.iter().zip(&self.targets).zip(&set.values) {
            for &i in targets {
                let t = tables[i].get_or_insert_with(|| self.files[i].1.clone());
                let mut rule = t
                    .get_mut("rule")
                    .and_then(toml::Value::as_table_mut)
                    .ok_or_else(|| format!("{} has no [rule] table", self.files[i].0))?;
                // An expression rule takes its parameters from [rule.params].
                if matches!(
                    self.base.strategies[i].rule,
                    RuleConfig::Expr(_) | RuleConfig::Custom(_)
                ) {
                    rule = rule
                        .get_mut("params")
                        .and_then(toml::Value::as_table_mut)
                        .ok_or_else(|| format!("{} has no [rule.params] table", self.files[i].0))?;
                }
                rule.insert(axis.param.clone(), value.toml.clone());
            }
        }
        let mut cfg = self.base.clone();
        for (i, t) in tables.into_iter().enumerate() {
            if let Some(t) = t {
                let text = toml::to_string(&t).map_err(|e| e.to_string())?;
                let s: StrategyConfig =
                    config::parse_strategy_with(&text, &self.files[i].0, &mut cfg.models)
                        .map_err(|e| e.to_string().replace('\n', " "))?;
                cfg.strategies[i] = s;
            }
        }
        Ok(cfg)
    }
}

/// The strategies an axis sets.
fn resolve(strategies: &[StrategyConfig], a: &Axis) -> Result<Vec<usize>, SweepError> {
    let describe = || {
        strategies
            .iter()
            .map(|s| {
                format!(
                    "{} ({}): {}",
                    s.name,
                    s.rule.kind(),
                    rule_keys(&s.rule).join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    match &a.strategy {
        Some(name) => {
            let Some(i) = strategies.iter().position(|s| &s.name == name) else {
                return Err(SweepError::Key {
                    key: a.key.clone(),
                    problem: format!("no configured strategy is named {name:?}"),
                    fix: format!(
                        "use KEY or STRATEGY.KEY with one of: {}",
                        strategies
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            };
            if !rule_keys(&strategies[i].rule).contains(&a.param.as_str()) {
                return Err(SweepError::Key {
                    key: a.key.clone(),
                    problem: format!("the [rule] of {name} has no parameter {:?}", a.param),
                    fix: format!("use one of its [rule] keys: {}", describe()),
                });
            }
            Ok(vec![i])
        }
        None => {
            let hit: Vec<usize> = strategies
                .iter()
                .enumerate()
                .filter(|(_, s)| rule_keys(&s.rule).contains(&a.param.as_str()))
                .map(|(i, _)| i)
                .collect();
            if hit.is_empty() {
                return Err(SweepError::Key {
                    key: a.key.clone(),
                    problem: "no configured strategy has this [rule] parameter".into(),
                    fix: format!(
                        "use one of the [rule] keys (optionally as STRATEGY.KEY): {}",
                        describe()
                    ),
                });
            }
            Ok(hit)
        }
    }
}

// ---------------------------------------------------------------------------
// Running and ranking

/// What a sweep ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Metric {
    /// Total return, higher first.
    #[value(name = "return", alias = "total_return")]
    TotalReturn,
    /// Sharpe ratio of daily returns, higher first.
    Sharpe,
    /// Sortino ratio of daily returns, higher first.
    Sortino,
    /// Max drawdown of the equity series, lower first.
    #[value(name = "max_drawdown", alias = "drawdown")]
    MaxDrawdown,
}

/// The metrics of one parameter set.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub set: ParamSet,
    pub total_return: Decimal,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub max_drawdown: Decimal,
    pub fills: u64,
    pub fees: Decimal,
}

impl Row {
    /// The value `metric` ranks by, as text (`n/a` when it is undefined).
    pub fn shown(&self, metric: Metric) -> String {
        let ratio = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
        match metric {
            Metric::TotalReturn => self.total_return.round_dp(4).to_string(),
            Metric::Sharpe => ratio(self.sharpe),
            Metric::Sortino => ratio(self.sortino),
            Metric::MaxDrawdown => self.max_drawdown.round_dp(4).to_string(),
        }
    }
}

impl Metric {
    /// `row`'s value of this metric as a score where higher is better
    /// (drawdown negated); `None` when undefined. What a search optimises.
    pub fn score(self, row: &Row) -> Option<f64> {
        use rust_decimal::prelude::ToPrimitive;
        let s = match self {
            Metric::TotalReturn => row.total_return.to_f64(),
            Metric::Sharpe => row.sharpe,
            Metric::Sortino => row.sortino,
            Metric::MaxDrawdown => row.max_drawdown.to_f64().map(|d| -d),
        };
        s.filter(|v| v.is_finite())
    }

    /// The name `--metric` takes.
    pub fn name(self) -> &'static str {
        match self {
            Metric::TotalReturn => "return",
            Metric::Sharpe => "sharpe",
            Metric::Sortino => "sortino",
            Metric::MaxDrawdown => "max_drawdown",
        }
    }
}

/// The result of a sweep: ranked rows and the sets that were refused.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub axes: Vec<Axis>,
    pub metric: Metric,
    pub rows: Vec<Row>,
    pub skipped: Vec<(ParamSet, String)>,
}

/// The portfolio metrics of a backtest (see the module docs).
pub fn metrics(set: ParamSet, bt: &Backtest) -> Row {
    let report = Report::new(bt);
    let (start, end) = (bt.start.unwrap_or(0), bt.end.unwrap_or(0));
    let curves: Vec<Vec<(Ts, Decimal)>> = bt
        .summary
        .strategies
        .iter()
        .map(|s| bt.collector.series(&s.name, start, end, s.equity))
        .collect();
    let portfolio = portfolio_series(&curves);
    let dd = drawdown_stats(&portfolio);
    // The daily returns of the summed equity (its marks after the starting cash).
    let marks: Vec<Mark> = portfolio
        .iter()
        .skip(1)
        .map(|&(ts, equity)| Mark {
            ts,
            equity,
            exposed: false,
        })
        .collect();
    let rs = stats::compute(report.total.starting_cash, &marks, &[]);
    Row {
        set,
        total_return: report.total.total_return,
        sharpe: rs.sharpe_qs,
        sortino: rs.sortino_qs,
        max_drawdown: dd.max_drawdown,
        fills: report.total.fills,
        fees: report.total.fees,
    }
}

/// The sum of the strategies' equity curves: a point at every point of any of
/// them (in `(ts, strategy, position)` order), each strategy at its latest value.
/// With one strategy, its own curve.
fn portfolio_series(curves: &[Vec<(Ts, Decimal)>]) -> Vec<(Ts, Decimal)> {
    let mut steps: Vec<(Ts, usize, usize)> = curves
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.iter().enumerate().map(move |(k, p)| (p.0, i, k)))
        .collect();
    steps.sort_unstable();
    let mut now: Vec<Decimal> = curves
        .iter()
        .map(|c| c.first().map_or(Decimal::ZERO, |p| p.1))
        .collect();
    steps
        .into_iter()
        .map(|(ts, i, k)| {
            now[i] = curves[i][k].1;
            (ts, now.iter().copied().sum())
        })
        .collect()
}

/// Run every set over `events` on `jobs` threads and rank the rows by `metric`.
pub fn run(sweep: &Sweep, events: &[Event], metric: Metric, jobs: usize) -> Outcome {
    let sets = expand(&sweep.axes);
    let mut skipped = Vec::new();
    let mut work = Vec::new();
    for set in sets {
        match sweep.config(&set) {
            Ok(cfg) => work.push((set, cfg)),
            Err(why) => skipped.push((set, why)),
        }
    }
    let bar = backtest::sets_bar(work.len());
    let done = run_sets(&work, events, jobs, &bar);
    bar.finish_and_clear();
    outcome(sweep, metric, done, skipped)
}

/// The outcome of the rows that ran (`Err`: a set whose backtest failed, and
/// why), ranked by `metric`, with the sets refused before running.
pub fn outcome(
    sweep: &Sweep,
    metric: Metric,
    done: Vec<Result<Row, (ParamSet, String)>>,
    mut skipped: Vec<(ParamSet, String)>,
) -> Outcome {
    let (mut rows, mut failed) = (Vec::new(), Vec::new());
    for r in done {
        match r {
            Ok(row) => rows.push(row),
            Err(e) => failed.push(e),
        }
    }
    skipped.append(&mut failed);
    skipped.sort_by_key(|(s, _)| s.index);
    rank(&mut rows, metric);
    Outcome {
        axes: sweep.axes.clone(),
        metric,
        rows,
        skipped,
    }
}

/// Backtest each (set, configuration) over `events` on `jobs` threads; one
/// result per set, in the order of `work`.
pub fn run_sets(
    work: &[(ParamSet, Loaded)],
    events: &[Event],
    jobs: usize,
    bar: &indicatif::ProgressBar,
) -> Vec<Result<Row, (ParamSet, String)>> {
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(work.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(work.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((set, cfg)) = work.get(i) else { break };
                let row = backtest::run_shared(cfg, events, false)
                    .map(|bt| metrics(set.clone(), &bt))
                    .map_err(|e| (set.clone(), e.to_string()));
                done.lock().expect("no worker panicked").push((i, row));
                bar.inc(1);
            });
        }
    });
    let mut done = done.into_inner().expect("no worker panicked");
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Walk-forward windows: `train=30d,test=10d` (see [`walk_forward`]).
pub fn parse_walk_forward(s: &str) -> Result<(Ts, Ts), String> {
    let (mut train, mut test) = (None, None);
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KEY=DURATION"))?;
        let d = crate::config::parse_duration(v.trim())?;
        match k.trim() {
            "train" => train = Some(d),
            "test" => test = Some(d),
            other => return Err(format!("unknown key {other:?} (use train and test)")),
        }
    }
    match (train, test) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err("give both windows, e.g. train=30d,test=10d".into()),
    }
}

/// One walk-forward fold: the best set on the train window, and how that set
/// did on the test window that follows it.
#[derive(Debug, Clone)]
pub struct Fold {
    pub index: usize,
    /// `[from, to)` in event time.
    pub train: (Ts, Ts),
    pub test: (Ts, Ts),
    pub best: Row,
    pub test_row: Row,
}

/// Walk-forward analysis: folds start at the first event and step by `test`;
/// fold `k` sweeps every set over `[start + k*test, +train)` (or, with
/// `search`, runs that search over them, with the same options and seed in
/// every fold), takes the best set by `metric`, and runs it alone over the next
/// `test` of event time. Each window is a fresh backtest (indicators warm up
/// inside it). Folds whose test window starts after the last event are not run.
pub fn walk_forward(
    sweep: &Sweep,
    events: &[Event],
    metric: Metric,
    jobs: usize,
    (train, test): (Ts, Ts),
    search: Option<crate::optimise::SearchOptions>,
) -> Vec<Fold> {
    let timed = || events.iter().filter(|e| e.ts != Ts::MIN).map(|e| e.ts);
    let (Some(first), Some(last)) = (timed().min(), timed().max()) else {
        return Vec::new();
    };
    let window = |a: Ts, b: Ts| -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.ts >= a && e.ts < b)
            .cloned()
            .collect()
    };
    let mut folds = Vec::new();
    for k in 0.. {
        let train_from = first + k as Ts * test;
        let test_from = train_from + train;
        if test_from > last {
            break;
        }
        let test_to = test_from + test;
        let train_events = window(train_from, test_from);
        let outcome = match search {
            Some(opts) => crate::optimise::run_local(sweep, &train_events, metric, jobs, opts).0,
            None => run(sweep, &train_events, metric, jobs),
        };
        drop(train_events);
        let Some(best) = outcome.rows.into_iter().next() else {
            continue;
        };
        let cfg = sweep
            .config(&best.set)
            .expect("the set already ran on the train window");
        let bt = backtest::run_shared(&cfg, &window(test_from, test_to), false)
            .expect("the set already ran on the train window");
        let test_row = metrics(best.set.clone(), &bt);
        folds.push(Fold {
            index: k,
            train: (train_from, test_from),
            test: (test_from, test_to),
            best,
            test_row,
        });
    }
    folds
}

/// `walk_forward.csv`: one row per fold.
pub fn write_walk_forward(axes: &[Axis], folds: &[Fold], path: &Path) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    let mut header: Vec<String> = [
        "fold",
        "train_from",
        "train_to",
        "test_from",
        "test_to",
        "set",
    ]
    .map(String::from)
    .to_vec();
    header.extend(axes.iter().map(|a| a.key.clone()));
    header.extend(
        [
            "train_total_return",
            "train_sharpe",
            "test_total_return",
            "test_sharpe",
            "test_sortino",
            "test_max_drawdown",
            "test_fills",
            "test_fees",
        ]
        .map(String::from),
    );
    w.write_record(&header)?;
    for f in folds {
        let ts = crate::wire::format_ts;
        let mut rec = vec![
            f.index.to_string(),
            ts(f.train.0),
            ts(f.train.1),
            ts(f.test.0),
            ts(f.test.1),
            f.best.set.index.to_string(),
        ];
        rec.extend(f.best.set.values.iter().map(|v| v.text.clone()));
        let t = &f.test_row;
        rec.extend([
            f.best.total_return.normalize().to_string(),
            ratio(f.best.sharpe),
            t.total_return.normalize().to_string(),
            ratio(t.sharpe),
            ratio(t.sortino),
            t.max_drawdown.normalize().to_string(),
            t.fills.to_string(),
            t.fees.round_dp(8).normalize().to_string(),
        ]);
        w.write_record(&rec)?;
    }
    w.flush()?;
    Ok(())
}

/// Sort best first by `metric`; undefined values (`None`) last; ties by set index.
pub fn rank(rows: &mut [Row], metric: Metric) {
    use std::cmp::Ordering as O;
    let by = |a: &Row, b: &Row| -> O {
        match metric {
            Metric::TotalReturn => b.total_return.cmp(&a.total_return),
            Metric::MaxDrawdown => a.max_drawdown.cmp(&b.max_drawdown),
            Metric::Sharpe | Metric::Sortino => {
                let (x, y) = if metric == Metric::Sharpe {
                    (a.sharpe, b.sharpe)
                } else {
                    (a.sortino, b.sortino)
                };
                match (x, y) {
                    (Some(x), Some(y)) => y.total_cmp(&x),
                    (Some(_), None) => O::Less,
                    (None, Some(_)) => O::Greater,
                    (None, None) => O::Equal,
                }
            }
        }
    };
    rows.sort_by(|a, b| by(a, b).then(a.set.index.cmp(&b.set.index)));
}

fn ratio(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite())
        .map_or(String::new(), |v| format!("{v:.6}"))
}

impl Outcome {
    /// The column names of `sweep.csv` and of the table.
    pub fn header(&self) -> Vec<String> {
        let mut h = vec!["rank".to_string(), "set".to_string()];
        h.extend(self.axes.iter().map(|a| a.key.clone()));
        h.extend(
            [
                "total_return",
                "sharpe",
                "sortino",
                "max_drawdown",
                "trades",
                "fees",
            ]
            .map(String::from),
        );
        h
    }

    /// One record per row, best first.
    pub fn records(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .enumerate()
            .map(|(rank, r)| {
                let mut rec = vec![(rank + 1).to_string(), r.set.index.to_string()];
                rec.extend(r.set.values.iter().map(|v| v.text.clone()));
                rec.extend([
                    r.total_return.normalize().to_string(),
                    ratio(r.sharpe),
                    ratio(r.sortino),
                    r.max_drawdown.normalize().to_string(),
                    r.fills.to_string(),
                    r.fees.round_dp(8).normalize().to_string(),
                ]);
                rec
            })
            .collect()
    }

    /// Write `sweep.csv` (ranked, one row per set that ran).
    pub fn write_csv(&self, path: &Path) -> anyhow::Result<()> {
        let mut w =
            csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
        w.write_record(self.header())?;
        for r in self.records() {
            w.write_record(r)?;
        }
        w.flush()?;
        Ok(())
    }

    /// The ranked table for a terminal.
    pub fn render(&self) -> String {
        let head = self.header();
        let recs = self.records();
        let mut width: Vec<usize> = head.iter().map(String::len).collect();
        for r in &recs {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let cells: Vec<String> = cells
                .iter()
                .zip(&width)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        };
        line(&mut out, &head);
        for r in &recs {
            line(&mut out, r);
        }
        for (set, why) in &self.skipped {
            let params: Vec<String> = self
                .axes
                .iter()
                .zip(&set.values)
                .map(|(a, v)| format!("{}={}", a.key, v.text))
                .collect();
            let _ = writeln!(
                out,
                "skipped set {} ({}): {why}",
                set.index,
                params.join(" ")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(a: &Axis) -> Vec<&str> {
        a.values.iter().map(|v| v.text.as_str()).collect()
    }

    #[test]
    fn grids_parse_ranges_lists_and_scoped_keys() {
        let axes = parse_grid(&[
            "fast=5..20:5,slow=50,100".into(),
            "ma_cross.rule.average=sma,ema".into(),
        ])
        .unwrap();
        assert_eq!(axes.len(), 3);
        assert_eq!(texts(&axes[0]), ["5", "10", "15", "20"]);
        assert_eq!(axes[0].values[0].toml, toml::Value::Integer(5));
        assert_eq!(texts(&axes[1]), ["50", "100"]);
        assert_eq!(
            (axes[2].strategy.as_deref(), axes[2].param.as_str()),
            (Some("ma_cross"), "average")
        );
        assert_eq!(axes[2].values[1].toml, toml::Value::String("ema".into()));
        let k = parse_grid(&["rule.k=1.5..2.5:0.5".into()]).unwrap();
        assert_eq!(k[0].strategy, None);
        assert_eq!(texts(&k[0]), ["1.5", "2", "2.5"]);
        assert_eq!(k[0].values[0].toml, toml::Value::Float(1.5));
        // Inclusive, step 1 by default; a range that does not land on its end.
        assert_eq!(
            texts(&parse_grid(&["period=3..5".into()]).unwrap()[0]),
            ["3", "4", "5"]
        );
        assert_eq!(
            texts(&parse_grid(&["period=3..10:4".into()]).unwrap()[0]),
            ["3", "7"]
        );
    }

    #[test]
    fn bad_grids_name_the_item_and_the_fix() {
        for (g, needle) in [
            ("5,10", "without a key"),
            ("fast=20..5", "ends before it starts"),
            ("fast=5..20:0", "step is not positive"),
            ("fast=a..b", "not a number"),
            ("fast=5,fast=6", "given twice"),
            ("fast=5,5", "listed twice"),
            ("fast=", "no value"),
        ] {
            let e = parse_grid(&[g.into()]).unwrap_err().to_string();
            assert!(e.contains(needle), "{g}: {e}");
        }
    }

    /// Regression ("a too-large grid error quotes `--grid \"\"` instead of
    /// the grid").
    #[test]
    fn a_grid_too_large_is_quoted_whole() {
        let g = "fast=1..1000:1,slow=1..1000:1";
        let e = parse_grid(&[g.into()]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("--grid {g:?}")) && e.contains("parameter sets"),
            "{e}"
        );
        assert!(!e.contains("--grid \"\""), "{e}");
    }

    #[test]
    fn expansion_is_the_cartesian_product_first_key_slowest() {
        let axes = parse_grid(&["a=1,2,b=x,y,z".into()]).unwrap();
        let sets = expand(&axes);
        let flat: Vec<String> = sets
            .iter()
            .map(|s| {
                s.values
                    .iter()
                    .map(|v| v.text.as_str())
                    .collect::<Vec<_>>()
                    .join("")
            })
            .collect();
        assert_eq!(flat, ["1x", "1y", "1z", "2x", "2y", "2z"]);
        assert!(sets.iter().enumerate().all(|(i, s)| s.index == i));
    }

    /// `rule_keys` stays in step with the rules of `config`: every listed key is
    /// accepted in a strategy file, and every key the rule serializes is listed.
    #[test]
    fn rule_keys_match_the_strategy_files() {
        let root = env!("CARGO_MANIFEST_DIR");
        for f in [
            "ma_crossover",
            "rsi_mean_reversion",
            "bollinger_breakout",
            "sentiment_momentum",
            "expr/ma_crossover",
            "expr/rsi_mean_reversion",
        ] {
            let path = format!("{root}/strategies/{f}.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            let s = config::parse_strategy(&text, &path).unwrap();
            let keys = rule_keys(&s.rule);
            assert!(!keys.is_empty());
            let ser = toml::Value::try_from(&s.rule).unwrap();
            let mut table = ser.as_table().unwrap().clone();
            // An expression rule's keys are its parameters.
            if let Some(toml::Value::Table(params)) = table.get("params") {
                table = params.clone();
            }
            for k in table.keys().filter(|k| *k != "kind") {
                assert!(keys.contains(&k.as_str()), "{f}: {k} is not listed");
            }
            // An unlisted key is refused by the strategy checks (an unknown
            // parameter of an expression rule is one no expression uses: allowed).
            let mut t: toml::Table = text.parse().unwrap();
            t["rule"]
                .as_table_mut()
                .unwrap()
                .insert("no_such_key".into(), toml::Value::Integer(1));
            assert!(config::parse_strategy(&toml::to_string(&t).unwrap(), &path).is_err());
        }
    }

    fn row(index: usize, sharpe: Option<f64>, ret: i64) -> Row {
        Row {
            set: ParamSet {
                index,
                values: vec![],
            },
            total_return: Decimal::new(ret, 2),
            sharpe,
            sortino: None,
            max_drawdown: Decimal::new(ret.abs(), 2),
            fills: 0,
            fees: Decimal::ZERO,
        }
    }

    #[test]
    fn ranking_puts_the_best_first_undefined_last_ties_by_index() {
        let mut rows = vec![
            row(0, None, 1),
            row(1, Some(0.5), 3),
            row(2, Some(1.5), 2),
            row(3, Some(0.5), 5),
        ];
        rank(&mut rows, Metric::Sharpe);
        let order: Vec<usize> = rows.iter().map(|r| r.set.index).collect();
        assert_eq!(order, [2, 1, 3, 0]);
        rank(&mut rows, Metric::TotalReturn);
        let order: Vec<usize> = rows.iter().map(|r| r.set.index).collect();
        assert_eq!(order, [3, 1, 2, 0]);
        rank(&mut rows, Metric::MaxDrawdown);
        let order: Vec<usize> = rows.iter().map(|r| r.set.index).collect();
        assert_eq!(order, [0, 2, 1, 3]);
    }

    #[test]
    fn the_portfolio_of_one_curve_is_that_curve() {
        let c = vec![
            (0, Decimal::from(100)),
            (5, Decimal::from(90)),
            (5, Decimal::from(95)),
            (9, Decimal::from(120)),
        ];
        assert_eq!(portfolio_series(std::slice::from_ref(&c)), c);
        let d = vec![(0, Decimal::from(10)), (7, Decimal::from(20))];
        let sum: Vec<i64> = portfolio_series(&[c, d])
            .iter()
            .map(|p| p.1.try_into().unwrap())
            .collect();
        assert_eq!(sum, [110, 110, 100, 105, 115, 140]);
    }
}
