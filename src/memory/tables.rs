/*! The redb table definitions: the store's data layout (see docs/design.md).

All values are JSON (serde) except vectors, stored as little-endian f32 bytes. Keys put the agent
id first so one agent's rows are one contiguous range.
*/

use redb::TableDefinition;

/// Bumped whenever the layout changes incompatibly.
pub const SCHEMA_VERSION: u64 = 1;

/// `schema_version`, `next_agent_id`, `next_message_id`, `next_passage_id` -> u64.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// agent name -> [`super::AgentRecord`] JSON.
pub const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
/// (agent id, block label) -> [`super::Block`] JSON.
pub const BLOCKS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("core_blocks");
/// (agent id, message id) -> [`super::Message`] JSON. Message ids grow with time.
pub const MESSAGES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("messages");
/// agent id -> [`super::Summary`] JSON: the recursive summary heading the FIFO queue.
pub const SUMMARY: TableDefinition<u64, &[u8]> = TableDefinition::new("summary");
/// (agent id, passage id) -> [`super::Passage`] JSON.
pub const PASSAGES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("passages");
/// (agent id, passage id) -> embedding, f32 little-endian.
pub const VECTORS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("passage_vectors");
/// (agent id, key) -> JSON: per-agent state for other modules (e.g. loaded sources).
pub const AGENT_STATE: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("agent_state");
/// (agent id, source path) -> [`super::Source`] JSON: a file loaded into archival storage.
pub const SOURCES: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("sources");
/// (agent id, message id) -> embedding of the message's conversation text, f32 little-endian
/// (recall search ranks by it together with BM25; absent when no embedder was loaded).
pub const MESSAGE_VECTORS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("message_vectors");
