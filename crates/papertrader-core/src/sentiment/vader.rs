//! VADER (Valence Aware Dictionary and sEntiment Reasoner), a port of
//! vaderSentiment 3.3.2 (`vaderSentiment/vaderSentiment.py`, MIT, C.J.
//! Hutto) rule for rule, with its lexicon and emoji lexicon embedded
//! (`data/`, `data/NOTICE.md`).
//!
//! What it reproduces, in the package's order: emojis replaced by their
//! descriptions; whitespace tokens stripped of surrounding ASCII punctuation
//! unless that leaves two characters or fewer (emoticons survive); booster
//! and dampener words (`B_INCR`, `B_DECR`, damped by distance 0.95 / 0.9);
//! ALL-CAPS emphasis when only some tokens are capitalised (`C_INCR`);
//! negation up to three tokens back (`N_SCALAR`), "no" before a lexicon word,
//! "never so/this", "without doubt"; "least"; the special-case idioms; the
//! contrastive "but" (before x0.5, after x1.5, with the package's
//! first-equal-value indexing); `!` (up to 4) and `?` emphasis; the compound
//! `s / sqrt(s^2 + 15)`; and the package's rounding (3 places for neg, neu,
//! pos; 4 for compound, ties to even on the exact binary value as Python's
//! `round`).
//!
//! Parity: `tests/fixtures/vader_scores.json`, written by
//! `scripts/sentiment/vader_fixture.py` with the real package; the test
//! below compares every sentence's four scores, rounded and raw.
//!
//! Known edge: Python >= 3.12 sums floats with compensated summation; this
//! port sums left to right as Python 3.11 (which made the fixture) does, so
//! on 3.12 the package can differ in the last bits of the raw scores.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The scorer's name in `news_sentiment.source`.
pub const NAME: &str = "vader";
/// The vaderSentiment release this port follows.
pub const VERSION: &str = "3.3.2";

const LEXICON: &str = include_str!("data/vader_lexicon.txt");
const EMOJI_LEXICON: &str = include_str!("data/emoji_utf8_lexicon.txt");

const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
const C_INCR: f64 = 0.733;
const N_SCALAR: f64 = -0.74;

const NEGATE: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

const BOOSTERS_UP: &[&str] = &[
    "absolutely",
    "amazingly",
    "awfully",
    "completely",
    "considerable",
    "considerably",
    "decidedly",
    "deeply",
    "effing",
    "enormous",
    "enormously",
    "entirely",
    "especially",
    "exceptional",
    "exceptionally",
    "extreme",
    "extremely",
    "fabulously",
    "flipping",
    "flippin",
    "frackin",
    "fracking",
    "fricking",
    "frickin",
    "frigging",
    "friggin",
    "fully",
    "fuckin",
    "fucking",
    "fuggin",
    "fugging",
    "greatly",
    "hella",
    "highly",
    "hugely",
    "incredible",
    "incredibly",
    "intensely",
    "major",
    "majorly",
    "more",
    "most",
    "particularly",
    "purely",
    "quite",
    "really",
    "remarkably",
    "so",
    "substantially",
    "thoroughly",
    "total",
    "totally",
    "tremendous",
    "tremendously",
    "uber",
    "unbelievably",
    "unusually",
    "utter",
    "utterly",
    "very",
];

const BOOSTERS_DOWN: &[&str] = &[
    "almost",
    "barely",
    "hardly",
    "just enough",
    "kind of",
    "kinda",
    "kindof",
    "kind-of",
    "less",
    "little",
    "marginal",
    "marginally",
    "occasional",
    "occasionally",
    "partly",
    "scarce",
    "scarcely",
    "slight",
    "slightly",
    "somewhat",
    "sort of",
    "sorta",
    "sortof",
    "sort-of",
];

const SPECIAL_CASES: &[(&str, f64)] = &[
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("bus stop", 0.0),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
    ("beating heart", 3.5),
];

/// The four scores of `polarity_scores`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VaderScores {
    pub neg: f64,
    pub neu: f64,
    pub pos: f64,
    pub compound: f64,
}

