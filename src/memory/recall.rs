/*! Recall storage: every message the agent ever saw, and the recursive summary.

Search semantics (documented for the model and for people):
- both searches cover the conversation only: what the user said and what the agent sent with
  `send_message` ([`Message::conversation_text`]); events, other calls and function results are
  not searched (a search would otherwise find itself and its plumbing);
- text search ranks by relevance (BM25 over stemmed words, [`super::rank`]), newest first among
  equal scores; a query made only of common words falls back to a case-insensitive substring
  match, newest first;
- date search takes inclusive `YYYY-MM-DD` dates interpreted in UTC; results are oldest first;
- a query that names exactly one of two or more speakers of the conversation (a transcript's
  or a group chat's named participants, [`Message::speaker`]) keeps only what that speaker said
  ([`named_speaker`]): "Ana trip" finds Ana's own words about a trip, not a friend's; the
  ranking still runs over everyone's messages, so a line answering a neighbour keeps that
  neighbour's score;
- pages are 0-based with a page size (default 5).
*/

use super::codec::{scan, Row};
use super::records::{now_ms, Message, Page, Summary};
use super::tables::*;
use super::{check_text, MemoryStore};
use crate::{Error, Result};
use chrono::NaiveDate;
use redb::TableHandle;

/// What a recall search may return: messages older than `before` (an id), created on the
/// days `from..=to` (UTC, either end open), said by whom `speaker` allows.
#[derive(Debug, Clone)]
pub struct RecallFilter {
    pub before: u64,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub speaker: SpeakerFilter,
}

impl Default for RecallFilter {
    fn default() -> Self {
        Self { before: u64::MAX, from: None, to: None, speaker: SpeakerFilter::Any }
    }
}

/// Whose words a recall search keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SpeakerFilter {
    /// Everyone's.
    #[default]
    Any,
    /// One speaker's (a name, any case).
    Is(String),
    /// The speaker the query names, if [`named_speaker`] finds one among the conversation's
    /// named speakers (resolved in the same scan that reads the messages).
    NamedInQuery,
}

/// A page of recall results and the speaker they were limited to, if any.
#[derive(Debug, Clone)]
pub struct RecallHits {
    pub page: Page<Message>,
    pub speaker: Option<String>,
}

/// The one speaker among `speakers` that `query` names (a whole word, any case; a name of
/// several words is named by its first), if exactly one is named and there are others to
/// leave out (with one named speaker, a chat with a named user, there is nobody to confuse
/// them with, and the note saying so would only take room from the results).
pub fn named_speaker<'a>(query: &str, speakers: &'a [String]) -> Option<&'a str> {
    if speakers.len() < 2 {
        return None;
    }
    let words: Vec<String> = query.split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).collect();
    let mut named = speakers.iter().filter(|s| {
        let first = s.split_whitespace().next().unwrap_or_default().to_lowercase();
        !first.is_empty() && words.contains(&first)
    });
    match (named.next(), named.next()) {
        (Some(one), None) => Some(one.as_str()),
        _ => None,
    }
}

