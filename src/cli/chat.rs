/*! `pagemind chat` (a REPL) and `pagemind ask` (one turn, for scripts). */

use super::agents::open_store;
use super::generate::SamplingArgs;
use super::Global;
use anyhow::{Context, Result};
use clap::Args;
use pagemind::agent::{user_text, Agent, KvState, LlmSteps, Observer, StepRecord, TurnResult};
use pagemind::embed::Embedder;
use pagemind::grammar::StepFormat;
use pagemind::memory::{MemoryStore, DEFAULT_HUMAN, DEFAULT_PERSONA};
use pagemind::runtime::{ChatModel, KvTransfer};
use pagemind::store::{ModelStore, Source};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Agent settings a command may change (saved with the agent).
#[derive(Args, Debug, Default, Clone)]
pub struct AgentSettings {
    /// Steps chained per turn, at most.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Tool rule: a turn that answers a user message opens with a search of memory (recall or
    /// archival) before any reply (default true).
    #[arg(long, action = clap::ArgAction::Set)]
    pub memory_first: Option<bool>,
    /// Sleep-time consolidation: after every N user turns, a pass saves the user's statements
    /// that the model judges lasting into core memory, verbatim (default 1; 0 = never).
    #[arg(long, value_name = "N")]
    pub consolidate_every: Option<usize>,
}

impl AgentSettings {
    /// Apply the settings given to `c`; whether anything was given.
    fn apply(&self, c: &mut pagemind::memory::AgentConfig) -> bool {
        c.max_steps = self.max_steps.unwrap_or(c.max_steps);
        c.memory_first = self.memory_first.unwrap_or(c.memory_first);
        c.consolidate_every = self.consolidate_every.unwrap_or(c.consolidate_every);
        self.max_steps.is_some() || self.memory_first.is_some() || self.consolidate_every.is_some()
    }
}

/// Default agent name for `pagemind chat`.
pub const DEFAULT_AGENT: &str = "sam";

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// The agent (created on first use).
    #[arg(long, default_value = DEFAULT_AGENT)]
    pub agent: String,
    /// Chat model for a new agent, or to run an existing one with.
    #[arg(long)]
    pub model: Option<String>,
    /// Context window in tokens (default: the agent's, else 2048).
    #[arg(long)]
    pub context_window: Option<usize>,
    #[command(flatten)]
    pub settings: AgentSettings,
    /// Neither restore the agent's saved KV state nor save it (every process starts cold).
    #[arg(long)]
    pub no_saved_kv: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Args, Debug)]
pub struct AskArgs {
    #[command(flatten)]
    pub chat: ChatArgs,
    /// Print every step as a JSON line.
    #[arg(long)]
    pub json: bool,
    pub message: String,
}

/// Make sure a catalog model is installed (pulling it, with progress, if not).
pub fn ensure_model(models: &ModelStore, id: &str) -> Result<()> {
    if let Some(spec) = models.catalog().get(id) {
        if !models.is_installed(spec) {
            eprintln!("{id} is not installed; pulling it now");
            models.pull(id, Source::Auto, false, true)?;
        }
    }
    Ok(())
}

/// Everything a turn needs.
pub struct Loaded {
    pub store: MemoryStore,
    pub model: ChatModel,
    pub embedder: Embedder,
}

/// Open the store, create the agent if missing, and load its models.
pub fn load(g: &Global, a: &ChatArgs) -> Result<Loaded> {
    load_agent(g, &a.agent, a.model.as_deref(), &a.settings)
}

