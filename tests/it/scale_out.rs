//! Scale-out through the consumer group: two paper-mode processes in one group
//! over four-partition input topics, the second joining mid-stream so that
//! partitions (and their state, through the per-partition checkpoints) move
//! between them, publish together exactly the orders and fills of one process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use papertrader::paper::{self, StopWhen};
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;

const SYMBOLS: [&str; 8] = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"];
const TICKS_PER_SYMBOL: usize = 1500;

/// Price-driven strategies only (see tests/it/crash.rs on sentiment); one sizes by
/// equity, which is per shard.
fn strategies() -> Vec<String> {
    let syms = format!("symbols = {SYMBOLS:?}");
    vec![
        format!(
            "name = \"fast_ma\"\n{syms}\n[rule]\nkind = \"ma_crossover\"\nfast = 3\nslow = 8\naverage = \"sma\"\n\
             [account]\nstarting_cash = \"1000000\"\n[sizing]\nmode = \"fraction_of_equity\"\nfraction = \"0.05\"\nlot_size = \"1\"\n"
        ),
        format!(
            "name = \"limit_bars\"\n{syms}\n[rule]\nkind = \"ma_crossover\"\nfast = 3\nslow = 7\naverage = \"ema\"\n\
             [bars]\nkind = \"ticks\"\nsize = \"5\"\n[orders]\ntype = \"limit\"\nlimit_offset_ticks = -2\ntif = \"gtc\"\n\
             [account]\nstarting_cash = \"1000000\"\n[sizing]\nmode = \"fixed_quantity\"\nquantity = \"7\"\n"
        ),
    ]
}

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
         [engine]\nmax_batch = 40\nshards = \"partition\"\n\
         [state]\nstore = \"file\"\npath = {:?}\nevery_events = 200\nevery = \"1h\"\n\
         [http]\nenabled = false\n",
        paths.join(", "),
        dir.join(format!("{run}.ckpt")).display().to_string()
    );
    let p = dir.join(format!("{run}.toml"));
    std::fs::write(&p, app).unwrap();
    p
}

async fn feed(bootstrap: &str) -> usize {
    let p: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut sends = Vec::new();
    let t0 = 1_767_000_000_000i64;
    let mut price = [100.0f64; SYMBOLS.len()];
    for i in 0..TICKS_PER_SYMBOL {
        for (s, sym) in SYMBOLS.iter().enumerate() {
            price[s] *= 1.0 + rng.gen_range(-0.004..0.004);
            let ts = t0 + (i as i64) * 1000 + s as i64;
            sends.push((
                "live_prices",
                sym.to_string(),
                format!(
                    r#"{{"symbol":"{sym}","ts":{ts},"price":"{:.2}","size":"{}"}}"#,
                    price[s],
                    rng.gen_range(1..500)
                ),
            ));
            if i % 10 == 0 {
                let score: f64 = rng.gen_range(-1.0..1.0);
                sends.push((
                    "news_sentiment",
                    sym.to_string(),
                    format!(r#"{{"symbol":"{sym}","ts":{ts},"score":{score:.3},"source":"test"}}"#),
                ));
            }
        }
    }
    // A closing tick per symbol, an hour on and after every other message of its
    // partition: orders still in flight (latency) reach the venue in every run,
    // whatever the order in which the two topics were delivered.
    let close = t0 + TICKS_PER_SYMBOL as i64 * 1000 + 3_600_000;
    for (s, sym) in SYMBOLS.iter().enumerate() {
        sends.push((
            "live_prices",
            sym.to_string(),
            format!(
                r#"{{"symbol":"{sym}","ts":{close},"price":"{:.2}","size":"1"}}"#,
                price[s]
            ),
        ));
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
    papertrader::kafka::ensure_topics(&c, &refs, 4)
        .await
        .unwrap();
}

fn sorted_payloads(bootstrap: &str, topic: &str) -> Vec<String> {
    let mut v: Vec<String> = crate::common::read_topic(bootstrap, topic)
        .into_iter()
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect();
    v.sort();
    v
}

fn spawn(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .args(["paper", "--config"])
        .arg(config)
        .args(["--until-idle", "10"])
        .env("RUST_LOG", "info,tansu=warn,librdkafka=error")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("starting papertrader")
}

/// Wait until some file in `dir` named like a shard checkpoint of `run` appears.
fn wait_for_shard_checkpoint(dir: &Path, run: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let found = std::fs::read_dir(dir).unwrap().any(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.starts_with(&format!("{run}.p")) && n.ends_with(".ckpt")
        });
        if found {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// `processed=N` from a run's closing log line.
fn processed(log: &str) -> u64 {
    log.split("paper mode stopped processed=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_in_one_group_publish_what_one_does() {
    let broker = crate::common::broker(4).await;
    let bs = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let inputs = feed(&bs).await;

    // One process.
    create_outputs(&bs, "one").await;
    let cfg = papertrader::config::load_with_env(Some(&app_config(dir.path(), &bs, "one")), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let summary = paper::run(
        &cfg,
        &bs,
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
    let shards: std::collections::BTreeSet<&str> = summary
        .strategies
        .iter()
        .filter(|s| !s.symbols.is_empty())
        .filter_map(|s| s.name.split('@').nth(1))
        .collect();
    assert!(
        shards.len() >= 2,
        "the symbols spread over partitions: {shards:?}"
    );

    // Two processes; the second joins once the first has checkpointed a shard.
    create_outputs(&bs, "two").await;
    let config = app_config(dir.path(), &bs, "two");
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = spawn(&config, &log_a);
    assert!(
        wait_for_shard_checkpoint(dir.path(), "two", Duration::from_secs(60)),
        "the first process wrote no checkpoint:\n{}",
        std::fs::read_to_string(&log_a).unwrap_or_default()
    );
    let mut b = spawn(&config, &log_b);
    let (sa, sb) = (a.wait().unwrap(), b.wait().unwrap());
    let (ta, tb) = (
        std::fs::read_to_string(&log_a).unwrap(),
        std::fs::read_to_string(&log_b).unwrap(),
    );
    assert!(sa.success() && sb.success(), "A:\n{ta}\nB:\n{tb}");
    let (pa, pb) = (processed(&ta), processed(&tb));
    eprintln!("process A processed {pa}, process B {pb} (inputs {inputs})");
    assert!(pb > 0, "the second process took over partitions:\n{tb}");
    assert!(
        tb.contains("continuing from the checkpoint")
            || ta.matches("continuing from the checkpoint").count() > 0,
        "a shard moved with its checkpoint"
    );
    assert!(pa + pb >= inputs as u64);

    for t in ["orders", "fills", "signals"] {
        let want = sorted_payloads(&bs, &format!("one_{t}"));
        let got = sorted_payloads(&bs, &format!("two_{t}"));
        assert!(!want.is_empty());
        if got != want {
            let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
            let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).collect();
            eprintln!(
                "{t}: {} missing, {} extra; first missing: {:?}; first extra: {:?}",
                missing.len(),
                extra.len(),
                missing.iter().take(3).collect::<Vec<_>>(),
                extra.iter().take(3).collect::<Vec<_>>()
            );
        }
        assert_eq!(
            got.len(),
            want.len(),
            "two_{t}: {} messages, one process published {}",
            got.len(),
            want.len()
        );
        assert!(got == want, "two_{t} differs from one process's");
        eprintln!("two_{t}: {} messages, equal to one process's", got.len());
    }
}