/// The analyzer: the lexicon and the emoji descriptions.
#[derive(Debug)]
pub struct Vader {
    lexicon: HashMap<String, f64>,
    emojis: HashMap<char, String>,
}

fn booster(word_lower: &str) -> Option<f64> {
    if BOOSTERS_UP.contains(&word_lower) {
        Some(B_INCR)
    } else if BOOSTERS_DOWN.contains(&word_lower) {
        Some(B_DECR)
    } else {
        None
    }
}

fn special_case(seq: &str) -> Option<f64> {
    SPECIAL_CASES
        .iter()
        .find(|(k, _)| *k == seq)
        .map(|(_, v)| *v)
}

/// Python's `str.isspace` for one character (Rust's `char::is_whitespace`
/// plus the ASCII separators U+001C..U+001F).
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Python's `str.isupper()`: at least one cased character, none lowercase.
fn py_isupper(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_lowercase() {
            return false;
        }
        if c.is_uppercase() {
            cased = true;
        }
    }
    cased
}

/// Python's `round(x, digits)` for floats: the exact binary value rounded to
/// `digits` decimal places, ties to even (Rust's formatting rounds the same).
pub fn py_round(x: f64, digits: usize) -> f64 {
    format!("{x:.digits$}")
        .parse()
        .expect("a formatted float parses")
}

/// `SentiText._strip_punc_if_word`.
fn strip_punc_if_word(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    if stripped.chars().count() <= 2 {
        token
    } else {
        stripped
    }
}

/// `negated([word])` with `include_nt`.
fn negated(word_lower: &str) -> bool {
    let w = word_lower.to_lowercase();
    NEGATE.contains(&w.as_str()) || w.contains("n't")
}

fn allcap_differential(words: &[&str]) -> bool {
    let caps = words.iter().filter(|w| py_isupper(w)).count();
    let differential = words.len() - caps;
    0 < differential && differential < words.len()
}

fn scalar_inc_dec(word: &str, valence: f64, is_cap_diff: bool) -> f64 {
    let Some(mut scalar) = booster(&word.to_lowercase()) else {
        return 0.0;
    };
    if valence < 0.0 {
        scalar *= -1.0;
    }
    if py_isupper(word) && is_cap_diff {
        if valence > 0.0 {
            scalar += C_INCR;
        } else {
            scalar -= C_INCR;
        }
    }
    scalar
}

/// The tokens of one text, as `SentiText` sees them.
struct Tokens<'a> {
    words: Vec<&'a str>,
    lower: Vec<String>,
    is_cap_diff: bool,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Tokens<'a> {
        let words: Vec<&str> = text
            .split(py_isspace)
            .filter(|w| !w.is_empty())
            .map(strip_punc_if_word)
            .collect();
        let lower = words.iter().map(|w| w.to_lowercase()).collect();
        let is_cap_diff = allcap_differential(&words);
        Tokens {
            words,
            lower,
            is_cap_diff,
        }
    }

    fn len(&self) -> usize {
        self.words.len()
    }

    fn lw(&self, i: usize) -> &str {
        &self.lower[i]
    }
}

impl Default for Vader {
    fn default() -> Self {
        Vader::new()
    }
}

