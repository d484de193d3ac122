//! Fuzz-style property tests of every input decoder: the three topic decoders
//! (`wire::decode` for `live_prices`, `news_sentiment`, `order_book`), the engine's
//! dead-letter path behind them, the CSV reader of backtests and `replay`
//! (`csvdata::RecordReader`, ticks, sentiment and OHLCV bars, then the wire
//! encoding a file backtest feeds the engine), and the text parsers of times and
//! decimals.
//!
//! Inputs: arbitrary bytes, and valid messages mutated: truncated, bytes flipped
//! or inserted, fields removed, duplicated or replaced by huge numbers, deep
//! nesting, values of the wrong type and unicode symbols, and padded to the size
//! limit and one byte past it. No input may panic; every accepted value must
//! satisfy the documented invariants (docs/topics.md) and every refusal must
//! carry a documented reason code. Where the outcome is known exactly (a
//! truncated object, a missing field, a symbol, the size limit) it is asserted.
//!
//! Cases per property: the numbers below (5,000 for the topic decoders, 3,000
//! for the CSV reader), about 2 s in all in release on 2 cores;
//! `PROPTEST_CASES=100000 cargo test --release --test fuzz_inputs` runs a longer
//! campaign.

use std::io::Cursor;
use std::str::FromStr;
use std::sync::OnceLock;

use papertrader::config::Loaded;
use papertrader::csvdata::{self, ReadOptions, Record, RecordReader};
use papertrader::domain::{MarketEvent, Origin};
use papertrader::engine::{Engine, Output};
use papertrader::wire::{self, InputKind, MAX_BOOK_LEVELS, MAX_MESSAGE_BYTES, MAX_SYMBOL_LEN};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rust_decimal::Decimal;

const KINDS: [InputKind; 3] = [
    InputKind::Prices,
    InputKind::Sentiment,
    InputKind::OrderBook,
];

/// The reason codes `wire::decode` may give (docs/topics.md); `unknown_symbol` and
/// `out_of_order` come from the engine's admission checks.
const DECODE_CODES: [&str; 14] = [
    "empty",
    "too_large",
    "malformed_json",
    "missing_field",
    "invalid_field",
    "invalid_symbol",
    "invalid_timestamp",
    "invalid_price",
    "invalid_size",
    "crossed_quote",
    "score_out_of_range",
    "invalid_level",
    "too_many_levels",
    "crossed_book",
];

/// 2200-01-01T00:00:00Z in ns: the end of the accepted event-time range.
const TS_END: i64 = 7_258_118_400 * 1_000_000_000;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Invariants

fn check_symbol(s: &str) -> Result<(), TestCaseError> {
    prop_assert!(!s.is_empty() && s.len() <= MAX_SYMBOL_LEN, "symbol {s:?}");
    prop_assert!(
        !s.chars().any(|c| c.is_whitespace() || c.is_control()),
        "symbol {s:?}"
    );
    Ok(())
}

