/*! aarch64 NEON flavours of the weight kernels: Q4_1 on pagemind's row layout
([`super::q4_1_matrix`]: decode `dot`, prefill `dot_blocks` and `tile_2x4`), Q4_K and Q6_K on
GGML blocks ([`super::q4_k`], [`super::q6_k`]).

The same code is built twice (a macro, as the x86 flavours are):
- [`base`]: plain ARMv8 NEON, on every aarch64 CPU: i8 x i8 products widened to i16 (`smull`,
  `smull2`) and pair-added into i32 lanes (`sadalp`);
- [`dotprod`]: the ARMv8.2 dot-product extension (`sdot`: sixteen i8 products summed in fours into
  four i32 lanes), detected at run time ([`super::q4_1::simd`]); Apple M-series, Graviton 2 and
  later, Cortex-A76 and later have it. Rust's `vdotq_s32` is not stable yet, so `sdot` is one
  instruction of inline assembly.

f16 scales become f32 four at a time with `fcvtl` (inline assembly too: Rust's f16 vector
intrinsics are not stable). Q4_1 nibbles (0..15) and Q6_K's six-bit quants (0..63) are valid
signed bytes, so both flavours multiply signed by signed. Integer sums are exact; the float
accumulation follows llama.cpp's NEON kernels (a fused multiply-add per block for `dot_blocks`
and the tile, four blocks per vector for the decode `dot`, one scalar sum per k-quant block).
The tests compare each flavour this CPU runs with the scalar references.
*/

use std::arch::aarch64::*;
use std::arch::asm;

/// Four f16 values (at `p`, unaligned) as f32 lanes.
#[inline(always)]
unsafe fn f16x4(p: *const half::f16) -> float32x4_t {
    let h = vld1_u16(p as *const u16);
    let out: float32x4_t;
    // SAFETY (caller): `p` points at four readable f16 values. `fcvtl` is base ARMv8 SIMD.
    asm!("fcvtl {o:v}.4s, {h:v}.4h", o = out(vreg) out, h = in(vreg) h, options(pure, nomem, nostack));
    out
}

/// Block `i`'s activation offsets `(low-nibble partners, high-nibble partners)` in the
/// [`super::q4_1_matrix::Q8_1Act`] pair layout of `nb` blocks.
#[inline(always)]
fn act_offsets(i: usize, nb: usize) -> (usize, usize) {
    if i.is_multiple_of(2) && i + 1 == nb {
        (i * 32, i * 32 + 16) // the odd last block keeps its natural order
    } else {
        let p = (i / 2) * 64 + (i % 2) * 16;
        (p, p + 32)
    }
}

