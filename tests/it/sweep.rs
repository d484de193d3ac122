//! `papertrader sweep`: one row per parameter set, ranked, byte-identical across
//! runs and thread counts, and the best row agrees with a plain backtest of its
//! parameters.

use std::path::Path;
use std::process::{Command, Output};
use std::str::FromStr;

use rust_decimal::Decimal;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DATA: &str = "data/aapl_msft_daily_2011_2013.csv";

fn strategy(fast: &str, slow: &str, average: &str) -> String {
    format!(
        r#"name = "cross"
symbols = ["AAPL", "MSFT"]
[rule]
kind = "ma_crossover"
fast = {fast}
slow = {slow}
average = "{average}"
[account]
starting_cash = "100000"
[sizing]
mode = "fraction_of_equity"
fraction = "0.3"
lot_size = "1"
"#
    )
}

/// An application config with one strategy file (initial parameters 10/40 sma).
fn setup(dir: &Path, fast: &str, slow: &str, average: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let s = dir.join("cross.toml");
    std::fs::write(&s, strategy(fast, slow, average)).unwrap();
    let app = dir.join("app.toml");
    std::fs::write(
        &app,
        format!("strategies = [{:?}]\n", s.display().to_string()),
    )
    .unwrap();
    app
}

fn papertrader(app: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .current_dir(ROOT)
        .arg("--config")
        .arg(app)
        .args(args)
        .output()
        .unwrap()
}

fn sweep(dir: &Path, jobs: &str, out: &str) -> (String, Vec<Vec<String>>, Vec<u8>) {
    let app = setup(dir, "10", "40", "sma");
    let report = dir.join(out);
    let o = papertrader(
        &app,
        &[
            "sweep",
            "--input",
            DATA,
            "--grid",
            "fast=5..20:5,slow=50,100",
            "--grid",
            "average=sma,ema",
            "--metric",
            "sharpe",
            "--jobs",
            jobs,
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "sweep failed: {}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(report.join("sweep.csv")).unwrap();
    let mut r = csv::Reader::from_reader(&bytes[..]);
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let mut rows = vec![header];
    for rec in r.records() {
        rows.push(rec.unwrap().iter().map(String::from).collect());
    }
    (stdout, rows, bytes)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("{s:?} is not a decimal"))
}

#[test]
fn sweep_ranks_every_set_and_its_best_row_matches_a_plain_backtest() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, rows, bytes) = sweep(&dir.path().join("a"), "2", "out");
    let header = &rows[0];
    assert_eq!(
        header,
        &[
            "rank",
            "set",
            "fast",
            "slow",
            "average",
            "total_return",
            "sharpe",
            "sortino",
            "max_drawdown",
            "trades",
            "fees"
        ]
    );
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let body = &rows[1..];
    // 4 fast x 2 slow x 2 averages, every one valid: one row each.
    assert_eq!(body.len(), 16, "{stdout}");
    assert!(stdout.contains("16 sets (0 skipped)"), "{stdout}");
    let mut sets: Vec<usize> = body
        .iter()
        .map(|r| r[col("set")].parse().unwrap())
        .collect();
    for r in body {
        // The set number is its place in the expansion, first key slowest.
        let i: usize = r[col("set")].parse().unwrap();
        let fast = ["5", "10", "15", "20"][i / 4];
        let slow = ["50", "100"][i / 2 % 2];
        let avg = ["sma", "ema"][i % 2];
        assert_eq!(
            (
                &r[col("fast")][..],
                &r[col("slow")][..],
                &r[col("average")][..]
            ),
            (fast, slow, avg)
        );
    }
    sets.sort_unstable();
    assert_eq!(sets, (0..16).collect::<Vec<_>>());
    // Ranked by Sharpe, best first (ties by set number); ranks are 1..=16.
    let sharpe: Vec<f64> = body
        .iter()
        .map(|r| {
            r[col("sharpe")]
                .parse()
                .expect("Sharpe is defined on 3 years of days")
        })
        .collect();
    for (k, w) in body.windows(2).enumerate() {
        let (a, b) = (sharpe[k], sharpe[k + 1]);
        let (ia, ib): (usize, usize) = (w[0][1].parse().unwrap(), w[1][1].parse().unwrap());
        assert!(a > b || (a == b && ia < ib), "not ranked at {k}: {a} {b}");
    }
    assert!(body
        .iter()
        .enumerate()
        .all(|(k, r)| r[0] == (k + 1).to_string()));
    // The sets differ: the sweep really changed the parameters.
    let distinct: std::collections::BTreeSet<&str> = body
        .iter()
        .map(|r| r[col("total_return")].as_str())
        .collect();
    assert!(distinct.len() > 8, "{distinct:?}");

    // Parity: a plain backtest with the best row's parameters.
    let best = &body[0];
    let app = setup(
        &dir.path().join("best"),
        &best[col("fast")],
        &best[col("slow")],
        &best[col("average")],
    );
    let report = dir.path().join("best/report");
    let o = papertrader(
        &app,
        &[
            "backtest",
            "--input",
            DATA,
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let s = &r["strategies"]["cross"];
    // Decimals are JSON strings, statistics JSON numbers.
    let num = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), String::from);
    assert_eq!(
        dec(&best[col("total_return")]),
        dec(&num(&r["total"]["total_return"]))
    );
    assert_eq!(best[col("sharpe")], num(&s["sharpe"]));
    assert_eq!(best[col("sortino")], num(&s["sortino"]));
    assert_eq!(
        dec(&best[col("max_drawdown")]),
        dec(&num(&s["max_drawdown"]))
    );
    assert_eq!(best[col("trades")], num(&r["total"]["fills"]));
    assert_eq!(
        dec(&best[col("fees")]),
        dec(&num(&r["total"]["fees"])).round_dp(8)
    );

    // Byte-identical on a second run, and with one thread instead of two.
    let (_, _, again) = sweep(&dir.path().join("b"), "2", "out");
    assert!(again == bytes, "sweep.csv differs between two runs");
    let (_, _, one) = sweep(&dir.path().join("c"), "1", "out");
    assert!(
        one == bytes,
        "sweep.csv differs between --jobs 1 and --jobs 2"
    );
}

