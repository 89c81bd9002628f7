/*! `eval function-calling`: BFCL-format function calling.

Data: BFCL question files (`{"id", "question": [[{"role", "content"}]], "function": [{"name",
"description", "parameters"}]}`, one object per line) and possible-answer files (`{"id",
"ground_truth": [{name: {arg: [acceptable values]}}]}`). BFCL writes `"dict"`, `"float"`,
`"tuple"` and `"any"` where JSON Schema says `"object"`, `"number"`, `"array"` and nothing;
[`json_schema`] converts.

Variants: `pagemind` (the grammar-constrained decoder: the call must name one of the given
functions with arguments of their schema) and `no-grammar` (the same model and prompt, free
text, the first call found in it parsed). Scores: `valid` (a call of a given function whose
arguments have the declared types, every required one present, no unknown ones) and
`accuracy` by BFCL's AST rules ([`ast_match`]).
*/

use super::{Options, Recorder, Task, PAGEMIND};
use crate::grammar::{decode_step, parse_call, Branch, StepFormat, StepGrammar, ToolCall};
use crate::runtime::{ChatMessage, Sampler, SamplerConfig, Session};
use crate::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Instant;

/// Default data (under `../shared/data`).
pub const DEFAULT_DATA: &str = "bfcl/BFCL_v4_simple_python.sample.json";

/// Longest string argument the grammar allows (keeps every call finite).
const MAX_STRING: usize = 256;

/// BFCL's parameter schema as JSON Schema (types renamed, descriptions dropped, strings and
/// arrays bounded).
pub fn json_schema(p: &Value) -> Value {
    let mut out = Map::new();
    let ty = p["type"].as_str().unwrap_or("any");
    match ty {
        "dict" | "object" => {
            out.insert("type".into(), json!("object"));
            let mut props = Map::new();
            for (k, v) in p["properties"].as_object().into_iter().flatten() {
                props.insert(k.clone(), json_schema(v));
            }
            out.insert("properties".into(), Value::Object(props));
            if let Some(r) = p.get("required") {
                out.insert("required".into(), r.clone());
            }
            out.insert("additionalProperties".into(), json!(false));
        }
        "float" | "number" => {
            out.insert("type".into(), json!("number"));
        }
        "integer" => {
            out.insert("type".into(), json!("integer"));
        }
        "boolean" => {
            out.insert("type".into(), json!("boolean"));
        }
        "string" => {
            out.insert("type".into(), json!("string"));
            out.insert("maxLength".into(), json!(MAX_STRING));
        }
        "array" | "tuple" => {
            out.insert("type".into(), json!("array"));
            out.insert("maxItems".into(), json!(32));
            if let Some(items) = p.get("items") {
                out.insert("items".into(), json_schema(items));
            }
        }
        _ => {}
    }
    if let Some(e) = p.get("enum") {
        out.remove("maxLength");
        out.insert("enum".into(), e.clone());
    }
    Value::Object(out)
}

/// Whether `v` has BFCL type `ty` (an integer passes as a float, as BFCL allows).
fn type_ok(v: &Value, p: &Value) -> bool {
    match p["type"].as_str().unwrap_or("any") {
        "integer" => v.is_i64() || v.is_u64(),
        "float" | "number" => v.is_number(),
        "string" => v.is_string() && p.get("enum").and_then(|e| e.as_array()).is_none_or(|e| e.contains(v)),
        "boolean" => v.is_boolean(),
        "array" | "tuple" => {
            v.as_array().is_some_and(|a| p.get("items").is_none_or(|it| a.iter().all(|x| type_ok(x, it))))
        }
        "dict" | "object" => v.is_object(),
        _ => true,
    }
}

