//! Wiring of the modes: which broker, which topics, what is fed, what runs.

use std::future::Future;
use std::path::Path;

use anyhow::Context;

use crate::config::Loaded;
use crate::csvdata::{self, Record};
use crate::kafka;
use crate::paper::{self, StopWhen};
use crate::replay::{self, Speed};
use crate::summary::Summary;

/// Paper mode as the CLI runs it: on the configured cluster, or on an embedded
/// broker that is started here and fed the demo data.
pub async fn paper(
    cfg: &Loaded,
    stop: StopWhen,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Summary> {
    if cfg.app.kafka.brokers != "embedded" {
        return paper_with_sources(cfg, &cfg.app.kafka.brokers, stop, shutdown).await;
    }
    #[cfg(feature = "embedded")]
    {
        let broker = match cfg.app.kafka.embedded_addr().filter(|a| a.port() != 0) {
            Some(addr) => crate::embedded::EmbeddedBroker::start_on(addr).await?,
            None => crate::embedded::EmbeddedBroker::start().await?,
        };
        let bootstrap = broker.bootstrap();
        tracing::info!(%bootstrap, "embedded broker listening");
        let base = kafka::client_config(&cfg.app.kafka, &bootstrap);
        let mut names: Vec<&str> = cfg.app.topics.inputs().iter().map(|(t, _)| *t).collect();
        names.extend(cfg.app.topics.outputs());
        if !cfg.app.sources.is_empty() {
            names.push(&cfg.app.topics.news);
        }
        kafka::ensure_topics(&base, &names, cfg.app.kafka.partitions).await?;
        if cfg.app.demo.feed {
            // The demo data is recorded first, then traded: paper mode takes it in
            // event-time order (engine.order), so every run gives the same outputs,
            // equal to a backtest of the same topics.
            publish_demo(cfg, &base, "feeding the demo data")
                .await
                .context("feeding the demo data into the embedded broker")?;
        }
        let summary = paper_with_sources(cfg, &bootstrap, stop, shutdown).await;
        drop(broker);
        summary
    }
    #[cfg(not(feature = "embedded"))]
    {
        let _ = (stop, shutdown);
        anyhow::bail!(
            "kafka.brokers is \"embedded\" but this build has no embedded broker: \
             rebuild with the `embedded` feature or set kafka.brokers to your cluster"
        )
    }
}

/// Paper mode with the `[[sources]]` running in-process beside it, publishing
/// to the same brokers (their metrics on paper mode's `/metrics`); they stop
/// when paper mode does.
pub async fn paper_with_sources(
    cfg: &Loaded,
    bootstrap: &str,
    stop: StopWhen,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let monitor = std::sync::Arc::new(crate::monitor::Monitor::from_config(cfg));
    let sources = if cfg.app.sources.is_empty() {
        None
    } else {
        if cfg.app.kafka.create_topics {
            let base = kafka::client_config(&cfg.app.kafka, bootstrap);
            kafka::ensure_topics(
                &base,
                &[cfg.app.topics.news.as_str()],
                cfg.app.kafka.partitions,
            )
            .await?;
        }
        let metrics = crate::sources::SourceMetrics::new(monitor.metrics.registry())?;
        Some(crate::sources::spawn(
            cfg,
            bootstrap,
            std::sync::Arc::new(metrics),
        )?)
    };
    let summary = paper::run_with(cfg, bootstrap, stop, shutdown, monitor).await;
    if let Some(s) = sources {
        s.stop().await;
    }
    summary
}

/// Publish the demo's files (`[demo]`) into the input topics at full speed, in
/// event-time order, and return the records sent.
pub async fn publish_demo(
    cfg: &Loaded,
    base: &rdkafka::ClientConfig,
    what: &str,
) -> anyhow::Result<Vec<(String, Record)>> {
    let records = demo_records(cfg)?;
    let producer = kafka::producer(base)?;
    tracing::info!(messages = records.len(), "{what}");
    let bar = replay::progress_bar(false, None);
    replay::publish(
        &producer,
        records.iter().map(|(t, r)| (t.as_str(), r.clone())),
        Speed::Max,
        &bar,
    )
    .await?;
    Ok(records)
}

/// The demo's files as `(topic, record)` pairs merged in event-time order.
pub fn demo_records(cfg: &Loaded) -> anyhow::Result<Vec<(String, Record)>> {
    let topics = &cfg.app.topics;
    let mut lists = Vec::new();
    let files = cfg
        .app
        .demo
        .prices
        .iter()
        .map(|f| (f, &topics.live_prices))
        .chain(
            cfg.app
                .demo
                .sentiment
                .iter()
                .map(|f| (f, &topics.news_sentiment)),
        );
    for (file, topic) in files {
        let (good, bad) = csvdata::read_records(Path::new(file), None)
            .with_context(|| format!("reading demo file {file} (demo.prices / demo.sentiment)"))?;
        for e in &bad {
            tracing::warn!(error = %e, "skipping a row of a demo file");
        }
        lists.push(
            good.into_iter()
                .map(|r| (topic.clone(), r))
                .collect::<Vec<_>>(),
        );
    }
    let mut all: Vec<(String, Record)> = lists.into_iter().flatten().collect();
    all.sort_by_key(|(_, r)| r.ts());
    Ok(all)
}

/// The CSV files of a backtest or sweep (`--input`), and the symbol of those
/// without a symbol column (`--symbol`).
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub paths: Vec<std::path::PathBuf>,
    pub symbol: Option<String>,
    /// `--columns`: the files' column names, by papertrader's.
    pub columns: Option<String>,
}