macro_rules! neon_kernels {
    ($features:literal, $dp:ident) => {
        use super::super::q4_1::BlockQ8_1;
        use super::super::q4_1_matrix::{Act, Row};
        use super::super::q4_k::{scales_mins, BlockQ4K};
        use super::super::q6_k::BlockQ6K;
        use super::super::q8_k::BlockQ8K;
        use super::{act_offsets, f16x4};
        use std::arch::aarch64::*;

        /// 16 bytes of nibbles -> (low nibbles, high nibbles) as signed bytes.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn nibbles(p: *const u8) -> (int8x16_t, int8x16_t) {
            let v = vld1q_u8(p);
            (vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)))
        }

        /// `q4 . q8` of one Q4_1 block in i32 lanes: low nibbles against `xl`, high against `xh`.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn block(w: (int8x16_t, int8x16_t), xl: *const i8, xh: *const i8) -> int32x4_t {
            $dp($dp(vdupq_n_s32(0), w.0, vld1q_s8(xl)), w.1, vld1q_s8(xh))
        }

        /// Q4_1 decode: one row times one token in the pair layout, four blocks per vector.
        #[target_feature(enable = $features)]
        pub unsafe fn q4_1_dot(row: Row, act: Act) -> f32 {
            let nb = row.d.len();
            let (w, x) = (row.qs.as_ptr(), act.qs.as_ptr());
            let mut acc = vdupq_n_f32(0.0);
            let mut i = 0;
            // Groups start at even blocks, so none holds an odd last block.
            while i + 4 <= nb {
                let mut s = [vdupq_n_s32(0); 4];
                for (k, s) in s.iter_mut().enumerate() {
                    let (l, h) = act_offsets(i + k, nb);
                    *s = block(nibbles(w.add((i + k) * 16)), x.add(l), x.add(h));
                }
                // One lane per block.
                let sums = vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
                let scale = vmulq_f32(f16x4(row.d.as_ptr().add(i)), vld1q_f32(act.d.as_ptr().add(i)));
                acc = vfmaq_f32(acc, scale, vcvtq_f32_s32(sums));
                acc = vfmaq_f32(acc, f16x4(row.m.as_ptr().add(i)), vld1q_f32(act.s.as_ptr().add(i)));
                i += 4;
            }
            let mut tail = 0f32;
            while i < nb {
                let (l, h) = act_offsets(i, nb);
                let s = vaddvq_s32(block(nibbles(w.add(i * 16)), x.add(l), x.add(h)));
                tail += row.d[i].to_f32() * act.d[i] * s as f32 + row.m[i].to_f32() * act.s[i];
                i += 1;
            }
            vaddvq_f32(acc) + tail
        }

        /// Q4_1 prefill order: one row times GGML Q8_1 blocks, a multiply-add per block.
        #[target_feature(enable = $features)]
        pub unsafe fn q4_1_dot_blocks(row: Row, y: &[BlockQ8_1]) -> f32 {
            let mut acc = vdupq_n_f32(0.0);
            let mut summs = 0f32;
            for (i, b) in y.iter().enumerate() {
                summs += row.m.get_unchecked(i).to_f32() * b.s.to_f32();
                let scale = row.d.get_unchecked(i).to_f32() * b.d.to_f32();
                let p = block(nibbles(row.qs.as_ptr().add(i * 16)), b.qs.as_ptr(), b.qs.as_ptr().add(16));
                acc = vfmaq_f32(acc, vcvtq_f32_s32(p), vdupq_n_f32(scale));
            }
            vaddvq_f32(acc) + summs
        }

        /// Q4_1 prefill tile (two rows, four tokens) in [`q4_1_dot_blocks`]' order.
        #[target_feature(enable = $features)]
        pub unsafe fn q4_1_tile_2x4(r0: Row, r1: Row, y: [&[BlockQ8_1]; 4], ds: [&[[f32; 2]]; 4]) -> [[f32; 4]; 2] {
            let mut acc = [[vdupq_n_f32(0.0); 4]; 2];
            let mut summs = [[0f32; 4]; 2];
            for i in 0..r0.d.len() {
                let bx = [nibbles(r0.qs.as_ptr().add(i * 16)), nibbles(r1.qs.as_ptr().add(i * 16))];
                let dx = [r0.d.get_unchecked(i).to_f32(), r1.d.get_unchecked(i).to_f32()];
                let mx = [r0.m.get_unchecked(i).to_f32(), r1.m.get_unchecked(i).to_f32()];
                for t in 0..4 {
                    let b = y[t].get_unchecked(i);
                    let [db, sb] = *ds[t].get_unchecked(i);
                    for r in 0..2 {
                        summs[r][t] += mx[r] * sb;
                        let p = block(bx[r], b.qs.as_ptr(), b.qs.as_ptr().add(16));
                        acc[r][t] = vfmaq_f32(acc[r][t], vcvtq_f32_s32(p), vdupq_n_f32(dx[r] * db));
                    }
                }
            }
            let mut out = [[0f32; 4]; 2];
            for r in 0..2 {
                for t in 0..4 {
                    out[r][t] = vaddvq_f32(acc[r][t]) + summs[r][t];
                }
            }
            out
        }

        /// Q4_K: one row of blocks times one token.
        #[target_feature(enable = $features)]
        pub unsafe fn q4_k_dot(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
            let mut sumf = 0f32;
            for (a, b) in x.iter().zip(y) {
                let (sc, m) = scales_mins(&a.scales);
                // Minimums times the per-32 activation sums.
                let bs = b.bsums.as_ptr();
                let q8sums = vpaddq_s16(vld1q_s16(bs), vld1q_s16(bs.add(8)));
                let mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(m.as_ptr())));
                let prod = vaddq_s32(vmull_s16(vget_low_s16(q8sums), vget_low_s16(mins)), vmull_high_s16(q8sums, mins));
                sumf -= b.d * a.dmin.to_f32() * vaddvq_s32(prod) as f32;
                let mut isum = vdupq_n_s32(0);
                for c in 0..4 {
                    let (q, q8) = (a.qs.as_ptr().add(32 * c), b.qs.as_ptr().add(64 * c));
                    let (l0, h0) = nibbles(q);
                    let (l1, h1) = nibbles(q.add(16));
                    let lo = $dp($dp(vdupq_n_s32(0), l0, vld1q_s8(q8)), l1, vld1q_s8(q8.add(16)));
                    let hi = $dp($dp(vdupq_n_s32(0), h0, vld1q_s8(q8.add(32))), h1, vld1q_s8(q8.add(48)));
                    isum = vmlaq_n_s32(isum, lo, sc[2 * c] as i32);
                    isum = vmlaq_n_s32(isum, hi, sc[2 * c + 1] as i32);
                }
                sumf += b.d * a.d.to_f32() * vaddvq_s32(isum) as f32;
            }
            sumf
        }

        /// Q6_K: one row of blocks times one token.
        #[target_feature(enable = $features)]
        pub unsafe fn q6_k_dot(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
            let (m4, m3) = (vdupq_n_u8(0x0F), vdupq_n_u8(3));
            let mut sum = 0f32;
            for (a, b) in x.iter().zip(y) {
                // The `-32` offset: 32 * sum_j sc_j * bsums_j.
                let sc = vld1q_s8(a.scales.as_ptr());
                let (s0, s1) = (vmovl_s8(vget_low_s8(sc)), vmovl_high_s8(sc));
                let (b0, b1) = (vld1q_s16(b.bsums.as_ptr()), vld1q_s16(b.bsums.as_ptr().add(8)));
                let mins = vaddq_s32(
                    vaddq_s32(vmull_s16(vget_low_s16(b0), vget_low_s16(s0)), vmull_high_s16(b0, s0)),
                    vaddq_s32(vmull_s16(vget_low_s16(b1), vget_low_s16(s1)), vmull_high_s16(b1, s1)),
                );
                let mut isum = vdupq_n_s32(0);
                for n in 0..2 {
                    let (ql, qh, q8) =
                        (a.ql.as_ptr().add(64 * n), a.qh.as_ptr().add(32 * n), b.qs.as_ptr().add(128 * n));
                    for h in 0..2 {
                        // Values 32k + 16h + (0..16) of this half, k = 0..4.
                        let hb = vld1q_u8(qh.add(16 * h));
                        let l0 = vld1q_u8(ql.add(16 * h));
                        let l1 = vld1q_u8(ql.add(32 + 16 * h));
                        let q = [
                            vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8::<4>(vandq_u8(hb, m3))),
                            vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(hb), m3))),
                            vorrq_u8(vshrq_n_u8::<4>(l0), vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(hb), m3))),
                            vorrq_u8(vshrq_n_u8::<4>(l1), vshlq_n_u8::<4>(vshrq_n_u8::<6>(hb))),
                        ];
                        for (k, q) in q.into_iter().enumerate() {
                            let p = $dp(vdupq_n_s32(0), vreinterpretq_s8_u8(q), vld1q_s8(q8.add(32 * k + 16 * h)));
                            isum = vmlaq_n_s32(isum, p, *a.scales.get_unchecked(8 * n + 2 * k + h) as i32);
                        }
                    }
                }
                sum += b.d * a.d.to_f32() * (vaddvq_s32(isum) - 32 * vaddvq_s32(mins)) as f32;
            }
            sum
        }
    };
}

