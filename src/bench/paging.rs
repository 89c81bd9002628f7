/*! `pagemind bench paging`: what paging costs, turn by turn, on the real agent loop.

A scripted call policy drives [`Agent::turn`] for N turns: a fixed mix of `send_message`, core
edits, archival inserts and searches, and recall searches ([`plan`]). The model still decodes
every token of every call under the grammar ([`decode_scripted`]: a forward pass and a mask
per token, the script choosing instead of the sampler), so the run is deterministic even with
random weights and each step costs what a sampled step of the same length costs. Summaries at
flushes are generated freely by the model. Per turn: tokens evaluated and reused, prefill,
decode, grammar, tool and store, flush (summary) and KV save/restore seconds, peak memory.

Policies ([`Policy`]): `prefix` keeps the session's KV cache across steps (what `chat` does);
`none` evaluates every prompt from scratch; `persist` saves the KV state after each turn and
restores it into a new session before the next (every turn a new process, as `ask` runs);
`shift` is `prefix` plus reuse after eviction ([`Session::set_shift_reuse`]): after a flush the
kept queue's cached keys are moved to their new positions instead of evaluated again; every
step that moved any is also evaluated from scratch in a side session to report the largest
logit difference and whether the top token agrees (that check's time is not counted).
`fixed` is the baseline without memory management: one chat whose history grows until the
window is full, then stops.
*/

use crate::agent::{instructions, working_context, Agent, LlmSteps, StepModel, Summarized};
use crate::embed::Embedder;
use crate::grammar::{decode_scripted, StepFormat, StepStats, ToolCall};
use crate::memory::{MemoryStore, DEFAULT_HUMAN, DEFAULT_PERSONA};
use crate::runtime::{ChatMessage, ChatModel, Session};
use crate::{Error, Result};
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How the KV cache is used between steps and turns (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Prefix,
    None,
    Persist,
    Shift,
    Fixed,
}

impl Policy {
    pub const ALL: [Policy; 5] = [Policy::Prefix, Policy::Persist, Policy::Shift, Policy::None, Policy::Fixed];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Prefix => "prefix",
            Policy::None => "none",
            Policy::Persist => "persist",
            Policy::Shift => "shift",
            Policy::Fixed => "fixed",
        }
    }

    /// Parse a policy name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            Error::Invalid(format!("--policy {s}: unknown policy; use prefix, persist, shift, none or fixed"))
        })
    }
}

/// Shortest cached run moved by policy `shift` (llama.cpp's `--cache-reuse` default is 256 for
/// long prompts; a queue message here is ~20-100 tokens).
pub const SHIFT_MIN_CHUNK: usize = 32;

/// One turn's costs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnCost {
    pub policy: &'static str,
    pub turn: usize,
    pub steps: usize,
    /// Prompt tokens of the turn's last step (main context's size).
    pub prompt_tokens: usize,
    pub tokens_evaluated: usize,
    pub tokens_reused: usize,
    pub prefill_s: f64,
    pub decode_s: f64,
    pub grammar_s: f64,
    /// Tool handlers and store writes (the turn less everything else measured).
    pub tool_s: f64,
    pub flushes: usize,
    /// Flushes, their summary's generation included.
    pub flush_s: f64,
    pub kv_save_s: f64,
    pub kv_restore_s: f64,
    pub kv_bytes: u64,
    pub turn_s: f64,
    pub peak_rss_mb: f64,
    /// Calls the model wrote differently from the script (its tokenization was not allowed).
    pub diverged: usize,
    /// Policy `shift`: tokens whose KV was moved rather than evaluated, and against a full
    /// recompute of those steps' prompts the largest logit difference and the steps whose top
    /// token agreed (of `shift_checked`).
    #[serde(skip_serializing_if = "is_zero")]
    pub tokens_shifted: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub shift_checked: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub shift_top1_agree: usize,
    #[serde(skip_serializing_if = "f32_zero")]
    pub shift_max_logit_diff: f32,
    /// The fixed-context baseline only: the history no longer fits the window.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub window_full: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn f32_zero(x: &f32) -> bool {
    *x == 0.0
}

/// The user message of turn `t`: varied lengths, facts to save and questions.
pub fn user_message(t: usize) -> String {
    const TOPICS: [&str; 6] =
        ["gardening", "the trip to Kyoto", "my sister's wedding", "chess", "the new job", "bread baking"];
    let topic = TOPICS[t % TOPICS.len()];
    let filler = " It has been on my mind all week, so tell me what you think.".repeat(t % 3);
    format!("Turn {t}: let's talk about {topic}.{filler}")
}