impl Files {
    /// These files over `range`, for [`crate::filestream`].
    pub fn spec(&self, range: crate::backtest::TimeRange) -> crate::filestream::FileSpec<'_> {
        crate::filestream::FileSpec {
            paths: &self.paths,
            range,
            symbol: self.symbol.as_deref(),
            columns: self.columns.as_deref(),
        }
    }
}

/// A backtest as the CLI runs it: over `inputs` (CSV files) when there are any,
/// else over the input topics of `brokers` (default `kafka.brokers`); see
/// [`backtest_events`].
///
/// With `publish` (a run id, `--publish`), the outputs also go to the topics
/// `{run_id}.{topic}` of the same cluster as the engine emits them
/// ([`crate::publish`]). That needs a cluster that outlives the run:
/// `"embedded"` is refused, because the embedded broker, and every topic on it,
/// ends with the backtest, so nothing could ever read what was published.
pub async fn backtest(
    cfg: &Loaded,
    inputs: &Files,
    range: crate::backtest::TimeRange,
    brokers: Option<&str>,
    publish: Option<&str>,
    progress: bool,
) -> anyhow::Result<(crate::backtest::Backtest, Option<crate::publish::Published>)> {
    let Some(run_id) = publish else {
        if !inputs.paths.is_empty() {
            // Files are streamed in constant memory (when sorted by time).
            return Ok((
                crate::filestream::run_files(cfg, &inputs.spec(range), progress)?,
                None,
            ));
        }
        return Ok((kafka_backtest(cfg, range, brokers, progress).await?, None));
    };
    let topics = crate::publish::run_topics(run_id, &cfg.app.topics)
        .map_err(|e| anyhow::anyhow!("--publish {run_id:?}: {e}"))?;
    let bootstrap = brokers.unwrap_or(&cfg.app.kafka.brokers);
    anyhow::ensure!(
        bootstrap != "embedded",
        "--publish needs a Kafka cluster that outlives the backtest, but the brokers are \"embedded\": \
         that broker runs inside this process and its topics end with it. Fix: pass --brokers HOST:PORT \
         or set kafka.brokers (no cluster? run `papertrader broker --listen 127.0.0.1:9092` in another terminal)"
    );
    let publisher = crate::publish::RunPublisher::connect(cfg, bootstrap, topics).await?;
    let (events, skipped) = backtest_events(cfg, inputs, range, Some(bootstrap), progress).await?;
    let (mut bt, published) = crate::publish::run(cfg, events, progress, publisher).await?;
    bt.summary.inputs.rows_skipped = skipped;
    Ok((bt, Some(published)))
}

