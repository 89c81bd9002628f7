/*! Relevance ranking for recall search: BM25 over stemmed words.

A query like "What is the cat's name?" must find "my cat Biscuit": both are cut into lowercase
alphanumeric words, common English function words are dropped, and the rest are reduced to their
Porter stems ("cats" and "cat" meet). Documents are scored with Okapi BM25 (k1 = 1.2, b = 0.75),
the ranking full-text engines use by default; ties go to the newer message.

A search scores every stored message, so [`bm25`] streams each document once: no term list is
built, only its length and the counts of the query's terms, and each distinct word is stemmed
once per search (a memo), not once per occurrence.
*/

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Words too common to rank by.
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "before", "but", "by",
    "can", "could", "did", "do", "does", "doing", "for", "from", "had", "has", "have", "he", "her", "here", "him",
    "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "she",
    "so", "some", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "up", "us",
    "was", "we", "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you",
    "your", "s", "t", "d", "ll", "m", "re", "ve",
];

static STOPSET: LazyLock<HashSet<&'static str>> = LazyLock::new(|| STOPWORDS.iter().copied().collect());

/// Whether a lowercase word is too common to rank by.
fn is_stopword(w: &str) -> bool {
    STOPSET.contains(w)
}

/// The alphanumeric words of `text`, as they stand.
fn raw_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty())
}

/// `w` in lowercase, borrowed when it already is.
fn lower(w: &str) -> Cow<'_, str> {
    if w.chars().any(char::is_uppercase) {
        Cow::Owned(w.to_lowercase())
    } else {
        Cow::Borrowed(w)
    }
}

/// The lowercase alphanumeric words of `text`, in order.
pub fn words(text: &str) -> Vec<String> {
    raw_words(text).map(|w| w.to_lowercase()).collect()
}

/// The index terms of `text`: words minus stopwords, Porter-stemmed.
pub fn terms(text: &str) -> Vec<String> {
    words(text).into_iter().filter(|w| !is_stopword(w)).map(|w| stem(&w)).collect()
}

/// The Porter stem of one lowercase word (ASCII words only; others are kept as they are).
pub fn stem(word: &str) -> String {
    if word.is_ascii() && word.len() > 2 {
        porter_stemmer::stem(word)
    } else {
        word.to_string()
    }
}

const K1: f64 = 1.2;
const B: f64 = 0.75;

/// FNV-1a: the memo's keys are short words, where SipHash's setup dominates.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf29ce484222325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100000001b3);
        }
    }
}

type Memo<'a> = HashMap<Cow<'a, str>, usize, std::hash::BuildHasherDefault<Fnv>>;

/// One document as BM25 needs it: its length in terms and how often each query term occurs.
struct DocCounts {
    len: usize,
    tf: Vec<u32>,
}

/// Count `doc`'s terms against the sorted, deduplicated query terms `q`; `memo` keeps each
/// distinct word's stem for the rest of the search.
fn count_terms<'a>(doc: &'a str, q: &[String], memo: &mut Memo<'a>) -> DocCounts {
    // What a word is, decided once per search: a stopword, a query term's index, or neither.
    const STOP: usize = usize::MAX;
    const OTHER: usize = usize::MAX - 1;
    let mut c = DocCounts { len: 0, tf: vec![0; q.len()] };
    for w in raw_words(doc) {
        if w.bytes().all(|b| b.is_ascii_digit()) {
            // A number: its own stem (Porter rewrites letters only), and not worth a memo entry.
            c.len += 1;
            if let Ok(i) = q.binary_search_by(|t| t.as_str().cmp(w)) {
                c.tf[i] += 1;
            }
            continue;
        }
        let w = lower(w);
        let kind = match memo.get(&w) {
            Some(&k) => k,
            None => {
                let k = if is_stopword(&w) { STOP } else { q.binary_search(&stem(&w)).unwrap_or(OTHER) };
                memo.insert(w, k);
                k
            }
        };
        if kind != STOP {
            c.len += 1;
            if kind != OTHER {
                c.tf[kind] += 1;
            }
        }
    }
    c
}

