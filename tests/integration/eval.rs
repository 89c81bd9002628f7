//! `pagemind eval` end to end with the small default model on the synthetic fixtures in
//! `tests/fixtures/eval/` (each in its task's real format): the outputs are complete and
//! well-formed, `--resume` skips finished items, bad data is a one-line error.

use crate::util::{self, assert_clean_error, pagemind, run};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval").join(name)
}

/// Run `pagemind eval TASK ARGS --out OUT` on the default models, three steps a turn at most
/// (the small model searches until the limit); returns the JSONL records.
fn eval(home: &Path, out: &Path, task: &str, args: &[&str]) -> Vec<Value> {
    let stdout = util::ok(
        pagemind(Some(home))
            .arg("eval")
            .arg(task)
            .args(["--model", util::SMOLLM, "--max-steps", "3"])
            .args(args)
            .arg("--out")
            .arg(out),
    );
    assert!(stdout.contains(&format!("### {task}")), "the Markdown summary is printed: {stdout}");
    records(out, task)
}

fn records(out: &Path, task: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join(format!("{task}.jsonl"))).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every record has the documented fields, its scores are in [0, 1], and each item ran
/// through each variant exactly once.
fn check(recs: &[Value], task: &str, variants: &[&str], items: usize, metrics: &[&str]) {
    assert_eq!(recs.len(), items * variants.len(), "{recs:#?}");
    let mut seen = HashSet::new();
    for r in recs {
        assert_eq!(r["task"], task);
        let v = r["variant"].as_str().unwrap();
        assert!(variants.contains(&v), "unexpected variant {v}");
        assert!(seen.insert((v.to_string(), r["id"].as_str().unwrap().to_string())), "duplicate {r}");
        assert!(!r["input"].as_str().unwrap().is_empty());
        assert!(r["seconds"].as_f64().unwrap() > 0.0);
        assert!(r.get("error").is_none(), "item failed: {r}");
        for m in metrics {
            let x = r["scores"][m].as_f64().unwrap_or_else(|| panic!("no {m} in {r}"));
            assert!((0.0..=1.0).contains(&x), "{m} = {x}");
        }
        if v == "pagemind" {
            let steps = r["steps"].as_array().unwrap();
            assert!(!steps.is_empty(), "the agent's steps are recorded");
            assert!(steps.iter().all(|s| s["function"].is_string() && s["tokens_evaluated"].is_u64()));
        }
    }
}

fn summary(out: &Path, task: &str) -> Value {
    assert!(out.join(format!("{task}.md")).exists());
    serde_json::from_str(&std::fs::read_to_string(out.join(format!("{task}.summary.json"))).unwrap()).unwrap()
}

#[test]
fn conversation_runs_every_variant_and_resumes() {
    let home = util::home_with_models();
    let out = home.path().join("out");
    let data = fixture("locomo-mini.json");
    let args = ["--data", data.to_str().unwrap(), "--limit", "2", "--context-window", "1024"];
    let recs = eval(home.path(), &out, "conversation", &args);
    check(&recs, "conversation", &["pagemind", "full-context", "rag"], 2, &["f1", "rouge_l"]);
    // Every agent turn ends with a message to the user (possibly forced at the step limit).
    for r in recs.iter().filter(|r| r["variant"] == "pagemind") {
        let last = r["steps"].as_array().unwrap().last().unwrap();
        assert_eq!(last["function"], "send_message", "{r}");
        assert!(!r["answer"].as_str().unwrap().is_empty());
    }
    let s = summary(&out, "conversation");
    assert_eq!(s["results"]["pagemind"]["all"]["n"], 2.0);
    // Resuming skips what is done: no new records; a larger limit adds only the new items.
    let again = eval(home.path(), &out, "conversation", &[&args[..], &["--resume"]].concat());
    assert_eq!(again.len(), recs.len());
    let more = eval(
        home.path(),
        &out,
        "conversation",
        &[
            "--data",
            data.to_str().unwrap(),
            "--limit",
            "3",
            "--context-window",
            "1024",
            "--resume",
            "--baseline",
            "rag",
        ],
    );
    let new: Vec<&Value> = more.iter().skip(recs.len()).collect();
    assert!(new.len() == 2 && new.iter().all(|r| r["variant"] == "pagemind" || r["variant"] == "rag"), "{new:?}");
    // `--category` asks only the questions of those categories (the fixture has one adversarial).
    let only = home.path().join("only-5");
    let adv = eval(
        home.path(),
        &only,
        "conversation",
        &["--data", data.to_str().unwrap(), "--category", "5", "--no-agent", "--baseline", "full-context"],
    );
    assert_eq!(adv.len(), 1, "{adv:?}");
    assert_eq!(adv[0]["category"], "5");
}

