//! The fuzz targets' corpora and every crash they found, replayed through the same library calls
//! as `fuzz/fuzz_targets/*` (so a fixed crash stays fixed without a nightly toolchain).
//! `write_fuzz_seeds` (ignored: run it by hand) writes the seed inputs into `fuzz/corpus/`.

use pagemind::ingest::extract::{extract, Kind};
use pagemind::runtime::synthetic::{tiny_gguf, TinyShape};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every committed input of `target`: its seed corpus and its regressions.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    for sub in ["corpus", "regressions"] {
        let d = fuzz_dir().join(sub).join(target);
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            out.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no committed inputs for fuzz target {target}");
    out
}

/// The first byte of a `documents` input that picks `kind`.
fn kind_byte(kind: Kind) -> u8 {
    Kind::ALL.iter().position(|k| *k == kind).unwrap() as u8
}

/// Each input runs in bounded time (the fuzzers' own limit is 10 s per input).
fn bounded(path: &Path, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    assert!(t.elapsed() < Duration::from_secs(10), "{}: took {:?}", path.display(), t.elapsed());
}

#[test]
fn gguf_inputs_load_or_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let mut loaded = 0;
    for (path, data) in inputs("gguf_model") {
        let p = d.path().join("m.gguf");
        std::fs::write(&p, &data).unwrap();
        bounded(&path, || {
            if let Ok(m) = pagemind::runtime::ChatModel::load(&p, &candle_core::Device::Cpu, None) {
                let msg = pagemind::runtime::ChatMessage::new("user", "hello <|im_end|> there");
                if let Ok((_, ids)) = m.chat_prompt(&[msg], true) {
                    let ids: Vec<u32> = ids.into_iter().take(8).collect();
                    let mut s = pagemind::runtime::Session::new(&m, 16).unwrap();
                    let _ = s.eval(&ids);
                }
                loaded += 1;
            }
        });
    }
    assert!(loaded >= 1, "the seed model loads");
}

#[test]
fn document_inputs_are_read_or_skipped_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    for (path, data) in inputs("documents").into_iter().chain(inputs("html").into_iter().map(|(p, b)| {
        let mut v = vec![kind_byte(Kind::Html)];
        v.extend(b);
        (p, v)
    })) {
        let Some((&k, body)) = data.split_first() else { continue };
        let kind = Kind::ALL[k as usize % Kind::ALL.len()];
        let p = d.path().join(format!("doc.{}", kind.extension()));
        std::fs::write(&p, body).unwrap();
        bounded(&path, || {
            let r = extract(
                &p,
                kind,
                &mut |s| {
                    let one_line = !s.text.chars().any(|c| c == '\n' || (c.is_control() && c != '\t'));
                    assert!(kind != Kind::Html || one_line, "{}: segment {:?}", path.display(), s.text);
                    true
                },
                &mut |_| {},
            );
            if let Err(skip) = r {
                assert!(!skip.0.is_empty(), "{}: a skip says why", path.display());
            }
        });
    }
}

#[test]
fn agent_import_inputs_import_whole_or_not_at_all() {
    let home = tempfile::tempdir().unwrap();
    let store = pagemind::memory::MemoryStore::open(home.path()).unwrap();
    for (i, (path, data)) in inputs("agent_import").into_iter().enumerate() {
        let Ok(ex) = serde_json::from_slice::<pagemind::agent::AgentExport>(&data) else { continue };
        let name = format!("fuzz-{i}");
        match pagemind::agent::import_agent(&store, &ex, Some(&name)) {
            Ok(rec) => store.delete_agent(&rec.name).unwrap(),
            Err(_) => assert!(store.agent(&name).is_err(), "{}: a failed import left an agent", path.display()),
        }
    }
}

#[test]
fn catalog_inputs_parse_or_fail_cleanly() {
    for (path, data) in inputs("models_toml") {
        let Ok(text) = std::str::from_utf8(&data) else { continue };
        if let Ok(c) = pagemind::store::Catalog::parse(text) {
            for id in c.defaults() {
                assert!(c.get(&id).is_some(), "{}: default {id} is in the catalog", path.display());
            }
        }
    }
}

#[test]
#[ignore = "writes the fuzz targets' seed inputs into fuzz/corpus/; run by hand"]
fn write_fuzz_seeds() {
    let put = |target: &str, name: &str, data: &[u8]| {
        let d = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), data).unwrap();
    };
    put("gguf_model", "tiny.gguf", &tiny_gguf(&TinyShape::default(), 1).unwrap());
    let with = |k: Kind, b: &[u8]| [&[kind_byte(k)][..], b].concat();
    put(
        "documents",
        "page.pdf",
        &with(Kind::Pdf, &crate::ingest::pdf(&["Page one: pumps.", "Page two (x) y."], false)),
    );
    put("documents", "locked.pdf", &with(Kind::Pdf, &crate::ingest::pdf(&["Top secret."], true)));
    put("documents", "doc.json", &with(Kind::Json, br#"{"a": ["x", {"b": "y\u00e9"}], "n": 1, "t": true}"#));
    put("documents", "doc.jsonl", &with(Kind::Jsonl, b"{\"m\": \"hello\"}\nnot json\n[\"a\", \"b\"]\n"));
    put("documents", "doc.md", &with(Kind::Markdown, "# Title\n\nSome *text* with `code`.\n- item\n".as_bytes()));
    put(
        "html",
        "page.html",
        b"<!doctype html><html><head><title>T</title><style>p{}</style><script>if (a < b) x();</script></head>\
          <body><p>One &amp; two &#233; &eacute;</p><br/><div>Three < four</div><pre>a\n b</pre><!-- c --></body></html>",
    );
    let home = tempfile::tempdir().unwrap();
    let store = pagemind::memory::MemoryStore::open(home.path()).unwrap();
    let a = store.create_agent("seed", "tiny", "pseudo", "A helpful assistant.", "").unwrap();
    store.core_append(a.id, "human", "Name: Ana.").unwrap();
    use pagemind::memory::{Message, MessageRole, NewPassage};
    store.append_message(a.id, Message::new(MessageRole::User, "My dog is Rex.")).unwrap();
    let v: Vec<f32> = (0..8).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
    let p = NewPassage {
        text: "Rex is three.".into(),
        source: "notes.txt".into(),
        span: "lines 1-1".into(),
        metadata: serde_json::json!({}),
        vector: v,
    };
    store.archival_insert(a.id, "pseudo", p).unwrap();
    let ex = pagemind::agent::export_agent(&store, "seed").unwrap();
    put("agent_import", "agent.json", &serde_json::to_vec(&ex).unwrap());
    put(
        "models_toml",
        "models.toml",
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("models.toml")).unwrap().as_slice(),
    );
}
