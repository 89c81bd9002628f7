/*! `pagemind bench decode|embed`: the reference engines' protocols, JSON on stdout.

With `--reference SCRIPT` the reference engine's script (`llama_cpp_speed.py`,
`st_embed_speed.py` from the project's shared benchmark folder) runs in the same invocation,
interleaved with ours repetition by repetition, and a last JSON line gives the ratios of the
medians (ours / reference; > 1 means pagemind is faster) and both peak RSS figures.
*/

use super::generate::load_chat;
use super::Global;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use pagemind::bench::{self, DecodeReport};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct RefArgs {
    /// Reference script to run in the same invocation (e.g. shared/bench/llama_cpp_speed.py).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Python interpreter for the reference script.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Repetitions; the figures are medians.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// JSON output (always on; accepted for scripts).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Prefill and decode tokens/s (protocol of shared/bench/llama_cpp_speed.py).
    Decode {
        /// Model id or .gguf path (default: the default chat model).
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 64)]
        gen_tokens: usize,
        #[command(flatten)]
        r: RefArgs,
    },
    /// The cost of paging turn by turn: the agent loop with a scripted call mix, for each KV
    /// policy and the fixed-context baseline (JSON lines per turn, then one per policy).
    Paging {
        /// Model id or .gguf path (default: the default chat model).
        #[arg(long, conflicts_with = "synthetic")]
        model: Option<String>,
        /// A GGUF with random weights of a real model's shapes (benches/gguf_synth.py).
        #[arg(long)]
        synthetic: Option<PathBuf>,
        #[arg(long, default_value_t = 100)]
        turns: usize,
        #[arg(long, default_value_t = pagemind::agent::DEFAULT_WINDOW)]
        context_window: usize,
        /// Policies to run, comma-separated: prefix, persist, shift, none, fixed.
        #[arg(long, value_delimiter = ',', default_value = "prefix,persist,shift,none,fixed")]
        policy: Vec<String>,
        /// Run without the embedding model (archival calls then fail, cheaply).
        #[arg(long)]
        no_embedder: bool,
        /// Write an SVG chart of seconds and tokens evaluated per turn, one line per policy.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// JSON output (always on; accepted for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Embedding throughput (protocol of shared/bench/st_embed_speed.py).
    Embed {
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        r: RefArgs,
    },
}

