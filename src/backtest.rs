//! Backtests: the paper-mode engine run over a deterministic, finite event stream.
//!
//! The step is the same as in paper mode ([`crate::step::step`]: the engine, then
//! the alert rules; same admission checks, same deterministic ids); only the
//! source and the clock differ. The source is a set of CSV files or the recorded
//! input topics of a Kafka cluster, merged into one stream in event-time order with
//! a fixed tie-break, so that the same inputs always give byte-identical outputs.
//! There is no wall clock: time is the event time of the data.
//!
//! Ordering rules (the places where a decision is made):
//!
//! * **Files** ([`file_events`]): every record of every file is read, then all are
//!   sorted by `(event ts, file position on the command line, record number in
//!   the file)`. A file's records get the origin `(file stem, partition 0, record
//!   number)`, where the record number counts the records the reader yields
//!   (four per OHLCV bar), good or bad, from 0.
//! * **Kafka** ([`kafka_events`]): each partition is read in offset order, and the
//!   partitions are merged by the head of each: smallest `(event ts, topic,
//!   partition, offset)` first. Order within a partition is never changed (as in
//!   paper mode), so with one partition per topic a backtest sees exactly what
//!   paper mode sees. A message that does not decode has no event time; it takes
//!   the event time of the message before it in its partition (or the lowest
//!   time when it is the first), so it stays in place.
//! * **Ranges**: `--from` and `--to` filter by the event time in the message (the
//!   record's own `ts` after decoding), both inclusive. tansu's offsets-for-times
//!   compares storage time, not record time (docs/broker.md), so partitions are
//!   always read from the beginning.
//! * **End of a partition**: tansu's ListOffsets(latest) can undercount
//!   (docs/broker.md), so the queried high watermark is only a lower bound. A
//!   partition is finished when its consumer has passed that watermark AND either
//!   librdkafka reported partition EOF (`enable.partition.eof = true`; EOF follows
//!   the high watermark of the Fetch responses, which tansu gets right) or the
//!   partition has been quiet for [`KafkaRange::quiet`].

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::alerts::Alerts;
use crate::config::Loaded;
use crate::csvdata::RecordReader;
use crate::domain::Output;
use crate::domain::{MarketEvent, Origin, Ts};
use crate::engine::{Engine, SpecError};
use crate::kafka;
pub use crate::report::Backtest;
use crate::report::Collector;
use crate::step::{step, Input};
use crate::wire::InputKind;

/// One input message of a backtest, in the engine's terms.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: InputKind,
    pub origin: Origin,
    /// A file's decoded tick has none (and an empty `payload`): the engine
    /// takes its symbol (and its encoding) for a dead letter.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The event time used for ordering (see the module docs for undecodable messages).
    pub ts: Ts,
    /// The decoded event, when it decodes (saves decoding twice).
    pub decoded: Option<MarketEvent>,
}

/// Run the engine over `events`, in the order given, and collect its outputs.
///
/// # Errors
/// The engine cannot be built from `cfg` (never for a configuration from
/// [`crate::config::load`], which checks what the engine needs).
pub fn run(
    cfg: &Loaded,
    events: impl IntoIterator<Item = Event>,
    progress: bool,
) -> Result<Backtest, SpecError> {
    drive(
        cfg,
        events.into_iter().map(Cow::Owned),
        progress,
        &mut |_| {},
    )
}

/// [`run`], also handing every output to `sink` as the engine emits it, in
/// emission order (what paper mode would publish, in the order it would publish
/// it). The report's collector still gets every output.
pub fn run_with(
    cfg: &Loaded,
    events: impl IntoIterator<Item = Event>,
    progress: bool,
    mut sink: impl FnMut(&Output),
) -> Result<Backtest, SpecError> {
    drive(cfg, events.into_iter().map(Cow::Owned), progress, &mut sink)
}

/// [`run`] over borrowed events, so that several runs (a parameter sweep) share
/// one copy of the input. Same results as [`run`] over the same events.
pub fn run_shared(cfg: &Loaded, events: &[Event], progress: bool) -> Result<Backtest, SpecError> {
    drive(cfg, events.iter().map(Cow::Borrowed), progress, &mut |_| {})
}

