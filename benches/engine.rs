//! Hot paths: decoding a tick, and one tick through the whole engine (decode,
//! admission, four strategies on the symbol, sizing, fills, accounts, outputs).
//!
//! `cargo bench --bench engine`; results in docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use papertrader::config;
use papertrader::domain::Origin;
use papertrader::engine::Engine;
use papertrader::sample::{generate, SampleSpec};
use papertrader::wire::{self, InputKind};

fn inputs() -> Vec<Vec<u8>> {
    let (ticks, _) = generate(&SampleSpec::default());
    ticks.iter().map(wire::encode_tick).collect()
}

fn bench(c: &mut Criterion) {
    let cfg = config::load_with_env(None, &[]).expect("default config and strategies");
    let payloads = inputs();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(payloads.len() as u64));
    g.sample_size(20);
    g.bench_function("decode_tick", |b| {
        b.iter(|| {
            for p in &payloads {
                std::hint::black_box(wire::decode(InputKind::Prices, p).unwrap());
            }
        })
    });
    g.bench_function("on_message_default_strategies", |b| {
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
                    if out.len() > 1000 {
                        out.clear();
                    }
                }
                engine
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
