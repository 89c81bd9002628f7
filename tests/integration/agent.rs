//! The agent loop against a scripted stand-in model (real tokenizer and template for token
//! accounting, scripted calls instead of decoding). Hermetic: the chat model is the synthetic
//! one built in memory ([`util::tiny`]) and the embedder the tiny random BERT
//! ([`util::tiny_embedder`]), so no model file is needed.

use crate::util;
use pagemind::agent::{Agent, Observer, Quiet, StepModel, Summarized};
use pagemind::grammar::{StepFormat, StepStats, ToolCall};
use pagemind::memory::{MemoryStore, MessageRole};
use pagemind::runtime::ChatModel;
use pagemind::Result;
use serde_json::{json, Value};
use std::collections::VecDeque;

/// Replays calls; when the script runs out, says "ok". A step restricted to one tool (as the
/// grammar restricts the real model) that was scripted otherwise says "(forced)" instead.
#[derive(Default)]
pub(crate) struct Script {
    pub(crate) calls: VecDeque<ToolCall>,
    pub(crate) prompts: Vec<Vec<u32>>,
    pub(crate) summaries: usize,
    /// The tool each step was restricted to, if any.
    pub(crate) restricted: Vec<Option<String>>,
    /// Replies to consolidation passes (none scripted: the model does not consolidate), and
    /// the prompts of the passes run.
    pub(crate) notes: VecDeque<String>,
    pub(crate) consolidate_prompts: Vec<Vec<u32>>,
}

pub(crate) fn call(f: &str, args: Value) -> ToolCall {
    ToolCall { thoughts: format!("thinking about {f}"), function: f.into(), arguments: args }
}

pub(crate) fn say(text: &str) -> ToolCall {
    call("send_message", json!({"message": text}))
}

impl StepModel for Script {
    fn step_only(
        &mut self,
        prompt: &[u32],
        only: &[&str],
        t: &mut dyn FnMut(u32),
    ) -> Result<(ToolCall, String, StepStats)> {
        if only == ["send_message"] && self.calls.front().is_some_and(|c| c.function != only[0]) {
            self.calls.push_front(say("(forced)"));
        }
        let r = self.step(prompt, t);
        *self.restricted.last_mut().unwrap() = Some(only.join(","));
        r
    }
    fn step(&mut self, prompt: &[u32], _: &mut dyn FnMut(u32)) -> Result<(ToolCall, String, StepStats)> {
        self.prompts.push(prompt.to_vec());
        self.restricted.push(None);
        let c = self.calls.pop_front().unwrap_or_else(|| say("ok"));
        let text = StepFormat::Json.render(&c);
        Ok((c, text, StepStats::default()))
    }
    fn summarize(&mut self, _: &[u32], _: usize) -> Result<Summarized> {
        self.summaries += 1;
        Ok(Summarized { text: format!("summary number {}", self.summaries), ..Default::default() })
    }
    fn consolidate(&mut self, prompt: &[u32], _: usize) -> Result<Option<Summarized>> {
        let Some(text) = self.notes.pop_front() else { return Ok(None) };
        self.consolidate_prompts.push(prompt.to_vec());
        Ok(Some(Summarized { text, ..Default::default() }))
    }
}

pub(crate) struct Collect(pub(crate) Vec<String>);
impl Observer for Collect {
    fn memory_op(&mut self, line: &str) {
        self.0.push(line.to_string());
    }
}

pub(crate) fn setup() -> (tempfile::TempDir, MemoryStore) {
    let d = tempfile::tempdir().unwrap();
    let s = MemoryStore::open(d.path()).unwrap();
    s.create_agent("bot", util::SMOLLM, util::MINILM, "I am Bot.", "Name: Ana").unwrap();
    (d, s)
}

/// Change the agent's configuration in the store.
pub(crate) fn configure(s: &MemoryStore, f: impl FnOnce(&mut pagemind::memory::AgentConfig)) {
    let mut rec = s.agent("bot").unwrap();
    f(&mut rec.config);
    s.update_agent(&rec).unwrap();
}

pub(crate) fn decoded(m: &ChatModel, prompt: &[u32]) -> String {
    m.tokenizer.decode(prompt, false).unwrap()
}

/// The hermetic tier's model: the synthetic one built in memory (no model file). Its byte-level
/// vocabulary spends about four times the tokens SmolLM2 does on the same text.
pub(crate) fn model() -> &'static ChatModel {
    util::tiny()
}

