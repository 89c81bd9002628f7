/*! KV state that outlives the process: where an agent's cache is saved and which one to restore.

After a turn the step session's cache is saved to `kv/agent-ID.kv` beside the database; the
next process (`pagemind ask`, `chat`) restores it before its first step, so the prompt it
shares with the last turn (everything but the new messages) is not evaluated again. An agent
without saved state starts from the model's shared prefix file, `kv/prefix-FINGERPRINT.kv`:
the system instructions, which every agent of that model shares up to its name (the name is
the instructions' last line), so even a new agent's first step skips most of its system
message. The file format and its checks are `runtime::KvFile`'s; a stale or damaged file is
skipped with a reason, never an error.
*/

use super::Agent;
use crate::runtime::{KvTransfer, Session};
use crate::Result;
use std::path::PathBuf;

/// The KV files of one agent.
#[derive(Debug, Clone)]
pub struct KvState {
    /// This agent's cache after its last turn.
    pub agent_file: PathBuf,
    /// The system prefix shared by the agents of this model.
    pub prefix_file: PathBuf,
    /// Tokens of the system message (what the prefix file keeps).
    system_tokens: usize,
}

impl KvState {
    /// The files of `agent` running its model.
    pub fn of(agent: &Agent) -> Self {
        let store = agent.store;
        Self {
            agent_file: store.agent_kv_file(agent.record.id),
            prefix_file: store.kv_dir().join(format!("prefix-{}.kv", agent.model.fingerprint())),
            system_tokens: agent.fixed_tokens,
        }
    }

    /// Restore the agent's own state, else the shared prefix; `skipped` says why neither was
    /// usable (the session then starts cold).
    pub fn restore(&self, session: &mut Session) -> Result<KvTransfer> {
        let own = session.restore_state(&self.agent_file)?;
        if own.skipped.is_none() {
            return Ok(own);
        }
        let shared = session.restore_state(&self.prefix_file)?;
        Ok(match shared.skipped {
            None => shared,
            Some(why) => {
                KvTransfer { skipped: Some(format!("{}; shared prefix: {why}", own.skipped.unwrap())), ..shared }
            }
        })
    }

    /// Save the session's cache as the agent's state, and its system message as the shared
    /// prefix when no prefix file exists yet.
    pub fn save(&self, session: &Session) -> Result<KvTransfer> {
        if !self.prefix_file.exists() && session.tokens().len() >= self.system_tokens {
            session.save_state(&self.prefix_file, Some(self.system_tokens))?;
        }
        session.save_state(&self.agent_file, None)
    }
}