/// An accepted event satisfies what docs/topics.md promises for its topic.
fn check_event(kind: InputKind, ev: &MarketEvent) -> Result<(), TestCaseError> {
    check_symbol(ev.symbol())?;
    prop_assert!((0..TS_END).contains(&ev.ts()), "ts {}", ev.ts());
    match (kind, ev) {
        (InputKind::Prices, MarketEvent::Tick(t)) => {
            prop_assert!(t.price > Decimal::ZERO && t.size >= Decimal::ZERO, "{t:?}");
            for q in [t.bid, t.ask].into_iter().flatten() {
                prop_assert!(q > Decimal::ZERO, "{t:?}");
            }
            if let (Some(b), Some(a)) = (t.bid, t.ask) {
                prop_assert!(b <= a, "{t:?}");
            }
        }
        (InputKind::Sentiment, MarketEvent::Sentiment(s)) => {
            prop_assert!(
                s.score.is_finite() && (-1.0..=1.0).contains(&s.score),
                "{s:?}"
            );
            prop_assert!(s.source.len() <= 256);
        }
        (InputKind::OrderBook, MarketEvent::Book(b)) => {
            prop_assert!(b.bids.len() <= MAX_BOOK_LEVELS && b.asks.len() <= MAX_BOOK_LEVELS);
            for l in b.bids.iter().chain(&b.asks) {
                prop_assert!(l.price > Decimal::ZERO && l.size >= Decimal::ZERO, "{l:?}");
            }
            if b.snapshot {
                let live = |side: &[papertrader::domain::Level]| {
                    side.iter()
                        .filter(|l| l.size > Decimal::ZERO)
                        .map(|l| l.price)
                        .collect::<Vec<_>>()
                };
                if let (Some(bb), Some(ba)) = (
                    live(&b.bids).into_iter().max(),
                    live(&b.asks).into_iter().min(),
                ) {
                    prop_assert!(bb < ba, "crossed snapshot accepted: {b:?}");
                }
            }
        }
        (k, e) => prop_assert!(false, "{k:?} decoded to {e:?}"),
    }
    Ok(())
}

/// Decode `bytes` as `kind`: an accepted value satisfies the invariants, a
/// refusal has a documented code and a detail. Returns the code (`None`: accepted).
fn decode_checked(kind: InputKind, bytes: &[u8]) -> Result<Option<&'static str>, TestCaseError> {
    match wire::decode(kind, bytes) {
        Ok(ev) => {
            prop_assert!(bytes.len() <= MAX_MESSAGE_BYTES);
            check_event(kind, &ev)?;
            Ok(None)
        }
        Err(r) => {
            prop_assert!(DECODE_CODES.contains(&r.code), "undocumented code {r}");
            prop_assert!(!r.detail.is_empty(), "{r}");
            // Outside the input it quotes (which may say anything, "Raw" too).
            let own: String = r.detail.split('"').step_by(2).collect();
            prop_assert!(!own.contains("Raw"), "internal type name in {r}");
            Ok(Some(r.code))
        }
    }
}

/// One strategy on ACME, no symbol list: every decodable message is admitted by a
/// fresh engine, so the engine's verdict is the decoder's.
fn engine_config() -> &'static Loaded {
    static CFG: OnceLock<Loaded> = OnceLock::new();
    CFG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("s.toml");
        std::fs::write(
            &s,
            "name = \"cross\"\nsymbols = [\"ACME\"]\n[rule]\nkind = \"ma_crossover\"\nfast = 2\nslow = 3\n\
             [sizing]\nmode = \"fixed_quantity\"\nquantity = \"1\"\n",
        )
        .unwrap();
        let app = dir.path().join("app.toml");
        std::fs::write(
            &app,
            format!(
                "strategies = [{:?}]\n[http]\nenabled = false\n",
                s.display().to_string()
            ),
        )
        .unwrap();
        papertrader::config::load_with_env(Some(&app), &[]).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// The engine behind the decoder: a refusal becomes exactly one dead letter with