/// A context window written in SmolLM2 tokens, for the synthetic model.
pub(crate) fn w(smollm_tokens: usize) -> usize {
    smollm_tokens * 4
}

#[test]
fn heartbeats_chain_steps_and_send_message_yields() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(call("archival_memory_insert", json!({"content": "Ana loves mangoes"})));
    sc.calls.push_back(call("archival_memory_search", json!({"query": "what fruit", "page": 1})));
    sc.calls.push_back(say("You love mangoes!"));
    sc.calls.push_back(say("never reached this turn"));
    let mut obs = Collect(vec![]);
    let r = a.turn(&mut sc, "what do I like?", &mut obs).unwrap();
    assert_eq!(r.steps.len(), 3);
    assert_eq!(r.messages, ["You love mangoes!"]);
    assert!(!r.step_limit_hit);
    assert_eq!(obs.0[1], "archival_memory_search \"what fruit\" -> 1 results");
    // The third step saw the search result in its prompt, and after it the question again
    // (a search's result ends with the question of the turn).
    let third = decoded(model(), &sc.prompts[2]);
    let (result_at, restated_at) = (third.find("Ana loves mangoes").unwrap(), third.rfind("what do I like?").unwrap());
    assert!(restated_at > result_at, "{third}");
    let roles: Vec<MessageRole> = s.messages(a.record.id).unwrap().iter().map(|m| m.role).collect();
    use MessageRole::*;
    assert_eq!(roles, [User, Assistant, Function, Assistant, Function, Assistant, Function]);
    let results: Vec<String> =
        s.messages(a.record.id).unwrap().iter().filter(|m| m.role == Function).map(|m| m.content.clone()).collect();
    assert!(!results[0].contains("what do I like?"), "an insert's result is not a search's: {}", results[0]);
    assert!(results[1].contains("what do I like?"), "{}", results[1]);
}

#[test]
fn the_step_limit_ends_a_turn_and_is_reported() {
    let (_d, s) = setup();
    configure(&s, |c| c.max_steps = 3);
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    for i in 0..10 {
        sc.calls.push_back(call("conversation_search", json!({"query": format!("x{i}"), "page": 1})));
    }
    let r = a.turn(&mut sc, "loop forever", &mut Collect(vec![])).unwrap();
    assert_eq!(r.steps.len(), 3);
    assert!(r.step_limit_hit);
}

#[test]
fn a_failed_function_returns_its_error_to_the_model() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(call(
        "core_memory_replace",
        json!({"label": "human", "old_content": "Name: Bea", "new_content": "x"}),
    ));
    sc.calls.push_back(call(
        "core_memory_replace",
        json!({"label": "human", "old_content": "Name: Ana", "new_content": "Name: Ana Lima"}),
    ));
    let r = a.turn(&mut sc, "my surname is Lima", &mut Collect(vec![])).unwrap();
    assert_eq!(r.steps[0].status, "Failed");
    assert_eq!(r.steps[1].status, "OK");
    assert_eq!(r.steps.len(), 3, "a failure gets another step; so does the edit; then the reply");
    assert_eq!(r.messages, ["ok"]);
    assert!(decoded(model(), &sc.prompts[1]).contains("does not contain the exact text"));
    assert_eq!(s.block(a.record.id, "human").unwrap().value, "Name: Ana Lima");
}

fn alerts(s: &MemoryStore, id: u64) -> usize {
    s.messages(id).unwrap().iter().filter(|m| m.content.contains("\"system_alert\"")).count()
}

