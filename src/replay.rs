//! Replay: publish historical records (ticks, bars turned into ticks, sentiment)
//! into Kafka topics, as fast as possible or at a multiple of the recorded pace.
//!
//! Messages are written in the documented wire format ([`crate::wire`]), keyed by
//! symbol, with the Kafka message timestamp set to the record's event time (so
//! that a time range can later be found by offsets-for-times).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::csvdata::{ReadOptions, Record, RecordReader};
use crate::domain::{Ts, NANOS_PER_MILLI};
use crate::wire;

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the broker takes it.
    Max,
    /// This many times the recorded pace (event-time gaps divided by the factor).
    Factor(f64),
    /// A fixed number of messages per second, whatever the event-time gaps.
    Rate(f64),
}

impl FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(Speed::Factor(f)),
            _ => Err(format!(
                "speed must be `max` or a positive number, got {s:?}"
            )),
        }
    }
}

/// Options of a replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub speed: Speed,
    /// Symbol for files without a symbol column.
    pub symbol: Option<String>,
    /// Show a progress bar on a terminal.
    pub progress: bool,
    /// The kind of data `topic` takes, when it is one of papertrader's input
    /// topics: a file of the other kind is refused (ticks and bars go together).
    pub expect: Option<crate::csvdata::FileKind>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub published: u64,
    /// Rows that could not be read (each is logged with its line and reason).
    pub skipped: u64,
}

/// Publish every record of a CSV file into `topic`.
pub async fn publish_file(
    producer: &FutureProducer,
    path: &Path,
    topic: &str,
    opts: &ReplayOptions,
) -> anyhow::Result<ReplayStats> {
    publish_file_mapped(producer, path, topic, opts, None).await
}

/// [`publish_file`] of a file whose column names differ from papertrader's:
/// `columns` as `--columns` takes it (`ts=Time:us,price=Last`,
/// [`crate::csvdata::parse_columns`]).
///
/// # Errors
/// A bad mapping, a file that cannot be read (an unrecognised header names
/// the mapping flag), or a failed send.
pub async fn publish_file_mapped(
    producer: &FutureProducer,
    path: &Path,
    topic: &str,
    opts: &ReplayOptions,
    columns: Option<&str>,
) -> anyhow::Result<ReplayStats> {
    let (columns, ts_unit) =
        crate::csvdata::parse_columns(columns.unwrap_or("")).map_err(anyhow::Error::msg)?;
    let ropts = ReadOptions {
        default_symbol: opts.symbol.clone(),
        bar_period: None,
        columns,
        ts_unit,
    };
    let reader = RecordReader::open(path, &ropts).map_err(anyhow::Error::msg)?;
    if let Some(want) = opts.expect {
        let got = reader.kind();
        let ticks = |k| {
            matches!(
                k,
                crate::csvdata::FileKind::Ticks | crate::csvdata::FileKind::Bars
            )
        };
        anyhow::ensure!(
            ticks(got) == ticks(want),
            "--input {} holds {} but --topic {topic} is the {} topic: publish it to the {} topic, or pass another file",
            path.display(),
            if ticks(got) { "ticks (or bars)" } else { "sentiment readings" },
            if ticks(want) { "prices" } else { "sentiment" },
            if ticks(got) { "prices" } else { "sentiment" },
        );
    }
    let mut skipped = 0;
    let mut records: Vec<Record> = reader
        .filter_map(|r| match r {
            Ok(r) => Some(r),
            Err(e) => {
                skipped += 1;
                tracing::warn!(error = %e, "skipping a row");
                None
            }
        })
        .collect();
    // Event-time order across symbols (files of bars often list one ticker after
    // another); a stable sort keeps file order for equal times. The file is held
    // in memory for this.
    crate::csvdata::sort_by_ts(&mut records);
    let bar = progress_bar(opts.progress, Some(records.len() as u64));
    let published = publish(
        producer,
        records.into_iter().map(|r| (topic, r)),
        opts.speed,
        &bar,
    )
    .await?;
    bar.finish_and_clear();
    Ok(ReplayStats { published, skipped })
}

/// Publish `(topic, record)` pairs in the order given, paced by `speed`.
pub async fn publish<'a>(
    producer: &FutureProducer,
    records: impl Iterator<Item = (&'a str, Record)>,
    speed: Speed,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    const CHUNK: usize = 1000;
    let started = tokio::time::Instant::now();
    let mut first_ts: Option<Ts> = None;
    let mut chunk: Vec<(&str, String, Vec<u8>, i64)> = Vec::with_capacity(CHUNK);
    let mut published = 0u64;
    for (i, (topic, record)) in records.enumerate() {
        let ts = record.ts();
        let (key, payload) = match &record {
            Record::Tick(t) => (t.symbol.to_string(), wire::encode_tick(t)),
            Record::Sentiment(s) => (s.symbol.to_string(), wire::encode_sentiment(s)),
        };
        let due = match speed {
            Speed::Max => None,
            Speed::Factor(f) => {
                let first = *first_ts.get_or_insert(ts);
                Some(Duration::from_secs_f64(
                    ((ts - first).max(0) as f64 / 1e9) / f,
                ))
            }
            Speed::Rate(r) => Some(Duration::from_secs_f64(i as f64 / r)),
        };
        if let Some(due) = due {
            let at = started + due;
            if at > tokio::time::Instant::now() {
                // Send what is ready before sleeping, so pacing is real.
                published += send_chunk(producer, &mut chunk).await?;
                bar.set_position(published);
                tokio::time::sleep_until(at).await;
            }
        }
        chunk.push((topic, key, payload, ts / NANOS_PER_MILLI));
        if chunk.len() >= CHUNK {
            published += send_chunk(producer, &mut chunk).await?;
            bar.set_position(published);
        }
    }
    published += send_chunk(producer, &mut chunk).await?;
    bar.set_position(published);
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the producer")?;
    Ok(published)
}

async fn send_chunk(
    producer: &FutureProducer,
    chunk: &mut Vec<(&str, String, Vec<u8>, i64)>,
) -> anyhow::Result<u64> {
    let n = chunk.len() as u64;
    let sends = chunk.iter().map(|(topic, key, payload, ts_ms)| {
        producer.send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .timestamp(*ts_ms),
            Duration::from_secs(60),
        )
    });
    for r in join_all(sends).await {
        r.map_err(|(e, _)| e).context("publishing a record")?;
    }
    chunk.clear();
    Ok(n)
}

/// A progress bar on stderr when `show` and stderr is a terminal; hidden otherwise.
pub fn progress_bar(show: bool, len: Option<u64>) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        "{bar:40} {pos}/{len} messages published ({per_sec}, eta {eta})"
    } else {
        "{spinner} {pos} messages published ({per_sec}) {elapsed}"
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar
}
