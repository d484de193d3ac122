//! Historical CSV files in, domain values out (and ticks and sentiment back out to CSV).
//!
//! Three kinds of file are read, told apart by their header line ([`detect_kind`]).
//! Column names are matched case-insensitively after trimming, in any order;
//! extra columns are ignored.
//!
//! * **Ticks**: `ts,symbol,price,size` with optional `bid,ask`.
//! * **Sentiment**: `ts,symbol,score,source` with optional `headline`; `score` is
//!   an `f64` in [-1, 1].
//! * **OHLCV bars**: a time column (`Date`, `Time`, `Datetime`, `Timestamp` or
//!   `ts`; a separate `Date` and `Time` pair is joined with a space), `Open`,
//!   `High`, `Low`, `Close`, optional `Volume`, optional `Ticker` or `Symbol`.
//!   Bars are turned into ticks by the rule below.
//!
//! A file without a `symbol`/`ticker` column takes the symbol the caller
//! supplies ([`ReadOptions::default_symbol`]); with neither, opening it fails
//! with [`CsvDataError::NoSymbol`]. A symbol column in the file always wins.
//!
//! Prices, sizes and volumes are parsed exactly with `Decimal::from_str` (and
//! `Decimal::from_scientific` for values such as `1.00532E+11`), never through
//! `f64`. Timestamps accept epoch milliseconds (an integer), RFC 3339
//! (`2026-01-05T14:30:00.123Z`), `yyyy-mm-dd`, `m/d/yyyy` and
//! `dd.mm.yyyy HH:MM:SS.mmm`, the last three optionally with a time of day
//! (`HH:MM`, `HH:MM:SS`, fractional seconds). Values without an offset are
//! taken as UTC; a bare date means 00:00 UTC of that date. See [`parse_ts`].
//!
//! Reading never panics on bad input. A bad row yields a [`RowError`] (file,
//! line number, [`RowErrorKind`]) in place of its record, so the caller can
//! report or dead-letter it and carry on; only a file that cannot be opened,
//! is empty, or has an unrecognised header fails as a whole ([`CsvDataError`]).
//! [`RecordReader`] streams a file; [`read_records`] collects one.
//!
//! Records come out in file order (bars of several tickers in one file keep the
//! file's order). [`sort_by_ts`] and [`merge_by_ts`] order records of several
//! symbols or files by timestamp, ties broken by input order (a stable sort).
//!
//! ## Bars become ticks
//!
//! A bar at time `t` with prices `O, H, L, C`, volume `V` and period `P`
//! becomes exactly four ticks of its symbol (always four, even when prices
//! repeat, e.g. `O == H`):
//!
//! | tick | time       | price                                   | size            |
//! |------|------------|-----------------------------------------|-----------------|
//! | 1    | `t`        | `O`                                     | `q`             |
//! | 2    | `t + P/4`  | the extreme nearer the open: `H` if `H - O < O - L`, `L` if `H - O > O - L` | `q` |
//! | 3    | `t + P/2`  | the other extreme                       | `q`             |
//! | 4    | `t + 3P/4` | `C`                                     | `V - 3q`        |
//!
//! This is the usual OHLC path assumption: from the open the price visits the
//! nearer extreme first. On a tie (`H - O == O - L`) it visits first the extreme
//! farther from the close (the shorter path), and if that ties too, `H` first.
//! `q` is `V / 4` truncated to as many decimal places as `V` has, so whole share
//! counts stay whole; the close tick takes the remainder and the four sizes sum
//! exactly to `V`. Without a volume column every size is 0. Bar ticks carry no
//! bid or ask. Offsets are integer nanoseconds, `P * k / 4` rounded down.
//!
//! `t` is the bar's own timestamp. A daily bar dated `2011-01-03` is at
//! 00:00 UTC, so its ticks fall at 00:00, 06:00, 12:00 and 18:00 UTC: a
//! deterministic placement inside the bar's period, not a claim about the
//! exchange session.
//!
//! `P` is [`ReadOptions::bar_period`] if given. Otherwise it is inferred per
//! symbol as the smallest spacing between consecutive bars among that
//! symbol's first 8 bars (or all of them if it has fewer; 1 day for a symbol
//! with a single bar). The smallest spacing rather than simply the first one,
//! so that daily bars starting on a Friday get `P` = 1 day, not 3 days. The
//! bars of one symbol must have strictly increasing timestamps; a bar that does
//! not is a row error. While `P` is not yet known the reader holds that
//! symbol's first bars, and to keep file order everything read after them, in
//! memory (in practice at most 8 bars per symbol). The ticks of a bar stay
//! before the next bar of the same symbol whenever consecutive bars are at
//! least `3P/4` apart, which holds when `P` is the real bar period.
//!
//! ## Writing
//!
//! [`write_ticks_csv`] and [`write_sentiment_csv`] write the tick and sentiment
//! formats above: timestamps as epoch milliseconds when they are whole
//! milliseconds, otherwise RFC 3339 with nanoseconds; decimals as their exact
//! string; `bid,ask` (or `headline`) columns only when some record has one.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat};
use rust_decimal::Decimal;
use thiserror::Error;

use crate::domain::{MarketEvent, Name, Sentiment, Tick, Ts, NANOS_PER_MILLI, NANOS_PER_SEC};

/// Nanoseconds per day.
pub const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SEC;
/// Bar period assumed for a symbol that has a single bar and no explicit period.
pub const DEFAULT_BAR_PERIOD: Ts = NANOS_PER_DAY;
/// How many leading bars of a symbol the period is inferred from.
pub const PERIOD_INFERENCE_BARS: usize = 8;

/// What a CSV file holds, as told by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Ticks,
    Bars,
    Sentiment,
}

/// One value read from a file: a tick (read directly or derived from a bar) or
/// a sentiment reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Tick(Tick),
    Sentiment(Sentiment),
}

impl Record {
    pub fn ts(&self) -> Ts {
        match self {
            Record::Tick(t) => t.ts,
            Record::Sentiment(s) => s.ts,
        }
    }

    pub fn symbol(&self) -> &str {
        match self {
            Record::Tick(t) => &t.symbol,
            Record::Sentiment(s) => &s.symbol,
        }
    }
}

impl From<Record> for MarketEvent {
    fn from(r: Record) -> Self {
        match r {
            Record::Tick(t) => MarketEvent::Tick(t),
            Record::Sentiment(s) => MarketEvent::Sentiment(s),
        }
    }
}

/// One OHLCV bar, validated: all prices > 0, `L <= min(O, C)`,
/// `H >= max(O, C)`, volume >= 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub symbol: String,
    pub ts: Ts,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Option<Decimal>,
}

/// A whole-file failure: the file cannot be read at all.
#[derive(Debug, Error)]
pub enum CsvDataError {
    /// The error's text is its whole message (no separate source, so that a
    /// chain of contexts does not print the OS error twice).
    #[error("{path}: {error}")]
    Io { path: String, error: io::Error },
    #[error("{path}:1: empty file (no header line)")]
    Empty { path: String },
    #[error("{path}:1: unrecognised header {header:?}: {reason}")]
    BadHeader {
        path: String,
        header: String,
        reason: String,
    },
    #[error("{path}:1: no Ticker/Symbol column and no symbol given (pass --symbol SYMBOL)")]
    NoSymbol { path: String },
    #[error("{path}:1: cannot read header: {message}")]
    Header { path: String, message: String },
}

impl CsvDataError {
    /// The line the error refers to, when there is one (header errors: line 1).
    pub fn line(&self) -> Option<u64> {
        match self {
            CsvDataError::Io { .. } => None,
            _ => Some(1),
        }
    }
}

/// A bad row: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{file}:{line}: {kind}")]
pub struct RowError {
    pub file: String,
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    pub kind: RowErrorKind,
}

/// Why a row was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RowErrorKind {
    #[error("missing value for column `{column}`")]
    Missing { column: String },
    #[error("column `{column}`: {value:?} is not a decimal number")]
    BadDecimal { column: String, value: String },
    #[error("column `{column}`: {value:?} is not a number")]
    BadNumber { column: String, value: String },
    #[error(
        "column `{column}`: {value:?} is not a timestamp (epoch ms, RFC 3339, yyyy-mm-dd, m/d/yyyy or dd.mm.yyyy HH:MM:SS.mmm)"
    )]
    BadTimestamp { column: String, value: String },
    #[error("column `{column}`: {reason}")]
    OutOfRange { column: String, reason: String },
    #[error("inconsistent bar: {0}")]
    BadBar(String),
    #[error("bar at {ts} ns is not after the previous bar of {symbol} at {prev} ns")]
    OutOfOrder { symbol: String, ts: Ts, prev: Ts },
    #[error("row has {found} fields, the header has {expected}")]
    TooManyFields { expected: usize, found: usize },
    #[error("timestamp out of range")]
    TsOverflow,
    #[error("malformed CSV: {0}")]
    Malformed(String),
}

/// Options for reading a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadOptions {
    /// Symbol for files without a `symbol`/`ticker` column.
    pub default_symbol: Option<String>,
    /// Period of bars in nanoseconds; `None` (or a value <= 0) infers it per symbol.
    pub bar_period: Option<Ts>,
    /// The file's names of columns, by papertrader's name (`--columns`):
    /// `("price", "last")`.
    pub columns: ColumnMap,
    /// The unit of whole-number times (`--columns ts=NAME:us`); else the time
    /// column's name says it (`ts_ms`), else the magnitude ([`parse_ts`]).
    pub ts_unit: Option<TsUnit>,
}

/// The unit of a time written as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsUnit {
    S,
    Ms,
    Us,
    Ns,
}

