//! Every operator and function against series worked out by hand, warm-up,
//! the clocks of prices and sentiment, shared nodes, errors and checkpoints.

use std::collections::BTreeMap;

use super::*;
use crate::config::ExprRule;
use crate::model::{Model, ModelError, Models};

fn no_models() -> impl FnMut(&str) -> Result<std::sync::Arc<Model>, ModelError> {
    |p: &str| {
        Err(ModelError {
            file: p.into(),
            problem: "no models here".into(),
            fix: String::new(),
        })
    }
}

fn compile_plain(r: &ExprRule) -> Result<(Program, Roots), KeyedError> {
    let mut m = no_models();
    compile(r, &mut m)
}

impl ExprStrategy {
    fn new_plain(r: &ExprRule) -> Result<Self, KeyedError> {
        ExprStrategy::new(r, &Models::new())
    }
}
use crate::domain::NANOS_PER_SEC;

fn price(ts_s: i64, close: f64) -> Input {
    Input::Price(PriceInput {
        ts: ts_s * NANOS_PER_SEC,
        open: close,
        high: close,
        low: close,
        close,
        volume: 1.0,
        bid: f64::NAN,
        ask: f64::NAN,
    })
}

fn sentiment(ts_s: i64, score: f64) -> Input {
    Input::Sentiment {
        ts: ts_s * NANOS_PER_SEC,
        score,
    }
}

/// The values of `src` (a number or a condition) over `events`; NaN prints as None.
fn run_with(
    src: &str,
    ty: Ty,
    params: &[(&str, f64)],
    lets: &[(&str, &str)],
    events: &[Input],
) -> Vec<Option<f64>> {
    let params: BTreeMap<String, f64> = params.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let lets: BTreeMap<String, String> = lets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut no_models = no_models();
    let mut b = program::Builder::new(&params, &lets, &mut no_models);
    let root = b
        .add("rule.long_entry", src, ty)
        .unwrap_or_else(|e| panic!("{src}: {e:?}"));
    let mut p = b.finish();
    events
        .iter()
        .map(|ev| {
            p.update(ev);
            let v = p.value(root);
            (!v.is_nan()).then_some(v)
        })
        .collect()
}

fn num(src: &str, closes: &[f64]) -> Vec<Option<f64>> {
    let evs: Vec<Input> = closes
        .iter()
        .enumerate()
        .map(|(i, &c)| price(i as i64, c))
        .collect();
    run_with(src, Ty::Num, &[], &[], &evs)
}

fn cond(src: &str, closes: &[f64]) -> Vec<Option<bool>> {
    let evs: Vec<Input> = closes
        .iter()
        .enumerate()
        .map(|(i, &c)| price(i as i64, c))
        .collect();
    run_with(src, Ty::Bool, &[], &[], &evs)
        .into_iter()
        .map(|v| v.map(|x| x != 0.0))
        .collect()
}

const N: Option<f64> = None;

#[test]
fn arithmetic_follows_precedence() {
    assert_eq!(
        num("close * 2 + 1", &[1.0, 3.0]),
        vec![Some(3.0), Some(7.0)]
    );
    assert_eq!(
        num("(close - 1) / 2", &[1.0, 5.0]),
        vec![Some(0.0), Some(2.0)]
    );
    assert_eq!(num("-close + 10", &[4.0]), vec![Some(6.0)]);
    assert_eq!(num("2 * 3 + close", &[1.0]), vec![Some(7.0)]);
}

#[test]
fn comparisons_and_logic() {
    let closes = [1.0, 3.0, 4.0, 5.0];
    // 2c + 1 > 7: 3, 7, 9, 11 -> f f t t; and not c == 4 -> f f f t.
    assert_eq!(
        cond("close * 2 + 1 > 7 and not (close == 4)", &closes),
        vec![Some(false), Some(false), Some(false), Some(true)]
    );
    assert_eq!(
        cond("close <= 3 or close >= 5", &closes),
        vec![Some(true), Some(true), Some(false), Some(true)]
    );
    assert_eq!(
        cond("close != 3", &closes),
        vec![Some(true), Some(false), Some(true), Some(true)]
    );
    assert_eq!(
        cond("close < 3", &closes),
        vec![Some(true), Some(false), Some(false), Some(false)]
    );
    assert_eq!(cond("true and close > 0", &[1.0]), vec![Some(true)]);
}

