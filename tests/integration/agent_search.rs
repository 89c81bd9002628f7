//! Searches within the agent loop: archival (documents, links between passages, results cut to
//! the window) and recall (what was said, by whom, when), against the scripted stand-in model
//! of [`super::agent`].

use super::agent::{call, configure, model, say, setup, w, Collect, Script};
use crate::util;
use pagemind::agent::{Agent, Quiet};
use pagemind::memory::MemoryStore;
use serde_json::json;

/// Store `text` as a passage of `source` (at `span`), embedded by the tiny test embedder.
fn put_passage(s: &MemoryStore, agent: u64, text: &str, source: &str, span: &str) {
    let vector = util::tiny_embedder().embed(&[text]).unwrap().remove(0);
    let p = pagemind::memory::NewPassage {
        text: text.into(),
        source: source.into(),
        span: span.into(),
        metadata: json!({}),
        vector,
    };
    s.archival_insert(agent, util::MINILM, p).unwrap();
}

#[test]
fn a_document_agent_searches_first_and_always_answers_with_retrieved_sources() {
    let (_d, s) = setup();
    configure(&s, |c| c.search_first = true);
    let rec = s.agent("bot").unwrap();
    put_passage(&s, rec.id, "The pump pressure limit is 8 bar.", "/docs/pump.md", "lines 3-4");
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    // The model searches, then does something else instead of answering.
    sc.calls.push_back(call("archival_memory_search", json!({"query": "pump pressure", "page": 1})));
    sc.calls.push_back(call("core_memory_append", json!({"label": "human", "content": "asks about pumps"})));
    sc.calls.push_back(say("8 bar [source: /docs/pump.md lines 3-4]"));
    let r = a.turn(&mut sc, "What is the pump pressure limit?", &mut Collect(vec![])).unwrap();
    assert_eq!(
        sc.restricted,
        [Some("archival_memory_search".to_string()), None, Some("send_message".to_string())],
        "search restricted first, free step, then the forced answer"
    );
    assert_eq!(r.messages, ["8 bar [source: /docs/pump.md lines 3-4]"]);
    assert!(r.steps[0].continues, "the forced search always continues the turn");
    assert_eq!(r.retrieved.len(), 1);
    assert_eq!((r.retrieved[0].source.as_str(), r.retrieved[0].span.as_str()), ("/docs/pump.md", "lines 3-4"));
    // Without documents, the same agent takes free steps.
    let (_d2, s2) = setup();
    configure(&s2, |c| c.search_first = true);
    let mut a2 = Agent::open(&s2, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc2 = Script::default();
    a2.turn(&mut sc2, "hi", &mut Collect(vec![])).unwrap();
    assert_eq!(sc2.restricted, [Some("conversation_search".to_string())], "only the memory-first rule");
}

#[test]
fn a_function_result_too_big_for_the_window_is_cut_to_fit() {
    let (_d, s) = setup();
    let rec = s.agent("bot").unwrap();
    // Three passages of UUID-like text, 2,886 characters each: more than half the window in
    // the tiny model's tokens. Their ids differ in the last digit, so none links to another.
    for k in 0..3 {
        let text: String = (0..78).map(|i| format!("{i:08x}-ab10-41d0-b646-e1f40a097c9{k} ")).collect::<String>();
        put_passage(&s, rec.id, &text, "kv", "");
    }
    let window = w(1280);
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(window)).unwrap();
    let mut sc = Script::default();
    // Three different searches (a repeated one is not run again), each matching one passage
    // (a verbatim search leaves out passages the turn has shown).
    for q in ["e1f40a097c90", "e1f40a097c91", "e1f40a097c92"] {
        sc.calls.push_back(call("archival_memory_search", json!({"query": q, "page": 1})));
    }
    sc.calls.push_back(say("done"));
    let r = a.turn(&mut sc, "look it up", &mut Collect(vec![])).unwrap();
    assert_eq!(r.messages, ["done"]);
    for st in &r.steps[..3] {
        assert!(st.result.ends_with("[truncated]"), "{}", st.result);
        let n = model().tokenizer.encode(&st.result, false).unwrap().len();
        assert!(n < window / 2, "a result of {n} tokens");
    }
    // Every prompt fit, with room for a step, flushing as needed.
    assert!(sc.prompts.iter().all(|p| p.len() + 64 < window));
    assert!(r.flushes >= 1);
}

