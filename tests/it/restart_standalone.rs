//! Regression (restarts on `papertrader broker` skipped input): a standalone
//! `papertrader broker` process, inputs produced in large record batches,
//! paper mode killed with SIGKILL at seeded random times and restarted with
//! `kafka.seek = "offset"`, where tansu, asked for an offset inside a record
//! batch, answers from the next batch. The outputs must equal an
//! uninterrupted run's: none missing, none doubled, none extra.
//!
//! The seed comes from `RESTART_SEED` (default 1), so that a failure can be
//! replayed and other seeds tried: `RESTART_SEED=7 cargo test --release restart_standalone`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::stream::{
    app_config, compare, create_outputs, exit_within, feed_with, reference, spawn, wait_for_change,
    wait_for_line, RunOptions,
};
use rand::{Rng, SeedableRng};

/// `papertrader broker` on a free loopback port, with papertrader's topics
/// (three partitions each); killed when dropped.
struct BrokerProcess {
    child: Child,
    bootstrap: String,
}

impl BrokerProcess {
    fn start(dir: &std::path::Path) -> BrokerProcess {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let bootstrap = format!("127.0.0.1:{port}");
        let app = dir.join("broker.toml");
        std::fs::write(&app, "[kafka]\npartitions = 3\n").unwrap();
        let log = dir.join("broker.log");
        let child = Command::new(env!("CARGO_BIN_EXE_papertrader"))
            .arg("--config")
            .arg(&app)
            .args(["broker", "--listen", &bootstrap, "--create-topics"])
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(dir.join("broker.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("starting papertrader broker");
        let out = dir.join("broker.out");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&out).is_ok_and(|s| s.contains("listening")) {
            assert!(
                Instant::now() < deadline,
                "papertrader broker did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        BrokerProcess { child, bootstrap }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_partitions_skip_nothing_on_a_standalone_papertrader_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path());
    let bs = broker.bootstrap.clone();
    // --create-topics made every topic papertrader uses, `news` and `control` too.
    {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bs)
            .create()
            .unwrap();
        let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
        for topic in ["live_prices", "orders", "control", "news"] {
            let t = md.topics().iter().find(|t| t.name() == topic);
            assert_eq!(t.map(|t| t.partitions().len()), Some(3), "{topic}");
        }
    }
    // Large batches: a producer that lingers, as confluent-kafka and kcat do by default.
    let inputs = feed_with(
        &bs,
        &[
            ("linger.ms", "200"),
            ("batch.num.messages", "100000"),
            ("batch.size", "16000000"),
        ],
    )
    .await;
    reference(dir.path(), &bs, inputs).await;

    create_outputs(&bs, "resume").await;
    let opts = RunOptions {
        seek: Some("offset"),
        ..RunOptions::default()
    };
    let config = app_config(dir.path(), &bs, "resume", &opts);
    let seed = std::env::var("RESTART_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1u64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let ckpt = dir.path().join("resume.ckpt");
    let mut logs = Vec::new();
    for k in 0..4 {
        if k > 0 {
            // The killed member's session (6 s) must time out before the next joins.
            std::thread::sleep(Duration::from_millis(6500));
        }
        let log = dir.path().join(format!("run{k}.log"));
        let mut child = spawn(&config, &log, 30, &[]);
        assert!(
            wait_for_line(&log, "input partitions assigned", Duration::from_secs(60)),
            "run {k} never got its partitions:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // Kill it once it has checkpointed at least once, at a seeded moment
        // after. A run that skipped the rest of its input writes no more
        // checkpoints: then the comparison below says what went missing.
        let wrote = crate::common::stream::wait_for_change(&ckpt, Duration::from_secs(40));
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        logs.push(log);
        if !(wrote && running) {
            eprintln!(
                "run {k} wrote no checkpoint before its kill, or ended early:\n{}",
                std::fs::read_to_string(logs.last().unwrap()).unwrap_or_default()
            );
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(6500));
    let log = dir.path().join("final.log");
    let mut child = spawn(&config, &log, 6, &[]);
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the final run failed:\n{text}");
    logs.push(log);
    let texts: Vec<String> = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap())
        .collect();
    let restored = texts
        .iter()
        .filter(|t| t.contains("continuing from the checkpoint"))
        .count();
    let rescans = texts
        .iter()
        .map(|t| t.matches("the broker skipped records").count())
        .sum::<usize>();
    eprintln!(
        "seed {seed}: {restored} runs continued from a checkpoint; {rescans} resumed partitions re-read after the broker skipped records"
    );
    compare(&bs, "resume");
    assert!(
        restored >= 4,
        "only {restored} runs continued from a checkpoint"
    );
}

/// Regression (issue "a second, simpler reproduction of the restart loss"):
/// `kafka.seek = "auto"` against a standalone `papertrader broker`, one run
/// stopped after 100 inputs and one to the end; `auto` must know the broker
/// (tansu, by its cluster id) and read resumed partitions from their start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_auto_knows_a_standalone_papertrader_broker_and_skips_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path());
    let bs = broker.bootstrap.clone();
    let inputs = feed_with(
        &bs,
        &[("linger.ms", "200"), ("batch.num.messages", "100000")],
    )
    .await;
    reference(dir.path(), &bs, inputs).await;
    create_outputs(&bs, "auto").await;
    let opts = RunOptions {
        seek: Some("auto"),
        ..RunOptions::default()
    };
    let config = app_config(dir.path(), &bs, "auto", &opts);
    let first = dir.path().join("first.log");
    let status = spawn(
        &config,
        &first,
        30,
        &["--max-events".as_ref(), "100".as_ref()],
    )
    .wait()
    .unwrap();
    let text = std::fs::read_to_string(&first).unwrap();
    assert!(status.success(), "the first run failed:\n{text}");
    // The first run left the group cleanly: the second may join at once.
    let second = dir.path().join("second.log");
    let status = spawn(&config, &second, 5, &[]).wait().unwrap();
    let text = std::fs::read_to_string(&second).unwrap();
    assert!(status.success(), "the second run failed:\n{text}");
    assert!(
        text.contains("continuing from the checkpoint"),
        "the second run did not restore the first's checkpoint:\n{text}"
    );
    assert!(
        text.contains(r#"resume="rescan""#),
        "seek = auto did not choose rescan on papertrader broker:\n{text}"
    );
    compare(&bs, "auto");
}

/// Send `sig` (e.g. "STOP", "CONT", "TERM", "INT") to process `pid`.
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("running kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Regression ("paper mode cannot be stopped while the broker is down"): with
/// the broker frozen (SIGSTOP) as SIGTERM reaches paper mode, a second
/// signal ends it at once (code 130), and otherwise `--shutdown-timeout` does
/// (code 1); after each, with the broker back (SIGCONT), a restart publishes
/// the rest: the outputs equal an uninterrupted run's, none missing, doubled
/// or extra.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_broker_is_down_is_bounded_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path());
    let bs = broker.bootstrap.clone();
    let inputs = feed_with(&bs, &[]).await;
    reference(dir.path(), &bs, inputs).await;
    create_outputs(&bs, "halt").await;
    let config = app_config(dir.path(), &bs, "halt", &RunOptions::default());
    let ckpt = dir.path().join("halt.ckpt");
    let broker_pid = broker.child.id();
    for (k, (timeout, second, want)) in [("120", true, 130), ("3", false, 1)]
        .into_iter()
        .enumerate()
    {
        if k > 0 {
            // The frozen run never left the group: its session (6 s) times out first.
            std::thread::sleep(Duration::from_millis(6500));
        }
        let log = dir.path().join(format!("halt{k}.log"));
        let mut child = spawn(
            &config,
            &log,
            30,
            &["--shutdown-timeout".as_ref(), timeout.as_ref()],
        );
        assert!(
            wait_for_line(&log, "input partitions assigned", Duration::from_secs(60)),
            "run {k} never got its partitions:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        if k == 0 {
            assert!(
                wait_for_change(&ckpt, Duration::from_secs(40)),
                "run {k} wrote no checkpoint"
            );
        } else {
            // What is left may be less than a checkpoint's worth.
            assert!(
                wait_for_line(
                    &log,
                    "continuing from the checkpoint",
                    Duration::from_secs(30)
                ),
                "run {k} did not restore the checkpoint:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        signal(broker_pid, "STOP");
        signal(child.id(), "TERM");
        if second {
            std::thread::sleep(Duration::from_millis(1500));
            signal(child.id(), "INT");
        }
        let status = exit_within(&mut child, Duration::from_secs(60));
        signal(broker_pid, "CONT");
        let text = std::fs::read_to_string(&log).unwrap();
        let Some(status) = status else {
            let _ = child.kill();
            panic!("run {k} did not stop with the broker down:\n{text}");
        };
        assert_eq!(status.code(), Some(want), "run {k}:\n{text}");
        assert!(text.contains("SIGTERM: stopping"), "run {k}:\n{text}");
    }
    std::thread::sleep(Duration::from_millis(6500));
    let log = dir.path().join("halt_final.log");
    let status = spawn(&config, &log, 6, &[]).wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the final run failed:\n{text}");
    compare(&bs, "halt");
}
