/*! Turning logits into the next token.

[`Sampler`] applies, in order: repetition penalty over the recent window, the [`TokenMask`]
(e.g. the grammar: disallowed tokens become `-inf`), then greedy argmax when temperature is 0,
else temperature, top-k, top-p and a seeded draw.
*/

use crate::{Error, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Restricts which tokens may come next. Implementations set disallowed logits to `-inf`.
pub trait TokenMask {
    /// Mask `logits` in place.
    fn apply(&mut self, logits: &mut [f32]) -> Result<()>;
}

/// Sampling parameters.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 1.0 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl SamplerConfig {
    /// Always the most likely token.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0, repeat_last_n: 64, seed: 0 }
    }
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self { temperature: 0.7, top_k: 40, top_p: 0.95, repeat_penalty: 1.1, repeat_last_n: 64, seed: 42 }
    }
}

/// A seeded sampler.
pub struct Sampler {
    pub config: SamplerConfig,
    rng: StdRng,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self { config, rng }
    }

    /// Pick the next token from `logits`; `history` feeds the repetition penalty.
    pub fn sample(&mut self, logits: &[f32], history: &[u32], mask: Option<&mut (dyn TokenMask + '_)>) -> Result<u32> {
        let mut l = logits.to_vec();
        let c = &self.config;
        if c.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(c.repeat_last_n);
            let mut seen = std::collections::HashSet::new();
            for &t in &history[start..] {
                if seen.insert(t) {
                    if let Some(v) = l.get_mut(t as usize) {
                        *v = if *v > 0.0 { *v / c.repeat_penalty } else { *v * c.repeat_penalty };
                    }
                }
            }
        }
        if let Some(m) = mask {
            m.apply(&mut l)?;
        }
        let best = argmax(&l).ok_or_else(|| Error::Invalid("no token is allowed at this point (empty mask)".into()))?;
        if c.temperature <= 0.0 {
            return Ok(best as u32);
        }
        let mut cand: Vec<(usize, f32)> = l.iter().copied().enumerate().filter(|(_, v)| v.is_finite()).collect();
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if c.top_k > 0 && cand.len() > c.top_k {
            cand.truncate(c.top_k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|(_, v)| ((v - max) / c.temperature).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let s: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= s);
        }
        let r: f32 = self.rng.random();
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if r < acc {
                return Ok(cand[i].0 as u32);
            }
        }
        Ok(cand[probs.len() - 1].0 as u32)
    }
}

/// Index of the largest finite value.
pub fn argmax(v: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in v.iter().enumerate() {
        if x.is_finite() && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OnlyOdd;
    impl TokenMask for OnlyOdd {
        fn apply(&mut self, l: &mut [f32]) -> Result<()> {
            l.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0).for_each(|(_, v)| *v = f32::NEG_INFINITY);
            Ok(())
        }
    }

    #[test]
    fn greedy_mask_and_seeded_sampling() {
        let logits = [5.0, 1.0, 4.0, 3.0];
        let mut g = Sampler::new(SamplerConfig::greedy());
        assert_eq!(g.sample(&logits, &[], None).unwrap(), 0);
        assert_eq!(g.sample(&logits, &[], Some(&mut OnlyOdd)).unwrap(), 3);
        let cfg = SamplerConfig { temperature: 1.0, top_k: 2, ..SamplerConfig::default() };
        let draws = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..cfg.clone() });
            (0..50).map(|_| s.sample(&logits, &[], None).unwrap()).collect::<Vec<_>>()
        };
        let a = draws(7);
        assert_eq!(a, draws(7), "same seed, same draws");
        assert!(a.iter().all(|&t| t == 0 || t == 2), "top-k 2 keeps only the two best");
        assert!(a.contains(&0) && a.contains(&2));
    }

    #[test]
    fn repetition_penalty_demotes_recent_tokens() {
        let logits = [2.0, 1.9];
        let mut s = Sampler::new(SamplerConfig { repeat_penalty: 1.5, ..SamplerConfig::greedy() });
        assert_eq!(s.sample(&logits, &[0], None).unwrap(), 1);
    }

    #[test]
    fn fully_masked_logits_are_an_error_not_a_panic() {
        struct All;
        impl TokenMask for All {
            fn apply(&mut self, l: &mut [f32]) -> Result<()> {
                l.fill(f32::NEG_INFINITY);
                Ok(())
            }
        }
        assert!(Sampler::new(SamplerConfig::greedy()).sample(&[1.0], &[], Some(&mut All)).is_err());
    }
}
