/*! Sleep-time memory consolidation: after a user turn, a pass that moves the lasting facts the
user stated into core memory.

MemGPT leaves saving to the agent's own `core_memory_append` calls; a 1.5B model makes them
rarely (none in the six-facts replays of sessions 13-15), so a fact told once lived only in
recall storage, where a later question had to find it by search. Like Letta's sleep-time
agents, [`Agent::consolidate`] runs after the turn, over what the user said since the last pass
(user messages only, so the agent's own words are never taken for the user's). The model only
chooses: the statements among the user's sentences (questions and one-word sentences are left out
before it is asked) are shown numbered, and it answers with the numbers of
those that tell something lasting about the user. A chosen sentence is saved in the user's own
words, attributed ("Priya said: I live in Lisbon, near the river."), so nothing is invented or
cut to a fragment: Qwen2.5-1.5B asked to write the facts itself kept "Near the river." and
"Biscuit." of six facts (session 16), and later answered "I live in [near the river]". Saved
sentences are appended to the `human` block (in place of its "nothing known" placeholder), or
inserted into archival memory when core memory has no room left in the window. They appear in
the prompt at the next refresh of the working context (a flush, or the agent's own edit of core
memory): until then the messages they come from are in view, and the prompt's prefix, with the
KV cache saved for it, stays valid. The request runs
on the model's second session ([`super::StepModel::consolidate`]), so the main session's cached
prompt is not disturbed.

The agent state [`CONSOLIDATED_STATE`] holds the id of the last message a pass has read, so
each user message is read once, across processes too.
*/

use super::{events, prompts, Agent, StepModel};
use crate::memory::{MessageRole, DEFAULT_HUMAN};
use crate::runtime::ChatMessage;
use crate::tools::Builtin;
use crate::Result;
use serde::Serialize;
use serde_json::json;

/// Agent state key: the id of the last message a consolidation pass has read.
pub const CONSOLIDATED_STATE: &str = "consolidated_through";

/// The core-memory block consolidation writes to.
pub const HUMAN_BLOCK: &str = "human";

/// Sentences shown to one pass, at most (the newest), and saved by one pass, at most.
pub const MAX_SENTENCES: usize = 12;
pub const MAX_FACTS: usize = 4;

/// Longest sentence a pass may save, in characters; fewest words.
pub const MAX_FACT_CHARS: usize = 200;
pub const MIN_WORDS: usize = 2;

/// Tokens a pass may generate (a list of numbers).
pub const CONSOLIDATE_TOKENS: usize = 16;

/// What one consolidation pass did and cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Consolidation {
    /// User messages read, and the sentences among them shown to the model.
    pub messages: usize,
    pub sentences: usize,
    /// Facts appended to core memory, and inserted into archival memory (core memory full).
    pub saved_core: Vec<String>,
    pub saved_archival: Vec<String>,
    /// Prompt tokens run through the model, and those whose KV came from the cache.
    pub tokens_evaluated: usize,
    pub tokens_reused: usize,
    pub seconds: f64,
}

