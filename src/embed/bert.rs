/*! A CPU BERT encoder for sentence embeddings, without padding and without per-op allocation.

candle's `BertModel` pads each batch to its longest text, allocates a fresh tensor for each of its
~20 ops per layer (the page faults were 15% of the run), and evaluates GELU and softmax with
scalar libm calls. [`CpuBert`] packs the batch's texts end to end (rows = real tokens only),
runs every linear layer as one GEMM over all rows (the `gemm` crate, AVX-512 where present, on the
rayon pool), fuses Q/K/V into one product, runs attention per (text, head) in parallel, and
keeps its buffers in a reused [`Workspace`].

Supported: post-LayerNorm BERT with absolute positions and erf GELU (`hidden_act = "gelu"`), the
sentence-transformers MiniLM/MPNet-style encoders. Anything else stays on candle's model.
*/

use crate::kernels::activations::{exp_inplace, gelu_erf_inplace};
use crate::kernels::pool::SharedMut;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Shape hyper-parameters read from `config.json`.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub eps: f32,
}

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    /// `[3h, h]`: query, key and value weights stacked.
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    ln1: Norm,
    up_w: Vec<f32>,
    up_b: Vec<f32>,
    down_w: Vec<f32>,
    down_b: Vec<f32>,
    ln2: Norm,
}

/// Activation buffers for one batch, grown as needed and reused.
#[derive(Default)]
pub struct Workspace {
    h: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    up: Vec<f32>,
}

/// The encoder's weights, f32, row-major `[out, in]` as stored by PyTorch.
pub struct CpuBert {
    dims: Dims,
    word: Vec<f32>,
    pos: Vec<f32>,
    typ: Vec<f32>,
    emb_ln: Norm,
    layers: Vec<Layer>,
    work: Mutex<Workspace>,
}

