/*! pagemind's CPU compute kernels (the top-level `kernels/` folder, compiled into the crate as
`pagemind::kernels`).

- [`activations`]: vectorizable `exp`, `erf` and erf-GELU for the sentence encoder.
- [`q4_1`]: Q4_1 x Q8_1 dot product, AVX2+FMA (checked at run time) with a scalar reference.
- [`q4_1_matrix`]: Q4_1 matrices in a row layout (structure of arrays) and the decode kernel
  that reduces eight blocks at once.
- [`q8_k`], [`q4_k`], [`q6_k`]: k-quant weights (GGML blocks, read in place) times Q8_K
  activations, AVX2 and AVX-512 VNNI flavours with scalar references; [`k_matmul`]: their
  matrix products (Qwen2.5 Q4_K_M's layers); [`q4_k_x8`]: Q4_K with eight rows interleaved
  for AVX-512 VNNI (decode and prefill tiles of up to four tokens); [`q6_k_x8`]: the same for Q6_K.
- `neon` (aarch64 only): NEON flavours of the Q4_1, Q4_K and Q6_K kernels, plain and with the
  dot-product extension (`sdot`).
- [`cuda`]: CUDA kernels (feature `cuda`, compiled with NVRTC at first use; a stub without
  it): decode attention over the KV cache in place.
- [`pool`]: splitting work over candle's CPU worker pool.
- [`matmul`]: Q4_1 matrix products on candle's CPU worker pool, used by the runtime for Q4_1 weights
  (SmolLM2's layers), where stock candle 0.11 falls back to scalar code.

Every SIMD kernel has a scalar reference and tests comparing the two on random blocks and edge
values. Q8_0 (SmolLM2's output projection) stays on candle's kernel.
*/

pub mod activations;
#[cfg(feature = "cuda")]
#[path = "../cuda/mod.rs"]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "../cuda/stub.rs"]
pub mod cuda;
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
