/*! Q4_1 weights times Q8_1 activations: the dot product candle 0.11 lacks a SIMD version of.

Block layouts are GGML's (bit-compatible with the GGUF file and llama.cpp):
- [`BlockQ4_1`]: 32 weights `x_i = d * q_i + m`, `q_i` in 0..=15; byte `j` of `qs` holds `q_j` in
  its low nibble and `q_{j+16}` in its high nibble.
- [`BlockQ8_1`]: 32 activations `y_i = d * q_i`, `q_i` in -127..=127, and `s = d * sum(q_i)`.

So `sum_i x_i y_i = d_x d_y sum_i q4_i q8_i + m_x s_y`. [`vec_dot_scalar`] is the reference;
[`vec_dot`], [`vec_dot2`] (two weight rows, decode) and [`dot_2x4`] (two rows x four tokens,
prefill) pick AVX-512 VNNI or AVX2+FMA at run time on x86-64 ([`simd`]) and fall back to the
scalar code elsewhere. The x86 kernels are written once (a macro) and compiled per feature set.
*/

use half::f16;

/// Values per block.
pub const QK: usize = 32;

/// 32 weights: scale, minimum, 16 bytes of nibbles (20 bytes).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

/// 32 activations: scale, scale times the sum of the quants, the quants (36 bytes).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

/// View raw GGUF bytes as Q4_1 blocks (`None` if the length is not a whole number of blocks).
pub fn blocks_q4_1(bytes: &[u8]) -> Option<&[BlockQ4_1]> {
    if !bytes.len().is_multiple_of(20) || bytes.as_ptr().align_offset(std::mem::align_of::<BlockQ4_1>()) != 0 {
        return None;
    }
    // SAFETY: BlockQ4_1 is repr(C), 20 bytes, alignment 2 (checked above), valid for any bits.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const BlockQ4_1, bytes.len() / 20) })
}

/// Quantize `x` (a multiple of 32 long) to Q8_1 as llama.cpp's SIMD `quantize_row_q8_1` does
/// (rounding half to even, which keeps logits closest to llama.cpp's).
pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_q8_1: length mismatch");
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in b.qs.iter_mut().zip(xs) {
            let r = (v * id).round_ties_even() as i32;
            *q = r.clamp(-127, 127) as i8;
            sum += *q as i32;
        }
        b.d = f16::from_f32(d);
        b.s = f16::from_f32(d * sum as f32);
    }
}

/// The scalar reference dot product of `x` (weights) and `y` (activations).
pub fn vec_dot_scalar(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot: block counts differ");
    let mut acc = 0f32;
    for (a, b) in x.iter().zip(y) {
        let mut isum = 0i32;
        for j in 0..QK / 2 {
            isum += (a.qs[j] & 0x0F) as i32 * b.qs[j] as i32;
            isum += (a.qs[j] >> 4) as i32 * b.qs[j + QK / 2] as i32;
        }
        acc += a.d.to_f32() * b.d.to_f32() * isum as f32 + a.m.to_f32() * b.s.to_f32();
    }
    acc
}

/// The SIMD flavour this CPU runs: AVX-512 VNNI (`vpdpbusd`), AVX2+FMA, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    Vnni,
    Avx2,
    Scalar,
}

/// The best [`Simd`] flavour available (cached by std's feature detection).
#[inline]
pub fn simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        if super::has_avx2_fma() {
            if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512vl") {
                return Simd::Vnni;
            }
            return Simd::Avx2;
        }
    }
    Simd::Scalar
}

/// The fastest dot product this CPU supports.
#[inline]
pub fn vec_dot(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot: block counts differ");
    match simd() {
        // SAFETY: the CPU has the features each module is compiled for (checked); lengths match.
        #[cfg(target_arch = "x86_64")]
        Simd::Vnni => unsafe { vnni::vec_dot(x, y) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::vec_dot(x, y) },
        _ => vec_dot_scalar(x, y),
    }
}