impl CpuBert {
    /// Load from a safetensors file (names with or without a `bert.` prefix).
    pub fn load(weights: &Path, dims: Dims) -> Result<Self> {
        let bad = |msg: String| Error::file(weights, msg);
        let tensors = candle_core::safetensors::load(weights, &Device::Cpu)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let prefix = if tensors.contains_key("embeddings.word_embeddings.weight") { "" } else { "bert." };
        let h = dims.hidden;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> { take(&tensors, prefix, name, shape, weights) };
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm { w: get(&format!("{name}.weight"), &[h])?, b: get(&format!("{name}.bias"), &[h])? })
        };
        let mut layers = Vec::with_capacity(dims.layers);
        for i in 0..dims.layers {
            let l = format!("encoder.layer.{i}");
            let mut qkv_w = Vec::with_capacity(3 * h * h);
            let mut qkv_b = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                qkv_w.extend(get(&format!("{l}.attention.self.{part}.weight"), &[h, h])?);
                qkv_b.extend(get(&format!("{l}.attention.self.{part}.bias"), &[h])?);
            }
            layers.push(Layer {
                qkv_w,
                qkv_b,
                out_w: get(&format!("{l}.attention.output.dense.weight"), &[h, h])?,
                out_b: get(&format!("{l}.attention.output.dense.bias"), &[h])?,
                ln1: norm(&format!("{l}.attention.output.LayerNorm"))?,
                up_w: get(&format!("{l}.intermediate.dense.weight"), &[dims.intermediate, h])?,
                up_b: get(&format!("{l}.intermediate.dense.bias"), &[dims.intermediate])?,
                down_w: get(&format!("{l}.output.dense.weight"), &[h, dims.intermediate])?,
                down_b: get(&format!("{l}.output.dense.bias"), &[h])?,
                ln2: norm(&format!("{l}.output.LayerNorm"))?,
            });
        }
        let word = tensors
            .get(&format!("{prefix}embeddings.word_embeddings.weight"))
            .and_then(|t| t.dims2().ok())
            .ok_or_else(|| bad("missing tensor embeddings.word_embeddings.weight".into()))?;
        Ok(Self {
            word: get("embeddings.word_embeddings.weight", &[word.0, h])?,
            pos: get("embeddings.position_embeddings.weight", &[dims.max_positions, h])?,
            typ: {
                let t = tensors
                    .get(&format!("{prefix}embeddings.token_type_embeddings.weight"))
                    .and_then(|t| t.dims2().ok())
                    .map_or(1, |d| d.0);
                get("embeddings.token_type_embeddings.weight", &[t, h])?
            },
            emb_ln: norm("embeddings.LayerNorm")?,
            layers,
            dims,
            work: Mutex::new(Workspace::default()),
        })
    }

    /// Mean-pooled, L2-normalised embeddings of `texts`, each given as `(ids, type_ids)`.
    pub fn embed(&self, texts: &[(&[u32], &[u32])]) -> Result<Vec<Vec<f32>>> {
        let mut fresh = Workspace::default();
        let mut guard = self.work.try_lock().ok();
        let ws = guard.as_deref_mut().unwrap_or(&mut fresh);
        let h = self.dims.hidden;
        let mut spans = Vec::with_capacity(texts.len());
        let mut rows = 0;
        for (ids, types) in texts {
            if ids.len() > self.dims.max_positions || types.len() != ids.len() {
                return Err(Error::Tokenizer(format!(
                    "{} tokens, {} type ids: the encoder takes at most {} tokens",
                    ids.len(),
                    types.len(),
                    self.dims.max_positions
                )));
            }
            spans.push((rows, ids.len()));
            rows += ids.len();
        }
        let vocab = self.word.len() / h;
        let types_n = self.typ.len() / h;
        grow(&mut ws.h, rows * h);
        for ((ids, types), &(start, _)) in texts.iter().zip(&spans) {
            for (p, (&id, &ty)) in ids.iter().zip(types.iter()).enumerate() {
                let (id, ty) = (id as usize, ty as usize);
                if id >= vocab || ty >= types_n {
                    return Err(Error::Tokenizer(format!("token id {id} or type {ty} outside the model's tables")));
                }
                let row = &mut ws.h[(start + p) * h..(start + p + 1) * h];
                let (w, ps, t) = (&self.word[id * h..][..h], &self.pos[p * h..][..h], &self.typ[ty * h..][..h]);
                for i in 0..h {
                    row[i] = w[i] + ps[i] + t[i];
                }
            }
        }
        layer_norm_rows(&mut ws.h[..rows * h], None, &self.emb_ln, self.dims.eps);
        for layer in &self.layers {
            self.layer(layer, ws, rows, &spans);
        }
        Ok(spans
            .iter()
            .map(|&(start, len)| {
                let mut v = vec![0.0f32; h];
                for r in start..start + len {
                    for (a, x) in v.iter_mut().zip(&ws.h[r * h..(r + 1) * h]) {
                        *a += x;
                    }
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= n);
                v
            })
            .collect())
    }

    fn layer(&self, l: &Layer, ws: &mut Workspace, rows: usize, spans: &[(usize, usize)]) {
        let (h, inter, eps) = (self.dims.hidden, self.dims.intermediate, self.dims.eps);
        grow(&mut ws.qkv, rows * 3 * h);
        grow(&mut ws.ctx, rows * h);
        grow(&mut ws.tmp, rows * h);
        grow(&mut ws.up, rows * inter);
        linear(&ws.h[..rows * h], &l.qkv_w, &l.qkv_b, &mut ws.qkv[..rows * 3 * h], rows, h);
        attention(&ws.qkv[..rows * 3 * h], &mut ws.ctx[..rows * h], spans, h, self.dims.heads);
        linear(&ws.ctx[..rows * h], &l.out_w, &l.out_b, &mut ws.tmp[..rows * h], rows, h);
        layer_norm_rows(&mut ws.h[..rows * h], Some(&ws.tmp[..rows * h]), &l.ln1, eps);
        linear(&ws.h[..rows * h], &l.up_w, &l.up_b, &mut ws.up[..rows * inter], rows, h);
        ws.up[..rows * inter].par_chunks_mut(inter * 16).for_each(gelu_erf_inplace);
        linear(&ws.up[..rows * inter], &l.down_w, &l.down_b, &mut ws.tmp[..rows * h], rows, inter);
        layer_norm_rows(&mut ws.h[..rows * h], Some(&ws.tmp[..rows * h]), &l.ln2, eps);
    }
}

