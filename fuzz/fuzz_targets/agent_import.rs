//! An agent export from the fuzzer: parsed, validated and imported into a real store (then
//! deleted), or refused with an error; never a panic, never half an agent left behind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagemind::agent::{import_agent, AgentExport};
use pagemind::memory::MemoryStore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

fn store() -> &'static Mutex<(tempfile::TempDir, MemoryStore)> {
    static S: OnceLock<Mutex<(tempfile::TempDir, MemoryStore)>> = OnceLock::new();
    S.get_or_init(|| {
        let d = tempfile::tempdir().expect("temp dir");
        let s = MemoryStore::open(d.path()).expect("store");
        Mutex::new((d, s))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(ex) = serde_json::from_slice::<AgentExport>(data) else { return };
    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!("fuzz-{}", N.fetch_add(1, Ordering::Relaxed));
    let g = store().lock().unwrap_or_else(|e| e.into_inner());
    let s = &g.1;
    match import_agent(s, &ex, Some(&name)) {
        Ok(rec) => {
            s.delete_agent(&rec.name).expect("delete an imported agent");
        }
        Err(_) => assert!(s.agent(&name).is_err(), "a failed import left agent {name} behind"),
    }
});
