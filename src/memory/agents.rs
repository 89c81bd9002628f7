/*! Agents and their core memory (working context blocks). */

use super::records::{now_ms, AgentConfig, AgentRecord, Block};
use super::tables::*;
use super::MemoryStore;
use crate::{Error, Result};
use redb::ReadableTable;

/// Default character limit of a core-memory block (as in MemGPT).
pub const DEFAULT_BLOCK_LIMIT: usize = 2000;

/// The persona of a new agent when none is given.
pub const DEFAULT_PERSONA: &str = "I am Sam, a private assistant that runs entirely on this computer. \
I am curious, warm and concise. I remember what matters to the person I talk with and use it to help them.";

/// What a new agent knows of its user when nothing is given.
pub const DEFAULT_HUMAN: &str = "Nothing is known about the user yet.";

pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("invalid agent name '{name}': use 1-64 letters, digits, '-', '_' or '.'")))
    }
}

impl MemoryStore {
    /// Create an agent with `persona` and `human` core-memory blocks.
    pub fn create_agent(
        &self,
        name: &str,
        chat_model: &str,
        embedding_model: &str,
        persona: &str,
        human: &str,
    ) -> Result<AgentRecord> {
        check_name(name)?;
        for (label, v) in [("persona", persona), ("human", human)] {
            if v.chars().count() > DEFAULT_BLOCK_LIMIT {
                return Err(Error::Invalid(format!(
                    "the {label} text is {} characters; a core-memory block holds at most {DEFAULT_BLOCK_LIMIT}",
                    v.chars().count()
                )));
            }
        }
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        let rec;
        {
            let mut agents = tx.open_table(AGENTS).map_err(|e| self.err(e))?;
            if agents.get(name).map_err(|e| self.err(e))?.is_some() {
                return Err(Error::AgentExists { name: name.into() });
            }
            let id = self.next_id(&tx, "next_agent_id")?;
            let now = now_ms();
            rec = AgentRecord {
                id,
                name: name.into(),
                chat_model: chat_model.into(),
                embedding_model: embedding_model.into(),
                created_at: now,
                last_used: now,
                config: AgentConfig::default(),
            };
            let bytes = serde_json::to_vec(&rec).map_err(|e| self.err(e))?;
            agents.insert(name, bytes.as_slice()).map_err(|e| self.err(e))?;
            let mut blocks = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
            for (label, value) in [("persona", persona), ("human", human)] {
                let b = Block { label: label.into(), value: value.into(), limit: DEFAULT_BLOCK_LIMIT, updated_at: now };
                let bytes = serde_json::to_vec(&b).map_err(|e| self.err(e))?;
                blocks.insert((id, label), bytes.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(rec)
    }

    /// The agent called `name`.
    pub fn agent(&self, name: &str) -> Result<AgentRecord> {
        let tx = self.db().begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(AGENTS).map_err(|e| self.err(e))?;
        let v = t.get(name).map_err(|e| self.err(e))?.ok_or_else(|| Error::NoAgent { name: name.into() })?;
        serde_json::from_slice(v.value()).map_err(|e| self.err(e))
    }

    /// Whether an agent called `name` exists.
    pub fn has_agent(&self, name: &str) -> Result<bool> {
        match self.agent(name) {
            Ok(_) => Ok(true),
            Err(Error::NoAgent { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// All agents, by name.
    pub fn agents(&self) -> Result<Vec<AgentRecord>> {
        let tx = self.db().begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(AGENTS).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    /// Replace an agent's record (config, models, last_used).
    pub fn update_agent(&self, rec: &AgentRecord) -> Result<()> {
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(AGENTS).map_err(|e| self.err(e))?;
            let bytes = serde_json::to_vec(rec).map_err(|e| self.err(e))?;
            t.insert(rec.name.as_str(), bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Delete an agent and everything it owns (messages, blocks, passages, index).
    pub fn delete_agent(&self, name: &str) -> Result<()> {
        let rec = self.agent(name)?;
        let id = rec.id;
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        {
            tx.open_table(AGENTS).map_err(|e| self.err(e))?.remove(name).map_err(|e| self.err(e))?;
            tx.open_table(SUMMARY).map_err(|e| self.err(e))?.remove(id).map_err(|e| self.err(e))?;
            for table in [MESSAGES, PASSAGES, VECTORS, MESSAGE_VECTORS] {
                let mut t = tx.open_table(table).map_err(|e| self.err(e))?;
                t.retain_in((id, 0)..=(id, u64::MAX), |_, _| false).map_err(|e| self.err(e))?;
            }
            let mut b = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
            b.retain(|(a, _), _| a != id).map_err(|e| self.err(e))?;
            let mut s = tx.open_table(AGENT_STATE).map_err(|e| self.err(e))?;
            s.retain(|(a, _), _| a != id).map_err(|e| self.err(e))?;
            let mut src = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
            src.retain(|(a, _), _| a != id).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        self.context.forget(id);
        self.drop_index(id);
        // A cache only: a file that cannot be removed is harmless (ids are not reused).
        let _ = std::fs::remove_file(self.agent_kv_file(id));
        Ok(())
    }

    /// Core-memory blocks of an agent, `persona` and `human` first.
    pub fn blocks(&self, agent: u64) -> Result<Vec<Block>> {
        let tx = self.db().begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let mut out: Vec<Block> = vec![];
        for row in t.range((agent, "")..).map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            if k.value().0 != agent {
                break;
            }
            out.push(serde_json::from_slice(v.value()).map_err(|e| self.err(e))?);
        }
        let rank = |l: &str| match l {
            "persona" => 0,
            "human" => 1,
            _ => 2,
        };
        out.sort_by(|a, b| rank(&a.label).cmp(&rank(&b.label)).then(a.label.cmp(&b.label)));
        Ok(out)
    }

    /// One block, or an error listing the labels that exist.
    pub fn block(&self, agent: u64, label: &str) -> Result<Block> {
        let blocks = self.blocks(agent)?;
        let labels: Vec<String> = blocks.iter().map(|b| b.label.clone()).collect();
        blocks.into_iter().find(|b| b.label == label).ok_or_else(|| {
            Error::Memory(format!("there is no core memory block '{label}'; the blocks are: {}", labels.join(", ")))
        })
    }

    /// Write a block (create or overwrite), enforcing its limit.
    pub fn set_block(&self, agent: u64, label: &str, value: &str, limit: usize) -> Result<Block> {
        let n = value.chars().count();
        if n > limit {
            return Err(Error::Memory(format!(
                "core memory block '{label}' would hold {n} characters, over its limit of {limit}; nothing was changed. \
                 Shorten it, or move details to archival memory with archival_memory_insert."
            )));
        }
        let b = Block { label: label.into(), value: value.into(), limit, updated_at: now_ms() };
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let bytes = serde_json::to_vec(&b).map_err(|e| self.err(e))?;
            t.insert((agent, label), bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(b)
    }

    /// Write a block exactly as given (imports), enforcing its limit.
    pub fn put_block(&self, agent: u64, b: &Block) -> Result<()> {
        self.set_block(agent, &b.label, &b.value, b.limit)?;
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let bytes = serde_json::to_vec(b).map_err(|e| self.err(e))?;
            t.insert((agent, b.label.as_str()), bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Append `content` to a block on a new line.
    pub fn core_append(&self, agent: u64, label: &str, content: &str) -> Result<Block> {
        let b = self.block(agent, label)?;
        let value = if b.value.is_empty() { content.to_string() } else { format!("{}\n{}", b.value, content) };
        self.set_block(agent, label, &value, b.limit)
    }

    /// Replace the exact substring `old` of a block with `new` (empty `new` deletes it).
    pub fn core_replace(&self, agent: u64, label: &str, old: &str, new: &str) -> Result<Block> {
        let b = self.block(agent, label)?;
        if old.is_empty() {
            return Err(Error::Memory("old_content is empty: give the exact text to replace".into()));
        }
        if !b.value.contains(old) {
            return Err(Error::Memory(format!(
                "core memory block '{label}' does not contain the exact text {old:?}; nothing was changed. \
                 Copy the text exactly as it appears in the block."
            )));
        }
        let value = b.value.replacen(old, new, 1);
        self.set_block(agent, label, &value, b.limit)
    }
}
