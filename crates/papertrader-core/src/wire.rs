//! The JSON wire format: bytes in, validated domain values (or a rejection) out;
//! domain events in, bytes out.
//!
//! This is the only module that sees raw JSON. Every input decoder returns either a
//! [`MarketEvent`] that satisfies its invariants or a [`Rejection`] with a stable
//! reason code and a human-readable detail, which the engine turns into a
//! dead-letter record. Decimals are read from JSON strings or numbers without ever
//! passing through `f64` (serde_json's `arbitrary_precision`), and written as
//! strings. Timestamps are read as epoch milliseconds (integer or decimal) or RFC
//! 3339, and written as RFC 3339 UTC. The formats are documented, with an example
//! per topic, in `docs/topics.md`. A price tick of the common shape is read
//! without serde (the private `fast` module), which falls back to serde for anything else.

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

mod fast;

use crate::domain::{
    is_negative, is_positive, AlertMsg, BookUpdate, DeadLetterMsg, FillMsg, IndicatorMsg, Level,
    MarketEvent, Name, OrderMsg, Output, PnlMsg, Sentiment, SignalMsg, Tick, Ts, NANOS_PER_MILLI,
};

/// Largest accepted input message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest accepted symbol.
pub const MAX_SYMBOL_LEN: usize = 32;
/// Most levels accepted per side of a depth message.
pub const MAX_BOOK_LEVELS: usize = 1000;
/// Accepted event-time range: 1970-01-01 .. 2200-01-01.
const MAX_TS_NANOS: i64 = 7_258_118_400 * 1_000_000_000;

/// The kind of input a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    Prices,
    Sentiment,
    OrderBook,
}

/// Why an input message was refused: a stable code for counting and a detail for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub detail: String,
}

impl Rejection {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Rejection {
            code,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

#[derive(Deserialize)]
struct RawTick {
    symbol: Name,
    ts: serde_json::Value,
    price: Decimal,
    size: Decimal,
    #[serde(default)]
    bid: Option<Decimal>,
    #[serde(default)]
    ask: Option<Decimal>,
}

#[derive(Deserialize)]
struct RawSentiment {
    symbol: Name,
    ts: serde_json::Value,
    score: serde_json::Value,
    source: String,
    #[serde(default)]
    headline: Option<String>,
}

#[derive(Deserialize)]
struct RawBook {
    symbol: Name,
    ts: serde_json::Value,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    bids: Vec<(Decimal, Decimal)>,
    #[serde(default)]
    asks: Vec<(Decimal, Decimal)>,
}

/// Decode one input message of the given kind.
pub fn decode(kind: InputKind, bytes: &[u8]) -> Result<MarketEvent, Rejection> {
    if bytes.is_empty() {
        return Err(Rejection::new("empty", "message has no payload"));
    }
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(Rejection::new(
            "too_large",
            format!(
                "message is {} bytes, limit {MAX_MESSAGE_BYTES}",
                bytes.len()
            ),
        ));
    }
    // Every message is one JSON object (serde would also take an array).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => Rejection::new("invalid_field", "message must be a JSON object"),
                Err(e) => Rejection::new("malformed_json", e.to_string()),
            },
        );
    }
    match kind {
        InputKind::Prices => decode_tick(bytes).map(MarketEvent::Tick),
        InputKind::Sentiment => decode_sentiment(bytes).map(MarketEvent::Sentiment),
        InputKind::OrderBook => decode_book(bytes).map(MarketEvent::Book),
    }
}

fn json_error(e: serde_json::Error) -> Rejection {
    // Speak of the message, not of internal type names.
    let msg = e
        .to_string()
        .replace("struct RawTick", "a price tick object")
        .replace("struct RawSentiment", "a sentiment object")
        .replace("struct RawBook", "a depth object");
    if msg.starts_with("missing field") {
        Rejection::new("missing_field", msg)
    } else if e.is_syntax() || e.is_eof() {
        Rejection::new("malformed_json", msg)
    } else {
        Rejection::new("invalid_field", msg)
    }
}

fn decode_tick(bytes: &[u8]) -> Result<Tick, Rejection> {
    // The common shape without serde; anything else, and every rejection,
    // through serde (`fast`).
    if let Some(t) = fast::tick(bytes) {
        return check_tick(t);
    }
    decode_tick_serde(bytes)
}