/// A backtest of the input topics of `brokers` (default `kafka.brokers`;
/// `"embedded"`: of the demo data, see [`backtest_events`]), streamed: the
/// engine runs while the partitions are read, and no event is held after it
/// ran.
async fn kafka_backtest(
    cfg: &Loaded,
    range: crate::backtest::TimeRange,
    brokers: Option<&str>,
    progress: bool,
) -> anyhow::Result<crate::backtest::Backtest> {
    let opts = crate::backtest::KafkaRange {
        range,
        ..crate::backtest::KafkaRange::default()
    };
    let bootstrap = brokers.unwrap_or(&cfg.app.kafka.brokers);
    if bootstrap != "embedded" {
        return crate::backtest::run_kafka(cfg, bootstrap, &opts, progress).await;
    }
    #[cfg(feature = "embedded")]
    {
        let broker = demo_broker(cfg).await?;
        let bt = crate::backtest::run_kafka(cfg, &broker.bootstrap(), &opts, progress).await;
        drop(broker);
        bt
    }
    #[cfg(not(feature = "embedded"))]
    {
        anyhow::bail!(
            "a Kafka backtest needs a cluster: pass --brokers HOST:PORT or set kafka.brokers (or use --input FILE)"
        )
    }
}

/// An embedded broker whose input topics hold the demo data (`[demo]`, the
/// records paper mode's demo feeds), published at full speed: what a backtest
/// on `"embedded"` brokers reads, there being no recorded history.
#[cfg(feature = "embedded")]
async fn demo_broker(cfg: &Loaded) -> anyhow::Result<crate::embedded::EmbeddedBroker> {
    let broker = crate::embedded::EmbeddedBroker::start().await?;
    let base = kafka::client_config(&cfg.app.kafka, &broker.bootstrap());
    let names: Vec<&str> = cfg.app.topics.inputs().iter().map(|(t, _)| *t).collect();
    kafka::ensure_topics(&base, &names, cfg.app.kafka.partitions).await?;
    publish_demo(
        cfg,
        &base,
        "embedded broker: publishing the demo data to backtest it",
    )
    .await?;
    Ok(broker)
}

/// The events of a backtest (or of a sweep), merged in their backtest order:
/// from `inputs` (CSV files) when there are any, else from the input topics of
/// `brokers` (default `kafka.brokers`).
///
/// With `"embedded"` there is no recorded history to read, so an embedded broker
/// is started, its input topics are filled with the demo data (`[demo]`, the same
/// records paper mode's demo feeds) at full speed, and the events are read back:
/// a self-contained demonstration of the Kafka path.
pub async fn backtest_events(
    cfg: &Loaded,
    inputs: &Files,
    range: crate::backtest::TimeRange,
    brokers: Option<&str>,
    progress: bool,
) -> anyhow::Result<(Vec<crate::backtest::Event>, u64)> {
    use crate::backtest::{self, KafkaRange};
    if !inputs.paths.is_empty() {
        return crate::filestream::collect(&inputs.spec(range));
    }
    let opts = KafkaRange {
        range,
        ..KafkaRange::default()
    };
    let bootstrap = brokers.unwrap_or(&cfg.app.kafka.brokers);
    if bootstrap != "embedded" {
        return Ok((
            backtest::kafka_events(cfg, bootstrap, &opts, progress).await?,
            0,
        ));
    }
    #[cfg(feature = "embedded")]
    {
        let broker = demo_broker(cfg).await?;
        let events = backtest::kafka_events(cfg, &broker.bootstrap(), &opts, progress).await;
        drop(broker);
        Ok((events?, 0))
    }
    #[cfg(not(feature = "embedded"))]
    {
        anyhow::bail!(
            "a Kafka backtest needs a cluster: pass --brokers HOST:PORT or set kafka.brokers (or use --input FILE)"
        )
    }
}
