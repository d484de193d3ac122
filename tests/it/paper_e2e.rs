//! Paper mode end to end through a real Kafka-protocol broker (embedded tansu):
//! known inputs in, outputs read back from the topics and checked against
//! quantities and P&L worked out by hand.

use std::time::Duration;

use crate::common::*;
use papertrader::paper::{self, StopWhen};
use serde_json::Value;

fn stop_after(n: u64) -> StopWhen {
    StopWhen {
        idle: Some(Duration::from_secs(20)),
        max_events: Some(n),
        startup_grace: None,
    }
}

const CROSS: &str = r#"
name = "cross"
symbols = ["AAA", "BBB"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 3
[account]
starting_cash = "100000"
[sizing]
mode = "fixed_quantity"
quantity = "10"
"#;

fn by_field<'a>(v: &'a [Value], field: &str, value: &str) -> Vec<&'a Value> {
    v.iter().filter(|m| m[field] == value).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossover_trades_exactly_as_worked_out_by_hand() {
    let b = broker(3).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &bs,
        &format!(
            "[engine]\npnl_every_ticks = 0\nmax_batch = 4\n{}",
            exact_venue("10")
        ),
        &[CROSS],
    );

    // The venue synthesizes a book around each trade p: bid p - 0.01, ask
    // p + 0.01, deep; no latency; taker fee 10 bp. AAA: 3 2 1 5 6 1. With SMA(2)
    // and SMA(3):
    //   tick 3: fast 1.5 < slow 2 (first comparison, no signal)
    //   tick 4: fast 3 > slow 2.667: buy 10 at the ask 5.01, fee 10*5.01*10bp = 0.0501
    //   tick 6: fast 3.5 < slow 4: sell 10 at the bid 0.99, fee 0.0099;
    //           realized (0.99 - 5.01) * 10 = -40.2
    // BBB: 10 10 10 11 (one cross up at 11: buy 10 @ 11.01, fee 0.1101), then held.
    let p = producer(&bs);
    let mut msgs = Vec::new();
    for (i, px) in ["3", "2", "1", "5", "6", "1"].iter().enumerate() {
        msgs.push(tick("AAA", 1_700_000_000_000 + i as i64 * 1000, px, "1"));
    }
    for (i, px) in ["10", "10", "10", "11"].iter().enumerate() {
        msgs.push(tick("BBB", 1_700_000_000_000 + i as i64 * 1000, px, "1"));
    }
    produce(&p, "live_prices", &msgs).await;

    let summary = paper::run(&cfg, &bs, stop_after(10), std::future::pending())
        .await
        .unwrap();

    let signals = read_json(&bs, "signals");
    let orders = read_json(&bs, "orders");
    let fills = read_json(&bs, "fills");
    let pnl = read_json(&bs, "pnl");

    // Signals: AAA buy, AAA sell, BBB buy.
    let aaa: Vec<_> = by_field(&signals, "symbol", "AAA");
    assert_eq!(aaa.len(), 2, "{signals:?}");
    assert_eq!(aaa[0]["side"], "buy");
    assert_eq!(aaa[1]["side"], "sell");
    assert_eq!(aaa[0]["reason"]["fast"], 3.0);
    assert_eq!(by_field(&signals, "symbol", "BBB").len(), 1);

    // Orders: new, accepted, filled for each of three market orders.
    assert_eq!(orders.len(), 9, "{orders:?}");
    for status in ["new", "accepted", "filled"] {
        assert_eq!(by_field(&orders, "status", status).len(), 3, "{status}");
    }
    let filled: Vec<_> = by_field(&orders, "status", "filled")
        .into_iter()
        .filter(|o| o["symbol"] == "AAA")
        .collect();
    assert_eq!(filled[0]["avg_price"], "5.01");
    assert_eq!(filled[0]["leaves_qty"], "0");

    // Fills, exactly.
    let fa = by_field(&fills, "symbol", "AAA");
    assert_eq!(fa.len(), 2);
    assert_eq!(
        (
            fa[0]["side"].as_str(),
            fa[0]["qty"].as_str(),
            fa[0]["price"].as_str(),
            fa[0]["fee"].as_str()
        ),
        (Some("buy"), Some("10"), Some("5.01"), Some("0.0501"))
    );
    assert_eq!(
        (
            fa[1]["side"].as_str(),
            fa[1]["qty"].as_str(),
            fa[1]["price"].as_str(),
            fa[1]["fee"].as_str()
        ),
        (Some("sell"), Some("10"), Some("0.99"), Some("0.0099"))
    );
    let fb = by_field(&fills, "symbol", "BBB");
    assert_eq!(fb.len(), 1);
    assert_eq!(
        (
            fb[0]["qty"].as_str(),
            fb[0]["price"].as_str(),
            fb[0]["fee"].as_str()
        ),
        (Some("10"), Some("11.01"), Some("0.1101"))
    );

    // Slippage against the best ask at arrival: none (one level deep).
    assert_eq!(fa[0]["slippage"], "0");
    assert_eq!(fa[0]["liquidity"], "taker");

    // P&L after the last AAA fill: flat, realized -40.2, fees 0.06.
    let last_aaa = by_field(&pnl, "symbol", "AAA").pop().unwrap().clone();
    assert_eq!(last_aaa["position"], "0");
    assert_eq!(last_aaa["realized"], "-40.20");
    assert_eq!(last_aaa["fees"], "0.0600");

    // The account: 100000 - 50.1 - 0.0501 + 9.9 - 0.0099 - 110.1 - 0.1101
    // = 99849.5299 cash, plus 10 BBB marked at 11.01 (a fill marks the position
    // at its price until the next trade) = 99959.6299 equity.
    let s = &summary.strategies[0];
    assert_eq!(s.cash.normalize().to_string(), "99849.5299");
    assert_eq!(s.equity.normalize().to_string(), "99959.6299");
    assert_eq!(s.realized.normalize().to_string(), "-40.2");
    assert_eq!(s.fees.normalize().to_string(), "0.1701");
    assert_eq!(s.symbols["AAA"].counts.fills, 2);
    assert_eq!(s.symbols["BBB"].position.to_string(), "10");
    assert_eq!(summary.inputs.total_processed(), 10);

    // Offsets were committed for everything consumed.
    assert_eq!(committed_total(&bs, "test", "live_prices", 3), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentiment_momentum_trades_on_news() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let strat = r#"
name = "news"
symbols = ["NWS"]
[rule]
kind = "sentiment_momentum"
smoothing = 1
enter = 0.3
exit = -0.3
[sizing]
mode = "fixed_notional"
notional = "1000"
"#;
    let cfg = config(
        dir.path(),
        &bs,
        &format!(
            "[engine]\npnl_every_ticks = 1\nmax_batch = 1\n{}",
            exact_venue("0")
        ),
        &[strat],
    );
    let p = producer(&bs);
    let engine_cfg = cfg.clone();
    let bs2 = bs.clone();
    let run = tokio::spawn(async move {
        paper::run(&engine_cfg, &bs2, stop_after(5), std::future::pending()).await
    });
    let sentiment = |ts: i64, score: f64| {
        (
            "NWS".to_string(),
            format!(
                r#"{{"symbol":"NWS","ts":{ts},"score":{score},"source":"test","headline":"h"}}"#
            ),
        )
    };
    // A price first, and wait until the engine has seen it (its P&L snapshot).
    produce(&p, "live_prices", &[tick("NWS", 1_000, "20", "5")]).await;
    wait_for_messages(&bs, "pnl", 1).await;
    // Neutral, then good news: smoothed sentiment crosses 0.3: buy 1000/20 = 50
    // at the synthesized ask 20.01.
    produce(
        &p,
        "news_sentiment",
        &[sentiment(2_000, 0.0), sentiment(3_000, 0.6)],
    )
    .await;
    wait_for_messages(&bs, "fills", 1).await;
    // The price moves to 22, bad news: sell 50 at the bid 21.99, realized
    // (21.99 - 20.01) * 50 = 99.
    produce(&p, "live_prices", &[tick("NWS", 4_000, "22", "5")]).await;
    wait_for_messages(&bs, "pnl", 3).await;
    produce(&p, "news_sentiment", &[sentiment(5_000, -0.6)]).await;

    let summary = run.await.unwrap().unwrap();
    let fills = read_json(&bs, "fills");
    assert_eq!(fills.len(), 2, "{fills:?}");
    assert_eq!(
        (
            fills[0]["side"].as_str(),
            fills[0]["qty"].as_str(),
            fills[0]["price"].as_str()
        ),
        (Some("buy"), Some("50"), Some("20.01"))
    );
    assert_eq!(
        (
            fills[1]["side"].as_str(),
            fills[1]["qty"].as_str(),
            fills[1]["price"].as_str()
        ),
        (Some("sell"), Some("50"), Some("21.99"))
    );
    let signals = read_json(&bs, "signals");
    assert_eq!(signals[0]["reason"]["sentiment"], 0.6);
    let s = &summary.strategies[0];
    assert_eq!(s.realized.normalize().to_string(), "99");
    assert_eq!(s.equity.normalize().to_string(), "100099");
    assert_eq!(s.symbols["NWS"].counts.sentiment, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_valid_and_invalid_input_every_message_accounted_for() {
    let b = broker(2).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &bs,
        // No latency: every fill happens on the tick that caused it, so there is
        // one P&L snapshot per valid tick.
        &format!(
            "[input]\nsymbols = [\"AAA\", \"BBB\"]\nmax_out_of_order = \"10s\"\n[engine]\npnl_every_ticks = 1\nmax_batch = 7\n{}",
            exact_venue("10")
        ),
        &[CROSS],
    );
    let p = producer(&bs);
    let k = |s: &str| s.to_string();
    let invalid: Vec<(String, String, &str)> = vec![
        (k("AAA"), k("{not json"), "malformed_json"),
        (
            k("AAA"),
            k(r#"{"symbol":"AAA","ts":1700000000000,"size":"1"}"#),
            "missing_field",
        ),
        (
            k("AAA"),
            k(r#"{"symbol":"AAA","ts":1700000000000,"price":"0","size":"1"}"#),
            "invalid_price",
        ),
        (
            k("AAA"),
            k(r#"{"symbol":"AAA","ts":1700000000000,"price":"-3","size":"1"}"#),
            "invalid_price",
        ),
        (
            k("AAA"),
            k(r#"{"symbol":"AAA","ts":1700000000000,"price":"NaN","size":"1"}"#),
            "invalid_field",
        ),
        (
            k("ZZZ"),
            k(r#"{"symbol":"ZZZ","ts":1700000000000,"price":"1","size":"1"}"#),
            "unknown_symbol",
        ),
        (
            k("AAA"),
            k(r#"{"symbol":"AAA","ts":"not a time","price":"1","size":"1"}"#),
            "invalid_timestamp",
        ),
        (k("AAA"), k(""), "empty"),
    ];
    let mut msgs = Vec::new();
    let mut valid = 0;
    for i in 0..40i64 {
        let sym = if i % 2 == 0 { "AAA" } else { "BBB" };
        msgs.push(tick(
            sym,
            1_700_000_100_000 + i * 1000,
            &format!("{}", 100 + (i % 7)),
            "2",
        ));
        valid += 1;
        if i % 5 == 0 {
            let (key, payload, _) = &invalid[(i / 5) as usize % invalid.len()];
            msgs.push((key.clone(), payload.clone()));
        }
        if i == 12 {
            // Year 2191: within the accepted range, but far ahead of the wall
            // clock (input.max_ahead). Admitted, it would put every later AAA
            // tick out of order; refused, the later ticks are all processed.
            msgs.push(tick("AAA", 7_000_000_000_000, "100", "1"));
        }
    }
    // Far out of order: 100 s before the newest AAA tick.
    msgs.push(tick("AAA", 1_700_000_000_000, "100", "1"));
    let n_invalid = msgs.len() - valid;
    produce(&p, "live_prices", &msgs).await;
    // Garbage bytes that are not UTF-8.
    p.send(
        rdkafka::producer::FutureRecord::to("live_prices")
            .key("BBB")
            .payload(&[0xff, 0xfe, 0x00][..]),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let total = msgs.len() as u64 + 1;

    let summary = paper::run(&cfg, &bs, stop_after(total), std::future::pending())
        .await
        .unwrap();
    let dead = read_json(&bs, "dead_letters");
    assert_eq!(dead.len(), n_invalid + 1, "{dead:?}");
    assert_eq!(summary.inputs.total_dead() as usize, n_invalid + 1);
    assert_eq!(summary.inputs.total_processed(), valid as u64);
    assert_eq!(
        summary.inputs.total_processed() + summary.inputs.total_dead(),
        total
    );
    // Every dead letter carries its reason, its origin and its original bytes.
    let mut reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    reasons.sort();
    let mut expected: Vec<&str> = (0..8).map(|j| invalid[j].2).collect();
    expected.push("out_of_order");
    expected.push("ahead_of_clock");
    expected.push("malformed_json"); // the non-UTF-8 bytes
    expected.sort();
    assert_eq!(reasons, expected);
    for d in &dead {
        assert_eq!(d["topic"], "live_prices");
        assert!(d["offset"].as_i64().unwrap() >= 0);
        assert!(d["payload"].is_string() || d["payload_hex"].is_string());
        assert!(!d["detail"].as_str().unwrap().is_empty());
    }
    assert!(dead.iter().any(|d| d["payload_hex"] == "fffe00"));
    assert!(dead.iter().any(|d| d["payload"] == "{not json"));
    // Every valid tick was processed: one P&L snapshot per tick (pnl_every_ticks = 1)
    // or per fill.
    let pnl = read_json(&bs, "pnl");
    assert_eq!(pnl.len(), valid, "one P&L snapshot per valid tick");
    assert_eq!(committed_total(&bs, "test", "live_prices", 2), total as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_continues_from_the_committed_offsets() {
    let b = broker(2).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &bs,
        "[engine]\npnl_every_ticks = 1\nmax_batch = 3\n",
        &[CROSS],
    );
    let p = producer(&bs);
    let msgs: Vec<_> = (0..20i64)
        .map(|i| {
            tick(
                if i % 2 == 0 { "AAA" } else { "BBB" },
                1_700_000_000_000 + i * 1000,
                "10",
                "1",
            )
        })
        .collect();
    produce(&p, "live_prices", &msgs).await;

    let first = paper::run(&cfg, &bs, stop_after(8), std::future::pending())
        .await
        .unwrap();
    assert_eq!(first.inputs.total_processed(), 8);
    assert_eq!(committed_total(&bs, "test", "live_prices", 2), 8);
    let second = paper::run(&cfg, &bs, stop_after(12), std::future::pending())
        .await
        .unwrap();
    // The second run continues the first one's checkpointed state: its counts
    // include the first run's 8.
    assert_eq!(second.inputs.total_processed(), 20);
    assert_eq!(committed_total(&bs, "test", "live_prices", 2), 20);
    // One P&L snapshot per tick over both runs: nothing consumed twice, nothing skipped.
    assert_eq!(read_json(&bs, "pnl").len(), 20);
}
