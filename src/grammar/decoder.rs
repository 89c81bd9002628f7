/*! The constrained decoding loop for one agent step. */

use super::{JsonConstraint, StepGrammar, ToolCall};
use crate::runtime::{Sampler, Session, TokenMask};
use crate::{Error, Result};
use llguidance::Matcher;
use std::time::{Duration, Instant};
use toktrie::SimpleVob;

/// Counters of one step.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StepStats {
    /// Prompt tokens reused from the KV cache.
    pub prompt_reused: usize,
    /// Prompt tokens evaluated.
    pub prompt_evaluated: usize,
    /// Tokens of the call.
    pub tokens: usize,
    /// Of those, tokens forced by the grammar (appended without sampling).
    pub forced: usize,
    /// Time computing masks.
    #[serde(serialize_with = "ser_ms")]
    pub mask_time: Duration,
    /// Masks computed.
    pub masks: usize,
    /// Per-mask times (for medians and percentiles in benchmarks).
    #[serde(skip)]
    pub mask_times: Vec<Duration>,
    /// Time of the prompt evaluation.
    #[serde(serialize_with = "ser_ms")]
    pub prompt_time: Duration,
    /// Time of the whole step.
    #[serde(serialize_with = "ser_ms")]
    pub total_time: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// A finished step.
#[derive(Debug, Clone)]
pub struct Step {
    pub call: ToolCall,
    /// The step's text as generated.
    pub text: String,
    /// Its tokens.
    pub tokens: Vec<u32>,
    pub stats: StepStats,
}

struct VobMask<'a>(&'a SimpleVob);

