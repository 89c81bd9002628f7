/*! Scoring functions of the evaluations, each as its source defines it.

- [`locomo_f1`] / [`locomo_score`]: LoCoMo's token F1 (its answer normalisation, Porter stems,
  the comma-split multi-answer F1 for multi-hop questions, the first `;` part of open-domain
  answers, and "not mentioned" / "no information available" for adversarial questions).
- [`rouge_l_recall`]: ROUGE-L recall (longest common subsequence of words over the gold's
  words), as the MemGPT paper reports for deep memory retrieval.
- [`contains_answer`]: NaturalQuestions-Open accuracy as "Lost in the Middle" scores it (a
  normalised gold answer occurs in the normalised reply).
- [`exact_value`]: nested key-value retrieval (the final UUID occurs in the reply).

BFCL's AST matching lives with its task ([`super::function_calling`]).
*/

use crate::memory::rank::stem;
use std::collections::HashMap;

/// LoCoMo's `normalize_answer`: drop commas, lowercase, drop ASCII punctuation, drop the words
/// a/an/the/and, collapse whitespace.
pub fn locomo_normalize(s: &str) -> String {
    let s = s.replace(',', "").to_lowercase();
    let s: String = s.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    s.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the" | "and")).collect::<Vec<_>>().join(" ")
}

fn stems(s: &str) -> Vec<String> {
    locomo_normalize(s).split_whitespace().map(stem).collect()
}

/// Token F1 of one prediction against one gold answer (LoCoMo's `f1_score`).
pub fn locomo_f1(prediction: &str, gold: &str) -> f64 {
    let p = stems(prediction);
    let g = stems(gold);
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for w in &g {
        *counts.entry(w).or_default() += 1;
    }
    let mut same = 0;
    for w in &p {
        if let Some(c) = counts.get_mut(w.as_str()) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / p.len() as f64;
    let recall = same as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Multi-answer F1 (LoCoMo's `f1`, used for multi-hop questions): both sides split at commas;
/// the mean over gold parts of the best F1 of any predicted part.
pub fn locomo_f1_multi(prediction: &str, gold: &str) -> f64 {
    let preds: Vec<&str> = prediction.split(',').map(str::trim).collect();
    let golds: Vec<&str> = gold.split(',').map(str::trim).collect();
    golds.iter().map(|g| preds.iter().map(|p| locomo_f1(p, g)).fold(0.0, f64::max)).sum::<f64>() / golds.len() as f64
}

/// LoCoMo's score of one QA item by its category (1 multi-hop, 2 temporal, 3 open-domain,
/// 4 single-hop, 5 adversarial).
pub fn locomo_score(category: u64, prediction: &str, gold: &str) -> f64 {
    match category {
        1 => locomo_f1_multi(prediction, gold),
        3 => locomo_f1(prediction, gold.split(';').next().unwrap_or("").trim()),
        5 => {
            let p = prediction.to_lowercase();
            f64::from(u8::from(p.contains("no information available") || p.contains("not mentioned")))
        }
        _ => locomo_f1(prediction, gold),
    }
}

/// ROUGE-L recall: LCS of the normalised, stemmed words over the gold's word count.
pub fn rouge_l_recall(prediction: &str, gold: &str) -> f64 {
    let p = stems(prediction);
    let g = stems(gold);
    if g.is_empty() || p.is_empty() {
        return 0.0;
    }
    let mut prev = vec![0usize; p.len() + 1];
    for gw in &g {
        let mut cur = vec![0usize; p.len() + 1];
        for (j, pw) in p.iter().enumerate() {
            cur[j + 1] = if gw == pw { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        prev = cur;
    }
    prev[p.len()] as f64 / g.len() as f64
}

/// SQuAD-style normalisation ("Lost in the Middle"'s `normalize_answer`): lowercase, drop
/// punctuation and the articles a/an/the, collapse whitespace.
pub fn qa_normalize(s: &str) -> String {
    let s: String = s.to_lowercase().chars().filter(|c| !c.is_ascii_punctuation()).collect();
    s.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// Whether any gold answer, normalised, occurs in the normalised reply (on word boundaries).
pub fn contains_answer(reply: &str, golds: &[String]) -> bool {
    let r = format!(" {} ", qa_normalize(reply));
    golds.iter().map(|g| qa_normalize(g)).any(|g| !g.is_empty() && r.contains(&format!(" {g} ")))
}

/// Whether the exact value (e.g. a UUID) occurs in the reply.
pub fn exact_value(reply: &str, value: &str) -> bool {
    !value.is_empty() && reply.contains(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locomo_normalisation_and_f1_by_hand() {
        assert_eq!(locomo_normalize("The cat, and A dog!"), "cat dog");
        // prediction: [she, went, to, support, group, on, 7, may, 2023] ("the" dropped); gold
        // [7, may, 2023]: 3 in common, precision 3/9, recall 1, F1 = 2*(1/3)/(4/3) = 1/2.
        let f = locomo_f1("She went to the support group on 7 May 2023", "7 May 2023");
        assert!((f - 0.5).abs() < 1e-9, "{f}");
        assert_eq!(locomo_f1("Lisbon", "Porto"), 0.0);
        // Stems meet: "painting" / "paintings".
        assert_eq!(locomo_f1("paintings", "painting"), 1.0);
    }

    #[test]
    fn locomo_categories_score_as_the_dataset_does() {
        // Multi-hop: gold parts "pottery", "camping"; prediction parts "camping", "hiking".
        // pottery -> 0, camping -> 1: mean 0.5.
        assert!((locomo_score(1, "camping, hiking", "pottery, camping") - 0.5).abs() < 1e-9);
        // Open-domain: only the part before ';' counts.
        assert_eq!(locomo_score(3, "psychology", "psychology; counseling"), 1.0);
        assert_eq!(locomo_score(5, "That is not mentioned in the conversation.", "anything"), 1.0);
        assert_eq!(locomo_score(5, "She realized self-care matters.", "anything"), 0.0);
    }

    #[test]
    fn rouge_l_recall_by_hand() {
        // gold words: [she, like, green, tea]; prediction: [she, realli, like, tea]:
        // LCS = she like tea = 3 of 4.
        assert!((rouge_l_recall("She really likes tea", "She likes green tea") - 0.75).abs() < 1e-9);
        assert_eq!(rouge_l_recall("", "x"), 0.0);
    }

    #[test]
    fn nq_containment_uses_word_boundaries() {
        let g = vec!["Wilhelm Conrad Röntgen".to_string()];
        assert!(contains_answer("It was wilhelm conrad röntgen, in 1901.", &g));
        assert!(!contains_answer("Röntgen", &g));
        assert!(contains_answer("the 1901 prize", &["1901".to_string()]));
        assert!(!contains_answer("in 19012", &["1901".to_string()]));
    }

    #[test]
    fn exact_value_match() {
        let v = "0d7ba717-e034-410e-88ab-c13d37cc6499";
        assert!(exact_value(&format!("The value is {v}."), v));
        assert!(!exact_value("The value is 0d7ba717-e034-410e-88ab-c13d37cc649.", v));
    }
}