/// The calls of turn `t`: every turn ends with `send_message`; before it, by turn, nothing, a
/// core-memory append, an archival insert, a recall search or an archival search.
pub fn plan(t: usize) -> Vec<ToolCall> {
    let call = |f: &str, arguments: serde_json::Value| ToolCall {
        thoughts: format!("Turn {t}."),
        function: f.into(),
        arguments,
    };
    let mut v = match t % 5 {
        1 => vec![call("core_memory_append", json!({"label": "human", "content": format!("Talked about topic {t}.")}))],
        2 => vec![call("archival_memory_insert", json!({"content": format!("Note from turn {t}: the user is busy.")}))],
        3 => vec![call("conversation_search", json!({"query": format!("turn {}", t.saturating_sub(2)), "page": 1}))],
        4 => vec![call("archival_memory_search", json!({"query": "what the user is busy with", "page": 1}))],
        _ => vec![],
    };
    v.push(call("send_message", json!({"message": format!("Noted, thanks for turn {t}.")})));
    v
}

/// Per-turn sums of the steps' counters.
#[derive(Default)]
struct Acc {
    prefill: Duration,
    grammar: Duration,
    total: Duration,
    diverged: usize,
    /// Policy `shift`: the prompt evaluation done before decoding (tokens evaluated, reused,
    /// moved), the side recompute's time and what it found.
    evaluated: usize,
    reused: usize,
    shifted: usize,
    check: Duration,
    checked: usize,
    agree: usize,
    max_diff: f32,
}

/// Decodes the scripted calls with the real model under the grammar.
struct Scripted<'m> {
    inner: LlmSteps<'m>,
    calls: VecDeque<ToolCall>,
    format: StepFormat,
    /// Policy `none`: forget the cache before every evaluation.
    cold: bool,
    /// Policy `shift`: evaluate the prompt first (moving kept chunks) and check it.
    shift: bool,
    acc: Acc,
}

impl Scripted<'_> {
    /// Policy `shift`: evaluate the prompt (the decode then finds it cached) and compare the
    /// logits with a recompute when any KV was moved.
    fn eval_and_check(&mut self, prompt: &[u32]) -> Result<()> {
        let t0 = Instant::now();
        let logits = self.inner.session.eval(prompt)?;
        self.acc.prefill += t0.elapsed();
        self.acc.total += t0.elapsed();
        let last = self.inner.session.last;
        self.acc.evaluated += last.evaluated;
        self.acc.reused += last.reused;
        self.acc.shifted += last.shifted;
        if last.shifted > 0 {
            let t = Instant::now();
            let model = self.inner.session.model();
            let fresh = Session::new(model, self.inner.session.n_ctx())?.eval(prompt)?;
            let d = logits.iter().zip(&fresh).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            self.acc.max_diff = self.acc.max_diff.max(d);
            self.acc.checked += 1;
            self.acc.agree += usize::from(crate::runtime::argmax(&logits) == crate::runtime::argmax(&fresh));
            self.acc.check += t.elapsed();
        }
        Ok(())
    }
}

impl StepModel for Scripted<'_> {
    fn step(&mut self, prompt: &[u32], on_token: &mut dyn FnMut(u32)) -> Result<(ToolCall, String, StepStats)> {
        if self.cold {
            self.inner.session.reset();
        }
        if self.shift {
            self.eval_and_check(prompt)?;
        }
        let want = self.calls.pop_front().unwrap_or_else(|| ToolCall {
            thoughts: "Done.".into(),
            function: "send_message".into(),
            arguments: json!({"message": "Done."}),
        });
        let s = decode_scripted(
            &self.inner.grammar,
            &mut self.inner.session,
            prompt,
            &self.format.render(&want),
            on_token,
        )?;
        self.acc.prefill += s.stats.prompt_time;
        self.acc.grammar += s.stats.mask_time;
        self.acc.total += s.stats.total_time;
        self.acc.diverged += usize::from(s.call != want);
        Ok((s.call, s.text, s.stats))
    }

    fn summarize(&mut self, prompt: &[u32], max_tokens: usize) -> Result<Summarized> {
        if self.cold {
            self.inner.session.reset();
        }
        self.inner.summarize(prompt, max_tokens)
    }
}

/// What a run needs.
pub struct PagingRun<'a> {
    pub model: &'a ChatModel,
    pub embedder: Option<&'a Embedder>,
    pub turns: usize,
    pub window: usize,
}