/// A call of one of `functions` with well-typed arguments, all required ones, no unknown ones.
pub fn valid_call(call: &ToolCall, functions: &[Value]) -> std::result::Result<(), String> {
    let f = functions.iter().find(|f| f["name"] == call.function).ok_or(format!("no function {}", call.function))?;
    let args = call.arguments.as_object().ok_or("arguments are not an object")?;
    let props = f["parameters"]["properties"].as_object().cloned().unwrap_or_default();
    for r in f["parameters"]["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str()) {
        if !args.contains_key(r) {
            return Err(format!("missing required argument {r}"));
        }
    }
    for (k, v) in args {
        let p = props.get(k).ok_or(format!("unknown argument {k}"))?;
        if !type_ok(v, p) {
            return Err(format!("argument {k} is not a {}", p["type"]));
        }
    }
    Ok(())
}

/// BFCL's string standardisation: drop spaces and `,./-_*^`, lowercase, `'` as `"`.
fn standardize(s: &str) -> String {
    s.chars().filter(|c| !" ,./-_*^".contains(*c)).collect::<String>().to_lowercase().replace('\'', "\"")
}

fn value_eq(v: &Value, a: &Value) -> bool {
    match (v, a) {
        (Value::String(x), Value::String(y)) => standardize(x) == standardize(y),
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs() < 1e-9
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| value_eq(p, q)),
        // A dict's possible answer maps each key to a list of acceptable values.
        (Value::Object(x), Value::Object(y)) => {
            x.keys().all(|k| y.contains_key(k))
                && y.iter().all(|(k, acc)| match (x.get(k), acc.as_array()) {
                    (Some(xv), Some(list)) => list.iter().any(|a| value_eq(xv, a)),
                    (Some(xv), None) => value_eq(xv, acc),
                    (None, Some(list)) => list.contains(&json!("")),
                    (None, None) => false,
                })
        }
        (x, y) => x == y,
    }
}

/// BFCL's AST check of one call against `ground_truth` (`[{name: {arg: [acceptable]}}]`):
/// the same function; every argument given is acceptable; every argument left out may be
/// (its list holds `""`); no argument the answer does not know.
pub fn ast_match(call: &ToolCall, ground_truth: &Value) -> bool {
    let Some(gt) = ground_truth.as_array().and_then(|a| a.first()).and_then(|g| g.as_object()) else {
        return false;
    };
    let Some(expected) = gt.get(&call.function).and_then(|e| e.as_object()) else {
        return false;
    };
    let Some(args) = call.arguments.as_object() else {
        return false;
    };
    if args.keys().any(|k| !expected.contains_key(k)) {
        return false;
    }
    expected.iter().all(|(k, acc)| {
        let list = acc.as_array().cloned().unwrap_or_else(|| vec![acc.clone()]);
        match args.get(k) {
            Some(v) => list.iter().any(|a| value_eq(v, a)),
            None => list.contains(&json!("")),
        }
    })
}

/// The first call in free text: a `<tool_call>` block, else the first balanced JSON object.
fn first_call(text: &str, format: StepFormat) -> Option<ToolCall> {
    if let Some(s) = text.find("<tool_call>") {
        let rest = &text[s + "<tool_call>".len()..];
        let body = rest.split("</tool_call>").next().unwrap_or(rest);
        if let Ok(c) = parse_call(body.trim(), StepFormat::Json)
            .or_else(|_| parse_call(&format!("<tool_call>{body}</tool_call>"), StepFormat::Qwen))
        {
            return Some(c);
        }
    }
    let start = text.find('{')?;
    let mut depth = 0i32;
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in text[start..].char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' if in_str => esc = true,
            '"' => in_str = !in_str,
            '{' if !in_str => depth += 1,
            '}' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    let obj = &text[start..start + i + 1];
                    let v: Value = serde_json::from_str(obj).ok()?;
                    // {"name": .., "arguments": ..} (Qwen) or {"function": .., "arguments": ..}.
                    let f = if v.get("name").is_some() { StepFormat::Qwen } else { format };
                    let wrapped =
                        if f == StepFormat::Qwen { format!("<tool_call>{obj}</tool_call>") } else { obj.to_string() };
                    return parse_call(&wrapped, f).ok();
                }
            }
            _ => {}
        }
    }
    None
}

