/*! `eval conversation`: deep memory retrieval (MemGPT paper §3.1.1) on LoCoMo.

Reads LoCoMo's published file unchanged (a JSON list of samples, each with `conversation`
sessions `session_N` dated by `session_N_date_time`, and `qa` items). Each conversation is
replayed into a fresh agent as past sessions with their own timestamps (`--replay store`: the
turns are written into recall storage; `--replay live`: every turn runs through the agent loop,
which decides what to keep in core and archival memory), then each question is asked in a new
session: an empty FIFO queue, core memory as the replay left it, and every question undone
afterwards (its messages deleted, core memory restored) so items do not leak into each other.

Variants: `pagemind` (the agent, searching its memory), `full-context` (the newest history that
fits the window, in the prompt) and `rag` (the top-2 chunks of ~250 embedding tokens by cosine
similarity, as in the mem0 paper). Scores: LoCoMo's token F1 per category
([`score::locomo_score`]), ROUGE-L recall, and evidence recall: whether the turn's searches (or
the baseline's prompt) held a message whose `dia_id` is in the item's `evidence`.
*/

use super::baseline::{self, ANSWER_TOKENS};
use super::score;
use super::{Options, Recorder, Replay, Task, PAGEMIND};
use crate::agent::{Agent, LlmSteps, Quiet};
use crate::memory::{Block, MemoryStore, Message, MessageRole};
use crate::runtime::Session;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

/// Default data: the LoCoMo sample under `../shared/data`.
pub const DEFAULT_DATA: &str = "locomo/locomo-sample-conv-26.json";

/// Appended to every answerable question, for every variant alike.
pub const QUESTION_SUFFIX: &str = " Answer in a short phrase.";

/// Tokens kept free for the question in the full-context baseline's prompt.
const QUESTION_TOKENS: usize = 96;

/// LoCoMo's option for adversarial (category 5) questions.
pub const NOT_MENTIONED: &str = "Not mentioned in the conversation";

/// The question as every variant is asked it. Category 5 ("adversarial": about something the
/// conversation never says) is posed as LoCoMo's own evaluation poses it, a choice between the
/// dataset's distractor and "Not mentioned in the conversation", in a seeded order.
pub fn question_text(q: &Qa, adversarial_answer: Option<&str>, seed: u64) -> String {
    match (q.category, adversarial_answer) {
        (5, Some(distractor)) => {
            let flip = (seed ^ (q.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).count_ones().is_multiple_of(2);
            let (a, b) = if flip { (NOT_MENTIONED, distractor) } else { (distractor, NOT_MENTIONED) };
            format!("{} Select the correct answer: (a) {a} (b) {b}.", q.question)
        }
        _ => format!("{}{QUESTION_SUFFIX}", q.question),
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone)]
pub struct Turn {
    pub speaker: String,
    pub dia_id: String,
    pub text: String,
}

/// One session: when it happened and its turns.
#[derive(Debug, Clone)]
pub struct ChatSession {
    pub at: chrono::DateTime<chrono::Utc>,
    pub turns: Vec<Turn>,
}

/// One QA item.
#[derive(Debug, Clone)]
pub struct Qa {
    pub index: usize,
    pub question: String,
    /// The reference answer (absent for adversarial items).
    pub answer: Value,
    pub evidence: Vec<String>,
    pub category: u64,
    /// Category 5: the distractor LoCoMo offers next to "Not mentioned in the conversation".
    pub adversarial_answer: Option<String>,
}

/// One LoCoMo sample.
#[derive(Debug, Clone)]
pub struct Sample {
    pub id: String,
    pub speaker_a: String,
    pub speaker_b: String,
    pub sessions: Vec<ChatSession>,
    pub qa: Vec<Qa>,
}

/// Parse LoCoMo's date format, e.g. `1:56 pm on 8 May, 2023`.
pub fn parse_when(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = s.trim().replace("am on", "AM on").replace("pm on", "PM on");
    chrono::NaiveDateTime::parse_from_str(&s, "%I:%M %p on %d %B, %Y").ok().map(|t| t.and_utc())
}

/// Parse a LoCoMo file (the published `locomo10.json` or a part of it).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Sample>> {
    let bad = |what: String| {
        Error::file(
            path,
            format!("{what} (expected LoCoMo's format: a list of samples with \"conversation\" and \"qa\")"),
        )
    };
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let list = v.as_array().ok_or_else(|| bad("the top level is not a list".into()))?;
    let mut out = vec![];
    for (si, s) in list.iter().enumerate() {
        let id = s["sample_id"].as_str().map(str::to_string).unwrap_or_else(|| format!("sample-{si}"));
        let c = &s["conversation"];
        let conv = c.as_object().ok_or_else(|| bad(format!("sample {id}: no \"conversation\" object")))?;
        let mut nums: Vec<u64> = conv
            .keys()
            .filter_map(|k| k.strip_prefix("session_")?.parse::<u64>().ok())
            .filter(|n| conv[&format!("session_{n}")].is_array())
            .collect();
        nums.sort();
        let mut sessions = vec![];
        let mut last = chrono::DateTime::<chrono::Utc>::from_timestamp(0, 0).unwrap_or_default();
        for n in nums {
            let when = c[format!("session_{n}_date_time")].as_str().unwrap_or_default();
            let at = parse_when(when).ok_or_else(|| {
                bad(format!("sample {id}: session_{n}_date_time {when:?} is not like \"1:56 pm on 8 May, 2023\""))
            })?;
            last = last.max(at);
            let mut turns = vec![];
            for t in c[format!("session_{n}")].as_array().into_iter().flatten() {
                let mut text = t["text"].as_str().unwrap_or_default().to_string();
                if let Some(cap) = t["blip_caption"].as_str() {
                    text.push_str(&format!(" [shares a photo: {cap}]"));
                }
                turns.push(Turn {
                    speaker: t["speaker"].as_str().unwrap_or("?").to_string(),
                    dia_id: t["dia_id"].as_str().unwrap_or_default().to_string(),
                    text,
                });
            }
            sessions.push(ChatSession { at, turns });
        }
        let qa = s["qa"]
            .as_array()
            .ok_or_else(|| bad(format!("sample {id}: no \"qa\" list")))?
            .iter()
            .enumerate()
            .map(|(i, q)| Qa {
                index: i,
                question: q["question"].as_str().unwrap_or_default().to_string(),
                answer: q.get("answer").cloned().unwrap_or(Value::Null),
                evidence: q["evidence"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str())
                    .map(str::to_string)
                    .collect(),
                category: q["category"].as_u64().unwrap_or(0),
                adversarial_answer: q["adversarial_answer"].as_str().map(str::to_string),
            })
            .collect();
        out.push(Sample {
            id,
            speaker_a: c["speaker_a"].as_str().unwrap_or("A").to_string(),
            speaker_b: c["speaker_b"].as_str().unwrap_or("B").to_string(),
            sessions,
            qa,
        });
    }
    Ok(out)
}

