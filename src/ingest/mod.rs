/*! Document ingestion for air-gapped QA: files and folders into archival storage.

[`load`] walks the given paths ([`walk::files`]), extracts text per kind ([`extract::Kind`]:
plain text, Markdown, HTML, PDF text layer, JSON/JSONL string fields), cuts it into overlapping
chunks of the embedding model's tokens ([`chunk::Chunker`]), embeds them in batches and commits
each batch together with the file's [`Source`] record in one transaction.

- **Idempotent**: a file whose sha256 and chunk settings match a complete record is skipped;
  a changed file's old passages are removed first.
- **Resumable**: a record that is not complete (interrupted by Ctrl-C or a kill) resumes after
  the chunks already committed; chunking is deterministic, so nothing is duplicated or lost.
- **Bounded memory**: text is streamed line by line; at most one batch of chunks is held.
- **Bad input never stops the run**: unreadable, binary, unsupported, encrypted or broken files
  are listed in [`LoadReport::skipped`] with the reason.

```no_run
# fn demo(store: &pagemind::memory::MemoryStore, e: &pagemind::embed::Embedder, agent: &pagemind::memory::AgentRecord) -> pagemind::Result<()> {
use pagemind::ingest::{load, LoadOptions, NoProgress};
let report = load(store, e, agent, &["docs/".into()], &LoadOptions::default(), &mut NoProgress)?;
println!("{} chunks from {} files", report.chunks, report.loaded);
# Ok(()) }
```
*/

pub mod chunk;
pub mod extract;
pub mod html;
pub mod pdf;
pub mod walk;

use crate::embed::Embedder;
use crate::memory::{now_ms, AgentRecord, MemoryStore, NewPassage, Source};
use crate::Result;
use chunk::{Chunk, Chunker};
use extract::Kind;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Chunk size in embedding tokens.
    pub chunk_tokens: usize,
    /// Tokens repeated from the end of the previous chunk.
    pub overlap: usize,
    /// Chunks embedded and committed together.
    pub batch: usize,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { chunk_tokens: 200, overlap: 40, batch: 32, include: vec![], exclude: vec![] }
    }
}

/// What a load did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LoadReport {
    /// Files found.
    pub files: usize,
    /// Files loaded (new, changed or resumed).
    pub loaded: usize,
    /// Of those, files whose older version was replaced.
    pub replaced: usize,
    /// Of those, files resumed after an interrupted load.
    pub resumed: usize,
    /// Files already loaded and unchanged.
    pub unchanged: usize,
    /// Files skipped, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Files loaded with a warning (lossy decoding, bad JSONL lines).
    pub warnings: Vec<(String, String)>,
    pub chunks: u64,
    pub tokens: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Whether the load stopped early (Ctrl-C); run it again to resume.
    pub interrupted: bool,
}

