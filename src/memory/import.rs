/*! A whole agent written in one transaction (`pagemind agents import`).

Either every row of the agent commits (record, blocks, messages, summary, passages with their
vectors, sources, state) or none does: a killed import leaves nothing behind that would block
importing it again. Ids are assigned here, in the order given. The archival index is derived
data and is built on first use.
*/

use super::agents::check_name;
use super::codec::Row;
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
        let tx = self.db().begin_write()?;
        let mut rec = rows.record;
        {
            let mut agents = tx.open_table(AGENTS)?;
            if agents.get(name.as_str())?.is_some() {
                return Err(Error::AgentExists { name });
            }
            rec.id = self.next_id(&tx, "next_agent_id")?;
            let id = rec.id;
            agents.insert(name.as_str(), Row::Ref(&rec))?;
            let mut t = tx.open_table(BLOCKS)?;
            for b in &rows.blocks {
                t.insert((id, b.label.as_str()), Row::Ref(b))?;
            }
            let mut t = tx.open_table(MESSAGES)?;
            for m in rows.messages {
                let m = Message { id: self.next_id(&tx, "next_message_id")?, ..m };
                t.insert((id, m.id), Row::Ref(&m))?;
            }
            tx.open_table(SUMMARY)?.insert(id, Row::Ref(&rows.summary))?;
            let mut pt = tx.open_table(PASSAGES)?;
            let mut vt = tx.open_table(VECTORS)?;
            for (p, v) in &rows.passages {
                let p = Passage { id: self.next_id(&tx, "next_passage_id")?, ..p.clone() };
                pt.insert((id, p.id), Row::Ref(&p))?;
                vt.insert((id, p.id), vec_to_bytes(v).as_slice())?;
            }
            let mut t = tx.open_table(SOURCES)?;
            for s in &rows.sources {
                t.insert((id, s.key()), Row::Ref(s))?;
            }
            let mut t = tx.open_table(AGENT_STATE)?;
            for (k, v) in &rows.state {
                t.insert((id, k.as_str()), Row::Ref(v))?;
            }
        }
        tx.commit()?;
        Ok(rec)
    }
}
