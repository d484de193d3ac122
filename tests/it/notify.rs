//! Alerts (and fills) as chat messages, against local HTTP servers that stand
//! in for Telegram's Bot API and Slack's and Discord's webhooks: the exact
//! path and JSON body of each request, a retry after a refused attempt (a 500
//! for Telegram and Slack, a 429 with `retry_after` for Discord, whose wait is
//! obeyed instead of the backoff), and real paper mode on the embedded broker
//! whose alert reaches all three, with the fills where asked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use papertrader::alerts::{AlertMsg, Notifier};
use papertrader::monitor::Monitor;
use papertrader::paper::{self, StopWhen};
use serde_json::{json, Value};

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

/// One request a server received.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    content_type: String,
    body: Value,
    at: Instant,
}

/// A local HTTP server that records every request and answers the first ones
/// from a script (status, body), then 200 with `ok_body`.
struct Server {
    hits: Mutex<Vec<Hit>>,
    script: Mutex<VecDeque<(u16, String)>>,
    ok_body: String,
}

impl Server {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Wait until `n` requests arrived (or fail after a deadline), then a
    /// little longer to see that no more come.
    async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.hits.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "{n} requests expected, got {:?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let hits = self.hits();
        assert_eq!(hits.len(), n, "{hits:#?}");
        hits
    }
}

async fn serve(script: &[(u16, &str)], ok_body: &str) -> (String, Arc<Server>) {
    use axum::http::{header, StatusCode, Uri};
    let server = Arc::new(Server {
        hits: Mutex::new(Vec::new()),
        script: Mutex::new(script.iter().map(|(s, b)| (*s, b.to_string())).collect()),
        ok_body: ok_body.to_string(),
    });
    let s = server.clone();
    let app = axum::Router::new().fallback(
        move |uri: Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let content_type = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                s.hits.lock().unwrap().push(Hit {
                    path: uri.path().to_string(),
                    content_type,
                    body,
                    at: Instant::now(),
                });
                let (status, text) = s
                    .script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or((200, s.ok_body.clone()));
                (
                    StatusCode::from_u16(status).unwrap(),
                    [(header::CONTENT_TYPE, "application/json")],
                    text,
                )
            }
        },
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (base, server)
}

/// The `[alerts]` section of `extra`, loaded the way the binary loads it.
fn alerts_config(extra: &str) -> papertrader::config::AlertsConfig {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), "127.0.0.1:9", extra, &[CROSS_AAA])
        .app
        .alerts
}

