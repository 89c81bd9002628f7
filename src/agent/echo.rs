/*!
The echo guard: a reply that only repeats the user's own words is not sent.

Small models answer a question by sending it back: Qwen2.5-1.5B replied "What is my cat's name?
Answer in a short phrase." to that question after a search had found the cat's name (six facts,
session 16), and during a replay it said the user's statements as its own ("I'm learning to play
the violin."), which recall storage then keeps as the agent's words. So a `send_message` whose
words, at least [`MIN_WORDS`] of them, run inside the user's message of this turn in the same
order is refused once per turn with [`super::prompts::ECHOED`], and the next step may only answer.
A second echo is sent (the guard never makes a turn end without a message), and so is one on the
turn's last allowed step.
*/

/// Replies shorter than this (in words) are never echoes: "Hello!", "Lisbon.", "Yes, Biscuit."
pub const MIN_WORDS: usize = 3;

/// Lowercase runs of letters and digits ("cat's" gives "cat", "s").
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Whether `reply` is a run of `user`'s words (case and punctuation aside) of at least
/// [`MIN_WORDS`] words.
pub fn echoes(reply: &str, user: &str) -> bool {
    let (r, u) = (words(reply), words(user));
    r.len() >= MIN_WORDS && r.len() <= u.len() && u.windows(r.len()).any(|w| w == r.as_slice())
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
}
