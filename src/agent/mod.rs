/*! The agent: virtual context management and the event loop.

[`Agent::open`] loads an agent's record, core memory, summary and FIFO queue from the
[`MemoryStore`]. [`Agent::turn`] handles one user message: each step renders main context
(`context`), decodes one grammar-constrained call ([`crate::grammar`]), runs its handler
(`tools`) and appends the call and its result to recall storage, durably, before anything is
shown. `send_message` ends the turn; every other function (and a failed call) runs another
step, and the last step the per-turn limit allows may only call `send_message`, so every turn
ends with a message to the user. Before each step the
queue manager (`pressure`) sends the memory-pressure alert once per crossing of the warning
threshold and, at the flush threshold, evicts the oldest messages into a new recursive summary.

Decoding goes through a [`StepModel`], so the loop is tested against a scripted stand-in.
*/

mod chain;
mod choice;
mod consolidate;
mod context;
mod core_guard;
mod echo;
mod events;
mod export;
mod handlers;
mod kv_state;
mod pressure;
mod prompts;
mod result_fit;
mod when;

pub use consolidate::{chosen, statements, Consolidation, CONSOLIDATED_STATE};
pub use context::{instructions, working_context, ContextReport, MainContext};
pub use events::{to_chat, user_message, user_message_at, user_text};
pub use export::{
    export_agent, import_agent, validate as validate_export, AgentExport, EXPORT_FORMAT, MAX_EXPORT_BYTES,
};
pub use kv_state::KvState;
pub use pressure::FlushCost;

use crate::embed::Embedder;
use crate::grammar::{decode_step, MessageStream, StepFormat, StepGrammar, StepStats, ToolCall};
use crate::memory::{AgentRecord, MemoryStore, Message, MessageRole, Passage};
use crate::runtime::{ChatModel, PromptEncoder, Sampler, SamplerConfig, Session};
use crate::tools::{builtin_tools, Builtin, ToolSpec, PAGE_SIZE, SEND_MESSAGE};
use crate::{Error, Result};
use handlers::Outcome;
use serde::Serialize;
use std::time::Instant;

/// Agent state key of the working context's text and the blocks it shows.
const WORKING_STATE: &str = "working_context";
/// Agent state set (durably) before a reply's first streamed piece is shown and cleared once the
/// reply is committed: if a process dies in between, the next one records in recall that the
/// user saw a reply that was cut off ([`Agent::open`]).
pub const SHOWING_STATE: &str = "showing_reply";

/// Characters of a function result shown to the model, at most.
pub const RESULT_LIMIT: usize = 3000;

/// Tokens kept free for the next step (its call) when deciding to flush, at most.
pub const STEP_RESERVE: usize = 256;

/// The room kept for one step in a window of `window` tokens: an eighth of it, from 64 up to
/// [`STEP_RESERVE`] (a 1,024-token window cannot spare 256 beside a ~600-token system
/// message; a step that outgrows the reserve flushes and is taken again).
pub fn step_reserve(window: usize) -> usize {
    (window / 8).clamp(64, STEP_RESERVE)
}

/// Repetition penalty of agent steps: small models otherwise repeat one sentence until a
/// string's length bound (the grammar forces the JSON structure, so only free text is affected).
pub const AGENT_REPEAT_PENALTY: f32 = 1.15;

/// Default sampling of agent steps: greedy with [`AGENT_REPEAT_PENALTY`] over the last 64 tokens.
pub fn agent_sampling() -> SamplerConfig {
    SamplerConfig { repeat_penalty: AGENT_REPEAT_PENALTY, ..SamplerConfig::greedy() }
}

/// Default context window when neither the agent nor the command sets one.
pub const DEFAULT_WINDOW: usize = 2048;

