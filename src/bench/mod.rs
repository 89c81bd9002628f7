/*! Benchmark protocols shared with the reference engines in `../shared/bench/`.

- [`decode`]: `llama_cpp_speed.py`'s protocol: a synthetic prompt of P ids
  (`id_i = (i*37) % 49000 + 100`, i = 1..P) prefilled once untimed, then timed after a reset;
  then G single tokens (`100 + j`) evaluated one by one, timed.
- [`paging`]: `pagemind bench paging`, the cost of paging turn by turn on the agent loop
  (plotted by [`plot`]).
- [`embed_passages`]: `st_embed_speed.py`'s 512 passages of 120 words, drawn exactly as Python's
  `random.seed(0); random.choice(WORDS)` draws them ([`PyRandom`]), embedded in batches of 32.
*/

pub mod paging;
pub mod plot;
mod pyrandom;

pub use pyrandom::PyRandom;

use crate::runtime::{ChatModel, Session};
use crate::Result;
use serde::Serialize;
use std::time::Instant;

/// Figures of one decode benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeReport {
    pub engine: &'static str,
    pub model: String,
    pub device: String,
    pub threads: usize,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub peak_rss_mb: f64,
}

/// The synthetic prompt of the reference protocol.
pub fn synthetic_prompt(n: usize, vocab: usize) -> Vec<u32> {
    (1..=n).map(|i| (((i * 37) % 49000 + 100) % vocab) as u32).collect()
}

/// Run the decode protocol; returns (prefill tok/s, decode tok/s).
pub fn decode(model: &ChatModel, prompt_tokens: usize, gen_tokens: usize) -> Result<(f64, f64)> {
    let vocab = model.weights.config.vocab_size.max(1);
    let prompt = synthetic_prompt(prompt_tokens, vocab);
    let mut s = Session::new(model, prompt_tokens + gen_tokens + 16)?;
    s.eval(&prompt)?; // warm-up
    s.reset();
    let t = Instant::now();
    s.eval(&prompt)?;
    let prefill = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for j in 0..gen_tokens {
        s.feed(&[(100 + j) as u32])?;
    }
    let decode = t.elapsed().as_secs_f64();
    Ok((prompt_tokens as f64 / prefill, gen_tokens as f64 / decode))
}

/// The words the embedding benchmark draws from.
pub const EMBED_WORDS: &str = "the memory agent archival storage recall context window paging operating system virtual interrupt queue summary passage document question answer";

/// The reference protocol's passages: `count` passages of `words` words.
pub fn embed_passages(count: usize, words: usize) -> Vec<String> {
    let w: Vec<&str> = EMBED_WORDS.split_whitespace().collect();
    let mut r = PyRandom::new(0);
    (0..count).map(|_| (0..words).map(|_| w[r.below(w.len() as u32) as usize]).collect::<Vec<_>>().join(" ")).collect()
}

/// Peak resident set size of this process in MB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
