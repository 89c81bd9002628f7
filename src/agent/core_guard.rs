/*!
The core-memory guard: writes that only repeat what a block holds, or that put the user's words
about themselves in the agent's own block, are refused.

Core memory is in every prompt, so a sentence written twice costs its tokens on every step and
leaves that much less room for what a search finds. At a 1,024-token window Qwen2.5-1.5B appended
the user's "I'm learning to play the violin." to its persona block three times during a replay,
then copied the whole block into itself (six facts, session 21: a 734-character persona, about
40 tokens left for a search result, 0 of 6 facts recalled). So a `core_memory_append` or
`core_memory_replace` is refused, with a result saying why, when
- a sentence it writes (at least [`MIN_WORDS`] words) is already in the block and is not part of
  the text it replaces ([`already_held`]); or
- it writes to the [`PERSONA_BLOCK`] a sentence in which the user, in a message still in the
  queue, spoke of themselves ([`users_words`]): the persona is who the agent is, and the user's
  facts belong in the human block.

Words are compared as [`super::echo`] compares them: lowercase runs of letters and digits, so
case, punctuation and spacing do not hide a copy.
*/

use super::echo::words;

/// Sentences shorter than this (in words) are never copies: "Sam.", "Likes jazz."
pub const MIN_WORDS: usize = 3;

/// The block that holds the agent's persona.
pub const PERSONA_BLOCK: &str = "persona";

/// Words that make a sentence the speaker's own ("I live in Lisbon", "my cat").
const FIRST_PERSON: [&str; 5] = ["i", "my", "me", "mine", "myself"];

/// `text`'s sentences ([`super::echo::sentences`]) with at least [`MIN_WORDS`] words.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    super::echo::sentences(text).filter(|s| words(s).len() >= MIN_WORDS)
}

/// `text`'s words joined by single spaces and padded with one, so that containment is of
/// whole words.
fn padded(text: &str) -> String {
    format!(" {} ", words(text).join(" "))
}

/// A sentence of `added` that `block` already holds and that is not in `removed` (the text a
/// replace takes out), if any.
pub fn already_held<'a>(block: &str, added: &'a str, removed: &str) -> Option<&'a str> {
    let (held, out) = (padded(block), padded(removed));
    sentences(added).find(|s| {
        let p = padded(s);
        held.contains(&p) && !out.contains(&p)
    })
}

/// Whether `block` already holds `text`: all of it (any length, as whole words), or one of its
/// sentences ([`already_held`]). Consolidation skips such a fact.
pub fn holds(block: &str, text: &str) -> bool {
    padded(block).contains(&padded(text)) || already_held(block, text, "").is_some()
}

/// A sentence of `added` in which the user speaks of themselves, copied from one of `said` (the
/// user's messages): a first-person run of a message's words, or one that holds a whole
/// first-person sentence of a message. If any.
pub fn users_words<'a>(added: &'a str, said: &[String]) -> Option<&'a str> {
    let first_person = |s: &str| words(s).iter().any(|w| FIRST_PERSON.contains(&w.as_str()));
    let messages: Vec<String> = said.iter().map(|m| padded(m)).collect();
    let theirs: Vec<String> = said.iter().flat_map(|m| sentences(m)).filter(|s| first_person(s)).map(padded).collect();
    sentences(added).find(|s| {
        let p = padded(s);
        (first_person(s) && messages.iter().any(|m| m.contains(&p))) || theirs.iter().any(|t| p.contains(t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERSONA: &str = "I am Sam, a private assistant that runs entirely on this computer. I am curious, warm \
                           and concise.\nI'm learning to play the violin.";

    #[test]
    fn a_sentence_the_block_holds_is_refused_unless_the_write_replaces_it() {
        assert_eq!(
            already_held(PERSONA, "I'm learning to play the violin.", ""),
            Some("I'm learning to play the violin")
        );
        assert_eq!(
            already_held(PERSONA, "i'm  LEARNING to play the violin", ""),
            Some("i'm  LEARNING to play the violin")
        );
        // The whole block copied into itself, around a word it replaces.
        let copy = format!("Sam\nThanks, talk to you later!\n{PERSONA}");
        assert!(already_held(PERSONA, &copy, "Sam").is_some());
        // New facts, short lines and a sentence the write takes out are not copies.
        assert_eq!(already_held(PERSONA, "Likes jazz. Has a cat named Biscuit.", ""), None);
        assert_eq!(already_held(PERSONA, "Sam.", ""), None);
        let edit = "I'm learning to play the violin and the cello.";
        assert_eq!(already_held(PERSONA, edit, "I'm learning to play the violin."), None);
        assert_eq!(already_held(PERSONA, "I am curious and kind.", "I am curious, warm and concise."), None);
        // Whole words only: "play the violin" is not held by "display the violinist".
        assert_eq!(already_held("I display the violinist.", "I play the violin", ""), None);
    }

    #[test]
    fn the_users_words_about_themselves_are_found_in_a_write() {
        let said =
            vec!["Oh, and I'm learning to play the violin!".to_string(), "Your name is Sam from now on.".to_string()];
        assert_eq!(users_words("I'm learning to play the violin.", &said), Some("I'm learning to play the violin"));
        let quoted = "Sam. Priya said: Oh, and I'm learning to play the violin";
        assert_eq!(users_words(quoted, &said), Some("Priya said: Oh, and I'm learning to play the violin"));
        assert_eq!(users_words("Priya is learning to play the violin.", &said), None);
        // What the user says of the agent is not theirs to keep in the human block.
        assert_eq!(users_words("Your name is Sam from now on.", &said), None);
        assert_eq!(users_words("anything", &[]), None);
    }

    #[test]
    fn a_block_holds_a_fact_it_has_whole_or_a_sentence_of() {
        let block = "Name: Priya. Likes jazz.\nLives in Lisbon, near the river.";
        assert!(holds(block, "likes JAZZ"), "a short fact held whole, case aside");
        assert!(holds(block, "Works at a lab. Lives in Lisbon, near the river."), "one sentence held");
        assert!(!holds(block, "Likes jazz and blues."));
        assert!(!holds(block, "Has a cat named Biscuit."));
        assert!(!holds(block, "jaz"), "whole words only");
    }
}
