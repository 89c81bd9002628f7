/*! pagemind's compute kernels (the `pagemind-kernels` crate, `pagemind::kernels` in the library).

CPU kernels ([`cpu`], re-exported at the top):
- [`activations`]: vectorizable `exp`, `erf` and erf-GELU for the sentence encoder.
- [`attention`]: one token's attention over the KV cache (AVX2 dot products and updates).
- [`q4_1`]: Q4_1 x Q8_1 dot product, AVX2+FMA (checked at run time) with a scalar reference.
- [`q4_1_matrix`]: Q4_1 matrices in a row layout (structure of arrays) and the decode kernel
  that reduces eight blocks at once.
- [`q8_k`], [`q4_k`], [`q6_k`]: k-quant weights (GGML blocks, read in place) times Q8_K
  activations, AVX2 and AVX-512 VNNI flavours with scalar references; [`k_matmul`]: their
  matrix products (Qwen2.5 Q4_K_M's layers); [`q4_k_x8`]: Q4_K with eight rows interleaved
  for AVX-512 VNNI (decode and prefill tiles of up to four tokens); [`q6_k_x8`]: the same for Q6_K.
- `neon` (aarch64 only): NEON flavours of the Q4_1, Q4_K and Q6_K kernels, plain and with the
  dot-product extension (`sdot`).
- [`pool`]: splitting work over candle's CPU worker pool.
- [`matmul`]: Q4_1 matrix products on candle's CPU worker pool (SmolLM2's layers), where stock
  candle 0.11 falls back to scalar code.

GPU kernels: [`cuda`] (feature `cuda`, compiled with NVRTC at first use; without the feature a
stub module of the same interface declines every call, so callers take candle's path).

Every SIMD kernel has a scalar reference and tests comparing the two on random blocks and edge
values; `cargo test -p pagemind-kernels` runs them without the rest of pagemind (the aarch64
check cross-compiles only this crate). The `unsafe` surface: the `#[target_feature]` kernels
(called only after a run-time feature check, stated at each call), raw block reads of GGML
buffers (sizes checked by their constructors) and [`pool::SharedMut`], whose `at` is `unsafe`.
*/

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[doc(hidden)]
pub mod cuda_stub;
mod qkv_rope_shape;
#[cfg(not(feature = "cuda"))]
pub use cuda_stub as cuda;

pub use cpu::*;