fn drive<'a>(
    cfg: &Loaded,
    events: impl Iterator<Item = Cow<'a, Event>>,
    progress: bool,
    sink: &mut dyn FnMut(&Output),
) -> Result<Backtest, SpecError> {
    let mut engine = Engine::new(&cfg.engine_spec())?;
    let mut alerts = (!cfg.app.alerts.rules.is_empty()).then(|| Alerts::new(&cfg.app.alerts));
    let bar = progress_bar(progress);
    let started = Instant::now();
    let mut collector = Collector::new(cfg);
    let mut out = Vec::new();
    let mut n = 0u64;
    let (mut start, mut end) = (None, None);
    // Equity marks (`report.mark_every`): the accounts after the last event
    // of each period that has events, at that event's time.
    let every = cfg.app.report.mark_every.nanos().max(1);
    let mut period: Option<(i64, Ts)> = None;
    let mut symbol = String::new();
    for ev in events {
        // An undecodable first message of a partition has no event time (Ts::MIN):
        // it opens no period and sets no bound.
        if ev.ts != Ts::MIN {
            start = Some(start.map_or(ev.ts, |s: Ts| s.min(ev.ts)));
            end = Some(end.map_or(ev.ts, |e: Ts| e.max(ev.ts)));
            let p = ev.ts.div_euclid(every);
            // A late event (an earlier period) belongs to the period open now.
            period = Some(match period {
                Some((q, at)) if p > q => {
                    collector.mark(at, &engine, false);
                    (p, ev.ts)
                }
                Some((q, at)) => (q, at.max(ev.ts)),
                None => (p, ev.ts),
            });
        }
        let (ev, decoded) = match ev {
            Cow::Owned(mut e) => {
                let d = e.decoded.take();
                (Cow::Owned(e), d)
            }
            Cow::Borrowed(e) => (Cow::Borrowed(e), e.decoded.clone()),
        };
        // Decoded here when the source did not (a topic): the report's price
        // chart takes the admitted trades.
        let decoded = decoded.map_or_else(|| crate::wire::decode(ev.kind, &ev.payload), Ok);
        // The trade for the chart, its symbol copied into a reused buffer.
        let tick = match &decoded {
            Ok(crate::domain::MarketEvent::Tick(t)) => {
                symbol.clear();
                symbol.push_str(&t.symbol);
                Some((t.ts, t.price, t.size))
            }
            _ => None,
        };
        let input = Input {
            kind: ev.kind,
            origin: &ev.origin,
            key: ev.key.as_deref(),
            payload: &ev.payload,
            decoded: Some(decoded),
        };
        // No wall clock: `stale_feed` rules (paper mode only) never fire here.
        let now = Duration::from_nanos(ev.ts.max(0) as u64);
        step(&mut engine, alerts.as_mut(), input, now, &mut out);
        if let Some((ts, price, size)) =
            tick.filter(|_| !out.iter().any(|o| matches!(o, Output::DeadLetter(_))))
        {
            collector.prices.on_trade(&symbol, ts, price, size);
        }
        for o in out.drain(..) {
            sink(&o);
            collector.push(o);
        }
        n += 1;
        if n.is_multiple_of(4096) {
            bar.set_position(n);
            if let Some(e) = end {
                bar.set_message(crate::wire::format_ts(e));
            }
        }
    }
    bar.set_position(n);
    bar.finish_and_clear();
    // `exits.close_at_end`: the open positions are closed after the last event.
    if cfg.strategies.iter().any(|s| s.exits.close_at_end) {
        engine.close_at_end(&mut out);
        for o in out.drain(..) {
            sink(&o);
            collector.push(o);
        }
    }
    let summary = engine.summary();
    if let Some((_, at)) = period {
        collector.mark(at, &engine, true);
    }
    Ok(Backtest {
        summary,
        collector,
        events: n,
        start,
        end,
        elapsed: started.elapsed(),
    })
}

/// A spinner with events and events/s on a terminal (stderr); hidden otherwise.
pub fn progress_bar(show: bool) -> ProgressBar {
    progress_bar_for(show, "events")
}

/// [`progress_bar`] counting `what`.
fn progress_bar_for(show: bool, what: &str) -> ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{pos}} {what} ({{eps}}) {{elapsed}}  event time {{msg}}"
        ))
        .expect("valid template")
        .with_key(
            "eps",
            |st: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", st.per_sec());
            },
        ),
    );
    bar
}

/// A bar of the parameter sets of a sweep on a terminal (stderr): sets done
/// of all, the rate and the time left; hidden otherwise.
pub fn sets_bar(sets: usize) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar =
        ProgressBar::with_draw_target(Some(sets as u64), ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} parameter sets ({per_sec}, {eta} left)")
            .expect("valid template"),
    );
    bar
}

/// Time filter of a backtest, on event time, both ends inclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// `None`: from the earliest message.
    pub from: Option<Ts>,
    /// `None`: to the latest message.
    pub to: Option<Ts>,
}

