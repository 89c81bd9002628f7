//! `pagemind serve` over real HTTP on loopback, with the small model: the OpenAI-compatible
//! endpoints, the agent REST API, auth, the bounded queue under concurrent clients.

use crate::util::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

/// A running server, killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(home: &Path, extra: &[&str]) -> Server {
    let mut child = pagemind(Some(home))
        .args(["serve", "--listen", "127.0.0.1:0", "--model", SMOLLM])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    Server { child, base }
}

/// Method, path, optional JSON body and token: the status and the JSON (or text) body.
pub fn http(s: &Server, method: &str, path: &str, body: Option<Value>, token: Option<&str>) -> (u16, Value) {
    let mut r = ureq::request(method, &format!("{}{path}", s.base));
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => r.send_json(b),
        None => r.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[test]
fn serve_speaks_openai_and_the_agent_api() {
    let home = home_with_models();
    let s = serve(home.path(), &[]);
    let (st, models) = http(&s, "GET", "/v1/models", None, None);
    assert_eq!(st, 200);
    assert_eq!(models["data"][0]["id"], SMOLLM, "{models}");

    assert_eq!(http(&s, "POST", "/api/agents", Some(json!({"name": "ada"})), None).0, 201);
    let (st, dup) = http(&s, "POST", "/api/agents", Some(json!({"name": "ada"})), None);
    assert_eq!(st, 409, "{dup}");
    assert!(dup["error"]["message"].as_str().unwrap().contains("ada"));
    let ids: Vec<Value> = http(&s, "GET", "/v1/models", None, None).1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert!(ids.contains(&json!("agent:ada")), "{ids:?}");

    // An edited core-memory block is in the next prompt's context.
    let (st, _) =
        http(&s, "PUT", "/api/agents/ada/blocks/human", Some(json!({"value": "Name: Ada. Loves mangoes."})), None);
    assert_eq!(st, 200);
    let (_, mem) = http(&s, "GET", "/api/agents/ada/memory", None, None);
    assert!(mem["blocks"].to_string().contains("Loves mangoes"), "{mem}");
    assert!(mem["context"]["working_context"].as_u64().unwrap() > 0 && mem["context"]["window"] == 2048, "{mem}");

    // A turn through the OpenAI endpoint: the reply is what the agent sent, its steps ride along.
    let ask = |text: &str| json!({"model": "agent:ada", "messages": [{"role": "user", "content": text}]});
    let (st, r) = http(&s, "POST", "/v1/chat/completions", Some(ask("What fruit do I love?")), None);
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert!(!r["choices"][0]["message"]["content"].as_str().unwrap().is_empty(), "{r}");
    let steps = r["pagemind"]["steps"].as_array().unwrap();
    assert_eq!(steps.last().unwrap()["function"], "send_message");
    // The session stays warm: the next turn reuses the previous prompt's KV.
    let (_, r2) = http(&s, "POST", "/v1/chat/completions", Some(ask("Thanks!")), None);
    let first = &r2["pagemind"]["steps"][0];
    assert!(first["tokens_reused"].as_u64().unwrap() > first["tokens_evaluated"].as_u64().unwrap(), "{first}");

    // Streaming: chunks, then [DONE].
    let mut streamed = ask("Hello again");
    streamed["stream"] = json!(true);
    let (st, body) = http(&s, "POST", "/v1/chat/completions", Some(streamed), None);
    let body = body.as_str().unwrap().to_string();
    assert_eq!(st, 200);
    assert!(body.contains("chat.completion.chunk") && body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert!(body.contains("\"finish_reason\":\"stop\""), "{body}");

    // The REST turn, recall search sees what was said, and the queue holds every message.
    let (st, t) = http(&s, "POST", "/api/agents/ada/messages", Some(json!({"message": "I live in Lisbon."})), None);
    assert_eq!(st, 200, "{t}");
    assert!(!t["messages"].as_array().unwrap().is_empty());
    let (_, hits) = http(&s, "GET", "/api/agents/ada/recall?query=Lisbon", None, None);
    assert!(hits["items"].to_string().contains("I live in Lisbon."), "{hits}");

    // A plain completion with the model's template.
    let plain = json!({"model": SMOLLM, "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": "Say hello"}]});
    let (st, p) = http(&s, "POST", "/v1/chat/completions", Some(plain), None);
    assert_eq!(st, 200, "{p}");
    assert!(p["usage"]["completion_tokens"].as_u64().unwrap() <= 8);

    // Errors are JSON with a message.
    for (method, path, body, code) in [
        ("GET", "/api/agents/nobody/memory", None, 404),
        (
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": "agent:nobody", "messages": [{"role": "user", "content": "hi"}]})),
            400,
        ),
        ("POST", "/v1/chat/completions", Some(json!({"model": "gpt-4", "messages": []})), 404),
        (
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": SMOLLM, "messages": [], "tools": [], "tool_choice": "required"})),
            400,
        ),
        (
            "POST",
            "/v1/chat/completions",
            Some(
                json!({"model": SMOLLM, "messages": [], "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "integer", "minimum": "x"}}}}),
            ),
            400,
        ),
        (
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": "agent:ada", "messages": [{"role": "user", "content": "hi"}], "tools": []})),
            400,
        ),
        ("GET", "/no/such/thing", None, 404),
    ] {
        let (st, e) = http(&s, method, path, body, None);
        assert_eq!(st, code, "{path}: {e}");
        assert!(e["error"]["message"].is_string(), "{path}: {e}");
    }
    let (st, page) = http(&s, "GET", "/", None, None);
    assert_eq!(st, 200);
    assert!(page.as_str().unwrap().contains("Core memory"));
}

#[test]
fn plain_completions_call_tools_and_follow_a_json_schema() {
    let home = home_with_models();
    let s = serve(home.path(), &[]);
    let weather = json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}});
    let time = json!({"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]}}});
    let ask = |extra: Value| {
        let mut r = json!({"model": SMOLLM, "temperature": 0, "max_tokens": 64,
                           "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                           "tools": [weather, time]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        let (st, r) = http(&s, "POST", "/v1/chat/completions", Some(r), None);
        assert_eq!(st, 200, "{r}");
        r
    };
    // A required call: the grammar makes it parse and match its schema, whatever the model.
    let r = ask(json!({"tool_choice": "required"}));
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{r}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
    let name = call["function"]["name"].as_str().unwrap();
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{call}");
    if name == "get_weather" {
        assert!(["celsius", "fahrenheit"].contains(&args["unit"].as_str().unwrap()), "{call}");
    } else {
        assert_eq!(name, "get_time", "{call}");
    }
    // A named function is the one called.
    let named = json!({"tool_choice": {"type": "function", "function": {"name": "get_time"}}});
    let r = ask(named.clone());
    assert_eq!(r["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_time", "{r}");
    // Streamed: the call arrives as a tool_calls delta, then finish_reason tool_calls.
    let mut streamed = named;
    streamed["stream"] = json!(true);
    let body = ask(streamed).as_str().unwrap().to_string();
    assert!(body.contains("\"tool_calls\":[{") && body.contains("\"name\":\"get_time\""), "{body}");
    assert!(body.contains("\"finish_reason\":\"tool_calls\"") && body.trim_end().ends_with("data: [DONE]"), "{body}");
    // "auto": either a plain answer or well-formed calls.
    let r = ask(json!({}));
    let m = &r["choices"][0]["message"];
    match m["tool_calls"].as_array() {
        Some(calls) => {
            assert_eq!(r["choices"][0]["finish_reason"], "tool_calls", "{r}");
            for c in calls {
                serde_json::from_str::<Value>(c["function"]["arguments"].as_str().unwrap()).unwrap();
            }
        }
        None => assert!(!m["content"].as_str().unwrap().trim().is_empty(), "{r}"),
    }
    // An earlier call and its result in the history are accepted and rendered.
    let history = json!({"tool_choice": "none", "messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"}]});
    let r = ask(history);
    assert!(r["choices"][0]["message"]["tool_calls"].is_null(), "{r}");
    // response_format: the reply is JSON of the schema.
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                        "age": {"type": "integer", "minimum": 0, "maximum": 150}}, "required": ["name", "age"],
                        "additionalProperties": false});
    let (st, r) = http(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": SMOLLM, "temperature": 0, "max_tokens": 48,
        "messages": [{"role": "user", "content": "Invent a person."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}})),
        None,
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop", "{r}");
    let person: Value = serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(person["name"].is_string() && person["age"].is_u64() && person.as_object().unwrap().len() == 2, "{person}");
    let (st, r) = http(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": SMOLLM, "max_tokens": 48,
        "messages": [{"role": "user", "content": "Reply in JSON."}], "response_format": {"type": "json_object"}})),
        None,
    );
    assert_eq!(st, 200, "{r}");
    let content = r["choices"][0]["message"]["content"].as_str().unwrap();
    if r["choices"][0]["finish_reason"] == "stop" {
        assert!(serde_json::from_str::<Value>(content).unwrap().is_object(), "{content}");
    } else {
        assert!(content.starts_with('{'), "{content}");
    }
}

