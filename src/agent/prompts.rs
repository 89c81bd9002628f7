/*! The agent's fixed texts: system instructions, event formats, the summarizer's prompt. */

/// The read-only system instructions. `{tools}` and `{format}` are filled in.
pub const SYSTEM: &str = "You are {name}, an assistant with paged memory.
Core memory (below) is always visible: keep facts about the human and yourself there.
Recall memory has every past message (conversation_search). Archival memory stores facts and documents (archival_memory_insert, archival_memory_search); to answer a question about documents, call archival_memory_search (request_heartbeat=true; next page if needed, at most 4 searches), then send_message with the answer and the [source: ...] of the passages used.
Old messages are replaced by a summary when context fills; on a memory warning, save what matters.
Reply with exactly one function call: {format}
request_heartbeat=true runs another step (e.g. to read search results); send_message talks to the user.
Functions:
{tools}";

/// How the step format is described to the model.
pub const FORMAT_JSON: &str =
    "{\"thoughts\": ..., \"function\": ..., \"arguments\": {...}, \"request_heartbeat\": bool}";
pub const FORMAT_QWEN: &str =
    "<tool_call>{\"name\": ..., \"arguments\": {\"thoughts\": ..., ..., \"request_heartbeat\": bool}}</tool_call>";

/// The working-context section.
pub const CORE_HEADER: &str = "### Core memory (working context)";

/// The alert sent once when the prompt crosses the warning threshold.
pub const PRESSURE_ALERT: &str = "Warning: the conversation history will soon reach its maximum length and older messages will be evicted into a summary. Save important information from recent messages to core or archival memory now.";

/// What a request for a recursive summary looks like.
pub const SUMMARIZE: &str = "Summarize the conversation below in at most 120 words, keeping names, facts the user shared, decisions and open questions. Write plain prose, in the third person.";

/// Intro of the summary message at the head of the queue.
pub fn summary_message(covered: u64, text: &str) -> String {
    format!(
        "Note: {covered} earlier messages were evicted from view (search them with conversation_search). Summary of them: {text}"
    )
}

/// The heartbeat that asks a document-QA turn for its answer.
pub const ANSWER_NOW: &str =
    "Answer the user now with send_message, using the search results above and naming their [source: ...].";
