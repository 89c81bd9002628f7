/*! Main context: rendering the prompt and accounting for its tokens.

Layout, most stable first, so each step only appends to what the KV cache holds:
1. system instructions and the tool list (never change),
2. the working context: core-memory blocks and storage stats, as of the last *refresh*
   (agent load or queue flush; edits between refreshes reach the model through their function
   results, so a core-memory edit costs no re-evaluation),
3. the recursive summary (changes only at a flush),
4. the FIFO queue of messages (append-only between flushes),
5. the assistant's turn opener.
*/

use super::events::to_chat;
use super::prompts;
use crate::grammar::{compact_listing, StepFormat};
use crate::memory::{Block, Message, Summary};
use crate::runtime::{ChatMessage, ChatModel};
use crate::tools::ToolSpec;
use crate::Result;
use serde::Serialize;

/// The read-only system instructions with the tool list: from
/// `prompts::FULL_PROMPT_MIN_WINDOW` tokens up the full text with example exchanges and each
/// function's description, below it the short text with signatures only.
pub fn instructions(name: &str, tools: &[ToolSpec], format: StepFormat, max_searches: usize, window: usize) -> String {
    let (text, example, listing) = if window >= prompts::FULL_PROMPT_MIN_WINDOW {
        (prompts::SYSTEM, prompts::example(format), compact_listing(tools))
    } else {
        let signatures = tools.iter().map(|t| format!("- {}", t.signature())).collect::<Vec<_>>().join("\n");
        (prompts::SYSTEM_SMALL, String::new(), signatures)
    };
    text.replace("{name}", name)
        .replace("{format}", format.describe())
        .replace("{example}", &example)
        .replace("{max_searches}", &max_searches.to_string())
        .replace("{page_size}", &crate::tools::PAGE_SIZE.to_string())
        .replace("{tools}", &listing)
}

/// The working context: core-memory blocks and stats.
pub fn working_context(blocks: &[Block], recall: usize, archival: usize) -> String {
    let mut s = format!("{}\n", prompts::CORE_HEADER);
    for b in blocks {
        s.push_str(&format!(
            "<{} chars={}/{}>\n{}\n</{}>\n",
            b.label,
            b.value.chars().count(),
            b.limit,
            b.value,
            b.label
        ));
    }
    s.push_str(&format!("Recall memory: {recall} messages. Archival memory: {archival} passages."));
    s
}

/// The system message: instructions, then the working context (one owner of this layout: the
/// step prompt, its token count and the summarizer's prompt must share it for KV reuse).
pub fn system_message(instructions: &str, working: &str) -> String {
    format!("{instructions}\n\n{working}")
}

/// All the parts of main context, ready to render.
pub struct MainContext<'a> {
    pub instructions: &'a str,
    pub working: &'a str,
    pub summary: &'a Summary,
    pub queue: &'a [Message],
    /// The model's step format (decides how function results are shown).
    pub format: StepFormat,
}

/// Token counts per section (from the model's own tokenizer).
#[derive(Debug, Clone, Serialize)]
pub struct ContextReport {
    pub system: usize,
    pub working_context: usize,
    pub summary: usize,
    pub queue: usize,
    pub queue_messages: usize,
    pub total: usize,
    pub window: usize,
}

impl MainContext<'_> {
    /// The chat messages, in order.
    pub fn messages(&self) -> Vec<ChatMessage> {
        let mut v = vec![ChatMessage::new("system", system_message(self.instructions, self.working))];
        if !self.summary.text.is_empty() {
            v.push(ChatMessage::new(
                "user",
                prompts::summary_message(self.summary.messages_covered, &self.summary.text),
            ));
        }
        v.extend(self.queue.iter().map(|m| to_chat(m, self.format)));
        v
    }

    /// Render with the chat template, opening the assistant's turn; returns the token ids.
    pub fn tokens(&self, model: &ChatModel) -> Result<Vec<u32>> {
        Ok(model.chat_prompt(&self.messages(), true)?.1)
    }

    /// Per-section token counts.
    pub fn report(&self, model: &ChatModel, window: usize) -> Result<ContextReport> {
        let count = |s: &str| model.tokenizer.encode(s, true).map(|t| t.len());
        let total = self.tokens(model)?.len();
        let system = count(self.instructions)?;
        let working = count(self.working)?;
        let summary = if self.summary.text.is_empty() {
            0
        } else {
            count(&prompts::summary_message(self.summary.messages_covered, &self.summary.text))?
        };
        Ok(ContextReport {
            system,
            working_context: working,
            summary,
            queue: total.saturating_sub(system + working + summary),
            queue_messages: self.queue.len(),
            total,
            window,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_instruction_texts_fill_every_placeholder_and_name_every_function() {
        let tools = crate::tools::builtin_tools(&["persona".into(), "human".into()]);
        let small = instructions("Sam", &tools, StepFormat::Qwen, 3, prompts::FULL_PROMPT_MIN_WINDOW - 1);
        let full = instructions("Sam", &tools, StepFormat::Qwen, 3, prompts::FULL_PROMPT_MIN_WINDOW);
        for text in [&small, &full] {
            for placeholder in ["{name}", "{format}", "{example}", "{max_searches}", "{page_size}", "{tools}"] {
                assert!(!text.contains(placeholder), "{placeholder} left in:\n{text}");
            }
            for t in &tools {
                assert!(text.contains(&t.signature()), "{} missing from:\n{text}", t.name);
            }
            assert!(text.ends_with("Your name is Sam."));
            assert!(text.contains(&format!("{} results a page", crate::tools::PAGE_SIZE)));
        }
        // The small window's text has neither the examples nor the descriptions.
        assert!(full.contains("Examples:") && !small.contains("Examples:"));
        assert!(full.contains(tools[0].description) && !small.contains(tools[0].description));
        assert!(small.len() * 3 < full.len() * 2, "{} vs {} bytes", small.len(), full.len());
    }
}
