/*! `pagemind mcp --agent NAME`: one agent as a Model Context Protocol server on stdio, with the
official Rust SDK (`rmcp`), for editors and desktop assistants.

Tools ([`tools`]): `send_message` (a user turn; the reply is what the agent sent, its memory
operations alongside), `search_recall` (text and dates, paged), `search_archival` (by meaning,
paged), `insert_archival`, `read_core_memory`, `edit_core_memory` (replace one block) and
`load_file` (a document on this machine into archival memory, as `pagemind load` does). They
run on the same model thread as `pagemind serve` ([`super::worker`]), one at a time. A failure
of the work itself (no such block, an unreadable file) is a tool result with `isError`, which
the client's model can read; unknown tools and malformed arguments are protocol errors.
Stdout carries only the protocol; everything else goes to stderr.
*/

use super::api::{start_turn, TurnEvent};
use super::worker::{self, Job, Worker};
use super::AppState;
use crate::embed::Embedder;
use crate::memory::{MemoryStore, NewPassage};
use crate::runtime::ChatModel;
use crate::{Error, Result};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Tool calls waiting for the model thread, at most.
const QUEUE: usize = 8;

/// The tools, as MCP lists them.
pub fn tools() -> Vec<Tool> {
    let tool = |name: &'static str, description: &'static str, schema: Value| {
        let Value::Object(o) = schema else { unreachable!("tool schemas are objects") };
        Tool::new(name, description, Arc::new(o))
    };
    let string = |d: &str| json!({"type": "string", "description": d});
    let page = json!({"type": "integer", "minimum": 0, "description": "Result page, from 0"});
    vec![
        tool(
            "send_message",
            "Send a user message to the agent and get its reply (it may search or edit its memory first).",
            json!({"type": "object", "properties": {"message": string("The user's message")}, "required": ["message"]}),
        ),
        tool(
            "search_recall",
            "Search everything said in the conversation (recall storage) by text and/or dates.",
            json!({"type": "object", "properties": {
                "query": string("Words to find (empty: every message in the dates)"),
                "start_date": string("First day, YYYY-MM-DD"), "end_date": string("Last day, YYYY-MM-DD"),
                "page": page}}),
        ),
        tool(
            "search_archival",
            "Search the agent's archival memory (saved facts and loaded documents) by meaning.",
            json!({"type": "object", "properties": {"query": string("What to look for"), "page": page},
                   "required": ["query"]}),
        ),
        tool(
            "insert_archival",
            "Save a passage to the agent's archival memory.",
            json!({"type": "object", "properties": {"text": string("The passage")}, "required": ["text"]}),
        ),
        tool(
            "read_core_memory",
            "Read the agent's core memory blocks (always in its prompt).",
            json!({"type": "object", "properties": {}}),
        ),
        tool(
            "edit_core_memory",
            "Replace the whole value of one core memory block (e.g. human or persona).",
            json!({"type": "object", "properties": {"label": string("The block's label"), "value": string("Its new value")},
                   "required": ["label", "value"]}),
        ),
        tool(
            "load_file",
            "Load a document on this machine (txt, md, html, pdf, json, jsonl, or a folder) into archival memory.",
            json!({"type": "object", "properties": {"path": string("Absolute path of the file or folder")},
                   "required": ["path"]}),
        ),
    ]
}

/// The MCP server of one agent.
#[derive(Clone)]
pub struct AgentServer {
    state: AppState,
    agent: String,
}

/// A string argument.
fn arg<'a>(args: &'a JsonObject, key: &str) -> std::result::Result<&'a str, McpError> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::invalid_params(format!("argument '{key}' (a string) is required"), None))
}

/// An optional string argument.
fn opt<'a>(args: &'a JsonObject, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

fn page(args: &JsonObject) -> std::result::Result<usize, McpError> {
    match args.get("page") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .map(|p| p as usize)
            .ok_or_else(|| McpError::invalid_params("argument 'page' must be a whole number from 0", None)),
    }
}

/// A tool's result: its JSON as text (what every client shows) and as structured content.
fn done(v: Value) -> CallToolResult {
    let text = match &v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    if v.is_object() {
        r.structured_content = Some(v);
    }
    r
}

