//! Grammar-constrained decoding on the real models: mask computation time per token (p50, p99)
//! against the decode step time, tokens per step and the share of forced tokens, and the prompt
//! tokens the compact tool listing saves over full JSON Schemas. One JSON line per model
//! (SmolLM2's 49k vocabulary; Qwen2.5's 151k when installed).
//! `cargo bench --bench grammar [-- --quick]`.

mod common;

use common::*;
use pagemind::agent::{agent_sampling, instructions, user_message, working_context, MainContext};
use pagemind::grammar::{decode_step, StepGrammar};
use pagemind::memory::{Block, Summary};
use pagemind::runtime::{ChatModel, Sampler, Session};
use pagemind::store::{default_home, ModelStore};
use pagemind::tools::builtin_tools;
use serde_json::json;

const MESSAGES: &[&str] = &[
    "Hi, I'm Ada. I love mangoes.",
    "What did we talk about yesterday?",
    "Search your archive for notes about the pump manual.",
    "Please remember my phone number is 555-0134.",
    "Привет! How are you today? 🙂",
    "What did I say on 2026-03-14?",
    "Change my name in memory to Bo.",
    "Tell me a joke about \"quotes\" and \\ backslashes.",
];

fn bench_model(id: &str, quick: bool) -> Option<serde_json::Value> {
    let store = ModelStore::new(default_home());
    let r = store.resolve(id).ok()?;
    let model = ChatModel::load(&r.paths[0], &candle_core::Device::Cpu, r.spec.as_ref()).ok()?;
    let blocks = vec![
        Block { label: "persona".into(), value: "I am Sam.".into(), limit: 2000, updated_at: 0 },
        Block { label: "human".into(), value: "Nothing is known yet.".into(), limit: 2000, updated_at: 0 },
    ];
    let tools = builtin_tools(&["persona".into(), "human".into()]);
    let format = r.spec.as_ref().map(|s| s.tool_format).unwrap_or_default();
    let grammar = StepGrammar::new(&model, &tools, format).unwrap();
    let (compact, full) = StepGrammar::listing_sizes(&model, &tools).unwrap();
    let inst = instructions("Sam", &tools, format, 4, 4096);
    let working = working_context(&blocks, 0, 0);
    let mut session = Session::new(&model, 4096).unwrap();
    let mut sampler = Sampler::new(agent_sampling());
    let summary = Summary::default();
    let (mut masks, mut tokens, mut forced, mut steps) = (vec![], 0usize, 0usize, 0usize);
    let mut decode_ms_per_token = vec![];
    let n = if quick { 2 } else { MESSAGES.len() };
    for text in &MESSAGES[..n] {
        let queue = [user_message(text)];
        let prompt = MainContext { instructions: &inst, working: &working, summary: &summary, queue: &queue, format }
            .tokens(&model)
            .unwrap();
        let s = decode_step(&grammar, &mut session, &prompt, &mut sampler, |_| {}).unwrap();
        masks.extend(s.stats.mask_times.iter().map(|d| d.as_secs_f64() * 1e6));
        tokens += s.stats.tokens;
        forced += s.stats.forced;
        steps += 1;
        let gen = s.stats.total_time - s.stats.prompt_time;
        decode_ms_per_token.push(gen.as_secs_f64() * 1e3 / s.stats.masks.max(1) as f64);
    }
    let (p50, p99) = p50_p99(&mut masks);
    let (step_ms, _) = p50_p99(&mut decode_ms_per_token);
    Some(json!({
        "bench": "grammar", "model": id, "vocab": model.tokenizer.vocab_size(),
        "mask_us": {"p50": r2(p50), "p99": r2(p99), "count": masks.len()},
        "decode_step_ms_per_sampled_token": r2(step_ms),
        "mask_share_of_step": (p50 / 1e3 / step_ms * 1e4).round() / 1e4,
        "tokens_per_step": r2(tokens as f64 / steps as f64),
        "forced_share": (forced as f64 / tokens as f64 * 1e3).round() / 1e3,
        "tool_listing_tokens": {"compact": compact, "json_schema": full, "saved": full as i64 - compact as i64},
    }))
}

fn main() {
    let quick = quick();
    let ids: &[&str] = if quick {
        &["smollm2-135m-instruct-q4_1"]
    } else {
        &["smollm2-135m-instruct-q4_1", "qwen2.5-coder-1.5b-instruct-q4_k_m"]
    };
    for &id in ids {
        match bench_model(id, quick) {
            Some(v) => println!("{v}"),
            None => eprintln!("skipped {id}: not installed (`pagemind models pull {id}`)"),
        }
    }
}