/// [`load`] from its parts (`pagemind mcp` takes only the agent and the model).
pub fn load_agent(g: &Global, agent: &str, model: Option<&str>, settings: &AgentSettings) -> Result<Loaded> {
    let models = g.models();
    let store = open_store(g)?;
    if !store.has_agent(agent)? {
        let chat = model.map(String::from).unwrap_or(models.catalog().agent_model().to_string());
        store.create_agent(agent, &chat, &models.catalog().default_embedding, DEFAULT_PERSONA, DEFAULT_HUMAN)?;
        eprintln!("created agent '{agent}' (model {chat})");
    }
    let mut rec = store.agent(agent)?;
    if settings.apply(&mut rec.config) {
        store.update_agent(&rec)?;
    }
    let chat = model.map(String::from).unwrap_or(rec.chat_model.clone());
    ensure_model(&models, &chat)?;
    ensure_model(&models, &rec.embedding_model)?;
    let model = super::generate::load_chat(g, Some(&chat))?;
    let embedder = super::embed::load_embedder(g, Some(&rec.embedding_model))?;
    Ok(Loaded { store, model, embedder })
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Prints the agent's messages as they stream and memory operations on dim lines.
struct Terminal {
    streamed: String,
    /// ANSI styling (stdout is a terminal).
    dim: bool,
    name: String,
}

impl Observer for Terminal {
    fn message_delta(&mut self, text: &str) {
        if self.streamed.is_empty() {
            if self.dim {
                print!("\x1b[1m{}>\x1b[0m ", self.name);
            } else {
                print!("{}> ", self.name);
            }
        }
        self.streamed.push_str(text);
        print!("{text}");
        let _ = std::io::stdout().flush();
    }
    fn message(&mut self, text: &str) {
        if self.streamed.is_empty() {
            println!("{text}");
        } else {
            if let Some(rest) = text.strip_prefix(self.streamed.as_str()) {
                print!("{rest}");
            }
            println!();
        }
        self.streamed.clear();
    }
    fn message_cut(&mut self) {
        if !self.streamed.is_empty() {
            println!();
            println!("[reply cut off: it outgrew the context window; the agent tries again]");
            self.streamed.clear();
        }
    }
    fn memory_op(&mut self, line: &str) {
        if self.dim {
            println!("\x1b[2m[{line}]\x1b[0m");
        } else {
            println!("[{line}]");
        }
    }
    fn cancelled(&mut self) -> bool {
        INTERRUPTED.swap(false, Ordering::SeqCst)
    }
}

/// Prints JSON lines for `ask --json`.
struct JsonLines;

impl Observer for JsonLines {
    fn step(&mut self, r: &StepRecord) {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    }
}

fn report_limit(r: &TurnResult, max: usize) {
    if r.step_limit_hit {
        eprintln!("[step limit of {max} reached: the agent kept requesting heartbeats; raise it with --max-steps]");
    }
}

/// The agent's saved KV state restored into the step session (unless `--no-saved-kv`).
fn restore_kv(a: &ChatArgs, agent: &Agent, steps: &mut LlmSteps) -> Result<Option<(KvState, KvTransfer)>> {
    if a.no_saved_kv {
        return Ok(None);
    }
    let kv = KvState::of(agent);
    let restored = kv.restore(&mut steps.session)?;
    Ok(Some((kv, restored)))
}

/// Save the step session's KV state after a turn. A failure only costs the next process a
/// cold start, so it is a warning.
fn save_kv(kv: &Option<(KvState, KvTransfer)>, steps: &LlmSteps) -> Option<KvTransfer> {
    let (kv, _) = kv.as_ref()?;
    match kv.save(&steps.session) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("warning: {e} (the next start will evaluate the prompt again)");
            None
        }
    }
}

pub fn ask(g: &Global, a: AskArgs) -> Result<()> {
    let l = load(g, &a.chat)?;
    let mut agent = Agent::open(&l.store, &l.model, Some(&l.embedder), &a.chat.agent, a.chat.context_window)?;
    let mut steps = LlmSteps::new(&l.model, &agent.tools, agent.window, Some(a.chat.sampling.agent_config()))?;
    let kv = restore_kv(&a.chat, &agent, &mut steps)?;
    let r = if a.json {
        agent.turn(&mut steps, &a.message, &mut JsonLines)?
    } else {
        agent.turn(&mut steps, &a.message, &mut pagemind::agent::Quiet)?
    };
    let saved = save_kv(&kv, &steps);
    if a.json {
        // The last line sums up the turn, flush costs included.
        let turn = serde_json::json!({"turn": {
            "messages": r.messages,
            "steps": r.steps.len(),
            "step_limit_hit": r.step_limit_hit,
            "flushes": r.flushes,
            "flush_tokens_evaluated": r.flush_tokens_evaluated,
            "flush_tokens_reused": r.flush_tokens_reused,
            "flush_seconds": r.flush_seconds,
            "kv_restore": kv.as_ref().map(|(_, t)| t),
            "kv_save": saved,
            "consolidation": r.consolidation,
        }});
        println!("{turn}");
    } else {
        for m in &r.messages {
            println!("{m}");
        }
        print_sources(&r);
    }
    report_limit(&r, agent.record.config.max_steps);
    Ok(())
}

