//! The engine without Kafka: determinism and accounting over the bundled data.

use papertrader::config;
use papertrader::csvdata;
use papertrader::domain::Origin;
use papertrader::engine::{Engine, Output};
use papertrader::wire::{self, InputKind};

/// The demo's inputs (synthetic ticks and sentiment, real daily bars) in event-time
/// order, as wire-format bytes with their origins.
pub(crate) fn inputs() -> Vec<(InputKind, Origin, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for (file, kind) in [
        ("data/synthetic_ticks.csv", InputKind::Prices),
        ("data/aapl_msft_daily_2011_2013.csv", InputKind::Prices),
        ("data/synthetic_sentiment.csv", InputKind::Sentiment),
    ] {
        let (records, bad) = csvdata::read_records(root.join(file), None).unwrap();
        assert!(bad.is_empty());
        for (i, r) in records.into_iter().enumerate() {
            let bytes = match &r {
                csvdata::Record::Tick(t) => wire::encode_tick(t),
                csvdata::Record::Sentiment(s) => wire::encode_sentiment(s),
            };
            let origin = Origin {
                topic: file.into(),
                partition: 0,
                offset: i as i64,
            };
            all.push((r.ts(), kind, origin, bytes));
        }
    }
    all.sort_by_key(|x| x.0);
    all.into_iter().map(|(_, k, o, b)| (k, o, b)).collect()
}

fn run(cfg: &config::Loaded, inputs: &[(InputKind, Origin, Vec<u8>)]) -> (Vec<u8>, Engine) {
    let mut engine = Engine::new(&cfg.engine_spec()).unwrap();
    let mut out = Vec::new();
    for (kind, origin, bytes) in inputs {
        engine.on_message(*kind, origin, None, bytes, &mut out);
    }
    let mut bytes = Vec::new();
    for o in &out {
        bytes.extend(o.to_json());
        bytes.push(b'\n');
    }
    (bytes, engine)
}

fn cfg() -> config::Loaded {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    config::load_with_env(None, &[]).unwrap()
}

#[test]
fn same_input_twice_gives_byte_identical_outputs() {
    let cfg = cfg();
    let inputs = inputs();
    let (a, ea) = run(&cfg, &inputs);
    let (b, eb) = run(&cfg, &inputs);
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_vec(&ea.summary()).unwrap(),
        serde_json::to_vec(&eb.summary()).unwrap()
    );
}

#[test]
fn every_fill_is_accounted_for_in_the_summary() {
    let cfg = cfg();
    let inputs = inputs();
    let mut engine = Engine::new(&cfg.engine_spec()).unwrap();
    let mut out = Vec::new();
    for (kind, origin, bytes) in &inputs {
        engine.on_message(*kind, origin, None, bytes, &mut out);
    }
    let summary = engine.summary();
    assert_eq!(summary.inputs.total_processed() as usize, inputs.len());
    assert_eq!(summary.inputs.total_dead(), 0);
    let fills: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Fill(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(fills.len() as u64, summary.total_fills());
    // At least two strategies on at least two symbols trade the demo data.
    let trading: Vec<_> = summary
        .strategies
        .iter()
        .filter(|s| s.symbols.values().filter(|x| x.counts.fills > 0).count() >= 2)
        .collect();
    assert!(trading.len() >= 2, "{}", summary.render());
    // Per strategy: cash = start - sum(signed notional) - fees, from the fills alone.
    for s in &summary.strategies {
        let mut cash = s.starting_cash;
        let mut fees = rust_decimal::Decimal::ZERO;
        for f in fills.iter().filter(|f| f.strategy == s.name) {
            let notional = f.qty * f.price;
            cash += match f.side {
                papertrader::domain::Side::Buy => -notional,
                papertrader::domain::Side::Sell => notional,
            } - f.fee;
            fees += f.fee;
        }
        assert_eq!(cash.round_dp(8), s.cash, "{}", s.name);
        assert_eq!(fees.round_dp(8), s.fees, "{}", s.name);
        // Equity identity at the end.
        assert!(
            (s.starting_cash + s.realized + s.unrealized - s.fees - s.equity).abs()
                < rust_decimal::Decimal::new(1, 6),
            "{}",
            s.name
        );
    }
}

#[test]
fn oversized_input_becomes_a_bounded_dead_letter() {
    let cfg = cfg();
    let mut engine = Engine::new(&cfg.engine_spec()).unwrap();
    let mut out = Vec::new();
    let payload = vec![b'x'; 600_000];
    let origin = Origin {
        topic: "live_prices".into(),
        partition: 0,
        offset: 7,
    };
    engine.on_message(
        InputKind::Prices,
        &origin,
        Some(b"ACME"),
        &payload,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&out[0].to_json()).unwrap();
    assert_eq!(v["reason"], "too_large");
    assert_eq!(v["payload_bytes"], 600_000);
    assert_eq!(v["payload_truncated"], true);
    assert_eq!(
        v["payload"].as_str().unwrap().len(),
        wire::MAX_MESSAGE_BYTES
    );
    // Well under a broker's default 1 MB message limit.
    assert!(out[0].to_json().len() < 200_000);
    assert_eq!(engine.counts().dead_letters["too_large"], 1);
}