impl TsUnit {
    fn parse(s: &str) -> Option<TsUnit> {
        match s.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "seconds" => Some(TsUnit::S),
            "ms" | "millis" => Some(TsUnit::Ms),
            "us" | "micros" => Some(TsUnit::Us),
            "ns" | "nanos" => Some(TsUnit::Ns),
            _ => None,
        }
    }

    fn nanos(self) -> i64 {
        match self {
            TsUnit::S => NANOS_PER_SEC,
            TsUnit::Ms => NANOS_PER_MILLI,
            TsUnit::Us => 1_000,
            TsUnit::Ns => 1,
        }
    }

    /// The unit a time column's name ends with (`ts_ms`, `timestamp_s`).
    fn of_name(name: &str) -> Option<TsUnit> {
        let (_, suffix) = name.rsplit_once('_')?;
        TsUnit::parse(suffix)
    }
}

/// `--columns` parsed: papertrader's column name -> the file's (normalized).
pub type ColumnMap = Vec<(String, String)>;

/// papertrader's column names that `--columns` can map.
pub const COLUMN_NAMES: [&str; 14] = [
    "ts", "symbol", "price", "size", "bid", "ask", "score", "source", "headline", "open", "high",
    "low", "close", "volume",
];

/// Parse `--columns`: `ts=Time:us,price=Last,size=Qty` (papertrader's name =
/// the file's, a unit after the time column's name).
///
/// # Errors
/// An item without `=`, or a name papertrader does not know, or a unit it
/// does not know; the message lists what it accepts.
pub fn parse_columns(s: &str) -> Result<(ColumnMap, Option<TsUnit>), String> {
    let mut map = Vec::new();
    let mut unit = None;
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, name)) = item.split_once('=') else {
            return Err(format!(
                "--columns item {item:?} is not NAME=COLUMN (e.g. ts=Time:us,price=Last)"
            ));
        };
        let key = key.trim().to_ascii_lowercase();
        if !COLUMN_NAMES.contains(&key.as_str()) {
            return Err(format!(
                "--columns: {key:?} is not one of papertrader's column names: {}",
                COLUMN_NAMES.join(", ")
            ));
        }
        let mut name = name.trim();
        if key == "ts" {
            if let Some((n, u)) = name.rsplit_once(':') {
                unit = Some(TsUnit::parse(u).ok_or_else(|| {
                    format!("--columns: time unit {u:?} is not one of s, ms, us, ns")
                })?);
                name = n.trim();
            }
        }
        map.push((key, normalize(name)));
    }
    Ok((map, unit))
}

// ---------------------------------------------------------------------------
// Parsing single values

/// Parses a decimal exactly: plain (`123.45`) or scientific (`1.00532E+11`).
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    let s = trim(s);
    match Decimal::from_str(s) {
        Ok(d) => Some(d),
        Err(_) if s.contains(['e', 'E']) => Decimal::from_scientific(s).ok(),
        Err(_) => None,
    }
}

const NAIVE_DATETIME_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M:%S%.f",
    "%m/%d/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S%.f",
    "%d.%m.%Y %H:%M",
];

const DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y"];

/// Parses a timestamp into nanoseconds since the epoch.
///
/// Accepted: an integer (epoch time, its unit told by its magnitude:
/// `unit_of_magnitude`); RFC 3339; `yyyy-mm-dd`,
/// `m/d/yyyy` or `dd.mm.yyyy`, each optionally followed by `HH:MM`,
/// `HH:MM:SS` or `HH:MM:SS.fff` (UTC; a `T` separator also works after
/// `yyyy-mm-dd`). `None` if the text matches none of these or is outside the
/// range of [`Ts`] (years 1677..2262).
pub fn parse_ts(s: &str) -> Option<Ts> {
    parse_ts_in(s, None)
}

/// [`parse_ts`], with whole numbers (and, in seconds or milliseconds,
/// decimals) in `unit` when it is given.
pub fn parse_ts_in(s: &str, unit: Option<TsUnit>) -> Option<Ts> {
    let s = trim(s);
    if s.is_empty() {
        return None;
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    // The common case in one pass: up to 18 digits fit an i64.
    if (1..=18).contains(&digits.len()) {
        let mut n = 0i64;
        let mut all = true;
        for b in digits.bytes() {
            all &= b.is_ascii_digit();
            n = n * 10 + i64::from(b.wrapping_sub(b'0'));
        }
        if all {
            let n = if digits.len() < s.len() { -n } else { n };
            return n
                .checked_mul(unit.unwrap_or_else(|| unit_of_magnitude(n)).nanos())
                .filter(|t| *t != Ts::MIN);
        }
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let n = s.parse::<i64>().ok()?;
        return n
            .checked_mul(unit.unwrap_or_else(|| unit_of_magnitude(n)).nanos())
            .filter(|t| *t != Ts::MIN);
    }
    if let Some(u) = unit {
        let numeric = digits.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if numeric && digits.contains('.') {
            let v = parse_decimal(s)? * Decimal::from(u.nanos());
            return v.trunc().to_string().parse().ok();
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return dt.timestamp_nanos_opt();
    }
    for f in NAIVE_DATETIME_FORMATS {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, f) {
            return dt.and_utc().timestamp_nanos_opt();
        }
    }
    for f in DATE_FORMATS {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt();
        }
    }
    None
}

/// `s` without leading and trailing whitespace ([`str::trim`]), without
/// looking further when both ends are visible ASCII (every field of a
/// well-formed file).
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// The unit of an epoch time written as a whole number without one, by its
/// magnitude: below 10^9 milliseconds (small test times, as before units were
/// read), below 10^11 seconds (2001 to 5138), below 10^14 milliseconds, below
/// 10^17 microseconds, else nanoseconds.
fn unit_of_magnitude(n: i64) -> TsUnit {
    match n.unsigned_abs() {
        m if m < 1_000_000_000 => TsUnit::Ms,
        m if m < 100_000_000_000 => TsUnit::S,
        m if m < 100_000_000_000_000 => TsUnit::Ms,
        m if m < 100_000_000_000_000_000 => TsUnit::Us,
        _ => TsUnit::Ns,
    }
}

/// Formats a timestamp as written by the writers: epoch milliseconds if `ts`
/// is a whole number of milliseconds, else RFC 3339 with nanoseconds (UTC).
pub fn format_ts(ts: Ts) -> String {
    if ts % NANOS_PER_MILLI == 0 {
        (ts / NANOS_PER_MILLI).to_string()
    } else {
        DateTime::from_timestamp_nanos(ts).to_rfc3339_opts(SecondsFormat::Nanos, true)
    }
}

// ---------------------------------------------------------------------------
// Header detection

fn normalize(h: &str) -> String {
    h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase()
}

struct Header {
    names: Vec<String>,
    norm: Vec<String>,
    /// `--columns`: papertrader's name -> the file's (normalized).
    map: Vec<(String, String)>,
}

