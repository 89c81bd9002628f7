/*! Plain chat completions of the loaded model (`POST /v1/chat/completions` with the model's
own id): its chat template, OpenAI's sampling fields, `tools` and `response_format`, all through
the same grammar engine as the agent's steps.

- **`tools`**: the functions go to the template's own `tools` variable when it has one
  (Qwen2.5's writes the list and its `<tool_call>` convention), else into the system message
  ([`StepFormat::functions_prompt`]). `tool_choice: "required"` or a named function decodes a
  call under a [`StepGrammar::functions`] grammar, so the call always parses and matches its
  schema. `"auto"` (the default) lets the model write freely and switches to the grammar the
  moment it opens a call ([`StepFormat::call_opener`], what llama.cpp calls a lazy grammar);
  further calls may follow (`parallel_tool_calls`, at most [`MAX_CALLS`]). `"none"` is a plain
  reply.
- **`response_format`**: `json_object` or `json_schema` decodes under a [`JsonConstraint`].
- Earlier turns' `tool_calls` are written into the assistant message in the model's own call
  format; `tool` messages keep their role for the template (Qwen2.5's wraps them in
  `<tool_response>`).
*/

use super::api::{answer, submit, ApiError, ApiResult};
use super::openai::{chunk, now_s, sse, ChatRequest, OaMessage};
use super::AppState;
use crate::grammar::{decode_json, decode_step, Branch, JsonConstraint, StepFormat, StepGrammar};
use crate::runtime::{ChatMessage, ChatModel, Sampler, SamplerConfig, Session, TokenStream};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Default `max_tokens` of a plain completion.
const DEFAULT_MAX_TOKENS: usize = 512;

/// Most function calls in one reply.
pub const MAX_CALLS: usize = 8;

/// Largest context a plain completion gets (the model's own if smaller).
const MAX_CONTEXT: usize = 8192;

/// Which calls the reply may or must make.
#[derive(Debug, Clone, PartialEq)]
enum Choice {
    None,
    Auto,
    Required,
    Named(String),
}

/// A request message: role, text and (an assistant's) earlier calls.
struct Msg {
    role: &'static str,
    content: String,
    calls: Vec<(String, Value)>,
}