impl TimeRange {
    /// `--from FROM --to TO`: `earliest` / `latest` for no bound, or a time
    /// ([`parse_bound`]). A bare date as `--to` means the whole day (to its
    /// last nanosecond). Refused: `--from latest`, `--to earliest` (they select
    /// nothing, or mean the other end) and a `--from` after the `--to`.
    ///
    /// # Errors
    /// Which flag, what is wrong, and what to write instead.
    pub fn parse(from: &str, to: &str) -> Result<TimeRange, String> {
        if from.eq_ignore_ascii_case("latest") {
            return Err("--from latest: a range cannot start at the latest message; use --from earliest or a time".into());
        }
        if to.eq_ignore_ascii_case("earliest") {
            return Err("--to earliest: a range cannot end at the earliest message; use --to latest or a time".into());
        }
        let f = parse_bound(from).map_err(|e| format!("--from: {e}"))?;
        let mut t = parse_bound(to).map_err(|e| format!("--to: {e}"))?;
        if let Some(end) = t.as_mut() {
            if is_bare_date(to) {
                *end += crate::csvdata::NANOS_PER_DAY - 1;
            }
        }
        if let (Some(a), Some(b)) = (f, t) {
            if a > b {
                return Err(format!(
                    "--from {from} is after --to {to}: the range holds no event; swap them"
                ));
            }
        }
        Ok(TimeRange { from: f, to: t })
    }

    pub fn contains(&self, ts: Ts) -> bool {
        self.from.is_none_or(|f| ts >= f) && self.to.is_none_or(|t| ts <= t)
    }
}

/// Parse `--from`/`--to`: `earliest`/`latest` (no bound) or a time that
/// [`crate::csvdata::parse_ts`] accepts (epoch ms, RFC 3339, `yyyy-mm-dd`, ...).
pub fn parse_bound(s: &str) -> Result<Option<Ts>, String> {
    if s.eq_ignore_ascii_case("earliest") || s.eq_ignore_ascii_case("latest") {
        return Ok(None);
    }
    crate::csvdata::parse_ts(s).map(Some).ok_or_else(|| {
        format!("{s:?} is not a time: use earliest/latest, epoch ms, RFC 3339 or yyyy-mm-dd")
    })
}

/// `yyyy-mm-dd` alone (no time of day).
fn is_bare_date(s: &str) -> bool {
    let b = s.trim().as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

// ---------------------------------------------------------------------------
// Files

/// Read the files and merge their records by `(ts, file order, record number)`.
///
/// Ticks become `live_prices` messages and sentiment `news_sentiment` messages, in
/// the wire format (`wire::encode_tick` / `wire::encode_sentiment`), keyed by
/// symbol. Rows that cannot be read are logged and skipped (they keep their record
/// number). Two files with the same stem are refused: their ids would collide.
pub fn file_events(paths: &[PathBuf], range: TimeRange) -> anyhow::Result<Vec<Event>> {
    file_events_for(paths, range, None)
}

/// [`file_events`], with `symbol` for the files that have no symbol column
/// (`--symbol`).
pub fn file_events_for(
    paths: &[PathBuf],
    range: TimeRange,
    symbol: Option<&str>,
) -> anyhow::Result<Vec<Event>> {
    file_events_counted(paths, range, symbol, None).map(|(events, _)| events)
}

/// [`file_events_for`], and how many rows could not be read (each logged and
/// skipped; a backtest counts them in its summary and report as `rows_skipped`).
pub fn file_events_counted(
    paths: &[PathBuf],
    range: TimeRange,
    symbol: Option<&str>,
    columns: Option<&str>,
) -> anyhow::Result<(Vec<Event>, u64)> {
    use crate::filestream::{read_options, record_event, stems};
    let mut skipped = 0u64;
    let opts = read_options(symbol, columns)?;
    let stems = stems(paths)?;
    let mut all: Vec<(Ts, usize, i64, Event)> = Vec::new();
    for (fi, (path, stem)) in paths.iter().zip(stems).enumerate() {
        let reader = RecordReader::open(path, &opts).map_err(anyhow::Error::msg)?;
        for (row, r) in reader.enumerate() {
            let record = match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a row");
                    skipped += 1;
                    continue;
                }
            };
            let ts = record.ts();
            if !range.contains(ts) {
                continue;
            }
            all.push((ts, fi, row as i64, record_event(record, &stem, row as i64)));
        }
    }
    all.sort_by_key(|(ts, fi, row, _)| (*ts, *fi, *row));
    Ok((all.into_iter().map(|(_, _, _, e)| e).collect(), skipped))
}

