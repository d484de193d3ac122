//! One million synthetic ticks through a backtest, from a file and through the
//! embedded broker: events per second and peak memory.
//!
//! `cargo bench --bench backtest_1m` (add `-- TICKS` for another size). The
//! ticks come from the seeded generator (`papertrader generate`, seed 42, two
//! symbols, no sentiment); the strategy is a moving-average crossover (SMA 10 /
//! 30) on 100-tick bars, trading through the default venue. Each measurement
//! runs in a child process of its own so that its peak RSS (VmHWM) is its own.
//! Results are in docs/PERFORMANCE.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use papertrader::backtest::{self, KafkaRange, TimeRange};
use papertrader::config;
use papertrader::csvdata;
use papertrader::replay::{self, ReplayOptions, Speed};
use papertrader::sample::{generate, SampleSpec};

const STRATEGY: &str = r#"
name = "ma_bars"
symbols = ["ACME", "GLOBEX"]
[rule]
kind = "ma_crossover"
fast = 10
slow = 30
[sizing]
mode = "fraction_of_equity"
fraction = "0.2"
[bars]
kind = "ticks"
size = "100"
"#;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("child") {
        return child(&args[1], Path::new(&args[2]));
    }
    let ticks: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let spec = SampleSpec {
        ticks_per_symbol: ticks / 2,
        sentiment_per_hour: 0.0,
        ..SampleSpec::default()
    };
    let (t, _) = generate(&spec);
    let file = std::fs::File::create(dir.path().join("ticks.csv")).unwrap();
    csvdata::write_ticks_csv(std::io::BufWriter::new(file), &t).unwrap();
    std::fs::write(dir.path().join("ma_bars.toml"), STRATEGY).unwrap();
    std::fs::write(
        dir.path().join("app.toml"),
        format!(
            "strategies = [{:?}]\n[kafka]\npartitions = 1\n[engine]\npnl_every_ticks = 0\n[log]\nlevel = \"warn\"\n",
            dir.path().join("ma_bars.toml").display().to_string()
        ),
    )
    .unwrap();
    println!(
        "generated {} ticks (seed {}) in {:.2} s",
        t.len(),
        spec.seed,
        started.elapsed().as_secs_f64()
    );
    drop(t);
    let me = std::env::current_exe().unwrap();
    for mode in ["file", "broker"] {
        let status = Command::new(&me)
            .args(["child", mode, &dir.path().display().to_string()])
            .status()
            .expect("running the measurement");
        assert!(status.success(), "{mode} measurement failed");
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn child(mode: &str, dir: &Path) {
    let cfg = config::load_with_env(Some(&dir.join("app.toml")), &[]).expect("bench config");
    let ticks: PathBuf = dir.join("ticks.csv");
    match mode {
        "file" => {
            let t0 = Instant::now();
            let events = backtest::file_events(std::slice::from_ref(&ticks), TimeRange::default())
                .expect("reading ticks");
            let read = t0.elapsed();
            let bt = backtest::run(&cfg, events, false).unwrap();
            let wall = t0.elapsed();
            println!(
                "file:   {} events; read+decode {:.2} s; engine {:.2} s = {:.0} events/s; \
                 total {:.2} s = {:.0} events/s; {} fills; peak RSS {:.0} MB",
                bt.events,
                read.as_secs_f64(),
                bt.elapsed.as_secs_f64(),
                bt.events_per_sec(),
                wall.as_secs_f64(),
                bt.events as f64 / wall.as_secs_f64(),
                bt.collector.trades.len(),
                peak_rss_mb()
            );
        }
        "broker" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let b = papertrader::embedded::EmbeddedBroker::start()
                    .await
                    .expect("embedded broker");
                let bs = b.bootstrap();
                let base = papertrader::kafka::client_config(&cfg.app.kafka, &bs);
                let topics = [cfg.app.topics.live_prices.as_str()];
                papertrader::kafka::ensure_topics(&base, &topics, 1)
                    .await
                    .expect("topics");
                let producer = papertrader::kafka::producer(&base).expect("producer");
                let t0 = Instant::now();
                let stats = replay::publish_file(
                    &producer,
                    &ticks,
                    &cfg.app.topics.live_prices,
                    &ReplayOptions {
                        speed: Speed::Max,
                        symbol: None,
                        progress: false,
                        expect: None,
                    },
                )
                .await
                .expect("replaying ticks into the broker");
                let produce = t0.elapsed();
                let t1 = Instant::now();
                let events = backtest::kafka_events(&cfg, &bs, &KafkaRange::default(), false)
                    .await
                    .expect("reading the topic back");
                let fetch = t1.elapsed();
                let bt = backtest::run(&cfg, events, false).unwrap();
                let wall = t1.elapsed();
                println!(
                    "broker: {} events produced in {:.2} s ({:.0}/s); fetch+decode+merge {:.2} s = \
                     {:.0} events/s; engine {:.2} s = {:.0} events/s; backtest total {:.2} s = \
                     {:.0} events/s; {} fills; peak RSS {:.0} MB (broker in-process)",
                    stats.published,
                    produce.as_secs_f64(),
                    stats.published as f64 / produce.as_secs_f64(),
                    fetch.as_secs_f64(),
                    bt.events as f64 / fetch.as_secs_f64(),
                    bt.elapsed.as_secs_f64(),
                    bt.events_per_sec(),
                    wall.as_secs_f64(),
                    bt.events as f64 / wall.as_secs_f64(),
                    bt.collector.trades.len(),
                    peak_rss_mb()
                );
            });
        }
        other => panic!("unknown mode {other}"),
    }
}
