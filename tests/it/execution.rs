//! The engine's use of the simulated venue, without Kafka: resting limit
//! orders, risk rejections as order events, and the drawdown kill switch, each
//! worked out by hand.

use papertrader::config::{self, Loaded};
use papertrader::domain::Origin;
use papertrader::engine::{Engine, Output};
use papertrader::wire::InputKind;
use rust_decimal::Decimal;
use std::str::FromStr;

const T: i64 = 1_700_000_000_000;

fn load(venue: &str, strategy: &str) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.toml");
    std::fs::write(&s, strategy).unwrap();
    let app = dir.path().join("app.toml");
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

struct Run {
    engine: Engine,
    out: Vec<Output>,
    offset: i64,
}

impl Run {
    fn new(cfg: &Loaded) -> Self {
        Run {
            engine: Engine::new(&cfg.engine_spec()).unwrap(),
            out: Vec::new(),
            offset: 0,
        }
    }

    fn send(&mut self, kind: InputKind, json: String) {
        let origin = Origin {
            topic: "in".into(),
            partition: 0,
            offset: self.offset,
        };
        self.offset += 1;
        self.engine
            .on_message(kind, &origin, None, json.as_bytes(), &mut self.out);
    }

    fn tick(&mut self, s: i64, price: &str, size: &str) {
        self.send(
            InputKind::Prices,
            format!(
                r#"{{"symbol":"XYZ","ts":{},"price":"{price}","size":"{size}"}}"#,
                T + s * 1000
            ),
        );
    }

    fn orders(&self) -> Vec<(String, String, Option<String>)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Order(m) => {
                    Some((m.order_id.clone(), m.status.to_string(), m.reason.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn fills(&self) -> Vec<(String, Decimal, Decimal, &'static str)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Fill(f) => Some((
                    f.order_id.clone(),
                    f.qty,
                    f.price.normalize(),
                    f.liquidity.as_str(),
                )),
                _ => None,
            })
            .collect()
    }
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap().normalize()
}

const NO_LATENCY: &str = "[venue]\nlatency = \"0ms\"\n[venue.default]\ntick_size = \"0.01\"\n\
                          taker_fee_bps = \"0\"\n[venue.default.synth]\nspread = \"2 ticks\"\n\
                          levels = 1\ndepth = \"100\"\n";

