/*! Q4_1 matrices in pagemind's row layout, and their products with Q8_1 activations.

GGUF stores Q4_1 as an array of 20-byte blocks (`d`, `m`, 16 bytes of nibbles). Decode reads
every weight once per token, so per-block overhead decides its speed: converting two f16 scales,
a float multiply-add per block, and a 16-byte load per block. [`Q4_1Matrix`] splits the blocks
into three arrays per matrix (structure of arrays):

- `qs`: the nibbles, 16 bytes per block in row order, so one 32-byte load covers two blocks;
- `d`, `m`: the f16 scales and minimums, 8 blocks per vector conversion.

Activations are quantized once per token into [`Q8_1Act`], whose quants are laid out to match:
for each pair of blocks `(a, b)`, 32 bytes `a[0..16] b[0..16]` (they meet the low nibbles),
then 32 bytes `a[16..32] b[16..32]` (the high nibbles). An odd last block keeps its natural
32 bytes. Scales are stored as f32 (rounded through f16, exactly as llama.cpp's Q8_1 is).

The kernels sum each block's integer dot product in i32 lanes (two blocks per 256-bit vector),
reduce eight blocks at once into one vector of eight sums, and only then convert to f32 and
apply `d_w * d_x`; the `m_w * s_x` terms are one vector multiply-add per eight blocks.
[`dot_scalar`] is the reference on the same layout; tests compare both with
[`super::q4_1::vec_dot_scalar`] on GGML blocks.
*/

use super::q4_1::{quantize_block, BlockQ4_1, BlockQ8_1, QK};
use half::f16;

/// A `[rows, cols]` Q4_1 matrix in row layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Q4_1Matrix {
    pub rows: usize,
    pub cols: usize,
    d: Vec<f16>,
    m: Vec<f16>,
    qs: Vec<u8>,
}

/// One row's view.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    pub d: &'a [f16],
    pub m: &'a [f16],
    pub qs: &'a [u8],
}

impl Q4_1Matrix {
    /// From GGML blocks, `rows * cols / 32` of them in row-major order.
    pub fn from_blocks(blocks: &[BlockQ4_1], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(QK) || blocks.len() != rows * cols / QK {
            return None;
        }
        Some(Self {
            rows,
            cols,
            d: blocks.iter().map(|b| b.d).collect(),
            m: blocks.iter().map(|b| b.m).collect(),
            qs: blocks.iter().flat_map(|b| b.qs).collect(),
        })
    }

    /// Blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> Row<'_> {
        let nb = self.blocks_per_row();
        Row {
            d: &self.d[r * nb..(r + 1) * nb],
            m: &self.m[r * nb..(r + 1) * nb],
            qs: &self.qs[r * nb * 16..(r + 1) * nb * 16],
        }
    }

    /// Stack matrices with the same `cols` (rows of `self` first).
    pub fn concat(parts: Vec<Q4_1Matrix>) -> Option<Self> {
        let cols = parts.first()?.cols;
        let mut out = Self { rows: 0, cols, d: Vec::new(), m: Vec::new(), qs: Vec::new() };
        for p in parts {
            if p.cols != cols {
                return None;
            }
            out.rows += p.rows;
            out.d.extend(p.d);
            out.m.extend(p.m);
            out.qs.extend(p.qs);
        }
        Some(out)
    }
}

/// One token's Q8_1 activations in the pair layout.
#[derive(Clone, Debug)]
pub struct Q8_1Act {
    d: Vec<f32>,
    s: Vec<f32>,
    qs: Vec<i8>,
}

/// A view of [`Q8_1Act`], what the kernels read.
#[derive(Clone, Copy)]
pub struct Act<'a> {
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub qs: &'a [i8],
}