fn decode_tick_serde(bytes: &[u8]) -> Result<Tick, Rejection> {
    let raw: RawTick = serde_json::from_slice(bytes).map_err(json_error)?;
    let symbol = check_symbol(raw.symbol)?;
    let ts = parse_ts(&raw.ts)?;
    check_tick(Tick {
        symbol,
        ts,
        price: raw.price,
        size: raw.size,
        bid: raw.bid,
        ask: raw.ask,
    })
}

/// The checks [`decode`] makes of a price tick once it is parsed: what a
/// tick read from elsewhere (a CSV file) passes to be the event its encoded
/// message would decode to ([`encode_tick`] then [`decode`], without the
/// text in between).
///
/// # Errors
/// The rejection `decode` would give the encoded tick, when it is not
/// [`MAX_MESSAGE_BYTES`] long or more (then `too_large` comes first).
pub fn check_tick(t: Tick) -> Result<Tick, Rejection> {
    check_tick_ref(&t).map(|()| t)
}

/// [`check_tick`] of a borrowed tick: a source that keeps the tick when it
/// passes, and encodes it for a dead letter only when it does not.
///
/// # Errors
/// As [`check_tick`].
pub fn check_tick_ref(t: &Tick) -> Result<(), Rejection> {
    symbol_problem(&t.symbol)?;
    if !(0..MAX_TS_NANOS).contains(&t.ts) {
        // As `parse_ts` words it, with the time as its message carries it.
        let v = serde_json::Value::String(format_ts(t.ts));
        return Err(Rejection::new(
            "invalid_timestamp",
            format!("ts is outside 1970..2200: {v}"),
        ));
    }
    if !is_positive(t.price) {
        return Err(Rejection::new(
            "invalid_price",
            format!("price must be > 0, got {}", t.price),
        ));
    }
    if is_negative(t.size) {
        return Err(Rejection::new(
            "invalid_size",
            format!("size must be >= 0, got {}", t.size),
        ));
    }
    for (name, v) in [("bid", t.bid), ("ask", t.ask)] {
        if let Some(v) = v {
            if !is_positive(v) {
                return Err(Rejection::new(
                    "invalid_price",
                    format!("{name} must be > 0, got {v}"),
                ));
            }
        }
    }
    if let (Some(b), Some(a)) = (t.bid, t.ask) {
        if b > a {
            return Err(Rejection::new(
                "crossed_quote",
                format!("bid {b} is above ask {a}"),
            ));
        }
    }
    Ok(())
}

fn decode_sentiment(bytes: &[u8]) -> Result<Sentiment, Rejection> {
    let raw: RawSentiment = serde_json::from_slice(bytes).map_err(json_error)?;
    let symbol = check_symbol(raw.symbol)?;
    let ts = parse_ts(&raw.ts)?;
    let score = match &raw.score {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        Rejection::new(
            "invalid_field",
            format!("score is not a number: {}", raw.score),
        )
    })?;
    if !score.is_finite() {
        return Err(Rejection::new(
            "invalid_field",
            format!("score is not a finite number: {}", raw.score),
        ));
    }
    if !(-1.0..=1.0).contains(&score) {
        return Err(Rejection::new(
            "score_out_of_range",
            format!("score must lie in [-1, 1], got {score}"),
        ));
    }
    if raw.source.len() > 256 {
        return Err(Rejection::new(
            "invalid_field",
            "source longer than 256 bytes",
        ));
    }
    Ok(Sentiment {
        symbol,
        ts,
        score,
        source: raw.source,
        headline: raw.headline,
    })
}

