/*! Q4_K weights times Q8_K activations (Qwen2.5 Q4_K_M's main weight type).

[`BlockQ4K`] is GGML's layout, read in place from the GGUF bytes: 256 weights in 8 sub-blocks of
32, `x = d * sc_j * q - dmin * m_j` with 6-bit `sc_j`, `m_j` packed in 12 bytes and 4-bit `q`.
Byte `l` of the 32-byte chunk `c` holds value `l` of sub-block `2c` (low nibble) and of `2c+1`
(high nibble). So, with Q8_K activations (`y = dy * q8`, per-16 sums `bsums`):

`sum x y = dy * (d * sum_j sc_j * (q4_j . q8_j) - dmin * sum_j m_j * (bsums_2j + bsums_2j+1))`.

The SIMD kernels (AVX2, and AVX-512 VNNI's `vpdpwssd` for the scale multiply-add) compute each
chunk's `q4 . q8` as u8 x i8 pair sums (`vpmaddubsw`), weight them by the sub-block scale in
i32 lanes, and fold each block into eight f32 lanes with one multiply-add: llama.cpp's order.
[`dot_scalar`] is the reference.
*/

use super::q8_k::{BlockQ8K, QK_K};
use half::f16;

/// 256 weights: scale, minimum scale, packed 6-bit sub-block scales and minimums, nibbles.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// The eight 6-bit sub-block scales and minimums, unpacked (GGML's `get_scale_min_k4`).
pub fn scales_mins(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            m[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
            m[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, m)
}

/// The reference dot product of one row of blocks and one token.
pub fn dot_scalar(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "q4_k dot: block counts differ");
    let mut acc = 0f32;
    for (a, b) in x.iter().zip(y) {
        let (sc, m) = scales_mins(&a.scales);
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..8 {
            let chunk = &a.qs[32 * (j / 2)..32 * (j / 2 + 1)];
            let q8 = &b.qs[32 * j..32 * (j + 1)];
            let s: i32 =
                chunk.iter().zip(q8).map(|(&q, &y)| if j % 2 == 0 { q & 0x0F } else { q >> 4 } as i32 * y as i32).sum();
            isum += sc[j] as i32 * s;
            msum += m[j] as i32 * (b.bsums[2 * j] as i32 + b.bsums[2 * j + 1] as i32);
        }
        acc += b.d * (a.d.to_f32() * isum as f32 - a.dmin.to_f32() * msum as f32);
    }
    acc
}

/// The fastest dot product this CPU supports.
#[inline]
pub fn dot(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "q4_k dot: block counts differ");
    match super::q4_1::simd() {
        // SAFETY: the CPU has each module's features (checked by `simd`); lengths checked.
        #[cfg(target_arch = "x86_64")]
        super::q4_1::Simd::Vnni => unsafe { vnni::dot(x, y) },
        #[cfg(target_arch = "x86_64")]
        super::q4_1::Simd::Avx2 => unsafe { avx2::dot(x, y) },
        #[cfg(target_arch = "aarch64")]
        super::q4_1::Simd::NeonDot => unsafe { super::neon::dotprod::q4_k_dot(x, y) },
        #[cfg(target_arch = "aarch64")]
        super::q4_1::Simd::Neon => unsafe { super::neon::base::q4_k_dot(x, y) },
        _ => dot_scalar(x, y),
    }
}

