/*! A whole agent written in one transaction (`pagemind agents import`).

Either every row of the agent commits (record, blocks, messages, summary, passages with their
vectors, sources, state) or none does: a killed import leaves nothing behind that would block
importing it again. Ids are assigned here, in the order given. The archival index is derived
data and is built on first use.
*/

use super::agents::check_name;
use super::index::vec_to_bytes;
use super::tables::*;
use super::{check_text, AgentRecord, Block, MemoryStore, Message, Passage, Source, Summary};
use crate::{Error, Result};
use redb::ReadableTable;

/// Everything an imported agent consists of.
pub struct AgentRows {
    /// Name, models, times and configuration (the id is assigned on import).
    pub record: AgentRecord,
    pub blocks: Vec<Block>,
    pub summary: Summary,
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Passages with their embeddings, in order.
    pub passages: Vec<(Passage, Vec<f32>)>,
    pub sources: Vec<Source>,
    pub state: Vec<(String, serde_json::Value)>,
}

impl MemoryStore {
    /// Write `rows` as a new agent in one transaction; returns its record.
    pub fn import_rows(&self, rows: AgentRows) -> Result<AgentRecord> {
        let name = rows.record.name.clone();
        check_name(&name)?;
        for m in &rows.messages {
            check_text("a message", &m.content)?;
        }
        for (p, _) in &rows.passages {
            check_text("a passage", &p.text)?;
        }
        let json = |v: &dyn erased_json::Json| v.to_json().map_err(|e| self.err(e));
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        let mut rec = rows.record;
        {
            let mut agents = tx.open_table(AGENTS).map_err(|e| self.err(e))?;
            if agents.get(name.as_str()).map_err(|e| self.err(e))?.is_some() {
                return Err(Error::AgentExists { name });
            }
            rec.id = self.next_id(&tx, "next_agent_id")?;
            let id = rec.id;
            agents.insert(name.as_str(), json(&rec)?.as_slice()).map_err(|e| self.err(e))?;
            let mut t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
            for b in &rows.blocks {
                t.insert((id, b.label.as_str()), json(b)?.as_slice()).map_err(|e| self.err(e))?;
            }
            let mut t = tx.open_table(MESSAGES).map_err(|e| self.err(e))?;
            for m in rows.messages {
                let m = Message { id: self.next_id(&tx, "next_message_id")?, ..m };
                t.insert((id, m.id), json(&m)?.as_slice()).map_err(|e| self.err(e))?;
            }
            tx.open_table(SUMMARY)
                .map_err(|e| self.err(e))?
                .insert(id, json(&rows.summary)?.as_slice())
                .map_err(|e| self.err(e))?;
            let mut pt = tx.open_table(PASSAGES).map_err(|e| self.err(e))?;
            let mut vt = tx.open_table(VECTORS).map_err(|e| self.err(e))?;
            for (p, v) in &rows.passages {
                let p = Passage { id: self.next_id(&tx, "next_passage_id")?, ..p.clone() };
                pt.insert((id, p.id), json(&p)?.as_slice()).map_err(|e| self.err(e))?;
                vt.insert((id, p.id), vec_to_bytes(v).as_slice()).map_err(|e| self.err(e))?;
            }
            let mut t = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
            for s in &rows.sources {
                t.insert((id, s.path.as_str()), json(s)?.as_slice()).map_err(|e| self.err(e))?;
            }
            let mut t = tx.open_table(AGENT_STATE).map_err(|e| self.err(e))?;
            for (k, v) in &rows.state {
                t.insert((id, k.as_str()), json(v)?.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(rec)
    }
}

/// `serde_json::to_vec` behind a trait object, so one closure serializes every row type.
mod erased_json {
    pub trait Json {
        fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<Vec<u8>> {
            serde_json::to_vec(self)
        }
    }
}
