//! Memory tiers: recall, archival, core memory, the store lock and crash safety.

use crate::util::{assert_clean_error, pagemind, run};
use pagemind::grammar::{StepFormat, ToolCall};
use pagemind::memory::{parse_date, MemoryStore, Message, MessageRole, NewPassage};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

fn store() -> (tempfile::TempDir, MemoryStore) {
    let d = tempfile::tempdir().unwrap();
    let s = MemoryStore::open(d.path()).unwrap();
    (d, s)
}

fn unit(seed: u64) -> Vec<f32> {
    // A deterministic unit vector; near-duplicates of `seed` differ only slightly.
    let mut v: Vec<f32> = (0..384).map(|i| (((seed * 7919 + i * 104729) % 1000) as f32 / 500.0) - 1.0).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn passage(text: &str, v: Vec<f32>) -> NewPassage {
    NewPassage {
        text: text.into(),
        source: "test".into(),
        span: String::new(),
        metadata: serde_json::json!({}),
        vector: v,
    }
}

#[test]
fn recall_search_ranks_what_was_said_and_pages() {
    let (_d, s) = store();
    let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
    for i in 0..12 {
        s.append_message(a.id, Message::new(MessageRole::User, format!("I like MANGO number {i}"))).unwrap();
    }
    // A call that is not a message to the user is not part of the conversation: not searched.
    let step = |function: &str, arguments: serde_json::Value| {
        let call = ToolCall { thoughts: "thinking".into(), function: function.into(), arguments };
        Message::new(MessageRole::Assistant, StepFormat::Json.render(&call))
    };
    s.append_message(a.id, step("archival_memory_insert", serde_json::json!({"content": "the user likes mangoes"})))
        .unwrap();
    // What the agent said is.
    let said = step("send_message", serde_json::json!({"message": "Mangoes are great, and mango lassi even more."}));
    s.append_message(a.id, said).unwrap();
    s.append_message(a.id, Message::new(MessageRole::User, "unrelated")).unwrap();

    let p = s.recall_search(a.id, "mangoes", 0, 5).unwrap();
    assert_eq!((p.total, p.items.len(), p.pages()), (13, 5, 3));
    assert_eq!(p.header(), "Showing 5 of 13 results (page 1/3)");
    // Stems meet ("mangoes" / "MANGO"); the reply that says it twice ranks first.
    assert!(p.items[0].call().is_some_and(|c| c.function == "send_message"), "{:?}", p.items[0]);
    // Equal scores: newest first.
    assert_eq!(p.items[1].content, "I like MANGO number 11");
    let last = s.recall_search(a.id, "mango", 2, 5).unwrap();
    assert_eq!(last.items.len(), 3);
    assert_eq!(last.items[2].content, "I like MANGO number 0");
    assert_eq!(s.message_count(a.id).unwrap(), 15);
    // A query of common words falls back to a substring match.
    assert_eq!(s.recall_search(a.id, "I", 0, 5).unwrap().total, 13);
}

#[test]
fn recall_search_with_meaning_also_finds_the_reply_next_to_a_match() {
    let (_d, s) = store();
    let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
    let lines = [
        "Good morning!",
        "Have you read Charlotte's Web?",
        "Yes, last summer. Loved it.",
        "The weather is nice today.",
        "I read the news daily.",
        "What did you cook?",
    ];
    let mut vectors = vec![];
    for l in lines {
        let m = s.append_message(a.id, Message::new(MessageRole::User, l)).unwrap();
        // Orthogonal to the query: only words (and neighbours) rank here.
        vectors.push((m.id, vec![0.0, 1.0, 0.0]));
    }
    s.put_message_vectors(a.id, &vectors).unwrap();
    let q = [1.0, 0.0, 0.0];
    let p = s
        .recall_search_filtered(
            a.id,
            "read Charlotte's Web",
            Some(&q),
            &pagemind::memory::RecallFilter::default(),
            0,
            3,
        )
        .unwrap()
        .page;
    let got: Vec<&str> = p.items.iter().map(|m| m.content.as_str()).collect();
    // The match, then the reply that shares no word with the query (a neighbour of the match,
    // newer than the greeting before it, which ties), both above the match of "read" alone.
    assert_eq!(got, [lines[1], lines[2], lines[0]], "{got:?}");
    assert_eq!(p.total, 6, "matches and their neighbours");
}

#[test]
fn recall_date_search_is_inclusive_in_utc() {
    let (_d, s) = store();
    let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
    let at = |d: &str, h: u32| parse_date(d).unwrap().and_hms_opt(h, 0, 0).unwrap().and_utc().timestamp_millis();
    for (d, h) in [("2024-01-01", 0), ("2024-01-02", 23), ("2024-01-03", 12), ("2024-01-04", 0)] {
        let mut m = Message::new(MessageRole::User, format!("on {d}"));
        m.created_at = at(d, h);
        s.append_message(a.id, m).unwrap();
    }
    let r = s
        .recall_by_date(a.id, Some(parse_date("2024-01-02").unwrap()), Some(parse_date("2024-01-03").unwrap()), 0, 10)
        .unwrap();
    let got: Vec<&str> = r.items.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(got, ["on 2024-01-02", "on 2024-01-03"]);
    assert!(parse_date("Jan 3").unwrap_err().to_string().contains("YYYY-MM-DD"));
}

#[test]
fn core_memory_limits_are_enforced_and_failed_edits_change_nothing() {
    let (_d, s) = store();
    let a = s.create_agent("ana", "m", "e", "I am Sam.", "Name: Ana").unwrap();
    s.core_append(a.id, "human", "Likes mangoes").unwrap();
    assert_eq!(s.block(a.id, "human").unwrap().value, "Name: Ana\nLikes mangoes");
    s.core_replace(a.id, "human", "mangoes", "papayas").unwrap();
    assert_eq!(s.block(a.id, "human").unwrap().value, "Name: Ana\nLikes papayas");

    let before = s.block(a.id, "human").unwrap();
    let err = s.core_append(a.id, "human", &"x".repeat(2000)).unwrap_err().to_string();
    assert!(err.contains("over its limit of 2000") && err.contains("nothing was changed"), "{err}");
    let err = s.core_replace(a.id, "human", "bananas", "kiwis").unwrap_err().to_string();
    assert!(err.contains("does not contain the exact text"), "{err}");
    assert!(s.core_append(a.id, "nope", "x").unwrap_err().to_string().contains("persona, human"));
    assert_eq!(s.block(a.id, "human").unwrap(), before);
}

#[test]
fn following_links_stops_at_the_end_of_a_chain_or_at_a_limit_and_says_which() {
    let (_d, s) = store();
    let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
    // key0 -> key1 -> ... -> key7: each passage holds a key and the next.
    let key = |i: u64| format!("key{i:05}x");
    let mut first = None;
    for i in 0..7u64 {
        let p = s.archival_insert(a.id, "e", passage(&format!("\"{}\": \"{}\"", key(i), key(i + 1)), unit(i))).unwrap();
        first.get_or_insert(p);
    }
    let first = first.unwrap();
    let vias = |w: &pagemind::memory::FollowedLinks| w.followed.iter().map(|f| f.via.clone()).collect::<Vec<_>>();
    // Far enough: six passages, and the chain ends at key7, which no other passage holds.
    let w = s.follow_links(a.id, &[&first], &key(0), 10, 10).unwrap();
    assert_eq!(vias(&w), (1..7).map(key).collect::<Vec<_>>());
    assert_eq!(w.ends, [key(7)]);
    // Stopped by the hop limit or the passage limit: where the chain ends is not known.
    // The identifier the limit left is named with the passages holding it.
    assert!(w.unfollowed.is_empty() && !w.limited);
    let w = s.follow_links(a.id, &[&first], &key(0), 3, 10).unwrap();
    assert_eq!((vias(&w), w.ends.is_empty()), ((1..4).map(key).collect::<Vec<_>>(), true));
    assert_eq!((w.unfollowed, w.limited), (vec![(key(4), 1)], true));
    let w = s.follow_links(a.id, &[&first], &key(0), 10, 2).unwrap();
    assert_eq!((vias(&w), w.ends.is_empty()), ((1..3).map(key).collect::<Vec<_>>(), true));
    assert_eq!((w.unfollowed, w.limited), (vec![(key(3), 1)], true));
    // An identifier more than two other passages hold is a hub: counted, not followed.
    let hub = s.archival_insert(a.id, "e", passage("ticket HUB0001A opened", unit(20))).unwrap();
    for i in 0..3u64 {
        s.archival_insert(a.id, "e", passage(&format!("note {i} on HUB0001A"), unit(21 + i))).unwrap();
    }
    let w = s.follow_links(a.id, &[&hub], "ticket", 10, 10).unwrap();
    assert!(w.followed.is_empty() && w.ends.is_empty() && !w.limited, "{w:?}");
    assert_eq!(w.unfollowed, [("HUB0001A".to_string(), 3)]);
    // The identifier asked about is not followed back.
    let last = s.passages_where(a.id, |p| p.text.contains(&key(7))).unwrap().remove(0);
    let w = s.follow_links(a.id, &[&last], &key(6), 10, 10).unwrap();
    assert!(w.followed.is_empty() && w.ends.is_empty(), "{w:?}");
}

#[test]
fn archival_pages_filter_delete_and_index_rebuild() {
    let (d, s) = store();
    let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
    let mut ids = vec![];
    for i in 0..20u64 {
        ids.push(s.archival_insert(a.id, "e", passage(&format!("fact {i} about item{i}"), unit(i))).unwrap().id);
    }
    let q = unit(7);
    let p0 = s.archival_search(a.id, "e", &q, 0, 5, None).unwrap();
    assert_eq!(p0.total, 20);
    assert_eq!(p0.items[0].passage.text, "fact 7 about item7");
    let exact = s.archival_exact(a.id, &q, 10).unwrap();
    let p1 = s.archival_search(a.id, "e", &q, 1, 5, None).unwrap();
    let paged: Vec<u64> = p0.items.iter().chain(&p1.items).map(|x| x.passage.id).collect();
    assert_eq!(paged, exact.iter().map(|x| x.0).collect::<Vec<_>>(), "page p holds ranks p*size..p*size+size-1");

    let f = s.archival_search(a.id, "e", &q, 0, 5, Some("ITEM1")).unwrap();
    assert_eq!(f.items.len(), 5, "item1 and item10..item19 contain 'item1'");
    assert!(f.items.iter().all(|x| x.passage.text.contains("item1")));

    s.archival_delete(a.id, "e", ids[7]).unwrap();
    let after = s.archival_search(a.id, "e", &q, 0, 5, None).unwrap();
    assert_eq!(after.total, 19);
    assert!(after.items.iter().all(|x| x.passage.id != ids[7]));
    drop(s);

    // The index is derived: deleting it loses nothing.
    for f in std::fs::read_dir(d.path().join("index")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let s = MemoryStore::open(d.path()).unwrap();
    assert!(s.index_was_rebuilt(a.id, "e", 384).unwrap());
    let again = s.archival_search(a.id, "e", &q, 0, 5, None).unwrap();
    assert_eq!(
        again.items.iter().map(|x| x.passage.id).collect::<Vec<_>>(),
        after.items.iter().map(|x| x.passage.id).collect::<Vec<_>>()
    );
    drop(s);
    // A saved, matching index is reused, not rebuilt.
    let s = MemoryStore::open(d.path()).unwrap();
    assert!(!s.index_was_rebuilt(a.id, "e", 384).unwrap());
}

/// Isotropic clusters of near-duplicates (the hardest case for HNSW): every search of an archive
/// under `EXACT_BELOW` passages returns exactly what brute force returns.
#[test]
fn a_small_archive_of_near_duplicates_is_searched_exactly() {
    let (_d, s) = store();
    let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut gauss = move || {
        // Sum of uniforms: close enough to a Gaussian for isotropic noise.
        (0..4)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
            })
            .sum::<f32>()
    };
    let normed = |v: Vec<f32>| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let centers: Vec<Vec<f32>> = (0..4).map(|_| normed((0..384).map(|_| gauss()).collect())).collect();
    let n = 3000;
    let items = (0..n)
        .map(|i| {
            let v = centers[i % 4].iter().map(|c| c + 0.005 * gauss()).collect();
            passage(&format!("near-duplicate {i}"), normed(v))
        })
        .collect();
    let stored = s.archival_insert_many(a.id, "e", items).unwrap();
    assert!(n < pagemind::memory::EXACT_BELOW);
    let mut missed = 0;
    for q in 0..20 {
        let query = normed(centers[q % 4].iter().map(|c| c + 0.005 * gauss()).collect());
        let got: Vec<u64> =
            s.archival_search(a.id, "e", &query, 0, 10, None).unwrap().items.iter().map(|x| x.passage.id).collect();
        let exact: Vec<u64> = s.archival_exact(a.id, &query, 10).unwrap().iter().map(|x| x.0).collect();
        missed += exact.iter().filter(|id| !got.contains(id)).count();
    }
    assert_eq!(missed, 0, "of 20 exact top-10 lists, {missed} passages missed");
    // A passage's own vector finds that passage first.
    for p in stored.iter().step_by(10) {
        let v = s.passage_vector(a.id, p.id).unwrap().unwrap();
        let got = s.archival_search(a.id, "e", &v, 0, 1, None).unwrap();
        assert_eq!(got.items[0].passage.id, p.id, "passage {}'s own vector", p.id);
    }
}

