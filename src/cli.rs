//! The `papertrader` command line: a thin layer over the library.
//!
//! [`main`] is the whole program; `src/main.rs` calls it, and so can a program
//! that registers strategy kinds of its own first
//! (`papertrader::strategy::register`, `examples/custom_strategy.rs`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Loaded};
use crate::replay::Speed;

#[derive(Parser)]
#[command(
    name = "papertrader",
    version,
    about = "Kafka-native paper trading: strategies, simulated fills and P&L over Kafka topics"
)]
struct Cli {
    /// Application config layered over config/default.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trade the configured strategies live against the input topics.
    Paper(PaperArgs),
    /// Run the strategies over recorded data (CSV files or the input topics) and
    /// write a report: report.json, trades.csv, round_trips.csv, equity.csv, report.html.
    Backtest(BacktestArgs),
    /// Backtest every point of a grid over the strategies' [rule] parameters, in
    /// parallel over one read of the events, and rank them: sweep.csv and a table.
    Sweep(SweepArgs),
    /// Run the tasks of distributed sweeps (`sweep --distributed`): join the
    /// workers' consumer group on the tasks topic, backtest each task and
    /// publish its result (docs/sweeps.md).
    Worker(WorkerArgs),
    /// Run the embedded Kafka broker (tansu, in memory) alone, until Ctrl-C.
    Broker(BrokerArgs),
    /// Publish historical data (CSV of ticks, OHLCV bars or sentiment) into a topic.
    Replay(ReplayArgs),
    /// Score the headlines of the news topic (VADER or Loughran-McDonald), tag
    /// them with symbols and publish them to news_sentiment ([sentiment],
    /// docs/sentiment.md).
    Sentiment(SentimentArgs),
    /// Run the config's [[sources]] (Binance, Coinbase, Alpaca, RSS/Atom,
    /// Alpaca news) into the input topics and `news`, until Ctrl-C (docs/sources.md).
    Ingest(IngestArgs),
    /// Generate the synthetic sample data (ticks and correlated sentiment).
    Generate(GenerateArgs),
    /// Write output topics (fills, orders, pnl, signals, indicators, alerts,
    /// dead_letters) or a backtest report's tables to Parquet files, typed, for
    /// DuckDB, Polars or Spark (docs/export.md).
    Export(ExportArgs),
    /// Write a starter project into DIR: an application config, a strategy
    /// file and sample data that run as they are (the next commands are printed).
    Init(InitArgs),
    /// Inspect the ONNX models.
    Models {
        #[command(subcommand)]
        action: ModelsCommand,
    },
}

// The arguments of `papertrader paper` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct PaperArgs {
    /// A strategy file to run instead of the config's `strategies` list
    /// (repeatable).
    #[arg(long = "strategy", value_name = "FILE")]
    strategy: Vec<PathBuf>,
    /// Stop after this many seconds without input. Before the first input
    /// arrives, at least --startup-grace is waited.
    #[arg(long, value_name = "SECS")]
    until_idle: Option<f64>,
    /// With --until-idle: the least wait for the first input (joining the
    /// consumer group and getting partitions can take this long; a restart
    /// waits for the session of a killed process to time out).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    startup_grace: f64,
    /// Stop after this many input messages.
    #[arg(long, value_name = "N")]
    max_events: Option<u64>,
    /// Write the final summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// After Ctrl-C or SIGTERM: how long the graceful stop may take (publishing
    /// what is pending, the last checkpoint, the offset commit) before the
    /// process exits with code 1. What the last checkpoint and committed
    /// offsets cover stands, so a restart publishes the rest. A second Ctrl-C
    /// exits at once (code 130).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    shutdown_timeout: f64,
}

// The data of a backtest or sweep: files or the cluster's topics, and the time range.
#[derive(clap::Args)]
struct DataArgs {
    /// A CSV of ticks, OHLCV bars or sentiment (repeatable). Without it, the
    /// input topics of the cluster are read.
    #[arg(long, value_name = "FILE")]
    input: Vec<PathBuf>,
    /// The symbol of input files that have no symbol (or ticker) column.
    #[arg(long)]
    symbol: Option<String>,
    /// The input files' column names where they differ from papertrader's:
    /// `ts=Time:us,price=Last,size=Qty` (names: ts, symbol, price, size,
    /// bid, ask, score, source, headline, open, high, low, close, volume; a
    /// unit s, ms, us or ns after the time column's name).
    #[arg(long, value_name = "MAP")]
    columns: Option<String>,
    /// First event time to include: `earliest` or a time (epoch ms, RFC 3339, yyyy-mm-dd).
    #[arg(long, default_value = "earliest", value_name = "TIME")]
    from: String,
    /// Last event time to include: `latest` or a time; a date (yyyy-mm-dd)
    /// includes that whole day.
    #[arg(long, default_value = "latest", value_name = "TIME")]
    to: String,
    /// bootstrap.servers for the Kafka path (default: kafka.brokers; with
    /// "embedded" the demo data is published to an embedded broker first).
    #[arg(long)]
    brokers: Option<String>,
}

impl DataArgs {
    /// The input files and the symbol of those without one.
    fn files(&self) -> crate::app::Files {
        crate::app::Files {
            paths: self.input.clone(),
            symbol: self.symbol.clone(),
            columns: self.columns.clone(),
        }
    }

