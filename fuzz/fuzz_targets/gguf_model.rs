//! A GGUF file from the fuzzer: open, tokenizer, template, weights, one forward pass.
//! Any input must end in `Ok` or a clean error: no panic, abort, hang or runaway allocation.
//! Seed: `cargo run --manifest-path fuzz/Cargo.toml --bin seeds` writes the tiny model.
#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use pagemind::runtime::{ChatMessage, ChatModel, Session};
use std::sync::OnceLock;

fn dir() -> &'static tempfile::TempDir {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

fuzz_target!(|data: &[u8]| {
    let p = dir().path().join("m.gguf");
    std::fs::write(&p, data).expect("write");
    let Ok(m) = ChatModel::load(&p, &Device::Cpu, None) else { return };
    let Ok((_, ids)) = m.chat_prompt(&[ChatMessage::new("user", "hello <|im_end|> there")], true) else { return };
    let ids: Vec<u32> = ids.into_iter().take(8).collect();
    if let Ok(mut s) = Session::new(&m, 16) {
        let _ = s.eval(&ids);
    }
});
