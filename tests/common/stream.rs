//! A seeded multi-symbol stream through a real broker, paper-mode runs over it
//! with their own consumer group and output topics, and the comparison of a
//! run's output topics with those of an uninterrupted reference run: the
//! topics read raw, with no deduplication. Shared by the crash tests
//! (`tests/it/crash.rs`, `tests/it/broker_restart.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use papertrader::paper::{self, StopWhen};
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;

pub const SYMBOLS: [&str; 3] = ["AAA", "BBB", "CCC"];
pub const TICKS_PER_SYMBOL: usize = 3000;

/// Strategies whose orders depend on their own symbol only (fixed quantities,
/// ample cash), so that runs interleaving the partitions differently still
/// agree order for order; with market and resting GTC limit orders and bars.
/// Sentiment is fed and consumed, but no strategy trades on it: paper mode
/// takes the two topics in the order the broker delivers them, so a strategy
/// combining them is not reproducible message for message across runs (a
/// backtest merges them by event time).
pub fn strategies() -> Vec<String> {
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

/// What a run changes from the defaults of [`app_config`].
#[derive(Default)]
pub struct RunOptions<'a> {
    /// More `[kafka.properties]`.
    pub properties: &'a [(&'a str, &'a str)],
    /// Serve `/health` and `/metrics` on a free loopback port (the run logs
    /// `dashboard listening url=...`).
    pub http: bool,
    /// `kafka.seek` (default `rescan`).
    pub seek: Option<&'a str>,
}

/// The application config of one run, with its own group and output topics.
pub fn app_config(dir: &Path, bootstrap: &str, run: &str, opts: &RunOptions) -> PathBuf {
    let mut paths = Vec::new();
    for (i, s) in strategies().iter().enumerate() {
        let p = dir.join(format!("{run}_strategy{i}.toml"));
        std::fs::write(&p, s).unwrap();
        paths.push(format!("{:?}", p.display().to_string()));
    }
    let properties: String = opts
        .properties
        .iter()
        .map(|(k, v)| format!("{k:?} = {v:?}\n"))
        .collect();
    let http = if opts.http {
        "[http]\nenabled = true\nbind = \"127.0.0.1:0\"\n"
    } else {
        "[http]\nenabled = false\n"
    };
    let seek = opts.seek.unwrap_or("rescan");
    let app = format!(
        "strategies = [{}]\n\
         [kafka]\nbrokers = {bootstrap:?}\ngroup_id = \"{run}\"\nseek = {seek:?}\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n{properties}\
         [topics]\nsignals = \"{run}_signals\"\norders = \"{run}_orders\"\nfills = \"{run}_fills\"\n\
         pnl = \"{run}_pnl\"\ndead_letters = \"{run}_dead_letters\"\nalerts = \"{run}_alerts\"\n\
         [engine]\nmax_batch = 40\n\
         [state]\nstore = \"file\"\npath = {:?}\nevery_events = 400\nevery = \"1h\"\n\
         {http}",
        paths.join(", "),
        dir.join(format!("{run}.ckpt")).display().to_string()
    );
    let p = dir.join(format!("{run}.toml"));
    std::fs::write(&p, app).unwrap();
    p
}

/// A seeded random walk per symbol, a sentiment reading every 10 ticks, and a
/// closing tick per symbol. Returns the number of messages fed.
pub async fn feed(bootstrap: &str) -> usize {
    feed_with(bootstrap, &[]).await
}

/// [`feed`] by a producer with more properties (e.g. a long `linger.ms`, for
/// large record batches).
pub async fn feed_with(bootstrap: &str, properties: &[(&str, &str)]) -> usize {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20");
    for (k, v) in properties {
        c.set(*k, *v);
    }
    let p: rdkafka::producer::FutureProducer = c.create().unwrap();
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
    // A closing tick per symbol, all at one time an hour past the stream. Any
    // later message moves a strategy's venue to its time, so without it
    // whether the last order of a symbol reaches the venue (`accepted`,
    // `filled`) would depend on another symbol's tick or a sentiment reading
    // being delivered after it. The closing tick, after the symbol's others in
    // its partition, brings them in every run; the orders it causes itself
    // reach no venue in any run, as nothing comes later in event time.
    let close = t0 + (TICKS_PER_SYMBOL as i64) * 1000 + 3_600_000;
    for (s, sym) in SYMBOLS.iter().enumerate() {
        let tick = format!(
            r#"{{"symbol":"{sym}","ts":{close},"price":"{:.2}","size":"1"}}"#,
            price[s]
        );
        sends.push(("live_prices", sym.to_string(), tick));
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

/// Create the output topics of `run`, three partitions each.
pub async fn create_outputs(bootstrap: &str, run: &str) {
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

/// The reference: one uninterrupted run, in-process, with group and topics `ref`.
pub async fn reference(dir: &Path, bootstrap: &str, inputs: usize) {
    create_outputs(bootstrap, "ref").await;
    let config = app_config(dir, bootstrap, "ref", &RunOptions::default());
    let cfg =
        papertrader::config::load_with_env(Some(&config), &[]).unwrap_or_else(|e| panic!("{e}"));
    let summary = paper::run(
        &cfg,
        bootstrap,
        StopWhen {
            idle: Some(Duration::from_secs(3)),
            max_events: Some(inputs as u64),
            startup_grace: None,
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(summary.inputs.total_processed(), inputs as u64);
}

/// Payloads of a topic, sorted.
pub fn outputs(bootstrap: &str, topic: &str) -> Vec<String> {
    let mut v: Vec<String> = super::read_topic(bootstrap, topic)
        .into_iter()
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect();
    v.sort();
    v
}

/// Each message once: no id twice.
pub fn assert_no_duplicates(topic: &str, payloads: &[String]) {
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

/// The orders, fills and signals of `run` equal the reference's as multisets
/// of payloads, each id once. Blocking.
pub fn compare(bootstrap: &str, run: &str) {
    for t in ["orders", "fills", "signals"] {
        let want = outputs(bootstrap, &format!("ref_{t}"));
        let got = outputs(bootstrap, &format!("{run}_{t}"));
        assert!(!want.is_empty(), "the reference run has {t}");
        assert_no_duplicates(&format!("{run}_{t}"), &got);
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
        let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).collect();
        assert!(
            missing.is_empty() && extra.is_empty() && got.len() == want.len(),
            "{run}_{t}: {} messages, the reference {}; {} missing, {} not in the reference\n\
             first missing: {:#?}\nfirst not in the reference: {:#?}",
            got.len(),
            want.len(),
            missing.len(),
            extra.len(),
            &missing[..missing.len().min(4)],
            &extra[..extra.len().min(4)],
        );
        eprintln!(
            "{run}_{t}: {} messages, equal to the uninterrupted run",
            got.len()
        );
    }
}

/// Start `papertrader paper` on `config`, stopping after `idle` seconds without
/// input, its log in `log`, plus `args`.
pub fn spawn(config: &Path, log: &Path, idle: u64, args: &[&std::ffi::OsStr]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .args(["paper", "--config"])
        .arg(config)
        .args(["--until-idle", &idle.to_string()])
        .args(args)
        .env("RUST_LOG", "info,tansu=warn,librdkafka=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("starting papertrader")
}

/// Wait until the file at `p` is replaced (a new checkpoint). Blocking.
pub fn wait_for_change(p: &Path, within: Duration) -> bool {
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

/// Wait until `log` contains `needle`. Blocking.
pub fn wait_for_line(log: &Path, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Wait up to `within` for `child` to exit; `None`: it is still running.
pub fn exit_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
