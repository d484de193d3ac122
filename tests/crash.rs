//! Crash safety through a real broker: paper mode killed with SIGKILL at
//! random points and restarted, or cut off by a broker restart, leaves on its
//! output topics exactly the orders and fills of a run that never stopped:
//! none missing, none doubled. The topics are read raw, with no deduplication.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use papertrader::paper::{self, StopWhen};
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;

const SYMBOLS: [&str; 3] = ["AAA", "BBB", "CCC"];
const TICKS_PER_SYMBOL: usize = 3000;

/// Strategies whose orders depend on their own symbol only (fixed quantities,
/// ample cash), so that runs interleaving the partitions differently still
/// agree order for order; with market and resting GTC limit orders and bars.
/// Sentiment is fed and consumed, but no strategy trades on it: paper mode
/// takes the two topics in the order the broker delivers them, so a strategy
/// combining them is not reproducible message for message across runs (a
/// backtest merges them by event time).
fn strategies() -> Vec<String> {
    let syms = r#"symbols = ["AAA", "BBB", "CCC"]"#;
    let account = "[account]\nstarting_cash = \"100000000\"\n";
    vec![
        format!(
            "name = \"fast_ma\"\n{syms}\n[rule]\nkind = \"ma_crossover\"\nfast = 3\nslow = 8\naverage = \"sma\"\n\
             {account}[sizing]\nmode = \"fixed_quantity\"\nquantity = \"10\"\n"
        ),
        format!(
            "name = \"limit_bars\"\n{syms}\n[rule]\nkind = \"ma_crossover\"\nfast = 3\nslow = 7\naverage = \"ema\"\n\
             [bars]\nkind = \"ticks\"\nsize = \"5\"\n[orders]\ntype = \"limit\"\nlimit_offset_ticks = -2\ntif = \"gtc\"\n\
             {account}[sizing]\nmode = \"fixed_quantity\"\nquantity = \"7\"\n"
        ),
    ]
}

/// The application config of one run, with its own group and output topics.
fn app_config(dir: &Path, bootstrap: &str, run: &str) -> std::path::PathBuf {
    let mut paths = Vec::new();
    for (i, s) in strategies().iter().enumerate() {
        let p = dir.join(format!("{run}_strategy{i}.toml"));
        std::fs::write(&p, s).unwrap();
        paths.push(format!("{:?}", p.display().to_string()));
    }
    let app = format!(
        "strategies = [{}]\n\
         [kafka]\nbrokers = {bootstrap:?}\ngroup_id = \"{run}\"\nseek = \"rescan\"\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [topics]\nsignals = \"{run}_signals\"\norders = \"{run}_orders\"\nfills = \"{run}_fills\"\n\
         pnl = \"{run}_pnl\"\ndead_letters = \"{run}_dead_letters\"\nalerts = \"{run}_alerts\"\n\
         [engine]\nmax_batch = 40\n\
         [state]\nstore = \"file\"\npath = {:?}\nevery_events = 400\nevery = \"1h\"\n\
         [http]\nenabled = false\n",
        paths.join(", "),
        dir.join(format!("{run}.ckpt")).display().to_string()
    );
    let p = dir.join(format!("{run}.toml"));
    std::fs::write(&p, app).unwrap();
    p
}