impl Header {
    fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let names: Vec<String> = names
            .iter()
            .map(|s| s.as_ref().trim().trim_start_matches('\u{feff}').to_string())
            .collect();
        let norm = names.iter().map(|s| normalize(s)).collect();
        Header {
            names,
            norm,
            map: Vec::new(),
        }
    }

    /// The column of papertrader's name `aliases[0]` (or one of its other
    /// names): the file's column that `--columns` maps to it, if mapped.
    fn find(&self, aliases: &[&str]) -> Option<usize> {
        if let Some((_, name)) = self.map.iter().find(|(k, _)| k == aliases[0]) {
            return self.norm.iter().position(|n| n == name);
        }
        aliases
            .iter()
            .find_map(|a| self.norm.iter().position(|n| n == a))
    }

    fn time(&self) -> Option<TimeCol> {
        if let Some(i) = self.find(TIME_NAMES) {
            return Some(TimeCol::One(i));
        }
        match (self.find(&["date"]), self.find(&["time"])) {
            (Some(d), Some(t)) => Some(TimeCol::DateAndTime(d, t)),
            (Some(i), None) | (None, Some(i)) => Some(TimeCol::One(i)),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum TimeCol {
    One(usize),
    DateAndTime(usize, usize),
}

#[derive(Debug, Clone, Copy)]
enum Layout {
    Ticks {
        ts: TimeCol,
        symbol: Option<usize>,
        price: usize,
        size: usize,
        bid: Option<usize>,
        ask: Option<usize>,
    },
    Sentiment {
        ts: TimeCol,
        symbol: Option<usize>,
        score: usize,
        source: usize,
        headline: Option<usize>,
    },
    Bars {
        ts: TimeCol,
        symbol: Option<usize>,
        open: usize,
        high: usize,
        low: usize,
        close: usize,
        volume: Option<usize>,
    },
}

impl Layout {
    fn kind(&self) -> FileKind {
        match self {
            Layout::Ticks { .. } => FileKind::Ticks,
            Layout::Sentiment { .. } => FileKind::Sentiment,
            Layout::Bars { .. } => FileKind::Bars,
        }
    }

    fn ts(&self) -> TimeCol {
        match *self {
            Layout::Ticks { ts, .. } | Layout::Sentiment { ts, .. } | Layout::Bars { ts, .. } => ts,
        }
    }

    fn symbol(&self) -> Option<usize> {
        match *self {
            Layout::Ticks { symbol, .. }
            | Layout::Sentiment { symbol, .. }
            | Layout::Bars { symbol, .. } => symbol,
        }
    }
}

const SYMBOL: &[&str] = &["symbol", "ticker"];
/// Names of a time column in one (`date` and `time` may also be two columns);
/// a suffix names the unit of whole-number times.
const TIME_NAMES: &[&str] = &[
    "ts",
    "timestamp",
    "datetime",
    "ts_s",
    "ts_ms",
    "ts_us",
    "ts_ns",
    "timestamp_s",
    "timestamp_ms",
    "timestamp_us",
    "timestamp_ns",
    "time_s",
    "time_ms",
    "time_us",
    "time_ns",
    "epoch_s",
    "epoch_ms",
    "epoch_us",
    "epoch_ns",
];
const EXPECTED: &str = "expected ticks (ts,symbol,price,size[,bid,ask]), sentiment \
    (ts,symbol,score,source[,headline]) or bars (ts,open,high,low,close[,volume][,symbol]); \
    the time column may be named ts, timestamp, datetime, date, time (or date and time), \
    with a unit: ts_s, ts_ms, ts_us, ts_ns (also timestamp_*, time_*, epoch_*); \
    map other names with --columns, e.g. --columns ts=Time:us,price=Last,size=Qty";

fn layout(h: &Header) -> Result<Layout, String> {
    let need = |aliases: &[&str], what: &str| {
        h.find(aliases)
            .ok_or_else(|| format!("no `{what}` column; {EXPECTED}"))
    };
    let need_ts = || {
        h.time()
            .ok_or_else(|| format!("no timestamp column; {EXPECTED}"))
    };
    if h.find(&["score"]).is_some() {
        return Ok(Layout::Sentiment {
            ts: need_ts()?,
            symbol: h.find(SYMBOL),
            score: need(&["score"], "score")?,
            source: need(&["source"], "source")?,
            headline: h.find(&["headline"]),
        });
    }
    if h.find(&["price"]).is_some() {
        return Ok(Layout::Ticks {
            ts: need_ts()?,
            symbol: h.find(SYMBOL),
            price: need(&["price"], "price")?,
            size: need(&["size"], "size")?,
            bid: h.find(&["bid"]),
            ask: h.find(&["ask"]),
        });
    }
    if h.find(&["open", "high", "low", "close"]).is_some() {
        return Ok(Layout::Bars {
            ts: need_ts()?,
            symbol: h.find(SYMBOL),
            open: need(&["open"], "open")?,
            high: need(&["high"], "high")?,
            low: need(&["low"], "low")?,
            close: need(&["close"], "close")?,
            volume: h.find(&["volume"]),
        });
    }
    Err(EXPECTED.to_string())
}

/// Which kind of file a header line belongs to, or `None` if it is none of
/// them (or lacks a required column).
pub fn detect_kind<S: AsRef<str>>(header: &[S]) -> Option<FileKind> {
    layout(&Header::new(header)).ok().map(|l| l.kind())
}

/// Reads only the header of `path` and tells what kind of file it is.
pub fn detect_file_kind(path: impl AsRef<Path>) -> Result<FileKind, CsvDataError> {
    let opts = ReadOptions {
        default_symbol: Some(String::new()),
        bar_period: None,
        ..ReadOptions::default()
    };
    Ok(RecordReader::open(path, &opts)?.kind())
}

// ---------------------------------------------------------------------------
// Bars to ticks

fn bar_time(ts: Ts, period: Ts, k: i64) -> Option<Ts> {
    let off = (period as i128 * k as i128 / 4) as i64;
    ts.checked_add(off)
}

/// The four ticks of a bar under the rule in the module documentation.
pub fn bar_to_ticks(bar: &Bar, period: Ts) -> Option<[Tick; 4]> {
    let up = bar.high - bar.open;
    let down = bar.open - bar.low;
    let high_first = if up != down {
        up < down
    } else {
        // Equidistant: the extreme farther from the close comes first.
        bar.high - bar.close >= bar.close - bar.low
    };
    let (x1, x2) = if high_first {
        (bar.high, bar.low)
    } else {
        (bar.low, bar.high)
    };
    let v = bar.volume.unwrap_or(Decimal::ZERO);
    let q = v.checked_div(Decimal::from(4))?.trunc_with_scale(v.scale());
    let last = v.checked_sub(q.checked_mul(Decimal::from(3))?)?;
    let tick = |k: i64, price: Decimal, size: Decimal| -> Option<Tick> {
        Some(Tick {
            symbol: bar.symbol.as_str().into(),
            ts: bar_time(bar.ts, period, k)?,
            price,
            size,
            bid: None,
            ask: None,
        })
    };
    Some([
        tick(0, bar.open, q)?,
        tick(1, x1, q)?,
        tick(2, x2, q)?,
        tick(3, bar.close, last)?,
    ])
}

fn infer_period(ts: &[Ts]) -> Ts {
    ts.windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0)
        .min()
        .unwrap_or(DEFAULT_BAR_PERIOD)
}

#[derive(Default)]
struct SymbolBars {
    period: Option<Ts>,
    first: Vec<Ts>,
    last_ts: Option<Ts>,
}

enum Slot {
    Ready(Result<Record, RowError>),
    Bar { line: u64, bar: Bar },
}

// ---------------------------------------------------------------------------
// The reader

/// Streams the records of one CSV file, in file order, one
/// `Result<Record, RowError>` per tick or sentiment (four per bar).
pub struct RecordReader<R: Read> {
    file: String,
    rdr: csv::Reader<R>,
    header: Header,
    layout: Layout,
    default_symbol: Option<String>,
    record: csv::StringRecord,
    done: bool,
    fixed_period: Option<Ts>,
    symbols: HashMap<String, SymbolBars>,
    queue: VecDeque<Slot>,
    /// The unit of whole-number times, when told (`--columns`, the column's name).
    ts_unit: Option<TsUnit>,
}

impl RecordReader<File> {
    /// Opens `path` and reads its header.
    pub fn open(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<Self, CsvDataError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let f = File::open(path).map_err(|error| CsvDataError::Io {
            path: name.clone(),
            error,
        })?;
        RecordReader::from_reader(name, f, opts)
    }
}

impl<R: Read> RecordReader<R> {
    /// Reads the header from `reader`; `name` is the file name used in errors.
    pub fn from_reader(
        name: impl Into<String>,
        reader: R,
        opts: &ReadOptions,
    ) -> Result<Self, CsvDataError> {
        let file = name.into();
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            // Fields are trimmed where they are read (`field`): csv's own
            // trim copies every record.
            .trim(csv::Trim::Headers)
            .from_reader(reader);
        let raw = match rdr.headers() {
            Ok(h) => h.clone(),
            Err(e) => {
                let message = e.to_string();
                return Err(match e.into_kind() {
                    csv::ErrorKind::Io(error) => CsvDataError::Io { path: file, error },
                    _ => CsvDataError::Header {
                        path: file,
                        message,
                    },
                });
            }
        };
        if raw.is_empty() || raw.iter().all(|f| f.trim().is_empty()) {
            return Err(CsvDataError::Empty { path: file });
        }
        let names: Vec<&str> = raw.iter().collect();
        let mut header = Header::new(&names);
        header.map = opts.columns.clone();
        let layout = layout(&header).map_err(|reason| CsvDataError::BadHeader {
            path: file.clone(),
            header: names.join(","),
            reason,
        })?;
        let default_symbol = opts.default_symbol.clone();
        if layout.symbol().is_none() && default_symbol.is_none() {
            return Err(CsvDataError::NoSymbol { path: file });
        }
        let ts_unit = opts.ts_unit.or(match layout.ts() {
            TimeCol::One(i) => TsUnit::of_name(&header.norm[i]),
            TimeCol::DateAndTime(..) => None,
        });
        Ok(RecordReader {
            file,
            rdr,
            header,
            layout,
            default_symbol,
            record: csv::StringRecord::new(),
            done: false,
            fixed_period: opts.bar_period.filter(|p| *p > 0),
            symbols: HashMap::new(),
            queue: VecDeque::new(),
            ts_unit,
        })
    }

    /// What kind of file this is.
    pub fn kind(&self) -> FileKind {
        self.layout.kind()
    }

    /// The file name used in errors.
    pub fn file(&self) -> &str {
        &self.file
    }

    fn row_error(&self, line: u64, kind: RowErrorKind) -> RowError {
        RowError {
            file: self.file.clone(),
            line,
            kind,
        }
    }

    /// Read the next row: a record or a row error, which is the next item
    /// unless bars are waiting in the queue; a bar joins the queue.
    fn read_one(&mut self) -> Option<Result<Record, RowError>> {
        match self.rdr.read_record(&mut self.record) {
            Ok(false) => self.done = true,
            Ok(true) => {
                let line = self
                    .record
                    .position()
                    .map(|p| p.line())
                    .unwrap_or_else(|| self.rdr.position().line());
                match self.parse_row() {
                    Err(kind) => return Some(Err(self.row_error(line, kind))),
                    Ok(Parsed::Record(r)) => return Some(Ok(r)),
                    Ok(Parsed::Bar(bar)) => self.accept_bar(line, bar),
                }
            }
            Err(e) => {
                let line = e
                    .position()
                    .map(|p| p.line())
                    .unwrap_or_else(|| self.rdr.position().line());
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    self.done = true;
                }
                return Some(Err(
                    self.row_error(line, RowErrorKind::Malformed(e.to_string()))
                ));
            }
        }
        None
    }

    fn accept_bar(&mut self, line: u64, bar: Bar) {
        let fixed = self.fixed_period;
        let st = self.symbols.entry(bar.symbol.clone()).or_default();
        if let Some(prev) = st.last_ts {
            if bar.ts <= prev {
                let kind = RowErrorKind::OutOfOrder {
                    symbol: bar.symbol,
                    ts: bar.ts,
                    prev,
                };
                let e = self.row_error(line, kind);
                self.queue.push_back(Slot::Ready(Err(e)));
                return;
            }
        }
        st.last_ts = Some(bar.ts);
        if st.period.is_none() {
            if fixed.is_some() {
                st.period = fixed;
            } else {
                st.first.push(bar.ts);
                if st.first.len() >= PERIOD_INFERENCE_BARS {
                    st.period = Some(infer_period(&st.first));
                    st.first = Vec::new();
                }
            }
        }
        self.queue.push_back(Slot::Bar { line, bar });
    }

    fn finish_periods(&mut self) {
        for st in self.symbols.values_mut() {
            if st.period.is_none() {
                st.period = Some(infer_period(&st.first));
                st.first = Vec::new();
            }
        }
    }

    /// Field `idx`, without surrounding ASCII whitespace.
    fn field(&self, idx: usize) -> Result<&str, RowErrorKind> {
        match self.record.get(idx).map(str::trim_ascii) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(RowErrorKind::Missing {
                column: self.header.names[idx].clone(),
            }),
        }
    }

    fn opt_field(&self, idx: Option<usize>) -> Option<&str> {
        idx.and_then(|i| self.record.get(i))
            .map(str::trim_ascii)
            .filter(|v| !v.is_empty())
    }

    fn decimal(&self, idx: usize) -> Result<Decimal, RowErrorKind> {
        let v = self.field(idx)?;
        parse_decimal(v).ok_or_else(|| RowErrorKind::BadDecimal {
            column: self.header.names[idx].clone(),
            value: v.to_string(),
        })
    }

    fn opt_decimal(&self, idx: Option<usize>) -> Result<Option<Decimal>, RowErrorKind> {
        match (idx, self.opt_field(idx)) {
            (Some(i), Some(_)) => self.decimal(i).map(Some),
            _ => Ok(None),
        }
    }

    fn positive(&self, idx: usize) -> Result<Decimal, RowErrorKind> {
        let d = self.decimal(idx)?;
        if crate::domain::is_positive(d) {
            Ok(d)
        } else {
            Err(self.out_of_range(idx, format!("{d} is not > 0")))
        }
    }

    fn non_negative(&self, idx: usize) -> Result<Decimal, RowErrorKind> {
        let d = self.decimal(idx)?;
        if !crate::domain::is_negative(d) {
            Ok(d)
        } else {
            Err(self.out_of_range(idx, format!("{d} is negative")))
        }
    }

    fn out_of_range(&self, idx: usize, reason: String) -> RowErrorKind {
        RowErrorKind::OutOfRange {
            column: self.header.names[idx].clone(),
            reason,
        }
    }

    fn ts(&self, col: TimeCol) -> Result<Ts, RowErrorKind> {
        if let TimeCol::One(i) = col {
            // The common case, without copying the text.
            let text = self.field(i)?;
            if let Some(ts) = parse_ts_in(text, self.ts_unit) {
                return Ok(ts);
            }
        }
        let (text, column) = match col {
            TimeCol::One(i) => (self.field(i)?.to_string(), self.header.names[i].clone()),
            TimeCol::DateAndTime(d, t) => (
                format!("{} {}", self.field(d)?, self.field(t)?),
                format!("{}+{}", self.header.names[d], self.header.names[t]),
            ),
        };
        parse_ts_in(&text, self.ts_unit).ok_or(RowErrorKind::BadTimestamp {
            column,
            value: text,
        })
    }

    fn symbol(&self, idx: Option<usize>) -> Result<Name, RowErrorKind> {
        match idx {
            Some(i) => Ok(self.field(i)?.into()),
            None => Ok(self.default_symbol.as_deref().unwrap_or_default().into()),
        }
    }

    fn parse_row(&self) -> Result<Parsed, RowErrorKind> {
        let expected = self.header.names.len();
        if self.record.len() > expected {
            return Err(RowErrorKind::TooManyFields {
                expected,
                found: self.record.len(),
            });
        }
        match self.layout {
            Layout::Ticks {
                ts,
                symbol,
                price,
                size,
                bid,
                ask,
            } => {
                let ts = self.ts(ts)?;
                let symbol = self.symbol(symbol)?;
                let price = self.positive(price)?;
                let size = self.non_negative(size)?;
                let bid = self.opt_decimal(bid)?;
                let ask = self.opt_decimal(ask)?;
                if let (Some(b), Some(a)) = (bid, ask) {
                    if b > a {
                        return Err(RowErrorKind::OutOfRange {
                            column: "bid".into(),
                            reason: format!("bid {b} above ask {a}"),
                        });
                    }
                }
                Ok(Parsed::Record(Record::Tick(Tick {
                    symbol,
                    ts,
                    price,
                    size,
                    bid,
                    ask,
                })))
            }
            Layout::Sentiment {
                ts,
                symbol,
                score,
                source,
                headline,
            } => {
                let ts = self.ts(ts)?;
                let symbol = self.symbol(symbol)?;
                let text = self.field(score)?;
                let value: f64 = text.parse().map_err(|_| RowErrorKind::BadNumber {
                    column: self.header.names[score].clone(),
                    value: text.to_string(),
                })?;
                if !(-1.0..=1.0).contains(&value) {
                    return Err(self.out_of_range(score, format!("{text} is not in [-1, 1]")));
                }
                let source = self.field(source)?.to_string();
                let headline = self.opt_field(headline).map(str::to_string);
                Ok(Parsed::Record(Record::Sentiment(Sentiment {
                    symbol,
                    ts,
                    score: value,
                    source,
                    headline,
                })))
            }
            Layout::Bars {
                ts,
                symbol,
                open,
                high,
                low,
                close,
                volume,
            } => {
                let ts = self.ts(ts)?;
                let symbol = self.symbol(symbol)?;
                let o = self.positive(open)?;
                let h = self.positive(high)?;
                let l = self.positive(low)?;
                let c = self.positive(close)?;
                let volume = match volume {
                    Some(v) if self.opt_field(Some(v)).is_some() => Some(self.non_negative(v)?),
                    _ => None,
                };
                if h < o.max(c) || l > o.min(c) {
                    return Err(RowErrorKind::BadBar(format!(
                        "open {o}, high {h}, low {l}, close {c}: need low <= open, close <= high"
                    )));
                }
                Ok(Parsed::Bar(Bar {
                    symbol: symbol.to_string(),
                    ts,
                    open: o,
                    high: h,
                    low: l,
                    close: c,
                    volume,
                }))
            }
        }
    }
}

