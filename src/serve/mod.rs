/*! `pagemind serve`: one process that keeps the models loaded and each agent's session warm,
behind a local HTTP API.

- [`openai`]: `GET /v1/models`, `POST /v1/chat/completions` (JSON or server-sent events) for
  the loaded chat model or `agent:NAME`.
- [`completion`]: plain completions of the loaded model, with `tools` and `response_format`
  decoded under the grammar engine.
- [`api`]: the agent REST API under `/api/agents` (create, list, delete, turns, core memory,
  recall and archival search, context use).
- `GET /`: a page (embedded, no network) with the chat and the memory tiers side by side.
- [`mcp`]: `pagemind mcp`, one agent as a Model Context Protocol server on stdio (same model
  thread, no HTTP).
- [`worker`]: the model thread that runs every job, one at a time, from a bounded queue.

Loopback by default; any other address requires a bearer token (`--token-file`). Bodies are
capped at [`BODY_LIMIT`]. Ctrl-C or SIGTERM stops accepting, lets running requests finish
(a turn commits each message before it is shown), then saves the indexes.
*/

pub mod api;
pub mod completion;
pub mod mcp;
pub mod openai;
pub mod worker;

use crate::embed::Embedder;
use crate::memory::MemoryStore;
use crate::runtime::ChatModel;
use crate::{Error, Result};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Largest request body accepted (a chat request with a long history fits easily).
pub const BODY_LIMIT: usize = 4 << 20;

/// Largest uploaded document or imported agent.
pub const UPLOAD_LIMIT: usize = 256 << 20;

/// Jobs waiting for the model thread, at most, before requests are refused with 503.
pub const DEFAULT_QUEUE: usize = 16;

/// Seconds a request may take until its response starts, by default (a streamed response then
/// runs as long as it streams).
pub const DEFAULT_TIMEOUT_S: u64 = 600;

const PAGE: &str = include_str!("page.html");

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub jobs: mpsc::Sender<worker::Job>,
    pub queue_capacity: usize,
    /// The loaded chat model's id (what `/v1/models` lists and plain completions accept).
    pub chat_model: String,
    /// The embedding model new agents get.
    pub embedding_model: String,
    token: Option<Arc<String>>,
    /// Time until a response starts (see [`DEFAULT_TIMEOUT_S`]).
    timeout: std::time::Duration,
}

/// How to serve.
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Required for a non-loopback address.
    pub token: Option<String>,
    pub queue: usize,
    pub chat_model: String,
    pub embedding_model: String,
    /// Seconds until a response starts, at most.
    pub timeout_s: u64,
}

impl ServeConfig {
    /// A non-loopback address needs a token (checked before any model is loaded).
    pub fn check(&self) -> Result<()> {
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(Error::Invalid(format!(
                "--listen {}: a non-loopback address needs a bearer token: pass --token-file FILE",
                self.listen
            )));
        }
        Ok(())
    }
}

/// The routes, with auth and the body limit.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/api/agents", get(api::list_agents).post(api::create_agent))
        .route("/api/agents/{name}", axum::routing::delete(api::delete_agent))
        .route("/api/agents/{name}/memory", get(api::memory))
        .route("/api/agents/{name}/blocks/{label}", put(api::set_block))
        .route("/api/agents/{name}/messages", post(api::send_message))
        .route("/api/agents/{name}/recall", get(api::recall))
        .route("/api/agents/{name}/archival", get(api::archival_search).post(api::archival_insert))
        .route("/api/agents/{name}/sources", get(api::sources).delete(api::remove_source))
        .route("/api/agents/{name}/documents", post(api::upload).layer(DefaultBodyLimit::max(UPLOAD_LIMIT)))
        .route("/api/agents/{name}/export", get(api::export))
        .route("/api/agents/import", post(api::import).layer(DefaultBodyLimit::max(UPLOAD_LIMIT)))
        .route_layer(middleware::from_fn_with_state(state.clone(), timeout))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .merge(api)
        .fallback(|| async { api::ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return api::ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer ...)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// A response that has not started after the timeout is answered with 504. A turn already
/// running is not stopped: it completes and is saved (its messages are in recall); a job still
/// waiting in the queue is dropped when its turn comes (see `api::submit`, `api::start_turn`).
async fn timeout(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(s.timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => api::ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no response within {} s (--timeout); a turn that had started still completes and is saved (read it back with recall), one still waiting in the queue was dropped (send it again)",
                s.timeout.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Serve until Ctrl-C or SIGTERM. `ready` is called with the bound address (port 0 picks one).
pub fn run(
    cfg: ServeConfig,
    store: MemoryStore,
    model: ChatModel,
    embedder: Option<Embedder>,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    cfg.check()?;
    // The server lives as long as the process: the models and store are leaked to 'static so
    // the model thread can hold sessions that borrow them.
    let store: &'static MemoryStore = Box::leak(Box::new(store));
    let model: &'static ChatModel = Box::leak(Box::new(model));
    let embedder: Option<&'static Embedder> = embedder.map(|e| &*Box::leak(Box::new(e)));
    let (jobs, thread) = worker::spawn(store, model, embedder, cfg.queue);
    let state = AppState {
        jobs,
        queue_capacity: cfg.queue,
        chat_model: cfg.chat_model,
        embedding_model: cfg.embedding_model,
        token: cfg.token.map(Arc::new),
        timeout: std::time::Duration::from_secs(cfg.timeout_s.max(1)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| Error::Invalid(format!("--listen {}: {e}", cfg.listen)))?;
        ready(listener.local_addr()?);
        axum::serve(listener, router(state)).with_graceful_shutdown(shutdown()).await?;
        Ok::<_, Error>(())
    })?;
    // Every sender is gone with the router: the model thread drains and saves the indexes.
    let _ = thread.join();
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
