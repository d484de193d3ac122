//! `replay` publishes CSV files into a real broker in the documented wire format.

use crate::common::*;
use papertrader::csvdata::{self, Record};
use papertrader::replay::{self, ReplayOptions, Speed};
use papertrader::wire::{self, InputKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_are_published_as_four_ticks_each_keyed_by_symbol() {
    let b = broker(2).await;
    let bs = b.bootstrap();
    let p = producer(&bs);
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/aapl_msft_daily_2011_2013.csv");
    let opts = ReplayOptions {
        speed: Speed::Max,
        symbol: None,
        progress: false,
        expect: None,
    };
    let stats = replay::publish_file(&p, &path, "live_prices", &opts)
        .await
        .unwrap();
    // 543 bars of AAPL and 543 of MSFT, four ticks each.
    assert_eq!(stats.published, 1086 * 4);
    assert_eq!(stats.skipped, 0);

    let msgs = read_topic(&bs, "live_prices");
    assert_eq!(msgs.len(), 1086 * 4);
    let (expected, _) = csvdata::read_records(&path, None).unwrap();
    let mut got_aapl = Vec::new();
    for (key, payload) in &msgs {
        let ev = wire::decode(InputKind::Prices, payload).expect("replayed ticks decode");
        assert_eq!(key.as_deref(), Some(ev.symbol()));
        if ev.symbol() == "AAPL" {
            got_aapl.push(ev);
        }
    }
    // Per symbol (one partition per key), the ticks arrive in file order and intact.
    let want_aapl: Vec<_> = expected
        .into_iter()
        .filter(|r| r.symbol() == "AAPL")
        .map(|r| match r {
            Record::Tick(t) => papertrader::domain::MarketEvent::Tick(t),
            Record::Sentiment(_) => unreachable!(),
        })
        .collect();
    assert_eq!(got_aapl, want_aapl);
    // First AAPL bar 2011-01-03: O 325.64, L 324.8365 (nearer the open), H 330.26, C 329.57.
    let prices: Vec<String> = got_aapl[..4]
        .iter()
        .map(|e| match e {
            papertrader::domain::MarketEvent::Tick(t) => t.price.to_string(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(prices, ["325.64", "324.8365", "330.26", "329.57"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentiment_files_replay_and_bad_rows_are_counted() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let p = producer(&bs);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("news.csv");
    std::fs::write(
        &path,
        "ts,symbol,score,source,headline\n1000,ACME,0.5,wire,good\n2000,ACME,7,wire,too big\n3000,ACME,-0.25,wire,meh\n",
    )
    .unwrap();
    let opts = ReplayOptions {
        speed: Speed::Factor(1000.0),
        symbol: None,
        progress: false,
        expect: None,
    };
    let stats = replay::publish_file(&p, &path, "news_sentiment", &opts)
        .await
        .unwrap();
    assert_eq!(stats.published, 2);
    assert_eq!(stats.skipped, 1);
    let msgs = read_json(&bs, "news_sentiment");
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["score"], 0.5);
    assert_eq!(msgs[1]["score"], -0.25);
    assert_eq!(msgs[1]["ts"], "1970-01-01T00:00:03Z");
}

/// Regression ("`replay` publishes a tick file into `news_sentiment` without a
/// word"): a file of the other kind than its input topic is refused before
/// anything is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_the_wrong_kind_for_an_input_topic_is_refused() {
    let b = broker(1).await;
    let bs = b.bootstrap();
    let p = producer(&bs);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let opts = |expect| ReplayOptions {
        speed: Speed::Max,
        symbol: None,
        progress: false,
        expect: Some(expect),
    };
    let ticks = root.join("data/synthetic_ticks.csv");
    let e = replay::publish_file(
        &p,
        &ticks,
        "news_sentiment",
        &opts(csvdata::FileKind::Sentiment),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("holds ticks") && e.contains("the sentiment topic"),
        "{e}"
    );
    assert!(read_topic(&bs, "news_sentiment").is_empty());
    // Bars go to the prices topic as ticks do.
    let bars = root.join("data/aapl_msft_daily_2011_2013.csv");
    let stats = replay::publish_file(&p, &bars, "live_prices", &opts(csvdata::FileKind::Ticks))
        .await
        .unwrap();
    assert_eq!(stats.published, 1086 * 4);
}
