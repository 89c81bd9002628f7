/*! Agents and their core memory (working context blocks). */

use super::codec::{records, Row};
use super::records::{now_ms, AgentConfig, AgentRecord, Block};
use super::tables::*;
use super::MemoryStore;
use crate::{Error, Result};
use redb::ReadableTable;
use redb::TableHandle;

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
        let tx = self.db().begin_write()?;
        let rec;
        {
            let mut agents = tx.open_table(AGENTS)?;
            if agents.get(name)?.is_some() {
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
            agents.insert(name, Row::Ref(&rec))?;
            let mut blocks = tx.open_table(BLOCKS)?;
            for (label, value) in [("persona", persona), ("human", human)] {
                let b = Block { label: label.into(), value: value.into(), limit: DEFAULT_BLOCK_LIMIT, updated_at: now };
                blocks.insert((id, label), Row::Ref(&b))?;
            }
        }
        tx.commit()?;
        Ok(rec)
    }

    /// The agent called `name`.
    pub fn agent(&self, name: &str) -> Result<AgentRecord> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(AGENTS)?;
        let v = t.get(name)?.ok_or_else(|| Error::NoAgent { name: name.into() })?;
        v.value().decode(AGENTS.name())
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
        let tx = self.db().begin_read()?;
        let t = tx.open_table(AGENTS)?;
        let mut out = vec![];
        for row in t.iter()? {
            out.push(row?.1.value().decode(AGENTS.name())?);
        }
        Ok(out)
    }

    /// Replace an agent's record (config, models, last_used).
    pub fn update_agent(&self, rec: &AgentRecord) -> Result<()> {
        let tx = self.db().begin_write()?;
        {
            let mut t = tx.open_table(AGENTS)?;
            t.insert(rec.name.as_str(), Row::Ref(rec))?;
        }
        Ok(tx.commit()?)
    }

    /// Delete an agent and everything it owns (messages, blocks, passages, index).
    pub fn delete_agent(&self, name: &str) -> Result<()> {
        let rec = self.agent(name)?;
        let id = rec.id;
        let tx = self.db().begin_write()?;
        {
            tx.open_table(AGENTS)?.remove(name)?;
            tx.open_table(SUMMARY)?.remove(id)?;
            let all = (id, 0)..=(id, u64::MAX);
            tx.open_table(MESSAGES)?.retain_in(all.clone(), |_, _| false)?;
            tx.open_table(PASSAGES)?.retain_in(all.clone(), |_, _| false)?;
            for table in [VECTORS, MESSAGE_VECTORS] {
                tx.open_table(table)?.retain_in(all.clone(), |_, _| false)?;
            }
            let mut b = tx.open_table(BLOCKS)?;
            b.retain(|(a, _), _| a != id)?;
            let mut s = tx.open_table(AGENT_STATE)?;
            s.retain(|(a, _), _| a != id)?;
            let mut src = tx.open_table(SOURCES)?;
            src.retain(|(a, _), _| a != id)?;
        }
        tx.commit()?;
        self.context.forget(id);
        self.drop_index(id);
        // A cache only: a file that cannot be removed is harmless (ids are not reused).
        let _ = std::fs::remove_file(self.agent_kv_file(id));
        Ok(())
    }

    /// Core-memory blocks of an agent, `persona` and `human` first.
    pub fn blocks(&self, agent: u64) -> Result<Vec<Block>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(BLOCKS)?;
        let mut out: Vec<Block> = records(&t, agent, BLOCKS.name())?;
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
        let tx = self.db().begin_write()?;
        {
            let mut t = tx.open_table(BLOCKS)?;
            t.insert((agent, label), Row::Ref(&b))?;
        }
        tx.commit()?;
        Ok(b)
    }

    /// Write a block exactly as given (imports), enforcing its limit.
    pub fn put_block(&self, agent: u64, b: &Block) -> Result<()> {
        self.set_block(agent, &b.label, &b.value, b.limit)?;
        let tx = self.db().begin_write()?;
        {
            let mut t = tx.open_table(BLOCKS)?;
            t.insert((agent, b.label.as_str()), Row::Ref(b))?;
        }
        Ok(tx.commit()?)
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
