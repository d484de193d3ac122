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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_draws_equity_and_fills() {
    let browser = chromium();
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    // An analytics stream beside the strategy: its values go to `indicators`
    // and the dashboard draws one panel per value.
    let analytics = "stale_after = \"1h\"\n[[analytics]]\nname = \"trend\"\n\
                     [analytics.values]\nsma5 = \"sma(close, 5)\"\nrange4 = \"highest(high, 4) - lowest(low, 4)\"\n";
    let cfg = http_config(dir.path(), &bs, analytics, CROSS_AAA);
    let p = producer(&bs);
    // A zigzag: the crossover trades on every turn.
    let mut msgs = Vec::new();
    for i in 0..60i64 {
        let px = 100.0 + 5.0 * ((i as f64) / 4.0).sin();
        msgs.push(tick(
            "AAA",
            1_700_000_000_000 + i * 1000,
            &format!("{px:.2}"),
            "1",
        ));
    }
    produce(&p, "live_prices", &msgs).await;
    let run = Running::start(cfg, bs.clone());
    let base = run.base().await;
    let text = wait_metric(
        &base,
        "papertrader_events_in_total{topic=\"live_prices\"}",
        60.0,
    )
    .await;
    // Inputs are counted as they are consumed; the engine takes them after
    // the event-time merge's hold, so the fills may follow a moment later.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut text = text;
    let fills = loop {
        let n = metric(&text, "papertrader_fills_total{strategy=\"cross\"}").unwrap_or(0.0);
        if n >= 2.0 || Instant::now() >= deadline {
            break n as usize;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = get(&format!("{base}/metrics")).await.1;
    };
    assert!(fills >= 2, "the zigzag should trade: {text}");

    let (_, state) = get(&format!("{base}/api/state")).await;
    let state: Value = serde_json::from_str(&state).unwrap();
    let points = state["equity"][0]["points"].as_array().unwrap().len();
    assert_eq!(points, 60, "one snapshot per tick");
    // The page's script ran: the chart has the curve's points, the tables rows.
    // `--timeout` may dump before the script's requests return: try a few times.
    let mut dom = String::new();
    for _ in 0..5 {
        let url = format!("{base}/");
        dom = tokio::task::spawn_blocking(move || run_chromium(&["--dump-dom", &url]))
            .await
            .unwrap();
        if dom.contains("data-points=") {
            break;
        }
    }
    assert!(
        dom.contains(&format!("data-points=\"{points}\"")),
        "the equity chart lacks its {points} points:\n{dom}"
    );
    assert!(dom.contains("class=\"equity-line\""), "{dom}");
    assert_eq!(table_rows(&dom, "fills"), fills.min(50), "{dom}");
    assert_eq!(table_rows(&dom, "positions"), 1);
    assert!(dom.contains("AAA"));
    // SMA(5) is warm from the fifth tick on: 56 of 60 points.
    assert_eq!(
        state["indicators"][0]["points"].as_array().unwrap().len(),
        60
    );
    assert!(
        dom.contains("data-series=\"trend/AAA\" data-name=\"sma5\" data-points=\"56\""),
        "the sma5 panel lacks its 56 points:\n{dom}"
    );
    assert!(
        dom.contains("data-name=\"range4\" data-points=\"57\""),
        "{dom}"
    );
    assert!(dom.contains("class=\"indicator-line\""), "{dom}");
    let msgs = read_json(&bs, "indicators");
    assert_eq!(msgs.len(), 60);
    assert_eq!(msgs[59]["analytics"], "trend");
    assert!(msgs[0]["values"]["sma5"].is_null());
    // The last SMA(5) by hand, from the prices the test sent.
    let last_five: f64 = (55..60i64)
        .map(|i| {
            format!("{:.2}", 100.0 + 5.0 * ((i as f64) / 4.0).sin())
                .parse::<f64>()
                .unwrap()
        })
        .sum::<f64>()
        / 5.0;
    let got = msgs[59]["values"]["sma5"].as_f64().unwrap();
    assert!(
        (got - last_five).abs() < 1e-9,
        "sma5 {got}, by hand {last_five}"
    );

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let url = format!("{base}/");
    tokio::task::spawn_blocking(move || run_chromium(&[&arg, "--window-size=1280,1400", &url]))
        .await
        .unwrap();
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("{browser}: dashboard screenshot at {}", shot.display());
    run.finish().await;
}
