/*! The step wire format: one owner for how a step is written, read and streamed.

[`StepFormat`] (declared per model in `models.toml` as `tool_format`) renders a step for the
prompt and the tool list, names the text a call opens with, and [`parse_call`] reads one back;
the grammar ([`super::StepGrammar`]) constrains decoding to it; [`MessageStream`] shows the
`message` of a `send_message` step while it is being decoded. `/rewrite` edits a stored step by
parsing and re-rendering it here.
*/

use super::ToolCall;
use crate::runtime::ChatModel;
use crate::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};

/// How a step is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepFormat {
    /// `{"thoughts": .., "function": .., "arguments": {..}}`
    #[default]
    Json,
    /// `<tool_call>\n{"thoughts": .., "name": .., "arguments": {..}}\n</tool_call>` (Qwen2.5's call with the
    /// thoughts first)
    Qwen,
}

impl StepFormat {
    /// The format a model's catalog entry declares (generic JSON when it declares none).
    pub fn of(model: &ChatModel) -> Self {
        model.spec.as_ref().map(|s| s.tool_format).unwrap_or_default()
    }

    /// The format a stored step was written in, from its text.
    pub fn detect(text: &str) -> Self {
        if text.trim_start().starts_with("<tool_call>") {
            StepFormat::Qwen
        } else {
            StepFormat::Json
        }
    }

    /// How the format is described to the model in the system prompt.
    pub fn describe(self) -> &'static str {
        match self {
            StepFormat::Json => "{\"thoughts\": \"...\", \"function\": \"...\", \"arguments\": {...}}",
            StepFormat::Qwen => {
                "<tool_call>\n{\"thoughts\": \"...\", \"name\": \"...\", \"arguments\": {...}}\n</tool_call>"
            }
        }
    }

    /// How a plain function call (no thoughts) is described to the model.
    pub fn describe_plain(self) -> String {
        self.describe().replace("\"thoughts\": \"...\", ", "")
    }

    /// The text a call begins with: where a free reply turns into a call.
    pub fn call_opener(self) -> &'static str {
        match self {
            StepFormat::Json => "{",
            StepFormat::Qwen => "<tool_call>",
        }
    }

    /// The system-prompt text that lists `functions` (OpenAI/BFCL function objects) and says
    /// how to call one (`required`: the answer must be a call), for templates that do not write
    /// a tool list themselves.
    pub fn functions_prompt(self, functions: &[Value], required: bool) -> String {
        let listing = functions.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n");
        let how = if required {
            "Answer the user's request with exactly one function call, written as"
        } else {
            "When a function would help, call it, written as"
        };
        let or_not = if required { "" } else { "; otherwise answer in plain text" };
        format!("You can call these functions (JSON):\n{listing}\n\n{how}: {}{or_not}", self.describe_plain())
    }

    /// A plain function call (no thoughts) written as a [`super::StepGrammar::functions`] grammar
    /// makes the model write it.
    pub fn render_function(self, function: &str, arguments: &Value) -> String {
        let name = serde_json::to_string(function).unwrap_or_default();
        let args = render_value(arguments);
        match self {
            StepFormat::Json => format!("{{\"function\": {name}, \"arguments\": {args}}}"),
            StepFormat::Qwen => format!("<tool_call>\n{{\"name\": {name}, \"arguments\": {args}}}\n</tool_call>"),
        }
    }

    /// A call written exactly as the grammar makes the model write it (for examples in the
    /// prompt, scripted test models and edited steps).
    pub fn render(self, call: &ToolCall) -> String {
        let sep = |v: &Value| serde_json::to_string(v).unwrap_or_default();
        let mut args = String::new();
        let obj = call.arguments.as_object().cloned().unwrap_or_default();
        let mut parts = vec![];
        for (k, v) in &obj {
            parts.push(format!("{}: {}", sep(&json!(k)), render_value(v)));
        }
        args.push_str(&parts.join(", "));
        match self {
            StepFormat::Json => format!(
                "{{\"thoughts\": {}, \"function\": {}, \"arguments\": {{{args}}}}}",
                sep(&json!(call.thoughts)),
                sep(&json!(call.function))
            ),
            StepFormat::Qwen => format!(
                "<tool_call>\n{{\"thoughts\": {}, \"name\": {}, \"arguments\": {{{args}}}}}\n</tool_call>",
                sep(&json!(call.thoughts)),
                sep(&json!(call.function))
            ),
        }
    }
}

