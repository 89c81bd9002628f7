/*! The redb table definitions: the store's data layout (see docs/design.md).

Records are typed JSON values ([`Json`]); vectors are little-endian f32 bytes. Keys put the agent
id first so one agent's rows are one contiguous range ([`super::codec::scan`]).
*/

use super::codec::Json;
use super::records::{AgentRecord, Block, Message, Passage, Summary};
use super::sources::Source;
use redb::TableDefinition;

/// Bumped whenever the layout changes; an older store is migrated on open
/// (`super::migrate`).
pub const SCHEMA_VERSION: u64 = 2;

/// `schema_version`, `next_agent_id`, `next_message_id`, `next_passage_id` -> u64.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// agent name -> [`super::AgentRecord`].
pub const AGENTS: TableDefinition<&str, Json<AgentRecord>> = TableDefinition::new("agents");
/// (agent id, block label) -> [`super::Block`].
pub const BLOCKS: TableDefinition<(u64, &str), Json<Block>> = TableDefinition::new("core_blocks");
/// (agent id, message id) -> [`super::Message`]. Message ids grow with time.
pub const MESSAGES: TableDefinition<(u64, u64), Json<Message>> = TableDefinition::new("messages");
/// agent id -> [`super::Summary`] JSON: the recursive summary heading the FIFO queue.
pub const SUMMARY: TableDefinition<u64, Json<Summary>> = TableDefinition::new("summary");
/// (agent id, passage id) -> [`super::Passage`].
pub const PASSAGES: TableDefinition<(u64, u64), Json<Passage>> = TableDefinition::new("passages");
/// (agent id, passage id) -> embedding, f32 little-endian.
pub const VECTORS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("passage_vectors");
/// (agent id, key) -> per-agent state for other modules (e.g. loaded sources).
pub const AGENT_STATE: TableDefinition<(u64, &str), Json<serde_json::Value>> = TableDefinition::new("agent_state");
/// (agent id, raw path bytes) -> [`super::Source`]: a file loaded into archival storage
/// (schema 2; schema 1 keyed `sources` by the lossy path text).
pub const SOURCES: TableDefinition<(u64, &[u8]), Json<Source>> = TableDefinition::new("sources_by_path");
/// (agent id, message id) -> embedding of the message's conversation text, f32 little-endian
/// (recall search ranks by it together with BM25; absent when no embedder was loaded).
pub const MESSAGE_VECTORS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("message_vectors");
