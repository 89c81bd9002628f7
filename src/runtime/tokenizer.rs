/*! A `tokenizers::Tokenizer` built from a GGUF file's own `tokenizer.ggml.*` metadata.

No tokenizer.json is needed. The pipeline mirrors llama.cpp's for byte-level BPE (`gpt2` model):
the pre-tokenizer regexes are chosen by `tokenizer.ggml.pre` and applied in sequence, then the
GPT-2 byte-to-unicode map; control tokens (type 3) are special and parsed only when asked,
user-defined tokens (type 4) are always parsed, as in llama.cpp's `parse_special`.
*/

use super::gguf::Gguf;
use crate::{Error, Result};
use std::collections::HashMap;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::tokenizer::SplitDelimiterBehavior;
use tokenizers::{AddedToken, Tokenizer};

const RE_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const RE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The regexes llama.cpp applies, in order, for a `tokenizer.ggml.pre` value.
fn pre_regexes(pre: &str) -> Option<Vec<&'static str>> {
    Some(match pre {
        "gpt2" | "default" => vec![RE_GPT2],
        "smollm" | "starcoder" | "refact" | "codeshell" => vec![r"\p{N}", RE_GPT2],
        "qwen2" | "deepseek-r1-qwen" => vec![RE_QWEN2],
        "llama3" | "llama-bpe" | "smaug-bpe" => vec![RE_LLAMA3],
        _ => return None,
    })
}

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;
const TOKEN_UNUSED: i64 = 5;

/// A tokenizer for a GGUF chat model.
pub struct GgufTokenizer {
    /// Parses control tokens written in the text (`<|im_start|>`).
    special: Tokenizer,
    /// Treats control tokens in the text as plain text.
    plain: Tokenizer,
    tokens: Vec<String>,
    token_types: Vec<i64>,
    byte_of: HashMap<char, u8>,
    /// The text of every control token, longest first.
    controls: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
}

impl GgufTokenizer {
    /// Build from the GGUF metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let kind = g.str("tokenizer.ggml.model")?;
        if kind != "gpt2" {
            return Err(Error::Unsupported {
                path: g.path.clone(),
                msg: format!("unsupported tokenizer model '{kind}' (tokenizer.ggml.model): only byte-level BPE ('gpt2') is supported"),
            });
        }
        let pre = if g.has("tokenizer.ggml.pre") { g.str("tokenizer.ggml.pre")? } else { "default".into() };
        let regexes = pre_regexes(&pre).ok_or_else(|| Error::Unsupported {
            path: g.path.clone(),
            msg: format!("unsupported pre-tokenizer '{pre}' (tokenizer.ggml.pre)"),
        })?;
        let tokens = g.strings("tokenizer.ggml.tokens")?;
        let token_types = g.ints("tokenizer.ggml.token_type")?;
        if token_types.len() != tokens.len() {
            return Err(Error::Gguf {
                path: g.path.clone(),
                msg: "tokenizer.ggml.token_type and tokenizer.ggml.tokens differ in length".into(),
            });
        }
        let merges = g
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| Error::Gguf {
                    path: g.path.clone(),
                    msg: format!("tokenizer.ggml.merges: bad entry '{m}'"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe =
            BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut tk = Tokenizer::new(bpe);
        let mut steps: Vec<PreTokenizerWrapper> = vec![];
        for re in regexes {
            let split = Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());
        tk.with_pre_tokenizer(Some(Sequence::new(steps)));
        tk.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&token_types)
            .filter(|(_, t)| **t == TOKEN_CONTROL || **t == TOKEN_USER_DEFINED)
            .map(|(s, t)| AddedToken::from(s.clone(), *t == TOKEN_CONTROL).normalized(false))
            .collect();
        tk.add_tokens(added).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut plain = tk.clone();
        plain.set_encode_special_tokens(true);
        let id = |k: &str| -> Result<Option<u32>> {
            if g.has(k) {
                Ok(Some(g.u64(k)? as u32))
            } else {
                Ok(None)
            }
        };
        let byte_of = byte_level_alphabet().into_iter().map(|(b, c)| (c, b)).collect();
        let mut controls: Vec<String> = tokens
            .iter()
            .zip(&token_types)
            .filter(|(s, t)| **t == TOKEN_CONTROL && !s.is_empty())
            .map(|(s, _)| s.clone())
            .collect();
        controls.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        Ok(Self {
            controls,
            special: tk,
            plain,
            bos_id: id("tokenizer.ggml.bos_token_id")?,
            eos_id: id("tokenizer.ggml.eos_token_id")?,
            add_bos: g.bool_or("tokenizer.ggml.add_bos_token", false)?,
            tokens,
            token_types,
            byte_of,
        })
    }

