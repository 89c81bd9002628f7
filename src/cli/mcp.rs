/*! `pagemind mcp`: one agent as a Model Context Protocol server on stdio (see
`pagemind::serve::mcp`). */

use super::chat::{load_agent, DEFAULT_AGENT};
use super::Global;
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct McpArgs {
    /// The agent (created on first use).
    #[arg(long, default_value = DEFAULT_AGENT)]
    pub agent: String,
    /// Chat model for a new agent, or to run an existing one with.
    #[arg(long)]
    pub model: Option<String>,
}

pub fn run(g: &Global, a: McpArgs) -> Result<()> {
    let l = load_agent(g, &a.agent, a.model.as_deref(), &Default::default())?;
    eprintln!("pagemind mcp: agent '{}' on stdio", a.agent);
    pagemind::serve::mcp::run(l.store, l.model, Some(l.embedder), &a.agent)?;
    Ok(())
}