#[test]
fn index_is_the_value_n_updates_ago() {
    let closes = [1.0, 3.0, 4.0, 5.0];
    assert_eq!(num("close[2]", &closes), vec![N, N, Some(1.0), Some(3.0)]);
    assert_eq!(
        num("close[1]", &closes),
        vec![N, Some(1.0), Some(3.0), Some(4.0)]
    );
    assert_eq!(
        num("close[0]", &closes),
        vec![Some(1.0), Some(3.0), Some(4.0), Some(5.0)]
    );
    // Of an expression: (c - 1)[1].
    assert_eq!(
        num("(close - 1)[1]", &closes),
        vec![N, Some(0.0), Some(2.0), Some(3.0)]
    );
}

#[test]
fn crosses_fire_on_the_update_where_they_happen() {
    // cross_above(c, 3): prev c <= 3 and c > 3.
    // 1 -> (no previous), 3 -> 1<=3, 3>3 no; 4 -> 3<=3, 4>3 yes; 2 -> no; 5 -> 2<=3, 5>3 yes.
    let closes = [1.0, 3.0, 4.0, 2.0, 5.0];
    assert_eq!(
        cond("cross_above(close, 3)", &closes),
        vec![None, Some(false), Some(true), Some(false), Some(true)]
    );
    // cross_below(c, 3): prev c >= 3 and c < 3: only at the 2 (4>=3, 2<3).
    assert_eq!(
        cond("cross_below(close, 3)", &closes),
        vec![None, Some(false), Some(false), Some(true), Some(false)]
    );
    // Two series: c against c[1]... a cross of sma(2) over sma(3) by hand.
    // closes 5 4 3 4 6: sma2 = -, 4.5, 3.5, 3.5, 5; sma3 = -, -, 4, 3.667, 4.333.
    // Both known from the third; at the fifth: 3.5 <= 3.667 and 5 > 4.333.
    assert_eq!(
        cond(
            "cross_above(sma(close, 2), sma(close, 3))",
            &[5.0, 4.0, 3.0, 4.0, 6.0]
        ),
        vec![None, None, None, Some(false), Some(true)]
    );
}

#[test]
fn a_condition_is_unknown_until_every_indicator_in_it_is_warm() {
    // sma(c, 3) is known from the third update; `or` waits for both sides.
    assert_eq!(
        cond("close > 0 or sma(close, 3) > 100", &[1.0, 2.0, 3.0]),
        vec![None, None, Some(true)]
    );
    assert_eq!(
        num("sma(close, 2)", &[1.0, 3.0, 5.0]),
        vec![N, Some(2.0), Some(4.0)]
    );
    // rsi(2) by hand (Wilder, seeded with the mean of the first two changes):
    // changes +2, +2 -> rsi 100 at the third price; then -4: avg gain
    // (2*1 + 0)/2 = 1, avg loss (0*1 + 4)/2 = 2, rsi = 100 - 100/(1 + 0.5) = 33.33.
    let r = num("rsi(close, 2)", &[1.0, 3.0, 5.0, 1.0]);
    assert_eq!(&r[..3], &[N, N, Some(100.0)]);
    assert!((r[3].unwrap() - 100.0 / 3.0).abs() < 1e-9, "{r:?}");
}

#[test]
fn history_functions() {
    let closes = [1.0, 5.0, 3.0, 2.0];
    assert_eq!(
        num("highest(close, 3)", &closes),
        vec![N, N, Some(5.0), Some(5.0)]
    );
    assert_eq!(
        num("lowest(close, 3)", &closes),
        vec![N, N, Some(1.0), Some(2.0)]
    );
    // change(c, 2) = c - c[2]: 3 - 1, 2 - 5.
    assert_eq!(
        num("change(close, 2)", &closes),
        vec![N, N, Some(2.0), Some(-3.0)]
    );
}

#[test]
fn math_functions() {
    let closes = [1.0, 3.0, 5.0];
    // c > 2 ? max(c, 4) : min(c, -1)
    assert_eq!(
        num("if(close > 2, max(close, 4), min(close, -1))", &closes),
        vec![Some(-1.0), Some(4.0), Some(5.0)]
    );
    assert_eq!(
        num("abs(2 - close)", &closes),
        vec![Some(1.0), Some(1.0), Some(3.0)]
    );
}