#[test]
fn recall_search_finds_what_was_said_not_its_own_plumbing() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(say("What a lovely name."));
    a.turn(&mut sc, "My cat is called Biscuit.", &mut Collect(vec![])).unwrap();
    for i in 0..3 {
        a.turn(&mut sc, &format!("small talk number {i}"), &mut Collect(vec![])).unwrap();
    }
    sc.calls.push_back(call("conversation_search", json!({"query": "What is my cat's name?", "page": 1})));
    sc.calls.push_back(call("conversation_search", json!({"query": "cat", "page": 3})));
    sc.calls.push_back(say("Biscuit"));
    let r = a.turn(&mut sc, "What is my cat's name?", &mut Collect(vec![])).unwrap();
    let first = &r.steps[0].result;
    assert!(first.starts_with("Showing 2 of 2 results"), "only the two messages about the cat: {first}");
    assert!(first.contains("1. [") && first.contains("user: My cat is called Biscuit."), "{first}");
    assert!(!first.contains("conversation_search") && !first.contains("function_result"), "{first}");
    assert_eq!(r.steps[0].hits.len(), 2);
    // A page that does not exist says which pages do.
    assert_eq!(r.steps[1].status, "Failed");
    assert!(r.steps[1].result.contains("There is no page 3: there are 1 page(s)"), "{}", r.steps[1].result);
    assert_eq!(r.messages, ["Biscuit"]);
}

#[test]
fn a_replayed_turn_stamps_the_agents_replies_with_its_own_time_and_its_relative_times_are_resolved() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(call("core_memory_append", json!({"label": "human", "content": "Has a cat, Biscuit"})));
    sc.calls.push_back(say("Biscuit is a lovely name."));
    let then = chrono::DateTime::parse_from_rfc3339("2023-05-08T13:56:00Z").unwrap().to_utc();
    a.turn_at(&mut sc, "My cat Biscuit came home yesterday.", Some("Ana"), then, &mut Collect(vec![])).unwrap();
    let turn: Vec<_> =
        s.messages(a.record.id).unwrap().into_iter().filter(|m| m.created_at < 1_700_000_000_000).collect();
    // The user's message and two steps, each with its result.
    assert_eq!(turn.len(), 5, "{turn:?}");
    assert!(turn.iter().all(|m| m.created_at == then.timestamp_millis()), "{turn:?}");
    // A live turn after it is stamped with the clock again.
    a.turn(&mut sc, "hello", &mut Collect(vec![])).unwrap();
    let last = s.messages(a.record.id).unwrap().pop().unwrap();
    assert!(last.created_at > then.timestamp_millis() + 86_400_000, "{last:?}");
    sc.calls.push_back(call("conversation_search", json!({"query": "Biscuit", "page": 1})));
    let r = a.turn(&mut sc, "What is my cat called?", &mut Collect(vec![])).unwrap();
    let found = &r.steps[0].result;
    assert!(found.contains("[2023-05-08 13:56] you: Biscuit is a lovely name."), "{found}");
    // A relative time in what was said gets the date it meant then, not now.
    assert!(found.contains("Ana: My cat Biscuit came home yesterday (7 May 2023)."), "{found}");
}

