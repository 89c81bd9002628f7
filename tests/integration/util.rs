//! Shared test helpers: the binary, the model store, loaded models, fixtures.

use pagemind::embed::Embedder;
use pagemind::runtime::ChatModel;
use pagemind::store::{default_home, ModelStore};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const SMOLLM: &str = "smollm2-135m-instruct-q4_1";
pub const QWEN: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m";
pub const MINILM: &str = "all-minilm-l6-v2";

/// The store the README's test command fills.
pub fn store() -> ModelStore {
    ModelStore::new(default_home())
}

/// A fixture file from `tests/fixtures`, parsed as JSON.
pub fn fixture(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// Path to an installed model's first file; panics with the pull command if it is missing.
pub fn model_path(id: &str) -> PathBuf {
    let r = store().resolve(id).unwrap_or_else(|e| panic!("{e} (the README's test command pulls the default models)"));
    r.paths[0].clone()
}

/// Whether a model is installed (for optional-model tests).
pub fn installed(id: &str) -> bool {
    let s = store();
    s.catalog().get(id).is_some_and(|m| s.is_installed(m))
}

fn load(id: &str) -> ChatModel {
    let s = store();
    let r = s.resolve(id).unwrap_or_else(|e| panic!("{e}"));
    ChatModel::load(&r.paths[0], &candle_core::Device::Cpu, r.spec.as_ref()).unwrap()
}

/// The default chat model, loaded once per test binary.
pub fn smollm() -> &'static ChatModel {
    static M: OnceLock<ChatModel> = OnceLock::new();
    M.get_or_init(|| load(SMOLLM))
}

/// The hermetic tier's chat model: a ~40 KB synthetic GGUF built in memory
/// (`runtime::synthetic`: byte-level tokenizer, ChatML template, random weights), for tests that
/// need a real tokenizer, template and KV cache but no sensible output. Needs no model file.
pub fn tiny() -> &'static ChatModel {
    static M: OnceLock<ChatModel> = OnceLock::new();
    M.get_or_init(|| {
        use pagemind::runtime::synthetic::{tiny_gguf, TinyShape};
        // Kept for the whole test binary: the model maps its file.
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let p = dir.path().join("tiny.gguf");
        std::fs::write(&p, tiny_gguf(&TinyShape::default(), 7).unwrap()).unwrap();
        ChatModel::load(&p, &candle_core::Device::Cpu, None).unwrap()
    })
}

/// The hermetic tier's embedder: a tiny random-weight BERT written to a temporary folder
/// (`embed::synthetic`: character vocabulary, 16-d vectors). Its vectors do not rank by
/// meaning; archival search still puts a passage holding the query verbatim first.
pub fn tiny_embedder() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        pagemind::embed::synthetic::write_tiny_bert(dir.path(), 11).unwrap();
        let p = |f: &str| dir.path().join(f);
        Embedder::load(&p("model.safetensors"), &p("config.json"), &p("tokenizer.json"), 256, &candle_core::Device::Cpu)
            .unwrap()
    })
}

/// Qwen2.5, loaded once, or `None` (and a note on stderr) when not installed. In CI (`CI` set)
/// a missing Qwen2.5 is a failure, not a skip: `.ci/run` installs it.
pub fn qwen() -> Option<&'static ChatModel> {
    static M: OnceLock<Option<ChatModel>> = OnceLock::new();
    M.get_or_init(|| {
        if installed(QWEN) {
            Some(load(QWEN))
        } else {
            skip(&format!("{QWEN} is not installed (run `pagemind models pull {QWEN}` to include it)"));
            None
        }
    })
    .as_ref()
}

/// Say loudly that a test skips a part for want of `what`: straight to the terminal, past the
/// test harness's output capture (which hides `eprintln!` of passing tests). In CI (`CI` set)
/// a skip is a failure: `.ci/run` installs everything the tests use.
pub fn skip(what: &str) {
    use std::io::Write;
    assert!(std::env::var_os("CI").is_none(), "{what}, but CI is set: .ci/run installs it");
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what}");
}

/// The default embedding model, loaded once.
pub fn minilm() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| load_minilm(Embedder::load))
}

/// MiniLM from the store through `load` (`Embedder::load`, or `Embedder::load_candle` for the
/// reference encoder), 256-token truncation, on the CPU.
pub fn load_minilm(load: EmbedderLoader) -> Embedder {
    let r = store().resolve(MINILM).unwrap_or_else(|e| panic!("{e}"));
    let (w, c, t) = (r.file("model.safetensors"), r.file("config.json"), r.file("tokenizer.json"));
    load(&w, &c, &t, 256, &candle_core::Device::Cpu).unwrap()
}

/// The signature of the `Embedder` constructors.
pub type EmbedderLoader =
    fn(&std::path::Path, &std::path::Path, &std::path::Path, usize, &candle_core::Device) -> pagemind::Result<Embedder>;

/// A Hugging Face cache (`$HF_HOME/hub`) holding MiniLM's files as links to the installed ones,
/// so a pull runs offline and fast.
pub fn hf_cache_with_minilm(root: &std::path::Path) {
    let repo = root.join("hub/models--sentence-transformers--all-MiniLM-L6-v2");
    let snap = repo.join("snapshots/0123abc");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abc").unwrap();
    let installed = model_path(MINILM);
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        std::os::unix::fs::symlink(installed.with_file_name(f), snap.join(f)).unwrap();
    }
}

/// The pagemind binary with `home` as its store.
pub fn pagemind(home: Option<&Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pagemind"));
    c.env_remove("PAGEMIND_HOME");
    if let Some(h) = home {
        c.arg("--home").arg(h);
    }
    // One thread each: tests run two at a time on two cores, and compute pools spin while they
    // wait, so more threads than cores starve each other.
    c.env("RAYON_NUM_THREADS", "1");
    c
}

/// Run and return the output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run pagemind")
}

/// Assert a command failed cleanly: non-zero exit, one error line naming `needle`, no panic.
pub fn assert_clean_error(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(lines[0].starts_with("pagemind: error: "), "{err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    err
}

/// A fresh store root whose `models/` is the default store's (so CLI runs find the models).
pub fn home_with_models() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let models = default_home().join("models");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&models, d.path().join("models")).unwrap();
    #[cfg(not(unix))]
    panic!("tests that run the CLI on real models need a Unix symlink to {}", models.display());
    d
}

/// Run, assert success, return stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {err}");
    assert!(!err.contains("panicked"), "{err}");
    String::from_utf8(out.stdout).unwrap()
}

/// Every message an agent sent with `send_message`, in order, as recall holds it.
pub fn sent_messages(s: &pagemind::memory::MemoryStore, agent: u64) -> Vec<String> {
    s.messages(agent)
        .unwrap()
        .iter()
        .filter_map(|m| m.call())
        .filter(|c| c.function == "send_message")
        .map(|c| c.arguments["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `pagemind chat ARGS` with stdin and stdout piped (to type into it and read what it shows).
pub fn spawn_chat(home: &Path, args: &[&str]) -> std::process::Child {
    pagemind(Some(home))
        .arg("chat")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}
