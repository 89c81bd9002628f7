//! `pagemind bench paging` on the real small model: every policy runs the scripted turns, the
//! costs add up, and the plot is written.

use crate::util::*;
use serde_json::Value;

#[test]
fn bench_paging_runs_each_policy_and_plots_it() {
    let home = home_with_models();
    let svg = home.path().join("paging.svg");
    let out = ok(pagemind(Some(home.path()))
        .args([
            "bench",
            "paging",
            "--model",
            SMOLLM,
            "--turns",
            "2",
            "--context-window",
            "1024",
            "--policy",
            "prefix,persist,shift,none,fixed",
            "--no-embedder",
            "--plot",
        ])
        .arg(&svg));
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let turns = |p: &str| lines.iter().filter(|l| l["policy"] == p).cloned().collect::<Vec<_>>();
    let summary = |p: &str| lines.iter().find(|l| l["summary"]["policy"] == p).unwrap()["summary"].clone();
    for p in ["prefix", "persist", "shift", "none"] {
        let t = turns(p);
        assert_eq!(t.len(), 2, "{p}: {out}");
        // The script's calls are what the model wrote, and every turn ends with its message.
        assert!(t.iter().all(|c| c["diverged"] == 0 && c["steps"].as_u64().unwrap() >= 1), "{p}: {t:?}");
        let s = summary(p);
        let evaluated: u64 = t.iter().map(|c| c["tokens_evaluated"].as_u64().unwrap()).sum();
        assert_eq!(s["tokens_evaluated"].as_u64(), Some(evaluated), "{s}");
    }
    // Without a cache nothing is reused; with one, most of every prompt is; persisting the
    // state between turns reuses as much as keeping the process.
    assert_eq!(summary("none")["tokens_reused"], 0);
    let reused = |p: &str| summary(p)["tokens_reused"].as_u64().unwrap();
    assert!(reused("prefix") > summary("prefix")["tokens_evaluated"].as_u64().unwrap(), "{}", summary("prefix"));
    assert!(reused("persist") * 10 >= reused("prefix") * 9);
    let persist = turns("persist");
    assert!(persist[1..]
        .iter()
        .all(|c| c["kv_restore_s"].as_f64().unwrap() > 0.0 && c["kv_bytes"].as_u64().unwrap() > 0));
    // The fixed-context baseline grows its prompt every turn (or stops when the window is full).
    let fixed = turns("fixed");
    let sizes: Vec<u64> = fixed.iter().map(|c| c["prompt_tokens"].as_u64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[1] > w[0]), "{sizes:?}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.matches("<polyline").count() == 10, "two panels of five policies");

    // A policy that does not exist is a one-line error naming the flag.
    let bad = run(pagemind(Some(home.path())).args(["bench", "paging", "--model", SMOLLM, "--policy", "shfit"]));
    assert_clean_error(&bad, "--policy shfit");
}