#[test]
fn indicators_of_the_module() {
    // bb(2, k=1) of 1, 3: middle 2, sigma 1 (population), upper 3, lower 1, %b of 3 = 1.
    assert_eq!(
        num("bb_upper(close, 2, 1)", &[1.0, 3.0]),
        vec![N, Some(3.0)]
    );
    assert_eq!(
        num("bb_lower(close, 2, 1)", &[1.0, 3.0]),
        vec![N, Some(1.0)]
    );
    assert_eq!(
        num("bb_middle(close, 2, 1)", &[1.0, 3.0]),
        vec![N, Some(2.0)]
    );
    assert_eq!(
        num("bb_percent_b(close, 2, 1)", &[1.0, 3.0]),
        vec![N, Some(1.0)]
    );
    // ema(3) seeds with the mean of the first three (2), then alpha 0.5: (6 + 2) / 2 = 4.
    assert_eq!(
        num("ema(close, 3)", &[1.0, 2.0, 3.0, 6.0]),
        vec![N, N, Some(2.0), Some(4.0)]
    );
    // vwap() with volume 1: the running mean of prices.
    assert_eq!(num("vwap()", &[1.0, 3.0]), vec![Some(1.0), Some(2.0)]);
    // A duration window: sma over the last 2 s of event time (ticks 1 s apart).
    let t = num("sma(close, \"2s\")", &[1.0, 3.0, 5.0, 7.0]);
    assert!(t.iter().flatten().count() >= 2, "{t:?}");
    // macd and its parts are known once the slow EMA and the signal are.
    let m = num("macd_hist(close, 2, 3, 2)", &[1.0, 2.0, 4.0, 8.0, 16.0]);
    assert!(
        m[..3].iter().all(Option::is_none) && m[4].is_some(),
        "{m:?}"
    );
    assert!(num("zscore(close, 3)", &[1.0, 2.0, 3.0])[2].is_some());
}

#[test]
fn time_of_day_series() {
    let ev = [price(13 * 3600 + 25 * 60 + 7, 1.0)];
    assert_eq!(run_with("hour", Ty::Num, &[], &[], &ev), vec![Some(13.0)]);
    assert_eq!(run_with("minute", Ty::Num, &[], &[], &ev), vec![Some(25.0)]);
}

#[test]
fn sentiment_and_prices_keep_their_own_clocks() {
    // ema(sentiment, 1) is the reading itself. Ticks between two readings do
    // not count as readings: the cross compares -0.5 with 0.5.
    let evs = [
        sentiment(0, -0.5),
        price(1, 10.0),
        price(2, 11.0),
        sentiment(3, 0.5),
        price(4, 12.0),
    ];
    let v = run_with("cross_above(sentiment_ema(1), 0)", Ty::Bool, &[], &[], &evs);
    assert_eq!(v, vec![None, None, None, Some(1.0), Some(0.0)]);
    // A price condition keeps its value through a sentiment reading.
    let v = run_with("close > 10", Ty::Bool, &[], &[], &evs);
    assert_eq!(v, vec![None, Some(0.0), Some(1.0), Some(1.0), Some(1.0)]);
    // sentiment itself is the latest score.
    let v = run_with("sentiment", Ty::Num, &[], &[], &evs);
    assert_eq!(
        v,
        vec![Some(-0.5), Some(-0.5), Some(-0.5), Some(0.5), Some(0.5)]
    );
}

#[test]
fn params_and_lets() {
    let evs: Vec<Input> = [1.0, 3.0, 5.0]
        .iter()
        .enumerate()
        .map(|(i, &c)| price(i as i64, c))
        .collect();
    let v = run_with(
        "sma(close, fast) > level",
        Ty::Bool,
        &[("fast", 2.0), ("level", 3.0)],
        &[],
        &evs,
    );
    assert_eq!(v, vec![None, Some(0.0), Some(1.0)]);
    let v = run_with(
        "up and close > 2",
        Ty::Bool,
        &[],
        &[("up", "close > close[1]")],
        &evs,
    );
    assert_eq!(v, vec![None, Some(1.0), Some(1.0)]);
}