/// `--timeout`: a response that has not started in time is a JSON 504; the turn that was
/// running still completes and is saved, one that was still queued behind it is dropped.
#[test]
fn a_request_past_the_timeout_gets_504_and_its_turn_is_still_saved() {
    let home = home_with_models();
    let s = serve(home.path(), &["--timeout", "1"]);
    assert_eq!(http(&s, "POST", "/api/agents", Some(json!({"name": "slow"})), None).0, 201);
    let t0 = std::time::Instant::now();
    let queued = std::thread::scope(|sc| {
        let second = sc.spawn(|| {
            // Sent while the first turn runs: it waits in the queue past its timeout.
            std::thread::sleep(std::time::Duration::from_millis(200));
            http(&s, "POST", "/api/agents/slow/messages", Some(json!({"message": "My bike code is 9931."})), None)
        });
        let first =
            http(&s, "POST", "/api/agents/slow/messages", Some(json!({"message": "My locker number is 4417."})), None);
        (first, second.join().unwrap())
    });
    let ((st, e), (st2, e2)) = queued;
    assert_eq!(st2, 504, "{e2}");
    assert_eq!(st, 504, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("--timeout"), "{e}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "answered at the timeout, not at the turn's end");
    // (SmolLM2 may take every step of the turn: up to a few minutes on a loaded CI core.)
    let saved = (0..480).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (st, hits) = http(&s, "GET", "/api/agents/slow/recall?query=4417", None, None);
        st == 200 && hits["items"].to_string().contains("My locker number is 4417.")
    });
    assert!(saved, "the turn was not saved after its request timed out");
    // Any request now runs after the queued turn's slot: that turn was dropped, not run.
    assert_eq!(http(&s, "GET", "/api/agents", None, None).0, 200);
    let (_, hits) = http(&s, "GET", "/api/agents/slow/recall?query=9931", None, None);
    assert!(!hits["items"].to_string().contains("9931"), "a turn whose request timed out in the queue ran: {hits}");
}

