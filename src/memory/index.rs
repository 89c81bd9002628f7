/*! The archival HNSW index (usearch): derived, rebuildable data.

Each agent's index lives in `<home>/index/<agent id>.usearch` with a sidecar
`<agent id>.usearch.json` recording what it covers: passage count, last passage id, embedding
model and dimension. On open the sidecar must match redb exactly (and the index must load with
that many vectors); otherwise the index is rebuilt from the vectors stored in redb. Saves write
a temporary file and rename it, so a crash leaves the old index or the new one, and at worst a
stale sidecar, which only costs a rebuild. Deleting these files never loses data.
*/

use super::tables::VECTORS;
use super::MemoryStore;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// HNSW parameters: graph degree, and candidate-list sizes while building and searching.
pub const CONNECTIVITY: usize = 16;
pub const EXPANSION_ADD: usize = 128;
pub const EXPANSION_SEARCH: usize = 128;

/// Below this many vectors a search compares the query with every one (usearch's exact search
/// over the same f16 vectors): a few milliseconds at most, and no passage is ever missed, as HNSW
/// can miss one among near-duplicates (overlapping chunks, repeated lines).
pub const EXACT_BELOW: usize = 10_000;

/// Vectors read from redb per parallel insertion round during a rebuild.
const REBUILD_BATCH: usize = 8192;

/// What an index file covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Coverage {
    count: usize,
    last_id: u64,
    model: String,
    dim: usize,
}

/// One agent's HNSW index over its archival passages.
pub struct ArchivalIndex {
    index: Index,
    path: PathBuf,
    cover: Coverage,
    dirty: bool,
    /// Whether opening it required a rebuild (for reports and tests).
    pub rebuilt: bool,
}

fn idx_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Index { path: path.to_path_buf(), msg: e.to_string() }
}

fn new_index(dim: usize, path: &Path) -> Result<Index> {
    let opts = IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F16,
        connectivity: CONNECTIVITY,
        expansion_add: EXPANSION_ADD,
        expansion_search: EXPANSION_SEARCH,
        multi: false,
    };
    Index::new(&opts).map_err(|e| idx_err(path, e))
}

