//! A strategy kind written in Rust (`examples/custom_strategy.rs`, built by
//! `cargo test`) runs through papertrader's command line: backtest, sweep and
//! paper mode. The papertrader binary, which does not register it, refuses
//! the strategy file at start-up.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The example's binary, next to this test's (`target/<profile>/examples`).
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("custom_strategy");
    assert!(
        p.exists(),
        "{} is missing: cargo test builds the examples",
        p.display()
    );
    p
}

fn run(bin: &Path, app: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .current_dir(ROOT)
        .arg("--config")
        .arg(app)
        .args(args)
        .output()
        .unwrap()
}

fn setup(dir: &Path) -> PathBuf {
    let s = dir.join("donchian.toml");
    std::fs::write(
        &s,
        "name = \"channel\"\nsymbols = [\"ACME\"]\n[rule]\nkind = \"custom\"\nname = \"donchian\"\n\
         [rule.params]\nn = 50\n[account]\nstarting_cash = \"100000\"\n\
         [sizing]\nmode = \"fixed_quantity\"\nquantity = \"10\"\n",
    )
    .unwrap();
    let app = dir.join("app.toml");
    std::fs::write(
        &app,
        format!(
            "strategies = [{:?}]\n[venue]\nlatency = \"0ms\"\n[http]\nenabled = false\n",
            s.display().to_string()
        ),
    )
    .unwrap();
    app
}

/// The time of the first ACME tick above the highest of the 50 before it.
fn first_breakout() -> String {
    let mut r = csv::Reader::from_path(Path::new(ROOT).join("data/synthetic_ticks.csv")).unwrap();
    let mut window: Vec<f64> = Vec::new();
    for rec in r.records() {
        let rec = rec.unwrap();
        if &rec[1] != "ACME" {
            continue;
        }
        let (ms, price): (i64, f64) = (rec[0].parse().unwrap(), rec[2].parse().unwrap());
        if window.len() == 50 && window.iter().all(|&p| price > p) {
            let t = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            return t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        }
        window.push(price);
        if window.len() > 50 {
            window.remove(0);
        }
    }
    panic!("no breakout in the data");
}

#[test]
fn a_registered_rust_strategy_runs_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let app = setup(dir.path());
    let bin = example();
    let report = dir.path().join("r");
    let o = run(
        &bin,
        &app,
        &[
            "backtest",
            "--input",
            "data/synthetic_ticks.csv",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let trades = std::fs::read_to_string(report.join("trades.csv")).unwrap();
    let first = trades.lines().nth(1).expect("a trade");
    assert!(
        first.starts_with(&format!("{},channel,ACME,buy,10,", first_breakout())),
        "{first}"
    );
    assert!(trades.lines().count() > 5, "{trades}");

    // A sweep over its [rule.params].
    let out = dir.path().join("s");
    let o = run(
        &bin,
        &app,
        &[
            "sweep",
            "--input",
            "data/synthetic_ticks.csv",
            "--grid",
            "n=20,50",
            "--report",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // Its factory's refusal names the key.
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(dir.path().join("donchian.toml"))
        .unwrap()
        .replace("n = 50", "n = 1");
    std::fs::write(&bad, text).unwrap();
    let bad_app = dir.path().join("bad_app.toml");
    std::fs::write(
        &bad_app,
        format!("strategies = [{:?}]\n", bad.display().to_string()),
    )
    .unwrap();
    let r = dir.path().join("bad_r");
    let o = run(
        &bin,
        &bad_app,
        &[
            "backtest",
            "--input",
            "data/synthetic_ticks.csv",
            "--report",
            r.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("key `rule.params`") && err.contains("at least 2, not 1"),
        "{err}"
    );

    // Paper mode on the embedded broker with the demo data.
    let summary = dir.path().join("summary.json");
    let o = run(
        &bin,
        &app,
        &[
            "paper",
            "--until-idle",
            "3",
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["strategies"][0]["name"], "channel");
    assert_eq!(s["strategies"][0]["kind"], "custom");
    let fills = s["strategies"][0]["symbols"]["ACME"]["fills"]
        .as_u64()
        .unwrap();
    assert!(fills > 5, "{s}");
}

#[test]
fn the_papertrader_binary_refuses_an_unregistered_kind() {
    let dir = tempfile::tempdir().unwrap();
    let app = setup(dir.path());
    let r = dir.path().join("r");
    let o = run(
        Path::new(env!("CARGO_BIN_EXE_papertrader")),
        &app,
        &[
            "backtest",
            "--input",
            "data/synthetic_ticks.csv",
            "--report",
            r.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("key `rule.name`")
            && err.contains("no strategy kind \"donchian\" is registered")
            && err.contains("examples/custom_strategy.rs"),
        "{err}"
    );
}
