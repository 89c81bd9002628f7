/*! `pagemind eval`: the MemGPT paper's experiments, offline, each against a baseline of the
same model without pagemind's memory.

One module per task: [`conversation`] (deep memory retrieval on LoCoMo), [`nested_kv`]
(nested key-value retrieval), [`doc_qa`] (multi-document QA on NaturalQuestions-Open) and
[`function_calling`] (BFCL). [`score`] holds the metrics, [`baseline`] the plain-prompt answers
the baselines give, [`report`] the per-item JSONL, the summary and its Markdown table.

Every task goes the same way: load its data ([`Options::data`] or the task's default file),
order the items by a seeded shuffle and keep the first `--limit`, then run each item through
each variant (`pagemind` and the task's baselines), appending one [`ItemRecord`] per item and
variant to `<out>/<task>.jsonl` as soon as it is scored. `--resume` skips what the JSONL already
holds. Sampling is greedy, so a run is deterministic for a seed.
*/

pub mod baseline;
pub mod conversation;
pub mod doc_qa;
pub mod function_calling;
pub mod nested_kv;
pub mod report;
pub mod score;

pub use report::{ItemRecord, Recorder, Summary};

use crate::embed::Embedder;
use crate::runtime::ChatModel;
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// The tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Conversation,
    NestedKv,
    DocQa,
    FunctionCalling,
}

impl Task {
    /// The task's name on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Task::Conversation => "conversation",
            Task::NestedKv => "nested-kv",
            Task::DocQa => "doc-qa",
            Task::FunctionCalling => "function-calling",
        }
    }

    /// The baselines the task runs.
    pub fn baselines(self) -> &'static [&'static str] {
        match self {
            Task::Conversation => &["full-context", "rag"],
            Task::NestedKv => &["full-context"],
            Task::DocQa => &["top-1", "top-3", "top-5", "top-10"],
            Task::FunctionCalling => &["no-grammar"],
        }
    }
}

/// How a conversation is put into the agent before the questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Written straight into recall storage (no model).
    Store,
    /// Every turn runs through the agent loop (the agent decides what to save).
    Live,
}

/// Everything a task needs.
pub struct Options<'m> {
    pub model: &'m ChatModel,
    /// The chat model's catalog id (or path), recorded with each agent.
    pub model_id: String,
    pub embedder: &'m Embedder,
    pub embedding_id: String,
    /// Data file; `None`: the task's default (see each task).
    pub data: Option<PathBuf>,
    /// BFCL's possible-answer file.
    pub answers: Option<PathBuf>,
    pub window: usize,
    /// Questions (items) to run; `None`: all.
    pub limit: Option<usize>,
    pub seed: u64,
    pub out: PathBuf,
    pub resume: bool,
    /// Run the pagemind variant.
    pub agent: bool,
    /// Baselines to run (subset of [`Task::baselines`]).
    pub baselines: Vec<String>,
    pub replay: Replay,
    /// doc-qa: documents in archival memory (`None`: all).
    pub documents: Option<usize>,
    /// nested-kv: nesting levels to run.
    pub levels: Vec<usize>,
    /// conversation: the LoCoMo categories asked (empty: all).
    pub categories: Vec<u64>,
    /// Steps per agent turn.
    pub max_steps: usize,
    /// The agent's memory-first tool rule.
    pub memory_first: bool,
    /// The agent's sleep-time consolidation (user turns between passes; 0 = never).
    pub consolidate_every: usize,
    pub progress: bool,
}

impl Options<'_> {
    /// Whether variant `v` runs.
    pub fn runs(&self, v: &str) -> bool {
        if v == PAGEMIND {
            self.agent
        } else {
            self.baselines.iter().any(|b| b == v)
        }
    }

    /// The variants of `task` that run, pagemind first.
    pub fn variants(&self, task: Task) -> Vec<String> {
        let mut v = vec![];
        if self.agent {
            v.push(PAGEMIND.to_string());
        }
        v.extend(task.baselines().iter().filter(|b| self.runs(b)).map(|b| b.to_string()));
        v
    }

    /// The agents' store for this run (kept under `--out`, so `--resume` finds the agents).
    pub fn store_dir(&self, task: Task) -> PathBuf {
        self.out.join(format!("{}.home", task.name()))
    }
}

/// The variant that runs pagemind's agent.
pub const PAGEMIND: &str = "pagemind";

/// When the agent is asked a nested-KV or document-QA question: a fixed time on its clock
/// ([`crate::agent::Agent::set_clock`]), so a run's prompts do not depend on the hour it runs
/// at (2024-01-01 09:00 UTC; the conversation task asks the day after its last session).
pub fn asked_at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_704_099_600, 0).unwrap_or_default()
}

/// `items` in a seeded random order, cut to `limit`.
pub fn pick<T>(mut items: Vec<T>, seed: u64, limit: Option<usize>) -> Vec<T> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    items.shuffle(&mut rng);
    items.truncate(limit.unwrap_or(usize::MAX));
    items
}

/// Find a task's default data: `<project>/../shared/data/...` for a checkout next to the
/// shared data, else the path as given relative to the working directory.
pub fn default_data(rel: &str) -> Result<PathBuf> {
    let candidates = [
        PathBuf::from("../shared/data").join(rel),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel),
        PathBuf::from("data").join(rel),
    ];
    candidates.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        Error::Invalid(format!("no data file given and the default ../shared/data/{rel} is not here: pass --data FILE"))
    })
}

/// Read a file that may be gzip-compressed (by its `.gz` name) as text.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut s)
            .map_err(|e| Error::file(path, format!("not a readable gzip text file: {e}")))?;
        Ok(s)
    } else {
        String::from_utf8(bytes).map_err(|_| Error::file(path, "not UTF-8 text"))
    }
}

/// Parse JSON lines, naming the file and line of the first bad one.
pub fn json_lines(path: &Path, text: &str) -> Result<Vec<serde_json::Value>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::file(path, format!("line {}: not JSON: {e}", i + 1))))
        .collect()
}

/// Embeddings of `texts`, in batches.
pub fn embed_all(embedder: &Embedder, texts: &[String]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(32) {
        out.extend(embedder.embed(&batch.iter().map(|t| t.as_str()).collect::<Vec<_>>())?);
    }
    Ok(out)
}

/// Create agent `name` in `store` with the run's models and window, `human` as its human block,
/// and `configure` applied to its config (an existing agent of that name is replaced).
pub fn new_agent(
    o: &Options,
    store: &crate::memory::MemoryStore,
    name: &str,
    human: &str,
    configure: impl FnOnce(&mut crate::memory::AgentConfig),
) -> Result<crate::memory::AgentRecord> {
    if store.has_agent(name)? {
        store.delete_agent(name)?;
    }
    let mut a = store.create_agent(name, &o.model_id, &o.embedding_id, crate::memory::DEFAULT_PERSONA, human)?;
    a.config.context_window = o.window;
    a.config.max_steps = o.max_steps;
    a.config.memory_first = o.memory_first;
    // Questions are undone after each item, so consolidating after them is lost work; a task
    // that replays a conversation turns it back on for the replay.
    a.config.consolidate_every = 0;
    configure(&mut a.config);
    store.update_agent(&a)?;
    Ok(a)
}
