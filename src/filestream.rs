//! A file backtest's input, streamed: a bounded k-way merge of CSV files in
//! constant memory.
//!
//! The order is the one documented in [`crate::backtest`]: every record by
//! `(event ts, file position on the command line, record number in the file)`.
//! A merge by the head of each file gives exactly that order when every file is
//! sorted by time (non-decreasing `ts` over the records in the range), which
//! recorded data is. Only one record per file is held, so memory does not grow
//! with the number of events.
//!
//! A file that is not sorted cannot be merged this way. The stream notices it
//! at the first record that goes back in time, stops, and says so
//! ([`FileStream::unsorted`]); the caller then reads the files whole and sorts
//! them ([`crate::backtest::file_events_counted`]), which gives the same order
//! at the cost of memory. [`run_files`] does exactly that.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backtest::{self, Backtest, Event, TimeRange};
use crate::config::Loaded;
use crate::csvdata::{ReadOptions, Record, RecordReader};
use crate::domain::{MarketEvent, Origin, Ts};
use crate::wire::{self, InputKind};

/// Which files, read how: `--input`, `--symbol`, `--columns`.
#[derive(Debug, Clone)]
pub struct FileSpec<'a> {
    pub paths: &'a [PathBuf],
    pub range: TimeRange,
    pub symbol: Option<&'a str>,
    pub columns: Option<&'a str>,
}

/// The reader options of `--symbol` and `--columns`.
pub fn read_options(symbol: Option<&str>, columns: Option<&str>) -> anyhow::Result<ReadOptions> {
    let (columns, ts_unit) =
        crate::csvdata::parse_columns(columns.unwrap_or("")).map_err(anyhow::Error::msg)?;
    Ok(ReadOptions {
        default_symbol: symbol.map(str::to_string),
        columns,
        ts_unit,
        ..ReadOptions::default()
    })
}

/// Each file's stem, which names the origin of its events; two files with the
/// same stem are refused (their ids would collide).
pub fn stems(paths: &[PathBuf]) -> anyhow::Result<Vec<Arc<str>>> {
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        if let Some(other) = seen.insert(stem.clone(), path) {
            anyhow::bail!(
                "{} and {} have the same file stem {stem:?}, which names the origin of their events: rename one",
                other.display(),
                path.display()
            );
        }
        out.push(Arc::from(stem));
    }
    Ok(out)
}

/// The event of the record number `row` of the file `stem`.
///
/// Ticks become `live_prices` messages and sentiment `news_sentiment` messages,
/// in the wire format, keyed by symbol. A tick is checked as its message would
/// be decoded ([`wire::check_tick_ref`]) and handed over decoded with an empty
/// payload, which stands for its own encoding: the engine need not parse it
/// back, and encodes it only for a dead letter.
pub fn record_event(record: Record, stem: &str, row: i64) -> Event {
    let ts = record.ts();
    let (kind, key, payload, decoded) = match record {
        Record::Tick(t) => {
            // Checked as its message would be decoded; the payload of a good
            // tick is left empty, which stands for its own encoding, and its
            // key missing, which then stands for its symbol (the engine makes
            // both for a dead letter, their only reader).
            match wire::check_tick_ref(&t) {
                Ok(()) => (
                    InputKind::Prices,
                    None,
                    Vec::new(),
                    Some(MarketEvent::Tick(t)),
                ),
                Err(_) => {
                    let key = Some(t.symbol.as_bytes().to_vec());
                    (InputKind::Prices, key, wire::encode_tick(&t), None)
                }
            }
        }
        Record::Sentiment(s) => (
            InputKind::Sentiment,
            Some(s.symbol.as_bytes().to_vec()),
            wire::encode_sentiment(&s),
            None,
        ),
    };
    Event {
        kind,
        origin: Origin {
            topic: stem.into(),
            partition: 0,
            offset: row,
        },
        key,
        payload,
        ts,
        decoded,
    }
}

/// One file of the merge: its reader and where it is.
struct Source {
    reader: RecordReader<File>,
    path: PathBuf,
    stem: Arc<str>,
    /// Records read so far, good or bad (the next record's number).
    rows: i64,
    /// The time of the newest record in the range read from this file.
    last: Ts,
}

/// The events of CSV files in backtest order, one record per file held.
pub struct FileStream {
    sources: Vec<Source>,
    /// Each file's next record in the range and its number. A record becomes
    /// an [`Event`] only when it leaves the merge, where it is built in place
    /// in the consumer's batch ([`FileStream::fill`]): an event is a few
    /// hundred bytes, and each move of one was a copy.
    heads: Vec<Option<(Record, i64)>>,
    heap: BinaryHeap<Reverse<(Ts, usize, i64)>>,
    range: TimeRange,
    skipped: u64,
    unsorted: Option<String>,
    primed: bool,
}

impl FileStream {
    /// Open the files (their headers are read now, so a bad file fails here).
    ///
    /// # Errors
    /// Two files with the same stem, a file that cannot be opened, or one whose
    /// header is not a known layout; bad `--columns`.
    pub fn open(spec: &FileSpec<'_>) -> anyhow::Result<FileStream> {
        let opts = read_options(spec.symbol, spec.columns)?;
        let stems = stems(spec.paths)?;
        let mut sources = Vec::with_capacity(spec.paths.len());
        for (path, stem) in spec.paths.iter().zip(stems) {
            sources.push(Source {
                reader: RecordReader::open(path, &opts).map_err(anyhow::Error::msg)?,
                path: path.clone(),
                stem,
                rows: 0,
                last: Ts::MIN,
            });
        }
        Ok(FileStream {
            heads: (0..sources.len()).map(|_| None).collect(),
            sources,
            heap: BinaryHeap::new(),
            range: spec.range,
            skipped: 0,
            unsorted: None,
            primed: false,
        })
    }

