/*! Incremental encoding of rendered chat prompts.

The tokenizer never merges across a control token (`<|im_start|>`, `<|im_end|>`, ...): it
splits the text at them before anything else. So a prompt cut just before each control token
encodes piece by piece to exactly the ids of the whole text, and a piece seen before need not be
encoded again. A rendered chat prompt's pieces are its messages: from one agent step to the next
only the messages that are new since the last step are encoded, whatever the length of the
conversation or of the history behind it.
*/

use super::GgufTokenizer;
use crate::Result;
use std::collections::HashMap;

/// Encodes prompts as [`GgufTokenizer::encode_prompt`] does, remembering the pieces of the
/// previous prompt.
pub struct PromptEncoder {
    /// Control-token strings, the cut points.
    markers: Vec<String>,
    cache: HashMap<String, Vec<u32>>,
    /// Pieces encoded by the last call (the rest came from the cache).
    pub encoded_pieces: usize,
    /// Pieces in the last prompt.
    pub pieces: usize,
}

impl PromptEncoder {
    pub fn new(tk: &GgufTokenizer) -> Self {
        let markers = tk.control_strings().to_vec();
        Self { markers, cache: HashMap::new(), encoded_pieces: 0, pieces: 0 }
    }

    /// Byte offsets where `text` is cut: 0, and before each control token (leftmost-longest
    /// matches, so no cut falls inside a longer control token).
    fn cuts(&self, text: &str) -> Vec<usize> {
        let mut found: Vec<(usize, usize)> = vec![];
        for m in &self.markers {
            found.extend(text.match_indices(m.as_str()).map(|(i, s)| (i, s.len())));
        }
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut cuts = vec![0];
        let mut end = 0;
        for (start, len) in found {
            if start >= end {
                cuts.push(start);
                end = start + len;
            }
        }
        cuts.dedup();
        cuts
    }

    /// Ids of a full prompt (BOS when the model asks for it, special tokens parsed), equal to
    /// `tk.encode_prompt(text)`.
    pub fn encode_prompt(&mut self, tk: &GgufTokenizer, text: &str) -> Result<Vec<u32>> {
        let cuts = self.cuts(text);
        let mut ids = tk.encode_prompt("")?;
        let mut next = HashMap::with_capacity(cuts.len());
        self.encoded_pieces = 0;
        self.pieces = 0;
        for (k, &start) in cuts.iter().enumerate() {
            let end = cuts.get(k + 1).copied().unwrap_or(text.len());
            let piece = &text[start..end];
            if piece.is_empty() {
                continue;
            }
            self.pieces += 1;
            let piece_ids = match self.cache.remove(piece).or_else(|| next.get(piece).cloned()) {
                Some(v) => v,
                None => {
                    self.encoded_pieces += 1;
                    tk.encode(piece, true)?
                }
            };
            ids.extend_from_slice(&piece_ids);
            next.insert(piece.to_string(), piece_ids);
        }
        // Keep what this prompt used: memory stays bounded by the window.
        self.cache = next;
        Ok(ids)
    }
}
