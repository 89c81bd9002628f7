/*! `pagemind eval TASK`: the paper's experiments (see `pagemind::eval`). */

use super::Global;
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use pagemind::eval::{self, Options, Recorder, Replay, Summary, Task};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TaskArg {
    /// Deep memory retrieval on LoCoMo conversations.
    Conversation,
    /// Nested key-value retrieval.
    NestedKv,
    /// Multi-document QA on NaturalQuestions-Open.
    DocQa,
    /// BFCL-format function calling.
    FunctionCalling,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReplayArg {
    /// Write the history straight into recall storage (fast, no model).
    Store,
    /// Run every turn through the agent loop.
    Live,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    pub task: TaskArg,
    /// Data file (default: the task's file under ../shared/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// BFCL possible-answer file (default: possible_answer.<data file name> beside it).
    #[arg(long)]
    pub answers: Option<PathBuf>,
    /// Chat model id or GGUF path.
    #[arg(long)]
    pub model: Option<String>,
    /// Context window in tokens.
    #[arg(long, default_value_t = 2048)]
    pub context_window: usize,
    /// Questions to run (nested-kv: per level).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of the item order (runs are greedy, so deterministic for a seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder: <task>.jsonl, <task>.summary.json, <task>.md, agents' store.
    #[arg(long, default_value = "eval-out")]
    pub out: PathBuf,
    /// Skip items already in the JSONL.
    #[arg(long)]
    pub resume: bool,
    /// Baselines to run (repeatable; default: all of the task's; `none`: no baseline).
    #[arg(long)]
    pub baseline: Vec<String>,
    /// Run only the baselines, not pagemind's agent.
    #[arg(long)]
    pub no_agent: bool,
    /// conversation: how the history is put into the agent.
    #[arg(long, value_enum, default_value = "store")]
    pub replay: ReplayArg,
    /// doc-qa: documents in archival memory (default: all).
    #[arg(long)]
    pub documents: Option<usize>,
    /// conversation: only questions of these LoCoMo categories (1 multi-hop, 2 temporal,
    /// 3 open-domain, 4 single-hop, 5 adversarial; default: all).
    #[arg(long, value_delimiter = ',')]
    pub category: Vec<u64>,
    /// nested-kv: nesting levels (0 = plain look-up).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4")]
    pub levels: Vec<usize>,
    /// Steps per agent turn, at most.
    #[arg(long, default_value_t = 8)]
    pub max_steps: usize,
    /// The agent's tool rule: a user turn opens with a memory search (false: any function).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub memory_first: bool,
    /// conversation with `--replay live`: sleep-time consolidation after every N replayed turns
    /// (0 = never). Questions never consolidate (their turns are undone).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub consolidate_every: usize,
    /// Print the summary as JSON instead of the Markdown table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, a: EvalArgs) -> Result<()> {
    let task = match a.task {
        TaskArg::Conversation => Task::Conversation,
        TaskArg::NestedKv => Task::NestedKv,
        TaskArg::DocQa => Task::DocQa,
        TaskArg::FunctionCalling => Task::FunctionCalling,
    };
    let known = task.baselines();
    let baselines: Vec<String> = if a.baseline.is_empty() {
        known.iter().map(|s| s.to_string()).collect()
    } else if a.baseline.iter().any(|b| b == "none") {
        vec![]
    } else {
        for b in &a.baseline {
            if !known.contains(&b.as_str()) {
                bail!("--baseline {b}: {} has the baselines {} (or none)", task.name(), known.join(", "));
            }
        }
        a.baseline.clone()
    };
    if a.no_agent && baselines.is_empty() {
        bail!("--no-agent with no baseline leaves nothing to run");
    }
    if a.levels.iter().any(|&l| l > 5) {
        bail!("--levels: nesting levels go from 0 to 5 (the orderings files have 1 to 6 indices)");
    }
    if a.category.iter().any(|&c| !(1..=5).contains(&c)) {
        bail!("--category: LoCoMo's categories go from 1 to 5");
    }
    if !a.category.is_empty() && task != Task::Conversation {
        bail!("--category applies to the conversation task only");
    }
    if a.context_window < 256 {
        bail!("--context-window {} is too small (at least 256)", a.context_window);
    }
    let models = g.models();
    let model_id = a.model.clone().unwrap_or_else(|| models.catalog().agent_model().to_string());
    super::chat::ensure_model(&models, &model_id)?;
    let embedding_id = models.catalog().default_embedding.clone();
    super::chat::ensure_model(&models, &embedding_id)?;
    let model = super::generate::load_chat(g, Some(&model_id))?;
    let embedder = super::embed::load_embedder(g, Some(&embedding_id))?;
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let o = Options {
        model: &model,
        model_id: model_id.clone(),
        embedder: &embedder,
        embedding_id,
        data: a.data,
        answers: a.answers,
        window: a.context_window,
        limit: a.limit,
        seed: a.seed,
        out: a.out.clone(),
        resume: a.resume,
        agent: !a.no_agent,
        baselines,
        replay: match a.replay {
            ReplayArg::Store => Replay::Store,
            ReplayArg::Live => Replay::Live,
        },
        documents: a.documents,
        levels: a.levels,
        categories: a.category,
        max_steps: a.max_steps.max(2),
        memory_first: a.memory_first,
        consolidate_every: a.consolidate_every,
        progress,
    };
    let mut rec = Recorder::open(&a.out, task.name(), a.resume)?;
    match task {
        Task::Conversation => eval::conversation::run(&o, &mut rec)?,
        Task::NestedKv => eval::nested_kv::run(&o, &mut rec)?,
        Task::DocQa => eval::doc_qa::run(&o, &mut rec)?,
        Task::FunctionCalling => eval::function_calling::run(&o, &mut rec)?,
    }
    let command: Vec<String> = std::env::args().skip(1).collect();
    let s = Summary::of(
        rec.records(),
        task.name(),
        &model_id,
        a.context_window,
        a.seed,
        &format!("pagemind {}", command.join(" ")),
    );
    s.write(&a.out)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", s.markdown());
    }
    Ok(())
}
