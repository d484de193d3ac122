//! The simulated venue end to end through a real Kafka-protocol broker
//! (embedded tansu): depth snapshots and updates on `order_book`, trades on
//! `live_prices`, and the order lifecycle and fills read back from `orders` and
//! `fills`, checked against a walk of the book worked out by hand.

use std::str::FromStr;
use std::time::Duration;

use crate::common::*;
use papertrader::paper::{self, StopWhen};
use rust_decimal::Decimal;
use serde_json::Value;

const T: i64 = 1_700_000_000_000;

const TAKER: &str = r#"
name = "taker"
symbols = ["XYZ"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 3
[account]
starting_cash = "100000"
[sizing]
mode = "fixed_quantity"
quantity = "250"
"#;

fn book(ts: i64, kind: &str, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> (String, String) {
    let side = |l: &[(&str, &str)]| {
        l.iter()
            .map(|(p, s)| format!(r#"["{p}","{s}"]"#))
            .collect::<Vec<_>>()
            .join(",")
    };
    (
        "XYZ".into(),
        format!(
            r#"{{"symbol":"XYZ","ts":{ts},"type":"{kind}","bids":[{}],"asks":[{}]}}"#,
            side(bids),
            side(asks)
        ),
    )
}

fn d(v: &Value) -> Decimal {
    Decimal::from_str(
        v.as_str()
            .unwrap_or_else(|| panic!("not a decimal string: {v}")),
    )
    .unwrap()
    .normalize()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap().normalize()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_and_trades_in_orders_and_fills_out() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &bs,
        "[engine]\npnl_every_ticks = 0\nmax_batch = 1\n\
         [venue]\nlatency = \"1ms\"\n[venue.default]\ntick_size = \"0.01\"\nlot_size = \"1\"\ntaker_fee_bps = \"10\"\n",
        &[TAKER],
    );
    let p = producer(&bs);
    let run_cfg = cfg.clone();
    let bs2 = bs.clone();
    let run = tokio::spawn(async move {
        let stop = StopWhen {
            idle: Some(Duration::from_secs(20)),
            max_events: Some(11),
            startup_grace: None,
        };
        paper::run(&run_cfg, &bs2, stop, std::future::pending()).await
    });

    // Prices and depth arrive on two topics; each step waits until the engine
    // has consumed (committed) the previous one, so the interleaving is the one written here.
    let snapshot = book(
        T,
        "snapshot",
        &[("9.99", "100"), ("9.98", "100"), ("9.97", "100")],
        &[("10.01", "100"), ("10.02", "100"), ("10.03", "100")],
    );
    produce(&p, "order_book", &[snapshot]).await;
    wait_committed(&bs, "test", "order_book", 1, 1).await;
    // SMA(2) vs SMA(3): 10 10 9.9 puts fast below slow (9.95 < 9.967); 10.5
    // crosses it above (10.2 > 10.133): buy 250 at market. With 1 ms of latency
    // the order reaches the venue at T+4001 and executes before the trade at
    // T+5000, walking the asks: 100 @ 10.01, 100 @ 10.02, 50 @ 10.03.
    let ticks = [(1, "10"), (2, "10"), (3, "9.9"), (4, "10.5"), (5, "10.5")];
    let msgs: Vec<_> = ticks
        .iter()
        .map(|(s, px)| tick("XYZ", T + s * 1000, px, "1"))
        .collect();
    produce(&p, "live_prices", &msgs).await;
    wait_committed(&bs, "test", "live_prices", 1, 5).await;
    // The 10.01 level comes back; 10.02 stays taken, 10.03 keeps 50.
    produce(
        &p,
        "order_book",
        &[book(T + 6000, "update", &[], &[("10.01", "100")])],
    )
    .await;
    wait_committed(&bs, "test", "order_book", 1, 2).await;
    // 9: fast 9.75 < slow 10: sell 250 at T+7001 into the bids: 100 @ 9.99,
    // 100 @ 9.98, 50 @ 9.97. Then 10.5: fast 9.75 > slow 9.5: buy 250 at T+9001
    // into what is left of the asks: 100 @ 10.01 and 50 @ 10.03; the other 100
    // find no liquidity and are cancelled.
    let ticks = [(7, "9"), (8, "9"), (9, "10.5"), (10, "10.5")];
    let msgs: Vec<_> = ticks
        .iter()
        .map(|(s, px)| tick("XYZ", T + s * 1000, px, "1"))
        .collect();
    produce(&p, "live_prices", &msgs).await;

    let summary = run.await.unwrap().unwrap();
    let orders = read_json(&bs, "orders");
    let fills = read_json(&bs, "fills");

    let o1 = "taker:XYZ:live_prices-0-3:o";
    let o2 = "taker:XYZ:live_prices-0-5:o";
    let o3 = "taker:XYZ:live_prices-0-7:o";
    let got: Vec<(String, String, i64, String, String)> = orders
        .iter()
        .map(|o| {
            (
                o["event_id"].as_str().unwrap().to_string(),
                o["status"].as_str().unwrap().to_string(),
                papertrader::wire::parse_ts_str(o["ts"].as_str().unwrap()).unwrap() / 1_000_000 - T,
                o["filled_qty"].as_str().unwrap().to_string(),
                o["leaves_qty"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |id: &str, status: &str, ms: i64, filled: &str, leaves: &str| {
        (
            format!("{id}:{status}"),
            status.rsplit(':').next_back().unwrap().to_string(),
            ms,
            filled.to_string(),
            leaves.to_string(),
        )
    };
    let want = vec![
        want(o1, "new", 4000, "0", "250"),
        want(o1, "accepted", 4001, "0", "250"),
        want(o1, "partially_filled:1", 4001, "100", "150"),
        want(o1, "partially_filled:2", 4001, "200", "50"),
        want(o1, "filled", 4001, "250", "0"),
        want(o2, "new", 7000, "0", "250"),
        want(o2, "accepted", 7001, "0", "250"),
        want(o2, "partially_filled:1", 7001, "100", "150"),
        want(o2, "partially_filled:2", 7001, "200", "50"),
        want(o2, "filled", 7001, "250", "0"),
        want(o3, "new", 9000, "0", "250"),
        want(o3, "accepted", 9001, "0", "250"),
        want(o3, "partially_filled:1", 9001, "100", "150"),
        want(o3, "partially_filled:2", 9001, "150", "100"),
        want(o3, "cancelled", 9001, "150", "0"),
    ];
    let got_norm: Vec<_> = got
        .iter()
        .map(|(id, st, ms, f, l)| {
            (
                id.clone(),
                st.clone(),
                *ms,
                dec(f).to_string(),
                dec(l).to_string(),
            )
        })
        .collect();
    assert_eq!(got_norm, want, "{orders:#?}");
    let sides: Vec<&str> = orders.iter().map(|o| o["side"].as_str().unwrap()).collect();
    assert_eq!(&sides[..5], ["buy"; 5]);
    assert_eq!(&sides[5..10], ["sell"; 5]);
    assert_eq!(&sides[10..], ["buy"; 5]);
    // The average price of the first order: (1001 + 1002 + 501.5) / 250.
    assert_eq!(d(&orders[4]["avg_price"]), dec("10.018"));
    assert_eq!(
        orders[14]["reason"],
        "market order: book exhausted, remainder cancelled"
    );

    // Fills, level by level: (order, qty, price, slippage, fee at 10 bp).
    let got: Vec<(String, Decimal, Decimal, Decimal, Decimal, String)> = fills
        .iter()
        .map(|f| {
            (
                f["fill_id"].as_str().unwrap().to_string(),
                d(&f["qty"]),
                d(&f["price"]),
                d(&f["slippage"]),
                d(&f["fee"]),
                f["liquidity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let f = |o: &str, n: u32, q: &str, px: &str, slip: &str, fee: &str| {
        (
            format!("{o}:f{n}"),
            dec(q),
            dec(px),
            dec(slip),
            dec(fee),
            "taker".to_string(),
        )
    };
    let want = vec![
        f(o1, 1, "100", "10.01", "0", "1.001"),
        f(o1, 2, "100", "10.02", "0.01", "1.002"),
        f(o1, 3, "50", "10.03", "0.02", "0.5015"),
        f(o2, 1, "100", "9.99", "0", "0.999"),
        f(o2, 2, "100", "9.98", "0.01", "0.998"),
        f(o2, 3, "50", "9.97", "0.02", "0.4985"),
        f(o3, 1, "100", "10.01", "0", "1.001"),
        f(o3, 2, "50", "10.03", "0.02", "0.5015"),
    ];
    assert_eq!(got, want, "{fills:#?}");

    // The account: bought 250 for 2504.5, sold 250 for 2495.5 (realized -9),
    // bought 150 for 1502.5; fees 2.5045 + 2.4955 + 1.5025 = 6.5025.
    // Cash 100000 - 2504.5 + 2495.5 - 1502.5 - 6.5025 = 98481.9975.
    let s = &summary.strategies[0];
    assert_eq!(s.cash.normalize(), dec("98481.9975"));
    assert_eq!(s.realized.normalize(), dec("-9"));
    assert_eq!(s.fees.normalize(), dec("6.5025"));
    assert_eq!(s.symbols["XYZ"].position.normalize(), dec("150"));
    assert_eq!(s.symbols["XYZ"].counts.orders, 3);
    assert_eq!(summary.inputs.processed["order_book"], 2);
}
