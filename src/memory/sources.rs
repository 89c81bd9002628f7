/*! Loaded documents: one [`Source`] record per file loaded into an agent's archival storage.

A file is loaded in batches; each batch of passages and the updated record (chunks done so far)
commit in one transaction, so an interrupted load leaves a consistent prefix and a later load
resumes after it. A record is `complete` once its last batch has committed.

A source is keyed by the raw bytes of its path ([`source_key`]), so two names that differ only
in bytes that are not UTF-8 are two sources; its [`Source::path`] is the readable form
([`source_name`]: invalid bytes written `\xNN`), which passages carry as their `source`.
*/

use super::archival::NewPassage;
use super::codec::{records, Row};
use super::records::Passage;
use super::tables::*;
use super::MemoryStore;
use crate::Result;
use redb::TableHandle;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The key of a loaded file: its path's raw bytes (the OS encoding).
pub fn source_key(path: &Path) -> Vec<u8> {
    path.as_os_str().as_encoded_bytes().to_vec()
}

/// The readable name of a loaded file: its path, with bytes that are not UTF-8 written `\xNN`
/// (distinct raw names give distinct names, unlike a lossy conversion).
pub fn source_name(path: &Path) -> String {
    let bytes = path.as_os_str().as_encoded_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// A file loaded (or being loaded) into archival storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// The path as given to `load`, made absolute ([`source_name`]).
    pub path: String,
    /// The path's raw bytes when they are not UTF-8 (else `path` is the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_path: Option<Vec<u8>>,
    /// sha256 of the file's bytes, hex.
    pub sha256: String,
    pub bytes: u64,
    /// `text`, `markdown`, `html`, `pdf`, `json` or `jsonl`.
    pub kind: String,
    /// Chunking settings the passages were cut with (a change reloads the file).
    pub chunk_tokens: usize,
    pub overlap: usize,
    /// Chunks committed so far.
    pub chunks: u64,
    /// Whether every chunk has been committed.
    pub complete: bool,
    /// When the load of this version of the file started (ms since the epoch).
    pub loaded_at: i64,
    /// Anything the user should know (e.g. "not UTF-8: decoded lossily").
    #[serde(default)]
    pub note: String,
}

impl Source {
    /// The record of the file at `path` (absolute), before anything is loaded from it.
    pub fn for_path(path: &Path) -> Self {
        let name = source_name(path);
        let raw = source_key(path);
        Source {
            raw_path: (raw != name.as_bytes()).then_some(raw),
            path: name,
            sha256: String::new(),
            bytes: 0,
            kind: String::new(),
            chunk_tokens: 0,
            overlap: 0,
            chunks: 0,
            complete: false,
            loaded_at: 0,
            note: String::new(),
        }
    }

    /// Its key in the store: the raw path bytes.
    pub fn key(&self) -> &[u8] {
        self.raw_path.as_deref().unwrap_or(self.path.as_bytes())
    }
}

impl MemoryStore {
    /// The record of one source, by key ([`source_key`], or a name's bytes).
    pub fn source(&self, agent: u64, key: &[u8]) -> Result<Option<Source>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(SOURCES)?;
        let v = t.get((agent, key))?;
        v.map(|v| v.value().decode(SOURCES.name())).transpose()
    }

    /// Every source of an agent, by path.
    pub fn sources(&self, agent: u64) -> Result<Vec<Source>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(SOURCES)?;
        records(&t, agent, SOURCES.name())
    }

    /// Commit a batch of a source's passages together with its updated record.
    pub fn source_append(&self, agent: u64, model: &str, rec: &Source, items: Vec<NewPassage>) -> Result<Vec<Passage>> {
        let items = items.into_iter().map(NewPassage::into_row).collect();
        self.archival_import_with(agent, model, items, |tx| {
            let mut t = tx.open_table(SOURCES)?;
            t.insert((agent, rec.key()), Row::Ref(rec))?;
            Ok(())
        })
    }

    /// Remove a source (by key) and all its passages in one transaction; returns the passages
    /// removed (0 if there is no such source).
    pub fn source_remove(&self, agent: u64, model: &str, key: &[u8]) -> Result<usize> {
        let Some(rec) = self.source(agent, key)? else {
            return Ok(0);
        };
        let ids: Vec<u64> = self.passages_where(agent, |p| p.source == rec.path)?.iter().map(|p| p.id).collect();
        let tx = self.db().begin_write()?;
        let mut dim = 0;
        let last_id;
        {
            let mut pt = tx.open_table(PASSAGES)?;
            let mut vt = tx.open_table(VECTORS)?;
            for &id in &ids {
                pt.remove((agent, id))?;
                if let Some(v) = vt.remove((agent, id))? {
                    dim = v.value().len() / 4;
                }
            }
            last_id = super::archival::last_vector_id(&vt, agent)?;
            let mut st = tx.open_table(SOURCES)?;
            st.remove((agent, key))?;
        }
        tx.commit()?;
        if dim > 0 {
            self.with_index(agent, model, dim, |idx| {
                for &id in &ids {
                    idx.remove(id, last_id)?;
                }
                Ok(())
            })?;
        }
        Ok(ids.len())
    }
}