fn gold_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A turn as a line of history: `[2023-05-08] Caroline: ...`.
fn history_line(at: chrono::DateTime<chrono::Utc>, t: &Turn) -> String {
    format!("[{}] {}: {}", at.format("%Y-%m-%d"), t.speaker, t.text)
}

/// Replayed turns are half a minute apart within their session.
fn turn_time(s: &ChatSession, i: usize) -> chrono::DateTime<chrono::Utc> {
    s.at + chrono::Duration::seconds(30 * i as i64)
}

/// When the questions are asked: a day after the last turn of the last session (a new
/// session, on the agent's clock, so every run reads the same times).
fn asked_at(sample: &Sample) -> chrono::DateTime<chrono::Utc> {
    sample.sessions.iter().map(|s| turn_time(s, s.turns.len())).max().unwrap_or_else(super::asked_at)
        + chrono::Duration::days(1)
}

/// Store state of a replayed agent: message id -> dia_id.
const DIA_IDS: &str = "eval_dia_ids";

fn agent_name(sample: &Sample) -> String {
    sample.id.chars().map(|c| if c.is_alphanumeric() || c == '-' { c } else { '-' }).collect()
}

/// Create (or, resuming, reuse) the agent holding `sample`'s history; returns message id -> dia_id.
fn replay(o: &Options, store: &MemoryStore, steps: &mut LlmSteps, sample: &Sample) -> Result<HashMap<u64, String>> {
    let name = agent_name(sample);
    if store.has_agent(&name)? {
        let id = store.agent(&name)?.id;
        if let Some(Value::Object(m)) = store.get_state(id, DIA_IDS)? {
            return Ok(m.into_iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string()))).collect());
        }
        store.delete_agent(&name)?; // an unfinished replay: start it again
    }
    let human = format!(
        "Recall memory holds past chat sessions between {} and {}; questions about them are answered from there.",
        sample.speaker_a, sample.speaker_b
    );
    let rec = super::new_agent(o, store, &name, &human, |c| c.consolidate_every = o.consolidate_every)?;
    let mut ids = HashMap::new();
    match o.replay {
        Replay::Store => {
            for s in &sample.sessions {
                let msgs: Vec<Message> = s
                    .turns
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let mut m = crate::agent::user_message_at(&t.text, Some(&t.speaker), turn_time(s, i));
                        m.in_context = false;
                        m
                    })
                    .collect();
                let stored = store.append_messages(rec.id, msgs)?;
                for (m, t) in stored.iter().zip(&s.turns) {
                    ids.insert(m.id, t.dia_id.clone());
                }
                // Embedded as the agent embeds what it is told (recall search ranks by both).
                let texts: Vec<String> = stored.iter().map(|m| m.conversation_text().unwrap_or_default()).collect();
                let vectors = super::embed_all(o.embedder, &texts)?;
                let items: Vec<(u64, Vec<f32>)> = stored.iter().map(|m| m.id).zip(vectors).collect();
                store.put_message_vectors(rec.id, &items)?;
            }
        }
        Replay::Live => {
            let mut agent = Agent::open(store, o.model, Some(o.embedder), &name, Some(o.window))?;
            let total: usize = sample.sessions.iter().map(|s| s.turns.len()).sum();
            let mut n = 0;
            for s in &sample.sessions {
                for (i, t) in s.turns.iter().enumerate() {
                    let before = store.last_message_id(rec.id)?;
                    agent.turn_at(steps, &t.text, Some(&t.speaker), turn_time(s, i), &mut Quiet)?;
                    if let Some(m) =
                        store.messages_where(rec.id, |m| m.id > before && m.role == MessageRole::User)?.first()
                    {
                        ids.insert(m.id, t.dia_id.clone());
                    }
                    n += 1;
                    if o.progress && n % 20 == 0 {
                        eprintln!("replay {}: {n}/{total} turns", sample.id);
                    }
                }
            }
            // The questions come in a new session: the queue is emptied (its messages stay in
            // recall storage), the recursive summary stays at its head.
            let queue = store.context_messages(rec.id)?;
            store.flush_queue(rec.id, &store.summary(rec.id)?, &queue)?;
            // As after any flush, core memory is shown as it now stands (with what consolidation
            // saved from the messages just moved out of view).
            agent.refresh_working_context()?;
        }
    }
    let map: serde_json::Map<String, Value> = ids.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    store.set_state(rec.id, DIA_IDS, &Value::Object(map))?;
    Ok(ids)
}

