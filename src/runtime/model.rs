/*! The transformer forward pass for GGUF `llama` and `qwen2` models.

We own it (rather than use candle-transformers' quantized models) so that the KV cache is ours:
preallocated, truncatable for prefix reuse ([`super::KvCache`]). Matrix products go through
[`Linear`]: pagemind's kernels for Q4_1, candle's `QMatMul` otherwise; grouped-query attention runs without copying keys
and values per query head (queries of one KV group are stacked as rows of one matmul).
*/

use super::embedding::Embedding;
use super::gguf::Gguf;
use super::kv_cache::KvCache;
use super::linear::{Linear, LinearGroup};
use crate::{Error, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

/// Architecture-dependent details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama family (SmolLM2): interleaved RoPE, no QKV bias.
    Llama,
    /// Qwen2 family: NeoX RoPE, QKV bias.
    Qwen2,
}

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f64,
    pub context_length: usize,
    pub vocab_size: usize,
}

impl Config {
    fn from_gguf(g: &Gguf) -> Result<Self> {
        let a = g.arch();
        let arch = match a.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            _ => unreachable!("Gguf::open rejects other architectures"),
        };
        let k = |s: &str| format!("{a}.{s}");
        let n_embd = g.u64(&k("embedding_length"))? as usize;
        let n_head = g.u64(&k("attention.head_count"))? as usize;
        let head_dim = if g.has(&k("rope.dimension_count")) {
            g.u64(&k("rope.dimension_count"))? as usize
        } else {
            n_embd / n_head
        };
        let theta = if g.has(&k("rope.freq_base")) { g.f32(&k("rope.freq_base"))? } else { 10_000.0 };
        let vocab_size = g.strings("tokenizer.ggml.tokens").map(|t| t.len()).unwrap_or(0);
        let c = Config {
            arch,
            n_layer: g.u64(&k("block_count"))? as usize,
            n_embd,
            n_head,
            n_head_kv: g.u64(&k("attention.head_count_kv"))? as usize,
            head_dim,
            rope_theta: theta,
            rms_eps: g.f32(&k("attention.layer_norm_rms_epsilon"))? as f64,
            context_length: (g.u64(&k("context_length"))? as usize).min(MAX_POSITIONS),
            vocab_size,
        };
        c.check(g, &a)?;
        Ok(c)
    }

    /// Reject hyper-parameters no real model has (a corrupt or crafted file) before anything
    /// is sized from them: each error names the file and the metadata key.
    fn check(&self, g: &Gguf, a: &str) -> Result<()> {
        let bad = |key: &str, v: usize, want: &str| {
            Err(Error::Gguf {
                path: g.path.clone(),
                msg: format!(
                    "metadata key '{a}.{key}' = {v}: {want}; the file is corrupt or not a model pagemind can run"
                ),
            })
        };
        if !(1..=MAX_LAYERS).contains(&self.n_layer) {
            return bad("block_count", self.n_layer, &format!("expected 1 to {MAX_LAYERS}"));
        }
        if !(1..=MAX_WIDTH).contains(&self.n_embd) {
            return bad("embedding_length", self.n_embd, &format!("expected 1 to {MAX_WIDTH}"));
        }
        if !(1..=MAX_HEADS).contains(&self.n_head) {
            return bad("attention.head_count", self.n_head, &format!("expected 1 to {MAX_HEADS}"));
        }
        if self.n_head_kv == 0 || self.n_head_kv > self.n_head || !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(
                "attention.head_count_kv",
                self.n_head_kv,
                &format!("expected a divisor of head_count ({})", self.n_head),
            );
        }
        if self.head_dim < 2 || !self.head_dim.is_multiple_of(2) || self.head_dim > MAX_WIDTH {
            return bad("rope.dimension_count", self.head_dim, "expected an even head size of at least 2");
        }
        if self.context_length == 0 {
            return bad("context_length", 0, "expected at least 1");
        }
        if self.vocab_size == 0 {
            return Err(Error::Gguf {
                path: g.path.clone(),
                msg: "metadata key 'tokenizer.ggml.tokens' is empty".into(),
            });
        }
        Ok(())
    }
}

