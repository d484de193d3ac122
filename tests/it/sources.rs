//! The connectors of `[[sources]]` against local servers that speak each
//! provider's protocol (WebSocket servers made with tokio-tungstenite, HTTP
//! servers with axum), publishing to a real embedded broker that is read back
//! with a Kafka consumer. The fixtures are the providers' documented frames,
//! with the page cited beside each.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use papertrader::config::Loaded;
use papertrader::sources::{self, SourceMetrics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

type Conn = tokio_tungstenite::WebSocketStream<TcpStream>;
type Frames = Arc<Mutex<Vec<(usize, String)>>>;

/// A local WebSocket server: `handler(n, peer)` runs for the n-th connection
/// (from 0). What the clients sent is recorded per connection.
struct WsServer {
    url: String,
    frames: Frames,
    paths: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

impl WsServer {
    fn frames_of(&self, conn: usize) -> Vec<String> {
        let f = self.frames.lock().unwrap();
        f.iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

/// One accepted connection, seen from the server.
struct Peer {
    ws: Conn,
    n: usize,
    frames: Frames,
}

impl Peer {
    /// The next text frame (pongs are recorded as `PONG:payload` on the way),
    /// None after 10 s or when the client went away.
    async fn recv(&mut self) -> Option<String> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .ok()??
                .ok()?;
            match m {
                Message::Text(t) => {
                    self.record(t.to_string());
                    return Some(t.to_string());
                }
                Message::Pong(p) => self.record(format!("PONG:{}", String::from_utf8_lossy(&p))),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Read for `d`, recording text frames and pongs.
    async fn drain(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, self.ws.next()).await {
            match m {
                Message::Text(t) => self.record(t.to_string()),
                Message::Pong(p) => self.record(format!("PONG:{}", String::from_utf8_lossy(&p))),
                _ => {}
            }
        }
    }

    fn record(&self, s: String) {
        self.frames.lock().unwrap().push((self.n, s));
    }

    async fn send(&mut self, text: &str) {
        let _ = self.ws.send(Message::text(text.to_string())).await;
    }

    /// Keep the connection open, recording what comes, until the client leaves.
    async fn hold(mut self) {
        while let Some(Ok(m)) = self.ws.next().await {
            if let Message::Text(t) = m {
                self.record(t.to_string());
            }
        }
    }
}

// tungstenite's handshake callback returns its error response by value.
#[allow(clippy::result_large_err)]
async fn ws_server<F, Fut>(handler: F) -> WsServer
where
    F: Fn(usize, Peer) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let frames: Frames = Arc::default();
    let paths: Arc<Mutex<Vec<String>>> = Arc::default();
    let connections = Arc::new(AtomicUsize::new(0));
    let (f, p, c) = (frames.clone(), paths.clone(), connections.clone());
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let (f, p, handler) = (f.clone(), p.clone(), handler.clone());
            tokio::spawn(async move {
                let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          resp| {
                    p.lock().unwrap().push(req.uri().to_string());
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
                    return;
                };
                handler(n, Peer { ws, n, frames: f }).await;
            });
        }
    });
    WsServer {
        url,
        frames,
        paths,
        connections,
    }
}

/// A broker with the default topics and `news`, one partition each.
async fn news_broker() -> papertrader::embedded::EmbeddedBroker {
    let b = broker(1).await;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", b.bootstrap());
    papertrader::kafka::ensure_topics(&c, &["news"], 1)
        .await
        .expect("creating the news topic");
    b
}

const NO_STRATEGY: &str = "name='idle'\nsymbols=['NONE']\n[rule]\nkind='ma_crossover'\nfast=2\nslow=3\n[sizing]\nmode='fixed_quantity'\nquantity='1'\n";

fn start(cfg: &Loaded, bs: &str) -> (sources::Running, Arc<SourceMetrics>, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(SourceMetrics::new(&registry).unwrap());
    let running = sources::spawn(cfg, bs, metrics.clone()).expect("the sources start");
    (running, metrics, registry)
}

/// Every message of a one-partition topic with its key and Kafka timestamp.
fn read_ts(bs: &str, topic: &str) -> Vec<(String, Value, i64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bs)
        .set("group.id", "sources-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let want = read_topic(bs, topic).len();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < want {
        assert!(std::time::Instant::now() < deadline, "reading {topic}");
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON"),
                m.timestamp().to_millis().unwrap_or(-1),
            ));
        }
    }
    out
}

fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    for f in registry.gather() {
        if f.name() != name {
            continue;
        }
        for m in f.get_metric() {
            let ok = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if ok {
                return m.get_counter().get_value() + m.get_gauge().get_value();
            }
        }
    }
    0.0
}

/// A Binance trade event, the example of
/// https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams#trade-streams
/// with the id, price and times varied.
fn binance_trade(id: u64, price: &str, t: i64) -> String {
    format!(
        r#"{{"e":"trade","E":{t},"s":"BNBBTC","t":{id},"p":"{price}","q":"100","T":{t},"m":true,"M":true}}"#
    )
}

