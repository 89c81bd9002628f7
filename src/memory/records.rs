/*! The records the store keeps, as serde types. Times are Unix milliseconds, UTC. */

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Agent settings that a user may change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentConfig {
    /// Tokens in the model's window that the agent may use (0 = the model's default).
    #[serde(default)]
    pub context_window: usize,
    /// Fraction of the window at which the memory-pressure alert fires.
    #[serde(default = "default_warn")]
    pub warning_threshold: f32,
    /// Fraction of the window at which the queue is flushed.
    #[serde(default = "default_flush")]
    pub flush_threshold: f32,
    /// Fraction of the window evicted by a flush.
    #[serde(default = "default_evict")]
    pub evict_fraction: f32,
    /// Chained steps allowed per user turn.
    #[serde(default = "default_steps")]
    pub max_steps: usize,
    /// Document QA: the first step of each turn must search archival memory (set by `load`).
    #[serde(default)]
    pub search_first: bool,
    /// Archival searches allowed per turn.
    #[serde(default = "default_searches")]
    pub max_searches: usize,
    /// Tool rule: the first step after a user message searches memory (`conversation_search`
    /// or `archival_memory_search`) before anything else.
    #[serde(default = "default_memory_first")]
    pub memory_first: bool,
    /// Sleep-time consolidation: after every this many user turns, a pass saves the user's
    /// statements that the model judges lasting into core memory (0 = never).
    #[serde(default = "default_consolidate_every")]
    pub consolidate_every: usize,
}

fn default_consolidate_every() -> usize {
    1
}

fn default_memory_first() -> bool {
    true
}

fn default_searches() -> usize {
    4
}

fn default_warn() -> f32 {
    0.7
}
fn default_flush() -> f32 {
    1.0
}
fn default_evict() -> f32 {
    0.5
}
fn default_steps() -> usize {
    10
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            context_window: 0,
            warning_threshold: default_warn(),
            flush_threshold: default_flush(),
            evict_fraction: default_evict(),
            max_steps: default_steps(),
            search_first: false,
            max_searches: default_searches(),
            memory_first: default_memory_first(),
            consolidate_every: default_consolidate_every(),
        }
    }
}

/// An agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentRecord {
    pub id: u64,
    pub name: String,
    pub chat_model: String,
    pub embedding_model: String,
    pub created_at: i64,
    pub last_used: i64,
    #[serde(default)]
    pub config: AgentConfig,
}

/// A core-memory block (working context).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Block {
    pub label: String,
    pub value: String,
    /// Maximum characters (Unicode scalar values).
    pub limit: usize,
    pub updated_at: i64,
}

/// Who a message is from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    /// System alerts and events (login, memory pressure, heartbeats).
    System,
    User,
    /// The agent's steps: thoughts plus one function call.
    Assistant,
    /// A function's result.
    Function,
}

impl MessageRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageRole::System => "system",
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::Function => "function",
        }
    }
}

/// One message in recall storage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub id: u64,
    pub role: MessageRole,
    /// The text: for an agent step, the step exactly as the model wrote it (its one
    /// representation: the prompt shows it so, and [`Message::call`] reads the call from it).
    pub content: String,
    /// For [`MessageRole::Function`]: which function produced this result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_at: i64,
    /// Tokens of `content` in the tokenizer of the model named by `counted_by` (0: not
    /// counted). The agent counts at append, so sizing the queue for an eviction encodes
    /// nothing again.
    #[serde(default)]
    pub tokens: u32,
    /// Which model counted `tokens` ([`crate::runtime::ChatModel::count_tag`]); another model
    /// counts again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub counted_by: u32,
    /// Whether it is in the FIFO queue of main context (else only in recall storage).
    pub in_context: bool,
    /// For a `send_message` step the loop refused (an echo of the user's words): the step
    /// stays in the queue as the model wrote it, but the user never saw it, so it is not part
    /// of the conversation and recall search never finds it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsent: bool,
}

impl Message {
    /// A new in-context message (id and time are set when appended).
    pub fn new(role: MessageRole, content: impl Into<String>) -> Self {
        Self {
            id: 0,
            role,
            content: content.into(),
            name: None,
            created_at: 0,
            tokens: 0,
            counted_by: 0,
            in_context: true,
            unsent: false,
        }
    }

    /// For an agent step: the function call it makes, parsed from its text (a step that does
    /// not parse, e.g. from a damaged import, has none).
    pub fn call(&self) -> Option<crate::grammar::ToolCall> {
        if self.role != MessageRole::Assistant {
            return None;
        }
        let format = crate::grammar::StepFormat::detect(&self.content);
        crate::grammar::parse_call(&self.content, format).ok()
    }

    /// Who said it, when a user message names its speaker (conversations of several people).
    pub fn speaker(&self) -> Option<String> {
        if self.role != MessageRole::User {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&self.content).ok()?;
        v["name"].as_str().map(str::to_string)
    }

    /// What was said, if this message is part of the conversation: a user's words (the
    /// `message` of a `user_message` event, or plain text) or a `send_message` of the agent.
    /// Events (login, alerts, heartbeats), other function calls, refused sends
    /// ([`Self::unsent`]) and function results are not: recall search skips them, so a search
    /// never finds itself, its own plumbing, or words the user never saw.
    pub fn conversation_text(&self) -> Option<String> {
        match self.role {
            MessageRole::User => match serde_json::from_str::<serde_json::Value>(&self.content) {
                Ok(v) if v.is_object() => {
                    (v["type"] == "user_message").then(|| v["message"].as_str().unwrap_or_default().to_string())
                }
                _ => Some(self.content.clone()),
            },
            MessageRole::Assistant if self.unsent => None,
            MessageRole::Assistant => match self.call() {
                Some(c) if c.function == crate::tools::SEND_MESSAGE => {
                    Some(c.arguments["message"].as_str().unwrap_or_default().to_string())
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// The recursive summary of evicted messages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Summary {
    pub text: String,
    pub updated_at: i64,
    /// Messages the summary covers (all evicted so far).
    pub messages_covered: u64,
}

/// One archival passage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Passage {
    pub id: u64,
    pub text: String,
    /// Where it came from (file path, or `agent` for the agent's own inserts).
    #[serde(default)]
    pub source: String,
    /// Location inside the source (e.g. `lines 10-24`, `page 3`).
    #[serde(default)]
    pub span: String,
    pub created_at: i64,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// One page of results.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// 0-based page index.
    pub page: usize,
    pub page_size: usize,
    pub total: usize,
}

impl<T> Page<T> {
    /// Cut `all` into the page `page` of `size`.
    pub fn of(all: Vec<T>, page: usize, size: usize) -> Self {
        let total = all.len();
        let items = all.into_iter().skip(page * size).take(size).collect();
        Self { items, page, page_size: size, total }
    }

    /// Number of pages (at least 1).
    pub fn pages(&self) -> usize {
        self.total.div_ceil(self.page_size.max(1)).max(1)
    }

    /// "page p of P, N results" (1-based p for people and models).
    pub fn header(&self) -> String {
        format!("Showing {} of {} results (page {}/{})", self.items.len(), self.total, self.page + 1, self.pages())
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}