/// Produces one step's call for a prompt. The real one decodes with the model under the
/// grammar; tests script one.
pub trait StepModel {
    /// Decode one call for `prompt` (token ids of the rendered main context).
    fn step(&mut self, prompt: &[u32], on_token: &mut dyn FnMut(u32)) -> Result<(ToolCall, String, StepStats)>;
    /// One step that may call only the tools named in `only` (a tool rule: document QA's first
    /// search, the memory step that opens a user turn, the last step's reply). Models that
    /// cannot restrict themselves (scripted stand-ins) take a normal step.
    fn step_only(
        &mut self,
        prompt: &[u32],
        only: &[&str],
        on_token: &mut dyn FnMut(u32),
    ) -> Result<(ToolCall, String, StepStats)> {
        let _ = only;
        self.step(prompt, on_token)
    }
    /// Free text for a summary request (no grammar).
    fn summarize(&mut self, prompt: &[u32], max_tokens: usize) -> Result<Summarized>;
    /// Free text for a sleep-time consolidation request (no grammar), or `None` where the model
    /// does not consolidate (the default: scripted stand-ins that do not script it).
    fn consolidate(&mut self, prompt: &[u32], max_tokens: usize) -> Result<Option<Summarized>> {
        let _ = (prompt, max_tokens);
        Ok(None)
    }
}

/// A summary and what it cost.
#[derive(Debug, Clone, Default)]
pub struct Summarized {
    pub text: String,
    /// Prompt tokens run through the model, and those whose KV came from the cache.
    pub tokens_evaluated: usize,
    pub tokens_reused: usize,
}

/// The model-backed [`StepModel`].
pub struct LlmSteps<'m> {
    pub grammar: StepGrammar,
    /// Grammars allowing a subset of the tools, built on first use (keyed by the names).
    only: std::collections::HashMap<String, StepGrammar>,
    tools: Vec<ToolSpec>,
    format: StepFormat,
    pub session: Session<'m>,
    pub sampler: Sampler,
    /// The session of consolidation passes, made on first use: the main session keeps its
    /// cached prompt, and this one keeps the passes' shared prefix.
    side: Option<Session<'m>>,
}

impl<'m> LlmSteps<'m> {
    /// Grammar over `tools`, a session of `window` tokens, greedy sampling unless `sampling` given.
    pub fn new(
        model: &'m ChatModel,
        tools: &[ToolSpec],
        window: usize,
        sampling: Option<SamplerConfig>,
    ) -> Result<Self> {
        let format = StepFormat::of(model);
        Ok(Self {
            grammar: StepGrammar::new(model, tools, format)?,
            only: Default::default(),
            tools: tools.to_vec(),
            format,
            session: Session::new(model, window)?,
            sampler: Sampler::new(sampling.unwrap_or_else(agent_sampling)),
            side: None,
        })
    }
}

impl StepModel for LlmSteps<'_> {
    fn step(&mut self, prompt: &[u32], on_token: &mut dyn FnMut(u32)) -> Result<(ToolCall, String, StepStats)> {
        let s = decode_step(&self.grammar, &mut self.session, prompt, &mut self.sampler, on_token)?;
        Ok((s.call, s.text, s.stats))
    }

    fn step_only(
        &mut self,
        prompt: &[u32],
        only: &[&str],
        on_token: &mut dyn FnMut(u32),
    ) -> Result<(ToolCall, String, StepStats)> {
        let key = only.join(",");
        if !self.only.contains_key(&key) {
            // The restricted step is the first of its kind in a turn: paging starts at page 1.
            let mut tools: Vec<ToolSpec> = self.tools.iter().filter(|t| only.contains(&t.name)).cloned().collect();
            for p in tools.iter_mut().flat_map(|t| t.params.iter_mut()).filter(|p| p.name == "page") {
                p.ty = crate::tools::ParamType::Integer { min: 1, max: 1 };
            }
            if tools.is_empty() {
                return self.step(prompt, on_token);
            }
            let g = StepGrammar::new(self.session.model(), &tools, self.format)?;
            self.only.insert(key.clone(), g);
        }
        let g = &self.only[&key];
        let s = decode_step(g, &mut self.session, prompt, &mut self.sampler, on_token)?;
        Ok((s.call, s.text, s.stats))
    }

    /// On the main session: the summary prompt opens with main context's system message, so
    /// its KV comes from the cache, and the next step reuses it again.
    fn summarize(&mut self, prompt: &[u32], max_tokens: usize) -> Result<Summarized> {
        // Greedy with a repetition penalty: small models otherwise loop on one sentence.
        let mut sampler = Sampler::new(SamplerConfig { repeat_penalty: 1.3, ..SamplerConfig::greedy() });
        let g = self.session.generate(prompt, &mut sampler, max_tokens, None, |_| Ok(true))?;
        Ok(Summarized {
            text: self.session.model().tokenizer.decode(&g.tokens, true)?,
            tokens_evaluated: g.prompt.evaluated,
            tokens_reused: g.prompt.reused,
        })
    }

    /// On a session of its own (the `side` field), greedy with a light repetition penalty.
    fn consolidate(&mut self, prompt: &[u32], max_tokens: usize) -> Result<Option<Summarized>> {
        let model = self.session.model();
        if self.side.is_none() {
            self.side = Some(Session::new(model, self.session.n_ctx())?);
        }
        let side = self.side.as_mut().expect("made above");
        let mut sampler = Sampler::new(SamplerConfig { repeat_penalty: 1.1, ..SamplerConfig::greedy() });
        let g = side.generate(prompt, &mut sampler, max_tokens, None, |_| Ok(true))?;
        Ok(Some(Summarized {
            text: model.tokenizer.decode(&g.tokens, true)?,
            tokens_evaluated: g.prompt.evaluated,
            tokens_reused: g.prompt.reused,
        }))
    }
}

