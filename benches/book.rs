//! The simulator's hot paths: one depth update applied to the book, and a depth
//! update followed by a market order walking three levels (matching, fills, fees,
//! account), and a trade draining the queue of resting orders.
//!
//! `cargo bench --bench book`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use papertrader::domain::{BookUpdate, Level, Side};
use papertrader::sim::{Book, InstrumentConfig, Order, RiskLimits, Simulator, Tif};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

const N: usize = 1000;

fn level(ticks: i64, size: i64) -> Level {
    Level {
        price: Decimal::new(ticks, 2),
        size: Decimal::from(size),
    }
}

fn snapshot() -> BookUpdate {
    BookUpdate {
        symbol: "X".into(),
        ts: 0,
        snapshot: true,
        bids: (0..20).map(|i| level(9999 - i, 10)).collect(),
        asks: (0..20).map(|i| level(10000 + i, 10)).collect(),
    }
}

/// Restores the three best asks.
fn refill(ts: i64) -> BookUpdate {
    BookUpdate {
        symbol: "X".into(),
        ts,
        snapshot: false,
        bids: vec![],
        asks: (0..3).map(|i| level(10000 + i, 10)).collect(),
    }
}

fn simulator() -> Simulator {
    let inst = InstrumentConfig {
        taker_fee_bps: Decimal::from(10),
        maker_fee_bps: Decimal::from(2),
        ..InstrumentConfig::new(Decimal::new(1, 2), Decimal::ONE)
    };
    let mut s = Simulator::new(
        BTreeMap::from([("X".to_string(), inst)]),
        0,
        RiskLimits {
            allow_short: true,
            ..RiskLimits::default()
        },
        Decimal::from(1_000_000_000),
    )
    .expect("valid instruments");
    s.on_book(&snapshot(), &mut Vec::new());
    s
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim");
    g.sample_size(30);

    g.throughput(Throughput::Elements(1));
    let mut book = Book::new(Decimal::new(1, 2));
    book.apply(&snapshot());
    let u = BookUpdate {
        bids: vec![level(9999, 7), level(9998, 0)],
        asks: vec![level(10001, 12)],
        ..refill(1)
    };
    g.bench_function("book_apply_incremental_3_levels", |b| {
        b.iter(|| book.apply(std::hint::black_box(&u)))
    });

    g.throughput(Throughput::Elements(N as u64));
    let orders: Vec<Order> = (0..N)
        .map(|i| Order::market(&format!("m{i}"), "X", Side::Buy, Decimal::from(25)))
        .collect();
    g.bench_function("update_then_market_walking_3_levels", |b| {
        b.iter_batched(
            || (simulator(), orders.clone(), Vec::with_capacity(8 * N)),
            |(mut s, orders, mut out)| {
                for (i, o) in orders.into_iter().enumerate() {
                    let ts = i as i64 * 1000 + 1;
                    s.on_book(&refill(ts), &mut out);
                    s.submit(ts, o, &mut out);
                }
                out
            },
            BatchSize::LargeInput,
        )
    });

    let limits: Vec<Order> = (0..N)
        .map(|i| {
            Order::limit(
                &format!("l{i}"),
                "X",
                Side::Buy,
                Decimal::from(1),
                Decimal::new(9999, 2),
                Tif::Gtc,
            )
        })
        .collect();
    g.bench_function("resting_limit_then_trade_drains_queue", |b| {
        b.iter_batched(
            || (simulator(), limits.clone(), Vec::with_capacity(4 * N)),
            |(mut s, orders, mut out)| {
                for (i, o) in orders.into_iter().enumerate() {
                    let ts = i as i64 * 1000 + 1;
                    s.submit(ts, o, &mut out);
                    // 11 at 99.99 drains the 10 ahead (or what is left) and fills us.
                    s.on_trade(
                        "X",
                        ts + 1,
                        Decimal::new(9999, 2),
                        Decimal::from(11),
                        &mut out,
                    );
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
