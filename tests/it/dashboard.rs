//! The HTTP side of paper mode against a real embedded broker: `/metrics`
//! counts exactly what was sent, `/api/state` holds the accounts and curves,
//! `/health` answers 200 then 503 once the feed goes quiet, every alert rule
//! fires exactly once on a stream built for it (read back from the `alerts`
//! topic and received by a webhook that fails once), and the dashboard page,
//! run by headless Chromium, draws the equity chart and the fills table.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use papertrader::monitor::Monitor;
use papertrader::paper::{self, StopWhen};
use papertrader::summary::Summary;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CROSS_AAA: &str = r#"
name = "cross"
symbols = ["AAA"]
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

/// Paper mode in the background until the returned sender fires.
struct Running {
    monitor: Arc<Monitor>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<Summary>>,
}

impl Running {
    fn start(cfg: papertrader::config::Loaded, bs: String) -> Self {
        let monitor = Arc::new(Monitor::from_config(&cfg));
        let (stop, stopped) = oneshot::channel::<()>();
        let m = monitor.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            paper::run_with(&cfg, &bs, StopWhen::default(), shutdown, m).await
        });
        Running {
            monitor,
            stop,
            task,
        }
    }

    /// The dashboard's base URL, once the server listens.
    async fn base(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(a) = self.monitor.http_addr() {
                return format!("http://{a}");
            }
            assert!(
                Instant::now() < deadline,
                "the HTTP server never reported its address"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) -> Summary {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap()
    }
}

