/*! CPU kernels: SIMD flavours (AVX2, AVX-512 VNNI, NEON) with their scalar references. */

pub mod activations;
pub mod attention;
pub mod k_matmul;
pub mod matmul;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod pool;
pub mod q4_1;
pub mod q4_1_matrix;
pub mod q4_k;
pub mod q4_k_x8;
pub mod q6_k;
pub mod q6_k_x8;
pub mod q8_k;

/// Whether this x86-64 CPU has AVX2 and FMA (cached by std).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Sum of a vector's eight lanes (pairwise: halves, then quarters, then the last two), the
/// order every kernel here finishes its f32 accumulators in.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn hsum_ps(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}