enum Parsed {
    Record(Record),
    Bar(Bar),
}

impl<R: Read> Iterator for RecordReader<R> {
    type Item = Result<Record, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.queue.front() {
                Some(Slot::Ready(_)) => match self.queue.pop_front() {
                    Some(Slot::Ready(r)) => return Some(r),
                    _ => unreachable!("front was Ready"),
                },
                Some(Slot::Bar { bar, .. }) => {
                    let period = self.symbols.get(&bar.symbol).and_then(|s| s.period);
                    if let Some(period) = period {
                        let Some(Slot::Bar { line, bar }) = self.queue.pop_front() else {
                            unreachable!("front was Bar")
                        };
                        match bar_to_ticks(&bar, period) {
                            Some([t0, t1, t2, t3]) => {
                                for t in [t3, t2, t1] {
                                    self.queue.push_front(Slot::Ready(Ok(Record::Tick(t))));
                                }
                                return Some(Ok(Record::Tick(t0)));
                            }
                            None => {
                                return Some(Err(self.row_error(line, RowErrorKind::TsOverflow)))
                            }
                        }
                    }
                }
                None if self.done => return None,
                None => {}
            }
            if self.done {
                self.finish_periods();
            } else if let Some(item) = self.read_one() {
                // Straight out when nothing waits before it (every row of a
                // tick or sentiment file), else behind what waits.
                if self.queue.is_empty() {
                    return Some(item);
                }
                self.queue.push_back(Slot::Ready(item));
            }
        }
    }
}

/// Reads a whole file: the good records in file order and the bad rows.
///
/// `default_symbol` is used only by files without a `symbol`/`ticker` column.
pub fn read_records(
    path: impl AsRef<Path>,
    default_symbol: Option<&str>,
) -> Result<(Vec<Record>, Vec<RowError>), CsvDataError> {
    let opts = ReadOptions {
        default_symbol: default_symbol.map(str::to_string),
        bar_period: None,
        ..ReadOptions::default()
    };
    read_records_with(path, &opts)
}

/// [`read_records`] with all the options.
pub fn read_records_with(
    path: impl AsRef<Path>,
    opts: &ReadOptions,
) -> Result<(Vec<Record>, Vec<RowError>), CsvDataError> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for r in RecordReader::open(path, opts)? {
        match r {
            Ok(r) => good.push(r),
            Err(e) => bad.push(e),
        }
    }
    Ok((good, bad))
}

/// Sorts records by timestamp; equal timestamps keep their order (stable).
pub fn sort_by_ts(records: &mut [Record]) {
    records.sort_by_key(Record::ts);
}

/// Merges several record lists (e.g. several files, or the symbols of one
/// file) into one ordered by timestamp. Ties: earlier list first, then the
/// order within the list (file order).
pub fn merge_by_ts(inputs: Vec<Vec<Record>>) -> Vec<Record> {
    let mut all: Vec<Record> = inputs.into_iter().flatten().collect();
    sort_by_ts(&mut all);
    all
}

// ---------------------------------------------------------------------------
// Writers