/// A sample's value in Prometheus text format: `name{labels} value`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Poll `/metrics` until `series` reaches `want` (or fail after a deadline).
async fn wait_metric(base: &str, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = get(&format!("{base}/metrics")).await;
        if metric(&text, series) == Some(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http_config(
    dir: &std::path::Path,
    bs: &str,
    extra: &str,
    strategy: &str,
) -> papertrader::config::Loaded {
    config(
        dir,
        bs,
        &format!(
            "[engine]\npnl_every_ticks = 1\n{}\n[http]\nenabled = true\nbind = \"127.0.0.1:0\"\n{extra}",
            exact_venue("10")
        ),
        &[strategy],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_state_and_health_count_what_was_sent() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = http_config(dir.path(), &bs, "stale_after = \"1h\"\n", CROSS_AAA);

    // AAA 3 2 1 5 6 1: a buy at tick 4 and a sell at tick 6 (tests/it/paper_e2e.rs).
    let p = producer(&bs);
    let mut prices = Vec::new();
    for (i, px) in ["3", "2", "1", "5", "6", "1"].iter().enumerate() {
        prices.push(tick("AAA", 1_700_000_000_000 + i as i64 * 1000, px, "1"));
    }
    prices.push(("AAA".into(), "not json".into()));
    prices.push(("AAA".into(), "{\"symbol\":\"AAA\"}".into()));
    prices.push(("AAA".into(), "[1,2]".into()));
    produce(&p, "live_prices", &prices).await;
    let sentiment = vec![(
        "AAA".to_string(),
        r#"{"symbol":"AAA","ts":1700000000500,"score":0.5,"source":"t"}"#.to_string(),
    )];
    produce(&p, "news_sentiment", &sentiment).await;

    let run = Running::start(cfg, bs.clone());
    let base = run.base().await;
    let (code, health) = get(&format!("{base}/health")).await;
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["broker_connected"], true);

    wait_metric(
        &base,
        "papertrader_events_in_total{topic=\"live_prices\"}",
        9.0,
    )
    .await;
    wait_metric(
        &base,
        "papertrader_events_in_total{topic=\"news_sentiment\"}",
        1.0,
    )
    .await;
    // Inputs are counted as they arrive, outputs once the broker has
    // acknowledged them: wait for the last dead letter and both orders'
    // latencies before reading the output counters.
    wait_metric(
        &base,
        "papertrader_dead_letters_total{reason=\"invalid_field\"}",
        1.0,
    )
    .await;
    let text = wait_metric(&base, "papertrader_tick_to_order_seconds_count", 2.0).await;
    assert_eq!(
        metric(
            &text,
            "papertrader_dead_letters_total{reason=\"malformed_json\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "papertrader_dead_letters_total{reason=\"missing_field\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "papertrader_dead_letters_total{reason=\"invalid_field\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "papertrader_fills_total{strategy=\"cross\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "papertrader_signals_total{strategy=\"cross\"}"),
        Some(2.0)
    );
    for status in ["new", "accepted", "filled"] {
        assert_eq!(
            metric(
                &text,
                &format!("papertrader_orders_total{{status=\"{status}\"}}")
            ),
            Some(2.0),
            "{status}: {text}"
        );
    }
    // Two orders, each caused by one tick: two latency observations.
    assert_eq!(
        metric(&text, "papertrader_tick_to_order_seconds_count"),
        Some(2.0)
    );
    // One engine step per input message, dead letters included.
    assert_eq!(
        metric(&text, "papertrader_engine_step_seconds_count"),
        Some(10.0)
    );
    assert!(
        text.contains("papertrader_consumer_lag{partition=\"0\",topic=\"live_prices\"} 0"),
        "{text}"
    );

    // The fills read back from the topic are the ones the metrics counted.
    let fills = read_json(&bs, "fills");
    assert_eq!(fills.len(), 2);

    let (_, state) = get(&format!("{base}/api/state")).await;
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["strategies"], serde_json::json!(["cross"]));
    let curve = &state["equity"][0];
    assert_eq!(curve["symbol"], "AAA");
    // pnl_every_ticks = 1: one snapshot per tick (a fill's shares its tick's).
    let points = curve["points"].as_array().unwrap();
    assert_eq!(points.len(), 6, "{state}");
    let equity = state["accounts"]["cross"]["equity"].as_str().unwrap();
    let eq: f64 = equity.parse().unwrap();
    assert_eq!(points.last().unwrap()["equity"].as_f64().unwrap(), eq);
    // Bought at 5.01, sold at 0.99, 10 shares, fees 0.0501 + 0.0099.
    assert_eq!(eq, 99959.74, "{state}");
    assert_eq!(state["positions"][0]["position"], "0");
    assert!(
        gauge_close(&text, "papertrader_equity{strategy=\"cross\"}", eq),
        "{text}"
    );

    let (_, api_fills) = get(&format!("{base}/api/fills")).await;
    let api_fills: Vec<Value> = serde_json::from_str(&api_fills).unwrap();
    assert_eq!(api_fills.len(), 2);
    assert_eq!(api_fills[0]["side"], "sell", "newest first");
    assert_eq!(api_fills[0]["fill_id"], fills[1]["fill_id"]);
    let (_, signals) = get(&format!("{base}/api/signals")).await;
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&signals).unwrap().len(),
        2
    );
    let (_, orders) = get(&format!("{base}/api/orders")).await;
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&orders).unwrap().len(),
        6
    );
    let (code, _) = get(&format!("{base}/api/nothing")).await;
    assert_eq!(code, 404);

    let (code, health) = get(&format!("{base}/health")).await;
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(code, 200, "{health}");
    assert!(health["seconds_since_last_input"]["live_prices"].is_number());

    let summary = run.finish().await;
    assert_eq!(summary.inputs.total_dead(), 3);
    assert_eq!(summary.total_fills(), 2);
}

fn gauge_close(text: &str, series: &str, want: f64) -> bool {
    metric(text, series).is_some_and(|v| (v - want).abs() < 1e-6)
}

#[derive(Default)]
struct Hook {
    attempts: AtomicUsize,
    received: Mutex<Vec<Value>>,
}

/// A webhook receiver that refuses its first request with a 500.
async fn webhook_server() -> (String, Arc<Hook>) {
    use axum::http::StatusCode;
    use axum::routing::post;
    let hook = Arc::new(Hook::default());
    let h = hook.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(v): axum::Json<Value>| {
            let h = h.clone();
            async move {
                if h.attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                h.received.lock().unwrap().push(v);
                StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, hook)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alert_rule_fires_once_to_the_topic_and_the_webhook() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, hook) = webhook_server().await;
    // AAA prices 3 2 1 5 6 1, sizes 1 1 1 10 1 1:
    //  breakout(3): 5 > max(3,2,1) fires; 6 > max(2,1,5) still above; 1 clears.
    //  zscore(volume, 4, 1.5): at size 10 the window 1 1 1 10 gives z = 1.73; then -0.58.
    //  drawdown(0.0001): the round trip loses about 40 of 100000 (0.04%) at the sell.
    //  stale_feed(1s): no tick after the sixth.
    let extra = format!(
        "stale_after = \"1s\"\n[alerts]\nwebhook_url = {url:?}\nwebhook_backoff = \"50ms\"\n\
         [[alerts.rules]]\nname = \"brk\"\nkind = \"breakout\"\nsymbols = [\"AAA\"]\nperiod = 3\n\
         [[alerts.rules]]\nname = \"vol\"\nkind = \"zscore\"\nfield = \"volume\"\nsymbols = [\"AAA\"]\nperiod = 4\nthreshold = 1.5\n\
         [[alerts.rules]]\nname = \"dd\"\nkind = \"drawdown\"\nlevel = 0.0001\n\
         [[alerts.rules]]\nname = \"quiet\"\nkind = \"stale_feed\"\nsymbols = [\"AAA\"]\nafter = \"1s\"\n"
    );
    let cfg = http_config(dir.path(), &bs, &extra, CROSS_AAA);
    let p = producer(&bs);
    let mut msgs = Vec::new();
    for (i, (px, sz)) in [
        ("3", "1"),
        ("2", "1"),
        ("1", "1"),
        ("5", "10"),
        ("6", "1"),
        ("1", "1"),
    ]
    .iter()
    .enumerate()
    {
        msgs.push(tick("AAA", 1_700_000_000_000 + i as i64 * 1000, px, sz));
    }
    produce(&p, "live_prices", &msgs).await;

    let run = Running::start(cfg, bs.clone());
    let base = run.base().await;
    // The stale-feed alert comes about a second after the last tick.
    let text = wait_metric(&base, "papertrader_alerts_total{rule=\"quiet\"}", 1.0).await;
    for rule in ["brk", "vol", "dd"] {
        assert_eq!(
            metric(
                &text,
                &format!("papertrader_alerts_total{{rule=\"{rule}\"}}")
            ),
            Some(1.0),
            "{rule}: {text}"
        );
    }
    // /health: the feed is older than stale_after now.
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let (code, body) = get(&format!("{base}/health")).await;
        if code == 503 {
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        assert!(Instant::now() < deadline, "/health stayed {code}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["feed_fresh"], false);
    assert_eq!(health["broker_connected"], true);

    let alerts = read_json(&bs, "alerts");
    let mut kinds: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap().into(),
                a["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("brk".into(), "breakout".into()),
            ("dd".into(), "drawdown".into()),
            ("quiet".into(), "stale_feed".into()),
            ("vol".into(), "zscore".into()),
        ]
    );
    let by_rule = |r: &str| alerts.iter().find(|a| a["rule"] == r).unwrap().clone();
    assert_eq!(by_rule("brk")["direction"], "above");
    assert_eq!(by_rule("brk")["value"], 5.0);
    assert_eq!(by_rule("brk")["threshold"], 3.0);
    // Deterministic ids: rule, subject, origin (topic-partition-offset) of the 4th tick.
    assert_eq!(by_rule("brk")["alert_id"], "alert:brk:AAA:live_prices-0-3");
    assert_eq!(by_rule("vol")["alert_id"], "alert:vol:AAA:live_prices-0-3");
    assert_eq!(
        by_rule("quiet")["alert_id"],
        "alert:quiet:AAA:after:live_prices-0-5"
    );
    assert_eq!(by_rule("dd")["subject"], "cross");

    // The webhook got every alert, after one refused attempt.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hook.received.lock().unwrap().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the webhook got {:?}",
            hook.received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got: BTreeSet<String> = hook
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_string())
        .collect();
    let sent: BTreeSet<String> = alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, sent);
    assert_eq!(hook.attempts.load(Ordering::SeqCst), 5);

    let (_, api) = get(&format!("{base}/api/alerts")).await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&api).unwrap().len(), 4);
    run.finish().await;
}