fn rule(entry: &str) -> ExprRule {
    ExprRule {
        long_entry: Some(entry.to_string()),
        ..ExprRule::default()
    }
}

#[test]
fn identical_sub_expressions_are_one_node() {
    let (one, _) = compile_plain(&rule("ema(close, 10) > 1")).unwrap();
    let mut two = rule("ema(close, 10) > 1");
    two.long_exit = Some("ema(close, 10) < 5".into());
    let (both, roots) = compile_plain(&two).unwrap();
    // close, ema, 1, > ; then 5 and < are new: two more nodes, not three.
    assert_eq!(both.len(), one.len() + 2, "{roots:?}");
    // A parameter is its value: ema(close, fast) with fast = 10 is ema(close, 10).
    two.params.insert("fast".into(), 10.0);
    two.long_exit = Some("ema(close, fast) > 1".into());
    let (same, roots) = compile_plain(&two).unwrap();
    assert_eq!(same.len(), one.len());
    assert_eq!(roots[0], roots[1]);
}

fn error(r: &ExprRule) -> KeyedError {
    compile_plain(r).expect_err("an error")
}

#[test]
fn errors_name_the_fault() {
    let e = error(&rule("cross_above(emaa(close, 10), ema(close, 30))"));
    assert_eq!(e.key, "rule.long_entry");
    assert_eq!(e.error.span, (12, 16));
    assert_eq!(
        e.error.message,
        "`emaa` is not a function; did you mean `ema`?"
    );

    let e = error(&rule("clsoe > 3"));
    assert_eq!(e.error.span, (0, 5));
    assert!(e.error.message.contains("did you mean `close`?"), "{e:?}");

    // A wrong argument type: a condition where a series goes.
    let e = error(&rule("sma(close > 1, 3) > 2"));
    assert_eq!(e.error.span, (4, 13));
    assert!(
        e.error
            .message
            .contains("argument 1 of `sma` must be a number"),
        "{e:?}"
    );

    // A count where a duration was given.
    let e = error(&rule("rsi(close, \"5m\") < 30"));
    assert!(
        e.error.message.contains("count of updates, not a duration"),
        "{e:?}"
    );

    // A condition that is a number.
    let e = error(&rule("ema(close, 10)"));
    assert!(e.error.message.contains("must be a condition"), "{e:?}");
    assert!(e.error.fix.contains("compare it"), "{e:?}");

    // Syntax.
    let e = error(&rule("close > "));
    assert!(e.error.message.contains("expected a value"), "{e:?}");

    // Arity, and an error inside a let names the let.
    let e = error(&rule("sma(close) > 1"));
    assert!(
        e.error.message.contains("takes 2 arguments, not 1"),
        "{e:?}"
    );
    let mut r = rule("up");
    r.lets.insert("up".into(), "close > sma(close, 0)".into());
    let e = error(&r);
    assert_eq!(e.key, "rule.let.up");
    assert!(e.error.message.contains("at least 1, not 0"), "{e:?}");
    r.lets.insert("up".into(), "down".into());
    r.lets.insert("down".into(), "up".into());
    assert!(error(&r).error.message.contains("defined through itself"));
}

#[test]
fn errors_render_with_line_column_and_caret() {
    let text = "name = \"x\"\nsymbols = [\"A\"]\n[rule]\nkind = \"expr\"\nlong_entry = \"close > emaa(close, 10)\"\n";
    let r = rule("close > emaa(close, 10)");
    let e = error(&r);
    let shown = render(&e, r.long_entry.as_deref().unwrap(), Some(text));
    // `emaa` starts at byte 8 of the expression; the string's text starts at column 15.
    assert_eq!(
        shown,
        "line 5, column 23: `emaa` is not a function; did you mean `ema`?\n    \
         long_entry = \"close > emaa(close, 10)\"\n                          ^^^^"
    );
    // Escaped quotes inside the TOML string shift the columns.
    let text = "[rule]\nlong_entry = \"sma(close, \\\"9x\\\") > 1\"\n";
    let r = rule("sma(close, \"9x\") > 1");
    let e = error(&r);
    let shown = render(&e, r.long_entry.as_deref().unwrap(), Some(text));
    assert!(shown.starts_with("line 2, column 26:"), "{shown}");
    assert!(
        shown.ends_with(&format!("\n    {}^^^^^^", " ".repeat(25))),
        "{shown}"
    );
}