/// the decoder's code, the message's size and its bytes (up to 64 KiB), and its
/// JSON serializes; an accepted message is counted as processed.
fn engine_checked(kind: InputKind, bytes: &[u8]) -> Result<(), TestCaseError> {
    let code = decode_checked(kind, bytes)?;
    let mut engine = Engine::new(&engine_config().engine_spec()).unwrap();
    let origin = Origin {
        topic: "fuzz".into(),
        partition: 0,
        offset: 7,
    };
    let mut out = Vec::new();
    engine.on_message(kind, &origin, Some(b"k\xff"), bytes, &mut out);
    let dead: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::DeadLetter(d) => Some(d),
            _ => None,
        })
        .collect();
    let counts = engine.counts();
    prop_assert_eq!(counts.total_processed() + counts.total_dead(), 1);
    match code {
        None => prop_assert!(dead.is_empty(), "accepted, yet dead-lettered: {dead:?}"),
        Some(code) => {
            prop_assert_eq!(dead.len(), 1);
            let d = dead[0];
            prop_assert_eq!(d.reason, code);
            prop_assert_eq!(d.payload_bytes, bytes.len());
            prop_assert_eq!(d.offset, 7);
            let kept = &bytes[..bytes.len().min(MAX_MESSAGE_BYTES)];
            prop_assert_eq!(d.payload_truncated, kept.len() < bytes.len());
            let back = match (&d.payload, &d.payload_hex) {
                (Some(text), None) => text.as_bytes().to_vec(),
                (None, Some(hex)) => (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect(),
                other => return Err(TestCaseError::fail(format!("payload fields {other:?}"))),
            };
            prop_assert!(back == kept, "the dead letter does not keep the bytes");
            let bytes = Output::DeadLetter(d.clone()).to_json();
            // Kafka's default message.max.bytes is 1,048,588: a dead letter whose
            // detail and payload are escaped twice must still fit.
            prop_assert!(
                bytes.len() < 1_000_000,
                "a dead letter of {} bytes",
                bytes.len()
            );
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(json["reason"].as_str(), Some(code));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Valid messages, as lists of fields so that fields can be mutated

#[derive(Debug, Clone)]
struct Doc {
    kind: InputKind,
    fields: Vec<(String, String)>,
}

impl Doc {
    fn render(&self) -> Vec<u8> {
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{}:{v}", json_str(k)))
            .collect();
        format!("{{{}}}", body.join(",")).into_bytes()
    }

    fn required(&self) -> &'static [&'static str] {
        match self.kind {
            InputKind::Prices => &["symbol", "ts", "price", "size"],
            InputKind::Sentiment => &["symbol", "ts", "score", "source"],
            InputKind::OrderBook => &["symbol", "ts", "type"],
        }
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Symbols that pass: ASCII and not.
fn good_symbol() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z]{1,8}",
        "[A-Za-z0-9._:/-]{1,32}",
        Just("株式会社".to_string()),
        Just("ÜNÏ-ÇØRP".to_string()),
        Just("🚀🌕".to_string()),
        Just("Δ".to_string()),
    ]
}

fn ts_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..7_258_118_399_999).prop_map(|ms| ms.to_string()),
        (0i64..7_258_118_399_999).prop_map(|ms| format!("\"{ms}\"")),
        (0i64..7_258_118_399_999, 0u32..1_000_000).prop_map(|(ms, f)| format!("{ms}.{f:06}")),
        (0i64..7_258_118_399)
            .prop_map(|s| format!("\"{}\"", wire::format_ts(s * 1_000_000_000 + 123_456_789))),
    ]
}

/// A decimal > 0 as a JSON string or number: up to 28 significant digits.
fn price() -> impl Strategy<Value = (Decimal, bool)> {
    (1i64..=9_999_999_999, 0u32..=8, any::<bool>())
        .prop_map(|(m, scale, quoted)| (Decimal::new(m, scale), quoted))
}

fn render_decimal((d, quoted): (Decimal, bool)) -> String {
    if quoted {
        format!("\"{d}\"")
    } else {
        d.to_string()
    }
}

fn valid_tick() -> impl Strategy<Value = Doc> {
    (
        good_symbol(),
        ts_value(),
        price(),
        price(),
        prop::option::of((1u32..500, 1u32..500)),
    )
        .prop_map(|(sym, ts, p, size, quote)| {
            let mut fields = vec![
                ("symbol".to_string(), json_str(&sym)),
                ("ts".into(), ts),
                ("price".into(), render_decimal(p)),
                ("size".into(), render_decimal(size)),
            ];
            if let Some((spread, below)) = quote {
                let bid = p.0 + Decimal::new(below as i64, 4);
                fields.push(("bid".into(), format!("\"{bid}\"")));
                fields.push((
                    "ask".into(),
                    format!("\"{}\"", bid + Decimal::new(spread as i64, 4)),
                ));
            }
            Doc {
                kind: InputKind::Prices,
                fields,
            }
        })
}

