/*! Function results cut to what the window can hold beside the next step.

A result is cut twice: to [`super::Agent::result_limit`] characters (what any result may hold),
then to half the tokens the window leaves after the system message, the summary, the call and
room for one step ([`super::Agent::result_room`]), so that after a flush a call and its result
always fit beside the next step.
*/

use super::{pressure, step_reserve, Agent};
use crate::Result;

impl Agent<'_> {
    /// Tokens a function result may take after a call of `call_tokens` tokens: half the window
    /// that is left after the system message, the summary, the call and room for one step.
    pub(super) fn result_room(&self, call_tokens: usize) -> usize {
        self.window.saturating_sub(
            self.fixed_tokens + pressure::summary_budget(self.window) + step_reserve(self.window) + call_tokens + 16,
        ) / 2
    }

    /// A function result cut to [`Agent::result_limit`] characters and to half the window
    /// that is left after the system message, the summary, the call (`call_tokens`) and room
    /// for one step: after a flush, a call and its result always fit beside the next step.
    pub(super) fn fit_result(&self, result: &str, call_tokens: usize) -> Result<String> {
        let text = cut_chars(result, self.result_limit);
        let room = self.result_room(call_tokens);
        let tokens = self.model.tokenizer.encode(&text, false)?;
        if tokens.len() <= room {
            return Ok(text);
        }
        let keep = self.model.tokenizer.decode(&tokens[..room.saturating_sub(4)], false)?;
        Ok(format!("{} [truncated]", keep.trim_end_matches(' ')))
    }
}

/// `text` cut to `limit` characters, marked when cut.
fn cut_chars(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    text.chars().take(limit).collect::<String>() + " [truncated]"
}
