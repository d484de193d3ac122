//! The binary refuses bad configuration with the file, the key and the fix.

use std::process::Command;

use crate::common::stream::exit_within;

fn papertrader(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_papertrader"));
    c.current_dir(env!("CARGO_MANIFEST_DIR")).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `papertrader backtest ARGS --report DIR` from the repository root: it
/// succeeds, and its report.json.
fn backtest_report(args: &[&str], report: &std::path::Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("backtest")
        .args(args)
        .arg("--report")
        .arg(report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap()
}

#[test]
fn bad_configuration_stops_start_up_with_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[kafka]\nbrokrs = \"x:1\"\n").unwrap();
    let typo_s = typo.display().to_string();
    let (code, err) = papertrader(&["--config", &typo_s, "paper", "--max-events", "1"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&typo_s) && err.contains("brokrs") && err.contains("fix:"),
        "{err}"
    );

    let (code, err) = papertrader(
        &["paper", "--max-events", "1"],
        &[("PAPERTRADER__INPUT__MAX_OUT_OF_ORDER", "5")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("PAPERTRADER__INPUT__MAX_OUT_OF_ORDER")
            && err.contains("input.max_out_of_order"),
        "{err}"
    );

    // A typo in a section name is blamed on the variable, not on the defaults.
    let (code, err) = papertrader(
        &["paper", "--max-events", "1"],
        &[("PAPERTRADER__KAFAK__BROKERS", "x:1")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("configuration error in environment variable PAPERTRADER__KAFAK__BROKERS")
            && err.contains("key `kafak`")
            && err.contains("unset or rename the variable"),
        "{err}"
    );

    let (code, err) = papertrader(
        &["paper", "--max-events", "1"],
        &[("PAPERTRADER__ENGINE__ORDER", "random")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("engine.order") && err.contains("event_time") && err.contains("fix:"),
        "{err}"
    );

    let strat = dir.path().join("s.toml");
    std::fs::write(&strat, "name='a'\nsymbols=['X']\n[rule]\nkind='ma_crossover'\nfast=50\nslow=20\n[sizing]\nmode='fixed_quantity'\nquantity='1'\n").unwrap();
    let app = dir.path().join("app.toml");
    std::fs::write(
        &app,
        format!("strategies = [{:?}]\n", strat.display().to_string()),
    )
    .unwrap();
    let app_s = app.display().to_string();
    let (code, err) = papertrader(&["--config", &app_s, "paper"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&strat.display().to_string()) && err.contains("rule.fast"),
        "{err}"
    );

    std::fs::write(&app, "strategies = [\"strategies/nope.toml\"]\n").unwrap();
    let (code, err) = papertrader(&["--config", &app_s, "paper"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("strategies/nope.toml") && err.contains("strategies[0]"),
        "{err}"
    );
}

/// Regression: `backtest` on a bar CSV without a symbol column told the user to
/// "pass --symbol SYMBOL", and `backtest` had no such flag.
#[test]
fn backtest_symbol_flag_names_the_symbol_of_a_file_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let strat = dir.path().join("eur.toml");
    std::fs::write(
        &strat,
        "name='eur'\nsymbols=['EURUSD']\n[rule]\nkind='ma_crossover'\nfast=5\nslow=20\n\
         [sizing]\nmode='fixed_quantity'\nquantity='1000'\n",
    )
    .unwrap();
    let app = dir.path().join("app.toml");
    std::fs::write(
        &app,
        format!("strategies = [{:?}]\n", strat.display().to_string()),
    )
    .unwrap();
    let app_s = app.display().to_string();
    let report = dir.path().join("out");
    let report_s = report.display().to_string();
    let input = "tests/fixtures/eurusd_1h_excerpt.csv";

    let (code, err) = papertrader(
        &[
            "--config", &app_s, "backtest", "--input", input, "--report", &report_s,
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--symbol"), "{err}");

    let (code, err) = papertrader(
        &[
            "--config", &app_s, "backtest", "--input", input, "--symbol", "EURUSD", "--report",
            &report_s,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let last = json["strategies"]["eur"]["symbols"]["EURUSD"]["last_price"]
        .as_str()
        .and_then(|p| p.parse::<f64>().ok());
    assert!(
        last.is_some_and(|p| p > 1.0),
        "no EURUSD price in the report: {json}"
    );
}

/// Regression ("`paper --summary DIR/FILE` with a missing directory runs to
/// the end and then fails"): the path is checked at start, before any input.
#[test]
fn paper_summary_in_a_missing_directory_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no_such_dir").join("out.json");
    let missing_s = missing.display().to_string();
    // Nothing listens on port 1: a run that got past the check would fail on
    // the broker instead, with another message.
    let (code, err) = papertrader(
        &["paper", "--max-events", "1", "--summary", &missing_s],
        &[("PAPERTRADER__KAFKA__BROKERS", "127.0.0.1:1")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&missing_s) && err.contains("does not exist") && err.contains("mkdir -p"),
        "{err}"
    );
    assert!(
        !err.contains("127.0.0.1:1"),
        "it reached for the broker first:\n{err}"
    );
}

/// Regression ("`backtest ... 2>&1 | head -3` panics with failed printing to
/// stderr"): a reader that closes the pipe early ends the program quietly.
#[test]
fn backtest_into_a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["backtest", "--input", "data/synthetic_ticks.csv", "--input"])
        .args([
            "data/synthetic_sentiment.csv",
            "--input",
            "data/aapl_msft_daily_2011_2013.csv",
        ])
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -3`: read three lines of stdout, then close both pipes.
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(3)
        .map(Result::unwrap)
        .collect();
    assert_eq!(lines.len(), 3);
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(101), "it panicked: {status:?}");
    assert!(status.success(), "{status:?}");
}

/// Regression ("`paper --until-idle N` waits at least 30 s when no message
/// arrives at all"): the wait for the first input is `--startup-grace`, which
/// `--help` documents; here 1 s on topics with nothing in them.
#[test]
fn until_idle_waits_the_documented_startup_grace_for_a_first_input() {
    use std::time::Duration;
    let (code, help) = {
        let out = Command::new(env!("CARGO_BIN_EXE_papertrader"))
            .args(["paper", "--help"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(0));
    assert!(
        help.contains("--startup-grace") && help.contains("[default: 30]"),
        "{help}"
    );

    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("quiet.toml");
    std::fs::write(&app, "[demo]\nfeed = false\n[http]\nenabled = false\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--config")
        .arg(&app)
        .args(["paper", "--until-idle", "1", "--startup-grace", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The old hidden minimum was 30 s: a run still going at 25 s has it still.
    let Some(status) = exit_within(&mut child, Duration::from_secs(25)) else {
        let _ = child.kill();
        panic!("paper --until-idle 1 --startup-grace 1 still waiting after 25 s");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("input idle, stopping"), "{err}");
}

/// Regression ("`papertrader broker --listen ADDR` on a port already in use
/// prints listening and exits 0"): it fails with the reason, non-zero, and
/// never says it is listening.
#[test]
fn broker_on_a_port_in_use_fails_and_says_why() {
    use std::time::Duration;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["broker", "--listen", &addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let Some(status) = exit_within(&mut child, Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("papertrader broker on a taken port {addr} kept running");
    };
    let read = |r: &mut dyn std::io::Read| {
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        s
    };
    let out = read(&mut child.stdout.take().unwrap());
    let err = read(&mut child.stderr.take().unwrap());
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!out.contains("listening"), "{out}");
    assert!(
        err.contains(&addr) && err.contains("pick a free port"),
        "{err}"
    );
    drop(taken);
}

/// Regression (smaller text defects: "`backtest --help` omits report.html;
/// `generate --ticks` and `--sentiment` have no help").
#[test]
fn help_names_every_report_file_and_every_generate_option() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_papertrader"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bt = help(&["backtest"]);
    for f in [
        "report.json",
        "trades.csv",
        "round_trips.csv",
        "equity.csv",
        "report.html",
        "alerts.csv",
    ] {
        assert!(bt.contains(f), "backtest --help does not name {f}:\n{bt}");
    }
    let gen = help(&["generate"]);
    for (flag, words) in [
        ("--ticks", "Where to write the ticks"),
        ("--sentiment", "Where to write the sentiment"),
    ] {
        let line = gen
            .lines()
            .position(|l| l.trim_start().starts_with(flag))
            .unwrap();
        let text: String = gen.lines().skip(line).take(3).collect();
        assert!(text.contains(words), "{flag} has no help:\n{gen}");
    }
}

/// Regression ("`--to 2012-12-31` keeps only the 00:00 open tick of that day;
/// `--to earliest` and `--from latest` are accepted and ignored; `--from`
/// after `--to` silently runs 0 events").
#[test]
fn backtest_time_ranges_mean_what_they_say_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bt").display().to_string();
    let bars = "data/aapl_msft_daily_2011_2013.csv";
    for (from, to, says) in [
        ("latest", "latest", "--from latest"),
        ("earliest", "earliest", "--to earliest"),
        ("2013-01-01", "2012-01-01", "is after --to"),
    ] {
        let (code, err) = papertrader(
            &[
                "backtest", "--input", bars, "--from", from, "--to", to, "--report", &report,
            ],
            &[],
        );
        assert_eq!(code, 1, "--from {from} --to {to}: {err}");
        assert!(err.contains(says), "--from {from} --to {to}: {err}");
    }
    // A date as --to is the whole day: a daily bar becomes 4 ticks (open, high,
    // low, close) at 00:00 and later that day, and all of them count. The file
    // holds AAPL and MSFT: 2 symbols x 4 ticks of 2012-12-31.
    let (code, err) = papertrader(
        &[
            "backtest",
            "--input",
            bars,
            "--from",
            "2012-12-31",
            "--to",
            "2012-12-31",
            "--report",
            &report,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(&report).join("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["events"], 8, "{json}");
}

/// Regression ("CSV rows skipped by a backtest appear only as WARN lines"):
/// they are counted in the summary and in report.json's `inputs`.
#[test]
fn backtest_counts_the_csv_rows_it_skips() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ticks.csv");
    std::fs::write(
        &csv,
        "ts,symbol,price,size\n1767623407143,ACME,100.01,126\nnot-a-time,ACME,100.02,1\n\
         1767623408143,ACME,abc,1\n1767623409143,ACME,100.03,5\n",
    )
    .unwrap();
    let report = dir.path().join("bt");
    let out = Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("backtest")
        .arg("--input")
        .arg(&csv)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 processed") && stdout.contains("2 CSV rows skipped"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["inputs"]["rows_skipped"], 2, "{json}");
}

/// Regressions (smaller text defects): "a missing input file prints the OS
/// error twice"; "the unreachable-broker error names `kafka.brokers` when
/// `--brokers` was given".
#[test]
fn input_and_broker_errors_say_it_once_and_name_what_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bt").display().to_string();
    let (code, err) = papertrader(
        &["backtest", "--input", "nope.csv", "--report", &report],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("nope.csv"), "{err}");

    let (code, err) = papertrader(
        &["backtest", "--brokers", "127.0.0.1:1", "--report", &report],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("127.0.0.1:1") && err.contains("(--brokers)"),
        "{err}"
    );
    assert!(!err.contains("(kafka.brokers)"), "{err}");
}

/// Regression ("Sharpe ratios that mean nothing": strategies that trade on one
/// day of the README's three-file backtest got Sharpe ±sqrt(252/544), whatever
/// their P&L): a strategy's return statistics count only the days on which its
/// own symbols had events; one day gives one return, so the ratios are null.
#[test]
fn one_day_strategies_get_no_ratios_beside_years_of_bars() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bt");
    let json = backtest_report(
        &[
            "--input",
            "data/synthetic_ticks.csv",
            "--input",
            "data/synthetic_sentiment.csv",
            "--input",
            "data/aapl_msft_daily_2011_2013.csv",
        ],
        &report,
    );
    let st = &json["strategies"];
    // bb_breakout trades ACME and GLOBEX only: one day of ticks, whose close
    // (it traded) is one return from the starting cash.
    assert_eq!(
        st["bb_breakout"]["daily_returns"], 1,
        "{}",
        st["bb_breakout"]
    );
    assert!(
        st["bb_breakout"]["sharpe"].is_null(),
        "{}",
        st["bb_breakout"]
    );
    // ma_cross also trades AAPL and MSFT: a close for each day of their bars
    // (2011-2013: 543 bar days) and the day of ticks, 544 closes; the first
    // day's close (no trade yet) is the base of the first of 543 returns.
    assert_eq!(st["ma_cross"]["daily_returns"], 543, "{}", st["ma_cross"]);
    assert!(st["ma_cross"]["sharpe"].is_number(), "{}", st["ma_cross"]);
}

#[test]
fn strategy_flags_replace_the_configured_list_for_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r");
    let json = backtest_report(
        &[
            "--input",
            "data/synthetic_ticks.csv",
            "--strategy",
            "strategies/rsi_mean_reversion.toml",
            "--strategy",
            "strategies/bollinger_breakout.toml",
        ],
        &report,
    );
    let names: Vec<&String> = json["strategies"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["bb_breakout", "rsi_revert"]);
    // A file that is not there stops start-up, naming the flag.
    let (code, err) = papertrader(
        &[
            "backtest",
            "--input",
            "data/synthetic_ticks.csv",
            "--strategy",
            "strategies/nope.toml",
            "--report",
            &report.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--strategy") && err.contains("strategies/nope.toml"),
        "{err}"
    );
}

#[test]
fn init_writes_a_project_whose_backtest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("proj");
    let out = Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .arg("init")
        .arg(&project)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("papertrader backtest --config papertrader.toml"),
        "{stdout}"
    );
    // Its next command, as printed, from the project directory.
    let out = Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .current_dir(&project)
        .args(["backtest", "--config", "papertrader.toml"])
        .args(["--input", "data/ticks.csv", "--input", "data/sentiment.csv"])
        .args(["--report", "report"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(project.join("report/report.json")).unwrap())
            .unwrap();
    let st = &json["strategies"]["starter"];
    assert!(st["fills"].as_u64().unwrap() > 0, "{st}");
    assert!(json["events"].as_u64().unwrap() > 12_000, "{json}");
    // A second init into the same directory overwrites nothing.
    let before = std::fs::read(project.join("papertrader.toml")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .arg("init")
        .arg(&project)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    assert_eq!(
        std::fs::read(project.join("papertrader.toml")).unwrap(),
        before
    );
}

#[test]
fn csv_time_columns_by_their_common_names_and_units_and_a_mapping() {
    let dir = tempfile::tempdir().unwrap();
    // The same three instants, from 2026-01-01T00:00:00Z one second apart,
    // written as users' files write them.
    let s0 = 1_767_225_600i64;
    let rows = |f: &dyn Fn(i64) -> String| -> String {
        (0..3)
            .map(|i| format!("{},ACME,{}.00,10\n", f(s0 + i), 100 + i))
            .collect()
    };
    let files = [
        (
            "seconds.csv",
            format!("timestamp,symbol,price,size\n{}", rows(&|s| s.to_string())),
            None,
        ),
        (
            "millis.csv",
            format!(
                "ts_ms,symbol,price,size\n{}",
                rows(&|s| (s * 1000).to_string())
            ),
            None,
        ),
        (
            "nanos.csv",
            format!(
                "time_ns,symbol,price,size\n{}",
                rows(&|s| (s * 1_000_000_000).to_string())
            ),
            None,
        ),
        (
            "iso.csv",
            format!(
                "datetime,symbol,price,size\n{}",
                rows(&|s| format!("2026-01-01T00:00:0{}Z", s - s0))
            ),
            None,
        ),
        (
            "mapped.csv",
            format!(
                "Time,Sym,Last,Qty\n{}",
                rows(&|s| (s * 1_000_000).to_string())
            )
            .replace(",ACME,", ",ACME,"),
            Some("ts=Time:us,symbol=Sym,price=Last,size=Qty"),
        ),
    ];
    for (name, text, columns) in &files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let report = dir.path().join(format!("r-{name}"));
        let path = path.display().to_string();
        let mut args = vec![
            "--strategy",
            "strategies/ma_crossover.toml",
            "--input",
            &path,
        ];
        if let Some(m) = columns {
            args.extend(["--columns", m]);
        }
        let json = backtest_report(&args, &report);
        assert_eq!(json["start"], "2026-01-01T00:00:00Z", "{name}");
        assert_eq!(json["end"], "2026-01-01T00:00:02Z", "{name}");
        assert_eq!(json["inputs"]["processed"]["prices"], 3, "{name}");
    }
    // The mapped file without its mapping: refused, and the message shows the flag.
    let (code, err) = papertrader(
        &[
            "backtest",
            "--strategy",
            "strategies/ma_crossover.toml",
            "--input",
            &dir.path().join("mapped.csv").display().to_string(),
            "--report",
            &dir.path().join("r-x").display().to_string(),
        ],
        &[],
    );
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("unrecognised header") && err.contains("--columns ts=Time:us,price=Last"),
        "{err}"
    );
    // A mapping with a name papertrader does not have says which it has.
    let (code, err) = papertrader(
        &[
            "backtest",
            "--input",
            &dir.path().join("mapped.csv").display().to_string(),
            "--columns",
            "when=Time",
            "--report",
            &dir.path().join("r-y").display().to_string(),
        ],
        &[],
    );
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("not one of papertrader's column names: ts, symbol"),
        "{err}"
    );
}

/// `replay --columns`: a file whose header papertrader does not know is
/// published once mapped, each row a tick with its time in the given unit;
/// unmapped, it is refused with the flag shown, and nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_columns_maps_a_files_header_and_refuses_it_unmapped() {
    let b = crate::common::broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    // 2026-01-01T00:00:00Z and the next two seconds, in microseconds.
    let s0 = 1_767_225_600i64;
    let mut csv = String::from("Time,Sym,Last,Qty\n");
    for i in 0..3 {
        csv.push_str(&format!(
            "{},ACME,{}.25,{}\n",
            (s0 + i) * 1_000_000,
            100 + i,
            10 + i
        ));
    }
    let path = dir.path().join("mapped.csv");
    std::fs::write(&path, csv).unwrap();
    let run = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "replay",
            "--brokers",
            &bs,
            "--topic",
            "live_prices",
            "--input",
            &path.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_papertrader"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(&args)
                .output()
                .unwrap()
        })
    };
    let out = run(&[]).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("unrecognised header") && err.contains("--columns ts=Time:us,price=Last"),
        "{err}"
    );
    let out = run(&["--columns", "ts=Time:us,symbol=Sym,price=Last,size=Qty"])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("published 3 messages"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (b2, t) = (bs.clone(), "live_prices".to_string());
    let msgs = tokio::task::spawn_blocking(move || crate::common::read_json(&b2, &t))
        .await
        .unwrap();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    for (i, m) in msgs.iter().enumerate() {
        let i = i as i64;
        assert_eq!(m["symbol"], "ACME");
        assert_eq!(
            papertrader::wire::parse_ts_str(m["ts"].as_str().unwrap()),
            Some((s0 + i) * 1_000_000_000),
            "{m}"
        );
        assert_eq!(m["price"], format!("{}.25", 100 + i), "{m}");
        assert_eq!(m["size"], (10 + i).to_string(), "{m}");
    }
}
