/*! Results of an evaluation: one JSON line per item and variant, a summary as JSON and as a
Markdown table.

`<out>/<task>.jsonl` is appended to as each item finishes (a killed run loses at most the item
in flight) and is the input of `--resume`; `<out>/<task>.summary.json` and `<out>/<task>.md`
are written from the whole JSONL at the end, so a resumed run summarises every item.
*/

use crate::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One item run through one variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemRecord {
    pub task: String,
    pub variant: String,
    pub id: String,
    /// Category the summary groups by (e.g. LoCoMo's 1-5, a nesting level); may be empty.
    #[serde(default)]
    pub category: String,
    /// What the model was asked.
    pub input: String,
    /// The reference answer, for reading the results (never shown to the model).
    pub gold: Value,
    /// What the model answered (the agent's messages, joined).
    pub answer: String,
    /// Metric name -> value.
    pub scores: BTreeMap<String, f64>,
    /// Every step's function call (agent variants) with its result and token counts.
    #[serde(default)]
    pub steps: Vec<Value>,
    pub tokens_evaluated: usize,
    pub tokens_reused: usize,
    pub seconds: f64,
    /// Why the item failed, if it did (it then scores 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ItemRecord {
    /// A record not yet run: no answer, no scores.
    pub fn new(task: &str, variant: &str, id: &str, category: &str, input: &str, gold: Value) -> Self {
        ItemRecord {
            task: task.into(),
            variant: variant.into(),
            id: id.into(),
            category: category.into(),
            input: input.into(),
            gold,
            answer: String::new(),
            scores: BTreeMap::new(),
            steps: vec![],
            tokens_evaluated: 0,
            tokens_reused: 0,
            seconds: 0.0,
            error: None,
        }
    }

    /// Fill in the answer, steps and token counts of an agent turn.
    pub fn set_turn(&mut self, turn: &crate::agent::TurnResult) {
        self.answer = turn.messages.join(" ");
        self.steps = turn.steps.iter().map(|s| serde_json::to_value(s).unwrap_or_default()).collect();
        self.tokens_evaluated = turn.steps.iter().map(|s| s.tokens_evaluated).sum();
        self.tokens_reused = turn.steps.iter().map(|s| s.tokens_reused).sum();
    }

    /// Fill in a baseline's plain answer.
    pub fn set_answer(&mut self, a: super::baseline::Answer) {
        self.answer = a.text;
        self.tokens_evaluated = a.tokens_evaluated;
        self.tokens_reused = a.tokens_reused;
    }
}

/// Appends item records to the task's JSONL; knows which are done (for `--resume`).
pub struct Recorder {
    path: PathBuf,
    file: std::fs::File,
    done: HashSet<(String, String)>,
    records: Vec<ItemRecord>,
    bar: Option<ProgressBar>,
}

impl Recorder {
    /// Open `<out>/<task>.jsonl`: with `resume`, keep what it holds; without, start it anew.
    pub fn open(out: &Path, task: &str, resume: bool) -> Result<Self> {
        std::fs::create_dir_all(out).map_err(|e| Error::file(out, format!("cannot create the output folder: {e}")))?;
        let path = out.join(format!("{task}.jsonl"));
        let mut records = vec![];
        if resume && path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, e))?;
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                match serde_json::from_str::<ItemRecord>(line) {
                    Ok(r) => records.push(r),
                    // A line cut by a kill mid-write: that item runs again.
                    Err(_) if i + 1 == text.lines().count() => {}
                    Err(e) => {
                        return Err(Error::file(
                            &path,
                            format!(
                                "line {}: not an item record ({e}); remove the line or run without --resume",
                                i + 1
                            ),
                        ))
                    }
                }
            }
            // Rewrite without a cut last line.
            let mut f = std::fs::File::create(&path).map_err(|e| Error::file(&path, e))?;
            for r in &records {
                writeln!(f, "{}", serde_json::to_string(r).unwrap_or_default()).map_err(|e| Error::file(&path, e))?;
            }
        } else {
            std::fs::File::create(&path).map_err(|e| Error::file(&path, e))?;
        }
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| Error::file(&path, e))?;
        let done = records.iter().map(|r| (r.variant.clone(), r.id.clone())).collect();
        Ok(Self { path, file, done, records, bar: None })
    }

    /// Whether `variant` already ran `id`.
    pub fn is_done(&self, variant: &str, id: &str) -> bool {
        self.done.contains(&(variant.to_string(), id.to_string()))
    }

    /// Show a progress bar with an ETA over `total` pending runs.
    pub fn start_progress(&mut self, total: usize, task: &str, show: bool) {
        if !show || total == 0 {
            return;
        }
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} items, {elapsed} elapsed, ETA {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("eval {task}"));
        self.bar = Some(bar);
    }

    /// Append one record (written and flushed before this returns).
    pub fn record(&mut self, r: ItemRecord) -> Result<()> {
        let line = serde_json::to_string(&r).map_err(|e| Error::file(&self.path, e))?;
        writeln!(self.file, "{line}").and_then(|_| self.file.flush()).map_err(|e| Error::file(&self.path, e))?;
        if let Some(b) = &self.bar {
            b.inc(1);
            let s = r.scores.iter().next().map(|(k, v)| format!("{} {k}={v:.2}", r.variant)).unwrap_or_default();
            b.set_message(s);
        }
        self.done.insert((r.variant.clone(), r.id.clone()));
        self.records.push(r);
        Ok(())
    }

    /// Every record of the run (resumed ones included).
    pub fn records(&self) -> &[ItemRecord] {
        &self.records
    }

    /// End the progress bar.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Mean scores per variant and category.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub task: String,
    pub model: String,
    pub window: usize,
    pub seed: u64,
    /// The command line that produced it.
    pub command: String,
    /// variant -> category ("all" included) -> metric -> mean; plus `n` (items) and
    /// `seconds` (mean per item).
    pub results: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    /// Items that failed with an error, per variant.
    pub errors: BTreeMap<String, usize>,
    /// Sum of item times, seconds.
    pub total_seconds: f64,
}