#[test]
fn pressure_alert_once_per_crossing_then_flush_with_summary() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(1400))).unwrap();
    let id = a.record.id;
    let mut sc = Script::default();
    let window = a.window;
    let mut seen_alerts = vec![];
    let mut flushes = 0;
    let mut turns = 0;
    for i in 0..30 {
        turns += 1;
        let r = a
            .turn(&mut sc, &format!("message {i}: tell me something about the number {i} please"), &mut Collect(vec![]))
            .unwrap();
        flushes += r.flushes;
        // A turn that flushed says what the flushes cost.
        assert_eq!(r.flush_seconds > 0.0, r.flushes > 0, "{r:?}");
        seen_alerts.push(alerts(&s, id));
        let tokens = a.prompt_tokens().unwrap().len();
        assert!(tokens <= window, "prompt {tokens} > window {window}");
        if flushes >= 2 {
            break;
        }
    }
    assert!(flushes >= 2, "the queue was flushed");
    // One alert per crossing: the count steps up by at most one between flushes.
    assert!(seen_alerts.windows(2).all(|w| w[1] <= w[0] + 1));
    assert!(*seen_alerts.last().unwrap() >= 1);
    assert_eq!(sc.summaries, flushes);
    // Recall bookkeeping: nothing lost, evicted messages marked out of context.
    let all = s.messages(id).unwrap();
    let in_ctx = s.context_messages(id).unwrap();
    let summary = s.summary(id).unwrap();
    assert_eq!(summary.text, format!("summary number {flushes}"));
    assert_eq!(summary.messages_covered as usize, all.len() - in_ctx.len());
    assert!(in_ctx[0].role != MessageRole::Function, "a call is never split from its result");
    assert_eq!(all.iter().filter(|m| m.role == MessageRole::User).count(), turns, "every user message kept");
    assert!(decoded(model(), &a.prompt_tokens().unwrap()).contains("summary number"));
}

#[test]
fn a_pressure_alert_waits_for_the_next_turn_rather_than_come_between_a_result_and_the_answer() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(1400))).unwrap();
    let id = a.record.id;
    let mut sc = Script::default();
    let mut alerted_turns = 0;
    for i in 0..24 {
        // Three steps a turn, so the prompt crosses the threshold in mid-turn as often as not.
        sc.calls.push_back(call("conversation_search", json!({"query": format!("number {i}"), "page": 1})));
        sc.calls.push_back(call("core_memory_append", json!({"label": "human", "content": "x"})));
        sc.calls.push_back(say(&format!("about {i}")));
        let before = alerts(&s, id);
        a.turn(&mut sc, &format!("message {i}: tell me about the number {i}"), &mut Collect(vec![])).unwrap();
        alerted_turns += usize::from(alerts(&s, id) > before);
    }
    assert!(alerted_turns >= 2, "the threshold was crossed: {alerted_turns} alerts");
    // Every alert came at a turn's first step, right after the user's message.
    let all = s.messages(id).unwrap();
    for (k, _) in all.iter().enumerate().filter(|(_, m)| m.content.contains("\"system_alert\"")) {
        assert!(all[k - 1].content.contains("\"user_message\""), "alert after {:?}", all[k - 1]);
    }
}

#[test]
fn resume_after_restart_restores_core_memory_queue_and_summary() {
    let (d, s) = setup();
    let before;
    {
        let mut a = Agent::open(&s, model(), None, "bot", Some(w(1400))).unwrap();
        let mut sc = Script::default();
        sc.calls.push_back(call("core_memory_append", json!({"label": "human", "content": "Likes chess"})));
        a.turn(&mut sc, "I like chess", &mut Collect(vec![])).unwrap();
        a.flush(&mut sc).unwrap();
        a.turn(&mut sc, "and tennis", &mut Collect(vec![])).unwrap();
        before =
            (a.prompt_tokens().unwrap(), s.context_messages(a.record.id).unwrap(), s.summary(a.record.id).unwrap());
    }
    drop(s);
    let s = MemoryStore::open(d.path()).unwrap();
    let a = Agent::open(&s, model(), None, "bot", Some(w(1400))).unwrap();
    assert_eq!(s.block(a.record.id, "human").unwrap().value, "Name: Ana\nLikes chess");
    assert_eq!(s.context_messages(a.record.id).unwrap(), before.1);
    assert_eq!(s.summary(a.record.id).unwrap(), before.2);
    // The very same prompt, working context included (its stats are as of the last refresh,
    // not re-counted at load), so a saved KV state covers all of it.
    assert!(a.prompt_tokens().unwrap() == before.0, "the same main context after a restart");
    drop(a);
    // Core memory changed while the agent was closed: the next load shows it.
    let id = s.agent("bot").unwrap().id;
    s.set_block(id, "human", "Name: Ana\nLikes go", 2000).unwrap();
    let a = Agent::open(&s, model(), None, "bot", Some(w(1400))).unwrap();
    assert!(decoded(model(), &a.prompt_tokens().unwrap()).contains("Likes go"));
}

