//! Document loading (`pagemind load`, `sources`) on a generated corpus with known facts.

use crate::util::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

/// A minimal PDF with one page per text (Helvetica, one text line each).
pub fn pdf(pages: &[&str], encrypt: bool) -> Vec<u8> {
    let n = pages.len();
    let mut objs: Vec<String> = vec![];
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objs.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    objs.push(format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")));
    objs.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into());
    for (i, t) in pages.iter().enumerate() {
        objs.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        let stream = format!("BT /F1 12 Tf 72 720 Td ({t}) Tj ET");
        objs.push(format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()));
    }
    if encrypt {
        objs.push("<< /Filter /Standard /V 1 /R 2 /O <00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF> /U <00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF> /P -4 >>".into());
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = vec![];
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").bytes());
    }
    let enc = if encrypt { format!(" /Encrypt {} 0 R /ID [<AB> <AB>]", objs.len()) } else { String::new() };
    out.extend(format!("trailer\n<< /Size {} /Root 1 0 R{enc} >>\nstartxref\n{xref}\n%%EOF\n", objs.len() + 1).bytes());
    out
}

/// Filler prose, different per seed, so facts sit among unrelated passages.
fn filler(seed: usize, lines: usize) -> String {
    const W: &[&str] = &[
        "river", "ledger", "copper", "window", "meadow", "signal", "harbor", "lantern", "orchard", "quarry", "violin",
        "glacier", "census", "pepper", "tunnel", "falcon", "ribbon", "saddle", "thimble", "walnut",
    ];
    (0..lines)
        .map(|l| (0..12).map(|k| W[(seed * 7 + l * 13 + k * k * 3 + k) % W.len()]).collect::<Vec<_>>().join(" ") + ".")
        .collect::<Vec<_>>()
        .join("\n")
}

/// (file, content, query, text the found chunk must contain)
const FACTS: &[(&str, &str, &str, &str)] = &[
    (
        "notes/alpha.txt",
        "The secret launch code of project Bluebird is 7741.",
        "launch code of project Bluebird",
        "Bluebird is 7741",
    ),
    (
        "notes/beta.md",
        "# Travel\nMarta's favourite city is Ljubljana in Slovenia.",
        "Marta's favourite city",
        "city is Ljubljana",
    ),
    (
        "web/page.html",
        "<html><body><p>The lighthouse keeper's dog is named Biscuit.</p></body></html>",
        "lighthouse keeper's dog name",
        "named Biscuit",
    ),
    (
        "data/facts.json",
        r#"{"items":[{"text":"The quarterly budget for robotics is 2.4 million euros."}]}"#,
        "robotics quarterly budget",
        "2.4 million euros",
    ),
    (
        "data/log.jsonl",
        "{\"msg\":\"The backup server reboots every Tuesday at 03:00.\"}\nnot json\n",
        "when does the backup server reboot",
        "every Tuesday at 03:00",
    ),
];

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn corpus(root: &Path) {
    for (i, (rel, fact, _, _)) in FACTS.iter().enumerate() {
        let body = if rel.ends_with(".txt") || rel.ends_with(".md") {
            format!("{}\n{fact}\n{}", filler(i, 30), filler(i + 50, 30))
        } else {
            fact.to_string()
        };
        write(root, rel, body.as_bytes());
    }
    write(
        root,
        "docs/manual.pdf",
        &pdf(&["Page one: the pump pressure limit is 8 bar.", "Page two: replace filters yearly."], false),
    );
    write(root, "docs/locked.pdf", &pdf(&["Top secret."], true));
    write(root, "docs/broken.pdf", b"%PDF-1.4\nthis is not really a pdf");
    write(root, "bin/blob.txt", b"abc\0\x01\x02binary");
    write(root, "notes/latin1.txt", b"Caf\xe9 opening hours: the Caf\xe9 Zeno opens at 7 o'clock.\n");
    write(root, "image.png", b"\x89PNG\r\n\x1a\n");
    write(root, "data/bad.json", b"{\"unterminated\": ");
    write(root, ".gitignore", b"ignored/\n");
    write(root, "ignored/hidden-fact.txt", b"This file must never be loaded.");
}

