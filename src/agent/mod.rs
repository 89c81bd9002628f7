/*! The agent: virtual context management and the event loop.

[`Agent::open`] loads an agent's record, core memory, summary and FIFO queue from the
[`MemoryStore`]. [`Agent::turn`] handles one user message: each step renders main context
([`context`]), decodes one grammar-constrained call ([`crate::grammar`]), runs its handler
([`tools`]) and appends the call and its result to recall storage, durably, before anything is
shown. `send_message` yields to the user unless it requests a heartbeat; a failed function or
`request_heartbeat: true` runs another step, up to the per-turn step limit. Before each step the
queue manager ([`pressure`]) sends the memory-pressure alert once per crossing of the warning
threshold and, at the flush threshold, evicts the oldest messages into a new recursive summary.

Decoding goes through a [`StepModel`], so the loop is tested against a scripted stand-in.
*/

mod context;
mod events;
mod export;
mod pressure;
mod prompts;
mod tools;

pub use context::{instructions, working_context, ContextReport, MainContext};
pub use events::{to_chat, user_message, user_text};
pub use export::{export_agent, import_agent, AgentExport, EXPORT_FORMAT};

use crate::embed::Embedder;
use crate::grammar::{decode_step, StepFormat, StepGrammar, StepStats, ToolCall};
use crate::memory::{AgentRecord, FunctionCall, MemoryStore, Message, MessageRole, Passage};
use crate::runtime::{ChatModel, Sampler, SamplerConfig, Session};
use crate::tools::{builtin_tools, ToolSpec};
use crate::{Error, Result};
use serde::Serialize;
use std::time::Instant;

/// Characters of a function result shown to the model, at most.
pub const RESULT_LIMIT: usize = 3000;

/// Tokens kept free for the next step (its call) when deciding to flush.
pub const STEP_RESERVE: usize = 256;

/// Repetition penalty of agent steps: small models otherwise repeat one sentence until a
/// string's length bound (the grammar forces the JSON structure, so only free text is affected).
pub const AGENT_REPEAT_PENALTY: f32 = 1.15;

/// Default sampling of agent steps: greedy with [`AGENT_REPEAT_PENALTY`] over the last 64 tokens.
pub fn agent_sampling() -> SamplerConfig {
    SamplerConfig { repeat_penalty: AGENT_REPEAT_PENALTY, ..SamplerConfig::greedy() }
}

/// Archival searches allowed per turn: document QA pages through results, but boundedly.
pub const MAX_SEARCHES: usize = 4;

/// Default context window when neither the agent nor the command sets one.
pub const DEFAULT_WINDOW: usize = 2048;

/// Produces one step's call for a prompt. The real one decodes with the model under the
/// grammar; tests script one.
pub trait StepModel {
    /// Decode one call for `prompt` (token ids of the rendered main context).
    fn step(&mut self, prompt: &[u32], on_token: &mut dyn FnMut(u32)) -> Result<(ToolCall, String, StepStats)>;
    /// One step that may call only the tool `only` (document QA's first search). Models that
    /// cannot restrict themselves (scripted stand-ins) take a normal step.
    fn step_only(
        &mut self,
        prompt: &[u32],
        only: &str,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<(ToolCall, String, StepStats)> {
        let _ = only;
        self.step(prompt, on_token)
    }
    /// Free text for a summary request (no grammar).
    fn summarize(&mut self, prompt: &[u32], max_tokens: usize) -> Result<String>;
}

/// The model-backed [`StepModel`].
pub struct LlmSteps<'m> {
    pub grammar: StepGrammar,
    /// Grammars allowing one tool each, built on first use.
    only: std::collections::HashMap<String, StepGrammar>,
    tools: Vec<ToolSpec>,
    format: StepFormat,
    pub session: Session<'m>,
    summary_session: Option<Session<'m>>,
    pub sampler: Sampler,
}

