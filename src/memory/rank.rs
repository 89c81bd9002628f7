/*! Relevance ranking for recall search: BM25 over stemmed words.

A query like "What is the cat's name?" must find "my cat Biscuit": both are cut into lowercase
alphanumeric words, common English function words are dropped, and the rest are reduced to their
Porter stems ("cats" and "cat" meet). Documents are scored with Okapi BM25 (k1 = 1.2, b = 0.75),
the ranking full-text engines use by default; ties go to the newer message.
*/

use std::collections::HashMap;

/// Words too common to rank by.
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "before", "but", "by",
    "can", "could", "did", "do", "does", "doing", "for", "from", "had", "has", "have", "he", "her", "here", "him",
    "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "she",
    "so", "some", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "up", "us",
    "was", "we", "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you",
    "your", "s", "t", "d", "ll", "m", "re", "ve",
];

/// The lowercase alphanumeric words of `text`, in order.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect()
}

/// The index terms of `text`: words minus stopwords, Porter-stemmed.
pub fn terms(text: &str) -> Vec<String> {
    words(text).into_iter().filter(|w| !STOPWORDS.contains(&w.as_str())).map(|w| stem(&w)).collect()
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

/// Scores of `docs` for `query` (same order as `docs`; 0 where no query term occurs).
pub fn bm25(query: &str, docs: &[&str]) -> Vec<f64> {
    let mut q = terms(query);
    q.sort();
    q.dedup();
    if q.is_empty() || docs.is_empty() {
        return vec![0.0; docs.len()];
    }
    let doc_terms: Vec<Vec<String>> = docs.iter().map(|d| terms(d)).collect();
    let n = docs.len() as f64;
    let avg = doc_terms.iter().map(|t| t.len()).sum::<usize>() as f64 / n;
    let mut df: HashMap<&str, f64> = HashMap::new();
    for t in &doc_terms {
        let mut seen: Vec<&str> = t.iter().map(|s| s.as_str()).filter(|s| q.iter().any(|x| x == s)).collect();
        seen.sort();
        seen.dedup();
        for s in seen {
            *df.entry(s).or_default() += 1.0;
        }
    }
    doc_terms
        .iter()
        .map(|t| {
            let len = t.len() as f64;
            q.iter()
                .map(|term| {
                    let tf = t.iter().filter(|x| *x == term).count() as f64;
                    if tf == 0.0 {
                        return 0.0;
                    }
                    let d = df.get(term.as_str()).copied().unwrap_or(0.0);
                    let idf = ((n - d + 0.5) / (d + 0.5) + 1.0).ln();
                    idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg.max(1.0)))
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

    #[test]
    fn a_query_of_stopwords_scores_nothing() {
        assert_eq!(bm25("what is it", &["it is what it is"]), vec![0.0]);
    }
}
