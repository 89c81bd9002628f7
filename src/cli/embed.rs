/*! `pagemind embed`. */

use super::Global;
use anyhow::{Context, Result};
use clap::Args;
use pagemind::embed::Embedder;
use pagemind::store::Role;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Embedding model id or folder (default: the catalog's default embedding model).
    #[arg(long)]
    pub model: Option<String>,
    /// JSON arrays (the default; kept for scripts that pass it).
    #[arg(long)]
    pub json: bool,
    /// Texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

/// Load the embedding model by id/folder (default: the catalog's default).
pub fn load_embedder(g: &Global, model: Option<&str>) -> Result<Embedder> {
    let models = g.models();
    let r = models.resolve_or_default(model, Role::Embedding)?;
    let max_len = r.spec.as_ref().map(|s| s.context_length).unwrap_or(256);
    let device = g.device()?;
    Embedder::load(&r.file("model.safetensors"), &r.file("config.json"), &r.file("tokenizer.json"), max_len, &device)
        .with_context(|| format!("loading {}", r.name()))
}

pub fn run(g: &Global, a: EmbedArgs) -> Result<()> {
    let e = load_embedder(g, a.model.as_deref())?;
    let texts: Vec<&str> = a.texts.iter().map(|s| s.as_str()).collect();
    for v in e.embed(&texts)? {
        println!("{}", serde_json::to_string(&v)?);
    }
    Ok(())
}
