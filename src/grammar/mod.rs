/*! Grammar-constrained agent steps: every step is exactly one valid function call.

- [`StepFormat`]: how a step is written (a generic JSON object, or Qwen2.5's `<tool_call>`).
- [`StepGrammar`]: compiles the registered [`ToolSpec`]s into one llguidance grammar: the
  function name pinned to the registry, one `arguments` branch per tool with its schema (enums,
  dates, bounded strings, so every step terminates), compact JSON.
- [`decode_step`]: runs a [`Session`](crate::runtime::Session) under the grammar: the mask is applied on the sampling
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
mod format;
mod json;
mod tokenv;

pub use decoder::{decode_json, decode_scripted, decode_step, Constrained, Step, StepStats};
pub use format::{parse_call, MessageStream, StepFormat};
pub use json::JsonConstraint;
pub use tokenv::GgufTokEnv;

use crate::runtime::ChatModel;
use crate::tools::ToolSpec;
use crate::{Error, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use toktrie::TokEnv;

/// Longest `thoughts` string, in characters.
pub const MAX_THOUGHTS: usize = 160;

/// A parsed, validated function call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub thoughts: String,
    pub function: String,
    pub arguments: Value,
}

impl ToolCall {
    /// Whether the agent gets another step after this call: every function but `send_message`
    /// continues the turn (the heartbeat is implied, as Letta does for local models), so a turn
    /// can only end with a message to the user.
    pub fn continues(&self) -> bool {
        self.function != crate::tools::SEND_MESSAGE
    }
}

/// One callable function as the grammar sees it: a name and the JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    pub name: String,
    pub arguments: Value,
}

impl From<&ToolSpec> for Branch {
    fn from(t: &ToolSpec) -> Self {
        Branch { name: t.name.to_string(), arguments: t.arguments_schema() }
    }
}

/// The compiled grammar for one tool set and format.
pub struct StepGrammar {
    factory: ParserFactory,
    grammar: TopLevelGrammar,
    pub format: StepFormat,
    branches: Vec<Branch>,
    /// Whether steps carry a `thoughts` string (agent steps do; plain function calls do not).
    thoughts: bool,
    eos: u32,
}

/// JSON Schema of one step over `branches` in `format`; with `thoughts`, a bounded private
/// `thoughts` string comes first.
pub fn step_schema(branches: &[Branch], format: StepFormat, thoughts: bool) -> Value {
    let thought = json!({"type": "string", "maxLength": MAX_THOUGHTS});
    let schemas: Vec<Value> = branches
        .iter()
        .map(|t| {
            let args = &t.arguments;
            match format {
                StepFormat::Json => {
                    let mut props = serde_json::Map::new();
                    let mut required = vec![];
                    if thoughts {
                        props.insert("thoughts".into(), thought.clone());
                        required.push(json!("thoughts"));
                    }
                    props.insert("function".into(), json!({"const": t.name}));
                    props.insert("arguments".into(), args.clone());
                    required.extend([json!("function"), json!("arguments")]);
                    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
                }
                StepFormat::Qwen => {
                    // Qwen2.5's own call object, with the thoughts first when there are any:
                    // the model reasons before it picks the function, as in the JSON format.
                    let mut props = serde_json::Map::new();
                    let mut required = vec![];
                    if thoughts {
                        props.insert("thoughts".into(), thought.clone());
                        required.push(json!("thoughts"));
                    }
                    props.insert("name".into(), json!({"const": t.name}));
                    props.insert("arguments".into(), args.clone());
                    required.extend([json!("name"), json!("arguments")]);
                    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
                }
            }
        })
        .collect();
    json!({"anyOf": schemas, "x-guidance": {"whitespace_flexible": false, "key_separator": ": ", "item_separator": ", "}})
}

impl StepGrammar {
    /// Compile the grammar for `tools` over `model`'s vocabulary.
    pub fn new(model: &ChatModel, tools: &[ToolSpec], format: StepFormat) -> Result<Self> {
        let branches: Vec<Branch> = tools.iter().map(Branch::from).collect();
        Self::with_env(Self::env(model), &branches, format, true, model.tokenizer.eos_id.unwrap_or(0))
    }

    /// Plain function calls (no thoughts) over arbitrary argument schemas, e.g. BFCL's.
    pub fn functions(model: &ChatModel, branches: &[Branch], format: StepFormat) -> Result<Self> {
        Self::with_env(Self::env(model), branches, format, false, model.tokenizer.eos_id.unwrap_or(0))
    }

    pub(crate) fn env(model: &ChatModel) -> TokEnv {
        let eos = model.tokenizer.eos_id.unwrap_or(0);
        let vocab = model.weights.config.vocab_size.max(model.tokenizer.vocab_size());
        GgufTokEnv::new(model.tokenizer_arc(), vocab, eos).into_env()
    }

    /// Compile over any token environment (tests use tiny fake vocabularies).
    pub fn with_env(env: TokEnv, branches: &[Branch], format: StepFormat, thoughts: bool, eos: u32) -> Result<Self> {
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| Error::Grammar(e.to_string()))?;
        factory.quiet();
        let schema = step_schema(branches, format, thoughts).to_string();
        let lark = match format {
            StepFormat::Json => format!("start: %json {schema}"),
            StepFormat::Qwen => format!("start: \"<tool_call>\\n\" %json {schema} \"\\n</tool_call>\""),
        };
        let grammar = TopLevelGrammar::from_lark(lark);
        let s = Self { factory, grammar, format, branches: branches.to_vec(), thoughts, eos };
        s.matcher()?; // compile once now so errors surface here
        Ok(s)
    }

    /// A fresh matcher for one step.
    pub fn matcher(&self) -> Result<Matcher> {
        let parser = self.factory.create_parser(self.grammar.clone());
        let m = Matcher::new(parser);
        if let Some(e) = m.get_error() {
            return Err(Error::Grammar(e.to_string()));
        }
        Ok(m)
    }

    /// The end-of-sequence token allowed once a call is complete.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// The functions this grammar allows.
    pub fn branches(&self) -> &[Branch] {
        &self.branches
    }

    /// Parse the text of a finished step into a call (the grammar guarantees its shape; the
    /// function name is checked against the branches again).
    pub fn parse(&self, text: &str) -> Result<ToolCall> {
        let call = parse_call(text, self.format)?;
        if !self.branches.iter().any(|b| b.name == call.function) {
            return Err(Error::Invalid(format!("unknown function '{}'", call.function)));
        }
        if !self.thoughts && !call.thoughts.is_empty() {
            return Err(Error::Invalid("this grammar has no thoughts".into()));
        }
        Ok(call)
    }

    /// Tokens of the compact listing of `tools` vs their full JSON Schemas, for the
    /// prompt-size report.
    pub fn listing_sizes(model: &ChatModel, tools: &[ToolSpec]) -> Result<(usize, usize)> {
        let compact = compact_listing(tools);
        let full = tools
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
