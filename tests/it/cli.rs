//! The binary refuses bad configuration with the file, the key and the fix.

use std::process::Command;

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
