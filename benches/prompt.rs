//! Building a step's prompt as history grows: an agent whose recall storage holds 1k, then
//! 100k messages (all but the last 24 evicted, as after many flushes), with the same queue in
//! main context. Times `Agent::prompt_tokens` (main context from memory, template rendered,
//! new messages tokenized) after a new message, and the first build after opening the agent
//! (which reads the queue from disk once). Target: the per-step time at 100k within 1.2x of
//! the time at 1k. One JSON line. `cargo bench --bench prompt [-- --quick]`.

mod common;

use common::*;
use pagemind::agent::{user_message, Agent};
use pagemind::memory::{MemoryStore, Message};
use pagemind::runtime::ChatModel;
use pagemind::store::{default_home, ModelStore};
use serde_json::json;
use std::time::Instant;

const IN_CONTEXT: usize = 24;

/// Per-step prompt building (µs, p50) and the first build after open (ms) with `n` stored messages.
fn measure(model: &ChatModel, n: usize, rounds: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::open(dir.path()).unwrap();
    let rec = store.create_agent("bench", "chat", "emb", "I am Sam.", "Name: Ana.").unwrap();
    for b in 0..n.div_ceil(1000) {
        let msgs: Vec<Message> = (b * 1000..((b + 1) * 1000).min(n))
            .map(|k| {
                let mut m = user_message(&format!("message {k}: the weather, the garden, and a mango."));
                m.created_at = 1_700_000_000_000 + k as i64;
                m.in_context = k + IN_CONTEXT >= n;
                m
            })
            .collect();
        store.append_messages(rec.id, msgs).unwrap();
    }
    drop(store);
    let store = MemoryStore::open(dir.path()).unwrap();
    let t = Instant::now();
    let agent = Agent::open(&store, model, None, "bench", Some(8192)).unwrap();
    agent.prompt_tokens().unwrap();
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut per_step = vec![];
    for r in 0..rounds {
        agent.push(user_message(&format!("a new message {r}"))).unwrap();
        per_step.push(time_us(|| {
            agent.prompt_tokens().unwrap();
        }));
    }
    (p50_p99(&mut per_step).0, first_ms)
}

fn main() {
    let quick = quick();
    let store = ModelStore::new(default_home());
    let Ok(r) = store.resolve("smollm2-135m-instruct-q4_1") else {
        eprintln!("SKIPPED: smollm2-135m-instruct-q4_1 is not installed (pagemind models pull)");
        std::process::exit(1);
    };
    let model = ChatModel::load(&r.paths[0], &candle_core::Device::Cpu, r.spec.as_ref()).unwrap();
    let big = if quick { 20_000 } else { 100_000 };
    let rounds = if quick { 10 } else { 30 };
    let (small_us, small_first) = measure(&model, 1_000, rounds);
    let (big_us, big_first) = measure(&model, big, rounds);
    let out = json!({
        "bench": "prompt",
        "queue_messages": IN_CONTEXT,
        "per_step_us_p50": {"1000": r2(small_us), big.to_string(): r2(big_us)},
        "ratio": r2(big_us / small_us),
        "target_ratio": 1.2,
        "first_build_after_open_ms": {"1000": r2(small_first), big.to_string(): r2(big_first)},
    });
    println!("{out}");
}
