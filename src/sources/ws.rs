//! The WebSocket loop every venue runs in: connect, send the venue's
//! subscription frames (no faster than its rate limit), read frames, answer
//! pings, ping after half of `heartbeat_timeout` without a frame, reconnect
//! after an error, a close or a silence of `heartbeat_timeout` (the ping
//! unanswered), with exponential backoff and jitter, and fetch the REST
//! snapshots a venue asks for.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{Backoff, Record, Sink};
use crate::config::SourceConfig;

/// What a venue asks the loop to do after a frame.
#[derive(Debug)]
pub enum Action {
    /// Send a text frame.
    Send(String),
    /// Publish a record.
    Emit(Record),
    /// GET `url` (a REST snapshot) and hand the answer to [`WsVenue::on_snapshot`].
    Snapshot { symbol: String, url: String },
    /// Drop the connection and reconnect (after the backoff).
    Reconnect(String),
}

/// A REST answer: the body, or why not and how long to wait before asking again.
pub type Fetched = Result<Vec<u8>, (String, Option<Duration>)>;

/// One venue's protocol. The methods are synchronous; the loop does the I/O.
pub trait WsVenue: Send + 'static {
    /// The URL to connect to.
    fn url(&self) -> String;
    /// Frames to send once connected (subscriptions; Alpaca's auth).
    fn on_open(&mut self) -> Vec<String>;
    /// The least time between two frames sent (the venue's rate limit).
    fn min_send_interval(&self) -> Duration {
        Duration::ZERO
    }
    /// One text or binary frame.
    fn on_frame(&mut self, raw: &[u8], sink: &Sink, out: &mut Vec<Action>);
    /// The answer to an [`Action::Snapshot`].
    fn on_snapshot(&mut self, _symbol: &str, _got: Fetched, _sink: &Sink, _out: &mut Vec<Action>) {}
    /// The connection ended: forget what depends on it (sync state).
    fn on_close(&mut self) {}
}

/// Run `venue` until the task is aborted.
pub async fn run<V: WsVenue>(mut venue: V, cfg: SourceConfig, sink: Sink) {
    let mut backoff = Backoff::new(cfg.backoff_min.to_std(), cfg.backoff_max.to_std());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    loop {
        let url = venue.url();
        let connect = tokio::time::timeout(
            Duration::from_secs(15),
            tokio_tungstenite::connect_async(url.as_str()),
        );
        match connect.await {
            Ok(Ok((ws, _))) => {
                tracing::info!(source = %sink.source, %url, "connected");
                let (reason, delivered) = session(&mut venue, ws, &cfg, &sink, &http).await;
                venue.on_close();
                if reason == STOPPED {
                    return;
                }
                if delivered {
                    backoff.reset();
                }
                tracing::warn!(source = %sink.source, %reason, "disconnected; reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(source = %sink.source, %url, error = %e, "cannot connect"),
            Err(_) => tracing::warn!(source = %sink.source, %url, "connecting timed out"),
        }
        sink.metrics
            .reconnects
            .with_label_values(&[sink.source.as_str()])
            .inc();
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

const STOPPED: &str = "stopped";
/// The payload of papertrader's own pings.
const PING: &[u8] = b"papertrader";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection: why it ended, and whether it delivered data.
async fn session<V: WsVenue>(
    venue: &mut V,
    mut ws: Ws,
    cfg: &SourceConfig,
    sink: &Sink,
    http: &reqwest::Client,
) -> (String, bool) {
    let mut pacer = Pacer::new(venue.min_send_interval());
    for frame in venue.on_open() {
        pacer.wait().await;
        if let Err(e) = ws.send(Message::text(frame)).await {
            return (format!("subscribing: {e}"), false);
        }
    }
    let silence = cfg.heartbeat_timeout.to_std();
    let mut delivered = false;
    // Half the timeout without a frame: a ping; the other half without one
    // (not even the pong): the connection is taken for dead.
    let mut pinged = false;
    loop {
        let msg = match tokio::time::timeout(silence / 2, ws.next()).await {
            Err(_) if !pinged => {
                pinged = true;
                pacer.wait().await;
                if let Err(e) = ws.send(Message::Ping(PING.to_vec().into())).await {
                    return (format!("pinging: {e}"), delivered);
                }
                continue;
            }
            Err(_) => {
                let why = format!("nothing received for {silence:?}, a ping unanswered");
                return (why, delivered);
            }
            Ok(None) => return ("the server closed the stream".into(), delivered),
            Ok(Some(Err(e))) => return (format!("reading: {e}"), delivered),
            Ok(Some(Ok(m))) => m,
        };
        pinged = false;
        sink.metrics.alive(&sink.source);
        let mut out = Vec::new();
        match msg {
            Message::Text(t) => venue.on_frame(t.as_bytes(), sink, &mut out),
            Message::Binary(b) => venue.on_frame(&b, sink, &mut out),
            Message::Ping(p) => {
                pacer.wait().await;
                if let Err(e) = ws.send(Message::Pong(p)).await {
                    return (format!("answering a ping: {e}"), delivered);
                }
            }
            Message::Close(c) => return (format!("closed by the server: {c:?}"), delivered),
            Message::Pong(_) | Message::Frame(_) => {}
        }
        let mut queue: VecDeque<Action> = out.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Send(f) => {
                    pacer.wait().await;
                    if let Err(e) = ws.send(Message::text(f)).await {
                        return (format!("sending: {e}"), delivered);
                    }
                }
                Action::Emit(r) => {
                    if sink.send(r).await.is_err() {
                        let _ = ws.close(None).await;
                        return (STOPPED.into(), delivered);
                    }
                    delivered = true;
                }
                Action::Snapshot { symbol, url } => {
                    let got = fetch(http, &url).await;
                    let mut more = Vec::new();
                    venue.on_snapshot(&symbol, got, sink, &mut more);
                    for m in more.into_iter().rev() {
                        queue.push_front(m);
                    }
                }
                Action::Reconnect(reason) => {
                    let _ = ws.close(None).await;
                    return (reason, delivered);
                }
            }
        }
    }
}

/// GET `url`: the body of a 2xx answer; 429 and 418 (Binance's rate-limit
/// answers) with their `Retry-After`.
pub async fn fetch(http: &reqwest::Client, url: &str) -> Fetched {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| (format!("GET {url}: {e}"), None))?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if !status.is_success() {
        return Err((format!("GET {url}: HTTP {status}"), retry_after));
    }
    resp.bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| (format!("GET {url}: {e}"), None))
}

/// Spaces the frames sent on one connection.
struct Pacer {
    every: Duration,
    last: Option<Instant>,
}

impl Pacer {
    fn new(every: Duration) -> Self {
        Pacer { every, last: None }
    }

    async fn wait(&mut self) {
        if let Some(last) = self.last {
            let due = last + self.every;
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        self.last = Some(Instant::now());
    }
}