    /// `--from` and `--to` as an event-time range.
    fn range(&self) -> anyhow::Result<crate::backtest::TimeRange> {
        crate::backtest::TimeRange::parse(&self.from, &self.to).map_err(anyhow::Error::msg)
    }
}

// The arguments of `papertrader backtest` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct BacktestArgs {
    #[command(flatten)]
    data: DataArgs,
    /// A strategy file to run instead of the config's `strategies` list
    /// (repeatable).
    #[arg(long = "strategy", value_name = "FILE")]
    strategy: Vec<PathBuf>,
    /// Directory for report.json, trades.csv, round_trips.csv, equity.csv, report.html (and
    /// alerts.csv when the config has alert rules); created if missing.
    #[arg(long, value_name = "DIR")]
    report: PathBuf,
    /// Also publish the run's signals, orders, fills, pnl, dead letters and alerts,
    /// as paper mode does, to the topics RUN_ID.TOPIC (e.g. bt-1.orders) of
    /// --brokers (or kafka.brokers; not "embedded"). RUN_ID: ASCII letters,
    /// digits, '.', '_', '-'; its topics must not hold messages yet.
    #[arg(long, value_name = "RUN_ID")]
    publish: Option<String>,
    /// Also write the report's tables as Parquet beside their CSV files:
    /// trades.parquet, round_trips.parquet, equity.parquet (and
    /// alerts.parquet); typed columns, docs/export.md.
    #[arg(long)]
    parquet: bool,
}

// The arguments of `papertrader sweep` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct SweepArgs {
    #[command(flatten)]
    data: DataArgs,
    /// A strategy file to run instead of the config's `strategies` list
    /// (repeatable).
    #[arg(long = "strategy", value_name = "FILE")]
    strategy: Vec<PathBuf>,
    /// The grid: `KEY=VALUES` items, comma-separated; values a range
    /// `a..b:step` (inclusive) or a comma list, e.g. 'fast=5..20:5,slow=50,100'.
    /// KEY is a [rule] parameter (`fast`, `rule.fast`) or one strategy's
    /// (`ma_cross.fast`). Repeatable.
    #[arg(long, required = true, value_name = "GRID")]
    grid: Vec<String>,
    /// The metric that ranks the sets.
    #[arg(long, value_enum, default_value = "sharpe")]
    metric: crate::sweep::Metric,
    /// Directory for sweep.csv.
    #[arg(long, value_name = "DIR", default_value = ".")]
    report: PathBuf,
    /// Backtests run at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Walk-forward analysis instead of one sweep: `train=30d,test=10d`.
    /// Each fold sweeps the train window, then runs its best set on the test
    /// window after it; writes walk_forward.csv.
    #[arg(long, value_name = "WINDOWS")]
    walk_forward: Option<String>,
    /// How to pick the sets: every set of the grid, or a search over it
    /// (random, or tpe: a tree-structured Parzen estimator) that runs at most
    /// --budget sets (docs/sweeps.md).
    #[arg(long, value_enum, default_value = "grid")]
    search: crate::optimise::SearchKind,
    /// With --search random|tpe: the most sets to run (default: the grid's size).
    #[arg(long, value_name = "N")]
    budget: Option<usize>,
    /// With --search random|tpe: the seed; the same seed, grid and --batch
    /// give the same runs.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// With --search random|tpe: stop after K results in a row without a better one.
    #[arg(long, value_name = "K")]
    patience: Option<usize>,
    /// With --search random|tpe: sets proposed at once (each batch from the
    /// results of those before it).
    #[arg(long, value_name = "N", default_value_t = 4)]
    batch: usize,
    /// Run the sets on `papertrader worker` processes through the Kafka
    /// cluster of --brokers: tasks to --tasks-topic, results from
    /// --results-topic. Input files must be readable by every worker at the
    /// same path; without --input, the workers read the cluster's input topics.
    #[arg(long, requires = "brokers")]
    distributed: bool,
    /// With --distributed: the sweep's id (default: a digest of the config,
    /// strategy files, grid keys and data). A coordinator started again with
    /// the same id publishes only the tasks that are not done or queued.
    #[arg(long, value_name = "ID", requires = "distributed")]
    sweep_id: Option<String>,
    /// With --distributed: after this many seconds without a new result,
    /// queue the missing tasks again (a worker that died may hold them).
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    requeue_after: f64,
    /// With --distributed: the tasks topic.
    #[arg(long, value_name = "TOPIC", default_value = crate::sweep_dist::TASKS_TOPIC)]
    tasks_topic: String,
    /// With --distributed: the results topic.
    #[arg(long, value_name = "TOPIC", default_value = crate::sweep_dist::RESULTS_TOPIC)]
    results_topic: String,
}