/// Plain ARMv8 NEON.
pub mod base {
    /// `acc + a . b` in i32 lanes: products widened to i16, then pair-added (no overflow:
    /// |product| <= 63 * 128).
    #[inline(always)]
    unsafe fn dp(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        vpadalq_s16(vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b))), vmull_high_s8(a, b))
    }

    neon_kernels!("neon", dp);
}

/// NEON with the dot-product extension.
pub mod dotprod {
    /// `acc + a . b` in i32 lanes with one `sdot`.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    unsafe fn dp(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: register-only instruction; callers run only where `dotprod` was detected.
        std::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b,
            options(pure, nomem, nostack)
        );
        acc
    }

    neon_kernels!("neon,dotprod", dp);
}

#[cfg(test)]
mod tests {
    use super::super::q4_1::{quantize_q8_1, vec_dot_scalar, BlockQ8_1, QK};
    use super::super::q4_1_matrix::{self, Q4_1Matrix, Q8_1Act};
    use super::super::q4_k::{self, tests::rng};
    use super::super::q6_k;
    use super::super::q8_k::{quantize, BlockQ8K, QK_K};
    use half::f16;

    /// One compiled flavour's kernels.
    struct Flavour {
        name: &'static str,
        q4_1_dot: unsafe fn(q4_1_matrix::Row, q4_1_matrix::Act) -> f32,
        q4_1_dot_blocks: unsafe fn(q4_1_matrix::Row, &[BlockQ8_1]) -> f32,
        q4_1_tile: unsafe fn(q4_1_matrix::Row, q4_1_matrix::Row, [&[BlockQ8_1]; 4], [&[[f32; 2]]; 4]) -> [[f32; 4]; 2],
        q4_k_dot: unsafe fn(&[q4_k::BlockQ4K], &[BlockQ8K]) -> f32,
        q6_k_dot: unsafe fn(&[q6_k::BlockQ6K], &[BlockQ8K]) -> f32,
    }

