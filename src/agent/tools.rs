/*! Handlers of the built-in functions, over the memory tiers.

Each returns `Ok(text)` for the function result, or `Err(text)`: a failure whose text goes
back to the model (it then gets another step). Results are paginated and truncated to
[`Agent::result_limit`](super::Agent) characters.
*/

use super::Agent;
use crate::grammar::ToolCall;
use crate::memory::{parse_date, Page};
use crate::Error;
use serde_json::Value;

/// What a handler did, for the one-line display (`[archival_memory_search "mango" -> 2 results]`).
pub struct Outcome {
    pub result: std::result::Result<String, String>,
    pub summary: String,
}

fn arg<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

fn page_of(v: &Value) -> usize {
    v["page"].as_u64().unwrap_or(0) as usize
}

fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

fn err_text(e: Error) -> String {
    e.to_string()
}

fn listing<T>(p: &Page<T>, line: impl Fn(usize, &T) -> String) -> String {
    if p.total == 0 {
        return "No results found.".into();
    }
    if p.items.is_empty() {
        return format!("No results on page {} (there are {} pages).", p.page, p.pages());
    }
    let mut s = format!("{}:", p.header());
    for (i, it) in p.items.iter().enumerate() {
        s.push('\n');
        s.push_str(&line(p.page * p.page_size + i + 1, it));
    }
    s
}

impl Agent<'_> {
    /// Run the handler of `call`.
    pub(super) fn run_tool(&mut self, call: &ToolCall) -> Outcome {
        let a = &call.arguments;
        let id = self.record.id;
        let size = self.page_size;
        match call.function.as_str() {
            "send_message" => Outcome { result: Ok("Sent message successfully.".into()), summary: String::new() },
            "core_memory_append" | "core_memory_replace" => {
                let label = arg(a, "label");
                let r = if call.function == "core_memory_append" {
                    self.store.core_append(id, label, arg(a, "content"))
                } else {
                    self.store.core_replace(id, label, arg(a, "old_content"), arg(a, "new_content"))
                };
                let result =
                    r.map(|b| format!("Core memory block '{label}' now reads:\n{}", b.value)).map_err(err_text);
                let summary = format!("{} {label} -> {}", call.function, if result.is_ok() { "ok" } else { "failed" });
                Outcome { result, summary }
            }
            "archival_memory_insert" => {
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
                let result = r.map(|p| format!("Saved to archival memory as passage {}.", p.id)).map_err(err_text);
                Outcome {
                    summary: format!("archival_memory_insert -> {}", if result.is_ok() { "saved" } else { "failed" }),
                    result,
                }
            }
            "archival_memory_search" => {
                let q = arg(a, "query");
                self.searches += 1;
                if self.searches > super::MAX_SEARCHES {
                    return Outcome {
                        result: Err(format!(
                            "Search limit ({}) for this turn reached: answer now with send_message, citing the sources you found.",
                            super::MAX_SEARCHES
                        )),
                        summary: format!("archival_memory_search {q:?} -> limit reached"),
                    };
                }
                let r = self.embed(q).and_then(|v| {
                    self.store.archival_search(id, &self.record.embedding_model, &v, page_of(a), size, None)
                });
                match r {
                    Ok(p) => {
                        for s in &p.items {
                            self.retrieved.push(s.passage.clone());
                        }
                        let text = listing(&p, |n, s| {
                            let src = if s.passage.span.is_empty() {
                                s.passage.source.clone()
                            } else {
                                format!("{} {}", s.passage.source, s.passage.span)
                            };
                            format!("{n}. [source: {src}] {}", s.passage.text)
                        });
                        Outcome {
                            summary: format!("archival_memory_search {q:?} -> {} results", p.total.min(p.items.len())),
                            result: Ok(text),
                        }
                    }
                    Err(e) => Outcome { summary: "archival_memory_search -> failed".into(), result: Err(err_text(e)) },
                }
            }
            "conversation_search" => {
                let q = arg(a, "query");
                match self.store.recall_search(id, q, page_of(a), size) {
                    Ok(p) => {
                        let text = listing(&p, |n, m| {
                            format!("{n}. [{}] {}: {}", fmt_time(m.created_at), m.role.as_str(), m.content)
                        });
                        Outcome {
                            summary: format!("conversation_search {q:?} -> {} results", p.total),
                            result: Ok(text),
                        }
                    }
                    Err(e) => Outcome { summary: "conversation_search -> failed".into(), result: Err(err_text(e)) },
                }
            }
            "conversation_search_date" => {
                let r = parse_date(arg(a, "start_date"))
                    .and_then(|s| Ok((s, parse_date(arg(a, "end_date"))?)))
                    .and_then(|(s, e)| self.store.recall_by_date(id, Some(s), Some(e), page_of(a), size));
                match r {
                    Ok(p) => {
                        let text = listing(&p, |n, m| {
                            format!("{n}. [{}] {}: {}", fmt_time(m.created_at), m.role.as_str(), m.content)
                        });
                        Outcome {
                            summary: format!("conversation_search_date -> {} results", p.total),
                            result: Ok(text),
                        }
                    }
                    Err(e) => {
                        Outcome { summary: "conversation_search_date -> failed".into(), result: Err(err_text(e)) }
                    }
                }
            }
            "pause_heartbeats" => {
                let m = a["minutes"].as_u64().unwrap_or(0);
                Outcome {
                    result: Ok(format!("Timed heartbeats paused for {m} minutes.")),
                    summary: format!("pause_heartbeats {m}"),
                }
            }
            other => {
                Outcome { result: Err(format!("unknown function '{other}'")), summary: format!("{other} -> unknown") }
            }
        }
    }
}
