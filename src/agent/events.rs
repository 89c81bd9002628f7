/*! Events: every input to the agent is a timestamped message in the FIFO queue.

They are stored with their role ([`MessageRole`]) and rendered for the chat template as JSON
objects naming their type, as MemGPT does, so the model can tell a user's words from a system
alert, a function result or a heartbeat.
*/

use crate::grammar::StepFormat;
use crate::memory::{Message, MessageRole};
use crate::runtime::ChatMessage;
use chrono::{DateTime, Utc};
use serde_json::json;

/// An event's time as the model sees it: to the minute, as user messages show it.
fn time_str(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

/// A message from the user, sent now (stamped when stored).
pub fn user_message(text: &str) -> Message {
    let mut m = user_message_at(text, None, Utc::now());
    m.created_at = 0;
    m
}

/// A message from the user, sent at `at`. In a conversation of several people, `name` says
/// who spoke (as chat APIs' `name` field does); it is shown in search results but not embedded.
pub fn user_message_at(text: &str, name: Option<&str>, at: DateTime<Utc>) -> Message {
    let time = time_str(at);
    let v = match name {
        Some(n) => json!({"type": "user_message", "name": n, "message": text, "time": time}),
        None => json!({"type": "user_message", "message": text, "time": time}),
    };
    let mut m = Message::new(MessageRole::User, v.to_string());
    m.created_at = at.timestamp_millis();
    m
}

/// The first event of a session, at `at`.
pub fn login(last_login: Option<i64>, at: DateTime<Utc>) -> Message {
    let last = last_login
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "never (first login)".into());
    Message::new(MessageRole::System, json!({"type": "login", "last_login": last, "time": time_str(at)}).to_string())
}

/// A system alert (e.g. memory pressure), at `at`.
pub fn system_alert(text: &str, at: DateTime<Utc>) -> Message {
    Message::new(
        MessageRole::System,
        json!({"type": "system_alert", "message": text, "time": time_str(at)}).to_string(),
    )
}

/// A heartbeat at `at`: control returns to the agent without user input.
pub fn heartbeat(reason: &str, at: DateTime<Utc>) -> Message {
    Message::new(MessageRole::System, json!({"type": "heartbeat", "reason": reason, "time": time_str(at)}).to_string())
}

/// A function's result at `at` (`ok == false`: the error text goes back to the model).
pub fn function_result(function: &str, ok: bool, text: &str, at: DateTime<Utc>) -> Message {
    let mut m = Message::new(
        MessageRole::Function,
        json!({"type": "function_result", "function": function, "status": if ok { "OK" } else { "Failed" }, "message": text, "time": time_str(at)})
            .to_string(),
    );
    m.name = Some(function.to_string());
    m
}

/// How a stored message appears to the chat template. Function results take the template's
/// `tool` role for models whose step format is their own tool-call syntax (Qwen2.5 renders them
/// as `<tool_response>`, as it was trained); other models see every event as a user turn.
pub fn to_chat(m: &Message, format: StepFormat) -> ChatMessage {
    let role = match (m.role, format) {
        (MessageRole::Assistant, _) => "assistant",
        (MessageRole::Function, StepFormat::Qwen) => "tool",
        _ => "user",
    };
    ChatMessage::new(role, m.content.clone())
}

/// The user-visible text of a user-message event (for listings).
pub fn user_text(m: &Message) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&m.content).ok()?;
    (v["type"] == "user_message").then(|| v["message"].as_str().unwrap_or_default().to_string())
}