impl Vader {
    /// The analyzer over the embedded lexicons (about 10 ms to build; see
    /// [`Vader::shared`]).
    pub fn new() -> Vader {
        let mut lexicon = HashMap::new();
        for line in LEXICON.trim_end_matches('\n').split('\n') {
            if line.is_empty() {
                continue;
            }
            let mut fields = py_strip(line).split('\t');
            let word = fields.next().unwrap_or_default();
            let measure: f64 = fields
                .next()
                .and_then(|m| m.parse().ok())
                .expect("vader_lexicon.txt: a word, a tab and a number per line");
            lexicon.insert(word.to_string(), measure);
        }
        let mut emojis = HashMap::new();
        for line in EMOJI_LEXICON.trim_end_matches('\n').split('\n') {
            let mut fields = py_strip(line).split('\t');
            let emoji = fields.next().unwrap_or_default();
            let description = fields.next().unwrap_or_default();
            // The package looks emojis up one code point at a time, so only
            // single-code-point entries can ever match.
            let mut chars = emoji.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                emojis.insert(c, description.to_string());
            }
        }
        Vader { lexicon, emojis }
    }

    /// One analyzer per process, built on first use.
    pub fn shared() -> &'static Vader {
        static SHARED: OnceLock<Vader> = OnceLock::new();
        SHARED.get_or_init(Vader::new)
    }

    /// The lexicon's valence of a lowercase token.
    pub fn valence_of(&self, word_lower: &str) -> Option<f64> {
        self.lexicon.get(word_lower).copied()
    }

    fn in_lexicon(&self, word_lower: &str) -> bool {
        self.lexicon.contains_key(word_lower)
    }

    /// `polarity_scores`: the package's four scores, rounded as it rounds.
    pub fn polarity_scores(&self, text: &str) -> VaderScores {
        let raw = self.raw_scores(text);
        VaderScores {
            neg: py_round(raw.neg, 3),
            neu: py_round(raw.neu, 3),
            pos: py_round(raw.pos, 3),
            compound: py_round(raw.compound, 4),
        }
    }

    /// The four scores before the package's final rounding.
    pub fn raw_scores(&self, text: &str) -> VaderScores {
        let text = self.replace_emojis(text);
        let text = py_strip(&text);
        let tokens = Tokens::new(text);
        let mut sentiments = Vec::with_capacity(tokens.len());
        for i in 0..tokens.len() {
            if booster(tokens.lw(i)).is_some()
                || (i + 1 < tokens.len() && tokens.lw(i) == "kind" && tokens.lw(i + 1) == "of")
            {
                sentiments.push(0.0);
                continue;
            }
            sentiments.push(self.sentiment_valence(&tokens, i));
        }
        but_check(&tokens, &mut sentiments);
        score_valence(&sentiments, text)
    }

    fn replace_emojis(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut prev_space = true;
        for c in text.chars() {
            if let Some(description) = self.emojis.get(&c) {
                if !prev_space {
                    out.push(' ');
                }
                out.push_str(description);
                prev_space = false;
            } else {
                out.push(c);
                prev_space = c == ' ';
            }
        }
        out
    }

    fn sentiment_valence(&self, t: &Tokens, i: usize) -> f64 {
        let n = t.len();
        let Some(base) = self.valence_of(t.lw(i)) else {
            return 0.0;
        };
        let mut valence = base;
        if t.lw(i) == "no" && i != n - 1 && self.in_lexicon(t.lw(i + 1)) {
            valence = 0.0;
        }
        if (i > 0 && t.lw(i - 1) == "no")
            || (i > 1 && t.lw(i - 2) == "no")
            || (i > 2 && t.lw(i - 3) == "no" && matches!(t.lw(i - 1), "or" | "nor"))
        {
            valence = base * N_SCALAR;
        }
        if py_isupper(t.words[i]) && t.is_cap_diff {
            if valence > 0.0 {
                valence += C_INCR;
            } else {
                valence -= C_INCR;
            }
        }
        for start_i in 0..3 {
            if i > start_i && !self.in_lexicon(t.lw(i - (start_i + 1))) {
                let mut s = scalar_inc_dec(t.words[i - (start_i + 1)], valence, t.is_cap_diff);
                if start_i == 1 && s != 0.0 {
                    s *= 0.95;
                }
                if start_i == 2 && s != 0.0 {
                    s *= 0.9;
                }
                valence += s;
                valence = negation_check(valence, t, start_i, i);
                if start_i == 2 {
                    valence = special_idioms_check(valence, t, i);
                }
            }
        }
        self.least_check(valence, t, i)
    }

    fn least_check(&self, valence: f64, t: &Tokens, i: usize) -> f64 {
        if i > 1 && !self.in_lexicon(t.lw(i - 1)) && t.lw(i - 1) == "least" {
            if t.lw(i - 2) != "at" && t.lw(i - 2) != "very" {
                return valence * N_SCALAR;
            }
        } else if i > 0 && !self.in_lexicon(t.lw(i - 1)) && t.lw(i - 1) == "least" {
            return valence * N_SCALAR;
        }
        valence
    }
}