fn valid_sentiment() -> impl Strategy<Value = Doc> {
    (
        good_symbol(),
        ts_value(),
        -1.0f64..=1.0,
        "[a-z-]{0,20}",
        prop::option::of("\\PC{0,60}"),
    )
        .prop_map(|(sym, ts, score, source, headline)| {
            let mut fields = vec![
                ("symbol".to_string(), json_str(&sym)),
                ("ts".into(), ts),
                ("score".into(), serde_json::to_string(&score).unwrap()),
                ("source".into(), json_str(&source)),
            ];
            if let Some(h) = headline {
                fields.push(("headline".into(), json_str(&h)));
            }
            Doc {
                kind: InputKind::Sentiment,
                fields,
            }
        })
}

fn valid_book() -> impl Strategy<Value = Doc> {
    (
        good_symbol(),
        ts_value(),
        any::<bool>(),
        1_000i64..1_000_000,
        0usize..6,
        0usize..6,
    )
        .prop_map(|(sym, ts, snapshot, mid, nb, na)| {
            let level =
                |ticks: i64, size: usize| format!("[\"{}\",\"{size}\"]", Decimal::new(ticks, 2));
            let bids: Vec<String> = (0..nb).map(|i| level(mid - 1 - i as i64, i + 1)).collect();
            let asks: Vec<String> = (0..na).map(|i| level(mid + 1 + i as i64, i)).collect();
            Doc {
                kind: InputKind::OrderBook,
                fields: vec![
                    ("symbol".to_string(), json_str(&sym)),
                    ("ts".into(), ts),
                    (
                        "type".into(),
                        json_str(if snapshot { "snapshot" } else { "update" }),
                    ),
                    ("bids".into(), format!("[{}]", bids.join(","))),
                    ("asks".into(), format!("[{}]", asks.join(","))),
                ],
            }
        })
}

fn valid_doc() -> impl Strategy<Value = Doc> {
    prop_oneof![valid_tick(), valid_sentiment(), valid_book()]
}

