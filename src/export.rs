//! Parquet export for batch analysis (`papertrader export`, `backtest
//! --parquet`): an output topic, or the tables of a backtest's report
//! directory, as Parquet files that DuckDB, Polars or Spark open as they are.
//!
//! Columns are typed (docs/export.md lists every table):
//!
//! * times: `INT64` `TIMESTAMP(unit, UTC)`, the unit per column the coarsest of
//!   milliseconds, microseconds and nanoseconds that holds every value of the
//!   column exactly (papertrader's times are nanoseconds; the data's are
//!   usually whole milliseconds);
//! * prices, quantities and money (`rust_decimal` strings):
//!   `FIXED_LEN_BYTE_ARRAY(16)` `DECIMAL(38, 18)`, Spark's default decimal:
//!   20 digits before the point, 18 after. A value with more than 18 decimal
//!   places (a quotient such as an average cost) is rounded half to even at
//!   the 18th; one of 10^20 or more is refused;
//! * statistics (`f64`): `DOUBLE`; counts and offsets: `INT64`; flags: `BOOLEAN`;
//! * text: `BYTE_ARRAY` `STRING` (UTF-8); a nested JSON object (a signal's
//!   `reason`) as `STRING` with the `JSON` logical type.
//!
//! Every column is `OPTIONAL`: a field a message lacks is null. Files are
//! Snappy-compressed, in row groups of [`ROW_GROUP`] rows, and carry their
//! source in the key-value metadata `papertrader.source`.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DoubleType, FixedLenByteArray, FixedLenByteArrayType,
    Int64Type,
};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::types::Type;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value as Json;

use crate::config::{Loaded, TopicsConfig};
use crate::domain::Ts;

/// The precision of every decimal column.
pub const DECIMAL_PRECISION: i32 = 38;
/// The scale of every decimal column.
pub const DECIMAL_SCALE: u32 = 18;
/// Rows per row group.
pub const ROW_GROUP: usize = 128 * 1024;

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// UTF-8 text.
    Utf8,
    /// A JSON document, as UTF-8 text.
    Json,
    /// `DECIMAL(38, 18)`.
    Decimal,
    /// An event time (nanoseconds in memory).
    Timestamp,
    Double,
    Int64,
    Bool,
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Str(String),
    /// The unscaled value at scale [`DECIMAL_SCALE`].
    Dec(i128),
    /// Nanoseconds since the epoch.
    Ts(Ts),
    F64(f64),
    I64(i64),
    Bool(bool),
}

/// A column: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColType,
}

/// A table in memory, row by row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// What one export wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub rows: usize,
    /// Messages that were not a JSON object of the topic's kind (each logged).
    pub skipped: usize,
}

impl Written {
    /// One line for the terminal.
    pub fn render(&self, source: &str) -> String {
        let skipped = if self.skipped > 0 {
            format!(
                " ({} messages skipped: not a JSON object of this kind; each is logged)",
                self.skipped
            )
        } else {
            String::new()
        };
        format!(
            "{source}: {} rows to {}{skipped}",
            self.rows,
            self.path.display()
        )
    }
}

// ---------------------------------------------------------------------------
// Cells

/// `d` at scale [`DECIMAL_SCALE`] (rounded half to even), unscaled.
///
/// # Errors
/// `|d|` is 10^20 or more: it does not fit `DECIMAL(38, 18)`.
pub fn decimal_cell(d: Decimal) -> Result<i128, String> {
    let r = d.round_dp_with_strategy(DECIMAL_SCALE, RoundingStrategy::MidpointNearestEven);
    let limit = 10i128.pow(DECIMAL_PRECISION as u32);
    r.mantissa()
        .checked_mul(10i128.pow(DECIMAL_SCALE - r.scale()))
        .filter(|v| v.abs() < limit)
        .ok_or_else(|| format!("{d} does not fit DECIMAL(38, 18): 10^20 or more"))
}

