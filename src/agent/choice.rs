/*!
The choice guard: an option picked from the user's question that no result found this turn
supports is refused once.

A user who offers answers to choose from ("Select the correct answer: (a) Read a book and paint.
(b) Not mentioned in the conversation.") asks the agent to check them against memory. Qwen2.5-1.5B
picked the concrete option in 46 of 47 such LoCoMo questions (session 19), including when the
search it had just run showed nothing of the kind: the option is in the question, and copying it
is easier than reading the results. So when a `send_message` picks one of the lettered options
([`options`], [`picked`]) and that option asserts something (it has words to check and no
negation: "not mentioned", "none", "unknown" are never refused), the option's words are looked
for in this turn's search results, Porter-stemmed as recall search ranks them. If at most half of
them are there ([`unsupported`]), the reply is refused with [`super::prompts::unsupported_choice`].

Like the other guards it refuses one reply a turn, never on the turn's last allowed step, and
never makes a turn end without a message: a second send of the same reply goes through. A turn
that ran no search is not checked (the answer may be in main context).
*/

use crate::memory::rank;

/// Words that make an option a denial ("Not mentioned in the conversation", "None of these").
const NEGATIONS: &[&str] = &["not", "no", "none", "never", "nothing", "unknown", "neither", "nor"];

/// Words an option may consist of without asserting anything checkable.
const BARE: &[&str] = &["yes", "no", "true", "false", "maybe"];

/// The lettered options of `question`: the text after each "(a)", "(b)", ... up to the next
/// label, trimmed of spaces and a final period. Fewer than two labels in order: none.
pub fn options(question: &str) -> Vec<&str> {
    let mut starts = vec![];
    let mut next = b'a';
    let bytes = question.as_bytes();
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if bytes[i] == b'(' && bytes[i + 1] == next && bytes[i + 2] == b')' {
            starts.push(i);
            next += 1;
            i += 3;
        } else {
            i += 1;
        }
    }
    if starts.len() < 2 {
        return vec![];
    }
    let mut out = vec![];
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(question.len());
        let text = question[s + 3..end].trim().trim_end_matches('.').trim();
        if !text.is_empty() {
            out.push(text);
        }
    }
    out
}

/// The stemmed terms of an option that a result could hold (bare yes/no words left out).
fn checkable(option: &str) -> Vec<String> {
    let kept: Vec<String> = rank::words(option).into_iter().filter(|w| !BARE.contains(&w.as_str())).collect();
    let mut t: Vec<String> = rank::terms(&kept.join(" "));
    t.sort();
    t.dedup();
    t
}

/// Whether `option` denies rather than asserts.
fn denies(option: &str) -> bool {
    rank::words(option).iter().any(|w| NEGATIONS.contains(&w.as_str()))
}

/// The option `reply` picks: the one most of whose terms it holds (at least half, and more than
/// any other option's share). None when the reply holds no option, or two equally.
pub fn picked<'q>(reply: &str, options: &[&'q str]) -> Option<&'q str> {
    let mut said = rank::terms(reply);
    said.extend(rank::words(reply));
    let share = |o: &str| {
        let t = checkable(o);
        let words = if t.is_empty() { rank::words(o) } else { t };
        let held = words.iter().filter(|w| said.contains(w)).count();
        if words.is_empty() {
            0.0
        } else {
            held as f64 / words.len() as f64
        }
    };
    let mut best: Option<(&str, f64)> = None;
    let mut tie = false;
    for &o in options {
        let s = share(o);
        match best {
            Some((_, b)) if s == b => tie = true,
            Some((_, b)) if s < b => {}
            _ => (best, tie) = (Some((o, s)), false),
        }
    }
    best.filter(|&(_, s)| s >= 0.5 && !tie).map(|(o, _)| o)
}

/// An option picked without support ([`unsupported`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported<'q> {
    /// The option the reply picked.
    pub option: &'q str,
    /// Its words that no result holds, as the question writes them, in order.
    pub missing: Vec<String>,
    /// The question's one option that denies (when it offers exactly one).
    pub denial: Option<&'q str>,
}

/// The option `reply` picks from `question`, when it asserts something that at most half of
/// whose terms occur in `results` (this turn's search results). None when the question offers
/// no options, the reply picks none, the option denies, or `results` is empty.
pub fn unsupported<'q>(reply: &str, question: &'q str, results: &[&str]) -> Option<Unsupported<'q>> {
    if results.is_empty() {
        return None;
    }
    let offered = options(question);
    let option = picked(reply, &offered)?;
    let terms = checkable(option);
    if denies(option) || terms.is_empty() {
        return None;
    }
    let found: std::collections::HashSet<String> = results.iter().flat_map(|r| rank::terms(r)).collect();
    let held = terms.iter().filter(|t| found.contains(*t)).count();
    if 2 * held > terms.len() {
        return None;
    }
    let mut missing: Vec<String> = vec![];
    for w in rank::words(option) {
        let t = rank::terms(&w);
        if t.first().is_some_and(|t| terms.contains(t) && !found.contains(t)) && !missing.contains(&w) {
            missing.push(w);
        }
    }
    let denials: Vec<&str> = offered.iter().copied().filter(|o| denies(o)).collect();
    let denial = if let [d] = denials.as_slice() { Some(*d) } else { None };
    Some(Unsupported { option, missing, denial })
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "What does Sam do on a rainy day? Select the correct answer: (a) Reads a book and paints. \
                     (b) Not mentioned in the conversation.";

    #[test]
    fn lettered_options_are_read_in_order() {
        assert_eq!(options(Q), vec!["Reads a book and paints", "Not mentioned in the conversation"]);
        assert_eq!(options("Red or blue? (a) red (b) blue (c) green"), vec!["red", "blue", "green"]);
        // One label, labels out of order, or none: no options.
        assert!(options("What is (a) here?").is_empty());
        assert!(options("(b) first (a) second").is_empty());
        assert!(options("Where do I live?").is_empty());
    }

    #[test]
    fn the_picked_option_is_the_one_the_reply_holds_most_of() {
        let o = options(Q);
        assert_eq!(picked("Sam reads a book and paints.", &o), Some(o[0]));
        assert_eq!(picked("Not mentioned in the conversation.", &o), Some(o[1]));
        assert_eq!(picked("I don't know.", &o), None);
    }

    #[test]
    fn an_asserted_option_no_result_supports_is_unsupported() {
        let other = ["Only what Sam said.\n1. Sam: On rainy days I bake bread with my kids."];
        let u = unsupported("Reads a book and paints.", Q, &other).unwrap();
        assert_eq!(u.option, "Reads a book and paints");
        assert_eq!(u.missing, vec!["reads", "book", "paints"]);
        assert_eq!(u.denial, Some("Not mentioned in the conversation"));
        // Results that hold it, a denial, no search this turn, no options, a bare "yes".
        let holds = ["1. Sam: When it rains I read a good book, and sometimes I paint."];
        assert_eq!(unsupported("Reads a book and paints.", Q, &holds), None);
        assert_eq!(unsupported("Not mentioned in the conversation.", Q, &other), None);
        assert_eq!(unsupported("Reads a book and paints.", Q, &[]), None);
        assert_eq!(unsupported("Reads a book and paints.", "What does Sam do?", &other), None);
        let yes = "Did Sam paint? (a) Yes (b) Not mentioned in the conversation.";
        assert_eq!(unsupported("Yes.", yes, &other), None);
    }
}
