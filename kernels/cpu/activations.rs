/*! Vectorizable `exp`, `erf` and GELU for f32 slices.

libm's `expf`/`erff` are scalar calls; these are branch-free polynomial forms that LLVM turns into
SIMD (AVX-512/AVX2/NEON, whatever the build targets), used by the sentence encoder's softmax and
GELU. Each has a test against `f64` std on a dense grid, including the clamped tails.

- [`exp_inplace`]: `x -> e^x`, relative error < 3e-7 on [-87, 88] (clamped outside).
- [`gelu_erf_inplace`]: `x -> x/2 (1 + erf(x/sqrt 2))`, the exact (erf) GELU of BERT, absolute
  error < 1e-6 |x| (erf itself: < 2e-6).
*/

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in a part exact in f32 and the remainder, for the range reduction.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` for one value, in the branch-free form the slice version vectorizes.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E).round_ties_even();
    let r = x - n * LN2_HI - n * LN2_LO; // |r| <= ln2/2
                                         // Taylor to r^6: truncation < |r|^7/7! ~ 9e-8 relative.
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// `x -> e^x` over a slice.
#[inline]
pub fn exp_inplace(xs: &mut [f32]) {
    for x in xs {
        *x = exp(*x);
    }
}

/// `erf(x)`: Abramowitz & Stegun 7.1.28 (absolute error < 3e-7 in exact arithmetic, < 2e-6 in
/// f32), odd symmetric.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const A: [f32; 6] = [0.070_523_08, 0.042_282_01, 0.009_270_527, 0.000_152_014_3, 0.000_276_567_2, 0.000_043_063_8];
    let a = x.abs().min(6.0);
    let p = 1.0 + a * (A[0] + a * (A[1] + a * (A[2] + a * (A[3] + a * (A[4] + a * A[5])))));
    let p2 = p * p;
    let p4 = p2 * p2;
    let p8 = p4 * p4;
    let y = 1.0 - 1.0 / (p8 * p8);
    y.copysign(x)
}

/// The erf form of GELU, in place.
#[inline]
pub fn gelu_erf_inplace(xs: &mut [f32]) {
    for x in xs {
        let v = *x;
        *x = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf64(x: f64) -> f64 {
        // High-precision reference by the Taylor series (|x| <= 3) or the continued fraction tail.
        if x.abs() > 3.0 {
            let z = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (z + f);
            }
            let erfc = (-z * z).exp() / (std::f64::consts::PI.sqrt() * (z + f));
            return (1.0 - erfc).copysign(x);
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_matches_f64_across_the_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - want).abs() / want);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
        assert!(exp(1000.0).is_finite());
        let mut v = vec![0.0, 1.0, -1.0];
        exp_inplace(&mut v);
        assert!((v[1] - std::f32::consts::E).abs() < 1e-6 && v[0] == 1.0);
    }

    #[test]
    fn erf_and_gelu_match_f64_references() {
        let mut worst = 0.0f64;
        let mut x = -8.0f32;
        while x < 8.0 {
            worst = worst.max((erf(x) as f64 - erf64(x as f64)).abs());
            x += 0.001;
        }
        // The formula is good to 3e-7; evaluating p^16 in f32 costs up to 16 ulps of p.
        assert!(worst < 2e-6, "erf absolute error {worst}");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        let xs: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.005).collect();
        let mut g = xs.clone();
        gelu_erf_inplace(&mut g);
        for (x, y) in xs.iter().zip(&g) {
            let want = 0.5 * *x as f64 * (1.0 + erf64(*x as f64 / 2f64.sqrt()));
            assert!((*y as f64 - want).abs() <= 1e-6 * x.abs().max(1.0) as f64, "gelu({x}) = {y}, want {want}");
        }
    }
}
