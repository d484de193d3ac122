//! `papertrader export` and `backtest --parquet`: the Parquet files read back
//! with the parquet crate's own reader and compared, row by row and value by
//! value, with what the same run wrote as CSV and JSON, or published to a
//! topic of a real (embedded tansu) broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use papertrader::wire::{format_ts, parse_ts_str};
use parquet::basic::{LogicalType, TimeUnit, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::common::{broker, read_topic};

/// Run the binary from the repository root, off the async threads.
async fn cli(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_papertrader"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn cli_sync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// One column of a Parquet file's schema.
#[derive(Debug)]
struct Col {
    name: String,
    physical: PhysicalType,
    logical: Option<LogicalType>,
    length: i32,
    precision: i32,
    scale: i32,
}

/// A Parquet file read back: its schema, rows and `papertrader.source`.
struct Parquet {
    cols: Vec<Col>,
    rows: Vec<Vec<Field>>,
    source: Option<String>,
}

impl Parquet {
    fn read(path: &Path) -> Parquet {
        let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let meta = reader.metadata().file_metadata();
        let cols = meta
            .schema_descr()
            .columns()
            .iter()
            .map(|c| Col {
                name: c.name().to_string(),
                physical: c.physical_type(),
                logical: c.logical_type_ref().cloned(),
                length: c.type_length(),
                precision: c.type_precision(),
                scale: c.type_scale(),
            })
            .collect();
        let source = meta.key_value_metadata().and_then(|kv| {
            kv.iter()
                .find(|k| k.key == "papertrader.source")
                .and_then(|k| k.value.clone())
        });
        let num_rows = meta.num_rows();
        let rows: Vec<Vec<Field>> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| {
                r.unwrap()
                    .into_columns()
                    .into_iter()
                    .map(|(_, f)| f)
                    .collect()
            })
            .collect();
        assert_eq!(rows.len() as i64, num_rows, "{}", path.display());
        Parquet { cols, rows, source }
    }

    fn index(&self, name: &str) -> usize {
        self.cols
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no column {name}: {:?}", self.cols))
    }

    fn col(&self, name: &str) -> &Col {
        &self.cols[self.index(name)]
    }
}

/// The column is DECIMAL(38, 18) in 16 bytes.
fn assert_decimal(c: &Col) {
    assert_eq!(c.physical, PhysicalType::FIXED_LEN_BYTE_ARRAY, "{c:?}");
    assert_eq!(c.logical, Some(LogicalType::decimal(18, 38)), "{c:?}");
    assert_eq!((c.length, c.precision, c.scale), (16, 38, 18), "{c:?}");
}

/// The column is a UTC timestamp in `unit`.
fn assert_timestamp(c: &Col, unit: TimeUnit) {
    assert_eq!(c.physical, PhysicalType::INT64, "{c:?}");
    assert_eq!(c.logical, Some(LogicalType::timestamp(true, unit)), "{c:?}");
}

fn assert_string(c: &Col) {
    assert_eq!(c.physical, PhysicalType::BYTE_ARRAY, "{c:?}");
    assert_eq!(c.logical, Some(LogicalType::String), "{c:?}");
}

/// The coarsest unit that holds every one of `ns` exactly.
fn unit_of(ns: impl IntoIterator<Item = i64> + Clone) -> TimeUnit {
    if ns.clone().into_iter().all(|t| t % 1_000_000 == 0) {
        TimeUnit::MILLIS
    } else if ns.into_iter().all(|t| t % 1_000 == 0) {
        TimeUnit::MICROS
    } else {
        TimeUnit::NANOS
    }
}

/// A decimal cell as `rust_decimal`.
fn dec(f: &Field) -> Decimal {
    let Field::Decimal(d) = f else {
        panic!("not a decimal: {f:?}")
    };
    assert_eq!((d.precision(), d.scale()), (38, 18));
    let bytes: [u8; 16] = d.data().try_into().expect("16 bytes");
    Decimal::from_i128_with_scale(i128::from_be_bytes(bytes), 18).normalize()
}

/// A timestamp cell in nanoseconds, by the column's unit.
fn ts(f: &Field, unit: &TimeUnit) -> i64 {
    match (f, unit) {
        (Field::TimestampMillis(v), TimeUnit::MILLIS) => v * 1_000_000,
        (Field::TimestampMicros(v), TimeUnit::MICROS) => v * 1_000,
        (Field::Long(v), TimeUnit::NANOS) => *v,
        _ => panic!("not a {unit:?} timestamp: {f:?}"),
    }
}

fn unit(c: &Col) -> TimeUnit {
    match &c.logical {
        Some(LogicalType::Timestamp(t)) => t.unit,
        other => panic!("{} is not a timestamp: {other:?}", c.name),
    }
}

fn string(f: &Field) -> &str {
    match f {
        Field::Str(s) => s,
        _ => panic!("not a string: {f:?}"),
    }
}

/// A CSV file as its header and records.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// The types a report table's columns must have: decimal, timestamp, double
/// or string.
fn report_type(table: &str, column: &str) -> &'static str {
    match (table, column) {
        (_, "ts" | "entry_ts" | "exit_ts") => "timestamp",
        ("alerts", "value" | "threshold") => "double",
        ("alerts", _) | (_, "strategy" | "symbol" | "side" | "fill_id") => "string",
        _ => "decimal",
    }
}