/// Backtest over CSV files: streamed in constant memory when they are sorted
/// by time ([`crate::filestream::run_files`]).
pub fn run_files(
    cfg: &Loaded,
    paths: &[PathBuf],
    range: TimeRange,
    progress: bool,
) -> anyhow::Result<Backtest> {
    let spec = crate::filestream::FileSpec {
        paths,
        range,
        symbol: None,
        columns: None,
    };
    crate::filestream::run_files(cfg, &spec, progress)
}

// ---------------------------------------------------------------------------
// Kafka

/// How the Kafka source reads its topics.
#[derive(Debug, Clone)]
pub struct KafkaRange {
    pub range: TimeRange,
    /// A partition past its queried watermark with nothing new for this long is
    /// finished even without an EOF.
    pub quiet: Duration,
    /// Give up when the topics have not been read to their end after this long.
    pub timeout: Duration,
}

impl Default for KafkaRange {
    fn default() -> Self {
        KafkaRange {
            range: TimeRange::default(),
            quiet: Duration::from_secs(2),
            timeout: Duration::from_secs(300),
        }
    }
}

/// Read every partition of the configured input topics to its end and merge them
/// by `(ts, topic, partition, offset)` (see the module docs). Topics that do not
/// exist are skipped with a warning. No consumer group is joined and no offset is
/// committed. All the events are held: [`run_kafka`] streams them instead.
pub async fn kafka_events(
    cfg: &Loaded,
    bootstrap: &str,
    opts: &KafkaRange,
    progress: bool,
) -> anyhow::Result<Vec<Event>> {
    let (cc, kinds) = kafka_source(cfg, bootstrap).await?;
    let opts = opts.clone();
    let bar = progress_bar_for(progress, "messages read");
    let events = tokio::task::spawn_blocking({
        let bar = bar.clone();
        move || -> anyhow::Result<Vec<Event>> {
            let mut stream = crate::topicstream::TopicStream::open(&cc, &kinds, &opts, &bar)?;
            let events: Vec<Event> = stream.by_ref().collect();
            match stream.take_error() {
                Some(e) => Err(e),
                None => Ok(events),
            }
        }
    })
    .await?;
    bar.finish_and_clear();
    events
}

/// The consumer configuration of a Kafka backtest and its input topics.
async fn kafka_source(
    cfg: &Loaded,
    bootstrap: &str,
) -> anyhow::Result<(rdkafka::ClientConfig, Vec<(String, InputKind)>)> {
    let base = kafka::client_config(&cfg.app.kafka, bootstrap);
    kafka::check_reachable_named(&base, bootstrap, &cfg.app.kafka).await?;
    let kinds: Vec<(String, InputKind)> = cfg
        .app
        .topics
        .inputs()
        .iter()
        .map(|(t, k)| (t.to_string(), *k))
        .collect();
    let mut c = base.clone();
    c.set("group.id", format!("{}-backtest", cfg.app.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    Ok((c, kinds))
}

/// Merge partitions, each kept in its own order, by the smallest head
/// `(ts, topic, partition, offset)`.
pub fn merge_partitions(lists: Vec<Vec<Event>>) -> Vec<Event> {
    let total = lists.iter().map(Vec::len).sum();
    let mut iters: Vec<std::vec::IntoIter<Event>> = lists.into_iter().map(Vec::into_iter).collect();
    let mut heads: HashMap<usize, Event> = HashMap::new();
    let mut heap = BinaryHeap::new();
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some(e) = it.next() {
            heap.push(Reverse((e.ts, e.origin.clone(), i)));
            heads.insert(i, e);
        }
    }
    let mut out = Vec::with_capacity(total);
    while let Some(Reverse((_, _, i))) = heap.pop() {
        out.push(heads.remove(&i).expect("head"));
        if let Some(e) = iters[i].next() {
            heap.push(Reverse((e.ts, e.origin.clone(), i)));
            heads.insert(i, e);
        }
    }
    out
}

/// Backtest over the input topics of the cluster at `bootstrap`, streamed:
/// each partition is read by a thread of its own while the engine runs, at
/// most [`crate::topicstream::QUEUED`] messages held per partition.
pub async fn run_kafka(
    cfg: &Loaded,
    bootstrap: &str,
    opts: &KafkaRange,
    progress: bool,
) -> anyhow::Result<Backtest> {
    let (cc, kinds) = kafka_source(cfg, bootstrap).await?;
    let (cfg, opts) = (cfg.clone(), opts.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<Backtest> {
        let hidden = ProgressBar::hidden();
        let mut stream = crate::topicstream::TopicStream::open(&cc, &kinds, &opts, &hidden)?;
        let bt = run(&cfg, stream.by_ref(), progress)?;
        match stream.take_error() {
            Some(e) => Err(e),
            None => Ok(bt),
        }
    })
    .await?
}
