/*! `pagemind debug ...`: hidden tools for crash-safety tests and benchmarks. */

use super::agents::open_store;
use super::Global;
use anyhow::Result;
use clap::Subcommand;
use pagemind::memory::{Message, MessageRole, NewPassage};
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
    let DebugCmd::WriteStream { agent, count } = cmd;
    let store = open_store(g)?;
    let a = store.agent(&agent)?;
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
