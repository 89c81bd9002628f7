/*! Invariants of one agent's memory that no crash may break, checked from redb alone (the crash
harness runs this after every kill; `pagemind debug check` prints it).

- The FIFO queue is a suffix of the messages: every evicted message comes before every one still
  in context, and the summary covers exactly the evicted ones.
- Every passage has one vector, all of one dimension; a complete source has as many passages as
  it says it has chunks, and an incomplete one no more.
- The archival index answers a passage's own vector with that passage, as exact search does.
*/

use super::MemoryStore;
use crate::Result;
use std::collections::HashMap;

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
        let mut probes = vec![];
        for p in &passages {
            match self.passage_vector(agent, p.id)? {
                Some(v) => {
                    *dims.entry(v.len()).or_default() += 1;
                    if probes.len() < 8 {
                        probes.push((p.id, v));
                    }
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
        for (id, v) in probes {
            let exact = self.archival_exact(agent, &v, 1)?;
            let indexed = self.archival_search(agent, embedding_model, &v, 0, 1, None)?;
            let got = indexed.items.first().map(|s| s.passage.id);
            // Duplicate texts give equal vectors: agreeing on the score is agreeing.
            let same = got == Some(id)
                || (got.is_some() && exact.first().is_some_and(|e| (e.1 - indexed.items[0].score).abs() < 1e-4));
            if !same {
                problems.push(format!("the archival index answers passage {id}'s vector with {got:?}"));
            }
        }
        Ok(problems)
    }
}
