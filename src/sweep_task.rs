//! The messages of a distributed sweep (docs/sweeps.md): a task is one
//! parameter set to backtest, carrying everything a worker needs (the
//! application config, the strategy files, the set's values, the data source);
//! a result is its metrics, keyed by the task id.
//!
//! Ids are deterministic: the sweep id defaults to a digest of what decides
//! the results (config, strategy files, axes, data), and a task id is a digest
//! of the sweep id, that content, the set's values and the walk-forward window.
//! The same sweep run again has the same ids, which is how a restarted
//! coordinator finds what is already done, and how a task run twice is counted
//! once.

use std::str::FromStr;

use anyhow::Context;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backtest::{Event, TimeRange};
use crate::config::{AppConfig, Loaded};
use crate::domain::Ts;
use crate::sweep::{Axis, ParamSet, Row, Sweep, Value};

/// The version of the task and result JSON.
pub const VERSION: u32 = 1;

/// Where a task's events come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum DataSource {
    /// CSV files every worker can read at these paths.
    Files {
        paths: Vec<String>,
        symbol: Option<String>,
        columns: Option<String>,
        /// Event-time bounds in ns, inclusive (`--from`, `--to`).
        from: Option<Ts>,
        to: Option<Ts>,
    },
    /// The input topics of the cluster the worker is connected to.
    Topics { from: Option<Ts>, to: Option<Ts> },
}

impl DataSource {
    fn range(&self) -> TimeRange {
        let (from, to) = match self {
            DataSource::Files { from, to, .. } | DataSource::Topics { from, to } => (*from, *to),
        };
        TimeRange { from, to }
    }

    /// Read the events as a local sweep does (`app::backtest_events`); topics
    /// from `bootstrap`.
    pub async fn events(&self, cfg: &Loaded, bootstrap: &str) -> anyhow::Result<Vec<Event>> {
        let files = match self {
            DataSource::Files {
                paths,
                symbol,
                columns,
                ..
            } => crate::app::Files {
                paths: paths.iter().map(Into::into).collect(),
                symbol: symbol.clone(),
                columns: columns.clone(),
            },
            DataSource::Topics { .. } => crate::app::Files::default(),
        };
        let (events, _) =
            crate::app::backtest_events(cfg, &files, self.range(), Some(bootstrap), false).await?;
        Ok(events)
    }
}

/// One grid key and the value of this task's set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub key: String,
    pub value: String,
}

/// One strategy file of the configuration, as TOML text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyFile {
    pub file: String,
    pub toml: String,
}

/// One backtest to run (the `sweep_tasks` topic, keyed by `task_id`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub version: u32,
    pub sweep_id: String,
    pub task_id: String,
    /// The set's number in the grid (first key slowest), its `set` in sweep.csv.
    pub set: usize,
    pub params: Vec<Param>,
    /// `[from, to)` in ns: a walk-forward window within the data; none: all of it.
    pub window: Option<(Ts, Ts)>,
    pub data: DataSource,
    /// The coordinator's application config (`AppConfig`) as loaded.
    pub app: serde_json::Value,
    /// The strategy files, in configuration order.
    pub strategies: Vec<StrategyFile>,
}

/// The metrics of a set, exactly: decimals as text, ratios as Rust's shortest
/// round-trip text of the `f64` (`"NaN"` and `"inf"` included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub total_return: String,
    pub sharpe: Option<String>,
    pub sortino: Option<String>,
    pub max_drawdown: String,
    pub fills: u64,
    pub fees: String,
}

impl Metrics {
    pub fn of(r: &Row) -> Metrics {
        let f = |x: Option<f64>| x.map(|v| format!("{v:?}"));
        Metrics {
            total_return: r.total_return.to_string(),
            sharpe: f(r.sharpe),
            sortino: f(r.sortino),
            max_drawdown: r.max_drawdown.to_string(),
            fills: r.fills,
            fees: r.fees.to_string(),
        }
    }

