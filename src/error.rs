/*! The library's one error type.

Every fallible operation in `pagemind` returns [`Result<T>`]. Variants carry what a person needs
to act: the file or field at fault and the command that fixes it. The binary prints them once,
on one line, and exits non-zero (see `main.rs`).
*/

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in pagemind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model id that `models.toml` does not declare.
    #[error("unknown model '{id}': run `pagemind models list` to see the known ids, or pass a path to a .gguf file")]
    UnknownModel { id: String },

    /// A declared model whose files are not in the store.
    #[error("model '{id}' is not installed: run `pagemind models pull {id}`")]
    NotInstalled { id: String },

    /// A file that should exist does not, or cannot be read.
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },

    /// A file whose sha256 differs from the one declared.
    #[error("{}: sha256 mismatch (expected {expected}, got {actual}): the file is corrupt or incomplete; run `pagemind models pull {id} --force`", path.display())]
    Checksum { path: PathBuf, id: String, expected: String, actual: String },

    /// A GGUF file that cannot be parsed (bad magic, truncated, inconsistent).
    #[error("{}: not a valid GGUF file: {msg}", path.display())]
    Gguf { path: PathBuf, msg: String },

    /// A model file of a kind we do not run.
    #[error("{}: {msg}", path.display())]
    Unsupported { path: PathBuf, msg: String },

    /// A prompt that does not fit the context window.
    #[error("prompt is {tokens} tokens but the context window is {context}: shorten it or raise --context-window")]
    ContextOverflow { tokens: usize, context: usize },

    /// A device that this binary was built without.
    #[error("device '{device}' is not compiled in: rebuild with `cargo build --release --features {feature}`")]
    DeviceNotCompiled { device: String, feature: &'static str },

    /// A device string we do not understand or a device that is absent.
    #[error("device '{device}': {msg}")]
    Device { device: String, msg: String },

    /// The model catalog (`models.toml`) is malformed.
    #[error("models.toml: {0}")]
    Catalog(String),

    /// Fetching a model failed.
    #[error("pulling '{id}': {msg}")]
    Fetch { id: String, msg: String },

    /// The tokenizer could not be built or failed on input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// The chat template failed to compile or render.
    #[error("chat template: {0}")]
    Template(String),

    /// Invalid user input (argument, value, text).
    #[error("{0}")]
    Invalid(String),

    /// Tensor computation failed.
    #[error("compute: {0}")]
    Candle(#[from] candle_core::Error),

    /// The memory store (redb) could not be opened.
    #[error("store {}: {source}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },

    /// A read or write of the memory database failed (I/O, a full disk, a damaged file). It
    /// ends the turn: the model cannot act on it.
    #[error("memory database (pagemind.redb): {0}; check the disk, then run `pagemind debug check --agent NAME`")]
    Db(#[source] Box<redb::Error>),

    /// A stored row that does not decode: the database was damaged or edited by hand.
    #[error("memory database: a row of table '{table}' is damaged ({msg}); export what is readable with `pagemind agents export`")]
    Corrupt { table: String, msg: String },

    /// Generation was stopped by the user (Ctrl-C) or by a deadline.
    #[error("generation cancelled")]
    Cancelled,

    /// A grammar or JSON schema that the constrained decoder cannot compile or follow.
    #[error("grammar: {0}")]
    Grammar(String),

    /// Another process holds the store.
    #[error("store {} is in use by another pagemind process: close it (or wait) and retry", path.display())]
    StoreLocked { path: PathBuf },

    /// The store was written by an incompatible version.
    #[error("store {}: schema version {found}, this pagemind reads version {expected}: {hint}", path.display())]
    Schema { path: PathBuf, found: u64, expected: u64, hint: &'static str },

    /// No agent of that name.
    #[error("no agent named '{name}': create it with `pagemind agents create {name}` (see `pagemind agents list`)")]
    NoAgent { name: String },

    /// An agent of that name exists.
    #[error("an agent named '{name}' already exists")]
    AgentExists { name: String },

    /// A memory operation the agent asked for that cannot be done; the text is meant for the
    /// model as much as for a person, and nothing was changed.
    #[error("{0}")]
    Memory(String),

    /// The archival vector index failed (it is derived data and can be rebuilt).
    #[error("archival index {}: {msg}", path.display())]
    Index { path: PathBuf, msg: String },

    /// An I/O error with no better context.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Every redb error kind converts through [`redb::Error`], keeping its source.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

impl Error {
    /// Whether the model should see this error as a function result and try again (bad
    /// arguments, missing memory, text over a limit), rather than the turn ending with it
    /// (I/O, the database, the model itself).
    pub fn is_for_model(&self) -> bool {
        matches!(self, Error::Memory(_) | Error::Invalid(_) | Error::NoAgent { .. })
    }

    /// A [`Error::File`] for `path` with `msg`.
    pub fn file(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        Error::File { path: path.into(), msg: msg.to_string() }
    }
}
