//! The news-sentiment stage end to end through the embedded broker over TCP:
//! headlines of `tests/fixtures/headlines.jsonl` (two symbols, five minutes
//! apart) and a malformed message go to `news`; `papertrader sentiment`'s
//! loop (`papertrader::sentiment::run`) turns them into `news_sentiment`
//! messages equal, byte for byte, to the core stage's; then paper mode's
//! `sentiment_momentum` strategy trades them against price ticks.

use std::time::Duration;

use crate::common::*;
use papertrader::paper::{self, StopWhen};
use papertrader::sentiment::{SentimentConfig, Stage, Vader};
use papertrader_core::news::NewsItem;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const HEADLINES: &str = include_str!("../fixtures/headlines.jsonl");

const MOMENTUM: &str = r#"
name = "news"
symbols = ["ACME", "GLOBEX"]
[rule]
kind = "sentiment_momentum"
smoothing = 2
enter = 0.25
exit = -0.25
[account]
starting_cash = "100000"
[sizing]
mode = "fixed_quantity"
quantity = "10"
"#;

const SENTIMENT: &str = "[sentiment]\nsymbols = [\"ACME\", \"GLOBEX\"]\n\
                         [sentiment.names]\nGlobex = \"GLOBEX\"\n";

/// Every message of a partition-0 topic with its Kafka timestamp.
fn timestamps(bootstrap: &str, topic: &str, n: usize) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sentiment-test-ts")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n && std::time::Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            out.push(m.unwrap().timestamp().to_millis().unwrap_or(-1));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentiment_stage_scores_headlines_that_sentiment_momentum_trades() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", &bs);
    papertrader::kafka::ensure_topics(&base, &["news", "alerts", "indicators"], 1)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &bs,
        &format!(
            "{SENTIMENT}[engine]\npnl_every_ticks = 0\n{}",
            exact_venue("0")
        ),
        &[MOMENTUM],
    );

    // The headlines, then a message that is not a news item.
    let p = producer(&bs);
    let mut news: Vec<(String, String)> = HEADLINES
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), l.to_string())
        })
        .collect();
    let n_headlines = news.len();
    assert_eq!(n_headlines, 15);
    news.push((
        "bad".into(),
        r#"{"id":"x","headline":"no time","source":"s"}"#.into(),
    ));
    produce(&p, "news", &news).await;

    // Two runs of the stage, as a restart: the first stops after 10 messages
    // (both copies of the repeated item among them), the second resumes after
    // what the first committed (on tansu by reading from the start and
    // skipping it) and reads the other 6.
    let stage_run = |max: u64| {
        let (cfg, bs) = (cfg.clone(), bs.clone());
        async move {
            let stop = StopWhen {
                idle: Some(Duration::from_secs(5)),
                max_events: Some(max),
                startup_grace: None,
            };
            papertrader::sentiment::run(&cfg, &bs, stop, std::future::pending())
                .await
                .unwrap()
        }
    };
    let first = stage_run(10).await;
    let second = stage_run(100).await;
    assert_eq!((first.messages, second.messages), (10, 6));
    assert_eq!(first.source, "vader-3.3.2");
    // 15 headlines: one repeated id, one with no symbol; 7 readings per symbol.
    let (a, b) = (first.stage, second.stage);
    assert_eq!(
        (
            a.items + b.items,
            a.duplicates + b.duplicates,
            a.untagged + b.untagged
        ),
        (15, 1, 1)
    );
    assert_eq!(a.published + b.published, 14);
    assert_eq!(second.dead_letters.get("missing_field"), Some(&1));

    // What the core's stage makes of the same items, byte for byte and in order.
    let mut stage = Stage::new(&cfg.app.sentiment).unwrap();
    let want: Vec<(String, Vec<u8>)> = HEADLINES
        .lines()
        .flat_map(|l| stage.on_item(&NewsItem::decode(l.as_bytes()).unwrap()))
        .map(|s| (s.symbol.clone(), s.to_json()))
        .collect();
    let got: Vec<(String, Vec<u8>)> = read_topic(&bs, "news_sentiment")
        .into_iter()
        .map(|(k, v)| (k.unwrap_or_default(), v))
        .collect();
    assert_eq!(got.len(), 14);
    assert_eq!(got, want);
    let msgs: Vec<Value> = got
        .iter()
        .map(|(_, v)| serde_json::from_slice(v).unwrap())
        .collect();
    for sym in ["ACME", "GLOBEX"] {
        assert_eq!(
            msgs.iter().filter(|m| m["symbol"] == sym).count(),
            7,
            "{sym}"
        );
    }
    for m in &msgs {
        assert_eq!(m["source"], "vader-3.3.2");
        assert_eq!(
            (m["scorer"].as_str(), m["scorer_version"].as_str()),
            (Some("vader"), Some("3.3.2"))
        );
        let score = Vader::shared()
            .polarity_scores(m["headline"].as_str().unwrap())
            .compound;
        assert_eq!(m["score"].as_f64(), Some(score));
    }
    // "$ACME shares surge ..." scored as vaderSentiment does (0.6705), tagged by cashtag.
    let surge = msgs.iter().find(|m| m["news_id"] == "rss:n06").unwrap();
    assert_eq!(
        (surge["score"].as_f64(), surge["tagged_by"].as_str()),
        (Some(0.6705), Some("cashtag"))
    );
    // The Kafka timestamp is the item's time: 2026-01-05T14:30:00Z + 5 min steps.
    let ts = timestamps(&bs, "news_sentiment", 14);
    assert_eq!(ts[0], 1_767_623_400_000);
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");

    // The malformed message, dead-lettered with its reason and bytes.
    let dl = read_json(&bs, "dead_letters");
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0]["reason"], "missing_field");
    assert_eq!(dl[0]["topic"], "news");
    assert_eq!(dl[0]["offset"], 15);
    assert!(dl[0]["payload"].as_str().unwrap().contains("no time"));
    // Every offset committed after publishing.
    wait_committed(&bs, "papertrader-sentiment", "news", 1, 16).await;

    // Prices, one tick a minute, then paper mode trades the readings.
    let mut ticks = Vec::new();
    for i in 0..90 {
        let at = 1_767_623_340_000 + i * 60_000;
        ticks.push(tick("ACME", at, "100", "1"));
        ticks.push(tick("GLOBEX", at, "50", "1"));
    }
    produce(&p, "live_prices", &ticks).await;
    let stop = StopWhen {
        idle: Some(Duration::from_secs(20)),
        max_events: Some((ticks.len() + 14) as u64),
        startup_grace: None,
    };
    paper::run(&cfg, &bs, stop, std::future::pending())
        .await
        .unwrap();
    let signals = read_json(&bs, "signals");
    let orders = read_json(&bs, "orders");
    // EMA(2) of the scores crosses +0.25 on the surge and -0.25 on the bad
    // news, for each symbol: a buy, then a sell.
    for sym in ["ACME", "GLOBEX"] {
        let sides: Vec<&str> = signals
            .iter()
            .filter(|s| s["symbol"] == sym)
            .map(|s| s["side"].as_str().unwrap())
            .collect();
        assert_eq!(sides, ["buy", "sell"], "{sym}: {signals:?}");
        let filled: Vec<&Value> = orders
            .iter()
            .filter(|o| o["symbol"] == sym && o["status"] == "filled")
            .collect();
        assert_eq!(filled.len(), 2, "{sym}: {orders:?}");
        assert_eq!(filled[0]["side"], "buy");
        assert_eq!(filled[1]["side"], "sell");
    }
}