#[test]
fn a_window_smaller_than_the_system_prompt_is_a_clear_error() {
    let (_d, s) = setup();
    let err = Agent::open(&s, model(), None, "bot", Some(w(300))).err().unwrap().to_string();
    assert!(err.contains(&format!("context window ({} tokens) is smaller than the system prompt", w(300))), "{err}");
}

#[test]
fn export_import_round_trips() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(call("archival_memory_insert", json!({"content": "Ana's cat is Tom"})));
    a.turn(&mut sc, "my cat is Tom", &mut Collect(vec![])).unwrap();
    a.flush(&mut sc).unwrap();
    let ex = pagemind::agent::export_agent(&s, "bot").unwrap();
    let text = serde_json::to_string(&ex).unwrap();
    let back: pagemind::agent::AgentExport = serde_json::from_str(&text).unwrap();
    pagemind::agent::import_agent(&s, &back, Some("bot2")).unwrap();
    let mut again = pagemind::agent::export_agent(&s, "bot2").unwrap();
    again.agent.name = "bot".into();
    assert_eq!(again.without_ids(), ex.without_ids());
}

/// The tools the memory-first rule allows when archival memory holds something (the two
/// searches, in the tool list's order); an empty archive leaves only `conversation_search`.
const MEMORY_RULE: &str = "archival_memory_search,conversation_search";

#[test]
fn a_user_turn_opens_with_a_memory_search_unless_configured_otherwise() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(call("conversation_search", json!({"query": "Porto", "page": 1})));
    sc.calls.push_back(call("core_memory_append", json!({"label": "human", "content": "Lives in Porto"})));
    sc.calls.push_back(say("Porto is lovely."));
    let r = a.turn(&mut sc, "I moved to Porto.", &mut Collect(vec![])).unwrap();
    assert_eq!(
        sc.restricted,
        [Some("conversation_search".to_string()), None, None],
        "restricted first step, then free"
    );
    assert_eq!(r.messages, ["Porto is lovely."]);
    // The greeting at login answers no user message: no rule.
    let mut sc = Script::default();
    a.login_and_greet(&mut sc, &mut Collect(vec![])).unwrap();
    assert_eq!(sc.restricted, [None]);
    // Once archival memory holds something, it may be searched first too.
    sc.calls.push_back(call("archival_memory_insert", json!({"content": "Ana moved to Porto in May."})));
    a.turn(&mut sc, "Remember that I moved in May.", &mut Collect(vec![])).unwrap();
    let mut sc = Script::default();
    a.turn(&mut sc, "When did I move?", &mut Collect(vec![])).unwrap();
    assert_eq!(sc.restricted[0], Some(MEMORY_RULE.to_string()));
    // Switched off, the first step is free.
    configure(&s, |c| c.memory_first = false);
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    a.turn(&mut sc, "hi", &mut Collect(vec![])).unwrap();
    assert_eq!(sc.restricted, [None]);
}

#[test]
fn opening_an_agent_removes_what_a_killed_kv_save_left() {
    let (_d, s) = setup();
    let kv = s.kv_dir();
    std::fs::create_dir_all(&kv).unwrap();
    for f in [".kv-Ab12Cd.tmp", "agent-1.kv", "prefix-x.kv"] {
        std::fs::write(kv.join(f), b"bytes").unwrap();
    }
    Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut left: Vec<String> =
        std::fs::read_dir(&kv).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    left.sort();
    assert_eq!(left, ["agent-1.kv", "prefix-x.kv"]);
}

#[test]
fn core_memory_edits_reach_the_working_context_at_the_next_user_turn() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(call("core_memory_append", json!({"label": "human", "content": "Plays the oboe"})));
    a.turn(&mut sc, "I play the oboe", &mut Collect(vec![])).unwrap();
    let system_part = |p: &[u32]| decoded(model(), p).split("<|im_start|>user").next().unwrap().to_string();
    assert!(!system_part(&sc.prompts[1]).contains("Plays the oboe"), "not re-rendered mid-turn");
    a.turn(&mut sc, "hello", &mut Collect(vec![])).unwrap();
    assert!(system_part(sc.prompts.last().unwrap()).contains("Plays the oboe"));
    // Unchanged core memory leaves the prefix alone.
    let before = a.prompt_tokens().unwrap();
    assert!(!a.refresh_if_changed().unwrap());
    assert_eq!(a.prompt_tokens().unwrap(), before);
}