#[test]
fn a_search_naming_one_speaker_finds_only_what_that_speaker_said() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    let then = chrono::DateTime::parse_from_rfc3339("2023-05-08T13:56:00Z").unwrap().to_utc();
    for (who, text) in [
        ("Mel", "We ran a charity race for mental health last weekend."),
        ("Caro", "A charity race, how wonderful! I am proud of you."),
        ("Mel", "Thanks! My son loved the race too."),
    ] {
        sc.calls.push_back(say("Nice."));
        a.turn_at(&mut sc, text, Some(who), then, &mut Collect(vec![])).unwrap();
    }
    let search = |q: &str| call("conversation_search", json!({"query": q, "page": 1}));
    sc.calls.extend([search("caro charity race"), search("charity race"), search("Mel Caro race"), say("ok")]);
    let r = a.turn(&mut sc, "What did Caro do?", &mut Collect(vec![])).unwrap();
    let named = &r.steps[0].result;
    // Named in any case: only Caro's words, and the result says why.
    assert!(named.starts_with("Only what Caro said (the query names Caro).\nShowing 1 of 1 results"), "{named}");
    assert!(named.contains("Caro: A charity race, how wonderful!") && !named.contains("Mel:"), "{named}");
    // No speaker named, or two: everyone's words.
    for step in &r.steps[1..3] {
        assert!(step.result.starts_with("Showing 3 of 3 results"), "{}", step.result);
    }
    let p = s
        .recall_search_filtered(
            a.record.id,
            "race",
            None,
            &pagemind::memory::RecallFilter {
                speaker: pagemind::memory::SpeakerFilter::Is("mel".into()),
                ..Default::default()
            },
            0,
            5,
        )
        .unwrap();
    assert_eq!((p.page.total, p.speaker.as_deref()), (2, Some("mel")), "a speaker filter matches names in any case");
    let speakers = ["Ana Lima".to_string(), "Bo".to_string()];
    assert_eq!(pagemind::memory::named_speaker("ana's trip", &speakers), Some("Ana Lima"));
    assert_eq!(pagemind::memory::named_speaker("banana trip", &speakers), None, "whole words only");
    assert_eq!(pagemind::memory::named_speaker("Ana and Bo", &speakers), None);
    assert_eq!(pagemind::memory::named_speaker("ana's trip", &speakers[..1]), None, "nobody else to leave out");
}

