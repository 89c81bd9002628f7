/*! The chat-model runtime.

- [`ChatModel`]: a GGUF file loaded for inference: [`Transformer`] weights, [`GgufTokenizer`]
  (built from the file's metadata) and [`ChatTemplate`] (the file's Jinja template).
- [`Session`]: a [`KvCache`] plus the tokens in it; reuses the longest common prefix.
- [`Sampler`] / [`TokenMask`]: sampling with a hook for constrained decoding.
*/

pub mod attention;
mod embedding;
mod gguf;
mod kv_cache;
mod kv_file;
pub mod linear;
mod model;
mod prompt_encoder;
mod sampler;
mod session;
pub mod synthetic;
mod template;
mod tokenizer;

pub use gguf::{Gguf, SUPPORTED_ARCHS};
pub use kv_cache::KvCache;
pub use kv_file::{remove_stale_temp_files, KvFile, KvHeader};
pub use model::{Arch, Config, Transformer, MAX_POSITIONS};
pub use prompt_encoder::PromptEncoder;
pub use sampler::{argmax, Sampler, SamplerConfig, TokenMask};
pub use session::{EvalStats, Generation, KvTransfer, Session, PREFILL_BATCH};
pub use template::{ChatMessage, ChatTemplate, CHATML};
pub use tokenizer::{GgufTokenizer, TokenStream};

use crate::store::ModelSpec;
use crate::Result;
use candle_core::Device;
use std::path::Path;
use std::sync::Arc;

/// A loaded chat model.
pub struct ChatModel {
    pub weights: Transformer,
    pub tokenizer: Arc<GgufTokenizer>,
    pub template: ChatTemplate,
    /// Tokens that end a generation (EOS and end-of-turn tokens).
    pub stop_tokens: Vec<u32>,
    /// The catalog entry, when loaded by id.
    pub spec: Option<ModelSpec>,
    /// The GGUF file it was loaded from.
    pub path: std::path::PathBuf,
    /// See [`ChatModel::fingerprint`].
    fingerprint: String,
}

impl ChatModel {
    /// Load a GGUF chat model. `spec` supplies a chat-template override when the file lacks one.
    pub fn load(path: &Path, device: &Device, spec: Option<&ModelSpec>) -> Result<Self> {
        let mut g = Gguf::open(path)?;
        let tokenizer = GgufTokenizer::from_gguf(&g)?;
        let source = match (spec.and_then(|s| s.chat_template.clone()), g.has("tokenizer.chat_template")) {
            (Some(t), _) => t,
            (None, true) => g.str("tokenizer.chat_template")?,
            (None, false) => CHATML.to_string(),
        };
        let name = |id: Option<u32>| id.and_then(|i| tokenizer.token_str(i)).unwrap_or("").to_string();
        let template = ChatTemplate::new(&source, &name(tokenizer.bos_id), &name(tokenizer.eos_id))?;
        let mut stop_tokens: Vec<u32> = tokenizer.eos_id.into_iter().collect();
        for s in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>"] {
            if let Some(id) = tokenizer.token_id(s) {
                if !stop_tokens.contains(&id) {
                    stop_tokens.push(id);
                }
            }
        }
        let weights = Transformer::load(&mut g, device)?;
        let fingerprint = fingerprint(path)?;
        Ok(Self {
            fingerprint,
            weights,
            tokenizer: Arc::new(tokenizer),
            template,
            stop_tokens,
            spec: spec.cloned(),
            path: path.to_path_buf(),
        })
    }

    /// What saved KV state is keyed by: a sha256 over the file's size, its first and last MiB
    /// (header, tokenizer and the last weights) and this build's version, so another file, an
    /// edited one or a build with other kernels never reuses the state. (Reading a 1 GB file
    /// whole at each start would cost seconds; the full sha256 is checked at pull.)
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A nonzero tag of this model file (from its fingerprint), stored with the token counts
    /// it makes ([`crate::memory::Message::counted_by`]) so another model's counts are not
    /// taken for its own.
    pub fn count_tag(&self) -> u32 {
        u32::from_str_radix(self.fingerprint.get(..8).unwrap_or_default(), 16).unwrap_or(0).max(1)
    }

    /// A shared handle to the tokenizer.
    pub fn tokenizer_arc(&self) -> Arc<GgufTokenizer> {
        self.tokenizer.clone()
    }

    /// Whether `id` ends a generation.
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_tokens.contains(&id)
    }

    /// The chat template's text for `messages` (see [`PromptEncoder`] to encode it step by step).
    /// Message contents are defused first ([`GgufTokenizer::defuse`]): control tokens in the
    /// result come only from the template.
    pub fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_chat_with_tools(messages, None, add_generation_prompt)
    }

    /// [`ChatModel::render_chat`] with OpenAI-style `tools` handed to the template (see
    /// [`ChatTemplate::render_with_tools`]); their text is defused like message contents.
    pub fn render_chat_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let safe: Vec<ChatMessage> = messages
            .iter()
            .map(|m| ChatMessage::new(&m.role, self.tokenizer.defuse(&m.content).into_owned()))
            .collect();
        let tools = tools.map(|t| defuse_strings(t, &self.tokenizer));
        self.template.render_with_tools(&safe, tools.as_ref(), add_generation_prompt)
    }

    /// Render messages with the chat template and tokenize (special tokens parsed, BOS if asked).
    pub fn chat_prompt(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<(String, Vec<u32>)> {
        let text = self.render_chat(messages, add_generation_prompt)?;
        let ids = self.tokenizer.encode_prompt(&text)?;
        Ok((text, ids))
    }
}

/// `v` with every string defused ([`GgufTokenizer::defuse`]).
fn defuse_strings(v: &serde_json::Value, tk: &GgufTokenizer) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(tk.defuse(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(|x| defuse_strings(x, tk)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (tk.defuse(k).into_owned(), defuse_strings(x, tk))).collect())
        }
        other => other.clone(),
    }
}

fn fingerprint(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    const SPAN: u64 = 1 << 20;
    let io = |e: std::io::Error| crate::Error::File { path: path.to_path_buf(), msg: e.to_string() };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    let mut buf = vec![0u8; SPAN.min(len) as usize];
    f.read_exact(&mut buf).map_err(io)?;
    h.update(&buf);
    f.seek(SeekFrom::Start(len.saturating_sub(SPAN))).map_err(io)?;
    f.read_exact(&mut buf).map_err(io)?;
    h.update(&buf);
    Ok(h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect())
}