fn negation_check(valence: f64, t: &Tokens, start_i: usize, i: usize) -> f64 {
    let so_or_this = |w: &str| w == "so" || w == "this";
    match start_i {
        0 if negated(t.lw(i - 1)) => valence * N_SCALAR,
        1 => {
            if t.lw(i - 2) == "never" && so_or_this(t.lw(i - 1)) {
                valence * 1.25
            } else if t.lw(i - 2) == "without" && t.lw(i - 1) == "doubt" {
                valence
            } else if negated(t.lw(i - 2)) {
                valence * N_SCALAR
            } else {
                valence
            }
        }
        2 => {
            // The package's precedence: (never and so/this two back) or so/this one back.
            if (t.lw(i - 3) == "never" && so_or_this(t.lw(i - 2))) || so_or_this(t.lw(i - 1)) {
                valence * 1.25
            } else if t.lw(i - 3) == "without" && (t.lw(i - 2) == "doubt" || t.lw(i - 1) == "doubt")
            {
                valence
            } else if negated(t.lw(i - 3)) {
                valence * N_SCALAR
            } else {
                valence
            }
        }
        _ => valence,
    }
}

/// `_special_idioms_check`, called with `i >= 3`.
fn special_idioms_check(mut valence: f64, t: &Tokens, i: usize) -> f64 {
    let n = t.len();
    let onezero = format!("{} {}", t.lw(i - 1), t.lw(i));
    let twoonezero = format!("{} {} {}", t.lw(i - 2), t.lw(i - 1), t.lw(i));
    let twoone = format!("{} {}", t.lw(i - 2), t.lw(i - 1));
    let threetwoone = format!("{} {} {}", t.lw(i - 3), t.lw(i - 2), t.lw(i - 1));
    let threetwo = format!("{} {}", t.lw(i - 3), t.lw(i - 2));
    for seq in [&onezero, &twoonezero, &twoone, &threetwoone, &threetwo] {
        if let Some(v) = special_case(seq) {
            valence = v;
            break;
        }
    }
    if n - 1 > i {
        if let Some(v) = special_case(&format!("{} {}", t.lw(i), t.lw(i + 1))) {
            valence = v;
        }
    }
    if n - 1 > i + 1 {
        let zeroonetwo = format!("{} {} {}", t.lw(i), t.lw(i + 1), t.lw(i + 2));
        if let Some(v) = special_case(&zeroonetwo) {
            valence = v;
        }
    }
    for n_gram in [&threetwoone, &threetwo, &twoone] {
        if let Some(b) = booster(n_gram) {
            valence += b;
        }
    }
    valence
}

/// `_but_check`, including the package's `sentiments.index(value)`, which
/// finds the first equal value rather than the current position.
fn but_check(t: &Tokens, sentiments: &mut [f64]) {
    let Some(bi) = t.lower.iter().position(|w| w == "but") else {
        return;
    };
    for k in 0..sentiments.len() {
        let sentiment = sentiments[k];
        let si = sentiments
            .iter()
            .position(|s| *s == sentiment)
            .expect("the value is in the list");
        if si < bi {
            sentiments[si] = sentiment * 0.5;
        } else if si > bi {
            sentiments[si] = sentiment * 1.5;
        }
    }
}

fn punctuation_emphasis(text: &str) -> f64 {
    let ep_count = text.matches('!').count().min(4);
    let ep = ep_count as f64 * 0.292;
    let qm_count = text.matches('?').count();
    let qm = if qm_count > 1 {
        if qm_count <= 3 {
            qm_count as f64 * 0.18
        } else {
            0.96
        }
    } else {
        0.0
    };
    ep + qm
}

fn normalize(score: f64) -> f64 {
    (score / (score * score + 15.0).sqrt()).clamp(-1.0, 1.0)
}