#[test]
fn sweep_refuses_unknown_keys_and_reports_invalid_sets() {
    let dir = tempfile::tempdir().unwrap();
    let app = setup(dir.path(), "10", "40", "sma");
    let o = papertrader(&app, &["sweep", "--input", DATA, "--grid", "fsat=5,10"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("\"fsat\"") && err.contains("fast, slow, average"),
        "{err}"
    );
    let o = papertrader(&app, &["sweep", "--input", DATA, "--grid", "other.fast=5"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no configured strategy is named \"other\"") && err.contains("cross"),
        "{err}"
    );

    // fast=60 is not shorter than slow=50: skipped with the reason, the rest run.
    let out = dir.path().join("r");
    let o = papertrader(
        &app,
        &[
            "sweep",
            "--input",
            DATA,
            "--grid",
            "cross.rule.fast=20,60,slow=50",
            "--report",
            out.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("skipped set 1 (cross.rule.fast=60 slow=50)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fast must be shorter than slow"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
}

#[test]
fn walk_forward_folds_step_through_time_and_each_test_matches_a_plain_backtest() {
    let dir = tempfile::tempdir().unwrap();
    let app = setup(dir.path(), "10", "40", "sma");
    let out = dir.path().join("wf");
    let o = papertrader(
        &app,
        &[
            "sweep",
            "--input",
            DATA,
            "--grid",
            "fast=5..20:5,slow=30,60,90",
            "--walk-forward",
            "train=365d,test=90d",
            "--jobs",
            "2",
            "--report",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Regression ("walk-forward prints \"(return ...)\" while ranking by
    // Sharpe"): each fold names the metric it ranked by, and its value.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let folds: Vec<&str> = stdout.lines().filter(|l| l.starts_with("fold ")).collect();
    assert!(!folds.is_empty(), "{stdout}");
    assert!(
        folds
            .iter()
            .all(|l| l.contains(" by sharpe (") && l.contains(": sharpe ")),
        "{stdout}"
    );
    let mut rdr = csv::Reader::from_path(out.join("walk_forward.csv")).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    // The data runs from 2011-01-03 for a bit over two years: a 365-day train
    // window stepping by 90 days leaves room for at least 4 folds.
    assert!(rows.len() >= 4, "{rows:?}");
    let ts = |s: &str| papertrader::wire::parse_ts_str(s).unwrap();
    const DAY: i64 = 86_400_000_000_000;
    for (k, r) in rows.iter().enumerate() {
        assert_eq!(r[col("fold")], k.to_string());
        assert_eq!(r[col("train_to")], r[col("test_from")]);
        assert_eq!(
            ts(&r[col("train_to")]) - ts(&r[col("train_from")]),
            365 * DAY
        );
        assert_eq!(ts(&r[col("test_to")]) - ts(&r[col("test_from")]), 90 * DAY);
        if k > 0 {
            assert_eq!(
                ts(&r[col("train_from")]) - ts(&rows[k - 1][col("train_from")]),
                90 * DAY
            );
        }
    }
    // Each fold's test result is a plain backtest of its best set over
    // [test_from, test_to) (--to is inclusive: one nanosecond less).
    for r in rows.iter().take(2) {
        let sub = dir.path().join(format!("fold{}", r[col("fold")]));
        let app = setup(&sub, &r[col("fast")], &r[col("slow")], "sma");
        let report = sub.join("report");
        let to = papertrader::wire::format_ts(ts(&r[col("test_to")]) - 1);
        let o = papertrader(
            &app,
            &[
                "backtest",
                "--input",
                DATA,
                "--from",
                &r[col("test_from")],
                "--to",
                &to,
                "--report",
                report.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
        let got = &j["total"]["total_return"];
        let got = got.as_str().map_or_else(|| got.to_string(), String::from);
        assert_eq!(
            dec(&r[col("test_total_return")]),
            dec(&got),
            "fold {}",
            r[col("fold")]
        );
    }
}

/// Item 6 of the rule-language issue: a sweep varies an expression rule's
/// `[rule.params]` by name, and gives the same ranking, byte for byte, as the
/// built-in rule the expression restates.
#[test]
fn sweep_over_rule_params_ranks_as_the_builtin_rule() {
    let dir = tempfile::tempdir().unwrap();
    let builtin = setup(&dir.path().join("builtin"), "10", "40", "sma");
    let expr_dir = dir.path().join("expr");
    std::fs::create_dir_all(&expr_dir).unwrap();
    let text = strategy("10", "40", "sma").replace(
        "kind = \"ma_crossover\"\nfast = 10\nslow = 40\naverage = \"sma\"\n",
        "kind = \"expr\"\nlong_entry = \"cross_above(sma(close, fast), sma(close, slow))\"\n\
         long_exit = \"cross_below(sma(close, fast), sma(close, slow))\"\n\
         [rule.params]\nfast = 10\nslow = 40\n",
    );
    assert!(text.contains("kind = \"expr\""));
    std::fs::write(expr_dir.join("cross.toml"), text).unwrap();
    let expr = expr_dir.join("app.toml");
    std::fs::write(
        &expr,
        format!(
            "strategies = [{:?}]\n",
            expr_dir.join("cross.toml").display().to_string()
        ),
    )
    .unwrap();
    let mut csvs = Vec::new();
    for app in [&builtin, &expr] {
        let report = app.parent().unwrap().join("r");
        let o = papertrader(
            app,
            &[
                "sweep",
                "--input",
                DATA,
                "--grid",
                "fast=5..20:5,slow=50,100",
                "--report",
                report.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        csvs.push(std::fs::read_to_string(report.join("sweep.csv")).unwrap());
    }
    assert_eq!(csvs[0].lines().count(), 9, "{}", csvs[0]);
    assert_eq!(csvs[0], csvs[1]);
    // An expression rule's unknown parameter is refused with its parameters.
    let o = papertrader(&expr, &["sweep", "--input", DATA, "--grid", "fsat=5"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("\"fsat\"") && err.contains("cross (expr): fast, slow"),
        "{err}"
    );
}
