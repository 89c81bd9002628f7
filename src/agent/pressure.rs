/*! The queue manager: memory-pressure alert and flush with a recursive summary.

Before each step: if the prompt plus room for one step ([`step_reserve`]) passes the flush
threshold (default 100% of the window) the oldest messages are evicted, never splitting a call
from its result and always keeping the last [`KEEP_LAST`] messages, until about
`evict_fraction` (default 50%) of the window is freed; the model writes a new summary of the
old summary plus the evicted messages, and both changes commit in one transaction (the evicted
messages stay in recall storage, marked out of context). Otherwise, when the prompt passes the
warning threshold (default 70%) at the first step of a turn, one system alert is queued, once
per crossing: the flag resets when the prompt falls back under the threshold. A crossing in
the middle of a turn waits for the next turn: an alert read between a search's results and the
answer made Qwen2.5-1.5B save memory instead of answering (3 of 6 questions of the six-facts
script at 1,024 tokens).
*/

use super::{prompts, step_reserve, Agent, StepModel, TurnResult};
use crate::memory::{Message, MessageRole, Summary};
use crate::runtime::ChatMessage;
use crate::{Error, Result};
use serde_json::json;

/// Messages a flush never evicts.
pub const KEEP_LAST: usize = 3;

/// Longest summary, in tokens (a tenth of the window when that is smaller).
pub const SUMMARY_TOKENS: usize = 200;

/// The summary budget for a window of `window` tokens.
pub fn summary_budget(window: usize) -> usize {
    SUMMARY_TOKENS.min(window / 10).max(32)
}

/// An evicted message as the summarizer reads it: a line of dialogue ("Priya: I live in
/// Lisbon.", "Assistant: Lovely!"), a memory operation in brackets, a function result cut short;
/// `None` for alerts, heartbeats and the login, which say nothing to keep, and for refused
/// replies. (Shown as `send_message({...}) [thoughts]`, the conversation made Qwen2.5-1.5B
/// write its summary as one more call: `send_message("I love your mushrooms too!")`, six facts,
/// session 22.)
fn line(m: &Message) -> Option<String> {
    let text = match (m.role, m.call()) {
        _ if m.unsent => return None,
        (MessageRole::Assistant, Some(c)) if c.function == crate::tools::SEND_MESSAGE => {
            format!("Assistant: {}", c.arguments["message"].as_str().unwrap_or_default())
        }
        (MessageRole::Assistant, Some(c)) => format!("[Assistant called {} with {}]", c.function, c.arguments),
        (MessageRole::Assistant, None) => format!("Assistant: {}", m.content),
        (MessageRole::User, _) => {
            let said = super::events::user_text(m).unwrap_or_else(|| m.content.clone());
            format!("{}: {said}", m.speaker().unwrap_or_else(|| "User".into()))
        }
        (MessageRole::Function, _) => {
            let v: serde_json::Value = serde_json::from_str(&m.content).unwrap_or(json!({"message": m.content}));
            let result: String = v["message"].as_str().unwrap_or(&m.content).chars().take(200).collect();
            format!("[Result of {}: {result}]", m.name.as_deref().unwrap_or("a function"))
        }
        (MessageRole::System, _) => return None,
    };
    Some(text.chars().take(400).collect())
}

/// Whether a summary is a function call rather than prose (`send_message("...")`, or a call
/// in JSON): small models write the format their system prompt asks of every step.
fn is_call(text: &str) -> bool {
    let t = text.trim_start();
    let name_len = t.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(t.len());
    (name_len > 0 && t[name_len..].starts_with('(') && t.contains('_'))
        || t.starts_with('{')
        || t.starts_with("<tool_call>")
}

