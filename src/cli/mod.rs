/*! Command-line interface: argument groups (clap derive) and dispatch to one module per command. */

mod agents;
mod bench;
mod chat;
mod debug;
mod embed;
mod eval;
mod generate;
mod load;
mod mcp;
mod memory;
mod models;
mod serve;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use pagemind::store::{default_home, ModelStore};
use std::path::PathBuf;
use std::process::ExitCode;

/// A fully local, offline MemGPT.
#[derive(Parser, Debug)]
#[command(name = "pagemind", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Store root (models, agents). Default: $PAGEMIND_HOME or ~/.local/share/pagemind.
    #[arg(long, global = true, env = "PAGEMIND_HOME")]
    pub home: Option<PathBuf>,
    /// Compute device: auto, cpu, cuda[:N] or metal.
    #[arg(long, global = true, default_value = "auto")]
    pub device: String,
    /// CPU threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// More log output on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Global {
    /// The model catalog and files (not the memory database: see `agents::open_store`).
    pub fn models(&self) -> ModelStore {
        ModelStore::new(self.home.clone().unwrap_or_else(default_home))
    }

    pub fn device(&self) -> Result<candle_core::Device> {
        Ok(pagemind::device::pick_device(&self.device)?)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List, pull and verify models.
    #[command(subcommand)]
    Models(models::ModelsCmd),
    /// Print the token ids of a text.
    Tokenize(generate::TokenizeArgs),
    /// Generate text from a prompt.
    Generate(generate::GenerateArgs),
    /// Print sentence embeddings, one JSON array per text.
    Embed(embed::EmbedArgs),
    /// Chat with an agent (created on first use; default models pulled if missing).
    Chat(chat::ChatArgs),
    /// One user turn, non-interactive; prints the messages the agent sent.
    Ask(chat::AskArgs),
    /// Create, list and delete agents.
    #[command(subcommand)]
    Agents(agents::AgentsCmd),
    /// Inspect an agent's core memory and stats.
    #[command(subcommand)]
    Memory(memory::MemoryCmd),
    /// Archival storage: insert and search passages.
    #[command(subcommand)]
    Archival(memory::ArchivalCmd),
    /// Recall storage: search messages by text and date.
    #[command(subcommand)]
    Recall(memory::RecallCmd),
    /// Load files and folders into an agent's archival storage (document QA).
    Load(load::LoadArgs),
    /// Files loaded into an agent: list or remove.
    #[command(subcommand)]
    Sources(load::SourcesCmd),
    /// Debugging and test tools.
    #[command(subcommand, hide = true)]
    Debug(debug::DebugCmd),
    /// Run the MemGPT paper's experiments against baselines of the same model.
    Eval(eval::EvalArgs),
    /// Serve the agents over HTTP: OpenAI-compatible API, agent REST API and a web page.
    Serve(serve::ServeArgs),
    /// Serve one agent to MCP clients (editors, desktop assistants) over stdio.
    Mcp(mcp::McpArgs),
    /// Measure speed (JSON output comparable with the reference engines).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

/// Parse arguments and run the command.
pub fn run() -> Result<ExitCode> {
    let mut cli = Cli::parse();
    // candle's CPU pools size themselves from RAYON_NUM_THREADS, and without it candle re-reads
    // /proc/cpuinfo on every matmul; set it once, before any pool starts: --threads, else an
    // existing value, else candle's default (physical cores) but no more than the cores this
    // process may run on (`taskset`, cgroup quotas): the pools spin while they wait, and two
    // spinning threads on one core made decoding ~20x slower (SmolLM2: 5.8 vs 111 tokens/s).
    let n = match cli.global.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| {
                let allowed = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
                candle_core::utils::get_num_threads().min(allowed).max(1)
            }),
    };
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    cli.global.threads = Some(n);
    let g = &cli.global;
    match cli.command {
        Command::Models(c) => models::run(g, c)?,
        Command::Tokenize(a) => generate::tokenize(g, a)?,
        Command::Generate(a) => generate::generate(g, a)?,
        Command::Embed(a) => embed::run(g, a)?,
        Command::Bench(c) => bench::run(g, c)?,
        Command::Eval(a) => eval::run(g, a)?,
        Command::Agents(c) => agents::run(g, c)?,
        Command::Chat(a) => chat::chat(g, a)?,
        Command::Ask(a) => chat::ask(g, a)?,
        Command::Debug(c) => debug::run(g, c)?,
        Command::Memory(c) => memory::memory(g, c)?,
        Command::Archival(c) => memory::archival(g, c)?,
        Command::Recall(c) => memory::recall(g, c)?,
        Command::Load(a) => load::run_load(g, a)?,
        Command::Sources(c) => load::sources(g, c)?,
        Command::Serve(a) => serve::run(g, a)?,
        Command::Mcp(a) => mcp::run(g, a)?,
    }
    Ok(ExitCode::SUCCESS)
}
