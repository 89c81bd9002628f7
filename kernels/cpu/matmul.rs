/*! Matrix products on Q4_1 weights: `out[t][r] = sum_k w[r][k] * x[t][k]`.

Activations are quantized to Q8_1 once per token; then output rows are split across rayon's pool
(candle's own CPU work uses the same pool, so threads are never oversubscribed) and each worker
walks its rows, reusing one weight row, which stays in L1, against every token. A batch of one
(decode) is a matrix-vector product; prefill batches reuse each weight row across the batch.
*/

use super::q4_1::{quantize_q8_1, vec_dot, BlockQ4_1, BlockQ8_1, QK};
use half::f16;
use rayon::prelude::*;

/// Below this many block products, one thread is faster than waking the pool.
const PARALLEL_MIN_BLOCKS: usize = 4096;

/// `x` is `[tokens, cols]` row-major, `w` is `[rows, cols / 32]` blocks; returns `[tokens, rows]`.
pub fn matmul_q4_1(w: &[BlockQ4_1], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    assert!(cols.is_multiple_of(QK) && w.len() == rows * cols / QK, "matmul_q4_1: weight shape");
    assert!(x.len().is_multiple_of(cols), "matmul_q4_1: activation shape");
    let tokens = x.len() / cols;
    let nb = cols / QK;
    let mut xq = vec![BlockQ8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; QK] }; tokens * nb];
    if tokens * nb >= PARALLEL_MIN_BLOCKS {
        xq.par_chunks_mut(nb).zip(x.par_chunks(cols)).for_each(|(q, xs)| quantize_q8_1(xs, q));
    } else {
        xq.chunks_mut(nb).zip(x.chunks(cols)).for_each(|(q, xs)| quantize_q8_1(xs, q));
    }
    // Computed transposed ([rows, tokens]) so each worker owns a contiguous output range.
    let mut out_t = vec![0f32; rows * tokens];
    let row = |(r, o): (usize, &mut [f32])| {
        let wr = &w[r * nb..(r + 1) * nb];
        for (t, v) in o.iter_mut().enumerate() {
            *v = vec_dot(wr, &xq[t * nb..(t + 1) * nb]);
        }
    };
    if rows * tokens * nb >= PARALLEL_MIN_BLOCKS {
        let per = (rows / (rayon::current_num_threads() * 4)).max(1);
        out_t.par_chunks_mut(tokens).enumerate().with_min_len(per).for_each(row);
    } else {
        out_t.chunks_mut(tokens).enumerate().for_each(row);
    }
    if tokens == 1 {
        return out_t;
    }
    let mut out = vec![0f32; rows * tokens];
    for r in 0..rows {
        for t in 0..tokens {
            out[t * rows + r] = out_t[r * tokens + t];
        }
    }
    out
}

/// The same product with the scalar reference kernel, one thread: for tests.
pub fn matmul_q4_1_reference(w: &[BlockQ4_1], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    let nb = cols / QK;
    let tokens = x.len() / cols;
    let mut out = vec![0f32; rows * tokens];
    for t in 0..tokens {
        let mut q = vec![BlockQ8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; QK] }; nb];
        quantize_q8_1(&x[t * cols..(t + 1) * cols], &mut q);
        for r in 0..rows {
            out[t * rows + r] = super::q4_1::vec_dot_scalar(&w[r * nb..(r + 1) * nb], &q);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_for_decode_and_prefill_shapes() {
        let mut s = 7u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for (rows, cols, tokens) in [(3, 32, 1), (192, 576, 1), (64, 1536, 5), (576, 576, 40)] {
            let w: Vec<BlockQ4_1> = (0..rows * cols / QK)
                .map(|_| BlockQ4_1 {
                    d: f16::from_f32((rnd() % 1000) as f32 / 1e4),
                    m: f16::from_f32(-((rnd() % 1000) as f32) / 1e3),
                    qs: std::array::from_fn(|_| rnd() as u8),
                })
                .collect();
            let x: Vec<f32> = (0..tokens * cols).map(|_| (rnd() % 2001) as f32 / 1000.0 - 1.0).collect();
            let (a, b) = (matmul_q4_1(&w, rows, cols, &x), matmul_q4_1_reference(&w, rows, cols, &x));
            assert_eq!(a.len(), rows * tokens);
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!((p - q).abs() <= 1e-3 * (1.0 + q.abs()), "{rows}x{cols}x{tokens} [{i}]: {p} vs {q}");
            }
        }
    }
}