fn decode_book(bytes: &[u8]) -> Result<BookUpdate, Rejection> {
    let raw: RawBook = serde_json::from_slice(bytes).map_err(json_error)?;
    let symbol = check_symbol(raw.symbol)?;
    let ts = parse_ts(&raw.ts)?;
    let snapshot = match raw.kind.as_str() {
        "snapshot" => true,
        "update" => false,
        other => {
            return Err(Rejection::new(
                "invalid_field",
                format!("type must be \"snapshot\" or \"update\", got {other:?}"),
            ))
        }
    };
    if raw.bids.len() > MAX_BOOK_LEVELS || raw.asks.len() > MAX_BOOK_LEVELS {
        return Err(Rejection::new(
            "too_many_levels",
            format!("more than {MAX_BOOK_LEVELS} levels on one side"),
        ));
    }
    let levels = |side: Vec<(Decimal, Decimal)>| -> Result<Vec<Level>, Rejection> {
        side.into_iter()
            .map(|(price, size)| {
                if price <= Decimal::ZERO || size < Decimal::ZERO {
                    Err(Rejection::new(
                        "invalid_level",
                        format!("level price must be > 0 and size >= 0, got [{price}, {size}]"),
                    ))
                } else {
                    Ok(Level { price, size })
                }
            })
            .collect()
    };
    let bids = levels(raw.bids)?;
    let asks = levels(raw.asks)?;
    if snapshot {
        let best_bid = bids
            .iter()
            .filter(|l| l.size > Decimal::ZERO)
            .map(|l| l.price)
            .max();
        let best_ask = asks
            .iter()
            .filter(|l| l.size > Decimal::ZERO)
            .map(|l| l.price)
            .min();
        if let (Some(b), Some(a)) = (best_bid, best_ask) {
            if b >= a {
                return Err(Rejection::new(
                    "crossed_book",
                    format!("best bid {b} is not below best ask {a}"),
                ));
            }
        }
    }
    Ok(BookUpdate {
        symbol,
        ts,
        snapshot,
        bids,
        asks,
    })
}

fn check_symbol(symbol: Name) -> Result<Name, Rejection> {
    symbol_problem(&symbol).map(|()| symbol)
}

fn symbol_problem(symbol: &str) -> Result<(), Rejection> {
    if symbol.is_empty() || symbol.len() > MAX_SYMBOL_LEN {
        return Err(Rejection::new(
            "invalid_symbol",
            format!(
                "symbol must be 1..={MAX_SYMBOL_LEN} bytes, got {:?}",
                symbol
            ),
        ));
    }
    // ASCII, the usual case, byte by byte: its whitespace and control
    // characters are the bytes up to the space, and DEL.
    let bad = if symbol.is_ascii() {
        symbol.bytes().any(|b| b <= b' ' || b == 0x7f)
    } else {
        symbol.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if bad {
        return Err(Rejection::new(
            "invalid_symbol",
            format!("symbol contains whitespace or control characters: {symbol:?}"),
        ));
    }
    Ok(())
}

/// Parse a timestamp given as epoch milliseconds (JSON number or numeric string,
/// fractions allowed down to the nanosecond) or as RFC 3339 text.
pub fn parse_ts(v: &serde_json::Value) -> Result<Ts, Rejection> {
    let bad = |what: &str| Rejection::new("invalid_timestamp", format!("ts {what}: {v}"));
    let ts = match v {
        serde_json::Value::Number(n) => millis_text_to_nanos(&n.to_string())
            .ok_or_else(|| bad("is not epoch milliseconds with at most nanosecond precision"))?,
        serde_json::Value::String(s) => {
            parse_ts_str(s).ok_or_else(|| bad("is neither epoch milliseconds nor RFC 3339"))?
        }
        _ => return Err(bad("must be a number or a string")),
    };
    if !(0..MAX_TS_NANOS).contains(&ts) {
        return Err(bad("is outside 1970..2200"));
    }
    Ok(ts)
}

/// Parse epoch milliseconds or RFC 3339 text into nanoseconds.
///
/// ```
/// use papertrader_core::wire::parse_ts_str;
/// let a = parse_ts_str("1700000000123").unwrap();
/// let b = parse_ts_str("2023-11-14T22:13:20.123Z").unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a, 1_700_000_000_123_000_000);
/// assert_eq!(parse_ts_str("1700000000123.5"), Some(1_700_000_000_123_500_000));
/// assert_eq!(parse_ts_str("yesterday"), None);
/// ```
pub fn parse_ts_str(s: &str) -> Option<Ts> {
    let s = s.trim();
    // RFC 3339 has a colon, which no number has: it is not tried as one.
    if !s.contains(':') {
        if let Some(n) = millis_text_to_nanos(s) {
            return Some(n);
        }
    } else if let Some(n) = fast::rfc3339_utc(s) {
        return Some(n);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|d| d.with_timezone(&Utc).timestamp_nanos_opt())
}

fn millis_text_to_nanos(s: &str) -> Option<Ts> {
    // Whole milliseconds of up to 18 digits (every time in range) in `i64`;
    // the same result as the exact path below, which takes the rest.
    if (1..=18).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = s.parse().ok()?;
        return ms.checked_mul(NANOS_PER_MILLI);
    }
    millis_decimal_to_nanos(s)
}