// The arguments of `papertrader worker` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct WorkerArgs {
    /// bootstrap.servers of the coordinator's cluster (default: kafka.brokers;
    /// not "embedded").
    #[arg(long)]
    brokers: Option<String>,
    /// The workers' consumer group: the workers of one group share the tasks.
    #[arg(long, value_name = "GROUP", default_value = crate::sweep_dist::WORKER_GROUP)]
    group: String,
    /// The tasks topic.
    #[arg(long, value_name = "TOPIC", default_value = crate::sweep_dist::TASKS_TOPIC)]
    tasks_topic: String,
    /// The results topic.
    #[arg(long, value_name = "TOPIC", default_value = crate::sweep_dist::RESULTS_TOPIC)]
    results_topic: String,
    /// Stop after this many tasks (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "N")]
    max_tasks: Option<u64>,
    /// Stop after this many seconds without a task. Before the first task, at
    /// least --startup-grace is waited.
    #[arg(long, value_name = "SECS")]
    until_idle: Option<f64>,
    /// With --until-idle: the least wait for the first task.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    startup_grace: f64,
}

// The arguments of `papertrader broker` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct BrokerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: std::net::SocketAddr,
    /// Also create papertrader's topics.
    #[arg(long)]
    create_topics: bool,
}

// The arguments of `papertrader replay` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct ReplayArgs {
    /// The CSV file.
    #[arg(long)]
    input: PathBuf,
    /// The topic to publish to.
    #[arg(long)]
    topic: String,
    /// `max` (as fast as possible) or a multiple of the recorded pace, e.g. 60.
    #[arg(long, default_value = "max")]
    speed: Speed,
    /// Symbol for files without a symbol column.
    #[arg(long)]
    symbol: Option<String>,
    /// The file's column names where they differ from papertrader's:
    /// `ts=Time:us,price=Last,size=Qty` (names: ts, symbol, price, size,
    /// bid, ask, score, source, headline, open, high, low, close, volume; a
    /// unit s, ms, us or ns after the time column's name).
    #[arg(long, value_name = "MAP")]
    columns: Option<String>,
    /// bootstrap.servers (default: kafka.brokers from the config).
    #[arg(long)]
    brokers: Option<String>,
}

// The arguments of `papertrader sentiment` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct SentimentArgs {
    /// bootstrap.servers (default: kafka.brokers from the config; not "embedded").
    #[arg(long)]
    brokers: Option<String>,
    /// Stop after this many seconds without a news message (default: run
    /// until Ctrl-C or SIGTERM). Before the first message, at least
    /// --startup-grace is waited.
    #[arg(long, value_name = "SECS")]
    until_idle: Option<f64>,
    /// With --until-idle: the least wait for the first message.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    startup_grace: f64,
    /// Stop after this many news messages.
    #[arg(long, value_name = "N")]
    max_events: Option<u64>,
}

// The arguments of `papertrader ingest` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct IngestArgs {
    /// bootstrap.servers (default: kafka.brokers from the config; not
    /// "embedded": run `paper` with [[sources]] to trade on the embedded broker).
    #[arg(long)]
    brokers: Option<String>,
    /// Serve the connectors' Prometheus metrics on http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS")]
    run_for: Option<f64>,
}

// The arguments of `papertrader export` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct ExportArgs {
    /// An output topic to export (repeatable): as named under [topics]
    /// (fills, orders, pnl, signals, indicators, alerts, dead_letters) or
    /// RUN_ID.TOPIC of `backtest --publish` (e.g. bt-1.fills).
    #[arg(
        long,
        value_name = "TOPIC",
        required_unless_present = "report",
        conflicts_with = "report"
    )]
    topic: Vec<String>,
    /// What --topic holds when its name does not say it: fills, orders, pnl,
    /// signals, indicators, alerts or dead_letters.
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// A backtest's report directory: its tables (trades, round_trips,
    /// equity, alerts) instead of a topic.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// With --report: only these tables (comma-separated or repeated).
    #[arg(long, value_name = "TABLE", value_delimiter = ',', requires = "report")]
    table: Vec<String>,
    /// Where to write: a directory (created if missing) that gets
    /// TOPIC.parquet or TABLE.parquet, or a FILE.parquet for one topic or table.
    /// Default: the report directory with --report, else the current directory.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// bootstrap.servers for --topic (default: kafka.brokers from the config).
    #[arg(long)]
    brokers: Option<String>,
}

// The arguments of `papertrader init` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct InitArgs {
    /// The directory to write into (created if missing; existing files are not overwritten).
    dir: PathBuf,
}

// The arguments of `papertrader generate` (a plain comment: clap takes the command's help from the variant).
#[derive(clap::Args)]
struct GenerateArgs {
    /// Where to write the ticks (CSV: ts, symbol, price, size, bid, ask).
    #[arg(long, default_value = "data/synthetic_ticks.csv")]
    ticks: PathBuf,
    /// Where to write the sentiment readings (CSV: ts, symbol, score, source, headline).
    #[arg(long, default_value = "data/synthetic_sentiment.csv")]
    sentiment: PathBuf,
    /// Ticks per symbol (default: as the bundled files).
    #[arg(long)]
    per_symbol: Option<usize>,
    /// Random seed (default: as the bundled files).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Load every model of a directory, print its spec, shapes and hash, and
    /// check it against its reference outputs; exit non-zero on a mismatch.
    Check {
        #[arg(long, default_value = "models")]
        dir: PathBuf,
    },
}