#[test]
fn serve_needs_a_token_off_loopback_and_checks_it() {
    let home = home_with_models();
    let out = run(pagemind(Some(home.path())).args(["serve", "--listen", "0.0.0.0:0"]));
    assert_clean_error(&out, "--token-file");
    let tf = home.path().join("token");
    std::fs::write(&tf, "s3cret\n").unwrap();
    let s = serve(home.path(), &["--token-file", tf.to_str().unwrap()]);
    let (st, e) = http(&s, "GET", "/api/agents", None, None);
    assert_eq!(st, 401, "{e}");
    assert_eq!(http(&s, "GET", "/api/agents", None, Some("wrong")).0, 401);
    assert_eq!(http(&s, "GET", "/api/agents", None, Some("s3cret")).0, 200);
}

#[test]
fn concurrent_clients_are_answered_or_refused_and_no_message_is_lost() {
    let home = home_with_models();
    let s = serve(home.path(), &["--queue", "2"]);
    for a in ["a1", "a2"] {
        assert_eq!(http(&s, "POST", "/api/agents", Some(json!({"name": a})), None).0, 201);
    }
    // Six clients at once on two agents with room for two waiting jobs: each is answered (200)
    // or refused at once (503), never dropped.
    let results: Vec<(String, String, u16)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    let agent = if i % 2 == 0 { "a1" } else { "a2" };
                    let msg = format!("Client {i} says hello.");
                    let (st, r) =
                        http(s, "POST", &format!("/api/agents/{agent}/messages"), Some(json!({"message": msg})), None);
                    assert!(
                        st == 200 || (st == 503 && r["error"]["message"].as_str().unwrap().contains("busy")),
                        "{st}: {r}"
                    );
                    (agent.to_string(), msg, st)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok_count = results.iter().filter(|r| r.2 == 200).count();
    assert!(ok_count >= 1 && results.iter().any(|r| r.2 == 503), "{results:?}");
    // Recall holds exactly the messages that were answered, once each.
    for a in ["a1", "a2"] {
        let (_, r) = http(&s, "GET", &format!("/api/agents/{a}/recall?query=Client"), None, None);
        let mut said: Vec<String> = r["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "user")
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect();
        said.sort();
        let mut want: Vec<String> = results.iter().filter(|r| r.0 == a && r.2 == 200).map(|r| r.1.clone()).collect();
        want.sort();
        let got: Vec<bool> = want.iter().map(|w| said.iter().any(|s| s.contains(w.as_str()))).collect();
        assert!(got.iter().all(|x| *x), "{a}: answered {want:?}, recall has {said:?}");
        assert_eq!(said.len(), want.len(), "{a}: no refused message was stored: {said:?}");
    }
}

/// The official OpenAI Python client against the server: models, a turn, a streamed turn, a
/// plain completion with a required tool call.
const OPENAI_CLIENT: &str = r#"
import json, sys
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
ids = [m.id for m in c.models.list().data]
r = c.chat.completions.create(model="agent:bob", messages=[{"role": "user", "content": "Hello, I am Bo."}])
model = [m for m in ids if not m.startswith("agent:")][0]
tool = {"type": "function", "function": {"name": "add", "description": "Add two numbers", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}
t = c.chat.completions.create(model=model, tools=[tool], tool_choice="required", max_tokens=32,
                              messages=[{"role": "user", "content": "What is 2 plus 3?"}])
call = t.choices[0].message.tool_calls[0].function
parts = [ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
    model="agent:bob", stream=True, messages=[{"role": "user", "content": "What is my name?"}]) if ch.choices]
print(json.dumps({"ids": ids, "reply": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
                  "streamed": "".join(parts), "call": call.name, "args": json.loads(call.arguments)}))
"#;

#[test]
fn the_official_openai_client_talks_to_an_agent() {
    let python = std::env::var("PAGEMIND_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"));
    let has_client =
        std::process::Command::new(&python).args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success());
    if !has_client {
        crate::util::skip(&format!(
            "no openai client at {} (run .ci/run, or set PAGEMIND_TEST_PYTHON)",
            python.display()
        ));
        return;
    }
    let home = home_with_models();
    let s = serve(home.path(), &[]);
    assert_eq!(http(&s, "POST", "/api/agents", Some(json!({"name": "bob"})), None).0, 201);
    let out = std::process::Command::new(&python).arg("-c").arg(OPENAI_CLIENT).arg(&s.base).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["ids"].as_array().unwrap().contains(&json!("agent:bob")), "{v}");
    assert!(!v["reply"].as_str().unwrap().is_empty() && v["finish"] == "stop", "{v}");
    assert!(!v["streamed"].as_str().unwrap().is_empty(), "{v}");
    assert!(v["call"] == "add" && v["args"]["a"].is_i64() && v["args"]["b"].is_i64(), "{v}");
}

