/*! A JSON Schema as a decoding constraint (OpenAI's `response_format`), on the same llguidance
engine as the agent's steps.

[`JsonConstraint::new`] compiles a schema (`{"type": "object"}` for `json_object`), so a schema
llguidance cannot handle is refused before any decoding; [`super::decode_json`] decodes under it.
The output is compact JSON unless the schema's own `x-guidance` options say otherwise.
*/

use super::StepGrammar;
use crate::runtime::ChatModel;
use crate::{Error, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use toktrie::TokEnv;

/// A compiled JSON Schema over one model's vocabulary.
pub struct JsonConstraint {
    factory: ParserFactory,
    grammar: TopLevelGrammar,
    eos: u32,
}

impl JsonConstraint {
    /// Compile `schema` over `model`'s vocabulary.
    pub fn new(model: &ChatModel, schema: &Value) -> Result<Self> {
        Self::with_env(StepGrammar::env(model), schema, model.tokenizer.eos_id.unwrap_or(0))
    }

    /// Compile over any token environment (tests use tiny fake vocabularies).
    pub fn with_env(env: TokEnv, schema: &Value, eos: u32) -> Result<Self> {
        let bad = |e: String| Error::Grammar(format!("JSON schema: {e}"));
        if !schema.is_object() && !schema.is_boolean() {
            return Err(bad("must be an object".into()));
        }
        let mut schema = schema.clone();
        if let Some(o) = schema.as_object_mut() {
            o.entry("x-guidance").or_insert_with(
                || json!({"whitespace_flexible": false, "key_separator": ": ", "item_separator": ", "}),
            );
        }
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| bad(e.to_string()))?;
        factory.quiet();
        let grammar = TopLevelGrammar::from_lark(format!("start: %json {schema}"));
        let c = Self { factory, grammar, eos };
        c.matcher()?; // compile now so a bad schema is refused here
        Ok(c)
    }

    /// A fresh matcher for one reply.
    pub fn matcher(&self) -> Result<Matcher> {
        let m = Matcher::new(self.factory.create_parser(self.grammar.clone()));
        if let Some(e) = m.get_error() {
            return Err(Error::Grammar(format!("JSON schema: {e}")));
        }
        Ok(m)
    }

    /// The end-of-sequence token allowed once the value is complete.
    pub fn eos(&self) -> u32 {
        self.eos
    }
}