/// The `chromium` binary, or a loud failure saying how to install it.
fn chromium() -> String {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if std::process::Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name.to_string();
        }
    }
    panic!("headless Chromium is required: apt-get install chromium (.ci/run does it)");
}

/// Run headless Chromium with `args` and a fresh profile; its stdout.
///
/// The page keeps an event stream open, which `--virtual-time-budget` waits
/// for forever (virtual time stops while a request is open); `--timeout` instead
/// stops loading after at most 5 s and dumps what the script has drawn by then.
/// A browser that still hangs is killed.
fn run_chromium(args: &[&str]) -> String {
    use std::io::Read;
    let profile = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--timeout=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish; killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "chromium failed: {err}");
    reader.join().unwrap()
}

/// The rows of a table's body in a dumped DOM.
fn table_rows(dom: &str, id: &str) -> usize {
    let start = dom
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id}"));
    let body = &dom[start..];
    let body = &body[body.find("<tbody>").unwrap()..body.find("</tbody>").unwrap()];
    body.matches("<tr>").count()
}

/// The attributes of the first element whose opening tag has `marker`.
fn tag_attrs(dom: &str, marker: &str) -> std::collections::BTreeMap<String, String> {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no element with {marker}:\n{dom}"));
    let open = dom[..at].rfind('<').unwrap();
    let close = at + dom[at..].find('>').unwrap();
    let tag = &dom[open..close];
    let mut out = std::collections::BTreeMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].rsplit(' ').next().unwrap().to_string();
        let v = &rest[eq + 2..];
        let end = v.find('"').unwrap();
        out.insert(name, v[..end].to_string());
        rest = &v[end + 1..];
    }
    out
}