#[test]
fn documents_upload_into_archival_memory_and_agents_export_and_import_over_http() {
    let home = home_with_models();
    let s = serve(home.path(), &[]);
    assert_eq!(http(&s, "POST", "/api/agents", Some(json!({"name": "docs"})), None).0, 201);
    let body = "# Pump manual\nThe pump pressure limit is 8 bar. The spare key is under the blue flowerpot.\n";
    let r = ureq::post(&format!("{}/api/agents/docs/documents?name=manual.md", s.base))
        .send_bytes(body.as_bytes())
        .unwrap();
    let report: Value = r.into_json().unwrap();
    assert_eq!(report["loaded"], 1, "{report}");
    let (_, src) = http(&s, "GET", "/api/agents/docs/sources", None, None);
    let path = src["sources"][0]["path"].as_str().unwrap().to_string();
    assert!(path.ends_with("manual.md") && src["sources"][0]["complete"] == true, "{src}");
    let (_, hits) = http(&s, "GET", "/api/agents/docs/archival?query=where%20is%20the%20spare%20key", None, None);
    assert!(hits["items"].to_string().contains("flowerpot"), "{hits}");
    // The same upload again adds nothing.
    let again: Value = ureq::post(&format!("{}/api/agents/docs/documents?name=manual.md", s.base))
        .send_bytes(body.as_bytes())
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(again["loaded"], 0, "{again}");
    // Streamed: progress events of the load, then the report.
    let big: String = (0..1000).map(|i| format!("Line {i}: the valve {i} opens at {} bar.\n", i % 9)).collect();
    let events = ureq::post(&format!("{}/api/agents/docs/documents?name=valves.txt&stream=true", s.base))
        .send_bytes(big.as_bytes())
        .unwrap()
        .into_string()
        .unwrap();
    let events: Vec<Value> =
        events.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"start"), "{kinds:?}");
    assert!(kinds.contains(&"progress") && kinds.contains(&"committed"), "{kinds:?}");
    let last = events.last().unwrap();
    assert!(last["event"] == "done" && last["report"]["loaded"] == 1, "{last}");
    let (st, e) = http(&s, "POST", "/api/agents/nobody/documents?name=a.txt&stream=true", Some(json!({})), None);
    assert_eq!(st, 200, "a streamed load answers at once; its failure is the last event");
    assert!(e.as_str().unwrap().contains("\"event\":\"error\""), "{e}");
    let (_, src) = http(&s, "GET", "/api/agents/docs/sources", None, None);

    // Export, import under another name: the same memory, sources included.
    let (st, ex) = http(&s, "GET", "/api/agents/docs/export", None, None);
    assert_eq!(st, 200);
    let (st, rec) = http(&s, "POST", "/api/agents/import?name=docs2", Some(ex), None);
    assert_eq!(st, 201, "{rec}");
    let (_, src2) = http(&s, "GET", "/api/agents/docs2/sources", None, None);
    assert_eq!(src2["sources"], src["sources"]);

    // Removing the source removes its passages.
    let (st, rm) =
        http(&s, "DELETE", &format!("/api/agents/docs/sources?path={}", path.replace('/', "%2F")), None, None);
    assert_eq!((st, rm["passages"].as_u64().map(|n| n > 0)), (200, Some(true)), "{rm}");
    let (_, hits) = http(&s, "GET", "/api/agents/docs/archival?query=spare%20key", None, None);
    assert!(!hits["items"].to_string().contains("flowerpot"), "{hits}");
    let (st, e) = http(&s, "POST", "/api/agents/docs/documents?name=..", Some(json!({})), None);
    assert_eq!(st, 400, "{e}");
}
