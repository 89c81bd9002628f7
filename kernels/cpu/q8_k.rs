/*! Q8_K activations: what the k-quant weight kernels ([`super::q4_k`], [`super::q6_k`]) multiply.

[`BlockQ8K`] is GGML's layout (256 values `y_i = d * q_i`, `q_i` in -128..=127, f32 scale, and
the sum of every 16 quants in `bsums`, which the kernels use for the weights' offsets: Q4_K's
per-32 minimums and Q6_K's `-32`). [`quantize_q8_k`] rounds exactly as llama.cpp's
`quantize_row_q8_K` does, so the integer sums match llama.cpp's bit for bit.
*/

/// Values per k-quant super-block.
pub const QK_K: usize = 256;

/// 256 activations: scale, quants, sums of each 16 quants (292 bytes).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl BlockQ8K {
    /// An all-zero block (for preallocating).
    pub const ZERO: BlockQ8K = BlockQ8K { d: 0.0, qs: [0; QK_K], bsums: [0; QK_K / 16] };
}

/// Quantize `x` (a multiple of 256 long) into `out`: per block, the value of largest magnitude
/// maps to -127 and the rest round to nearest, ties to even (llama.cpp's `nearest_int`).
pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * QK_K, "quantize_q8_k: length mismatch");
    for (xs, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        // The first value of largest magnitude (llama.cpp's choice between +a and -a).
        let amax = super::q4_1::abs_max(xs);
        let max = xs.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
        if amax == 0.0 {
            *b = BlockQ8K::ZERO;
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}

/// `x` (a multiple of 256 long) as a vector of Q8_K blocks.
pub fn quantize(x: &[f32]) -> Vec<BlockQ8K> {
    let mut out = vec![BlockQ8K::ZERO; x.len() / QK_K];
    quantize_q8_k(x, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's scan, the definition of `max`.
    fn first_extreme(xs: &[f32]) -> (f32, f32) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xs {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        (amax, max)
    }

    #[test]
    fn the_extreme_is_the_first_of_largest_magnitude() {
        let base: Vec<f32> = (0..QK_K).map(|i| ((i * 31 % 97) as f32 - 48.0) / 5.0).collect();
        for (at, other, v) in [(5, 200, 9.5), (5, 200, -9.5), (7, 8, 0.0)] {
            let mut x = base.clone();
            x[at] = v;
            x[other] = -v;
            let (amax, max) = first_extreme(&x);
            let q = quantize(&x);
            assert_eq!(super::super::q4_1::abs_max(&x), amax);
            if amax > 0.0 {
                assert_eq!(q[0].d, 1.0 / (-127.0 / max), "extreme at {at}");
            }
        }
    }

    #[test]
    fn quantization_keeps_the_extreme_and_the_sums() {
        let mut x: Vec<f32> = (0..2 * QK_K).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        x[3] = 40.0; // the block's extreme, positive: maps to -127 with a negative scale
        x[QK_K..].iter_mut().for_each(|v| *v = 0.0);
        let q = quantize(&x);
        assert_eq!(q[0].qs[3], -127);
        assert!((q[0].d * -127.0 - 40.0).abs() < 1e-5);
        for (i, &v) in x[..QK_K].iter().enumerate() {
            assert!((q[0].d * q[0].qs[i] as f32 - v).abs() <= q[0].d.abs() * 0.5 + 1e-6, "value {i}");
        }
        for j in 0..16 {
            assert_eq!(q[0].bsums[j] as i32, q[0].qs[16 * j..16 * j + 16].iter().map(|&v| v as i32).sum::<i32>());
        }
        assert_eq!(q[1], BlockQ8K::ZERO, "an all-zero block quantizes to zeros");
    }
}
