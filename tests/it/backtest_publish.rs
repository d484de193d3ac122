//! `papertrader backtest --publish RUN_ID`: the run's outputs on `{run_id}.{topic}`,
//! read back from the broker and compared byte for byte, in order, with sources
//! that do not go through the run publisher: paper mode's topics for a topic
//! backtest, and the engine's collected outputs and trades.csv for a file backtest.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;
use papertrader::backtest::{self, TimeRange};
use papertrader::config::{self, Loaded};
use papertrader::paper::{self, StopWhen};
use rust_decimal::Decimal;

const OUTPUTS: [&str; 5] = ["signals", "orders", "fills", "pnl", "dead_letters"];

const CROSS: &str = r#"
name = "cross"
symbols = ["AAA", "BBB"]
[rule]
kind = "ma_crossover"
fast = 3
slow = 8
[account]
starting_cash = "100000"
[sizing]
mode = "fraction_of_equity"
fraction = "0.2"
lot_size = "1"
"#;

const RSI: &str = r#"
name = "rsi"
symbols = ["AAA"]
[rule]
kind = "rsi_mean_reversion"
period = 5
oversold = 35
overbought = 65
[account]
starting_cash = "50000"
allow_short = true
[sizing]
mode = "fixed_quantity"
quantity = "7"
"#;

/// An application config in `dir/app.toml` with one partition per created topic
/// (so that a topic's order is the order of publication), loaded as the binary
/// loads it.
fn app_config(dir: &Path, bootstrap: &str, strategy_files: &[PathBuf]) -> (PathBuf, Loaded) {
    let list: Vec<String> = strategy_files
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let text = format!(
        "strategies = [{}]\n[kafka]\nbrokers = {bootstrap:?}\ngroup_id = \"test\"\npartitions = 1\n\
         [engine]\npnl_every_ticks = 10\nmax_batch = 50\n[http]\nenabled = false\n\
         [state]\npath = {:?}\n",
        list.join(", "),
        dir.join("state.ckpt").display().to_string()
    );
    let path = dir.join("app.toml");
    std::fs::write(&path, text).unwrap();
    let loaded = config::load_with_env(Some(&path), &[]).unwrap_or_else(|e| panic!("{e}"));
    (path, loaded)
}

fn write_strategies(dir: &Path, texts: &[&str]) -> Vec<PathBuf> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let p = dir.join(format!("strategy{i}.toml"));
            std::fs::write(&p, t).unwrap();
            p
        })
        .collect()
}

/// Run the binary from the repository root; `spawn_blocking` keeps the broker's
/// runtime free to serve it.
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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A deterministic zig-zag walk for two symbols, interleaved in event-time order,
/// with one message that does not decode (a dead letter).
fn tick_sequence() -> Vec<(String, String)> {
    let mut msgs = Vec::new();
    let mut px = [100i64 * 100, 50 * 100];
    let mut seed: u64 = 11;
    for i in 0..240i64 {
        for (s, sym) in ["AAA", "BBB"].iter().enumerate() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let step = ((seed >> 33) % 201) as i64 - 100 + if (i / 30) % 2 == 0 { 15 } else { -15 };
            px[s] = (px[s] + step).max(100);
            let price = Decimal::new(px[s], 2).to_string();
            msgs.push(tick(
                sym,
                1_700_000_000_000 + i * 1000 + s as i64,
                &price,
                "5",
            ));
        }
        if i == 100 {
            msgs.push(("AAA".into(), "{not json".into()));
        }
    }
    msgs
}

/// `(key, payload)` of every message of a topic, in order, read off the async threads.
async fn messages(bs: &str, topic: &str) -> Vec<(Option<String>, Vec<u8>)> {
    let (b, t) = (bs.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || read_topic(&b, &t))
        .await
        .unwrap()
}

/// The fills of trades.csv as `[fill_id, ts, side, qty, price, fee]`, in file order,
/// the decimals normalized.
fn trades_csv(path: &Path) -> Vec<[String; 6]> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let cols = ["fill_id", "ts", "side", "qty", "price", "fee"].map(col);
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            cols.map(|c| rec[c].to_string())
        })
        .map(normalize)
        .collect()
}

/// The same fields of fill messages.
fn fill_rows(msgs: &[(Option<String>, Vec<u8>)]) -> Vec<[String; 6]> {
    msgs.iter()
        .map(|(_, v)| {
            let f: serde_json::Value = serde_json::from_slice(v).unwrap();
            ["fill_id", "ts", "side", "qty", "price", "fee"]
                .map(|k| f[k].as_str().unwrap().to_string())
        })
        .map(normalize)
        .collect()
}