/// Largest values the checks accept (far above any model these architectures have).
const MAX_LAYERS: usize = 1024;
const MAX_WIDTH: usize = 1 << 16;
const MAX_HEADS: usize = 1024;
/// Positions the RoPE tables hold at most, whatever `context_length` the file claims.
pub const MAX_POSITIONS: usize = 1 << 17;

/// Check a weight's shape against the hyper-parameters (a mismatch would otherwise reach a
/// kernel's assertion or index past the vocabulary).
fn expect_shape(path: &std::path::Path, name: &str, t: &QTensor, want: &[usize]) -> Result<()> {
    if t.shape().dims() != want {
        return Err(Error::Gguf {
            path: path.to_path_buf(),
            msg: format!("tensor {name}: shape {:?}, expected {want:?} from the metadata", t.shape().dims()),
        });
    }
    Ok(())
}

struct Layer {
    attn_norm: Tensor,
    /// Query, key, value projections.
    qkv: LinearGroup,
    /// Q, K and V biases, concatenated (Qwen2).
    qkv_bias: Option<Tensor>,
    wo: Linear,
    ffn_norm: Tensor,
    /// Gate and up projections.
    gate_up: LinearGroup,
    down: Linear,
}

/// Loaded weights of a decoder-only transformer.
pub struct Transformer {
    pub config: Config,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// The tensor types the quantized matmul supports here.
fn check_dtype(g: &Gguf, name: &str, t: GgmlDType) -> Result<()> {
    use GgmlDType::*;
    match t {
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K | Q8K => Ok(()),
        other => Err(Error::Unsupported {
            path: g.path.clone(),
            msg: format!("tensor {name}: unsupported tensor type {other:?}"),
        }),
    }
}

impl Transformer {
    /// Load all weights from an opened GGUF.
    pub fn load(g: &mut Gguf, device: &Device) -> Result<Self> {
        let config = Config::from_gguf(g)?;
        let path = g.path.clone();
        let mut get = |name: &str, device: &Device| -> Result<QTensor> {
            let info = g
                .content
                .tensor_infos
                .get(name)
                .ok_or_else(|| Error::Gguf { path: path.clone(), msg: format!("missing tensor '{name}'") })?;
            check_dtype(g, name, info.ggml_dtype)?;
            g.content
                .tensor(&mut g.file, name, device)
                .map_err(|e| Error::Gguf { path: path.clone(), msg: format!("tensor {name}: {e}") })
        };
        let c = &config;
        let (d, q_out, kv_out) = (c.n_embd, c.n_head * c.head_dim, c.n_head_kv * c.head_dim);
        let shape = |name: &str, t: &QTensor, want: &[usize]| expect_shape(&path, name, t, want);
        let embed_q = get("token_embd.weight", device)?;
        shape("token_embd.weight", &embed_q, &[c.vocab_size, d])?;
        let embed = Embedding::new(&embed_q, device)?;
        let norm_q = get("output_norm.weight", device)?;
        shape("output_norm.weight", &norm_q, &[d])?;
        let norm = norm_q.dequantize(device)?;
        let output = match get("output.weight", device) {
            Ok(w) => {
                shape("output.weight", &w, &[c.vocab_size, d])?;
                Linear::new(w, device)?
            }
            Err(_) => Linear::new(embed_q, device)?,
        };
        let qkv_bias = config.arch == Arch::Qwen2;
        let mut layers = Vec::with_capacity(config.n_layer.min(256));
        for i in 0..config.n_layer {
            let p = format!("blk.{i}");
            // Matrices are read on the CPU: Linear and LinearGroup move them to the device once,
            // after stacking Q/K/V and gate/up.
            let mut q = |s: &str, rows: Option<usize>, cols: usize| -> Result<QTensor> {
                let name = format!("{p}.{s}.weight");
                let t = get(&name, &Device::Cpu)?;
                let rows = rows.unwrap_or(t.shape().dims().first().copied().unwrap_or(0).max(1));
                shape(&name, &t, &[rows, cols])?;
                Ok(t)
            };
            let qkv = LinearGroup::load(
                vec![q("attn_q", Some(q_out), d)?, q("attn_k", Some(kv_out), d)?, q("attn_v", Some(kv_out), d)?],
                device,
            )?;
            let gate = q("ffn_gate", None, d)?;
            let ff = gate.shape().dims()[0];
            let gate_up = LinearGroup::load(vec![gate, q("ffn_up", Some(ff), d)?], device)?;
            let (wo, down) = (
                Linear::new(q("attn_output", Some(d), q_out)?, device)?,
                Linear::new(q("ffn_down", Some(d), ff)?, device)?,
            );
            let mut f = |s: &str| -> Result<Tensor> {
                let name = format!("{p}.{s}");
                let t = get(&name, device)?;
                let want = match s {
                    "attn_q.bias" => q_out,
                    "attn_k.bias" | "attn_v.bias" => kv_out,
                    _ => d,
                };
                shape(&name, &t, &[want])?;
                Ok(t.dequantize(device)?)
            };
            let qkv_bias = if qkv_bias {
                Some(Tensor::cat(&[f("attn_q.bias")?, f("attn_k.bias")?, f("attn_v.bias")?], 0)?)
            } else {
                None
            };
            layers.push(Layer {
                attn_norm: f("attn_norm.weight")?,
                ffn_norm: f("ffn_norm.weight")?,
                qkv,
                qkv_bias,
                wo,
                gate_up,
                down,
            });
        }
        let (cos, sin) = rope_tables(config.head_dim, config.rope_theta, config.context_length, device)?;
        Ok(Self { config, embed, layers, norm, output, cos, sin, device: device.clone() })
    }