impl TokenMask for VobMask<'_> {
    fn apply(&mut self, logits: &mut [f32]) -> Result<()> {
        for (i, l) in logits.iter_mut().enumerate() {
            if !self.0.is_allowed(i as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }
}

fn gerr(m: &Matcher, what: &str) -> Error {
    Error::Grammar(format!("constrained decoding: {what}: {}", m.get_error().unwrap_or_default()))
}

/// Decode one step for `prompt` under `grammar`. `on_token` sees each token as it is accepted.
pub fn decode_step(
    grammar: &StepGrammar,
    session: &mut Session,
    prompt: &[u32],
    sampler: &mut Sampler,
    on_token: impl FnMut(u32),
) -> Result<Step> {
    let mut pick = |logits: &[f32], session: &Session, _: &[u32], mask: &SimpleVob| {
        sampler.sample(logits, session.tokens(), Some(&mut VobMask(mask)))
    };
    let d = decode_with(grammar.matcher()?, grammar.eos(), session, prompt, None, &mut pick, on_token)?;
    finish_step(grammar, session, d)
}

/// Decode one step that writes `target` (a call as [`super::StepFormat::render`] writes it)
/// instead of sampling: every token still costs a forward pass and a grammar mask, so the
/// step costs what a sampled one of the same length costs (for `bench paging`, where weights
/// may be random). Where `target`'s next token is not allowed, the greedy choice under the mask
/// is taken and the call may differ from the script.
pub fn decode_scripted(
    grammar: &StepGrammar,
    session: &mut Session,
    prompt: &[u32],
    target: &str,
    on_token: impl FnMut(u32),
) -> Result<Step> {
    let tokenizer = session.model().tokenizer.clone();
    let eos = grammar.eos();
    let mut pick = |logits: &[f32], _: &Session, out: &[u32], mask: &SimpleVob| -> Result<u32> {
        let done = tokenizer.decode(out, false)?;
        if let Some(rest) = target.strip_prefix(done.as_str()) {
            if rest.is_empty() && mask.is_allowed(eos) {
                return Ok(eos);
            }
            if let Some(&t) = tokenizer.encode(rest, false)?.first() {
                if mask.is_allowed(t) {
                    return Ok(t);
                }
            }
        }
        let mut masked = logits.to_vec();
        VobMask(mask).apply(&mut masked)?;
        Ok(crate::runtime::argmax(&masked).unwrap_or(eos as usize) as u32)
    };
    let d = decode_with(grammar.matcher()?, grammar.eos(), session, prompt, None, &mut pick, on_token)?;
    finish_step(grammar, session, d)
}

/// Decode a reply constrained to `constraint`'s JSON Schema (OpenAI's `response_format`), at
/// most `max_tokens` tokens: `complete` says whether the value was finished.
pub fn decode_json(
    constraint: &JsonConstraint,
    session: &mut Session,
    prompt: &[u32],
    sampler: &mut Sampler,
    max_tokens: usize,
    on_token: impl FnMut(u32),
) -> Result<Constrained> {
    let mut pick = |logits: &[f32], session: &Session, _: &[u32], mask: &SimpleVob| {
        sampler.sample(logits, session.tokens(), Some(&mut VobMask(mask)))
    };
    let d =
        decode_with(constraint.matcher()?, constraint.eos(), session, prompt, Some(max_tokens), &mut pick, on_token)?;
    let text = session.model().tokenizer.decode(&d.tokens, false)?;
    Ok(Constrained { text, tokens: d.tokens, complete: d.complete, stats: d.stats })
}

/// A reply decoded by [`decode_json`].
#[derive(Debug, Clone)]
pub struct Constrained {
    pub text: String,
    pub tokens: Vec<u32>,
    /// Whether the grammar finished (false: `max_tokens` ran out first).
    pub complete: bool,
    pub stats: StepStats,
}

/// What the decoding loop produced.
struct Decoded {
    tokens: Vec<u32>,
    complete: bool,
    stats: StepStats,
    started: Instant,
}

fn finish_step(grammar: &StepGrammar, session: &Session, d: Decoded) -> Result<Step> {
    let text = session.model().tokenizer.decode(&d.tokens, false)?;
    let call = grammar.parse(&text)?;
    let mut stats = d.stats;
    stats.total_time = d.started.elapsed();
    Ok(Step { call, text, tokens: d.tokens, stats })
}

/// Chooses the next token: logits, the session, the step's tokens so far and the grammar mask.
type Pick<'a> = dyn FnMut(&[f32], &Session, &[u32], &SimpleVob) -> Result<u32> + 'a;

fn decode_with(
    mut m: Matcher,
    eos: u32,
    session: &mut Session,
    prompt: &[u32],
    max_tokens: Option<usize>,
    pick: &mut Pick,
    mut on_token: impl FnMut(u32),
) -> Result<Decoded> {
    let started = Instant::now();
    let mut stats = StepStats::default();
    let t0 = Instant::now();
    let mut logits = session.eval(prompt)?;
    stats.prompt_time = t0.elapsed();
    stats.prompt_reused = session.last.reused;
    stats.prompt_evaluated = session.last.evaluated;
    let mut out: Vec<u32> = vec![];
    // A step's grammar bounds every string, so the context limit only guards against a grammar
    // bug; a JSON reply is bounded by its `max_tokens`.
    let limit = session.n_ctx().saturating_sub(session.tokens().len());
    let mut complete = false;
    loop {
        if m.is_stopped() {
            complete = true;
            break;
        }
        if max_tokens.is_some_and(|n| out.len() >= n) {
            break;
        }
        let ff = m.compute_ff_tokens();
        if !ff.is_empty() {
            let ff = &ff[..ff.len().min(max_tokens.map_or(usize::MAX, |n| n - out.len()))];
            m.consume_tokens(ff).map_err(|_| gerr(&m, "forced tokens"))?;
            stats.forced += ff.len();
            out.extend(ff);
            ff.iter().for_each(|t| on_token(*t));
            if m.is_stopped() {
                complete = true;
                break;
            }
            logits = session.feed(ff)?;
            continue;
        }
        let tm = Instant::now();
        let mask = m.compute_mask().map_err(|_| gerr(&m, "mask"))?;
        let dt = tm.elapsed();
        stats.mask_time += dt;
        stats.mask_times.push(dt);
        stats.masks += 1;
        if mask.is_allowed(eos) && mask.num_set() == 1 {
            complete = true;
            break; // the value is complete; only end-of-sequence may follow
        }
        let next = pick(&logits, session, &out, &mask)?;
        if next == eos && m.is_accepting().unwrap_or(false) {
            complete = true;
            break;
        }
        m.consume_token(next).map_err(|_| gerr(&m, "token"))?;
        out.push(next);
        on_token(next);
        if out.len() >= limit {
            return Err(Error::ContextOverflow { tokens: session.tokens().len() + 1, context: session.n_ctx() });
        }
        if m.is_stopped() {
            complete = true;
            break;
        }
        logits = session.feed(&[next])?;
    }
    // Feed nothing more: the caller appends the output to its prompt, and the KV cache already
    // holds its tokens except possibly the last, which the next eval evaluates.
    stats.tokens = out.len();
    Ok(Decoded { tokens: out, complete, stats, started })
}