#[test]
fn nested_kv_scores_exact_uuids_per_level() {
    let home = util::home_with_models();
    let out = home.path().join("out");
    let data = fixture("nested-kv/kv-retrieval-140_keys.jsonl");
    let recs =
        eval(home.path(), &out, "nested-kv", &["--data", data.to_str().unwrap(), "--limit", "2", "--levels", "0,1"]);
    check(&recs, "nested-kv", &["pagemind", "full-context"], 4, &["exact_match"]);
    // The gold is the UUID at the end of the chain (never shown to the model).
    for r in &recs {
        let gold = r["gold"].as_str().unwrap();
        assert_eq!(gold.len(), 36);
        assert!(!r["input"].as_str().unwrap().contains(gold));
    }
    let s = summary(&out, "nested-kv");
    assert!(s["results"]["pagemind"]["level 0"]["n"] == 2.0 && s["results"]["pagemind"]["level 1"]["n"] == 2.0);
}

#[test]
fn doc_qa_and_function_calling_run_on_their_formats() {
    let home = util::home_with_models();
    let out = home.path().join("out");
    let nq = fixture("nq-mini.jsonl");
    let recs =
        eval(home.path(), &out, "doc-qa", &["--data", nq.to_str().unwrap(), "--limit", "2", "--baseline", "top-1"]);
    check(&recs, "doc-qa", &["pagemind", "top-1"], 2, &["accuracy", "gold_retrieved"]);
    // The document agent searches first.
    for r in recs.iter().filter(|r| r["variant"] == "pagemind") {
        assert_eq!(r["steps"][0]["function"], "archival_memory_search");
    }
    let bfcl = fixture("bfcl-mini.json");
    let recs = eval(home.path(), &out, "function-calling", &["--data", bfcl.to_str().unwrap(), "--limit", "2"]);
    check(&recs, "function-calling", &["pagemind", "no-grammar"], 2, &["valid", "accuracy"]);
    // The grammar makes every call valid, whatever the model.
    for r in recs.iter().filter(|r| r["variant"] == "pagemind") {
        assert_eq!(r["scores"]["valid"], 1.0, "{r}");
    }
}

#[test]
fn bad_eval_input_is_a_one_line_error() {
    let home = util::home_with_models();
    let out = home.path().join("out");
    let missing = home.path().join("nope.json");
    let e = run(pagemind(Some(home.path()))
        .args(["eval", "conversation", "--model", util::SMOLLM, "--data"])
        .arg(&missing)
        .arg("--out")
        .arg(&out));
    assert_clean_error(&e, "nope.json");
    let bad = home.path().join("bad.json");
    std::fs::write(&bad, "{\"not\": \"a list\"}").unwrap();
    let e = run(pagemind(Some(home.path()))
        .args(["eval", "conversation", "--model", util::SMOLLM, "--data"])
        .arg(&bad)
        .arg("--out")
        .arg(&out));
    assert_clean_error(&e, "expected LoCoMo's format");
    let e = run(pagemind(Some(home.path())).args(["eval", "nested-kv", "--baseline", "rag", "--out"]).arg(&out));
    assert_clean_error(&e, "--baseline rag: nested-kv has the baselines full-context");
    let e = run(pagemind(Some(home.path())).args(["eval", "conversation", "--category", "1,7", "--out"]).arg(&out));
    assert_clean_error(&e, "--category: LoCoMo's categories go from 1 to 5");
    let e = run(pagemind(Some(home.path())).args(["eval", "nested-kv", "--category", "1", "--out"]).arg(&out));
    assert_clean_error(&e, "--category applies to the conversation task only");
    let lines = home.path().join("bad.jsonl");
    std::fs::write(&lines, "{\"question\": \"q\", \"answers\": [], \"ctxs\": [{\"text\": \"t\"}]}\nnot json\n")
        .unwrap();
    let e = run(pagemind(Some(home.path()))
        .args(["eval", "doc-qa", "--model", util::SMOLLM, "--data"])
        .arg(&lines)
        .arg("--out")
        .arg(&out));
    assert_clean_error(&e, "line 2: not JSON");
}