/// Callbacks for a UI. All have no-op defaults.
pub trait Observer {
    /// Text of a `send_message` as it is generated.
    fn message_delta(&mut self, _text: &str) {}
    /// A complete message to the user (already stored).
    fn message(&mut self, _text: &str) {}
    /// The message streamed so far was abandoned (its step outgrew the window and is taken
    /// again after a flush); recall records that it was cut off.
    fn message_cut(&mut self) {}
    /// One line describing a memory operation.
    fn memory_op(&mut self, _line: &str) {}
    /// A finished step.
    fn step(&mut self, _record: &StepRecord) {}
    /// Whether the user asked to stop (Ctrl-C).
    fn cancelled(&mut self) -> bool {
        false
    }
}

/// An [`Observer`] that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// What one step did, for `pagemind ask --json` and evaluations.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: usize,
    pub function: String,
    pub arguments: serde_json::Value,
    pub thoughts: String,
    pub status: &'static str,
    pub result: String,
    /// Whether the turn went on after this step (every call but a successful `send_message`).
    pub continues: bool,
    /// Ids of the recall messages or archival passages this step's search showed the model.
    pub hits: Vec<u64>,
    /// Prompt tokens of main context for this step.
    pub prompt_tokens: usize,
    pub tokens_evaluated: usize,
    pub tokens_reused: usize,
    pub step_tokens: usize,
    pub forced_tokens: usize,
    pub mask_ms: f64,
    pub prompt_ms: f64,
    pub total_ms: f64,
}

/// What one user turn did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnResult {
    /// Messages sent to the user.
    pub messages: Vec<String>,
    pub steps: Vec<StepRecord>,
    /// Whether the per-turn step limit stopped the turn.
    pub step_limit_hit: bool,
    /// Queue flushes (summaries) during the turn.
    pub flushes: usize,
    /// What the flushes cost: summary prompt tokens evaluated and reused, and seconds (the
    /// summary's generation included).
    pub flush_tokens_evaluated: usize,
    pub flush_tokens_reused: usize,
    pub flush_seconds: f64,
    /// The sleep-time consolidation pass run after the turn, if one was due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consolidation: Option<Consolidation>,
    /// Passages retrieved by archival search during the turn (for citations).
    #[serde(skip)]
    pub retrieved: Vec<Passage>,
}

