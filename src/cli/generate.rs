/*! `pagemind tokenize` and `pagemind generate`. */

use super::Global;
use anyhow::{Context, Result};
use clap::Args;
use pagemind::runtime::{ChatMessage, ChatModel, Sampler, SamplerConfig, Session, TokenStream};
use pagemind::store::Role;
use std::io::Write;

#[derive(Args, Debug)]
pub struct ModelArg {
    /// Model id from `pagemind models list`, or a path to a .gguf file.
    #[arg(long)]
    pub model: Option<String>,
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Parse special tokens written in the text (e.g. `<|im_start|>`).
    #[arg(long)]
    pub special: bool,
    pub text: String,
}

#[derive(Args, Debug)]
pub struct SamplingArgs {
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Repetition penalty [default: 1.0 for `generate`, 1.15 for agent steps]
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn config(&self) -> SamplerConfig {
        self.config_with(1.0)
    }

    /// The configuration for agent steps.
    pub fn agent_config(&self) -> SamplerConfig {
        self.config_with(pagemind::agent::AGENT_REPEAT_PENALTY)
    }

    fn config_with(&self, default_penalty: f32) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repeat_penalty: self.repeat_penalty.unwrap_or(default_penalty),
            repeat_last_n: 64,
            seed: self.seed,
        }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Wrap the prompt as one user message with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Decode one grammar-constrained agent step (a function call) for the prompt as a user message.
    #[arg(long, conflicts_with = "chat")]
    pub tools: bool,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// KV-cache size in tokens (default: the model's context length, at most 8192).
    #[arg(long)]
    pub context_window: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    pub prompt: String,
}

/// Load a chat model by id/path (default: the catalog's default chat model).
pub fn load_chat(g: &Global, model: Option<&str>) -> Result<ChatModel> {
    let models = g.models();
    let resolved = models.resolve_or_default(model, Role::Chat)?;
    let device = g.device()?;
    let path = resolved.paths[0].clone();
    ChatModel::load(&path, &device, resolved.spec.as_ref()).with_context(|| format!("loading {}", resolved.name()))
}

pub fn tokenize(g: &Global, a: TokenizeArgs) -> Result<()> {
    let m = load_chat(g, a.model.model.as_deref())?;
    let ids = m.tokenizer.encode(&a.text, a.special)?;
    if a.json {
        println!("{}", serde_json::to_string(&ids)?);
    } else {
        println!("{}", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" "));
    }
    Ok(())
}

pub fn generate(g: &Global, a: GenerateArgs) -> Result<()> {
    let m = load_chat(g, a.model.model.as_deref())?;
    if a.tools {
        return tool_step(&m, &a);
    }
    let ids = if a.chat {
        m.chat_prompt(&[ChatMessage::new("user", a.prompt.clone())], true)?.1
    } else {
        m.tokenizer.encode_prompt(&a.prompt)?
    };
    let n_ctx = a.context_window.unwrap_or(m.weights.config.context_length.min(8192));
    let mut session = Session::new(&m, n_ctx)?;
    let mut sampler = Sampler::new(a.sampling.config());
    let mut stream = TokenStream::default();
    let stdout = std::io::stdout();
    let r = session.generate(&ids, &mut sampler, a.max_tokens, None, |t| {
        if let Some(s) = stream.push(&m.tokenizer, t)? {
            let mut o = stdout.lock();
            let _ = o.write_all(s.as_bytes());
            let _ = o.flush();
        }
        Ok(true)
    })?;
    println!();
    let p = r.prompt;
    let dec = r.tokens.len();
    eprintln!(
        "prompt: {} tokens ({:.1} tok/s), decode: {} tokens ({:.1} tok/s)",
        p.evaluated,
        p.evaluated as f64 / p.elapsed.as_secs_f64().max(1e-9),
        dec,
        dec as f64 / r.decode_elapsed.as_secs_f64().max(1e-9)
    );
    Ok(())
}

/// `generate --tools`: one constrained step with the built-in tools.
fn tool_step(m: &ChatModel, a: &GenerateArgs) -> Result<()> {
    use pagemind::grammar::{compact_listing, decode_step, StepFormat, StepGrammar};
    let tools = pagemind::tools::builtin_tools(&["persona".into(), "human".into()]);
    let format = StepFormat::of(m);
    let grammar = StepGrammar::new(m, &tools, format)?;
    let system = format!(
        "You are a helpful agent with memory. Every reply is exactly one function call.\nFunctions:\n{}",
        compact_listing(&tools)
    );
    let (_, ids) =
        m.chat_prompt(&[ChatMessage::new("system", system), ChatMessage::new("user", a.prompt.clone())], true)?;
    let n_ctx = a.context_window.unwrap_or(m.weights.config.context_length.min(8192));
    let mut session = Session::new(m, n_ctx)?;
    let mut sampler = Sampler::new(a.sampling.config());
    let step = decode_step(&grammar, &mut session, &ids, &mut sampler, |_| {})?;
    println!("{}", step.text);
    eprintln!(
        "call: {}({}) continues={} | {} tokens ({} forced), {} masks in {:.2} ms, step {:.0} ms",
        step.call.function,
        step.call.arguments,
        step.call.continues(),
        step.stats.tokens,
        step.stats.forced,
        step.stats.masks,
        step.stats.mask_time.as_secs_f64() * 1e3,
        step.stats.total_time.as_secs_f64() * 1e3
    );
    Ok(())
}