impl AgentServer {
    /// Run `f` on the model thread.
    async fn job<T: Send + 'static>(&self, f: impl FnOnce(&mut Worker) -> Result<T> + Send + 'static) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |w| {
            let _ = tx.send(f(w));
        });
        self.state.jobs.send(job).await.map_err(|_| Error::Invalid("the model thread has stopped".into()))?;
        rx.await.map_err(|_| Error::Invalid("the model thread has stopped".into()))?
    }

    async fn turn(&self, message: String) -> Result<Value> {
        let mut rx = start_turn(&self.state, self.agent.clone(), message).map_err(|e| Error::Invalid(e.message))?;
        let mut ops = vec![];
        while let Some(e) = rx.recv().await {
            match e {
                TurnEvent::MemoryOp { line } => ops.push(line),
                TurnEvent::Done { turn } => {
                    return Ok(json!({"reply": turn.messages.join("\n\n"), "messages": turn.messages,
                                     "memory_operations": ops, "steps": turn.steps.len(), "flushes": turn.flushes}))
                }
                TurnEvent::Error { message } => return Err(Error::Invalid(message)),
                _ => {}
            }
        }
        Err(Error::Invalid("the turn was abandoned".into()))
    }

    async fn call(&self, name: &str, args: JsonObject) -> std::result::Result<Result<Value>, McpError> {
        let agent = self.agent.clone();
        Ok(match name {
            "send_message" => {
                let message = arg(&args, "message")?.to_string();
                self.turn(message).await
            }
            "search_recall" => {
                let (query, from, to) = (
                    opt(&args, "query").map(String::from),
                    opt(&args, "start_date").map(String::from),
                    opt(&args, "end_date").map(String::from),
                );
                let page = page(&args)?;
                self.job(move |w| {
                    let a = w.store.agent(&agent)?;
                    let from = from.as_deref().map(crate::memory::parse_date).transpose()?;
                    let to = to.as_deref().map(crate::memory::parse_date).transpose()?;
                    let r = w.store.recall_query(a.id, query.as_deref(), from, to, page, crate::tools::PAGE_SIZE)?;
                    Ok(serde_json::to_value(r).unwrap_or_default())
                })
                .await
            }
            "search_archival" => {
                let (query, page) = (arg(&args, "query")?.to_string(), page(&args)?);
                self.job(move |w| {
                    let (a, v) = (w.store.agent(&agent)?, w.embed(&query)?);
                    let r =
                        w.store.archival_search(a.id, &a.embedding_model, &v, page, crate::tools::PAGE_SIZE, None)?;
                    Ok(serde_json::to_value(r).unwrap_or_default())
                })
                .await
            }
            "insert_archival" => {
                let text = arg(&args, "text")?.to_string();
                self.job(move |w| {
                    let (a, vector) = (w.store.agent(&agent)?, w.embed(&text)?);
                    let p = NewPassage { text, source: "mcp".into(), span: String::new(), metadata: json!({}), vector };
                    Ok(serde_json::to_value(w.store.archival_insert(a.id, &a.embedding_model, p)?).unwrap_or_default())
                })
                .await
            }
            "read_core_memory" => {
                self.job(move |w| {
                    let a = w.store.agent(&agent)?;
                    Ok(json!({"blocks": w.store.blocks(a.id)?}))
                })
                .await
            }
            "edit_core_memory" => {
                let (label, value) = (arg(&args, "label")?.to_string(), arg(&args, "value")?.to_string());
                self.job(move |w| {
                    let a = w.store.agent(&agent)?;
                    let old = w.store.block(a.id, &label)?;
                    Ok(serde_json::to_value(w.store.set_block(a.id, &label, &value, old.limit)?).unwrap_or_default())
                })
                .await
            }
            "load_file" => {
                let path = std::path::PathBuf::from(arg(&args, "path")?);
                self.job(move |w| {
                    let e = w.embedder.ok_or_else(|| Error::Memory("no embedding model is loaded".into()))?;
                    let rec = crate::ingest::make_document_agent(w.store, &agent)?;
                    let opts = crate::ingest::LoadOptions::default();
                    let r = crate::ingest::load(w.store, e, &rec, &[path], &opts, &mut crate::ingest::NoProgress)?;
                    Ok(serde_json::to_value(r).unwrap_or_default())
                })
                .await
            }
            other => {
                return Err(McpError::invalid_params(format!("no tool named '{other}' (tools/list names them)"), None))
            }
        })
    }
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pagemind", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "The pagemind agent '{}': a local MemGPT with core, recall and archival memory. \
                 send_message talks to it; the other tools read and edit its memory directly.",
                self.agent
            ))
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        Ok(match self.call(&request.name, args).await? {
            Ok(v) => done(v),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        }
        .into())
    }
}

/// Serve `agent` over stdin/stdout until the client closes the connection.
pub fn run(store: MemoryStore, model: ChatModel, embedder: Option<Embedder>, agent: &str) -> Result<()> {
    store.agent(agent)?; // a clear error before any protocol traffic
    let store: &'static MemoryStore = Box::leak(Box::new(store));
    let model: &'static ChatModel = Box::leak(Box::new(model));
    let embedder: Option<&'static Embedder> = embedder.map(|e| &*Box::leak(Box::new(e)));
    let (jobs, thread) = worker::spawn(store, model, embedder, QUEUE);
    let state = AppState {
        jobs,
        queue_capacity: QUEUE,
        chat_model: String::new(),
        embedding_model: String::new(),
        token: None,
        timeout: std::time::Duration::MAX,
    };
    let server = AgentServer { state, agent: agent.to_string() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let running = server
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| Error::Invalid(format!("MCP handshake on stdio: {e}")))?;
        running.waiting().await.map_err(|e| Error::Invalid(format!("MCP: {e}")))?;
        Ok::<_, Error>(())
    })?;
    drop(rt);
    let _ = thread.join(); // the model thread saves the indexes as it ends
    Ok(())
}