/// Parse the command line and run the command; exits the process with 2 on
/// a configuration error and 1 on a failed command.
pub fn main() {
    let cli = Cli::parse();
    // Only paper mode and backtests run strategies; the other commands need no strategy files.
    let loaded = match &cli.command {
        Command::Paper(PaperArgs { strategy, .. })
        | Command::Backtest(BacktestArgs { strategy, .. })
        | Command::Sweep(SweepArgs { strategy, .. }) => {
            config::load_with_strategies(cli.config.as_deref(), strategy)
        }
        Command::Init(args) => {
            // Needs no configuration: it writes one.
            match crate::init::write(&args.dir) {
                Ok(report) => {
                    print_out(&report);
                    std::process::exit(0);
                }
                Err(e) => {
                    eprintln!("papertrader: {e:#}");
                    std::process::exit(1);
                }
            }
        }
        _ => config::load_app(cli.config.as_deref()),
    };
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("papertrader: {e}");
            std::process::exit(2);
        }
    };
    init_tracing(&cfg, cli.log_json);
    for var in config::ignored_env_vars() {
        tracing::warn!(%var, "ignored: settings take a double underscore, e.g. PAPERTRADER__KAFKA__BROKERS");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(try_main(cli.command, cfg)) {
        eprintln!("papertrader: {e:#}");
        std::process::exit(1);
    }
}

/// `papertrader models check`: every model of `dir`, its spec, shapes, hash,
/// reference parity and time per event.
fn models_check(dir: &std::path::Path) -> anyhow::Result<()> {
    use crate::model;
    let files = model::spec_files(dir)?;
    anyhow::ensure!(
        !files.is_empty(),
        "no model specs (*.toml) in {}",
        dir.display()
    );
    let mut failed = Vec::new();
    for spec_path in &files {
        let m = match model::load(spec_path) {
            Ok(m) => std::sync::Arc::new(m),
            Err(e) => {
                print_out(&format!("{}: FAILED to load\n  {e}\n", spec_path.display()));
                failed.push(spec_path.display().to_string());
                continue;
            }
        };
        let s = &m.spec;
        let features: Vec<String> = s.features.iter().map(|f| f.name()).collect();
        print_out(&format!(
            "{name} ({spec})\n  {desc}\n  graph:   {onnx}\n  version: sha256 {sha}\n  input:   {in_name} {in_fact} (spec {in_spec})\n  output:  {out_name} {out_fact} (spec {out_spec}), {sem}\n  signal:  buy above {buy}, sell below {sell}\n  normalization: {norm}\n  features ({n}): {features}",
            name = s.name,
            spec = spec_path.display(),
            desc = s.description,
            onnx = m.onnx_path.display(),
            sha = m.sha256,
            in_name = s.input.name,
            in_fact = m.input_fact,
            in_spec = model::shape_string(&s.input.shape),
            out_name = s.output.name,
            out_fact = m.output_fact,
            out_spec = model::shape_string(&s.output.shape),
            sem = s.output.semantics.as_str(),
            buy = s.signal.buy_above,
            sell = s.signal.sell_below,
            norm = s.normalization.mode.as_str(),
            n = features.len(),
            features = features.join(", "),
        ));
        let ref_path = model::reference_path(spec_path);
        match model::read_reference(&ref_path).and_then(|r| Ok((model::parity(&m, &r)?, r))) {
            Ok((p, r)) => {
                let verdict = if p.ok() { "ok" } else { "MISMATCH" };
                print_out(&format!(
                    "  parity:  {verdict}: {rows} reference rows from {producer}, max abs diff {diff:.3e} (tolerance {tol:e}), inputs max diff {idiff:.3e}, hash {hash}",
                    rows = p.rows,
                    producer = r.producer,
                    diff = p.max_abs_diff,
                    tol = model::PARITY_TOLERANCE,
                    idiff = p.max_input_diff,
                    hash = if p.same_hash { "matches" } else { "DIFFERS (reference is for another version)" },
                ));
                if !p.ok() {
                    failed.push(spec_path.display().to_string());
                }
                if let (Some(row), Ok(mut scorer)) = (r.features.first(), m.scorer()) {
                    let per_event = model::time_per_event(&mut scorer, row, 20_000);
                    print_out(&format!(
                        "  latency: {:.2} us per event (per-event scorer, mean of 20000 runs)",
                        per_event.as_secs_f64() * 1e6
                    ));
                }
            }
            Err(e) => {
                print_out(&format!("  parity:  FAILED\n  {e}"));
                failed.push(spec_path.display().to_string());
            }
        }
        print_out("");
    }
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} models failed the check: {}",
        failed.len(),
        files.len(),
        failed.join(", ")
    );
    print_out(&format!("{} models ok", files.len()));
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: stopping");
    }
}

/// The first stop signal, for paper mode's graceful stop; from then on a
/// watcher ends the process when the stop outlasts `timeout` (code 1) or at a
/// second signal (code 130). A hard exit is as safe as a crash: what the last
/// checkpoint and the committed offsets cover is durable, the rest is replayed.
async fn bounded_stop(timeout: Duration) {
    let (first, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        stop_signal().await;
        let _ = first.send(());
        tokio::select! {
            _ = stop_signal() => {
                tracing::warn!("second stop signal: exiting now; the last checkpoint and committed offsets stand, and a restart continues from them");
                std::process::exit(130);
            }
            _ = tokio::time::sleep(timeout) => {
                tracing::error!(?timeout, "the graceful stop did not finish within --shutdown-timeout (is the broker unreachable?): exiting; the last checkpoint and committed offsets stand, and a restart publishes the rest");
                std::process::exit(1);
            }
        }
    });
    let _ = stopped.await;
}