fn normalize(mut row: [String; 6]) -> [String; 6] {
    for v in &mut row[3..] {
        *v = v.parse::<Decimal>().unwrap().normalize().to_string();
    }
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_backtest_publishes_exactly_what_paper_mode_publishes() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, cfg) = app_config(
        dir.path(),
        &bs,
        &write_strategies(dir.path(), &[CROSS, RSI]),
    );
    let msgs = tick_sequence();
    let n = msgs.len() as u64;
    produce(&producer(&bs), "live_prices", &msgs).await;

    // The independent source: paper mode over the same topic, on its own topics.
    let summary = paper::run(
        &cfg,
        &bs,
        StopWhen {
            idle: Some(Duration::from_secs(20)),
            max_events: Some(n),
            startup_grace: None,
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(summary.inputs.total_dead(), 1);

    let report = dir.path().join("r");
    let args = |run: &str| -> Vec<String> {
        [
            "--config",
            &app.display().to_string(),
            "backtest",
            "--publish",
            run,
            "--report",
            &report.display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    let out = cli(args("bt-2026-11-25")).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains(&format!("{n} events:")), "{stdout}");

    let mut counts = Vec::new();
    let mut held = Vec::new();
    for t in OUTPUTS {
        let paper = messages(&bs, t).await;
        let run = messages(&bs, &format!("bt-2026-11-25.{t}")).await;
        assert!(
            run == paper,
            "bt-2026-11-25.{t} differs from paper mode's {t}: {} vs {} messages",
            run.len(),
            paper.len()
        );
        counts.push(format!("bt-2026-11-25.{t} {}", run.len()));
        held.push(format!("bt-2026-11-25.{t} ({} messages)", run.len()));
        if t == "fills" {
            assert!(run.len() >= 4, "too few fills to compare: {}", run.len());
            // And the fills are the report's trades, in order.
            assert_eq!(fill_rows(&run), trades_csv(&report.join("trades.csv")));
        }
        if t == "orders" {
            assert!(run.len() >= 8, "too few order events: {}", run.len());
        }
        if t == "dead_letters" {
            assert_eq!(run.len(), 1);
        }
    }
    counts.sort();
    for c in &counts {
        assert!(stdout.contains(c.as_str()), "{c} not in {stdout}");
    }

    // The run id names one run: publishing it again is refused, nothing is added.
    // Regression ("the `--publish` refusal says a topic holds 'at least 2'
    // messages when it holds 872"): the refusal counts every topic exactly.
    let out = cli(args("bt-2026-11-25")).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--publish")
            && held.iter().all(|h| stderr.contains(h.as_str()))
            && stderr.contains("new run id"),
        "{held:?} not all in {stderr}"
    );
    assert_eq!(
        messages(&bs, "bt-2026-11-25.fills").await,
        messages(&bs, "fills").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_backtest_publishes_its_collected_outputs_in_order() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let strategies: Vec<PathBuf> = [
        "ma_crossover",
        "rsi_mean_reversion",
        "bollinger_breakout",
        "sentiment_momentum",
    ]
    .iter()
    .map(|s| root.join(format!("strategies/{s}.toml")))
    .collect();
    let (app, cfg) = app_config(dir.path(), &bs, &strategies);
    let inputs = [
        root.join("data/synthetic_ticks.csv"),
        root.join("data/synthetic_sentiment.csv"),
    ];
    let report = dir.path().join("r");
    let mut args: Vec<String> = vec![
        "--config".into(),
        app.display().to_string(),
        "backtest".into(),
    ];
    for f in &inputs {
        args.push("--input".into());
        args.push(f.display().to_string());
    }
    args.extend(
        [
            "--publish",
            "file_run.1",
            "--report",
            &report.display().to_string(),
        ]
        .map(String::from),
    );
    let out = cli(args).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Expected: the engine's outputs over the same events, as emitted, collected
    // in this process, serialized as paper mode serializes them.
    let events = backtest::file_events(&inputs, TimeRange::default()).unwrap();
    let mut expected: Vec<(&'static str, Option<String>, Vec<u8>)> = Vec::new();
    let bt = backtest::run_with(&cfg, events, false, |o| {
        let topic = match o.kind() {
            papertrader::engine::OutputKind::Signals => "signals",
            papertrader::engine::OutputKind::Orders => "orders",
            papertrader::engine::OutputKind::Fills => "fills",
            papertrader::engine::OutputKind::Pnl => "pnl",
            papertrader::engine::OutputKind::DeadLetters => "dead_letters",
            papertrader::engine::OutputKind::Alerts => "alerts",
            papertrader::engine::OutputKind::Indicators => "indicators",
        };
        expected.push((topic, o.key().map(str::to_string), o.to_json()));
    })
    .unwrap();
    assert!(bt.collector.trades.len() > 50, "too few fills to compare");
    for t in OUTPUTS {
        let want: Vec<(Option<String>, Vec<u8>)> = expected
            .iter()
            .filter(|(k, _, _)| *k == t)
            .map(|(_, key, v)| (key.clone(), v.clone()))
            .collect();
        let got = messages(&bs, &format!("file_run.1.{t}")).await;
        assert!(
            got == want,
            "file_run.1.{t}: {} messages published, {} emitted (or a difference in bytes or order)",
            got.len(),
            want.len()
        );
        if t == "fills" {
            assert_eq!(fill_rows(&got), trades_csv(&report.join("trades.csv")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refuses_bad_run_ids_and_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let strategies = write_strategies(dir.path(), &[CROSS]);
    let input = dir.path().join("t.csv");
    std::fs::write(&input, "ts,symbol,price,size\n1000,AAA,1,1\n").unwrap();
    // Nothing listens on port 9: the checks must fail before any connection.
    let (app, _) = app_config(dir.path(), "127.0.0.1:9", &strategies);
    let run = |run_id: String, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "--config".into(),
            app.display().to_string(),
            "backtest".into(),
            "--input".into(),
            input.display().to_string(),
            "--publish".into(),
            run_id,
            "--report".into(),
            dir.path().join("r").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        cli(args)
    };
    for (id, says) in [
        ("bt/1".to_string(), "letters, digits"),
        ("bt 1".to_string(), "letters, digits"),
        (String::new(), "empty"),
        ("r".repeat(300), "at most 236 characters"),
    ] {
        let out = run(id.clone(), &[]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{id}: {stderr}");
        assert!(
            stderr.contains("--publish") && stderr.contains(says),
            "{id}: {stderr}"
        );
    }
    let out = run("bt-1".into(), &["--brokers", "embedded"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--publish")
            && stderr.contains("embedded")
            && stderr.contains("--brokers HOST:PORT"),
        "{stderr}"
    );
    assert!(!dir.path().join("r").exists(), "no report after a refusal");
}