/// A validated request.
struct Plan {
    messages: Vec<Msg>,
    /// OpenAI function objects (`{"name", "description", "parameters"}`).
    functions: Vec<Value>,
    choice: Choice,
    parallel: bool,
    /// The JSON Schema of `response_format`, if it asks for JSON.
    schema: Option<Value>,
    max_tokens: usize,
    sampler: SamplerConfig,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

fn plan(req: &ChatRequest) -> ApiResult<Plan> {
    let tools = match &req.tools {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(bad("tools: must be an array of {\"type\": \"function\", \"function\": {...}}")),
    };
    let mut functions = vec![];
    for (i, t) in tools.iter().enumerate() {
        if t["type"] != "function" {
            return Err(bad(format!("tools[{i}].type: only \"function\" tools are supported")));
        }
        let f = &t["function"];
        if f["name"].as_str().is_none_or(str::is_empty) {
            return Err(bad(format!("tools[{i}].function.name: a function needs a name")));
        }
        if !(f["parameters"].is_null() || f["parameters"].is_object()) {
            return Err(bad(format!("tools[{i}].function.parameters: must be a JSON Schema object")));
        }
        functions.push(f.clone());
    }
    let names: Vec<&str> = functions.iter().filter_map(|f| f["name"].as_str()).collect();
    let choice = match &req.tool_choice {
        None | Some(Value::Null) => Choice::Auto,
        Some(Value::String(s)) if s == "auto" => Choice::Auto,
        Some(Value::String(s)) if s == "none" => Choice::None,
        Some(Value::String(s)) if s == "required" => Choice::Required,
        Some(v) if v["function"]["name"].is_string() => {
            let n = v["function"]["name"].as_str().unwrap_or_default();
            if !names.contains(&n) {
                return Err(bad(format!("tool_choice: no function named '{n}' in tools")));
            }
            Choice::Named(n.to_string())
        }
        Some(v) => {
            return Err(bad(format!(
                "tool_choice: {v} is not \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
            )))
        }
    };
    let choice = if functions.is_empty() {
        if matches!(choice, Choice::Required | Choice::Named(_)) {
            return Err(bad("tool_choice: asks for a call but tools is empty"));
        }
        Choice::None
    } else {
        choice
    };
    let schema = match &req.response_format {
        None | Some(Value::Null) => None,
        Some(f) => match f["type"].as_str() {
            Some("text") => None,
            Some("json_object") => Some(json!({"type": "object"})),
            Some("json_schema") => match &f["json_schema"]["schema"] {
                s @ Value::Object(_) => Some(s.clone()),
                _ => return Err(bad("response_format.json_schema.schema: a JSON Schema object is required")),
            },
            _ => return Err(bad("response_format.type: must be \"text\", \"json_object\" or \"json_schema\"")),
        },
    };
    if schema.is_some() && choice != Choice::None {
        return Err(bad("response_format: JSON output and tool calls cannot be combined; send tool_choice \"none\" or drop response_format"));
    }
    let mut messages = vec![];
    for (i, m) in req.messages.iter().enumerate() {
        messages.push(message(i, m)?);
    }
    let mut sampler = SamplerConfig::default();
    if let Some(t) = req.temperature {
        sampler.temperature = t.max(0.0);
    }
    if let Some(p) = req.top_p {
        sampler.top_p = p;
    }
    if let Some(seed) = req.seed {
        sampler.seed = seed;
    }
    Ok(Plan {
        messages,
        functions,
        choice,
        parallel: req.parallel_tool_calls.unwrap_or(true),
        schema,
        max_tokens: req.max_completion_tokens.or(req.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS),
        sampler,
    })
}

/// One request message as the template gets it; an assistant's `tool_calls` are rendered
/// later in the model's call format, so they are kept here as a marker-free JSON list.
fn message(i: usize, m: &OaMessage) -> ApiResult<Msg> {
    let role = match m.role.as_str() {
        "developer" | "system" => "system",
        "user" => "user",
        "assistant" => "assistant",
        "tool" => "tool",
        r => return Err(bad(format!("messages[{i}].role: '{r}' is not system, developer, user, assistant or tool"))),
    };
    let mut msg = Msg { role, content: m.text(), calls: vec![] };
    if let Some(calls) = m.tool_calls.as_ref().and_then(Value::as_array) {
        for (j, c) in calls.iter().enumerate() {
            let name = c["function"]["name"]
                .as_str()
                .ok_or_else(|| bad(format!("messages[{i}].tool_calls[{j}].function.name: missing")))?;
            let args: Value = match &c["function"]["arguments"] {
                Value::String(s) => serde_json::from_str(s)
                    .map_err(|e| bad(format!("messages[{i}].tool_calls[{j}].function.arguments: not JSON ({e})")))?,
                v @ Value::Object(_) => v.clone(),
                _ => json!({}),
            };
            msg.calls.push((name.to_string(), args));
        }
    }
    Ok(msg)
}

/// What the model thread sends back.
struct Reply {
    content: String,
    calls: Vec<(String, Value)>,
    prompt_tokens: usize,
    completion_tokens: usize,
    finish: &'static str,
}

/// Streamed pieces of a reply.
enum Piece {
    Text(String),
    Call(usize, String, Value),
}

/// Run a plain completion on the model thread; streamed piece by piece when asked.
pub async fn completion(s: &AppState, id: String, req: ChatRequest) -> ApiResult<Response> {
    let plan = plan(&req)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Piece>();
    let stream = req.stream;
    let done = answer(submit(s, move |w| run(w.model, plan, stream.then_some(tx)))?);
    let model = req.model.clone();
    if stream {
        let (otx, out) = mpsc::unbounded_channel();
        let _ = otx.send(chunk(&id, &model, json!({"role": "assistant", "content": ""}), None));
        tokio::spawn(async move {
            let (cid, m) = (id.clone(), model.clone());
            let o2 = otx.clone();
            let forward = async move {
                while let Some(p) = rx.recv().await {
                    let delta = match p {
                        Piece::Text(t) => json!({"content": t}),
                        Piece::Call(i, name, args) => json!({"tool_calls": [call_json(&cid, i, &name, &args, true)]}),
                    };
                    if o2.send(chunk(&cid, &m, delta, None)).is_err() {
                        break;
                    }
                }
            };
            let (r, _) = tokio::join!(done, forward);
            match r {
                Ok(reply) => {
                    let mut c = chunk(&id, &model, json!({}), Some(reply.finish));
                    c["usage"] = usage(&reply);
                    let _ = otx.send(c);
                }
                Err(e) => {
                    let _ = otx.send(json!({"error": {"message": e.message, "type": "server_error"}}));
                }
            }
        });
        return Ok(sse(out));
    }
    let reply = done.await?;
    let calls: Vec<Value> = reply.calls.iter().enumerate().map(|(i, (n, a))| call_json(&id, i, n, a, false)).collect();
    let mut message = json!({"role": "assistant", "content": reply.content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
        if reply.content.is_empty() {
            message["content"] = Value::Null;
        }
    }
    Ok(Json(json!({
        "id": id, "object": "chat.completion", "created": now_s(), "model": req.model,
        "choices": [{"index": 0, "finish_reason": reply.finish, "message": message}],
        "usage": usage(&reply),
    }))
    .into_response())
}

fn usage(r: &Reply) -> Value {
    json!({"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
           "total_tokens": r.prompt_tokens + r.completion_tokens})
}

/// One call as OpenAI writes it (`arguments` is a JSON string); `index` only in stream deltas.
fn call_json(id: &str, i: usize, name: &str, args: &Value, delta: bool) -> Value {
    let mut c = json!({"id": format!("call_{}_{i}", id.trim_start_matches("chatcmpl-")), "type": "function",
                       "function": {"name": name, "arguments": args.to_string()}});
    if delta {
        c["index"] = json!(i);
    }
    c
}

/// The prompt of `plan` for `model`: the template's own tool list when it has one.
fn prompt(model: &ChatModel, plan: &Plan, format: StepFormat) -> crate::Result<Vec<u32>> {
    let mut messages: Vec<ChatMessage> = plan
        .messages
        .iter()
        .map(|m| {
            let mut text = m.content.clone();
            for (name, args) in &m.calls {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&format.render_function(name, args));
            }
            ChatMessage::new(m.role, text)
        })
        .collect();
    let offered = plan.choice != Choice::None && !plan.functions.is_empty();
    let tools: Option<Value> = (offered && model.template.takes_tools())
        .then(|| Value::Array(plan.functions.iter().map(|f| json!({"type": "function", "function": f})).collect()));
    if offered && tools.is_none() {
        let required = plan.choice != Choice::Auto;
        let text = format.functions_prompt(&plan.functions, required);
        match messages.first_mut().filter(|m| m.role == "system") {
            Some(sys) => sys.content = format!("{}\n\n{text}", sys.content),
            None => messages.insert(0, ChatMessage::new("system", text)),
        }
    }
    let text = model.render_chat_with_tools(&messages, tools.as_ref(), true)?;
    model.tokenizer.encode_prompt(&text)
}

/// The reply of `plan` (on the model thread). Pieces go to `tx` as they are decoded.
fn run(model: &ChatModel, plan: Plan, tx: Option<mpsc::UnboundedSender<Piece>>) -> crate::Result<Reply> {
    let format = StepFormat::of(model);
    let prompt = prompt(model, &plan, format)?;
    let mut session = Session::new(model, model.weights.config.context_length.min(MAX_CONTEXT))?;
    let mut sampler = Sampler::new(plan.sampler.clone());
    let tk = model.tokenizer.clone();
    let send = |p: Piece| {
        if let Some(tx) = &tx {
            let _ = tx.send(p);
        }
    };
    let mut reply = Reply {
        content: String::new(),
        calls: vec![],
        prompt_tokens: prompt.len(),
        completion_tokens: 0,
        finish: "stop",
    };
    if let Some(schema) = &plan.schema {
        let c = JsonConstraint::new(model, schema)?;
        let mut ts = TokenStream::default();
        let out = decode_json(&c, &mut session, &prompt, &mut sampler, plan.max_tokens, |t| {
            if let Ok(Some(text)) = ts.push(&tk, t) {
                send(Piece::Text(text));
            }
        })?;
        reply.content = out.text;
        reply.completion_tokens = out.tokens.len();
        reply.finish = if out.complete { "stop" } else { "length" };
        return Ok(reply);
    }
    let branches: Vec<Branch> = plan
        .functions
        .iter()
        .filter(|f| match &plan.choice {
            Choice::Named(n) => f["name"] == n.as_str(),
            _ => true,
        })
        .map(|f| Branch {
            name: f["name"].as_str().unwrap_or_default().to_string(),
            arguments: if f["parameters"].is_object() { f["parameters"].clone() } else { json!({"type": "object"}) },
        })
        .collect();
    let grammar = match plan.choice {
        Choice::None => None,
        _ => Some(StepGrammar::functions(model, &branches, format)?),
    };
    let mut context = prompt.clone();
    // Free text first (unless a call is required); a call opener hands over to the grammar.
    let mut must_call = matches!(plan.choice, Choice::Required | Choice::Named(_));
    loop {
        let budget = plan.max_tokens.saturating_sub(reply.completion_tokens);
        if budget == 0 {
            reply.finish = "length";
            break;
        }
        if !must_call {
            // After a call, only a short look for another call's opener.
            let budget = if reply.calls.is_empty() { budget } else { budget.min(16) };
            let lazy = grammar.is_some();
            let free = free_text(model, &mut session, &context, &mut sampler, budget, lazy.then_some(format), |t| {
                if reply.calls.is_empty() {
                    send(Piece::Text(t.to_string()));
                }
            })?;
            reply.completion_tokens += free.tokens.len();
            context.extend(&free.tokens);
            if reply.calls.is_empty() {
                reply.content.push_str(&free.text);
            }
            if !free.opened_call {
                reply.finish = if free.stopped { "stop" } else { "length" };
                break;
            }
        }
        let Some(g) = &grammar else { break };
        let step = decode_step(g, &mut session, &context, &mut sampler, |_| {})?;
        reply.completion_tokens += step.tokens.len();
        context.extend(&step.tokens);
        send(Piece::Call(reply.calls.len(), step.call.function.clone(), step.call.arguments.clone()));
        reply.calls.push((step.call.function, step.call.arguments));
        reply.finish = "tool_calls";
        must_call = false;
        if !plan.parallel || reply.calls.len() >= MAX_CALLS {
            break;
        }
    }
    if !reply.calls.is_empty() {
        reply.finish = "tool_calls";
        reply.content = reply.content.trim().to_string();
    }
    Ok(reply)
}

/// Free text decoded by [`free_text`].
struct Free {
    text: String,
    /// Tokens to keep in the context (a call opener's tokens are not among them).
    tokens: Vec<u32>,
    /// Whether the model began a call (the grammar takes over from `tokens`).
    opened_call: bool,
    stopped: bool,
}

/// Decode free text; with `lazy`, stop where the model opens a call in that format (only at
/// the start of the reply for the bare-JSON format, whose opener `{` is common in prose).
fn free_text(
    model: &ChatModel,
    session: &mut Session,
    context: &[u32],
    sampler: &mut Sampler,
    max_tokens: usize,
    lazy: Option<StepFormat>,
    mut on_text: impl FnMut(&str),
) -> crate::Result<Free> {
    let tk = model.tokenizer.clone();
    let mut out: Vec<u32> = vec![];
    let mut ts = TokenStream::default();
    // The reply with control tokens written out, grown a piece at a time.
    let mut raw = TokenStream::keeping_special();
    let mut raw_text = String::new();
    let mut opened_at: Option<usize> = None;
    let mut held = String::new();
    let g = session.generate(context, sampler, max_tokens, None, |t| {
        out.push(t);
        if let Some(format) = lazy {
            if let Some(piece) = raw.push(&tk, t)? {
                raw_text.push_str(&piece);
            }
            let opener = opener(&raw_text, format);
            if let Opener::At(_) = opener {
                opened_at = Some(out.len() - 1);
                return Ok(false);
            }
            // Hold back text that may still become an opener.
            let undecided = opener == Opener::Maybe;
            if let Some(piece) = ts.push(&tk, t)? {
                held.push_str(&piece);
            }
            if !undecided && !held.is_empty() {
                on_text(&held);
                held.clear();
            }
        } else if let Some(piece) = ts.push(&tk, t)? {
            on_text(&piece);
        }
        Ok(true)
    })?;
    let stopped = g.stopped;
    match (opened_at, lazy) {
        (Some(_), Some(format)) => {
            // Keep the tokens before the opener; the text before it is the reply's content.
            let all = tk.decode(&out, false)?;
            let at = match opener(&all, format) {
                Opener::At(i) => i,
                _ => all.len(),
            };
            let before = &all[..at];
            let keep = trim_to_text(&tk, &out, before)?;
            Ok(Free { text: tk.decode(&keep, true)?, tokens: keep, opened_call: true, stopped })
        }
        _ => {
            if !held.is_empty() {
                on_text(&held);
            }
            Ok(Free { text: tk.decode(&out, true)?, tokens: out, opened_call: false, stopped })
        }
    }
}

/// Where free text stands with respect to a call opener.
#[derive(Debug, PartialEq)]
enum Opener {
    /// The opener begins at this byte.
    At(usize),
    /// Not yet: the text may still become one (hold it back from the stream).
    Maybe,
    /// Plain text so far.
    No,
}

/// How a Qwen2.5 reply may open a call, whitespace aside: its template's `<tool_call>`, or the
/// fenced JSON the coder models often write instead (llama.cpp's Hermes parser accepts both).
const QWEN_OPENERS: [&str; 2] = ["<tool_call>", "```json{\"name\""];

/// Whether `text` (the reply so far, control tokens written out) opens a call in `format`:
/// anywhere for Qwen2.5 ([`QWEN_OPENERS`]); for the bare-JSON format only a `{` before any
/// other text, since braces are common in prose.
fn opener(text: &str, format: StepFormat) -> Opener {
    match format {
        StepFormat::Qwen => {
            let mut maybe = false;
            for pattern in QWEN_OPENERS {
                match find_spaced(text, pattern) {
                    Opener::At(i) => return Opener::At(i),
                    Opener::Maybe => maybe = true,
                    Opener::No => {}
                }
            }
            if maybe {
                Opener::Maybe
            } else {
                Opener::No
            }
        }
        StepFormat::Json => {
            let t = text.trim_start();
            if t.starts_with(format.call_opener()) {
                Opener::At(text.len() - t.len())
            } else if t.is_empty() {
                Opener::Maybe
            } else {
                Opener::No
            }
        }
    }
}

/// The first place `pattern` occurs in `text`, allowing whitespace between its characters
/// (after the first); `Maybe` when `text` ends inside a possible occurrence.
fn find_spaced(text: &str, pattern: &str) -> Opener {
    let first = pattern.chars().next().unwrap_or(' ');
    let mut maybe = false;
    for (start, _) in text.match_indices(first) {
        let mut want = pattern.chars().skip(1).peekable();
        let mut rest = text[start + first.len_utf8()..].chars();
        loop {
            let Some(&w) = want.peek() else { return Opener::At(start) };
            match rest.next() {
                None => {
                    maybe = true;
                    break;
                }
                Some(c) if c == w => {
                    want.next();
                }
                Some(c) if c.is_whitespace() => {}
                Some(_) => break,
            }
        }
    }
    if maybe {
        Opener::Maybe
    } else {
        Opener::No
    }
}

/// The longest prefix of `tokens` whose text is a prefix of `text`.
fn trim_to_text(tk: &crate::runtime::GgufTokenizer, tokens: &[u32], text: &str) -> crate::Result<Vec<u32>> {
    let mut n = tokens.len();
    while n > 0 && !text.starts_with(tk.decode(&tokens[..n], false)?.as_str()) {
        n -= 1;
    }
    Ok(tokens[..n].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_opener_is_found_where_the_format_allows_it() {
        use Opener::*;
        let q = StepFormat::Qwen;
        assert_eq!(opener("Let me check.\n<tool_call>\n{", q), At(14));
        assert_eq!(opener("Let me check.\n<tool", q), Maybe);
        assert_eq!(opener("a < b", q), No);
        assert_eq!(opener("", q), No);
        assert_eq!(opener("```json\n{\n  \"name\": \"f\"", q), At(0));
        assert_eq!(opener("Here:\n```json\n{\n  \"na", q), Maybe);
        assert_eq!(opener("```json\n[1, 2]", q), No);
        assert_eq!(opener("```python\nprint(1)", q), No);
        let j = StepFormat::Json;
        assert_eq!(opener("  {\"function\"", j), At(2));
        assert_eq!(opener(" \n", j), Maybe);
        assert_eq!(opener("Sure: {\"a\": 1}", j), No);
    }

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn requests_are_checked_before_any_decoding() {
        let tool = json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}});
        let ok = plan(&req(json!({"model": "m", "messages": [], "tools": [tool], "tool_choice": "required"}))).unwrap();
        assert_eq!(ok.choice, Choice::Required);
        let named = json!({"type": "function", "function": {"name": "f"}});
        assert_eq!(
            plan(&req(json!({"model": "m", "messages": [], "tools": [tool], "tool_choice": named}))).unwrap().choice,
            Choice::Named("f".into())
        );
        // No tools: nothing to call, whatever the default choice.
        assert_eq!(plan(&req(json!({"model": "m", "messages": []}))).unwrap().choice, Choice::None);
        let cases = [
            (
                json!({"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
                "no function named 'g'",
            ),
            (json!({"tools": [{"type": "retrieval"}]}), "tools[0].type"),
            (json!({"tools": [{"type": "function", "function": {}}]}), "tools[0].function.name"),
            (json!({"tools": {"f": 1}}), "tools: must be an array"),
            (json!({"tool_choice": "required"}), "tools is empty"),
            (json!({"tool_choice": "sometimes", "tools": [tool]}), "tool_choice"),
            (json!({"response_format": {"type": "yaml"}}), "response_format.type"),
            (json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}), "json_schema.schema"),
            (json!({"response_format": {"type": "json_object"}, "tools": [tool]}), "cannot be combined"),
            (json!({"messages": [{"role": "robot", "content": "hi"}]}), "messages[0].role"),
            (
                json!({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]}),
                "not JSON",
            ),
        ];
        for (extra, want) in cases {
            let mut r = json!({"model": "m", "messages": []});
            for (k, v) in extra.as_object().unwrap() {
                r[k] = v.clone();
            }
            let e = plan(&req(r)).err().unwrap_or_else(|| panic!("accepted {extra}"));
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(want), "{extra}: {}", e.message);
        }
    }
}