/// Decode a stored vector.
pub(crate) fn vec_from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Encode a vector for storage.
pub(crate) fn vec_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl ArchivalIndex {
    /// Open the index of `agent`, rebuilding it from redb unless it covers exactly what redb holds.
    pub fn open(store: &MemoryStore, dir: &Path, agent: u64, model: &str, dim: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| idx_err(dir, e))?;
        let path = dir.join(format!("{agent}.usearch"));
        let truth = store.vector_coverage(agent, model, dim)?;
        if let Some(idx) = Self::try_load(&path, &truth) {
            return Ok(Self { index: idx, path, cover: truth, dirty: false, rebuilt: false });
        }
        let mut s = Self { index: new_index(dim, &path)?, path, cover: truth.clone(), dirty: true, rebuilt: true };
        // Rebuild on every core: usearch's add is thread-safe given one context per thread.
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
        s.index.reserve_capacity_and_threads(truth.count.max(1024), threads).map_err(|e| idx_err(&s.path, e))?;
        let bar = if store.progress && truth.count > 1000 {
            let b = indicatif::ProgressBar::new(truth.count as u64);
            b.set_message("rebuilding archival index");
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut batch: Vec<(u64, Vec<f32>)> = Vec::with_capacity(REBUILD_BATCH);
        let add_all = |s: &Self, batch: &mut Vec<(u64, Vec<f32>)>| -> Result<()> {
            let per = batch.len().div_ceil(threads).max(1);
            std::thread::scope(|sc| {
                let handles: Vec<_> = batch
                    .chunks(per)
                    .map(|part| {
                        sc.spawn(move || -> Result<()> {
                            for (id, v) in part {
                                s.index.add(*id, v).map_err(|e| idx_err(&s.path, e))?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .try_for_each(|h| h.join().unwrap_or_else(|_| Err(idx_err(&s.path, "index worker panicked"))))
            })?;
            bar.inc(batch.len() as u64);
            batch.clear();
            Ok(())
        };
        store.for_each_vector(agent, |id, v| {
            if v.len() != dim {
                return Err(Error::Index {
                    path: s.path.clone(),
                    msg: format!(
                        "passage {id} has a {}-d vector, expected {dim}-d (embedding model changed?)",
                        v.len()
                    ),
                });
            }
            batch.push((id, v));
            if batch.len() == REBUILD_BATCH {
                add_all(&s, &mut batch)?;
            }
            Ok(())
        })?;
        add_all(&s, &mut batch)?;
        bar.finish_and_clear();
        s.save()?;
        Ok(s)
    }

    fn meta_path(path: &Path) -> PathBuf {
        path.with_extension("usearch.json")
    }

    fn try_load(path: &Path, truth: &Coverage) -> Option<Index> {
        let meta: Coverage = serde_json::from_slice(&std::fs::read(Self::meta_path(path)).ok()?).ok()?;
        if &meta != truth || !path.exists() {
            return None;
        }
        let idx = new_index(truth.dim, path).ok()?;
        idx.load(path.to_str()?).ok()?;
        (idx.size() == truth.count && idx.dimensions() == truth.dim).then_some(idx)
    }

    /// Number of vectors in the index.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.cover.dim
    }

    /// Add a vector that redb has already committed.
    pub fn add(&mut self, id: u64, v: &[f32]) -> Result<()> {
        if self.index.size() + 1 > self.index.capacity() {
            let cap = (self.index.capacity() * 2).max(1024);
            self.index.reserve(cap).map_err(|e| idx_err(&self.path, e))?;
        }
        self.index.add(id, v).map_err(|e| idx_err(&self.path, e))?;
        self.cover.count += 1;
        self.cover.last_id = self.cover.last_id.max(id);
        self.dirty = true;
        Ok(())
    }

    /// Remove a vector that redb has already deleted. `last_id` is the store's new last id.
    pub fn remove(&mut self, id: u64, last_id: u64) -> Result<()> {
        let n = self.index.remove(id).map_err(|e| idx_err(&self.path, e))?;
        self.cover.count -= n.min(self.cover.count);
        self.cover.last_id = last_id;
        self.dirty = true;
        Ok(())
    }

    /// The vector stored under `id` (dequantized from f16), if the index holds it.
    pub fn vector(&self, id: u64) -> Result<Option<Vec<f32>>> {
        let mut v: Vec<f32> = vec![];
        let n = self.index.export(id, &mut v).map_err(|e| idx_err(&self.path, e))?;
        Ok((n > 0).then(|| v[..self.cover.dim].to_vec()))
    }

    /// The `k` nearest ids with cosine similarity, best first: exact below [`EXACT_BELOW`]
    /// vectors, approximate (HNSW) above.
    pub fn search(&self, q: &[f32], k: usize) -> Result<Vec<(u64, f32)>> {
        if self.index.size() == 0 || k == 0 {
            return Ok(vec![]);
        }
        let m = if self.index.size() < EXACT_BELOW { self.index.exact_search(q, k) } else { self.index.search(q, k) }
            .map_err(|e| idx_err(&self.path, e))?;
        Ok(m.keys.into_iter().zip(m.distances).map(|(id, d)| (id, 1.0 - d)).collect())
    }

    /// Write the index and its sidecar if anything changed (atomic renames).
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let meta = Self::meta_path(&self.path);
        let _ = std::fs::remove_file(&meta); // a crash mid-save then means "stale", never "wrong"
        let tmp = self.path.with_extension("usearch.tmp");
        self.index
            .save(tmp.to_str().ok_or_else(|| idx_err(&tmp, "path is not UTF-8"))?)
            .map_err(|e| idx_err(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| idx_err(&self.path, e))?;
        let mtmp = meta.with_extension("json.tmp");
        std::fs::write(&mtmp, serde_json::to_vec(&self.cover).expect("serialisable")).map_err(|e| idx_err(&mtmp, e))?;
        std::fs::rename(&mtmp, &meta).map_err(|e| idx_err(&meta, e))?;
        self.dirty = false;
        Ok(())
    }
}

impl MemoryStore {
    /// What redb holds for `agent`: the coverage an index must match.
    fn vector_coverage(&self, agent: u64, model: &str, dim: usize) -> Result<Coverage> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(VECTORS)?;
        let mut count = 0;
        let mut last_id = 0;
        super::codec::scan(&t, agent, |(_, id), _| {
            count += 1;
            last_id = id;
            Ok(true)
        })?;
        Ok(Coverage { count, last_id, model: model.into(), dim })
    }

    /// Visit every stored vector of `agent` in id order.
    pub(crate) fn for_each_vector(&self, agent: u64, mut f: impl FnMut(u64, Vec<f32>) -> Result<()>) -> Result<()> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(VECTORS)?;
        super::codec::scan(&t, agent, |(_, id), v| {
            f(id, vec_from_bytes(v))?;
            Ok(true)
        })
    }

    /// Run `f` with the agent's open index (opening or rebuilding it first).
    pub(crate) fn with_index<T>(
        &self,
        agent: u64,
        model: &str,
        dim: usize,
        f: impl FnOnce(&mut ArchivalIndex) -> Result<T>,
    ) -> Result<T> {
        let mut map = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&agent).is_none_or(|i| i.dim() != dim) {
            let idx = ArchivalIndex::open(self, &self.index_dir, agent, model, dim)?;
            map.insert(agent, idx);
        }
        f(map.get_mut(&agent).expect("inserted above"))
    }

    /// Whether opening the agent's index needed a rebuild (opens it if not open yet).
    pub fn index_was_rebuilt(&self, agent: u64, model: &str, dim: usize) -> Result<bool> {
        self.with_index(agent, model, dim, |i| Ok(i.rebuilt))
    }

    /// Forget an agent's index (files included).
    pub(crate) fn drop_index(&self, agent: u64) {
        let mut map = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&agent);
        let path = self.index_dir.join(format!("{agent}.usearch"));
        let _ = std::fs::remove_file(ArchivalIndex::meta_path(&path));
        let _ = std::fs::remove_file(&path);
    }
}