/// The Parquet table `name` of report directory `dir` holds exactly the rows
/// of its CSV file, typed.
fn check_table_against_csv(dir: &Path, name: &str) -> Parquet {
    let (header, csv_rows) = read_csv(&dir.join(format!("{name}.csv")));
    let pq = Parquet::read(&dir.join(format!("{name}.parquet")));
    assert!(
        !csv_rows.is_empty(),
        "{name}.csv is empty: nothing to compare"
    );
    let names: Vec<&str> = pq.cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, header, "{name}: the columns are the CSV's");
    assert_eq!(pq.rows.len(), csv_rows.len(), "{name}: row count");
    assert_eq!(
        pq.source.as_deref(),
        Some(
            dir.join(format!("{name}.csv"))
                .display()
                .to_string()
                .as_str()
        )
    );
    for (i, c) in pq.cols.iter().enumerate() {
        match report_type(name, &c.name) {
            "decimal" => assert_decimal(c),
            "timestamp" => {
                let want = unit_of(csv_rows.iter().map(|r| parse_ts_str(&r[i]).unwrap()));
                assert_timestamp(c, want);
            }
            "double" => assert_eq!((c.physical, &c.logical), (PhysicalType::DOUBLE, &None)),
            _ => assert_string(c),
        }
    }
    for (n, (row, want)) in pq.rows.iter().zip(&csv_rows).enumerate() {
        for (i, c) in pq.cols.iter().enumerate() {
            let (got, want) = (&row[i], &want[i]);
            let ok = match report_type(name, &c.name) {
                "decimal" => dec(got) == want.parse::<Decimal>().unwrap(),
                "timestamp" => format_ts(ts(got, &unit(c))) == *want,
                "double" => *got == Field::Double(want.parse().unwrap()),
                _ => string(got) == want,
            };
            assert!(
                ok,
                "{name} row {n} column {}: parquet {got:?}, csv {want:?}",
                c.name
            );
        }
    }
    pq
}

