/*! Recall storage: every message the agent ever saw, and the recursive summary.

Search semantics (documented for the model and for people):
- text search is a case-insensitive substring match over a message's content and its function
  arguments/results; results are ranked newest first;
- date search takes inclusive `YYYY-MM-DD` dates interpreted in UTC; results are oldest first;
- pages are 0-based with a page size (default 5).
*/

use super::records::{now_ms, Message, Page, Summary};
use super::tables::*;
use super::{check_text, MemoryStore};
use crate::{Error, Result};
use chrono::NaiveDate;

/// Parse `YYYY-MM-DD`, or an error the model can act on.
pub fn parse_date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| Error::Memory(format!("invalid date {s:?}: use YYYY-MM-DD, e.g. 2024-01-31")))
}

impl MemoryStore {
    /// Append a message; it is committed (fsync'd) before this returns. Sets id and time.
    pub fn append_message(&self, agent: u64, msg: Message) -> Result<Message> {
        Ok(self.append_messages(agent, vec![msg])?.remove(0))
    }

    /// Append messages in order in one transaction (durable on return). Sets ids, and times
    /// where they are 0.
    pub fn append_messages(&self, agent: u64, msgs: Vec<Message>) -> Result<Vec<Message>> {
        for m in &msgs {
            check_text("message", &m.content)?;
        }
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(msgs.len());
        {
            let mut t = tx.open_table(MESSAGES).map_err(|e| self.err(e))?;
            for mut msg in msgs {
                msg.id = self.next_id(&tx, "next_message_id")?;
                if msg.created_at == 0 {
                    msg.created_at = now_ms();
                }
                let bytes = serde_json::to_vec(&msg).map_err(|e| self.err(e))?;
                t.insert((agent, msg.id), bytes.as_slice()).map_err(|e| self.err(e))?;
                out.push(msg);
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Rewrite stored messages (same ids), e.g. to mark them out of context; one transaction.
    pub fn update_messages(&self, agent: u64, msgs: &[Message]) -> Result<()> {
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(MESSAGES).map_err(|e| self.err(e))?;
            for m in msgs {
                let bytes = serde_json::to_vec(m).map_err(|e| self.err(e))?;
                t.insert((agent, m.id), bytes.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Delete messages by id (used by `/pop` and `/retry`).
    pub fn delete_messages(&self, agent: u64, ids: &[u64]) -> Result<()> {
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(MESSAGES).map_err(|e| self.err(e))?;
            for id in ids {
                t.remove((agent, *id)).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every message of `agent`, oldest first, for which `keep` holds.
    pub fn messages_where(&self, agent: u64, mut keep: impl FnMut(&Message) -> bool) -> Result<Vec<Message>> {
        let tx = self.db().begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(MESSAGES).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in t.range((agent, 0)..=(agent, u64::MAX)).map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            let m: Message = serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
            if keep(&m) {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Every message, oldest first.
    pub fn messages(&self, agent: u64) -> Result<Vec<Message>> {
        self.messages_where(agent, |_| true)
    }

    /// The messages in the FIFO queue (main context), oldest first.
    pub fn context_messages(&self, agent: u64) -> Result<Vec<Message>> {
        self.messages_where(agent, |m| m.in_context)
    }

    /// Messages in recall storage.
    pub fn message_count(&self, agent: u64) -> Result<usize> {
        self.count_rows(MESSAGES, agent)
    }

    /// Case-insensitive text search, newest first.
    pub fn recall_search(&self, agent: u64, query: &str, page: usize, size: usize) -> Result<Page<Message>> {
        let q = query.to_lowercase();
        let mut hits = self.messages_where(agent, |m| m.search_text().to_lowercase().contains(&q))?;
        hits.reverse();
        Ok(Page::of(hits, page, size.max(1)))
    }

    /// Messages created between `from` and `to` (inclusive, UTC days), oldest first.
    pub fn recall_by_date(
        &self,
        agent: u64,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        page: usize,
        size: usize,
    ) -> Result<Page<Message>> {
        let start =
            from.map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis()).unwrap_or(i64::MIN);
        let end = to
            .map(|d| d.succ_opt().unwrap_or(d).and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
            .unwrap_or(i64::MAX);
        if start >= end && from.is_some() && to.is_some() {
            return Err(Error::Memory("the start date is after the end date".into()));
        }
        let hits = self.messages_where(agent, |m| m.created_at >= start && m.created_at < end)?;
        Ok(Page::of(hits, page, size.max(1)))
    }

    /// Text search combined with an optional date range (for `pagemind recall search`).
    pub fn recall_query(
        &self,
        agent: u64,
        query: Option<&str>,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        page: usize,
        size: usize,
    ) -> Result<Page<Message>> {
        match (query, from.is_some() || to.is_some()) {
            (Some(q), false) => self.recall_search(agent, q, page, size),
            (None, _) => self.recall_by_date(agent, from, to, page, size),
            (Some(q), true) => {
                let all = self.recall_by_date(agent, from, to, 0, usize::MAX)?;
                let q = q.to_lowercase();
                let mut hits: Vec<Message> =
                    all.items.into_iter().filter(|m| m.search_text().to_lowercase().contains(&q)).collect();
                hits.reverse();
                Ok(Page::of(hits, page, size.max(1)))
            }
        }
    }

    /// The recursive summary (empty if none yet).
    pub fn summary(&self, agent: u64) -> Result<Summary> {
        let tx = self.db().begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(SUMMARY).map_err(|e| self.err(e))?;
        let v = t.get(agent).map_err(|e| self.err(e))?;
        match v {
            Some(v) => serde_json::from_slice(v.value()).map_err(|e| self.err(e)),
            None => Ok(Summary::default()),
        }
    }

    /// Write the summary exactly as given (imports).
    pub fn put_summary(&self, agent: u64, summary: &Summary) -> Result<()> {
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        {
            let mut s = tx.open_table(SUMMARY).map_err(|e| self.err(e))?;
            let bytes = serde_json::to_vec(summary).map_err(|e| self.err(e))?;
            s.insert(agent, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Replace the summary and mark `evicted` out of context, atomically (a flush).
    pub fn flush_queue(&self, agent: u64, summary: &Summary, evicted: &[Message]) -> Result<()> {
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        {
            let mut s = tx.open_table(SUMMARY).map_err(|e| self.err(e))?;
            let mut sum = summary.clone();
            sum.updated_at = now_ms();
            let bytes = serde_json::to_vec(&sum).map_err(|e| self.err(e))?;
            s.insert(agent, bytes.as_slice()).map_err(|e| self.err(e))?;
            let mut t = tx.open_table(MESSAGES).map_err(|e| self.err(e))?;
            for m in evicted {
                let mut m = m.clone();
                m.in_context = false;
                let bytes = serde_json::to_vec(&m).map_err(|e| self.err(e))?;
                t.insert((agent, m.id), bytes.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }
}