    /// Rows that could not be read so far (each logged and skipped).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Why the stream stopped early: the first record that went back in time.
    pub fn unsorted(&self) -> Option<&str> {
        self.unsorted.as_deref()
    }

    /// Read file `i` up to its next record in the range and make it the head.
    fn advance(&mut self, i: usize) {
        let src = &mut self.sources[i];
        for r in src.reader.by_ref() {
            let row = src.rows;
            src.rows += 1;
            let record = match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a row");
                    self.skipped += 1;
                    continue;
                }
            };
            let ts = record.ts();
            if !self.range.contains(ts) {
                continue;
            }
            if ts < src.last {
                self.unsorted = Some(format!(
                    "{} is not sorted by time: record {row} ({}) comes after one at {}",
                    src.path.display(),
                    wire::format_ts(ts),
                    wire::format_ts(src.last)
                ));
                return;
            }
            src.last = ts;
            self.heap.push(Reverse((ts, i, row)));
            self.heads[i] = Some((record, row));
            return;
        }
    }
}

impl Iterator for FileStream {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let (record, row, i) = self.take_head()?;
        Some(record_event(record, &self.sources[i].stem, row))
    }
}

impl FileStream {
    /// Append up to `max` events to `batch`, in order, each built in place;
    /// fewer at the end of the files or where one turns out not to be sorted.
    pub fn fill(&mut self, batch: &mut Vec<Event>, max: usize) {
        for _ in 0..max {
            let Some((record, row, i)) = self.take_head() else {
                return;
            };
            batch.push(record_event(record, &self.sources[i].stem, row));
        }
    }

    /// The next record in merge order, its number and its file's index, with
    /// that file read on to its next head; `None` at the end of the files or
    /// once one is found unsorted (the caller then reads the files whole).
    fn take_head(&mut self) -> Option<(Record, i64, usize)> {
        if !self.primed {
            self.primed = true;
            for i in 0..self.sources.len() {
                self.advance(i);
            }
        }
        if self.unsorted.is_some() {
            return None;
        }
        let Reverse((_, i, _)) = self.heap.pop()?;
        let (record, row) = self.heads[i].take().expect("a head for each heap entry");
        self.advance(i);
        if self.unsorted.is_some() {
            return None;
        }
        Some((record, row, i))
    }
}

/// A backtest over CSV files, streamed when the files are sorted by time, read
/// whole and sorted when one is not (same order, same results; more memory).
/// The report counts the rows that could not be read as `rows_skipped`.
///
/// # Errors
/// The files cannot be opened or read (see [`FileStream::open`]).
pub fn run_files(cfg: &Loaded, spec: &FileSpec<'_>, progress: bool) -> anyhow::Result<Backtest> {
    let (bt, stream) = read_ahead(FileStream::open(spec)?, |events| {
        backtest::run(cfg, events, progress)
    });
    let mut bt = bt?;
    let Some(why) = stream.unsorted() else {
        bt.summary.inputs.rows_skipped = stream.skipped();
        return Ok(bt);
    };
    tracing::info!(
        "{why}: reading the files whole to sort them (sorted files are streamed in constant memory)"
    );
    let (events, skipped) = held(spec)?;
    let mut bt = backtest::run(cfg, events, progress)?;
    bt.summary.inputs.rows_skipped = skipped;
    Ok(bt)
}

/// Events per batch handed from the reading thread to the engine's, and the
/// batches that may wait between them: a few MB at most.
const READ_AHEAD_BATCH: usize = 1024;
const READ_AHEAD_BATCHES: usize = 8;

/// Run `consume` over the stream's events while another thread reads,
/// parses and merges the files ahead of it, in batches (the engine and the
/// CSV parsing each take a core); returns the stream, read as far as
/// `consume` took it, for its counts. The events arrive in the stream's
/// order.
fn read_ahead<T>(
    stream: FileStream,
    consume: impl FnOnce(std::iter::Flatten<std::sync::mpsc::IntoIter<Vec<Event>>>) -> T,
) -> (T, FileStream) {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(READ_AHEAD_BATCHES);
        let reader = std::thread::Builder::new()
            .name("csv-reader".into())
            .spawn_scoped(s, move || {
                let mut stream = stream;
                loop {
                    let mut batch = Vec::with_capacity(READ_AHEAD_BATCH);
                    stream.fill(&mut batch, READ_AHEAD_BATCH);
                    // Done, or the engine stopped taking events.
                    if batch.is_empty() || tx.send(batch).is_err() {
                        return stream;
                    }
                }
            })
            .expect("starting the CSV reading thread");
        let out = consume(rx.into_iter().flatten());
        (out, reader.join().expect("the CSV reading thread"))
    })
}

/// The events of the files, all in memory, in backtest order, and the rows
/// that could not be read: streamed when the files are sorted, else sorted.
///
/// # Errors
/// As [`FileStream::open`].
pub fn collect(spec: &FileSpec<'_>) -> anyhow::Result<(Vec<Event>, u64)> {
    let mut stream = FileStream::open(spec)?;
    let events: Vec<Event> = stream.by_ref().collect();
    match stream.unsorted() {
        None => Ok((events, stream.skipped())),
        Some(_) => {
            drop(events);
            held(spec)
        }
    }
}

/// Every record of every file read, then sorted.
fn held(spec: &FileSpec<'_>) -> anyhow::Result<(Vec<Event>, u64)> {
    backtest::file_events_counted(spec.paths, spec.range, spec.symbol, spec.columns)
}
