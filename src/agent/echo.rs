/*!
The echo guard: a reply that only repeats the user's own words is not sent.

Small models answer a question by sending it back: Qwen2.5-1.5B replied "What is my cat's name?
Answer in a short phrase." to that question after a search had found the cat's name (six facts,
session 16), and during a replay it said the user's statements as its own ("I'm learning to play
the violin."), which recall storage then keeps as the agent's words. So a `send_message` whose
words, at least [`MIN_WORDS`] of them, run inside the user's message of this turn in the same
order, and make up a whole sentence of it or at least half of its words, is refused once per
turn with [`super::prompts::ECHOED`], and the next step may only answer.
A second echo is sent (the guard never makes a turn end without a message), and so is one on the
turn's last allowed step.

A shorter run is an answer, not an echo: the option picked from a question that offers some
("Select the correct answer: (a) a rainbow sidewalk (b) Not mentioned in the conversation.", or
"the red one or the blue one?"). Without that rule the guard refused 13 replies in LoCoMo's
first 60 questions (session 17), most of them options picked from such questions.
*/

/// Replies shorter than this (in words) are never echoes: "Hello!", "Lisbon.", "Yes, Biscuit."
pub const MIN_WORDS: usize = 3;

/// Lowercase runs of letters and digits ("cat's" gives "cat", "s"): the recall ranker's words.
pub(super) use crate::memory::rank::words;

/// `text`'s sentences: split at `.`, `!`, `?` and line ends, trimmed (the one splitting rule
/// of the echo and core-memory guards).
pub(super) fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split(['.', '!', '?', '\n']).map(str::trim)
}

/// Whether `reply` repeats `user` (case and punctuation aside): a run of at least [`MIN_WORDS`]
/// of its words that is one of its sentences or at least half of all its words.
pub fn echoes(reply: &str, user: &str) -> bool {
    let (r, u) = (words(reply), words(user));
    let run = r.len() >= MIN_WORDS && r.len() <= u.len() && u.windows(r.len()).any(|w| w == r.as_slice());
    run && (2 * r.len() >= u.len() || sentences(user).any(|s| words(s) == r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_the_users_words_is_an_echo_and_an_answer_is_not() {
        let q = "What is my cat's name? Answer in a short phrase.";
        assert!(echoes("What is my cat's name? Answer in a short phrase.", q));
        assert!(echoes("what is my cat's name", q));
        assert!(echoes("I'm learning to play the violin.", "Oh, and I'm learning to play the violin!"));
        assert!(!echoes("Your cat's name is Biscuit.", q));
        assert!(!echoes("Biscuit.", q));
        // Short replies are never echoes, nor words out of order, nor a reply longer than the message.
        assert!(!echoes("Hi there!", "Hi there!"));
        assert!(!echoes("name my cat is what", q));
        assert!(!echoes("I live in Lisbon, near the river.", "I live in Lisbon."));
        assert!(!echoes("anything at all", ""));
    }

    #[test]
    fn an_option_picked_from_the_question_is_an_answer_but_a_whole_sentence_is_an_echo() {
        let q = "What did she find on her walk? Select the correct answer: (a) Not mentioned in the \
                 conversation (b) a rainbow sidewalk.";
        assert!(!echoes("a rainbow sidewalk.", q));
        assert!(!echoes("Not mentioned in the conversation.", q));
        assert!(!echoes("The blue one.", "Did I buy the red one or the blue one in the end?"));
        // A whole sentence is an echo however long the message; so is most of a short one.
        assert!(echoes("What did she find on her walk?", q));
        assert!(echoes("I moved to Porto", "Hi! I moved to Porto. It rains a lot here, and the food is great."));
        assert!(echoes("the red one or the blue one", "Did I buy the red one or the blue one?"));
    }
}