fn binance_source(url: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"bn\"\nkind = \"binance\"\nsymbols = [\"BNBBTC\"]\nws_url = {url:?}\n\
         backoff_min = \"20ms\"\nbackoff_max = \"100ms\"\nheartbeat_timeout = \"5s\"\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_subscribes_answers_pings_and_reconnects_without_duplicates() {
    let b = news_broker().await;
    let bs = b.bootstrap();
    let t0 = 1_672_515_782_136i64;
    let server = ws_server(move |n, mut peer| async move {
        // https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams#live-subscribingunsubscribing-to-streams
        let Some(sub) = peer.recv().await else { return };
        let v: Value = serde_json::from_str(&sub).unwrap_or_default();
        if v["method"] != "SUBSCRIBE" || v["params"] != json!(["bnbbtc@trade"]) {
            return;
        }
        peer.send(&format!(r#"{{"result":null,"id":{}}}"#, v["id"]))
            .await;
        if n == 0 {
            // Binance pings every 20 s; the client must answer with the payload.
            let _ = peer.ws.send(Message::Ping(b"hb".to_vec().into())).await;
            for id in 1..=3 {
                peer.send(&binance_trade(id, &format!("0.00{id}"), t0 + id as i64))
                    .await;
            }
            peer.drain(Duration::from_millis(300)).await; // the pong is recorded
                                                          // Dropped without a close frame: a broken connection.
        } else {
            // After the reconnect the stream repeats trades 2 and 3.
            for id in 2..=5 {
                peer.send(&binance_trade(id, &format!("0.00{id}"), t0 + id as i64))
                    .await;
            }
            peer.hold().await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &bs,
        &binance_source(&server.url, ""),
        &[NO_STRATEGY],
    );
    let (running, _, registry) = start(&cfg, &bs);
    wait_for_messages(&bs, "live_prices", 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;

    let ticks = read_ts(&bs, "live_prices");
    let ids: Vec<String> = ticks
        .iter()
        .map(|(_, v, _)| v["price"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        ["0.001", "0.002", "0.003", "0.004", "0.005"],
        "each trade once, in order"
    );
    for (i, (key, v, ts)) in ticks.iter().enumerate() {
        assert_eq!(key, "BNBBTC");
        assert_eq!(v["symbol"], "BNBBTC");
        assert_eq!(v["size"], "100");
        // The trade time is the tick's ts and the Kafka timestamp.
        assert_eq!(*ts, t0 + i as i64 + 1);
        assert_eq!(
            v["ts"],
            papertrader::wire::format_ts((t0 + i as i64 + 1) * 1_000_000)
        );
    }
    assert!(server.connections.load(Ordering::SeqCst) >= 2);
    assert_eq!(server.paths.lock().unwrap()[0], "/ws");
    for conn in 0..2 {
        let f = server.frames_of(conn);
        let sub: Value = serde_json::from_str(&f[0]).unwrap();
        assert_eq!(sub["method"], "SUBSCRIBE", "connection {conn}: {f:?}");
        assert_eq!(sub["params"], json!(["bnbbtc@trade"]));
    }
    assert!(
        server.frames_of(0).contains(&"PONG:hb".to_string()),
        "{:?}",
        server.frames_of(0)
    );
    assert!(
        metric(
            &registry,
            "papertrader_source_reconnects_total",
            &[("source", "bn")]
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &registry,
            "papertrader_source_duplicates_total",
            &[("source", "bn")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &registry,
            "papertrader_source_messages_total",
            &[("source", "bn"), ("kind", "trade")]
        ),
        5.0
    );
    assert!(
        metric(
            &registry,
            "papertrader_source_last_message_age_seconds",
            &[("source", "bn")]
        ) < 60.0
    );
}

/// A depth event in the format of
/// https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams#diff-depth-stream
fn depth(first: u64, last: u64, bids: &str, asks: &str) -> String {
    format!(
        r#"{{"e":"depthUpdate","E":{},"s":"BNBBTC","U":{first},"u":{last},"b":{bids},"a":{asks}}}"#,
        1_672_515_782_136u64 + last
    )
}

/// A local REST server answering `/api/v3/depth` with the given snapshots in
/// turn (the last one again when they run out), recording each query.
async fn depth_server(snapshots: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::extract::RawQuery;
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let a = asked.clone();
    let app = axum::Router::new().route(
        "/api/v3/depth",
        axum::routing::get(move |RawQuery(q): RawQuery| {
            let a = a.clone();
            let snapshots = snapshots.clone();
            async move {
                let mut a = a.lock().unwrap();
                a.push(q.unwrap_or_default());
                snapshots[(a.len() - 1).min(snapshots.len() - 1)].clone()
            }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, asked)
}

type Book = (BTreeMap<String, String>, BTreeMap<String, String>);

/// The book that the `order_book` messages build, as the simulated venue does.
fn replay_book(msgs: &[(String, Value, i64)]) -> Book {
    let mut book: Book = Default::default();
    for (_, m, _) in msgs {
        if m["type"] == "snapshot" {
            book = Default::default();
        }
        for (side, key) in [(&mut book.0, "bids"), (&mut book.1, "asks")] {
            for l in m[key].as_array().unwrap() {
                let (p, q) = (l[0].as_str().unwrap(), l[1].as_str().unwrap());
                let d: rust_decimal::Decimal = q.parse().unwrap();
                if d.is_zero() {
                    side.remove(p);
                } else {
                    side.insert(p.to_string(), q.to_string());
                }
            }
        }
    }
    book
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_depth_follows_the_update_ids_and_resyncs_after_a_gap() {
    let b = news_broker().await;
    let bs = b.bootstrap();
    // The snapshot format of
    // https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints#order-book
    let snap1 = r#"{"lastUpdateId":160,"bids":[["4.00000000","431.00000000"],["3.99000000","10.00000000"]],"asks":[["4.00000200","12.00000000"]]}"#;
    let snap2 = r#"{"lastUpdateId":182,"bids":[["4.00000000","400.00000000"]],"asks":[["4.00000200","5.00000000"],["4.10000000","7.00000000"]]}"#;
    let (rest, asked) = depth_server(vec![snap1.into(), snap2.into()]).await;
    let server = ws_server(move |_, mut peer| async move {
        let Some(sub) = peer.recv().await else { return };
        if !sub.contains("bnbbtc@depth@100ms") {
            return;
        }
        let frames = [
            // Older than the snapshot (u <= lastUpdateId): dropped.
            depth(157, 160, r#"[["4.00000000","1"]]"#, "[]"),
            // The first event: U <= 161 <= u.
            depth(
                159,
                165,
                r#"[["3.99000000","0"]]"#,
                r#"[["4.00000300","3"]]"#,
            ),
            depth(166, 170, "[]", r#"[["4.00000200","11"]]"#),
            // A gap: 171..174 never came. A new snapshot (182) is fetched.
            depth(175, 180, r#"[["3.00000000","1"]]"#, "[]"),
            depth(181, 183, r#"[["3.98000000","2"]]"#, "[]"),
            depth(184, 185, "[]", r#"[["4.10000000","0"]]"#),
        ];
        for f in frames {
            peer.send(&f).await;
            // Time for the snapshot of the gap to be fetched before 181..183.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        peer.hold().await;
    })
    .await;
    let extra = format!(
        "trades = false\ndepth = true\ndepth_limit = 100\nrest_url = {rest:?}\nsnapshot_min_interval = \"10ms\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &bs,
        &binance_source(&server.url, &extra),
        &[NO_STRATEGY],
    );
    let (running, _, registry) = start(&cfg, &bs);
    wait_for_messages(&bs, "order_book", 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;

    let msgs = read_ts(&bs, "order_book");
    let kinds: Vec<&str> = msgs
        .iter()
        .map(|(_, m, _)| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["snapshot", "update", "update", "snapshot", "update", "update"],
        "{msgs:?}"
    );
    // The first snapshot is the REST book with nothing buffered applied (157..160 is older).
    // Levels normalized: the same decimals without trailing zeros.
    assert_eq!(msgs[0].1["bids"], json!([["4", "431"], ["3.99", "10"]]));
    // The event that came with the gap is not published; the resync's book is snapshot 2.
    assert!(msgs
        .iter()
        .all(|(_, m, _)| !m.to_string().contains(r#"["3","1"]"#)));
    assert_eq!(msgs[3].1["asks"], json!([["4.000002", "5"], ["4.1", "7"]]));
    // The book the messages build is snapshot 2 with 181..185 applied.
    let (bids, asks) = replay_book(&msgs);
    let want_bids: BTreeMap<String, String> = [("4", "400"), ("3.98", "2")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let want_asks: BTreeMap<String, String> = [("4.000002", "5")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!((bids, asks), (want_bids, want_asks));
    // Two snapshots were asked for, of the symbol, with the configured limit.
    let asked = asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        ["symbol=BNBBTC&limit=100", "symbol=BNBBTC&limit=100"]
    );
    assert_eq!(
        metric(
            &registry,
            "papertrader_source_gaps_total",
            &[("source", "bn")]
        ),
        1.0
    );
    // Kafka timestamps are the events' times.
    assert_eq!(msgs[1].2, 1_672_515_782_136 + 165);
    assert!(
        server.connections.load(Ordering::SeqCst) == 1,
        "no reconnect was needed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_do_not_parse_become_dead_letters_with_the_raw_bytes() {
    let b = news_broker().await;
    let bs = b.bootstrap();
    let server = ws_server(move |_, mut peer| async move {
        if peer.recv().await.is_none() {
            return;
        }
        peer.send("{not json").await;
        peer.send(r#"{"e":"trade","E":1,"s":"BNBBTC","t":7,"q":"1","T":1}"#)
            .await;
        let _ = peer.ws.send(Message::Binary(vec![0xff, 0xfe].into())).await;
        peer.send(&binance_trade(8, "0.5", 1_672_515_782_136)).await;
        peer.hold().await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &bs,
        &binance_source(&server.url, ""),
        &[NO_STRATEGY],
    );
    let (running, _, registry) = start(&cfg, &bs);
    wait_for_messages(&bs, "live_prices", 1).await;
    wait_for_messages(&bs, "dead_letters", 3).await;
    running.stop().await;
    let dead = read_json(&bs, "dead_letters");
    assert_eq!(dead.len(), 3, "{dead:?}");
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        ["malformed_json", "invalid_field", "malformed_json"]
    );
    assert_eq!(dead[0]["payload"], "{not json");
    assert_eq!(dead[0]["source"], "bn");
    assert_eq!(dead[0]["payload_bytes"], 9);
    assert!(dead[1]["payload"].as_str().unwrap().contains(r#""t":7"#));
    assert_eq!(dead[1]["topic"], "live_prices");
    assert_eq!(dead[2]["payload_hex"], "fffe");
    assert!(dead
        .iter()
        .all(|d| !d["detail"].as_str().unwrap().is_empty()));
    assert_eq!(read_json(&bs, "live_prices").len(), 1);
    assert_eq!(
        metric(
            &registry,
            "papertrader_source_dead_letters_total",
            &[("source", "bn"), ("reason", "malformed_json")]
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_faster_than_the_broker_takes_is_published_whole_and_in_order() {
    let b = news_broker().await;
    let bs = b.bootstrap();
    const N: u64 = 3000;
    let server = ws_server(move |_, mut peer| async move {
        if peer.recv().await.is_none() {
            return;
        }
        // As fast as the socket takes them: the connector's channel fills,
        // it stops reading, and TCP holds the rest back (backpressure).
        for id in 1..=N {
            let _ = peer
                .ws
                .feed(Message::text(binance_trade(
                    id,
                    "1.5",
                    1_672_515_782_136 + id as i64,
                )))
                .await;
        }
        let _ = peer.ws.flush().await;
        peer.hold().await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &bs,
        &binance_source(&server.url, ""),
        &[NO_STRATEGY],
    );
    let (running, _, _) = start(&cfg, &bs);
    wait_for_messages(&bs, "live_prices", N as i64).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    let ticks = read_ts(&bs, "live_prices");
    assert_eq!(ticks.len() as u64, N);
    let times: Vec<i64> = ticks.iter().map(|t| t.2).collect();
    let want: Vec<i64> = (1..=N as i64).map(|i| 1_672_515_782_136 + i).collect();
    assert_eq!(times, want, "every trade once, in order");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

/// Coinbase Exchange `match` messages, as in
/// https://docs.cdp.coinbase.com/exchange/websocket-feed/channels#match
fn coinbase_match(kind: &str, id: u64, price: &str) -> String {
    format!(
        r#"{{"type":"{kind}","trade_id":{id},"sequence":{},"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8","taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","time":"2014-11-07T08:19:27.0{id:02}459Z","product_id":"BTC-USD","size":"5.23512","price":"{price}","side":"sell"}}"#,
        id + 40
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_matches_become_ticks_of_the_mapped_symbol_across_a_reconnect() {
    let b = news_broker().await;
    let bs = b.bootstrap();
    let server = ws_server(move |n, mut peer| async move {
        // https://docs.cdp.coinbase.com/exchange/websocket-feed/overview#subscribe
        let Some(sub) = peer.recv().await else { return };
        let v: Value = serde_json::from_str(&sub).unwrap_or_default();
        if v != json!({"type":"subscribe","product_ids":["BTC-USD"],"channels":["matches","heartbeat"]}) {
            return;
        }
        peer.send(r#"{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]},{"name":"heartbeat","product_ids":["BTC-USD"]}]}"#).await;
        if n == 0 {
            peer.send(&coinbase_match("last_match", 10, "400.23")).await;
            // https://docs.cdp.coinbase.com/exchange/websocket-feed/channels#heartbeat-channel
            peer.send(r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}"#).await;
            peer.send(&coinbase_match("match", 11, "400.24")).await;
            peer.send(&coinbase_match("match", 12, "400.25")).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            peer.send(&coinbase_match("last_match", 12, "400.25")).await;
            peer.send(&coinbase_match("match", 13, "400.26")).await;
            peer.hold().await;
        }
    })
    .await;
    let src = format!(
        "[[sources]]\nname = \"cb\"\nkind = \"coinbase\"\nsymbols = [\"BTC-USD\"]\nsymbol_prefix = \"CB:\"\n\
         ws_url = {:?}\nbackoff_min = \"20ms\"\nbackoff_max = \"100ms\"\n",
        server.url
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &bs, &src, &[NO_STRATEGY]);
    let (running, _, registry) = start(&cfg, &bs);
    wait_for_messages(&bs, "live_prices", 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    let ticks = read_ts(&bs, "live_prices");
    let prices: Vec<&str> = ticks
        .iter()
        .map(|t| t.1["price"].as_str().unwrap())
        .collect();
    assert_eq!(prices, ["400.23", "400.24", "400.25", "400.26"]);
    assert!(ticks
        .iter()
        .all(|t| t.0 == "CB:BTC-USD" && t.1["symbol"] == "CB:BTC-USD"));
    assert_eq!(ticks[0].1["ts"], "2014-11-07T08:19:27.010459Z");
    assert_eq!(ticks[0].2, 1_415_348_367_010);
    assert_eq!(ticks[0].1["size"], "5.23512");
    assert_eq!(
        server.frames_of(1).len(),
        1,
        "resubscribed once after the reconnect"
    );
    assert!(
        metric(
            &registry,
            "papertrader_source_reconnects_total",
            &[("source", "cb")]
        ) >= 1.0
    );
    assert!(
        read_json(&bs, "dead_letters").is_empty(),
        "heartbeats and subscriptions are not dead letters"
    );
}

const ALPACA_KEY_VAR: &str = "PT_TEST_ALPACA_KEY";
const ALPACA_SECRET_VAR: &str = "PT_TEST_ALPACA_SECRET";

fn set_alpaca_env() {
    std::env::set_var(ALPACA_KEY_VAR, "AKFZXJH121U18SHHDRFO");
    std::env::set_var(
        ALPACA_SECRET_VAR,
        "pnq4YHlpMF3LhfLyOvmdfLmlz6BnASrTPQIASeiU",
    );
}

/// The Alpaca handshake of
/// https://docs.alpaca.markets/docs/streaming-market-data#authentication :
/// greet, check the auth frame, confirm, check the subscription.
async fn alpaca_handshake(peer: &mut Peer, want_sub: Value) -> bool {
    peer.send(r#"[{"T":"success","msg":"connected"}]"#).await;
    let Some(auth) = peer.recv().await else {
        return false;
    };
    let auth: Value = serde_json::from_str(&auth).unwrap_or_default();
    if auth
        != json!({"action":"auth","key":"AKFZXJH121U18SHHDRFO","secret":"pnq4YHlpMF3LhfLyOvmdfLmlz6BnASrTPQIASeiU"})
    {
        peer.send(r#"[{"T":"error","code":402,"msg":"auth failed"}]"#)
            .await;
        return false;
    }
    peer.send(r#"[{"T":"success","msg":"authenticated"}]"#)
        .await;
    let Some(sub) = peer.recv().await else {
        return false;
    };
    serde_json::from_str::<Value>(&sub).unwrap_or_default() == want_sub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpaca_authenticates_subscribes_and_maps_trades_quotes_and_bars() {
    set_alpaca_env();
    let b = news_broker().await;
    let bs = b.bootstrap();
    let server = ws_server(move |_, mut peer| async move {
        let sub = json!({"action":"subscribe","trades":["AAPL"],"quotes":["AAPL"],"bars":["AAPL"]});
        if !alpaca_handshake(&mut peer, sub).await {
            return;
        }
        peer.send(r#"[{"T":"subscription","trades":["AAPL"],"quotes":["AAPL"],"bars":["AAPL"],"updatedBars":[],"dailyBars":[],"statuses":[],"lulds":[],"corrections":["AAPL"],"cancelErrors":["AAPL"]}]"#).await;
        // Quote, trade and bar in the formats of
        // https://docs.alpaca.markets/docs/real-time-stock-pricing-data#quotes (#trades, #minute-bars)
        peer.send(r#"[{"T":"q","S":"AAPL","bx":"U","bp":126.55,"bs":1,"ax":"Q","ap":126.56,"as":4,"t":"2021-02-22T15:51:45.335689322Z","c":["R"],"z":"C"}]"#).await;
        let trade = r#"{"T":"t","i":96921,"S":"AAPL","x":"D","p":126.555,"s":1,"t":"2021-02-22T15:51:45.908Z","c":["@","I"],"z":"C"}"#;
        peer.send(&format!("[{trade},{trade}]")).await;
        peer.send(r#"[{"T":"b","S":"AAPL","o":126.55,"h":126.6,"l":126.5,"c":126.58,"v":4200,"t":"2021-02-22T15:51:00Z","n":12,"vw":126.56}]"#).await;
        peer.hold().await;
    })
    .await;
    let src = format!(
        "[[sources]]\nname = \"alp\"\nkind = \"alpaca\"\nsymbols = [\"AAPL\"]\nfeed = \"iex\"\nquotes = true\nbars = true\n\
         key_env = {ALPACA_KEY_VAR:?}\nsecret_env = {ALPACA_SECRET_VAR:?}\nws_url = {:?}\n",
        server.url
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &bs, &src, &[NO_STRATEGY]);
    let (running, _, registry) = start(&cfg, &bs);
    wait_for_messages(&bs, "live_prices", 2).await;
    wait_for_messages(&bs, "order_book", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(server.paths.lock().unwrap()[0], "/v2/iex");
    let book = read_ts(&bs, "order_book");
    assert_eq!(book.len(), 1);
    assert_eq!(book[0].1["type"], "snapshot");
    assert_eq!(book[0].1["bids"], json!([["126.55", "1"]]));
    assert_eq!(book[0].1["asks"], json!([["126.56", "4"]]));
    let ticks = read_ts(&bs, "live_prices");
    assert_eq!(ticks.len(), 2, "the repeated trade is dropped: {ticks:?}");
    // Exact decimals from JSON numbers; the last quote rides on the trade.
    assert_eq!(ticks[0].1["price"], "126.555");
    assert_eq!(
        (ticks[0].1["bid"].as_str(), ticks[0].1["ask"].as_str()),
        (Some("126.55"), Some("126.56"))
    );
    assert_eq!(ticks[0].1["ts"], "2021-02-22T15:51:45.908Z");
    assert_eq!(ticks[0].2, 1_614_009_105_908);
    // The bar: one tick at its close, a minute after its start.
    assert_eq!(ticks[1].1["price"], "126.58");
    assert_eq!(ticks[1].1["size"], "4200");
    assert_eq!(ticks[1].1["ts"], "2021-02-22T15:52:00Z");
    assert_eq!(
        metric(
            &registry,
            "papertrader_source_duplicates_total",
            &[("source", "alp")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpaca_news_items_go_to_the_news_topic_once() {
    set_alpaca_env();
    let b = news_broker().await;
    let bs = b.bootstrap();
    let server = ws_server(move |n, mut peer| async move {
        // https://docs.alpaca.markets/docs/streaming-real-time-news
        if !alpaca_handshake(&mut peer, json!({"action":"subscribe","news":["*"]})).await {
            return;
        }
        let item = r#"[{"T":"n","id":24918784,"headline":"Corsair Reports Purchase Of Majority Ownership In iDisplay, No Terms Disclosed","summary":"Corsair Gaming, Inc. (NASDAQ:CRSR) (\u201cCorsair\u201d), a leading global provider and innovator of high-performance gear for gamers and content creators, today announced that it acquired a 51% stake in iDisplay","author":"Benzinga Newsdesk","created_at":"2022-01-05T22:00:37Z","updated_at":"2022-01-05T22:00:38Z","url":"https://www.benzinga.com/m-a/22/01/24918784/corsair-reports-purchase-of-majority-ownership-in-idisplay-no-terms-disclosed","content":"\u003cp\u003eCorsair Gaming, Inc. (NASDAQ:\u003ca class=\"ticker\" href=\"https://www.benzinga.com/quote/CRSR\"\u003eCRSR\u003c/a\u003e)...","symbols":["CRSR"],"source":"benzinga"}]"#;
        peer.send(item).await;
        if n == 0 {
            // A reconnect; the stream sends the item again.
            return;
        }
        peer.hold().await;
    })
    .await;
    let src = format!(
        "[[sources]]\nname = \"alpaca-news\"\nkind = \"alpaca_news\"\nkey_env = {ALPACA_KEY_VAR:?}\n\
         secret_env = {ALPACA_SECRET_VAR:?}\nws_url = {:?}\nbackoff_min = \"20ms\"\nbackoff_max = \"50ms\"\n",
        server.url
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &bs, &src, &[NO_STRATEGY]);
    let (running, _, registry) = start(&cfg, &bs);
    wait_for_messages(&bs, "news", 1).await;
    papertrader_wait(|| server.connections.load(Ordering::SeqCst) >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    assert_eq!(server.paths.lock().unwrap()[0], "/v1beta1/news");
    let news = read_ts(&bs, "news");
    assert_eq!(news.len(), 1, "{news:?}");
    let (key, item, ts) = &news[0];
    assert_eq!(key, "alpaca:24918784");
    assert_eq!(item["id"], "alpaca:24918784");
    assert_eq!(item["symbols"], json!(["CRSR"]));
    assert_eq!(item["source"], "alpaca-news");
    assert_eq!(item["ts"], "2022-01-05T22:00:37Z");
    assert_eq!(*ts, 1_641_420_037_000);
    assert!(item["headline"]
        .as_str()
        .unwrap()
        .starts_with("Corsair Reports"));
    // The item decodes as the sentiment stage reads it.
    let decoded = papertrader_core::news::NewsItem::decode(item.to_string().as_bytes()).unwrap();
    assert_eq!(decoded.url, "https://www.benzinga.com/m-a/22/01/24918784/corsair-reports-purchase-of-majority-ownership-in-idisplay-no-terms-disclosed");
    assert_eq!(
        metric(
            &registry,
            "papertrader_source_duplicates_total",
            &[("source", "alpaca-news")]
        ),
        1.0
    );
}

async fn papertrader_wait(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An RSS 2.0 document in the form of the spec's sample
/// (https://www.rssboard.org/files/sample-rss-2.xml, https://www.rssboard.org/rss-specification).
fn rss(items: &[(&str, &str, &str)]) -> String {
    let items: String = items
        .iter()
        .map(|(guid, title, date)| {
            format!(
                "<item><title>{title}</title><link>https://www.nasa.gov/{guid}</link>\
                 <description>About {title}.</description><pubDate>{date}</pubDate>\
                 <guid>https://www.nasa.gov/{guid}</guid></item>"
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0"?><rss version="2.0"><channel><title>NASA Space Station News</title><link>http://www.nasa.gov/</link><description>A RSS news feed containing the latest NASA press releases on the International Space Station.</description>{items}</channel></rss>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_polls_with_etags_and_publishes_each_item_once() {
    use axum::http::{header, HeaderMap, StatusCode};
    let b = news_broker().await;
    let bs = b.bootstrap();
    let a = (
        "a",
        "Louisiana Students to Hear from NASA Astronauts Aboard Space Station",
        "Fri, 21 Jul 2023 09:04 EDT",
    );
    let bb = (
        "b",
        "NASA Expands Options for Spacewalking, Moon Exploration",
        "Tue, 10 Jun 2023 13:00 EDT",
    );
    let c = (
        "c",
        "Two Veteran NASA Astronauts, One Rookie to Fly on Space Station",
        "Fri, 21 Jul 2023 10:00 EDT",
    );
    let v1 = rss(&[a, bb]);
    let v2 = rss(&[c, a, bb]);
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/feed.xml",
        axum::routing::get(move |headers: HeaderMap| {
            let (s, v1, v2) = (s.clone(), v1.clone(), v2.clone());
            async move {
                let inm = headers
                    .get(header::IF_NONE_MATCH)
                    .map(|v| v.to_str().unwrap().to_string());
                let mut s = s.lock().unwrap();
                s.push(inm.clone());
                // 1st: v1; then 304 while the client has v1, until the 4th
                // request, which gets v2 (a new item and the two old ones).
                let (etag, body) = if s.len() < 4 {
                    ("\"v1\"", v1)
                } else {
                    ("\"v2\"", v2)
                };
                if inm.as_deref() == Some(etag) {
                    return (
                        StatusCode::NOT_MODIFIED,
                        [(header::ETAG, etag)],
                        String::new(),
                    );
                }
                (StatusCode::OK, [(header::ETAG, etag)], body)
            }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/feed.xml", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    let src = format!(
        "[[sources]]\nname = \"nasa\"\nkind = \"rss\"\nurl = {url:?}\npoll_every = \"100ms\"\nsymbols = [\"ACME\"]\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &bs, &src, &[NO_STRATEGY]);
    let (running, _, registry) = start(&cfg, &bs);
    wait_for_messages(&bs, "news", 3).await;
    papertrader_wait(|| seen.lock().unwrap().len() >= 6).await;
    running.stop().await;
    let news = read_ts(&bs, "news");
    let ids: Vec<&str> = news.iter().map(|n| n.1["id"].as_str().unwrap()).collect();
    // Oldest first within a poll; the repeated items of v2 are not published again.
    assert_eq!(
        ids,
        [
            "rss:https://www.nasa.gov/b",
            "rss:https://www.nasa.gov/a",
            "rss:https://www.nasa.gov/c"
        ]
    );
    assert_eq!(news[0].1["headline"], bb.1);
    assert_eq!(news[0].1["source"], "nasa");
    assert_eq!(news[0].1["symbols"], json!(["ACME"]));
    assert_eq!(news[0].1["url"], "https://www.nasa.gov/b");
    assert_eq!(news[0].1["ts"], "2023-06-10T17:00:00Z");
    assert_eq!(news[0].2, 1_686_416_400_000);
    assert_eq!(news[0].0, "rss:https://www.nasa.gov/b");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], None, "the first poll has no ETag");
    assert_eq!(
        seen[1].as_deref(),
        Some("\"v1\""),
        "then the ETag is sent back"
    );
    assert_eq!(seen[4].as_deref(), Some("\"v2\""));
    assert_eq!(
        metric(
            &registry,
            "papertrader_source_duplicates_total",
            &[("source", "nasa")]
        ),
        2.0
    );
    assert!(read_json(&bs, "dead_letters").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_trades_from_a_local_exchange_are_traded_by_paper_mode() {
    use papertrader::paper::StopWhen;
    let b = news_broker().await;
    let bs = b.bootstrap();
    // Times near now: paper mode refuses event times far from its clock.
    let t0 = chrono::Utc::now().timestamp_millis() - 60_000;
    // 3 2 1 5 6 1: SMA(2) crosses SMA(3) up at the 4th trade and down at the 6th.
    let prices = ["3", "2", "1", "5", "6", "1"];
    let server = ws_server(move |_, mut peer| async move {
        let Some(sub) = peer.recv().await else { return };
        if !sub.contains("btcusdt@trade") {
            return;
        }
        for (i, p) in prices.iter().enumerate() {
            let id = i as u64 + 1;
            peer.send(&format!(
                r#"{{"e":"trade","E":{t},"s":"BTCUSDT","t":{id},"p":"{p}","q":"1","T":{t},"m":true,"M":true}}"#,
                t = t0 + i as i64 * 1000
            ))
            .await;
        }
        peer.hold().await;
    })
    .await;
    let strat = "name = \"live_cross\"\nsymbols = [\"BTCUSDT\"]\n[rule]\nkind = \"ma_crossover\"\nfast = 2\nslow = 3\n\
                 [sizing]\nmode = \"fixed_quantity\"\nquantity = \"1\"\n";
    let src = format!(
        "[[sources]]\nname = \"binance\"\nkind = \"binance\"\nsymbols = [\"BTCUSDT\"]\nws_url = {:?}\n{}",
        server.url,
        exact_venue("10")
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &bs, &src, &[strat]);
    let stop = StopWhen {
        idle: Some(Duration::from_secs(20)),
        max_events: Some(6),
        startup_grace: None,
    };
    let summary = papertrader::app::paper_with_sources(&cfg, &bs, stop, std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.inputs.total_processed(), 6);
    let orders = read_json(&bs, "orders");
    let filled: Vec<&Value> = orders.iter().filter(|o| o["status"] == "filled").collect();
    assert_eq!(filled.len(), 2, "{orders:?}");
    assert_eq!(
        (filled[0]["side"].as_str(), filled[0]["symbol"].as_str()),
        (Some("buy"), Some("BTCUSDT"))
    );
    assert_eq!(filled[0]["avg_price"], "5.01");
    assert_eq!(filled[1]["side"], "sell");
    assert_eq!(filled[1]["avg_price"], "0.99");
}

#[test]
fn the_live_example_configs_load_and_bad_sources_name_the_key() {
    for file in ["config/live-binance.toml", "config/live-alpaca.toml"] {
        let cfg = papertrader::config::load_with_env(Some(std::path::Path::new(file)), &[])
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!cfg.app.sources.is_empty(), "{file}");
        assert!(!cfg.strategies.is_empty(), "{file}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = |text: &str| {
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, text).unwrap();
        let e = papertrader::config::load_with_env(Some(&p), &[]).unwrap_err();
        assert_eq!(e.file, p.display().to_string(), "{e}");
        e
    };
    let e = bad("[[sources]]\nname = \"x\"\nkind = \"kraken\"\n");
    assert!(
        e.key.starts_with("sources") && e.problem.contains("kraken"),
        "{e}"
    );
    let e = bad("[[sources]]\nname = \"x\"\nkind = \"binance\"\n");
    assert_eq!(e.key, "sources[0].symbols", "{e}");
    let e = bad("[[sources]]\nname = \"x\"\nkind = \"rss\"\n");
    assert_eq!(e.key, "sources[0].url", "{e}");
    let e = bad(
        "[[sources]]\nname = \"x\"\nkind = \"coinbase\"\nsymbols = [\"BTC-USD\"]\ndepth = true\n",
    );
    assert_eq!(e.key, "sources[0].depth", "{e}");
    let e =
        bad("[[sources]]\nname = \"x\"\nkind = \"alpaca\"\nsymbols = [\"AAPL\"]\nfeed = \"otc\"\n");
    assert_eq!(e.key, "sources[0].feed", "{e}");
    let e = bad("[[sources]]\nname = \"x\"\nkind = \"rss\"\nurl = \"https://a/b\"\n[[sources]]\nname = \"x\"\nkind = \"rss\"\nurl = \"https://a/c\"\n");
    assert_eq!(e.key, "sources[1].name", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_command_publishes_what_paper_mode_then_trades() {
    use papertrader::paper::StopWhen;
    use std::io::{BufRead, BufReader};
    let b = news_broker().await;
    let bs = b.bootstrap();
    let t0 = chrono::Utc::now().timestamp_millis() - 60_000;
    let prices = ["3", "2", "1", "5", "6", "1"];
    let server = ws_server(move |_, mut peer| async move {
        let Some(sub) = peer.recv().await else { return };
        if !sub.contains("btcusdt@trade") {
            return;
        }
        for (i, p) in prices.iter().enumerate() {
            peer.send(&format!(
                r#"{{"e":"trade","E":{t},"s":"BTCUSDT","t":{id},"p":"{p}","q":"1","T":{t},"m":true,"M":true}}"#,
                t = t0 + i as i64 * 1000,
                id = i + 1
            ))
            .await;
        }
        peer.hold().await;
    })
    .await;
    let strat = "name = \"live_cross\"\nsymbols = [\"BTCUSDT\"]\n[rule]\nkind = \"ma_crossover\"\nfast = 2\nslow = 3\n\
                 [sizing]\nmode = \"fixed_quantity\"\nquantity = \"1\"\n";
    let src = format!(
        "[[sources]]\nname = \"binance\"\nkind = \"binance\"\nsymbols = [\"BTCUSDT\"]\nws_url = {:?}\n{}",
        server.url,
        exact_venue("10")
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &bs, &src, &[strat]);
    // `papertrader ingest`, the binary, against the test's broker.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .args([
            "--config",
            &dir.path().join("app.toml").display().to_string(),
        ])
        .args([
            "ingest",
            "--brokers",
            &bs,
            "--metrics-addr",
            "127.0.0.1:0",
            "--run-for",
            "60",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let metrics_url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("ingest prints where its metrics are");
        if let Some(rest) = line.split("metrics on ").nth(1) {
            break rest.trim().to_string();
        }
    };
    wait_for_messages(&bs, "live_prices", 6).await;
    let body = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains(r#"papertrader_source_messages_total{kind="trade",source="binance"} 6"#),
        "{body}"
    );
    assert!(
        body.contains("papertrader_source_last_message_age_seconds{source=\"binance\"}"),
        "{body}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let stop = StopWhen {
        idle: Some(Duration::from_secs(20)),
        max_events: Some(6),
        startup_grace: None,
    };
    papertrader::paper::run(&cfg, &bs, stop, std::future::pending())
        .await
        .unwrap();
    let orders = read_json(&bs, "orders");
    let filled: Vec<&Value> = orders.iter().filter(|o| o["status"] == "filled").collect();
    assert_eq!(filled.len(), 2, "{orders:?}");
    assert_eq!(filled[0]["symbol"], "BTCUSDT");
    assert_eq!(filled[0]["side"], "buy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_replaced_after_the_heartbeat_timeout() {
    let b = news_broker().await;
    let bs = b.bootstrap();
    let server = ws_server(move |n, mut peer| async move {
        if peer.recv().await.is_none() {
            return;
        }
        if n < 2 {
            let t = 1_672_515_782_136 + n as i64;
            peer.send(&binance_trade(n as u64 + 1, "0.5", t)).await;
        }
        // Open but silent: no data, and nothing read, so the client's pings
        // go unanswered.
        let _open = peer;
        tokio::time::sleep(Duration::from_secs(20)).await;
    })
    .await;
    let extra = "heartbeat_timeout = \"400ms\"\n";
    let src = binance_source(&server.url, "").replace("heartbeat_timeout = \"5s\"\n", extra);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &bs, &src, &[NO_STRATEGY]);
    let (running, _, registry) = start(&cfg, &bs);
    wait_for_messages(&bs, "live_prices", 2).await;
    running.stop().await;
    assert!(server.connections.load(Ordering::SeqCst) >= 2);
    assert!(
        metric(
            &registry,
            "papertrader_source_reconnects_total",
            &[("source", "bn")]
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atom_feeds_are_read_and_if_modified_since_is_sent_back() {
    use axum::http::{header, HeaderMap, StatusCode};
    let b = news_broker().await;
    let bs = b.bootstrap();
    // The example of RFC 4287, section 1.1 (https://www.rfc-editor.org/rfc/rfc4287#section-1.1).
    let atom = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Example Feed</title>
  <link href="http://example.org/"/>
  <updated>2003-12-13T18:30:02Z</updated>
  <author><name>John Doe</name></author>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <entry>
    <title>Atom-Powered Robots Run Amok</title>
    <link href="http://example.org/2003/12/13/atom03"/>
    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>
    <updated>2003-12-13T18:30:02Z</updated>
    <summary>Some text.</summary>
  </entry>
</feed>"#;
    let modified = "Sat, 13 Dec 2003 18:30:02 GMT";
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/atom",
        axum::routing::get(move |headers: HeaderMap| {
            let s = s.clone();
            async move {
                let ims = headers
                    .get(header::IF_MODIFIED_SINCE)
                    .map(|v| v.to_str().unwrap().to_string());
                s.lock().unwrap().push(ims.clone());
                if ims.as_deref() == Some(modified) {
                    return (
                        StatusCode::NOT_MODIFIED,
                        [(header::LAST_MODIFIED, modified)],
                        String::new(),
                    );
                }
                (
                    StatusCode::OK,
                    [(header::LAST_MODIFIED, modified)],
                    atom.to_string(),
                )
            }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/atom", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    let src = format!(
        "[[sources]]\nname = \"atom\"\nkind = \"rss\"\nurl = {url:?}\npoll_every = \"100ms\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &bs, &src, &[NO_STRATEGY]);
    let (running, _, _) = start(&cfg, &bs);
    wait_for_messages(&bs, "news", 1).await;
    papertrader_wait(|| seen.lock().unwrap().len() >= 3).await;
    running.stop().await;
    let news = read_ts(&bs, "news");
    assert_eq!(news.len(), 1);
    let item = &news[0].1;
    assert_eq!(
        item["id"],
        "rss:urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a"
    );
    assert_eq!(item["headline"], "Atom-Powered Robots Run Amok");
    assert_eq!(item["summary"], "Some text.");
    assert_eq!(item["url"], "http://example.org/2003/12/13/atom03");
    assert_eq!(item["ts"], "2003-12-13T18:30:02Z");
    assert_eq!(item["symbols"], json!([]));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], None);
    assert_eq!(seen[1].as_deref(), Some(modified));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_snapshot_request_waits_the_retry_after() {
    use axum::http::{header, StatusCode};
    let b = news_broker().await;
    let bs = b.bootstrap();
    let asked: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let a = asked.clone();
    // https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits :
    // "a 429 will be returned" with a Retry-After header.
    let app = axum::Router::new().route(
        "/api/v3/depth",
        axum::routing::get(move || {
            let a = a.clone();
            async move {
                let mut a = a.lock().unwrap();
                a.push(std::time::Instant::now());
                if a.len() == 1 {
                    let body = r#"{"code":-1003,"msg":"Too many requests."}"#;
                    return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], body.to_string());
                }
                let snap = r#"{"lastUpdateId":55,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}"#;
                (StatusCode::OK, [(header::RETRY_AFTER, "0")], snap.to_string())
            }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    let server = ws_server(move |_, mut peer| async move {
        if peer.recv().await.is_none() {
            return;
        }
        for n in 0..20u64 {
            let f = depth(
                n * 10 + 1,
                n * 10 + 10,
                &format!(r#"[["3.{n:02}","1"]]"#),
                "[]",
            );
            peer.send(&f).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peer.hold().await;
    })
    .await;
    let extra = format!(
        "trades = false\ndepth = true\nrest_url = {rest:?}\nsnapshot_min_interval = \"10ms\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &bs,
        &binance_source(&server.url, &extra),
        &[NO_STRATEGY],
    );
    let (running, _, registry) = start(&cfg, &bs);
    // Until the last event (191..200, bid 3.19) is on the topic.
    let b2 = bs.clone();
    wait_count("the last depth update", 1, move || {
        let last = read_json(&b2, "order_book");
        last.iter()
            .filter(|m| m.to_string().contains("\"3.19\""))
            .count() as i64
    })
    .await;
    running.stop().await;
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "one refused request, one after the wait");
    let waited = asked[1] - asked[0];
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
    let msgs = read_ts(&bs, "order_book");
    assert_eq!(msgs[0].1["type"], "snapshot");
    assert!(msgs[1..].iter().all(|m| m.1["type"] == "update"));
    // The events buffered while waiting are in the snapshot: those older
    // than it (1..50) are not, the others (51..) are.
    let (bids, _) = replay_book(&msgs);
    let mut want: BTreeMap<String, String> = (5..20)
        .map(|n| {
            let p: rust_decimal::Decimal = format!("3.{n:02}").parse().unwrap();
            (p.normalize().to_string(), "1".to_string())
        })
        .collect();
    want.insert("4".into(), "431".into());
    assert_eq!(bids, want);
    assert_eq!(
        metric(
            &registry,
            "papertrader_source_gaps_total",
            &[("source", "bn")]
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_connection_that_answers_pings_is_kept() {
    let b = news_broker().await;
    let bs = b.bootstrap();
    let server = ws_server(move |_, mut peer| async move {
        if peer.recv().await.is_none() {
            return;
        }
        peer.send(&binance_trade(1, "0.5", 1_672_515_782_136)).await;
        // No data, but reading: tungstenite answers the client's pings.
        peer.hold().await;
    })
    .await;
    let src = binance_source(&server.url, "").replace(
        "heartbeat_timeout = \"5s\"\n",
        "heartbeat_timeout = \"400ms\"\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &bs, &src, &[NO_STRATEGY]);
    let (running, _, registry) = start(&cfg, &bs);
    wait_for_messages(&bs, "live_prices", 1).await;
    // Several heartbeat timeouts long.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    running.stop().await;
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        metric(
            &registry,
            "papertrader_source_reconnects_total",
            &[("source", "bn")]
        ),
        0.0
    );
}
