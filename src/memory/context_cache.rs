/*! Main context kept in memory: each agent's FIFO queue and recursive summary.

redb stays the source of truth; this is a write-through copy owned by the [`MemoryStore`], so
every write path (append, update, delete, flush, import, delete agent) keeps it exact, whoever
calls it (the agent loop, `/retry` and `/pop` in `chat`, evaluations). An agent's queue is read
from disk once, on first use; after that building a step's prompt reads nothing from disk, and
its cost depends on the queue (bounded by the context window), not on how much recall storage
holds.
*/

use super::records::{Message, Summary};
use std::collections::HashMap;
use std::sync::Mutex;

/// The cached queues and summaries, by agent id.
#[derive(Default)]
pub(crate) struct ContextCache {
    queues: Mutex<HashMap<u64, Vec<Message>>>,
    summaries: Mutex<HashMap<u64, Summary>>,
}

impl ContextCache {
    /// The cached queue of `agent`, if loaded.
    pub fn queue(&self, agent: u64) -> Option<Vec<Message>> {
        self.queues.lock().expect("cache lock").get(&agent).cloned()
    }

    /// Cache the queue as read from disk (oldest first).
    pub fn set_queue(&self, agent: u64, queue: Vec<Message>) {
        self.queues.lock().expect("cache lock").insert(agent, queue);
    }

    /// Messages just committed: those in context join the queue (ids only grow).
    pub fn appended(&self, agent: u64, msgs: &[Message]) {
        if let Some(q) = self.queues.lock().expect("cache lock").get_mut(&agent) {
            q.extend(msgs.iter().filter(|m| m.in_context).cloned());
        }
    }

    /// Messages rewritten under their ids: replaced, removed when now out of context, or put
    /// back in id order when brought into context.
    pub fn updated(&self, agent: u64, msgs: &[Message]) {
        if let Some(q) = self.queues.lock().expect("cache lock").get_mut(&agent) {
            for m in msgs {
                match (q.binary_search_by_key(&m.id, |x| x.id), m.in_context) {
                    (Ok(i), true) => q[i] = m.clone(),
                    (Ok(i), false) => {
                        q.remove(i);
                    }
                    (Err(i), true) => q.insert(i, m.clone()),
                    (Err(_), false) => {}
                }
            }
        }
    }

    /// Messages deleted or evicted.
    pub fn removed(&self, agent: u64, ids: &[u64]) {
        if let Some(q) = self.queues.lock().expect("cache lock").get_mut(&agent) {
            q.retain(|m| !ids.contains(&m.id));
        }
    }

    /// The cached summary of `agent`, if loaded.
    pub fn summary(&self, agent: u64) -> Option<Summary> {
        self.summaries.lock().expect("cache lock").get(&agent).cloned()
    }

    /// The summary as committed.
    pub fn set_summary(&self, agent: u64, s: &Summary) {
        self.summaries.lock().expect("cache lock").insert(agent, s.clone());
    }

    /// Forget an agent (deleted, or its rows rewritten wholesale).
    pub fn forget(&self, agent: u64) {
        self.queues.lock().expect("cache lock").remove(&agent);
        self.summaries.lock().expect("cache lock").remove(&agent);
    }
}
