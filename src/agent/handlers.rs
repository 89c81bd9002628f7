/*! Handlers of the built-in functions, over the memory tiers.

Each returns `Ok(text)` for the function result, or `Err(text)`: a failure whose text goes
back to the model (it then gets another step): bad arguments, missing memory, a full block
([`Error::is_for_model`](crate::Error::is_for_model)). Any other error (the database, the disk, the embedder) ends the turn
with that error instead: the model can do nothing about it. Results are paginated and truncated
to [`Agent::result_limit`](super::Agent) characters.

A search that found something ends its result with the user's question
([`prompts::answer_from_results`](super::prompts::answer_from_results)): small models answer the
last message they see, and after a page of results that is a result, not the question.
*/

use super::core_guard;
use super::prompts::{self, Links};
use super::Agent;
use crate::grammar::ToolCall;
use crate::memory::{parse_date, FollowedLinks, Page, RecallFilter, SpeakerFilter};
use crate::tools::Builtin;
use crate::Result;
use serde_json::Value;

/// What a handler did, for the one-line display (`[archival_memory_search "mango" -> 2 results]`).
pub struct Outcome {
    pub result: std::result::Result<String, String>,
    pub summary: String,
    /// Ids of the messages or passages shown (searches).
    pub hits: Vec<u64>,
    /// A line for the model after the result (the question restated; not kept in the step
    /// record).
    pub trailer: Option<String>,
    /// What the result says about links between passages (archival searches).
    pub links: Links,
}

impl Outcome {
    pub(super) fn new(result: std::result::Result<String, String>, summary: String) -> Self {
        Self { result, summary, hits: vec![], trailer: None, links: Default::default() }
    }
}