/// Progress callbacks for a UI.
pub trait Progress {
    /// Total bytes of the files to look at.
    fn start(&mut self, _files: usize, _bytes: u64) {}
    /// Bytes done so far (all files), and the report so far.
    fn update(&mut self, _bytes_done: u64, _report: &LoadReport) {}
    /// A batch of `path` committed; `chunks` of the file are now stored.
    fn committed(&mut self, _path: &str, _chunks: u64) {}
    /// Whether the user asked to stop.
    fn cancelled(&self) -> bool {
        false
    }
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Mark agent `name` as a document agent (each turn searches its documents first), as `load`
/// does before loading; returns its record.
pub fn make_document_agent(store: &MemoryStore, name: &str) -> Result<AgentRecord> {
    let mut rec = store.agent(name)?;
    if !rec.config.search_first {
        rec.config.search_first = true;
        store.update_agent(&rec)?;
    }
    Ok(rec)
}

/// Load `paths` into `agent`'s archival storage; see the module docs.
pub fn load(
    store: &MemoryStore,
    embedder: &Embedder,
    agent: &AgentRecord,
    paths: &[PathBuf],
    opts: &LoadOptions,
    progress: &mut dyn Progress,
) -> Result<LoadReport> {
    let t0 = std::time::Instant::now();
    let walked = walk::files(paths, &opts.include, &opts.exclude)?;
    let files = walked.files;
    let total: u64 = files.iter().map(|f| f.1).sum();
    let mut rep = LoadReport { files: files.len(), skipped: walked.errors, ..Default::default() };
    progress.start(files.len(), total);
    let mut done_before = 0u64;
    for (path, size) in &files {
        if progress.cancelled() {
            rep.interrupted = true;
            break;
        }
        let name = crate::memory::source_name(path);
        match load_file(store, embedder, agent, path, opts, &mut rep, progress, done_before) {
            Ok(()) => {}
            Err(FileError::Skip(why)) => rep.skipped.push((name, why)),
            Err(FileError::Fatal(e)) => return Err(e),
        }
        if rep.interrupted {
            break;
        }
        done_before += size;
        rep.seconds = t0.elapsed().as_secs_f64();
        progress.update(done_before, &rep);
    }
    store.save_indexes()?;
    rep.seconds = t0.elapsed().as_secs_f64();
    Ok(rep)
}

enum FileError {
    Skip(String),
    Fatal(crate::Error),
}

impl From<crate::Error> for FileError {
    fn from(e: crate::Error) -> Self {
        FileError::Fatal(e)
    }
}

#[allow(clippy::too_many_arguments)]
fn load_file(
    store: &MemoryStore,
    embedder: &Embedder,
    agent: &AgentRecord,
    path: &Path,
    opts: &LoadOptions,
    rep: &mut LoadReport,
    progress: &mut dyn Progress,
    done_before: u64,
) -> std::result::Result<(), FileError> {
    let mut rec = Source::for_path(path);
    let key = rec.key().to_vec();
    let name = rec.path.clone();
    let Some(kind) = Kind::of(path) else {
        return Err(FileError::Skip("unsupported file type".into()));
    };
    let sha = file_sha256(path).map_err(|e| FileError::Skip(format!("cannot read: {e}")))?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let model = &agent.embedding_model;
    let mut skip_chunks = 0u64;
    match store.source(agent.id, &key)? {
        Some(old) if old.sha256 == sha && old.chunk_tokens == opts.chunk_tokens && old.overlap == opts.overlap => {
            if old.complete {
                rep.unchanged += 1;
                return Ok(());
            }
            skip_chunks = old.chunks;
            rep.resumed += 1;
        }
        Some(_) => {
            store.source_remove(agent.id, model, &key)?;
            rep.replaced += 1;
        }
        None => {}
    }
    rec.sha256 = sha;
    rec.bytes = bytes;
    rec.kind = kind.as_str().into();
    rec.chunk_tokens = opts.chunk_tokens;
    rec.overlap = opts.overlap;
    rec.chunks = skip_chunks;
    rec.loaded_at = now_ms();
    let mut chunker = Chunker::new(opts.chunk_tokens, opts.overlap, kind.unit());
    let mut ready: Vec<Chunk> = vec![];
    let mut seen = 0u64; // chunks produced so far, committed or skipped
    let mut fatal: Option<crate::Error> = None;
    let mut stopped = false;
    let file_pos = std::cell::Cell::new(0u64);
    let commit = |ready: &mut Vec<Chunk>, rec: &mut Source, rep: &mut LoadReport, last: bool| -> Result<()> {
        let batch: Vec<Chunk> = std::mem::take(ready);
        let first = rec.chunks;
        let texts: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
        let vectors = embedder.embed(&texts)?;
        let items = batch
            .iter()
            .zip(vectors)
            .enumerate()
            .map(|(i, (c, v))| NewPassage {
                text: c.text.clone(),
                source: rec.path.clone(),
                span: c.span.clone(),
                metadata: serde_json::json!({
                    "chunk": first + i as u64,
                    "sha256": format!("{:x}", Sha256::digest(c.text.as_bytes())),
                    "kind": rec.kind,
                    "tokens": c.tokens,
                }),
                vector: v,
            })
            .collect();
        rec.chunks += batch.len() as u64;
        rec.complete = last;
        store.source_append(agent.id, model, rec, items)?;
        rep.chunks += batch.len() as u64;
        rep.tokens += batch.iter().map(|c| c.tokens as u64).sum::<u64>();
        Ok(())
    };
    let notes = extract::extract(
        path,
        kind,
        &mut |seg| {
            let spans = match embedder.token_spans(&seg.text) {
                Ok(s) => s,
                Err(e) => {
                    fatal = Some(e);
                    return false;
                }
            };
            let before = ready.len();
            chunker.push(seg, &spans, &mut ready);
            // Drop chunks an interrupted load already committed.
            let fresh = ready.len() - before;
            let already = (skip_chunks.saturating_sub(seen)).min(fresh as u64) as usize;
            ready.drain(before..before + already);
            seen += fresh as u64;
            if ready.len() >= opts.batch {
                if let Err(e) = commit(&mut ready, &mut rec, rep, false) {
                    fatal = Some(e);
                    return false;
                }
                progress.committed(&rec.path, rec.chunks);
                progress.update(done_before + file_pos.get(), rep);
                if progress.cancelled() {
                    stopped = true;
                    return false;
                }
            }
            true
        },
        &mut |p| file_pos.set(p),
    );
    if let Some(e) = fatal {
        return Err(FileError::Fatal(e));
    }
    let notes = notes.map_err(|s| FileError::Skip(s.0))?;
    if stopped {
        rep.interrupted = true;
        return Ok(());
    }
    let before = ready.len();
    chunker.finish(&mut ready);
    let fresh = ready.len() - before;
    let already = (skip_chunks.saturating_sub(seen)).min(fresh as u64) as usize;
    ready.drain(before..before + already);
    let mut warn = vec![];
    if notes.lossy {
        warn.push("not UTF-8: decoded lossily".to_string());
    }
    if notes.bad_records > 0 {
        warn.push(format!("{} lines that are not JSON skipped", notes.bad_records));
    }
    rec.note = warn.join("; ");
    if rec.chunks == 0 && ready.is_empty() {
        return Err(FileError::Skip("no text found".into()));
    }
    commit(&mut ready, &mut rec, rep, true)?;
    if !rec.note.is_empty() {
        rep.warnings.push((name, rec.note.clone()));
    }
    rep.loaded += 1;
    rep.bytes += bytes;
    Ok(())
}
