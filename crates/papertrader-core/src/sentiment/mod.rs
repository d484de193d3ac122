//! News sentiment: headlines of the `news` topic ([`crate::news::NewsItem`])
//! scored and tagged with symbols into `news_sentiment` readings, with no I/O
//! but reading a configured word-list file. The root package's `papertrader
//! sentiment` moves the messages (docs/sentiment.md).
//!
//! - [`vader`]: VADER, a port of vaderSentiment 3.3.2 with its lexicons;
//! - [`lm`]: the Loughran-McDonald word lists, from a file the user supplies;
//! - [`tag`]: cashtags, tickers of a universe, a name-to-symbol map;
//! - [`Stage`]: one news item in, one [`ScoredNews`] per symbol out.

pub mod lm;
pub mod tag;
pub mod vader;

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::{problem, Problem};
use crate::domain::{DeadLetterMsg, Origin, Ts};
use crate::news::NewsItem;
use crate::wire::{ts_format, Rejection, MAX_SYMBOL_LEN};

pub use lm::LmLists;
pub use tag::{TagKind, Tagger};
pub use vader::{Vader, VaderScores};

/// Which scorer (`sentiment.scorer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScorerKind {
    /// VADER's compound score (vaderSentiment 3.3.2).
    #[default]
    Vader,
    /// Loughran-McDonald polarity over `sentiment.lm_word_list`.
    Lm,
}

crate::closed_set! {
    deserialize;
    ScorerKind { Vader => "vader", Lm => "lm" }
}

fn yes() -> bool {
    true
}

fn default_group() -> String {
    "papertrader-sentiment".to_string()
}

fn default_dedup() -> usize {
    10_000
}

/// `[sentiment]`: the `papertrader sentiment` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SentimentConfig {
    /// "vader" or "lm".
    #[serde(default)]
    pub scorer: ScorerKind,
    /// The Loughran-McDonald word-list CSV (scorer = "lm"); not shipped.
    #[serde(default)]
    pub lm_word_list: String,
    /// Tickers matched bare in headlines; when set, the only symbols published
    /// (with the `names` map's).
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Name -> symbol: `"Apple" = "AAPL"`, matched as whole words, any case.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// Whether `$TICKER` in a headline tags it.
    #[serde(default = "yes")]
    pub cashtags: bool,
    /// Publish only scores with `|score| >= min_abs_score` (0: all).
    #[serde(default)]
    pub min_abs_score: f64,
    /// The consumer group reading `topics.news`.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// How many recent news ids are remembered to drop a repeated item (0: none).
    #[serde(default = "default_dedup")]
    pub dedup_window: usize,
}

impl Default for SentimentConfig {
    fn default() -> Self {
        SentimentConfig {
            scorer: ScorerKind::Vader,
            lm_word_list: String::new(),
            symbols: Vec::new(),
            names: BTreeMap::new(),
            cashtags: true,
            min_abs_score: 0.0,
            group_id: default_group(),
            dedup_window: default_dedup(),
        }
    }
}