fn load_json(home: &Path, args: &[&str]) -> Value {
    let mut cmd = pagemind(Some(home));
    cmd.args(["load", "--agent", "docs", "--json"]).args(args);
    serde_json::from_str(&ok(&mut cmd)).unwrap()
}

fn search(home: &Path, query: &str) -> Value {
    let out = ok(pagemind(Some(home)).args(["archival", "search", "--agent", "docs", "--json", query]));
    serde_json::from_str(&out).unwrap()
}

fn passage_count(home: &Path) -> u64 {
    let out = ok(pagemind(Some(home)).args(["memory", "show", "--agent", "docs", "--json"]));
    serde_json::from_str::<Value>(&out).unwrap()["archival_passages"].as_u64().unwrap()
}

#[test]
fn load_finds_every_fact_skips_bad_files_and_is_idempotent() {
    let home = home_with_models();
    let docs = tempfile::tempdir().unwrap();
    corpus(docs.path());
    let r = load_json(home.path(), &[docs.path().to_str().unwrap()]);
    let skipped: Vec<(String, String)> = serde_json::from_value(r["skipped"].clone()).unwrap();
    let reason = |name: &str| -> String {
        skipped
            .iter()
            .find(|(f, _)| f.ends_with(name))
            .map(|s| s.1.clone())
            .unwrap_or_else(|| panic!("{name} not skipped: {r}"))
    };
    assert!(reason("blob.txt").contains("binary"));
    assert!(reason("locked.pdf").contains("encrypted"), "{}", reason("locked.pdf"));
    assert!(reason("broken.pdf").contains("PDF"));
    assert!(reason("image.png").contains("unsupported"));
    assert!(reason("bad.json").contains("invalid JSON"));
    assert!(!r.to_string().contains("hidden-fact"), ".gitignore'd file was looked at: {r}");
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("latin1.txt") && warnings.contains("lossily"), "{warnings}");
    assert!(warnings.contains("log.jsonl") && warnings.contains("not JSON"), "{warnings}");
    assert_eq!(r["loaded"], 7, "{r}");

    // Each fact's chunk is on the first page of a search, with its source file and span.
    let mut facts: Vec<(&str, &str, &str, &str)> = FACTS.to_vec();
    facts.push(("docs/manual.pdf", "", "pump pressure limit", "pressure limit is 8 bar"));
    facts.push(("notes/latin1.txt", "", "when does the café open", "Zeno opens at 7"));
    for (file, _, query, key) in &facts {
        let res = search(home.path(), query);
        let hit = res["items"].as_array().unwrap().iter().find(|p| p["text"].as_str().unwrap().contains(key));
        let hit = hit.unwrap_or_else(|| panic!("{key:?} not on the first page for {query:?}: {res}"));
        assert!(hit["source"].as_str().unwrap().ends_with(file), "{hit}");
        assert!(!hit["span"].as_str().unwrap().is_empty());
    }
    let pdf_hit = search(home.path(), "pump pressure limit");
    assert_eq!(pdf_hit["items"][0]["span"], "pages 1-2", "{pdf_hit}");

    // Re-loading unchanged files adds nothing.
    let n = passage_count(home.path());
    let again = load_json(home.path(), &[docs.path().to_str().unwrap()]);
    assert_eq!(
        (again["loaded"].as_u64(), again["chunks"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(0), Some(7))
    );
    assert_eq!(passage_count(home.path()), n);

    // A modified file replaces its old chunks.
    let alpha = docs.path().join("notes/alpha.txt");
    let text = std::fs::read_to_string(&alpha).unwrap().replace("is 7741", "is 9902");
    std::fs::write(&alpha, text).unwrap();
    let changed = load_json(home.path(), &[docs.path().to_str().unwrap()]);
    assert_eq!((changed["loaded"].as_u64(), changed["replaced"].as_u64()), (Some(1), Some(1)), "{changed}");
    let old = ok(pagemind(Some(home.path())).args([
        "archival",
        "search",
        "--agent",
        "docs",
        "--json",
        "--contains",
        "7741",
        "code",
    ]));
    assert_eq!(serde_json::from_str::<Value>(&old).unwrap()["total"], 0, "old chunks remain: {old}");
    let new = search(home.path(), "launch code of project Bluebird");
    assert!(new["items"][0]["text"].as_str().unwrap().contains("9902"));
    assert_eq!(passage_count(home.path()), n, "same size file, same chunk count");

    // sources list shows each file once; remove deletes its passages.
    let list: Vec<Value> =
        serde_json::from_str(&ok(pagemind(Some(home.path())).args(["sources", "list", "--agent", "docs", "--json"])))
            .unwrap();
    assert_eq!(list.len(), 7);
    assert!(list.iter().all(|s| s["complete"] == true));
    let alpha_chunks =
        list.iter().find(|s| s["path"].as_str().unwrap().ends_with("alpha.txt")).unwrap()["chunks"].as_u64().unwrap();
    ok(pagemind(Some(home.path())).args(["sources", "remove", "--agent", "docs", alpha.to_str().unwrap()]));
    assert_eq!(passage_count(home.path()), n - alpha_chunks);
}

