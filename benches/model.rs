//! Model inference per event: one feature row through tract, the batch path,
//! and a whole `model` strategy step (features + inference) per tick.
//!
//! `cargo bench --bench model`

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use papertrader::config::{ModelRule, RuleConfig};
use papertrader::csvdata::{read_records, Record};
use papertrader::model;
use rust_decimal::prelude::ToPrimitive;

fn bench(c: &mut Criterion) {
    for name in ["trend", "trend_sentiment"] {
        let spec = Path::new("models").join(format!("{name}.toml"));
        let m = model::load(&spec).unwrap();
        let r = model::read_reference(&model::reference_path(&spec)).unwrap();
        let row = r.features[0].clone();
        c.bench_function(&format!("{name}: score one row"), |b| {
            b.iter(|| m.score(std::hint::black_box(&row)).unwrap())
        });
        let shared = std::sync::Arc::new(model::load(&spec).unwrap());
        let mut scorer = shared.scorer().unwrap();
        c.bench_function(
            &format!("{name}: scorer (one-row plan, reused state)"),
            |b| b.iter(|| scorer.score(std::hint::black_box(&row)).unwrap()),
        );
        let rows: Vec<&[f64]> = r.features.iter().take(2).map(Vec::as_slice).collect();
        c.bench_function(&format!("{name}: score a batch of 2 rows"), |b| {
            b.iter(|| m.score_batch(std::hint::black_box(&rows)).unwrap())
        });
    }

    let (records, _) = read_records("data/synthetic_ticks.csv", None).unwrap();
    let ticks: Vec<_> = records
        .into_iter()
        .filter_map(|r| match r {
            Record::Tick(t) if t.symbol == "ACME" => Some(t),
            _ => None,
        })
        .take(2000)
        .collect();
    let rule = RuleConfig::Model(ModelRule {
        model: "models/trend.toml".into(),
        buy_above: None,
        sell_below: None,
    });
    let models = papertrader::model::Models::for_rule(&rule).unwrap();
    c.bench_function("model strategy: 2000 ticks (features + inference)", |b| {
        b.iter(|| {
            let mut s = papertrader::strategy::try_build(&rule, &models).unwrap();
            let mut n = 0;
            for t in &ticks {
                n += s.on_tick(t, t.price.to_f64().unwrap()).is_some() as usize;
            }
            n
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