/// Run the task.
pub fn run(o: &Options, rec: &mut Recorder) -> Result<()> {
    let path = match &o.data {
        Some(p) => p.clone(),
        None => super::default_data(DEFAULT_DATA)?,
    };
    let answers_path = match &o.answers {
        Some(p) => p.clone(),
        None => {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            path.with_file_name(format!("possible_answer.{name}"))
        }
    };
    let items = super::json_lines(&path, &super::read_text(&path)?)?;
    let answers: HashMap<String, Value> = super::json_lines(
        &answers_path,
        &super::read_text(&answers_path)
            .map_err(|_| Error::file(&answers_path, "cannot read BFCL's possible-answer file: pass --answers FILE"))?,
    )?
    .into_iter()
    .map(|a| (a["id"].as_str().unwrap_or_default().to_string(), a["ground_truth"].clone()))
    .collect();
    let items = super::pick(items, o.seed, o.limit);
    let variants = o.variants(Task::FunctionCalling);
    let pending = items
        .iter()
        .flat_map(|it| variants.iter().map(move |v| (v, it["id"].as_str().unwrap_or_default().to_string())))
        .filter(|(v, id)| !rec.is_done(v, id))
        .count();
    rec.start_progress(pending, Task::FunctionCalling.name(), o.progress);
    let format = StepFormat::of(o.model);
    let mut session = Session::new(o.model, o.window)?;
    for it in &items {
        let id = it["id"].as_str().ok_or_else(|| Error::file(&path, "an item has no \"id\""))?.to_string();
        let functions: Vec<Value> = it["function"].as_array().cloned().unwrap_or_default();
        let gt =
            answers.get(&id).cloned().ok_or_else(|| Error::file(&answers_path, format!("no ground truth for {id}")))?;
        let system = format.functions_prompt(&functions, true);
        let mut msgs = vec![ChatMessage::new("system", system)];
        for m in it["question"].as_array().and_then(|q| q.first()).and_then(|t| t.as_array()).into_iter().flatten() {
            msgs.push(ChatMessage::new(
                m["role"].as_str().unwrap_or("user"),
                m["content"].as_str().unwrap_or_default(),
            ));
        }
        let input = msgs.iter().skip(1).map(|m| m.content.clone()).collect::<Vec<_>>().join("\n");
        for v in &variants {
            if rec.is_done(v, &id) {
                continue;
            }
            let t0 = Instant::now();
            let mut r = super::ItemRecord::new(Task::FunctionCalling.name(), v, &id, "", &input, gt.clone());
            let res: Result<Option<ToolCall>> = (|| {
                let (_, prompt) = o.model.chat_prompt(&msgs, true)?;
                let mut sampler = Sampler::new(SamplerConfig::greedy());
                if v == PAGEMIND {
                    let branches: Vec<Branch> = functions
                        .iter()
                        .map(|f| Branch {
                            name: f["name"].as_str().unwrap_or_default().to_string(),
                            arguments: json_schema(&f["parameters"]),
                        })
                        .collect();
                    let g = StepGrammar::functions(o.model, &branches, format)?;
                    let s = decode_step(&g, &mut session, &prompt, &mut sampler, |_| {})?;
                    r.answer = s.text;
                    r.tokens_evaluated = s.stats.prompt_evaluated + s.stats.tokens;
                    r.tokens_reused = s.stats.prompt_reused;
                    r.steps = vec![json!({
                        "function": s.call.function,
                        "arguments": s.call.arguments,
                        "step_tokens": s.stats.tokens,
                        "forced_tokens": s.stats.forced,
                        "tokens_evaluated": s.stats.prompt_evaluated,
                        "tokens_reused": s.stats.prompt_reused,
                    })];
                    Ok(Some(s.call))
                } else {
                    let g = session.generate(&prompt, &mut sampler, 256, None, |_| Ok(true))?;
                    r.answer = o.model.tokenizer.decode(&g.tokens, true)?;
                    r.tokens_evaluated = g.prompt.evaluated + g.tokens.len();
                    r.tokens_reused = g.prompt.reused;
                    Ok(first_call(&r.answer, format))
                }
            })();
            let call = match res {
                Ok(c) => c,
                Err(e) => {
                    r.error = Some(e.to_string());
                    None
                }
            };
            let valid = call.as_ref().is_some_and(|c| valid_call(c, &functions).is_ok());
            let correct = valid && call.as_ref().is_some_and(|c| ast_match(c, &gt));
            r.scores.insert("valid".into(), f64::from(u8::from(valid)));
            r.scores.insert("accuracy".into(), f64::from(u8::from(correct)));
            r.seconds = t0.elapsed().as_secs_f64();
            rec.record(r)?;
        }
    }
    rec.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(f: &str, args: Value) -> ToolCall {
        ToolCall { thoughts: String::new(), function: f.into(), arguments: args }
    }

    #[test]
    fn bfcl_types_become_json_schema() {
        let p = json!({"type": "dict", "properties": {"x": {"type": "float", "description": "d"}, "t": {"type": "tuple", "items": {"type": "integer"}}, "any": {"type": "any"}}, "required": ["x"]});
        assert_eq!(
            json_schema(&p),
            json!({"type": "object", "properties": {"x": {"type": "number"}, "t": {"type": "array", "maxItems": 32, "items": {"type": "integer"}}, "any": {}}, "required": ["x"], "additionalProperties": false})
        );
    }

    #[test]
    fn ast_rules_by_hand() {
        let gt = json!([{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]);
        assert!(ast_match(&call("calculate_triangle_area", json!({"base": 10, "height": 5})), &gt));
        assert!(ast_match(&call("calculate_triangle_area", json!({"base": 10.0, "height": 5, "unit": "Units"})), &gt));
        assert!(
            !ast_match(&call("calculate_triangle_area", json!({"base": 10})), &gt),
            "height is required by the answer"
        );
        assert!(!ast_match(&call("calculate_triangle_area", json!({"base": 10, "height": 6})), &gt));
        assert!(!ast_match(&call("calculate_triangle_area", json!({"base": 10, "height": 5, "color": "red"})), &gt));
        assert!(!ast_match(&call("area", json!({"base": 10, "height": 5})), &gt));
        // Strings are compared after BFCL's standardisation.
        let gt = json!([{"f": {"city": ["New York, NY"], "tags": [["a-b", "c"]]}}]);
        assert!(ast_match(&call("f", json!({"city": "new york ny", "tags": ["ab", "C"]})), &gt));
        assert!(!ast_match(&call("f", json!({"city": "new york ny", "tags": ["c", "ab"]})), &gt));
        // Dicts: each key has its own acceptable values.
        let gt = json!([{"f": {"d": [{"a": [1, 2], "b": ["", "x"]}]}}]);
        assert!(ast_match(&call("f", json!({"d": {"a": 2}})), &gt));
        assert!(!ast_match(&call("f", json!({"d": {"a": 3}})), &gt));
    }

    #[test]
    fn validity_checks_types_and_required_arguments() {
        let fs = vec![
            json!({"name": "f", "parameters": {"type": "dict", "properties": {"n": {"type": "integer"}, "x": {"type": "float"}, "s": {"type": "string", "enum": ["a", "b"]}}, "required": ["n"]}}),
        ];
        assert!(valid_call(&call("f", json!({"n": 1, "x": 2})), &fs).is_ok());
        assert!(valid_call(&call("f", json!({"n": 1.5})), &fs).is_err());
        assert!(valid_call(&call("f", json!({"x": 1.5})), &fs).is_err());
        assert!(valid_call(&call("f", json!({"n": 1, "s": "c"})), &fs).is_err());
        assert!(valid_call(&call("g", json!({"n": 1})), &fs).is_err());
    }

    #[test]
    fn free_text_calls_are_found() {
        let c = first_call(
            "Sure!\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"n\": 1}}\n</tool_call>",
            StepFormat::Qwen,
        )
        .unwrap();
        assert_eq!((c.function.as_str(), c.arguments.clone()), ("f", json!({"n": 1})));
        let c =
            first_call("call: {\"function\": \"g\", \"arguments\": {\"s\": \"}{\"}} done", StepFormat::Json).unwrap();
        assert_eq!(c.function, "g");
        assert!(first_call("no call here", StepFormat::Json).is_none());
    }
}
