//! `[exits]` through the engine, without Kafka: stop loss and take profit as
//! reduce-only venue orders of one group, a trailing stop, the time stop and
//! the minimal-ROI table, each worked out by hand on a synthesized book with
//! a spread of 2 ticks (a trade at p puts the best bid at p - 0.01 and the best
//! ask at p + 0.01, 100 deep).
//!
//! The rule is an SMA(2)/SMA(5) crossover: the ticks 10 10 10 10 9.9 10.5
//! make it buy 50 at the sixth tick (origin `in-0-5`), at the ask 10.51.

use papertrader::config::{self, Loaded};
use papertrader::domain::{Origin, Side};
use papertrader::engine::{Engine, Output};
use papertrader::wire::InputKind;
use rust_decimal::Decimal;
use std::str::FromStr;

const T: i64 = 1_700_000_000_000;
const VENUE: &str = "[venue]\nlatency = \"0ms\"\n[venue.default]\ntick_size = \"0.01\"\n\
                     taker_fee_bps = \"0\"\n[venue.default.synth]\nspread = \"2 ticks\"\n\
                     levels = 1\ndepth = \"100\"\n";
const ENTRY: [&str; 6] = ["10", "10", "10", "10", "9.9", "10.5"];

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap().normalize()
}

const CROSSOVER: &str = "kind = \"ma_crossover\"\nfast = 2\nslow = 5";

fn load_in(dir: &std::path::Path, exits: &str) -> Loaded {
    load_rule(dir, CROSSOVER, VENUE, exits)
}

