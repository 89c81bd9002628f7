/*! `pagemind bench decode|embed`: the reference engines' protocols, JSON on stdout. */

use super::generate::load_chat;
use super::Global;
use anyhow::Result;
use clap::Subcommand;
use pagemind::bench::{self, DecodeReport};
use serde_json::json;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Prefill and decode tokens/s (protocol of shared/bench/llama_cpp_speed.py).
    Decode {
        /// Model id or .gguf path (default: the default chat model).
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 64)]
        gen_tokens: usize,
        /// Repetitions; the figures are medians.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// JSON output (always on; accepted for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Embedding throughput (protocol of shared/bench/st_embed_speed.py).
    Embed {
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn threads(g: &Global) -> usize {
    g.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(g: &Global, cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Decode { model, prompt_tokens, gen_tokens, repeat, .. } => {
            let m = load_chat(g, model.as_deref())?;
            let (mut pre, mut dec) = (vec![], vec![]);
            for _ in 0..repeat.max(1) {
                let (p, d) = bench::decode(&m, prompt_tokens, gen_tokens)?;
                pre.push(p);
                dec.push(d);
            }
            let r = DecodeReport {
                engine: "pagemind",
                model: m.spec.as_ref().map(|s| s.id.clone()).unwrap_or_else(|| model.clone().unwrap_or_default()),
                device: pagemind::device::device_name(m.weights.device()),
                threads: threads(g),
                prompt_tokens,
                gen_tokens,
                prefill_tok_s: (median(pre) * 100.0).round() / 100.0,
                decode_tok_s: (median(dec) * 100.0).round() / 100.0,
                peak_rss_mb: (bench::peak_rss_mb() * 10.0).round() / 10.0,
            };
            println!("{}", serde_json::to_string(&r)?);
        }
        BenchCmd::Embed { model, .. } => {
            let e = super::embed::load_embedder(g, model.as_deref())?;
            let passages = bench::embed_passages(512, 120);
            let refs: Vec<&str> = passages.iter().map(|s| s.as_str()).collect();
            e.embed(&refs[..32])?; // warm-up batch
            let t = Instant::now();
            e.embed(&refs)?;
            let dt = t.elapsed().as_secs_f64();
            let mut ntok = 0;
            for p in &refs {
                ntok += e.token_ids(p)?.len();
            }
            println!(
                "{}",
                json!({"engine": "pagemind", "threads": threads(g), "passages": refs.len(), "tokens": ntok,
                       "passages_s": (refs.len() as f64 / dt * 100.0).round() / 100.0,
                       "tokens_s": (ntok as f64 / dt * 10.0).round() / 10.0,
                       "peak_rss_mb": (bench::peak_rss_mb() * 10.0).round() / 10.0})
            );
        }
    }
    Ok(())
}