#[cfg(target_arch = "x86_64")]
macro_rules! x86_kernels {
    ($features:literal, $madd_acc:ident) => {
        use super::super::hsum_ps;
        use super::{BlockQ4K, BlockQ8K};

        #[target_feature(enable = $features)]
        pub unsafe fn dot(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
            let m4 = _mm256_set1_epi8(0x0F);
            let mut acc = _mm256_setzero_ps();
            let mut acc_m = _mm_setzero_ps();
            for (a, b) in x.iter().zip(y) {
                let d = b.d * a.d.to_f32();
                let dmin = -b.d * a.dmin.to_f32();
                // Scales (bytes 0..8) and minimums (8..16) as in `scales_mins`, on u32 words.
                let mut u = [0u32; 4];
                std::ptr::copy_nonoverlapping(a.scales.as_ptr(), u.as_mut_ptr() as *mut u8, 12);
                const K1: u32 = 0x3f3f_3f3f;
                const K2: u32 = 0x0f0f_0f0f;
                const K3: u32 = 0x0303_0303;
                u[3] = ((u[2] >> 4) & K2) | (((u[1] >> 6) & K3) << 4);
                let mins_lo = u[1] & K1;
                u[1] = (u[2] & K2) | (((u[0] >> 6) & K3) << 4);
                u[2] = mins_lo;
                u[0] &= K1;
                let sm = _mm256_cvtepu8_epi16(_mm_set_epi32(u[3] as i32, u[2] as i32, u[1] as i32, u[0] as i32));
                // Minimums times the per-32 activation sums.
                let bs = _mm256_loadu_si256(b.bsums.as_ptr() as *const __m256i);
                let s32 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
                let prod = _mm_madd_epi16(_mm256_extracti128_si256(sm, 1), s32);
                acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);
                let sc = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm));
                let mut sumi = _mm256_setzero_si256();
                for c in 0..4 {
                    let q4 = _mm256_loadu_si256(a.qs.as_ptr().add(32 * c) as *const __m256i);
                    let lo = _mm256_and_si256(q4, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                    let y0 = _mm256_loadu_si256(b.qs.as_ptr().add(64 * c) as *const __m256i);
                    let y1 = _mm256_loadu_si256(b.qs.as_ptr().add(64 * c + 32) as *const __m256i);
                    // Broadcast i16 scale 2c (then 2c+1) to every lane.
                    let s0 = _mm256_shuffle_epi8(sc, _mm256_set1_epi16((((4 * c + 1) << 8) | (4 * c)) as i16));
                    let s1 = _mm256_shuffle_epi8(sc, _mm256_set1_epi16((((4 * c + 3) << 8) | (4 * c + 2)) as i16));
                    sumi = $madd_acc(sumi, _mm256_maddubs_epi16(lo, y0), s0);
                    sumi = $madd_acc(sumi, _mm256_maddubs_epi16(hi, y1), s1);
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
            let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
            let m = _mm_add_ss(m, _mm_movehdup_ps(m));
            hsum_ps(acc) + _mm_cvtss_f32(m)
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// `acc + (p * s summed in pairs)`, i16 -> i32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) unsafe fn madd_acc(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, s))
    }

    x86_kernels!("avx2,fma,f16c", madd_acc);
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod vnni {
    use std::arch::x86_64::*;

    /// `vpdpwssd`: the same multiply-add in one instruction.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    #[inline]
    pub(crate) unsafe fn madd_acc(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, p, s)
    }

    x86_kernels!("avx2,fma,f16c,avx512vnni,avx512vl", madd_acc);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::q8_k::quantize;
    use super::*;

    pub(crate) fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    pub(crate) fn blocks(n: usize, r: &mut impl FnMut() -> u64) -> Vec<BlockQ4K> {
        (0..n)
            .map(|i| BlockQ4K {
                d: f16::from_f32((r() % 1000) as f32 / 1e5),
                dmin: f16::from_f32((r() % 1000) as f32 / 1e5),
                // Block 0: every bit set (largest scales, minimums and nibbles).
                scales: std::array::from_fn(|_| if i == 0 { 0xFF } else { r() as u8 }),
                qs: std::array::from_fn(|_| if i == 0 { 0xFF } else { r() as u8 }),
            })
            .collect()
    }

    /// Dequantize (GGML's `dequantize_row_q4_K`), the definition the dot product must match.
    fn dequantize(x: &[BlockQ4K]) -> Vec<f32> {
        let mut out = Vec::new();
        for a in x {
            let (sc, m) = scales_mins(&a.scales);
            for j in 0..8 {
                for l in 0..32 {
                    let q = a.qs[32 * (j / 2) + l];
                    let q = if j % 2 == 0 { q & 0x0F } else { q >> 4 };
                    out.push(a.d.to_f32() * sc[j] as f32 * q as f32 - a.dmin.to_f32() * m[j] as f32);
                }
            }
        }
        out
    }

    /// candle's independent dequantization of the same bytes.
    pub(crate) fn candle_dequantize<C: candle_core::quantized::k_quants::GgmlType, B>(x: &[B]) -> Vec<f32> {
        assert_eq!(std::mem::size_of::<C>(), std::mem::size_of::<B>());
        let bytes = std::mem::size_of_val(x);
        let mut blocks: Vec<C> = Vec::with_capacity(x.len());
        // SAFETY: both are repr(C) GGML blocks of the same size, valid for any bits.
        unsafe {
            std::ptr::copy_nonoverlapping(x.as_ptr() as *const u8, blocks.as_mut_ptr() as *mut u8, bytes);
            blocks.set_len(x.len());
        }
        let mut out = vec![0f32; x.len() * QK_K];
        C::to_float(&blocks, &mut out);
        out
    }

    #[test]
    fn kernels_match_the_reference_and_the_dequantized_product() {
        let mut r = rng(41);
        for nb in [1, 2, 3, 6, 35] {
            let w = blocks(nb, &mut r);
            // Edge activations in the first block: the extreme at both signs.
            let x: Vec<f32> = (0..nb * QK_K)
                .map(|i| match i {
                    0 => 9.0,
                    1 => -9.0,
                    _ => (r() % 2001) as f32 / 250.0 - 4.0,
                })
                .collect();
            let y = quantize(&x);
            let want = dot_scalar(&w, &y);
            // The reference against the dequantized weights times the dequantized activations.
            let yd: Vec<f32> = y.iter().flat_map(|b| b.qs.iter().map(move |&q| b.d * q as f32)).collect();
            let exact: f32 = dequantize(&w).iter().zip(&yd).map(|(a, b)| a * b).sum();
            assert!((want - exact).abs() <= 1e-3 * (1.0 + exact.abs()), "nb={nb}: reference {want} vs {exact}");
            assert_eq!(dequantize(&w), candle_dequantize::<candle_core::quantized::k_quants::BlockQ4K, _>(&w));
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
