/*! Matrix products on Q4_1 weights: `out[t][r] = sum_k w[r][k] * x[t][k]`.

Activations are quantized to Q8_1 once per token; then output rows are split across candle's CPU
worker pool (`candle_core::utils::barrier_pool`, the one candle's own quantized matmuls use, so
threads are never oversubscribed) and each worker walks its rows, reusing one weight row, which
stays in L1, against every token. A batch of one (decode) is a matrix-vector product with the
row-layout kernel ([`dot`]); prefill batches run 2 x 4 tiles ([`tile_2x4`]: two weight rows,
four tokens, each weight block unpacked once) in llama.cpp's accumulation order.
*/

use super::pool::{parallel, SharedMut as Out};
use super::q4_1::{quantize_q8_1, BlockQ4_1, BlockQ8_1, QK};
use super::q4_1_matrix::{dot, dot_blocks, tile_2x4, Q4_1Matrix, Q8_1Act};
use half::f16;

/// Below this many block products, the calling thread does the work alone.
const PARALLEL_MIN_BLOCKS: usize = 2048;

/// `x` is `[tokens, w.cols]` row-major; returns `[tokens, w.rows]`. Row layout ([`Q4_1Matrix`]):
/// each worker takes a range of weight rows and meets every token with each row while it is in L1.
pub fn matmul(w: &Q4_1Matrix, x: &[f32]) -> Vec<f32> {
    let (rows, cols) = (w.rows, w.cols);
    assert!(x.len().is_multiple_of(cols), "matmul: activation shape");
    let tokens = x.len() / cols;
    let nb = cols / QK;
    if tokens == 1 {
        return matvec(w, x);
    }
    // Prefill: GGML Q8_1 activations and llama.cpp's accumulation order, 2 x 4 tiles.
    let mut xq = vec![BlockQ8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; QK] }; tokens * nb];
    let xq_out = Out(xq.as_mut_ptr());
    parallel(tokens, tokens * nb >= PARALLEL_MIN_BLOCKS, |range| {
        for t in range {
            // SAFETY: token t's blocks are written by this worker only; xq outlives the call.
            let q = unsafe { std::slice::from_raw_parts_mut(xq_out.at(t * nb), nb) };
            quantize_q8_1(&x[t * cols..(t + 1) * cols], q);
        }
    });
    let ds: Vec<[f32; 2]> = xq.iter().map(|b| [b.d.to_f32(), b.s.to_f32()]).collect();
    let mut out = vec![0f32; rows * tokens];
    let o = Out(out.as_mut_ptr());
    let xq = &xq;
    let y = |t: usize| &xq[t * nb..(t + 1) * nb];
    let s = |t: usize| &ds[t * nb..(t + 1) * nb];
    parallel(rows.div_ceil(2), rows * tokens * nb >= PARALLEL_MIN_BLOCKS, |range| {
        for p in range {
            let r = 2 * p;
            if r + 1 == rows {
                for t in 0..tokens {
                    // SAFETY: row r (the last, unpaired one) is written only by this worker.
                    unsafe { *o.at(t * rows + r) = dot_blocks(w.row(r), y(t)) };
                }
                continue;
            }
            let (r0, r1) = (w.row(r), w.row(r + 1));
            let tiles = tokens / 4;
            for tile in 0..tiles {
                let t = 4 * tile;
                let v = tile_2x4(r0, r1, [y(t), y(t + 1), y(t + 2), y(t + 3)], [s(t), s(t + 1), s(t + 2), s(t + 3)]);
                for (i, row) in v.iter().enumerate() {
                    for (j, x) in row.iter().enumerate() {
                        // SAFETY: rows r and r+1 are written only by the worker owning pair p.
                        unsafe { *o.at((t + j) * rows + r + i) = *x };
                    }
                }
            }
            for t in 4 * tiles..tokens {
                // SAFETY: as above.
                unsafe {
                    *o.at(t * rows + r) = dot_blocks(r0, y(t));
                    *o.at(t * rows + r + 1) = dot_blocks(r1, y(t));
                }
            }
        }
    });
    out
}

/// Decode: one token, quantized into the pair layout, each row by the eight-block kernel.
fn matvec(w: &Q4_1Matrix, x: &[f32]) -> Vec<f32> {
    let (rows, nb) = (w.rows, w.blocks_per_row());
    let act = Q8_1Act::quantize(x);
    let mut out = vec![0f32; rows];
    let o = Out(out.as_mut_ptr());
    let act = act.view();
    parallel(rows, rows * nb >= PARALLEL_MIN_BLOCKS, |range| {
        for r in range {
            // SAFETY: row r is written only by the worker owning it.
            unsafe { *o.at(r) = dot(w.row(r), act) };
        }
    });
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
        for (rows, cols, tokens) in [(3, 32, 1), (192, 576, 1), (65, 1536, 5), (576, 576, 40), (7, 64, 3)] {
            let w: Vec<BlockQ4_1> = (0..rows * cols / QK)
                .map(|_| BlockQ4_1 {
                    d: f16::from_f32((rnd() % 1000) as f32 / 1e4),
                    m: f16::from_f32(-((rnd() % 1000) as f32) / 1e3),
                    qs: std::array::from_fn(|_| rnd() as u8),
                })
                .collect();
            let x: Vec<f32> = (0..tokens * cols).map(|_| (rnd() % 2001) as f32 / 1000.0 - 1.0).collect();
            let b = matmul_q4_1_reference(&w, rows, cols, &x);
            let c = matmul(&Q4_1Matrix::from_blocks(&w, rows, cols).unwrap(), &x);
            assert_eq!(c.len(), rows * tokens);
            for (i, (r, q)) in c.iter().zip(&b).enumerate() {
                assert!((r - q).abs() <= 1e-3 * (1.0 + q.abs()), "{rows}x{cols}x{tokens} [{i}]: {r} vs {q}");
            }
        }
    }
}