/// Writes ticks as `ts,symbol,price,size` (plus `bid,ask` if any tick has one).
pub fn write_ticks_csv<W: Write>(out: W, ticks: &[Tick]) -> io::Result<()> {
    let quotes = ticks.iter().any(|t| t.bid.is_some() || t.ask.is_some());
    let mut w = csv::Writer::from_writer(out);
    if quotes {
        w.write_record(["ts", "symbol", "price", "size", "bid", "ask"])?;
    } else {
        w.write_record(["ts", "symbol", "price", "size"])?;
    }
    let opt = |d: Option<Decimal>| d.map(|d| d.to_string()).unwrap_or_default();
    for t in ticks {
        let ts = format_ts(t.ts);
        let (price, size) = (t.price.to_string(), t.size.to_string());
        if quotes {
            w.write_record([
                ts.as_str(),
                &t.symbol,
                &price,
                &size,
                &opt(t.bid),
                &opt(t.ask),
            ])?;
        } else {
            w.write_record([ts.as_str(), &t.symbol, &price, &size])?;
        }
    }
    w.flush()
}

/// Writes sentiment as `ts,symbol,score,source` (plus `headline` if any has one).
/// Scores are written in Rust's shortest round-trip form.
pub fn write_sentiment_csv<W: Write>(out: W, items: &[Sentiment]) -> io::Result<()> {
    let headlines = items.iter().any(|s| s.headline.is_some());
    let mut w = csv::Writer::from_writer(out);
    if headlines {
        w.write_record(["ts", "symbol", "score", "source", "headline"])?;
    } else {
        w.write_record(["ts", "symbol", "score", "source"])?;
    }
    for s in items {
        let ts = format_ts(s.ts);
        let score = s.score.to_string();
        if headlines {
            let h = s.headline.as_deref().unwrap_or("");
            w.write_record([ts.as_str(), &s.symbol, &score, &s.source, h])?;
        } else {
            w.write_record([ts.as_str(), &s.symbol, &score, &s.source])?;
        }
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const MS: i64 = NANOS_PER_MILLI;
    const HOUR: i64 = 3600 * NANOS_PER_SEC;
    /// 2011-01-03T00:00:00Z
    const D20110103: Ts = 1_294_012_800 * NANOS_PER_SEC;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn read_str_with(text: &str, opts: &ReadOptions) -> (Vec<Record>, Vec<RowError>) {
        let rdr = RecordReader::from_reader("t.csv", text.as_bytes(), opts).unwrap();
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for r in rdr {
            match r {
                Ok(r) => good.push(r),
                Err(e) => bad.push(e),
            }
        }
        (good, bad)
    }

    fn read_str(text: &str) -> (Vec<Record>, Vec<RowError>) {
        read_str_with(text, &ReadOptions::default())
    }

    fn open_err(text: &str, opts: &ReadOptions) -> CsvDataError {
        match RecordReader::from_reader("t.csv", text.as_bytes(), opts) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    fn ticks(records: &[Record]) -> Vec<Tick> {
        records
            .iter()
            .map(|r| match r {
                Record::Tick(t) => t.clone(),
                other => panic!("not a tick: {other:?}"),
            })
            .collect()
    }

    fn tick(symbol: &str, ts: Ts, price: &str, size: &str) -> Tick {
        Tick {
            symbol: symbol.into(),
            ts,
            price: dec(price),
            size: dec(size),
            bid: None,
            ask: None,
        }
    }

    // ---- values

    #[test]
    fn time_units_by_name_by_flag_and_by_magnitude() {
        let t = D20110103; // 1294012800 s
                           // By magnitude: seconds, milliseconds, microseconds, nanoseconds.
        assert_eq!(parse_ts("1294012800"), Some(t));
        assert_eq!(parse_ts("1294012800000"), Some(t));
        assert_eq!(parse_ts("1294012800000000"), Some(t));
        assert_eq!(parse_ts("1294012800000000000"), Some(t));
        // Below 10^9: milliseconds, as before units were read.
        assert_eq!(parse_ts("1000"), Some(1000 * MS));
        // A unit given wins, and takes decimals in s and ms.
        assert_eq!(
            parse_ts_in("1000", Some(TsUnit::S)),
            Some(1000 * NANOS_PER_SEC)
        );
        assert_eq!(
            parse_ts_in("1294012800.25", Some(TsUnit::S)),
            Some(t + 250 * MS)
        );
        assert_eq!(TsUnit::of_name("ts_ms"), Some(TsUnit::Ms));
        assert_eq!(TsUnit::of_name("timestamp_us"), Some(TsUnit::Us));
        assert_eq!(TsUnit::of_name("ts"), None);
        // A file whose time column is named with its unit.
        let text = "time_s,symbol,price,size\n1000,X,1,1\n";
        let opts = ReadOptions::default();
        let mut r = RecordReader::from_reader("t.csv", text.as_bytes(), &opts).unwrap();
        match r.next() {
            Some(Ok(Record::Tick(k))) => assert_eq!(k.ts, 1000 * NANOS_PER_SEC),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn columns_map_names_and_refuse_unknown_ones() {
        let (map, unit) = parse_columns("ts=Time:us, price=Last,size=Qty").unwrap();
        assert_eq!(unit, Some(TsUnit::Us));
        assert_eq!(
            map,
            [
                ("ts".to_string(), "time".to_string()),
                ("price".to_string(), "last".to_string()),
                ("size".to_string(), "qty".to_string())
            ]
        );
        let e = parse_columns("prix=Last").unwrap_err();
        assert!(e.contains("ts, symbol, price"), "{e}");
        assert!(parse_columns("ts=Time:weeks")
            .unwrap_err()
            .contains("s, ms, us, ns"));
        assert!(parse_columns("price").unwrap_err().contains("NAME=COLUMN"));
        let text = "Time,Sym,Last,Qty\n1294012800000000,X,1.5,2\n";
        let opts = ReadOptions {
            columns: vec![
                ("ts".into(), "time".into()),
                ("symbol".into(), "sym".into()),
                ("price".into(), "last".into()),
                ("size".into(), "qty".into()),
            ],
            ts_unit: Some(TsUnit::Us),
            ..ReadOptions::default()
        };
        let mut r = RecordReader::from_reader("t.csv", text.as_bytes(), &opts).unwrap();
        match r.next() {
            Some(Ok(Record::Tick(k))) => {
                assert_eq!((k.ts, k.symbol.as_str()), (D20110103, "X"));
            }
            other => panic!("{other:?}"),
        }
        // Without the mapping the header is refused, and the message shows the flag.
        let e = RecordReader::from_reader("t.csv", text.as_bytes(), &ReadOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--columns ts=Time:us,price=Last"), "{e}");
    }

    #[test]
    fn parse_ts_formats() {
        assert_eq!(parse_ts("1294012800000"), Some(D20110103));
        assert_eq!(parse_ts("1294012800123"), Some(D20110103 + 123 * MS));
        assert_eq!(parse_ts("-1000"), Some(-1000 * MS));
        assert_eq!(parse_ts("2011-01-03"), Some(D20110103));
        assert_eq!(parse_ts("2011-01-03T00:00:00Z"), Some(D20110103));
        assert_eq!(parse_ts("2011-01-03T01:00:00+01:00"), Some(D20110103));
        assert_eq!(
            parse_ts("2011-01-03T00:00:00.000000001Z"),
            Some(D20110103 + 1)
        );
        assert_eq!(
            parse_ts("2011-01-03 06:30"),
            Some(D20110103 + 6 * HOUR + 30 * 60 * NANOS_PER_SEC)
        );
        assert_eq!(
            parse_ts("2011-01-03 06:00:00.5"),
            Some(D20110103 + 6 * HOUR + 500 * MS)
        );
        assert_eq!(parse_ts("1/4/1999"), Some(915_408_000 * NANOS_PER_SEC));
        assert_eq!(parse_ts("01/04/1999"), Some(915_408_000 * NANOS_PER_SEC));
        assert_eq!(parse_ts("12/31/2018"), Some(1_546_214_400 * NANOS_PER_SEC));
        assert_eq!(parse_ts("1/3/2011 06:00"), Some(D20110103 + 6 * HOUR));
        assert_eq!(
            parse_ts("01.01.2017 22:00:00.000"),
            Some(1_483_308_000 * NANOS_PER_SEC)
        );
        assert_eq!(
            parse_ts("01.01.2017 22:00:00.250"),
            Some(1_483_308_000 * NANOS_PER_SEC + 250 * MS)
        );
        assert_eq!(
            parse_ts("01.01.2017 22:00"),
            Some(1_483_308_000 * NANOS_PER_SEC)
        );
        assert_eq!(parse_ts("03.01.2011"), Some(D20110103));
        assert_eq!(parse_ts(" 2011-01-03 "), Some(D20110103));
        for bad in [
            "",
            "abc",
            "2011-02-30",
            "13/45/2000",
            "32.01.2017 22:00:00.000",
            "2011-01-03X",
            "1.5",
            "99999999999999999999",
            "-9223372036854775808", // Ts::MIN marks a message without a time
            "2300-01-01",           // past the range of Ts
        ] {
            assert_eq!(parse_ts(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parse_decimal_exact_and_scientific() {
        assert_eq!(parse_decimal("100.10").unwrap().to_string(), "100.10");
        assert_eq!(parse_decimal("324.8365").unwrap(), dec("324.8365"));
        assert_eq!(parse_decimal("1.00532E+11").unwrap(), dec("100532000000"));
        assert_eq!(parse_decimal("1.5e-3").unwrap(), dec("0.0015"));
        assert_eq!(parse_decimal("-2").unwrap(), dec("-2"));
        assert_eq!(
            parse_decimal("0.1").unwrap() + parse_decimal("0.2").unwrap(),
            dec("0.3")
        );
        for bad in ["", "abc", "1,5", "1e", "NaN", "1.2.3"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn format_ts_ms_or_rfc3339() {
        assert_eq!(format_ts(D20110103), "1294012800000");
        assert_eq!(format_ts(D20110103 + 1), "2011-01-03T00:00:00.000000001Z");
        assert_eq!(format_ts(-MS), "-1");
        for ts in [D20110103, D20110103 + 1, D20110103 + 999_999, -1, 0] {
            assert_eq!(parse_ts(&format_ts(ts)), Some(ts));
        }
    }

    // ---- kinds

    #[test]
    fn detects_kinds_from_headers() {
        assert_eq!(
            detect_kind(&["ts", "symbol", "price", "size"]),
            Some(FileKind::Ticks)
        );
        assert_eq!(
            detect_kind(&["ts", "symbol", "price", "size", "bid", "ask"]),
            Some(FileKind::Ticks)
        );
        assert_eq!(
            detect_kind(&["ts", "symbol", "score", "source", "headline"]),
            Some(FileKind::Sentiment)
        );
        assert_eq!(
            detect_kind(&[
                "Ticker",
                "Date",
                "Open",
                "High",
                "Low",
                "Close",
                "Volume",
                "Adj Close"
            ]),
            Some(FileKind::Bars)
        );
        assert_eq!(
            detect_kind(&["TIME", "OPEN", "HIGH", "LOW", "CLOSE"]),
            Some(FileKind::Bars)
        );
        assert_eq!(
            detect_kind(&[" Datetime ", "open", "high", "low", "close"]),
            Some(FileKind::Bars)
        );
        assert_eq!(detect_kind(&["a", "b"]), None);
        assert_eq!(detect_kind(&["ts", "symbol", "price"]), None); // no size
        assert_eq!(detect_kind(&["Date", "Open", "High", "Close"]), None); // no low
        assert_eq!(detect_kind(&["symbol", "price", "size"]), None); // no ts
    }

    #[test]
    fn empty_file_is_an_error() {
        let e = open_err("", &ReadOptions::default());
        assert!(matches!(e, CsvDataError::Empty { .. }), "{e}");
        assert_eq!(e.line(), Some(1));
        let e = open_err("\n\n", &ReadOptions::default());
        assert!(matches!(e, CsvDataError::Empty { .. }), "{e}");
    }

    #[test]
    fn wrong_header_is_an_error_at_line_1() {
        let e = open_err("when,what,how much\n1,A,2\n", &ReadOptions::default());
        assert!(matches!(e, CsvDataError::BadHeader { .. }), "{e}");
        assert_eq!(e.line(), Some(1));
        assert!(
            e.to_string().starts_with("t.csv:1: unrecognised header"),
            "{e}"
        );
        let e = open_err("ts,symbol,price\n1,A,2\n", &ReadOptions::default());
        assert!(e.to_string().contains("no `size` column"), "{e}");
    }

    #[test]
    fn header_only_gives_nothing() {
        let (good, bad) = read_str("ts,symbol,price,size\n");
        assert!(good.is_empty() && bad.is_empty());
    }

    // ---- ticks

    #[test]
    fn reads_ticks_epoch_ms_and_rfc3339() {
        let text = "ts,symbol,price,size\n\
                    1294012800000,ACME,100.10,5\n\
                    2011-01-03T00:00:01.5Z,ACME,1.5E+2,10\n";
        let (good, bad) = read_str(text);
        assert!(bad.is_empty(), "{bad:?}");
        let t = ticks(&good);
        assert_eq!(t[0], tick("ACME", D20110103, "100.10", "5"));
        assert_eq!(t[0].price.to_string(), "100.10");
        assert_eq!(t[1], tick("ACME", D20110103 + 1500 * MS, "150", "10"));
    }

    #[test]
    fn reads_ticks_with_bid_ask_any_column_order() {
        let text = "Symbol,Price,TS,Size,Ask,Bid,extra\n\
                    ACME,100.02,1000,3,100.03,100.01,x\n\
                    ACME,100.02,2000,3,,,\n";
        let (good, bad) = read_str(text);
        assert!(bad.is_empty(), "{bad:?}");
        let t = ticks(&good);
        assert_eq!(t[0].bid, Some(dec("100.01")));
        assert_eq!(t[0].ask, Some(dec("100.03")));
        assert_eq!(t[0].ts, 1000 * MS);
        assert_eq!((t[1].bid, t[1].ask), (None, None));
    }

    #[test]
    fn bad_tick_rows_are_errors_with_line_numbers() {
        let text = "ts,symbol,price,size\n\
                    1000,ACME,100,1\n\
                    2000,ACME,100\n\
                    3000,ACME,abc,1\n\
                    4000,ACME,-1,1\n\
                    yesterday,ACME,100,1\n\
                    6000,,100,1\n\
                    7000,ACME,100,1,9\n\
                    8000,ACME,100,-5\n\
                    \n\
                    9000,ACME,101,1\n";
        let (good, bad) = read_str(text);
        assert_eq!(
            good.iter().map(Record::ts).collect::<Vec<_>>(),
            vec![1000 * MS, 9000 * MS]
        );
        let lines: Vec<u64> = bad.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(
            bad[0].kind,
            RowErrorKind::Missing {
                column: "size".into()
            }
        );
        assert_eq!(
            bad[1].kind,
            RowErrorKind::BadDecimal {
                column: "price".into(),
                value: "abc".into()
            }
        );
        assert!(
            matches!(&bad[2].kind, RowErrorKind::OutOfRange { column, .. } if column == "price")
        );
        assert!(
            matches!(&bad[3].kind, RowErrorKind::BadTimestamp { value, .. } if value == "yesterday")
        );
        assert_eq!(
            bad[4].kind,
            RowErrorKind::Missing {
                column: "symbol".into()
            }
        );
        assert_eq!(
            bad[5].kind,
            RowErrorKind::TooManyFields {
                expected: 4,
                found: 5
            }
        );
        assert!(
            matches!(&bad[6].kind, RowErrorKind::OutOfRange { column, .. } if column == "size")
        );
        assert_eq!(bad[0].file, "t.csv");
        assert_eq!(
            bad[0].to_string(),
            "t.csv:3: missing value for column `size`"
        );
    }

    #[test]
    fn bid_above_ask_is_an_error() {
        let (good, bad) = read_str("ts,symbol,price,size,bid,ask\n1,A,10,1,11,10\n");
        assert!(good.is_empty());
        assert_eq!(bad[0].line, 2);
    }

    #[test]
    fn invalid_utf8_row_is_an_error_and_reading_goes_on() {
        let mut bytes = b"ts,symbol,price,size\n1,A,10,1\n2,A\xff,10,1\n3,A,10,1\n".to_vec();
        bytes.extend_from_slice(b"");
        let rdr = RecordReader::from_reader("t.csv", &bytes[..], &ReadOptions::default()).unwrap();
        let out: Vec<_> = rdr.collect();
        assert_eq!(out.len(), 3);
        assert!(out[0].is_ok() && out[2].is_ok());
        let e = out[1].as_ref().unwrap_err();
        assert_eq!(e.line, 3);
        assert!(matches!(e.kind, RowErrorKind::Malformed(_)));
    }

    #[test]
    fn symbol_comes_from_caller_when_file_has_none() {
        let text = "ts,price,size\n1000,10,1\n";
        let e = open_err(text, &ReadOptions::default());
        assert!(matches!(e, CsvDataError::NoSymbol { .. }), "{e}");
        let opts = ReadOptions {
            default_symbol: Some("XYZ".into()),
            bar_period: None,
            ..ReadOptions::default()
        };
        let (good, _) = read_str_with(text, &opts);
        assert_eq!(good[0].symbol(), "XYZ");
        // A symbol column in the file wins over the caller's symbol.
        let (good, _) = read_str_with("ts,symbol,price,size\n1000,ACME,10,1\n", &opts);
        assert_eq!(good[0].symbol(), "ACME");
    }

    // ---- sentiment

    #[test]
    fn reads_sentiment() {
        let text = "ts,symbol,score,source,headline\n\
                    1000,ACME,0.75,wire,\"ACME beats, raises guidance\"\n\
                    2011-01-03T00:00:00Z,ACME,-1,wire,\n\
                    3000,ACME,1,desk,plain\n";
        let (good, bad) = read_str(text);
        assert!(bad.is_empty(), "{bad:?}");
        let s: Vec<Sentiment> = good
            .into_iter()
            .map(|r| match r {
                Record::Sentiment(s) => s,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            s[0],
            Sentiment {
                symbol: "ACME".into(),
                ts: 1000 * MS,
                score: 0.75,
                source: "wire".into(),
                headline: Some("ACME beats, raises guidance".into()),
            }
        );
        assert_eq!(
            (s[1].ts, s[1].score, s[1].headline.clone()),
            (D20110103, -1.0, None)
        );
        assert_eq!(s[2].score, 1.0);
        // Without the optional headline column.
        let (good, bad) = read_str("ts,symbol,score,source\n1,A,0.1,x\n");
        assert!(bad.is_empty());
        assert!(matches!(&good[0], Record::Sentiment(s) if s.headline.is_none()));
    }

    #[test]
    fn bad_sentiment_rows_are_errors_with_line_numbers() {
        let text = "ts,symbol,score,source,headline\n\
                    1000,ACME,1.5,wire,h\n\
                    2000,ACME,good,wire,h\n\
                    3000,ACME,0.5,,h\n\
                    4000,ACME,NaN,wire,h\n\
                    5000,ACME,0.5,wire,unquoted, comma\n\
                    6000,ACME\n\
                    7000,ACME,-0.25,wire,ok\n";
        let (good, bad) = read_str(text);
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].ts(), 7000 * MS);
        assert_eq!(
            bad.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6, 7]
        );
        assert!(
            matches!(&bad[0].kind, RowErrorKind::OutOfRange { column, .. } if column == "score")
        );
        assert!(matches!(&bad[1].kind, RowErrorKind::BadNumber { value, .. } if value == "good"));
        assert_eq!(
            bad[2].kind,
            RowErrorKind::Missing {
                column: "source".into()
            }
        );
        assert!(matches!(&bad[3].kind, RowErrorKind::OutOfRange { .. }));
        assert!(matches!(&bad[4].kind, RowErrorKind::TooManyFields { .. }));
        assert!(matches!(&bad[5].kind, RowErrorKind::Missing { column } if column == "score"));
    }

    // ---- bars

    fn bar(o: &str, h: &str, l: &str, c: &str, v: Option<&str>) -> Bar {
        Bar {
            symbol: "X".into(),
            ts: D20110103,
            open: dec(o),
            high: dec(h),
            low: dec(l),
            close: dec(c),
            volume: v.map(dec),
        }
    }

    /// The rule worked out by hand on the first AAPL bar of the bundled file:
    /// 2011-01-03, O 325.64, H 330.26, L 324.8365, C 329.57, V 15897800, P = 1 day.
    /// The low is 0.8035 from the open, the high 4.62: low first.
    #[test]
    fn bar_to_ticks_by_hand() {
        let mut b = bar("325.64", "330.26", "324.8365", "329.57", Some("15897800"));
        b.symbol = "AAPL".into();
        let t = bar_to_ticks(&b, NANOS_PER_DAY).unwrap();
        assert_eq!(
            t,
            [
                tick("AAPL", D20110103, "325.64", "3974450"),
                tick("AAPL", D20110103 + 6 * HOUR, "324.8365", "3974450"),
                tick("AAPL", D20110103 + 12 * HOUR, "330.26", "3974450"),
                tick("AAPL", D20110103 + 18 * HOUR, "329.57", "3974450"),
            ]
        );

        // High nearer the open: high first. Volume 10 splits 2, 2, 2, 4.
        let t = bar_to_ticks(&bar("10", "10.5", "9", "9.5", Some("10")), 4 * HOUR).unwrap();
        let p: Vec<String> = t.iter().map(|t| t.price.to_string()).collect();
        assert_eq!(p, ["10", "10.5", "9", "9.5"]);
        let s: Vec<String> = t.iter().map(|t| t.size.to_string()).collect();
        assert_eq!(s, ["2", "2", "2", "4"]);
        let ts: Vec<Ts> = t.iter().map(|t| t.ts - D20110103).collect();
        assert_eq!(ts, [0, HOUR, 2 * HOUR, 3 * HOUR]);

        // Fractional volume: q = 143539993.3 / 4 = 35884998.325 truncated to
        // 1 decimal = 35884998.3; the close takes 143539993.3 - 3q = 35884998.4.
        let t = bar_to_ticks(&bar("1", "2", "1", "2", Some("143539993.3")), HOUR).unwrap();
        let s: Vec<String> = t.iter().map(|t| t.size.to_string()).collect();
        assert_eq!(s, ["35884998.3", "35884998.3", "35884998.3", "35884998.4"]);
        assert_eq!(
            t.iter().map(|t| t.size).sum::<Decimal>(),
            dec("143539993.3")
        );
        let ts: Vec<Ts> = t.iter().map(|t| t.ts - D20110103).collect();
        assert_eq!(
            ts,
            [
                0,
                15 * 60 * NANOS_PER_SEC,
                30 * 60 * NANOS_PER_SEC,
                45 * 60 * NANOS_PER_SEC
            ]
        );

        // Open equidistant from high and low: the extreme farther from the
        // close first (close 10.8 is near the high, so low first) ...
        let t = bar_to_ticks(&bar("10", "11", "9", "10.8", None), HOUR).unwrap();
        let p: Vec<String> = t.iter().map(|t| t.price.to_string()).collect();
        assert_eq!(p, ["10", "9", "11", "10.8"]);
        assert!(t.iter().all(|t| t.size.is_zero()));
        // ... close near the low: high first; everything equidistant: high first.
        let t = bar_to_ticks(&bar("10", "11", "9", "9.2", None), HOUR).unwrap();
        assert_eq!(t[1].price, dec("11"));
        let t = bar_to_ticks(&bar("10", "11", "9", "10", None), HOUR).unwrap();
        assert_eq!(t[1].price, dec("11"));

        // Flat bar: still four ticks.
        let t = bar_to_ticks(&bar("5", "5", "5", "5", Some("3")), HOUR).unwrap();
        assert!(t.iter().all(|t| t.price == dec("5")));
        let s: Vec<String> = t.iter().map(|t| t.size.to_string()).collect();
        assert_eq!(s, ["0", "0", "0", "3"]);
    }

    #[test]
    fn bars_with_ticker_column_and_inferred_daily_period() {
        let text = "Ticker,Date,Open,High,Low,Close,Volume\r\n\
                    AAPL,2011-01-03,325.64,330.26,324.8365,329.57,15897800\r\n\
                    AAPL,2011-01-04,332.44,332.5,328.15,331.29,11038600\r\n";
        let (good, bad) = read_str(text);
        assert!(bad.is_empty(), "{bad:?}");
        let t = ticks(&good);
        assert_eq!(t.len(), 8);
        assert_eq!(
            t[1],
            tick("AAPL", D20110103 + 6 * HOUR, "324.8365", "3974450")
        );
        assert_eq!(t[4].ts, D20110103 + 24 * HOUR);
        assert_eq!(t[4].price, dec("332.44"));
        // 332.5 is 0.06 from the open, 328.15 is 4.29: high first.
        assert_eq!(t[5].price, dec("332.5"));
        assert_eq!(
            t[7],
            tick("AAPL", D20110103 + 42 * HOUR, "331.29", "2759650")
        );
    }

    #[test]
    fn bar_period_is_the_smallest_early_spacing() {
        // Starts on Friday 2013-02-01: first spacing 3 days, period still 1 day.
        let text = "Date,Open,High,Low,Close\n\
                    2013-02-01,10,11,9,10\n\
                    2013-02-04,10,11,9,10\n\
                    2013-02-05,10,11,9,10\n";
        let opts = ReadOptions {
            default_symbol: Some("SPX".into()),
            bar_period: None,
            ..ReadOptions::default()
        };
        let (good, bad) = read_str_with(text, &opts);
        assert!(bad.is_empty());
        let fri = 1_359_676_800 * NANOS_PER_SEC;
        let ts: Vec<Ts> = good.iter().map(|r| r.ts() - fri).collect();
        assert_eq!(&ts[..4], &[0, 6 * HOUR, 12 * HOUR, 18 * HOUR]);
        assert!(good.iter().all(|r| r.symbol() == "SPX"));

        // An explicit period wins.
        let opts = ReadOptions {
            default_symbol: Some("SPX".into()),
            bar_period: Some(4 * HOUR),
            ..ReadOptions::default()
        };
        let (good, _) = read_str_with(text, &opts);
        let ts: Vec<Ts> = good.iter().map(|r| r.ts() - fri).collect();
        assert_eq!(&ts[..4], &[0, HOUR, 2 * HOUR, 3 * HOUR]);

        // A single bar: one day.
        let (good, _) = read_str_with(
            "Date,Open,High,Low,Close\n2011-01-03,10,11,9,10\n",
            &ReadOptions {
                default_symbol: Some("S".into()),
                bar_period: None,
                ..ReadOptions::default()
            },
        );
        assert_eq!(good[3].ts(), D20110103 + 18 * HOUR);
    }

    #[test]
    fn bar_date_formats_and_case_insensitive_columns() {
        let opts = ReadOptions {
            default_symbol: Some("S".into()),
            bar_period: None,
            ..ReadOptions::default()
        };
        let cases = [
            (
                "DATE,OPEN,HIGH,LOW,CLOSE,VOLUME",
                "2011-01-03",
                "2011-01-04",
            ),
            (
                "Date,Open,High,Low,Close,Adj Close,Volume",
                "1/3/2011",
                "1/4/2011",
            ),
            (
                "Time,Open,High,Low,Close,Volume",
                "03.01.2011 00:00:00.000",
                "04.01.2011 00:00:00.000",
            ),
            (
                "timestamp,open,high,low,close",
                "2011-01-03T00:00:00Z",
                "2011-01-04T00:00:00+00:00",
            ),
            (
                "Datetime,Open,High,Low,Close",
                "1294012800000",
                "1294099200000",
            ),
        ];
        for (header, d1, d2) in cases {
            let ncols = header.split(',').count();
            let row = |d: &str| {
                let mut f = vec![
                    d.to_string(),
                    "10".into(),
                    "11".into(),
                    "9".into(),
                    "10".into(),
                ];
                while f.len() < ncols {
                    f.push("100".into());
                }
                f.join(",")
            };
            let text = format!("{header}\n{}\n{}\n", row(d1), row(d2));
            let (good, bad) = read_str_with(&text, &opts);
            assert!(bad.is_empty(), "{header}: {bad:?}");
            let ts: Vec<Ts> = good.iter().map(Record::ts).collect();
            assert_eq!(ts[0], D20110103, "{header}");
            assert_eq!(ts[4], D20110103 + 24 * HOUR, "{header}");
            assert_eq!(ts[3], D20110103 + 18 * HOUR, "{header}");
        }
    }

    #[test]
    fn bars_with_separate_date_and_time_columns() {
        let text = "Symbol,Date,Time,Open,High,Low,Close\n\
                    EURUSD,2011-01-03,00:00,1,2,0.5,1.5\n\
                    EURUSD,2011-01-03,01:00,1,2,0.5,1.5\n";
        let (good, bad) = read_str(text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good[1].ts(), D20110103 + HOUR / 4);
        assert_eq!(good[4].ts(), D20110103 + HOUR);
    }

    #[test]
    fn bars_need_a_symbol() {
        let e = open_err(
            "Date,Open,High,Low,Close\n2011-01-03,1,1,1,1\n",
            &ReadOptions::default(),
        );
        assert!(matches!(e, CsvDataError::NoSymbol { .. }), "{e}");
        assert_eq!(e.line(), Some(1));
    }

    #[test]
    fn bad_bar_rows_are_errors_with_line_numbers() {
        let text = "Ticker,Date,Open,High,Low,Close,Volume\n\
                    A,2011-01-03,10,11,9,10,100\n\
                    A,2011-01-04,10,9.5,9,10,100\n\
                    A,2011-01-05,10,11,9,x,100\n\
                    A,2011-01-03,10,11,9,10,100\n\
                    A,31/12/2011,10,11,9,10,100\n\
                    A,2011-01-06,10,11,9,10\n\
                    A,2011-01-07,0,11,9,10,100\n\
                    A,2011-01-10,10,11,9,10,-1\n\
                    A,2011-01-11,10,11,10.5,10.6,1\n\
                    A,2011-01-12,10,11,9,10,1.5E+2\n";
        let (good, bad) = read_str(text);
        // Bars 2011-01-03, 01-06 (no volume: sizes 0) and 01-12.
        let t = ticks(&good);
        assert_eq!(t.len(), 12);
        assert!(t[4..8].iter().all(|t| t.size.is_zero()));
        assert_eq!(t[11].size, dec("39")); // 150 = 37 + 37 + 37 + 39
        assert_eq!(
            bad.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![3, 4, 5, 6, 8, 9, 10]
        );
        assert!(matches!(bad[0].kind, RowErrorKind::BadBar(_)));
        assert!(
            matches!(&bad[1].kind, RowErrorKind::BadDecimal { column, .. } if column == "Close")
        );
        assert!(matches!(bad[2].kind, RowErrorKind::OutOfOrder { .. }));
        assert!(matches!(bad[3].kind, RowErrorKind::BadTimestamp { .. }));
        assert!(
            matches!(&bad[4].kind, RowErrorKind::OutOfRange { column, .. } if column == "Open")
        );
        assert!(
            matches!(&bad[5].kind, RowErrorKind::OutOfRange { column, .. } if column == "Volume")
        );
        assert!(matches!(bad[6].kind, RowErrorKind::BadBar(_)));
    }

    #[test]
    fn interleaved_bars_and_errors_keep_file_order() {
        let text = "Ticker,Date,Open,High,Low,Close\n\
                    A,2011-01-03,10,11,9,10\n\
                    B,2011-01-03,20,21,19,20\n\
                    A,bad,10,11,9,10\n\
                    A,2011-01-04,10,11,9,10\n\
                    B,2011-01-04,20,21,19,20\n";
        let rdr =
            RecordReader::from_reader("t.csv", text.as_bytes(), &ReadOptions::default()).unwrap();
        let order: Vec<String> = rdr
            .map(|r| match r {
                Ok(r) => format!("{}@{}", r.symbol(), (r.ts() - D20110103) / HOUR),
                Err(e) => format!("err{}", e.line),
            })
            .collect();
        assert_eq!(
            order,
            [
                "A@0", "A@6", "A@12", "A@18", "B@0", "B@6", "B@12", "B@18", "err4", "A@24", "A@30",
                "A@36", "A@42", "B@24", "B@30", "B@36", "B@42"
            ]
        );
    }

    #[test]
    fn merge_by_ts_is_stable() {
        let r = |s: &str, ts: Ts| Record::Tick(tick(s, ts, "1", "1"));
        let a = vec![r("A", 1), r("A", 3), r("A", 5)];
        let b = vec![r("B", 1), r("B", 2), r("B", 5)];
        let m = merge_by_ts(vec![a, b]);
        let got: Vec<String> = m
            .iter()
            .map(|r| format!("{}{}", r.symbol(), r.ts()))
            .collect();
        assert_eq!(got, ["A1", "B1", "B2", "A3", "A5", "B5"]);
    }

    // ---- writers

    #[test]
    fn ticks_round_trip_through_csv() {
        let mut t1 = tick("ACME", D20110103, "100.10", "5");
        t1.bid = Some(dec("100.09"));
        t1.ask = Some(dec("100.11"));
        let t2 = tick("GLOBEX", D20110103 + 1, "0.000001", "1.50");
        let mut out = Vec::new();
        write_ticks_csv(&mut out, &[t1.clone(), t2.clone()]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "ts,symbol,price,size,bid,ask\n\
             1294012800000,ACME,100.10,5,100.09,100.11\n\
             2011-01-03T00:00:00.000000001Z,GLOBEX,0.000001,1.50,,\n"
        );
        let (good, bad) = read_str(&text);
        assert!(bad.is_empty());
        assert_eq!(ticks(&good), vec![t1, t2.clone()]);
        assert_eq!(ticks(&good)[1].size.to_string(), "1.50");

        let mut out = Vec::new();
        write_ticks_csv(&mut out, &[t2]).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("ts,symbol,price,size\n2011"));
    }

    #[test]
    fn sentiment_round_trips_through_csv() {
        let s = vec![
            Sentiment {
                symbol: "ACME".into(),
                ts: 1000 * MS,
                score: 0.1 + 0.2,
                source: "synthetic".into(),
                headline: Some("ACME: \"big\", news".into()),
            },
            Sentiment {
                symbol: "ACME".into(),
                ts: 2000 * MS + 7,
                score: -1.0,
                source: "wire".into(),
                headline: None,
            },
        ];
        let mut out = Vec::new();
        write_sentiment_csv(&mut out, &s).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("ts,symbol,score,source,headline\n1000,ACME,0.30000000000000004,"));
        let (good, bad) = read_str(&text);
        assert!(bad.is_empty(), "{bad:?}");
        let back: Vec<Record> = s.into_iter().map(Record::Sentiment).collect();
        assert_eq!(good, back);
    }

    // ---- real files

    fn repo(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
    }

    /// Reads a bar file and checks: no bad rows, 4 ticks per data line, the
    /// expected symbols, and strictly increasing timestamps per symbol.
    fn check_bar_file(
        path: &Path,
        symbol: Option<&str>,
        rows: usize,
        symbols: &[&str],
    ) -> Vec<Record> {
        assert_eq!(detect_file_kind(path).unwrap(), FileKind::Bars);
        let (good, bad) = read_records(path, symbol).unwrap();
        assert!(
            bad.is_empty(),
            "{}: {:?}",
            path.display(),
            &bad[..bad.len().min(5)]
        );
        assert_eq!(good.len(), rows * 4, "{}", path.display());
        let mut last: HashMap<&str, Ts> = HashMap::new();
        for r in &good {
            if let Some(prev) = last.insert(r.symbol(), r.ts()) {
                assert!(r.ts() > prev, "{}: {r:?} not after {prev}", path.display());
            }
        }
        let mut got: Vec<&str> = last.keys().copied().collect();
        got.sort();
        assert_eq!(got, symbols);
        good
    }

    #[test]
    fn real_file_aapl_msft_daily() {
        let p = repo("data/aapl_msft_daily_2011_2013.csv");
        let good = check_bar_file(&p, None, 1086, &["AAPL", "MSFT"]);
        assert_eq!(
            good[0],
            Record::Tick(tick("AAPL", D20110103, "325.64", "3974450"))
        );
        // Records of several symbols merged by time, ties in file order.
        let mut merged = good.clone();
        sort_by_ts(&mut merged);
        assert!(merged.windows(2).all(|w| w[0].ts() <= w[1].ts()));
        assert_eq!(merged[0].symbol(), "AAPL");
        assert_eq!(merged[1].symbol(), "MSFT");
        assert_eq!(merged[1].ts(), D20110103);
    }

    #[test]
    fn real_file_sp500_daily() {
        // The first 40 rows of the S&P 500 file (PyPI arch 8.0.0, data/sp500).
        let p = repo("tests/fixtures/sp500_daily_excerpt.csv");
        assert!(matches!(
            read_records(&p, None),
            Err(CsvDataError::NoSymbol { .. })
        ));
        let good = check_bar_file(&p, Some("SPX"), 40, &["SPX"]);
        assert_eq!(good[0].ts(), 915_408_000 * NANOS_PER_SEC);
        assert_eq!(good[1].ts(), 915_408_000 * NANOS_PER_SEC + 6 * HOUR);
    }

    #[test]
    fn real_file_eurusd_hourly() {
        // Rows of the EURUSD hourly file (PyPI gym-anytrading 2.0.0): the first 20
        // and 7 from September with volumes in scientific notation.
        let p = repo("tests/fixtures/eurusd_1h_excerpt.csv");
        let good = check_bar_file(&p, Some("EURUSD"), 27, &["EURUSD"]);
        let t0 = 1_483_308_000 * NANOS_PER_SEC;
        let ts: Vec<Ts> = good[..4].iter().map(|r| r.ts() - t0).collect();
        assert_eq!(ts, [0, HOUR / 4, HOUR / 2, 3 * HOUR / 4]);
        // Volumes in scientific notation (1.00532E+11) are read exactly.
        let sum: Decimal = good
            .iter()
            .filter(|r| {
                r.ts() >= 1_506_081_600 * NANOS_PER_SEC && r.ts() < 1_506_085_200 * NANOS_PER_SEC
            })
            .map(|r| match r {
                Record::Tick(t) => t.size,
                _ => Decimal::ZERO,
            })
            .sum();
        assert_eq!(sum, dec("100532000000"));
    }
}