/// A chunk of history for the RAG baseline: its text and the dia_ids it holds.
struct Chunk {
    text: String,
    dia_ids: Vec<String>,
    vector: Vec<f32>,
}

/// Consecutive history lines grouped into chunks of at most ~250 embedding tokens.
fn chunks(o: &Options, sample: &Sample) -> Result<Vec<Chunk>> {
    let mut out: Vec<(String, Vec<String>, usize)> = vec![];
    for s in &sample.sessions {
        for t in &s.turns {
            let line = history_line(s.at, t);
            let n = o.embedder.token_ids(&line)?.len();
            match out.last_mut() {
                Some((text, ids, used)) if *used + n <= 250 => {
                    text.push('\n');
                    text.push_str(&line);
                    ids.push(t.dia_id.clone());
                    *used += n;
                }
                _ => out.push((line, vec![t.dia_id.clone()], n)),
            }
        }
    }
    let texts: Vec<String> = out.iter().map(|c| c.0.clone()).collect();
    let vectors = super::embed_all(o.embedder, &texts)?;
    Ok(out.into_iter().zip(vectors).map(|((text, dia_ids, _), vector)| Chunk { text, dia_ids, vector }).collect())
}

fn scores(q: &Qa, answer: &str, evidence_hit: Option<bool>) -> BTreeMap<String, f64> {
    let gold = if q.category == 5 { NOT_MENTIONED.to_string() } else { gold_text(&q.answer) };
    let mut s = BTreeMap::new();
    s.insert("f1".into(), score::locomo_score(q.category, answer, &gold));
    s.insert("rouge_l".into(), score::rouge_l_recall(answer, &gold));
    if let Some(hit) = evidence_hit {
        s.insert("evidence_recall".into(), f64::from(u8::from(hit)));
    }
    s
}

/// What a sample's questions share: message id -> `dia_id` of the replayed agent, and the
/// rag baseline's chunks.
type SampleState = (HashMap<u64, String>, Option<Vec<Chunk>>);

