//! What the dashboard draws of each strategy's own indicators: the rule's
//! moving averages, RSI or Bollinger bands as rule-language expressions
//! (`ma_crossover`: `fast` and `slow`; `rsi_mean_reversion`: `rsi`;
//! `bollinger_breakout`: `upper`, `middle`, `lower`), computed in the monitor
//! on the admitted trades, on the strategy's bars when it has `[bars]`. They
//! are drawn, not published: the engine's outputs do not change. The
//! expression language's averages may differ from a rule's in their first
//! values (an EMA's seed); after the warm-up they are the same series.

use std::collections::BTreeMap;

use crate::analytics::{Analytics, AnalyticsConfig};
use crate::config::{MaKind, RuleConfig, StrategyConfig, Window};

/// A window as an expression argument: a count, or a duration in seconds.
fn arg(w: &Window) -> String {
    match w {
        Window::Events(n) => n.to_string(),
        Window::Time(ns) => format!("\"{}s\"", (ns / 1_000_000_000).max(1)),
    }
}

/// The expressions of a rule's indicators, by name.
pub fn plots(rule: &RuleConfig) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    match rule {
        RuleConfig::MaCrossover(r) => {
            let f = match r.average {
                MaKind::Sma => "sma",
                MaKind::Ema => "ema",
            };
            v.insert("fast".into(), format!("{f}(close, {})", arg(&r.fast)));
            v.insert("slow".into(), format!("{f}(close, {})", arg(&r.slow)));
        }
        RuleConfig::RsiMeanReversion(r) => {
            v.insert("rsi".into(), format!("rsi(close, {})", r.period));
        }
        RuleConfig::BollingerBreakout(r) => {
            for (name, f) in [
                ("upper", "bb_upper"),
                ("middle", "bb_middle"),
                ("lower", "bb_lower"),
            ] {
                v.insert(name.into(), format!("{f}(close, {}, {})", r.period, r.k));
            }
        }
        _ => {}
    }
    v
}

/// One analytics entry per strategy with indicators, named after it.
pub fn strategy_plots(strategies: &[StrategyConfig]) -> Option<Analytics> {
    let cfg: Vec<AnalyticsConfig> = strategies
        .iter()
        .filter_map(|s| {
            let values = plots(&s.rule);
            (!values.is_empty()).then(|| AnalyticsConfig {
                name: s.name.clone(),
                symbols: s.symbols.clone(),
                bars: s.bars.clone(),
                values,
            })
        })
        .collect();
    if cfg.is_empty() {
        return None;
    }
    match Analytics::new(&cfg) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "the dashboard cannot draw the strategies' indicators");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_kind_names_its_indicators_as_expressions() {
        let rule = |t: &str| -> RuleConfig { toml::from_str(t).unwrap() };
        let ma = plots(&rule(
            "kind = 'ma_crossover'\nfast = 5\nslow = '1h'\naverage = 'ema'",
        ));
        assert_eq!(ma["fast"], "ema(close, 5)");
        assert_eq!(ma["slow"], "ema(close, \"3600s\")");
        let bb = plots(&rule("kind = 'bollinger_breakout'\nperiod = 20\nk = 2.0"));
        assert_eq!(bb["upper"], "bb_upper(close, 20, 2)");
        assert_eq!(bb.len(), 3);
        let rsi = plots(&rule(
            "kind = 'rsi_mean_reversion'\nperiod = 14\noversold = 30.0\noverbought = 70.0",
        ));
        assert_eq!(rsi["rsi"], "rsi(close, 14)");
        // Every one compiles in the rule language.
        for values in [ma, bb, rsi] {
            let cfg = AnalyticsConfig {
                name: "x".into(),
                symbols: vec![],
                bars: None,
                values,
            };
            assert!(Analytics::new(&[cfg]).is_ok());
        }
    }
}
