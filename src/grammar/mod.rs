/*! Grammar-constrained agent steps: every step is exactly one valid function call.

- [`StepFormat`]: how a step is written (a generic JSON object, or Qwen2.5's `<tool_call>`).
- [`StepGrammar`]: compiles the registered [`ToolSpec`]s into one llguidance grammar: the
  function name pinned to the registry, one `arguments` branch per tool with its schema (enums,
  dates, bounded strings, so every step terminates), compact JSON.
- [`decode_step`]: runs a [`Session`] under the grammar: the mask is applied on the sampling
  hook, tokens the grammar forces are appended without sampling and evaluated in one batch, and
  the result is a parsed, typed [`ToolCall`].

```no_run
# use pagemind::{grammar::*, runtime::*, tools::builtin_tools};
# fn demo(model: &ChatModel, prompt: &[u32]) -> pagemind::Result<()> {
let tools = builtin_tools(&["persona".into(), "human".into()]);
let grammar = StepGrammar::new(model, &tools, StepFormat::Json)?;
let mut session = Session::new(model, 2048)?;
let mut sampler = Sampler::new(SamplerConfig::greedy());
let step = decode_step(&grammar, &mut session, prompt, &mut sampler, |_| {})?;
println!("{} {}", step.call.function, step.call.arguments);
# Ok(()) }
```
*/

mod decoder;
mod tokenv;

pub use decoder::{decode_step, Step, StepStats};
pub use tokenv::GgufTokEnv;

use crate::runtime::ChatModel;
use crate::store::ToolFormat;
use crate::tools::ToolSpec;
use crate::{Error, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use toktrie::TokEnv;

/// Longest `thoughts` string, in characters.
pub const MAX_THOUGHTS: usize = 160;

/// How a step is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepFormat {
    /// `{"thoughts": .., "function": .., "arguments": {..}, "request_heartbeat": ..}`
    Json,
    /// `<tool_call>\n{"name": .., "arguments": {"thoughts": .., .., "request_heartbeat": ..}}\n</tool_call>`
    Qwen,
}

impl From<ToolFormat> for StepFormat {
    fn from(f: ToolFormat) -> Self {
        match f {
            ToolFormat::Json => StepFormat::Json,
            ToolFormat::Qwen => StepFormat::Qwen,
        }
    }
}

/// A parsed, validated function call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub thoughts: String,
    pub function: String,
    pub arguments: Value,
    pub request_heartbeat: bool,
}

/// The compiled grammar for one tool set and format.
pub struct StepGrammar {
    factory: ParserFactory,
    grammar: TopLevelGrammar,
    pub format: StepFormat,
    pub tools: Vec<ToolSpec>,
    eos: u32,
}

/// JSON Schema of one step for `tools` in `format`.
pub fn step_schema(tools: &[ToolSpec], format: StepFormat) -> Value {
    let thoughts = json!({"type": "string", "maxLength": MAX_THOUGHTS});
    let heartbeat = json!({"type": "boolean"});
    let branches: Vec<Value> = tools
        .iter()
        .map(|t| {
            let args = t.arguments_schema();
            match format {
                StepFormat::Json => json!({
                    "type": "object",
                    "properties": {"thoughts": thoughts, "function": {"const": t.name}, "arguments": args, "request_heartbeat": heartbeat},
                    "required": ["thoughts", "function", "arguments", "request_heartbeat"],
                    "additionalProperties": false
                }),
                StepFormat::Qwen => {
                    let mut props = serde_json::Map::new();
                    props.insert("thoughts".into(), thoughts.clone());
                    let mut required = vec![json!("thoughts")];
                    for (k, v) in args["properties"].as_object().expect("object schema") {
                        props.insert(k.clone(), v.clone());
                        required.push(json!(k));
                    }
                    props.insert("request_heartbeat".into(), heartbeat.clone());
                    required.push(json!("request_heartbeat"));
                    json!({
                        "type": "object",
                        "properties": {"name": {"const": t.name}, "arguments": {
                            "type": "object", "properties": props, "required": required, "additionalProperties": false}},
                        "required": ["name", "arguments"],
                        "additionalProperties": false
                    })
                }
            }
        })
        .collect();
    json!({"anyOf": branches, "x-guidance": {"whitespace_flexible": false, "key_separator": ": ", "item_separator": ", "}})
}

