/*! `pagemind agents export|import`: a whole agent as one JSON document.

Format `pagemind-agent/1`:
```text
{ "format": "pagemind-agent/1",
  "agent":    { name, chat_model, embedding_model, created_at, last_used, config },
  "blocks":   [ { label, value, limit, updated_at } ],
  "summary":  { text, updated_at, messages_covered },
  "messages": [ { role, content, function?, name?, created_at, tokens, counted_by?, in_context } ],   // oldest first
  "passages": [ { text, source, span, created_at, metadata, vector: [f32; dim] } ],      // id order
  "sources":  [ { path, sha256, bytes, kind, chunk_tokens, overlap, chunks, complete, ... } ],
  "state":    { key: value } }
```
Ids are not part of the format: they are written as 0, and an import assigns new ones in the
same order, so export -> import -> export gives the same bytes. Sources come along, so loading
the same folder again after an import adds nothing. An import is validated first ([`validate`]:
configuration, blocks, vectors, counts), is one transaction (`MemoryStore::import_rows`), and
reads at most [`MAX_EXPORT_BYTES`].
*/

use crate::memory::{AgentRecord, AgentRows, Block, MemoryStore, Message, Passage, Source, Summary};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The format tag.
pub const EXPORT_FORMAT: &str = "pagemind-agent/1";

/// The largest export file `agents import` reads (1 GiB: ~250k passages with 384-d vectors).
pub const MAX_EXPORT_BYTES: u64 = 1 << 30;

/// A passage with its embedding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportedPassage {
    #[serde(flatten)]
    pub passage: Passage,
    pub vector: Vec<f32>,
}

/// A whole agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentExport {
    pub format: String,
    pub agent: AgentRecord,
    pub blocks: Vec<Block>,
    pub summary: Summary,
    pub messages: Vec<Message>,
    pub passages: Vec<ExportedPassage>,
    /// Files loaded into archival storage (absent in exports of older builds).
    #[serde(default)]
    pub sources: Vec<Source>,
    #[serde(default)]
    pub state: serde_json::Map<String, serde_json::Value>,
}

impl AgentExport {
    /// The same export with store-assigned ids zeroed, for comparisons.
    pub fn without_ids(mut self) -> Self {
        self.agent.id = 0;
        self.messages.iter_mut().for_each(|m| m.id = 0);
        self.passages.iter_mut().for_each(|p| p.passage.id = 0);
        self
    }
}

const STATE_KEYS: &[&str] = &["last_login", "pressure_warned", "sources"];

/// Export the agent called `name`.
pub fn export_agent(store: &MemoryStore, name: &str) -> Result<AgentExport> {
    let a = store.agent(name)?;
    let mut passages = vec![];
    for p in store.passages_where(a.id, |_| true)? {
        let vector = store.passage_vector(a.id, p.id)?.unwrap_or_default();
        passages.push(ExportedPassage { passage: p, vector });
    }
    let mut state = serde_json::Map::new();
    for k in STATE_KEYS {
        if let Some(v) = store.get_state(a.id, k)? {
            state.insert(k.to_string(), v);
        }
    }
    Ok(AgentExport {
        format: EXPORT_FORMAT.into(),
        blocks: store.blocks(a.id)?,
        summary: store.summary(a.id)?,
        messages: store.messages(a.id)?,
        sources: store.sources(a.id)?,
        agent: a,
        passages,
        state,
    }
    .without_ids())
}

/// Check an export before anything is written; the error names the field and what is wrong.
pub fn validate(ex: &AgentExport) -> Result<()> {
    let bad = |field: &str, what: String| Err(Error::Invalid(format!("agent export: {field}: {what}")));
    if ex.format != EXPORT_FORMAT {
        return bad("format", format!("'{}' is not '{EXPORT_FORMAT}' (not a pagemind agent export)", ex.format));
    }
    let c = &ex.agent.config;
    if c.context_window != 0 && !(256..=crate::runtime::MAX_POSITIONS).contains(&c.context_window) {
        return bad(
            "agent.config.context_window",
            format!("{} is outside 256..=131072 (0 = default)", c.context_window),
        );
    }
    let fraction = |v: f32| v.is_finite() && v > 0.0 && v <= 1.0;
    if !fraction(c.flush_threshold) || !fraction(c.warning_threshold) || c.warning_threshold > c.flush_threshold {
        return bad(
            "agent.config",
            format!(
                "warning_threshold {} and flush_threshold {} must satisfy 0 < warning <= flush <= 1",
                c.warning_threshold, c.flush_threshold
            ),
        );
    }
    if !fraction(c.evict_fraction) || c.evict_fraction >= 1.0 {
        return bad("agent.config.evict_fraction", format!("{} must be in (0, 1)", c.evict_fraction));
    }
    if c.max_steps == 0 || c.max_steps > 100 || c.max_searches > 100 {
        return bad("agent.config", format!("max_steps {} must be 1..=100 and max_searches at most 100", c.max_steps));
    }
    let mut labels = std::collections::HashSet::new();
    for b in &ex.blocks {
        if b.label.is_empty() || !labels.insert(b.label.as_str()) {
            return bad("blocks", format!("label '{}' is empty or repeated", b.label));
        }
        if b.limit == 0 || b.value.chars().count() > b.limit {
            return bad(
                "blocks",
                format!("'{}' holds {} characters, over its limit {}", b.label, b.value.chars().count(), b.limit),
            );
        }
    }
    if ex.summary.messages_covered as usize > ex.messages.len() {
        return bad(
            "summary.messages_covered",
            format!("{} but the export has {} messages", ex.summary.messages_covered, ex.messages.len()),
        );
    }
    let dim = ex.passages.first().map_or(0, |p| p.vector.len());
    for (i, p) in ex.passages.iter().enumerate() {
        if p.vector.len() != dim || dim == 0 || p.vector.iter().any(|x| !x.is_finite()) {
            return bad(
                &format!("passages[{i}].vector"),
                format!("{} values (the first passage has {dim}); every vector needs the same non-zero dimension and finite values", p.vector.len()),
            );
        }
    }
    let mut paths = std::collections::HashSet::new();
    for s in &ex.sources {
        if s.path.is_empty() || !paths.insert(s.path.as_str()) {
            return bad("sources", format!("path '{}' is empty or repeated", s.path));
        }
    }
    Ok(())
}

/// Import an export, as `name` (default: the exported name), in one transaction after
/// [`validate`]. Returns the new record.
pub fn import_agent(store: &MemoryStore, ex: &AgentExport, name: Option<&str>) -> Result<AgentRecord> {
    validate(ex)?;
    let record = AgentRecord { name: name.unwrap_or(&ex.agent.name).to_string(), ..ex.agent.clone() };
    store.import_rows(AgentRows {
        record,
        blocks: ex.blocks.clone(),
        summary: ex.summary.clone(),
        messages: ex.messages.clone(),
        passages: ex.passages.iter().map(|p| (p.passage.clone(), p.vector.clone())).collect(),
        sources: ex.sources.clone(),
        state: ex.state.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    })
}
