/*! A session: one KV cache and the tokens it holds.

[`Session::eval`] takes a whole prompt, finds the longest common prefix with what the cache
already holds, truncates the cache there and evaluates only the rest. This is what makes an
agent step cost only its new tokens. [`Session::generate`] runs the decode loop.
*/

use super::kv_cache::KvCache;
use super::kv_file::{KvFile, KvHeader};
use super::sampler::{Sampler, TokenMask};
use super::ChatModel;
use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// Prompt tokens evaluated per forward call during prefill (256 keeps the largest activation
/// buffers, Qwen2.5-1.5B's gate/up output, under the 32 MiB that `main` lets glibc reuse).
pub const PREFILL_BATCH: usize = 256;

/// What the last [`Session::eval`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalStats {
    /// Tokens whose keys/values came from the cache.
    pub reused: usize,
    /// Tokens run through the model.
    pub evaluated: usize,
    /// Of the reused tokens, those whose keys/values were moved to new positions (reuse after
    /// eviction, [`Session::set_shift_reuse`]).
    pub shifted: usize,
    pub elapsed: Duration,
}

/// The result of [`Session::generate`].
#[derive(Debug, Clone)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub prompt: EvalStats,
    pub decode_elapsed: Duration,
    /// Whether a stop token ended it (rather than the token limit).
    pub stopped: bool,
}

/// What [`Session::save_state`] wrote or [`Session::restore_state`] read: positions, file
/// size and seconds; `skipped` says why a restore started cold instead.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KvTransfer {
    pub tokens: usize,
    pub bytes: u64,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// A model plus its KV cache.
pub struct Session<'m> {
    model: &'m ChatModel,
    cache: KvCache,
    tokens: Vec<u32>,
    /// Reuse cached chunks at shifted positions, at least this many tokens long.
    shift_min: Option<usize>,
    /// Stats of the last eval.
    pub last: EvalStats,
}

impl<'m> Session<'m> {
    /// A session whose cache holds up to `n_ctx` tokens (at most the model's context length).
    pub fn new(model: &'m ChatModel, n_ctx: usize) -> Result<Self> {
        let n_ctx = n_ctx.min(model.weights.config.context_length);
        Ok(Self {
            model,
            cache: model.weights.new_cache(n_ctx),
            tokens: vec![],
            shift_min: None,
            last: EvalStats::default(),
        })
    }