fn alert(message: &str) -> AlertMsg {
    AlertMsg {
        alert_id: "alert:brk:AAA:live_prices-0-3".into(),
        rule: "brk".into(),
        kind: "breakout",
        subject: "AAA".into(),
        ts: 1_700_000_003_000_000_000,
        direction: "above",
        value: 5.0,
        threshold: 3.0,
        message: message.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_gets_send_message_in_html_and_a_retry_after_a_500() {
    let (base, tg) = serve(
        &[(
            500,
            r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#,
        )],
        r#"{"ok":true,"result":{"message_id":1}}"#,
    )
    .await;
    // A numeric chat id goes out as a JSON number.
    let cfg = alerts_config(&format!(
        "[alerts]\nwebhook_backoff = \"200ms\"\n[alerts.telegram]\nbot_token = \"123456:AB-cd\"\n\
         chat_id = \"-1001234\"\napi_url = \"{base}/\"\n"
    ));
    let n = Notifier::from_config(&cfg).unwrap().expect("a destination");
    assert!(!n.wants_fills());
    assert!(n.send(alert("AAA at 5 > 3 & <rising>")));
    let hits = tg.wait_hits(2).await;
    let want = json!({
        "chat_id": -1001234,
        "text": "<b>Alert: brk</b>\nbreakout · AAA\nAAA at 5 &gt; 3 &amp; &lt;rising&gt;\n<i>event time 2023-11-14T22:13:23Z</i>",
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": true},
    });
    for h in &hits {
        assert_eq!(h.path, "/bot123456:AB-cd/sendMessage");
        assert_eq!(h.content_type, "application/json");
        assert_eq!(h.body, want);
    }
    let waited = hits[1].at - hits[0].at;
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_escaped_text_and_a_retry_after_a_500() {
    let (base, slack) = serve(&[(500, "internal_error")], "ok").await;
    let cfg = alerts_config(&format!(
        "[alerts]\nwebhook_backoff = \"50ms\"\n[alerts.slack]\nwebhook_url = \"{base}/services/T0/B0/XYZ\"\n"
    ));
    let n = Notifier::from_config(&cfg).unwrap().expect("a destination");
    n.send(alert("<!channel> AAA & <http://x|y>"));
    n.send(alert("second"));
    let hits = slack.wait_hits(3).await;
    let first = json!({"text": "*Alert: brk*\nbreakout · AAA\n&lt;!channel&gt; AAA &amp; &lt;http://x|y&gt;\n_event time 2023-11-14T22:13:23Z_"});
    let second =
        json!({"text": "*Alert: brk*\nbreakout · AAA\nsecond\n_event time 2023-11-14T22:13:23Z_"});
    assert!(hits.iter().all(|h| h.path == "/services/T0/B0/XYZ"));
    // The refused first alert is retried before the second is sent.
    let bodies: Vec<&Value> = hits.iter().map(|h| &h.body).collect();
    assert_eq!(bodies, [&first, &first, &second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_gets_content_and_waits_the_retry_after_of_a_429() {
    let (base, discord) = serve(
        &[(
            429,
            r#"{"message":"You are being rate limited.","retry_after":0.4,"global":false}"#,
        )],
        "",
    )
    .await;
    // The backoff is far longer than retry_after: a retry within seconds
    // shows the 429's wait was used.
    let cfg = alerts_config(&format!(
        "[alerts]\nwebhook_attempts = 2\nwebhook_backoff = \"60s\"\n\
         [alerts.discord]\nwebhook_url = \"{base}/api/webhooks/1/tok\"\n"
    ));
    let n = Notifier::from_config(&cfg).unwrap().expect("a destination");
    n.send(alert("rsi(close, 14) > 80 @everyone"));
    let hits = discord.wait_hits(2).await;
    let want = json!({
        "content": "**Alert: brk**\nbreakout · AAA\nrsi(close, 14) \\> 80 \\@everyone\n*event time 2023-11-14T22:13:23Z*",
        "allowed_mentions": {"parse": []},
    });
    for h in &hits {
        assert_eq!(h.path, "/api/webhooks/1/tok");
        assert_eq!(h.body, want);
    }
    let waited = hits[1].at - hits[0].at;
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // Content over Discord's 2000 characters is cut to fit.
    n.send(alert(&"x".repeat(5000)));
    let hits = discord.wait_hits(3).await;
    let content = hits[2].body["content"].as_str().unwrap();
    assert!(content.chars().count() <= 2000, "{}", content.len());
    assert!(content.contains("xx…\n*event time"), "{content}");
}

/// The loader's verdict on an app config whose `[alerts.telegram]` is `section`.
fn load_telegram(section: &str) -> papertrader::config::ConfigError {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("strategy.toml");
    std::fs::write(&p, CROSS_AAA).unwrap();
    let app = dir.path().join("app.toml");
    std::fs::write(
        &app,
        format!(
            "strategies = [{:?}]\n[alerts.telegram]\n{section}",
            p.display().to_string()
        ),
    )
    .unwrap();
    match papertrader::config::load_with_env(Some(&app), &[]) {
        Ok(_) => panic!("{section:?} was accepted"),
        Err(e) => e,
    }
}

#[test]
fn a_half_configured_telegram_stops_start_up_naming_the_key() {
    let e = load_telegram("chat_id = \"-100\"\n");
    assert_eq!(e.key, "alerts.telegram.bot_token");
    assert!(e.fix.contains("bot_token_env"), "{e}");
    assert!(e.file.ends_with("app.toml"), "{e}");
    let e = load_telegram("bot_token = \"1:a\"\n");
    assert_eq!(e.key, "alerts.telegram.chat_id");
    let e = load_telegram("chat_id = \"-100\"\nbot_token_env = \"PAPERTRADER_TEST_UNSET_TOKEN\"\n");
    assert_eq!(e.key, "alerts.telegram.bot_token_env");
    assert!(e.problem.contains("PAPERTRADER_TEST_UNSET_TOKEN"), "{e}");
    // A chat id copied as a bare number is refused with the key: it is a string.
    let e = load_telegram("bot_token = \"1:a\"\nchat_id = -100\n");
    assert_eq!(e.key, "alerts.telegram.chat_id");
    assert!(e.problem.contains("expected string"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_mode_alert_reaches_telegram_slack_and_discord() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let (tg_base, tg) = serve(&[], r#"{"ok":true,"result":{}}"#).await;
    let (slack_base, slack) = serve(&[(503, "")], "ok").await;
    let (discord_base, discord) = serve(&[(429, r#"{"retry_after":0.1}"#)], "").await;
    // AAA 3 2 1 5 6 1: the breakout(3) rule fires at 5; the crossover buys at
    // the 4th tick and sells at the 6th (tests/it/dashboard.rs).
    let extra = format!(
        "[engine]\npnl_every_ticks = 1\n{}\n[alerts]\nwebhook_backoff = \"50ms\"\n\
         [[alerts.rules]]\nname = \"brk\"\nkind = \"breakout\"\nsymbols = [\"AAA\"]\nperiod = 3\n\
         [alerts.telegram]\nbot_token = \"42:xyz\"\nchat_id = \"@desk\"\napi_url = \"{tg_base}\"\nfills = true\n\
         [alerts.slack]\nwebhook_url = \"{slack_base}/s\"\n\
         [alerts.discord]\nwebhook_url = \"{discord_base}/d\"\n",
        exact_venue("10")
    );
    let cfg = config(dir.path(), &bs, &extra, &[CROSS_AAA]);
    let p = producer(&bs);
    let mut msgs = Vec::new();
    for (i, px) in ["3", "2", "1", "5", "6", "1"].iter().enumerate() {
        msgs.push(tick("AAA", 1_700_000_000_000 + i as i64 * 1000, px, "1"));
    }
    produce(&p, "live_prices", &msgs).await;

    let monitor = Arc::new(Monitor::from_config(&cfg));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let b2 = bs.clone();
    let run = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        paper::run_with(&cfg, &b2, StopWhen::default(), shutdown, monitor).await
    });

    // Telegram: the alert and both fills; Slack and Discord: the alert, after
    // one refused attempt each.
    let tg_hits = tg.wait_hits(3).await;
    let slack_hits = slack.wait_hits(2).await;
    let discord_hits = discord.wait_hits(2).await;
    let _ = stop.send(());
    run.await.unwrap().unwrap();

    let alerts = read_json(&bs, "alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let message = "AAA at 5 broke above the 3-tick range (3)";
    assert_eq!(alerts[0]["message"], message);
    assert_eq!(alerts[0]["ts"], "2023-11-14T22:13:23Z");

    let alert_text = format!(
        "<b>Alert: brk</b>\nbreakout · AAA\n{message}\n<i>event time 2023-11-14T22:13:23Z</i>"
    );
    let fills = read_json(&bs, "fills");
    assert_eq!(fills.len(), 2, "{fills:?}");
    let fill_text = |f: &Value, side: &str| {
        let s = |k: &str| {
            f[k].as_str()
                .map_or_else(|| f[k].to_string(), str::to_string)
        };
        assert_eq!(f["side"], side);
        format!(
            "<b>Fill: cross</b>\n{} 10 AAA @ {}\nfee {} · taker\n<i>event time {}</i>",
            side.to_uppercase(),
            s("price"),
            s("fee"),
            s("ts")
        )
    };
    let mut want = vec![
        alert_text,
        fill_text(&fills[0], "buy"),
        fill_text(&fills[1], "sell"),
    ];
    want.sort();
    let mut got: Vec<String> = tg_hits
        .iter()
        .map(|h| {
            assert_eq!(h.path, "/bot42:xyz/sendMessage");
            assert_eq!(h.body["chat_id"], "@desk");
            assert_eq!(h.body["parse_mode"], "HTML");
            h.body["text"].as_str().unwrap().to_string()
        })
        .collect();
    got.sort();
    assert_eq!(got, want);

    let slack_want = json!({"text": format!("*Alert: brk*\nbreakout · AAA\n{message}\n_event time 2023-11-14T22:13:23Z_")});
    for h in &slack_hits {
        assert_eq!(h.path, "/s");
        assert_eq!(h.body, slack_want);
    }
    let discord_want = json!({
        "content": format!("**Alert: brk**\nbreakout · AAA\n{message}\n*event time 2023-11-14T22:13:23Z*"),
        "allowed_mentions": {"parse": []},
    });
    for h in &discord_hits {
        assert_eq!(h.path, "/d");
        assert_eq!(h.body, discord_want);
    }
}