    /// The row of `set` these metrics describe.
    pub fn row(&self, set: ParamSet) -> anyhow::Result<Row> {
        let dec = |s: &str| Decimal::from_str(s).with_context(|| format!("{s:?} is not a decimal"));
        let ratio = |s: &Option<String>| -> anyhow::Result<Option<f64>> {
            s.as_deref()
                .map(|v| {
                    v.parse::<f64>()
                        .with_context(|| format!("{v:?} is not a number"))
                })
                .transpose()
        };
        Ok(Row {
            set,
            total_return: dec(&self.total_return)?,
            sharpe: ratio(&self.sharpe)?,
            sortino: ratio(&self.sortino)?,
            max_drawdown: dec(&self.max_drawdown)?,
            fills: self.fills,
            fees: dec(&self.fees)?,
        })
    }
}

/// What a worker says about a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Taken: the worker is running it (for the coordinator's progress).
    Started,
    /// Ran: `metrics` holds its row.
    Ok,
    /// Could not run: `error` says why (counted once, like a refused set).
    Failed,
}

/// A message of the `sweep_results` topic, keyed by `task_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub version: u32,
    pub sweep_id: String,
    pub task_id: String,
    pub set: usize,
    pub status: Status,
    /// `host:pid` of the worker.
    pub worker: String,
    pub metrics: Option<Metrics>,
    pub error: Option<String>,
}

/// Lowercase hex of SHA-256 over `parts`, each length-prefixed.
fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the tasks of one sweep.
#[derive(Debug, Clone)]
pub struct TaskFactory {
    pub sweep_id: String,
    /// Digest of the content shared by every task.
    content: String,
    data: DataSource,
    app: serde_json::Value,
    strategies: Vec<StrategyFile>,
    keys: Vec<String>,
}

impl TaskFactory {
    /// The tasks of `sweep` over `data`; `sweep_id` defaults to `sweep-` and
    /// the first 16 hex digits of the content's digest.
    ///
    /// # Errors
    /// The configuration does not survive its JSON form (a bug: the worker
    /// would run another configuration than the coordinator's).
    pub fn new(
        sweep: &Sweep,
        data: DataSource,
        sweep_id: Option<String>,
    ) -> anyhow::Result<TaskFactory> {
        let app = serde_json::to_value(&sweep.base().app)?;
        let back: AppConfig = serde_json::from_value(app.clone())
            .context("the application config does not read back from its JSON form")?;
        anyhow::ensure!(
            serde_json::to_value(&back)? == app,
            "the application config changes through its JSON form: a worker would run another configuration"
        );
        let strategies: Vec<StrategyFile> = sweep
            .file_texts()?
            .into_iter()
            .map(|(file, toml)| StrategyFile { file, toml })
            .collect();
        let keys: Vec<String> = sweep.axes.iter().map(|a| a.key.clone()).collect();
        let content = digest(&[
            &serde_json::to_vec(&app)?,
            &serde_json::to_vec(&strategies)?,
            &serde_json::to_vec(&keys)?,
            &serde_json::to_vec(&data)?,
        ]);
        let sweep_id = sweep_id.unwrap_or_else(|| format!("sweep-{}", &content[..16]));
        Ok(TaskFactory {
            sweep_id,
            content,
            data,
            app,
            strategies,
            keys,
        })
    }

    /// The id of the task of `set` over `window`.
    pub fn task_id(&self, set: &ParamSet, window: Option<(Ts, Ts)>) -> String {
        let values: Vec<&str> = set.values.iter().map(|v| v.text.as_str()).collect();
        let window = window.map_or(String::new(), |(a, b)| format!("{a}..{b}"));
        let d = digest(&[
            self.sweep_id.as_bytes(),
            self.content.as_bytes(),
            values.join("\u{1f}").as_bytes(),
            window.as_bytes(),
        ]);
        format!("t-{}", &d[..24])
    }

    pub fn task(&self, set: &ParamSet, window: Option<(Ts, Ts)>) -> Task {
        Task {
            version: VERSION,
            sweep_id: self.sweep_id.clone(),
            task_id: self.task_id(set, window),
            set: set.index,
            params: self
                .keys
                .iter()
                .zip(&set.values)
                .map(|(k, v)| Param {
                    key: k.clone(),
                    value: v.text.clone(),
                })
                .collect(),
            window,
            data: self.data.clone(),
            app: self.app.clone(),
            strategies: self.strategies.clone(),
        }
    }
}

