//! A client other than papertrader (kcat, from Debian's packages) produces ticks
//! in the documented format; papertrader, run as its own binary against its own
//! broker, trades them; kcat reads the fills back. `.ci/run` installs kcat.
//!
//! Defect: Debian's kcat on its own librdkafka (2.0.2) failed against the broker
//! with "ApiVersionRequest failed: Local: Read underflow" (tansu 0.6 sent tagged
//! fields that librdkafka < 2.1 skips one byte short; crates/tansu-service is the
//! patched copy). The test runs kcat on the system library, with the test's
//! LD_LIBRARY_PATH (which holds rdkafka-sys's newer build) removed.

use std::process::Command;

#[test]
fn kcat_on_the_system_librdkafka_feeds_ticks_and_reads_fills() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let work = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kcat_roundtrip.sh");
    let version = Command::new("kcat")
        .env_remove("LD_LIBRARY_PATH")
        .arg("-V")
        .output()
        .expect("kcat is not installed (.ci/run installs it)");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let out = Command::new("bash")
        .env_remove("LD_LIBRARY_PATH")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_papertrader"))
        .arg(port.to_string())
        .arg(work.path())
        .output()
        .expect("running scripts/kcat_roundtrip.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(work.path().join("paper.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "script failed ({}) with {version}: {}\n{}\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        stdout
    );
    // SMA(2) over SMA(3) on 3 2 1 5 6 1: buy 10 at the ask 5.01 (fee 10 bp:
    // 0.0501), sell 10 at the bid 0.99 (fee 0.0099).
    let fills: Vec<(String, serde_json::Value)> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once('\t').expect("key TAB value");
            (k.to_string(), serde_json::from_str(v).expect("fill JSON"))
        })
        .collect();
    assert_eq!(fills.len(), 2, "{stdout}");
    let f: Vec<(&str, &str, &str, &str)> = fills
        .iter()
        .map(|(_, v)| {
            (
                v["side"].as_str().unwrap(),
                v["qty"].as_str().unwrap(),
                v["price"].as_str().unwrap(),
                v["fee"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        f,
        vec![
            ("buy", "10", "5.01", "0.0501"),
            ("sell", "10", "0.99", "0.0099")
        ]
    );
    assert!(fills.iter().all(|(k, _)| k == "AAA"));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("summary.json")).unwrap()).unwrap();
    // (0.99 - 5.01) * 10
    assert_eq!(summary["strategies"][0]["realized"], "-40.20");
    assert_eq!(summary["inputs"]["processed"]["prices"], 6);
}
