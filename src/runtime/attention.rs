/*! Attention for one new token (decode) on the CPU, straight from the KV cache's buffers.

For a single query position candle's path costs more in overhead than in arithmetic: two GEMM
calls that pack their operands, a scalar-`expf` softmax, and a fresh tensor per step. [`decode`]
reads keys and values in place (the cache's `[1, kv_heads, capacity, head_dim]` buffers through
their layout), computes each head's scores, softmax (vectorized `exp`) and weighted sum of
values, and splits the heads across candle's CPU worker pool when the context is long enough to
pay for it. Grouped-query attention: query head `h` reads KV head `h / n_rep`.
*/

use crate::kernels::activations::exp_inplace;
use crate::kernels::attention::{max_of, score, weighted_sum};
use crate::kernels::pool::{parallel, SharedMut};
use crate::Result;
use candle_core::{Storage, Tensor};

/// Below this many multiply-adds the calling thread does the work alone.
const PARALLEL_MIN: usize = 64 * 1024;

/// `q`: `[1, n_head, 1, d]`; `k`, `v`: `[1, n_kv, len, d]` views (contiguous in the last dim).
/// Returns `[1, 1, n_head * d]`, or `None` if the tensors are not f32 CPU tensors.
pub fn decode(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Option<Tensor>> {
    let (_, n_head, t, d) = q.dims4()?;
    let (_, n_kv, len, dk) = k.dims4()?;
    if t != 1 || dk != d || v.dims() != k.dims() || n_kv == 0 || n_head % n_kv != 0 || !q.device().is_cpu() {
        return Ok(None);
    }
    let q = q.flatten_all()?.to_vec1::<f32>()?;
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Storage::Cpu(kc), Storage::Cpu(vc)) = (&*ks, &*vs) else { return Ok(None) };
    let (Ok(kd), Ok(vd)) = (kc.as_slice::<f32>(), vc.as_slice::<f32>()) else { return Ok(None) };
    let (kst, vst) = (kl.stride(), vl.stride());
    if kst[3] != 1 || vst[3] != 1 || kst[2] != d || vst[2] != d {
        return Ok(None);
    }
    let n_rep = n_head / n_kv;
    let mut out = vec![0f32; n_head * d];
    let run = |heads: std::ops::Range<usize>, out: &mut [f32]| {
        let mut scores = vec![0f32; len];
        for (i, h) in heads.enumerate() {
            let g = h / n_rep;
            let kb = &kd[kl.start_offset() + g * kst[1]..][..len * d];
            let vb = &vd[vl.start_offset() + g * vst[1]..][..len * d];
            let qh = &q[h * d..(h + 1) * d];
            score(qh, kb, scale, &mut scores);
            let max = max_of(&scores);
            scores.iter_mut().for_each(|s| *s -= max);
            exp_inplace(&mut scores);
            let inv = 1.0 / scores.iter().sum::<f32>();
            weighted_sum(&scores, vb, &mut out[i * d..(i + 1) * d]);
            out[i * d..(i + 1) * d].iter_mut().for_each(|x| *x *= inv);
        }
    };
    let ptr = SharedMut(out.as_mut_ptr());
    parallel(n_head, n_head * len * d >= PARALLEL_MIN, |heads| {
        // SAFETY: each call gets a disjoint range of heads and writes only their d-wide rows of
        // `out`, which outlives the pool call.
        let o = unsafe { std::slice::from_raw_parts_mut(ptr.at(heads.start * d), heads.len() * d) };
        run(heads, o);
    });
    drop((ks, vs));
    Ok(Some(Tensor::from_vec(out, (1, 1, n_head * d), &candle_core::Device::Cpu)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// candle's path (what the model runs for batches): scores, softmax, weighted values.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, n_rep: usize, scale: f64) -> Tensor {
        let (_, n_head, _, d) = q.dims4().unwrap();
        let n_kv = n_head / n_rep;
        let q = q.reshape((1, n_kv, n_rep, d)).unwrap();
        let att = (q.matmul(&k.transpose(2, 3).unwrap()).unwrap() * scale).unwrap();
        let att = candle_nn::ops::softmax(&att, D::Minus1).unwrap();
        att.matmul(v).unwrap().reshape((1, 1, n_head * d)).unwrap()
    }

    #[test]
    fn matches_candles_attention_on_cache_views() {
        for (n_head, n_kv, len, cap, d) in
            [(9, 3, 1, 256, 64), (9, 3, 300, 512, 64), (12, 2, 77, 128, 128), (4, 4, 5, 8, 32)]
        {
            let dev = Device::Cpu;
            let q = Tensor::randn(0f32, 1.0, (1, n_head, 1, d), &dev).unwrap();
            // Views of a larger buffer, like the KV cache hands out.
            let kbuf = Tensor::randn(0f32, 1.0, (1, n_kv, cap, d), &dev).unwrap();
            let vbuf = Tensor::randn(0f32, 1.0, (1, n_kv, cap, d), &dev).unwrap();
            let (k, v) = (kbuf.narrow(2, 0, len).unwrap(), vbuf.narrow(2, 0, len).unwrap());
            let scale = 1.0 / (d as f64).sqrt();
            let got = decode(&q, &k, &v, scale as f32).unwrap().expect("CPU f32 views are supported");
            let want = reference(&q, &k.contiguous().unwrap(), &v.contiguous().unwrap(), n_head / n_kv, scale);
            let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let diff = diff.to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "{n_head}/{n_kv} heads, len {len}: max difference {diff}");
        }
    }

    #[test]
    fn declines_what_it_does_not_handle() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 4, 2, 8), candle_core::DType::F32, &dev).unwrap(); // two positions
        let k = Tensor::zeros((1, 2, 3, 8), candle_core::DType::F32, &dev).unwrap();
        assert!(decode(&q, &k, &k, 1.0).unwrap().is_none());
    }
}