#[test]
fn sentiment_config_errors_name_the_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.toml");
    std::fs::write(
        &p,
        "strategies = [\"strategies/ma_crossover.toml\"]\n[sentiment]\nscorer = \"lm\"\n",
    )
    .unwrap();
    let e = papertrader::config::load_with_env(Some(&p), &[]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("app.toml")
            && text.contains("sentiment.lm_word_list")
            && text.contains("docs/sentiment.md"),
        "{text}"
    );
    std::fs::write(&p, "[sentiment]\nscorer = \"bert\"\n").unwrap();
    let text = papertrader::config::load_with_env(Some(&p), &[])
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("sentiment.scorer") && text.contains("`vader`"),
        "{text}"
    );
    // The defaults are valid and score with VADER.
    let cfg = SentimentConfig::default();
    cfg.check().unwrap();
}

/// Item 7 of issue 16 through paper mode: an `arbitrage` rule over one
/// instrument quoted by two venues fires on the `alerts` topic, keyed by the pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrage_alert_reaches_the_alerts_topic() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", &bs);
    papertrader::kafka::ensure_topics(&base, &["alerts", "indicators"], 1)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rule = "[[alerts.rules]]\nname = \"btc_arb\"\nkind = \"arbitrage\"\n\
                symbols = [\"BTCUSDT\", \"CB:BTC-USD\"]\nthreshold_bps = 20.0\n\
                fees_bps = [10.0, 60.0]\nmax_age = \"5s\"\n";
    let strategy = "name = \"hold\"\nsymbols = [\"BTCUSDT\"]\n[rule]\nkind = \"ma_crossover\"\n\
                    fast = 2\nslow = 3\n[account]\nstarting_cash = \"100000\"\n\
                    [sizing]\nmode = \"fixed_quantity\"\nquantity = \"1\"\n";
    let cfg = config(dir.path(), &bs, rule, &[strategy]);
    let t0 = 1_767_623_400_000;
    let ticks = vec![
        tick("BTCUSDT", t0, "100000", "1"),
        // 100800 x 0.994 / (100000 x 1.001) - 1 = 9.51 bp: below 20
        tick("CB:BTC-USD", t0 + 1000, "100800", "1"),
        // 29.37 bp: fires
        tick("CB:BTC-USD", t0 + 2000, "101000", "1"),
        // still above: no second alert
        tick("CB:BTC-USD", t0 + 3000, "101100", "1"),
    ];
    produce(&producer(&bs), "live_prices", &ticks).await;
    let stop = StopWhen {
        idle: Some(Duration::from_secs(20)),
        max_events: Some(ticks.len() as u64),
        startup_grace: None,
    };
    paper::run(&cfg, &bs, stop, std::future::pending())
        .await
        .unwrap();
    let alerts = read_topic(&bs, "alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].0.as_deref(), Some("BTCUSDT/CB:BTC-USD"));
    let a: Value = serde_json::from_slice(&alerts[0].1).unwrap();
    assert_eq!(
        (a["kind"].as_str(), a["direction"].as_str()),
        (Some("arbitrage"), Some("below"))
    );
    assert!(
        (a["value"].as_f64().unwrap() - 29.370_629_370_630_84).abs() < 1e-9,
        "{a}"
    );
    assert_eq!(
        a["alert_id"],
        "alert:btc_arb:BTCUSDT/CB:BTC-USD:live_prices-0-2"
    );
}