    /// The model this session runs.
    pub fn model(&self) -> &'m ChatModel {
        self.model
    }

    /// The context window of this session.
    pub fn n_ctx(&self) -> usize {
        self.cache.max_len()
    }

    /// Tokens currently in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Copies of the cached keys and values of positions `start..start + n`, per layer.
    pub fn cache_range(&self, start: usize, n: usize) -> Result<Vec<(candle_core::Tensor, candle_core::Tensor)>> {
        self.cache.copy_range(start, n)
    }

    /// Forget everything.
    pub fn reset(&mut self) {
        self.cache.truncate(0);
        self.tokens.clear();
    }

    /// Evaluate `prompt`, reusing the cached common prefix; returns the last position's logits.
    pub fn eval(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        if prompt.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        if prompt.len() > self.n_ctx() {
            return Err(Error::ContextOverflow { tokens: prompt.len(), context: self.n_ctx() });
        }
        let mut common = self.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        // The last prompt token must be evaluated to get its logits.
        common = common.min(prompt.len() - 1);
        let t0 = Instant::now();
        if let Some(min) = self.shift_min.filter(|_| common < self.tokens.len()) {
            if let Some((at, from, n)) = find_chunk(&self.tokens, prompt, common, min) {
                return self.eval_moving(prompt, common, at, from, n, t0);
            }
        }
        self.cache.truncate(common);
        self.tokens.truncate(common);
        let logits = self.feed_inner(&prompt[common..])?;
        self.last = EvalStats { reused: common, evaluated: prompt.len() - common, shifted: 0, elapsed: t0.elapsed() };
        Ok(logits)
    }

    /// Reuse after eviction (llama.cpp's `--cache-reuse`): when the prompt diverges from the
    /// cache (a flush replaced the summary and dropped the oldest messages), a run of at least
    /// `min_chunk` cached tokens that reappears later in the prompt (the kept queue) keeps its
    /// values, and its keys are re-rotated to their new positions instead of evaluated again.
    /// Not exact: those keys and values were computed attending to the old summary and the
    /// evicted messages (`bench paging --policy shift` and `runtime::reuse_after_eviction_...`
    /// measure what it costs). `None` (the default) evaluates everything after the common prefix.
    pub fn set_shift_reuse(&mut self, min_chunk: Option<usize>) {
        self.shift_min = min_chunk.map(|m| m.max(CHUNK_KEY));
    }

    /// Evaluate `prompt[common..at]`, move the cached run `from..from + n` to `at..at + n`,
    /// evaluate the rest.
    fn eval_moving(
        &mut self,
        prompt: &[u32],
        common: usize,
        at: usize,
        from: usize,
        n: usize,
        t0: Instant,
    ) -> Result<Vec<f32>> {
        let moved = self.cache.copy_range(from, n)?;
        self.cache.truncate(common);
        self.tokens.truncate(common);
        if at > common {
            self.feed_inner(&prompt[common..at])?;
        }
        let delta = at as i64 - from as i64;
        let mut shifted = Vec::with_capacity(moved.len());
        for (k, v) in moved {
            shifted.push((self.model.weights.rerotate_keys(&k, delta)?, v));
        }
        self.cache.push_layers(&shifted)?;
        self.tokens.extend_from_slice(&prompt[at..at + n]);
        let logits = self.feed_inner(&prompt[at + n..])?;
        self.last =
            EvalStats { reused: common + n, evaluated: prompt.len() - common - n, shifted: n, elapsed: t0.elapsed() };
        Ok(logits)
    }

    /// Append `new` tokens after what the cache holds; returns the last position's logits.
    pub fn feed(&mut self, new: &[u32]) -> Result<Vec<f32>> {
        if self.tokens.len() + new.len() > self.n_ctx() {
            return Err(Error::ContextOverflow { tokens: self.tokens.len() + new.len(), context: self.n_ctx() });
        }
        self.feed_inner(new)
    }

    fn feed_inner(&mut self, new: &[u32]) -> Result<Vec<f32>> {
        let mut logits = None;
        for chunk in new.chunks(PREFILL_BATCH) {
            let out = self.model.weights.forward(chunk, &mut self.cache);
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    // Keep tokens and cache consistent on failure.
                    self.cache.truncate(self.tokens.len());
                    return Err(e);
                }
            };
            self.tokens.extend_from_slice(chunk);
            logits = Some(out);
        }
        let logits = logits.ok_or_else(|| Error::Invalid("nothing to evaluate".into()))?;
        Ok(logits.to_vec1::<f32>()?)
    }

    /// Evaluate `prompt` then sample up to `max_tokens`, calling `on_token` for each (return
    /// `false` from it to stop early). Stops at the model's stop tokens.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        sampler: &mut Sampler,
        max_tokens: usize,
        mut mask: Option<&mut (dyn TokenMask + '_)>,
        mut on_token: impl FnMut(u32) -> Result<bool>,
    ) -> Result<Generation> {
        let mut logits = self.eval(prompt)?;
        let prompt_stats = self.last;
        let t0 = Instant::now();
        let mut out = vec![];
        let mut stopped = false;
        for _ in 0..max_tokens {
            let next = sampler.sample(&logits, &self.tokens, mask.as_deref_mut())?;
            if self.model.is_stop(next) {
                stopped = true;
                break;
            }
            out.push(next);
            if !on_token(next)? {
                break;
            }
            if self.tokens.len() >= self.n_ctx() {
                break;
            }
            logits = self.feed(&[next])?;
        }
        Ok(Generation { tokens: out, prompt: prompt_stats, decode_elapsed: t0.elapsed(), stopped })
    }

    fn kv_header(&self, tokens: usize) -> KvHeader {
        let c = &self.model.weights.config;
        KvHeader {
            model: self.model.fingerprint().to_string(),
            n_layers: c.n_layer,
            n_kv_heads: c.n_head_kv,
            head_dim: c.head_dim,
            dtype: "f32".into(),
            tokens,
        }
    }

    /// Save the first `upto` cached positions (all when `None`) to `path`, atomically, in the
    /// cache's own type (a restore is exact).
    pub fn save_state(&self, path: &Path, upto: Option<usize>) -> Result<KvTransfer> {
        let t0 = Instant::now();
        let n = upto.unwrap_or(usize::MAX).min(self.tokens.len());
        let cache_view =
            (0..self.model.weights.config.n_layer).map(|l| self.cache.layer_data(l, n)).collect::<Result<Vec<_>>>()?;
        let file = KvFile { header: self.kv_header(n), tokens: self.tokens[..n].to_vec(), layers: cache_view };
        let bytes = file.write(path)?;
        Ok(KvTransfer { tokens: n, bytes, seconds: t0.elapsed().as_secs_f64(), skipped: None })
    }

    /// Replace the cache with the state saved in `path` when it was saved for this model file
    /// and these shapes and fits this session; otherwise leave the session as it is and say why
    /// in `skipped`. The next [`Session::eval`] reuses whatever prefix it shares.
    pub fn restore_state(&mut self, path: &Path) -> Result<KvTransfer> {
        let t0 = Instant::now();
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let skip = |why: String| Ok(KvTransfer { skipped: Some(why), ..Default::default() });
        let file = match KvFile::read(path, &self.kv_header(0))? {
            Ok(f) => f,
            Err(why) => return skip(why),
        };
        if file.tokens.len() > self.n_ctx() {
            return skip(format!("{} positions do not fit a {}-token window", file.tokens.len(), self.n_ctx()));
        }
        let vocab = self.model.weights.config.vocab_size as u32;
        if file.tokens.iter().any(|&t| t >= vocab) {
            return skip("token ids outside the vocabulary".into());
        }
        self.cache.load(&file.layers, file.tokens.len())?;
        self.tokens = file.tokens;
        Ok(KvTransfer { tokens: self.tokens.len(), bytes, seconds: t0.elapsed().as_secs_f64(), skipped: None })
    }
}

/// Length of the token n-grams that index cached runs for [`Session::set_shift_reuse`].
const CHUNK_KEY: usize = 4;

/// The first position `at >= from` of `new` where a run of at least `min` tokens of `old` (from
/// `from` on) reappears, ending before `new`'s last token: `(at, position in old, length)`.
fn find_chunk(old: &[u32], new: &[u32], from: usize, min: usize) -> Option<(usize, usize, usize)> {
    let last = new.len().checked_sub(1)?;
    if old.len() < from + min || last < from + min {
        return None;
    }
    let mut index: std::collections::HashMap<&[u32], Vec<usize>> = std::collections::HashMap::new();
    for j in from..=old.len() - CHUNK_KEY {
        index.entry(&old[j..j + CHUNK_KEY]).or_default().push(j);
    }
    for at in from..=last - min {
        let Some(js) = index.get(&new[at..at + CHUNK_KEY]) else { continue };
        let best =
            js.iter().map(|&j| (old[j..].iter().zip(&new[at..last]).take_while(|(a, b)| a == b).count(), j)).max()?;
        if best.0 >= min {
            return Some((at, best.1, best.0));
        }
    }
    None
}
