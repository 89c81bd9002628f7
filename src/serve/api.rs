/*! The agent REST API (`/api/...`): agents, turns (JSON or server-sent events), core memory,
recall and archival search, context usage. Every error is JSON: `{"error": {"message", "type"}}`.
*/

use super::worker::{Job, Worker};
use super::AppState;
use crate::agent::{Observer, StepRecord, TurnResult};
use crate::memory::{NewPassage, DEFAULT_HUMAN, DEFAULT_PERSONA};
use crate::Error;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

/// An error answered as JSON with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::NoAgent { .. } => StatusCode::NOT_FOUND,
            Error::AgentExists { .. } => StatusCode::CONFLICT,
            Error::Invalid(_) | Error::Memory(_) | Error::Grammar(_) | Error::ContextOverflow { .. } => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_client_error() { "invalid_request_error" } else { "server_error" };
        (self.status, Json(json!({"error": {"message": self.message, "type": kind}}))).into_response()
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// Queue `f` on the model thread and await its answer; a full queue is a 503 at once.
pub async fn call<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Worker) -> crate::Result<T> + Send + 'static,
) -> ApiResult<T> {
    answer(submit(state, f)?).await
}

/// Queue `f` now (a full queue is an error at once); [`answer`] awaits its result.
pub fn submit<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Worker) -> crate::Result<T> + Send + 'static,
) -> ApiResult<oneshot::Receiver<crate::Result<T>>> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |w| {
        // Nobody waits for it any more (the request timed out or the client went away).
        if tx.is_closed() {
            return;
        }
        let _ = tx.send(f(w));
    });
    queue(state, job)?;
    Ok(rx)
}

/// The result of a job queued by [`submit`].
pub async fn answer<T>(rx: oneshot::Receiver<crate::Result<T>>) -> ApiResult<T> {
    rx.await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"))?
        .map_err(Into::into)
}

/// Put a job on the bounded queue.
pub fn queue(state: &AppState, job: Job) -> ApiResult<()> {
    state.jobs.try_send(job).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("busy: {} requests are queued; retry later", state.queue_capacity),
        ),
        mpsc::error::TrySendError::Closed(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down")
        }
    })
}

/// What a turn streams: the message as it is written, memory operations, each step, the end.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    Delta {
        text: String,
    },
    Message {
        text: String,
    },
    /// The message streamed so far was abandoned (see `Observer::message_cut`).
    MessageCut,
    MemoryOp {
        line: String,
    },
    Step {
        step: Box<StepRecord>,
    },
    Done {
        turn: Box<TurnResult>,
    },
    Error {
        message: String,
    },
}

struct Forward(mpsc::UnboundedSender<TurnEvent>);

impl Observer for Forward {
    fn message_delta(&mut self, text: &str) {
        let _ = self.0.send(TurnEvent::Delta { text: text.into() });
    }
    fn message(&mut self, text: &str) {
        let _ = self.0.send(TurnEvent::Message { text: text.into() });
    }
    fn message_cut(&mut self) {
        let _ = self.0.send(TurnEvent::MessageCut);
    }
    fn memory_op(&mut self, line: &str) {
        let _ = self.0.send(TurnEvent::MemoryOp { line: line.into() });
    }
    fn step(&mut self, r: &StepRecord) {
        let _ = self.0.send(TurnEvent::Step { step: Box::new(r.clone()) });
    }
}

/// Run one user turn of `agent` on the model thread; its events arrive on the returned channel
/// and end with `Done` or `Error`.
pub fn start_turn(state: &AppState, agent: String, message: String) -> ApiResult<mpsc::UnboundedReceiver<TurnEvent>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let job: Job = Box::new(move |w| {
        // A turn whose request timed out (or whose client left) while it waited in the queue
        // is not started: nothing of it was saved, and nobody would read its reply.
        if tx.is_closed() {
            return;
        }
        let r = (|| -> crate::Result<TurnResult> {
            let mut a = w.agent(&agent)?;
            let steps = w.steps(&a)?;
            let r = a.turn(steps, &message, &mut Forward(tx.clone()))?;
            w.save_kv(&a);
            Ok(r)
        })();
        let _ = tx.send(match r {
            Ok(turn) => TurnEvent::Done { turn: Box::new(turn) },
            Err(e) => TurnEvent::Error { message: e.to_string() },
        });
    });
    queue(state, job)?;
    Ok(rx)
}

#[derive(Deserialize)]
pub struct NewAgent {
    pub name: String,
    pub persona: Option<String>,
    pub human: Option<String>,
}

pub async fn list_agents(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    call(&s, |w| {
        let mut out = vec![];
        for a in w.store.agents()? {
            out.push(json!({"name": a.name, "chat_model": a.chat_model, "messages": w.store.message_count(a.id)?,
                            "passages": w.store.passage_count(a.id)?, "last_used": a.last_used}));
        }
        Ok(Json(json!({ "agents": out })))
    })
    .await
}