impl PagingRun<'_> {
    /// Run `policy` for the configured turns; `on_turn` sees each turn's costs as it ends.
    pub fn run(&self, policy: Policy, mut on_turn: impl FnMut(&TurnCost)) -> Result<Vec<TurnCost>> {
        if policy == Policy::Fixed {
            return self.fixed(on_turn);
        }
        let dir = tempfile::tempdir()?;
        let store = MemoryStore::open(dir.path())?;
        let model_name = self.model.path.display().to_string();
        let rec = store.create_agent("bench", &model_name, "none", DEFAULT_PERSONA, DEFAULT_HUMAN)?;
        let mut cfg = rec.config.clone();
        // The script decides every call: no tool rules, room for the plan's two steps.
        cfg.memory_first = false;
        cfg.search_first = false;
        cfg.max_steps = 4;
        store.update_agent(&crate::memory::AgentRecord { config: cfg, ..rec })?;
        let mut agent = Agent::open(&store, self.model, self.embedder, "bench", Some(self.window))?;
        let mut steps = Scripted {
            inner: LlmSteps::new(self.model, &agent.tools, agent.window, None)?,
            calls: VecDeque::new(),
            format: StepFormat::of(self.model),
            cold: policy == Policy::None,
            shift: policy == Policy::Shift,
            acc: Acc::default(),
        };
        if policy == Policy::Shift {
            steps.inner.session.set_shift_reuse(Some(SHIFT_MIN_CHUNK));
        }
        let kv_file = dir.path().join("bench.kv");
        let mut out = vec![];
        for t in 0..self.turns {
            let t0 = Instant::now();
            let mut cost = TurnCost { policy: policy.name(), turn: t, ..Default::default() };
            if policy == Policy::Persist && t > 0 {
                // A new process: a new session, the saved state restored into it.
                steps.inner.session = Session::new(self.model, agent.window)?;
                let r = steps.inner.session.restore_state(&kv_file)?;
                cost.kv_restore_s = r.seconds;
            }
            steps.calls = plan(t).into();
            steps.acc = Acc::default();
            let r = agent.turn(&mut steps, &user_message(t), &mut crate::agent::Quiet)?;
            if policy == Policy::Persist {
                let s = steps.inner.session.save_state(&kv_file, None)?;
                cost.kv_save_s = s.seconds;
                cost.kv_bytes = s.bytes;
            }
            cost.turn_s = (t0.elapsed() - steps.acc.check).as_secs_f64();
            cost.steps = r.steps.len();
            cost.prompt_tokens = r.steps.last().map_or(0, |s| s.prompt_tokens);
            cost.tokens_evaluated =
                r.steps.iter().map(|s| s.tokens_evaluated).sum::<usize>() + r.flush_tokens_evaluated;
            cost.tokens_reused = r.steps.iter().map(|s| s.tokens_reused).sum::<usize>() + r.flush_tokens_reused;
            if steps.shift {
                // Each step's own evaluation found the prompt cached but its last token: count
                // the evaluation done before each decode instead.
                cost.tokens_evaluated = steps.acc.evaluated + r.flush_tokens_evaluated;
                cost.tokens_reused = steps.acc.reused + r.flush_tokens_reused;
                cost.tokens_shifted = steps.acc.shifted;
                cost.shift_checked = steps.acc.checked;
                cost.shift_top1_agree = steps.acc.agree;
                cost.shift_max_logit_diff = steps.acc.max_diff;
            }
            cost.prefill_s = steps.acc.prefill.as_secs_f64();
            cost.grammar_s = steps.acc.grammar.as_secs_f64();
            cost.decode_s = (steps.acc.total - steps.acc.prefill - steps.acc.grammar).as_secs_f64();
            cost.flushes = r.flushes;
            cost.flush_s = r.flush_seconds;
            cost.tool_s =
                (cost.turn_s - steps.acc.total.as_secs_f64() - cost.flush_s - cost.kv_save_s - cost.kv_restore_s)
                    .max(0.0);
            cost.diverged = steps.acc.diverged;
            cost.peak_rss_mb = super::peak_rss_mb();
            on_turn(&cost);
            out.push(cost);
        }
        Ok(out)
    }

    /// The baseline without memory management: the same system instructions and user messages
    /// in one growing chat; each reply (the script's message) is decoded token by token.
    fn fixed(&self, mut on_turn: impl FnMut(&TurnCost)) -> Result<Vec<TurnCost>> {
        let tools = crate::tools::builtin_tools(&["persona".into(), "human".into()]);
        let blocks = [
            crate::memory::Block { label: "persona".into(), value: DEFAULT_PERSONA.into(), limit: 2000, updated_at: 0 },
            crate::memory::Block { label: "human".into(), value: DEFAULT_HUMAN.into(), limit: 2000, updated_at: 0 },
        ];
        let system = format!(
            "{}\n\n{}",
            instructions("bench", &tools, StepFormat::of(self.model), 3, self.window),
            working_context(&blocks, 0, 0)
        );
        let mut chat = vec![ChatMessage::new("system", system)];
        let mut session = Session::new(self.model, self.window)?;
        let mut out = vec![];
        for t in 0..self.turns {
            let t0 = Instant::now();
            let mut cost = TurnCost { policy: Policy::Fixed.name(), turn: t, steps: 1, ..Default::default() };
            chat.push(ChatMessage::new("user", user_message(t)));
            let reply = plan(t).pop().map(|c| c.arguments["message"].as_str().unwrap_or_default().to_string());
            let reply = reply.unwrap_or_default();
            let (_, prompt) = self.model.chat_prompt(&chat, true)?;
            let reply_ids = self.model.tokenizer.encode(&reply, false)?;
            if prompt.len() + reply_ids.len() > session.n_ctx() {
                cost.window_full = true;
                cost.prompt_tokens = prompt.len();
                on_turn(&cost);
                out.push(cost);
                break;
            }
            let tp = Instant::now();
            session.eval(&prompt)?;
            cost.prefill_s = tp.elapsed().as_secs_f64();
            cost.tokens_evaluated = session.last.evaluated;
            cost.tokens_reused = session.last.reused;
            let td = Instant::now();
            for &id in &reply_ids {
                session.feed(&[id])?;
            }
            cost.decode_s = td.elapsed().as_secs_f64();
            chat.push(ChatMessage::new("assistant", reply));
            cost.prompt_tokens = prompt.len();
            cost.turn_s = t0.elapsed().as_secs_f64();
            cost.peak_rss_mb = super::peak_rss_mb();
            on_turn(&cost);
            out.push(cost);
        }
        Ok(out)
    }
}

