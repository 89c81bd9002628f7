/*! `pagemind load` (documents into archival storage) and `pagemind sources list|remove`. */

use super::agents::open_store;
use super::chat::ensure_model;
use super::memory::AgentArg;
use super::Global;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pagemind::ingest::{load, LoadOptions, LoadReport, Progress};
use pagemind::memory::{source_key, DEFAULT_HUMAN, DEFAULT_PERSONA};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The agent to load into (created on first use).
    #[arg(long)]
    pub agent: String,
    /// Only files matching this glob (gitignore syntax, repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Skip files matching this glob (gitignore syntax, repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Chunk size in embedding-model tokens.
    #[arg(long, default_value_t = 200)]
    pub chunk_tokens: usize,
    /// Tokens each chunk repeats from the end of the previous one.
    #[arg(long, default_value_t = 40)]
    pub overlap: usize,
    /// Chunks embedded and committed together.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Files and folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum SourcesCmd {
    /// The files loaded into an agent: chunks, size, when.
    List {
        #[command(flatten)]
        agent: AgentArg,
        #[arg(long)]
        json: bool,
    },
    /// Remove loaded files and their passages.
    Remove {
        #[command(flatten)]
        agent: AgentArg,
        /// Paths as `sources list` shows them (or as given to `load`).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

struct Bar {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    files: usize,
    verbose: bool,
}

impl Progress for Bar {
    fn start(&mut self, files: usize, bytes: u64) {
        self.files = files;
        self.bar.set_length(bytes.max(1));
    }
    fn update(&mut self, done: u64, r: &LoadReport) {
        self.bar.set_position(done);
        let tps = if r.seconds > 0.0 { r.tokens as f64 / r.seconds } else { 0.0 };
        let files = r.loaded + r.unchanged + r.skipped.len();
        self.bar.set_message(format!("{files}/{} files, {} chunks, {tps:.0} tok/s", self.files, r.chunks));
    }
    fn committed(&mut self, path: &str, chunks: u64) {
        if self.verbose {
            self.bar.suspend(|| eprintln!("committed {chunks} chunks of {path}"));
        }
    }
    fn cancelled(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

pub fn run_load(g: &Global, a: LoadArgs) -> Result<()> {
    if a.chunk_tokens < 16 || a.overlap >= a.chunk_tokens || a.batch == 0 {
        bail!("--chunk-tokens must be at least 16, --overlap smaller than it, --batch at least 1");
    }
    let models = g.models();
    let store = open_store(g)?;
    if !store.has_agent(&a.agent)? {
        let c = models.catalog();
        store.create_agent(&a.agent, c.agent_model(), &c.default_embedding, DEFAULT_PERSONA, DEFAULT_HUMAN)?;
        eprintln!("created agent '{}'", a.agent);
    }
    let rec = pagemind::ingest::make_document_agent(&store, &a.agent)?;
    ensure_model(&models, &rec.embedding_model)?;
    let embedder = super::embed::load_embedder(g, Some(&rec.embedding_model))?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    // A second Ctrl-C (or a handler already installed) falls back to the default: the load is
    // crash-safe either way.
    let _ = ctrlc::set_handler(move || s.store(true, Ordering::SeqCst));
    let bar =
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) { ProgressBar::new(1) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {percent:>3}% {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut p = Bar { bar, stop, files: 0, verbose: g.verbose > 0 };
    let opts = LoadOptions {
        chunk_tokens: a.chunk_tokens,
        overlap: a.overlap,
        batch: a.batch,
        include: a.include,
        exclude: a.exclude,
    };
    let r = load(&store, &embedder, &rec, &a.paths, &opts, &mut p)?;
    p.bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for (f, why) in &r.skipped {
            eprintln!("skipped {f}: {why}");
        }
        for (f, why) in &r.warnings {
            eprintln!("warning {f}: {why}");
        }
        let mb = r.bytes as f64 / 1e6;
        println!(
            "{} files: {} loaded ({} replaced, {} resumed), {} unchanged, {} skipped; {} chunks, {} tokens, {:.2} MB in {:.1}s ({:.2} MB/s, {:.1} chunks/s)",
            r.files,
            r.loaded,
            r.replaced,
            r.resumed,
            r.unchanged,
            r.skipped.len(),
            r.chunks,
            r.tokens,
            mb,
            r.seconds,
            mb / r.seconds.max(1e-9),
            r.chunks as f64 / r.seconds.max(1e-9)
        );
    }
    if r.interrupted {
        eprintln!("interrupted: run the same command again to resume");
        std::process::exit(130);
    }
    Ok(())
}

pub fn sources(g: &Global, cmd: SourcesCmd) -> Result<()> {
    let store = open_store(g)?;
    match cmd {
        SourcesCmd::List { agent, json } => {
            let a = store.agent(&agent.agent)?;
            let list = store.sources(a.id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if list.is_empty() {
                println!("no sources loaded into '{}': use `pagemind load --agent {} PATH...`", a.name, a.name);
            }
            for s in list {
                let when = chrono::DateTime::from_timestamp_millis(s.loaded_at)
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                let state = if s.complete { "" } else { " (incomplete: load again to resume)" };
                let note = if s.note.is_empty() { String::new() } else { format!(" [{}]", s.note) };
                println!("{:>6} chunks {:>10} bytes  {when}  {} {}{state}{note}", s.chunks, s.bytes, s.kind, s.path);
            }
        }
        SourcesCmd::Remove { agent, paths } => {
            let a = store.agent(&agent.agent)?;
            for p in paths {
                let abs = std::path::absolute(&p).unwrap_or(p.clone());
                let key =
                    [source_key(&abs), source_key(&p)].into_iter().find_map(|k| store.source(a.id, &k).transpose());
                let Some(rec) = key.transpose()? else {
                    bail!(
                        "'{}' is not a source of agent '{}': see `pagemind sources list --agent {}`",
                        p.display(),
                        a.name,
                        a.name
                    );
                };
                let n = store.source_remove(a.id, &a.embedding_model, rec.key())?;
                println!("removed {} ({n} passages)", rec.path);
            }
            store.save_indexes()?;
        }
    }
    Ok(())
}