/// A real backtest with `--parquet`: every table's Parquet file against its
/// CSV file, and the sums against report.json.
#[test]
fn backtest_parquet_tables_hold_the_csv_rows_typed() {
    let dir = tempfile::tempdir().unwrap();
    // An alert rule, so that the run writes alerts.csv (DOUBLE columns).
    let app = dir.path().join("app.toml");
    std::fs::write(
        &app,
        "[[alerts.rules]]\nname = \"brk\"\nkind = \"breakout\"\nsymbols = [\"ACME\"]\nperiod = 50\n",
    )
    .unwrap();
    let report = dir.path().join("r");
    let out = cli_sync(&[
        "--config",
        &app.display().to_string(),
        "backtest",
        "--input",
        "data/synthetic_ticks.csv",
        "--input",
        "data/synthetic_sentiment.csv",
        "--report",
        &report.display().to_string(),
        "--parquet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for t in ["trades", "round_trips", "equity", "alerts"] {
        assert!(
            stdout.contains(&format!("{t}.parquet")),
            "the summary does not name {t}.parquet:\n{stdout}"
        );
    }
    let json: Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();

    let trades = check_table_against_csv(&report, "trades");
    assert_eq!(
        trades.rows.len() as u64,
        json["total"]["fills"].as_u64().unwrap()
    );
    let (s, f) = (trades.index("strategy"), trades.index("fee"));
    let mut fees: BTreeMap<String, Decimal> = BTreeMap::new();
    for r in &trades.rows {
        *fees.entry(string(&r[s]).to_string()).or_default() += dec(&r[f]);
    }
    let strategies = json["strategies"].as_object().unwrap();
    assert_eq!(fees.len(), strategies.len());
    for (name, st) in strategies {
        let want: Decimal = st["fees"].as_str().unwrap().parse().unwrap();
        assert_eq!(fees[name], want, "{name}: the fees of trades.parquet");
    }

    let trips = check_table_against_csv(&report, "round_trips");
    assert_eq!(
        trips.rows.len() as u64,
        json["total"]["round_trips"].as_u64().unwrap()
    );

    let equity = check_table_against_csv(&report, "equity");
    let (s, e, t) = (
        equity.index("strategy"),
        equity.index("equity"),
        equity.index("ts"),
    );
    let u = unit(equity.col("ts"));
    for (name, st) in strategies {
        let last = equity
            .rows
            .iter()
            .filter(|r| string(&r[s]) == name)
            .max_by_key(|r| ts(&r[t], &u))
            .unwrap();
        let want: Decimal = st["final_equity"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            dec(&last[e]),
            want,
            "{name}: the last equity of equity.parquet"
        );
    }

    let alerts = check_table_against_csv(&report, "alerts");
    assert!(alerts
        .rows
        .iter()
        .all(|r| string(&r[alerts.index("rule")]) == "brk"));

    // `papertrader export --report` writes the same tables elsewhere.
    let again = dir.path().join("again");
    let out = cli_sync(&[
        "export",
        "--report",
        &report.display().to_string(),
        "--table",
        "trades,equity",
        "--out",
        &again.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut files: Vec<String> = std::fs::read_dir(&again)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["equity.parquet", "trades.parquet"]);
    assert_eq!(
        Parquet::read(&again.join("trades.parquet")).rows,
        trades.rows
    );
    // One table to a file named .parquet: that file; two are refused.
    let one = dir.path().join("one").join("t.parquet");
    let report_dir = report.display().to_string();
    let one_arg = one.display().to_string();
    let out = cli_sync(&[
        "export",
        "--report",
        &report_dir,
        "--table",
        "trades",
        "--out",
        &one_arg,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(one.is_file(), "{} is not a file", one.display());
    assert_eq!(Parquet::read(&one).rows, trades.rows);
    let out = cli_sync(&[
        "export",
        "--report",
        &report_dir,
        "--table",
        "trades,equity",
        "--out",
        &one_arg,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("a file takes one table"),
        "{}",
        text(&out.stderr)
    );
}

/// The messages of `topic` as JSON, in offset order (one partition).
async fn topic_json(bs: &str, topic: &str) -> Vec<Value> {
    let (b, t) = (bs.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || read_topic(&b, &t))
        .await
        .unwrap()
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).unwrap())
        .collect()
}

/// A JSON decimal string (or null) as the Parquet cell must hold it.
fn json_dec(v: &Value) -> Option<Decimal> {
    v.as_str()
        .map(|s| s.parse::<Decimal>().unwrap().normalize())
}

/// A backtest publishes its fills, signals and P&L to a broker; `export`
/// reads the topics back into Parquet, one row per message, in offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_published_topics_holds_every_message() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.toml");
    std::fs::write(&app, format!("[kafka]\nbrokers = {bs:?}\npartitions = 1\n")).unwrap();
    let app_s = app.display().to_string();
    let report = dir.path().join("r");
    let out = cli(strings(&[
        "--config",
        &app_s,
        "backtest",
        "--input",
        "data/synthetic_ticks.csv",
        "--input",
        "data/synthetic_sentiment.csv",
        "--publish",
        "exp1",
        "--report",
        &report.display().to_string(),
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let fills_pq = dir.path().join("fills.parquet");
    let out = cli(strings(&[
        "--config",
        &app_s,
        "export",
        "--topic",
        "exp1.fills",
        "--out",
        &fills_pq.display().to_string(),
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let msgs = topic_json(&bs, "exp1.fills").await;
    let (_, trades) = read_csv(&report.join("trades.csv"));
    assert!(msgs.len() > 100, "too few fills to compare: {}", msgs.len());
    assert_eq!(msgs.len(), trades.len(), "the topic holds the run's fills");
    let pq = Parquet::read(&fills_pq);
    assert_eq!(pq.source, Some(format!("kafka://{bs}/exp1.fills")));
    let names: Vec<&str> = pq.cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "fill_id",
            "order_id",
            "strategy",
            "symbol",
            "ts",
            "side",
            "qty",
            "price",
            "fee",
            "liquidity",
            "slippage",
            "kafka_partition",
            "kafka_offset"
        ]
    );
    for c in ["qty", "price", "fee", "slippage"] {
        assert_decimal(pq.col(c));
    }
    let times: Vec<i64> = msgs
        .iter()
        .map(|m| parse_ts_str(m["ts"].as_str().unwrap()).unwrap())
        .collect();
    assert_timestamp(pq.col("ts"), unit_of(times.iter().copied()));
    assert_string(pq.col("fill_id"));
    assert_eq!(pq.col("kafka_offset").physical, PhysicalType::INT64);
    assert_eq!(pq.rows.len(), msgs.len());
    let u = unit(pq.col("ts"));
    let mut slippage_nulls = 0;
    for (i, (row, m)) in pq.rows.iter().zip(&msgs).enumerate() {
        let get = |c: &str| &row[pq.index(c)];
        for c in [
            "fill_id",
            "order_id",
            "strategy",
            "symbol",
            "side",
            "liquidity",
        ] {
            assert_eq!(string(get(c)), m[c].as_str().unwrap(), "row {i} {c}");
        }
        assert_eq!(ts(get("ts"), &u), times[i], "row {i} ts");
        for c in ["qty", "price", "fee"] {
            assert_eq!(Some(dec(get(c))), json_dec(&m[c]), "row {i} {c}");
        }
        match get("slippage") {
            Field::Null => {
                slippage_nulls += 1;
                assert!(m["slippage"].is_null(), "row {i}");
            }
            f => assert_eq!(Some(dec(f)), json_dec(&m["slippage"]), "row {i} slippage"),
        }
        assert_eq!(*get("kafka_partition"), Field::Long(0));
        assert_eq!(*get("kafka_offset"), Field::Long(i as i64));
    }
    assert!(slippage_nulls < msgs.len(), "every slippage is null");

    // Two topics into a directory: signals (a JSON column, a DOUBLE) and pnl.
    let more = dir.path().join("more");
    let out = cli(strings(&[
        "--config",
        &app_s,
        "export",
        "--topic",
        "exp1.signals",
        "--topic",
        "exp1.pnl",
        "--out",
        &more.display().to_string(),
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let signals = Parquet::read(&more.join("exp1.signals.parquet"));
    let msgs = topic_json(&bs, "exp1.signals").await;
    assert!(!msgs.is_empty());
    assert_eq!(signals.rows.len(), msgs.len());
    assert_eq!(signals.col("reason").logical, Some(LogicalType::Json));
    assert_eq!(signals.col("strength").physical, PhysicalType::DOUBLE);
    for (row, m) in signals.rows.iter().zip(&msgs) {
        let reason: Value = serde_json::from_str(string(&row[signals.index("reason")])).unwrap();
        assert_eq!(reason, m["reason"]);
        assert_eq!(
            row[signals.index("strength")],
            Field::Double(m["strength"].as_f64().unwrap())
        );
        assert_eq!(
            string(&row[signals.index("signal_id")]),
            m["signal_id"].as_str().unwrap()
        );
        assert_eq!(
            row[signals.index("model_name")],
            Field::Null,
            "rule strategies have no model"
        );
    }
    let pnl = Parquet::read(&more.join("exp1.pnl.parquet"));
    let msgs = topic_json(&bs, "exp1.pnl").await;
    assert!(!msgs.is_empty());
    assert_eq!(pnl.rows.len(), msgs.len());
    for (row, m) in pnl.rows.iter().zip(&msgs) {
        for c in ["position", "account_equity", "account_drawdown", "fees"] {
            assert_eq!(Some(dec(&row[pnl.index(c)])), json_dec(&m[c]), "{c}");
        }
    }

    // A topic the broker does not have.
    let out = cli(strings(&[
        "--config",
        &app_s,
        "export",
        "--topic",
        "nothere.fills",
        "--out",
        &dir.path().join("x").display().to_string(),
    ]))
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("topic \"nothere.fills\" does not exist at"),
        "{err}"
    );
}

/// Names export does not know are refused with what it accepts.
#[test]
fn unknown_topics_tables_and_kinds_are_refused_with_what_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let refused = |args: &[&str]| -> String {
        let out = cli_sync(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        err
    };
    let err = refused(&["export", "--topic", "trades", "--brokers", "127.0.0.1:1"]);
    assert!(
        err.contains("unknown topic \"trades\"")
            && err.contains("fills, orders, pnl, signals, indicators, alerts, dead_letters")
            && err.contains("--kind"),
        "{err}"
    );
    let err = refused(&[
        "export",
        "--topic",
        "x",
        "--kind",
        "trades",
        "--brokers",
        "127.0.0.1:1",
    ]);
    assert!(
        err.contains("--kind \"trades\": use one of fills, orders"),
        "{err}"
    );
    let err = refused(&["export", "--report", &d, "--table", "fills"]);
    assert!(
        err.contains("unknown table \"fills\"")
            && err.contains("trades, round_trips, equity, alerts"),
        "{err}"
    );
    let err = refused(&["export", "--report", &d]);
    assert!(err.contains("holds none of the tables"), "{err}");
    let missing = PathBuf::from(&d).join("nope");
    let err = refused(&["export", "--report", &missing.display().to_string()]);
    assert!(err.contains("no such directory"), "{err}");
    // Neither a topic nor a report: the usage error.
    let out = cli_sync(&["export"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--topic"),
        "{}",
        text(&out.stderr)
    );
}
