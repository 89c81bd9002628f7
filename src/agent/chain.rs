/*!
The chain guard: a reply that stops at a link the turn has followed past is refused once.

An archival search follows the links of its results ([`crate::memory::MemoryStore::follow_links`])
and shows where they end, in the heading over the passages reached and in the line restating the
question. Shown all that, Qwen2.5-1.5B still replied with the first value in 8 of 10 nested-KV
items at levels 2 and 3 (session 20; its thoughts: "The value is the UUID of another key.").

So when this turn's links were followed to a single end ([`Chain::of`]), a `send_message` that
names an identifier the walk went through (one that led on to another passage) and not the end
([`Chain::stops_short`]) is refused once with [`super::prompts::short_of_end`], which names the
end, quotes the user's question and leaves the choice to the model: a question about the
reference itself ("Which part fixed ticket X?" answered with the part, whose passage names a
kit) is answered by sending the same reply again, and the second is sent. Like the echo guard,
it never makes a turn end without a message, and the turn's last allowed step is never refused.
*/

use crate::memory::{identifiers, FollowedLinks};

/// Where the links followed this turn went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The identifiers that led on to another passage, as first written, in the order followed.
    pub through: Vec<String>,
    /// The identifier the links end at (no other passage holds it).
    pub end: String,
}

impl Chain {
    /// The chain a walk followed, when it reached passages and ended at exactly one identifier.
    pub fn of(walk: &FollowedLinks) -> Option<Chain> {
        let [end] = walk.ends.as_slice() else { return None };
        let mut through: Vec<String> = vec![];
        for f in &walk.followed {
            if !through.iter().any(|t| t.eq_ignore_ascii_case(&f.via)) {
                through.push(f.via.clone());
            }
        }
        (!through.is_empty()).then(|| Chain { through, end: end.clone() })
    }

    /// The first identifier of the chain that `reply` names (a whole token, any case), when it
    /// does not also name the end.
    pub fn stops_short(&self, reply: &str) -> Option<&str> {
        let named: Vec<String> = identifiers(reply).into_iter().map(str::to_lowercase).collect();
        if named.contains(&self.end.to_lowercase()) {
            return None;
        }
        self.through.iter().find(|t| named.contains(&t.to_lowercase())).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Followed, Passage};

    fn walk(vias: &[&str], ends: &[&str]) -> FollowedLinks {
        FollowedLinks {
            followed: vias
                .iter()
                .map(|v| {
                    let text = format!("{v}: next");
                    let passage = Passage {
                        id: 0,
                        text,
                        source: "kv".into(),
                        span: String::new(),
                        created_at: 0,
                        metadata: Default::default(),
                    };
                    Followed { via: v.to_string(), passage }
                })
                .collect(),
            ends: ends.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_reply_naming_a_link_but_not_the_end_stops_short() {
        let c = Chain::of(&walk(&["PART-0042", "KIT-00077"], &["DEPOT-0009"])).unwrap();
        assert_eq!(c.stops_short("It was fixed with part-0042."), Some("PART-0042"));
        assert_eq!(c.stops_short("The value is \"KIT-00077\""), Some("KIT-00077"));
        // The end, with or without the links on the way, the asked key, or no identifier at all.
        assert_eq!(c.stops_short("PART-0042 leads to DEPOT-0009."), None);
        assert_eq!(c.stops_short("TICKET-001 is open."), None);
        assert_eq!(c.stops_short("I could not find it."), None);
        // A whole token only: PART-00421 is another identifier.
        assert_eq!(c.stops_short("PART-00421"), None);
    }

    #[test]
    fn no_chain_without_a_single_end_or_a_passage_followed() {
        assert_eq!(Chain::of(&walk(&["PART-0042"], &[])), None);
        assert_eq!(Chain::of(&walk(&["PART-0042"], &["A-00000001", "B-00000002"])), None);
        assert_eq!(Chain::of(&walk(&[], &["DEPOT-0009"])), None);
    }
}