    /// A fresh cache for this model holding up to `n_ctx` positions.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        KvCache::new(self.config.n_layer, self.config.n_head_kv, self.config.head_dim, n_ctx, &self.device)
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Evaluate `tokens` at positions `cache.len()..`, append them to the cache and return the
    /// logits of the last position (`[vocab]`, f32).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let c = &self.config;
        let t = tokens.len();
        let pos = cache.len();
        if pos + t > cache.max_len() || pos + t > c.context_length {
            return Err(Error::ContextOverflow { tokens: pos + t, context: cache.max_len().min(c.context_length) });
        }
        cache.reserve(t)?;
        let mut x = self.embed.lookup(tokens, &self.device)?.unsqueeze(0)?;
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let mask = if t > 1 { Some(causal_mask(t, pos, c.n_head / c.n_head_kv, &self.device)?) } else { None };
        let n_rep = c.n_head / c.n_head_kv;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        // pagemind's fused CUDA kernels (Q/K/V + bias + RoPE, SiLU gate, add + norm) where they apply.
        let fused = self.device.is_cuda() && super::linear::own_kernels();
        // The next layer's normed input, when the residual add before it computed it.
        let mut normed: Option<Tensor> = None;
        for (li, l) in self.layers.iter().enumerate() {
            let h = match normed.take() {
                Some(h) => h,
                None => candle_nn::ops::rms_norm(&x, &l.attn_norm, c.rms_eps as f32)?,
            };
            let (q, k, v) = match fused.then(|| self.qkv_fused(l, &h, pos, &cos, &sin)).transpose()?.flatten() {
                Some(qkv) => qkv,
                None => self.qkv_candle(l.qkv.forward_biased(&h, l.qkv_bias.as_ref())?, &cos, &sin)?,
            };
            let (k_all, v_all) = cache.append(li, &k, &v)?;
            // One new token: attention straight from the cache buffers (CPU, or one CUDA kernel);
            // otherwise candle.
            let fast = match t {
                1 => match super::attention::decode(&q, &k_all, &v_all, scale as f32)? {
                    None if super::linear::own_kernels() => {
                        crate::kernels::cuda::decode_attention(&q, &k_all, &v_all, scale as f32)?
                    }
                    None => None,
                    cpu => cpu,
                },
                _ => None,
            };
            let y = match fast {
                Some(y) => y,
                None => {
                    // Stack the n_rep query heads of each KV group as rows: [1, kv, n_rep*t, d].
                    let q = q.reshape((1, c.n_head_kv, n_rep * t, c.head_dim))?;
                    let mut att = (q.matmul(&k_all.transpose(2, 3)?)? * scale)?;
                    if let Some(m) = &mask {
                        att = att.broadcast_add(m)?;
                    }
                    let att = candle_nn::ops::softmax_last_dim(&att)?;
                    let y = att.matmul(&v_all)?; // [1, kv, n_rep*t, d]
                    y.reshape((1, c.n_head, t, c.head_dim))?.transpose(1, 2)?.reshape((1, t, c.n_embd))?
                }
            };
            let h;
            (x, h) = self.add_norm(&x, &l.wo.forward(&y)?, &l.ffn_norm, fused)?;
            let act = match fused.then(|| l.gate_up.forward_fused(&h)).transpose()?.flatten() {
                Some(gu) => match crate::kernels::cuda::swiglu(&gu)? {
                    Some(a) => a,
                    None => swiglu(&l.gate_up.split(gu, None)?)?,
                },
                None => swiglu(&l.gate_up.forward(&h)?)?,
            };
            let down = l.down.forward(&act)?;
            match self.layers.get(li + 1) {
                Some(next) => {
                    let h;
                    (x, h) = self.add_norm(&x, &down, &next.attn_norm, fused)?;
                    normed = Some(h);
                }
                None => x = (x + down)?,
            }
        }
        cache.advance(t);
        let last = x.narrow(1, t - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, c.rms_eps as f32)?;
        Ok(self.output.forward(&last)?.flatten_all()?.to_dtype(DType::F32)?)
    }
}

