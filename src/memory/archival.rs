/*! Archival storage: passages searched by embedding.

An insert commits text and vector to redb in one transaction, then adds the vector to the HNSW
index. Search asks the index for the `(page + 1) * size` nearest passages and returns ranks
`page * size .. page * size + size - 1`; with a text filter it instead scores, exactly, every
passage containing the text (case-insensitive), so filtered results are never missed.

Identifiers shared between passages link them: see [`super::links`].
*/

use super::codec::{last_id, scan, Row};
use super::index::{vec_from_bytes, vec_to_bytes};
use super::records::{now_ms, Page, Passage};
use super::tables::*;
use super::{check_text, MemoryStore};
use crate::{Error, Result};
use redb::TableHandle;
use serde::Serialize;

/// A passage and its cosine similarity to the query.
#[derive(Debug, Clone, Serialize)]
pub struct ScoredPassage {
    pub score: f32,
    #[serde(flatten)]
    pub passage: Passage,
}

/// A passage to insert: text, where it came from, metadata, and its embedding.
pub struct NewPassage {
    pub text: String,
    pub source: String,
    pub span: String,
    pub metadata: serde_json::Value,
    pub vector: Vec<f32>,
}

impl NewPassage {
    /// The stored passage (id and time assigned on insert) and its vector.
    pub(crate) fn into_row(self) -> (Passage, Vec<f32>) {
        let p = Passage {
            id: 0,
            text: self.text,
            source: self.source,
            span: self.span,
            created_at: 0,
            metadata: self.metadata,
        };
        (p, self.vector)
    }
}

/// The largest passage id with a vector for `agent` (0 if none), for the index coverage record.
pub(crate) fn last_vector_id(vt: &redb::Table<(u64, u64), &[u8]>, agent: u64) -> Result<u64> {
    last_id(vt, agent)
}

impl MemoryStore {
    /// Insert one passage (durable on return) and index it.
    pub fn archival_insert(&self, agent: u64, model: &str, p: NewPassage) -> Result<Passage> {
        Ok(self.archival_insert_many(agent, model, vec![p])?.remove(0))
    }

    /// Insert passages in one transaction, then index them.
    pub fn archival_insert_many(&self, agent: u64, model: &str, items: Vec<NewPassage>) -> Result<Vec<Passage>> {
        let items = items.into_iter().map(NewPassage::into_row).collect();
        self.archival_import(agent, model, items)
    }

    /// Insert passages as given (a `created_at` of 0 means now; ids are assigned), one transaction.
    pub fn archival_import(&self, agent: u64, model: &str, items: Vec<(Passage, Vec<f32>)>) -> Result<Vec<Passage>> {
        self.archival_import_with(agent, model, items, |_| Ok(()))
    }