impl StepGrammar {
    /// Compile the grammar for `tools` over `model`'s vocabulary.
    pub fn new(model: &ChatModel, tools: &[ToolSpec], format: StepFormat) -> Result<Self> {
        let eos = model.tokenizer.eos_id.unwrap_or(0);
        let vocab = model.weights.config.vocab_size.max(model.tokenizer.vocab_size());
        let env = GgufTokEnv::new(model.tokenizer_arc(), vocab, eos).into_env();
        Self::with_env(env, tools, format, eos)
    }

    /// Compile over any token environment (tests use tiny fake vocabularies).
    pub fn with_env(env: TokEnv, tools: &[ToolSpec], format: StepFormat, eos: u32) -> Result<Self> {
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| Error::Invalid(format!("grammar: {e}")))?;
        factory.quiet();
        let schema = step_schema(tools, format).to_string();
        let lark = match format {
            StepFormat::Json => format!("start: %json {schema}"),
            StepFormat::Qwen => format!("start: \"<tool_call>\\n\" %json {schema} \"\\n</tool_call>\""),
        };
        let grammar = TopLevelGrammar::from_lark(lark);
        let s = Self { factory, grammar, format, tools: tools.to_vec(), eos };
        s.matcher()?; // compile once now so errors surface here
        Ok(s)
    }

    /// A fresh matcher for one step.
    pub fn matcher(&self) -> Result<Matcher> {
        let parser = self.factory.create_parser(self.grammar.clone());
        let m = Matcher::new(parser);
        if let Some(e) = m.get_error() {
            return Err(Error::Invalid(format!("grammar: {e}")));
        }
        Ok(m)
    }

    /// The end-of-sequence token allowed once a call is complete.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Parse the text of a finished step into a validated call.
    pub fn parse(&self, text: &str) -> Result<ToolCall> {
        let body = match self.format {
            StepFormat::Json => text.trim(),
            StepFormat::Qwen => text.trim().trim_start_matches("<tool_call>").trim_end_matches("</tool_call>").trim(),
        };
        let v: Value =
            serde_json::from_str(body).map_err(|e| Error::Invalid(format!("step is not JSON ({e}): {text}")))?;
        let (function, mut args) = match self.format {
            StepFormat::Json => (v["function"].as_str().unwrap_or_default().to_string(), v["arguments"].clone()),
            StepFormat::Qwen => (v["name"].as_str().unwrap_or_default().to_string(), v["arguments"].clone()),
        };
        let (thoughts, heartbeat) = match self.format {
            StepFormat::Json => (v["thoughts"].clone(), v["request_heartbeat"].clone()),
            StepFormat::Qwen => {
                let o = args.as_object_mut().ok_or_else(|| Error::Invalid("arguments must be an object".into()))?;
                (o.remove("thoughts").unwrap_or_default(), o.remove("request_heartbeat").unwrap_or_default())
            }
        };
        let spec = self
            .tools
            .iter()
            .find(|t| t.name == function)
            .ok_or_else(|| Error::Invalid(format!("unknown function '{function}'")))?;
        spec.validate(&args).map_err(Error::Invalid)?;
        Ok(ToolCall {
            thoughts: thoughts.as_str().unwrap_or_default().to_string(),
            function,
            arguments: args,
            request_heartbeat: heartbeat.as_bool().unwrap_or(false),
        })
    }

    /// Tokens of the compact tool list vs full JSON Schemas, for the prompt-size report.
    pub fn listing_sizes(&self, model: &ChatModel) -> Result<(usize, usize)> {
        let compact = compact_listing(&self.tools);
        let full = self
            .tools
            .iter()
            .map(|t| {
                json!({"name": t.name, "description": t.description, "parameters": t.arguments_schema()}).to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        Ok((model.tokenizer.encode(&compact, false)?.len(), model.tokenizer.encode(&full, false)?.len()))
    }
}

/// The tool list as it appears in the system prompt: signature and one line each.
pub fn compact_listing(tools: &[ToolSpec]) -> String {
    tools.iter().map(|t| format!("- {}: {}", t.signature(), t.description)).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests;