fn tick(ts_s: i64, p: &str) -> crate::domain::Tick {
    crate::domain::Tick {
        symbol: "A".into(),
        ts: ts_s * NANOS_PER_SEC,
        price: p.parse().unwrap(),
        size: "1".parse().unwrap(),
        bid: None,
        ask: None,
    }
}

fn decisions(s: &mut ExprStrategy, prices: &[&str], from: i64) -> Vec<Option<(Side, bool)>> {
    prices
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let t = tick(from + i as i64, p);
            s.on_tick(&t, p.parse().unwrap())
                .map(|d| (d.side, d.close_only))
        })
        .collect()
}

#[test]
fn conditions_signal_when_they_become_true() {
    let mut r = rule("close > 3");
    r.long_exit = Some("close < 2".into());
    r.short_entry = Some("close < 1".into());
    let mut s = ExprStrategy::new(&r, &Models::new()).unwrap();
    let d = decisions(&mut s, &["1.5", "4", "5", "3", "4", "1.5", "0.5"], 0);
    let b = Some((Side::Buy, false));
    let exit = Some((Side::Sell, true));
    // 1.5: the exit condition rises from unknown (close only: no position to
    // close, so the engine orders nothing); 4: entry (once, not again at 5);
    // 3 ends it; 4 again: a new entry; 1.5: long exit; 0.5: the short entry
    // (and still the exit condition, which does not rise again).
    assert_eq!(
        d,
        vec![exit, b, None, None, b, exit, Some((Side::Sell, false))]
    );
    // A buy and a sell on the same update cancel out.
    let mut r = rule("close > 3");
    r.short_entry = Some("close > 3".into());
    let mut s = ExprStrategy::new(&r, &Models::new()).unwrap();
    assert_eq!(decisions(&mut s, &["1", "4"], 0), vec![None, None]);
}

#[test]
fn a_decision_carries_its_conditions_and_their_values() {
    let mut s =
        ExprStrategy::new_plain(&rule("close > sma(close, 2) and rsi(close, 2) >= 0")).unwrap();
    s.on_tick(&tick(0, "1"), 1.0);
    s.on_tick(&tick(1, "2"), 2.0);
    let d = s.on_tick(&tick(2, "4"), 4.0).expect("a buy");
    let keys: Vec<&str> = d.reason.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec![
            "close",
            "long_entry",
            "price",
            "rsi(close, 2)",
            "sma(close, 2)"
        ]
    );
    assert_eq!(d.reason["sma(close, 2)"], 3.0);
    assert_eq!(d.reason["long_entry"], 1.0);
}

#[test]
fn state_is_checkpointed_and_restored_exactly() {
    let mut r = rule("cross_above(ema(close, 3), sma(close, 4)) and highest(close, 3) > close[2]");
    r.long_exit = Some("cross_below(sentiment_ema(2), 0) or rsi(close, 3) > 80".into());
    let prices = [
        "10", "11", "9", "12", "13", "11", "10", "14", "15", "9", "8", "12", "16", "11",
    ];
    let mut whole = ExprStrategy::new(&r, &Models::new()).unwrap();
    let all = decisions(&mut whole, &prices, 0);
    let mut first = ExprStrategy::new(&r, &Models::new()).unwrap();
    let head = decisions(&mut first, &prices[..6], 0);
    let saved = first.save();
    let mut resumed = ExprStrategy::new(&r, &Models::new()).unwrap();
    resumed.restore(saved).unwrap();
    let tail = decisions(&mut resumed, &prices[6..], 6);
    assert_eq!([head, tail].concat(), all);
    assert!(
        all.iter().flatten().count() >= 2,
        "too few decisions to compare: {all:?}"
    );
    // A state of another rule is refused.
    let mut other = ExprStrategy::new_plain(&rule("close > 1")).unwrap();
    assert!(other.restore(whole.save()).is_err());
}

