/*! `eval doc-qa`: multi-document question answering (MemGPT paper §3.2.1) on
NaturalQuestions-Open.

Data: "Lost in the Middle"'s `nq-open-oracle.jsonl.gz` (2,655 questions, each with its gold
Wikipedia passage in `ctxs`). The questions are put in a seeded order; archival memory holds
the gold passages of the first `--documents N` of them (default: all) and the first `--limit`
questions are asked, so every question's passage is among many others.

Variants: `pagemind` (a document agent, as `pagemind load` makes one: each turn starts with an
archival search and the agent may page further) and `top-K` for K in 1, 3, 5, 10 (the K
passages nearest the question by embedding, in the prompt, cut to the window). Score:
accuracy (a normalised gold answer occurs in the reply), and whether the gold passage was
retrieved.
*/

use super::baseline::{self, ANSWER_TOKENS};
use super::{score, Options, Recorder, Task, PAGEMIND};
use crate::agent::{Agent, LlmSteps, Quiet};
use crate::memory::{MemoryStore, NewPassage};
use crate::runtime::Session;
use crate::{Error, Result};
use serde_json::json;
use std::time::Instant;

/// Default data (under `../shared/data`).
pub const DEFAULT_DATA: &str = "nq-open/nq-open-oracle.jsonl.gz";

/// One question with its gold passage.
#[derive(Debug, Clone)]
pub struct Question {
    pub index: usize,
    pub question: String,
    pub answers: Vec<String>,
    pub title: String,
    pub passage: String,
}