/// Dot products of two weight rows with the same activations: one pass over `y`.
#[inline]
pub fn vec_dot2(x0: &[BlockQ4_1], x1: &[BlockQ4_1], y: &[BlockQ8_1]) -> (f32, f32) {
    assert!(x0.len() == y.len() && x1.len() == y.len(), "vec_dot2: block counts differ");
    match simd() {
        // SAFETY: as in `vec_dot`.
        #[cfg(target_arch = "x86_64")]
        Simd::Vnni => unsafe { vnni::vec_dot2(x0, x1, y) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::vec_dot2(x0, x1, y) },
        _ => (vec_dot_scalar(x0, y), vec_dot_scalar(x1, y)),
    }
}

/// A 2 x 4 tile: two weight rows times four tokens' activations, each weight block unpacked once
/// for the four tokens (prefill). `out[r][t]` is row `r` times token `t`.
#[inline]
pub fn dot_2x4(x0: &[BlockQ4_1], x1: &[BlockQ4_1], y: [&[BlockQ8_1]; 4]) -> [[f32; 4]; 2] {
    let n = x0.len();
    assert!(x1.len() == n && y.iter().all(|t| t.len() == n), "dot_2x4: block counts differ");
    match simd() {
        // SAFETY: as in `vec_dot`.
        #[cfg(target_arch = "x86_64")]
        Simd::Vnni => unsafe { vnni::dot_2x4(x0, x1, y) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::dot_2x4(x0, x1, y) },
        _ => [y.map(|t| vec_dot_scalar(x0, t)), y.map(|t| vec_dot_scalar(x1, t))],
    }
}

