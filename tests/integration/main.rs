//! pagemind's integration tests: one binary, shared helpers in `util`.
//!
//! Tests that need a model use the default store (`$PAGEMIND_HOME` or `~/.local/share/pagemind`);
//! the README's test command (`bash .ci/run`) pulls the default models first. Tests of the
//! optional Qwen2.5 model skip, saying so, when it is not installed.

mod util;

mod agent;
mod agent_llm;
mod agent_search;
mod bench;
mod browser;
mod cli_errors;
mod crash;
mod embed;
mod eval;
mod fuzz_corpus;
mod ingest;
mod mcp;
mod memory;
mod runtime;
mod serve;