fn load_rule(dir: &std::path::Path, rule: &str, venue: &str, exits: &str) -> Loaded {
    let s = dir.join("s.toml");
    std::fs::write(
        &s,
        format!(
            "name = \"ex\"\nsymbols = [\"XYZ\"]\n[rule]\n{rule}\n\
             [sizing]\nmode = \"fixed_quantity\"\nquantity = \"50\"\n[exits]\n{exits}"
        ),
    )
    .unwrap();
    let app = dir.join("app.toml");
    std::fs::write(
        &app,
        format!(
            "strategies = [{:?}]\n[engine]\npnl_every_ticks = 0\n{venue}",
            s.display().to_string()
        ),
    )
    .unwrap();
    config::load_with_env(Some(&app), &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// Feed `prices` one second apart; the outputs.
fn run(exits: &str, prices: &[&str]) -> Vec<Output> {
    run_rule(CROSSOVER, VENUE, exits, prices)
}

fn run_rule(rule: &str, venue: &str, exits: &str, prices: &[&str]) -> Vec<Output> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load_rule(dir.path(), rule, venue, exits);
    let mut engine = Engine::new(&cfg.engine_spec()).unwrap();
    let mut out = Vec::new();
    for (i, px) in prices.iter().enumerate() {
        let origin = Origin {
            topic: "in".into(),
            partition: 0,
            offset: i as i64,
        };
        let json = format!(
            r#"{{"symbol":"XYZ","ts":{},"price":"{px}","size":"1"}}"#,
            T + (i as i64 + 1) * 1000
        );
        engine.on_message(InputKind::Prices, &origin, None, json.as_bytes(), &mut out);
    }
    out
}

fn with(tail: &[&'static str]) -> Vec<&'static str> {
    ENTRY.iter().chain(tail).copied().collect()
}

/// (order id, status, reason) of the exit orders.
fn exit_orders(out: &[Output]) -> Vec<(String, String, Option<String>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Order(m) if !m.order_id.ends_with(":o") => {
                Some((m.order_id.clone(), m.status.to_string(), m.reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn fills(out: &[Output]) -> Vec<(String, Decimal, Decimal)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Fill(f) => Some((f.order_id.clone(), f.qty, f.price.normalize())),
            _ => None,
        })
        .collect()
}

fn last_position(out: &[Output]) -> Decimal {
    out.iter()
        .rev()
        .find_map(|o| match o {
            Output::Pnl(p) => Some(p.position),
            _ => None,
        })
        .unwrap()
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn a_gap_through_the_stop_fills_at_the_book_and_cancels_the_take_profit() {
    // Entry 10.51: stop 10.51 * 0.98 = 10.2998 -> 10.29 (down), take profit
    // 10.51 * 1.03 = 10.8253 -> 10.83 (up). The next trade gaps to 10.00
    // (SMA2 10.25 still above SMA5 10.08: no signal): the stop triggers and
    // sells 50 at the bid around 10.00, 9.99, not at its stop.
    let out = run(
        "stop_loss = \"2%\"\ntake_profit = \"3%\"",
        &with(&["10.00"]),
    );
    let (sl, tp) = ("ex:XYZ:in-0-5:sl", "ex:XYZ:in-0-5:tp");
    assert_eq!(
        exit_orders(&out),
        [
            (s(sl), s("new"), None),
            (s(sl), s("accepted"), None),
            (s(tp), s("new"), None),
            (s(tp), s("accepted"), None),
            (s(sl), s("triggered"), None),
            (s(sl), s("filled"), None),
            (
                s(tp),
                s("cancelled"),
                Some(format!("oco: {sl} of the same group filled"))
            ),
        ]
    );
    let orders: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Order(m) if m.status == papertrader::domain::OrderStatus::New => {
                Some(m.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(orders[1].order_type.to_string(), "stop");
    assert_eq!(orders[1].stop_price, Some(d("10.29")));
    assert_eq!(orders[2].order_type.to_string(), "limit");
    assert_eq!(orders[2].price, Some(d("10.83")));
    assert_eq!(
        fills(&out),
        [
            (s("ex:XYZ:in-0-5:o"), d("50"), d("10.51")),
            (s(sl), d("50"), d("9.99")),
        ]
    );
    assert_eq!(last_position(&out), d("0"));
    let json = String::from_utf8(
        out.iter()
            .find_map(|o| match o {
                Output::Order(m) if m.order_id == sl => Some(Output::Order(m.clone()).to_json()),
                _ => None,
            })
            .unwrap(),
    )
    .unwrap();
    assert!(
        json.contains(r#""type":"stop","price":null,"stop_price":"10.29""#),
        "{json}"
    );
}

#[test]
fn a_take_profit_fills_as_maker_at_its_limit() {
    // 10.9 trades through the take profit at 10.83: all 50 fill there.
    let out = run(
        "stop_loss = \"2%\"\ntake_profit = \"3%\"",
        &with(&["10.7", "10.9"]),
    );
    let f = fills(&out);
    assert_eq!(f[1], (s("ex:XYZ:in-0-5:tp"), d("50"), d("10.83")));
    let maker = out.iter().any(|o| matches!(o, Output::Fill(f) if f.order_id.ends_with(":tp") && f.liquidity.as_str() == "maker"));
    assert!(maker);
    let statuses: Vec<_> = exit_orders(&out).into_iter().map(|o| (o.0, o.1)).collect();
    assert_eq!(
        statuses.last().unwrap(),
        &(s("ex:XYZ:in-0-5:sl"), s("cancelled"))
    );
}

#[test]
fn a_trailing_stop_follows_the_high() {
    // 1% behind the best trade since the order arrived (10.5): 10.8 moves it
    // to 10.692, 11.0 to 10.89; 10.95 is above; 10.89 triggers it and the sell
    // takes the bid around 10.89, 10.88. The crossover stays up all along
    // (at 10.89: SMA2 10.92 > SMA5 10.828).
    let out = run(
        "trailing_stop = \"1%\"",
        &with(&["10.8", "11.0", "10.95", "10.89"]),
    );
    let trail = "ex:XYZ:in-0-5:trail";
    assert_eq!(fills(&out)[1], (s(trail), d("50"), d("10.88")));
    let kinds: Vec<_> = exit_orders(&out).into_iter().map(|o| o.1).collect();
    assert_eq!(kinds, ["new", "accepted", "triggered", "filled"]);
    let t = out.iter().find_map(|o| match o {
        Output::Order(m) if m.order_id == trail => Some(m.order_type.to_string()),
        _ => None,
    });
    assert_eq!(t.as_deref(), Some("trailing_stop"));
    // One tick earlier nothing has triggered.
    let early = run("trailing_stop = \"1%\"", &with(&["10.8", "11.0", "10.95"]));
    assert_eq!(fills(&early).len(), 1);
}

#[test]
fn the_time_stop_closes_after_n_updates_with_a_signal_of_its_own() {
    // Entry at the sixth tick; the eighth is the second update in the trade.
    let out = run("time_stop = 2", &with(&["10.6", "10.7"]));
    let sig = out.iter().find_map(|o| match o {
        Output::Signal(s) if s.signal_id.ends_with(":exit") => Some(s.clone()),
        _ => None,
    });
    let sig = sig.expect("an exit signal");
    assert_eq!(sig.signal_id, "ex:XYZ:in-0-7:exit");
    assert_eq!(sig.side, Side::Sell);
    assert_eq!(sig.reason["bars_in_trade"], 2.0);
    assert_eq!(sig.reason["time_stop_bars"], 2.0);
    assert_eq!(
        fills(&out)[1],
        (s("ex:XYZ:in-0-7:exit:o"), d("50"), d("10.69"))
    );
    assert_eq!(last_position(&out), d("0"));
    // One update fewer: still long.
    let out = run("time_stop = 2", &with(&["10.6"]));
    assert_eq!(last_position(&out), d("50"));
}

#[test]
fn the_roi_table_closes_when_the_return_reaches_the_row_in_force() {
    // Ticks are 1 s apart. At +1 s the return (10.70 - 10.51) / 10.51 = 1.81%
    // is below the first row's 5%; at +2 s the "2s" row (1%) applies.
    let roi = "[exits.roi]\n\"0\" = \"5%\"\n\"2s\" = \"1%\"";
    let out = run(roi, &with(&["10.70", "10.70"]));
    let sig = out.iter().find_map(|o| match o {
        Output::Signal(s) if s.signal_id.ends_with(":exit") => Some(s.clone()),
        _ => None,
    });
    let sig = sig.expect("an exit signal");
    assert_eq!(sig.signal_id, "ex:XYZ:in-0-7:exit");
    assert_eq!(sig.reason["roi_threshold"], 0.01);
    assert!((sig.reason["return"] - 0.19 / 10.51).abs() < 1e-12);
    assert_eq!(fills(&out)[1].2, d("10.69"));
}

#[test]
fn the_rules_own_exit_takes_the_resting_exits_with_it() {
    // 9.0 crosses SMA2 (9.75) below SMA5 (9.88): the rule sells 50 at the
    // bid 8.99. The stop (20%: 8.408 -> 8.40) is not reached; once flat, the
    // venue cancels both reduce-only exits: no short, no order left.
    let out = run(
        "stop_loss = \"20%\"\ntake_profit = \"20%\"",
        &with(&["9.0", "8.0"]),
    );
    let f = fills(&out);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[1], (s("ex:XYZ:in-0-6:o"), d("50"), d("8.99")));
    let cancelled: Vec<_> = exit_orders(&out)
        .into_iter()
        .filter(|o| o.1 == "cancelled")
        .map(|o| (o.0, o.2.unwrap()))
        .collect();
    let why = s("reduce-only: the position is closed");
    assert_eq!(
        cancelled,
        [
            (s("ex:XYZ:in-0-5:tp"), why.clone()),
            (s("ex:XYZ:in-0-5:sl"), why)
        ]
    );
    assert_eq!(last_position(&out), d("0"));
}

#[test]
fn a_bad_exit_stops_loading_with_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("bad.toml");
    std::fs::write(
        &s,
        "name = \"ex\"\nsymbols = [\"XYZ\"]\n[rule]\nkind = \"ma_crossover\"\nfast = 2\nslow = 5\n\
         [sizing]\nmode = \"fixed_quantity\"\nquantity = \"50\"\n[exits]\nstop_loss = \"2 pips\"\n",
    )
    .unwrap();
    let app = dir.path().join("app.toml");
    std::fs::write(
        &app,
        format!("strategies = [{:?}]\n", s.display().to_string()),
    )
    .unwrap();
    let e = config::load_with_env(Some(&app), &[])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("bad.toml") && e.contains("exits.stop_loss"),
        "{e}"
    );
    assert!(e.contains("\"1.5atr\""), "{e}");
}

#[test]
fn close_at_end_closes_what_is_open_after_the_last_event_and_counts_it_apart() {
    // The entry's long of 50 is still open after 10.6: the backtest closes it
    // at the bid around the last trade, 10.59, with an order of its own.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ticks.csv");
    let mut text = String::from("ts,symbol,price,size\n");
    for (i, px) in with(&["10.6"]).iter().enumerate() {
        text.push_str(&format!("{},XYZ,{px},1\n", T + (i as i64 + 1) * 1000));
    }
    std::fs::write(&csv, text).unwrap();
    let cfg = load_in(dir.path(), "close_at_end = true");
    let bt = papertrader::backtest::run_files(
        &cfg,
        std::slice::from_ref(&csv),
        Default::default(),
        false,
    )
    .unwrap();
    let fills: Vec<_> = bt
        .collector
        .trades
        .iter()
        .map(|t| {
            (
                t.fill.order_id.clone(),
                t.fill.qty,
                t.fill.price.normalize(),
            )
        })
        .collect();
    assert_eq!(
        fills,
        [
            (s("ex:XYZ:ticks-0-5:o"), d("50"), d("10.51")),
            (s("ex:XYZ:end:o"), d("50"), d("10.59")),
        ]
    );
    let report = papertrader::report::Report::new(&bt);
    let r = &report.strategies["ex"];
    assert_eq!((r.fills, r.fills_at_end), (2, 1));
    assert_eq!(bt.summary.strategies[0].symbols["XYZ"].position, d("0"));
    // Without the key the position stays open, marked at the last price.
    let cfg = load_in(dir.path(), "");
    let bt = papertrader::backtest::run_files(&cfg, &[csv], Default::default(), false).unwrap();
    assert_eq!(bt.collector.trades.len(), 1);
    assert_eq!(bt.summary.strategies[0].symbols["XYZ"].position, d("50"));
}

#[test]
fn with_latency_a_stop_that_fills_first_leaves_the_rules_close_nothing_to_sell() {
    // Orders reach the venue 1.5 s after they are sent; ticks are 1 s apart.
    // The buy sent at 6 s fills at 7.5 s at the ask around 10.5 (10.51); its
    // exits go out with the tick at 8 s (origin in-0-7) and arrive at 9.5 s:
    // stop 10.51 * 0.95 = 9.9845 -> 9.98. At 9 s (10.0) SMA2 10.2 falls below
    // SMA5 10.26: the rule sells 50, arriving at 10.5 s. At 10 s the trade at
    // 9.5 triggers the stop first (sold at 9.49). The rule's sell, reduce-only
    // since the strategy cannot go short, then finds nothing to sell: no
    // short position appears.
    let venue = VENUE.replace("latency = \"0ms\"", "latency = \"1500ms\"");
    let out = run_rule(
        CROSSOVER,
        &venue,
        "stop_loss = \"5%\"\ntake_profit = \"5%\"",
        &with(&["10.5", "10.4", "10.0", "9.5", "9.6"]),
    );
    assert_eq!(
        fills(&out),
        [
            (s("ex:XYZ:in-0-5:o"), d("50"), d("10.51")),
            (s("ex:XYZ:in-0-7:sl"), d("50"), d("9.49")),
        ]
    );
    let rule_sell: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Order(m) if m.order_id == "ex:XYZ:in-0-8:o" => {
                Some((m.status.to_string(), m.reason.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rule_sell,
        [
            (s("new"), None),
            (s("rejected"), Some(s("reduce-only: no position to reduce")))
        ]
    );
    assert_eq!(last_position(&out), d("0"));
}

#[test]
fn a_position_stopped_out_and_reopened_on_one_tick_gets_new_exits() {
    // Buy the dip: long when the price falls below 10.3 (10.25: ask 10.26,
    // stop 10.26 * 0.98 = 10.0548 -> 10.05). At 10.0 the stop fills first
    // (bid 9.99), then the rule buys again (ask 10.01): a new trade with its
    // own stop, 10.01 * 0.98 = 9.8098 -> 9.80, which 9.79 then triggers.
    let rule = "kind = \"expr\"\nlong_entry = \"close < 10.3\"";
    let out = run_rule(
        rule,
        VENUE,
        "stop_loss = \"2%\"",
        &["10.5", "10.25", "10.4", "10.0", "9.79"],
    );
    assert_eq!(
        fills(&out),
        [
            (s("ex:XYZ:in-0-1:o"), d("50"), d("10.26")),
            (s("ex:XYZ:in-0-1:sl"), d("50"), d("9.99")),
            (s("ex:XYZ:in-0-3:o"), d("50"), d("10.01")),
            (s("ex:XYZ:in-0-3:sl"), d("50"), d("9.78")),
        ]
    );
    let stops: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Order(m)
                if m.status == papertrader::domain::OrderStatus::New
                    && m.order_id.ends_with(":sl") =>
            {
                Some(m.stop_price.unwrap())
            }
            _ => None,
        })
        .collect();
    assert_eq!(stops, [d("10.05"), d("9.80")]);
    assert_eq!(last_position(&out), d("0"));
}

#[test]
fn close_at_end_waits_for_orders_in_flight() {
    // Orders take 1.5 s; the buy sent at the sixth tick (6 s) is still on its
    // way after the last tick (7 s). The end lets it arrive (it fills at the
    // ask around 10.5, 10.51), then closes the long it made (bid 10.49).
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ticks.csv");
    let mut text = String::from("ts,symbol,price,size\n");
    for (i, px) in with(&["10.5"]).iter().enumerate() {
        text.push_str(&format!("{},XYZ,{px},1\n", T + (i as i64 + 1) * 1000));
    }
    std::fs::write(&csv, text).unwrap();
    let venue = VENUE.replace("latency = \"0ms\"", "latency = \"1500ms\"");
    let cfg = load_rule(dir.path(), CROSSOVER, &venue, "close_at_end = true");
    let bt = papertrader::backtest::run_files(&cfg, &[csv], Default::default(), false).unwrap();
    let fills: Vec<_> = bt
        .collector
        .trades
        .iter()
        .map(|t| (t.fill.order_id.clone(), t.fill.price.normalize()))
        .collect();
    assert_eq!(
        fills,
        [
            (s("ex:XYZ:ticks-0-5:o"), d("10.51")),
            (s("ex:XYZ:end:o"), d("10.49")),
        ]
    );
    assert_eq!(bt.summary.strategies[0].symbols["XYZ"].position, d("0"));
}
