/*! Loaded documents: one [`Source`] record per file loaded into an agent's archival storage.

A file is loaded in batches; each batch of passages and the updated record (chunks done so far)
commit in one transaction, so an interrupted load leaves a consistent prefix and a later load
resumes after it. A record is `complete` once its last batch has committed.
*/

use super::archival::NewPassage;
use super::records::Passage;
use super::tables::*;
use super::MemoryStore;
use crate::Result;
use serde::{Deserialize, Serialize};

/// A file loaded (or being loaded) into archival storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// The path as given to `load`, made absolute.
    pub path: String,
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

impl MemoryStore {
    /// The record of one source.
    pub fn source(&self, agent: u64, path: &str) -> Result<Option<Source>> {
        let tx = self.db().begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        let v = t.get((agent, path)).map_err(|e| self.err(e))?;
        v.map(|v| serde_json::from_slice(v.value()).map_err(|e| self.err(e))).transpose()
    }

    /// Every source of an agent, by path.
    pub fn sources(&self, agent: u64) -> Result<Vec<Source>> {
        let tx = self.db().begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in t.range((agent, "")..).map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            if k.value().0 != agent {
                break;
            }
            out.push(serde_json::from_slice(v.value()).map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    /// Commit a batch of a source's passages together with its updated record.
    pub fn source_append(&self, agent: u64, model: &str, rec: &Source, items: Vec<NewPassage>) -> Result<Vec<Passage>> {
        let items = items.into_iter().map(NewPassage::into_row).collect();
        let bytes = serde_json::to_vec(rec).map_err(|e| self.err(e))?;
        self.archival_import_with(agent, model, items, |tx| {
            let mut t = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
            t.insert((agent, rec.path.as_str()), bytes.as_slice()).map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    /// Remove a source and all its passages in one transaction; returns the passages removed.
    pub fn source_remove(&self, agent: u64, model: &str, path: &str) -> Result<usize> {
        let ids: Vec<u64> = self.passages_where(agent, |p| p.source == path)?.iter().map(|p| p.id).collect();
        let tx = self.db().begin_write().map_err(|e| self.err(e))?;
        let mut dim = 0;
        let last_id;
        {
            let mut pt = tx.open_table(PASSAGES).map_err(|e| self.err(e))?;
            let mut vt = tx.open_table(VECTORS).map_err(|e| self.err(e))?;
            for &id in &ids {
                pt.remove((agent, id)).map_err(|e| self.err(e))?;
                if let Some(v) = vt.remove((agent, id)).map_err(|e| self.err(e))? {
                    dim = v.value().len() / 4;
                }
            }
            last_id = super::archival::last_vector_id(self, &vt, agent)?;
            let mut st = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
            st.remove((agent, path)).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
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
