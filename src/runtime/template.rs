/*! Chat templates: the GGUF's own `tokenizer.chat_template` (Jinja) rendered with minijinja,
with Python string methods (`.strip()`, `.startswith()`...) through minijinja-contrib's pycompat.
*/

use crate::{Error, Result};
use minijinja::{context, Environment, ErrorKind};
use serde::{Deserialize, Serialize};

/// One chat message, as chat templates expect it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// Instructions one rendering may run (a real template over a long conversation uses a few
/// tens of thousands).
pub const TEMPLATE_FUEL: u64 = 20_000_000;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Whether the template reads a `tools` variable (Qwen2.5's writes the function list and
    /// the `<tool_call>` instructions into the system message itself).
    takes_tools: bool,
}

fn raise_exception(msg: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compile `source`; `bos`/`eos` are exposed as `bos_token`/`eos_token`.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        // A template comes from the model file: bound its work, so a crafted one cannot hang.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_template_owned("chat", source.to_string()).map_err(|e| Error::Template(e.to_string()))?;
        let takes_tools = source.contains("tools");
        Ok(Self { env, bos: bos.into(), eos: eos.into(), takes_tools })
    }

    /// Render `messages`, ending with the assistant's turn opener when `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// Whether the template writes a `tools` list itself (see [`ChatTemplate::render_with_tools`]).
    pub fn takes_tools(&self) -> bool {
        self.takes_tools
    }

    /// [`ChatTemplate::render`] with OpenAI-style `tools` (`[{"type": "function", "function":
    /// {...}}]`) given to the template as its `tools` variable.
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let t = self.env.get_template("chat").map_err(|e| Error::Template(e.to_string()))?;
        t.render(context! {
            messages => messages,
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| Error::Template(e.to_string()))
    }
}

/// ChatML, for GGUF files that carry no template and no `models.toml` override.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

#[cfg(test)]
mod tests {
    #[test]
    fn a_template_that_never_ends_is_stopped() {
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        let t0 = std::time::Instant::now();
        let e = t.render(&[ChatMessage::new("user", "hi")], true).unwrap_err();
        assert!(e.to_string().contains("fuel"), "{e}");
        assert!(t0.elapsed().as_secs() < 20);
    }

    use super::*;

    #[test]
    fn chatml_renders_and_raise_exception_is_an_error() {
        let t = ChatTemplate::new(CHATML, "", "").unwrap();
        let s = t.render(&[ChatMessage::new("user", "hi")], true).unwrap();
        assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
        let bad = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        assert!(bad.render(&[], false).unwrap_err().to_string().contains("roles must alternate"));
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
    }
}
