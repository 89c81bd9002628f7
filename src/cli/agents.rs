/*! `pagemind agents create|list|delete`. */

use super::Global;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use pagemind::memory::{MemoryStore, DEFAULT_HUMAN, DEFAULT_PERSONA};
use std::io::{BufRead, Write};

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// Create an agent.
    Create {
        name: String,
        /// Chat model id (default: the default chat model).
        #[arg(long)]
        model: Option<String>,
        /// Embedding model id (default: the default embedding model).
        #[arg(long)]
        embedding_model: Option<String>,
        /// Persona core-memory block: text, or @FILE to read it from a file.
        #[arg(long)]
        persona: Option<String>,
        /// Human core-memory block: text, or @FILE.
        #[arg(long)]
        human: Option<String>,
    },
    /// List agents.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Write the whole agent (config, core memory, messages, summary, passages) as JSON to stdout.
    Export { name: String },
    /// Import an agent from an export file.
    Import {
        file: std::path::PathBuf,
        /// Import under this name instead of the exported one.
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete an agent and all its memory.
    Delete {
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

/// `TEXT` or `@FILE`.
pub fn text_or_file(s: &str) -> Result<String> {
    match s.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}")),
        None => Ok(s.to_string()),
    }
}

/// Open the memory store of this home.
pub fn open_store(g: &Global) -> Result<MemoryStore> {
    let mut s = MemoryStore::open(g.models().home())?;
    s.progress = true;
    Ok(s)
}

pub fn run(g: &Global, cmd: AgentsCmd) -> Result<()> {
    let store = open_store(g)?;
    let catalog = g.models().catalog().clone();
    match cmd {
        AgentsCmd::Create { name, model, embedding_model, persona, human } => {
            let chat = model.unwrap_or(catalog.agent_model().to_string());
            let emb = embedding_model.unwrap_or(catalog.default_embedding.clone());
            if catalog.get(&chat).is_none() && !std::path::Path::new(&chat).exists() {
                bail!("unknown chat model '{chat}': see `pagemind models list`");
            }
            let persona = persona.map(|p| text_or_file(&p)).transpose()?.unwrap_or_else(|| DEFAULT_PERSONA.into());
            let human = human.map(|p| text_or_file(&p)).transpose()?.unwrap_or_else(|| DEFAULT_HUMAN.into());
            let a = store.create_agent(&name, &chat, &emb, &persona, &human)?;
            println!("created agent '{}' (model {})", a.name, a.chat_model);
        }
        AgentsCmd::List { json } => {
            let agents = store.agents()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&agents)?);
                return Ok(());
            }
            println!("{:<20} {:<36} {:>9} {:>9}  last used", "NAME", "MODEL", "MESSAGES", "PASSAGES");
            for a in agents {
                let when = chrono::DateTime::from_timestamp_millis(a.last_used)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default();
                println!(
                    "{:<20} {:<36} {:>9} {:>9}  {when}",
                    a.name,
                    a.chat_model,
                    store.message_count(a.id)?,
                    store.passage_count(a.id)?
                );
            }
        }
        AgentsCmd::Export { name } => {
            let ex = pagemind::agent::export_agent(&store, &name)?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &ex)?;
            writeln!(out)?;
        }
        AgentsCmd::Import { file, name } => {
            let size = std::fs::metadata(&file).with_context(|| format!("reading {}", file.display()))?.len();
            if size > pagemind::agent::MAX_EXPORT_BYTES {
                anyhow::bail!(
                    "{}: {size} bytes is over the {} bytes an agent export may have: is it an export file?",
                    file.display(),
                    pagemind::agent::MAX_EXPORT_BYTES
                );
            }
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let ex: pagemind::agent::AgentExport = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a pagemind agent export", file.display()))?;
            let rec = pagemind::agent::import_agent(&store, &ex, name.as_deref())
                .with_context(|| format!("importing {}", file.display()))?;
            println!("imported agent '{}' ({} messages, {} passages)", rec.name, ex.messages.len(), ex.passages.len());
        }
        AgentsCmd::Delete { name, yes } => {
            let a = store.agent(&name)?;
            if !yes {
                eprint!(
                    "Delete agent '{name}' with {} messages and {} passages? [y/N] ",
                    store.message_count(a.id)?,
                    store.passage_count(a.id)?
                );
                std::io::stderr().flush()?;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    bail!("not deleted (answer y, or pass --yes)");
                }
            }
            store.delete_agent(&name)?;
            println!("deleted agent '{name}'");
        }
    }
    Ok(())
}