#[test]
fn at_login_the_agent_speaks_first() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(say("Welcome back, Ana!"));
    let r = a.login_and_greet(&mut sc, &mut Collect(vec![])).unwrap();
    assert_eq!(r.messages, ["Welcome back, Ana!"]);
    let q = s.context_messages(a.record.id).unwrap();
    assert!(q[0].content.contains("\"login\""), "{}", q[0].content);
}

#[test]
fn an_empty_message_is_refused_and_retried() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(say("  "));
    sc.calls.push_back(say("Hi!"));
    let r = a.turn(&mut sc, "hello", &mut Collect(vec![])).unwrap();
    assert_eq!(r.steps[0].status, "Failed");
    assert_eq!(r.messages, ["Hi!"]);
}

#[test]
fn a_lone_message_too_big_for_a_tiny_window_goes_into_the_summary() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(1024))).unwrap();
    let mut sc = Script::default();
    // ~400 tokens: with SmolLM2's ~680-token system message no queue can hold it.
    let long = "Here is a very long note about my garden, my tomatoes and my bees. ".repeat(25);
    let r = a.turn(&mut sc, &long, &mut Collect(vec![])).unwrap();
    assert!(r.flushes >= 1, "{r:?}");
    assert_eq!(r.messages, ["ok"]);
    let id = a.record.id;
    assert_eq!(s.summary(id).unwrap().messages_covered, 1, "the message went into the summary");
    assert!(s.messages(id).unwrap().iter().any(|m| m.content.contains("tomatoes")), "and stays in recall");
}

#[test]
fn messages_are_stored_with_their_token_counts_and_another_models_counts_are_not_trusted() {
    let (_d, s) = setup();
    let m = model();
    let mut a = Agent::open(&s, m, None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(call("core_memory_append", json!({"label": "human", "content": "likes figs"})));
    sc.calls.push_back(say("Noted."));
    a.turn(&mut sc, "I like figs.", &mut Collect(vec![])).unwrap();
    let msgs = s.messages(a.record.id).unwrap();
    assert!(msgs.len() >= 5, "{msgs:?}");
    for msg in &msgs {
        let n = m.tokenizer.encode(&msg.content, true).unwrap().len();
        assert_eq!((msg.tokens as usize, msg.counted_by), (n, m.count_tag()), "{msg:?}");
        assert_eq!(a.message_tokens(msg).unwrap(), n);
    }
    // A count made by another model (or a wrong one) is counted again.
    let mut other = msgs[0].clone();
    other.tokens = 1;
    other.counted_by = m.count_tag() ^ 1;
    assert_eq!(a.message_tokens(&other).unwrap(), msgs[0].tokens as usize);
    other.counted_by = m.count_tag();
    assert_eq!(a.message_tokens(&other).unwrap(), 1, "its own count is taken as stored");
}

#[test]
fn after_a_turn_consolidation_saves_the_statements_the_model_chooses_once() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(say("Nice, Lisbon is lovely!"));
    // The pass sees the statements numbered (not the question); numbers out of range are ignored.
    sc.notes.push_back("2, 7".into());
    let mut obs = Collect(vec![]);
    let r = a.turn(&mut sc, "Guess what? It rained. I live in Lisbon now.", &mut obs).unwrap();
    let c = r.consolidation.expect("a pass after the turn");
    assert_eq!((c.messages, c.sentences), (1, 2));
    assert_eq!(c.saved_core, ["The user said: I live in Lisbon now."]);
    assert_eq!(s.block(a.record.id, "human").unwrap().value, "Name: Ana\nThe user said: I live in Lisbon now.");
    assert!(obs.0.contains(&"consolidate -> core memory human: The user said: I live in Lisbon now.".to_string()));
    // The pass read what the user said, not the agent's own reply.
    let pass = decoded(model(), &sc.consolidate_prompts[0]);
    assert!(pass.contains("1. It rained.\n2. I live in Lisbon now."), "{pass}");
    assert!(!pass.contains("Guess what") && !pass.contains("Lisbon is lovely"), "{pass}");
    // The next turn's prompt keeps its prefix (the message is still in view); its pass reads
    // only the new message, and a question alone needs no model call.
    sc.calls.push_back(say("ok"));
    let r = a.turn(&mut sc, "What is new?", &mut Quiet).unwrap();
    assert!(!decoded(model(), &sc.prompts[1]).contains("The user said:"));
    let c = r.consolidation.unwrap();
    assert_eq!((c.messages, c.sentences, sc.consolidate_prompts.len()), (1, 0, 1));
    // A statement the block holds already is not saved twice; a replayed speaker is named.
    sc.notes.push_back("1, 2".into());
    let at = chrono::Utc::now();
    let r = a.turn_at(&mut sc, "I live in Lisbon now. I play chess.", Some("Ana"), at, &mut Quiet).unwrap();
    assert_eq!(r.consolidation.unwrap().saved_core, ["Ana said: I live in Lisbon now.", "Ana said: I play chess."]);
    sc.notes.push_back("1".into());
    let r = a.turn_at(&mut sc, "I play chess.", Some("Ana"), at, &mut Quiet).unwrap();
    assert!(r.consolidation.unwrap().saved_core.is_empty());
    // A new process shows the same prefix; a flush (the messages leave the queue) shows the facts.
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    assert!(!a.working_text().contains("said:"), "{}", a.working_text());
    a.flush(&mut sc).unwrap();
    assert!(a.working_text().contains("The user said: I live in Lisbon now.\nAna said: I live in Lisbon now."));
}

