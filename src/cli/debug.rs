/*! `pagemind debug ...`: hidden tools for crash-safety tests and benchmarks. */

use super::agents::open_store;
use super::Global;
use anyhow::Result;
use clap::Subcommand;
use pagemind::memory::{Message, MessageRole, NewPassage};
use pagemind::runtime::Session;
use std::io::Write;

#[derive(Subcommand, Debug)]
pub enum DebugCmd {
    /// Append messages and insert passages (pseudo-embeddings) alternately, printing
    /// `message <id>` / `passage <id>` after each returns; for kill tests.
    WriteStream {
        #[arg(long)]
        agent: String,
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// Print the logits (one JSON line per step) of the benchmark's synthetic prompt, then of
    /// `--steps` single tokens fed one by one: the same run on two devices must agree.
    Logits {
        /// Model id or .gguf path (default: the default chat model).
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value_t = 64)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 3)]
        steps: usize,
    },
    /// Check the invariants a crash must not break (queue vs summary, passages vs sources and
    /// vectors, the archival index vs exact search); prints each problem, exits 1 if any.
    Check {
        #[arg(long)]
        agent: String,
    },
    /// Write a tiny random-weight chat model (a complete GGUF, ~40 KB) to FILE: for crash and
    /// load tests that need a model that is fast rather than sensible.
    TinyModel { file: std::path::PathBuf },
}

/// A deterministic unit vector for `seed` (no model needed).
pub fn pseudo_embedding(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

pub fn run(g: &Global, cmd: DebugCmd) -> Result<()> {
    match cmd {
        DebugCmd::WriteStream { agent, count } => write_stream(g, &agent, count),
        DebugCmd::Logits { model, prompt_tokens, steps } => logits(g, model.as_deref(), prompt_tokens, steps),
        DebugCmd::Check { agent } => {
            let store = open_store(g)?;
            let a = store.agent(&agent)?;
            let problems = store.check_agent(a.id, &a.embedding_model)?;
            for p in &problems {
                println!("{p}");
            }
            anyhow::ensure!(problems.is_empty(), "agent '{agent}': {} invariant(s) broken", problems.len());
            Ok(())
        }
        DebugCmd::TinyModel { file } => {
            let bytes = pagemind::runtime::synthetic::tiny_gguf(&Default::default(), 1)?;
            std::fs::write(&file, bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            Ok(())
        }
    }
}

fn logits(g: &Global, model: Option<&str>, prompt_tokens: usize, steps: usize) -> Result<()> {
    let m = super::generate::load_chat(g, model)?;
    let prompt = pagemind::bench::synthetic_prompt(prompt_tokens.max(1), m.weights.config.vocab_size.max(1));
    let mut s = Session::new(&m, prompt.len() + steps + 1)?;
    let device = pagemind::device::device_name(m.weights.device());
    let mut out = std::io::stdout().lock();
    let mut l = s.eval(&prompt)?;
    for step in 0..=steps {
        let line = serde_json::json!({"device": device, "step": step, "tokens": s.tokens().len(), "logits": l});
        writeln!(out, "{line}")?;
        if step < steps {
            l = s.feed(&[(100 + step) as u32])?;
        }
    }
    Ok(())
}

fn write_stream(g: &Global, agent: &str, count: usize) -> Result<()> {
    let store = open_store(g)?;
    let a = store.agent(agent)?;
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let m = store.append_message(a.id, Message::new(MessageRole::User, format!("stream message {i}")))?;
        writeln!(out, "message {}", m.id)?;
        out.flush()?;
        let p = NewPassage {
            text: format!("stream passage {i}"),
            source: "debug".into(),
            span: String::new(),
            metadata: serde_json::json!({}),
            vector: pseudo_embedding(i as u64, 384),
        };
        let p = store.archival_insert(a.id, &a.embedding_model, p)?;
        writeln!(out, "passage {}", p.id)?;
        out.flush()?;
    }
    Ok(())
}