#[test]
fn limit_orders_rest_in_the_queue_and_fill_as_maker() {
    // Limit buys join the best bid. The synthesized book around 10.5 has its
    // best bid at 10.49 with 100 ahead of us.
    let cfg = load(
        NO_LATENCY,
        r#"
name = "maker"
symbols = ["XYZ"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 5
[sizing]
mode = "fixed_quantity"
quantity = "50"
[orders]
type = "limit"
tif = "gtc"
"#,
    );
    let mut r = Run::new(&cfg);
    // SMA(2) vs SMA(5): 10 10 10 10 9.9 puts fast below slow, 10.5 crosses up
    // (10.2 > 10.08): a buy limit of 50 at the bid 10.49. The ticks after it
    // keep fast above slow (10.495 > 10.178, 10.49 > 10.276, 10.445 > 10.356).
    for (s, px) in [
        (1, "10"),
        (2, "10"),
        (3, "10"),
        (4, "10"),
        (5, "9.9"),
        (6, "10.5"),
    ] {
        r.tick(s, px, "1");
    }
    let id = "maker:XYZ:in-0-5:o";
    assert_eq!(
        r.orders(),
        [
            (id.into(), "new".into(), None),
            (id.into(), "accepted".into(), None)
        ]
    );
    // A trade at our price of 60 leaves 40 of the 100 ahead of us. (Each trade
    // also rebuilds the synthesized book around it; our order keeps its place:
    // only trades move a queue in a synthesized book.)
    r.tick(7, "10.49", "60");
    assert!(r.fills().is_empty());
    // 70 more at 10.49: 40 drain the queue, 30 fill us (partially).
    r.tick(8, "10.49", "70");
    // A trade through our price (below it) fills the remaining 20 at our limit.
    r.tick(9, "10.40", "1");
    assert_eq!(
        r.fills(),
        [
            (id.to_string(), d("30"), d("10.49"), "maker"),
            (id.to_string(), d("20"), d("10.49"), "maker"),
        ]
    );
    let statuses: Vec<String> = r.orders().into_iter().map(|o| o.1).collect();
    assert_eq!(statuses, ["new", "accepted", "partially_filled", "filled"]);
}

#[test]
fn risk_rejections_are_order_events_with_their_reason() {
    let cfg = load(
        NO_LATENCY,
        r#"
name = "capped"
symbols = ["XYZ"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 3
[sizing]
mode = "fixed_quantity"
quantity = "50"
[risk]
max_order_qty = "40"
"#,
    );
    let mut r = Run::new(&cfg);
    for (s, px) in [(1, "10"), (2, "10"), (3, "9.9"), (4, "10.5")] {
        r.tick(s, px, "1");
    }
    let o = r.orders();
    assert_eq!(o.len(), 2, "{o:?}");
    assert_eq!(o[1].1, "rejected");
    assert_eq!(
        o[1].2.as_deref(),
        Some("risk: order qty 50 exceeds max_order_qty 40")
    );
    assert!(r.fills().is_empty());
    assert_eq!(
        r.engine.summary().strategies[0].symbols["XYZ"]
            .counts
            .rejected,
        1
    );
}

#[test]
fn kill_switch_flattens_and_halts_at_the_drawdown_limit() {
    let cfg = load(
        NO_LATENCY,
        r#"
name = "risky"
symbols = ["XYZ"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 3
[account]
starting_cash = "10000"
[sizing]
mode = "fixed_quantity"
quantity = "100"
[risk]
max_drawdown = "0.05"
"#,
    );
    let mut r = Run::new(&cfg);
    // Buy 100 at the ask 10.51 (the book around 10.5, one level of 100).
    for (s, px) in [(1, "10"), (2, "10"), (3, "9.9"), (4, "10.5")] {
        r.tick(s, px, "1");
    }
    assert_eq!(
        r.fills(),
        [(
            "risky:XYZ:in-0-3:o".to_string(),
            d("100"),
            d("10.51"),
            "taker"
        )]
    );
    // Peak equity was 10000 (the fill costs 1 of spread: 9999 after it). At 10
    // the position is worth 1000: equity 10000 - 1051 + 1000 = 9949, a 0.51%
    // drawdown: nothing. At 5: 10000 - 1051 + 500 = 9449, 5.51% below the
    // 10000 peak: before the rule sees the tick (it would sell too), the kill
    // switch sells 100 at the bid 4.99 and halts.
    r.tick(5, "10", "1");
    assert_eq!(r.fills().len(), 1);
    r.tick(6, "5", "1");
    let fills = r.fills();
    assert_eq!(fills.len(), 2, "{fills:?}");
    assert_eq!(
        fills[1],
        (
            "risky:kill:in-0-5:XYZ".to_string(),
            d("100"),
            d("4.99"),
            "taker"
        )
    );
    let s = r.engine.summary();
    assert!(s.strategies[0].symbols["XYZ"].position.is_zero());
    // Later signals are published, their orders rejected: 5 5 then 8 crosses up.
    let before = r.orders().len();
    for (s, px) in [(7, "5"), (8, "5"), (9, "4"), (10, "8")] {
        r.tick(s, px, "1");
    }
    let later = &r.orders()[before..];
    assert!(!later.is_empty());
    assert_eq!(later.last().unwrap().1, "rejected");
    assert_eq!(
        later.last().unwrap().2.as_deref(),
        Some("risk: trading halted (kill switch)")
    );
    assert_eq!(r.fills().len(), 2);
}

#[test]
fn rules_on_tick_bars_see_bar_closes_only() {
    let cfg = load(
        NO_LATENCY,
        r#"
name = "bars"
symbols = ["XYZ"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 3
[sizing]
mode = "fixed_quantity"
quantity = "10"
[bars]
kind = "ticks"
size = "3"
"#,
    );
    let mut r = Run::new(&cfg);
    // Bars of three ticks; the first two ticks of each bar swing wildly (they
    // would cross the averages on a tick-level rule), the closes are 10 10 9.9
    // 10.5: SMA(2) crosses SMA(3) upwards only at the fourth close (10.2 > 10.133).
    let closes = ["10", "10", "9.9", "10.5"];
    let mut s = 0;
    for c in closes {
        for px in ["50", "1", c] {
            s += 1;
            r.tick(s, px, "1");
        }
    }
    let signals: Vec<_> = r
        .out
        .iter()
        .filter_map(|o| match o {
            Output::Signal(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(signals.len(), 1, "{signals:?}");
    assert_eq!(signals[0].origin, "in-0-11");
    assert!((signals[0].reason["fast"] - 10.2).abs() < 1e-12);
    assert!((signals[0].reason["slow"] - 30.4 / 3.0).abs() < 1e-12);
    // The order trades at the tick that completed the bar.
    assert_eq!(
        r.fills(),
        [(
            "bars:XYZ:in-0-11:o".to_string(),
            d("10"),
            d("10.51"),
            "taker"
        )]
    );
}

#[test]
fn fraction_of_equity_sizes_each_entry_from_the_equity_at_the_signal() {
    // Half of the equity at each buy signal, at the last trade price, rounded
    // down to the lot; fills at the synthesized ask/bid one tick away, taker
    // fee 10 bp.
    let venue = NO_LATENCY.replace("taker_fee_bps = \"0\"", "taker_fee_bps = \"10\"");
    let cfg = load(
        &venue,
        r#"
name = "half"
symbols = ["XYZ"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 3
[sizing]
mode = "fraction_of_equity"
fraction = "0.5"
[account]
starting_cash = "1000"
"#,
    );
    let mut r = Run::new(&cfg);
    // SMA(2) crosses above SMA(3) at 10.5 (10.2 > 10.133), below at 9 (10.25 <
    // 10.5), above again at 12 (10.5 > 10).
    for (s, px) in [
        (1, "10"),
        (2, "10"),
        (3, "9.9"),
        (4, "10.5"),
        (5, "11"),
        (6, "11.5"),
        (7, "9"),
        (8, "9"),
        (9, "12"),
    ] {
        r.tick(s, px, "1");
    }
    // Buy: 0.5 * 1000 / 10.5 = 47.6 -> 47 at 10.51: cash 1000 - 493.97 - 0.49397.
    // Sell 47 at 8.99: cash 505.53603 + 422.53 - 0.42253 = 927.6435.
    // Buy: 0.5 * 927.6435 / 12 = 38.65 -> 38 at 12.01.
    let fills: Vec<(Decimal, Decimal)> = r.fills().into_iter().map(|f| (f.1, f.2)).collect();
    assert_eq!(
        fills,
        [
            (d("47"), d("10.51")),
            (d("47"), d("8.99")),
            (d("38"), d("12.01"))
        ]
    );
    let s = &r.engine.summary().strategies[0];
    // 927.6435 - 38 * 12.01 - 0.45638 fee
    assert_eq!(s.cash.normalize(), d("470.80712"));
}

#[test]
fn all_the_equity_with_a_fee_buys_what_the_cash_pays_for() {
    // fraction 1.0 of 100,000 at the tick 10.5 targets 9,523; the buy takes
    // the ask 10.51 (2-tick spread) and pays 20 bps: 9,523 would cost
    // 9,523 * 10.51 * 1.002 = 100,289.68, more than the cash. Sized to the
    // cash instead: floor(100,000 / (10.51 * 1.002)) = floor(9,495.76) = 9,495
    // (9,496 would cost 100,002.57).
    let venue = "[venue]\nlatency = \"0ms\"\n[venue.default]\ntick_size = \"0.01\"\n\
                 taker_fee_bps = \"20\"\n[venue.default.synth]\nspread = \"2 ticks\"\n\
                 levels = 1\ndepth = \"1000000\"\n";
    let cfg = load(
        venue,
        r#"
name = "all_in"
symbols = ["XYZ"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 5
[account]
starting_cash = "100000"
[sizing]
mode = "fraction_of_equity"
fraction = "1.0"
"#,
    );
    let mut r = Run::new(&cfg);
    for (s, px) in [
        (1, "10"),
        (2, "10"),
        (3, "10"),
        (4, "10"),
        (5, "9.9"),
        (6, "10.5"),
    ] {
        r.tick(s, px, "1");
    }
    let statuses: Vec<String> = r.orders().into_iter().map(|o| o.1).collect();
    assert_eq!(statuses, ["new", "accepted", "filled"], "{:?}", r.orders());
    assert_eq!(
        r.fills(),
        [(
            "all_in:XYZ:in-0-5:o".to_string(),
            d("9495"),
            d("10.51"),
            "taker"
        )]
    );
    // Cash left: 100,000 - 9,495 * 10.51 - fee 199.585... >= 0.
    let cash = r
        .out
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::Pnl(p) => Some(p.account_cash),
            _ => None,
        })
        .unwrap();
    let fee = d("9495") * d("10.51") * d("0.002");
    assert_eq!(cash, d("100000") - d("9495") * d("10.51") - fee);
    assert!(
        cash >= Decimal::ZERO && cash < d("10.51") * d("1.002"),
        "{cash}"
    );
}

#[test]
fn last_price_fills_take_the_trade_price_with_no_spread() {
    // The same crossover as above: the buy at the tick 10.5 fills at 10.5, not
    // at the ask of a synthesized book; the sell at 9.0 with 1 tick of
    // slippage (the second run) at 8.99, the buy at 10.51.
    let strategy = r#"
name = "lp"
symbols = ["XYZ"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 5
[sizing]
mode = "fixed_quantity"
quantity = "50"
"#;
    let prices = ["10", "10", "10", "10", "9.9", "10.5", "9.0"];
    for (slippage, buy, sell) in [
        ("", "10.5", "9"),
        ("slippage = \"1 tick\"\n", "10.51", "8.99"),
    ] {
        let venue = format!(
            "[venue]\nlatency = \"0ms\"\n[venue.default]\ntick_size = \"0.01\"\n\
             taker_fee_bps = \"0\"\nfill = \"last_price\"\n{slippage}"
        );
        let cfg = load(&venue, strategy);
        let mut r = Run::new(&cfg);
        for (i, px) in prices.iter().enumerate() {
            r.tick(i as i64 + 1, px, "1");
        }
        let f = r.fills();
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!((f[0].1, f[0].2), (d("50"), d(buy)));
        assert_eq!((f[1].1, f[1].2), (d("50"), d(sell)));
    }
    // Slippage belongs to the last-price model.
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.toml");
    std::fs::write(&s, strategy).unwrap();
    let app = dir.path().join("app.toml");
    std::fs::write(
        &app,
        format!(
            "strategies = [{:?}]\n[venue.default]\nslippage = \"1 tick\"\n",
            s.display().to_string()
        ),
    )
    .unwrap();
    let e = config::load_with_env(Some(&app), &[])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("venue.default.slippage") && e.contains("last_price"),
        "{e}"
    );
}
