//! The step grammar on a tiny fake vocabulary (no model): what it allows and what it cannot.

use super::*;
use crate::tools::builtin_tools;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::sync::Arc;
use toktrie::{ApproximateTokEnv, TokRxInfo, TokTrie};

const EOS: u32 = 256 + 6;

/// Tokens 0..=255 are the bytes; then a few multi-byte tokens; then a special end token.
fn fake_env() -> TokEnv {
    let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for w in ["send_message", "\": \"", "\", \"", "core_memory_", "page", "{\"thoughts"] {
        words.push(w.as_bytes().to_vec());
    }
    words.push(b"\xFF<|end|>".to_vec());
    assert_eq!(words.len() as u32, EOS + 1);
    let info = TokRxInfo::new(words.len() as u32, EOS);
    Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)))
}

fn grammar(format: StepFormat) -> StepGrammar {
    let branches: Vec<Branch> = builtin_tools(&["persona".into(), "human".into()]).iter().map(Branch::from).collect();
    StepGrammar::with_env(fake_env(), &branches, format, true, EOS).unwrap()
}

/// How many bytes of `text` the grammar accepts, feeding byte tokens one by one.
fn accepted_prefix(g: &StepGrammar, text: &str) -> (usize, Matcher) {
    let mut m = g.matcher().unwrap();
    for (i, b) in text.bytes().enumerate() {
        let mask = m.compute_mask().unwrap();
        if !mask.is_allowed(b as u32) {
            return (i, m);
        }
        m.consume_token(b as u32).unwrap();
    }
    (text.len(), m)
}

/// A random walk through the grammar: uniformly random allowed tokens.
fn random_walk(g: &StepGrammar, rng: &mut StdRng) -> String {
    let mut m = g.matcher().unwrap();
    let mut out = vec![];
    let env = fake_env();
    for _ in 0..20_000 {
        if m.is_stopped() {
            break;
        }
        let mask = m.compute_mask().unwrap();
        if mask.is_allowed(EOS) && (mask.num_set() == 1 || rng.random_bool(0.5)) {
            break;
        }
        let allowed: Vec<u32> = (0..EOS).filter(|t| mask.is_allowed(*t)).collect();
        // Prefer closing quotes/braces sometimes so walks finish well inside the bounds.
        let t = allowed[rng.random_range(0..allowed.len())];
        m.consume_token(t).unwrap();
        out.extend(env.tok_trie().token(t));
    }
    String::from_utf8(out).expect("the grammar only allows UTF-8")
}

#[test]
fn random_walks_always_parse_and_validate() {
    for format in [StepFormat::Json, StepFormat::Qwen] {
        let g = grammar(format);
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..150 {
            let text = random_walk(&g, &mut rng);
            let call = g.parse(&text).unwrap_or_else(|e| panic!("{format:?}: {e}\n{text}"));
            seen.insert(call.function);
        }
        assert!(seen.len() >= 6, "walks should reach most tools, saw {seen:?}");
    }
}