fn take(tensors: &HashMap<String, Tensor>, prefix: &str, name: &str, shape: &[usize], file: &Path) -> Result<Vec<f32>> {
    let t =
        tensors.get(&format!("{prefix}{name}")).ok_or_else(|| Error::file(file, format!("missing tensor {name}")))?;
    if t.dims() != shape {
        return Err(Error::file(file, format!("tensor {name} has shape {:?}, expected {shape:?}", t.dims())));
    }
    let v = t
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| Error::file(file, format!("tensor {name}: {e}")))?;
    Ok(v)
}

fn grow(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

fn threads() -> Parallelism {
    match rayon::current_num_threads() {
        1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// `out[rows, n] = x[rows, k] W^T + b` for `W` of shape `[n, k]`.
fn linear(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], rows: usize, k: usize) {
    let n = b.len();
    debug_assert!(x.len() == rows * k && w.len() == n * k && out.len() == rows * n);
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(b);
    }
    // SAFETY: the three buffers have the lengths asserted above and the strides describe them:
    // x row-major [rows, k], W^T read from W row-major [n, k], out row-major [rows, n].
    unsafe {
        gemm(
            rows,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            threads(),
        );
    }
}

/// Scaled dot-product attention over each text's own rows, for every head.
fn attention(qkv: &[f32], ctx: &mut [f32], spans: &[(usize, usize)], h: usize, heads: usize) {
    let dh = h / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    let out = SharedMut(ctx.as_mut_ptr());
    let jobs: Vec<(usize, usize, usize)> =
        spans.iter().flat_map(|&(s, n)| (0..heads).map(move |hd| (s, n, hd))).collect();
    jobs.par_iter().for_each_init(Vec::new, |scores: &mut Vec<f32>, &(start, n, hd)| {
        scores.resize(n * n, 0.0);
        let q = qkv[start * 3 * h + hd * dh..].as_ptr();
        let k = qkv[start * 3 * h + h + hd * dh..].as_ptr();
        let v = qkv[start * 3 * h + 2 * h + hd * dh..].as_ptr();
        let row = (3 * h) as isize;
        // SAFETY: q/k/v address rows start..start+n of the qkv buffer with row stride 3h and
        // dh columns; the scores buffer is n x n; the ctx block (rows start..start+n, columns
        // hd*dh..(hd+1)*dh) belongs to this job alone.
        unsafe {
            gemm(
                n,
                n,
                dh,
                scores.as_mut_ptr(),
                1,
                n as isize,
                false,
                q,
                1,
                row,
                k,
                row,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        for r in scores.chunks_exact_mut(n) {
            let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            r.iter_mut().for_each(|x| *x -= max);
            exp_inplace(r);
            let inv = 1.0 / r.iter().sum::<f32>();
            r.iter_mut().for_each(|x| *x *= inv);
        }
        unsafe {
            let dst = out.at(start * h + hd * dh);
            gemm(
                n,
                dh,
                n,
                dst,
                1,
                h as isize,
                false,
                scores.as_ptr(),
                1,
                n as isize,
                v,
                1,
                row,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    });
}

/// `x = LayerNorm(x + residual)` row by row (`residual` optional).
fn layer_norm_rows(x: &mut [f32], residual: Option<&[f32]>, norm: &Norm, eps: f32) {
    let h = norm.w.len();
    let rows_per_task = 64;
    x.par_chunks_mut(h * rows_per_task).enumerate().for_each(|(c, block)| {
        for (i, row) in block.chunks_exact_mut(h).enumerate() {
            if let Some(res) = residual {
                let r = &res[(c * rows_per_task + i) * h..][..h];
                row.iter_mut().zip(r).for_each(|(a, b)| *a += b);
            }
            let mean = row.iter().sum::<f32>() / h as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&norm.w).zip(&norm.b) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    });
}
