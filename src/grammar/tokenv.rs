/*! llguidance's view of our tokenizer: a [`toktrie::TokTrie`] over the GGUF vocabulary.

Normal tokens map to the bytes they stand for; control and unused tokens get toktrie's special
marker (0xFF) so grammars never produce them as text; user-defined tokens (Qwen's `<tool_call>`)
are ordinary text. Tokenization of grammar literals uses the model's own tokenizer.
*/

use crate::runtime::GgufTokenizer;
use std::sync::Arc;
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

/// A [`TokenizerEnv`] over a GGUF tokenizer.
pub struct GgufTokEnv {
    trie: TokTrie,
    tokenizer: Arc<GgufTokenizer>,
}

impl GgufTokEnv {
    /// Build the trie for `tokenizer`, `eos` ending generation.
    pub fn new(tokenizer: Arc<GgufTokenizer>, vocab_size: usize, eos: u32) -> Self {
        let words: Vec<Vec<u8>> = (0..vocab_size as u32)
            .map(|id| {
                let b = tokenizer.token_bytes(id);
                if tokenizer.is_control(id) || tokenizer.is_unused(id) {
                    let mut s = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    s.extend(b);
                    s
                } else {
                    b
                }
            })
            .collect();
        let info = TokRxInfo::new(vocab_size as u32, eos);
        Self { trie: TokTrie::from(&info, &words), tokenizer }
    }

    /// Shareable handle for llguidance.
    pub fn into_env(self) -> TokEnv {
        Arc::new(self)
    }
}

impl TokenizerEnv for GgufTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) => self.tokenizer.encode(text, false).unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}