impl RecallFilter {
    /// The time range in Unix milliseconds, `start..end`.
    fn range(&self) -> Result<(i64, i64)> {
        let start = self
            .from
            .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
            .unwrap_or(i64::MIN);
        let end = self
            .to
            .map(|d| d.succ_opt().unwrap_or(d).and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
            .unwrap_or(i64::MAX);
        if start >= end && self.from.is_some() && self.to.is_some() {
            return Err(Error::Memory("the start date is after the end date".into()));
        }
        Ok((start, end))
    }
}

/// The text words are matched in: the speaker's name (if any) and what was said.
fn lexical_text(m: &Message) -> String {
    let text = m.conversation_text().unwrap_or_default();
    match m.speaker() {
        Some(name) => format!("{name}: {text}"),
        None => text,
    }
}

/// `msgs` (conversation messages, oldest first) that match `query`, best first.
fn rank_messages(msgs: Vec<Message>, query: &str) -> Vec<Message> {
    let texts: Vec<String> = msgs.iter().map(lexical_text).collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let scores = super::rank::bm25(query, &refs);
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    if scores.iter().all(|s| *s == 0.0) {
        // Nothing to rank by (a query of common words, or no word in common): substring match.
        let q = query.trim().to_lowercase();
        order.retain(|&i| !q.is_empty() && texts[i].to_lowercase().contains(&q));
        order.reverse();
    } else {
        order.retain(|&i| scores[i] > 0.0);
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(b.cmp(&a)));
    }
    let mut slots: Vec<Option<Message>> = msgs.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Messages whose embedding is at least this similar to the query count as matches even
/// without a word in common (MiniLM cosine; paraphrases score ~0.4-0.7, unrelated text < 0.2).
const MIN_COSINE: f32 = 0.3;

/// Weight of meaning against words in the hybrid score. Chat lines are short, and MiniLM puts
/// lines that share a name close to each other whatever they say (on LoCoMo, "What was
/// grandma's gift to Caroline?" scores 0.64 against "Cool! What did it look like?" said by
/// Caroline, 0.65 against the necklace line that answers it; a rank fusion let such lines
/// push the answer off the first page), so words lead and meaning breaks ties and finds
/// paraphrases that share no word.
const COSINE_WEIGHT: f64 = 0.3;

/// Share of the better neighbour's score a message inherits. A chat line often answers the
/// line before it ("Yes, last summer!") or is answered by the next, so the words of a
/// question may sit in one line and the fact in its neighbour; each line's own score still
/// leads.
const NEIGHBOUR_WEIGHT: f64 = 0.5;

/// `msgs` ranked by a linear hybrid score: BM25 normalised by the best match, plus
/// [`COSINE_WEIGHT`] times how far the cosine similarity rises above [`MIN_COSINE`], plus
/// [`NEIGHBOUR_WEIGHT`] times the better of the two neighbours' scores (`msgs` oldest first,
/// so neighbours are adjacent). A message matches if it or a neighbour shares a stemmed word
/// with the query or is similar enough by meaning.
fn rank_hybrid(
    msgs: Vec<Message>,
    query: &str,
    q: &[f32],
    vectors: &std::collections::HashMap<u64, Vec<f32>>,
) -> Vec<Message> {
    let texts: Vec<String> = msgs.iter().map(lexical_text).collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let bm = super::rank::bm25(query, &refs);
    let top = bm.iter().copied().fold(0.0, f64::max);
    let own: Vec<f64> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let cos = vectors.get(&m.id).map_or(0.0, |v| crate::embed::cosine(q, v));
            let meaning = ((cos - MIN_COSINE) / (1.0 - MIN_COSINE)).max(0.0) as f64;
            let words = if top > 0.0 { bm[i] / top } else { 0.0 };
            words + COSINE_WEIGHT * meaning
        })
        .collect();
    let mut scored: Vec<(usize, f64)> = (0..msgs.len())
        .filter_map(|i| {
            let before = if i > 0 { own[i - 1] } else { 0.0 };
            let after = own.get(i + 1).copied().unwrap_or(0.0);
            let s = own[i] + NEIGHBOUR_WEIGHT * before.max(after);
            (s > 0.0).then_some((i, s))
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut slots: Vec<Option<Message>> = msgs.into_iter().map(Some).collect();
    scored.into_iter().filter_map(|(i, _)| slots[i].take()).collect()
}

/// Parse `YYYY-MM-DD`, or an error the model can act on.
pub fn parse_date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| Error::Memory(format!("invalid date {s:?}: use YYYY-MM-DD, e.g. 2024-01-31")))
}

impl MemoryStore {
    /// Append a message; it is committed (fsync'd) before this returns. Sets id and time.
    pub fn append_message(&self, agent: u64, msg: Message) -> Result<Message> {
        Ok(self.append_messages(agent, vec![msg])?.remove(0))
    }

    /// Append messages in order in one transaction (durable on return). Sets ids, and times
    /// where they are 0.
    pub fn append_messages(&self, agent: u64, msgs: Vec<Message>) -> Result<Vec<Message>> {
        for m in &msgs {
            check_text("message", &m.content)?;
        }
        let tx = self.db().begin_write()?;
        let mut out = Vec::with_capacity(msgs.len());
        {
            let mut t = tx.open_table(MESSAGES)?;
            for mut msg in msgs {
                msg.id = self.next_id(&tx, "next_message_id")?;
                if msg.created_at == 0 {
                    msg.created_at = now_ms();
                }
                t.insert((agent, msg.id), Row::Ref(&msg))?;
                out.push(msg);
            }
        }
        tx.commit()?;
        self.context.appended(agent, &out);
        Ok(out)
    }

