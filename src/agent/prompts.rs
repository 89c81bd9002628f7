/*! The agent's fixed texts: system instructions, event formats, the summarizer's prompt. */

/// The read-only system instructions. `{tools}` and `{format}` are filled in.
pub const SYSTEM: &str = "You are {name}, a memory-augmented assistant. Your context window is small, so your memory works like an operating system's:
- Core memory (below) is always visible: your persona and facts about the human. Keep it current with core_memory_append and core_memory_replace.
- Recall memory holds every past message; search it with conversation_search or conversation_search_date.
- Archival memory is unlimited long-term storage; save facts with archival_memory_insert and find them with archival_memory_search.
- Old messages are evicted into a summary when the context fills; after a memory-pressure warning, save what matters.
Every reply is exactly one function call: {format}
Set request_heartbeat to true to run another step after this one (e.g. after a search, to read its results); send_message ends your turn.
Answer questions about documents by searching archival memory first, then cite the sources you used.
Functions:
{tools}";

/// How the step format is described to the model.
pub const FORMAT_JSON: &str =
    "a JSON object {\"thoughts\": private reasoning, \"function\": name, \"arguments\": {...}, \"request_heartbeat\": true|false}.";
pub const FORMAT_QWEN: &str =
    "<tool_call>{\"name\": name, \"arguments\": {\"thoughts\": private reasoning, ..., \"request_heartbeat\": true|false}}</tool_call>.";

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