impl<'m> LlmSteps<'m> {
    /// Grammar over `tools`, a session of `window` tokens, greedy sampling unless `sampling` given.
    pub fn new(
        model: &'m ChatModel,
        tools: &[ToolSpec],
        window: usize,
        sampling: Option<SamplerConfig>,
    ) -> Result<Self> {
        let format = model.spec.as_ref().map(|s| StepFormat::from(s.tool_format)).unwrap_or(StepFormat::Json);
        Ok(Self {
            grammar: StepGrammar::new(model, tools, format)?,
            only: Default::default(),
            tools: tools.to_vec(),
            format,
            session: Session::new(model, window)?,
            summary_session: None,
            sampler: Sampler::new(sampling.unwrap_or_else(agent_sampling)),
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
        only: &str,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<(ToolCall, String, StepStats)> {
        if !self.only.contains_key(only) {
            // The restricted step is the first of its kind in a turn: paging starts at 0.
            let mut tools: Vec<ToolSpec> = self.tools.iter().filter(|t| t.name == only).cloned().collect();
            for p in tools.iter_mut().flat_map(|t| t.params.iter_mut()).filter(|p| p.name == "page") {
                p.ty = crate::tools::ParamType::Integer { min: 0, max: 0 };
            }
            if tools.is_empty() {
                return self.step(prompt, on_token);
            }
            let g = StepGrammar::new(self.session.model(), &tools, self.format)?;
            self.only.insert(only.to_string(), g);
        }
        let g = &self.only[only];
        let s = decode_step(g, &mut self.session, prompt, &mut self.sampler, on_token)?;
        Ok((s.call, s.text, s.stats))
    }

    fn summarize(&mut self, prompt: &[u32], max_tokens: usize) -> Result<String> {
        let model = self.session.model();
        let n_ctx = self.session.n_ctx();
        let s = self
            .summary_session
            .get_or_insert_with(|| Session::new(model, n_ctx).expect("same size as the main session"));
        // Greedy with a repetition penalty: small models otherwise loop on one sentence.
        let mut sampler = Sampler::new(SamplerConfig { repeat_penalty: 1.3, ..SamplerConfig::greedy() });
        let g = s.generate(prompt, &mut sampler, max_tokens, None, |_| Ok(true))?;
        model.tokenizer.decode(&g.tokens, true)
    }
}

/// Callbacks for a UI. All have no-op defaults.
pub trait Observer {
    /// Text of a `send_message` as it is generated.
    fn message_delta(&mut self, _text: &str) {}
    /// A complete message to the user (already stored).
    fn message(&mut self, _text: &str) {}
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
    pub request_heartbeat: bool,
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
    /// The context window in tokens.
    pub window: usize,
    /// Results per page for searches.
    pub page_size: usize,
    pub result_limit: usize,
    retrieved: Vec<Passage>,
    /// Archival searches run in the current turn (bounded by [`MAX_SEARCHES`]).
    searches: usize,
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
        let format = model.spec.as_ref().map(|s| StepFormat::from(s.tool_format)).unwrap_or(StepFormat::Json);
        let instructions = instructions(&record.name, &tools, format);
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
            window,
            page_size: 5,
            result_limit: RESULT_LIMIT,
            retrieved: vec![],
            searches: 0,
        };
        a.refresh_working_context()?;
        let system = a.model.tokenizer.encode(&format!("{}\n\n{}", a.instructions, a.working), true)?.len();
        if system + STEP_RESERVE > a.window {
            return Err(Error::Invalid(format!(
                "the context window ({} tokens) is smaller than the system prompt and core memory ({system} tokens) plus room for one step ({STEP_RESERVE}): use a larger --context-window",
                a.window
            )));
        }
        Ok(a)
    }

    /// Re-read core memory and stats into the working context (changes the prompt prefix).
    pub fn refresh_working_context(&mut self) -> Result<()> {
        let id = self.record.id;
        self.working =
            working_context(&self.store.blocks(id)?, self.store.message_count(id)?, self.store.passage_count(id)?);
        Ok(())
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

    /// Token ids of the current prompt.
    pub fn prompt_tokens(&self) -> Result<Vec<u32>> {
        let (summary, queue) = self.main_context()?;
        MainContext { instructions: &self.instructions, working: &self.working, summary: &summary, queue: &queue }
            .tokens(self.model)
    }

    /// Token usage per section.
    pub fn context_report(&self) -> Result<ContextReport> {
        let (summary, queue) = self.main_context()?;
        MainContext { instructions: &self.instructions, working: &self.working, summary: &summary, queue: &queue }
            .report(self.model, self.window)
    }

    /// Append an event to the queue (durable).
    pub fn push(&self, m: Message) -> Result<Message> {
        self.store.append_message(self.record.id, m)
    }

    /// The login event that starts a session.
    pub fn login(&self) -> Result<()> {
        let last = self.store.get_state(self.record.id, "last_login")?.and_then(|v| v.as_i64());
        self.push(events::login(last))?;
        self.store.set_state(self.record.id, "last_login", &serde_json::json!(crate::memory::now_ms()))
    }

    /// Handle one user message: steps until the agent yields or the step limit is hit.
    pub fn turn(&mut self, steps: &mut dyn StepModel, user: &str, obs: &mut dyn Observer) -> Result<TurnResult> {
        self.push(events::user_message(user))?;
        self.run_steps(steps, obs)
    }

    /// Run steps from the current queue (used by `turn`, `/retry`, `/rethink`).
    pub fn run_steps(&mut self, steps: &mut dyn StepModel, obs: &mut dyn Observer) -> Result<TurnResult> {
        let mut out = TurnResult::default();
        self.retrieved.clear();
        self.searches = 0;
        let max = self.record.config.max_steps.max(1);
        let mut retried = false;
        let mut answer_forced = false;
        let mut i = 0;
        while i < max {
            out.flushes += self.manage_pressure(steps)?;
            let prompt = self.prompt_tokens()?;
            let t0 = Instant::now();
            let mut stream = MessageStream::default();
            let mut cancelled = false;
            let tokenizer = self.model.tokenizer.clone();
            let mut ids = vec![];
            // Document QA: an agent with loaded documents searches them before anything else, and
            // a turn that would end without an answer gets one more step that must answer.
            let doc_mode = self.record.config.search_first && self.store.has_passages(self.record.id)?;
            let search_first = i == 0 && doc_mode;
            let only = if search_first {
                Some("archival_memory_search")
            } else if answer_forced {
                Some("send_message")
            } else {
                None
            };
            let mut on_token = |t| {
                ids.push(t);
                if let Ok(text) = tokenizer.decode(&ids, false) {
                    if let Some(d) = stream.delta(&text) {
                        obs.message_delta(&d);
                    }
                }
                cancelled |= obs.cancelled();
            };
            let r = match only {
                Some(tool) => steps.step_only(&prompt, tool, &mut on_token),
                None => steps.step(&prompt, &mut on_token),
            };
            let (mut call, text, stats) = match r {
                Ok(x) => x,
                // The step outgrew the window: flush and take the step again, once.
                Err(Error::ContextOverflow { .. }) if !retried => {
                    retried = true;
                    self.flush(steps)?;
                    out.flushes += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if cancelled {
                return Err(Error::Invalid("generation cancelled".into()));
            }
            if search_first {
                call.request_heartbeat = true; // the answer comes in the next step
            }
            let mut m = Message::new(MessageRole::Assistant, text);
            m.function = Some(FunctionCall {
                name: call.function.clone(),
                arguments: call.arguments.clone(),
                request_heartbeat: call.request_heartbeat,
            });
            self.push(m)?;
            let outcome = self.run_tool(&call);
            let (ok, mut result) = match &outcome.result {
                Ok(t) => (true, t.clone()),
                Err(t) => (false, t.clone()),
            };
            if result.chars().count() > self.result_limit {
                result = result.chars().take(self.result_limit).collect::<String>() + " [truncated]";
            }
            self.push(events::function_result(&call.function, ok, &result))?;
            if call.function == "send_message" {
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
                request_heartbeat: call.request_heartbeat,
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
            let again = if !ok {
                Some("Function call failed, returning control")
            } else if call.request_heartbeat {
                Some("Function called using request_heartbeat=true, returning control")
            } else {
                None
            };
            match again {
                Some(reason) if i + 1 < max => {
                    self.push(events::heartbeat(reason))?;
                }
                Some(_) => out.step_limit_hit = true,
                None if doc_mode && out.messages.is_empty() && !answer_forced && i + 1 < max => {
                    answer_forced = true;
                    self.push(events::heartbeat(prompts::ANSWER_NOW))?;
                }
                None => break,
            }
            i += 1;
        }
        out.retrieved = std::mem::take(&mut self.retrieved);
        Ok(out)
    }
}

/// Extracts the `message` argument of a `send_message` call from partial step text.
#[derive(Default)]
struct MessageStream {
    shown: usize,
}

impl MessageStream {
    fn delta(&mut self, text: &str) -> Option<String> {
        let is_send = text.contains("\"send_message\"");
        let start = text.find("\"message\": \"")? + "\"message\": \"".len();
        if !is_send {
            return None;
        }
        let mut out = String::new();
        let mut chars = text[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => break,
                },
                c => out.push(c),
            }
        }
        let n = out.chars().count();
        if n <= self.shown {
            return None;
        }
        let d: String = out.chars().skip(self.shown).collect();
        self.shown = n;
        Some(d)
    }
}