fn millis_decimal_to_nanos(s: &str) -> Option<Ts> {
    let d = Decimal::from_str(s)
        .or_else(|_| Decimal::from_scientific(s))
        .ok()?;
    let nanos = d.checked_mul(Decimal::from(NANOS_PER_MILLI))?;
    if nanos.fract() != Decimal::ZERO {
        return None;
    }
    i64::try_from(nanos).ok()
}

/// Format event time as RFC 3339 UTC, with as many fractional digits as needed.
pub fn format_ts(ts: Ts) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ts).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Serde adapter writing a [`Ts`] as RFC 3339 and reading any accepted form.
pub mod ts_format {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Ts, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_ts(*ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ts, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        parse_ts(&v).map_err(serde::de::Error::custom)
    }
}

/// Encode a tick in the `live_prices` format.
pub fn encode_tick(t: &Tick) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        symbol: &'a str,
        #[serde(with = "ts_format")]
        ts: Ts,
        price: Decimal,
        size: Decimal,
        #[serde(skip_serializing_if = "Option::is_none")]
        bid: Option<Decimal>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ask: Option<Decimal>,
    }
    serde_json::to_vec(&Out {
        symbol: &t.symbol,
        ts: t.ts,
        price: t.price,
        size: t.size,
        bid: t.bid,
        ask: t.ask,
    })
    .expect("tick serializes")
}

/// Encode an input event in its topic's format (a book update as its depth
/// message).
pub fn encode_event(ev: &MarketEvent) -> Vec<u8> {
    match ev {
        MarketEvent::Tick(t) => encode_tick(t),
        MarketEvent::Sentiment(s) => encode_sentiment(s),
        MarketEvent::Book(b) => encode_book(b),
    }
}

/// Encode a depth message in the `order_book` format.
pub fn encode_book(b: &BookUpdate) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        symbol: &'a str,
        #[serde(with = "ts_format")]
        ts: Ts,
        #[serde(rename = "type")]
        kind: &'static str,
        bids: Vec<(Decimal, Decimal)>,
        asks: Vec<(Decimal, Decimal)>,
    }
    let levels = |l: &[Level]| l.iter().map(|l| (l.price, l.size)).collect();
    serde_json::to_vec(&Out {
        symbol: &b.symbol,
        ts: b.ts,
        kind: if b.snapshot { "snapshot" } else { "update" },
        bids: levels(&b.bids),
        asks: levels(&b.asks),
    })
    .expect("book serializes")
}

/// Encode a sentiment reading in the `news_sentiment` format.
pub fn encode_sentiment(s: &Sentiment) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        symbol: &'a str,
        #[serde(with = "ts_format")]
        ts: Ts,
        score: f64,
        source: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        headline: Option<&'a str>,
    }
    serde_json::to_vec(&Out {
        symbol: &s.symbol,
        ts: s.ts,
        score: s.score,
        source: &s.source,
        headline: s.headline.as_deref(),
    })
    .expect("sentiment serializes")
}

/// The JSON of the engine's outputs: one object per message, fields in the
/// order of their struct, event times as RFC 3339 UTC, decimals exact.
impl Output {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("outputs serialize")
    }
}

impl Serialize for Output {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Output::Signal(m) => m.serialize(s),
            Output::Order(m) => m.serialize(s),
            Output::Fill(m) => m.serialize(s),
            Output::Pnl(m) => m.serialize(s),
            Output::DeadLetter(m) => m.serialize(s),
            Output::Alert(m) => m.serialize(s),
            Output::Indicator(m) => m.serialize(s),
        }
    }
}

/// An event time as RFC 3339 (the `ts` field of every output).
struct TsField(Ts);

impl Serialize for TsField {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ts_format::serialize(&self.0, s)
    }
}