#[test]
fn names_outside_the_registry_are_impossible() {
    let g = grammar(StepFormat::Json);
    let (n, _) = accepted_prefix(&g, r#"{"thoughts": "x", "function": "rm_rf""#);
    assert_eq!(n, r#"{"thoughts": "x", "function": ""#.len());
    let (n, _) = accepted_prefix(&g, r#"{"thoughts": "x", "function": "send_messages""#);
    assert_eq!(n, r#"{"thoughts": "x", "function": "send_message"#.len());
}

#[test]
fn missing_arguments_wrong_types_and_bad_enums_are_impossible() {
    let g = grammar(StepFormat::Json);
    let head = r#"{"thoughts": "x", "function": "#;
    let missing = format!(r#"{head}"send_message", "arguments": {{}}"#);
    assert_eq!(accepted_prefix(&g, &missing).0, missing.len() - 1, "empty arguments refused");
    let wrong_type = format!(r#"{head}"conversation_search", "arguments": {{"query": "a", "page": "1"}}"#);
    assert_eq!(accepted_prefix(&g, &wrong_type).0, wrong_type.find(r#""1""#).unwrap());
    let negative = format!(r#"{head}"conversation_search", "arguments": {{"query": "a", "page": -1}}"#);
    assert!(accepted_prefix(&g, &negative).0 < negative.len());
    let bad_enum = format!(r#"{head}"core_memory_append", "arguments": {{"label": "system""#);
    assert_eq!(accepted_prefix(&g, &bad_enum).0, bad_enum.find("system").unwrap());
    let bad_date =
        format!(r#"{head}"conversation_search", "arguments": {{"query": "a", "page": 1, "start_date": "2024-13-01""#);
    assert_eq!(accepted_prefix(&g, &bad_date).0, bad_date.find("13").unwrap() + 1);
    let extra = format!(r#"{head}"send_message", "arguments": {{"message": "a", "x""#);
    assert!(accepted_prefix(&g, &extra).0 < extra.len(), "no unknown arguments");
}

#[test]
fn unterminated_strings_cannot_end_a_step() {
    let g = grammar(StepFormat::Json);
    let text = r#"{"thoughts": "x", "function": "send_message", "arguments": {"message": "never closed"#;
    let (n, mut m) = accepted_prefix(&g, text);
    assert_eq!(n, text.len());
    assert!(!m.is_accepting().unwrap());
    assert!(!m.compute_mask().unwrap().is_allowed(EOS));
    // And string lengths are bounded: a message cannot grow past its limit.
    let long =
        format!(r#"{{"thoughts": "x", "function": "send_message", "arguments": {{"message": "{}"#, "a".repeat(601));
    assert_eq!(accepted_prefix(&g, &long).0, long.len() - 1);
}

/// Standard escapes and raw UTF-8 work; `\uXXXX` escapes are not generated (raw UTF-8 is
/// shorter and small models misuse them).
#[test]
fn escapes_and_unicode_inside_strings_work() {
    for (format, text) in [
        (StepFormat::Json, r#"{"thoughts": "greet", "function": "send_message", "arguments": {"message": "She said \"hi\" é\ncafé — 日本 🚀 \\ ok"}}"#.to_string()),
        (StepFormat::Qwen, "<tool_call>\n{\"thoughts\": \"greet\", \"name\": \"send_message\", \"arguments\": {\"message\": \"She said \\\"hi\\\" é\\ncafé — 日本 🚀 \\\\ ok\"}}\n</tool_call>".to_string()),
    ] {
        let g = grammar(format);
        let (n, mut m) = accepted_prefix(&g, &text);
        assert_eq!(n, text.len(), "{format:?}: refused at {:?}", &text[n..]);
        assert!(m.is_accepting().unwrap());
        let call = g.parse(&text).unwrap();
        assert_eq!(call.arguments["message"], "She said \"hi\" é\ncafé — 日本 🚀 \\ ok");
        assert_eq!(call.thoughts, "greet");
        assert!(!call.continues());
    }
}

/// The step format has one owner: what `StepFormat::render` writes is exactly what the grammar
/// makes the model write, and parses back to the same call.
#[test]
fn rendered_calls_are_grammar_output_and_parse_back() {
    let calls = [
        ToolCall {
            thoughts: "save".into(),
            function: "core_memory_append".into(),
            arguments: json!({"label": "human", "content": "Has a cat, \"Biscuit\"."}),
        },
        ToolCall {
            thoughts: String::new(),
            function: "conversation_search".into(),
            arguments: json!({"query": "cat name", "page": 1}),
        },
        ToolCall {
            thoughts: "hi".into(),
            function: "send_message".into(),
            arguments: json!({"message": "Hello!\nBye."}),
        },
    ];
    for format in [StepFormat::Json, StepFormat::Qwen] {
        let g = grammar(format);
        for c in &calls {
            let text = format.render(c);
            let (n, mut m) = accepted_prefix(&g, &text);
            assert_eq!(n, text.len(), "{format:?}: refused at {:?} of {text}", &text[n..]);
            assert!(m.is_accepting().unwrap(), "{text}");
            assert_eq!(&g.parse(&text).unwrap(), c);
        }
    }
}

/// There is no heartbeat flag to get wrong: every call but send_message continues the turn.
#[test]
fn steps_carry_no_heartbeat_flag() {
    let g = grammar(StepFormat::Json);
    let text = r#"{"thoughts": "x", "function": "send_message", "arguments": {"message": "a"}, "request_heartbeat""#;
    assert!(accepted_prefix(&g, text).0 < text.len());
    let search = g
        .parse(r#"{"thoughts": "x", "function": "conversation_search", "arguments": {"query": "a", "page": 1}}"#)
        .unwrap();
    assert!(search.continues());
}

/// Pages are 1-based and bounded by the registry's limit.
#[test]
fn pages_past_the_limit_are_impossible() {
    let g = grammar(StepFormat::Json);
    let ok = format!(
        r#"{{"thoughts": "x", "function": "conversation_search", "arguments": {{"query": "a", "page": {}}}}}"#,
        crate::tools::MAX_PAGE
    );
    assert_eq!(accepted_prefix(&g, &ok).0, ok.len());
    for bad in ["34", "0", "11"] {
        let text = format!(
            r#"{{"thoughts": "x", "function": "conversation_search", "arguments": {{"query": "a", "page": {bad}}}}}"#
        );
        assert!(accepted_prefix(&g, &text).0 < text.len(), "page {bad} refused");
    }
}

#[test]
fn a_json_schema_constraint_allows_only_its_values_and_refuses_bad_schemas() {
    let schema = serde_json::json!({"type": "object", "properties": {
        "unit": {"type": "string", "enum": ["celsius", "kelvin"]}, "n": {"type": "integer"}},
        "required": ["unit", "n"], "additionalProperties": false});
    let c = JsonConstraint::with_env(fake_env(), &schema, EOS).unwrap();
    let accepts = |text: &str| {
        let mut m = c.matcher().unwrap();
        for b in text.bytes() {
            if !m.compute_mask().unwrap().is_allowed(b as u32) {
                return false;
            }
            m.consume_token(b as u32).unwrap();
        }
        m.is_accepting().unwrap()
    };
    assert!(accepts(r#"{"unit": "kelvin", "n": 3}"#));
    assert!(!accepts(r#"{"unit": "fahrenheit", "n": 3}"#), "not in the enum");
    assert!(!accepts(r#"{"unit": "kelvin", "n": 3.5}"#), "not an integer");
    assert!(!accepts(r#"{"unit": "kelvin"}"#), "missing a required property");
    assert!(!accepts(r#"{"unit": "kelvin", "n": 3, "x": 1}"#), "no extra properties");
    assert!(!accepts(r#"{"unit": "kelvin", "n": 3"#), "unfinished");
    for bad in [serde_json::json!("object"), serde_json::json!({"type": "integer", "minimum": "x"})] {
        let e = JsonConstraint::with_env(fake_env(), &bad, EOS).err().unwrap_or_else(|| panic!("accepted {bad}"));
        assert!(e.to_string().contains("JSON schema"), "{e}");
    }
}

#[test]
fn qwen_steps_put_thoughts_first_and_the_older_layout_still_parses() {
    let call =
        ToolCall { thoughts: "look".into(), function: "send_message".into(), arguments: json!({"message": "hi"}) };
    let text = StepFormat::Qwen.render(&call);
    assert!(text.starts_with("<tool_call>\n{\"thoughts\": \"look\", \"name\""), "{text}");
    assert_eq!(parse_call(&text, StepFormat::Qwen).unwrap(), call);
    let old = "<tool_call>\n{\"name\": \"send_message\", \"arguments\": {\"thoughts\": \"look\", \"message\": \"hi\"}}\n</tool_call>";
    assert_eq!(parse_call(old, StepFormat::Qwen).unwrap(), call);
}
