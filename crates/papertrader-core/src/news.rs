//! Raw news items on the `news` topic: what `papertrader ingest`'s news
//! sources (RSS/Atom feeds, the Alpaca news stream) publish, and what the
//! sentiment stage reads and scores into `news_sentiment`.
//!
//! ```json
//! {"id":"rss:3f2a...","ts":"2026-01-05T14:31:10Z","symbols":["ACME"],
//!  "headline":"ACME beats estimates","summary":"...","source":"reuters-rss",
//!  "url":"https://example.com/acme"}
//! ```
//!
//! `id` is stable across polls and reconnects (the feed's guid, or the
//! provider's id), so a consumer can drop a repeated item. `symbols` may be
//! empty: the sentiment stage tags headlines with symbols of its own.

use serde::{Deserialize, Serialize};

use crate::domain::Ts;
use crate::wire::{parse_ts, ts_format, Rejection, MAX_MESSAGE_BYTES};

/// One news item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewsItem {
    /// Stable id: `{source kind}:{provider id or guid}`.
    pub id: String,
    /// Publication time (event time), nanoseconds since the epoch.
    #[serde(with = "ts_format")]
    pub ts: Ts,
    /// Symbols the provider tagged, possibly none.
    #[serde(default)]
    pub symbols: Vec<String>,
    pub headline: String,
    #[serde(default)]
    pub summary: String,
    /// The feed or provider name, as configured.
    pub source: String,
    #[serde(default)]
    pub url: String,
}

impl NewsItem {
    /// The message's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("news items serialize")
    }

    /// Decode a `news` message; anything that does not parse, or lacks an id,
    /// a headline or a time, is a [`Rejection`] for the dead-letter topic.
    pub fn decode(bytes: &[u8]) -> Result<NewsItem, Rejection> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(Rejection::new(
                "too_large",
                format!("{} bytes, at most {MAX_MESSAGE_BYTES}", bytes.len()),
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Rejection::new("malformed_json", e.to_string()))?;
        let ts = match v.get("ts") {
            Some(ts) => parse_ts(ts)?,
            None => return Err(Rejection::new("missing_field", "missing field `ts`")),
        };
        let mut item: NewsItem = serde_json::from_value(v)
            .map_err(|e| Rejection::new("invalid_field", e.to_string()))?;
        item.ts = ts;
        if item.id.trim().is_empty() {
            return Err(Rejection::new("missing_field", "id is empty"));
        }
        if item.headline.trim().is_empty() {
            return Err(Rejection::new("missing_field", "headline is empty"));
        }
        Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn news_items_round_trip_and_bad_ones_are_rejected() {
        let item = NewsItem {
            id: "rss:abc".into(),
            ts: 1_767_623_470_000_000_000,
            symbols: vec!["ACME".into()],
            headline: "ACME beats estimates".into(),
            summary: "Quarterly results".into(),
            source: "feed".into(),
            url: "https://example.com/a".into(),
        };
        let json = item.to_json();
        assert!(std::str::from_utf8(&json)
            .unwrap()
            .contains("\"ts\":\"2026-01-05T14:31:10Z\""));
        assert_eq!(NewsItem::decode(&json).unwrap(), item);
        let no_ts = NewsItem::decode(br#"{"id":"x","headline":"h","source":"s"}"#);
        assert_eq!(no_ts.unwrap_err().code, "missing_field");
        let millis = br#"{"id":"x","ts":1767623470000,"headline":"h","source":"s"}"#;
        assert_eq!(NewsItem::decode(millis).unwrap().ts, item.ts);
        for bad in [
            &br#"{"id":"x","headline":"h","source":"s"}"#[..],
            br#"{"id":"","ts":1,"headline":"h","source":"s"}"#,
            br#"{"id":"x","ts":1,"headline":" ","source":"s"}"#,
            br#"not json"#,
        ] {
            assert!(
                NewsItem::decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