/// A handler's result as the model sees it: errors it can act on become its text, any other
/// error ends the turn.
fn for_model<T>(r: Result<T>) -> Result<std::result::Result<T, String>> {
    match r {
        Ok(t) => Ok(Ok(t)),
        Err(e) if e.is_for_model() => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}

fn arg<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

/// The 0-based page of a call's 1-based `page` argument.
fn page_of(v: &Value) -> usize {
    (v["page"].as_u64().unwrap_or(1) as usize).saturating_sub(1)
}

/// A page of results as the model sees it. Each line gets an equal share of `limit`
/// characters, so every result on the page is shown (cut if long) rather than the later ranks
/// disappearing under a cut of the whole text. A page past the end is an error naming the
/// pages that exist.
fn listing<T>(p: &Page<T>, limit: usize, line: impl Fn(usize, &T) -> String) -> std::result::Result<String, String> {
    if p.total == 0 {
        return Ok("No results found.".into());
    }
    if p.items.is_empty() {
        return Err(format!("There is no page {}: there are {} page(s) of results.", p.page + 1, p.pages()));
    }
    let mut s = format!("{}:", p.header());
    let share = limit.saturating_sub(s.len() + 16 * p.items.len()) / p.items.len().max(1);
    for (i, it) in p.items.iter().enumerate() {
        s.push('\n');
        let l = line(p.page * p.page_size + i + 1, it);
        if l.chars().count() > share.max(80) {
            s.extend(l.chars().take(share.max(80)));
            s.push_str(" [...]");
        } else {
            s.push_str(&l);
        }
    }
    Ok(s)
}

/// Links to other passages named under a page of archival results, at most.
const MAX_LINKS: usize = 3;

/// Rounds of link following under a page of archival results (one more than the deepest
/// chain followed to its end: the last round finds where it ends), and passages reached, at most.
const FOLLOW_HOPS: usize = 5;
const FOLLOW_MAX: usize = 6;

/// Characters of a passage reached by a link (or shown again), at most.
const FOLLOWED_CHARS: usize = 400;

/// A passage as results show it: where it came from, then its text.
fn cited(p: &crate::memory::Passage) -> String {
    if p.span.is_empty() {
        format!("[source: {}] {}", p.source, p.text)
    } else {
        format!("[source: {} {}] {}", p.source, p.span, p.text)
    }
}

/// The lines under a page of archival results about its links: the passages `walk` reached
/// (under a heading naming where they end) and the `named` identifiers left to follow, each
/// line starting with a newline; and what they say, for the line restating the question.
fn links_text(walk: &FollowedLinks, named: &[(String, usize)]) -> (String, Links) {
    let mut t = String::new();
    if !walk.followed.is_empty() {
        t = t + "\n" + &prompts::followed_heading(&walk.ends);
        for f in &walk.followed {
            let line: String = cited(&f.passage).chars().take(FOLLOWED_CHARS).collect();
            t = t + "\n" + &prompts::followed(&line);
        }
    }
    for (ident, n) in named {
        t = t + "\n" + &prompts::linked(ident, *n);
    }
    let state = if !named.is_empty() {
        Links::Named
    } else if !walk.followed.is_empty() {
        let end = match walk.ends.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        Links::Followed { end }
    } else {
        Links::None
    };
    (t, state)
}

/// Who said a conversation message, as results show it.
fn who(m: &crate::memory::Message) -> String {
    match m.role {
        crate::memory::MessageRole::Assistant => "you".to_string(),
        _ => m.speaker().unwrap_or_else(|| "user".into()),
    }
}

/// One recall hit: its time, who said it, and what was said. (Showing the messages around
/// each hit as a small dialogue was tried: Qwen2.5-1.5B then answered "I'll save this for
/// later" instead of using the results, F1 0.128 vs 0.151 on 12 LoCoMo questions.)
/// Relative times in what was said get the date they mean (`when`).
fn recall_line(n: usize, m: &crate::memory::Message) -> String {
    let text = m.conversation_text().unwrap_or_default();
    match chrono::DateTime::from_timestamp_millis(m.created_at) {
        Some(t) => {
            let text = super::when::annotate(&text, t.date_naive());
            format!("{n}. [{}] {}: {text}", t.format("%Y-%m-%d %H:%M"), who(m))
        }
        None => format!("{n}. [] {}: {text}", who(m)),
    }
}

/// Core memory leaves at least 1/`QUEUE_SHARE` of the window to the queue: room for a search's
/// results beside the call that asked for them. (An eighth left about 40 tokens for a result at
/// a 1,024-token window once consolidation and the model had filled the blocks: six facts,
/// session 21, results cut after their first line.)
pub const QUEUE_SHARE: usize = 4;

impl Agent<'_> {
    /// Whether core memory can take `added` in place of `removed` and still leave the window
    /// room for the summary, one step and [`QUEUE_SHARE`] of the window of queue: core memory
    /// is always in the prompt, so its budget follows the window, not only the blocks'
    /// character limits.
    pub(super) fn core_room(&self, added: &str, removed: &str) -> Result<std::result::Result<(), String>> {
        let count = |s: &str| self.model.tokenizer.encode(s, false).map(|t| t.len());
        let blocks = self.store.blocks(self.record.id)?;
        let now = count(&super::working_context(&blocks, 0, 0))?;
        let budget = self.window.saturating_sub(
            count(&self.instructions)?
                + super::pressure::summary_budget(self.window)
                + super::step_reserve(self.window)
                + self.window / QUEUE_SHARE,
        );
        let after = (now + count(added)? + 2).saturating_sub(count(removed)?);
        if after > budget && !added.is_empty() {
            return Ok(Err(format!(
                "Core memory is full for this context window ({after} of {budget} tokens): move older facts to archival memory with archival_memory_insert, or shorten a block with core_memory_replace."
            )));
        }
        Ok(Ok(()))
    }

    /// Why a write of `added` in place of `removed` to block `label` only copies
    /// ([`super::core_guard`]): a sentence the block holds, or the user's words about
    /// themselves written into the persona. `None`: it may be written.
    fn core_copy(&self, label: &str, added: &str, removed: &str) -> Result<Option<String>> {
        let id = self.record.id;
        let block = match self.store.block(id, label) {
            Ok(b) => b,
            Err(crate::Error::Memory(_)) => return Ok(None), // the write names the missing block
            Err(e) => return Err(e),
        };
        if let Some(s) = core_guard::already_held(&block.value, added, removed) {
            return Ok(Some(format!(
                "Not saved: core memory block '{label}' already holds \"{s}\". Save only what it does not hold yet."
            )));
        }
        if label == core_guard::PERSONA_BLOCK {
            let said: Vec<String> =
                self.store.context_messages(id)?.iter().filter_map(super::events::user_text).collect();
            if let Some(s) = core_guard::users_words(added, &said) {
                return Ok(Some(format!(
                    "Not saved: \"{s}\" is what the user said about themselves, and block '{label}' is about you. Save facts about the user in block '{}'.",
                    super::consolidate::HUMAN_BLOCK
                )));
            }
        }
        Ok(None)
    }

    /// Run the handler of `call`, in a turn answering `question` (a user turn's message).
    pub(super) fn run_tool(&mut self, call: &ToolCall, question: Option<&str>) -> Result<Outcome> {
        let mut o = self.handle(call)?;
        if let Some(q) = question {
            if o.result.is_ok() && Builtin::of(&call.function).is_some_and(Builtin::is_search) && !o.hits.is_empty() {
                // Not after an empty search: SmolLM2 then copied the line into its next query
                // and its reply ("The user's message: ...").
                o.trailer = Some(super::prompts::answer_from_results(q, &o.links));
            }
        }
        Ok(o)
    }

    pub(super) fn handle(&mut self, call: &ToolCall) -> Result<Outcome> {
        let a = &call.arguments;
        let id = self.record.id;
        let size = self.page_size;
        let Some(builtin) = Builtin::of(&call.function) else {
            let other = &call.function;
            return Ok(Outcome::new(Err(format!("unknown function '{other}'")), format!("{other} -> unknown")));
        };
        Ok(match builtin {
            Builtin::SendMessage => {
                let msg = arg(a, "message");
                // A message to the user must say something.
                let result = if msg.trim().is_empty() {
                    Err("The message is empty: write what the user should read.".to_string())
                } else {
                    Ok("Sent message successfully.".to_string())
                };
                Outcome::new(result, String::new())
            }
            Builtin::CoreMemoryAppend | Builtin::CoreMemoryReplace => {
                let label = arg(a, "label");
                let append = builtin == Builtin::CoreMemoryAppend;
                let (added, removed) =
                    if append { (arg(a, "content"), "") } else { (arg(a, "new_content"), arg(a, "old_content")) };
                if let Some(e) = self.core_copy(label, added, removed)? {
                    let summary = format!("{} {label} -> refused: a copy", call.function);
                    return Ok(Outcome::new(Err(e), summary));
                }
                if let Err(e) = self.core_room(added, removed)? {
                    let summary = format!("{} {label} -> full", call.function);
                    return Ok(Outcome::new(Err(e), summary));
                }
                let r = if append {
                    self.store.core_append(id, label, arg(a, "content"))
                } else {
                    self.store.core_replace(id, label, arg(a, "old_content"), arg(a, "new_content"))
                };
                let result = for_model(r)?.map(|b| format!("Core memory block '{label}' now reads:\n{}", b.value));
                let summary = format!("{} {label} -> {}", call.function, if result.is_ok() { "ok" } else { "failed" });
                Outcome::new(result, summary)
            }
            Builtin::ArchivalMemoryInsert => {
                let content = arg(a, "content");
                let r = self.embed(content).and_then(|v| {
                    let p = crate::memory::NewPassage {
                        text: content.to_string(),
                        source: "agent".into(),
                        span: String::new(),
                        metadata: serde_json::json!({}),
                        vector: v,
                    };
                    self.store.archival_insert(id, &self.record.embedding_model, p)
                });
                let result = for_model(r)?.map(|p| format!("Saved to archival memory as passage {}.", p.id));
                let summary = format!("archival_memory_insert -> {}", if result.is_ok() { "saved" } else { "failed" });
                Outcome::new(result, summary)
            }
            Builtin::ArchivalMemorySearch => {
                let q = arg(a, "query");
                self.searches += 1;
                let max = self.record.config.max_searches;
                if self.searches > max {
                    return Ok(Outcome::new(
                        Err(format!(
                            "Search limit ({max}) for this turn reached: answer now with send_message, citing the sources you found."
                        )),
                        format!("archival_memory_search {q:?} -> limit reached"),
                    ));
                }
                let model = &self.record.embedding_model;
                // Hybrid: passages that contain the query verbatim (an id, a name, a quoted
                // phrase) come first, ranked by meaning among themselves; otherwise by meaning.
                // A first page of verbatim matches leaves out passages this turn has shown
                // already (they are above), so following a link shows what is new.
                let mut seen_note = None;
                let page = page_of(a);
                let skip: Vec<u64> = if page == 0 { self.retrieved.iter().map(|p| p.id).collect() } else { vec![] };
                let r = self.embed(q).and_then(|v| {
                    if q.trim().chars().count() >= 3 {
                        let (exact, skipped) =
                            self.store.archival_search_containing(id, &v, q.trim(), &skip, page, size)?;
                        if let Some(first) = skipped.first() {
                            let first: String = cited(first).chars().take(FOLLOWED_CHARS).collect();
                            seen_note = Some(super::prompts::shown_before(skipped.len(), exact.total > 0, &first));
                        }
                        if exact.total > 0 || !skipped.is_empty() {
                            return Ok(exact);
                        }
                    }
                    self.store.archival_search(id, model, &v, page, size, None)
                });
                match for_model(r)? {
                    Ok(p) if p.total == 0 && seen_note.is_some() => {
                        Outcome::new(Ok(seen_note.unwrap_or_default()), format!("archival_memory_search {q:?} -> 0 new results"))
                    }
                    // Ranked by meaning, a search finds nothing only in an empty archive: say
                    // where else to look (Qwen2.5-1.5B, asked about its user, searched an empty
                    // archive twice and apologised instead of searching the conversation).
                    Ok(p) if p.total == 0 => Outcome::new(
                        Ok(format!(
                            "No results found: archival memory is empty. What was said in past conversations is found with {}.",
                            Builtin::ConversationSearch.name()
                        )),
                        format!("archival_memory_search {q:?} -> 0 results"),
                    ),
                    Ok(p) => {
                        let text = listing(&p, self.result_limit, |n, s| format!("{n}. {}", cited(&s.passage)));
                        let shown: Vec<&crate::memory::Passage> = p.items.iter().map(|s| &s.passage).collect();
                        let walk = self.store.follow_links(id, &shown, q, FOLLOW_HOPS, FOLLOW_MAX)?;
                        let links: Vec<(String, usize)> = walk.unfollowed.iter().take(MAX_LINKS).cloned().collect();
                        let (below, state) = links_text(&walk, &links);
                        if let Some(c) = super::chain::Chain::of(&walk) {
                            self.chain = Some(c);
                        }
                        let text = text.map(|t| match &seen_note {
                            Some(n) => format!("{n}\n{t}{below}"),
                            None => format!("{t}{below}"),
                        });
                        let mut o =
                            Outcome::new(text, format!("archival_memory_search {q:?} -> {} results", p.items.len()));
                        for s in p.items.iter().map(|s| &s.passage).chain(walk.followed.iter().map(|f| &f.passage)) {
                            self.retrieved.push(s.clone());
                            o.hits.push(s.id);
                        }
                        o.links = state;
                        o
                    }
                    Err(e) => Outcome::new(Err(e), "archival_memory_search -> failed".into()),
                }
            }
            Builtin::ConversationSearch => {
                let q = arg(a, "query");
                let day = |k: &str| a.get(k).and_then(|v| v.as_str()).map(parse_date).transpose();
                let mut note = String::new();
                let r = day("start_date").and_then(|from| Ok((from, day("end_date")?))).and_then(|(from, to)| {
                    let qv = self.embedder.map(|e| e.embed(&[q])).transpose()?.map(|mut v| v.remove(0));
                    let mut filter =
                        RecallFilter { before: self.turn_floor, from, to, speaker: SpeakerFilter::NamedInQuery };
                    let mut hits =
                        self.store.recall_search_filtered(id, q, qv.as_deref(), &filter, page_of(a), size)?;
                    if hits.page.total == 0 && (from.is_some() || to.is_some()) {
                        // Dates that exclude everything (small models guess them) must not hide
                        // what was said: search all dates and say so.
                        note.push_str("Nothing was said between those dates; matches from any date follow.\n");
                        (filter.from, filter.to) = (None, None);
                        hits = self.store.recall_search_filtered(id, q, qv.as_deref(), &filter, page_of(a), size)?;
                    }
                    if let Some(who) = &hits.speaker {
                        note.insert_str(0, &format!("Only what {who} said (the query names {who}).\n"));
                    }
                    Ok(hits.page)
                });
                match for_model(r)? {
                    Ok(p) => {
                        let text = if p.total == 0 {
                            Ok(format!("{note}No results found. Try other keywords."))
                        } else {
                            listing(&p, self.result_limit, recall_line).map(|t| format!("{note}{t}"))
                        };
                        let mut o = Outcome::new(text, format!("conversation_search {q:?} -> {} results", p.total));
                        o.hits = p.items.iter().map(|m| m.id).collect();
                        o
                    }
                    Err(e) => Outcome::new(Err(e), "conversation_search -> failed".into()),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::for_model;
    use crate::Error;

    #[test]
    fn the_model_sees_what_it_can_act_on_and_a_store_failure_ends_the_turn() {
        let shown = for_model::<()>(Err(Error::Memory("there is no core memory block 'x'".into()))).unwrap();
        assert_eq!(shown, Err("there is no core memory block 'x'".to_string()));
        assert_eq!(for_model(Ok(3)).unwrap(), Ok(3));
        let io = std::io::Error::other("disk full");
        for e in [Error::from(redb::Error::Corrupted("bad page".into())), Error::Io(io), Error::Cancelled] {
            let text = e.to_string();
            let ended = for_model::<()>(Err(e)).unwrap_err();
            assert_eq!(ended.to_string(), text);
        }
    }
}