/// Compact JSON with `": "` and `", "` separators (the grammar's own spacing).
fn render_value(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let parts: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}: {}", serde_json::to_string(k).unwrap_or_default(), render_value(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(render_value).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// Parse one call written in `format` (from a grammar, or free text that may not follow it).
pub fn parse_call(text: &str, format: StepFormat) -> Result<ToolCall> {
    let body = match format {
        StepFormat::Json => text.trim(),
        StepFormat::Qwen => text.trim().trim_start_matches("<tool_call>").trim_end_matches("</tool_call>").trim(),
    };
    let v: Value = serde_json::from_str(body).map_err(|e| Error::Invalid(format!("step is not JSON ({e}): {text}")))?;
    let (function, mut args, thoughts) = match format {
        StepFormat::Json => (&v["function"], v["arguments"].clone(), v["thoughts"].clone()),
        StepFormat::Qwen => (&v["name"], v["arguments"].clone(), v["thoughts"].clone()),
    };
    let function =
        function.as_str().ok_or_else(|| Error::Invalid(format!("step names no function: {text}")))?.to_string();
    let o = args.as_object_mut().ok_or_else(|| Error::Invalid(format!("arguments must be an object: {text}")))?;
    let thoughts = match format {
        StepFormat::Json => thoughts,
        // Steps stored before session 13 kept the thoughts inside the arguments.
        StepFormat::Qwen => match o.remove("thoughts") {
            Some(inside) if thoughts.is_null() => inside,
            _ => thoughts,
        },
    };
    Ok(ToolCall { thoughts: thoughts.as_str().unwrap_or_default().to_string(), function, arguments: args })
}

/// Extracts the `message` argument of a `send_message` call from partial step text.
#[derive(Default)]
pub struct MessageStream {
    shown: usize,
}

impl MessageStream {
    /// The new part of the message in `text` (the step decoded so far), once it is whole
    /// characters.
    pub fn delta(&mut self, text: &str) -> Option<String> {
        let is_send = text.contains("\"send_message\"");
        let start = text.find("\"message\": \"")? + "\"message\": \"".len();
        if !is_send {
            return None;
        }
        let mut out = String::new();
        let mut chars = text[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('u') => {
                        let hex: String = chars.by_ref().take(4).collect();
                        match u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == 4).and_then(char::from_u32) {
                            Some(c) => out.push(c),
                            // Incomplete (or a surrogate pair's half): wait for more text.
                            None => break,
                        }
                    }
                    Some(o) => out.push(o),
                    None => break,
                },
                c => out.push(c),
            }
        }
        // A character whose bytes are not all decoded yet shows as U+FFFD at the end: wait.
        while out.ends_with('\u{FFFD}') {
            out.pop();
        }
        let n = out.chars().count();
        if n <= self.shown {
            return None;
        }
        let d: String = out.chars().skip(self.shown).collect();
        self.shown = n;
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::MessageStream;

    /// Feed growing decodings of one step; what the stream would show, piece by piece.
    fn shown(steps: &[&str]) -> Vec<String> {
        let mut s = MessageStream::default();
        steps.iter().filter_map(|t| s.delta(t)).collect()
    }

    #[test]
    fn a_streamed_reply_never_shows_half_a_character_or_a_raw_escape() {
        let head = r#"{"function": "send_message", "arguments": {"message": ""#;
        let pieces = shown(&[
            &format!("{head}Caf"),
            &format!("{head}Caf\u{FFFD}"), // the first byte of 'é' only
            &format!("{head}Café"),
            &format!("{head}Café \\u00"),
            &format!("{head}Café \\u00e9 \\\"ok\\\"\\n\\b"),
        ]);
        assert_eq!(pieces, ["Caf", "é", " ", "é \"ok\"\n\u{8}"]);
        // The same text as the JSON parser gives the committed message.
        let committed: String = serde_json::from_str("\"Café \\u00e9 \\\"ok\\\"\\n\\b\"").unwrap();
        assert_eq!(pieces.concat(), committed);
    }
}