#[test]
fn a_killed_load_resumes_without_duplicates_or_loss() {
    let home = home_with_models();
    let docs = tempfile::tempdir().unwrap();
    let big: String = (0..12).map(|i| format!("Section {i}.\n{}\n", filler(i, 12))).collect();
    write(docs.path(), "big.txt", big.as_bytes());
    let path = docs.path().join("big.txt");

    // Reference: a clean load into another agent.
    let clean = ok(pagemind(Some(home.path()))
        .args(["load", "--agent", "clean", "--json", "--chunk-tokens", "64", "--overlap", "8"])
        .arg(&path));
    let clean: Value = serde_json::from_str(&clean).unwrap();
    let total = clean["chunks"].as_u64().unwrap();
    assert!(total >= 8, "{clean}");

    let mut child = pagemind(Some(home.path()))
        .args(["-v", "load", "--agent", "docs", "--chunk-tokens", "64", "--overlap", "8", "--batch", "2"])
        .arg(&path)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut commits = 0;
    while commits < 2 {
        let l = lines.next().expect("load ended before two commits").unwrap();
        commits += l.starts_with("committed") as usize;
    }
    child.kill().unwrap(); // SIGKILL mid-load
    child.wait().unwrap();
    let list: Vec<Value> =
        serde_json::from_str(&ok(pagemind(Some(home.path())).args(["sources", "list", "--agent", "docs", "--json"])))
            .unwrap();
    assert_eq!(list[0]["complete"], false, "{list:?}");
    let done = list[0]["chunks"].as_u64().unwrap();
    assert!(done >= 4 && done < total);

    let resumed = ok(pagemind(Some(home.path()))
        .args(["load", "--agent", "docs", "--json", "--chunk-tokens", "64", "--overlap", "8"])
        .arg(&path));
    let resumed: Value = serde_json::from_str(&resumed).unwrap();
    assert_eq!(resumed["resumed"], 1, "{resumed}");
    assert_eq!(resumed["chunks"].as_u64().unwrap(), total - done);

    // Same passages as the clean load, in order, none twice.
    let texts = |agent: &str| -> Vec<String> {
        let s = pagemind::memory::MemoryStore::open(home.path()).unwrap();
        let a = s.agent(agent).unwrap();
        s.passages_where(a.id, |_| true).unwrap().into_iter().map(|p| p.text).collect()
    };
    assert_eq!(texts("docs"), texts("clean"));
}