#[test]
fn oversized_and_invalid_inputs_are_clear_errors() {
    let (_d, s) = store();
    let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
    let big = "x".repeat(pagemind::memory::MAX_TEXT_BYTES + 1);
    assert!(s.append_message(a.id, Message::new(MessageRole::User, big)).unwrap_err().to_string().contains("limit"));
    assert!(s.create_agent("bad name!", "m", "e", "p", "h").unwrap_err().to_string().contains("invalid agent name"));
    assert!(s.create_agent("ana", "m", "e", "p", "h").unwrap_err().to_string().contains("already exists"));
    assert_eq!(s.message_count(a.id).unwrap(), 0);
}

#[test]
fn a_store_from_another_schema_version_is_refused() {
    let d = tempfile::tempdir().unwrap();
    drop(MemoryStore::open(d.path()).unwrap());
    {
        let db = redb::Database::create(d.path().join("pagemind.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap().insert("schema_version", 99).unwrap();
        tx.commit().unwrap();
    }
    let err = MemoryStore::open(d.path()).err().expect("must refuse").to_string();
    assert!(err.contains("schema version 99") && err.contains("newer pagemind"), "{err}");
}

#[test]
fn a_second_process_gets_a_clear_lock_error() {
    let d = tempfile::tempdir().unwrap();
    let _held = MemoryStore::open(d.path()).unwrap();
    let out = run(pagemind(Some(d.path())).args(["agents", "list"]));
    assert_clean_error(&out, "is in use by another pagemind process");
}

#[test]
fn killed_writer_loses_no_acknowledged_write() {
    let d = tempfile::tempdir().unwrap();
    run(pagemind(Some(d.path())).args(["agents", "create", "crash"]));
    let mut child = pagemind(Some(d.path()))
        .args(["debug", "write-stream", "--agent", "crash", "--count", "100000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = (vec![], vec![]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.0.len() + acked.1.len() < 120 {
        let l = lines.next().unwrap().unwrap();
        let (kind, id) = l.split_once(' ').unwrap();
        let id: u64 = id.parse().unwrap();
        if kind == "message" {
            acked.0.push(id)
        } else {
            acked.1.push(id)
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-stream
    child.wait().unwrap();

    let s = MemoryStore::open(d.path()).unwrap();
    let a = s.agent("crash").unwrap();
    let msgs: Vec<u64> = s.messages(a.id).unwrap().iter().map(|m| m.id).collect();
    for id in &acked.0 {
        assert!(msgs.contains(id), "acknowledged message {id} lost");
    }
    let n = s.passage_count(a.id).unwrap();
    assert!(n >= acked.1.len());
    for id in &acked.1 {
        let p = s.passage(a.id, *id).unwrap().expect("acknowledged passage lost");
        assert!(p.text.starts_with("stream passage"));
        assert!(s.passage_vector(a.id, *id).unwrap().is_some(), "text and vector are written together");
    }
    // The index is consistent with redb: every passage is findable by its own vector.
    let last = *acked.1.last().unwrap();
    let v = s.passage_vector(a.id, last).unwrap().unwrap();
    let hit = s.archival_search(a.id, &a.embedding_model, &v, 0, 1, None).unwrap();
    assert_eq!(hit.total, n);
    assert_eq!(hit.items[0].passage.id, last);
}

#[test]
fn the_queue_kept_in_memory_matches_the_disk_after_every_kind_of_write() {
    let d = tempfile::tempdir().unwrap();
    let check = |s: &MemoryStore, id: u64| {
        let cached = s.context_messages(id).unwrap();
        let disk: Vec<Message> = s.messages(id).unwrap().into_iter().filter(|m| m.in_context).collect();
        assert_eq!(cached, disk);
        cached
    };
    let s = MemoryStore::open(d.path()).unwrap();
    let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
    let ms: Vec<Message> =
        (0..6).map(|i| s.append_message(a.id, Message::new(MessageRole::User, format!("m{i}"))).unwrap()).collect();
    assert_eq!(check(&s, a.id).len(), 6);
    // A message stored out of context (a replayed history) does not join the queue.
    let mut old = Message::new(MessageRole::User, "replayed");
    old.in_context = false;
    s.append_messages(a.id, vec![old]).unwrap();
    assert_eq!(check(&s, a.id).len(), 6);
    // A flush evicts and sets the summary; both are seen at once.
    let sum = pagemind::memory::Summary { text: "two gone".into(), updated_at: 0, messages_covered: 2 };
    s.flush_queue(a.id, &sum, &ms[..2]).unwrap();
    assert_eq!(check(&s, a.id)[0].content, "m2");
    assert_eq!(s.summary(a.id).unwrap().text, "two gone");
    // Deleted (/pop), rewritten (/rethink), brought back into context.
    s.delete_messages(a.id, &[ms[5].id]).unwrap();
    let mut edited = ms[3].clone();
    edited.content = "m3 edited".into();
    let mut back = ms[0].clone();
    back.in_context = true;
    s.update_messages(a.id, &[edited, back]).unwrap();
    let q = check(&s, a.id);
    assert_eq!(q.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["m0", "m2", "m3 edited", "m4"]);
    // A new process reads the same from disk.
    drop(s);
    let s = MemoryStore::open(d.path()).unwrap();
    assert_eq!(check(&s, a.id), q);
    assert_eq!(s.summary(a.id).unwrap().text, "two gone");
    // A deleted agent leaves nothing behind in memory.
    s.delete_agent("ana").unwrap();
    let b = s.create_agent("ana", "m", "e", "p", "h").unwrap();
    assert!(check(&s, b.id).is_empty());
    assert_eq!(s.summary(b.id).unwrap().text, "");
}

#[cfg(unix)]
#[test]
fn a_new_store_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("new-home");
    let s = MemoryStore::open(&home).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(s.path()), 0o600);
}

#[test]
fn a_schema_1_store_is_upgraded_in_place_and_keeps_its_sources() {
    let d = tempfile::tempdir().unwrap();
    let src = |path: &str| {
        serde_json::json!({"path": path, "sha256": "ab", "bytes": 3, "kind": "text", "chunk_tokens": 100,
            "overlap": 10, "chunks": 1, "complete": true, "loaded_at": 1, "note": ""})
    };
    {
        // Schema 1 as it was written: sources keyed by the path text, JSON values.
        let db = redb::Database::create(d.path().join("pagemind.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap().insert("schema_version", 1).unwrap();
        let mut t = tx.open_table(redb::TableDefinition::<(u64, &str), &[u8]>::new("sources")).unwrap();
        for (agent, path) in [(1, "/docs/a.md"), (1, "/docs/b.md"), (2, "/x.txt")] {
            t.insert((agent, path), serde_json::to_vec(&src(path)).unwrap().as_slice()).unwrap();
        }
        drop(t);
        tx.commit().unwrap();
    }
    let s = MemoryStore::open(d.path()).unwrap();
    let paths: Vec<String> = s.sources(1).unwrap().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/docs/a.md", "/docs/b.md"]);
    assert_eq!(s.source(2, b"/x.txt").unwrap().unwrap().chunks, 1);
    drop(s);
    // Upgraded once: the version is the current one and the old table is gone.
    let db = redb::Database::create(d.path().join("pagemind.redb")).unwrap();
    let tx = db.begin_read().unwrap();
    let v = tx.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap().get("schema_version").unwrap();
    assert_eq!(v.unwrap().value(), pagemind::memory::SCHEMA_VERSION);
    assert!(tx.open_table(redb::TableDefinition::<(u64, &str), &[u8]>::new("sources")).is_err());
}

#[cfg(unix)]
#[test]
fn sources_whose_names_differ_only_in_non_utf8_bytes_are_two_sources() {
    use pagemind::memory::{source_key, source_name, Source};
    use std::os::unix::ffi::OsStrExt;
    let (_d, s) = store();
    let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
    let p1 = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/docs/caf\xe9.txt"));
    let p2 = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/docs/caf\xe8.txt"));
    // A lossy conversion gives both the same name; ours does not.
    assert_eq!(p1.to_string_lossy(), p2.to_string_lossy());
    assert_ne!(source_name(p1), source_name(p2));
    assert_eq!(source_name(p1), "/docs/caf\\xE9.txt");
    for (i, p) in [p1, p2].into_iter().enumerate() {
        let mut rec = Source::for_path(p);
        rec.chunks = 1;
        rec.complete = true;
        let mut item = passage(&format!("passage {i}"), unit(i as u64));
        item.source = rec.path.clone();
        s.source_append(a.id, "e", &rec, vec![item]).unwrap();
    }
    assert_eq!(s.sources(a.id).unwrap().len(), 2);
    assert_eq!(s.source_remove(a.id, "e", &source_key(p1)).unwrap(), 1);
    let left = s.sources(a.id).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key(), source_key(p2).as_slice());
    assert_eq!(s.passage_count(a.id).unwrap(), 1);
    assert_eq!(s.source_remove(a.id, "e", b"/nope").unwrap(), 0);
}

#[test]
fn a_damaged_row_is_an_error_naming_its_table_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let id = {
        let s = MemoryStore::open(d.path()).unwrap();
        let a = s.create_agent("ana", "m", "e", "p", "h").unwrap();
        s.append_message(a.id, Message::new(MessageRole::User, "hello")).unwrap();
        a.id
    };
    {
        let db = redb::Database::create(d.path().join("pagemind.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        let mut t = tx.open_table(redb::TableDefinition::<(u64, u64), &[u8]>::new("messages")).unwrap();
        t.insert((id, 999), b"{\"role\": 7".as_slice()).unwrap();
        drop(t);
        tx.commit().unwrap();
    }
    let s = MemoryStore::open(d.path()).unwrap();
    let e = s.messages(id).unwrap_err();
    assert!(matches!(e, pagemind::Error::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("table 'messages' is damaged"), "{e}");
    assert!(!e.is_for_model(), "a damaged store must end the turn, not be shown to the model");
}