fn threads(g: &Global) -> usize {
    g.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Runs the reference script as `__main__`, then prints its own peak RSS (`VmHWM`, which belongs
/// to the process image after exec; `getrusage` would count the forked copy of pagemind).
const PY_WRAPPER: &str = r#"
import runpy, sys
script = sys.argv[1]; sys.argv = sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    hwm = [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    print("PAGEMIND_REFERENCE_PEAK_RSS_KB", hwm[0] if hwm else 0, file=sys.stderr)
"#;

/// The reference's peak RSS (MB) from the wrapper's stderr line.
fn peak_from_stderr(stderr: &str) -> f64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("PAGEMIND_REFERENCE_PEAK_RSS_KB "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Run the reference script once; its one JSON line.
fn reference(r: &RefArgs, script: &PathBuf, args: &[String]) -> Result<Value> {
    let out = Command::new(&r.python)
        .arg("-c")
        .arg(PY_WRAPPER)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running the reference {} with {}", script.display(), r.python))?;
    if !out.status.success() {
        bail!(
            "the reference {} failed: {} (is its engine installed for {}?)",
            script.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default(),
            r.python
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    let mut v: Value =
        serde_json::from_str(line).with_context(|| format!("the reference printed no JSON line: {text}"))?;
    v["peak_rss_mb"] = json!(peak_from_stderr(&String::from_utf8_lossy(&out.stderr)));
    Ok(v)
}

fn ratio_line(ours: &[(&str, f64)], theirs: &[Vec<f64>], ref_engine: &str, our_rss: f64, ref_rss: f64) -> Value {
    let mut v = json!({"comparison": format!("pagemind / {ref_engine}"), "peak_rss_mb": round2(our_rss),
                       "reference_peak_rss_mb": round2(ref_rss)});
    for ((k, mine), t) in ours.iter().zip(theirs) {
        let m = median(t.clone());
        v[format!("reference_{k}")] = json!(round2(m));
        v[format!("{k}_ratio")] = json!(((mine / m) * 1000.0).round() / 1000.0);
    }
    v
}

pub fn run(g: &Global, cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Decode { model, prompt_tokens, gen_tokens, r } => {
            let m = load_chat(g, model.as_deref())?;
            let (mut pre, mut dec) = (vec![], vec![]);
            let (mut rpre, mut rdec) = (vec![], vec![]);
            let mut ref_rss = 0f64;
            let path = m.path.display().to_string();
            let args = vec![
                path,
                "--prompt-tokens".into(),
                prompt_tokens.to_string(),
                "--gen-tokens".into(),
                gen_tokens.to_string(),
                "--threads".into(),
                threads(g).to_string(),
            ];
            for _ in 0..r.repeat.max(1) {
                let (p, d) = bench::decode(&m, prompt_tokens, gen_tokens)?;
                pre.push(p);
                dec.push(d);
                if let Some(s) = &r.reference {
                    let v = reference(&r, s, &args)?;
                    rpre.push(v["prefill_tok_s"].as_f64().unwrap_or(f64::NAN));
                    rdec.push(v["decode_tok_s"].as_f64().unwrap_or(f64::NAN));
                    ref_rss = ref_rss.max(v["peak_rss_mb"].as_f64().unwrap_or(0.0));
                }
            }
            let rep = DecodeReport {
                engine: "pagemind",
                model: m.spec.as_ref().map(|s| s.id.clone()).unwrap_or_else(|| model.clone().unwrap_or_default()),
                device: pagemind::device::device_name(m.weights.device()),
                threads: threads(g),
                prompt_tokens,
                gen_tokens,
                prefill_tok_s: round2(median(pre.clone())),
                decode_tok_s: round2(median(dec.clone())),
                peak_rss_mb: round2(bench::peak_rss_mb()),
            };
            println!("{}", serde_json::to_string(&rep)?);
            if r.reference.is_some() {
                let ours = [("prefill_tok_s", rep.prefill_tok_s), ("decode_tok_s", rep.decode_tok_s)];
                let mut v = ratio_line(&ours, &[rpre, rdec], "llama.cpp", rep.peak_rss_mb, ref_rss);
                v["repeat"] = json!(r.repeat.max(1));
                println!("{v}");
            }
        }
        BenchCmd::Paging { model, synthetic, turns, context_window, policy, no_embedder, plot, json: _ } => {
            paging(
                g,
                model.or(synthetic.map(|p| p.display().to_string())),
                turns,
                context_window,
                &policy,
                no_embedder,
                plot,
            )?;
        }
        BenchCmd::Embed { model, r } => {
            let e = super::embed::load_embedder(g, model.as_deref())?;
            let passages = bench::embed_passages(512, 120);
            let refs: Vec<&str> = passages.iter().map(|s| s.as_str()).collect();
            let mut ntok = 0;
            for p in &refs {
                ntok += e.token_ids(p)?.len();
            }
            e.embed(&refs[..32])?; // warm-up batch
            let (mut ours, mut theirs) = (vec![], vec![]);
            let mut ref_rss = 0f64;
            let args = vec!["--threads".to_string(), threads(g).to_string()];
            for _ in 0..r.repeat.max(1) {
                let t = Instant::now();
                e.embed(&refs)?;
                ours.push(ntok as f64 / t.elapsed().as_secs_f64());
                if let Some(s) = &r.reference {
                    let v = reference(&r, s, &args)?;
                    theirs.push(v["tokens_s"].as_f64().unwrap_or(f64::NAN));
                    ref_rss = ref_rss.max(v["peak_rss_mb"].as_f64().unwrap_or(0.0));
                }
            }
            let tps = median(ours);
            let rss = bench::peak_rss_mb();
            println!(
                "{}",
                json!({"engine": "pagemind", "threads": threads(g), "passages": refs.len(), "tokens": ntok,
                       "passages_s": round2(tps * refs.len() as f64 / ntok as f64),
                       "tokens_s": (tps * 10.0).round() / 10.0, "peak_rss_mb": round2(rss)})
            );
            if r.reference.is_some() {
                let mut v = ratio_line(&[("tokens_s", tps)], &[theirs], "sentence-transformers", rss, ref_rss);
                v["repeat"] = json!(r.repeat.max(1));
                println!("{v}");
            }
        }
    }
    Ok(())
}

fn paging(
    g: &Global,
    model: Option<String>,
    turns: usize,
    window: usize,
    policies: &[String],
    no_embedder: bool,
    plot: Option<PathBuf>,
) -> Result<()> {
    use pagemind::bench::paging::{summary, PagingRun, Policy};
    use pagemind::bench::plot::{svg, Series};
    let policies = policies.iter().map(|p| Policy::parse(p)).collect::<pagemind::Result<Vec<_>>>()?;
    let m = load_chat(g, model.as_deref())?;
    let models = g.models();
    let emb_id = models.catalog().default_embedding.clone();
    let embedder = match models.catalog().get(&emb_id) {
        Some(spec) if !no_embedder && models.is_installed(spec) => Some(super::embed::load_embedder(g, Some(&emb_id))?),
        _ => None,
    };
    if embedder.is_none() {
        eprintln!("bench paging: no embedding model, archival calls fail (cheaply)");
    }
    let run = PagingRun { model: &m, embedder: embedder.as_ref(), turns, window };
    let mut runs = vec![];
    for p in policies {
        let costs = run.run(p, |c| println!("{}", serde_json::to_string(c).unwrap_or_default()))?;
        let mut s = summary(&costs);
        s["model"] = json!(m.path.file_name().map(|f| f.to_string_lossy().to_string()));
        s["device"] = json!(pagemind::device::device_name(m.weights.device()));
        s["threads"] = json!(threads(g));
        s["context_window"] = json!(window);
        s["embedder"] = json!(embedder.is_some());
        println!("{}", json!({ "summary": s }));
        runs.push((p, costs));
    }
    if let Some(path) = plot {
        let series = |f: fn(&pagemind::bench::paging::TurnCost) -> f64| -> Vec<Series> {
            runs.iter()
                .map(|(p, c)| Series {
                    label: p.name(),
                    points: c.iter().filter(|c| !c.window_full).map(|c| (c.turn as f64, f(c))).collect(),
                })
                .collect()
        };
        let title = format!("pagemind bench paging: {} turns, window {window}", turns);
        let chart = svg(&[
            (title.as_str(), "seconds per turn", series(|c| c.turn_s)),
            ("prompt tokens evaluated per turn", "tokens", series(|c| c.tokens_evaluated as f64)),
        ]);
        std::fs::write(&path, chart).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