/// A live agent.
pub struct Agent<'a> {
    pub store: &'a MemoryStore,
    pub model: &'a ChatModel,
    embedder: Option<&'a Embedder>,
    pub record: AgentRecord,
    pub tools: Vec<ToolSpec>,
    instructions: String,
    /// Working context as of the last refresh.
    working: String,
    /// The core-memory blocks that `working` shows.
    working_blocks: Vec<crate::memory::Block>,
    /// Tokens of the system message (instructions and working context).
    fixed_tokens: usize,
    /// Encodes each step's prompt, re-encoding only the messages new since the last step.
    encoder: std::cell::RefCell<PromptEncoder>,
    /// The context window in tokens.
    pub window: usize,
    /// Results per page for searches.
    pub page_size: usize,
    pub result_limit: usize,
    retrieved: Vec<Passage>,
    /// Where the links an archival search followed this turn end ([`chain`]).
    chain: Option<chain::Chain>,
    /// Archival searches run in the current turn (bounded by the config's `max_searches`).
    searches: usize,
    /// Id of the message that started the current turn: recall search sees only older ones.
    turn_floor: u64,
    /// The agent's clock ([`Agent::set_clock`]), in ms; `None`: the wall clock. Every event
    /// of a turn (its messages' times and the times the model reads) comes from it.
    clock: Option<i64>,
}

impl<'a> Agent<'a> {
    /// Load an agent. `window` overrides the agent's configured context window.
    pub fn open(
        store: &'a MemoryStore,
        model: &'a ChatModel,
        embedder: Option<&'a Embedder>,
        name: &str,
        window: Option<usize>,
    ) -> Result<Self> {
        let mut record = store.agent(name)?;
        let window = window
            .or((record.config.context_window > 0).then_some(record.config.context_window))
            .unwrap_or(DEFAULT_WINDOW)
            .min(model.weights.config.context_length);
        let labels: Vec<String> = store.blocks(record.id)?.into_iter().map(|b| b.label).collect();
        let tools = builtin_tools(&labels);
        let instructions =
            instructions(&record.name, &tools, StepFormat::of(model), record.config.max_searches, window);
        record.last_used = crate::memory::now_ms();
        store.update_agent(&record)?;
        let mut a = Self {
            store,
            model,
            embedder,
            record,
            tools,
            instructions,
            working: String::new(),
            working_blocks: vec![],
            fixed_tokens: 0,
            encoder: std::cell::RefCell::new(PromptEncoder::new(&model.tokenizer)),
            window,
            page_size: PAGE_SIZE,
            result_limit: RESULT_LIMIT,
            retrieved: vec![],
            chain: None,
            searches: 0,
            turn_floor: u64::MAX,
            clock: None,
        };
        a.load_working_context()?;
        // A process killed while saving KV state left its temporary file; this one holds the
        // store's lock, so no other is saving now.
        crate::runtime::remove_stale_temp_files(&store.kv_dir());
        if a.store.get_state(a.record.id, SHOWING_STATE)?.is_some_and(|v| v == serde_json::json!(true)) {
            a.push(events::system_alert(prompts::CUT_OFF, a.now()))?;
            a.store.set_state(a.record.id, SHOWING_STATE, &serde_json::Value::Null)?;
        }
        let system = a.fixed_tokens;
        let reserve = step_reserve(a.window);
        if system + reserve > a.window {
            return Err(Error::Invalid(format!(
                "the context window ({} tokens) is smaller than the system prompt and core memory ({system} tokens) plus room for one step ({reserve}): use a larger --context-window",
                a.window
            )));
        }
        Ok(a)
    }

    /// Re-read core memory and stats into the working context (changes the prompt prefix).
    /// The text is saved with the agent, so the next process shows the same one.
    pub fn refresh_working_context(&mut self) -> Result<()> {
        let id = self.record.id;
        let blocks = self.store.blocks(id)?;
        let text = working_context(&blocks, self.store.message_count(id)?, self.store.passage_count(id)?);
        save_working(self.store, id, &blocks, &text)?;
        self.set_working(blocks, text)
    }

    /// The working context as the last process left it when core memory has not changed since
    /// (its stats are as of that refresh, as within a process): a new process then renders the
    /// same prompt prefix, and the saved KV state covers all of it. Otherwise a refresh.
    fn load_working_context(&mut self) -> Result<()> {
        let blocks = self.store.blocks(self.record.id)?;
        if let Some(saved) = self.store.get_state(self.record.id, WORKING_STATE)? {
            let same = serde_json::to_value(&blocks).is_ok_and(|b| saved["blocks"] == b);
            if let (true, Some(text)) = (same, saved["text"].as_str()) {
                return self.set_working(blocks, text.to_string());
            }
        }
        self.refresh_working_context()
    }

