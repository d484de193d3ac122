//! The common shape of a price tick, read without serde.
//!
//! A tick on `live_prices` is almost always one flat object of ASCII strings,
//! numbers and nulls: `{"symbol":"ACME","ts":"2026-…Z","price":"101.25",...}`.
//! [`tick`] reads exactly that shape and gives up (`None`) on anything else:
//! an escape, a non-ASCII byte, an exponent, an unknown or repeated key, a
//! missing field, a value it would not accept. The caller then decodes the
//! message with serde, which gives the value or the rejection. So this path
//! never decides what is rejected, and what it accepts is what serde would:
//! the decimals go through the same `Decimal::from_str`, the times through
//! the same [`super::parse_ts_str`] and [`super::millis_text_to_nanos`]
//! (`wire::fast::tests::fast_tick_equals_serde` checks it on generated messages).
//!
//! [`rfc3339_utc`] reads `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the form papertrader
//! writes, without chrono; other forms go to chrono.

use rust_decimal::Decimal;
use std::str::FromStr;

use super::{millis_text_to_nanos, parse_ts_str, MAX_TS_NANOS};
use crate::domain::{Name, Tick, Ts};

enum Value<'a> {
    Str(&'a str),
    Num(&'a str),
    Null,
}

struct Scan<'a> {
    /// The message, checked as UTF-8 once; `b` is its bytes.
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    /// JSON's four whitespace bytes (not the form feed `is_ascii_whitespace` takes).
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string of printable ASCII without escapes, after its opening quote.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..0x20 | 0x80.. => return None,
                _ => self.i += 1,
            }
        }
        let s = &self.text[start..self.i];
        self.i += 1;
        Some(s)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    /// A JSON number without an exponent: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let first = *self.b.get(self.i)?;
        let n = self.digits();
        if n == 0 || (first == b'0' && n > 1) {
            return None;
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            return None;
        }
        Some(&self.text[start..self.i])
    }

    fn value(&mut self) -> Option<Value<'a>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string().map(Value::Str)
            }
            b'-' | b'0'..=b'9' => self.number().map(Value::Num),
            b'n' if self.b[self.i..].starts_with(b"null") => {
                self.i += 4;
                Some(Value::Null)
            }
            _ => None,
        }
    }
}

fn decimal(v: Value) -> Option<Decimal> {
    match v {
        Value::Str(s) | Value::Num(s) => Decimal::from_str(s).ok(),
        Value::Null => None,
    }
}

fn optional(v: Value) -> Option<Option<Decimal>> {
    match v {
        Value::Null => Some(None),
        v => decimal(v).map(Some),
    }
}

fn time(v: Value) -> Option<Ts> {
    let ts = match v {
        Value::Str(s) => parse_ts_str(s)?,
        Value::Num(s) => millis_text_to_nanos(s)?,
        Value::Null => return None,
    };
    (0..MAX_TS_NANOS).contains(&ts).then_some(ts)
}

