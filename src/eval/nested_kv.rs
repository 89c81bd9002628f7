/*! `eval nested-kv`: nested key-value retrieval (MemGPT paper §3.2.2).

Data: "Lost in the Middle"'s `kv-retrieval-140_keys.jsonl.gz` (lines of 140 UUID pairs) and the
MemGPT paper's orderings files `random_orderings_100_samples_140_indices_{N}_levels.jsonl`
(each line: N record indices). Item `j` of level `L` takes KV line `j` and ordering line `j` of
the file with `N = L + 1` indices: the value at index `i[k]` is replaced by the key at `i[k+1]`,
so asking for the key at `i[0]` takes `L` nested look-ups to reach the value at `i[L]`.

Variants: `pagemind` (the pairs in archival memory, one passage each; the agent searches as
often as it needs) and `full-context` (the pairs as one JSON object in the prompt, cut to the
window as the paper's fixed-context baselines were, one answer). Score: the final UUID occurs
in the reply (exact match), per nesting level.
*/

use super::baseline::{self, ANSWER_TOKENS};
use super::{score, Options, Recorder, Task, PAGEMIND};
use crate::agent::{Agent, LlmSteps, Quiet};
use crate::memory::{MemoryStore, NewPassage};
use crate::runtime::Session;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Default data folder (under `../shared/data`).
pub const DEFAULT_DATA: &str = "nested-kv/kv-retrieval-140_keys.jsonl.gz";

/// One item: the pairs after nesting, the key asked for, and the final value.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub level: usize,
    pub index: usize,
    pub pairs: Vec<(String, String)>,
    pub key: String,
    pub value: String,
}

/// Apply one ordering to a KV line: nest the values along `order`.
pub fn nest(pairs: &[(String, String)], order: &[usize], level: usize, index: usize) -> Result<Item> {
    let mut pairs = pairs.to_vec();
    if order.is_empty() || order.iter().any(|&i| i >= pairs.len()) {
        return Err(Error::Invalid(format!("ordering {order:?} does not index {} pairs", pairs.len())));
    }
    for w in order.windows(2) {
        pairs[w[0]].1 = pairs[w[1]].0.clone();
    }
    let key = pairs[order[0]].0.clone();
    let value = pairs[*order.last().expect("non-empty")].1.clone();
    Ok(Item { level, index, pairs, key, value })
}

/// The orderings file for `level` next to the KV file.
fn orderings_path(kv: &Path, level: usize) -> PathBuf {
    kv.with_file_name(format!("random_orderings_100_samples_140_indices_{}_levels.jsonl", level + 1))
}

fn load(o: &Options) -> Result<Vec<Item>> {
    let kv = match &o.data {
        Some(p) => p.clone(),
        None => super::default_data(DEFAULT_DATA)?,
    };
    let lines = super::json_lines(&kv, &super::read_text(&kv)?)?;
    let kv_pairs: Vec<Vec<(String, String)>> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l["ordered_kv_records"]
                .as_array()
                .ok_or_else(|| Error::file(&kv, format!("line {}: no \"ordered_kv_records\" list", i + 1)))?
                .iter()
                .map(|p| {
                    Ok((p[0].as_str().unwrap_or_default().to_string(), p[1].as_str().unwrap_or_default().to_string()))
                })
                .collect()
        })
        .collect::<Result<_>>()?;
    let mut items = vec![];
    for &level in &o.levels {
        let op = orderings_path(&kv, level);
        let orders = super::json_lines(&op, &super::read_text(&op)?)?;
        let mut level_items = vec![];
        for (j, ord) in orders.iter().enumerate() {
            let order: Vec<usize> = ord
                .as_array()
                .ok_or_else(|| Error::file(&op, format!("line {}: not a list of indices", j + 1)))?
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|x| x as usize)
                        .ok_or_else(|| Error::file(&op, format!("line {}: not an index", j + 1)))
                })
                .collect::<Result<_>>()?;
            let pairs = kv_pairs
                .get(j)
                .ok_or_else(|| Error::file(&kv, format!("has no line {} for {}", j + 1, op.display())))?;
            level_items
                .push(nest(pairs, &order, level, j).map_err(|e| Error::file(&op, format!("line {}: {e}", j + 1)))?);
        }
        // --limit counts items per level.
        items.extend(super::pick(level_items, o.seed, o.limit));
    }
    Ok(items)
}

/// The question, for every variant alike.
fn question(key: &str, in_archival: bool) -> String {
    let where_ = if in_archival { "Archival memory holds" } else { "The data above holds" };
    format!(
        "{where_} key-value pairs of UUIDs. What is the value of the key \"{key}\"? A value may itself be a key of another pair: then look that key up too, and repeat until the value is not a key. Reply with the final value only."
    )
}