impl Agent<'_> {
    /// Run a pass if `consolidate_every` user turns have passed since the last one (and the
    /// model consolidates at all).
    pub(super) fn consolidate_if_due(&mut self, steps: &mut dyn StepModel) -> Result<Option<Consolidation>> {
        let every = self.record.config.consolidate_every;
        if every == 0 {
            return Ok(None);
        }
        let through = self.consolidated_through()?;
        let new = self.store.messages_after(self.record.id, through)?;
        if new.iter().filter(|m| m.role == MessageRole::User && events::user_text(m).is_some()).count() < every {
            return Ok(None);
        }
        self.consolidate(steps)
    }

    fn consolidated_through(&self) -> Result<u64> {
        Ok(self.store.get_state(self.record.id, CONSOLIDATED_STATE)?.and_then(|v| v.as_u64()).unwrap_or(0))
    }

    /// Read what the user said since the last pass and save the statements the model chooses
    /// (see the module doc). `None` when there was nothing to read or the model does not
    /// consolidate.
    pub fn consolidate(&mut self, steps: &mut dyn StepModel) -> Result<Option<Consolidation>> {
        let t0 = std::time::Instant::now();
        let id = self.record.id;
        let new = self.store.messages_after(id, self.consolidated_through()?)?;
        let Some(last) = new.last().map(|m| m.id) else { return Ok(None) };
        let said: Vec<(Option<String>, String)> = new
            .iter()
            .filter_map(|m| {
                let v: serde_json::Value = serde_json::from_str(&m.content).ok()?;
                Some((v["name"].as_str().map(String::from), events::user_text(m)?))
            })
            .collect();
        let mut sentences: Vec<(Option<String>, String)> =
            said.iter().flat_map(|(who, text)| statements(text).into_iter().map(move |s| (who.clone(), s))).collect();
        sentences.drain(..sentences.len().saturating_sub(MAX_SENTENCES));
        let mut out = Consolidation { messages: said.len(), sentences: sentences.len(), ..Default::default() };
        if !sentences.is_empty() {
            let list: Vec<String> = sentences.iter().map(|(_, s)| s.clone()).collect();
            let msgs = [
                ChatMessage::new("system", prompts::CONSOLIDATE_SYSTEM.to_string()),
                ChatMessage::new("user", prompts::consolidate_request(&list)),
            ];
            let prompt = self.model.chat_prompt(&msgs, true)?.1;
            let Some(done) = steps.consolidate(&prompt, CONSOLIDATE_TOKENS)? else { return Ok(None) };
            out.tokens_evaluated = done.tokens_evaluated;
            out.tokens_reused = done.tokens_reused;
            let shown = self.store.blocks(id)? == self.working_blocks;
            for i in chosen(&done.text, sentences.len()).into_iter().take(MAX_FACTS) {
                let (who, sentence) = &sentences[i];
                let fact = format!("{} said: {sentence}", who.as_deref().unwrap_or("The user"));
                self.save_fact(&fact, &mut out)?;
            }
            if shown && !out.saved_core.is_empty() {
                self.defer_display()?;
            }
        }
        self.store.set_state(id, CONSOLIDATED_STATE, &json!(last))?;
        out.seconds = t0.elapsed().as_secs_f64();
        Ok(Some(out))
    }

    /// Keep showing the working context as it was: the facts just saved come from messages
    /// still in the queue, so they appear in core memory at the next refresh (a flush, which
    /// evicts messages, or the agent's own core-memory edit) instead of changing the prompt's
    /// prefix now, which would cost a re-evaluation of everything after it at the next step and
    /// in the next process (whose saved KV state covers the old prefix).
    fn defer_display(&mut self) -> Result<()> {
        self.working_blocks = self.store.blocks(self.record.id)?;
        super::save_working(self.store, self.record.id, &self.working_blocks, &self.working)
    }

    /// Append `fact` to the human block (replacing the block's "nothing known" placeholder;
    /// nothing if the block holds it already), or insert it into archival memory when core
    /// memory has no room in the window.
    fn save_fact(&mut self, fact: &str, out: &mut Consolidation) -> Result<()> {
        let id = self.record.id;
        let block = self.store.block(id, HUMAN_BLOCK)?;
        if super::core_guard::holds(&block.value, fact) {
            return Ok(());
        }
        let placeholder = block.value.trim() == DEFAULT_HUMAN;
        let removed = if placeholder { block.value.as_str() } else { "" };
        let fits = block.value.chars().count() - removed.chars().count() + fact.chars().count() < block.limit;
        if fits && self.core_room(fact, removed)?.is_ok() {
            if placeholder {
                self.store.set_block(id, HUMAN_BLOCK, fact, block.limit)?;
            } else {
                self.store.core_append(id, HUMAN_BLOCK, fact)?;
            }
            out.saved_core.push(fact.to_string());
        } else if self.embedder.is_some() {
            let call = crate::grammar::ToolCall {
                thoughts: String::new(),
                function: Builtin::ArchivalMemoryInsert.name().into(),
                arguments: json!({ "content": fact }),
            };
            if self.handle(&call)?.result.is_ok() {
                out.saved_archival.push(fact.to_string());
            }
        }
        Ok(())
    }
}

/// The sentences of `text` that may state a fact: not questions, at least `MIN_WORDS` (2) words,
/// at most `MAX_FACT_CHARS` (200) characters.
pub fn statements(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let end_of_sentence = matches!(c, '.' | '!' | '?') && chars.get(k + 1).is_none_or(|&(_, n)| n.is_whitespace());
        if end_of_sentence || k + 1 == chars.len() {
            out.push(text[start..i + c.len_utf8()].trim().to_string());
            start = i + c.len_utf8();
        }
    }
    out.retain(|s| {
        !s.ends_with('?') && s.split_whitespace().count() >= MIN_WORDS && s.chars().count() <= MAX_FACT_CHARS
    });
    out
}

/// The sentence indices (0-based) a pass's reply `text` chooses among `n`: the numbers it
/// lists, in order, each once, those outside 1..=n ignored; none if it says NONE first.
pub fn chosen(text: &str, n: usize) -> Vec<usize> {
    if text.trim().to_uppercase().starts_with("NONE") {
        return vec![];
    }
    let mut out = vec![];
    for w in text.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()) {
        match w.parse::<usize>() {
            Ok(k) if (1..=n).contains(&k) && !out.contains(&(k - 1)) => out.push(k - 1),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{chosen, statements};

    #[test]
    fn statements_are_the_sentences_that_are_not_questions_or_greetings() {
        assert_eq!(
            statements("Hi! I'm Priya. Do you like music? I listen to a lot of jazz.\nMy cat is 3.5 years old"),
            ["I'm Priya.", "I listen to a lot of jazz.", "My cat is 3.5 years old"]
        );
        assert!(statements("What is my job?").is_empty());
        assert!(statements(&format!("I am {}.", "very ".repeat(50))).is_empty());
    }

    #[test]
    fn a_reply_chooses_numbers_in_range_once() {
        assert_eq!(chosen("1, 3", 3), [0, 2]);
        assert_eq!(chosen("2, 1, 2, 3, 4,", 2), [1, 0]);
        assert_eq!(chosen("Sentences 2 and 9.", 3), [1]);
        assert!(chosen("NONE", 3).is_empty());
        assert!(chosen("None of them (1, 2).", 3).is_empty());
        assert!(chosen("0", 3).is_empty());
    }
}