/// `v` as the dashboard writes money: two decimals, thousands separated.
fn money(v: f64) -> String {
    let s = format!("{:.2}", v.abs());
    let (int, frac) = s.split_once('.').unwrap();
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}{grouped}.{frac}", if v < 0.0 { "-" } else { "" })
}

/// Pixels of `png` within 40 (sum of channel differences) of `rgb`.
fn pixels_near(png: &[u8], rgb: (u8, u8, u8)) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| {
            let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).abs();
            d(p[0], rgb.0) + d(p[1], rgb.1) + d(p[2], rgb.2) < 40
        })
        .count()
}

#[test]
fn dashboard_money_format_groups_thousands() {
    assert_eq!(money(99959.74), "99,959.74");
    assert_eq!(money(-1234567.0), "-1,234,567.00");
    assert_eq!(money(12.5), "12.50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_draws_candles_fills_and_cards() {
    let browser = chromium();
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    // An analytics stream beside the strategy: the SMA lies among the prices
    // (an overlay), the range does not (a pane below the candles).
    let analytics = "stale_after = \"1h\"\ncandle = \"1s\"\n[[analytics]]\nname = \"trend\"\n\
                     [analytics.values]\nsma5 = \"sma(close, 5)\"\nrange4 = \"highest(high, 4) - lowest(low, 4)\"\n";
    let cfg = http_config(dir.path(), &bs, analytics, CROSS_AAA);
    let p = producer(&bs);
    // A zigzag, two trades a second (at .0 and .5 s, sizes 1 and 2): the
    // crossover trades on every turn, candles rise and fall.
    let px = |x: f64| format!("{:.2}", 100.0 + 5.0 * (x / 4.0).sin());
    let mut msgs = Vec::new();
    for i in 0..60i64 {
        let ms = 1_700_000_000_000 + i * 1000;
        msgs.push(tick("AAA", ms, &px(i as f64), "1"));
        msgs.push(tick("AAA", ms + 500, &px(i as f64 + 0.5), "2"));
    }
    produce(&p, "live_prices", &msgs).await;
    let run = Running::start(cfg, bs.clone());
    let base = run.base().await;
    let text = wait_metric(
        &base,
        "papertrader_events_in_total{topic=\"live_prices\"}",
        120.0,
    )
    .await;
    // Inputs are counted as they are consumed; the engine takes them after
    // the event-time merge's hold, so the fills may follow a moment later.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut text = text;
    let mut state: Value;
    let fills = loop {
        let n = metric(&text, "papertrader_fills_total{strategy=\"cross\"}").unwrap_or(0.0);
        state = serde_json::from_str(&get(&format!("{base}/api/state")).await.1).unwrap();
        let candles = state["candles"][0]["candles"]
            .as_array()
            .map_or(0, Vec::len);
        if (n >= 2.0 && candles == 60) || Instant::now() >= deadline {
            break n as usize;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = get(&format!("{base}/metrics")).await.1;
    };
    assert!(fills >= 2, "the zigzag should trade: {text}");
    // The candles, worked out from the trades sent: one per second, opening
    // at the first trade and closing at the second.
    let candles = state["candles"][0]["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 60, "{state}");
    for (i, c) in candles.iter().enumerate() {
        let (o, cl): (f64, f64) = (
            px(i as f64).parse().unwrap(),
            px(i as f64 + 0.5).parse().unwrap(),
        );
        assert_eq!(c["t"], 1_700_000_000 + i as i64);
        let got: Vec<f64> = ["o", "h", "l", "c", "v"]
            .iter()
            .map(|k| c[k].as_f64().unwrap())
            .collect();
        assert_eq!(got, vec![o, o.max(cl), o.min(cl), cl, 3.0], "candle {i}");
    }

    // The page's script ran: read what each chart drew from its attributes.
    let mut dom = String::new();
    for _ in 0..5 {
        let url = format!("{base}/");
        dom = tokio::task::spawn_blocking(move || run_chromium(&["--dump-dom", &url]))
            .await
            .unwrap();
        if dom.contains("data-candles=") {
            break;
        }
    }
    let price = tag_attrs(&dom, "data-symbol=\"AAA\"");
    assert_eq!(price["data-candles"], "60", "{price:?}");
    assert_eq!(
        price["data-markers"],
        fills.to_string(),
        "one marker per fill"
    );
    assert_eq!(price["data-interval"], "1");
    // SMA(5) is warm from the fifth trade (the third second) on: 58 of 60
    // candles, over the prices. The 4-trade range: 59 candles, in its own pane.
    let sma = tag_attrs(&dom, "data-line=\"trend.sma5\"");
    assert_eq!(
        (sma["data-overlay"].as_str(), sma["data-points"].as_str()),
        ("true", "58")
    );
    let range = tag_attrs(&dom, "data-line=\"trend.range4\"");
    assert_eq!(
        (
            range["data-overlay"].as_str(),
            range["data-points"].as_str()
        ),
        ("false", "59")
    );
    // The strategy's own averages (SMA 2 and 3 of the trades), over the
    // candles: warm from the second and third trade.
    let fast = tag_attrs(&dom, "data-line=\"cross.fast\"");
    assert_eq!(
        (fast["data-overlay"].as_str(), fast["data-points"].as_str()),
        ("true", "60")
    );
    let slow = tag_attrs(&dom, "data-line=\"cross.slow\"");
    assert_eq!(
        (slow["data-overlay"].as_str(), slow["data-points"].as_str()),
        ("true", "59")
    );
    // One equity point per second, formatted cards, the fills table.
    let eq = tag_attrs(&dom, "class=\"chart equity-chart\"");
    assert_eq!(eq["data-points"], "60");
    let equity: f64 = state["accounts"]["cross"]["equity"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let card_equity = format!("<dd class=\"equity \">{}</dd>", money(equity));
    assert!(
        dom.contains(&card_equity),
        "no {card_equity} in the card:\n{dom}"
    );
    let ret = format!("{:.2} %", (equity / 100_000.0 - 1.0) * 100.0);
    assert!(
        dom.contains(&format!("{ret}</dd>")),
        "no return {ret}:\n{dom}"
    );
    assert!(
        dom.contains(&format!("<dd class=\"fills-today \">{fills}</dd>")),
        "fills today {fills}:\n{dom}"
    );
    assert_eq!(table_rows(&dom, "fills"), fills.min(200), "{dom}");
    assert!(dom.contains("broker connected"), "the status line:\n{dom}");

    let msgs = read_json(&bs, "indicators");
    assert_eq!(msgs.len(), 120);
    assert!(msgs[0]["values"]["sma5"].is_null());

    // The screenshot shows the candles in their colours and the equity line.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let url = format!("{base}/");
    tokio::task::spawn_blocking(move || run_chromium(&[&arg, "--window-size=1280,1600", &url]))
        .await
        .unwrap();
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    eprintln!("{browser}: dashboard screenshot at {}", shot.display());
    let up = pixels_near(&png, (0x26, 0xa6, 0x9a));
    let down = pixels_near(&png, (0xef, 0x53, 0x50));
    let line = pixels_near(&png, (0x1f, 0x5f, 0xbf));
    assert!(
        up > 50 && down > 50,
        "candle colours: {up} up, {down} down pixels"
    );
    assert!(line > 50, "equity line: {line} pixels");
    run.finish().await;
}

async fn control(base: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/control"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// Poll `/metrics` until `series` is at least `want`.
async fn wait_at_least(base: &str, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = get(&format!("{base}/metrics")).await;
        if metric(&text, series).is_some_and(|v| v >= want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const TOKEN: &str = "controls-test-token-0123456789";

/// The controls API end to end: refused without the token or with a wrong
/// one; pause stops orders but not signals; flatten closes the position with
/// an order and a fill; each action is on the `control` topic with who and
/// when; a restart from the checkpoint is still paused, and a kill halts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_pause_flatten_and_kill_survive_a_restart() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = || {
        http_config(
            dir.path(),
            &bs,
            &format!("stale_after = \"1h\"\ntoken = \"{TOKEN}\"\n"),
            CROSS_AAA,
        )
    };
    let p = producer(&bs);
    // 3 2 1 5: the crossover buys 10 at the fourth tick.
    let first: Vec<_> = ["3", "2", "1", "5"]
        .iter()
        .enumerate()
        .map(|(i, px)| tick("AAA", 1_700_000_000_000 + i as i64 * 1000, px, "1"))
        .collect();
    produce(&p, "live_prices", &first).await;
    let run = Running::start(cfg(), bs.clone());
    let base = run.base().await;
    wait_metric(&base, "papertrader_fills_total{strategy=\"cross\"}", 1.0).await;

    let pause = r#"{"action": "pause", "strategy": "cross", "by": "tester"}"#;
    assert_eq!(control(&base, None, pause).await.0, 401);
    assert_eq!(
        control(&base, Some("wrong-token-0123456789xx"), pause)
            .await
            .0,
        401
    );
    let (code, err) = control(
        &base,
        Some(TOKEN),
        r#"{"action": "nap", "strategy": "cross"}"#,
    )
    .await;
    assert_eq!(code, 400, "{err}");
    let (code, err) = control(
        &base,
        Some(TOKEN),
        r#"{"action": "pause", "strategy": "nobody"}"#,
    )
    .await;
    assert_eq!(
        (code, err["error"].as_str()),
        (400, Some("no strategy \"nobody\""))
    );
    let (code, msg) = control(&base, Some(TOKEN), pause).await;
    assert_eq!(code, 200, "{msg}");
    assert_eq!(msg["action"], "pause");
    assert!(
        msg["by"]
            .as_str()
            .unwrap()
            .starts_with("tester (127.0.0.1:"),
        "{msg}"
    );

    // 6 1: the crossover sells at the sixth tick; paused, no order follows.
    let second: Vec<_> = ["6", "1"]
        .iter()
        .enumerate()
        .map(|(i, px)| tick("AAA", 1_700_000_004_000 + i as i64 * 1000, px, "1"))
        .collect();
    produce(&p, "live_prices", &second).await;
    let text = wait_metric(&base, "papertrader_signals_total{strategy=\"cross\"}", 2.0).await;
    assert_eq!(
        metric(&text, "papertrader_orders_total{status=\"new\"}"),
        Some(1.0),
        "{text}"
    );

    // Flatten AAA: one reduce-only market order, filled.
    let (code, msg) = control(
        &base,
        Some(TOKEN),
        r#"{"action": "flatten", "strategy": "cross", "symbol": "AAA", "by": "tester"}"#,
    )
    .await;
    assert_eq!(code, 200, "{msg}");
    assert_eq!(
        (msg["orders"].as_u64(), msg["fills"].as_u64()),
        (Some(1), Some(1)),
        "{msg}"
    );
    let (_, state) = get(&format!("{base}/api/state")).await;
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["positions"][0]["position"], "0", "{state}");
    assert_eq!(state["status"][0]["paused"], true);
    let (_, controls) = get(&format!("{base}/api/controls")).await;
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&controls).unwrap().len(),
        2
    );
    run.finish().await;

    let fills = read_json(&bs, "fills");
    assert_eq!(fills.len(), 2, "{fills:?}");
    assert_eq!(fills[1]["side"], "sell");
    assert_eq!(fills[1]["qty"], "10");
    let ctl = read_json(&bs, "control");
    // The flatten's order: the action's count and wall-clock ms, the symbol.
    assert_eq!(
        fills[1]["order_id"],
        format!("cross:ctl1-{}:AAA", ctl[1]["ts"])
    );
    let actions: Vec<&str> = ctl.iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["pause", "flatten"]);
    assert!(ctl.iter().all(|c| c["at"].as_str().unwrap().ends_with('Z')
        && c["by"].as_str().unwrap().starts_with("tester")));
    assert_eq!(ctl[1]["symbol"], "AAA");

    // A restart continues from the checkpoint: still paused.
    let third: Vec<_> = ["7", "8", "9", "2", "1"]
        .iter()
        .enumerate()
        .map(|(i, px)| tick("AAA", 1_700_000_006_000 + i as i64 * 1000, px, "1"))
        .collect();
    produce(&p, "live_prices", &third).await;
    let started = Instant::now();
    let run = Running::start(cfg(), bs.clone());
    let base = run.base().await;
    let text = wait_at_least(&base, "papertrader_signals_total{strategy=\"cross\"}", 1.0).await;
    eprintln!(
        "controls: the restarted run signalled after {:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(&text, "papertrader_orders_total{status=\"new\"}"),
        None,
        "{text}"
    );
    let (_, state) = get(&format!("{base}/api/state")).await;
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["status"][0]["paused"], true, "{state}");
    // The kill switch halts; a halted strategy is not resumed.
    let (code, msg) = control(
        &base,
        Some(TOKEN),
        r#"{"action": "kill", "strategy": "cross"}"#,
    )
    .await;
    assert_eq!(code, 200, "{msg}");
    let (code, err) = control(
        &base,
        Some(TOKEN),
        r#"{"action": "resume", "strategy": "cross"}"#,
    )
    .await;
    assert_eq!(code, 400, "{err}");
    let (_, state) = get(&format!("{base}/api/state")).await;
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["status"][0]["halted"], true, "{state}");
    run.finish().await;
    assert_eq!(
        read_json(&bs, "orders").len(),
        6,
        "the buy's and the flatten's lifecycles only"
    );
    let ctl = read_json(&bs, "control");
    assert_eq!(ctl.len(), 3);
    assert_eq!(ctl[2]["action"], "kill");
    let id = ctl[2]["control_id"].as_str().unwrap();
    assert!(
        id.starts_with("ctl2-") && id.ends_with(":cross"),
        "the count of actions survived the restart: {id}"
    );
}