/// JSON values that do not belong in any field: huge and tiny numbers, values of
/// the wrong type, deep nesting, strange strings.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        // Huge, tiny and edge numbers, bare and quoted.
        1 => prop::sample::select(vec![
            "1e400",
            "-1e400",
            "1e-400",
            "\"1e400\"",
            "\"1E+28\"",
            "1E+28",
            "79228162514264337593543950335",
            "79228162514264337593543950336",
            "\"79228162514264337593543950336\"",
            "-79228162514264337593543950336",
            "0.00000000000000000000000000001",
            "18446744073709551616",
            "-9223372036854775809",
            "9223372036854775807",
            "-0",
            "0",
            "-0.0",
            "\"NaN\"",
            "\"inf\"",
            "\"-Infinity\"",
            "\"1e99999999999\"",
            "\"1e-99999999999\"",
            "\"0x10\"",
            "\"\"",
            "\" 5 \"",
        ])
        .prop_map(str::to_string),
        // Zero and negative values, bare and quoted (prices, sizes, scores).
        4 => (-100_000i64..=0, 0u32..4, any::<bool>())
            .prop_map(|(m, scale, q)| render_decimal((Decimal::new(m, scale), q))),
        // Depth levels that are wrong, or too many.
        2 => prop::sample::select(vec![
            "[[\"-1\",\"1\"]]",
            "[[\"1\",\"-1\"]]",
            "[[\"0\",\"1\"]]",
            "[[\"1\"]]",
            "[[\"1\",\"1\",\"1\"]]",
            "[[\"101\",\"1\"],[\"99\",\"1\"]]",
        ])
        .prop_map(str::to_string),
        1 => (MAX_BOOK_LEVELS - 1..MAX_BOOK_LEVELS + 3).prop_map(|n| {
            let levels: Vec<String> = (0..n).map(|i| format!("[\"{}\",\"2\"]", 5000 + i)).collect();
            format!("[{}]", levels.join(","))
        }),
        1 => "[1-9][0-9]{20,400}",
        1 => "[1-9][0-9]{0,5}\\.[0-9]{20,300}",
        1 => "[1-9][0-9]{0,3}[eE][-+]?[0-9]{1,12}",
        // Wrong types.
        1 => prop::sample::select(vec![
            "null", "true", "false", "[]", "{}", "[1,2]", "{\"a\":1}", "[[\"1\"]]", "\"x\""
        ])
        .prop_map(str::to_string),
        // Deep nesting, past serde_json's recursion limit too.
        1 => (1usize..3000).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
        1 => (1usize..2000).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
        1 => (1usize..3000).prop_map(|n| "[".repeat(n)),
        // Strings: any unicode, escapes, lone surrogates, long.
        1 => "\\PC{0,40}".prop_map(|s| json_str(&s)),
        1 => any::<String>().prop_map(|s| json_str(&s)),
        1 => Just("\"\\ud800\"".to_string()),
        1 => Just("\"a\\u0000b\"".to_string()),
        1 => (1usize..70_000).prop_map(|n| json_str(&"x".repeat(n))),
        // Long strings that grow when echoed and escaped again in a dead letter.
        1 => (1usize..7_000).prop_map(|n| json_str(&"\u{1}\"\\é".repeat(n))),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(prop::sample::Index),
    FlipBit(prop::sample::Index, u8),
    SetByte(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    RemoveField(prop::sample::Index),
    ReplaceField(prop::sample::Index, String),
    DuplicateField(prop::sample::Index, String),
    AddField(String, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..8)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::RemoveField),
        (any::<prop::sample::Index>(), hostile_value())
            .prop_map(|(i, v)| Mutation::ReplaceField(i, v)),
        (any::<prop::sample::Index>(), hostile_value())
            .prop_map(|(i, v)| Mutation::DuplicateField(i, v)),
        ("\\PC{0,10}", hostile_value()).prop_map(|(k, v)| Mutation::AddField(k, v)),
    ]
}

