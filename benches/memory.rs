//! The memory tiers: durable append latency, archival HNSW at 100k x 384-d (synthetic vectors of
//! low intrinsic dimension, see `vectors`) (insert throughput,
//! search p50/p99, recall@10 against exact search, rebuild time), the same search while the
//! archive is still under `EXACT_BELOW` passages (brute force), and recall text search over
//! 100k messages. Prints one JSON object. `cargo bench --bench memory [-- --quick]`.

mod common;

use common::*;
use pagemind::memory::{MemoryStore, Message, MessageRole, NewPassage, EXACT_BELOW};
use serde_json::json;
use std::time::Instant;

const DIM: usize = 384;

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Unit vectors with low intrinsic dimension, like sentence embeddings: 32 latent factors
/// projected to 384 dimensions by one fixed random matrix (`seed` picks the points, not the
/// projection), plus a little isotropic noise.
fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    const LATENT: usize = 32;
    let mut p = Rng(0x2545F4914F6CDD1D);
    let proj: Vec<f32> = (0..DIM * LATENT).map(|_| p.f()).collect();
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let z: Vec<f32> = (0..LATENT).map(|_| rng.f()).collect();
            let v = (0..DIM)
                .map(|d| {
                    proj[d * LATENT..(d + 1) * LATENT].iter().zip(&z).map(|(a, b)| a * b).sum::<f32>() + 0.05 * rng.f()
                })
                .collect();
            normalize(v)
        })
        .collect()
}

fn main() {
    let quick = quick();
    let n_passages = if quick { 5_000 } else { 100_000 };
    let n_messages = if quick { 5_000 } else { 100_000 };
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::open(dir.path()).unwrap();
    let agent = store.create_agent("bench", "chat", "emb", "p", "h").unwrap();

    // 1. Durable append latency, one message per transaction.
    let mut lat: Vec<f64> = (0..500)
        .map(|i| {
            let m = Message::new(MessageRole::User, format!("message {i} about mangoes and the weather"));
            time_us(|| {
                store.append_message(agent.id, m).unwrap();
            })
        })
        .collect();
    let (append_p50, append_p99) = p50_p99(&mut lat);

    // 2. Archival: insert throughput in batches of 1000.
    let vecs = vectors(n_passages, 0x9E3779B97F4A7C15);
    // Search latency and recall@10 against exact (brute-force) search over the vectors of `ids`.
    let queries = vectors(200, 7);
    let measure = |ids: &[u64]| {
        let mut search_us = vec![];
        let mut hits = 0usize;
        for q in &queries {
            let mut got = vec![];
            search_us.push(time_us(|| {
                got = store.archival_search(agent.id, "emb", q, 0, 10, None).unwrap().items;
            }));
            let mut exact: Vec<(f32, u64)> =
                vecs.iter().zip(ids).map(|(v, &id)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), id)).collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            let truth: Vec<u64> = exact[..10].iter().map(|e| e.1).collect();
            hits += got.iter().filter(|s| truth.contains(&s.passage.id)).count();
        }
        let (p50, p99) = p50_p99(&mut search_us);
        (p50, p99, hits as f64 / (queries.len() * 10) as f64)
    };
    let mut small = None;
    let mut insert_pause = std::time::Duration::ZERO;
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n_passages);
    for (b, chunk) in vecs.chunks(1000).enumerate() {
        let items = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| NewPassage {
                text: format!("passage {} of batch {b}", i),
                source: "bench".into(),
                span: String::new(),
                metadata: json!({}),
                vector: v.clone(),
            })
            .collect();
        ids.extend(store.archival_insert_many(agent.id, "emb", items).unwrap().into_iter().map(|p| p.id));
        if ids.len() + 1000 >= EXACT_BELOW && small.is_none() {
            let t = Instant::now();
            small = Some((ids.len(), measure(&ids)));
            insert_pause += t.elapsed();
        }
    }
    store.save_indexes().unwrap();
    let insert_s = (t.elapsed() - insert_pause).as_secs_f64();

    let (search_p50, search_p99, recall_at_10) = measure(&ids);
    // Index rebuild from the stored vectors (index file deleted, store reopened).
    drop(store);
    for f in std::fs::read_dir(dir.path().join("index")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let store = MemoryStore::open(dir.path()).unwrap();
    let t = Instant::now();
    assert!(store.index_was_rebuilt(agent.id, "emb", DIM).unwrap());
    let rebuild_s = t.elapsed().as_secs_f64();

    // 3. Recall text search over n_messages messages (batched appends, then searches).
    let words = ["mango", "river", "ledger", "copper", "window", "meadow", "signal", "harbor"];
    for b in 0..n_messages / 1000 {
        let msgs = (0..1000)
            .map(|i| {
                let k = b * 1000 + i;
                let text = format!("message {k}: {} {} {}", words[k % 8], words[(k / 8) % 8], words[(k / 64) % 8]);
                Message::new(MessageRole::User, text)
            })
            .collect();
        store.append_messages(agent.id, msgs).unwrap();
    }
    let mut text_us = vec![];
    let mut total = 0;
    for q in ["mango river", "Copper", "no such words", "message 99"] {
        for _ in 0..5 {
            text_us.push(time_us(|| total = store.recall_search(agent.id, q, 0, 5).unwrap().total));
        }
    }
    let (text_p50, text_p99) = p50_p99(&mut text_us);

    let out = json!({
        "bench": "memory",
        "append_durable_us": {"p50": r2(append_p50), "p99": r2(append_p99), "count": 500},
        "archival": {
            "passages": n_passages, "dim": DIM,
            "insert_per_s": r2(n_passages as f64 / insert_s),
            "search_ms": {"p50": r2(search_p50 / 1e3), "p99": r2(search_p99 / 1e3)},
            "recall_at_10": (recall_at_10 * 1000.0).round() / 1000.0,
            "rebuild_s": r2(rebuild_s),
        },
        "archival_exact": small.map(|(n, (p50, p99, recall))| json!({
            "passages": n, "search_ms": {"p50": r2(p50 / 1e3), "p99": r2(p99 / 1e3)},
            "recall_at_10": (recall * 1000.0).round() / 1000.0,
        })),
        "recall_text_search_ms": {"messages": n_messages + 500, "p50": r2(text_p50 / 1e3), "p99": r2(text_p99 / 1e3)},
    });
    println!("{out}");
}
