/*! The model thread: one owner of the loaded models, the store and each agent's warm session.

Handlers never touch the models: they queue a [`Job`] (a closure over [`Worker`]) on a bounded
channel and await its answer. One job runs at a time, so one turn runs at a time per agent (and,
on a CPU that the model already saturates, across agents); a full queue is refused at once
(503) rather than waiting without bound. Each agent keeps its step session between requests, so
a turn through the server evaluates only the new messages; its KV state is also saved after each
turn like `ask` does, and restored when the agent's session is first created.
*/

use crate::agent::{Agent, KvState, LlmSteps};
use crate::embed::Embedder;
use crate::memory::MemoryStore;
use crate::runtime::ChatModel;
use crate::Result;
use std::collections::HashMap;
use tokio::sync::mpsc;

/// A unit of work for the model thread.
pub type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// What the model thread owns.
pub struct Worker {
    pub store: &'static MemoryStore,
    pub model: &'static ChatModel,
    pub embedder: Option<&'static Embedder>,
    /// Each agent's step session (by agent id), kept warm between requests.
    sessions: HashMap<u64, LlmSteps<'static>>,
}

impl Worker {
    /// Open agent `name` (cheap: records and the prompt prefix are read from the store's
    /// in-memory copy).
    pub fn agent(&self, name: &str) -> Result<Agent<'static>> {
        Agent::open(self.store, self.model, self.embedder, name, None)
    }

    /// The agent's warm step session, created (and its saved KV state restored) on first use.
    pub fn steps(&mut self, agent: &Agent<'static>) -> Result<&mut LlmSteps<'static>> {
        let stale = self.sessions.get(&agent.record.id).is_some_and(|s| s.session.n_ctx() != agent.window);
        if stale || !self.sessions.contains_key(&agent.record.id) {
            let mut steps = LlmSteps::new(self.model, &agent.tools, agent.window, None)?;
            KvState::of(agent).restore(&mut steps.session)?;
            self.sessions.insert(agent.record.id, steps);
        }
        Ok(self.sessions.get_mut(&agent.record.id).expect("inserted above"))
    }

    /// Save the agent's KV state after a turn (a failure only costs a later cold start).
    pub fn save_kv(&self, agent: &Agent<'static>) {
        if let Some(s) = self.sessions.get(&agent.record.id) {
            let _ = KvState::of(agent).save(&s.session);
        }
    }

    /// The embedding of `text` (archival search and insert).
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let e = self.embedder.ok_or_else(|| crate::Error::Memory("no embedding model is loaded".into()))?;
        Ok(e.embed(&[text])?.remove(0))
    }

    /// Forget an agent's session (the agent was deleted or its tools changed).
    pub fn forget(&mut self, id: u64) {
        self.sessions.remove(&id);
    }
}

/// Start the model thread with a queue of `capacity` jobs; the thread ends when every sender
/// is dropped, after the jobs already queued, and then saves the archival indexes.
pub fn spawn(
    store: &'static MemoryStore,
    model: &'static ChatModel,
    embedder: Option<&'static Embedder>,
    capacity: usize,
) -> (mpsc::Sender<Job>, std::thread::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Job>(capacity.max(1));
    let handle = std::thread::Builder::new()
        .name("pagemind-model".into())
        .spawn(move || {
            let mut w = Worker { store, model, embedder, sessions: HashMap::new() };
            while let Some(job) = rx.blocking_recv() {
                job(&mut w);
            }
            let _ = w.store.save_indexes();
        })
        .expect("spawning the model thread");
    (tx, handle)
}