fn load(o: &Options) -> Result<Vec<Question>> {
    let path = match &o.data {
        Some(p) => p.clone(),
        None => super::default_data(DEFAULT_DATA)?,
    };
    let lines = super::json_lines(&path, &super::read_text(&path)?)?;
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let gold = l["ctxs"].as_array().and_then(|c| c.iter().find(|x| x["isgold"] == true).or(c.first()));
            let gold = gold.ok_or_else(|| Error::file(&path, format!("line {}: no passage in \"ctxs\"", i + 1)))?;
            Ok(Question {
                index: i,
                question: l["question"].as_str().unwrap_or_default().to_string(),
                answers: l["answers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str())
                    .map(str::to_string)
                    .collect(),
                title: gold["title"].as_str().unwrap_or_default().to_string(),
                passage: gold["text"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

fn passage_text(q: &Question) -> String {
    format!("{}: {}", q.title, q.passage)
}

/// The question, for every variant alike.
fn input(q: &Question) -> String {
    format!("{}? Answer in a few words.", q.question.trim_end_matches('?'))
}

/// Create (or reuse) the document agent holding `docs`.
fn documents_agent(o: &Options, store: &MemoryStore, docs: &[Question]) -> Result<String> {
    let name = format!("docs-{}", docs.len());
    if store.has_agent(&name)? {
        let a = store.agent(&name)?;
        if store.get_state(a.id, "eval_loaded")? == Some(json!(docs.len())) {
            return Ok(name);
        }
        store.delete_agent(&name)?;
    }
    let a = super::new_agent(o, store, &name, crate::memory::DEFAULT_HUMAN, |c| c.search_first = true)?;
    let texts: Vec<String> = docs.iter().map(passage_text).collect();
    for (bi, batch) in texts.chunks(64).enumerate() {
        let refs: Vec<&str> = batch.iter().map(|s| s.as_str()).collect();
        let vectors = o.embedder.embed(&refs)?;
        let items = batch
            .iter()
            .zip(vectors)
            .zip(&docs[bi * 64..])
            .map(|((t, v), q)| NewPassage {
                text: t.clone(),
                source: q.title.clone(),
                span: String::new(),
                metadata: json!({"q": q.index}),
                vector: v,
            })
            .collect();
        store.archival_insert_many(a.id, &o.embedding_id, items)?;
        if o.progress {
            eprintln!("doc-qa: embedded {}/{} passages", ((bi + 1) * 64).min(texts.len()), texts.len());
        }
    }
    store.set_state(a.id, "eval_loaded", &json!(docs.len()))?;
    store.save_indexes()?;
    Ok(name)
}

/// Run the task.
pub fn run(o: &Options, rec: &mut Recorder) -> Result<()> {
    let all = super::pick(load(o)?, o.seed, None);
    let n_docs = o.documents.unwrap_or(all.len()).min(all.len());
    let docs = &all[..n_docs];
    let questions: Vec<&Question> = docs.iter().take(o.limit.unwrap_or(usize::MAX)).collect();
    let variants = o.variants(Task::DocQa);
    let pending = questions
        .iter()
        .flat_map(|q| variants.iter().map(move |v| (v, q.index.to_string())))
        .filter(|(v, id)| !rec.is_done(v, id))
        .count();
    rec.start_progress(pending, Task::DocQa.name(), o.progress);
    let store = MemoryStore::open(&o.store_dir(Task::DocQa))?;
    let name = documents_agent(o, &store, docs)?;
    let aid = store.agent(&name)?.id;
    let labels = vec!["persona".to_string(), "human".to_string()];
    let mut steps = LlmSteps::new(o.model, &crate::tools::builtin_tools(&labels), o.window, None)?;
    let mut plain = Session::new(o.model, o.window)?;
    let scaffold = baseline::scaffold_tokens(o.model)?;
    for q in questions {
        let id = q.index.to_string();
        for v in &variants {
            if rec.is_done(v, &id) {
                continue;
            }
            let t0 = Instant::now();
            let inp = input(q);
            let mut r = super::ItemRecord::new(
                Task::DocQa.name(),
                v,
                &id,
                &format!("{n_docs} documents"),
                &inp,
                json!(q.answers),
            );
            let res: Result<bool> = (|| {
                if v == PAGEMIND {
                    let before = store.last_message_id(aid)?;
                    let mut agent = Agent::open(&store, o.model, Some(o.embedder), &name, Some(o.window))?;
                    agent.set_clock(Some(super::asked_at()));
                    let turn = agent.turn(&mut steps, &inp, &mut Quiet);
                    // Each question in a new session: drop what it added.
                    let added: Vec<u64> = store.messages_where(aid, |m| m.id > before)?.iter().map(|m| m.id).collect();
                    store.delete_messages(aid, &added)?;
                    let turn = turn?;
                    r.set_turn(&turn);
                    Ok(turn.retrieved.iter().any(|p| p.metadata["q"] == json!(q.index)))
                } else {
                    let k: usize = v
                        .trim_start_matches("top-")
                        .parse()
                        .map_err(|_| Error::Invalid(format!("unknown variant {v}")))?;
                    let qv = o.embedder.embed(&[q.question.as_str()])?.remove(0);
                    let hits = store.archival_exact(aid, &qv, k)?;
                    let mut lines = vec![];
                    let mut gold = false;
                    for (i, (pid, _)) in hits.iter().enumerate() {
                        if let Some(p) = store.passage(aid, *pid)? {
                            gold |= p.metadata["q"] == json!(q.index);
                            lines.push(format!("[{}] {}", i + 1, p.text));
                        }
                    }
                    let head = "Documents:\n";
                    let budget = o
                        .window
                        .saturating_sub(scaffold + o.model.tokenizer.encode(&inp, false)?.len() + ANSWER_TOKENS + 32);
                    let kept = baseline::fit_lines(o.model, &lines, budget, false)?;
                    let system =
                        format!("{head}{}\n\nAnswer the user's question using the documents.", kept.join("\n\n"));
                    r.set_answer(baseline::answer(&mut plain, &system, &inp, ANSWER_TOKENS)?);
                    Ok(gold)
                }
            })();
            let gold_retrieved = match res {
                Ok(g) => g,
                Err(e) => {
                    r.error = Some(e.to_string());
                    false
                }
            };
            r.scores.insert("accuracy".into(), f64::from(u8::from(score::contains_answer(&r.answer, &q.answers))));
            r.scores.insert("gold_retrieved".into(), f64::from(u8::from(gold_retrieved)));
            r.seconds = t0.elapsed().as_secs_f64();
            rec.record(r)?;
        }
    }
    rec.finish();
    store.save_indexes()?;
    Ok(())
}