#[test]
fn consolidation_runs_every_n_turns_and_not_at_all_when_off() {
    let (_d, s) = setup();
    configure(&s, |c| c.consolidate_every = 2);
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.notes.push_back("1".into());
    assert!(a.turn(&mut sc, "I play the violin", &mut Quiet).unwrap().consolidation.is_none());
    let c = a.turn(&mut sc, "and the piano", &mut Quiet).unwrap().consolidation.unwrap();
    assert_eq!((c.messages, c.sentences), (2, 2));
    assert_eq!(c.saved_core, ["The user said: I play the violin"]);
    configure(&s, |c| c.consolidate_every = 0);
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    sc.notes.push_back("1".into());
    assert!(a.turn(&mut sc, "I play the drums", &mut Quiet).unwrap().consolidation.is_none());
    assert_eq!(sc.notes.len(), 1, "no pass ran");
}

#[test]
fn a_fact_replaces_the_placeholder_and_goes_to_archival_memory_when_core_memory_is_full() {
    let (_d, s) = setup();
    let id = s.agent("bot").unwrap().id;
    s.set_block(id, "human", pagemind::memory::DEFAULT_HUMAN, 60).unwrap();
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.notes.push_back("1".into());
    a.turn(&mut sc, "I'm Ana and I live in Lisbon.", &mut Quiet).unwrap();
    assert_eq!(s.block(id, "human").unwrap().value, "The user said: I'm Ana and I live in Lisbon.");
    // The block (60 characters) has no room for this one: archival memory takes it.
    sc.notes.push_back("1".into());
    let c = a.turn(&mut sc, "I work as a marine biologist.", &mut Quiet).unwrap();
    let c = c.consolidation.unwrap();
    assert!(c.saved_core.is_empty());
    assert_eq!(c.saved_archival, ["The user said: I work as a marine biologist."]);
    let passages = s.passages_where(id, |_| true).unwrap();
    assert_eq!(passages.len(), 1);
    assert_eq!(passages[0].text, "The user said: I work as a marine biologist.");
}

