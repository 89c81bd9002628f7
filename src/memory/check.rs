/*! Invariants of one agent's memory that no crash may break, checked from redb alone (the crash
harness runs this after every kill; `pagemind debug check` prints it).

- The FIFO queue is a suffix of the messages: every evicted message comes before every one still
  in context, and the summary covers exactly the evicted ones.
- Every passage has one vector, all of one dimension; a complete source has as many passages as
  it says it has chunks, and an incomplete one no more.
- The archival index holds every passage's vector under its id, equal to redb's up to the
  index's f16 rounding, and nothing else. (Whether HNSW search then finds it is a matter of
  recall, not of consistency: near-duplicate passages can leave a node unreachable.)
*/

use super::MemoryStore;
use crate::Result;
use std::collections::HashMap;

/// How far an f16-rounded component of a unit vector may sit from its f32 value (f16 keeps 11
/// significant bits: under 5e-4 for components below 1).
const F16_TOLERANCE: f32 = 1e-3;

impl MemoryStore {
    /// The invariants `agent` breaks, one line each (empty when consistent).
    pub fn check_agent(&self, agent: u64, embedding_model: &str) -> Result<Vec<String>> {
        let mut problems = vec![];
        let messages = self.messages(agent)?;
        let evicted = messages.iter().filter(|m| !m.in_context).count() as u64;
        if let Some(first_in) = messages.iter().position(|m| m.in_context) {
            if let Some(m) = messages[first_in..].iter().find(|m| !m.in_context) {
                problems.push(format!("message {} is evicted but follows an in-context message", m.id));
            }
        }
        let summary = self.summary(agent)?;
        if summary.messages_covered != evicted {
            problems
                .push(format!("the summary covers {} messages but {evicted} are evicted", summary.messages_covered));
        }
        let passages = self.passages_where(agent, |_| true)?;
        let mut dims: HashMap<usize, u64> = HashMap::new();
        // Every stored vector in one read; a passage without one is a problem.
        let mut vectors: HashMap<u64, Vec<f32>> = HashMap::new();
        self.for_each_vector(agent, |id, v| {
            vectors.insert(id, v);
            Ok(())
        })?;
        let mut stored = vec![];
        for p in &passages {
            match vectors.remove(&p.id) {
                Some(v) => {
                    *dims.entry(v.len()).or_default() += 1;
                    stored.push((p.id, v));
                }
                None => problems.push(format!("passage {} has no vector", p.id)),
            }
        }
        if dims.len() > 1 {
            problems.push(format!("passage vectors have several dimensions: {dims:?}"));
        }
        let mut per_source: HashMap<&str, u64> = HashMap::new();
        for p in &passages {
            *per_source.entry(p.source.as_str()).or_default() += 1;
        }
        for s in self.sources(agent)? {
            let n = per_source.get(s.path.as_str()).copied().unwrap_or(0);
            if (s.complete && n != s.chunks) || (!s.complete && n > s.chunks) {
                problems.push(format!(
                    "source {} records {} chunks ({}) but has {n} passages",
                    s.path,
                    s.chunks,
                    if s.complete { "complete" } else { "incomplete" }
                ));
            }
        }
        if dims.len() == 1 {
            let dim = stored[0].1.len();
            let (size, mismatched) = self.with_index(agent, embedding_model, dim, |idx| {
                let mut bad = vec![];
                for (id, v) in &stored {
                    match idx.vector(*id)? {
                        None => bad.push(format!("the archival index lacks passage {id}")),
                        Some(got) if got.iter().zip(v).any(|(a, b)| (a - b).abs() > F16_TOLERANCE) => {
                            bad.push(format!("the archival index holds another vector for passage {id}"))
                        }
                        Some(_) => {}
                    }
                }
                Ok((idx.len(), bad))
            })?;
            problems.extend(mismatched);
            if size != stored.len() {
                problems.push(format!("the archival index holds {size} vectors for {} passages", stored.len()));
            }
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::NewPassage;

    fn unit(seed: u64) -> Vec<f32> {
        let v: Vec<f32> = (0..8).map(|i| ((seed * 31 + i * 17) % 13) as f32 - 6.0).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn an_index_missing_a_passage_or_holding_another_vector_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let s = MemoryStore::open(d.path()).unwrap();
        let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
        let items = (0..6)
            .map(|i| NewPassage {
                text: format!("fact {i}"),
                source: "t".into(),
                span: String::new(),
                metadata: serde_json::json!({}),
                vector: unit(i),
            })
            .collect();
        let ids: Vec<u64> = s.archival_insert_many(a.id, "e", items).unwrap().iter().map(|p| p.id).collect();
        assert_eq!(s.check_agent(a.id, "e").unwrap(), Vec::<String>::new());

        let last = *ids.last().unwrap();
        s.with_index(a.id, "e", 8, |i| i.remove(ids[1], last)).unwrap();
        let problems = s.check_agent(a.id, "e").unwrap();
        assert!(problems.contains(&format!("the archival index lacks passage {}", ids[1])), "{problems:?}");
        assert!(problems.contains(&"the archival index holds 5 vectors for 6 passages".to_string()), "{problems:?}");

        s.with_index(a.id, "e", 8, |i| i.add(ids[1], &unit(1).iter().map(|x| -x).collect::<Vec<_>>())).unwrap();
        let problems = s.check_agent(a.id, "e").unwrap();
        assert_eq!(problems, vec![format!("the archival index holds another vector for passage {}", ids[1])]);
    }
}