/// Sources of the passages retrieved this turn (document QA citations).
pub fn print_sources(r: &TurnResult) {
    let mut seen = vec![];
    for p in &r.retrieved {
        if p.source == "agent" || p.source.is_empty() {
            continue;
        }
        let s = if p.span.is_empty() { p.source.clone() } else { format!("{} ({})", p.source, p.span) };
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    if !seen.is_empty() {
        println!("\nSources:");
        for s in seen {
            println!("- {s}");
        }
    }
}

const HELP: &str = "/memory  core memory, summary and stats
/dump [N]  the last N messages in context (all if omitted)
/retry  drop the agent's last reply and generate it again
/rethink TEXT  replace the thoughts of the last step
/rewrite TEXT  replace the last message sent to you
/pop [N]  delete the last N messages (default 3)
/summarize  evict old messages into the summary now
/context  token usage per section of main context
/help  this list
/exit  quit (Ctrl-D too); Ctrl-C stops a generation";

pub fn chat(g: &Global, a: ChatArgs) -> Result<()> {
    let l = load(g, &a)?;
    let mut agent = Agent::open(&l.store, &l.model, Some(&l.embedder), &a.agent, a.context_window)?;
    let mut steps = LlmSteps::new(&l.model, &agent.tools, agent.window, Some(a.sampling.agent_config()))?;
    let kv = restore_kv(&a, &agent, &mut steps)?;
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
    let dim = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut term = Terminal { streamed: String::new(), dim, name: a.agent.clone() };
    let mut rl = rustyline::DefaultEditor::new()?;
    let history = g.models().home().join("chat_history.txt");
    let _ = rl.load_history(&history);
    eprintln!(
        "pagemind chat with '{}' ({}; window {} tokens). /help for commands.",
        agent.record.name, agent.record.chat_model, agent.window
    );
    // The session opens with a login event, and the agent speaks first.
    match agent.login_and_greet(&mut steps, &mut term) {
        Ok(r) => report_limit(&r, agent.record.config.max_steps),
        Err(e) => eprintln!("error: {e}"),
    }
    save_kv(&kv, &steps);
    loop {
        let line = match rl.readline("you> ") {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(&line);
        INTERRUPTED.store(false, Ordering::SeqCst);
        let r = if let Some(cmd) = line.strip_prefix('/') {
            match command(&mut agent, &mut steps, &mut term, cmd) {
                Ok(true) => break,
                Ok(false) => continue,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    continue;
                }
            }
        } else {
            agent.turn(&mut steps, &line, &mut term)
        };
        match r {
            Ok(r) => report_limit(&r, agent.record.config.max_steps),
            Err(e) => eprintln!("\nerror: {e}"),
        }
        save_kv(&kv, &steps);
    }
    let _ = rl.save_history(&history);
    Ok(())
}

/// Run a slash command; `Ok(true)` means exit.
fn command(agent: &mut Agent, steps: &mut LlmSteps, term: &mut Terminal, cmd: &str) -> Result<bool> {
    let (name, rest) = cmd.split_once(' ').map(|(a, b)| (a, b.trim())).unwrap_or((cmd, ""));
    let id = agent.record.id;
    let store = agent.store;
    match name {
        "exit" | "quit" => return Ok(true),
        "help" => println!("{HELP}"),
        "memory" => {
            for b in store.blocks(id)? {
                println!("[{}] {}/{} chars\n{}\n", b.label, b.value.chars().count(), b.limit, b.value);
            }
            let s = store.summary(id)?;
            println!("[summary] {}", if s.text.is_empty() { "(none yet)" } else { &s.text });
            println!("recall: {} messages, archival: {} passages", store.message_count(id)?, store.passage_count(id)?);
        }
        "dump" => {
            let q = store.context_messages(id)?;
            let n: usize = rest.parse().unwrap_or(q.len());
            for m in &q[q.len().saturating_sub(n)..] {
                println!("#{} {}: {}", m.id, m.role.as_str(), m.content);
            }
        }
        "context" => {
            let r = agent.context_report()?;
            println!(
                "system {} + working context {} + summary {} + queue {} ({} messages) = {} of {} tokens ({:.0}%)",
                r.system,
                r.working_context,
                r.summary,
                r.queue,
                r.queue_messages,
                r.total,
                r.window,
                100.0 * r.total as f64 / r.window as f64
            );
        }
        "summarize" => {
            agent.flush(steps)?;
            println!("summary: {}", store.summary(id)?.text);
        }
        "pop" => {
            let n: usize = rest.parse().unwrap_or(3);
            let q = store.context_messages(id)?;
            let ids: Vec<u64> = q.iter().rev().take(n).map(|m| m.id).collect();
            store.delete_messages(id, &ids)?;
            println!("popped {} messages", ids.len());
        }
        "retry" => {
            let q = store.context_messages(id)?;
            let last_user = q.iter().rposition(|m| user_text(m).is_some()).context("no user message to retry")?;
            let ids: Vec<u64> = q[last_user + 1..].iter().map(|m| m.id).collect();
            store.delete_messages(id, &ids)?;
            let r = agent.run_steps(steps, term)?;
            report_limit(&r, agent.record.config.max_steps);
        }
        "rethink" | "rewrite" => {
            if rest.is_empty() {
                anyhow::bail!("usage: /{name} TEXT");
            }
            let q = store.context_messages(id)?;
            // One representation: parse the stored step, change it, write it back in its format.
            let (mut m, mut call) = q
                .iter()
                .rev()
                .filter_map(|m| Some((m, m.call()?)))
                .find(|(_, c)| name == "rethink" || c.function == pagemind::tools::SEND_MESSAGE)
                .map(|(m, c)| (m.clone(), c))
                .context("no earlier step to change")?;
            let format = StepFormat::detect(&m.content);
            if name == "rethink" {
                call.thoughts = rest.into();
            } else {
                call.arguments["message"] = rest.into();
            }
            m.content = format.render(&call);
            m.tokens = 0; // counted again when next needed
            store.update_messages(id, &[m])?;
            println!("{name} done");
        }
        other => println!("unknown command /{other}; /help lists them"),
    }
    Ok(false)
}