/// The x86-64 kernels, written once and compiled per feature set: `$dp` multiplies 32 unsigned
/// nibbles by 32 signed activations and sums groups of four into eight i32 lanes.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_kernels {
    ($features:literal, $dp:ident) => {
        use super::{BlockQ4_1, BlockQ8_1};

        /// 16 bytes of nibbles -> 32 bytes: low nibbles (values 0..15) then high (16..31).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn unpack(a: &BlockQ4_1) -> __m256i {
            let tmp = _mm_loadu_si128(a.qs.as_ptr() as *const __m128i);
            _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp), _mm256_set1_epi8(0x0F))
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn load(b: &BlockQ8_1) -> __m256i {
            _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i)
        }

        /// `acc + scale * dot` with the i32 lanes converted to f32.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn fma(acc: __m256, scale: f32, dot: __m256i) -> __m256 {
            _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(dot), acc)
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn hsum(acc: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            _mm_cvtss_f32(s)
        }

        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut summs = 0f32;
            for (a, b) in x.iter().zip(y) {
                summs += a.m.to_f32() * b.s.to_f32();
                acc = fma(acc, a.d.to_f32() * b.d.to_f32(), $dp(unpack(a), load(b)));
            }
            hsum(acc) + summs
        }

        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot2(x0: &[BlockQ4_1], x1: &[BlockQ4_1], y: &[BlockQ8_1]) -> (f32, f32) {
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (mut summs0, mut summs1) = (0f32, 0f32);
            for ((a0, a1), b) in x0.iter().zip(x1).zip(y) {
                let (db, sb, by) = (b.d.to_f32(), b.s.to_f32(), load(b));
                summs0 += a0.m.to_f32() * sb;
                summs1 += a1.m.to_f32() * sb;
                acc0 = fma(acc0, a0.d.to_f32() * db, $dp(unpack(a0), by));
                acc1 = fma(acc1, a1.d.to_f32() * db, $dp(unpack(a1), by));
            }
            (hsum(acc0) + summs0, hsum(acc1) + summs1)
        }

        #[target_feature(enable = $features)]
        pub unsafe fn dot_2x4(x0: &[BlockQ4_1], x1: &[BlockQ4_1], y: [&[BlockQ8_1]; 4]) -> [[f32; 4]; 2] {
            let mut acc = [[_mm256_setzero_ps(); 4]; 2];
            let mut summs = [[0f32; 4]; 2];
            for (i, (a0, a1)) in x0.iter().zip(x1).enumerate() {
                let bx = [unpack(a0), unpack(a1)];
                let dx = [a0.d.to_f32(), a1.d.to_f32()];
                let mx = [a0.m.to_f32(), a1.m.to_f32()];
                for t in 0..4 {
                    let b = y[t].get_unchecked(i);
                    let (db, sb, by) = (b.d.to_f32(), b.s.to_f32(), load(b));
                    for r in 0..2 {
                        summs[r][t] += mx[r] * sb;
                        acc[r][t] = fma(acc[r][t], dx[r] * db, $dp(bx[r], by));
                    }
                }
            }
            let mut out = [[0f32; 4]; 2];
            for r in 0..2 {
                for t in 0..4 {
                    out[r][t] = hsum(acc[r][t]) + summs[r][t];
                }
            }
            out
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

    /// `vpdpbusd`: u8 x i8 products summed in fours straight into i32 lanes.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    #[inline]
    unsafe fn dp(x: __m256i, y: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
    }

    x86_kernels!("avx2,fma,f16c,avx512vnni,avx512vl", dp);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn f(&mut self) -> f32 {
            self.next() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0
        }
    }

    fn random_q4_1(n: usize, r: &mut Lcg) -> Vec<BlockQ4_1> {
        (0..n)
            .map(|_| BlockQ4_1 {
                d: f16::from_f32(r.f() * 0.1),
                m: f16::from_f32(r.f() * 0.5),
                qs: std::array::from_fn(|_| r.next() as u8),
            })
            .collect()
    }

    fn q8(x: &[f32]) -> Vec<BlockQ8_1> {
        let mut out = vec![BlockQ8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; QK] }; x.len() / QK];
        quantize_q8_1(x, &mut out);
        out
    }

    #[test]
    fn simd_matches_the_scalar_reference_on_random_blocks() {
        let mut r = Lcg(1);
        for n in [1, 2, 7, 18, 48] {
            let w = random_q4_1(n, &mut r);
            let x: Vec<f32> = (0..n * QK).map(|_| r.f() * 3.0).collect();
            let y = q8(&x);
            let (a, b) = (vec_dot(&w, &y), vec_dot_scalar(&w, &y));
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "n={n}: simd {a} vs scalar {b}");
        }
    }

    #[test]
    fn two_row_simd_matches_the_scalar_reference() {
        let mut r = Lcg(3);
        for n in [1, 5, 18, 48] {
            let (w0, w1) = (random_q4_1(n, &mut r), random_q4_1(n, &mut r));
            let x: Vec<f32> = (0..n * QK).map(|_| r.f()).collect();
            let y = q8(&x);
            let (a, b) = vec_dot2(&w0, &w1, &y);
            let (ra, rb) = (vec_dot_scalar(&w0, &y), vec_dot_scalar(&w1, &y));
            assert!((a - ra).abs() <= 1e-4 * (1.0 + ra.abs()) && (b - rb).abs() <= 1e-4 * (1.0 + rb.abs()));
        }
    }

    #[test]
    fn the_tile_kernel_matches_the_scalar_reference() {
        let mut r = Lcg(5);
        for n in [1, 3, 18, 48] {
            let (w0, w1) = (random_q4_1(n, &mut r), random_q4_1(n, &mut r));
            let ys: Vec<Vec<BlockQ8_1>> =
                (0..4).map(|_| q8(&(0..n * QK).map(|_| r.f() * 2.0).collect::<Vec<_>>())).collect();
            let got = dot_2x4(&w0, &w1, [&ys[0], &ys[1], &ys[2], &ys[3]]);
            for (t, y) in ys.iter().enumerate() {
                for (row, w) in [&w0, &w1].into_iter().enumerate() {
                    let want = vec_dot_scalar(w, y);
                    assert!((got[row][t] - want).abs() <= 1e-4 * (1.0 + want.abs()), "n={n} [{row}][{t}]");
                }
            }
        }
    }

    /// Each compiled flavour on its own (where this CPU has it), not just the one `simd()` picks.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_x86_flavour_matches_the_scalar_reference() {
        let mut r = Lcg(11);
        let n = 24;
        let (w0, w1) = (random_q4_1(n, &mut r), random_q4_1(n, &mut r));
        let ys: Vec<Vec<BlockQ8_1>> = (0..4).map(|_| q8(&(0..n * QK).map(|_| r.f()).collect::<Vec<_>>())).collect();
        let y4 = [&ys[0][..], &ys[1], &ys[2], &ys[3]];
        let want = [y4.map(|y| vec_dot_scalar(&w0, y)), y4.map(|y| vec_dot_scalar(&w1, y))];
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
        let mut ran = 0;
        if super::super::has_avx2_fma() {
            // SAFETY: features checked just above; equal lengths.
            let (one, two, tile) =
                unsafe { (avx2::vec_dot(&w0, y4[0]), avx2::vec_dot2(&w0, &w1, y4[1]), avx2::dot_2x4(&w0, &w1, y4)) };
            assert!(close(one, want[0][0]) && close(two.0, want[0][1]) && close(two.1, want[1][1]));
            assert!((0..2).all(|i| (0..4).all(|t| close(tile[i][t], want[i][t]))));
            ran += 1;
        }
        if simd() == Simd::Vnni {
            // SAFETY: as above.
            let (one, two, tile) =
                unsafe { (vnni::vec_dot(&w0, y4[0]), vnni::vec_dot2(&w0, &w1, y4[1]), vnni::dot_2x4(&w0, &w1, y4)) };
            assert!(close(one, want[0][0]) && close(two.0, want[0][1]) && close(two.1, want[1][1]));
            assert!((0..2).all(|i| (0..4).all(|t| close(tile[i][t], want[i][t]))));
            ran += 1;
        }
        eprintln!("x86 flavours checked: {ran} (simd() = {:?})", simd());
    }

    #[test]
    fn edge_values_extreme_nibbles_zero_and_saturated_activations() {
        let w = vec![
            BlockQ4_1 { d: f16::from_f32(1.0), m: f16::from_f32(-8.0), qs: [0xFF; 16] },
            BlockQ4_1 { d: f16::from_f32(1.0), m: f16::ZERO, qs: [0x00; 16] },
            BlockQ4_1 { d: f16::MAX, m: f16::ZERO, qs: [0xF0; 16] },
        ];
        let mut x = vec![127.0f32; QK];
        x.extend(vec![-127.0; QK]);
        x.extend(vec![0.0; QK]); // an all-zero block has d = 0
        let y = q8(&x);
        assert_eq!(y[2].d, f16::ZERO);
        let (a, b) = (vec_dot(&w, &y), vec_dot_scalar(&w, &y));
        assert_eq!(a, b);
        // Block 0: (15 - 8) * 127 * 32; block 1: 0; block 2: 0 activations.
        assert!((b - 7.0 * 127.0 * 32.0).abs() < 1.0, "{b}");
    }

    #[test]
    fn the_dot_product_approximates_the_f32_one() {
        let mut r = Lcg(9);
        let w = random_q4_1(18, &mut r);
        let wf: Vec<f32> = w
            .iter()
            .flat_map(|b| {
                let (d, m) = (b.d.to_f32(), b.m.to_f32());
                let lo = b.qs.map(|q| d * (q & 15) as f32 + m);
                let hi = b.qs.map(|q| d * (q >> 4) as f32 + m);
                lo.into_iter().chain(hi)
            })
            .collect();
        let x: Vec<f32> = (0..18 * QK).map(|_| r.f()).collect();
        let exact: f32 = wf.iter().zip(&x).map(|(a, b)| a * b).sum();
        let got = vec_dot(&w, &q8(&x));
        let scale: f32 = wf.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
        assert!((got - exact).abs() < 0.02 * scale, "{got} vs {exact}");
    }

    #[test]
    fn raw_bytes_view_checks_length() {
        assert!(blocks_q4_1(&[0u8; 41]).is_none());
        let v = [0u16; 20]; // 40 bytes, aligned to 2
        let bytes = unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, 40) };
        assert_eq!(blocks_q4_1(bytes).unwrap().len(), 2);
    }
}
