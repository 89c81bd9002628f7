/*! Q6_K weights times Q8_K activations (Qwen2.5 Q4_K_M's output, and half its V and down
projections).

[`BlockQ6K`] is GGML's layout, read in place: 256 weights `x = d * sc_j * (q - 32)` with 6-bit
`q` split into low nibbles (`ql`, 128 bytes) and high bit pairs (`qh`, 64 bytes), and an i8
scale per 16 values. In each half of 128 values, byte `l` (0..32) of `qh` holds the high bits of
values `l`, `l+32`, `l+64`, `l+96`; byte `l` of `ql` the low nibbles of `l` (low) and `l+64`
(high), byte `l+32` those of `l+32` and `l+96`. Value `v` of the half uses scale `8n + v / 16`.

With Q8_K activations: `sum x y = dy * d * sum_j sc_j * (q_j . q8_j - 32 * bsums_j)`. The SIMD
kernels rebuild 32 six-bit values per vector, take `q . q8` as u8 x i8 pair sums, weight them by
the scales in i32 lanes (`vpdpwssd` with AVX-512 VNNI) and subtract the `32 * sc * bsums` term
once per block; each block ends in one f32 multiply-add. [`dot_scalar`] is the reference.
*/

use super::q8_k::{BlockQ8K, QK_K};
use half::f16;

/// 256 weights: low nibbles, high bit pairs, 16 signed scales, the super-block scale.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// The six-bit quant (0..64) of value `v` (0..256) of a block.
pub fn quant(a: &BlockQ6K, v: usize) -> u8 {
    let (n, w) = (v / 128, v % 128);
    let (k, l) = (w / 32, w % 32);
    let lo = a.ql[64 * n + l + 32 * (k % 2)];
    let lo = if k < 2 { lo & 0x0F } else { lo >> 4 };
    let hi = (a.qh[32 * n + l] >> (2 * k)) & 3;
    lo | (hi << 4)
}

/// The reference dot product of one row of blocks and one token.
pub fn dot_scalar(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "q6_k dot: block counts differ");
    let mut acc = 0f32;
    for (a, b) in x.iter().zip(y) {
        let mut isum = 0i32;
        for j in 0..16 {
            let s: i32 = (16 * j..16 * j + 16).map(|v| (quant(a, v) as i32 - 32) * b.qs[v] as i32).sum();
            isum += a.scales[j] as i32 * s;
        }
        acc += b.d * a.d.to_f32() * isum as f32;
    }
    acc
}

/// The fastest dot product this CPU supports.
#[inline]
pub fn dot(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "q6_k dot: block counts differ");
    match super::q4_1::simd() {
        // SAFETY: the CPU has each module's features (checked by `simd`); lengths checked.
        #[cfg(target_arch = "x86_64")]
        super::q4_1::Simd::Vnni => unsafe { vnni::dot(x, y) },
        #[cfg(target_arch = "x86_64")]
        super::q4_1::Simd::Avx2 => unsafe { avx2::dot(x, y) },
        #[cfg(target_arch = "aarch64")]
        super::q4_1::Simd::NeonDot => unsafe { super::neon::dotprod::q6_k_dot(x, y) },
        #[cfg(target_arch = "aarch64")]
        super::q4_1::Simd::Neon => unsafe { super::neon::base::q6_k_dot(x, y) },
        _ => dot_scalar(x, y),
    }
}