/// `impl Serialize` for an output message: `struct { field, ts: field, ... }`,
/// `ts` written as RFC 3339.
macro_rules! serialize_fields {
    (@field $st:ident, $self:ident, ts) => {
        $st.serialize_field("ts", &TsField($self.ts))?
    };
    (@field $st:ident, $self:ident, order_type) => {
        $st.serialize_field("type", &$self.order_type)?
    };
    (@field $st:ident, $self:ident, $f:ident) => {
        $st.serialize_field(stringify!($f), &$self.$f)?
    };
    ($t:ty, $name:literal, [$($f:ident),+ $(,)?]) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let fields = [$(stringify!($f)),+];
                let mut st = s.serialize_struct($name, fields.len())?;
                $(serialize_fields!(@field st, self, $f);)+
                st.end()
            }
        }
    };
}

serialize_fields!(
    SignalMsg,
    "SignalMsg",
    [signal_id, strategy, kind, symbol, ts, side, strength, price, reason, origin, model,]
);
serialize_fields!(
    OrderMsg,
    "OrderMsg",
    [
        event_id, order_id, signal_id, strategy, symbol, ts, side, order_type, price, stop_price,
        tif, qty, status, filled_qty, avg_price, leaves_qty, reason,
    ]
);
serialize_fields!(
    FillMsg,
    "FillMsg",
    [fill_id, order_id, strategy, symbol, ts, side, qty, price, fee, liquidity, slippage,]
);
serialize_fields!(
    PnlMsg,
    "PnlMsg",
    [
        pnl_id,
        strategy,
        symbol,
        ts,
        position,
        avg_cost,
        last_price,
        realized,
        unrealized,
        fees,
        account_cash,
        account_equity,
        account_drawdown,
        account_max_drawdown,
    ]
);
serialize_fields!(
    DeadLetterMsg,
    "DeadLetterMsg",
    [
        dead_letter_id,
        reason,
        detail,
        topic,
        partition,
        offset,
        key,
        payload,
        payload_hex,
        payload_bytes,
        payload_truncated,
    ]
);

