/*! The baselines' answers: the same model without pagemind's memory, one plain prompt (a
system message holding the context, the question as the user's message), greedy decoding.

A baseline's [`Session`] keeps its KV cache between items, so a context shared by every
question (e.g. the full-context conversation) is evaluated once.
*/

use crate::runtime::{ChatMessage, ChatModel, Sampler, Session};
use crate::{Error, Result};

/// Tokens an answer may take.
pub const ANSWER_TOKENS: usize = 96;

/// What one plain answer cost.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub text: String,
    pub tokens_evaluated: usize,
    pub tokens_reused: usize,
}

/// Answer `user` after `system`, greedily, in at most `max_tokens` tokens.
pub fn answer(session: &mut Session, system: &str, user: &str, max_tokens: usize) -> Result<Answer> {
    let model = session.model();
    let msgs = [ChatMessage::new("system", system), ChatMessage::new("user", user)];
    let (_, ids) = model.chat_prompt(&msgs, true)?;
    if ids.len() + max_tokens > session.n_ctx() {
        return Err(Error::ContextOverflow { tokens: ids.len() + max_tokens, context: session.n_ctx() });
    }
    let mut sampler = Sampler::new(crate::agent::agent_sampling());
    let g = session.generate(&ids, &mut sampler, max_tokens, None, |_| Ok(true))?;
    Ok(Answer {
        text: model.tokenizer.decode(&g.tokens, true)?.trim().to_string(),
        tokens_evaluated: g.prompt.evaluated + g.tokens.len(),
        tokens_reused: g.prompt.reused,
    })
}

/// The longest run of `lines` that fits in `budget` tokens: from the end (`newest`: the last
/// lines are kept) or from the start. Returns the kept lines in their original order.
pub fn fit_lines(model: &ChatModel, lines: &[String], budget: usize, newest: bool) -> Result<Vec<String>> {
    let mut used = 0;
    let mut kept = vec![];
    let order: Box<dyn Iterator<Item = &String>> =
        if newest { Box::new(lines.iter().rev()) } else { Box::new(lines.iter()) };
    for l in order {
        let n = model.tokenizer.encode(l, false)?.len() + 1;
        if used + n > budget {
            break;
        }
        used += n;
        kept.push(l.clone());
    }
    if newest {
        kept.reverse();
    }
    Ok(kept)
}

/// Tokens of the chat scaffolding around a system and a user message with no text.
pub fn scaffold_tokens(model: &ChatModel) -> Result<usize> {
    let msgs = [ChatMessage::new("system", ""), ChatMessage::new("user", "")];
    Ok(model.chat_prompt(&msgs, true)?.1.len())
}
