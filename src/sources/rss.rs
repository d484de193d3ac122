//! An RSS 2.0 / Atom (and JSON Feed) poller (`kind = "rss"`) into `news`.
//!
//! Every `poll_every` it GETs the feed with `If-None-Match` (the last
//! `ETag`) and `If-Modified-Since` (the last `Last-Modified`); a `304 Not
//! Modified` publishes nothing. Items are parsed with feed-rs and published
//! oldest first as [`NewsItem`]s, id `rss:` + the item's guid (Atom: `id`;
//! feed-rs derives one from the link and title when an item has none), time
//! its `pubDate` / `published` (else `updated`, else the time it was first
//! seen). Ids already published are remembered (the newest
//! `dedup_capacity`) across polls, so a feed that repeats its items
//! publishes each once. A body that does not parse is one dead letter (the
//! raw body, its first 64 KiB); failed requests back off exponentially and a
//! `Retry-After` of a 429 or 503 is honoured.

use std::time::Duration;

use papertrader_core::news::NewsItem;
use reqwest::header;

use super::{news_record, Backoff, Dedup, Sink};
use crate::config::SourceConfig;

const SUMMARY_CHARS: usize = 4000;

/// What one poll did.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    NotModified,
    Items { new: usize, seen: usize },
    Unparsable,
}

/// The poller's memory between polls.
pub struct Poller {
    cfg: SourceConfig,
    client: reqwest::Client,
    etag: Option<String>,
    last_modified: Option<String>,
    dedup: Dedup,
}

impl Poller {
    pub fn new(cfg: SourceConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("papertrader/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client");
        Poller {
            dedup: Dedup::new(cfg.dedup_capacity),
            cfg,
            client,
            etag: None,
            last_modified: None,
        }
    }

    /// One GET and what came of it; Err: the request failed (and how long
    /// the server asked to wait).
    pub async fn poll(&mut self, sink: &Sink) -> Result<Polled, (String, Option<Duration>)> {
        let url = self.cfg.url.clone().unwrap_or_default();
        let mut req = self.client.get(&url);
        if let Some(e) = &self.etag {
            req = req.header(header::IF_NONE_MATCH, e);
        }
        if let Some(m) = &self.last_modified {
            req = req.header(header::IF_MODIFIED_SINCE, m);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| (format!("GET {url}: {e}"), None))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            sink.metrics.alive(&sink.source);
            return Ok(Polled::NotModified);
        }
        if !status.is_success() {
            let retry = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_secs);
            return Err((format!("GET {url}: HTTP {status}"), retry));
        }
        let text = |h: header::HeaderName| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, modified) = (text(header::ETAG), text(header::LAST_MODIFIED));
        let body = resp
            .bytes()
            .await
            .map_err(|e| (format!("GET {url}: {e}"), None))?;
        sink.metrics.alive(&sink.source);
        // Remember the validators only for a body that was read whole.
        self.etag = etag;
        self.last_modified = modified;
        let feed = match feed_rs::parser::parse(&body[..]) {
            Ok(f) => f,
            Err(e) => {
                let d = sink.dead("news", "malformed_feed", &e.to_string(), &body);
                let _ = sink.send(d).await;
                return Ok(Polled::Unparsable);
            }
        };
        let seen = feed.entries.len();
        let mut items: Vec<NewsItem> = Vec::new();
        for e in feed.entries {
            if let Some(item) = self.item(e, sink).await {
                items.push(item);
            }
        }
        items.sort_by_key(|i| i.ts);
        let new = items.len();
        for i in &items {
            if sink.send(news_record(i)).await.is_err() {
                break;
            }
        }
        Ok(Polled::Items { new, seen })
    }

    /// A feed entry as a news item, when it is new; an entry without a
    /// title is a dead letter (once).
    async fn item(&mut self, e: feed_rs::model::Entry, sink: &Sink) -> Option<NewsItem> {
        let id = format!("rss:{}", e.id);
        if !self.dedup.first(&id) {
            sink.duplicate();
            return None;
        }
        let headline = e
            .title
            .map(|t| t.content.trim().to_string())
            .unwrap_or_default();
        let url = e.links.first().map(|l| l.href.clone()).unwrap_or_default();
        if headline.is_empty() {
            let raw = serde_json::json!({"id": e.id, "url": url}).to_string();
            let d = sink.dead(
                "news",
                "missing_field",
                "a feed item without a title",
                raw.as_bytes(),
            );
            let _ = sink.send(d).await;
            return None;
        }
        let ts = e
            .published
            .or(e.updated)
            .and_then(|t| t.timestamp_nanos_opt())
            .unwrap_or_else(|| super::now_ms() * 1_000_000);
        let summary = e
            .summary
            .map(|s| s.content.trim().chars().take(SUMMARY_CHARS).collect())
            .unwrap_or_default();
        let symbols = self
            .cfg
            .venue_symbols()
            .iter()
            .map(|s| self.cfg.publish_symbol(s))
            .collect();
        Some(NewsItem {
            id,
            ts,
            symbols,
            headline,
            summary,
            source: self.cfg.name.clone(),
            url,
        })
    }
}

/// Poll until the task is aborted.
pub async fn run(cfg: SourceConfig, sink: Sink) {
    let every = cfg.poll_every.to_std();
    let mut backoff = Backoff::new(cfg.backoff_min.to_std(), cfg.backoff_max.to_std());
    let mut poller = Poller::new(cfg);
    loop {
        match poller.poll(&sink).await {
            Ok(p) => {
                tracing::debug!(source = %sink.source, ?p, "polled");
                backoff.reset();
                tokio::time::sleep(every).await;
            }
            Err((why, retry)) => {
                tracing::warn!(source = %sink.source, %why, "feed poll failed");
                sink.metrics
                    .reconnects
                    .with_label_values(&[sink.source.as_str()])
                    .inc();
                let wait = backoff.next_delay().max(retry.unwrap_or_default());
                tokio::time::sleep(wait).await;
            }
        }
    }
}
