//! Every document kind `load` reads (PDF, JSON, JSONL, text, Markdown) on the same bytes, through
//! the real extractor: each file is read or skipped with a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagemind::ingest::extract::{extract, Kind};
use std::sync::OnceLock;

fn dir() -> &'static tempfile::TempDir {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the kind (an index into `Kind::ALL`), so one corpus covers them all.
    let Some((&k, body)) = data.split_first() else { return };
    let kind = Kind::ALL[k as usize % Kind::ALL.len()];
    let p = dir().path().join(format!("doc.{}", kind.extension()));
    std::fs::write(&p, body).expect("write");
    let mut n = 0usize;
    let _ = extract(&p, kind, &mut |_| { n += 1; true }, &mut |_| {});
});