/// Run the task.
pub fn run(o: &Options, rec: &mut Recorder) -> Result<()> {
    let path = match &o.data {
        Some(p) => p.clone(),
        None => super::default_data(DEFAULT_DATA)?,
    };
    let samples = parse(&path, &super::read_text(&path)?)?;
    // Items: every (sample, question), in a seeded order, cut to --limit.
    let all: Vec<(usize, usize)> = samples
        .iter()
        .enumerate()
        .flat_map(|(si, s)| (0..s.qa.len()).map(move |qi| (si, qi)))
        .filter(|&(si, qi)| o.categories.is_empty() || o.categories.contains(&samples[si].qa[qi].category))
        .collect();
    let items = super::pick(all, o.seed, o.limit);
    let variants = o.variants(Task::Conversation);
    let sref = &samples;
    let pending = items
        .iter()
        .flat_map(|(si, qi)| variants.iter().map(move |v| (v, format!("{}/q{}", sref[*si].id, qi))))
        .filter(|(v, id)| !rec.is_done(v, id))
        .count();
    rec.start_progress(pending, Task::Conversation.name(), o.progress);
    let store = MemoryStore::open(&o.store_dir(Task::Conversation))?;
    let labels = vec!["persona".to_string(), "human".to_string()];
    let mut steps = LlmSteps::new(o.model, &crate::tools::builtin_tools(&labels), o.window, None)?;
    // One session per baseline, so each keeps its own reusable prefix in its KV cache.
    let mut full_session = Session::new(o.model, o.window)?;
    let mut rag_session = Session::new(o.model, o.window)?;
    let mut sample_cache: HashMap<usize, SampleState> = HashMap::new();
    // Items of one sample together, so its chunks and the agents' KV prefix are reused.
    let mut ordered = items.clone();
    ordered.sort_by_key(|(si, _)| *si);
    let scaffold = baseline::scaffold_tokens(o.model)?;
    for (si, qi) in ordered {
        let sample = &samples[si];
        let q = &sample.qa[qi];
        let id = format!("{}/q{}", sample.id, qi);
        if variants.iter().all(|v| rec.is_done(v, &id)) {
            continue;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = sample_cache.entry(si) {
            let dia = if o.agent { replay(o, &store, &mut steps, sample)? } else { HashMap::new() };
            let ch = if o.runs("rag") { Some(chunks(o, sample)?) } else { None };
            e.insert((dia, ch));
        }
        let (dia, ch) = &sample_cache[&si];
        let input = question_text(q, q.adversarial_answer.as_deref(), o.seed);
        let gold = if q.category == 5 { json!({"category": 5, "expected": "not mentioned"}) } else { q.answer.clone() };
        for v in &variants {
            if rec.is_done(v, &id) {
                continue;
            }
            let t0 = Instant::now();
            let mut r = super::ItemRecord::new(
                Task::Conversation.name(),
                v,
                &id,
                &q.category.to_string(),
                &input,
                gold.clone(),
            );
            let outcome: Result<Option<bool>> = match v.as_str() {
                PAGEMIND => ask_agent(o, &store, &mut steps, sample, &input, dia, q, &mut r),
                "full-context" => {
                    let lines: Vec<(String, String)> = sample
                        .sessions
                        .iter()
                        .flat_map(|s| s.turns.iter().map(move |t| (history_line(s.at, t), t.dia_id.clone())))
                        .collect();
                    let head = format!(
                        "Below are past chat sessions between {} and {}, oldest first (the most recent that fit). Answer the user's question about them.\n\n",
                        sample.speaker_a, sample.speaker_b
                    );
                    // A fixed allowance for the question (not its length), so every question of a
                    // sample sees the same history and its KV cache is reused.
                    let budget = o.window.saturating_sub(
                        scaffold + o.model.tokenizer.encode(&head, false)?.len() + QUESTION_TOKENS + ANSWER_TOKENS,
                    );
                    let texts: Vec<String> = lines.iter().map(|l| l.0.clone()).collect();
                    let kept = baseline::fit_lines(o.model, &texts, budget, true)?;
                    let first = lines.len() - kept.len();
                    let hit = q.evidence.iter().any(|e| lines[first..].iter().any(|l| &l.1 == e));
                    r.set_answer(baseline::answer(
                        &mut full_session,
                        &format!("{head}{}", kept.join("\n")),
                        &input,
                        ANSWER_TOKENS,
                    )?);
                    Ok(Some(hit))
                }
                "rag" => {
                    let ch = ch.as_ref().expect("chunks are made when rag runs");
                    let qv = o.embedder.embed(&[q.question.as_str()])?.remove(0);
                    let mut ranked: Vec<(f32, usize)> =
                        ch.iter().enumerate().map(|(i, c)| (crate::embed::cosine(&qv, &c.vector), i)).collect();
                    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
                    let top: Vec<&Chunk> = ranked.iter().take(2).map(|(_, i)| &ch[*i]).collect();
                    let hit = q.evidence.iter().any(|e| top.iter().any(|c| c.dia_ids.contains(e)));
                    let system = format!(
                        "Excerpts of past chat sessions between {} and {}, most relevant first:\n\n{}\n\nAnswer the user's question about them.",
                        sample.speaker_a,
                        sample.speaker_b,
                        top.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join("\n\n---\n\n")
                    );
                    r.set_answer(baseline::answer(&mut rag_session, &system, &input, ANSWER_TOKENS)?);
                    Ok(Some(hit))
                }
                other => Err(Error::Invalid(format!("unknown variant {other}"))),
            };
            let hit = match outcome {
                Ok(h) => h,
                Err(e) => {
                    r.error = Some(e.to_string());
                    None
                }
            };
            r.scores = scores(q, &r.answer, if q.evidence.is_empty() { None } else { Some(hit.unwrap_or(false)) });
            r.seconds = t0.elapsed().as_secs_f64();
            rec.record(r)?;
        }
    }
    rec.finish();
    store.save_indexes()?;
    Ok(())
}

/// Ask the agent one question in a new session, then undo the question.
#[allow(clippy::too_many_arguments)]
fn ask_agent(
    o: &Options,
    store: &MemoryStore,
    steps: &mut LlmSteps,
    sample: &Sample,
    input: &str,
    dia: &HashMap<u64, String>,
    q: &Qa,
    r: &mut super::ItemRecord,
) -> Result<Option<bool>> {
    let name = agent_name(sample);
    let aid = store.agent(&name)?.id;
    let before = store.last_message_id(aid)?;
    let blocks: Vec<Block> = store.blocks(aid)?;
    let passages: Vec<u64> = store.passages_where(aid, |_| true)?.iter().map(|p| p.id).collect();
    let summary = store.summary(aid)?;
    let result = (|| {
        let mut agent = Agent::open(store, o.model, Some(o.embedder), &name, Some(o.window))?;
        // The question is undone below, so a consolidation pass after it would be lost work.
        agent.record.config.consolidate_every = 0;
        agent.set_clock(Some(asked_at(sample)));
        agent.turn(steps, input, &mut Quiet)
    })();
    // Undo the question whatever happened: its messages, core-memory edits, inserts, flushes.
    let added: Vec<Message> = store.messages_where(aid, |m| m.id > before)?;
    store.delete_messages(aid, &added.iter().map(|m| m.id).collect::<Vec<_>>())?;
    for b in &blocks {
        store.put_block(aid, b)?;
    }
    let rec = store.agent(&name)?;
    for p in store.passages_where(aid, |p| !passages.contains(&p.id))? {
        store.archival_delete(aid, &rec.embedding_model, p.id)?;
    }
    store.put_summary(aid, &summary)?;
    let turn = result?;
    r.set_turn(&turn);
    let hit = turn
        .steps
        .iter()
        .filter(|s| s.function == crate::tools::Builtin::ConversationSearch.name())
        .flat_map(|s| s.hits.iter())
        .any(|id| dia.get(id).is_some_and(|d| q.evidence.contains(d)));
    Ok(Some(hit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adversarial_questions_are_posed_as_locomo_poses_them() {
        let q = Qa {
            index: 3,
            question: "Why?".into(),
            answer: Value::Null,
            evidence: vec![],
            category: 5,
            adversarial_answer: Some("because".into()),
        };
        let t = question_text(&q, Some("because"), 0);
        assert!(t.starts_with("Why? Select the correct answer: (a) "), "{t}");
        assert!(t.contains(NOT_MENTIONED) && t.contains("because"));
        let plain = Qa { category: 4, ..q.clone() };
        assert_eq!(question_text(&plain, None, 0), format!("Why?{QUESTION_SUFFIX}"));
        // Both orders occur over items.
        let orders: std::collections::HashSet<bool> = (0..16)
            .map(|i| question_text(&Qa { index: i, ..q.clone() }, Some("because"), 0).contains("(a) Not"))
            .collect();
        assert_eq!(orders.len(), 2);
    }

    #[test]
    fn locomo_dates_parse() {
        let t = parse_when("1:56 pm on 8 May, 2023").unwrap();
        assert_eq!(t.format("%Y-%m-%d %H:%M").to_string(), "2023-05-08 13:56");
        let t = parse_when("10:37 am on 27 June, 2023").unwrap();
        assert_eq!(t.format("%Y-%m-%d %H:%M").to_string(), "2023-06-27 10:37");
        assert!(parse_when("yesterday").is_none());
    }
}
