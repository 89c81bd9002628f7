/*! `pagemind agents export|import`: a whole agent as one JSON document.

Format `pagemind-agent/1`:
```text
{ "format": "pagemind-agent/1",
  "agent":    { name, chat_model, embedding_model, created_at, last_used, config },
  "blocks":   [ { label, value, limit, updated_at } ],
  "summary":  { text, updated_at, messages_covered },
  "messages": [ { role, content, function?, name?, created_at, tokens, in_context } ],   // oldest first
  "passages": [ { text, source, span, created_at, metadata, vector: [f32; dim] } ],      // id order
  "state":    { key: value } }
```
Ids are not part of the format (an import assigns new ones, keeping order); everything else
round-trips exactly.
*/

use crate::memory::{AgentRecord, Block, MemoryStore, Message, Passage, Summary};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The format tag.
pub const EXPORT_FORMAT: &str = "pagemind-agent/1";

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
        agent: a,
        passages,
        state,
    })
}

/// Import an export, as `name` (default: the exported name). Returns the new record.
pub fn import_agent(store: &MemoryStore, ex: &AgentExport, name: Option<&str>) -> Result<AgentRecord> {
    if ex.format != EXPORT_FORMAT {
        return Err(Error::Invalid(format!(
            "not a pagemind agent export: format is '{}', expected '{EXPORT_FORMAT}'",
            ex.format
        )));
    }
    let name = name.unwrap_or(&ex.agent.name);
    let get = |l: &str| ex.blocks.iter().find(|b| b.label == l).map(|b| b.value.as_str()).unwrap_or("");
    let mut rec =
        store.create_agent(name, &ex.agent.chat_model, &ex.agent.embedding_model, get("persona"), get("human"))?;
    let r = (|| -> Result<AgentRecord> {
        rec.created_at = ex.agent.created_at;
        rec.last_used = ex.agent.last_used;
        rec.config = ex.agent.config.clone();
        store.update_agent(&rec)?;
        for b in &ex.blocks {
            store.put_block(rec.id, b)?;
        }
        store.append_messages(rec.id, ex.messages.clone())?;
        let items = ex.passages.iter().map(|p| (p.passage.clone(), p.vector.clone())).collect();
        store.archival_import(rec.id, &rec.embedding_model, items)?;
        store.put_summary(rec.id, &ex.summary)?;
        for (k, v) in &ex.state {
            store.set_state(rec.id, k, v)?;
        }
        Ok(rec.clone())
    })();
    if r.is_err() {
        let _ = store.delete_agent(name); // no half-imported agent
    }
    r
}
