/*! Attention for one new token (decode) on the CPU, straight from the KV cache's buffers.

For a single query position candle's path costs more in overhead than in arithmetic: two GEMM
calls that pack their operands, a scalar-`expf` softmax, and a fresh tensor per step. [`decode`]
reads keys and values in place (the cache's `[1, kv_heads, capacity, head_dim]` buffers through
their layout), computes each head's scores, softmax (vectorized `exp`) and weighted sum of
values, and splits the heads across candle's CPU worker pool when the context is long enough to
pay for it. Grouped-query attention: query head `h` reads KV head `h / n_rep`.
*/

use crate::kernels::activations::exp_inplace;
use crate::kernels::pool::{parallel, SharedMut};
use crate::Result;
use candle_core::{Storage, Tensor};

/// Keys scored together.
const LANES: usize = 8;

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

/// `scores[p] = (q . k_p) * scale` for the `d`-wide key rows in `keys`, each dot product summed
/// in order over the head dimension (the f32 rounding of a one-key-at-a-time loop), eight keys
/// at a time: eight chains in flight, not one. With AVX2 and `d` a multiple of 8 the eight keys'
/// elements are transposed in registers (lane = key), so each step is one vector multiply and
/// one add (separate, as the scalar loop rounds).
pub fn score(q: &[f32], keys: &[f32], scale: f32, scores: &mut [f32]) {
    let d = q.len();
    let mut s8 = scores.chunks_exact_mut(LANES);
    let mut k8 = keys.chunks_exact(LANES * d);
    for (s, ks) in (&mut s8).zip(&mut k8) {
        #[cfg(target_arch = "x86_64")]
        let acc = if d.is_multiple_of(8) && crate::kernels::has_avx2_fma() {
            // SAFETY: AVX2 checked; `ks` holds 8 rows of d (a multiple of 8) floats.
            unsafe { avx2::eight_dots(q, ks) }
        } else {
            eight_dots(q, ks)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let acc = eight_dots(q, ks);
        for (s, a) in s.iter_mut().zip(acc) {
            *s = a * scale;
        }
    }
    for (s, krow) in s8.into_remainder().iter_mut().zip(k8.remainder().chunks_exact(d)) {
        *s = q.iter().zip(krow).map(|(a, b)| a * b).sum::<f32>() * scale;
    }
}

/// The largest score (max is exact in any order, so sixteen lanes then a fold).
fn max_of(v: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = v.chunks_exact(16);
    for c in &mut chunks {
        lanes.iter_mut().zip(c).for_each(|(m, x)| *m = m.max(*x));
    }
    chunks.remainder().iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Values per register-resident slice of the output in [`weighted_sum`].
const OUT_BLOCK: usize = 64;

/// `o = sum_p w[p] * v_p` over the `o.len()`-wide value rows `v`, each output element summed in
/// position order (as a row-at-a-time loop rounds), one 64-wide slice of `o` at a time so its
/// partial sums stay in registers.
pub fn weighted_sum(w: &[f32], v: &[f32], o: &mut [f32]) {
    let d = o.len();
    let mut start = 0;
    while start < d {
        let n = OUT_BLOCK.min(d - start);
        let mut acc = [0f32; OUT_BLOCK];
        if n == OUT_BLOCK {
            for (p, row) in w.iter().zip(v.chunks_exact(d)) {
                let x = &row[start..start + OUT_BLOCK];
                acc.iter_mut().zip(x).for_each(|(a, x)| *a += p * x);
            }
        } else {
            for (p, row) in w.iter().zip(v.chunks_exact(d)) {
                acc[..n].iter_mut().zip(&row[start..start + n]).for_each(|(a, x)| *a += p * x);
            }
        }
        o[start..start + n].copy_from_slice(&acc[..n]);
        start += n;
    }
}

/// Eight dot products of `q` with the rows of `ks`, each in order.
fn eight_dots(q: &[f32], ks: &[f32]) -> [f32; LANES] {
    let d = q.len();
    let mut acc = [0f32; LANES];
    for (i, &qi) in q.iter().enumerate() {
        for (a, p) in acc.iter_mut().zip(0..LANES) {
            *a += qi * ks[p * d + i];
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::eight_dots`] with an 8 x 8 register transpose per eight elements.
    #[target_feature(enable = "avx2")]
    pub unsafe fn eight_dots(q: &[f32], ks: &[f32]) -> [f32; 8] {
        let d = q.len();
        let mut acc = _mm256_setzero_ps();
        for i in (0..d).step_by(8) {
            let r: [__m256; 8] = std::array::from_fn(|p| _mm256_loadu_ps(ks.as_ptr().add(p * d + i)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            // Column j: element i + j of the eight keys.
            let cols = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (j, c) in cols.iter().enumerate() {
                acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(*q.get_unchecked(i + j)), *c));
            }
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn weighted_values_and_max_round_exactly_like_the_plain_loops() {
        let mut s = 5u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        for (d, n) in [(128, 37), (64, 1), (80, 19), (12, 5)] {
            let w: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let v: Vec<f32> = (0..n * d).map(|_| rnd() * 3.0).collect();
            let mut want = vec![0f32; d];
            for (p, row) in w.iter().zip(v.chunks_exact(d)) {
                want.iter_mut().zip(row).for_each(|(a, x)| *a += p * x);
            }
            let mut got = vec![f32::NAN; d];
            weighted_sum(&w, &v, &mut got);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "d={d} n={n}");
            assert_eq!(max_of(&v), v.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        }
    }

    #[test]
    fn scores_round_exactly_like_one_key_at_a_time() {
        let mut s = 3u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        for (d, n) in [(128, 37), (64, 8), (12, 19)] {
            let q: Vec<f32> = (0..d).map(|_| rnd()).collect();
            let keys: Vec<f32> = (0..n * d).map(|_| rnd() * 3.0).collect();
            let mut got = vec![0f32; n];
            score(&q, &keys, 0.125, &mut got);
            for (p, g) in got.iter().enumerate() {
                let want = q.iter().zip(&keys[p * d..(p + 1) * d]).map(|(a, b)| a * b).sum::<f32>() * 0.125;
                assert_eq!(g.to_bits(), want.to_bits(), "d={d} key {p}");
            }
        }
    }

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