    fn set_working(&mut self, blocks: Vec<crate::memory::Block>, text: String) -> Result<()> {
        self.fixed_tokens =
            self.model.tokenizer.encode(&context::system_message(&self.instructions, &text), true)?.len();
        self.working = text;
        self.working_blocks = blocks;
        Ok(())
    }

    /// Refresh the working context if core memory changed since the last refresh (at the
    /// start of each user turn). Costs a re-evaluation of everything after the working
    /// context, so it happens only when a block really changed.
    pub fn refresh_if_changed(&mut self) -> Result<bool> {
        if self.store.blocks(self.record.id)? == self.working_blocks {
            return Ok(false);
        }
        self.refresh_working_context()?;
        Ok(true)
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let e = self
            .embedder
            .ok_or_else(|| Error::Memory("archival memory is unavailable: no embedding model loaded".into()))?;
        Ok(e.embed(&[text])?.remove(0))
    }

    /// Main context as it stands.
    pub fn main_context(&self) -> Result<(crate::memory::Summary, Vec<Message>)> {
        Ok((self.store.summary(self.record.id)?, self.store.context_messages(self.record.id)?))
    }

    /// Render main context as it stands and hand it to `f`.
    fn with_context<T>(&self, f: impl FnOnce(&MainContext) -> Result<T>) -> Result<T> {
        let (summary, queue) = self.main_context()?;
        f(&MainContext {
            instructions: &self.instructions,
            working: &self.working,
            summary: &summary,
            queue: &queue,
            format: StepFormat::of(self.model),
        })
    }

    /// Token ids of the current prompt. Main context comes from memory (the store's
    /// write-through copy) and only messages new since the last call are tokenized.
    pub fn prompt_tokens(&self) -> Result<Vec<u32>> {
        let text = self.with_context(|c| self.model.render_chat(&c.messages(), true))?;
        self.encoder.borrow_mut().encode_prompt(&self.model.tokenizer, &text)
    }

    /// The working context as the next prompt shows it (core memory and stats).
    pub fn working_text(&self) -> &str {
        &self.working
    }

    /// Token usage per section.
    pub fn context_report(&self) -> Result<ContextReport> {
        self.with_context(|c| c.report(self.model, self.window))
    }

    /// Append an event to the queue (durable). Conversation messages (what the user said, what
    /// the agent sent) are also embedded for recall search when an embedder is loaded.
    pub fn push(&self, mut m: Message) -> Result<Message> {
        if m.created_at == 0 {
            m.created_at = self.clock.unwrap_or(0);
        }
        m.tokens = self.message_tokens(&m)? as u32;
        m.counted_by = self.model.count_tag();
        let m = self.store.append_message(self.record.id, m)?;
        if let (Some(e), Some(text)) = (self.embedder, m.conversation_text()) {
            let v = e.embed(&[text.as_str()])?.remove(0);
            self.store.put_message_vectors(self.record.id, &[(m.id, v)])?;
        }
        Ok(m)
    }

    /// Tokens a queued message's text takes (the model's tokenizer; the chat template adds a
    /// few around it): the count stored at append when this model made it, else counted now
    /// (a message edited by `/rewrite`, or counted by another model).
    pub fn message_tokens(&self, m: &Message) -> Result<usize> {
        if m.tokens > 0 && m.counted_by == self.model.count_tag() {
            return Ok(m.tokens as usize);
        }
        Ok(self.model.tokenizer.encode(&m.content, true)?.len())
    }

    /// Stop the agent's clock at `at` (`None`: follow the wall clock again). Events then carry
    /// that time whatever the hour, so a run is repeatable: an evaluation asks its questions
    /// at a fixed time, and a model that reads the minute of each function result reads the
    /// same prompt on every run.
    pub fn set_clock(&mut self, at: Option<chrono::DateTime<chrono::Utc>>) {
        self.clock = at.map(|t| t.timestamp_millis());
    }