/// Print to stdout, ignoring a closed pipe (`papertrader ... | head`).
fn print_out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn init_tracing(cfg: &Loaded, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        format!(
            "{},tansu_broker=warn,tansu_storage=warn,tansu_sans_io=warn,tansu_service=warn,tansu_schema=warn,rdkafka=warn",
            cfg.app.log.level
        )
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json || cfg.app.log.format == crate::config::LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn try_main(command: Command, cfg: Loaded) -> anyhow::Result<()> {
    match command {
        Command::Paper(args) => paper(&cfg, args).await,
        Command::Backtest(args) => backtest(&cfg, args).await,
        Command::Sweep(args) => sweep(&cfg, args).await,
        Command::Broker(args) => broker(&cfg, args).await,
        Command::Worker(args) => worker(&cfg, args).await,
        Command::Replay(args) => replay(&cfg, args).await,
        Command::Sentiment(args) => sentiment(&cfg, args).await,
        Command::Ingest(args) => ingest(&cfg, args).await,
        Command::Models {
            action: ModelsCommand::Check { dir },
        } => models_check(&dir),
        Command::Generate(args) => generate(args),
        Command::Export(args) => export(&cfg, args).await,
        Command::Init(_) => unreachable!("init runs before the configuration is loaded"),
    }
}

/// `papertrader paper`: paper mode until idle, a message count or a signal.
async fn paper(cfg: &Loaded, args: PaperArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.summary {
        check_writable(path)?;
    }
    let stop = crate::paper::StopWhen {
        idle: args.until_idle.map(Duration::from_secs_f64),
        max_events: args.max_events,
        startup_grace: Some(Duration::from_secs_f64(args.startup_grace.max(0.0))),
    };
    let timeout = Duration::from_secs_f64(args.shutdown_timeout.max(0.0));
    let summary_out = crate::app::paper(cfg, stop, bounded_stop(timeout)).await?;
    print_out(&summary_out.render());
    if let Some(path) = args.summary {
        std::fs::write(&path, serde_json::to_vec_pretty(&summary_out)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("summary written to {}", path.display());
    }
    Ok(())
}

/// Refuse at start an output file whose directory does not exist, rather
/// than after a whole run.
fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    anyhow::ensure!(
        dir.is_dir(),
        "--summary {}: the directory {} does not exist; create it first (mkdir -p {}) or name another file",
        path.display(),
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// `papertrader backtest`: the engine over files or topics, and its report.
async fn backtest(cfg: &Loaded, args: BacktestArgs) -> anyhow::Result<()> {
    let range = args.data.range()?;
    let started = std::time::Instant::now();
    let (bt, published) = crate::app::backtest(
        cfg,
        &args.data.files(),
        range,
        args.data.brokers.as_deref(),
        args.publish.as_deref(),
        true,
    )
    .await?;
    let total = started.elapsed();
    crate::report_files::write(&args.report, &bt)?;
    let parquet = if args.parquet {
        crate::report_files::write_parquet(&args.report)?
    } else {
        Vec::new()
    };
    print_out(&bt.summary.render());
    if let Some(p) = published {
        print_out(&p.render());
    }
    for w in &parquet {
        print_out(&w.render("parquet"));
    }
    print_out(&format!(
        "{} events: {:.3} s in the engine ({:.0} events/s), {:.3} s with reading the input; report in {}",
        bt.events,
        bt.elapsed.as_secs_f64(),
        bt.events_per_sec(),
        total.as_secs_f64(),
        args.report.display()
    ));
    Ok(())
}

/// `--search`, `--budget`, `--seed`, `--patience` and `--batch` checked
/// together; `None` for a grid.
fn search_options(args: &SweepArgs) -> anyhow::Result<Option<crate::optimise::SearchOptions>> {
    use crate::optimise::SearchKind;
    if args.search == SearchKind::Grid {
        anyhow::ensure!(
            args.budget.is_none() && args.patience.is_none(),
            "--budget and --patience apply to a search: add --search random or --search tpe, or drop them to run the whole grid"
        );
        return Ok(None);
    }
    anyhow::ensure!(args.budget != Some(0), "--budget 0: give 1 or more sets");
    anyhow::ensure!(
        args.patience != Some(0),
        "--patience 0: give 1 or more runs"
    );
    anyhow::ensure!(args.batch > 0, "--batch 0: give 1 or more sets");
    Ok(Some(crate::optimise::SearchOptions {
        kind: args.search,
        budget: args.budget,
        seed: args.seed,
        patience: args.patience,
        batch: args.batch,
    }))
}

/// `papertrader sweep`: a grid of parameter sets, a search over it, or a
/// walk-forward analysis; locally or through workers (`--distributed`).
async fn sweep(cfg: &Loaded, args: SweepArgs) -> anyhow::Result<()> {
    let axes = crate::sweep::parse_grid(&args.grid)?;
    let windows = args
        .walk_forward
        .as_deref()
        .map(crate::sweep::parse_walk_forward)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--walk-forward: {e}"))?;
    let search = search_options(&args)?;
    let sweep = crate::sweep::Sweep::new(cfg, axes)?;
    let range = args.data.range()?;
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    anyhow::ensure!(jobs > 0, "--jobs 0: use 1 or more");
    if args.distributed {
        anyhow::ensure!(
            windows.is_none(),
            "--distributed with --walk-forward is not supported yet: run the walk-forward locally (drop --distributed)"
        );
        return sweep_distributed(cfg, &args, &sweep, search).await;
    }
    let files = args.data.files();
    let started = std::time::Instant::now();
    let (events, skipped) =
        crate::app::backtest_events(cfg, &files, range, args.data.brokers.as_deref(), true).await?;
    if skipped > 0 {
        print_out(&format!(
            "{skipped} CSV rows skipped (unreadable; each logged above)"
        ));
    }
    let read = started.elapsed();
    let create_report_dir = || {
        std::fs::create_dir_all(&args.report)
            .with_context(|| format!("creating {}", args.report.display()))
    };
    if let Some((train, test)) = windows {
        let folds = tokio::task::block_in_place(|| {
            crate::sweep::walk_forward(&sweep, &events, args.metric, jobs, (train, test), search)
        });
        anyhow::ensure!(
            !folds.is_empty(),
            "no walk-forward fold fits: the data is shorter than the train window"
        );
        create_report_dir()?;
        let csv = args.report.join("walk_forward.csv");
        crate::sweep::write_walk_forward(&sweep.axes, &folds, &csv)?;
        print_folds(&sweep, &folds, args.metric);
        print_out(&format!(
            "{} folds over {} events on {jobs} threads in {:.3} s: {}",
            folds.len(),
            events.len(),
            started.elapsed().as_secs_f64(),
            csv.display()
        ));
        return Ok(());
    }
    let (outcome, stopped) = tokio::task::block_in_place(|| match search {
        Some(opts) => crate::optimise::run_local(&sweep, &events, args.metric, jobs, opts),
        None => (crate::sweep::run(&sweep, &events, args.metric, jobs), None),
    });
    let csv = write_outcome(&args, &outcome, stopped)?;
    print_out(&format!(
        "{} sets ({} skipped) over {} events on {jobs} threads: {:.3} s reading the input, {:.3} s in total; ranked by {} in {}",
        outcome.rows.len(),
        outcome.skipped.len(),
        events.len(),
        read.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        args.metric.name(),
        csv.display()
    ));
    Ok(())
}

/// Write sweep.csv and print the table (and why a search stopped early);
/// returns the file's path.
fn write_outcome(
    args: &SweepArgs,
    outcome: &crate::sweep::Outcome,
    stopped: Option<String>,
) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        !outcome.rows.is_empty(),
        "no parameter set passed the strategy checks:\n{}",
        outcome.render()
    );
    std::fs::create_dir_all(&args.report)
        .with_context(|| format!("creating {}", args.report.display()))?;
    let csv = args.report.join("sweep.csv");
    outcome.write_csv(&csv)?;
    print_out(outcome.render().trim_end());
    if let Some(why) = stopped {
        print_out(&format!("search stopped early: {why}"));
    }
    Ok(csv)
}

/// `papertrader sweep --distributed`: the coordinator. Publishes the tasks,
/// waits for the workers' results, ranks them as a local sweep does.
async fn sweep_distributed(
    cfg: &Loaded,
    args: &SweepArgs,
    sweep: &crate::sweep::Sweep,
    search: Option<crate::optimise::SearchOptions>,
) -> anyhow::Result<()> {
    use crate::sweep_task::DataSource;
    let bootstrap = args.data.brokers.clone().expect("clap requires --brokers");
    anyhow::ensure!(
        bootstrap != "embedded",
        "--distributed needs a Kafka cluster the workers reach: pass --brokers HOST:PORT (no cluster? `papertrader broker --listen 0.0.0.0:9092`)"
    );
    let range = args.data.range()?;
    let data = if args.data.input.is_empty() {
        DataSource::Topics {
            from: range.from,
            to: range.to,
        }
    } else {
        let mut paths = Vec::new();
        for p in &args.data.input {
            anyhow::ensure!(p.is_file(), "--input {}: no such file", p.display());
            paths.push(std::path::absolute(p)?.display().to_string());
        }
        DataSource::Files {
            paths,
            symbol: args.data.symbol.clone(),
            columns: args.data.columns.clone(),
            from: range.from,
            to: range.to,
        }
    };
    let started = std::time::Instant::now();
    let factory = crate::sweep_task::TaskFactory::new(sweep, data, args.sweep_id.clone())?;
    let topics = crate::sweep_dist::Topics {
        tasks: args.tasks_topic.clone(),
        results: args.results_topic.clone(),
    };
    let mut coord = crate::sweep_dist::Coordinator::connect(
        cfg,
        &bootstrap,
        factory,
        topics,
        crate::sweep_dist::TASK_PARTITIONS,
        args.metric,
    )
    .await?;
    coord.requeue_after = Duration::from_secs_f64(args.requeue_after.max(1.0));
    let sweep_id = coord.factory.sweep_id.clone();
    print_out(&format!("sweep id {sweep_id}"));
    let (outcome, stopped) = match search {
        Some(opts) => crate::sweep_dist::run_search(sweep, &mut coord, opts).await?,
        None => (crate::sweep_dist::run_grid(sweep, &mut coord).await?, None),
    };
    let csv = write_outcome(args, &outcome, stopped)?;
    print_out(&format!(
        "{} sets ({} skipped) on the workers of {bootstrap} (sweep {sweep_id}) in {:.3} s; ranked by {} in {}",
        outcome.rows.len(),
        outcome.skipped.len(),
        started.elapsed().as_secs_f64(),
        args.metric.name(),
        csv.display()
    ));
    Ok(())
}

/// `papertrader worker`: sweep tasks until idle, a task count or a signal.
async fn worker(cfg: &Loaded, args: WorkerArgs) -> anyhow::Result<()> {
    let bootstrap = args
        .brokers
        .unwrap_or_else(|| cfg.app.kafka.brokers.clone());
    let opts = crate::sweep_dist::WorkerOptions {
        group: args.group,
        topics: crate::sweep_dist::Topics {
            tasks: args.tasks_topic,
            results: args.results_topic,
        },
        max_tasks: args.max_tasks,
        idle: args.until_idle.map(Duration::from_secs_f64),
        startup_grace: Duration::from_secs_f64(args.startup_grace.max(0.0)),
    };
    let summary = crate::sweep_dist::work(cfg, &bootstrap, opts, stop_signal()).await?;
    print_out(&serde_json::to_string(&summary)?);
    Ok(())
}

/// One line per walk-forward fold: its windows, best set and test result.
fn print_folds(
    sweep: &crate::sweep::Sweep,
    folds: &[crate::sweep::Fold],
    metric: crate::sweep::Metric,
) {
    use crate::wire::format_ts;
    for f in folds {
        let params: Vec<String> = sweep
            .axes
            .iter()
            .zip(&f.best.set.values)
            .map(|(a, v)| format!("{}={}", a.key, v.text))
            .collect();
        print_out(&format!(
            "fold {}: train {} .. {} best {} by {} ({}; return {}); test {} .. {}: {} {}, return {}, {} fills",
            f.index,
            format_ts(f.train.0),
            format_ts(f.train.1),
            params.join(" "),
            metric.name(),
            f.best.shown(metric),
            f.best.total_return.round_dp(4),
            format_ts(f.test.0),
            format_ts(f.test.1),
            metric.name(),
            f.test_row.shown(metric),
            f.test_row.total_return.round_dp(4),
            f.test_row.fills
        ));
    }
}

/// `papertrader broker`: the embedded broker alone, until a signal.
async fn broker(cfg: &Loaded, args: BrokerArgs) -> anyhow::Result<()> {
    // The broker's own listener fails later, inside its task: a port another
    // process holds is refused here, with the reason.
    drop(std::net::TcpListener::bind(args.listen).with_context(|| {
        format!(
            "--listen {}: cannot listen there (another process holds the port?); pick a free port",
            args.listen
        )
    })?);
    let broker = crate::embedded::EmbeddedBroker::start_on(args.listen).await?;
    anyhow::ensure!(
        broker.is_running(),
        "--listen {}: the broker stopped at start (see the log above)",
        args.listen
    );
    if args.create_topics {
        let base = crate::kafka::client_config(&cfg.app.kafka, &broker.bootstrap());
        let mut names: Vec<&str> = cfg.app.topics.inputs().iter().map(|(t, _)| *t).collect();
        names.extend(cfg.app.topics.outputs());
        // The controls' audit log, and the raw headlines of `ingest` and `sentiment`.
        names.extend([
            cfg.app.topics.control.as_str(),
            cfg.app.topics.news.as_str(),
        ]);
        crate::kafka::ensure_topics(&base, &names, cfg.app.kafka.partitions).await?;
    }
    print_out(&format!(
        "tansu broker listening on {} (in memory); Ctrl-C stops it",
        broker.bootstrap()
    ));
    tokio::select! {
        _ = stop_signal() => {}
        _ = broker.wait() => {}
    }
    Ok(())
}

/// `papertrader replay`: a CSV file into a topic.
/// `papertrader sentiment`: the news-sentiment stage until idle, a message
/// count or a signal; prints its counts.
async fn sentiment(cfg: &Loaded, args: SentimentArgs) -> anyhow::Result<()> {
    let bootstrap = args
        .brokers
        .unwrap_or_else(|| cfg.app.kafka.brokers.clone());
    let stop = crate::paper::StopWhen {
        idle: args.until_idle.map(Duration::from_secs_f64),
        max_events: args.max_events,
        startup_grace: Some(Duration::from_secs_f64(args.startup_grace.max(0.0))),
    };
    let summary = crate::sentiment::run(cfg, &bootstrap, stop, stop_signal()).await?;
    print_out(&serde_json::to_string_pretty(&summary)?);
    Ok(())
}

async fn replay(cfg: &Loaded, args: ReplayArgs) -> anyhow::Result<()> {
    let bootstrap = args
        .brokers
        .unwrap_or_else(|| cfg.app.kafka.brokers.clone());
    anyhow::ensure!(
        bootstrap != "embedded",
        "replay needs a running broker: pass --brokers HOST:PORT (start one with `papertrader broker`)"
    );
    anyhow::ensure!(
        args.input.is_file(),
        "--input {}: no such file",
        args.input.display()
    );
    let base = crate::kafka::client_config(&cfg.app.kafka, &bootstrap);
    crate::kafka::check_reachable_from(
        &base,
        &bootstrap,
        "--brokers or kafka.brokers",
        "start the broker (`papertrader broker --listen HOST:PORT` for a local one) or correct --brokers",
    )
    .await?;
    if cfg.app.kafka.create_topics {
        crate::kafka::ensure_topics(&base, &[args.topic.as_str()], cfg.app.kafka.partitions)
            .await?;
    }
    let producer = crate::kafka::producer(&base)?;
    let topics = &cfg.app.topics;
    let expect = if args.topic == topics.live_prices {
        Some(crate::csvdata::FileKind::Ticks)
    } else if args.topic == topics.news_sentiment {
        Some(crate::csvdata::FileKind::Sentiment)
    } else {
        None
    };
    let opts = crate::replay::ReplayOptions {
        speed: args.speed,
        symbol: args.symbol,
        progress: true,
        expect,
    };
    let stats = crate::replay::publish_file_mapped(
        &producer,
        &args.input,
        &args.topic,
        &opts,
        args.columns.as_deref(),
    )
    .await?;
    print_out(&format!(
        "published {} messages from {} to {} ({} rows skipped)",
        stats.published,
        args.input.display(),
        args.topic,
        stats.skipped
    ));
    Ok(())
}

/// `papertrader ingest`: the `[[sources]]` into the topics until a signal.
async fn ingest(cfg: &Loaded, args: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !cfg.app.sources.is_empty(),
        "the config has no [[sources]]: add one (docs/sources.md; config/live-binance.toml is an example) and pass it with --config"
    );
    let bootstrap = args
        .brokers
        .unwrap_or_else(|| cfg.app.kafka.brokers.clone());
    anyhow::ensure!(
        bootstrap != "embedded",
        "ingest needs a running broker: pass --brokers HOST:PORT (start one with `papertrader broker`), or run `papertrader paper` with [[sources]] to trade them on the embedded broker"
    );
    let base = crate::kafka::client_config(&cfg.app.kafka, &bootstrap);
    crate::kafka::check_reachable_named(&base, &bootstrap, &cfg.app.kafka).await?;
    if cfg.app.kafka.create_topics {
        let t = &cfg.app.topics;
        let names = [
            t.live_prices.as_str(),
            t.order_book.as_str(),
            t.news.as_str(),
            t.dead_letters.as_str(),
        ];
        crate::kafka::ensure_topics(&base, &names, cfg.app.kafka.partitions).await?;
    }
    let registry = prometheus::Registry::new();
    let metrics = std::sync::Arc::new(crate::sources::SourceMetrics::new(&registry)?);
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-addr {addr}: cannot listen there"))?;
        eprintln!(
            "papertrader: metrics on http://{}/metrics",
            listener.local_addr()?
        );
        tokio::spawn(crate::http::serve_registry(listener, registry));
    }
    let stop = async {
        match args.run_for {
            Some(secs) => tokio::select! {
                _ = stop_signal() => {}
                _ = tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))) => {}
            },
            None => stop_signal().await,
        }
    };
    let published = crate::sources::run(cfg, &bootstrap, metrics, stop).await?;
    print_out(&format!("published {published} messages"));
    Ok(())
}