/// Scores of `docs` for `query` (same order as `docs`; 0 where no query term occurs).
pub fn bm25(query: &str, docs: &[&str]) -> Vec<f64> {
    let mut q = terms(query);
    q.sort();
    q.dedup();
    if q.is_empty() || docs.is_empty() {
        return vec![0.0; docs.len()];
    }
    let mut memo = Memo::default();
    let counts: Vec<DocCounts> = docs.iter().map(|d| count_terms(d, &q, &mut memo)).collect();
    let n = docs.len() as f64;
    let avg = counts.iter().map(|c| c.len).sum::<usize>() as f64 / n;
    let mut df = vec![0.0f64; q.len()];
    for c in &counts {
        for (d, &tf) in df.iter_mut().zip(&c.tf) {
            if tf > 0 {
                *d += 1.0;
            }
        }
    }
    let idf: Vec<f64> = df.iter().map(|&d| ((n - d + 0.5) / (d + 0.5) + 1.0).ln()).collect();
    counts
        .iter()
        .map(|c| {
            let norm = K1 * (1.0 - B + B * c.len as f64 / avg.max(1.0));
            c.tf.iter()
                .zip(&idf)
                .filter(|(&tf, _)| tf > 0)
                .map(|(&tf, idf)| {
                    let tf = tf as f64;
                    idf * tf * (K1 + 1.0) / (tf + norm)
                })
                .sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_and_stopwords_let_questions_meet_statements() {
        assert_eq!(terms("What is the cat's name?"), vec!["cat", "name"]);
        let docs = ["I adopted a dog last week", "My cats are called Biscuit and Tom", "The weather is nice"];
        let s = bm25("What are my cat's names?", &docs);
        assert!(s[1] > 0.0 && s[0] == 0.0 && s[2] == 0.0, "{s:?}");
    }

    #[test]
    fn rarer_terms_weigh_more_and_short_documents_win_ties() {
        let docs = ["pottery class today", "today was fine", "today today", "pottery and painting and a long day out"];
        let s = bm25("pottery today", &docs);
        // "pottery" occurs in two documents, "today" in three: the document with both ranks first.
        assert!(s[0] > s[1] && s[0] > s[3] && s[0] > s[2], "{s:?}");
        assert!(s[3] > s[1], "the rarer term outweighs the common one: {s:?}");
    }

    /// BM25 as defined, term lists built in full: the streamed [`bm25`] must agree with it.
    fn bm25_reference(query: &str, docs: &[&str]) -> Vec<f64> {
        let mut q = terms(query);
        q.sort();
        q.dedup();
        let doc_terms: Vec<Vec<String>> = docs.iter().map(|d| terms(d)).collect();
        let n = docs.len() as f64;
        let avg = doc_terms.iter().map(|t| t.len()).sum::<usize>() as f64 / n;
        doc_terms
            .iter()
            .map(|t| {
                q.iter()
                    .map(|term| {
                        let tf = t.iter().filter(|x| *x == term).count() as f64;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let d = doc_terms.iter().filter(|u| u.contains(term)).count() as f64;
                        let idf = ((n - d + 0.5) / (d + 0.5) + 1.0).ln();
                        idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * t.len() as f64 / avg.max(1.0)))
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn streamed_scores_equal_the_definition_on_random_text() {
        let vocab = [
            "Cats",
            "cat",
            "CAT's",
            "running",
            "runs",
            "ran",
            "Happy",
            "happiness",
            "the",
            "of",
            "Melanie",
            "camping",
            "camped",
            "beach",
            "Beaches",
            "painting",
            "paints",
            "ÉCOLE",
            "école",
            "naïve",
            "2023",
            "x",
            "is",
            "ies",
        ];
        let mut state = 0x9E3779B97F4A7C15u64;
        let mut next = move |m: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % m as u64) as usize
        };
        for round in 0..200 {
            let docs: Vec<String> = (0..1 + next(12))
                .map(|_| (0..next(15)).map(|_| vocab[next(vocab.len())]).collect::<Vec<_>>().join(" , "))
                .collect();
            let refs: Vec<&str> = docs.iter().map(|d| d.as_str()).collect();
            let query: String = (0..1 + next(4)).map(|_| vocab[next(vocab.len())]).collect::<Vec<_>>().join(" ");
            let (got, want) = (bm25(&query, &refs), bm25_reference(&query, &refs));
            let close = got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-9);
            assert!(close, "round {round}, query {query:?} over {docs:?}: {got:?} vs {want:?}");
        }
    }

    #[test]
    fn a_query_of_stopwords_scores_nothing() {
        assert_eq!(bm25("what is it", &["it is what it is"]), vec![0.0]);
    }
}