    /// The time by the agent's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.and_then(chrono::DateTime::from_timestamp_millis).unwrap_or_else(chrono::Utc::now)
    }

    /// The login event that starts a session.
    pub fn login(&self) -> Result<()> {
        let last = self.store.get_state(self.record.id, "last_login")?.and_then(|v| v.as_i64());
        self.push(events::login(last, self.now()))?;
        self.store.set_state(self.record.id, "last_login", &serde_json::json!(self.now().timestamp_millis()))
    }

    /// The login event, then a turn in which the agent speaks first (the paper's
    /// conversation opener: it may look into its memory, then greets the user).
    pub fn login_and_greet(&mut self, steps: &mut dyn StepModel, obs: &mut dyn Observer) -> Result<TurnResult> {
        self.refresh_if_changed()?;
        self.login()?;
        self.run_steps(steps, obs)
    }

    /// Handle one user message: steps until the agent yields or the step limit is hit.
    pub fn turn(&mut self, steps: &mut dyn StepModel, user: &str, obs: &mut dyn Observer) -> Result<TurnResult> {
        self.refresh_if_changed()?;
        self.push(events::user_message_at(user, None, self.now()))?;
        let out = self.run_steps(steps, obs)?;
        self.after_turn(steps, out, obs)
    }

    /// A finished user turn: the sleep-time consolidation pass, if one is due.
    fn after_turn(
        &mut self,
        steps: &mut dyn StepModel,
        mut out: TurnResult,
        obs: &mut dyn Observer,
    ) -> Result<TurnResult> {
        out.consolidation = self.consolidate_if_due(steps)?;
        if let Some(c) = &out.consolidation {
            for f in &c.saved_core {
                obs.memory_op(&format!("consolidate -> core memory human: {f}"));
            }
            for f in &c.saved_archival {
                obs.memory_op(&format!("consolidate -> archival memory: {f}"));
            }
        }
        Ok(out)
    }

    /// A user message with an explicit time (replayed history, e.g. an evaluation's past
    /// sessions): one turn, as [`Agent::turn`], on a clock stopped at `at`, so recall shows the
    /// agent's replies beside the message they answer.
    pub fn turn_at(
        &mut self,
        steps: &mut dyn StepModel,
        user: &str,
        speaker: Option<&str>,
        at: chrono::DateTime<chrono::Utc>,
        obs: &mut dyn Observer,
    ) -> Result<TurnResult> {
        self.refresh_if_changed()?;
        let clock = self.clock.replace(at.timestamp_millis());
        let turn = self.push(events::user_message_at(user, speaker, at)).and_then(|_| self.run_steps(steps, obs));
        self.clock = clock;
        self.after_turn(steps, turn?, obs)
    }

    /// Run steps from the current queue (used by `turn`, `/retry`, `/rethink`, `login`).
    ///
    /// Every function but `send_message` continues the turn, and the turn's last allowed step
    /// may only call `send_message`, so a turn always ends with a message to the user.
    pub fn run_steps(&mut self, steps: &mut dyn StepModel, obs: &mut dyn Observer) -> Result<TurnResult> {
        let mut out = TurnResult::default();
        self.retrieved.clear();
        self.chain = None;
        self.searches = 0;
        let queue = self.store.context_messages(self.record.id)?;
        // Recall search looks at what was said before this turn, not at the turn itself.
        self.turn_floor = queue.iter().rev().find(|m| m.role == MessageRole::User).map_or(u64::MAX, |m| m.id);
        let user_turn = queue.last().is_some_and(|m| m.role == MessageRole::User);
        // The message this turn answers, restated after a search's results (see below).
        let question = queue.last().filter(|_| user_turn).and_then(events::user_text);
        let max = self.record.config.max_steps.max(1);
        // Tool rule: a turn that answers a user message opens with a search of memory (recall or
        // archival), unless the agent is configured otherwise. Searches only: a forced write
        // made a small model save invented facts ("Pizza is my favourite food") when it had
        // nothing to save. An empty archive is not one of them: searching it finds nothing, and
        // after that empty result Qwen2.5-1.5B replied "I don't know" with the fact in core
        // memory (six facts, session 16).
        let archive = self.store.has_passages(self.record.id)?;
        let memory_rule: Vec<&str> = self
            .tools
            .iter()
            .map(|t| t.name)
            .filter(|n| Builtin::of(n).is_some_and(Builtin::is_search))
            .filter(|n| archive || *n != Builtin::ArchivalMemorySearch.name())
            .collect();
        let memory_first = self.record.config.memory_first && user_turn && max > 1 && !memory_rule.is_empty();
        let mut retried = 0;
        let mut answer_forced = false;
        let mut refused = false;
        let mut i = 0;
        while i < max {
            self.manage_pressure(steps, &mut out, i == 0)?;
            let prompt = self.prompt_tokens()?;
            let t0 = Instant::now();
            let mut stream = MessageStream::default();
            let mut cancelled = false;
            let tokenizer = self.model.tokenizer.clone();
            let mut ids = vec![];
            // Document QA: an agent with loaded documents searches them before anything else.
            let doc_mode = self.record.config.search_first && self.store.has_passages(self.record.id)?;
            let search_first = i == 0 && doc_mode && max > 1;
            let only: Option<&[&str]> = if search_first {
                Some(&[Builtin::ArchivalMemorySearch.name()])
            } else if answer_forced || i + 1 == max {
                Some(&[SEND_MESSAGE])
            } else if i == 0 && memory_first {
                Some(&memory_rule)
            } else {
                None
            };
            let (store, agent_id) = (self.store, self.record.id);
            let mut showing = false;
            let mut on_token = |t| {
                ids.push(t);
                if let Ok(text) = tokenizer.decode(&ids, false) {
                    if let Some(d) = stream.delta(&text) {
                        if !showing {
                            showing = store.set_state(agent_id, SHOWING_STATE, &serde_json::json!(true)).is_ok();
                        }
                        obs.message_delta(&d);
                    }
                }
                cancelled |= obs.cancelled();
            };
            let r = match only {
                Some(tool) => steps.step_only(&prompt, tool, &mut on_token),
                None => steps.step(&prompt, &mut on_token),
            };
            let (call, text, stats) = match r {
                Ok(x) => x,
                // The step outgrew the window: flush and take the step again (twice at most:
                // each flush frees more).
                Err(Error::ContextOverflow { .. }) if retried < 2 => {
                    retried += 1;
                    if showing {
                        obs.message_cut();
                        self.push(events::system_alert(prompts::CUT_TOO_LONG, self.now()))?;
                        self.store.set_state(self.record.id, SHOWING_STATE, &serde_json::Value::Null)?;
                    }
                    let cost = self.flush(steps)?;
                    out.add_flush(&cost);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if cancelled {
                return Err(Error::Cancelled);
            }
            // The guards (`echo`, `chain`, `choice`) refuse one reply a turn, never on the last step.
            let reply = call.arguments["message"].as_str().unwrap_or("");
            let refusal = if call.function != SEND_MESSAGE || refused || i + 1 >= max {
                None
            } else if question.as_deref().is_some_and(|q| echo::echoes(reply, q)) {
                Some((prompts::ECHOED.to_string(), "repeats the user"))
            } else if let Some(c) = self.chain.as_ref().and_then(|c| Some((c.stops_short(reply)?, &c.end))) {
                Some((prompts::short_of_end(c.0, c.1, question.as_deref()), "stops at a link"))
            } else {
                let found: Vec<&str> = out
                    .steps
                    .iter()
                    .filter(|s| s.status == "OK" && Builtin::of(&s.function).is_some_and(Builtin::is_search))
                    .map(|s| s.result.as_str())
                    .collect();
                let q = question.as_deref().unwrap_or_default();
                let option = choice::unsupported(reply, q, &found);
                option.map(|u| (prompts::unsupported_choice(&u, q), "an option no result supports"))
            };
            self.push(Message { unsent: refusal.is_some(), ..Message::new(MessageRole::Assistant, text) })?;
            if showing {
                self.store.set_state(self.record.id, SHOWING_STATE, &serde_json::Value::Null)?;
            }
            // A search this turn already ran is not run again: a small model that repeats one
            // has nothing new to look for (at a 1,024-token window Qwen2.5-1.5B repeated the
            // same search in 3 of 6 questions). Its results are shown again, last, where the
            // model reads before it answers, and it answers next.
            let repeated = Builtin::of(&call.function)
                .is_some_and(Builtin::is_search)
                .then(|| out.steps.iter().find(|s| s.function == call.function && s.arguments == call.arguments))
                .flatten();
            let outcome = if let Some(earlier) = repeated {
                answer_forced = true;
                let shown = prompts::same_search(&earlier.result);
                Outcome::new(Ok(shown), format!("{} -> repeated", call.function))
            } else if let Some((why, what)) = refusal {
                (answer_forced, refused) = (true, true);
                Outcome::new(Err(why), format!("{SEND_MESSAGE} -> refused: {what}"))
            } else {
                self.run_tool(&call, question.as_deref())?
            };
            let (ok, result) = match &outcome.result {
                Ok(t) => (true, t.clone()),
                Err(t) => (false, t.clone()),
            };
            // The restated question only where results keep most of the room: in a small
            // window it would crowd them out, and a model shown the question without the
            // results echoes it (six facts at 1,024 tokens, session 12).
            let mut restated = outcome.trailer.clone();
            let mut extra = 0;
            if let Some(r) = &restated {
                extra = self.model.tokenizer.encode(r, false)?.len() + 2;
                if extra * 3 > self.result_room(stats.tokens) {
                    (restated, extra) = (None, 0);
                }
            }
            let result = self.fit_result(&result, stats.tokens + extra)?;
            let shown = match &restated {
                Some(r) => format!("{result}\n{r}"),
                None => result.clone(),
            };
            self.push(events::function_result(&call.function, ok, &shown, self.now()))?;
            let sent = call.function == SEND_MESSAGE && ok;
            if sent {
                let msg = call.arguments["message"].as_str().unwrap_or_default().to_string();
                obs.message(&msg);
                out.messages.push(msg);
            } else if !outcome.summary.is_empty() {
                obs.memory_op(&outcome.summary);
            }
            let rec = StepRecord {
                step: i,
                function: call.function.clone(),
                arguments: call.arguments.clone(),
                thoughts: call.thoughts.clone(),
                status: if ok { "OK" } else { "Failed" },
                result,
                continues: !sent,
                hits: outcome.hits,
                prompt_tokens: prompt.len(),
                tokens_evaluated: stats.prompt_evaluated,
                tokens_reused: stats.prompt_reused,
                step_tokens: stats.tokens,
                forced_tokens: stats.forced,
                mask_ms: stats.mask_time.as_secs_f64() * 1e3,
                prompt_ms: stats.prompt_time.as_secs_f64() * 1e3,
                total_ms: t0.elapsed().as_secs_f64() * 1e3,
            };
            obs.step(&rec);
            out.steps.push(rec);
            if sent {
                out.step_limit_hit = i + 1 == max && max > 1 && !answer_forced;
                break;
            }
            if i + 1 >= max {
                out.step_limit_hit = true;
                break;
            }
            // The function result itself hands control back (no heartbeat event between a result
            // and the next step: small models answer the last message they see, and a
            // "continue" note is not what the user asked). Heartbeats carry instructions only.
            let reason = if doc_mode && !search_first && self.searches >= 1 && !answer_forced && i >= 1 {
                // Document QA: one page more at most, then the answer.
                answer_forced = true;
                Some(prompts::ANSWER_NOW.to_string())
            } else if i + 2 == max {
                Some(prompts::REPLY_NOW.to_string())
            } else {
                None
            };
            if let Some(reason) = reason {
                self.push(events::heartbeat(&reason, self.now()))?;
            }
            i += 1;
        }
        out.retrieved = std::mem::take(&mut self.retrieved);
        Ok(out)
    }
}

/// The working context as shown (`text`) and the blocks it was rendered from, saved so the
/// next process renders the same prompt prefix (read back by `load_working_context`).
fn save_working(store: &MemoryStore, id: u64, blocks: &[crate::memory::Block], text: &str) -> Result<()> {
    store.set_state(id, WORKING_STATE, &serde_json::json!({"blocks": blocks, "text": text}))
}
