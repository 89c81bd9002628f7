//! `pagemind mcp`: the agent behind the Model Context Protocol, driven by the official Rust
//! SDK's own client over stdio.

use crate::util::*;
use pagemind::memory::MemoryStore;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::{json, Value};

fn text(r: &CallToolResult) -> String {
    serde_json::to_value(&r.content).unwrap().to_string()
}

#[test]
fn an_mcp_client_talks_to_the_agent_and_reads_and_edits_its_memory() {
    let home = home_with_models();
    let docs = tempfile::tempdir().unwrap();
    std::fs::write(docs.path().join("boiler.md"), "# Facility\n\nThe boiler room is on level B2 and opens at 7 am.\n")
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let std_cmd = pagemind(Some(home.path()));
        let mut cmd = tokio::process::Command::from(std_cmd);
        cmd.args(["mcp", "--agent", "mo", "--model", SMOLLM]);
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("pagemind mcp starts");
        let client = ().serve(transport).await.expect("MCP handshake");
        let info = client.peer_info().expect("server info");
        assert_eq!(info.server_info.as_ref().map(|i| i.name.as_str()), Some("pagemind"));

        let tools: Vec<String> =
            client.list_tools(None).await.unwrap().tools.iter().map(|t| t.name.to_string()).collect();
        for want in [
            "send_message",
            "search_recall",
            "search_archival",
            "insert_archival",
            "read_core_memory",
            "edit_core_memory",
            "load_file",
        ] {
            assert!(tools.iter().any(|t| t == want), "{want} missing from {tools:?}");
        }
        let call = |name: &'static str, args: Value| {
            let Value::Object(args) = args else { unreachable!() };
            let c = &client;
            async move { c.call_tool(CallToolRequestParams::new(name).with_arguments(args)).await }
        };

        // Core memory: edit a block, read it back.
        let r = call("edit_core_memory", json!({"label": "human", "value": "Name: Mo. Loves figs."})).await.unwrap();
        assert_ne!(r.is_error, Some(true), "{}", text(&r));
        let r = call("read_core_memory", json!({})).await.unwrap();
        assert!(text(&r).contains("Loves figs"), "{}", text(&r));

        // Archival memory: insert, then find by meaning; a loaded file is searchable too.
        let r = call("insert_archival", json!({"text": "The spare key is under the blue flower pot."})).await.unwrap();
        assert_ne!(r.is_error, Some(true), "{}", text(&r));
        let path = docs.path().join("boiler.md");
        let r = call("load_file", json!({"path": path.to_str().unwrap()})).await.unwrap();
        assert_ne!(r.is_error, Some(true), "{}", text(&r));
        let r = call("search_archival", json!({"query": "where is the spare key?"})).await.unwrap();
        assert!(text(&r).contains("blue flower pot"), "{}", text(&r));
        let r = call("search_archival", json!({"query": "When does the boiler room open?"})).await.unwrap();
        assert!(text(&r).contains("7 am"), "{}", text(&r));

        // A turn: the reply is what the agent sent; recall holds the user's message.
        let r = call("send_message", json!({"message": "Hello, I am Mo and I play the oboe."})).await.unwrap();
        assert_ne!(r.is_error, Some(true), "{}", text(&r));
        let turn = r.structured_content.clone().expect("structured result");
        assert!(!turn["reply"].as_str().unwrap().trim().is_empty(), "{turn}");
        let r = call("search_recall", json!({"query": "oboe"})).await.unwrap();
        assert!(text(&r).contains("I play the oboe"), "{}", text(&r));

        // Failures of the work are results the client's model can read; bad calls are errors.
        let r = call("edit_core_memory", json!({"label": "nope", "value": "x"})).await.unwrap();
        assert_eq!(r.is_error, Some(true));
        assert!(text(&r).contains("nope"), "{}", text(&r));
        assert!(call("search_archival", json!({})).await.is_err(), "a missing argument is a protocol error");
        assert!(call("format_disk", json!({})).await.is_err(), "an unknown tool is a protocol error");
        client.cancel().await.unwrap();
    });
    // The server ended with the connection; what it did is in the store.
    let s = MemoryStore::open(home.path()).unwrap();
    let a = s.agent("mo").unwrap();
    assert!(s.blocks(a.id).unwrap().iter().any(|b| b.value.contains("Loves figs")));
    let said: Vec<String> = s.messages(a.id).unwrap().iter().filter_map(pagemind::agent::user_text).collect();
    assert!(said.iter().any(|t| t.contains("oboe")), "{said:?}");
}