/// Apply field mutations to the document, then byte mutations to its bytes.
fn mutate(doc: &Doc, muts: &[Mutation]) -> Vec<u8> {
    let mut d = doc.clone();
    for m in muts {
        match m {
            Mutation::RemoveField(i) if !d.fields.is_empty() => {
                d.fields.remove(i.index(d.fields.len()));
            }
            Mutation::ReplaceField(i, v) if !d.fields.is_empty() => {
                let n = i.index(d.fields.len());
                d.fields[n].1 = v.clone();
            }
            Mutation::DuplicateField(i, v) if !d.fields.is_empty() => {
                let k = d.fields[i.index(d.fields.len())].0.clone();
                d.fields.push((k, v.clone()));
            }
            Mutation::AddField(k, v) => d.fields.push((k.clone(), v.clone())),
            _ => {}
        }
    }
    let mut bytes = d.render();
    for m in muts {
        match m {
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
            Mutation::FlipBit(i, b) if !bytes.is_empty() => {
                let n = i.index(bytes.len());
                bytes[n] ^= 1 << b;
            }
            Mutation::SetByte(i, b) if !bytes.is_empty() => {
                let n = i.index(bytes.len());
                bytes[n] = *b;
            }
            Mutation::Insert(i, b) => {
                let n = i.index(bytes.len() + 1);
                bytes.splice(n..n, b.iter().copied());
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(cases(5000))]

    /// Arbitrary bytes, raw or behind a `{` (so that they reach the field decoders).
    #[test]
    fn arbitrary_bytes_never_panic_and_are_refused_with_documented_codes(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        brace in any::<bool>(),
    ) {
        let mut b = bytes;
        if brace {
            b.insert(0, b'{');
        }
        for kind in KINDS {
            engine_checked(kind, &b)?;
        }
    }

    /// Arbitrary unicode text behind a `{`: the UTF-8 paths of the JSON parser.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let b = format!("{{{text}").into_bytes();
        for kind in KINDS {
            decode_checked(kind, &b)?;
        }
    }

    /// Valid messages decode, and every mutation of them is either accepted with
    /// the invariants intact or refused with a documented code, by the decoder
    /// and, as one dead letter, by the engine.
    #[test]
    fn mutated_valid_messages_keep_the_invariants(
        doc in valid_doc(),
        muts in prop::collection::vec(mutation(), 0..4),
    ) {
        let clean = doc.render();
        prop_assert_eq!(decode_checked(doc.kind, &clean)?, None, "valid: {}", String::from_utf8_lossy(&clean));
        let bytes = mutate(&doc, &muts);
        for kind in KINDS {
            engine_checked(kind, &bytes)?;
        }
    }

    /// A strict prefix of a message is never accepted.
    #[test]
    fn truncated_messages_are_malformed(doc in valid_doc(), at in any::<prop::sample::Index>()) {
        let bytes = doc.render();
        let cut = &bytes[..at.index(bytes.len())];
        let code = decode_checked(doc.kind, cut)?;
        let want = if cut.is_empty() { "empty" } else { "malformed_json" };
        prop_assert_eq!(code, Some(want));
    }

    /// A message without one of its required fields is a `missing_field`.
    #[test]
    fn a_missing_required_field_is_named(doc in valid_doc(), which in any::<prop::sample::Index>()) {
        let field = doc.required()[which.index(doc.required().len())];
        let mut d = doc.clone();
        d.fields.retain(|(k, _)| k != field);
        match wire::decode(d.kind, &d.render()) {
            Err(r) => {
                prop_assert_eq!(r.code, "missing_field");
                prop_assert!(r.detail.contains(field), "{}", r);
            }
            Ok(ev) => prop_assert!(false, "accepted without {}: {:?}", field, ev),
        }
    }

    /// Any string as the symbol: accepted exactly when it is 1..=32 bytes without
    /// whitespace or control characters, and then kept as it is.
    #[test]
    fn symbols_are_accepted_exactly_by_the_documented_rule(
        doc in valid_doc(),
        sym in prop_oneof!["\\PC{0,40}", any::<String>(), "[ -~]{30,34}"],
    ) {
        let mut d = doc.clone();
        d.fields[0].1 = json_str(&sym);
        let ok = !sym.is_empty()
            && sym.len() <= MAX_SYMBOL_LEN
            && !sym.chars().any(|c| c.is_whitespace() || c.is_control());
        match wire::decode(d.kind, &d.render()) {
            Ok(ev) => {
                prop_assert!(ok, "accepted {:?}", sym);
                prop_assert_eq!(ev.symbol(), sym.as_str());
            }
            Err(r) => {
                prop_assert!(!ok, "refused {:?}: {}", sym, r);
                prop_assert_eq!(r.code, "invalid_symbol");
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// The size limit is exact: a valid message padded to 64 KiB is accepted, one
    /// byte more is `too_large` (and kept truncated in its dead letter).
    #[test]
    fn the_size_limit_is_exact(doc in valid_doc(), extra in 0usize..3) {
        let mut d = doc.clone();
        d.fields.push(("pad".into(), "\"\"".into()));
        let base = d.render().len();
        let target = MAX_MESSAGE_BYTES + extra - 1;
        d.fields.last_mut().unwrap().1 = json_str(&"p".repeat(target - base));
        let bytes = d.render();
        prop_assert_eq!(bytes.len(), target);
        let code = decode_checked(d.kind, &bytes)?;
        if bytes.len() <= MAX_MESSAGE_BYTES {
            prop_assert_eq!(code, None);
        } else {
            prop_assert_eq!(code, Some("too_large"));
        }
        engine_checked(d.kind, &bytes)?;
    }

    /// Depth messages at the level limit and past it.
    #[test]
    fn the_level_limit_is_exact(levels in (MAX_BOOK_LEVELS - 1)..=(MAX_BOOK_LEVELS + 1), on_bids in any::<bool>()) {
        let side: Vec<String> = (0..levels).map(|i| format!("[\"{}\",\"1\"]", 100_000 - i)).collect();
        let (bids, asks) = if on_bids { (side.join(","), String::new()) } else { (String::new(), side.join(",")) };
        let msg = format!(r#"{{"symbol":"A","ts":1,"type":"update","bids":[{bids}],"asks":[{asks}]}}"#);
        let code = decode_checked(InputKind::OrderBook, msg.as_bytes())?;
        if levels <= MAX_BOOK_LEVELS {
            prop_assert_eq!(code, None);
        } else {
            prop_assert_eq!(code, Some("too_many_levels"));
        }
    }
}

// ---------------------------------------------------------------------------
// CSV files (backtests, replay)

const HEADERS: [&str; 6] = [
    "ts,symbol,price,size,bid,ask",
    "ts,symbol,price,size",
    "ts,symbol,score,source,headline",
    "Date,Open,High,Low,Close,Volume,Ticker",
    "Date,Time,Open,High,Low,Close",
    "timestamp,open,high,low,close,volume",
];

/// One row of a file with header `HEADERS[header]`, and its time in epoch ms.
fn csv_row(header: usize) -> impl Strategy<Value = (i64, String)> {
    let sym = prop_oneof![Just("ACME".to_string()), good_symbol(), "\\PC{0,12}"];
    let ms = 0i64..4_102_444_800_000;
    let px = (1i64..1_000_000, 0u32..4).prop_map(|(m, s)| Decimal::new(m, s));
    (sym, ms, px.clone(), px, -1.2f64..1.2, "\\PC{0,20}").prop_map(
        move |(sym, ms, a, b, score, text)| {
            let (lo, hi) = (a.min(b), a.max(b));
            let day = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            let row = match header {
                0 => format!("{ms},{sym},{a},{b},{lo},{hi}"),
                1 => format!("{ms},{sym},{a},{b}"),
                2 => format!("{ms},{sym},{score},src,\"{}\"", text.replace('"', "\"\"")),
                3 => format!(
                    "{},{a},{hi},{lo},{b},{},{sym}",
                    day.format("%Y-%m-%d"),
                    b * Decimal::from(10)
                ),
                4 => format!(
                    "{},{},{a},{hi},{lo},{b}",
                    day.format("%m/%d/%Y"),
                    day.format("%H:%M")
                ),
                _ => format!(
                    "{},{a},{hi},{lo},{b},7",
                    day.format("%d.%m.%Y %H:%M:%S%.3f")
                ),
            };
            (ms, row)
        },
    )
}

fn csv_file() -> impl Strategy<Value = Vec<u8>> {
    (0..HEADERS.len()).prop_flat_map(|h| {
        prop::collection::vec(csv_row(h), 0..30).prop_map(move |mut rows| {
            // In time order, as real files are (bars must be; the mutations
            // below break the order again).
            rows.sort_by_key(|(ms, _)| *ms);
            let mut text = String::from(HEADERS[h]);
            for (_, r) in rows {
                text.push('\n');
                text.push_str(&r);
            }
            text.into_bytes()
        })
    })
}

/// Read a CSV to its end: never a panic, never an endless reader; every record
/// satisfies the reader's rules, and the wire encoding a file backtest feeds the
/// engine decodes back to the same value or is refused with a documented code.
fn read_csv_checked(bytes: &[u8]) -> Result<(), TestCaseError> {
    let opts = ReadOptions {
        default_symbol: Some("DFLT".into()),
        bar_period: None,
        ..ReadOptions::default()
    };
    let Ok(reader) = RecordReader::from_reader("fuzz.csv", Cursor::new(bytes.to_vec()), &opts)
    else {
        return Ok(());
    };
    let bound = 4
        * (bytes
            .iter()
            .filter(|b| **b == b'\n' || **b == b'\r')
            .count()
            + 1);
    let mut n = 0;
    for r in reader {
        n += 1;
        prop_assert!(
            n <= bound,
            "more than {bound} records from {} bytes",
            bytes.len()
        );
        let Ok(record) = r else { continue };
        let (kind, wire_bytes) = match &record {
            Record::Tick(t) => {
                prop_assert!(t.price > Decimal::ZERO && t.size >= Decimal::ZERO, "{t:?}");
                (InputKind::Prices, wire::encode_tick(t))
            }
            Record::Sentiment(s) => {
                prop_assert!((-1.0..=1.0).contains(&s.score), "{s:?}");
                (InputKind::Sentiment, wire::encode_sentiment(s))
            }
        };
        if decode_checked(kind, &wire_bytes)?.is_none() {
            let back = wire::decode(kind, &wire_bytes).unwrap();
            prop_assert_eq!(MarketEvent::from(record.clone()), back);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn csv_reader_survives_arbitrary_bytes(
        header in prop::sample::select(HEADERS.to_vec()),
        body in prop::collection::vec(any::<u8>(), 0..600),
        with_header in any::<bool>(),
    ) {
        let mut bytes = if with_header { format!("{header}\n").into_bytes() } else { Vec::new() };
        bytes.extend(body);
        read_csv_checked(&bytes)?;
    }

    #[test]
    fn csv_reader_survives_mutated_files(
        file in csv_file(),
        muts in prop::collection::vec(
            (any::<prop::sample::Index>(), prop::sample::select(vec![
                b',', b'"', b'\n', b'\r', b'-', b'.', b'e', b'9', b' ', 0xff, 0x00,
            ]), 0u8..3),
            0..6,
        ),
    ) {
        read_csv_checked(&file)?;
        let mut bytes = file;
        for (at, b, op) in muts {
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, b),
                1 if i < bytes.len() => bytes[i] = b,
                _ => bytes.truncate(i),
            }
        }
        read_csv_checked(&bytes)?;
    }

    /// The parsers of times and decimals (CSV cells, `--from`/`--to`, JSON `ts`).
    #[test]
    fn time_and_decimal_parsers_never_panic(
        s in prop_oneof![
            "\\PC{0,40}",
            "-?[0-9]{1,25}(\\.[0-9]{0,12})?([eE][-+]?[0-9]{1,6})?",
            "[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2}([T ][0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\\.[0-9]{1,12})?)?)?(Z|[-+][0-9]{2}:[0-9]{2})?",
            "[0-9]{1,2}[/.][0-9]{1,2}[/.][0-9]{1,6}( [0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?",
        ],
    ) {
        let _ = csvdata::parse_ts(&s);
        let _ = csvdata::parse_decimal(&s);
        let _ = papertrader::backtest::parse_bound(&s);
        if let Some(ts) = wire::parse_ts_str(&s) {
            // What parses as a JSON string `ts` is what `parse_ts` gets.
            let as_json = wire::parse_ts(&serde_json::Value::String(s.clone()));
            if (0..TS_END).contains(&ts) {
                prop_assert_eq!(as_json.ok(), Some(ts));
            } else {
                prop_assert_eq!(as_json.map_err(|r| r.code), Err("invalid_timestamp"));
            }
        }
        if let Ok(d) = Decimal::from_str(&s) {
            prop_assert_eq!(csvdata::parse_decimal(&s), Some(d));
        }
    }
}
