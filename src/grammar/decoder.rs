/*! The constrained decoding loop for one agent step. */

use super::{StepGrammar, ToolCall};
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
    Error::Invalid(format!("constrained decoding: {what}: {}", m.get_error().unwrap_or_default()))
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
    decode_with(grammar, session, prompt, &mut pick, on_token)
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
    decode_with(grammar, session, prompt, &mut pick, on_token)
}

/// Chooses the next token: logits, the session, the step's tokens so far and the grammar mask.
type Pick<'a> = dyn FnMut(&[f32], &Session, &[u32], &SimpleVob) -> Result<u32> + 'a;

fn decode_with(
    grammar: &StepGrammar,
    session: &mut Session,
    prompt: &[u32],
    pick: &mut Pick,
    mut on_token: impl FnMut(u32),
) -> Result<Step> {
    let t_all = Instant::now();
    let mut m = grammar.matcher()?;
    let mut stats = StepStats::default();
    let t0 = Instant::now();
    let mut logits = session.eval(prompt)?;
    stats.prompt_time = t0.elapsed();
    stats.prompt_reused = session.last.reused;
    stats.prompt_evaluated = session.last.evaluated;
    let mut out: Vec<u32> = vec![];
    let eos = grammar.eos();
    // The grammar bounds every string, so this only guards against a grammar bug.
    let limit = session.n_ctx().saturating_sub(session.tokens().len());
    loop {
        if m.is_stopped() {
            break;
        }
        let ff = m.compute_ff_tokens();
        if !ff.is_empty() {
            m.consume_tokens(&ff).map_err(|_| gerr(&m, "forced tokens"))?;
            stats.forced += ff.len();
            out.extend(&ff);
            ff.iter().for_each(|t| on_token(*t));
            if m.is_stopped() {
                break;
            }
            logits = session.feed(&ff)?;
            continue;
        }
        let tm = Instant::now();
        let mask = m.compute_mask().map_err(|_| gerr(&m, "mask"))?;
        let dt = tm.elapsed();
        stats.mask_time += dt;
        stats.mask_times.push(dt);
        stats.masks += 1;
        if mask.is_allowed(eos) && mask.num_set() == 1 {
            break; // the call is complete; only end-of-sequence may follow
        }
        let next = pick(&logits, session, &out, &mask)?;
        if next == eos && m.is_accepting().unwrap_or(false) {
            break;
        }
        m.consume_token(next).map_err(|_| gerr(&m, "token"))?;
        out.push(next);
        on_token(next);
        if out.len() >= limit {
            return Err(Error::ContextOverflow { tokens: session.tokens().len() + 1, context: session.n_ctx() });
        }
        if m.is_stopped() {
            break;
        }
        logits = session.feed(&[next])?;
    }
    // Feed nothing more: the caller appends the step to its prompt, and the KV cache already
    // holds the step's tokens except possibly the last, which the next eval evaluates.
    let text = session.model().tokenizer.decode(&out, false)?;
    let call = grammar.parse(&text)?;
    stats.tokens = out.len();
    stats.total_time = t_all.elapsed();
    Ok(Step { call, text, tokens: out, stats })
}