    macro_rules! flavour {
        ($m:ident) => {
            Flavour {
                name: stringify!($m),
                q4_1_dot: super::$m::q4_1_dot,
                q4_1_dot_blocks: super::$m::q4_1_dot_blocks,
                q4_1_tile: super::$m::q4_1_tile_2x4,
                q4_k_dot: super::$m::q4_k_dot,
                q6_k_dot: super::$m::q6_k_dot,
            }
        };
    }

    /// Each flavour this CPU runs.
    fn flavours() -> Vec<Flavour> {
        let mut v = vec![flavour!(base)];
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            v.push(flavour!(dotprod));
        }
        v
    }

    fn close(got: f32, want: f32) -> bool {
        (got - want).abs() <= 1e-4 * (1.0 + want.abs())
    }

    /// Activations with the extremes (+-127 after quantization) in the first block.
    fn activations(n: usize, r: &mut impl FnMut() -> u64) -> Vec<f32> {
        (0..n)
            .map(|i| match i {
                0 => 9.0,
                1 => -9.0,
                _ => (r() % 2001) as f32 / 250.0 - 4.0,
            })
            .collect()
    }

    #[test]
    fn q4_1_kernels_match_the_scalar_references_for_every_tail_shape() {
        let mut r = rng(5);
        for nb in 1..=19 {
            let w = q4_1_matrix::tests::blocks(2 * nb, &mut r);
            let m = Q4_1Matrix::from_blocks(&w, 2, nb * QK).unwrap();
            let ys: Vec<Vec<BlockQ8_1>> = (0..4)
                .map(|_| {
                    let mut q = vec![BlockQ8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; QK] }; nb];
                    quantize_q8_1(&activations(nb * QK, &mut r), &mut q);
                    q
                })
                .collect();
            let y4 = [&ys[0][..], &ys[1], &ys[2], &ys[3]];
            let dss: Vec<Vec<[f32; 2]>> =
                ys.iter().map(|y| y.iter().map(|b| [b.d.to_f32(), b.s.to_f32()]).collect()).collect();
            let ds4 = [&dss[0][..], &dss[1], &dss[2], &dss[3]];
            let x = activations(nb * QK, &mut r);
            let act = Q8_1Act::quantize(&x);
            for f in flavours() {
                let (name, dot, dot_blocks, tile) = (f.name, f.q4_1_dot, f.q4_1_dot_blocks, f.q4_1_tile);
                // SAFETY: the flavour's features are present (listed by `flavours`); shapes match.
                unsafe {
                    let want = q4_1_matrix::dot_scalar(m.row(1), act.view());
                    assert!(close(dot(m.row(1), act.view()), want), "{name} nb={nb}: dot");
                    let t = tile(m.row(0), m.row(1), y4, ds4);
                    for (tok, y) in y4.iter().enumerate() {
                        for (ri, wr) in [&w[..nb], &w[nb..]].into_iter().enumerate() {
                            let want = vec_dot_scalar(wr, y);
                            assert!(close(t[ri][tok], want), "{name} nb={nb}: tile [{ri}][{tok}]");
                            assert_eq!(dot_blocks(m.row(ri), y), t[ri][tok], "{name} nb={nb}: tile order");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn k_quant_kernels_match_the_scalar_references() {
        let mut r = rng(7);
        for nb in [1, 2, 3, 7] {
            let (w4, w6) = (q4_k::tests::blocks(nb, &mut r), q6_k::tests::blocks(nb, &mut r));
            let y = quantize(&activations(nb * QK_K, &mut r));
            let (want4, want6) = (q4_k::dot_scalar(&w4, &y), q6_k::dot_scalar(&w6, &y));
            for f in flavours() {
                // SAFETY: as above.
                unsafe {
                    assert!(close((f.q4_k_dot)(&w4, &y), want4), "{} nb={nb}: q4_k", f.name);
                    assert!(close((f.q6_k_dot)(&w6, &y), want6), "{} nb={nb}: q6_k", f.name);
                }
            }
            assert!(close(q4_k::dot(&w4, &y), want4) && close(q6_k::dot(&w6, &y), want6), "dispatched");
        }
    }
}