#[test]
fn a_reply_that_repeats_the_users_words_is_refused_once_and_the_answer_follows() {
    let (_d, s) = setup();
    configure(&s, |c| c.memory_first = false);
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    let q = "What is my cat's name? Answer in a short phrase.";
    sc.calls.extend([say("what is my cat's name"), say("Biscuit.")]);
    let r = a.turn(&mut sc, q, &mut Quiet).unwrap();
    assert_eq!(r.messages, ["Biscuit."]);
    assert_eq!(r.steps[0].status, "Failed");
    assert!(r.steps[0].result.contains("repeats the user's own words"), "{}", r.steps[0].result);
    assert_eq!(sc.restricted, [None, Some("send_message".to_string())], "the answer comes next");
    // The refused words stay in the queue as the model wrote them, but recall never shows them
    // as something the agent said: only the user's question matches.
    let found = s.recall_search(a.record.id, "cat name", 0, 10).unwrap();
    let texts: Vec<String> = found.items.iter().filter_map(|m| m.conversation_text()).collect();
    assert_eq!(texts, [q], "{texts:?}");
    assert!(s.context_messages(a.record.id).unwrap().iter().any(|m| m.unsent), "the refused step is queued");
    // A second echo in the same turn is sent: the guard never leaves a turn without a message.
    sc.calls.extend([say(q), say(q)]);
    let r = a.turn(&mut sc, q, &mut Quiet).unwrap();
    assert_eq!((r.messages.as_slice(), r.steps.len()), ([q.to_string()].as_slice(), 2));
    // Nor does it on the turn's last allowed step, and a reply that answers is never refused.
    configure(&s, |c| c.max_steps = 1);
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    sc.calls.push_back(say(q));
    assert_eq!(a.turn(&mut sc, q, &mut Quiet).unwrap().messages, [q]);
    configure(&s, |c| c.max_steps = 4);
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    sc.calls.push_back(say("Your cat's name is Biscuit."));
    let r = a.turn(&mut sc, q, &mut Quiet).unwrap();
    assert_eq!((r.messages.as_slice(), r.steps.len()), (["Your cat's name is Biscuit.".to_string()].as_slice(), 1));
}

#[test]
fn a_stopped_clock_times_every_event_of_a_turn() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2024-01-01T09:00:00Z").unwrap().to_utc();
    a.set_clock(Some(at));
    assert_eq!(a.now(), at);
    let mut sc = Script::default();
    sc.calls.push_back(call("archival_memory_insert", json!({"content": "Ana loves mangoes"})));
    sc.calls.push_back(call("conversation_search", json!({"query": "fruit", "page": 1})));
    sc.calls.push_back(say("You love mangoes!"));
    a.turn(&mut sc, "what do I like?", &mut Quiet).unwrap();
    a.login().unwrap();
    let all = s.messages(a.record.id).unwrap();
    assert_eq!(all.len(), 8, "a user message, three calls, three results and a login");
    for m in &all {
        assert_eq!(m.created_at, at.timestamp_millis(), "{}", m.content);
        if m.role != MessageRole::Assistant {
            assert!(m.content.contains("\"time\":\"2024-01-01 09:00\""), "{}", m.content);
        }
    }
    // Restarted, the clock follows the wall clock again.
    a.set_clock(None);
    sc.calls.push_back(say("Hi"));
    a.turn(&mut sc, "hello", &mut Quiet).unwrap();
    let last = s.messages(a.record.id).unwrap().pop().unwrap();
    assert!(last.created_at > at.timestamp_millis() && (chrono::Utc::now() - a.now()).num_seconds().abs() < 5);
}

#[test]
fn a_core_memory_write_that_copies_is_refused_with_the_reason() {
    let (_d, s) = setup();
    configure(&s, |c| c.memory_first = false);
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let id = a.record.id;
    let mut sc = Script::default();
    sc.calls.extend([
        call("core_memory_append", json!({"label": "persona", "content": "I'm learning to play the violin."})),
        call("core_memory_append", json!({"label": "human", "content": "Ana is learning to play the violin."})),
        call("core_memory_append", json!({"label": "human", "content": "ana is learning to PLAY the violin"})),
        call("core_memory_replace", json!({"label": "human", "old_content": "Ana is learning to play the violin.", "new_content": "Ana is learning to play the violin and the cello."})),
        say("Noted!"),
    ]);
    let mut obs = Collect(vec![]);
    let r = a.turn(&mut sc, "Oh, and I'm learning to play the violin!", &mut obs).unwrap();
    let status: Vec<&str> = r.steps.iter().map(|s| s.status).collect();
    assert_eq!(status, ["Failed", "OK", "Failed", "OK", "OK"], "{:?}", r.steps);
    assert!(
        r.steps[0].result.contains("is about you") && r.steps[0].result.contains("block 'human'"),
        "{}",
        r.steps[0].result
    );
    assert!(
        r.steps[2].result.contains("already holds \"ana is learning to PLAY the violin\""),
        "{}",
        r.steps[2].result
    );
    assert_eq!(obs.0[0], "core_memory_append persona -> refused: a copy");
    assert_eq!(s.block(id, "persona").unwrap().value, "I am Bot.");
    assert_eq!(s.block(id, "human").unwrap().value, "Name: Ana\nAna is learning to play the violin and the cello.");
}