/// A seeded random walk per symbol and a sentiment reading every 10 ticks.
async fn feed(bootstrap: &str) -> usize {
    let p: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut sends = Vec::new();
    let t0 = 1_767_000_000_000i64;
    let mut price = [100.0f64, 50.0, 20.0];
    for i in 0..TICKS_PER_SYMBOL {
        for (s, sym) in SYMBOLS.iter().enumerate() {
            price[s] *= 1.0 + rng.gen_range(-0.004..0.004);
            let ts = t0 + (i as i64) * 1000 + s as i64;
            let tick = format!(
                r#"{{"symbol":"{sym}","ts":{ts},"price":"{:.2}","size":"{}"}}"#,
                price[s],
                rng.gen_range(1..500)
            );
            sends.push(("live_prices", sym.to_string(), tick));
            if i % 10 == 0 {
                let score: f64 = rng.gen_range(-1.0..1.0);
                let sent =
                    format!(r#"{{"symbol":"{sym}","ts":{ts},"score":{score:.3},"source":"test"}}"#);
                sends.push(("news_sentiment", sym.to_string(), sent));
            }
        }
    }
    let n = sends.len();
    let futures = sends.iter().map(|(t, k, v)| {
        p.send(
            FutureRecord::to(t).key(k.as_str()).payload(v.as_bytes()),
            Duration::from_secs(60),
        )
    });
    for r in futures::future::join_all(futures).await {
        r.map_err(|(e, _)| e).expect("feeding the inputs");
    }
    n
}

async fn create_outputs(bootstrap: &str, run: &str) {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    let names: Vec<String> = [
        "signals",
        "orders",
        "fills",
        "pnl",
        "dead_letters",
        "alerts",
    ]
    .iter()
    .map(|t| format!("{run}_{t}"))
    .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    papertrader::kafka::ensure_topics(&c, &refs, 3)
        .await
        .unwrap();
}

/// The reference: one uninterrupted run, in-process.
async fn reference(dir: &Path, bootstrap: &str, inputs: usize) {
    create_outputs(bootstrap, "ref").await;
    let cfg = papertrader::config::load_with_env(Some(&app_config(dir, bootstrap, "ref")), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let summary = paper::run(
        &cfg,
        bootstrap,
        StopWhen {
            idle: Some(Duration::from_secs(3)),
            max_events: Some(inputs as u64),
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(summary.inputs.total_processed(), inputs as u64);
}

/// Payloads of a topic, sorted, with the `id` field each carries.
fn outputs(bootstrap: &str, topic: &str) -> Vec<String> {
    let mut v: Vec<String> = common::read_topic(bootstrap, topic)
        .into_iter()
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect();
    v.sort();
    v
}

/// Each message once: no id twice.
fn assert_no_duplicates(topic: &str, payloads: &[String]) {
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for p in payloads {
        let v: serde_json::Value = serde_json::from_str(p).unwrap();
        let id = ["fill_id", "event_id", "order_id", "signal_id"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
            .unwrap_or_else(|| panic!("{topic}: no id in {p}"))
            .to_string();
        *ids.entry(id).or_default() += 1;
    }
    let doubled: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "{topic}: doubled ids {doubled:?}");
}

fn compare(bootstrap: &str, run: &str) {
    for t in ["orders", "fills", "signals"] {
        let want = outputs(bootstrap, &format!("ref_{t}"));
        let got = outputs(bootstrap, &format!("{run}_{t}"));
        assert!(!want.is_empty(), "the reference run has {t}");
        assert_no_duplicates(&format!("{run}_{t}"), &got);
        let missing = want.iter().filter(|w| !got.contains(w)).count();
        let extra = got.iter().filter(|g| !want.contains(g)).count();
        assert!(
            missing == 0 && extra == 0 && got.len() == want.len(),
            "{run}_{t}: {} messages, the reference {}; {missing} missing, {extra} not in the reference",
            got.len(),
            want.len()
        );
        eprintln!(
            "{run}_{t}: {} messages, equal to the uninterrupted run",
            got.len()
        );
    }
}

fn spawn(config: &Path, log: &Path, idle: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .args(["paper", "--config"])
        .arg(config)
        .args(["--until-idle", &idle.to_string()])
        .env("RUST_LOG", "info,tansu=warn,librdkafka=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("starting papertrader")
}

/// Wait until the file at `p` is replaced (a new checkpoint).
fn wait_for_change(p: &Path, within: Duration) -> bool {
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let before = stamp(p);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if stamp(p) != before {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn wait_for_line(log: &Path, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_doubles_nothing() {
    let broker = common::broker(3).await;
    let bs = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let inputs = feed(&bs).await;
    reference(dir.path(), &bs, inputs).await;

    create_outputs(&bs, "crash").await;
    let config = app_config(dir.path(), &bs, "crash");
    let ckpt = dir.path().join("crash.ckpt");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(11),
    );
    let mut kills = Vec::new();
    let mut logs = Vec::new();
    for k in 0..6 {
        // A killed member stays in the group until its session times out
        // (6 s here); the broker evicts it when the next member joins after that.
        if k > 0 {
            std::thread::sleep(Duration::from_millis(6500));
        }
        let log = dir.path().join(format!("run{k}.log"));
        let mut child = spawn(&config, &log, 30);
        assert!(
            wait_for_line(&log, "input partitions assigned", Duration::from_secs(60)),
            "run {k} never got its partitions:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // Let it write one or two checkpoints, then kill it somewhere between two.
        let writes = rng.gen_range(1..=2);
        for _ in 0..writes {
            assert!(
                wait_for_change(&ckpt, Duration::from_secs(60)),
                "run {k} wrote no checkpoint:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let delay = Duration::from_millis(rng.gen_range(0..300));
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        assert!(
            !finished,
            "run {k} finished before its kill; feed more input"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let size = std::fs::metadata(&ckpt).map(|m| m.len()).unwrap_or(0);
        kills.push((delay, size));
        logs.push(log);
    }
    eprintln!("killed after (delay, checkpoint bytes): {kills:?}");

    // The last run goes to the end of the input.
    std::thread::sleep(Duration::from_millis(6500));
    let log = dir.path().join("final.log");
    let mut child = spawn(&config, &log, 4);
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the final run failed:\n{text}");
    logs.push(log);

    let restored = logs
        .iter()
        .filter(|l| {
            std::fs::read_to_string(l)
                .unwrap()
                .contains("continuing from the checkpoint")
        })
        .count();
    if restored < 5 {
        for l in &logs {
            eprintln!(
                "==== {}\n{}",
                l.display(),
                std::fs::read_to_string(l).unwrap()
            );
        }
    }
    assert!(
        restored >= 5,
        "only {restored} runs continued from a checkpoint"
    );
    // Runs that found outputs of the killed run past their checkpoint.
    let skipped = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap())
        .filter(|t| {
            t.split("already_published=")
                .skip(1)
                .any(|rest| !rest.starts_with('0'))
        })
        .count();
    eprintln!(
        "{restored} runs continued from a checkpoint; {skipped} skipped outputs already published"
    );
    assert!(
        skipped >= 1,
        "no restart had outputs to skip: the kills all fell on checkpoints"
    );
    compare(&bs, "crash");
}