/// The tick in `bytes`, not yet checked, when it has the common shape and
/// serde would accept its fields; `None` sends it to serde.
pub(super) fn tick(bytes: &[u8]) -> Option<Tick> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut s = Scan {
        text,
        b: bytes,
        i: 0,
    };
    s.eat(b'{')?;
    let (mut symbol, mut ts, mut price, mut size) = (None, None, None, None);
    let (mut bid, mut ask) = (None, None);
    loop {
        s.eat(b'"')?;
        let key = s.string()?;
        s.eat(b':')?;
        let v = s.value()?;
        let slot_taken = match key {
            "symbol" => match v {
                Value::Str(v) => symbol.replace(Name::from(v)).is_some(),
                _ => return None,
            },
            "ts" => ts.replace(time(v)?).is_some(),
            "price" => price.replace(decimal(v)?).is_some(),
            "size" => size.replace(decimal(v)?).is_some(),
            "bid" => bid.replace(optional(v)?).is_some(),
            "ask" => ask.replace(optional(v)?).is_some(),
            _ => return None,
        };
        if slot_taken {
            return None;
        }
        match s.peek()? {
            b',' => s.i += 1,
            b'}' => break,
            _ => return None,
        }
    }
    s.i += 1;
    s.ws();
    if s.i != bytes.len() {
        return None;
    }
    Some(Tick {
        symbol: symbol?,
        ts: ts?,
        price: price?,
        size: size?,
        bid: bid.flatten(),
        ask: ask.flatten(),
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` as nanoseconds since the epoch, for years
/// 1970 to 2199 (the accepted range; later ones overflow `i64` nanoseconds
/// from 2262); `None` for any other form (chrono then reads it).
pub(super) fn rfc3339_utc(s: &str) -> Option<Ts> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1970..2200).contains(&y) || !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let nanos = match frac {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            num(20..20 + digits.len())? * 10i64.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60 * 1_000_000_000 + sec * 1_000_000_000 + nanos)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_tick, decode_tick_serde};
    use chrono::DateTime;
    use proptest::prelude::*;

    #[test]
    fn common_shapes_take_the_fast_path() {
        for doc in [
            r#"{"symbol":"ACME","ts":"2026-12-05T12:00:00.123Z","price":"101.25","size":"3"}"#,
            r#"{"symbol":"ACME","ts":1700000000123,"price":101.25,"size":3,"bid":"101","ask":null}"#,
            " {\"size\" : \"0\",\n\t\"price\":\"1\", \"ts\":\"1\",\"symbol\":\"X\"}\r\n",
        ] {
            let fast = tick(doc.as_bytes()).expect(doc);
            let slow = decode_tick_serde(doc.as_bytes()).unwrap();
            assert_eq!(
                (fast.ts, fast.price, fast.size),
                (slow.ts, slow.price, slow.size)
            );
        }
    }

    #[test]
    fn other_shapes_go_to_serde() {
        for doc in [
            r#"{"symbol":"AC\u004dE","ts":1,"price":"1","size":"1"}"#,
            r#"{"symbol":"ACMÉ","ts":1,"price":"1","size":"1"}"#,
            r#"{"symbol":"ACME","ts":1,"price":1e2,"size":"1"}"#,
            r#"{"symbol":"ACME","ts":1,"price":"1","size":"1","venue":"x"}"#,
            r#"{"symbol":"ACME","ts":1,"price":"1","price":"2","size":"1"}"#,
            r#"{"symbol":"ACME","ts":1,"price":"1"}"#,
            r#"{"symbol":"ACME","ts":01,"price":"1","size":"1"}"#,
            "{\"symbol\":\"ACME\",\"ts\":1,\"price\":\"1\",\"size\":\"1\"}\x0c",
            r#"{"symbol":"ACME","ts":1,"price":"1","size":"1"} {}"#,
            r#"{"symbol":"ACME","ts":"2300-01-01T00:00:00Z","price":"1","size":"1"}"#,
            r#"{"symbol":"ACME","ts":1,"price":"1","size":null}"#,
        ] {
            assert_eq!(tick(doc.as_bytes()), None, "{doc}");
        }
    }

    #[test]
    fn rfc3339_by_hand() {
        // 2024-02-29 is day 19,782 after 1970-01-01 (54 years, 13 of them leap).
        let day = (54 * 365 + 13 + 31 + 28) * 86_400_000_000_000i64;
        assert_eq!(rfc3339_utc("2024-02-29T00:00:00Z"), Some(day));
        assert_eq!(
            rfc3339_utc("2024-02-29T01:02:03.5Z"),
            Some(day + 3_723_500_000_000)
        );
        assert_eq!(rfc3339_utc("2023-02-29T00:00:00Z"), None);
        assert_eq!(rfc3339_utc("2024-02-29T00:00:00+00:00"), None);
    }

    fn chrono_nanos(s: &str) -> Option<Ts> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|d| d.timestamp_nanos_opt())
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,4})?",
            "-0|-0\\.0|\"-0\"|[0-9]{20,30}",
            "\"-?[0-9]{0,4}(\\.[0-9]{0,6})?\"",
            "\"[0-9]{1,3}[eE][0-9]\"",
            "[0-9]{1,2}[eE]-?[0-9]",
            "0[0-9]{1,3}",
            "\"(19|20|21|22|23)[0-9]{2}-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,10})?(Z|z|\\+01:00)\"",
            "\"1[0-9]{12}\"",
            "1[0-9]{12}(\\.[0-9]{1,7})?",
            Just("null".to_string()),
            "\"[A-Z]{1,4}\"",
            "\"[ -~]{0,6}\"",
            "\"\\PC{1,3}\"",
            "true|\\[\\]|\\{\\}",
        ]
    }

    /// A value for `key`: mostly one it takes, sometimes anything.
    fn value_for(key: &'static str) -> BoxedStrategy<String> {
        let good: BoxedStrategy<String> = match key {
            "symbol" => "\"[A-Z]{1,4}\"".boxed(),
            "ts" => prop_oneof![
                "1[0-9]{12}",
                "\"1[0-9]{12}(\\.[0-9]{1,3})?\"",
                "\"20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]T[01][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z\"",
            ]
            .boxed(),
            _ => prop_oneof![
                "[1-9][0-9]{0,3}(\\.[0-9]{1,4})?",
                "\"[0-9]{1,4}(\\.[0-9]{1,6})?\""
            ]
            .boxed(),
        };
        prop_oneof![12 => good, 1 => value()].boxed()
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            40 => Just(""),
            3 => prop::sample::select(vec![" ", "\n", "\t", "\r"]),
            1 => Just("\x0c"),
        ]
    }

    /// Messages of the tick's keys in any order, some missing, some repeated,
    /// some unknown, with values mostly of the right kind.
    fn message() -> impl Strategy<Value = String> {
        let keys = vec![
            "symbol",
            "ts",
            "price",
            "size",
            "bid",
            "ask",
            "price",
            "venue",
            "s\\u0079mbol",
        ];
        let required = Just(vec!["symbol", "ts", "price", "size"]);
        let extra = prop::sample::subsequence(keys, 0..3);
        (required, extra)
            .prop_flat_map(|(mut a, b)| {
                a.extend(b);
                Just(a).prop_shuffle()
            })
            .prop_flat_map(|keys| {
                let fields: Vec<_> = keys
                    .into_iter()
                    .map(|k| (Just(k), value_for(k), ws(), ws()))
                    .collect();
                (fields, ws())
            })
            .prop_map(|(fields, tail)| {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v, a, b)| format!("{a}\"{k}\"{b}:{a}{v}{b}"))
                    .collect();
                format!("{{{}}}{tail}", parts.join(","))
            })
    }

    /// A decode's result with its decimals' bits (scale and sign of zero,
    /// which `Debug` does not show).
    fn exactly(r: Result<Tick, crate::wire::Rejection>) -> String {
        match r {
            Ok(t) => {
                let bits =
                    [Some(t.price), Some(t.size), t.bid, t.ask].map(|d| d.map(|d| d.serialize()));
                format!("{t:?} {bits:?}")
            }
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn negative_zero_and_integers_as_serde_reads_them() {
        // serde_json hands an integer that fits 64 bits to rust_decimal as an
        // integer, and any other number as its text; `-0` is both.
        for v in [
            "-0",
            "0",
            "-0.0",
            "\"-0\"",
            "7",
            "-7",
            "18446744073709551616",
            "1.50",
        ] {
            let doc = format!(r#"{{"symbol":"A","ts":1,"price":"1","size":{v},"bid":{v}}}"#);
            assert!(tick(doc.as_bytes()).is_some(), "{doc}");
            assert_eq!(
                exactly(decode_tick(doc.as_bytes())),
                exactly(decode_tick_serde(doc.as_bytes())),
                "{doc}"
            );
        }
    }

    /// What the fast path accepts, serde decodes to the same tick, the same
    /// rejection included, with the same decimal scales; and the fast path
    /// answers for a good part of the messages, so the comparison is made.
    #[test]
    fn fast_tick_equals_serde() {
        let config = ProptestConfig::with_cases(2000);
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let hits = std::cell::Cell::new(0);
        runner
            .run(&message(), |doc| {
                if tick(doc.as_bytes()).is_some() {
                    hits.set(hits.get() + 1);
                    let fast = exactly(decode_tick(doc.as_bytes()));
                    let slow = exactly(decode_tick_serde(doc.as_bytes()));
                    prop_assert_eq!(fast, slow, "{}", doc);
                }
                Ok(())
            })
            .unwrap();
        assert!(
            hits.get() > 200,
            "fast path answered {} of 2000",
            hits.get()
        );
    }

    proptest! {
        /// The RFC 3339 fast path gives chrono's nanoseconds wherever it answers.
        #[test]
        fn rfc3339_equals_chrono(
            y in 1960i64..2300, mo in 0i64..14, d in 0i64..33,
            h in 0i64..25, mi in 0i64..61, s in 0i64..61,
            frac in "(\\.[0-9]{0,11})?", z in "Z|z|\\+00:00",
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{z}");
            if let Some(n) = rfc3339_utc(&text) {
                prop_assert_eq!(Some(n), chrono_nanos(&text), "{}", text);
            }
        }
    }
}
