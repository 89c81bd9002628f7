/*! External context and persistent agent state: recall and archival storage, core memory.

redb is the source of truth for everything ([`MemoryStore`], one database per `<home>`,
`<home>/pagemind.redb`); the usearch HNSW index of each agent's archival passages
(`<home>/index/<agent id>.usearch`) is derived data, checked against redb on open and rebuilt from
the stored vectors when missing, stale or unreadable ([`ArchivalIndex`]).

- agents and core memory: [`MemoryStore::create_agent`], [`MemoryStore::core_append`],
  [`MemoryStore::core_replace`] (character limits enforced; a failing edit changes nothing).
- recall: [`MemoryStore::append_message`] (durable on return), [`MemoryStore::recall_search`]
  (case-insensitive text, newest first), [`MemoryStore::recall_by_date`] (inclusive UTC dates).
- archival: [`MemoryStore::archival_insert`], [`MemoryStore::archival_search`],
  [`MemoryStore::archival_delete`]; identifiers shared by passages link them, and a page of
  results comes with its links followed ([`MemoryStore::follow_links`]).
- loaded documents: [`Source`] records committed atomically with their passages
  ([`MemoryStore::source_append`]), removed with [`MemoryStore::source_remove`].

```no_run
use pagemind::memory::{MemoryStore, Message, MessageRole};
# fn main() -> pagemind::Result<()> {
let store = MemoryStore::open("/tmp/pm-home".as_ref())?;
let agent = store.create_agent("sam", "smollm2-135m-instruct-q4_1", "all-minilm-l6-v2", "I am Sam.", "Unknown.")?;
store.append_message(agent.id, Message::new(MessageRole::User, "I love mangoes"))?;
let hits = store.recall_search(agent.id, "mango", 0, 5)?;
assert_eq!(hits.total, 1);
# Ok(()) }
```
*/

mod agents;
mod archival;
mod check;
mod codec;
mod context_cache;
mod import;
mod index;
mod links;
mod migrate;
pub mod rank;
mod recall;
mod records;
mod sources;
mod tables;

pub use agents::{DEFAULT_BLOCK_LIMIT, DEFAULT_HUMAN, DEFAULT_PERSONA};
pub use archival::{NewPassage, ScoredPassage};
pub use import::AgentRows;
pub use index::{ArchivalIndex, EXACT_BELOW};
pub use links::{identifiers, Followed, FollowedLinks, MAX_FANOUT, MIN_ID_CHARS};
pub use recall::{named_speaker, parse_date, RecallFilter, RecallHits, SpeakerFilter};
pub use records::{now_ms, AgentConfig, AgentRecord, Block, Message, MessageRole, Page, Passage, Summary};
pub use sources::{source_key, source_name, Source};
pub use tables::SCHEMA_VERSION;

use crate::{Error, Result};
use redb::TableHandle;
use redb::{Database, ReadableTable};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tables::*;

/// Largest message or passage text accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// The store: one redb database plus the derived archival indexes.
pub struct MemoryStore {
    db: Database,
    path: PathBuf,
    index_dir: PathBuf,
    indexes: Mutex<HashMap<u64, ArchivalIndex>>,
    /// Each agent's queue and summary, written through (main context without disk reads).
    context: context_cache::ContextCache,
    /// Show progress bars for long work (index rebuilds).
    pub progress: bool,
}

impl MemoryStore {
    /// Open (or create) the store under `home`. A store held by another process is a clear
    /// [`Error::StoreLocked`], never a wait.
    pub fn open(home: &Path) -> Result<Self> {
        // Conversations are private: a new home is created 0700 and the database is 0600.
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(home).map_err(|e| Error::file(home, format!("cannot create the store folder: {e}")))?;
        let path = home.join("pagemind.redb");
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(Error::StoreLocked { path }),
            Err(e) => return Err(Error::Store { path, source: Box::new(e.into()) }),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        let s = Self {
            db,
            index_dir: home.join("index"),
            path,
            indexes: Mutex::new(HashMap::new()),
            context: Default::default(),
            progress: false,
        };
        s.init_schema()?;
        Ok(s)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder of saved KV state beside the database (`kv/`; see `agent::KvState`).
    pub fn kv_dir(&self) -> PathBuf {
        self.path.with_file_name("kv")
    }

    /// The saved KV state of agent `id`.
    pub fn agent_kv_file(&self, id: u64) -> PathBuf {
        self.kv_dir().join(format!("agent-{id}.kv"))
    }

    fn init_schema(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
                Some(v) if v == SCHEMA_VERSION => {}
                Some(v) if (1..SCHEMA_VERSION).contains(&v) => {
                    migrate::migrate(&tx, v)?;
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
                Some(v) => {
                    let hint = "it was written by a newer pagemind; upgrade pagemind";
                    return Err(Error::Schema { path: self.path.clone(), found: v, expected: SCHEMA_VERSION, hint });
                }
            }
            // Create every table so readers never meet a missing one.
            tx.open_table(AGENTS)?;
            tx.open_table(BLOCKS)?;
            tx.open_table(MESSAGES)?;
            tx.open_table(SUMMARY)?;
            tx.open_table(PASSAGES)?;
            tx.open_table(VECTORS)?;
            tx.open_table(AGENT_STATE)?;
            tx.open_table(SOURCES)?;
            tx.open_table(MESSAGE_VECTORS)?;
        }
        Ok(tx.commit()?)
    }

    /// Take the next value of a counter in `META` inside `tx`.
    pub(crate) fn next_id(&self, tx: &redb::WriteTransaction, key: &str) -> Result<u64> {
        let mut meta = tx.open_table(META)?;
        let id = meta.get(key)?.map(|v| v.value()).unwrap_or(1);
        meta.insert(key, id + 1)?;
        Ok(id)
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    /// Save every open archival index (they are otherwise saved when the store is dropped).
    pub fn save_indexes(&self) -> Result<()> {
        let mut map = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        for idx in map.values_mut() {
            idx.save()?;
        }
        Ok(())
    }

    /// Per-agent state stored for other modules (e.g. the loaded sources of document QA).
    pub fn get_state(&self, agent: u64, key: &str) -> Result<Option<serde_json::Value>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(AGENT_STATE)?;
        let v = t.get((agent, key))?;
        v.map(|v| v.value().decode(AGENT_STATE.name())).transpose()
    }

    /// Set per-agent state (durable on return).
    pub fn set_state(&self, agent: u64, key: &str, value: &serde_json::Value) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(AGENT_STATE)?;
            t.insert((agent, key), codec::Row::Ref(value))?;
        }
        Ok(tx.commit()?)
    }

    /// Number of rows of `agent` in a `(agent, id)` table.
    pub(crate) fn count_rows<V: redb::Value + 'static>(
        &self,
        table: redb::TableDefinition<(u64, u64), V>,
        agent: u64,
    ) -> Result<usize> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        let mut n = 0;
        codec::scan(&t, agent, |_, _| {
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        let _ = self.save_indexes();
    }
}

/// Reject texts we will not store.
pub(crate) fn check_text(what: &str, text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::Invalid(format!(
            "{what} is {} bytes; the limit is {MAX_TEXT_BYTES} bytes: split it (e.g. `pagemind load` chunks documents)",
            text.len()
        )));
    }
    Ok(())
}
