/*! `pagemind serve`: the local HTTP API and web page (see `pagemind::serve`). */

use super::chat::ensure_model;
use super::Global;
use anyhow::{Context, Result};
use clap::Args;
use pagemind::serve::{ServeConfig, DEFAULT_QUEUE, DEFAULT_TIMEOUT_S};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; any other address needs --token-file).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// File whose first line is the bearer token every API request must carry.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Chat model to load (agents are served with it; default: the catalog's agent model).
    #[arg(long)]
    pub model: Option<String>,
    /// Requests waiting for the model, at most, before new ones get 503.
    #[arg(long, default_value_t = DEFAULT_QUEUE)]
    pub queue: usize,
    /// Seconds a request may wait for its response to start (then 504; a running turn still
    /// completes and is saved).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_S)]
    pub timeout: u64,
}

pub fn run(g: &Global, a: ServeArgs) -> Result<()> {
    let token = match &a.token_file {
        Some(f) => {
            let t = std::fs::read_to_string(f).with_context(|| format!("reading the token file {}", f.display()))?;
            let t = t.lines().next().unwrap_or("").trim().to_string();
            anyhow::ensure!(!t.is_empty(), "{}: the token file is empty", f.display());
            Some(t)
        }
        None => None,
    };
    let models = g.models();
    let chat = a.model.clone().unwrap_or(models.catalog().agent_model().to_string());
    let emb = models.catalog().default_embedding.clone();
    let cfg = ServeConfig {
        listen: a.listen,
        token,
        queue: a.queue,
        chat_model: chat.clone(),
        embedding_model: emb.clone(),
        timeout_s: a.timeout,
    };
    cfg.check()?;
    ensure_model(&models, &chat)?;
    ensure_model(&models, &emb)?;
    let store = super::agents::open_store(g)?;
    let model = super::generate::load_chat(g, Some(&chat))?;
    let embedder = super::embed::load_embedder(g, Some(&emb))?;
    pagemind::serve::run(cfg, store, model, Some(embedder), |addr| {
        // One line on stdout, for scripts and tests to find the port.
        println!("pagemind serve: listening on http://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}
