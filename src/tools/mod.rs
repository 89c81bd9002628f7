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
    /// May be left out (the grammar lets the model omit it).
    pub optional: bool,
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
        let required: Vec<&str> = self.params.iter().filter(|p| !p.optional).map(|p| p.name).collect();
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
                format!("{}{}: {t}", p.name, if p.optional { "?" } else { "" })
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
            let Some(v) = obj.get(p.name) else {
                if p.optional {
                    continue;
                }
                return Err(format!("{}: missing argument '{}'", self.name, p.name));
            };
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

/// MemGPT's built-in functions: the one place their names are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    SendMessage,
    CoreMemoryAppend,
    CoreMemoryReplace,
    ArchivalMemoryInsert,
    ArchivalMemorySearch,
    ConversationSearch,
}

impl Builtin {
    /// Every built-in function, in the order the prompt lists them.
    pub const ALL: [Builtin; 6] = [
        Builtin::SendMessage,
        Builtin::CoreMemoryAppend,
        Builtin::CoreMemoryReplace,
        Builtin::ArchivalMemoryInsert,
        Builtin::ArchivalMemorySearch,
        Builtin::ConversationSearch,
    ];

    /// The function's name as the model calls it.
    pub const fn name(self) -> &'static str {
        match self {
            Builtin::SendMessage => "send_message",
            Builtin::CoreMemoryAppend => "core_memory_append",
            Builtin::CoreMemoryReplace => "core_memory_replace",
            Builtin::ArchivalMemoryInsert => "archival_memory_insert",
            Builtin::ArchivalMemorySearch => "archival_memory_search",
            Builtin::ConversationSearch => "conversation_search",
        }
    }

    /// The built-in called `name`, if any.
    pub fn of(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Whether it searches a memory tier (recall or archival).
    pub fn is_search(self) -> bool {
        matches!(self, Builtin::ArchivalMemorySearch | Builtin::ConversationSearch)
    }
}

/// The one function whose text reaches the user; calling it ends the turn.
pub const SEND_MESSAGE: &str = Builtin::SendMessage.name();

/// Highest page a search may ask for (pages are 1-based for the model, as the result headers
/// count them); a page past the results is answered with how many pages there are.
pub const MAX_PAGE: i64 = 10;

/// Results per page of the search functions.
pub const PAGE_SIZE: usize = 5;

/// Bounds that keep every step finite.
pub const MAX_MESSAGE: usize = 600;
pub const MAX_CONTENT: usize = 600;
pub const MAX_QUERY: usize = 120;

fn s(name: &'static str, max_len: usize, description: &'static str) -> Param {
    Param { name, ty: ParamType::String { max_len }, description, optional: false }
}

fn page() -> Param {
    Param {
        name: "page",
        ty: ParamType::Integer { min: 1, max: MAX_PAGE },
        description: "page of results, 1 first",
        optional: false,
    }
}

fn date(name: &'static str, description: &'static str) -> Param {
    Param { name, ty: ParamType::Date, description, optional: true }
}

/// MemGPT's built-in functions. `labels` are the core-memory block labels (an enum).
pub fn builtin_tools(labels: &[String]) -> Vec<ToolSpec> {
    let label = || Param {
        name: "label",
        ty: ParamType::Enum(labels.to_vec()),
        description: "core memory block",
        optional: false,
    };
    vec![
        ToolSpec {
            name: SEND_MESSAGE,
            description: "Send a message to the user (the only way to reach them); ends your turn.",
            params: vec![s("message", MAX_MESSAGE, "the message text")],
        },
        ToolSpec {
            name: Builtin::CoreMemoryAppend.name(),
            description: "Add a lasting fact to a core memory block (always visible to you).",
            params: vec![label(), s("content", MAX_CONTENT, "text to append")],
        },
        ToolSpec {
            name: Builtin::CoreMemoryReplace.name(),
            description: "Replace exact text in a core memory block (empty new_content deletes it).",
            params: vec![
                label(),
                s("old_content", MAX_CONTENT, "exact text to replace"),
                s("new_content", MAX_CONTENT, "replacement"),
            ],
        },
        ToolSpec {
            name: Builtin::ArchivalMemoryInsert.name(),
            description: "Save a fact or passage to archival memory (unlimited, searchable by meaning).",
            params: vec![s("content", MAX_CONTENT, "text to store")],
        },
        ToolSpec {
            name: Builtin::ArchivalMemorySearch.name(),
            description: "Search archival memory (documents, saved facts); best matches first, in pages.",
            params: vec![s("query", MAX_QUERY, "what to look for"), page()],
        },
        ToolSpec {
            name: Builtin::ConversationSearch.name(),
            description: "Search all past messages (recall memory) by keywords, optionally within dates (inclusive, UTC); best matches first, in pages. Keywords naming one speaker find only what that speaker said.",
            params: vec![
                s("query", MAX_QUERY, "keywords to look for"),
                page(),
                date("start_date", "first day (optional)"),
                date("end_date", "last day (optional)"),
            ],
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
        let d = tools.iter().find(|t| t.name == "conversation_search").unwrap();
        assert_eq!(
            d.signature(),
            "conversation_search(query: string, page: int, start_date?: YYYY-MM-DD, end_date?: YYYY-MM-DD)"
        );
        assert_eq!(d.arguments_schema()["required"], json!(["query", "page"]));
        let q = |extra: Value| {
            let mut v = json!({"query": "x", "page": 1});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            d.validate(&v)
        };
        assert!(q(json!({"start_date": "2024-02-30"})).is_err());
        assert!(q(json!({"start_date": "2024-02-28", "end_date": "2024-03-01"})).is_ok());
        assert!(q(json!({})).is_ok(), "dates are optional");
    }
}
