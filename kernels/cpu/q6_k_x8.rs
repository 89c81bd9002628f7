/*! Q6_K matrices with eight rows interleaved, for AVX-512 VNNI and AVX2: [`super::q4_k_x8`]'s
scheme for the six-bit type.

[`BlockQ6Kx8`] holds block `b` of eight rows with GGML's bytes regrouped so that one 64-byte
load holds eight consecutive values' bytes of each row (`8r + k`): `ql` in each half `n` as
`512n + 64h + 8r + k` from the row's byte `64n + 8h + k` (low nibble: value `8h + k` of the
half, high: `+64`), `qh` as `256n + 64h + 8r + k` from byte `32n + 8h + k` (bit pairs of values
`8h + k`, `+32`, `+64`, `+96`). Scales are `sc[16p + 2r + k]` (sub-block `2p + k` of row `r`),
so one sign-extension gives the `(sc_2p, sc_2p+1)` pairs of all rows for the `-32 * sc * bsums`
offset. Each `vpdpbusd` adds 64 products into per-row lanes; one f32 multiply-add per block
and token finishes eight rows. Same size as GGML's blocks (210 bytes per row and block).
[`dot_x8_scalar`] is the reference; tests check it against [`super::q6_k::dot_scalar`].
*/

use super::q4_k_x8::X8Simd;
use super::q6_k::BlockQ6K;
use super::q8_k::BlockQ8K;
use half::f16;

/// Block `b` of eight rows (layout in the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ6Kx8 {
    pub d: [f16; 8],
    pub sc: [i8; 128],
    pub ql: [u8; 1024],
    pub qh: [u8; 512],
}

const _: () = assert!(std::mem::size_of::<BlockQ6Kx8>() == 8 * 210);

impl BlockQ6Kx8 {
    /// Interleave block `b` of eight rows.
    pub fn interleave(rows: [&BlockQ6K; 8]) -> Self {
        let mut out = BlockQ6Kx8 { d: [f16::ZERO; 8], sc: [0; 128], ql: [0; 1024], qh: [0; 512] };
        for (r, b) in rows.iter().enumerate() {
            out.d[r] = b.d;
            for j in 0..16 {
                out.sc[16 * (j / 2) + 2 * r + j % 2] = b.scales[j];
            }
            for n in 0..2 {
                for l in 0..64 {
                    out.ql[512 * n + 64 * (l / 8) + 8 * r + l % 8] = b.ql[64 * n + l];
                }
                for l in 0..32 {
                    out.qh[256 * n + 64 * (l / 8) + 8 * r + l % 8] = b.qh[32 * n + l];
                }
            }
        }
        out
    }

    /// The six-bit quant (0..64) of value `v` (0..256) of row `r`.
    fn quant(&self, r: usize, v: usize) -> u8 {
        let (n, w) = (v / 128, v % 128);
        let l = w % 64;
        let lo = self.ql[512 * n + 64 * (l / 8) + 8 * r + l % 8];
        let lo = if w < 64 { lo & 0x0F } else { lo >> 4 };
        let i = w / 32;
        let hi = (self.qh[256 * n + 64 * ((w % 32) / 8) + 8 * r + w % 8] >> (2 * i)) & 3;
        lo | (hi << 4)
    }

    fn scale(&self, r: usize, j: usize) -> i8 {
        self.sc[16 * (j / 2) + 2 * r + j % 2]
    }
}

/// Reference: eight rows times one token, in [`super::q6_k::dot_scalar`]'s order.
pub fn dot_x8_scalar(g: &[BlockQ6Kx8], y: &[BlockQ8K]) -> [f32; 8] {
    assert_eq!(g.len(), y.len(), "q6_k x8 dot: block counts differ");
    std::array::from_fn(|r| {
        let mut acc = 0f32;
        for (a, b) in g.iter().zip(y) {
            let mut isum = 0i32;
            for j in 0..16 {
                let s: i32 = (16 * j..16 * j + 16).map(|v| (a.quant(r, v) as i32 - 32) * b.qs[v] as i32).sum();
                isum += a.scale(r, j) as i32 * s;
            }
            acc += b.d * a.d[r].to_f32() * isum as f32;
        }
        acc
    })
}