fn valid_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SYMBOL_LEN
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl SentimentConfig {
    /// The section's values; with `scorer = "lm"` the word list is read and
    /// parsed too.
    ///
    /// # Errors
    /// The key, what is wrong, and the fix.
    pub fn check(&self) -> Result<(), Problem> {
        if !(0.0..=1.0).contains(&self.min_abs_score) {
            return Err(problem(
                "sentiment.min_abs_score",
                format!("{} is outside [0, 1]", self.min_abs_score),
                "use a score bound between 0 (publish all) and 1, such as 0.05",
            ));
        }
        if let Some(bad) = self.symbols.iter().find(|s| !valid_symbol(s)) {
            return Err(problem(
                "sentiment.symbols",
                format!("{bad:?} is not a symbol"),
                "list symbols of 1..=32 bytes without whitespace, such as [\"AAPL\", \"MSFT\"]",
            ));
        }
        for (name, sym) in &self.names {
            if !valid_symbol(sym) || !name.chars().any(char::is_alphanumeric) {
                return Err(problem(
                    format!("sentiment.names.{name}"),
                    format!("{name:?} = {sym:?} is not a name and a symbol"),
                    "map a name with letters to a symbol, such as \"Apple\" = \"AAPL\"",
                ));
            }
        }
        if self.group_id.trim().is_empty() {
            return Err(problem(
                "sentiment.group_id",
                "is empty",
                "name the consumer group, such as \"papertrader-sentiment\"",
            ));
        }
        if self.dedup_window > 10_000_000 {
            return Err(problem(
                "sentiment.dedup_window",
                format!("{} is too large", self.dedup_window),
                "remember at most 10,000,000 ids (0 for none)",
            ));
        }
        match self.scorer {
            // The built-in lexicon cannot fail: it is built when a scorer is
            // first needed, not by every command that checks the config.
            ScorerKind::Vader => Ok(()),
            ScorerKind::Lm => Scorer::from_config(self).map(|_| ()),
        }
    }
}

/// A scorer, ready.
#[derive(Debug, Clone)]
pub enum Scorer {
    Vader(&'static Vader),
    Lm(LmLists),
}

impl Scorer {
    /// The configured scorer; reads `lm_word_list` for `lm`.
    ///
    /// # Errors
    /// `lm` without a word list, or one that cannot be read or parsed.
    pub fn from_config(cfg: &SentimentConfig) -> Result<Scorer, Problem> {
        match cfg.scorer {
            ScorerKind::Vader => Ok(Scorer::Vader(Vader::shared())),
            ScorerKind::Lm => {
                let key = "sentiment.lm_word_list";
                let fix = "name the Loughran-McDonald Master Dictionary CSV you downloaded \
                           (columns Word, Positive, Negative; docs/sentiment.md), or use scorer = \"vader\"";
                if cfg.lm_word_list.trim().is_empty() {
                    return Err(problem(key, "is empty while scorer = \"lm\"", fix));
                }
                let text = std::fs::read(&cfg.lm_word_list).map_err(|e| {
                    problem(key, format!("cannot read {:?}: {e}", cfg.lm_word_list), fix)
                })?;
                // The master dictionary is ASCII; any stray byte is not a word we need.
                let text = String::from_utf8_lossy(&text);
                LmLists::parse(&text)
                    .map(Scorer::Lm)
                    .map_err(|e| problem(key, format!("{:?}: {e}", cfg.lm_word_list), fix))
            }
        }
    }

    /// The scorer's name: `vader` or `lm`.
    pub fn name(&self) -> &'static str {
        match self {
            Scorer::Vader(_) => vader::NAME,
            Scorer::Lm(_) => lm::NAME,
        }
    }

    /// `3.3.2` for VADER; the word list's sha256 prefix for LM.
    pub fn version(&self) -> &str {
        match self {
            Scorer::Vader(_) => vader::VERSION,
            Scorer::Lm(l) => l.version(),
        }
    }

    /// A score in [-1, 1]: VADER's compound (rounded to 4 places, as the
    /// package returns it), or the LM polarity.
    pub fn score(&self, text: &str) -> f64 {
        match self {
            Scorer::Vader(v) => v.polarity_scores(text).compound,
            Scorer::Lm(l) => l.score(text).polarity,
        }
    }
}

/// One `news_sentiment` message: the engine's fields (`symbol, ts, score,
/// source, headline`) and, ignored by the engine, where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredNews {
    pub symbol: String,
    #[serde(with = "ts_format")]
    pub ts: Ts,
    pub score: f64,
    /// `{scorer}-{version}`, e.g. `vader-3.3.2`.
    pub source: String,
    pub headline: String,
    pub scorer: String,
    pub scorer_version: String,
    /// How the symbol was found: `item`, `cashtag`, `ticker` or `name`.
    pub tagged_by: TagKind,
    /// The news item's id and source.
    pub news_id: String,
    pub news_source: String,
}