impl Agent<'_> {
    /// Alert or flush as the prompt size requires (at most one flush), counting a flush and
    /// its cost into `out`. The alert is raised only where `may_alert` (the first step of a
    /// turn, before the agent acts on the event): never between a function result and the step
    /// that answers from it, where a small model acts on the last thing it reads.
    pub(super) fn manage_pressure(
        &mut self,
        steps: &mut dyn StepModel,
        out: &mut TurnResult,
        may_alert: bool,
    ) -> Result<()> {
        let c = &self.record.config;
        let n = self.prompt_tokens()?.len();
        let warn_at = (c.warning_threshold * self.window as f32) as usize;
        let flush_at = (c.flush_threshold * self.window as f32) as usize;
        let id = self.record.id;
        if n + step_reserve(self.window) > flush_at {
            out.add_flush(&self.flush(steps)?);
            self.store.set_state(id, "pressure_warned", &json!(false))?;
            return Ok(());
        }
        let warned = self.store.get_state(id, "pressure_warned")?.and_then(|v| v.as_bool()).unwrap_or(false);
        if n > warn_at && !warned && may_alert {
            self.push(super::events::system_alert(prompts::PRESSURE_ALERT, self.now()))?;
            self.store.set_state(id, "pressure_warned", &json!(true))?;
        } else if n <= warn_at && warned {
            self.store.set_state(id, "pressure_warned", &json!(false))?;
        }
        Ok(())
    }

    /// Evict the oldest messages into a new recursive summary; returns what it cost.
    ///
    /// The summarizer's prompt is main context's own system message followed by the request,
    /// so on the main session its KV is reused, not evaluated again.
    pub fn flush(&mut self, steps: &mut dyn StepModel) -> Result<FlushCost> {
        let t0 = std::time::Instant::now();
        let id = self.record.id;
        let queue = self.store.context_messages(id)?;
        let target = (self.record.config.evict_fraction * self.window as f32) as usize;
        // What must go for the prompt, a new summary and one step to fit at all.
        let sizes: Vec<usize> = queue.iter().map(|m| Ok(self.message_tokens(m)? + 4)).collect::<Result<_>>()?;
        let old_summary = self.model.tokenizer.encode(&self.store.summary(id)?.text, true)?.len();
        // At least one message goes (a flush was asked for), and enough for the prompt, the new
        // summary and one step to fit.
        let n = self.prompt_tokens()?.len();
        let must_free = (n + summary_budget(self.window) + step_reserve(self.window))
            .saturating_sub(self.window + old_summary)
            .max(1);
        // Keep the last KEEP_LAST messages when that frees enough, else fewer: down to the
        // newest message (or call with its result), and as a last resort none (a tiny window
        // whose one message does not fit: the summary, written from it, carries it on).
        let mut cut = 0;
        for keep in [KEEP_LAST, 2, 1, 0] {
            let evictable = queue.len().saturating_sub(keep);
            let mut freed = 0;
            cut = 0;
            while cut < evictable && freed < target.max(must_free) {
                freed += sizes[cut];
                cut += 1;
                // Never split a call from its result, never start the queue with a result.
                while cut < queue.len()
                    && (cut + 1 < queue.len() || keep == 0)
                    && queue[cut].role == MessageRole::Function
                {
                    freed += sizes[cut];
                    cut += 1;
                }
            }
            if freed >= must_free {
                break;
            }
        }
        if cut == 0 {
            return Err(Error::Invalid(format!(
                "the context window ({} tokens) is too small: nothing can be evicted (only {} message(s) in the queue); use a larger --context-window",
                self.window,
                queue.len()
            )));
        }
        let evicted = &queue[..cut];
        let old = self.store.summary(id)?;
        let mut body = String::new();
        if !old.text.is_empty() {
            body.push_str(&format!("Previous summary: {}\n\n", old.text));
        }
        body.push_str("Conversation:\n");
        let lines: Vec<String> = evicted.iter().filter_map(line).collect();
        for l in &lines {
            body.push_str(l);
            body.push('\n');
        }
        // Keep the summarizer's prompt inside the window: drop the oldest lines if needed.
        let budget = summary_budget(self.window);
        let mut prompt;
        let system = super::context::system_message(&self.instructions, &self.working);
        loop {
            let msgs = [
                ChatMessage::new("system", system.clone()),
                ChatMessage::new("user", format!("{}\n\n{body}", prompts::SUMMARIZE)),
            ];
            prompt = self.model.chat_prompt(&msgs, true)?.1;
            if prompt.len() + budget <= self.window || body.len() < 200 {
                break;
            }
            body = body.chars().skip(body.chars().count() / 4).collect();
        }
        let done = steps.summarize(&prompt, budget)?;
        let mut text = clean_summary(&done.text);
        if text.is_empty() || is_call(&text) {
            // No prose came back: the old summary and the evicted lines, as they are.
            let kept = std::iter::once(old.text.clone()).filter(|t| !t.is_empty()).chain(lines);
            text = kept.collect::<Vec<_>>().join(" | ").chars().take(400).collect();
        }
        let summary = Summary { text, updated_at: 0, messages_covered: old.messages_covered + evicted.len() as u64 };
        self.store.flush_queue(id, &summary, evicted)?;
        self.refresh_working_context()?;
        Ok(FlushCost {
            evicted: evicted.len(),
            tokens_evaluated: done.tokens_evaluated,
            tokens_reused: done.tokens_reused,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }
}

/// A summary without the chat wrapping small models put around one ("Sure! Here is the summary
/// of the conversation:" first, a dangling "Conversation:" last): the summary heads every later
/// prompt, and a model shown the wrapping copied it into its answers (six facts, session 13).
fn clean_summary(text: &str) -> String {
    let mut lines: Vec<&str> = text.trim().lines().collect();
    let wrapping = |l: &str| {
        let l = l.trim();
        l.is_empty() || (l.ends_with(':') && l.chars().count() <= 80)
    };
    while lines.first().is_some_and(|l| wrapping(l)) {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| wrapping(l)) {
        lines.pop();
    }
    lines.join("\n").trim().to_string()
}

/// What one flush did and cost.
#[derive(Debug, Clone, Default)]
pub struct FlushCost {
    pub evicted: usize,
    pub tokens_evaluated: usize,
    pub tokens_reused: usize,
    pub seconds: f64,
}

impl TurnResult {
    pub(super) fn add_flush(&mut self, c: &FlushCost) {
        self.flushes += 1;
        self.flush_tokens_evaluated += c.tokens_evaluated;
        self.flush_tokens_reused += c.tokens_reused;
        self.flush_seconds += c.seconds;
    }
}

#[cfg(test)]
mod tests {
    use super::{clean_summary, is_call, line};
    use crate::agent::events;
    use crate::grammar::{StepFormat, ToolCall};
    use crate::memory::{Message, MessageRole};
    use serde_json::json;

    #[test]
    fn the_summarizer_reads_evicted_messages_as_dialogue() {
        let at = chrono::DateTime::from_timestamp(1_704_099_600, 0).unwrap();
        let call = |function: &str, arguments| {
            let c = ToolCall { thoughts: "hm".into(), function: function.into(), arguments };
            Message::new(MessageRole::Assistant, StepFormat::Json.render(&c))
        };
        let said = |m: Message| line(&m).unwrap();
        assert_eq!(said(events::user_message_at("I live in Lisbon.", Some("Priya"), at)), "Priya: I live in Lisbon.");
        assert_eq!(said(events::user_message_at("Hi!", None, at)), "User: Hi!");
        assert_eq!(said(call("send_message", json!({"message": "Lovely!"}))), "Assistant: Lovely!");
        let search = said(call("conversation_search", json!({"query": "cat"})));
        assert_eq!(search, "[Assistant called conversation_search with {\"query\":\"cat\"}]");
        let result = events::function_result("conversation_search", true, &"1. Biscuit ".repeat(50), at);
        assert_eq!(said(result), format!("[Result of conversation_search: {}]", &"1. Biscuit ".repeat(50)[..200]));
        // Alerts, heartbeats and refused replies say nothing to keep.
        assert_eq!(line(&events::heartbeat("reply now", at)), None);
        assert_eq!(line(&events::system_alert("memory pressure", at)), None);
        let refused = Message { unsent: true, ..call("send_message", json!({"message": "What is my cat's name?"})) };
        assert_eq!(line(&refused), None);
    }

    #[test]
    fn a_summary_written_as_a_call_is_told_from_prose() {
        assert!(is_call("send_message(\"I love your mushrooms too!\")"));
        assert!(is_call("  {\"function\": \"send_message\", \"arguments\": {}}"));
        assert!(is_call("<tool_call>\n{}"));
        assert!(!is_call("Priya (a marine biologist) lives in Lisbon."));
        assert!(!is_call("Summary(short): Priya lives in Lisbon."));
        assert!(!is_call("The user_name is Priya."));
    }

    #[test]
    fn a_summary_loses_its_chat_wrapping_and_keeps_its_lines() {
        let raw = "Sure! Here is the summary of the conversation:\n\nPriya lives in Lisbon.\nShe has a cat: Biscuit.\n\nConversation:\n";
        assert_eq!(clean_summary(raw), "Priya lives in Lisbon.\nShe has a cat: Biscuit.");
        assert_eq!(clean_summary("  Ana plays the oboe.  "), "Ana plays the oboe.");
        // Nothing but wrapping leaves nothing (the caller then summarizes the lines itself).
        assert_eq!(clean_summary("Here is the summary:\n"), "");
    }
}
