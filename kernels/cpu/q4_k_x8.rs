/*! Q4_K matrices with eight rows interleaved, for AVX-512 VNNI (`vpdpbusd` on 512-bit vectors)
and AVX2 (`vpmaddubsw` + `vpmaddwd` on two 256-bit halves, [`X8Simd`]).

The plain Q4_K kernel ([`super::q4_k`]) works row by row: every 32 weights cost a scale shuffle,
a pair-sum and a scale multiply, and every block a horizontal fold. Here eight rows share each
instruction instead: [`BlockQ4Kx8`] holds block `b` of rows `8g..8g+8`, its nibbles regrouped so
that one 64-byte load holds eight consecutive weights of each of the eight rows (byte `k` of
row `r` at `8r + k`; low nibbles from sub-block `2c`, high nibbles from `2c + 1`, as in GGML).
One `vpdpbusd` against the token's eight matching activations (broadcast to every 64-bit lane)
then adds 64 products into per-row lanes, the sub-block scales multiply whole vectors of rows,
and each block ends in one f32 multiply-add for eight rows: no horizontal sums at all.

A tile of up to four tokens reuses each unpacked weight vector ([`dot_x8`]), which is what makes
prefill fast. The layout costs 4 bytes per block more than GGML's (148 instead of 144: the six-
bit scales and minimums are stored unpacked). [`dot_x8_scalar`] is the reference; tests check
it against [`super::q4_k::dot_scalar`] row by row.
*/

use super::q4_k::{scales_mins, BlockQ4K};
use super::q8_k::BlockQ8K;
use half::f16;

/// Block `b` of eight rows: scales, minimum scales, sub-block scales `sc[8j + r]`, minimums
/// `m[16p + 2r + k]` (sub-block `2p + k`), and the regrouped nibbles.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4Kx8 {
    pub d: [f16; 8],
    pub dmin: [f16; 8],
    pub sc: [u8; 64],
    pub m: [u8; 64],
    pub qs: [u8; 1024],
}

const _: () = assert!(std::mem::size_of::<BlockQ4Kx8>() == 8 * 148);

impl BlockQ4Kx8 {
    /// Interleave block `b` of eight rows. Nibble byte `l` of chunk `c` of row `r` goes to
    /// `256c + 64(l / 8) + 8r + l % 8`.
    pub fn interleave(rows: [&BlockQ4K; 8]) -> Self {
        let mut out = BlockQ4Kx8 { d: [f16::ZERO; 8], dmin: [f16::ZERO; 8], sc: [0; 64], m: [0; 64], qs: [0; 1024] };
        for (r, b) in rows.iter().enumerate() {
            out.d[r] = b.d;
            out.dmin[r] = b.dmin;
            let (sc, m) = scales_mins(&b.scales);
            for j in 0..8 {
                out.sc[8 * j + r] = sc[j];
                out.m[16 * (j / 2) + 2 * r + j % 2] = m[j];
            }
            for c in 0..4 {
                for l in 0..32 {
                    out.qs[256 * c + 64 * (l / 8) + 8 * r + l % 8] = b.qs[32 * c + l];
                }
            }
        }
        out
    }

    /// The 4-bit quant of value `v` (0..256) of row `r`.
    fn quant(&self, r: usize, v: usize) -> u8 {
        let (c, w) = (v / 64, v % 64);
        let l = w % 32;
        let byte = self.qs[256 * c + 64 * (l / 8) + 8 * r + l % 8];
        if w < 32 {
            byte & 0x0F
        } else {
            byte >> 4
        }
    }
}

/// The SIMD body an interleaved kernel (this one and [`super::q6_k_x8`]) runs on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X8Simd {
    /// AVX-512 F/BW/VL with VNNI: `vpdpbusd` on 512-bit vectors, four tokens a tile.
    Avx512Vnni,
    /// AVX2 with FMA and F16C: `vpmaddubsw` pair sums in 16-bit lanes, scaled by `vpmaddwd`,
    /// two tokens a tile (sixteen 256-bit registers hold no more accumulators).
    Avx2,
}