/// The dashboard's live updates over a real socket: `/events`, opened before
/// the ticks are sent, carries a candle per second with the trades' prices,
/// both fills, and the strategy's own averages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_candles_fills_and_indicators_live() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = http_config(
        dir.path(),
        &bs,
        "stale_after = \"1h\"\ncandle = \"1s\"\n",
        CROSS_AAA,
    );
    let run = Running::start(cfg, bs.clone());
    let base = run.base().await;
    let mut stream = reqwest::get(format!("{base}/events")).await.unwrap();
    assert_eq!(stream.status(), 200);
    // AAA 3 2 1 5 6 1, one a second: a buy at the fourth, a sell at the sixth.
    let prices = ["3", "2", "1", "5", "6", "1"];
    let msgs: Vec<_> = prices
        .iter()
        .enumerate()
        .map(|(i, px)| tick("AAA", 1_700_000_000_000 + i as i64 * 1000, px, "1"))
        .collect();
    produce(&producer(&bs), "live_prices", &msgs).await;

    let mut closes: std::collections::BTreeMap<i64, f64> = Default::default();
    let (mut fills, mut slow_points) = (0, 0);
    let mut buf = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while closes.len() < 6 || fills < 2 || slow_points < 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .unwrap_or_else(|_| {
                panic!("live: {closes:?} candles, {fills} fills, {slow_points} slow SMA points")
            })
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        // Complete server-sent events end with a blank line.
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let v: Value = serde_json::from_str(data).unwrap();
            for c in v["candles"].as_array().into_iter().flatten() {
                assert_eq!(c["symbol"], "AAA");
                closes.insert(
                    c["candle"]["t"].as_i64().unwrap(),
                    c["candle"]["c"].as_f64().unwrap(),
                );
            }
            fills += v["fills"].as_array().map_or(0, Vec::len);
            slow_points += v["indicators"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["analytics"] == "cross" && i["values"]["slow"].is_number())
                .count();
        }
    }
    let want: std::collections::BTreeMap<i64, f64> = prices
        .iter()
        .enumerate()
        .map(|(i, p)| (1_700_000_000 + i as i64, p.parse().unwrap()))
        .collect();
    assert_eq!(closes, want);
    assert_eq!(fills, 2);
    // SMA(3) is warm from the third tick: four values.
    assert_eq!(slow_points, 4);
    run.finish().await;
}