    /// Rewrite stored messages (same ids), e.g. to mark them out of context; one transaction.
    pub fn update_messages(&self, agent: u64, msgs: &[Message]) -> Result<()> {
        let tx = self.db().begin_write()?;
        {
            let mut t = tx.open_table(MESSAGES)?;
            for m in msgs {
                t.insert((agent, m.id), Row::Ref(m))?;
            }
        }
        tx.commit()?;
        self.context.updated(agent, msgs);
        Ok(())
    }

    /// Delete messages by id (used by `/pop` and `/retry`).
    pub fn delete_messages(&self, agent: u64, ids: &[u64]) -> Result<()> {
        let tx = self.db().begin_write()?;
        {
            let mut t = tx.open_table(MESSAGES)?;
            let mut v = tx.open_table(MESSAGE_VECTORS)?;
            for id in ids {
                t.remove((agent, *id))?;
                v.remove((agent, *id))?;
            }
        }
        tx.commit()?;
        self.context.removed(agent, ids);
        Ok(())
    }

    /// Every message of `agent`, oldest first, for which `keep` holds.
    pub fn messages_where(&self, agent: u64, mut keep: impl FnMut(&Message) -> bool) -> Result<Vec<Message>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(MESSAGES)?;
        let mut out = vec![];
        scan(&t, agent, |_, v: Row<'_, Message>| {
            let m = v.decode(MESSAGES.name())?;
            if keep(&m) {
                out.push(m);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// The messages of `agent` whose id is above `after`, oldest first (a range read: its cost
    /// does not grow with older history).
    pub fn messages_after(&self, agent: u64, after: u64) -> Result<Vec<Message>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(MESSAGES)?;
        let mut out = vec![];
        for row in t.range((agent, after.saturating_add(1))..=(agent, u64::MAX))? {
            let (_, v) = row?;
            out.push(v.value().decode(MESSAGES.name())?);
        }
        Ok(out)
    }

    /// Every message, oldest first.
    pub fn messages(&self, agent: u64) -> Result<Vec<Message>> {
        self.messages_where(agent, |_| true)
    }

    /// The messages in the FIFO queue (main context), oldest first. Read from disk once per
    /// agent, then from the write-through copy in memory.
    pub fn context_messages(&self, agent: u64) -> Result<Vec<Message>> {
        if let Some(q) = self.context.queue(agent) {
            return Ok(q);
        }
        let q = self.messages_where(agent, |m| m.in_context)?;
        self.context.set_queue(agent, q.clone());
        Ok(q)
    }

    /// Messages in recall storage.
    pub fn message_count(&self, agent: u64) -> Result<usize> {
        self.count_rows(MESSAGES, agent)
    }

    /// Conversation messages ranked by relevance to `query`, best first (see the module doc).
    pub fn recall_search(&self, agent: u64, query: &str, page: usize, size: usize) -> Result<Page<Message>> {
        Ok(self.recall_search_filtered(agent, query, None, &RecallFilter::default(), page, size)?.page)
    }

    /// [`MemoryStore::recall_search`] within `filter` (an agent's search leaves out the turn it
    /// runs in; dates narrow it; a speaker filter keeps one speaker's words and reports whom);
    /// with the query's embedding, messages that have one are ranked by BM25 and cosine
    /// similarity together.
    pub fn recall_search_filtered(
        &self,
        agent: u64,
        query: &str,
        query_vector: Option<&[f32]>,
        filter: &RecallFilter,
        page: usize,
        size: usize,
    ) -> Result<RecallHits> {
        let (start, end) = filter.range()?;
        // One scan: the messages in range, each kept message's speaker, and every speaker's
        // name in the order they first spoke (for a query that names one).
        let mut names: Vec<String> = vec![];
        let mut said_by: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
        let msgs = self.messages_where(agent, |m| {
            let speaker = m.speaker();
            if let Some(n) = &speaker {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
            let keep =
                m.id < filter.before && m.created_at >= start && m.created_at < end && m.conversation_text().is_some();
            if let (true, Some(n)) = (keep, speaker) {
                said_by.insert(m.id, n);
            }
            keep
        })?;
        let speaker = match &filter.speaker {
            SpeakerFilter::Any => None,
            SpeakerFilter::Is(who) => Some(who.clone()),
            SpeakerFilter::NamedInQuery => named_speaker(query, &names).map(str::to_string),
        };
        let mut ranked = match query_vector {
            Some(q) => {
                let vectors = self.message_vectors(agent)?;
                rank_hybrid(msgs, query, q, &vectors)
            }
            None => rank_messages(msgs, query),
        };
        if let Some(who) = &speaker {
            ranked.retain(|m| said_by.get(&m.id).is_some_and(|s| s.eq_ignore_ascii_case(who)));
        }
        Ok(RecallHits { page: Page::of(ranked, page, size.max(1)), speaker })
    }

    /// Store embeddings of messages' conversation text (one transaction).
    pub fn put_message_vectors(&self, agent: u64, items: &[(u64, Vec<f32>)]) -> Result<()> {
        let tx = self.db().begin_write()?;
        {
            let mut t = tx.open_table(MESSAGE_VECTORS)?;
            for (id, v) in items {
                t.insert((agent, *id), super::index::vec_to_bytes(v).as_slice())?;
            }
        }
        Ok(tx.commit()?)
    }

    /// Every message embedding of `agent`, by message id.
    pub fn message_vectors(&self, agent: u64) -> Result<std::collections::HashMap<u64, Vec<f32>>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(MESSAGE_VECTORS)?;
        let mut out = std::collections::HashMap::new();
        scan(&t, agent, |(_, id), v| {
            out.insert(id, super::index::vec_from_bytes(v));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Messages created between `from` and `to` (inclusive, UTC days), oldest first.
    pub fn recall_by_date(
        &self,
        agent: u64,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        page: usize,
        size: usize,
    ) -> Result<Page<Message>> {
        let (start, end) = RecallFilter { from, to, ..RecallFilter::default() }.range()?;
        let hits = self.messages_where(agent, |m| {
            m.created_at >= start && m.created_at < end && m.conversation_text().is_some()
        })?;
        Ok(Page::of(hits, page, size.max(1)))
    }

    /// Text search combined with an optional date range (for `pagemind recall search`).
    pub fn recall_query(
        &self,
        agent: u64,
        query: Option<&str>,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        page: usize,
        size: usize,
    ) -> Result<Page<Message>> {
        match (query, from.is_some() || to.is_some()) {
            (Some(q), false) => self.recall_search(agent, q, page, size),
            (None, _) => self.recall_by_date(agent, from, to, page, size),
            (Some(q), true) => {
                let within = RecallFilter { from, to, ..RecallFilter::default() };
                Ok(self.recall_search_filtered(agent, q, None, &within, page, size)?.page)
            }
        }
    }

    /// The largest message id of `agent` (0 if none).
    pub fn last_message_id(&self, agent: u64) -> Result<u64> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(MESSAGES)?;
        super::codec::last_id(&t, agent)
    }

    /// The recursive summary (empty if none yet).
    pub fn summary(&self, agent: u64) -> Result<Summary> {
        if let Some(s) = self.context.summary(agent) {
            return Ok(s);
        }
        let tx = self.db().begin_read()?;
        let t = tx.open_table(SUMMARY)?;
        let v = t.get(agent)?;
        let s = match v {
            Some(v) => v.value().decode(SUMMARY.name())?,
            None => Summary::default(),
        };
        self.context.set_summary(agent, &s);
        Ok(s)
    }

    /// Write the summary exactly as given (imports).
    pub fn put_summary(&self, agent: u64, summary: &Summary) -> Result<()> {
        let tx = self.db().begin_write()?;
        {
            let mut s = tx.open_table(SUMMARY)?;
            s.insert(agent, Row::Ref(summary))?;
        }
        tx.commit()?;
        self.context.set_summary(agent, summary);
        Ok(())
    }

    /// Replace the summary and mark `evicted` out of context, atomically (a flush).
    pub fn flush_queue(&self, agent: u64, summary: &Summary, evicted: &[Message]) -> Result<()> {
        let tx = self.db().begin_write()?;
        let sum = {
            let mut s = tx.open_table(SUMMARY)?;
            let mut sum = summary.clone();
            sum.updated_at = now_ms();
            s.insert(agent, Row::Ref(&sum))?;
            let mut t = tx.open_table(MESSAGES)?;
            for m in evicted {
                let mut m = m.clone();
                m.in_context = false;
                t.insert((agent, m.id), Row::Ref(&m))?;
            }
            sum
        };
        tx.commit()?;
        self.context.removed(agent, &evicted.iter().map(|m| m.id).collect::<Vec<_>>());
        self.context.set_summary(agent, &sum);
        Ok(())
    }
}