fn repo_file(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_docs_examples_and_the_shipped_expression_strategies_load() {
    let doc = repo_file("docs/strategies.md");
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("kind = \"expr\""))
        .collect();
    assert!(!blocks.is_empty(), "no expr example in docs/strategies.md");
    for b in blocks {
        crate::config::parse_strategy(b, "docs/strategies.md")
            .unwrap_or_else(|e| panic!("{e}\n{b}"));
    }
    for name in [
        "ma_crossover",
        "rsi_mean_reversion",
        "bollinger_breakout",
        "sentiment_momentum",
    ] {
        let file = format!("strategies/expr/{name}.toml");
        let s = crate::config::parse_strategy(&repo_file(&file), &file)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.rule.kind(), "expr");
    }
}

#[test]
fn a_strategy_file_error_is_shown_as_the_docs_show_it() {
    let text = "name = \"mine\"\nsymbols = [\"ACME\"]\n\n[rule]\nkind = \"expr\"\n\
                long_entry = \"cross_above(emaa(close, 10), ema(close, 30))\"\n\
                [sizing]\nmode = \"fixed_quantity\"\nquantity = \"1\"\n";
    let e = crate::config::parse_strategy(text, "strategies/mine.toml").unwrap_err();
    let shown = e.to_string();
    let doc = repo_file("docs/strategies.md");
    assert!(
        doc.contains(&shown),
        "docs/strategies.md does not show:\n{shown}"
    );
    assert!(shown.contains("line 6, column 27"), "{shown}");
}

#[test]
fn an_expr_rule_needs_a_condition() {
    let text = "name = \"x\"\nsymbols = [\"A\"]\n[rule]\nkind = \"expr\"\n[sizing]\nmode = \"fixed_quantity\"\nquantity = \"1\"\n";
    let e = crate::config::parse_strategy(text, "x.toml").unwrap_err();
    assert_eq!(e.key, "rule.long_entry");
    assert!(e.problem.contains("no condition"), "{e}");
    // An unknown key in [rule] is named.
    let text = text.replace(
        "kind = \"expr\"\n",
        "kind = \"expr\"\nlong_entri = \"close > 1\"\n",
    );
    let e = crate::config::parse_strategy(&text, "x.toml").unwrap_err();
    assert!(
        e.key.contains("long_entri") || e.problem.contains("long_entri"),
        "{e}"
    );
}

#[test]
fn position_series_follow_the_engine_position() {
    let d = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
    let mut r = rule("close > 1000");
    // A stop loss at -2 %, a time stop after 3 updates, a 1 % trailing stop.
    r.long_exit = Some("unrealized_pct < -2 or bars_since_entry >= 3 or from_best_pct > 1".into());
    let mut s = ExprStrategy::new(&r, &Models::new()).unwrap();
    let mut step = |qty: &str, cost: &str, p: &str, i: i64| {
        s.set_position(d(qty), d(cost));
        s.on_tick(&tick(i, p), p.parse().unwrap()).map(|x| {
            (
                x.side,
                x.close_only,
                x.reason.get("unrealized_pct").copied(),
            )
        })
    };
    // Flat: the exit is unknown (no entry), so nothing.
    assert_eq!(step("0", "0", "100", 0), None);
    // Long 10 at 100: bars 0, 1 at 101 (best 101), then 99.5: -0.5 %, but 1.49 % below the best.
    assert_eq!(step("10", "100", "100", 1), None);
    assert_eq!(step("10", "100", "101", 2), None);
    let x = step("10", "100", "99.5", 3).expect("the trailing stop");
    assert_eq!((x.0, x.1), (Side::Sell, true));
    assert!((x.2.unwrap() + 0.5).abs() < 1e-9, "{x:?}");
    // Flat again, then a new long: the clock restarts; the time stop after 3 updates.
    assert_eq!(step("0", "0", "100", 4), None);
    assert_eq!(step("5", "100", "100", 5), None);
    assert_eq!(step("5", "100", "100.1", 6), None);
    assert_eq!(step("5", "100", "100.2", 7), None);
    assert_eq!(
        step("5", "100", "100.3", 8).map(|x| (x.0, x.1)),
        Some((Side::Sell, true))
    );
    // A short's unrealized P&L has the other sign: short at 100, price 103 -> -3 %.
    let mut r = rule("close > 1000");
    r.short_exit = Some("unrealized_pct < -2".into());
    let mut s = ExprStrategy::new(&r, &Models::new()).unwrap();
    s.set_position(d("-10"), d("100"));
    assert!(s.on_tick(&tick(0, "101"), 101.0).is_none());
    s.set_position(d("-10"), d("100"));
    let x = s.on_tick(&tick(1, "103"), 103.0).expect("the short's stop");
    assert_eq!((x.side, x.close_only), (Side::Buy, true));
}