/// The best interleaved body this CPU runs, if any (x86-64 with AVX2/FMA/F16C at least).
pub fn best() -> Option<X8Simd> {
    supported().last().copied()
}

/// Every interleaved body this CPU runs, slowest first (tests check each one). Detected once
/// per process: every product asks, once per group of eight rows.
pub fn supported() -> &'static [X8Simd] {
    static SUPPORTED: std::sync::OnceLock<Vec<X8Simd>> = std::sync::OnceLock::new();
    SUPPORTED.get_or_init(|| {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if super::has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c") {
                out.push(X8Simd::Avx2);
                if super::q4_1::simd() == super::q4_1::Simd::Vnni
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                {
                    out.push(X8Simd::Avx512Vnni);
                }
            }
        }
        out
    })
}

/// Whether this CPU runs an interleaved kernel (the weights are worth repacking).
pub fn available() -> bool {
    best().is_some()
}

/// Reference: eight rows times one token, in [`super::q4_k::dot_scalar`]'s order.
pub fn dot_x8_scalar(g: &[BlockQ4Kx8], y: &[BlockQ8K]) -> [f32; 8] {
    assert_eq!(g.len(), y.len(), "q4_k x8 dot: block counts differ");
    std::array::from_fn(|r| {
        let mut acc = 0f32;
        for (a, b) in g.iter().zip(y) {
            let (mut isum, mut msum) = (0i32, 0i32);
            for j in 0..8 {
                let s: i32 = (32 * j..32 * j + 32).map(|v| a.quant(r, v) as i32 * b.qs[v] as i32).sum();
                isum += a.sc[8 * j + r] as i32 * s;
                let m = a.m[16 * (j / 2) + 2 * r + j % 2] as i32;
                msum += m * (b.bsums[2 * j] as i32 + b.bsums[2 * j + 1] as i32);
            }
            acc += b.d * (a.d[r].to_f32() * isum as f32 - a.dmin[r].to_f32() * msum as f32);
        }
        acc
    })
}

/// Eight rows times `T` tokens (`T` in 1..=4): `out[t][r]`, on the [`best`] body (the scalar
/// reference where there is none).
#[inline]
pub fn dot_x8<const T: usize>(g: &[BlockQ4Kx8], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T] {
    match best() {
        Some(simd) => dot_x8_on(simd, g, ys),
        None => ys.map(|y| dot_x8_scalar(g, y)),
    }
}

