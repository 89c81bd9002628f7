//! HTML extraction on any text: bounded time (the reader is linear) and no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (_, line) in pagemind::ingest::html::html_lines(&text) {
        assert!(!line.chars().any(|c| c.is_control()), "a segment is one line of text: {line:?}");
    }
});
