//! End-to-end ingestion throughput (`pagemind::ingest::load`) on a generated folder of Markdown
//! and text files: MB/s and chunks/s, plus a re-load of the unchanged folder (hashing only).
//! `cargo bench --bench ingest [-- --quick]`.

mod common;

use common::*;
use pagemind::embed::Embedder;
use pagemind::ingest::{load, LoadOptions, NoProgress};
use pagemind::memory::MemoryStore;
use pagemind::store::{default_home, ModelStore};
use serde_json::json;

fn main() {
    let quick = quick();
    let store = ModelStore::new(default_home());
    let Ok(r) = store.resolve("all-minilm-l6-v2") else {
        eprintln!("skipped: all-minilm-l6-v2 is not installed (`pagemind models pull`)");
        return;
    };
    let e = Embedder::load(
        &r.file("model.safetensors"),
        &r.file("config.json"),
        &r.file("tokenizer.json"),
        256,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let docs = tempfile::tempdir().unwrap();
    let words = [
        "memory",
        "agent",
        "archival",
        "storage",
        "recall",
        "context",
        "window",
        "paging",
        "operating",
        "system",
        "virtual",
        "interrupt",
        "queue",
        "summary",
        "passage",
        "document",
        "question",
        "answer",
        "river",
        "copper",
    ];
    let mut rng = Rng(42);
    let (files, lines) = if quick { (4, 40) } else { (20, 200) };
    for f in 0..files {
        let text: String = (0..lines)
            .map(|_| {
                (0..14).map(|_| words[(rng.next_u64() % words.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
                    + ".\n"
            })
            .collect();
        let ext = if f % 2 == 0 { "md" } else { "txt" };
        std::fs::write(docs.path().join(format!("doc{f}.{ext}")), text).unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let mem = MemoryStore::open(home.path()).unwrap();
    let agent = mem.create_agent("bench", "chat", "all-minilm-l6-v2", "p", "h").unwrap();
    let opts = LoadOptions::default();
    let rep = load(&mem, &e, &agent, &[docs.path().to_path_buf()], &opts, &mut NoProgress).unwrap();
    let again = load(&mem, &e, &agent, &[docs.path().to_path_buf()], &opts, &mut NoProgress).unwrap();
    println!(
        "{}",
        json!({
            "bench": "ingest", "files": rep.files, "bytes": rep.bytes, "chunks": rep.chunks, "tokens": rep.tokens,
            "seconds": r2(rep.seconds),
            "mb_per_s": (rep.bytes as f64 / 1e6 / rep.seconds * 1000.0).round() / 1000.0,
            "chunks_per_s": r2(rep.chunks as f64 / rep.seconds),
            "tokens_per_s": r2(rep.tokens as f64 / rep.seconds),
            "reload_unchanged_s": (again.seconds * 1000.0).round() / 1000.0,
        })
    );
}