impl Q8_1Act {
    /// Quantize `x` (a multiple of 32 long) block by block as [`quantize_block`] does, with `d`
    /// and `s` kept as the f32 values of their f16 roundings.
    pub fn quantize(x: &[f32]) -> Self {
        assert!(x.len().is_multiple_of(QK), "Q8_1Act: length {} is not a multiple of 32", x.len());
        let nb = x.len() / QK;
        let mut a = Self { d: vec![0.0; nb], s: vec![0.0; nb], qs: vec![0; nb * QK] };
        for (i, xs) in x.chunks_exact(QK).enumerate() {
            let b = quantize_block(xs);
            a.d[i] = b.d.to_f32();
            a.s[i] = b.s.to_f32();
            let (lo, hi) = b.qs.split_at(16);
            if i.is_multiple_of(2) && i + 1 == nb {
                a.qs[i * QK..][..QK].copy_from_slice(&b.qs); // odd last block: natural order
            } else {
                let pair = (i / 2) * 2 * QK;
                let half = (i % 2) * 16;
                a.qs[pair + half..][..16].copy_from_slice(lo);
                a.qs[pair + QK + half..][..16].copy_from_slice(hi);
            }
        }
        a
    }

    /// The kernels' view.
    pub fn view(&self) -> Act<'_> {
        Act { d: &self.d, s: &self.s, qs: &self.qs }
    }
}

/// The quant pair `(q4 weight nibble, q8 activation)` of block `i`, element `j`, read from the
/// two layouts: the definition the SIMD kernels implement.
fn element(row: &Row, act: &Act, i: usize, j: usize) -> (i32, i32) {
    let byte = row.qs[i * 16 + j % 16];
    let w = if j < 16 { byte & 0x0F } else { byte >> 4 };
    let nb = row.d.len();
    let x = if i.is_multiple_of(2) && i + 1 == nb {
        act.qs[i * QK + j]
    } else {
        let pair = (i / 2) * 2 * QK;
        act.qs[pair + if j < 16 { 0 } else { QK } + (i % 2) * 16 + j % 16]
    };
    (w as i32, x as i32)
}

/// Reference dot product of one row and one token on these layouts.
pub fn dot_scalar(row: Row, act: Act) -> f32 {
    let nb = row.d.len();
    assert!(act.d.len() == nb, "dot: block counts differ");
    let mut acc = 0f32;
    for i in 0..nb {
        let isum: i32 = (0..QK).map(|j| element(&row, &act, i, j)).map(|(w, x)| w * x).sum();
        acc += row.d[i].to_f32() * act.d[i] * isum as f32 + row.m[i].to_f32() * act.s[i];
    }
    acc
}

/// The fastest dot product this CPU supports.
#[inline]
pub fn dot(row: Row, act: Act) -> f32 {
    assert!(act.d.len() == row.d.len() && row.qs.len() == 16 * row.d.len(), "dot: block counts differ");
    match super::q4_1::simd() {
        // SAFETY: the CPU has each module's features (checked by `simd`); lengths checked.
        #[cfg(target_arch = "x86_64")]
        super::q4_1::Simd::Vnni => unsafe { vnni::dot(row, act) },
        #[cfg(target_arch = "x86_64")]
        super::q4_1::Simd::Avx2 => unsafe { avx2::dot(row, act) },
        #[cfg(target_arch = "aarch64")]
        super::q4_1::Simd::NeonDot => unsafe { super::neon::dotprod::q4_1_dot(row, act) },
        #[cfg(target_arch = "aarch64")]
        super::q4_1::Simd::Neon => unsafe { super::neon::base::q4_1_dot(row, act) },
        _ => dot_scalar(row, act),
    }
}

