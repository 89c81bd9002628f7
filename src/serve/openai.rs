/*! The OpenAI-compatible endpoints: `GET /v1/models`, `POST /v1/chat/completions`.

`model` names either the loaded chat model (a plain completion with the model's own chat
template) or `agent:NAME`: the last user message is a turn of that agent, the reply is what it
sent with `send_message`, and its steps (memory operations) come as an extra `pagemind` field
(or, streaming, as chunks with an empty delta and a `pagemind` field, which clients ignore).
Plain completions (with `tools` and `response_format`) are [`super::completion`]'s.
*/

use super::api::{call, start_turn, ApiError, ApiResult, TurnEvent};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<OaMessage>,
    #[serde(default)]
    pub stream: bool,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<Value>,
}

#[derive(Deserialize)]
pub struct OaMessage {
    pub role: String,
    #[serde(default)]
    pub content: Value,
    /// An assistant message's earlier calls.
    #[serde(default)]
    pub tool_calls: Option<Value>,
}

impl OaMessage {
    /// The text of a message: a string, or the text parts of a content array.
    pub(super) fn text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
            _ => String::new(),
        }
    }
}

pub(super) fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

pub async fn models(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let chat = s.chat_model.clone();
    call(&s, move |w| {
        let created = now_s();
        let mut data = vec![json!({"id": chat, "object": "model", "created": created, "owned_by": "pagemind"})];
        for a in w.store.agents()? {
            data.push(json!({"id": format!("agent:{}", a.name), "object": "model", "created": a.created_at / 1000, "owned_by": "pagemind"}));
        }
        Ok(Json(json!({"object": "list", "data": data})))
    })
    .await
}

pub(super) fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({"id": id, "object": "chat.completion.chunk", "created": now_s(), "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

pub(super) fn sse(rx: mpsc::UnboundedReceiver<Value>) -> Response {
    let events = UnboundedReceiverStream::new(rx)
        .map(|v| Event::default().data(v.to_string()))
        .chain(tokio_stream::once(Event::default().data("[DONE]")))
        .map(Ok::<_, std::convert::Infallible>);
    Sse::new(events).into_response()
}

pub async fn chat_completions(State(s): State<AppState>, Json(req): Json<ChatRequest>) -> ApiResult<Response> {
    let id = format!("chatcmpl-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    if let Some(agent) = req.model.strip_prefix("agent:") {
        if req.tools.is_some() || req.response_format.as_ref().is_some_and(|f| f["type"] != "text") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "tools and response_format are for plain completions: an agent calls its own memory functions",
            ));
        }
        return agent_turn(&s, id, agent.to_string(), req).await;
    }
    if req.model != s.chat_model {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("model '{}' is not served here: use '{}' or agent:NAME (GET /v1/models)", req.model, s.chat_model),
        ));
    }
    super::completion::completion(&s, id, req).await
}

async fn agent_turn(s: &AppState, id: String, agent: String, req: ChatRequest) -> ApiResult<Response> {
    let user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(OaMessage::text)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "messages: no user message to send to the agent"))?;
    let mut rx = start_turn(s, agent, user)?;
    let model = req.model.clone();
    if req.stream {
        let (tx, out) = mpsc::unbounded_channel();
        let _ = tx.send(chunk(&id, &model, json!({"role": "assistant", "content": ""}), None));
        tokio::spawn(async move {
            let mut sent_any = false;
            while let Some(e) = rx.recv().await {
                let v = match e {
                    TurnEvent::Delta { text } => {
                        sent_any = true;
                        chunk(&id, &model, json!({"content": text}), None)
                    }
                    TurnEvent::Message { .. } => {
                        // Messages after the first in a turn are separated by a blank line.
                        if sent_any {
                            chunk(&id, &model, json!({"content": "\n\n"}), None)
                        } else {
                            continue;
                        }
                    }
                    TurnEvent::MemoryOp { line } => {
                        let mut c = chunk(&id, &model, json!({}), None);
                        c["pagemind"] = json!({"memory_op": line});
                        c
                    }
                    TurnEvent::MessageCut => chunk(&id, &model, json!({"content": " [cut off]\n\n"}), None),
                    TurnEvent::Step { .. } => continue,
                    TurnEvent::Done { .. } => chunk(&id, &model, json!({}), Some("stop")),
                    TurnEvent::Error { message } => json!({"error": {"message": message, "type": "server_error"}}),
                };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        return Ok(sse(out));
    }
    while let Some(e) = rx.recv().await {
        match e {
            TurnEvent::Done { turn } => {
                let prompt: usize = turn.steps.last().map_or(0, |s| s.prompt_tokens);
                let completion: usize = turn.steps.iter().map(|s| s.step_tokens).sum();
                let body = json!({
                    "id": id, "object": "chat.completion", "created": now_s(), "model": req.model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": turn.messages.join("\n\n")}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
                    "pagemind": {"steps": turn.steps, "flushes": turn.flushes},
                });
                return Ok(Json(body).into_response());
            }
            TurnEvent::Error { message } => return Err(ApiError::new(StatusCode::BAD_REQUEST, message)),
            _ => {}
        }
    }
    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the turn was abandoned"))
}