/// Eight rows times `T` tokens (`T` in 1..=4): `out[t][r]`, on the best body this CPU runs
/// ([`super::q4_k_x8::best`]; the scalar reference where there is none).
#[inline]
pub fn dot_x8<const T: usize>(g: &[BlockQ6Kx8], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T] {
    match super::q4_k_x8::best() {
        Some(simd) => dot_x8_on(simd, g, ys),
        None => ys.map(|y| dot_x8_scalar(g, y)),
    }
}

/// [`dot_x8`] on a given body, which must be one of [`super::q4_k_x8::supported`] (panics
/// otherwise).
#[inline]
pub fn dot_x8_on<const T: usize>(simd: X8Simd, g: &[BlockQ6Kx8], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T] {
    assert!(ys.iter().all(|y| y.len() == g.len()), "q6_k x8 dot: block counts differ");
    assert!(super::q4_k_x8::supported().contains(&simd), "q6_k x8 dot: {simd:?} is not supported by this CPU");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: features checked by `supported`; lengths checked above.
        unsafe {
            match simd {
                X8Simd::Avx512Vnni => avx512::dot_x8(g, ys),
                X8Simd::Avx2 => super::q4_k_x8::by_twos(ys, |two| avx2::dot_x8(g, two), |one| avx2::dot_x8(g, one)),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no interleaved body off x86-64")
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BlockQ6Kx8, BlockQ8K};
    use std::arch::x86_64::*;

    /// Bytes ahead of each quant load to prefetch (two blocks of eight rows).
    const PREFETCH: usize = 2 * std::mem::size_of::<BlockQ6Kx8>();

    /// [`super::super::q4_k_x8`]'s AVX2 scheme for six-bit quants: each 64-byte load is rows
    /// 0-3 and rows 4-7; `vpmaddubsw` pair sums of the two loads of a 16-value sub-block add up in
    /// 16 bits (at most 2 * 2 * 63 * 128 = 32,256), `vpmaddwd` by the sub-block's signed scale
    /// widens them; the `-32 * sc * bsums` offset comes last, as in the AVX-512 body.
    // Index loops: `a[t][i]` is read across tokens for each sub-block `i`.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_x8<const T: usize>(g: &[BlockQ6Kx8], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T] {
        let m4 = _mm256_set1_epi8(0x0F);
        let m3 = _mm256_set1_epi8(0x03);
        let m30 = _mm256_set1_epi8(0x30);
        // Sub-block 2p+k's scale byte of row r (`sc[16p + 2r + k]`) into row r's four 16-bit
        // lanes: [k][half].
        let spread: [[__m128i; 2]; 2] = std::array::from_fn(|k| {
            std::array::from_fn(|half| {
                let idx: [i8; 16] = std::array::from_fn(|l| (2 * (4 * half + l / 4) + k) as i8);
                _mm_loadu_si128(idx.as_ptr() as *const __m128i)
            })
        });
        let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
        let pick: [__m256i; 8] = std::array::from_fn(|p| _mm256_set1_epi32(p as i32));
        let mut acc = [_mm256_setzero_ps(); T];
        for (b, blk) in g.iter().enumerate() {
            let mut sumi = [[_mm256_setzero_si256(); 2]; T];
            // The halves are independent sets of four rows: one at a time keeps the sixteen
            // accumulators of two tokens in registers.
            for half in 0..2 {
                for n in 0..2 {
                    for hp in 0..2 {
                        // a[t][i]: sub-block 8n + 2i + hp (values 128n + 32i + 16hp ..+16).
                        let mut a = [[_mm256_setzero_si256(); 4]; T];
                        for h in 2 * hp..2 * hp + 2 {
                            let (ph, pa, pb) = (
                                blk.qh.as_ptr().add(256 * n + 64 * h + 32 * half),
                                blk.ql.as_ptr().add(512 * n + 64 * h + 32 * half),
                                blk.ql.as_ptr().add(512 * n + 64 * (h + 4) + 32 * half),
                            );
                            if half == 0 {
                                for p in [ph, pa, pb] {
                                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH) as *const i8);
                                }
                            }
                            let load = |p: *const u8| _mm256_loadu_si256(p as *const __m256i);
                            let (qh, la, lb) = (load(ph), load(pa), load(pb));
                            let q = [
                                _mm256_or_si256(
                                    _mm256_and_si256(la, m4),
                                    _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4),
                                ),
                                _mm256_or_si256(
                                    _mm256_and_si256(lb, m4),
                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4),
                                ),
                                _mm256_or_si256(
                                    _mm256_and_si256(_mm256_srli_epi16(la, 4), m4),
                                    _mm256_and_si256(qh, m30),
                                ),
                                _mm256_or_si256(
                                    _mm256_and_si256(_mm256_srli_epi16(lb, 4), m4),
                                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
                                ),
                            ];
                            for t in 0..T {
                                let y = ys[t].get_unchecked(b).qs.as_ptr().add(128 * n + 8 * h);
                                for (i, qi) in q.iter().enumerate() {
                                    let yv = _mm256_set1_epi64x((y.add(32 * i) as *const i64).read_unaligned());
                                    a[t][i] = _mm256_add_epi16(a[t][i], _mm256_maddubs_epi16(*qi, yv));
                                }
                            }
                        }
                        for i in 0..4 {
                            let j = 8 * n + 2 * i + hp; // = 2p + k with p = 4n + i, k = hp
                            let raw = _mm_loadu_si128(blk.sc.as_ptr().add(16 * (j / 2)) as *const __m128i);
                            let s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(raw, spread[hp][half]));
                            for t in 0..T {
                                sumi[t][half] = _mm256_add_epi32(sumi[t][half], _mm256_madd_epi16(a[t][i], s));
                            }
                        }
                    }
                }
            }
            let d8 = _mm256_cvtph_ps(_mm_loadu_si128(blk.d.as_ptr() as *const __m128i));
            // Scales of sub-blocks 2p, 2p+1 for rows 0..8 as signed 16-bit pairs.
            let sc: [__m256i; 8] = std::array::from_fn(|p| {
                _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.sc.as_ptr().add(16 * p) as *const __m128i))
            });
            for t in 0..T {
                let y = ys[t].get_unchecked(b);
                let s8 = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(sumi[t][0], sumi[t][1]), order);
                // -32 * sum_j sc_j * bsums_j: dword p of `bsums` is the pair (2p, 2p+1).
                let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
                let mut off = _mm256_setzero_si256();
                for p in 0..8 {
                    off = _mm256_add_epi32(off, _mm256_madd_epi16(sc[p], _mm256_permutevar8x32_epi32(bs, pick[p])));
                }
                let isum = _mm256_sub_epi32(s8, _mm256_slli_epi32(off, 5));
                let dy = _mm256_set1_ps(y.d);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, dy), _mm256_cvtepi32_ps(isum), acc[t]);
            }
        }
        let mut out = [[0f32; 8]; T];
        for t in 0..T {
            _mm256_storeu_ps(out[t].as_mut_ptr(), acc[t]);
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{BlockQ6Kx8, BlockQ8K};
    use std::arch::x86_64::*;

    /// Bytes ahead of each quant load to prefetch (two blocks of eight rows).
    const PREFETCH: usize = 2 * std::mem::size_of::<BlockQ6Kx8>();

    // Index loops: `a[t][i]` is read across tokens for each sub-block `i`.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_x8<const T: usize>(g: &[BlockQ6Kx8], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T] {
        let m4 = _mm512_set1_epi8(0x0F);
        let m3 = _mm512_set1_epi8(0x03);
        let m30 = _mm512_set1_epi8(0x30);
        // Sub-block 2p+k's scales of the eight rows into lanes 2r, 2r+1 (from `sc[16p..]`).
        let dup = [
            _mm_setr_epi8(0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14),
            _mm_setr_epi8(1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15),
        ];
        // A loop, not `array::from_fn`: a closure inside this generic `target_feature` function
        // is instantiated in the calling crate, where incremental debug builds failed to link it
        // ("undefined hidden symbol ... dot_x8::{{closure}}").
        let mut pairs = [_mm512_setzero_si512(); 4];
        for (q, p) in pairs.iter_mut().enumerate() {
            let (a, b) = (2 * q as i32, 2 * q as i32 + 1);
            *p = _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
        }
        let mut acc = [_mm256_setzero_ps(); T];
        for (b, blk) in g.iter().enumerate() {
            let mut sumi = [_mm512_setzero_si512(); T];
            for n in 0..2 {
                for (hp, dup_hp) in dup.iter().enumerate() {
                    // a[t][i]: sub-block 8n + 2i + hp (values 128n + 32i + 16hp ..+16).
                    let mut a = [[_mm512_setzero_si512(); 4]; T];
                    for h in 2 * hp..2 * hp + 2 {
                        let (ph, pa, pb) = (
                            blk.qh.as_ptr().add(256 * n + 64 * h),
                            blk.ql.as_ptr().add(512 * n + 64 * h),
                            blk.ql.as_ptr().add(512 * n + 64 * (h + 4)),
                        );
                        for p in [ph, pa, pb] {
                            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH) as *const i8);
                        }
                        let qh = _mm512_loadu_si512(ph as *const _);
                        let la = _mm512_loadu_si512(pa as *const _);
                        let lb = _mm512_loadu_si512(pb as *const _);
                        let q = [
                            _mm512_or_si512(_mm512_and_si512(la, m4), _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4)),
                            _mm512_or_si512(
                                _mm512_and_si512(lb, m4),
                                _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 2), m3), 4),
                            ),
                            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(la, 4), m4), _mm512_and_si512(qh, m30)),
                            _mm512_or_si512(
                                _mm512_and_si512(_mm512_srli_epi16(lb, 4), m4),
                                _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30),
                            ),
                        ];
                        for t in 0..T {
                            let y = ys[t].get_unchecked(b).qs.as_ptr().add(128 * n + 8 * h);
                            for (i, qi) in q.iter().enumerate() {
                                let yv = _mm512_set1_epi64((y.add(32 * i) as *const i64).read_unaligned());
                                a[t][i] = _mm512_dpbusd_epi32(a[t][i], *qi, yv);
                            }
                        }
                    }
                    for i in 0..4 {
                        let j = 8 * n + 2 * i + hp; // = 2p + k with p = 4n + i, k = hp
                        let raw = _mm_loadu_si128(blk.sc.as_ptr().add(16 * (j / 2)) as *const __m128i);
                        let s = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(raw, *dup_hp));
                        for t in 0..T {
                            sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(a[t][i], s));
                        }
                    }
                }
            }
            let d8 = _mm256_cvtph_ps(_mm_loadu_si128(blk.d.as_ptr() as *const __m128i));
            let sc: [__m512i; 4] = std::array::from_fn(|q| {
                _mm512_cvtepi8_epi16(_mm256_loadu_si256(blk.sc.as_ptr().add(32 * q) as *const __m256i))
            });
            for t in 0..T {
                let y = ys[t].get_unchecked(b);
                let s = _mm512_add_epi32(sumi[t], _mm512_srli_epi64(sumi[t], 32));
                let s8 = _mm512_cvtepi64_epi32(s);
                // -32 * sum_j sc_j * bsums_j: dword p of `bsums` is the pair (2p, 2p+1).
                let bs = _mm512_castsi256_si512(_mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i));
                let mut off = _mm512_setzero_si512();
                for q in 0..4 {
                    off = _mm512_dpwssd_epi32(off, sc[q], _mm512_permutexvar_epi32(pairs[q], bs));
                }
                let off8 = _mm256_add_epi32(_mm512_castsi512_si256(off), _mm512_extracti64x4_epi64(off, 1));
                let isum = _mm256_sub_epi32(s8, _mm256_slli_epi32(off8, 5));
                let dy = _mm256_set1_ps(y.d);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, dy), _mm256_cvtepi32_ps(isum), acc[t]);
            }
        }
        let mut out = [[0f32; 8]; T];
        for t in 0..T {
            _mm256_storeu_ps(out[t].as_mut_ptr(), acc[t]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::k_matmul::Q6Kx8Matrix;
    use super::super::q4_k::tests::rng;
    use super::super::q6_k::dot_scalar;
    use super::super::q6_k::tests::blocks;
    use super::super::q8_k::{quantize, QK_K};
    use super::*;

    #[test]
    fn interleaved_rows_match_the_row_by_row_kernel() {
        let mut r = rng(79);
        for nb in [1, 2, 6] {
            let w = blocks(16 * nb, &mut r);
            let m = Q6Kx8Matrix::from_blocks(&w, 16, nb * QK_K).unwrap();
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
                for &simd in super::super::q4_k_x8::supported() {
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
                    let first = super::super::q4_k_x8::supported()[0];
                    assert_eq!(
                        four,
                        dot_x8_on(first, m.group(g), [&ys[0][..], &ys[1], &ys[2], &ys[3]]),
                        "bodies agree"
                    );
                }
            }
        }
        assert!(Q6Kx8Matrix::from_blocks(&blocks(4, &mut r), 4, QK_K).is_none(), "rows not a multiple of 8");
    }
}