impl Transformer {
    /// Query, key and value heads (`[1, heads, t, d]`, keys and queries rotated) from the
    /// projections' outputs `[1, t, heads * d]` (bias added), by candle's ops.
    fn qkv_candle(&self, parts: Vec<Tensor>, cos: &Tensor, sin: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let c = &self.config;
        let [q, k, v]: [Tensor; 3] = parts.try_into().map_err(|_| Error::Invalid("Q/K/V: three projections".into()))?;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            let t = y.dim(1)?;
            Ok(y.reshape((1, t, n, c.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let (q, k, v) = (heads(q, c.n_head)?, heads(k, c.n_head_kv)?, heads(v, c.n_head_kv)?);
        let (q, k) = match c.arch {
            Arch::Llama => (candle_nn::rotary_emb::rope_i(&q, cos, sin)?, candle_nn::rotary_emb::rope_i(&k, cos, sin)?),
            Arch::Qwen2 => (candle_nn::rotary_emb::rope(&q, cos, sin)?, candle_nn::rotary_emb::rope(&k, cos, sin)?),
        };
        Ok((q, k, v))
    }

    /// The same heads from the fused product by one CUDA kernel (`kernels::cuda::qkv_rope`);
    /// `None` where Q/K/V are not fused (nothing computed yet). Should the kernel decline, the
    /// product is split and rotated by candle's ops.
    fn qkv_fused(
        &self,
        l: &Layer,
        h: &Tensor,
        pos: usize,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        let c = &self.config;
        let Some(y) = l.qkv.forward_fused(h)? else { return Ok(None) };
        let shape = crate::kernels::cuda::QkvRope {
            n_head: c.n_head,
            n_kv: c.n_head_kv,
            head_dim: c.head_dim,
            pos,
            interleaved: c.arch == Arch::Llama,
        };
        let Some(all) = crate::kernels::cuda::qkv_rope(&y, l.qkv_bias.as_ref(), &self.cos, &self.sin, &shape)? else {
            return self.qkv_candle(l.qkv.split(y, l.qkv_bias.as_ref())?, cos, sin).map(Some);
        };
        let part = |start: usize, n: usize| -> Result<Tensor> { Ok(all.narrow(0, start, n)?.unsqueeze(0)?) };
        Ok(Some((part(0, c.n_head)?, part(c.n_head, c.n_head_kv)?, part(c.n_head + c.n_head_kv, c.n_head_kv)?)))
    }

    /// The residual stream `x + y` and its RMS norm by `w`: one CUDA kernel when `fused`
    /// (`kernels::cuda::add_rms_norm`), else candle's add and `rms_norm`.
    fn add_norm(&self, x: &Tensor, y: &Tensor, w: &Tensor, fused: bool) -> Result<(Tensor, Tensor)> {
        let eps = self.config.rms_eps as f32;
        if fused {
            if let Some(both) = crate::kernels::cuda::add_rms_norm(x, y, w, eps)? {
                return Ok(both);
            }
        }
        let sum = (x + y)?;
        let normed = candle_nn::ops::rms_norm(&sum, w, eps)?;
        Ok((sum, normed))
    }

    /// Keys `[1, kv_heads, t, head_dim]` rotated as if `delta` positions later (earlier when
    /// negative): RoPE rotations compose, so cached keys moved to new positions need only this
    /// (reuse after eviction; values carry no position).
    pub fn rerotate_keys(&self, k: &Tensor, delta: i64) -> Result<Tensor> {
        let c = &self.config;
        let t = k.dim(2)?;
        let half = c.head_dim / 2;
        // One rotation for every position: the angles depend on the shift, not the position.
        let angles: Vec<f64> =
            (0..half).map(|i| delta as f64 / (c.rope_theta as f64).powf(2.0 * i as f64 / c.head_dim as f64)).collect();
        let row = |f: fn(f64) -> f64| angles.iter().map(|&a| f(a) as f32).collect::<Vec<f32>>();
        let cos = Tensor::from_vec(row(f64::cos), (1, half), &self.device)?.repeat((t, 1))?;
        let sin = Tensor::from_vec(row(f64::sin), (1, half), &self.device)?.repeat((t, 1))?;
        let k = k.contiguous()?;
        Ok(match c.arch {
            Arch::Llama => candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?,
            Arch::Qwen2 => candle_nn::rotary_emb::rope(&k, &cos, &sin)?,
        })
    }
}

/// `silu(gate) * up` from the gate/up products' outputs, by candle's ops.
fn swiglu(gu: &[Tensor]) -> Result<Tensor> {
    Ok((candle_nn::ops::silu(&gu[0])? * &gu[1])?)
}

/// cos/sin tables `[positions, head_dim/2]`.
fn rope_tables(head_dim: usize, theta: f32, positions: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..head_dim / 2).map(|i| 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32)).collect();
    let inv = Tensor::from_vec(inv, (1, head_dim / 2), device)?;
    let pos = Tensor::arange(0u32, positions as u32, device)?.to_dtype(DType::F32)?.reshape((positions, 1))?;
    let freqs = pos.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Additive mask `[n_rep*t, pos+t]`: row `r*t+i` (query position `pos+i`) sees keys `..=pos+i`.
/// Built on the host, except on CUDA: there by a few kernels on the device
/// ([`causal_mask_on_device`]) rather than uploaded (100 MB for Qwen2.5 at 2,048 tokens). Metal
/// keeps the host-built mask (the device path is untested there).
fn causal_mask(t: usize, pos: usize, n_rep: usize, device: &Device) -> Result<Tensor> {
    if device.is_cuda() {
        return causal_mask_on_device(t, pos, n_rep, device);
    }
    let total = pos + t;
    let mut m = vec![0f32; n_rep * t * total];
    for r in 0..n_rep {
        for i in 0..t {
            let row = &mut m[(r * t + i) * total..(r * t + i + 1) * total];
            for v in row.iter_mut().skip(pos + i + 1) {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    Ok(Tensor::from_vec(m, (n_rep * t, total), device)?)
}

/// [`causal_mask`] by tensor ops on `device`: a key is masked where its position exceeds the
/// query's.
fn causal_mask_on_device(t: usize, pos: usize, n_rep: usize, device: &Device) -> Result<Tensor> {
    let total = pos + t;
    let query = Tensor::arange(pos as u32, total as u32, device)?.reshape((1, t, 1))?;
    let key = Tensor::arange(0u32, total as u32, device)?.reshape((1, 1, total))?;
    let shape = (n_rep, t, total);
    let future = key.broadcast_gt(&query)?.broadcast_as(shape)?;
    let neg = Tensor::new(f32::NEG_INFINITY, device)?.broadcast_as(shape)?;
    let zero = Tensor::new(0f32, device)?.broadcast_as(shape)?;
    Ok(future.where_cond(&neg, &zero)?.reshape((n_rep * t, total))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_built_causal_mask_equals_the_host_built_one() {
        for (t, pos, n_rep) in [(2, 0, 1), (5, 0, 3), (4, 7, 6), (1, 3, 2)] {
            let host = causal_mask(t, pos, n_rep, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let ops = causal_mask_on_device(t, pos, n_rep, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(host, ops, "t {t}, pos {pos}, n_rep {n_rep}");
            assert!(
                host[0][pos + 1..].iter().all(|v| *v == f32::NEG_INFINITY) && host[0][..=pos].iter().all(|v| *v == 0.0)
            );
        }
    }
}