    /// [`Self::archival_import`], running `also` inside the same write transaction (e.g. to record
    /// a source's progress atomically with its passages).
    pub(crate) fn archival_import_with(
        &self,
        agent: u64,
        model: &str,
        items: Vec<(Passage, Vec<f32>)>,
        also: impl FnOnce(&redb::WriteTransaction) -> Result<()>,
    ) -> Result<Vec<Passage>> {
        let Some(dim) = items.first().map(|p| p.1.len()) else {
            let tx = self.db().begin_write()?;
            also(&tx)?;
            tx.commit()?;
            return Ok(vec![]);
        };
        for (p, v) in &items {
            check_text("passage", &p.text)?;
            if v.len() != dim || dim == 0 {
                return Err(Error::Invalid("all passage vectors must have the same, non-zero, dimension".into()));
            }
        }
        let tx = self.db().begin_write()?;
        let mut out = Vec::with_capacity(items.len());
        {
            let mut pt = tx.open_table(PASSAGES)?;
            let mut vt = tx.open_table(VECTORS)?;
            for (it, v) in &items {
                let mut p = it.clone();
                p.id = self.next_id(&tx, "next_passage_id")?;
                if p.created_at == 0 {
                    p.created_at = now_ms();
                }
                pt.insert((agent, p.id), Row::Ref(&p))?;
                vt.insert((agent, p.id), vec_to_bytes(v).as_slice())?;
                out.push(p);
            }
        }
        also(&tx)?;
        // Open (or rebuild) the index before committing, so that it reflects the state before
        // these passages; then add them once committed.
        self.with_index(agent, model, dim, |_| Ok(()))?;
        tx.commit()?;
        self.with_index(agent, model, dim, |idx| {
            for (p, (_, v)) in out.iter().zip(&items) {
                idx.add(p.id, v)?;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Delete a passage.
    pub fn archival_delete(&self, agent: u64, model: &str, id: u64) -> Result<()> {
        let tx = self.db().begin_write()?;
        let dim;
        let last_id;
        {
            let mut pt = tx.open_table(PASSAGES)?;
            let mut vt = tx.open_table(VECTORS)?;
            if pt.remove((agent, id))?.is_none() {
                return Err(Error::Memory(format!("there is no archival passage with id {id}")));
            }
            dim = vt.remove((agent, id))?.map(|v| v.value().len() / 4).unwrap_or(0);
            last_id = last_vector_id(&vt, agent)?;
        }
        tx.commit()?;
        if dim > 0 {
            self.with_index(agent, model, dim, |idx| idx.remove(id, last_id))?;
        }
        Ok(())
    }

    /// A passage by id.
    pub fn passage(&self, agent: u64, id: u64) -> Result<Option<Passage>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(PASSAGES)?;
        let v = t.get((agent, id))?;
        v.map(|v| v.value().decode(PASSAGES.name())).transpose()
    }

    /// Every passage of `agent` (id order) for which `keep` holds.
    pub fn passages_where(&self, agent: u64, mut keep: impl FnMut(&Passage) -> bool) -> Result<Vec<Passage>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(PASSAGES)?;
        let mut out = vec![];
        scan(&t, agent, |_, v: Row<'_, Passage>| {
            let p = v.decode(PASSAGES.name())?;
            if keep(&p) {
                out.push(p);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// A passage's stored vector.
    pub fn passage_vector(&self, agent: u64, id: u64) -> Result<Option<Vec<f32>>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(VECTORS)?;
        let v = t.get((agent, id))?;
        Ok(v.map(|v| vec_from_bytes(v.value())))
    }

    /// Passages in archival storage.
    pub fn passage_count(&self, agent: u64) -> Result<usize> {
        self.count_rows(PASSAGES, agent)
    }

    /// Whether the agent has any passage (reads one key; cheap on every step).
    pub fn has_passages(&self, agent: u64) -> Result<bool> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(PASSAGES)?;
        let mut any = false;
        scan(&t, agent, |_, _| {
            any = true;
            Ok(false)
        })?;
        Ok(any)
    }

    /// Search by query embedding; `filter` keeps only passages containing that text.
    pub fn archival_search(
        &self,
        agent: u64,
        model: &str,
        query: &[f32],
        page: usize,
        size: usize,
        filter: Option<&str>,
    ) -> Result<Page<ScoredPassage>> {
        let size = size.max(1);
        if let Some(f) = filter {
            return Ok(self.archival_search_containing(agent, query, f, &[], page, size)?.0);
        }
        // The index covers exactly the stored passages (checked on open), so its size is the total.
        let (total, ids) = self.with_index(agent, model, query.len(), |idx| {
            let total = idx.len();
            Ok((total, idx.search(query, ((page + 1) * size).min(total))?))
        })?;
        let mut items = vec![];
        for (id, score) in ids.into_iter().skip(page * size) {
            if let Some(p) = self.passage(agent, id)? {
                items.push(ScoredPassage { score, passage: p });
            }
        }
        Ok(Page { items, page, page_size: size, total })
    }

    /// The passages containing `text` (any case) but not those in `skip`, ranked by cosine
    /// similarity to `query` (exactly, every one scored); and those `skip` left out, in its order.
    pub fn archival_search_containing(
        &self,
        agent: u64,
        query: &[f32],
        text: &str,
        skip: &[u64],
        page: usize,
        size: usize,
    ) -> Result<(Page<ScoredPassage>, Vec<Passage>)> {
        let f = text.to_lowercase();
        let mut hits = vec![];
        let mut skipped = vec![];
        for p in self.passages_where(agent, |p| p.text.to_lowercase().contains(&f))? {
            if skip.contains(&p.id) {
                skipped.push(p);
                continue;
            }
            let v = self.passage_vector(agent, p.id)?.unwrap_or_default();
            hits.push(ScoredPassage { score: dot(query, &v), passage: p });
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        skipped.sort_by_key(|p| skip.iter().position(|s| *s == p.id));
        Ok((Page::of(hits, page, size.max(1)), skipped))
    }

    /// Exact (brute-force) nearest passages: ids and cosine, best first. For checks and benches.
    pub fn archival_exact(&self, agent: u64, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>> {
        let mut all = vec![];
        self.for_each_vector(agent, |id, v| {
            all.push((id, dot(query, &v)));
            Ok(())
        })?;
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.truncate(k);
        Ok(all)
    }
}

/// Dot product (cosine for unit vectors).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