#[test]
fn an_archival_result_follows_the_identifiers_it_shares_with_a_few_passages_and_names_hubs_and_a_reply_short_of_the_end_is_refused_once(
) {
    let (_d, s) = setup();
    let rec = s.agent("bot").unwrap();
    let texts = [
        "Ticket PUMP-2231 was closed: see part AX-99871 for the fix.",
        "Part ax-99871 is the relief valve of kit KIT-00417B.",
        "Kit KIT-00417B ships in May from depot DEPOT-77A1.",
        "Ticket PUMP-2232 is about the paint colour RAL-9010X.",
        "Paint RAL-9010X is white.",
        "RAL-9010X is used on every pump.",
        "Stock of RAL-9010X is low.",
    ];
    for t in texts {
        put_passage(&s, rec.id, t, "tickets", "");
    }
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    let search = |q: &str| call("archival_memory_search", json!({"query": q, "page": 1}));
    let short = say("Kit KIT-00417B.");
    sc.calls.extend([search("PUMP-2231"), search("PUMP-2232"), search("ax-99871"), short.clone(), short]);
    let r = a.turn(&mut sc, "What fixed ticket PUMP-2231?", &mut Collect(vec![])).unwrap();
    // The verbatim match alone, then the part it names (matched in any case), the kit that
    // part names, and where the links end; the ticket number searched for is not followed.
    assert_eq!(
        r.steps[0].result,
        "Showing 1 of 1 results (page 1/1):\n1. [source: tickets] Ticket PUMP-2231 was closed: see part AX-99871 for the fix.\n\
         Followed links (passages that hold an identifier shown above), ending at \"DEPOT-77A1\" (is in no other \
         passage):\n\
         - [source: tickets] Part ax-99871 is the relief valve of kit KIT-00417B.\n\
         - [source: tickets] Kit KIT-00417B ships in May from depot DEPOT-77A1."
    );
    // The next step is told where the links end, last before it.
    let next = model().tokenizer.decode(&sc.prompts[1], false).unwrap();
    // (in the JSON of the function result)
    assert!(next.contains(r#"the followed links end at \"DEPOT-77A1\": reply with that."#), "{next}");
    // An identifier three other passages hold is a hub: named, not followed.
    let hub = &r.steps[1].result;
    assert!(!hub.contains("Followed links"), "{hub}");
    assert!(
        hub.ends_with("\nLink: \"RAL-9010X\" is also in 3 other passages; search for it to follow the link."),
        "{hub}"
    );
    // Passages reached by a link are sources of the turn, like the results they hang from, and
    // a search of what they hold finds nothing new: the first is shown again.
    assert_eq!(
        r.steps[2].result,
        "Nothing new: it is only in the 2 passages shown earlier in this turn, the first: \
         [source: tickets] Ticket PUMP-2231 was closed: see part AX-99871 for the fix."
    );
    assert_eq!(r.retrieved.len(), 4, "{:?}", r.retrieved);
    // A reply naming a link the walk went through, not where it ends, is refused once, saying
    // where the links end; the same reply again (the user may have asked for the kit) is sent.
    assert_eq!((r.steps[3].status, r.steps[3].continues), ("Failed", true));
    assert!(
        r.steps[3].result.starts_with(
            "Not sent: \"KIT-00417B\" is not where the links end: it leads on to another passage, and the followed \
             links end at \"DEPOT-77A1\". The user asked: \"What fixed ticket PUMP-2231?\"."
        ),
        "{}",
        r.steps[3].result
    );
    assert_eq!(sc.restricted[4].as_deref(), Some("send_message"));
    assert_eq!(r.messages, ["Kit KIT-00417B."]);
    let unsent = s.messages(a.record.id).unwrap().into_iter().filter(|m| m.unsent).count();
    assert_eq!(unsent, 1, "the refused reply is not the agent's words");
    // The end itself, in the next turn (a new turn's search follows the links again), is sent.
    sc.calls.extend([search("PUMP-2231"), say("From depot DEPOT-77A1, via kit KIT-00417B.")]);
    let r = a.turn(&mut sc, "Where does the fix for PUMP-2231 ship from?", &mut Collect(vec![])).unwrap();
    assert_eq!(r.messages, ["From depot DEPOT-77A1, via kit KIT-00417B."]);
    assert_eq!(r.steps.len(), 2);
}

#[test]
fn a_search_repeated_within_a_turn_is_not_run_again_and_the_answer_comes_next() {
    let (_d, s) = setup();
    configure(&s, |c| c.memory_first = false);
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    a.turn(&mut sc, "My cat is called Biscuit.", &mut Collect(vec![])).unwrap();
    let search = || call("conversation_search", json!({"query": "cat", "page": 1}));
    sc.calls.extend([search(), search(), search(), say("Biscuit")]);
    let r = a.turn(&mut sc, "What is my cat's name?", &mut Collect(vec![])).unwrap();
    assert!(r.steps[0].result.starts_with("Showing 1 of 1 results"), "{}", r.steps[0].result);
    assert!(r.steps[1].result.starts_with("You ran this same search a step ago: answer"), "{}", r.steps[1].result);
    assert!(r.steps[1].result.contains(&r.steps[0].result), "the results again: {}", r.steps[1].result);
    assert!(r.steps[1].hits.is_empty());
    // The step after a repeat may only answer: the third search was not allowed.
    assert_eq!(sc.restricted[sc.restricted.len() - 3..], [None, None, Some("send_message".to_string())]);
    assert_eq!(r.messages, ["(forced)"]);
    // Another page of the same query is a different search.
    sc.calls.clear();
    sc.calls.extend([search(), call("conversation_search", json!({"query": "cat", "page": 2}))]);
    let r = a.turn(&mut sc, "And again?", &mut Collect(vec![])).unwrap();
    assert_eq!(r.steps[1].status, "Failed", "{}", r.steps[1].result);
}

#[test]
fn a_search_of_an_empty_archive_points_to_the_conversation() {
    let (_d, s) = setup();
    let mut a = Agent::open(&s, model(), Some(util::tiny_embedder()), "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(call("archival_memory_search", json!({"query": "my job", "page": 1})));
    sc.calls.push_back(say("I don't know yet."));
    let r = a.turn(&mut sc, "What is my job?", &mut Collect(vec![])).unwrap();
    assert!(r.steps[0].result.starts_with("No results found: archival memory is empty"), "{}", r.steps[0].result);
    assert!(r.steps[0].result.contains("conversation_search"), "{}", r.steps[0].result);
    // Once something is saved, an unrelated query still finds it (ranked by meaning).
    sc.calls.push_back(call("archival_memory_insert", json!({"content": "Ana is a nurse"})));
    sc.calls.push_back(call("archival_memory_search", json!({"query": "weather", "page": 1})));
    sc.calls.push_back(say("ok"));
    let r = a.turn(&mut sc, "Remember: I am a nurse.", &mut Collect(vec![])).unwrap();
    assert!(r.steps[1].result.contains("Ana is a nurse"), "{}", r.steps[1].result);
}

#[test]
fn an_offered_option_that_no_search_result_supports_is_refused_once_naming_the_denial() {
    let (_d, s) = setup();
    configure(&s, |c| c.memory_first = false);
    let mut a = Agent::open(&s, model(), None, "bot", Some(w(2048))).unwrap();
    let mut sc = Script::default();
    sc.calls.push_back(say("Nice!"));
    a.turn(&mut sc, "On rainy days I bake bread with my kids.", &mut Quiet).unwrap();
    let q = "What do I do on rainy days? Select the correct answer: (a) Read a book and paint. \
             (b) Not mentioned in the conversation.";
    let search = || call("conversation_search", json!({"query": "rainy days", "page": 1}));
    sc.calls.extend([search(), say("You read a book and paint."), say("Not mentioned in the conversation.")]);
    let r = a.turn(&mut sc, q, &mut Quiet).unwrap();
    assert_eq!((r.steps[1].status, r.steps[1].continues), ("Failed", true));
    assert!(
        r.steps[1].result.starts_with(
            "Not sent: \"Read a book and paint\" is not what the results say: none of them has \"read\", \"book\" \
             or \"paint\"."
        ),
        "{}",
        r.steps[1].result
    );
    assert!(r.steps[1].result.ends_with("the option to choose is \"Not mentioned in the conversation\"."));
    assert_eq!(sc.restricted.last().cloned().flatten().as_deref(), Some("send_message"), "the answer comes next");
    assert_eq!(r.messages, ["Not mentioned in the conversation."]);
    // An option the results hold is sent; so is the same unsupported reply sent twice, and one
    // in a turn that searched nothing (the answer may be in main context).
    let q2 = "What do I bake on rainy days? Select the correct answer: (a) Not mentioned in the conversation. \
              (b) Bread with my kids.";
    sc.calls.extend([search(), say("Bread with your kids.")]);
    assert_eq!(a.turn(&mut sc, q2, &mut Quiet).unwrap().messages, ["Bread with your kids."]);
    // (Options the conversation never held: the first question's are in recall now.)
    let q3 = "What do I do on rainy days? (a) Knit a scarf (b) Not mentioned in the conversation";
    let twice = say("Knit a scarf.");
    sc.calls.extend([search(), twice.clone(), twice]);
    let r = a.turn(&mut sc, q3, &mut Quiet).unwrap();
    assert_eq!((r.messages.as_slice(), r.steps.len()), (["Knit a scarf.".to_string()].as_slice(), 3));
    sc.calls.push_back(say("Knit a scarf."));
    assert_eq!(a.turn(&mut sc, q3, &mut Quiet).unwrap().steps.len(), 1);
}