fn score_valence(sentiments: &[f64], text: &str) -> VaderScores {
    if sentiments.is_empty() {
        return VaderScores {
            neg: 0.0,
            neu: 0.0,
            pos: 0.0,
            compound: 0.0,
        };
    }
    let mut sum_s = 0.0;
    for s in sentiments {
        sum_s += s;
    }
    let punct = punctuation_emphasis(text);
    if sum_s > 0.0 {
        sum_s += punct;
    } else if sum_s < 0.0 {
        sum_s -= punct;
    }
    let compound = normalize(sum_s);
    let (mut pos_sum, mut neg_sum, mut neu_count) = (0.0, 0.0, 0u32);
    for &s in sentiments {
        if s > 0.0 {
            pos_sum += s + 1.0;
        }
        if s < 0.0 {
            neg_sum += s - 1.0;
        }
        if s == 0.0 {
            neu_count += 1;
        }
    }
    if pos_sum > f64::abs(neg_sum) {
        pos_sum += punct;
    } else if pos_sum < f64::abs(neg_sum) {
        neg_sum -= punct;
    }
    let total = pos_sum + f64::abs(neg_sum) + f64::from(neu_count);
    VaderScores {
        neg: (neg_sum / total).abs(),
        neu: (f64::from(neu_count) / total).abs(),
        pos: (pos_sum / total).abs(),
        compound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Fixture {
        version: String,
        sentences: Vec<Row>,
    }

    #[derive(Deserialize)]
    struct Row {
        text: String,
        scores: Exact,
        raw: Exact,
    }

    /// The four numbers read from their text with Rust's correctly rounded
    /// parser (serde_json's own float parsing can be one ulp off).
    #[derive(Deserialize)]
    struct Exact {
        neg: serde_json::Number,
        neu: serde_json::Number,
        pos: serde_json::Number,
        compound: serde_json::Number,
    }

    impl Exact {
        fn get(&self) -> VaderScores {
            let f = |n: &serde_json::Number| n.to_string().parse::<f64>().unwrap();
            VaderScores {
                neg: f(&self.neg),
                neu: f(&self.neu),
                pos: f(&self.pos),
                compound: f(&self.compound),
            }
        }
    }

    fn fixture() -> Fixture {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/vader_scores.json"
        );
        let text = std::fs::read_to_string(path).expect("tests/fixtures/vader_scores.json");
        serde_json::from_str(&text).expect("the fixture parses")
    }

    fn fields(s: &VaderScores) -> [f64; 4] {
        [s.neg, s.neu, s.pos, s.compound]
    }

    #[test]
    fn sentiment_vader_equals_the_package_on_the_fixture() {
        let fx = fixture();
        assert_eq!(fx.version, VERSION);
        assert!(fx.sentences.len() >= 50, "{}", fx.sentences.len());
        let vader = Vader::shared();
        let (mut max_raw, mut max_rounded) = (0.0f64, 0.0f64);
        for row in &fx.sentences {
            let (want_raw, want) = (row.raw.get(), row.scores.get());
            let raw = vader.raw_scores(&row.text);
            let rounded = vader.polarity_scores(&row.text);
            for (a, b) in fields(&raw).iter().zip(fields(&want_raw)) {
                max_raw = max_raw.max((a - b).abs());
            }
            for (a, b) in fields(&rounded).iter().zip(fields(&want)) {
                max_rounded = max_rounded.max((a - b).abs());
            }
            // Bit for bit, before and after the rounding.
            assert_eq!(raw, want_raw, "{:?}", row.text);
            assert_eq!(rounded, want, "{:?}", row.text);
        }
        eprintln!(
            "vader parity: {} sentences, max |raw diff| {max_raw:e}, max |rounded diff| {max_rounded:e}",
            fx.sentences.len()
        );
    }

    #[test]
    fn sentiment_vader_rounds_as_python() {
        assert_eq!(py_round(0.0625, 3), 0.062);
        assert_eq!(py_round(0.35, 1), 0.3);
        assert_eq!(py_round(0.0005, 3), 0.001);
        assert_eq!(py_round(-0.00001, 4), 0.0);
    }

    #[test]
    fn sentiment_vader_reads_its_lexicons() {
        let v = Vader::shared();
        assert_eq!(v.valence_of("good"), Some(1.9));
        assert_eq!(v.valence_of(":)"), Some(2.0));
        assert!(v.lexicon.len() > 7000);
        assert!(v.emojis.len() > 1000);
        assert_eq!(
            v.emojis.get(&'😁').map(String::as_str),
            Some("beaming face with smiling eyes")
        );
    }
}