impl Task {
    /// The configuration of this task's set, built as the coordinator builds
    /// it ([`Sweep::config`]); `Err` says why the set is refused.
    pub fn config(&self) -> anyhow::Result<Loaded> {
        let app: AppConfig =
            serde_json::from_value(self.app.clone()).context("the task's `app` is not a config")?;
        let mut models = crate::model::Models::new();
        let mut strategies = Vec::new();
        for s in &self.strategies {
            strategies.push(
                crate::config::parse_strategy_with(&s.toml, &s.file, &mut models)
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
        }
        let mut base = Loaded {
            max_out_of_order: app.input.max_out_of_order.nanos(),
            venue_latency: app.venue.latency.nanos(),
            app,
            strategies,
            instruments: Default::default(),
            models,
        };
        let symbols: Vec<String> = base
            .strategies
            .iter()
            .flat_map(|s| s.symbols.iter().cloned())
            .chain(base.app.venue.symbols.keys().cloned())
            .collect();
        for sym in symbols {
            let inst = base
                .instrument(&sym)
                .map_err(|(key, problem)| anyhow::anyhow!("{key}: {problem}"))?;
            base.instruments.insert(sym, inst);
        }
        let texts: Vec<(String, String)> = self
            .strategies
            .iter()
            .map(|s| (s.file.clone(), s.toml.clone()))
            .collect();
        let axes: Vec<Axis> = self
            .params
            .iter()
            .map(|p| {
                let (strategy, param) = crate::sweep::split_key(&p.key);
                Axis {
                    key: p.key.clone(),
                    strategy,
                    param,
                    values: vec![Value::parse(&p.value)],
                }
            })
            .collect();
        let sweep = Sweep::from_texts(&base, &texts, axes)?;
        let set = ParamSet {
            index: self.set,
            values: self.params.iter().map(|p| Value::parse(&p.value)).collect(),
        };
        sweep.config(&set).map_err(anyhow::Error::msg)
    }

    /// Backtest this task over `events` (all of the data source; the window,
    /// if any, is cut here as walk-forward cuts it) and give its metrics.
    pub fn run(&self, events: &[Event]) -> anyhow::Result<Metrics> {
        let cfg = self.config()?;
        let set = ParamSet {
            index: self.set,
            values: self.params.iter().map(|p| Value::parse(&p.value)).collect(),
        };
        let bt = match self.window {
            Some((a, b)) => {
                let cut: Vec<Event> = events
                    .iter()
                    .filter(|e| e.ts >= a && e.ts < b)
                    .cloned()
                    .collect();
                crate::backtest::run_shared(&cfg, &cut, false)
            }
            None => crate::backtest::run_shared(&cfg, events, false),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Metrics::of(&crate::sweep::metrics(set, &bt)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_survive_their_json_form_exactly() {
        let row = Row {
            set: ParamSet {
                index: 3,
                values: vec![],
            },
            total_return: Decimal::from_str("0.123450").unwrap(),
            sharpe: Some(0.1 + 0.2),
            sortino: Some(f64::INFINITY),
            max_drawdown: Decimal::from_str("-0.5").unwrap(),
            fills: 7,
            fees: Decimal::from_str("1.00000001").unwrap(),
        };
        let json = serde_json::to_string(&Metrics::of(&row)).unwrap();
        let back: Metrics = serde_json::from_str(&json).unwrap();
        let r = back.row(row.set.clone()).unwrap();
        assert_eq!(r, row);
        assert_eq!(r.total_return.to_string(), "0.123450");
        let nan = Metrics {
            sharpe: Some("NaN".into()),
            ..back
        };
        assert!(nan.row(row.set).unwrap().sharpe.unwrap().is_nan());
    }

    #[test]
    fn the_default_app_config_survives_its_json_form() {
        let cfg = crate::config::load_with_env(None, &[]).unwrap();
        let v = serde_json::to_value(&cfg.app).unwrap();
        let back: AppConfig = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
    }
}