/// One row times one token's GGML Q8_1 blocks, in llama.cpp's accumulation order (a fused
/// multiply-add per block into eight float lanes; the `m * s` terms summed apart). Prefill uses
/// this order so its logits track llama.cpp's as closely as its own kernels do.
#[inline]
pub fn dot_blocks(row: Row, y: &[BlockQ8_1]) -> f32 {
    assert!(y.len() == row.d.len() && row.qs.len() == 16 * row.d.len(), "dot_blocks: block counts differ");
    match super::q4_1::simd() {
        // SAFETY: as in `dot`.
        #[cfg(target_arch = "x86_64")]
        super::q4_1::Simd::Vnni => unsafe { vnni::dot_blocks(row, y) },
        #[cfg(target_arch = "x86_64")]
        super::q4_1::Simd::Avx2 => unsafe { avx2::dot_blocks(row, y) },
        #[cfg(target_arch = "aarch64")]
        super::q4_1::Simd::NeonDot => unsafe { super::neon::dotprod::q4_1_dot_blocks(row, y) },
        #[cfg(target_arch = "aarch64")]
        super::q4_1::Simd::Neon => unsafe { super::neon::base::q4_1_dot_blocks(row, y) },
        _ => dot_blocks_scalar(row, y),
    }
}

/// A 2 x 4 tile (two rows, four tokens) in [`dot_blocks`]' order, each weight block unpacked
/// once for the four tokens. `ds[t][i]` is token `t`'s block `i` scale and sum as f32 (converted
/// once per product by the caller, not once per row pair). `out[r][t]`.
#[inline]
pub fn tile_2x4(r0: Row, r1: Row, y: [&[BlockQ8_1]; 4], ds: [&[[f32; 2]]; 4]) -> [[f32; 4]; 2] {
    let n = r0.d.len();
    assert!(r1.d.len() == n && y.iter().all(|t| t.len() == n), "tile_2x4: block counts differ");
    assert!(ds.iter().all(|t| t.len() == n), "tile_2x4: scale counts differ");
    debug_assert!(
        ds.iter().zip(&y).all(|(a, b)| a.iter().zip(b.iter()).all(|(a, b)| *a == [b.d.to_f32(), b.s.to_f32()])),
        "tile_2x4: scales are not the blocks' own"
    );
    assert!(r0.qs.len() == 16 * n && r1.qs.len() == 16 * n, "tile_2x4: row layout");
    match super::q4_1::simd() {
        // SAFETY: as in `dot`.
        #[cfg(target_arch = "x86_64")]
        super::q4_1::Simd::Vnni => unsafe { vnni::tile_2x4(r0, r1, y, ds) },
        #[cfg(target_arch = "x86_64")]
        super::q4_1::Simd::Avx2 => unsafe { avx2::tile_2x4(r0, r1, y, ds) },
        #[cfg(target_arch = "aarch64")]
        super::q4_1::Simd::NeonDot => unsafe { super::neon::dotprod::q4_1_tile_2x4(r0, r1, y, ds) },
        #[cfg(target_arch = "aarch64")]
        super::q4_1::Simd::Neon => unsafe { super::neon::base::q4_1_tile_2x4(r0, r1, y, ds) },
        _ => [y.map(|t| dot_blocks_scalar(r0, t)), y.map(|t| dot_blocks_scalar(r1, t))],
    }
}

/// Scalar [`dot_blocks`].
pub fn dot_blocks_scalar(row: Row, y: &[BlockQ8_1]) -> f32 {
    let mut acc = 0f32;
    for (i, b) in y.iter().enumerate() {
        let q = &row.qs[i * 16..(i + 1) * 16];
        let mut isum = 0i32;
        for (j, &byte) in q.iter().enumerate() {
            isum += (byte & 0x0F) as i32 * b.qs[j] as i32 + (byte >> 4) as i32 * b.qs[j + 16] as i32;
        }
        acc += row.d[i].to_f32() * b.d.to_f32() * isum as f32 + row.m[i].to_f32() * b.s.to_f32();
    }
    acc
}

