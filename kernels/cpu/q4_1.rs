/*! Q4_1 weights times Q8_1 activations: the dot product candle 0.11 lacks a SIMD version of.

Block layouts are GGML's (bit-compatible with the GGUF file and llama.cpp):
- [`BlockQ4_1`]: 32 weights `x_i = d * q_i + m`, `q_i` in 0..=15; byte `j` of `qs` holds `q_j` in
  its low nibble and `q_{j+16}` in its high nibble.
- [`BlockQ8_1`]: 32 activations `y_i = d * q_i`, `q_i` in -127..=127, and `s = d * sum(q_i)`.

So `sum_i x_i y_i = d_x d_y sum_i q4_i q8_i + m_x s_y`. [`vec_dot_scalar`] is the reference;
The SIMD kernels work on pagemind's row layout ([`super::q4_1_matrix`]); [`simd`] says which
flavour (AVX-512 VNNI, AVX2+FMA, scalar) this CPU runs.
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
        *b = quantize_block(xs);
    }
}

/// The largest `|x|` (0 for an empty slice), sixteen lanes at a time: max is exact in any order,
/// so this equals the in-order fold bit for bit, without its chain of dependent compares.
pub fn abs_max(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        lanes.iter_mut().zip(c).for_each(|(m, x)| *m = m.max(x.abs()));
    }
    chunks.remainder().iter().map(|x| x.abs()).chain(lanes).fold(0f32, f32::max)
}

/// One block of [`quantize_q8_1`] (`xs` is 32 values).
pub fn quantize_block(xs: &[f32]) -> BlockQ8_1 {
    let amax = abs_max(xs);
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut b = BlockQ8_1 { d: f16::from_f32(d), s: f16::ZERO, qs: [0; QK] };
    let mut sum = 0i32;
    for (q, v) in b.qs.iter_mut().zip(xs) {
        *q = ((v * id).round_ties_even() as i32).clamp(-127, 127) as i8;
        sum += *q as i32;
    }
    b.s = f16::from_f32(d * sum as f32);
    b
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

/// The SIMD flavour this CPU runs: AVX-512 VNNI (`vpdpbusd`), AVX2+FMA, NEON with the
/// dot-product extension (`sdot`), plain NEON, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    Vnni,
    Avx2,
    NeonDot,
    Neon,
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
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            return Simd::NeonDot;
        }
        return Simd::Neon;
    }
    #[allow(unreachable_code)]
    Simd::Scalar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abs_max_equals_the_in_order_fold() {
        for n in [0, 1, 15, 16, 17, 32, 256, 301] {
            let xs: Vec<f32> = (0..n).map(|i| ((i * 7919 % 613) as f32 - 300.0) / 17.0).collect();
            assert_eq!(abs_max(&xs), xs.iter().fold(0f32, |a, v| a.max(v.abs())), "n={n}");
        }
    }

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

    /// Each compiled flavour on its own (where this CPU has it), not just the one `simd()` picks.
    #[cfg(target_arch = "x86_64")]
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
        let m = super::super::q4_1_matrix::Q4_1Matrix::from_blocks(&w, 1, 3 * QK).unwrap();
        let (a, b) = (super::super::q4_1_matrix::dot_blocks(m.row(0), &y), vec_dot_scalar(&w, &y));
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
        let got = vec_dot_scalar(&w, &q8(&x));
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