#[test]
fn export_import_is_exact_keeps_sources_and_rejects_bad_files() {
    let home = home_with_models();
    let docs = tempfile::tempdir().unwrap();
    write(docs.path(), "a.txt", b"The pump pressure limit is 8 bar. Filters are replaced yearly.");
    write(docs.path(), "b.md", b"# Notes\nThe spare key is under the blue flowerpot.");
    load_json(home.path(), &[docs.path().to_str().unwrap()]);
    let export = |h: &Path, name: &str| ok(pagemind(Some(h)).args(["agents", "export", name]));
    let first = export(home.path(), "docs");

    // Into a second store and out again: the same bytes, sources included.
    let other = home_with_models();
    let file = other.path().join("docs.json");
    std::fs::write(&file, &first).unwrap();
    ok(pagemind(Some(other.path())).args(["agents", "import"]).arg(&file));
    assert_eq!(export(other.path(), "docs"), first, "export -> import -> export is byte-identical");
    let sources = ok(pagemind(Some(other.path())).args(["sources", "list", "--agent", "docs"]));
    assert!(sources.contains("a.txt") && sources.contains("b.md"), "{sources}");
    // Loading the same folder again adds nothing, and search works (the index is rebuilt).
    let before = passage_count(other.path());
    let again = load_json(other.path(), &[docs.path().to_str().unwrap()]);
    assert_eq!((again["loaded"].as_u64(), passage_count(other.path())), (Some(0), before), "{again}");
    assert!(search(other.path(), "where is the spare key").to_string().contains("flowerpot"));

    // Bad exports: one line naming the field, nothing imported.
    let v: Value = serde_json::from_str(&first).unwrap();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: [(&str, Edit, &str); 4] = [
        ("t1", Box::new(|v: &mut Value| v["agent"]["config"]["flush_threshold"] = 0.0.into()), "flush_threshold"),
        ("t2", Box::new(|v: &mut Value| v["passages"][0]["vector"] = serde_json::json!([1.0, 2.0])), "].vector: "),
        ("t3", Box::new(|v: &mut Value| v["summary"]["messages_covered"] = 99999.into()), "messages_covered"),
        ("t4", Box::new(|v: &mut Value| v["format"] = "something-else".into()), "format"),
    ];
    for (name, edit, field) in cases {
        let mut bad = v.clone();
        edit(&mut bad);
        bad["agent"]["name"] = name.into();
        let f = other.path().join(format!("{name}.json"));
        std::fs::write(&f, bad.to_string()).unwrap();
        let out = run(pagemind(Some(other.path())).args(["agents", "import"]).arg(&f));
        assert_clean_error(&out, field);
        let list = ok(pagemind(Some(other.path())).args(["agents", "list"]));
        assert!(!list.contains(name), "nothing of a rejected import is kept: {list}");
    }
    // A file over the size cap is refused before it is read (a sparse file: no disk used).
    let huge = other.path().join("huge.json");
    std::fs::File::create(&huge).unwrap().set_len(pagemind::agent::MAX_EXPORT_BYTES + 1).unwrap();
    assert_clean_error(&run(pagemind(Some(other.path())).args(["agents", "import"]).arg(&huge)), "bytes is over");
}

/// A PDF whose one page's content stream is `inflated` bytes of zeros, Flate-compressed (a "PDF
/// bomb": ~1 MB on disk per GB inflated).
fn pdf_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..inflated >> 20 {
        z.write_all(&chunk).unwrap();
    }
    let data = z.finish().unwrap();
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = vec![];
    let objs: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        [format!("<< /Length {} /Filter /FlateDecode >>\nstream\n", data.len()).as_bytes(), &data, b"\nendstream"]
            .concat(),
    ];
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).bytes());
        out.extend(o);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").bytes());
    }
    out.extend(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objs.len() + 1).bytes());
    out
}

#[test]
fn a_pdf_bomb_is_skipped_in_bounded_memory_and_the_rest_of_the_folder_loads() {
    let home = home_with_models();
    let docs = tempfile::tempdir().unwrap();
    // 768 MiB inflated, against a child limit of 256 MiB (the default is 2 GiB; the test keeps
    // the bomb small to stay fast).
    write(docs.path(), "bomb.pdf", &pdf_bomb(768 << 20));
    write(docs.path(), "good.pdf", &pdf(&["The ferry to the island leaves at 6:40."], false));
    write(docs.path(), "notes.txt", b"The spare key is under the blue flowerpot.\n");
    let mut cmd = pagemind(Some(home.path()));
    cmd.env(pagemind::ingest::pdf::MEMORY_ENV, "256").args(["load", "--agent", "docs", "--json"]).arg(docs.path());
    let t = std::time::Instant::now();
    let r: Value = serde_json::from_str(&ok(&mut cmd)).unwrap();
    assert!(t.elapsed() < std::time::Duration::from_secs(120), "took {:?}", t.elapsed());
    let skipped: Vec<(String, String)> = serde_json::from_value(r["skipped"].clone()).unwrap();
    assert_eq!(skipped.len(), 1, "{r}");
    assert!(skipped[0].0.ends_with("bomb.pdf") && skipped[0].1.contains("out of memory"), "{r}");
    assert_eq!(r["loaded"], 2, "{r}");
    assert!(search(home.path(), "ferry island")["items"][0]["text"].as_str().unwrap().contains("6:40"));
}
