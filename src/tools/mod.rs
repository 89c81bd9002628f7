/*! Tool declarations: what the agent may call, as data.

A [`ToolSpec`] has a name, a one-line description and typed parameters ([`Param`]). From it we
derive the JSON Schema that the constrained decoder enforces ([`ToolSpec::arguments_schema`]),
the compact signature listed in the system prompt ([`ToolSpec::signature`]), and a validator
([`ToolSpec::validate`]). Handlers live with the agent (`crate::agent`), which owns the state
they act on. [`builtin_tools`] declares MemGPT's functions.
*/

use serde_json::{json, Map, Value};

/// A parameter's type and bounds.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    /// A string of at most `max_len` characters.
    String { max_len: usize },
    /// An integer in `min..=max`.
    Integer { min: i64, max: i64 },
    /// One of these strings.
    Enum(Vec<String>),
    /// A date, `YYYY-MM-DD`.
    Date,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: &'static str,
    pub ty: ParamType,
    pub description: &'static str,
}

/// One callable tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub params: Vec<Param>,
}

/// The regex a date must match.
pub const DATE_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";

impl ToolSpec {
    /// JSON Schema of the `arguments` object: every parameter required, no others.
    pub fn arguments_schema(&self) -> Value {
        let mut props = Map::new();
        for p in &self.params {
            let s = match &p.ty {
                ParamType::String { max_len } => json!({"type": "string", "maxLength": max_len}),
                ParamType::Integer { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
                ParamType::Enum(v) => json!({"enum": v}),
                ParamType::Date => json!({"type": "string", "pattern": DATE_PATTERN}),
            };
            props.insert(p.name.to_string(), s);
        }
        let required: Vec<&str> = self.params.iter().map(|p| p.name).collect();
        json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
    }

    /// `name(a: string, page: int)`, for the system prompt.
    pub fn signature(&self) -> String {
        let ps: Vec<String> = self
            .params
            .iter()
            .map(|p| {
                let t = match &p.ty {
                    ParamType::String { .. } => "string".to_string(),
                    ParamType::Integer { .. } => "int".to_string(),
                    ParamType::Enum(v) => v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join("|"),
                    ParamType::Date => "YYYY-MM-DD".to_string(),
                };
                format!("{}: {t}", p.name)
            })
            .collect();
        format!("{}({})", self.name, ps.join(", "))
    }

    /// Check `args` against the parameters; the error says what is wrong.
    pub fn validate(&self, args: &Value) -> Result<(), String> {
        let obj = args.as_object().ok_or("arguments must be an object")?;
        for k in obj.keys() {
            if !self.params.iter().any(|p| p.name == k) {
                return Err(format!("{}: unknown argument '{k}'", self.name));
            }
        }
        for p in &self.params {
            let v = obj.get(p.name).ok_or_else(|| format!("{}: missing argument '{}'", self.name, p.name))?;
            let ok = match &p.ty {
                ParamType::String { max_len } => v.as_str().is_some_and(|s| s.chars().count() <= *max_len),
                ParamType::Integer { min, max } => v.as_i64().is_some_and(|n| n >= *min && n <= *max),
                ParamType::Enum(e) => v.as_str().is_some_and(|s| e.iter().any(|x| x == s)),
                ParamType::Date => v.as_str().is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()),
            };
            if !ok {
                return Err(format!("{}: argument '{}' is not a valid {:?}", self.name, p.name, p.ty));
            }
        }
        Ok(())
    }
}

/// Bounds that keep every step finite.
pub const MAX_MESSAGE: usize = 600;
pub const MAX_CONTENT: usize = 600;
pub const MAX_QUERY: usize = 120;

fn s(name: &'static str, max_len: usize, description: &'static str) -> Param {
    Param { name, ty: ParamType::String { max_len }, description }
}

fn page() -> Param {
    Param { name: "page", ty: ParamType::Integer { min: 0, max: 1000 }, description: "0-based page of results" }
}

/// MemGPT's built-in functions. `labels` are the core-memory block labels (an enum).
pub fn builtin_tools(labels: &[String]) -> Vec<ToolSpec> {
    let label = || Param { name: "label", ty: ParamType::Enum(labels.to_vec()), description: "core memory block" };
    vec![
        ToolSpec {
            name: "send_message",
            description: "Send a message to the user; ends your turn.",
            params: vec![s("message", MAX_MESSAGE, "the message text")],
        },
        ToolSpec {
            name: "core_memory_append",
            description: "Append a line to a core memory block (always visible to you).",
            params: vec![label(), s("content", MAX_CONTENT, "text to append")],
        },
        ToolSpec {
            name: "core_memory_replace",
            description: "Replace exact text in a core memory block (empty new_content deletes it).",
            params: vec![
                label(),
                s("old_content", MAX_CONTENT, "exact text to replace"),
                s("new_content", MAX_CONTENT, "replacement"),
            ],
        },
        ToolSpec {
            name: "archival_memory_insert",
            description: "Save a fact or passage to archival memory (unlimited, searchable).",
            params: vec![s("content", MAX_CONTENT, "text to store")],
        },
        ToolSpec {
            name: "archival_memory_search",
            description: "Search archival memory by meaning; results come in pages of 5.",
            params: vec![s("query", MAX_QUERY, "what to look for"), page()],
        },
        ToolSpec {
            name: "conversation_search",
            description: "Search past conversation (recall memory) for text; newest first.",
            params: vec![s("query", MAX_QUERY, "text to look for"), page()],
        },
        ToolSpec {
            name: "conversation_search_date",
            description: "List past messages between two dates (inclusive, UTC).",
            params: vec![
                Param { name: "start_date", ty: ParamType::Date, description: "first day" },
                Param { name: "end_date", ty: ParamType::Date, description: "last day" },
                page(),
            ],
        },
        ToolSpec {
            name: "pause_heartbeats",
            description: "Ignore timed heartbeats for some minutes.",
            params: vec![Param {
                name: "minutes",
                ty: ParamType::Integer { min: 1, max: 360 },
                description: "minutes",
            }],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_schemas_and_validation_agree() {
        let tools = builtin_tools(&["persona".into(), "human".into()]);
        let t = tools.iter().find(|t| t.name == "core_memory_replace").unwrap();
        assert_eq!(
            t.signature(),
            "core_memory_replace(label: \"persona\"|\"human\", old_content: string, new_content: string)"
        );
        assert_eq!(t.arguments_schema()["required"], json!(["label", "old_content", "new_content"]));
        assert!(t.validate(&json!({"label": "human", "old_content": "a", "new_content": "b"})).is_ok());
        assert!(t.validate(&json!({"label": "system", "old_content": "a", "new_content": "b"})).is_err());
        assert!(t.validate(&json!({"label": "human", "old_content": "a"})).is_err());
        let d = tools.iter().find(|t| t.name == "conversation_search_date").unwrap();
        assert!(d.validate(&json!({"start_date": "2024-02-30", "end_date": "2024-03-01", "page": 0})).is_err());
        assert!(d.validate(&json!({"start_date": "2024-02-28", "end_date": "2024-03-01", "page": 0})).is_ok());
    }
}