/// [`dot_x8`] on a given body, which must be one of [`supported`] (panics otherwise).
#[inline]
pub fn dot_x8_on<const T: usize>(simd: X8Simd, g: &[BlockQ4Kx8], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T] {
    assert!(ys.iter().all(|y| y.len() == g.len()), "q4_k x8 dot: block counts differ");
    assert!(supported().contains(&simd), "q4_k x8 dot: {simd:?} is not supported by this CPU");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: features checked by `supported`; lengths checked above.
        unsafe {
            match simd {
                X8Simd::Avx512Vnni => avx512::dot_x8(g, ys),
                X8Simd::Avx2 => by_twos(ys, |two| avx2::dot_x8(g, two), |one| avx2::dot_x8(g, one)),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no interleaved body off x86-64")
}

/// `T` tokens run two at a time (`two`), an odd last one alone (`one`): the AVX2 bodies' tile.
pub(super) fn by_twos<const T: usize>(
    ys: [&[BlockQ8K]; T],
    two: impl Fn([&[BlockQ8K]; 2]) -> [[f32; 8]; 2],
    one: impl Fn([&[BlockQ8K]; 1]) -> [[f32; 8]; 1],
) -> [[f32; 8]; T] {
    let mut out = [[0f32; 8]; T];
    let mut t = 0;
    while t + 2 <= T {
        [out[t], out[t + 1]] = two([ys[t], ys[t + 1]]);
        t += 2;
    }
    if t < T {
        out[t] = one([ys[t]])[0];
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BlockQ4Kx8, BlockQ8K};
    use std::arch::x86_64::*;

    /// Bytes ahead of each nibble load to prefetch (two blocks of eight rows).
    const PREFETCH: usize = 2 * std::mem::size_of::<BlockQ4Kx8>();

    /// Each 64-byte nibble load is two vectors: rows 0-3 (`half` 0) and rows 4-7, eight bytes of
    /// each row per 64-bit lane. `vpmaddubsw` against the token's eight matching activations
    /// (broadcast to every lane) leaves four pair sums per row; four loads of a chunk add up in
    /// 16 bits (at most 4 * 2 * 15 * 128 = 15,360). `vpmaddwd` with the sub-block scale in each
    /// row's four 16-bit lanes widens and scales them into two i32 lanes per row; the block
    /// folds the pairs (`vphaddd`, then a lane permutation into row order).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_x8<const T: usize>(g: &[BlockQ4Kx8], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T] {
        let m4 = _mm256_set1_epi8(0x0F);
        // Row r's scale byte into the four 16-bit lanes of row r (rows 0-3, rows 4-7).
        let spread = [
            _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
            _mm_setr_epi8(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
        ];
        let scales = |at: *const u8| -> [__m256i; 2] {
            let raw = _mm_loadl_epi64(at as *const __m128i);
            spread.map(|s| _mm256_cvtepu8_epi16(_mm_shuffle_epi8(raw, s)))
        };
        // After `vphaddd` of (rows 0-3, rows 4-7): rows 0 1 4 5 | 2 3 6 7.
        let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
        let pick: [__m256i; 4] = std::array::from_fn(|p| _mm256_set1_epi32(p as i32));
        let mut acc = [_mm256_setzero_ps(); T];
        let mut acc_m = [_mm256_setzero_ps(); T];
        for (b, blk) in g.iter().enumerate() {
            let mut sumi = [[_mm256_setzero_si256(); 2]; T];
            for c in 0..4 {
                let mut alo = [[_mm256_setzero_si256(); 2]; T];
                let mut ahi = [[_mm256_setzero_si256(); 2]; T];
                for h in 0..4 {
                    let at = blk.qs.as_ptr().add(256 * c + 64 * h);
                    _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH) as *const i8);
                    let w =
                        [_mm256_loadu_si256(at as *const __m256i), _mm256_loadu_si256(at.add(32) as *const __m256i)];
                    let lo = w.map(|w| _mm256_and_si256(w, m4));
                    let hi = w.map(|w| _mm256_and_si256(_mm256_srli_epi16(w, 4), m4));
                    for t in 0..T {
                        let q = ys[t].get_unchecked(b).qs.as_ptr();
                        let ylo = _mm256_set1_epi64x((q.add(64 * c + 8 * h) as *const i64).read_unaligned());
                        let yhi = _mm256_set1_epi64x((q.add(64 * c + 32 + 8 * h) as *const i64).read_unaligned());
                        for half in 0..2 {
                            alo[t][half] = _mm256_add_epi16(alo[t][half], _mm256_maddubs_epi16(lo[half], ylo));
                            ahi[t][half] = _mm256_add_epi16(ahi[t][half], _mm256_maddubs_epi16(hi[half], yhi));
                        }
                    }
                }
                let (s_lo, s_hi) = (scales(blk.sc.as_ptr().add(16 * c)), scales(blk.sc.as_ptr().add(16 * c + 8)));
                for t in 0..T {
                    for half in 0..2 {
                        let p = _mm256_add_epi32(
                            _mm256_madd_epi16(alo[t][half], s_lo[half]),
                            _mm256_madd_epi16(ahi[t][half], s_hi[half]),
                        );
                        sumi[t][half] = _mm256_add_epi32(sumi[t][half], p);
                    }
                }
            }
            let d8 = _mm256_cvtph_ps(_mm_loadu_si128(blk.d.as_ptr() as *const __m128i));
            let dm8 = _mm256_cvtph_ps(_mm_loadu_si128(blk.dmin.as_ptr() as *const __m128i));
            // Minimums of sub-blocks 2p, 2p+1 for rows 0..8 (`m[16p + 2r + k]`) as 16-bit pairs.
            let mins: [__m256i; 4] = std::array::from_fn(|p| {
                _mm256_cvtepu8_epi16(_mm_loadu_si128(blk.m.as_ptr().add(16 * p) as *const __m128i))
            });
            for t in 0..T {
                let y = ys[t].get_unchecked(b);
                let s8 = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(sumi[t][0], sumi[t][1]), order);
                let dy = _mm256_set1_ps(y.d);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, dy), _mm256_cvtepi32_ps(s8), acc[t]);
                // Dword p of `s32` is the pair (sum of sub-block 2p, of 2p+1).
                let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
                let s32 =
                    _mm256_castsi128_si256(_mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1)));
                let mut mm = _mm256_setzero_si256();
                for p in 0..4 {
                    let pair = _mm256_permutevar8x32_epi32(s32, pick[p]);
                    mm = _mm256_add_epi32(mm, _mm256_madd_epi16(mins[p], pair));
                }
                acc_m[t] = _mm256_fmadd_ps(_mm256_mul_ps(dm8, dy), _mm256_cvtepi32_ps(mm), acc_m[t]);
            }
        }
        let mut out = [[0f32; 8]; T];
        for t in 0..T {
            _mm256_storeu_ps(out[t].as_mut_ptr(), _mm256_sub_ps(acc[t], acc_m[t]));
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{BlockQ4Kx8, BlockQ8K};
    use std::arch::x86_64::*;

    /// Bytes ahead of each nibble load to prefetch (two blocks of eight rows).
    const PREFETCH: usize = 2 * std::mem::size_of::<BlockQ4Kx8>();

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_x8<const T: usize>(g: &[BlockQ4Kx8], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T] {
        let m4 = _mm512_set1_epi8(0x0F);
        // Row r's scale into lanes 2r and 2r+1 (each row's sums sit in a pair of lanes).
        let dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        let pair01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        let pair23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        let mut acc = [_mm256_setzero_ps(); T];
        let mut acc_m = [_mm256_setzero_ps(); T];
        for (b, blk) in g.iter().enumerate() {
            let mut sumi = [_mm512_setzero_si512(); T];
            for c in 0..4 {
                let mut alo = [_mm512_setzero_si512(); T];
                let mut ahi = [_mm512_setzero_si512(); T];
                for h in 0..4 {
                    let at = blk.qs.as_ptr().add(256 * c + 64 * h);
                    _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH) as *const i8);
                    let w = _mm512_loadu_si512(at as *const _);
                    let lo = _mm512_and_si512(w, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
                    for t in 0..T {
                        let q = ys[t].get_unchecked(b).qs.as_ptr();
                        let ylo = _mm512_set1_epi64((q.add(64 * c + 8 * h) as *const i64).read_unaligned());
                        let yhi = _mm512_set1_epi64((q.add(64 * c + 32 + 8 * h) as *const i64).read_unaligned());
                        alo[t] = _mm512_dpbusd_epi32(alo[t], lo, ylo);
                        ahi[t] = _mm512_dpbusd_epi32(ahi[t], hi, yhi);
                    }
                }
                let s_lo = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(
                    _mm_loadl_epi64(blk.sc.as_ptr().add(16 * c) as *const __m128i),
                    dup,
                ));
                let s_hi = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(
                    _mm_loadl_epi64(blk.sc.as_ptr().add(16 * c + 8) as *const __m128i),
                    dup,
                ));
                for t in 0..T {
                    let p = _mm512_add_epi32(_mm512_mullo_epi32(alo[t], s_lo), _mm512_mullo_epi32(ahi[t], s_hi));
                    sumi[t] = _mm512_add_epi32(sumi[t], p);
                }
            }
            let d8 = _mm256_cvtph_ps(_mm_loadu_si128(blk.d.as_ptr() as *const __m128i));
            let dm8 = _mm256_cvtph_ps(_mm_loadu_si128(blk.dmin.as_ptr() as *const __m128i));
            let m01 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(blk.m.as_ptr() as *const __m256i));
            let m23 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(blk.m.as_ptr().add(32) as *const __m256i));
            for t in 0..T {
                let y = ys[t].get_unchecked(b);
                // Fold each row's lane pair, then keep the low dword of every qword: 8 rows.
                let s = _mm512_add_epi32(sumi[t], _mm512_srli_epi64(sumi[t], 32));
                let s8 = _mm512_cvtepi64_epi32(s);
                let dy = _mm256_set1_ps(y.d);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, dy), _mm256_cvtepi32_ps(s8), acc[t]);
                // Minimums: dword p of `s32` is the pair (sum of sub-block 2p, of 2p+1).
                let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
                let s32 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
                let s32 = _mm512_castsi128_si512(s32);
                let mm = _mm512_dpwssd_epi32(_mm512_setzero_si512(), m01, _mm512_permutexvar_epi32(pair01, s32));
                let mm = _mm512_dpwssd_epi32(mm, m23, _mm512_permutexvar_epi32(pair23, s32));
                let mm8 = _mm256_add_epi32(_mm512_castsi512_si256(mm), _mm512_extracti64x4_epi64(mm, 1));
                acc_m[t] = _mm256_fmadd_ps(_mm256_mul_ps(dm8, dy), _mm256_cvtepi32_ps(mm8), acc_m[t]);
            }
        }
        let mut out = [[0f32; 8]; T];
        for t in 0..T {
            _mm256_storeu_ps(out[t].as_mut_ptr(), _mm256_sub_ps(acc[t], acc_m[t]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::k_matmul::Q4Kx8Matrix;
    use super::super::q4_k::dot_scalar;
    use super::super::q4_k::tests::{blocks, rng};
    use super::super::q8_k::{quantize, QK_K};
    use super::*;

    #[test]
    fn interleaved_rows_match_the_row_by_row_kernel() {
        let mut r = rng(77);
        for nb in [1, 2, 6] {
            let w = blocks(16 * nb, &mut r);
            let m = Q4Kx8Matrix::from_blocks(&w, 16, nb * QK_K).unwrap();
            let ys: Vec<Vec<BlockQ8K>> = (0..4)
                .map(|_| quantize(&(0..nb * QK_K).map(|_| (r() % 2001) as f32 / 300.0 - 3.3).collect::<Vec<_>>()))
                .collect();
            for g in 0..2 {
                let want: Vec<[f32; 8]> =
                    ys.iter().map(|y| std::array::from_fn(|i| dot_scalar(&w[(8 * g + i) * nb..][..nb], y))).collect();
                for (t, y) in ys.iter().enumerate() {
                    assert_eq!(dot_x8_scalar(m.group(g), y), want[t], "nb={nb} g={g}: layout reference");
                }
                let close = |got: &[f32; 8], want: &[f32; 8]| {
                    got.iter().zip(want).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs()))
                };
                for &simd in supported() {
                    let four = dot_x8_on(simd, m.group(g), [&ys[0][..], &ys[1], &ys[2], &ys[3]]);
                    let one = dot_x8_on(simd, m.group(g), [&ys[2][..]]);
                    let three = dot_x8_on(simd, m.group(g), [&ys[1][..], &ys[2], &ys[3]]);
                    for t in 0..4 {
                        assert!(
                            close(&four[t], &want[t]),
                            "{simd:?} nb={nb} g={g} t={t}: {:?} vs {:?}",
                            four[t],
                            want[t]
                        );
                    }
                    let tiles = close(&one[0], &want[2]) && close(&three[0], &want[1]) && close(&three[2], &want[3]);
                    assert!(tiles, "{simd:?} nb={nb} g={g}: tiles of 1 and 3");
                    // Integer sums, then the same f32 multiply-adds per block: every body agrees exactly.
                    assert_eq!(four, dot_x8_on(supported()[0], m.group(g), [&ys[0][..], &ys[1], &ys[2], &ys[3]]));
                }
            }
        }
        assert!(Q4Kx8Matrix::from_blocks(&blocks(4, &mut r), 4, QK_K).is_none(), "rows not a multiple of 8");
    }

    #[test]
    fn an_x86_64_cpu_with_avx2_runs_an_interleaved_body() {
        #[cfg(target_arch = "x86_64")]
        if super::super::has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c") {
            assert!(supported().contains(&X8Simd::Avx2) && available());
        }
        assert_eq!(best(), supported().last().copied());
    }
}
