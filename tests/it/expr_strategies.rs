//! The rule language against the built-in rules: the four default strategies,
//! re-expressed in `strategies/expr/`, trade the demo data exactly as the
//! built-ins do; the shipped expression examples load and trade.

use papertrader::config;
use papertrader::engine::{Engine, Output};

use super::engine_replay::inputs;

fn load(strategies: &[&str]) -> config::Loaded {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let env = vec![("PAPERTRADER__STRATEGIES".to_string(), strategies.join(","))];
    config::load_with_env(None, &env).unwrap_or_else(|e| panic!("{e}"))
}

/// Every output of a run over the demo data as JSON; a signal without the
/// fields that name how it was decided (`kind`, `strength`, `reason`).
fn outputs(cfg: &config::Loaded) -> Vec<serde_json::Value> {
    let mut engine = Engine::new(&cfg.engine_spec()).unwrap();
    let mut out = Vec::new();
    for (kind, origin, bytes) in &inputs() {
        engine.on_message(*kind, origin, None, bytes, &mut out);
    }
    out.iter()
        .map(|o| {
            let mut v: serde_json::Value = serde_json::from_slice(&o.to_json()).unwrap();
            if let Output::Signal(_) = o {
                let m = v.as_object_mut().unwrap();
                for k in ["kind", "strength", "reason"] {
                    m.remove(k);
                }
            }
            v
        })
        .collect()
}

#[test]
fn builtin_rules_and_their_expressions_trade_identically() {
    for name in [
        "ma_crossover",
        "rsi_mean_reversion",
        "bollinger_breakout",
        "sentiment_momentum",
    ] {
        let builtin = outputs(&load(&[&format!("strategies/{name}.toml")]));
        let expr = outputs(&load(&[&format!("strategies/expr/{name}.toml")]));
        let fills =
            |o: &[serde_json::Value]| o.iter().filter(|v| v.get("fill_id").is_some()).count();
        assert!(
            fills(&builtin) >= 2,
            "{name}: too few fills to compare ({})",
            fills(&builtin)
        );
        assert_eq!(builtin.len(), expr.len(), "{name}: output counts differ");
        for (i, (b, e)) in builtin.iter().zip(&expr).enumerate() {
            assert_eq!(b, e, "{name}: output {i} differs");
        }
    }
}

/// The fifth example: three entry conditions (trend, RSI, news sentiment) and
/// exits on the cross back, a trailing stop and a stop loss. On the demo data
/// every entry has positive smoothed sentiment and RSI below 70, and the
/// trailing stop is among the exits that fire.
#[test]
fn trend_news_enters_on_three_conditions_and_exits_on_its_trailing_stop() {
    let cfg = load(&["strategies/trend_news.toml"]);
    let mut engine = Engine::new(&cfg.engine_spec()).unwrap();
    let mut out = Vec::new();
    for (kind, origin, bytes) in &inputs() {
        engine.on_message(*kind, origin, None, bytes, &mut out);
    }
    let signals: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Signal(s) => Some(s),
            _ => None,
        })
        .collect();
    let entries: Vec<_> = signals
        .iter()
        .filter(|s| s.reason.contains_key("long_entry"))
        .collect();
    assert!(entries.len() >= 5, "{} entries", entries.len());
    for s in &entries {
        assert!(s.reason["ema(sentiment, 3)"] > 0.0, "{:?}", s.reason);
        assert!(s.reason["rsi(close, 14)"] < 70.0, "{:?}", s.reason);
        assert!(
            s.reason["ema(close, 20)"] > s.reason["ema(close, 60)"],
            "{:?}",
            s.reason
        );
    }
    let trailed = signals
        .iter()
        .filter(|s| s.reason.contains_key("long_exit"))
        .filter(|s| s.reason.get("from_best_pct").is_some_and(|v| *v > 0.25))
        .count();
    assert!(trailed >= 1, "the trailing stop never fired");
    let fills = out.iter().filter(|o| matches!(o, Output::Fill(_))).count();
    assert!(fills >= 10, "{fills} fills");
}