pub async fn create_agent(
    State(s): State<AppState>,
    Json(req): Json<NewAgent>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let emb = s.embedding_model.clone();
    let chat = s.chat_model.clone();
    call(&s, move |w| {
        let persona = req.persona.as_deref().unwrap_or(DEFAULT_PERSONA);
        let human = req.human.as_deref().unwrap_or(DEFAULT_HUMAN);
        let rec = w.store.create_agent(&req.name, &chat, &emb, persona, human)?;
        Ok((StatusCode::CREATED, Json(serde_json::to_value(rec).unwrap_or_default())))
    })
    .await
}

pub async fn delete_agent(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    call(&s, move |w| {
        let id = w.store.agent(&name)?.id;
        w.forget(id);
        w.store.delete_agent(&name)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Core memory, summary, the queue in context and token use per section (what `/context` and
/// `/memory` print).
pub async fn memory(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    call(&s, move |w| {
        let a = w.agent(&name)?;
        let (summary, queue) = a.main_context()?;
        let queue: Vec<Value> = queue
            .iter()
            .map(|m| {
                json!({"id": m.id, "role": m.role.as_str(), "text": m.content,
                            "function": m.call().map(|c| c.function)})
            })
            .collect();
        Ok(Json(json!({
            "blocks": w.store.blocks(a.record.id)?,
            "summary": summary,
            "queue": queue,
            "context": a.context_report()?,
            "working_context": a.working_text(),
            "recall_messages": w.store.message_count(a.record.id)?,
            "archival_passages": w.store.passage_count(a.record.id)?,
        })))
    })
    .await
}

/// A request body of one text: a block's new value (`value`) or a passage (`text`).
#[derive(Deserialize)]
pub struct TextBody {
    #[serde(alias = "value")]
    pub text: String,
}

pub async fn set_block(
    State(s): State<AppState>,
    Path((name, label)): Path<(String, String)>,
    Json(req): Json<TextBody>,
) -> ApiResult<Json<Value>> {
    call(&s, move |w| {
        let a = w.store.agent(&name)?;
        let old = w.store.block(a.id, &label)?;
        let b = w.store.set_block(a.id, &label, &req.text, old.limit)?;
        Ok(Json(serde_json::to_value(b).unwrap_or_default()))
    })
    .await
}

#[derive(Deserialize)]
pub struct SendMessage {
    pub message: String,
    #[serde(default)]
    pub stream: bool,
}

/// A user turn: the whole result as JSON, or its events as server-sent events (`stream: true`).
pub async fn send_message(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<SendMessage>,
) -> ApiResult<Response> {
    let mut rx = start_turn(&s, name, req.message)?;
    if req.stream {
        let events = UnboundedReceiverStream::new(rx).map(|e| {
            Ok::<_, std::convert::Infallible>(Event::default().data(serde_json::to_string(&e).unwrap_or_default()))
        });
        return Ok(Sse::new(events).into_response());
    }
    while let Some(e) = rx.recv().await {
        match e {
            TurnEvent::Done { turn } => return Ok(Json(*turn).into_response()),
            TurnEvent::Error { message } => return Err(ApiError::new(StatusCode::BAD_REQUEST, message)),
            _ => {}
        }
    }
    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the turn was abandoned"))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub page: usize,
    pub from: Option<String>,
    pub to: Option<String>,
}

pub async fn recall(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<Value>> {
    call(&s, move |w| {
        let a = w.store.agent(&name)?;
        let from = q.from.as_deref().map(crate::memory::parse_date).transpose()?;
        let to = q.to.as_deref().map(crate::memory::parse_date).transpose()?;
        let query = Some(q.query.as_str()).filter(|t| !t.trim().is_empty());
        let r = w.store.recall_query(a.id, query, from, to, q.page, crate::tools::PAGE_SIZE)?;
        Ok(Json(serde_json::to_value(r).unwrap_or_default()))
    })
    .await
}

pub async fn archival_search(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<Value>> {
    call(&s, move |w| {
        let (a, v) = (w.store.agent(&name)?, w.embed(&q.query)?);
        let r = w.store.archival_search(a.id, &a.embedding_model, &v, q.page, crate::tools::PAGE_SIZE, None)?;
        Ok(Json(serde_json::to_value(r).unwrap_or_default()))
    })
    .await
}

pub async fn archival_insert(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<TextBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    call(&s, move |w| {
        let (a, vector) = (w.store.agent(&name)?, w.embed(&req.text)?);
        let p = NewPassage { text: req.text, source: "user".into(), span: String::new(), metadata: json!({}), vector };
        let p = w.store.archival_insert(a.id, &a.embedding_model, p)?;
        Ok((StatusCode::CREATED, Json(serde_json::to_value(p).unwrap_or_default())))
    })
    .await
}

#[derive(Deserialize)]
pub struct UploadQuery {
    /// The file's name (its extension picks the reader: .txt, .md, .html, .pdf, .json, .jsonl).
    pub name: String,
    /// Answer with server-sent events of the load's progress, then the report.
    #[serde(default)]
    pub stream: bool,
}

/// A load's progress as events (`start`, `progress` at most once per percent, `committed`).
struct LoadEvents {
    tx: mpsc::UnboundedSender<Value>,
    total: u64,
    percent: u64,
}

impl crate::ingest::Progress for LoadEvents {
    fn start(&mut self, files: usize, bytes: u64) {
        self.total = bytes;
        let _ = self.tx.send(json!({"event": "start", "files": files, "bytes": bytes}));
    }
    fn update(&mut self, bytes_done: u64, report: &crate::ingest::LoadReport) {
        let percent = (bytes_done * 100).checked_div(self.total).unwrap_or(100);
        if percent != self.percent {
            self.percent = percent;
            let _ = self.tx.send(json!({"event": "progress", "bytes_done": bytes_done, "bytes": self.total,
                                         "chunks": report.chunks}));
        }
    }
    fn committed(&mut self, path: &str, chunks: u64) {
        let _ = self.tx.send(json!({"event": "committed", "path": path, "chunks": chunks}));
    }
}

/// Upload one document (the raw bytes as the body, its name in `?name=`) and load it into the
/// agent's archival storage, as `pagemind load` does; answers with the load report, or with
/// `?stream=true` its progress as server-sent events ending with `done` (the report) or
/// `error`. The file is kept under `<home>/uploads/<agent>/`, so loading it again adds nothing.
pub async fn upload(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<UploadQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let file = std::path::Path::new(&q.name)
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .filter(|f| !f.starts_with('.'))
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "name: give a file name such as notes.md"))?;
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let events = tx.clone();
    let done = submit(&s, move |w| {
        let e = w.embedder.ok_or_else(|| Error::Memory("no embedding model is loaded".into()))?;
        let rec = crate::ingest::make_document_agent(w.store, &name)?;
        let dir = w.store.path().with_file_name("uploads").join(&rec.name);
        std::fs::create_dir_all(&dir).map_err(|err| Error::file(&dir, err))?;
        let path = dir.join(&file);
        std::fs::write(&path, &body).map_err(|err| Error::file(&path, err))?;
        let opts = crate::ingest::LoadOptions::default();
        let mut progress = LoadEvents { tx: events, total: 0, percent: u64::MAX };
        let r = crate::ingest::load(w.store, e, &rec, &[path], &opts, &mut progress)?;
        Ok(serde_json::to_value(r).unwrap_or_default())
    })?;
    let done = answer(done);
    if !q.stream {
        return Ok(Json(done.await?).into_response());
    }
    tokio::spawn(async move {
        let end = match done.await {
            Ok(report) => json!({"event": "done", "report": report}),
            Err(e) => json!({"event": "error", "message": e.message}),
        };
        let _ = tx.send(end);
    });
    // The stream ends when the job's sender and the one above are both gone.
    let events = UnboundedReceiverStream::new(rx)
        .map(|v| Ok::<_, std::convert::Infallible>(Event::default().data(v.to_string())));
    Ok(Sse::new(events).into_response())
}

pub async fn sources(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    call(&s, move |w| {
        let a = w.store.agent(&name)?;
        Ok(Json(json!({ "sources": w.store.sources(a.id)? })))
    })
    .await
}

#[derive(Deserialize)]
pub struct SourcePath {
    pub path: String,
}

pub async fn remove_source(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<SourcePath>,
) -> ApiResult<Json<Value>> {
    call(&s, move |w| {
        let a = w.store.agent(&name)?;
        if w.store.source(a.id, q.path.as_bytes())?.is_none() {
            return Err(Error::Invalid(format!("'{}' is not a source of agent '{name}'", q.path)));
        }
        let n = w.store.source_remove(a.id, &a.embedding_model, q.path.as_bytes())?;
        w.store.save_indexes()?;
        Ok(Json(json!({"removed": q.path, "passages": n})))
    })
    .await
}

pub async fn export(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    call(&s, move |w| Ok(Json(serde_json::to_value(crate::agent::export_agent(w.store, &name)?).unwrap_or_default())))
        .await
}

#[derive(Deserialize)]
pub struct ImportQuery {
    /// Import under this name instead of the exported one.
    pub name: Option<String>,
}

pub async fn import(
    State(s): State<AppState>,
    Query(q): Query<ImportQuery>,
    Json(ex): Json<crate::agent::AgentExport>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    call(&s, move |w| {
        let rec = crate::agent::import_agent(w.store, &ex, q.name.as_deref())?;
        Ok((StatusCode::CREATED, Json(serde_json::to_value(rec).unwrap_or_default())))
    })
    .await
}