#[cfg(target_arch = "x86_64")]
macro_rules! x86_kernels {
    ($features:literal, $dp:ident) => {
        use super::super::hsum_ps;
        use super::{Act, BlockQ8_1, Row};

        /// Block `i`'s 16 bytes of nibbles -> 32 bytes: low nibbles (values 0..15), then high.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn unpack(row: &Row, i: usize) -> __m256i {
            let v = _mm_loadu_si128(row.qs.as_ptr().add(i * 16) as *const __m128i);
            let m = _mm_set1_epi8(0x0F);
            _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m))
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn load(b: &BlockQ8_1) -> __m256i {
            _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i)
        }

        #[target_feature(enable = $features)]
        pub unsafe fn dot_blocks(row: Row, y: &[BlockQ8_1]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut summs = 0f32;
            for (i, b) in y.iter().enumerate() {
                summs += row.m.get_unchecked(i).to_f32() * b.s.to_f32();
                let scale = _mm256_set1_ps(row.d.get_unchecked(i).to_f32() * b.d.to_f32());
                acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps($dp(unpack(&row, i), load(b))), acc);
            }
            hsum_ps(acc) + summs
        }

        #[target_feature(enable = $features)]
        pub unsafe fn tile_2x4(r0: Row, r1: Row, y: [&[BlockQ8_1]; 4], ds: [&[[f32; 2]]; 4]) -> [[f32; 4]; 2] {
            let mut acc = [[_mm256_setzero_ps(); 4]; 2];
            let mut summs = [[0f32; 4]; 2];
            for i in 0..r0.d.len() {
                let bx = [unpack(&r0, i), unpack(&r1, i)];
                let dx = [r0.d.get_unchecked(i).to_f32(), r1.d.get_unchecked(i).to_f32()];
                let mx = [r0.m.get_unchecked(i).to_f32(), r1.m.get_unchecked(i).to_f32()];
                for t in 0..4 {
                    let b = y[t].get_unchecked(i);
                    let [db, sb] = *ds[t].get_unchecked(i);
                    let by = load(b);
                    for r in 0..2 {
                        summs[r][t] += mx[r] * sb;
                        let scale = _mm256_set1_ps(dx[r] * db);
                        acc[r][t] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps($dp(bx[r], by)), acc[r][t]);
                    }
                }
            }
            let mut out = [[0f32; 4]; 2];
            for r in 0..2 {
                for t in 0..4 {
                    out[r][t] = hsum_ps(acc[r][t]) + summs[r][t];
                }
            }
            out
        }

        /// Two blocks' nibbles (32 bytes) against their activations: i32 lanes 0..4 hold block
        /// `a`'s partial sums, lanes 4..8 block `b`'s.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn pair(w: *const u8, x: *const i8) -> __m256i {
            let v = _mm256_loadu_si256(w as *const __m256i);
            let m = _mm256_set1_epi8(0x0F);
            let lo = _mm256_and_si256(v, m);
            let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
            let xl = _mm256_loadu_si256(x as *const __m256i);
            let xh = _mm256_loadu_si256(x.add(32) as *const __m256i);
            _mm256_add_epi32($dp(lo, xl), $dp(hi, xh))
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn hsum_i32(v: __m128i) -> i32 {
            let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b01_00_11_10));
            let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b10_11_00_01));
            _mm_cvtsi128_si32(v)
        }

        #[target_feature(enable = $features)]
        pub unsafe fn dot(row: Row, act: Act) -> f32 {
            let nb = row.d.len();
            let (w, x) = (row.qs.as_ptr(), act.qs.as_ptr());
            let mut acc = _mm256_setzero_ps();
            // After the reduction below, lane j holds block (0,2,4,6,1,3,5,7)[j] of the group.
            let order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
            let mut i = 0;
            while i + 8 <= nb {
                let p0 = pair(w.add(i * 16), x.add(i * 32));
                let p1 = pair(w.add((i + 2) * 16), x.add((i + 2) * 32));
                let p2 = pair(w.add((i + 4) * 16), x.add((i + 4) * 32));
                let p3 = pair(w.add((i + 6) * 16), x.add((i + 6) * 32));
                // [b0 b0 b2 b2 | b1 b1 b3 b3] halves, then one lane per block.
                let sums = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(row.d.as_ptr().add(i) as *const __m128i));
                let dx = _mm256_loadu_ps(act.d.as_ptr().add(i));
                let scale = _mm256_permutevar8x32_ps(_mm256_mul_ps(dw, dx), order);
                acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc);
                let mw = _mm256_cvtph_ps(_mm_loadu_si128(row.m.as_ptr().add(i) as *const __m128i));
                acc = _mm256_fmadd_ps(mw, _mm256_loadu_ps(act.s.as_ptr().add(i)), acc);
                i += 8;
            }
            let mut tail = 0f32;
            while i + 2 <= nb {
                let p = pair(w.add(i * 16), x.add(i * 32));
                let (a, b) = (hsum_i32(_mm256_castsi256_si128(p)), hsum_i32(_mm256_extracti128_si256(p, 1)));
                tail += row.d[i].to_f32() * act.d[i] * a as f32 + row.m[i].to_f32() * act.s[i];
                tail += row.d[i + 1].to_f32() * act.d[i + 1] * b as f32 + row.m[i + 1].to_f32() * act.s[i + 1];
                i += 2;
            }
            if i < nb {
                // The odd last block: natural activation order, low nibbles then high.
                let v = _mm_loadu_si128(w.add(i * 16) as *const __m128i);
                let m = _mm_set1_epi8(0x0F);
                let q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
                let p = $dp(q, _mm256_loadu_si256(x.add(i * 32) as *const __m256i));
                let s = hsum_i32(_mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
                tail += row.d[i].to_f32() * act.d[i] * s as f32 + row.m[i].to_f32() * act.s[i];
            }
            hsum_ps(acc) + tail
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// u8 x i8 -> pairwise i16 sums (no saturation: 15 * 127 * 2 < 32767) -> i32 quads.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn dp(x: __m256i, y: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
    }

    x86_kernels!("avx2,fma,f16c", dp);
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    /// `vpdpbusd`: u8 x i8 products summed in fours into i32 lanes.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    #[inline]
    unsafe fn dp(x: __m256i, y: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
    }

    x86_kernels!("avx2,fma,f16c,avx512vnni,avx512vl", dp);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::q4_1::{quantize_q8_1, vec_dot_scalar, BlockQ8_1};
    use super::super::q4_k::tests::rng;
    use super::*;

    /// Random blocks; block 0 has every nibble at 15 (the largest products).
    pub(crate) fn blocks(n: usize, r: &mut impl FnMut() -> u64) -> Vec<BlockQ4_1> {
        (0..n)
            .map(|i| BlockQ4_1 {
                d: f16::from_f32((r() % 1000) as f32 / 1e4),
                m: f16::from_f32(-((r() % 1000) as f32) / 1e3),
                qs: std::array::from_fn(|_| if i == 0 { 0xFF } else { r() as u8 }),
            })
            .collect()
    }

    /// Every block count from 1 to 27 (groups of eight, pairs, an odd last block), each kernel
    /// against the GGML-layout scalar reference.
    #[test]
    fn matches_the_ggml_layout_reference_for_every_tail_shape() {
        let mut r = rng(17);
        for nb in 1..=27 {
            let w = blocks(nb, &mut r);
            let x: Vec<f32> = (0..nb * QK).map(|_| (r() % 2001) as f32 / 1000.0 - 1.0).collect();
            let mut q8 = vec![BlockQ8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; QK] }; nb];
            quantize_q8_1(&x, &mut q8);
            let want = vec_dot_scalar(&w, &q8);
            let m = Q4_1Matrix::from_blocks(&w, 1, nb * QK).unwrap();
            let a = Q8_1Act::quantize(&x);
            let close = |v: f32| (v - want).abs() <= 1e-4 * (1.0 + want.abs());
            let reference = dot_scalar(m.row(0), a.view());
            assert!(close(reference), "nb={nb}: layout reference {reference} vs {want}");
            assert!(close(dot(m.row(0), a.view())), "nb={nb}: dispatched kernel");
            #[cfg(target_arch = "x86_64")]
            {
                if super::super::has_avx2_fma() {
                    // SAFETY: features checked; lengths consistent.
                    assert!(close(unsafe { avx2::dot(m.row(0), a.view()) }), "nb={nb}: avx2");
                }
                if super::super::q4_1::simd() == super::super::q4_1::Simd::Vnni {
                    // SAFETY: as above.
                    assert!(close(unsafe { vnni::dot(m.row(0), a.view()) }), "nb={nb}: vnni");
                }
            }
        }
    }

    /// The prefill kernels on the row layout give exactly what the GGML-layout kernels give.
    #[test]
    fn prefill_kernels_match_the_ggml_layout_kernels() {
        let mut r = rng(23);
        for nb in [1, 2, 5, 18, 48] {
            let (w0, w1) = (blocks(nb, &mut r), blocks(nb, &mut r));
            let both: Vec<BlockQ4_1> = w0.iter().chain(&w1).copied().collect();
            let m = Q4_1Matrix::from_blocks(&both, 2, nb * QK).unwrap();
            let ys: Vec<Vec<BlockQ8_1>> = (0..4)
                .map(|_| {
                    let x: Vec<f32> = (0..nb * QK).map(|_| (r() % 2001) as f32 / 100.0 - 10.0).collect();
                    let mut q = vec![BlockQ8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; QK] }; nb];
                    quantize_q8_1(&x, &mut q);
                    q
                })
                .collect();
            let y4 = [&ys[0][..], &ys[1], &ys[2], &ys[3]];
            let dss: Vec<Vec<[f32; 2]>> =
                ys.iter().map(|y| y.iter().map(|b| [b.d.to_f32(), b.s.to_f32()]).collect()).collect();
            let ds4 = [&dss[0][..], &dss[1], &dss[2], &dss[3]];
            let tile = tile_2x4(m.row(0), m.row(1), y4, ds4);
            for t in 0..4 {
                let (a, b) = (vec_dot_scalar(&w0, y4[t]), vec_dot_scalar(&w1, y4[t]));
                assert!(
                    (tile[0][t] - a).abs() <= 1e-4 * (1.0 + a.abs())
                        && (tile[1][t] - b).abs() <= 1e-4 * (1.0 + b.abs())
                );
                assert_eq!(dot_blocks(m.row(0), y4[t]), tile[0][t], "nb={nb}: same order as the tile");
                let s = dot_blocks_scalar(m.row(1), y4[t]);
                assert!((s - b).abs() <= 1e-4 * (1.0 + b.abs()));
            }
            #[cfg(target_arch = "x86_64")]
            if super::super::has_avx2_fma() {
                // SAFETY: features checked; lengths consistent. The AVX2 flavour on its own.
                let (t2, d2) =
                    unsafe { (avx2::tile_2x4(m.row(0), m.row(1), y4, ds4), avx2::dot_blocks(m.row(1), y4[2])) };
                let b = vec_dot_scalar(&w1, y4[2]);
                assert!((t2[1][2] - b).abs() <= 1e-4 * (1.0 + b.abs()) && (d2 - b).abs() <= 1e-4 * (1.0 + b.abs()));
            }
        }
    }

    #[test]
    fn concat_stacks_rows_and_rejects_mismatched_widths() {
        let mut r = rng(3);
        let (a, b) = (blocks(4, &mut r), blocks(6, &mut r));
        let (ma, mb) = (Q4_1Matrix::from_blocks(&a, 2, 64).unwrap(), Q4_1Matrix::from_blocks(&b, 3, 64).unwrap());
        let all: Vec<BlockQ4_1> = a.iter().chain(&b).copied().collect();
        assert_eq!(Q4_1Matrix::concat(vec![ma.clone(), mb]).unwrap(), Q4_1Matrix::from_blocks(&all, 5, 64).unwrap());
        let other = Q4_1Matrix::from_blocks(&blocks(3, &mut r), 1, 96).unwrap();
        assert!(Q4_1Matrix::concat(vec![ma, other]).is_none());
        assert!(Q4_1Matrix::from_blocks(&a, 3, 64).is_none());
    }
}