/// A cell of type `ty` from text (a CSV field, a JSON string); an empty text
/// is null except for text columns.
///
/// # Errors
/// The text is not a value of the type.
pub fn parse_text(ty: ColType, s: &str) -> Result<Value, String> {
    if s.is_empty() && !matches!(ty, ColType::Utf8 | ColType::Json) {
        return Ok(Value::Null);
    }
    Ok(match ty {
        ColType::Utf8 | ColType::Json => Value::Str(s.to_string()),
        ColType::Decimal => {
            let d = s
                .parse::<Decimal>()
                .or_else(|_| Decimal::from_scientific(s))
                .map_err(|_| format!("{s:?} is not a decimal number"))?;
            Value::Dec(decimal_cell(d)?)
        }
        ColType::Timestamp => Value::Ts(
            crate::wire::parse_ts_str(s)
                .ok_or_else(|| format!("{s:?} is neither RFC 3339 nor epoch milliseconds"))?,
        ),
        ColType::Double => Value::F64(s.parse().map_err(|_| format!("{s:?} is not a number"))?),
        ColType::Int64 => Value::I64(
            s.parse()
                .map_err(|_| format!("{s:?} is not a whole number"))?,
        ),
        ColType::Bool => Value::Bool(match s {
            "true" => true,
            "false" => false,
            _ => return Err(format!("{s:?} is not true or false")),
        }),
    })
}

/// A cell of type `ty` from a JSON value (absent or null: null).
///
/// # Errors
/// The value is not of the type.
pub fn parse_json(ty: ColType, v: Option<&Json>) -> Result<Value, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Value::Null);
    };
    match (ty, v) {
        (ColType::Json, v) => Ok(Value::Str(v.to_string())),
        (ColType::Utf8, Json::String(s)) => Ok(Value::Str(s.clone())),
        (_, Json::String(s)) => parse_text(ty, s),
        (ColType::Bool, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (ColType::Utf8 | ColType::Bool, v) => Err(format!("{v} is not a {ty:?}")),
        (_, Json::Number(n)) => parse_text(ty, &n.to_string()),
        (_, v) => Err(format!("{v} is not a {ty:?}")),
    }
}

// ---------------------------------------------------------------------------
// Writing

/// The coarsest of ms, us and ns that holds every time of column `i` exactly.
fn time_unit(rows: &[Vec<Value>], i: usize) -> (TimeUnit, i64) {
    let all = |d: i64| {
        rows.iter()
            .all(|r| !matches!(r[i], Value::Ts(t) if t % d != 0))
    };
    if all(1_000_000) {
        (TimeUnit::MILLIS, 1_000_000)
    } else if all(1_000) {
        (TimeUnit::MICROS, 1_000)
    } else {
        (TimeUnit::NANOS, 1)
    }
}

/// The Parquet schema of `table`, with the time unit of each column.
fn schema(table: &Table) -> anyhow::Result<(Type, Vec<i64>)> {
    let mut fields = Vec::new();
    let mut divisors = Vec::new();
    for (i, c) in table.columns.iter().enumerate() {
        let (physical, logical) = match c.ty {
            ColType::Utf8 => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
            ColType::Json => (PhysicalType::BYTE_ARRAY, Some(LogicalType::Json)),
            ColType::Decimal => (
                PhysicalType::FIXED_LEN_BYTE_ARRAY,
                Some(LogicalType::decimal(
                    DECIMAL_SCALE as i32,
                    DECIMAL_PRECISION,
                )),
            ),
            ColType::Timestamp => {
                let (unit, d) = time_unit(&table.rows, i);
                divisors.push(d);
                (
                    PhysicalType::INT64,
                    Some(LogicalType::timestamp(true, unit)),
                )
            }
            ColType::Double => (PhysicalType::DOUBLE, None),
            ColType::Int64 => (PhysicalType::INT64, None),
            ColType::Bool => (PhysicalType::BOOLEAN, None),
        };
        if c.ty != ColType::Timestamp {
            divisors.push(1);
        }
        let mut b = Type::primitive_type_builder(&c.name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical);
        if c.ty == ColType::Decimal {
            b = b
                .with_length(16)
                .with_precision(DECIMAL_PRECISION)
                .with_scale(DECIMAL_SCALE as i32);
        }
        fields.push(Arc::new(b.build().with_context(|| {
            format!("the Parquet type of column {}", c.name)
        })?));
    }
    let root = Type::group_type_builder("schema")
        .with_fields(fields)
        .build()?;
    Ok((root, divisors))
}