serialize_fields!(
    AlertMsg,
    "AlertMsg",
    [alert_id, rule, kind, subject, ts, direction, value, threshold, message,]
);
serialize_fields!(
    IndicatorMsg,
    "IndicatorMsg",
    [indicator_id, analytics, symbol, ts, values, origin,]
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::d;

    fn tick(json: &str) -> Result<Tick, Rejection> {
        match decode(InputKind::Prices, json.as_bytes())? {
            MarketEvent::Tick(t) => Ok(t),
            other => panic!("not a tick: {other:?}"),
        }
    }

    #[test]
    fn decimals_from_strings_and_numbers_are_exact() {
        let a = tick(r#"{"symbol":"A","ts":1700000000000,"price":"0.1","size":3}"#).unwrap();
        let b = tick(r#"{"symbol":"A","ts":1700000000000,"price":0.1,"size":"3"}"#).unwrap();
        assert_eq!(a.price, d("0.1"));
        assert_eq!(b.price, d("0.1"));
        // A number that f64 cannot hold exactly survives untouched.
        let c = tick(r#"{"symbol":"A","ts":1,"price":1234567.123456789012345,"size":1}"#).unwrap();
        assert_eq!(c.price.to_string(), "1234567.123456789012345");
    }

    #[test]
    fn timestamps_in_millis_and_rfc3339_agree() {
        let a = tick(r#"{"symbol":"A","ts":1700000000123,"price":1,"size":1}"#).unwrap();
        let b =
            tick(r#"{"symbol":"A","ts":"2023-11-14T22:13:20.123Z","price":1,"size":1}"#).unwrap();
        let c = tick(r#"{"symbol":"A","ts":"1700000000123","price":1,"size":1}"#).unwrap();
        assert_eq!(a.ts, 1_700_000_000_123 * NANOS_PER_MILLI);
        assert_eq!(a.ts, b.ts);
        assert_eq!(a.ts, c.ts);
        assert_eq!(format_ts(a.ts), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn bad_ticks_are_rejected_with_codes() {
        let cases = [
            ("", "empty"),
            ("{not json", "malformed_json"),
            (r#"{"symbol":"A","ts":1,"size":1}"#, "missing_field"),
            (
                r#"{"symbol":"A","ts":1,"price":0,"size":1}"#,
                "invalid_price",
            ),
            (
                r#"{"symbol":"A","ts":1,"price":-2.5,"size":1}"#,
                "invalid_price",
            ),
            (
                r#"{"symbol":"A","ts":1,"price":"NaN","size":1}"#,
                "invalid_field",
            ),
            (
                r#"{"symbol":"A","ts":1,"price":1,"size":-1}"#,
                "invalid_size",
            ),
            (
                r#"{"symbol":"","ts":1,"price":1,"size":1}"#,
                "invalid_symbol",
            ),
            (
                r#"{"symbol":"A","ts":"yesterday","price":1,"size":1}"#,
                "invalid_timestamp",
            ),
            (
                r#"{"symbol":"A","ts":-5,"price":1,"size":1}"#,
                "invalid_timestamp",
            ),
            (
                r#"{"symbol":"A","ts":1,"price":1,"size":1,"bid":2,"ask":1}"#,
                "crossed_quote",
            ),
            (r#"[1,2,3]"#, "invalid_field"),
            (r#"["A",1,"1","1"]"#, "invalid_field"),
            (r#"42"#, "invalid_field"),
            (
                r#"{"symbol":"A","ts":1.00000001,"price":1,"size":1}"#,
                "invalid_timestamp",
            ),
        ];
        for (json, code) in cases {
            let err = decode(InputKind::Prices, json.as_bytes()).unwrap_err();
            assert_eq!(err.code, code, "{json}: {err}");
        }
    }

    #[test]
    fn sentiment_score_must_be_in_range() {
        let ok = decode(
            InputKind::Sentiment,
            br#"{"symbol":"A","ts":1,"score":-0.25,"source":"x","headline":"h"}"#,
        )
        .unwrap();
        assert!(matches!(ok, MarketEvent::Sentiment(s) if s.score == -0.25));
        let err = decode(
            InputKind::Sentiment,
            br#"{"symbol":"A","ts":1,"score":1.5,"source":"x"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, "score_out_of_range");
        let err = decode(
            InputKind::Sentiment,
            br#"{"symbol":"A","ts":1,"score":"NaN","source":"x"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_field");
        // A score given as a numeric string is accepted.
        let ok = decode(
            InputKind::Sentiment,
            br#"{"symbol":"A","ts":1,"score":"0.5","source":"x"}"#,
        );
        assert!(matches!(ok, Ok(MarketEvent::Sentiment(s)) if s.score == 0.5));
    }

    #[test]
    fn crossed_snapshots_are_rejected() {
        let err = decode(
            InputKind::OrderBook,
            br#"{"symbol":"A","ts":1,"type":"snapshot","bids":[["101.3","5"]],"asks":[["101.2","7"]]}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, "crossed_book");
        let err = decode(InputKind::Prices, b"42").unwrap_err();
        assert!(!err.detail.contains("Raw"), "{err}");
    }

    #[test]
    fn book_levels_decode() {
        let ev = decode(
            InputKind::OrderBook,
            br#"{"symbol":"A","ts":1,"type":"snapshot","bids":[["9.9","5"]],"asks":[[10.1,7]]}"#,
        )
        .unwrap();
        match ev {
            MarketEvent::Book(b) => {
                assert!(b.snapshot);
                assert_eq!(b.bids[0].price, d("9.9"));
                assert_eq!(b.asks[0].size, d("7"));
            }
            _ => panic!(),
        }
    }

    proptest::proptest! {
        /// Whole milliseconds parsed as integers give what the exact decimal
        /// path gives, overflow included.
        #[test]
        fn whole_millis_fast_path_equals_the_decimal_path(s in "[0-9]{1,20}|[0-9.eE+-]{1,12}") {
            proptest::prop_assert_eq!(millis_text_to_nanos(&s), millis_decimal_to_nanos(&s));
        }

        /// No input makes a decoder panic: arbitrary bytes, and JSON objects with
        /// arbitrary values in the expected fields.
        #[test]
        fn decoders_never_panic_on_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            for kind in [InputKind::Prices, InputKind::Sentiment, InputKind::OrderBook] {
                let _ = decode(kind, &bytes);
            }
        }

        #[test]
        fn decoders_never_panic_on_fields(
            sym in "\\PC{0,40}",
            ts in "[-+0-9eE.:TZ ]{0,30}",
            price in "[-+0-9eE.naNIinf]{0,40}",
            n in proptest::prelude::any::<f64>(),
        ) {
            let docs = [
                format!(r#"{{"symbol":{sym:?},"ts":{ts:?},"price":{price:?},"size":{n}}}"#),
                format!(r#"{{"symbol":{sym:?},"ts":{n},"price":{n},"size":"1","bid":{price:?}}}"#),
                format!(r#"{{"symbol":{sym:?},"ts":{ts:?},"score":{n},"source":"s"}}"#),
                format!(r#"{{"symbol":{sym:?},"ts":1,"type":"update","bids":[[{price:?},{n}]],"asks":[]}}"#),
            ];
            for d in &docs {
                for kind in [InputKind::Prices, InputKind::Sentiment, InputKind::OrderBook] {
                    // Whatever is accepted satisfies the invariants.
                    if let Ok(MarketEvent::Tick(t)) = decode(kind, d.as_bytes()) {
                        proptest::prop_assert!(t.price > Decimal::ZERO && t.size >= Decimal::ZERO);
                    }
                }
            }
        }
    }

    #[test]
    fn encoded_tick_decodes_to_itself() {
        let t = Tick {
            symbol: "ACME".into(),
            ts: 1_700_000_000_123_456_789,
            price: d("101.25"),
            size: d("300"),
            bid: Some(d("101.24")),
            ask: None,
        };
        let bytes = encode_tick(&t);
        assert_eq!(tick(std::str::from_utf8(&bytes).unwrap()).unwrap(), t);
    }

    #[test]
    fn every_encoded_event_decodes_to_itself() {
        let level = |p: &str, s: &str| Level {
            price: d(p),
            size: d(s),
        };
        let events = [
            MarketEvent::Tick(Tick {
                symbol: "ACME".into(),
                ts: 1_700_000_000_123_456_789,
                price: d("101.25"),
                size: d("300"),
                bid: None,
                ask: Some(d("101.26")),
            }),
            MarketEvent::Sentiment(Sentiment {
                symbol: "ACME".into(),
                ts: 1_700_000_000_000_000_000,
                score: -0.375,
                source: "feed".into(),
                headline: Some("ACME misses".into()),
            }),
            MarketEvent::Book(BookUpdate {
                symbol: "ACME".into(),
                ts: 1_700_000_000_500_000_000,
                snapshot: true,
                bids: vec![level("101.24", "500"), level("101.23", "800")],
                asks: vec![level("101.26", "400")],
            }),
            MarketEvent::Book(BookUpdate {
                symbol: "ACME".into(),
                ts: 1_700_000_000_600_000_000,
                snapshot: false,
                bids: vec![level("101.24", "0")],
                asks: vec![],
            }),
        ];
        for (ev, kind) in events.into_iter().zip([
            InputKind::Prices,
            InputKind::Sentiment,
            InputKind::OrderBook,
            InputKind::OrderBook,
        ]) {
            assert_eq!(decode(kind, &encode_event(&ev)).unwrap(), ev);
        }
    }
}

#[cfg(test)]
mod check_tick_tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(mantissa: i64, scale: u32) -> Decimal {
        Decimal::new(mantissa, scale)
    }

    proptest! {
        /// A tick checked directly is what its encoded message decodes to:
        /// the same event, or the same rejection (the file backtest relies on it).
        #[test]
        fn check_tick_is_decode_of_encode(
            symbol in prop_oneof!["[A-Z]{1,6}", "", "A B", "[a-z]{1,3}\t", "X{40}"],
            ts in -2_000_000_000_000_000_000i64..4_000_000_000_000_000_000i64,
            price in (-1000i64..1_000_000, 0u32..6),
            size in (-10i64..1_000_000, 0u32..4),
            bid in proptest::option::of((-5i64..1_000_000, 0u32..4)),
            ask in proptest::option::of((-5i64..1_000_000, 0u32..4)),
        ) {
            let t = Tick {
                symbol: symbol.into(),
                ts,
                price: dec(price.0, price.1),
                size: dec(size.0, size.1),
                bid: bid.map(|(m, s)| dec(m, s)),
                ask: ask.map(|(m, s)| dec(m, s)),
            };
            let decoded = decode(InputKind::Prices, &encode_tick(&t));
            let checked = check_tick(t).map(MarketEvent::Tick);
            match (decoded, checked) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(a), Err(b)) => prop_assert_eq!((a.code, a.detail), (b.code, b.detail)),
                (a, b) => prop_assert!(false, "decode {:?}, check {:?}", a, b),
            }
        }
    }
}