impl ScoredNews {
    /// The message's JSON (fields in a fixed order: the same reading, the same bytes).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("scored news serializes")
    }
}

/// What the stage did with the items it saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StageCounts {
    pub items: u64,
    pub duplicates: u64,
    /// Items with no symbol after tagging.
    pub untagged: u64,
    /// Items scored below `min_abs_score`.
    pub below_min: u64,
    pub published: u64,
}

/// Scoring and tagging, item by item; deterministic.
pub struct Stage {
    scorer: Scorer,
    tagger: Tagger,
    min_abs_score: f64,
    window: usize,
    seen: HashSet<String>,
    order: VecDeque<String>,
    pub counts: StageCounts,
}

impl Stage {
    /// The stage of a checked `[sentiment]`.
    ///
    /// # Errors
    /// As [`Scorer::from_config`].
    pub fn new(cfg: &SentimentConfig) -> Result<Stage, Problem> {
        Ok(Stage {
            scorer: Scorer::from_config(cfg)?,
            tagger: Tagger::new(&cfg.symbols, &cfg.names, cfg.cashtags),
            min_abs_score: cfg.min_abs_score,
            window: cfg.dedup_window,
            seen: HashSet::new(),
            order: VecDeque::new(),
            counts: StageCounts::default(),
        })
    }

    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }

    /// True the first time an id is seen within the window.
    fn first_time(&mut self, id: &str) -> bool {
        if self.window == 0 {
            return true;
        }
        if self.seen.contains(id) {
            return false;
        }
        self.seen.insert(id.to_string());
        self.order.push_back(id.to_string());
        if self.order.len() > self.window {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// The readings of one item: one per symbol, in tagging order; none for a
    /// repeated id, an untagged headline or a score below the bound.
    pub fn on_item(&mut self, item: &NewsItem) -> Vec<ScoredNews> {
        self.counts.items += 1;
        if !self.first_time(&item.id) {
            self.counts.duplicates += 1;
            return Vec::new();
        }
        let symbols: Vec<(String, TagKind)> = self
            .tagger
            .tag(&item.symbols, &item.headline)
            .into_iter()
            .filter(|(s, _)| valid_symbol(s))
            .collect();
        if symbols.is_empty() {
            self.counts.untagged += 1;
            return Vec::new();
        }
        let score = self.scorer.score(&item.headline).clamp(-1.0, 1.0);
        if score.abs() < self.min_abs_score {
            self.counts.below_min += 1;
            return Vec::new();
        }
        let (name, version) = (self.scorer.name(), self.scorer.version().to_string());
        let out: Vec<ScoredNews> = symbols
            .into_iter()
            .map(|(symbol, tagged_by)| ScoredNews {
                symbol,
                ts: item.ts,
                score,
                source: format!("{name}-{version}"),
                headline: item.headline.clone(),
                scorer: name.to_string(),
                scorer_version: version.clone(),
                tagged_by,
                news_id: item.id.clone(),
                news_source: item.source.clone(),
            })
            .collect();
        self.counts.published += out.len() as u64;
        out
    }
}

/// A `news` message that did not decode, as a dead letter (the format of the
/// engine's: `dl:{origin}`, the payload kept up to 64 KiB).
pub fn dead_letter(
    origin: &Origin,
    key: Option<&[u8]>,
    payload: &[u8],
    r: Rejection,
) -> DeadLetterMsg {
    crate::engine::dead_letter_msg(origin, key, payload, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MarketEvent;
    use crate::wire::{decode, InputKind};

    fn item(id: &str, symbols: &[&str], headline: &str) -> NewsItem {
        NewsItem {
            id: id.into(),
            ts: 1_767_623_470_000_000_000,
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            headline: headline.into(),
            summary: String::new(),
            source: "feed".into(),
            url: String::new(),
        }
    }

    #[test]
    fn sentiment_stage_scores_tags_and_drops_repeats() {
        let cfg = SentimentConfig {
            symbols: vec!["ACME".into()],
            names: [("Globex".to_string(), "GLBX".to_string())].into(),
            ..SentimentConfig::default()
        };
        cfg.check().unwrap();
        let mut stage = Stage::new(&cfg).unwrap();
        let it = item(
            "n1",
            &[],
            "Globex and ACME shares surge after strong results",
        );
        let out = stage.on_item(&it);
        let want = Vader::shared().polarity_scores(&it.headline).compound;
        assert!(want > 0.5);
        let got: Vec<(&str, TagKind)> = out
            .iter()
            .map(|s| (s.symbol.as_str(), s.tagged_by))
            .collect();
        assert_eq!(got, [("GLBX", TagKind::Name), ("ACME", TagKind::Ticker)]);
        assert!(out
            .iter()
            .all(|s| s.score == want && s.source == "vader-3.3.2"));
        // The engine's decoder reads the message.
        let json = out[0].to_json();
        let MarketEvent::Sentiment(s) = decode(InputKind::Sentiment, &json).unwrap() else {
            panic!()
        };
        assert_eq!((s.symbol.as_str(), s.ts, s.score), ("GLBX", it.ts, want));
        assert_eq!(s.source, "vader-3.3.2");
        // Same item again: dropped; untagged: nothing.
        assert!(stage.on_item(&it).is_empty());
        assert!(stage
            .on_item(&item("n2", &[], "Markets are flat"))
            .is_empty());
        assert_eq!(
            stage.counts,
            StageCounts {
                items: 3,
                duplicates: 1,
                untagged: 1,
                below_min: 0,
                published: 2
            }
        );
    }

    #[test]
    fn sentiment_config_refuses_bad_values() {
        let bad = |cfg: SentimentConfig| cfg.check().unwrap_err().0;
        let d = SentimentConfig::default;
        assert_eq!(
            bad(SentimentConfig {
                min_abs_score: 1.5,
                ..d()
            }),
            "sentiment.min_abs_score"
        );
        assert_eq!(
            bad(SentimentConfig {
                scorer: ScorerKind::Lm,
                ..d()
            }),
            "sentiment.lm_word_list"
        );
        let missing = SentimentConfig {
            scorer: ScorerKind::Lm,
            lm_word_list: "/nonexistent/lm.csv".into(),
            ..d()
        };
        let (key, what, fix) = missing.check().unwrap_err();
        assert_eq!(key, "sentiment.lm_word_list");
        assert!(
            what.contains("cannot read") && fix.contains("docs/sentiment.md"),
            "{what} {fix}"
        );
        assert_eq!(
            bad(SentimentConfig {
                symbols: vec!["A B".into()],
                ..d()
            }),
            "sentiment.symbols"
        );
        let names = [("Apple".to_string(), "".to_string())].into();
        assert_eq!(
            bad(SentimentConfig { names, ..d() }),
            "sentiment.names.Apple"
        );
        let e = toml::from_str::<SentimentConfig>("scorer = \"bert\"").unwrap_err();
        assert!(e.to_string().contains("expected `vader` or `lm`"), "{e}");
        let cfg: SentimentConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, SentimentConfig::default());
    }

    #[test]
    fn sentiment_dead_letter_keeps_the_payload_and_reason() {
        let o = Origin {
            topic: "news".into(),
            partition: 0,
            offset: 7,
        };
        let r = NewsItem::decode(b"not json").unwrap_err();
        let dl = dead_letter(&o, Some(b"k"), b"not json", r);
        assert_eq!(dl.dead_letter_id, "dl:news-0-7");
        assert_eq!(dl.reason, "malformed_json");
        assert_eq!(dl.payload.as_deref(), Some("not json"));
    }
}