#[test]
fn model_scores_are_the_models_own_over_the_same_features() {
    let spec = format!(
        "{}/../../models/trend_sentiment.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut models = Models::new();
    let r = rule(&format!("model(\"{spec}\") > 0.6"));
    let (mut p, roots) =
        compile(&r, &mut |path| models.load(path)).unwrap_or_else(|e| panic!("{e:?}"));
    let model = models.get(&spec).unwrap();
    // The reference: a pipeline of the spec's features and Model::score.
    let mut features = crate::features::FeaturePipeline::new();
    let slots = features.register_all(&model.spec.features);
    let mut row = Vec::new();
    let text = repo_file("data/synthetic_ticks.csv");
    let mut scored = 0;
    for (i, line) in text
        .lines()
        .skip(1)
        .filter(|l| l.contains(",ACME,"))
        .take(800)
        .enumerate()
    {
        let f: Vec<&str> = line.split(',').collect();
        let (ts, price, size): (i64, f64, f64) = (
            f[0].parse::<i64>().unwrap() * 1_000_000,
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        let ev = if i % 7 == 3 {
            let score = ((i as f64) * 0.37).sin();
            features.on_sentiment(score);
            Input::Sentiment { ts, score }
        } else {
            features.on_tick(ts, price, size);
            Input::Price(PriceInput {
                ts,
                open: price,
                high: price,
                low: price,
                close: price,
                volume: size,
                bid: f64::NAN,
                ask: f64::NAN,
            })
        };
        p.update(&ev);
        // Nodes: the model, 0.6, the comparison.
        let got = p.value(0);
        let want = features
            .gather(&slots, &mut row)
            .then(|| model.score(&row).unwrap());
        match want {
            Some(w) => {
                // The program scores with a stateful tract plan (`Scorer`), the
                // reference with `Model::score`: equal to f32 precision.
                assert!(
                    (got - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "event {i}: {got} vs {w}"
                );
                scored += 1;
            }
            None => assert!(got.is_nan(), "event {i}: {got}"),
        }
    }
    assert!(scored > 100, "only {scored} scored events");
    assert!(roots[0].is_some());
    // A spec that does not load names the key and the file.
    let e = compile(&rule("model(\"models/nope.toml\") > 0.5"), &mut |path| {
        models.load(path)
    })
    .unwrap_err();
    assert_eq!(e.key, "rule.long_entry");
    assert_eq!(e.error.span, (6, 24));
    assert!(e.error.message.contains("models/nope.toml"), "{e:?}");
}

#[test]
fn model_features_by_name() {
    // return_1 = p / p[1] - 1: 101 / 100 - 1, 99 / 101 - 1.
    let r = num("feature(\"return_1\")", &[100.0, 101.0, 99.0]);
    assert_eq!(r[0], None);
    assert!((r[1].unwrap() - 0.01).abs() < 1e-12, "{r:?}");
    assert!(
        (r[2].unwrap() - (99.0 / 101.0 - 1.0)).abs() < 1e-12,
        "{r:?}"
    );
    // Every feature of the bundled model is reachable by its name.
    let spec = format!(
        "{}/../../models/trend_sentiment.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let model = Models::new().load(&spec).unwrap();
    for f in &model.spec.features {
        let e = format!("feature(\"{}\") > -1000", f.name());
        compile_plain(&rule(&e)).unwrap_or_else(|e| panic!("{e:?}"));
    }
    let e = error(&rule("feature(\"return_x\") > 0"));
    assert!(
        e.error
            .message
            .contains("\"return_x\" is not a model feature"),
        "{e:?}"
    );
    let e = error(&rule("feature(\"rsi_0\") > 0"));
    assert!(e.error.message.contains("at least 1"), "{e:?}");
}