/// Write `table` to `path` (through a temporary file beside it, renamed when
/// complete); `source` goes into the metadata.
///
/// # Errors
/// The file cannot be written.
pub fn write_parquet(table: &Table, path: &Path, source: &str) -> anyhow::Result<()> {
    let (root, divisors) = schema(table)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("papertrader {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "papertrader.source".to_string(),
            source.to_string(),
        )]))
        .build();
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = SerializedFileWriter::new(file, Arc::new(root), Arc::new(props))?;
    for rows in table.rows.chunks(ROW_GROUP) {
        let mut rg = w.next_row_group()?;
        let mut i = 0;
        while let Some(mut cw) = rg.next_column()? {
            write_column(&mut cw, table.columns[i].ty, divisors[i], rows, i)
                .with_context(|| format!("writing column {}", table.columns[i].name))?;
            cw.close()?;
            i += 1;
        }
        rg.close()?;
    }
    w.close()
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Column `i` of `rows`: its definition levels (0 for null) and values.
fn write_column(
    cw: &mut SerializedColumnWriter<'_>,
    ty: ColType,
    divisor: i64,
    rows: &[Vec<Value>],
    i: usize,
) -> anyhow::Result<()> {
    let def: Vec<i16> = rows
        .iter()
        .map(|r| i16::from(r[i] != Value::Null))
        .collect();
    let cells = rows.iter().map(|r| &r[i]);
    let wrong = |v: &Value| anyhow::anyhow!("a {v:?} in a {ty:?} column");
    match ty {
        ColType::Utf8 | ColType::Json => {
            let mut v = Vec::new();
            for c in cells {
                match c {
                    Value::Str(s) => v.push(ByteArray::from(s.as_bytes().to_vec())),
                    Value::Null => {}
                    other => return Err(wrong(other)),
                }
            }
            cw.typed::<ByteArrayType>()
                .write_batch(&v, Some(&def), None)?;
        }
        ColType::Decimal => {
            let mut v = Vec::new();
            for c in cells {
                match c {
                    Value::Dec(d) => {
                        v.push(FixedLenByteArray::from(d.to_be_bytes().to_vec()));
                    }
                    Value::Null => {}
                    other => return Err(wrong(other)),
                }
            }
            cw.typed::<FixedLenByteArrayType>()
                .write_batch(&v, Some(&def), None)?;
        }
        ColType::Timestamp | ColType::Int64 => {
            let mut v = Vec::new();
            for c in cells {
                match c {
                    Value::Ts(t) => v.push(t / divisor),
                    Value::I64(n) => v.push(*n),
                    Value::Null => {}
                    other => return Err(wrong(other)),
                }
            }
            cw.typed::<Int64Type>().write_batch(&v, Some(&def), None)?;
        }
        ColType::Double => {
            let mut v = Vec::new();
            for c in cells {
                match c {
                    Value::F64(x) => v.push(*x),
                    Value::Null => {}
                    other => return Err(wrong(other)),
                }
            }
            cw.typed::<DoubleType>().write_batch(&v, Some(&def), None)?;
        }
        ColType::Bool => {
            let mut v = Vec::new();
            for c in cells {
                match c {
                    Value::Bool(b) => v.push(*b),
                    Value::Null => {}
                    other => return Err(wrong(other)),
                }
            }
            cw.typed::<BoolType>().write_batch(&v, Some(&def), None)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A backtest's report directory

/// The tables of a report directory, each `NAME.csv`.
pub const REPORT_TABLES: [&str; 4] = ["trades", "round_trips", "equity", "alerts"];

/// The type of a report table's column, by its name; text when unknown.
fn report_column_type(table: &str, column: &str) -> ColType {
    use ColType::*;
    match (table, column) {
        (_, "ts" | "entry_ts" | "exit_ts") => Timestamp,
        ("alerts", "value" | "threshold") => Double,
        ("alerts", _) => Utf8,
        (
            _,
            "qty" | "price" | "fee" | "realized_pnl" | "size" | "entry_price" | "exit_price"
            | "commission" | "pnl" | "return" | "equity" | "drawdown",
        ) => Decimal,
        _ => Utf8,
    }
}

/// A report table read from its CSV file.
///
/// # Errors
/// The file cannot be read, or a cell is not of its column's type.
pub fn read_report_csv(table: &str, path: &Path) -> anyhow::Result<Table> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let columns: Vec<Column> = r
        .headers()
        .with_context(|| format!("reading the header of {}", path.display()))?
        .iter()
        .map(|name| Column {
            name: name.to_string(),
            ty: report_column_type(table, name),
        })
        .collect();
    let mut rows = Vec::new();
    for (n, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("reading {}", path.display()))?;
        let mut row = Vec::with_capacity(columns.len());
        for (c, cell) in columns.iter().zip(rec.iter()) {
            row.push(parse_text(c.ty, cell).map_err(|e| {
                anyhow::anyhow!("{} line {}, column {}: {e}", path.display(), n + 2, c.name)
            })?);
        }
        anyhow::ensure!(
            row.len() == columns.len(),
            "{} line {}: {} fields, the header has {}",
            path.display(),
            n + 2,
            row.len(),
            columns.len()
        );
        rows.push(row);
    }
    Ok(Table { columns, rows })
}

/// Write the tables of report directory `dir` as `out/NAME.parquet` (or as
/// `out` itself when it ends in `.parquet` and one table is chosen): those
/// named in `tables`, or all it holds when `tables` is empty.
///
/// # Errors
/// An unknown table name, a named table whose file is missing, no table at
/// all, or a file that cannot be read or written.
pub fn report_tables(dir: &Path, out: &Path, tables: &[String]) -> anyhow::Result<Vec<Written>> {
    anyhow::ensure!(
        dir.is_dir(),
        "--report {}: no such directory (a backtest writes one with --report DIR)",
        dir.display()
    );
    for t in tables {
        anyhow::ensure!(
            REPORT_TABLES.contains(&t.as_str()),
            "unknown table {t:?}: a report directory holds the tables {} (NAME.csv)",
            REPORT_TABLES.join(", ")
        );
    }
    let chosen: Vec<&str> = if tables.is_empty() {
        REPORT_TABLES
            .into_iter()
            .filter(|t| dir.join(format!("{t}.csv")).is_file())
            .collect()
    } else {
        tables.iter().map(String::as_str).collect()
    };
    anyhow::ensure!(
        !chosen.is_empty(),
        "{} holds none of the tables {} (NAME.csv): is it a backtest's report directory?",
        dir.display(),
        REPORT_TABLES.join(", ")
    );
    // `out` itself when it ends in `.parquet` (one table), as for topics.
    let to_file = out.extension().is_some_and(|e| e == "parquet");
    anyhow::ensure!(
        !to_file || chosen.len() == 1,
        "--out {}: a file takes one table; name a directory for {} tables ({})",
        out.display(),
        chosen.len(),
        chosen.join(", ")
    );
    let dir_out = if to_file {
        out.parent().filter(|p| !p.as_os_str().is_empty())
    } else {
        Some(out)
    };
    if let Some(d) = dir_out {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut written = Vec::new();
    for t in chosen {
        let csv = dir.join(format!("{t}.csv"));
        anyhow::ensure!(
            csv.is_file(),
            "table {t}: {} does not exist{}",
            csv.display(),
            if t == "alerts" {
                " (a backtest writes it only when the config has [[alerts.rules]])"
            } else {
                ""
            }
        );
        let table = read_report_csv(t, &csv)?;
        let path = if to_file {
            out.to_path_buf()
        } else {
            out.join(format!("{t}.parquet"))
        };
        write_parquet(&table, &path, &csv.display().to_string())?;
        written.push(Written {
            path,
            rows: table.rows.len(),
            skipped: 0,
        });
    }
    Ok(written)
}

// ---------------------------------------------------------------------------
// Output topics

/// The kinds of output topic, by the name of their `[topics]` key.
pub const TOPIC_KINDS: [&str; 7] = [
    "fills",
    "orders",
    "pnl",
    "signals",
    "indicators",
    "alerts",
    "dead_letters",
];

/// The fixed columns of a topic kind: `(column, JSON pointer, type)`.
fn topic_columns(kind: &str) -> Vec<(&'static str, &'static str, ColType)> {
    use ColType::*;
    let f: &[(&'static str, ColType)] = match kind {
        "fills" => &[
            ("fill_id", Utf8),
            ("order_id", Utf8),
            ("strategy", Utf8),
            ("symbol", Utf8),
            ("ts", Timestamp),
            ("side", Utf8),
            ("qty", Decimal),
            ("price", Decimal),
            ("fee", Decimal),
            ("liquidity", Utf8),
            ("slippage", Decimal),
        ],
        "orders" => &[
            ("event_id", Utf8),
            ("order_id", Utf8),
            ("signal_id", Utf8),
            ("strategy", Utf8),
            ("symbol", Utf8),
            ("ts", Timestamp),
            ("side", Utf8),
            ("type", Utf8),
            ("price", Decimal),
            ("stop_price", Decimal),
            ("tif", Utf8),
            ("qty", Decimal),
            ("status", Utf8),
            ("filled_qty", Decimal),
            ("avg_price", Decimal),
            ("leaves_qty", Decimal),
            ("reason", Utf8),
        ],
        "pnl" => &[
            ("pnl_id", Utf8),
            ("strategy", Utf8),
            ("symbol", Utf8),
            ("ts", Timestamp),
            ("position", Decimal),
            ("avg_cost", Decimal),
            ("last_price", Decimal),
            ("realized", Decimal),
            ("unrealized", Decimal),
            ("fees", Decimal),
            ("account_cash", Decimal),
            ("account_equity", Decimal),
            ("account_drawdown", Decimal),
            ("account_max_drawdown", Decimal),
        ],
        "signals" => &[
            ("signal_id", Utf8),
            ("strategy", Utf8),
            ("kind", Utf8),
            ("symbol", Utf8),
            ("ts", Timestamp),
            ("side", Utf8),
            ("strength", Double),
            ("price", Decimal),
            ("reason", Json),
            ("origin", Utf8),
        ],
        "indicators" => &[
            ("indicator_id", Utf8),
            ("analytics", Utf8),
            ("symbol", Utf8),
            ("ts", Timestamp),
            ("origin", Utf8),
        ],
        "alerts" => &[
            ("alert_id", Utf8),
            ("rule", Utf8),
            ("kind", Utf8),
            ("subject", Utf8),
            ("ts", Timestamp),
            ("direction", Utf8),
            ("value", Double),
            ("threshold", Double),
            ("message", Utf8),
        ],
        "dead_letters" => &[
            ("dead_letter_id", Utf8),
            ("reason", Utf8),
            ("detail", Utf8),
            ("topic", Utf8),
            ("partition", Int64),
            ("offset", Int64),
            ("key", Utf8),
            ("payload", Utf8),
            ("payload_hex", Utf8),
            ("payload_bytes", Int64),
            ("payload_truncated", Bool),
        ],
        _ => &[],
    };
    let mut cols: Vec<(&'static str, &'static str, ColType)> =
        f.iter().map(|(n, t)| (*n, "", *t)).collect();
    if kind == "signals" {
        cols.extend([
            ("model_name", "/model/name", Utf8),
            ("model_version", "/model/version", Utf8),
            ("model_spec", "/model/spec", Utf8),
        ]);
    }
    cols
}

/// The kind of output topic `topic` holds: `kind` when given, else by its
/// name, one of the configured output topics or `RUN_ID.NAME` of `backtest
/// --publish`.
///
/// # Errors
/// An unknown `kind`, or a topic whose name does not say its kind.
pub fn topic_kind(
    topics: &TopicsConfig,
    topic: &str,
    kind: Option<&str>,
) -> anyhow::Result<&'static str> {
    if let Some(k) = kind {
        return TOPIC_KINDS
            .into_iter()
            .find(|t| *t == k)
            .ok_or_else(|| anyhow::anyhow!("--kind {k:?}: use one of {}", TOPIC_KINDS.join(", ")));
    }
    let named = [
        ("fills", &topics.fills),
        ("orders", &topics.orders),
        ("pnl", &topics.pnl),
        ("signals", &topics.signals),
        ("indicators", &topics.indicators),
        ("alerts", &topics.alerts),
        ("dead_letters", &topics.dead_letters),
    ];
    if let Some((k, _)) = named.iter().find(|(_, n)| n.as_str() == topic) {
        return Ok(k);
    }
    if let Some((k, _)) = named
        .iter()
        .find(|(_, n)| topic.ends_with(&format!(".{n}")))
    {
        return Ok(k);
    }
    anyhow::bail!(
        "unknown topic {topic:?}: export reads an output topic, one of {} (as named under [topics]) or RUN_ID.TOPIC of `backtest --publish` (e.g. bt-1.fills); for a topic of another name, say what it holds with --kind {}",
        named.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", "),
        TOPIC_KINDS.join("|")
    )
}

/// A JSON pointer to field `name` of the message.
fn pointer(name: &str) -> String {
    format!("/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// The table of `messages` (`(partition, offset, payload)`, in that order) of
/// a topic of `kind`, with the columns `kafka_partition` and `kafka_offset`
/// last; indicators get a `DOUBLE` column per value name (sorted; a name
/// that is also a fixed column is prefixed with `value_`). Messages that are
/// not a JSON object of the kind are left out and counted.
pub fn messages_table(kind: &str, messages: &[(i32, i64, Vec<u8>)]) -> (Table, usize) {
    let mut fixed: Vec<(String, String, ColType)> = topic_columns(kind)
        .into_iter()
        .map(|(n, p, t)| {
            let p = if p.is_empty() {
                pointer(n)
            } else {
                p.to_string()
            };
            (n.to_string(), p, t)
        })
        .collect();
    let mut parsed = Vec::with_capacity(messages.len());
    let mut skipped = 0;
    for (p, o, payload) in messages {
        match serde_json::from_slice::<Json>(payload) {
            Ok(v @ Json::Object(_)) => parsed.push((*p, *o, v)),
            _ => {
                skipped += 1;
                tracing::warn!(partition = p, offset = o, "not a JSON object: skipped");
            }
        }
    }
    if kind == "indicators" {
        let names: BTreeSet<String> = parsed
            .iter()
            .filter_map(|(_, _, v)| v.get("values").and_then(Json::as_object))
            .flat_map(|m| m.keys().cloned())
            .collect();
        for n in names {
            let col = if fixed.iter().any(|(f, _, _)| *f == n) || n.starts_with("kafka_") {
                format!("value_{n}")
            } else {
                n.clone()
            };
            fixed.push((col, format!("/values{}", pointer(&n)), ColType::Double));
        }
    }
    let mut columns: Vec<Column> = fixed
        .iter()
        .map(|(n, _, t)| Column {
            name: n.clone(),
            ty: *t,
        })
        .collect();
    columns.push(Column {
        name: "kafka_partition".into(),
        ty: ColType::Int64,
    });
    columns.push(Column {
        name: "kafka_offset".into(),
        ty: ColType::Int64,
    });
    let mut rows = Vec::with_capacity(parsed.len());
    'messages: for (p, o, v) in &parsed {
        let mut row = Vec::with_capacity(columns.len());
        for (name, ptr, ty) in &fixed {
            match parse_json(*ty, v.pointer(ptr)) {
                Ok(c) => row.push(c),
                Err(e) => {
                    skipped += 1;
                    tracing::warn!(partition = p, offset = o, column = %name, error = %e, "skipped");
                    continue 'messages;
                }
            }
        }
        row.push(Value::I64(i64::from(*p)));
        row.push(Value::I64(*o));
        rows.push(row);
    }
    (Table { columns, rows }, skipped)
}

/// Every message of `topic` at `bootstrap`, as `(partition, offset,
/// payload)` in that order. Blocking.
///
/// # Errors
/// The topic does not exist, or is not read to its end within `timeout`.
pub fn read_topic(
    base: &rdkafka::ClientConfig,
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<(i32, i64, Vec<u8>)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let probe: BaseConsumer = base
        .clone()
        .set("group.id", "papertrader-export")
        .set("allow.auto.create.topics", "false")
        .create()
        .context("creating a Kafka consumer")?;
    let md = probe
        .fetch_metadata(Some(topic), Duration::from_secs(15))
        .with_context(|| format!("reading the metadata of topic {topic}"))?;
    let exists = md
        .topics()
        .first()
        .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty());
    anyhow::ensure!(
        exists,
        "topic {topic:?} does not exist at {bootstrap}: name an output topic that holds messages (a backtest publishes RUN_ID.TOPIC with --publish RUN_ID)"
    );
    drop(probe);
    let mut out = Vec::new();
    crate::state::scan_topic(base, topic, None, true, timeout, |m| {
        out.push((
            m.partition(),
            m.offset(),
            m.payload().unwrap_or(&[]).to_vec(),
        ));
    })?;
    out.sort_by_key(|(p, o, _)| (*p, *o));
    out.dedup_by_key(|(p, o, _)| (*p, *o));
    Ok(out)
}

/// `papertrader export --topic`: each topic (its kind by name, or `kind`)
/// to a Parquet file: `out` itself when it ends in `.parquet` (one topic),
/// else `out/TOPIC.parquet`.
///
/// # Errors
/// The broker is unreachable, a topic is unknown or missing, or a file cannot
/// be written.
pub async fn export_topics(
    cfg: &Loaded,
    bootstrap: &str,
    topics: &[String],
    kind: Option<&str>,
    out: &Path,
) -> anyhow::Result<Vec<Written>> {
    let kinds = topics
        .iter()
        .map(|t| topic_kind(&cfg.app.topics, t, kind))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let to_file = out.extension().is_some_and(|e| e == "parquet");
    anyhow::ensure!(
        !to_file || topics.len() == 1,
        "--out {}: a file takes one topic; name a directory for {} topics",
        out.display(),
        topics.len()
    );
    anyhow::ensure!(
        bootstrap != "embedded",
        "export reads a running broker: pass --brokers HOST:PORT (the embedded broker of kafka.brokers = \"embedded\" lives only inside the process that started it)"
    );
    let base = crate::kafka::client_config(&cfg.app.kafka, bootstrap);
    crate::kafka::check_reachable_named(&base, bootstrap, &cfg.app.kafka).await?;
    let dir = if to_file {
        out.parent().filter(|p| !p.as_os_str().is_empty())
    } else {
        Some(out)
    };
    if let Some(d) = dir {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut written = Vec::new();
    for (topic, kind) in topics.iter().zip(kinds) {
        let messages = tokio::task::spawn_blocking({
            let (base, bootstrap, topic) = (base.clone(), bootstrap.to_string(), topic.clone());
            move || read_topic(&base, &bootstrap, &topic, Duration::from_secs(300))
        })
        .await??;
        let (table, skipped) = messages_table(kind, &messages);
        let path = if to_file {
            out.to_path_buf()
        } else {
            out.join(format!("{topic}.parquet"))
        };
        write_parquet(&table, &path, &format!("kafka://{bootstrap}/{topic}"))?;
        written.push(Written {
            path,
            rows: table.rows.len(),
            skipped,
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_take_scale_18_and_refuse_what_does_not_fit() {
        assert_eq!(
            decimal_cell("1.5".parse().unwrap()),
            Ok(15 * 10i128.pow(17))
        );
        assert_eq!(
            decimal_cell("-0.000000000000000001".parse().unwrap()),
            Ok(-1)
        );
        // 19 places: half to even at the 18th.
        assert_eq!(
            decimal_cell("0.0000000000000000025".parse().unwrap()),
            Ok(2)
        );
        assert_eq!(
            decimal_cell("0.0000000000000000035".parse().unwrap()),
            Ok(4)
        );
        let big: Decimal = "99999999999999999999.5".parse().unwrap();
        assert_eq!(
            decimal_cell(big),
            Ok(999_999_999_999_999_999_995 * 10i128.pow(17))
        );
        assert!(decimal_cell("100000000000000000000".parse().unwrap()).is_err());
    }

    #[test]
    fn cells_from_text_and_json() {
        assert_eq!(parse_text(ColType::Decimal, ""), Ok(Value::Null));
        assert_eq!(parse_text(ColType::Utf8, ""), Ok(Value::Str(String::new())));
        assert_eq!(
            parse_text(ColType::Timestamp, "2026-01-05T14:30:00.25Z"),
            Ok(Value::Ts(1_767_623_400_250_000_000))
        );
        assert!(parse_text(ColType::Double, "x").is_err());
        let v: Json =
            serde_json::from_str(r#"{"a":"1.25","b":1767623400000,"c":0.5,"d":{"x":1}}"#).unwrap();
        assert_eq!(
            parse_json(ColType::Decimal, v.get("a")),
            Ok(Value::Dec(125 * 10i128.pow(16)))
        );
        assert_eq!(
            parse_json(ColType::Timestamp, v.get("b")),
            Ok(Value::Ts(1_767_623_400_000_000_000))
        );
        assert_eq!(parse_json(ColType::Double, v.get("c")), Ok(Value::F64(0.5)));
        assert_eq!(
            parse_json(ColType::Json, v.get("d")),
            Ok(Value::Str(r#"{"x":1}"#.into()))
        );
        assert_eq!(parse_json(ColType::Utf8, v.get("nope")), Ok(Value::Null));
        assert!(parse_json(ColType::Utf8, v.get("d")).is_err());
    }

    #[test]
    fn time_units_are_the_coarsest_that_hold_every_value() {
        let rows =
            |ts: &[i64]| -> Vec<Vec<Value>> { ts.iter().map(|t| vec![Value::Ts(*t)]).collect() };
        assert_eq!(time_unit(&rows(&[2_000_000, 0]), 0).1, 1_000_000);
        assert_eq!(time_unit(&rows(&[2_000_000, 1_000]), 0).1, 1_000);
        assert_eq!(time_unit(&rows(&[2_000_000, 1]), 0).1, 1);
    }

    #[test]
    fn topic_kinds_by_name_run_prefix_or_flag() {
        let t = crate::config::load_app(None).unwrap().app.topics;
        assert_eq!(topic_kind(&t, &t.fills, None).unwrap(), "fills");
        assert_eq!(topic_kind(&t, "bt-1.x.orders", None).unwrap(), "orders");
        assert_eq!(topic_kind(&t, "mine", Some("pnl")).unwrap(), "pnl");
        let e = topic_kind(&t, "mine", None).unwrap_err().to_string();
        assert!(
            e.contains("unknown topic \"mine\"") && e.contains("--kind"),
            "{e}"
        );
        assert!(topic_kind(&t, "fills", Some("trades")).is_err());
    }
}
