/*! `pagemind memory show`, `pagemind archival insert|search`, `pagemind recall search`. */

use super::agents::open_store;
use super::embed::load_embedder;
use super::Global;
use anyhow::Result;
use clap::{Args, Subcommand};
use pagemind::memory::{parse_date, NewPassage};
use serde_json::json;

#[derive(Args, Debug)]
pub struct AgentArg {
    /// The agent's name.
    #[arg(long)]
    pub agent: String,
}

#[derive(Args, Debug)]
pub struct PageArgs {
    /// 0-based page.
    #[arg(long, default_value_t = 0)]
    pub page: usize,
    #[arg(long, default_value_t = 5)]
    pub page_size: usize,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum MemoryCmd {
    /// Show core memory, the summary and storage stats.
    Show {
        #[command(flatten)]
        agent: AgentArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ArchivalCmd {
    /// Insert a passage.
    Insert {
        #[command(flatten)]
        agent: AgentArg,
        text: String,
    },
    /// Search passages by meaning.
    Search {
        #[command(flatten)]
        agent: AgentArg,
        #[command(flatten)]
        page: PageArgs,
        /// Keep only passages containing this text.
        #[arg(long)]
        contains: Option<String>,
        query: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RecallCmd {
    /// Search messages by text and/or date (YYYY-MM-DD, inclusive, UTC).
    Search {
        #[command(flatten)]
        agent: AgentArg,
        #[arg(long)]
        query: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

pub fn memory(g: &Global, cmd: MemoryCmd) -> Result<()> {
    let MemoryCmd::Show { agent, json } = cmd;
    let store = open_store(g)?;
    let a = store.agent(&agent.agent)?;
    let blocks = store.blocks(a.id)?;
    let summary = store.summary(a.id)?;
    let in_ctx = store.context_messages(a.id)?.len();
    let total = store.message_count(a.id)?;
    let passages = store.passage_count(a.id)?;
    if json {
        let v = json!({"agent": a, "blocks": blocks, "summary": summary, "messages_in_recall": total,
                       "messages_in_context": in_ctx, "archival_passages": passages});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("agent {} (model {})", a.name, a.chat_model);
    for b in blocks {
        println!("\n[{}] {}/{} chars\n{}", b.label, b.value.chars().count(), b.limit, b.value);
    }
    println!("\n[summary]\n{}", if summary.text.is_empty() { "(none yet)" } else { &summary.text });
    println!("\nrecall: {total} messages ({in_ctx} in context); archival: {passages} passages");
    Ok(())
}

pub fn archival(g: &Global, cmd: ArchivalCmd) -> Result<()> {
    let store = open_store(g)?;
    match cmd {
        ArchivalCmd::Insert { agent, text } => {
            let a = store.agent(&agent.agent)?;
            let e = load_embedder(g, Some(&a.embedding_model))?;
            let vector = e.embed(&[&text])?.remove(0);
            let p = NewPassage { text, source: "user".into(), span: String::new(), metadata: json!({}), vector };
            let p = store.archival_insert(a.id, &a.embedding_model, p)?;
            println!("inserted passage {}", p.id);
        }
        ArchivalCmd::Search { agent, page, contains, query } => {
            let a = store.agent(&agent.agent)?;
            let e = load_embedder(g, Some(&a.embedding_model))?;
            let q = e.embed(&[&query])?.remove(0);
            let r =
                store.archival_search(a.id, &a.embedding_model, &q, page.page, page.page_size, contains.as_deref())?;
            if page.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!("{}", r.header());
            for (i, s) in r.items.iter().enumerate() {
                let src = if s.passage.span.is_empty() {
                    s.passage.source.clone()
                } else {
                    format!("{} {}", s.passage.source, s.passage.span)
                };
                println!(
                    "{}. [{:.3}] #{} ({src}) {}",
                    r.page * r.page_size + i + 1,
                    s.score,
                    s.passage.id,
                    s.passage.text
                );
            }
        }
    }
    Ok(())
}

pub fn recall(g: &Global, cmd: RecallCmd) -> Result<()> {
    let RecallCmd::Search { agent, query, from, to, page } = cmd;
    let store = open_store(g)?;
    let a = store.agent(&agent.agent)?;
    let from = from.as_deref().map(parse_date).transpose()?;
    let to = to.as_deref().map(parse_date).transpose()?;
    let r = store.recall_query(a.id, query.as_deref(), from, to, page.page, page.page_size)?;
    if page.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("{}", r.header());
    for m in &r.items {
        let when = chrono::DateTime::from_timestamp_millis(m.created_at)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let text = match m.call() {
            Some(c) => format!("{}({}) [{}]", c.function, c.arguments, c.thoughts),
            None => m.content.clone(),
        };
        println!("#{} {when} {}: {text}", m.id, m.role.as_str());
    }
    Ok(())
}