impl Summary {
    /// Summarise `records`.
    pub fn of(records: &[ItemRecord], task: &str, model: &str, window: usize, seed: u64, command: &str) -> Self {
        let mut results: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>> = BTreeMap::new();
        let mut counts: BTreeMap<(String, String), f64> = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for r in records {
            if r.error.is_some() {
                *errors.entry(r.variant.clone()).or_insert(0) += 1;
            }
            let mut cats = vec!["all".to_string()];
            if !r.category.is_empty() {
                cats.push(r.category.clone());
            }
            for c in cats {
                let m = results.entry(r.variant.clone()).or_default().entry(c.clone()).or_default();
                for (k, v) in &r.scores {
                    *m.entry(k.clone()).or_default() += v;
                }
                *m.entry("seconds".into()).or_default() += r.seconds;
                *counts.entry((r.variant.clone(), c)).or_default() += 1.0;
            }
        }
        for (v, cats) in results.iter_mut() {
            for (c, m) in cats.iter_mut() {
                let n = counts[&(v.clone(), c.clone())];
                for x in m.values_mut() {
                    *x /= n;
                }
                m.insert("n".into(), n);
            }
        }
        Summary {
            task: task.into(),
            model: model.into(),
            window,
            seed,
            command: command.into(),
            results,
            errors,
            total_seconds: records.iter().map(|r| r.seconds).sum(),
        }
    }

    /// A Markdown table: one row per variant and category, one column per metric.
    pub fn markdown(&self) -> String {
        let mut metrics: Vec<String> = vec![];
        for cats in self.results.values() {
            for m in cats.values() {
                for k in m.keys() {
                    if k != "n" && k != "seconds" && !metrics.contains(k) {
                        metrics.push(k.clone());
                    }
                }
            }
        }
        let mut s = format!(
            "### {} — {} (window {}, seed {})\n\n`{}`\n\n| variant | category | n | {} | s/item |\n|---|---|---|{}---|\n",
            self.task,
            self.model,
            self.window,
            self.seed,
            self.command,
            metrics.join(" | "),
            "---|".repeat(metrics.len())
        );
        for (v, cats) in &self.results {
            for (c, m) in cats {
                let cells: Vec<String> =
                    metrics.iter().map(|k| m.get(k).map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into())).collect();
                s.push_str(&format!(
                    "| {v} | {c} | {} | {} | {:.1} |\n",
                    m["n"],
                    cells.join(" | "),
                    m.get("seconds").copied().unwrap_or(0.0)
                ));
            }
        }
        if !self.errors.is_empty() {
            s.push_str(&format!("\nItems that failed with an error (scored 0): {:?}\n", self.errors));
        }
        s.push_str(&format!("\nTotal item time: {:.0} s\n", self.total_seconds));
        s
    }

    /// Write `<out>/<task>.summary.json` and `<out>/<task>.md`.
    pub fn write(&self, out: &Path) -> Result<()> {
        let j = out.join(format!("{}.summary.json", self.task));
        std::fs::write(&j, serde_json::to_string_pretty(self).unwrap_or_default()).map_err(|e| Error::file(&j, e))?;
        let m = out.join(format!("{}.md", self.task));
        std::fs::write(&m, self.markdown()).map_err(|e| Error::file(&m, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(variant: &str, id: &str, cat: &str, f1: f64) -> ItemRecord {
        let mut r = ItemRecord::new("t", variant, id, cat, "q", Value::Null);
        r.scores.insert("f1".into(), f1);
        r.seconds = 1.0;
        r
    }

    #[test]
    fn resume_keeps_finished_items_and_drops_a_cut_last_line() {
        let d = tempfile::tempdir().unwrap();
        let mut r = Recorder::open(d.path(), "t", false).unwrap();
        r.record(rec("pagemind", "1", "2", 1.0)).unwrap();
        r.record(rec("pagemind", "2", "2", 0.0)).unwrap();
        drop(r);
        // A kill in the middle of a write leaves a partial line.
        let p = d.path().join("t.jsonl");
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("{\"task\": \"t\", \"varia");
        std::fs::write(&p, text).unwrap();
        let r = Recorder::open(d.path(), "t", true).unwrap();
        assert!(r.is_done("pagemind", "1") && r.is_done("pagemind", "2") && !r.is_done("rag", "1"));
        assert_eq!(r.records().len(), 2);
        // Without --resume the file starts anew.
        let r = Recorder::open(d.path(), "t", false).unwrap();
        assert!(r.records().is_empty() && !r.is_done("pagemind", "1"));
    }

    #[test]
    fn summary_means_by_variant_and_category() {
        let rs = [rec("pagemind", "1", "2", 1.0), rec("pagemind", "2", "4", 0.0), rec("rag", "1", "2", 0.5)];
        let s = Summary::of(&rs, "t", "m", 2048, 0, "pagemind eval t");
        assert_eq!(s.results["pagemind"]["all"]["f1"], 0.5);
        assert_eq!(s.results["pagemind"]["all"]["n"], 2.0);
        assert_eq!(s.results["pagemind"]["2"]["f1"], 1.0);
        assert_eq!(s.results["rag"]["all"]["f1"], 0.5);
        let md = s.markdown();
        assert!(md.contains("| pagemind | all | 2 | 0.500 | 1.0 |"), "{md}");
    }
}
