//! A rule written in the rule language against the same rule built in:
//! `ma_crossover` (EMA 20/100) as a built-in and as `strategies/expr/ma_crossover.toml`,
//! per tick through the strategy alone and through the whole engine.
//!
//! `cargo bench --bench rules`; results in docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use papertrader::config;
use papertrader::domain::{Origin, Tick};
use papertrader::engine::Engine;
use papertrader::model::Models;
use papertrader::sample::{generate, SampleSpec};
use papertrader::strategy;
use papertrader::wire::{self, InputKind};
use rust_decimal::prelude::ToPrimitive;

fn load(file: &str) -> config::Loaded {
    let env = vec![("PAPERTRADER__STRATEGIES".to_string(), file.to_string())];
    config::load_with_env(None, &env).expect("config and strategy")
}

fn bench(c: &mut Criterion) {
    let (ticks, _) = generate(&SampleSpec::default());
    let ticks: Vec<Tick> = ticks.into_iter().filter(|t| t.symbol == "ACME").collect();
    let prices: Vec<f64> = ticks.iter().map(|t| t.price.to_f64().unwrap()).collect();
    let payloads: Vec<Vec<u8>> = ticks.iter().map(wire::encode_tick).collect();
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(ticks.len() as u64));
    g.sample_size(20);
    for (name, file) in [
        ("builtin", "strategies/ma_crossover.toml"),
        ("expr", "strategies/expr/ma_crossover.toml"),
    ] {
        let cfg = load(file);
        let rule = cfg.strategies[0].rule.clone();
        g.bench_function(format!("ma_crossover_strategy_{name}"), |b| {
            b.iter_batched(
                || strategy::try_build(&rule, &Models::new()).unwrap(),
                |mut s| {
                    let mut n = 0usize;
                    for (t, &p) in ticks.iter().zip(&prices) {
                        n += usize::from(s.on_tick(t, p).is_some());
                    }
                    std::hint::black_box(n)
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function(format!("ma_crossover_engine_{name}"), |b| {
            b.iter_batched(
                || Engine::new(&cfg.engine_spec()).unwrap(),
                |mut engine| {
                    let mut out = Vec::with_capacity(1024);
                    for (i, p) in payloads.iter().enumerate() {
                        let origin = Origin {
                            topic: "live_prices".into(),
                            partition: 0,
                            offset: i as i64,
                        };
                        engine.on_message(InputKind::Prices, &origin, None, p, &mut out);
                        out.clear();
                    }
                    engine
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
