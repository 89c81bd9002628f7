/*! Links between archival passages.

An identifier in a passage (a token of at least [`MIN_ID_CHARS`] letters, digits, `-` or `_`
with both a letter and a digit: a UUID, a ticket or part number) that other passages also hold
is a link between them (a whole token, in any case: `key1` does not link to `key10`). A reader stopping at a reference (a value that is itself a key, a part
number defined elsewhere) misses what it points to, and small models stop: told that a value
was a link, Qwen2.5-1.5B still replied with it in 4 of 5 nested-KV items at level 1.

So a page of archival results comes with its links followed ([`MemoryStore::follow_links`]):
breadth first from the identifiers the results show, a few hops deep, through identifiers that
few passages hold (an identifier every ticket names is a hub, not a reference: following it
would flood the page; it is named instead, [`FollowedLinks::unfollowed`]). Where a
followed chain stops because its last identifiers are in no other passage, the result says so.
*/

use super::records::Passage;
use super::MemoryStore;
use crate::Result;
use std::collections::HashSet;

/// Shortest token that counts as an identifier.
pub const MIN_ID_CHARS: usize = 8;

/// An identifier held by at most this many other passages is followed; one held by more is a
/// hub and is only named.
pub const MAX_FANOUT: usize = 2;

/// The identifiers in `text`, in order, each once (see the module doc).
pub fn identifiers(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = vec![];
    for t in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        let t = t.trim_matches(|c| c == '-' || c == '_');
        let id = t.len() >= MIN_ID_CHARS
            && t.chars().any(|c| c.is_ascii_digit())
            && t.chars().any(|c| c.is_ascii_alphabetic());
        if id && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// A passage reached by following an identifier.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The identifier followed, as the passage it came from wrote it.
    pub via: String,
    pub passage: Passage,
}

/// What following the links of a page of results found.
#[derive(Debug, Clone, Default)]
pub struct FollowedLinks {
    /// Passages reached, in the order reached (hop by hop).
    pub followed: Vec<Followed>,
    /// Identifiers that followed passages introduced and no other passage holds: where the
    /// links end. Empty when the hop or passage limit stopped the walk first.
    pub ends: Vec<String>,
    /// Identifiers shown (in the results or in passages reached) that other passages hold and
    /// that were not followed, with how many passages hold them: hubs (more than
    /// [`MAX_FANOUT`]) and those a limit left, in the order met.
    pub unfollowed: Vec<(String, usize)>,
    /// Whether the hop or passage limit left links unfollowed.
    pub limited: bool,
}

/// An identifier: as written, and lowercase (matching ignores case).
type Ident = (String, String);

fn idents_of(text: &str) -> Vec<Ident> {
    identifiers(text).into_iter().map(|t| (t.to_string(), t.to_lowercase())).collect()
}

/// The identifiers a passage holds, lowercase: whole tokens, so "key1" is not in "key10".
fn held(text: &str) -> HashSet<String> {
    identifiers(text).into_iter().map(str::to_lowercase).collect()
}

impl MemoryStore {
    /// Follow the links out of the passages `shown`: up to `hops` rounds (one scan of the
    /// agent's passages each), through identifiers not in `query` that at most [`MAX_FANOUT`]
    /// other passages hold, reaching at most `max` passages (see the module doc). Identifiers
    /// not followed (hubs, or those a limit left) are returned with their counts; finding
    /// those the hop limit left takes one more scan.
    pub fn follow_links(
        &self,
        agent: u64,
        shown: &[&Passage],
        query: &str,
        hops: usize,
        max: usize,
    ) -> Result<FollowedLinks> {
        let mut visited: HashSet<u64> = shown.iter().map(|p| p.id).collect();
        let mut known: HashSet<String> = idents_of(query).into_iter().map(|i| i.1).collect();
        let query = query.to_lowercase();
        let mut frontier: Vec<Ident> = vec![];
        for p in shown {
            for i in idents_of(&p.text) {
                if known.insert(i.1.clone()) && !query.contains(&i.1) {
                    frontier.push(i);
                }
            }
        }
        let mut out = FollowedLinks::default();
        for hop in 0..=hops {
            if frontier.is_empty() {
                break;
            }
            // Per frontier identifier: the unvisited passages holding it, and each unvisited
            // passage once, under the first frontier identifier it holds.
            let mut counts = vec![0; frontier.len()];
            let mut reached: Vec<Vec<Passage>> = vec![vec![]; frontier.len()];
            self.passages_where(agent, |p| {
                if !visited.contains(&p.id) {
                    let held = held(&p.text);
                    let mut first = true;
                    for (i, f) in frontier.iter().enumerate() {
                        if held.contains(&f.1) {
                            counts[i] += 1;
                            if std::mem::take(&mut first) {
                                reached[i].push(p.clone());
                            }
                        }
                    }
                }
                false
            })?;
            let mut next = vec![];
            for ((ident, passages), n) in frontier.into_iter().zip(reached).zip(counts) {
                let limited = hop == hops || out.followed.len() + passages.len() > max;
                if n == 0 {
                    if hop > 0 {
                        out.ends.push(ident.0);
                    }
                } else if n > MAX_FANOUT || limited {
                    out.unfollowed.push((ident.0, n));
                    if limited {
                        out.limited = true;
                    }
                } else {
                    for p in passages {
                        visited.insert(p.id);
                        for i in idents_of(&p.text) {
                            if known.insert(i.1.clone()) {
                                next.push(i);
                            }
                        }
                        out.followed.push(Followed { via: ident.0.clone(), passage: p });
                    }
                }
            }
            frontier = next;
        }
        if out.limited {
            out.ends.clear(); // a limit stopped the walk: where the links end is not known
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::identifiers;

    #[test]
    fn identifiers_need_a_letter_a_digit_and_eight_characters() {
        assert_eq!(
            identifiers("uuid 60ceb27d-3410-461d-936a-a5bb0415f174, on 2023-10-20 at 12345678 (v2) AX-99871 ax-99871"),
            ["60ceb27d-3410-461d-936a-a5bb0415f174", "AX-99871", "ax-99871"]
        );
    }
}
