//! A models.toml catalog from the fuzzer: parsed or refused with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = pagemind::store::Catalog::parse(text) {
        for id in c.defaults() {
            assert!(c.get(&id).is_some(), "default {id} is in the catalog");
        }
    }
});