    /// Token ids of `text`. With `parse_special`, control tokens written in the text become
    /// their ids (for rendered chat prompts); without, they are tokenized as plain text.
    /// No BOS is added (see [`GgufTokenizer::encode_prompt`]).
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let tk = if parse_special { &self.special } else { &self.plain };
        let enc = tk.encode_fast(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids of a full prompt: BOS when the model asks for it, special tokens parsed.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = vec![];
        if let (true, Some(b)) = (self.add_bos, self.bos_id) {
            ids.push(b);
        }
        ids.extend(self.encode(text, true)?);
        Ok(ids)
    }

    /// Text of `ids`; control tokens are dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.special.decode(ids, skip_special).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The text of every control token (`<|im_start|>`, `<|im_end|>`, ...), longest first.
    pub fn control_strings(&self) -> &[String] {
        &self.controls
    }

    /// `text` with every control-token string broken by a zero-width space after its first
    /// character, so that content put into a chat template (a message, a document, a function
    /// result, core memory) can never become a control token: only the template's own
    /// scaffolding does. Text without one is returned as is.
    pub fn defuse<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        if !self.controls.iter().any(|c| text.contains(c.as_str())) {
            return std::borrow::Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for c in &self.controls {
            if out.contains(c.as_str()) {
                let first = c.chars().next().expect("non-empty").len_utf8();
                out = out.replace(c.as_str(), &format!("{}\u{200B}{}", &c[..first], &c[first..]));
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The token's string as stored in the vocabulary.
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|s| s.as_str())
    }

    /// Whether `id` is a control token (never part of ordinary text).
    pub fn is_control(&self, id: u32) -> bool {
        self.token_types.get(id as usize) == Some(&TOKEN_CONTROL)
    }

    /// Whether `id` is an unused/padding slot of the vocabulary (GGUF type 5).
    pub fn is_unused(&self, id: u32) -> bool {
        self.token_types.get(id as usize) == Some(&TOKEN_UNUSED)
    }

    /// The id of an exact token string, if the vocabulary has it.
    pub fn token_id(&self, s: &str) -> Option<u32> {
        self.special.token_to_id(s)
    }

    /// The raw bytes a token stands for (byte-level alphabet undone). Control and user-defined
    /// tokens yield their literal text.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(s) = self.tokens.get(id as usize) else { return vec![] };
        let t = self.token_types[id as usize];
        if t == TOKEN_CONTROL || t == TOKEN_USER_DEFINED {
            return s.as_bytes().to_vec();
        }
        let mut out = Vec::with_capacity(s.len());
        for c in s.chars() {
            match self.byte_of.get(&c) {
                Some(b) => out.push(*b),
                None => out.extend(c.to_string().as_bytes()),
            }
        }
        out
    }
}

/// GPT-2's reversible byte -> printable-char map.
pub(crate) fn byte_level_alphabet() -> Vec<(u8, char)> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..=255u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter().zip(cs).map(|(b, c)| (b as u8, char::from_u32(c).expect("valid"))).collect()
}

/// Incremental detokenizer for streaming: yields text only once it is valid UTF-8.
///
/// Each push decodes only a window, from the token before the last piece yielded to the end
/// (tokenizers' "decode stream"): decoding the window with and without the new tokens and
/// taking the difference keeps word-initial spaces right, and the cost per token stays constant
/// however long the reply grows.
#[derive(Default)]
pub struct TokenStream {
    ids: Vec<u32>,
    /// Start of the window: the tokens before it were yielded long ago.
    prefix: usize,
    /// End of what has been yielded.
    read: usize,
    /// Whether control tokens are written out (`<tool_call>`) rather than skipped.
    keep_special: bool,
}

impl TokenStream {
    /// A stream that writes control tokens out (to see a `<tool_call>` opener).
    pub fn keeping_special() -> Self {
        Self { keep_special: true, ..Self::default() }
    }

    /// Push a token; returns the newly complete text, if any.
    pub fn push(&mut self, tk: &GgufTokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let skip = !self.keep_special;
        let before = tk.decode(&self.ids[self.prefix..self.read], skip)?;
        let text = tk.decode(&self.ids[self.prefix..], skip)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let Some(new) = text.get(before.len()..).filter(|s| !s.is_empty()).map(str::to_string) else {
            return Ok(None);
        };
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(Some(new))
    }

    /// All the text so far.
    pub fn text(&self, tk: &GgufTokenizer) -> Result<String> {
        tk.decode(&self.ids, !self.keep_special)
    }
}