#[cfg(target_arch = "x86_64")]
macro_rules! x86_kernels {
    ($features:literal, $madd_acc:path) => {
        use super::super::hsum_ps;
        use super::{BlockQ6K, BlockQ8K};

        /// Scales `2c` and `2c+1` (of 16 i8) as 16 i16 lanes: eight of each.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn scale_pair(scales: __m128i, c: usize) -> __m256i {
            let (a, b) = ((2 * c) as i8, (2 * c + 1) as i8);
            let idx = _mm_set_epi8(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a);
            _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, idx))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn dot(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
            let m4 = _mm256_set1_epi8(0x0F);
            let m3 = _mm256_set1_epi8(0x03);
            let m30 = _mm256_set1_epi8(0x30);
            let mut acc = _mm256_setzero_ps();
            for (a, b) in x.iter().zip(y) {
                let d = b.d * a.d.to_f32();
                let scales = _mm_loadu_si128(a.scales.as_ptr() as *const __m128i);
                // -32 * sum_j sc_j * bsums_j, the offset of the unsigned quants.
                let bs = _mm256_loadu_si256(b.bsums.as_ptr() as *const __m256i);
                let off = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scales), bs);
                let mut sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
                for n in 0..2 {
                    let ql0 = _mm256_loadu_si256(a.ql.as_ptr().add(64 * n) as *const __m256i);
                    let ql1 = _mm256_loadu_si256(a.ql.as_ptr().add(64 * n + 32) as *const __m256i);
                    let qh = _mm256_loadu_si256(a.qh.as_ptr().add(32 * n) as *const __m256i);
                    let q = [
                        _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4)),
                        _mm256_or_si256(
                            _mm256_and_si256(ql1, m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4),
                        ),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30)),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
                        ),
                    ];
                    for (k, qk) in q.iter().enumerate() {
                        let y8 = _mm256_loadu_si256(b.qs.as_ptr().add(128 * n + 32 * k) as *const __m256i);
                        sumi = $madd_acc(sumi, _mm256_maddubs_epi16(*qk, y8), scale_pair(scales, 4 * n + k));
                    }
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_ps(acc)
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    x86_kernels!("avx2,fma,f16c", super::super::q4_k::avx2::madd_acc);
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;
    x86_kernels!("avx2,fma,f16c,avx512vnni,avx512vl", super::super::q4_k::vnni::madd_acc);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::q4_k::tests::{candle_dequantize, rng};
    use super::super::q8_k::quantize;
    use super::*;

    /// Random blocks; block 0 has every quant 63 and scales -128, block 1 every quant 0.
    pub(crate) fn blocks(n: usize, r: &mut impl FnMut() -> u64) -> Vec<BlockQ6K> {
        let edge = |i: usize, r: &mut dyn FnMut() -> u64| match i {
            0 => 0xFF,
            1 => 0,
            _ => r() as u8,
        };
        (0..n)
            .map(|i| BlockQ6K {
                // Block 0: every quant 63 and the most negative scales; block 1: quants 0.
                ql: std::array::from_fn(|_| edge(i, r)),
                qh: std::array::from_fn(|_| edge(i, r)),
                scales: std::array::from_fn(|_| if i == 0 { -128 } else { r() as i8 }),
                d: f16::from_f32((r() % 1000) as f32 / 1e5),
            })
            .collect()
    }

    /// GGML's `dequantize_row_q6_K`, written out, the definition `quant` must agree with.
    fn dequantize(x: &[BlockQ6K]) -> Vec<f32> {
        let mut out = Vec::new();
        for a in x {
            let mut y = [0f32; QK_K];
            for n in 0..2 {
                let (ql, qh, sc) = (&a.ql[64 * n..], &a.qh[32 * n..], &a.scales[8 * n..]);
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    let d = a.d.to_f32();
                    y[128 * n + l] = d * sc[is] as f32 * q1 as f32;
                    y[128 * n + l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                    y[128 * n + l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                    y[128 * n + l + 96] = d * sc[is + 6] as f32 * q4 as f32;
                }
            }
            out.extend(y);
        }
        out
    }

    #[test]
    fn kernels_match_the_reference_and_the_dequantized_product() {
        let mut r = rng(43);
        for nb in [1, 2, 3, 7, 35] {
            let w = blocks(nb, &mut r);
            let x: Vec<f32> = (0..nb * QK_K)
                .map(|i| match i {
                    0 => -6.0,
                    1 => 6.0,
                    _ => (r() % 2001) as f32 / 400.0 - 2.5,
                })
                .collect();
            let y = quantize(&x);
            let want = dot_scalar(&w, &y);
            let yd: Vec<f32> = y.iter().flat_map(|b| b.qs.iter().map(move |&q| b.d * q as f32)).collect();
            let exact: f32 = dequantize(&w).iter().zip(&yd).map(|(a, b)| a * b).sum();
            assert!((want - exact).abs() <= 1e-3 * (1.0 + exact.abs()), "nb={nb}: reference {want} vs {exact}");
            assert_eq!(dequantize(&w), candle_dequantize::<candle_core::quantized::k_quants::BlockQ6K, _>(&w));
            let close = |v: f32| (v - want).abs() <= 1e-4 * (1.0 + want.abs());
            assert!(close(dot(&w, &y)), "nb={nb}: dispatched kernel");
            #[cfg(target_arch = "x86_64")]
            {
                if super::super::has_avx2_fma() {
                    // SAFETY: features checked; lengths equal.
                    assert!(close(unsafe { avx2::dot(&w, &y) }), "nb={nb}: avx2");
                }
                if super::super::q4_1::simd() == super::super::q4_1::Simd::Vnni {
                    // SAFETY: as above.
                    assert!(close(unsafe { vnni::dot(&w, &y) }), "nb={nb}: vnni");
                }
            }
        }
    }
}