/// `papertrader export`: output topics or a report's tables to Parquet.
async fn export(cfg: &Loaded, args: ExportArgs) -> anyhow::Result<()> {
    let written = if let Some(dir) = &args.report {
        let out = args.out.clone().unwrap_or_else(|| dir.clone());
        crate::export::report_tables(dir, &out, &args.table)?
            .into_iter()
            .map(|w| {
                let stem = w.path.file_stem().unwrap_or_default().to_string_lossy();
                let csv = dir.join(format!("{stem}.csv")).display().to_string();
                (w, csv)
            })
            .collect::<Vec<_>>()
    } else {
        let bootstrap = args
            .brokers
            .clone()
            .unwrap_or_else(|| cfg.app.kafka.brokers.clone());
        let out = args.out.clone().unwrap_or_else(|| PathBuf::from("."));
        crate::export::export_topics(cfg, &bootstrap, &args.topic, args.kind.as_deref(), &out)
            .await?
            .into_iter()
            .zip(args.topic.iter().cloned())
            .collect()
    };
    for (w, source) in &written {
        print_out(&w.render(source));
    }
    Ok(())
}

/// `papertrader generate`: the synthetic sample data.
fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let mut spec = crate::sample::SampleSpec::default();
    spec.ticks_per_symbol = args.per_symbol.unwrap_or(spec.ticks_per_symbol);
    spec.seed = args.seed.unwrap_or(spec.seed);
    let seed = spec.seed;
    let (t, s) = crate::sample::generate(&spec);
    let create = |p: &PathBuf| {
        std::fs::File::create(p)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("creating {}", p.display()))
    };
    crate::csvdata::write_ticks_csv(create(&args.ticks)?, &t)?;
    crate::csvdata::write_sentiment_csv(create(&args.sentiment)?, &s)?;
    print_out(&format!(
        "wrote {} ticks to {} and {} sentiment readings to {} (synthetic, seed {seed})",
        t.len(),
        args.ticks.display(),
        s.len(),
        args.sentiment.display()
    ));
    Ok(())
}
