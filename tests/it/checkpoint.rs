//! Checkpoints without Kafka: an engine restored from a checkpoint taken at any
//! point continues exactly as the engine that never stopped.

use papertrader::config;
use papertrader::csvdata;
use papertrader::domain::Origin;
use papertrader::engine::{config_fingerprint, Engine, Output};
use papertrader::state::{Checkpoint, FORMAT};
use papertrader::wire::{self, InputKind};
use std::collections::BTreeMap;

type Input = (InputKind, Origin, Vec<u8>);

/// The demo's inputs in event-time order, as wire bytes with their origins.
fn inputs() -> Vec<Input> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for (file, kind) in [
        ("data/synthetic_ticks.csv", InputKind::Prices),
        ("data/aapl_msft_daily_2011_2013.csv", InputKind::Prices),
        ("data/synthetic_sentiment.csv", InputKind::Sentiment),
    ] {
        let (records, _) = csvdata::read_records(root.join(file), None).unwrap();
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

/// Every kind of state: the default rules, an ONNX model, an expression rule,
/// resting limit orders (GTC, so open orders cross checkpoints), bars, and
/// latency (so orders are in flight at some checkpoints).
fn cfg(dir: &std::path::Path) -> config::Loaded {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let limit = "name = \"limit_bars\"\nsymbols = [\"ACME\", \"GLOBEX\"]\n\
        [rule]\nkind = \"ma_crossover\"\nfast = 3\nslow = 8\naverage = \"sma\"\n\
        [bars]\nkind = \"ticks\"\nsize = \"20\"\n\
        [orders]\ntype = \"limit\"\nlimit_offset_ticks = -3\ntif = \"gtc\"\n\
        [account]\nstarting_cash = \"100000\"\n[sizing]\nmode = \"fixed_quantity\"\nquantity = \"50\"\n";
    std::fs::write(dir.join("limit.toml"), limit).unwrap();
    // An expression rule on bars: history, crosses, sentiment, all four conditions.
    let expr = "name = \"expr_mix\"\nsymbols = [\"ACME\", \"GLOBEX\"]\n[rule]\nkind = \"expr\"\n\
        long_entry = 'cross_above(ema(close, 5), sma(close, fast)) and highest(high, 4) > close[3] and rsi(close, 6) < 95'\n\
        long_exit = 'cross_below(ema(close, 5), sma(close, fast)) or sentiment_ema(2) < -0.3'\n\
        short_entry = 'close < bb_lower(close, 10, 1.5)'\n\
        short_exit = 'change(close, 3) > 0'\n\
        [rule.params]\nfast = 12\n[bars]\nkind = \"ticks\"\nsize = \"10\"\n\
        [account]\nstarting_cash = \"100000\"\nallow_short = true\n[sizing]\nmode = \"fixed_quantity\"\nquantity = \"20\"\n\
        [exits]\nstop_loss = \"0.25%\"\ntake_profit = \"2atr\"\ntrailing_stop = \"0.5%\"\ntime_stop = 12\natr_period = 5\n\
        [exits.roi]\n\"0\" = \"2%\"\n\"1h\" = \"0.1%\"\n";
    std::fs::write(dir.join("expr.toml"), expr).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let app = format!(
        "strategies = [\"{root}/strategies/ma_crossover.toml\", \"{root}/strategies/rsi_mean_reversion.toml\", \
         \"{root}/strategies/bollinger_breakout.toml\", \"{root}/strategies/sentiment_momentum.toml\", \
         \"{root}/strategies/model_trend.toml\", {:?}, {:?}]\n[venue]\nlatency = \"250ms\"\n\
         [[analytics]]\nname = \"bars7\"\nbars = {{ kind = \"ticks\", size = \"7\" }}\n\
         [analytics.values]\nmacd = \"macd(close, 5, 13, 4)\"\nsent = \"sentiment_ema(3)\"\n",
        dir.join("limit.toml").display().to_string(),
        dir.join("expr.toml").display().to_string()
    );
    std::fs::write(dir.join("app.toml"), app).unwrap();
    config::load_with_env(Some(&dir.join("app.toml")), &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn bytes(out: &[Output]) -> Vec<u8> {
    let mut b = Vec::new();
    for o in out {
        b.extend(o.to_json());
        b.push(b'\n');
    }
    b
}

fn checkpoint_of(engine: &Engine, fp: &str) -> Vec<u8> {
    Checkpoint {
        format: FORMAT,
        group: "g".into(),
        cluster: "c".into(),
        inputs: BTreeMap::new(),
        outputs: BTreeMap::new(),
        engine: engine.state(fp),
    }
    .encode()
}

#[test]
fn restored_engine_continues_exactly_at_every_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let fp = config_fingerprint(&cfg.engine_spec());
    let inputs = inputs();
    let n = inputs.len();

    let mut whole = Engine::new(&cfg.engine_spec()).unwrap();
    let mut expected = Vec::new();
    // Inputs right after which an order is on its way to the venue (latency).
    let mut in_flight = Vec::new();
    for (i, (k, o, b)) in inputs.iter().enumerate() {
        let before = expected.len();
        whole.on_message(*k, o, None, b, &mut expected);
        if expected[before..]
            .iter()
            .any(|o| String::from_utf8_lossy(&o.to_json()).contains("\"status\":\"new\""))
        {
            in_flight.push(i + 1);
        }
    }
    assert!(in_flight.len() > 10);
    let orders = expected
        .iter()
        .filter(|o| matches!(o, Output::Order(_)))
        .count();
    let fills = expected
        .iter()
        .filter(|o| matches!(o, Output::Fill(_)))
        .count();
    assert!(orders > 50 && fills > 20, "{orders} orders, {fills} fills");
    let expr_fills = expected
        .iter()
        .filter(|o| matches!(o, Output::Fill(f) if f.strategy == "expr_mix"))
        .count();
    assert!(
        expr_fills >= 4,
        "the expression strategy filled {expr_fills} times"
    );
    // Its [exits] traded too: venue exits and timed ones, with their state
    // (ATR, trade, legs) crossing the cuts; and the analytics stream ran.
    let exit_fills: BTreeMap<&str, usize> = expected
        .iter()
        .filter_map(|o| match o {
            Output::Fill(f) if f.strategy == "expr_mix" => ["sl", "tp", "trail", "exit:o"]
                .into_iter()
                .find(|k| f.order_id.ends_with(&format!(":{k}"))),
            _ => None,
        })
        .fold(BTreeMap::new(), |mut m, k| {
            *m.entry(k).or_default() += 1;
            m
        });
    assert!(exit_fills.len() >= 3, "exit fills by kind: {exit_fills:?}");
    let indicators = expected
        .iter()
        .filter(|o| matches!(o, Output::Indicator(_)))
        .count();
    assert!(indicators > 100, "{indicators} indicator messages");

    let cuts = [
        1,
        n / 9,
        in_flight[0],
        n / 4,
        in_flight[in_flight.len() / 3],
        n / 2,
        in_flight[2 * in_flight.len() / 3],
        2 * n / 3 + 1,
        *in_flight.last().unwrap(),
        n - 3,
    ];
    let (mut resting_seen, mut pending_seen) = (false, false);
    for cut in cuts {
        let mut first = Engine::new(&cfg.engine_spec()).unwrap();
        let mut out = Vec::new();
        for (k, o, b) in &inputs[..cut] {
            first.on_message(*k, o, None, b, &mut out);
        }
        let saved = checkpoint_of(&first, &fp);
        let debug = format!("{:?}", first.state(&fp));
        resting_seen |= debug.contains("resting: [Working");
        pending_seen |= debug.contains("pending: [((");
        drop(first);

        let ck = Checkpoint::decode(&saved).expect("decodes");
        let mut second = Engine::new(&cfg.engine_spec()).unwrap();
        second.restore(ck.engine, &fp).expect("restores");
        assert_eq!(
            checkpoint_of(&second, &fp),
            saved,
            "restored state re-encodes identically (cut {cut})"
        );
        for (k, o, b) in &inputs[cut..] {
            second.on_message(*k, o, None, b, &mut out);
        }
        assert_eq!(
            bytes(&out),
            bytes(&expected),
            "outputs after a restore at {cut} of {n}"
        );
        assert_eq!(
            checkpoint_of(&second, &fp),
            checkpoint_of(&whole, &fp),
            "final state (cut {cut})"
        );
        assert_eq!(
            serde_json::to_string(&second.summary()).unwrap(),
            serde_json::to_string(&whole.summary()).unwrap()
        );
    }
    assert!(
        resting_seen,
        "some cut had resting limit orders in its state"
    );
    assert!(pending_seen, "some cut had orders in flight in its state");
}

#[test]
fn a_torn_or_foreign_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let fp = config_fingerprint(&cfg.engine_spec());
    let mut e = Engine::new(&cfg.engine_spec()).unwrap();
    let mut out = Vec::new();
    for (k, o, b) in inputs().iter().take(500) {
        e.on_message(*k, o, None, b, &mut out);
    }
    let good = checkpoint_of(&e, &fp);
    assert!(Checkpoint::decode(&good).is_ok());
    let torn = &good[..good.len() - 10];
    assert!(Checkpoint::decode(torn).unwrap_err().contains("checksum"));
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    assert!(Checkpoint::decode(&flipped).is_err());
    assert!(Checkpoint::decode(b"{\"json\": true}")
        .unwrap_err()
        .contains("magic"));

    // A checkpoint written under another configuration is refused by name.
    let ck = Checkpoint::decode(&good).unwrap();
    let mut other = Engine::new(&cfg.engine_spec()).unwrap();
    let err = other.restore(ck.engine, "another-fingerprint").unwrap_err();
    assert!(err.contains("different configuration"), "{err}");
}
