//! Which symbols a headline is about.
//!
//! In this order, each symbol once: the item's own `symbols` (as the
//! provider tagged them), then, by position in the headline, cashtags
//! (`$ACME`, `$brk.b`: `$` then a letter, then letters, digits, `.` or `-`,
//! up to 12 characters, upper-cased), bare tickers of the configured universe
//! (whole tokens, case-sensitive, two characters or more: `ACME`, not `acme`
//! or the `A` of "A deal") and names of the configured map (whole words, any
//! case: "Apple" and "APPLE'S" -> AAPL, "Bank of America" -> BAC).
//!
//! With a universe configured, only its symbols (and the name map's) are
//! kept, whoever found them; without one, every cashtag and provider tag is.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// How a symbol was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagKind {
    /// In the item's own `symbols`.
    Item,
    /// A `$TICKER` in the headline.
    Cashtag,
    /// A bare ticker of the universe in the headline.
    Ticker,
    /// A name of the name map in the headline.
    Name,
}

crate::closed_set! {
    TagKind { Item => "item", Cashtag => "cashtag", Ticker => "ticker", Name => "name" }
}

/// The tagging rules.
#[derive(Debug, Clone, Default)]
pub struct Tagger {
    universe: BTreeSet<String>,
    /// Each name as lowercase words, with its symbol; longer names first.
    names: Vec<(Vec<String>, String)>,
    cashtags: bool,
}

const MAX_CASHTAG: usize = 12;

fn words_lower(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, text[s..i].to_lowercase()));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text[s..].to_lowercase()));
    }
    out
}

impl Tagger {
    /// `universe`: tickers matched bare and the only symbols kept (empty: any
    /// symbol kept, no bare tickers); `names`: name -> symbol; `cashtags`:
    /// whether `$TICKER` counts.
    pub fn new(universe: &[String], names: &BTreeMap<String, String>, cashtags: bool) -> Tagger {
        let mut universe: BTreeSet<String> = universe.iter().cloned().collect();
        let restrict = !universe.is_empty();
        let mut list: Vec<(Vec<String>, String)> = names
            .iter()
            .map(|(name, sym)| {
                if restrict {
                    universe.insert(sym.clone());
                }
                let words: Vec<String> = words_lower(name).into_iter().map(|(_, w)| w).collect();
                (words, sym.clone())
            })
            .filter(|(words, _)| !words.is_empty())
            .collect();
        list.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Tagger {
            universe,
            names: list,
            cashtags,
        }
    }

    fn keep(&self, symbol: &str) -> bool {
        self.universe.is_empty() || self.universe.contains(symbol)
    }

    /// The symbols of one item: its own tags, then those of the headline.
    pub fn tag(&self, item_symbols: &[String], headline: &str) -> Vec<(String, TagKind)> {
        let mut out: Vec<(String, TagKind)> = Vec::new();
        let push = |sym: String, kind: TagKind, out: &mut Vec<(String, TagKind)>| {
            if !sym.is_empty() && self.keep(&sym) && !out.iter().any(|(s, _)| *s == sym) {
                out.push((sym, kind));
            }
        };
        for s in item_symbols {
            push(s.trim().to_string(), TagKind::Item, &mut out);
        }
        let mut found: Vec<(usize, String, TagKind)> = Vec::new();
        if self.cashtags {
            found.extend(
                cashtags(headline)
                    .into_iter()
                    .map(|(at, s)| (at, s, TagKind::Cashtag)),
            );
        }
        if !self.universe.is_empty() {
            for (at, token) in tokens(headline) {
                if token.len() >= 2 && self.universe.contains(token) && !is_cashtag_at(headline, at)
                {
                    found.push((at, token.to_string(), TagKind::Ticker));
                }
            }
        }
        found.extend(self.names_in(headline));
        found.sort_by_key(|(at, _, _)| *at);
        for (_, sym, kind) in found {
            push(sym, kind, &mut out);
        }
        out
    }

    fn names_in(&self, headline: &str) -> Vec<(usize, String, TagKind)> {
        let words = words_lower(headline);
        let mut out = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let hit = self.names.iter().find(|(name, _)| {
                words.len() - i >= name.len()
                    && name.iter().zip(&words[i..]).all(|(n, (_, w))| n == w)
            });
            match hit {
                Some((name, sym)) => {
                    out.push((words[i].0, sym.clone(), TagKind::Name));
                    i += name.len();
                }
                None => i += 1,
            }
        }
        out
    }
}

fn is_cashtag_at(text: &str, at: usize) -> bool {
    at > 0 && text.as_bytes()[at - 1] == b'$'
}

/// Tokens for bare tickers: runs of letters, digits, `.` and `-`, without a
/// trailing `.` or `-`.
fn tokens(text: &str) -> Vec<(usize, &str)> {
    let is_tok = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let mut out = Vec::new();
    let mut start = None;
    fn push<'t>(text: &'t str, s: usize, e: usize, out: &mut Vec<(usize, &'t str)>) {
        let t = text[s..e].trim_end_matches(['.', '-']);
        if !t.is_empty() {
            out.push((s, t));
        }
    }
    for (i, c) in text.char_indices() {
        match (is_tok(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                push(text, s, i, &mut out);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        push(text, s, text.len(), &mut out);
    }
    out
}

/// `$` + a letter + letters, digits, `.` or `-`, upper-cased; the position is
/// the `$`'s. A `$` inside a word (`US$5`) does not start one.
fn cashtags(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices('$') {
        if at > 0
            && text[..at]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric)
        {
            continue;
        }
        let rest = &text[at + 1..];
        if !rest.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        let tag = rest[..end].trim_end_matches(['.', '-']);
        if tag.len() <= MAX_CASHTAG {
            out.push((at, tag.to_ascii_uppercase()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn syms(t: &[(String, TagKind)]) -> Vec<(&str, &str)> {
        t.iter().map(|(s, k)| (s.as_str(), k.as_str())).collect()
    }

    #[test]
    fn sentiment_tags_cashtags_tickers_and_names_in_order() {
        let tagger = Tagger::new(
            &["ACME".into(), "GLOBEX".into(), "A".into()],
            &names(&[
                ("Apple", "AAPL"),
                ("Bank of America", "BAC"),
                ("Bank", "BNK"),
            ]),
            true,
        );
        let got = tagger.tag(
            &["GLOBEX".into()],
            "A deal: Apple's $acme stake and Bank of America; ACME, GLOBEX rise. US$5 $5 $TOOLONGTICKERX",
        );
        assert_eq!(
            syms(&got),
            [
                ("GLOBEX", "item"),
                ("AAPL", "name"),
                ("ACME", "cashtag"),
                ("BAC", "name"),
            ]
        );
        // Case: names any case, tickers as written only.
        let got = tagger.tag(&[], "APPLE and acme");
        assert_eq!(syms(&got), [("AAPL", "name")]);
        // A universe keeps only its symbols (and the name map's).
        let got = tagger.tag(&["XYZ".into()], "$XYZ and $ACME");
        assert_eq!(syms(&got), [("ACME", "cashtag")]);
    }

    #[test]
    fn sentiment_tags_without_a_universe_keep_every_cashtag() {
        let tagger = Tagger::new(&[], &BTreeMap::new(), true);
        let got = tagger.tag(&["X".into()], "$BRK.B and $btc-usd. ACME");
        assert_eq!(
            syms(&got),
            [("X", "item"), ("BRK.B", "cashtag"), ("BTC-USD", "cashtag")]
        );
        let off = Tagger::new(&[], &BTreeMap::new(), false);
        assert!(off.tag(&[], "$ACME").is_empty());
    }
}