/// Run the task.
pub fn run(o: &Options, rec: &mut Recorder) -> Result<()> {
    let items = load(o)?;
    let variants = o.variants(Task::NestedKv);
    let id_of = |it: &Item| format!("L{}/{}", it.level, it.index);
    let pending = items
        .iter()
        .flat_map(|it| variants.iter().map(move |v| (v, id_of(it))))
        .filter(|(v, id)| !rec.is_done(v, id))
        .count();
    rec.start_progress(pending, Task::NestedKv.name(), o.progress);
    let store = MemoryStore::open(&o.store_dir(Task::NestedKv))?;
    let labels = vec!["persona".to_string(), "human".to_string()];
    let mut steps = LlmSteps::new(o.model, &crate::tools::builtin_tools(&labels), o.window, None)?;
    let mut plain = Session::new(o.model, o.window)?;
    let scaffold = baseline::scaffold_tokens(o.model)?;
    for it in &items {
        let id = id_of(it);
        for v in &variants {
            if rec.is_done(v, &id) {
                continue;
            }
            let t0 = Instant::now();
            let in_archival = v == PAGEMIND;
            let input = question(&it.key, in_archival);
            let mut r = super::ItemRecord::new(
                Task::NestedKv.name(),
                v,
                &id,
                &format!("level {}", it.level),
                &input,
                json!(it.value),
            );
            let res = if in_archival {
                ask_agent(o, &store, &mut steps, it, &input, &mut r)
            } else {
                (|| {
                    let head = "Key-value pairs (JSON):\n";
                    let lines: Vec<String> = it.pairs.iter().map(|(k, v)| format!("\"{k}\": \"{v}\",")).collect();
                    let budget = o
                        .window
                        .saturating_sub(scaffold + o.model.tokenizer.encode(&input, false)?.len() + ANSWER_TOKENS + 16);
                    let kept = baseline::fit_lines(o.model, &lines, budget, false)?;
                    r.set_answer(baseline::answer(
                        &mut plain,
                        &format!("{head}{{\n{}\n}}", kept.join("\n")),
                        &input,
                        ANSWER_TOKENS,
                    )?);
                    Ok(())
                })()
            };
            if let Err(e) = res {
                r.error = Some(e.to_string());
            }
            r.scores.insert("exact_match".into(), f64::from(u8::from(score::exact_value(&r.answer, &it.value))));
            r.seconds = t0.elapsed().as_secs_f64();
            rec.record(r)?;
        }
    }
    rec.finish();
    store.save_indexes()?;
    Ok(())
}

fn ask_agent(
    o: &Options,
    store: &MemoryStore,
    steps: &mut LlmSteps,
    it: &Item,
    input: &str,
    r: &mut super::ItemRecord,
) -> Result<()> {
    let name = format!("kv-l{}-{}", it.level, it.index);
    let a = super::new_agent(o, store, &name, crate::memory::DEFAULT_HUMAN, |c| {
        // Room for the L + 1 look-ups and the answer, whatever --max-steps says.
        c.max_steps = o.max_steps.max(it.level + 2);
        c.max_searches = it.level + 3;
    })?;
    let texts: Vec<String> = it.pairs.iter().map(|(k, v)| format!("\"{k}\": \"{v}\"")).collect();
    let vectors = super::embed_all(o.embedder, &texts)?;
    let passages = texts
        .iter()
        .zip(vectors)
        .map(|(t, v)| NewPassage {
            text: t.clone(),
            source: "kv".into(),
            span: String::new(),
            metadata: Value::Null,
            vector: v,
        })
        .collect();
    store.archival_insert_many(a.id, &o.embedding_id, passages)?;
    let mut agent = Agent::open(store, o.model, Some(o.embedder), &name, Some(o.window))?;
    agent.set_clock(Some(super::asked_at()));
    let turn = agent.turn(steps, input, &mut Quiet)?;
    r.set_turn(&turn);
    store.delete_agent(&name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_follows_the_ordering() {
        let pairs: Vec<(String, String)> = (0..5).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
        let it = nest(&pairs, &[3, 0, 4], 2, 7).unwrap();
        assert_eq!(it.key, "k3");
        assert_eq!(it.pairs[3].1, "k0");
        assert_eq!(it.pairs[0].1, "k4");
        assert_eq!(it.value, "v4");
        // Level 0: a plain look-up.
        let it = nest(&pairs, &[2], 0, 0).unwrap();
        assert_eq!((it.key.as_str(), it.value.as_str()), ("k2", "v2"));
        assert!(nest(&pairs, &[9], 0, 0).is_err());
    }
}