/// Totals of one policy's run.
pub fn summary(turns: &[TurnCost]) -> serde_json::Value {
    let n = turns.len().max(1) as f64;
    let sum = |f: fn(&TurnCost) -> f64| turns.iter().map(f).sum::<f64>();
    let mean_of = |xs: &[TurnCost]| xs.iter().map(|c| c.turn_s).sum::<f64>() / xs.len().max(1) as f64;
    let k = (turns.len() / 10).max(1);
    let (first, last) = (&turns[..k.min(turns.len())], &turns[turns.len().saturating_sub(k)..]);
    json!({
        "policy": turns.first().map_or("", |c| c.policy),
        "turns": turns.iter().filter(|c| !c.window_full).count(),
        "window_full_at_turn": turns.iter().find(|c| c.window_full).map(|c| c.turn),
        "tokens_evaluated": turns.iter().map(|c| c.tokens_evaluated).sum::<usize>(),
        "tokens_reused": turns.iter().map(|c| c.tokens_reused).sum::<usize>(),
        "flushes": turns.iter().map(|c| c.flushes).sum::<usize>(),
        "mean_turn_s": sum(|c| c.turn_s) / n,
        "mean_prefill_s": sum(|c| c.prefill_s) / n,
        "mean_decode_s": sum(|c| c.decode_s) / n,
        "mean_grammar_s": sum(|c| c.grammar_s) / n,
        "mean_tool_s": sum(|c| c.tool_s) / n,
        "mean_flush_s": sum(|c| c.flush_s) / n,
        "mean_kv_save_s": sum(|c| c.kv_save_s) / n,
        "mean_kv_restore_s": sum(|c| c.kv_restore_s) / n,
        "first_tenth_mean_turn_s": mean_of(first),
        "last_tenth_mean_turn_s": mean_of(last),
        "diverged_calls": turns.iter().map(|c| c.diverged).sum::<usize>(),
        "tokens_shifted": turns.iter().map(|c| c.tokens_shifted).sum::<usize>(),
        "shift_checked_steps": turns.iter().map(|c| c.shift_checked).sum::<usize>(),
        "shift_top1_agree": turns.iter().map(|c| c.shift_top1_agree).sum::<usize>(),
        "shift_max_logit_diff": turns.iter().map(|c| c.shift_max_logit_diff).fold(0.0f32, f32::max),
        "peak_rss_mb": turns.iter().map(|c| c.peak_rss_mb).fold(0.0, f64::max),
    })
}
