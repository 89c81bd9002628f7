/*! pagemind's CUDA kernels (feature `cuda`; without it `cuda_stub.rs` stands in).

- [`decode_attention`] (`attention.rs`, `decode_attention.cu`): attention for one new token over
  the KV cache buffers in place (split over the keys: partials, then a merge): two kernels where
  candle runs about six (two matmuls, scale, softmax, reshapes).
- [`qkv_rope`] (`fused.rs`, `qkv_rope.cu`): the fused Q/K/V product's output with its bias
  added and rotary embedding applied, laid out head-major for the cache: one kernel where
  candle's path runs six (bias add, three transposing copies, two ropes).
- [`swiglu`] (`fused.rs`, `swiglu.cu`): `silu(gate) * up` from the fused gate/up product: one
  kernel for four (two copies, SiLU, product).
- [`add_rms_norm`] (`fused.rs`, `add_rms_norm.cu`): a residual add and the RMS norm after it:
  one kernel for two.

Decoding one token is bound by per-op overhead on a GPU (~25 kernels per layer, each a few
microseconds of host work for well under a microsecond of GPU work), so fewer launches is the
lever. The CUDA C sources are compiled once per process with NVRTC (`cudarc::nvrtc`, linked by
candle's CUDA backend), so the binary carries no PTX for a fixed architecture. Each kernel has a
scalar reference in its tests, which compare the two on random inputs (and skip without a GPU).
*/

mod attention;
mod fused;

pub use attention::decode_attention;
pub use fused::{add_rms_norm, qkv_rope, swiglu, QkvRope};

use std::sync::OnceLock;

/// `CustomOp3::cpu_fwd` of a CUDA-only op: an error naming the CPU path that stands in for it.
macro_rules! cuda_only_cpu_fwd3 {
    ($msg:literal) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            candle_core::bail!($msg)
        }
    };
}
use cuda_only_cpu_fwd3;

/// Random values in `[-amp, amp)` from a xorshift seeded by `seed` (the kernels' tests).
#[cfg(test)]
fn random(n: usize, seed: u64, amp: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * amp
        })
        .collect()
}

/// One CUDA C source file: its module name and text, compiled to PTX on first use.
struct Source {
    module: &'static str,
    file: &'static str,
    text: &'static str,
    ptx: OnceLock<std::result::Result<String, String>>,
}

impl Source {
    const fn new(module: &'static str, file: &'static str, text: &'static str) -> Self {
        Self { module, file, text, ptx: OnceLock::new() }
    }

    /// The PTX of this source (NVRTC compiles it once per process); callers load their kernel
    /// from it with `CudaDevice::get_or_load_custom_func(name, self.module, ptx)`.
    fn ptx(&'static self) -> candle_core::Result<&'static str> {
        self.ptx
            .get_or_init(|| {
                candle_core::cuda_backend::cudarc::nvrtc::compile_ptx(self.text)
                    .map(|p| p.to_src())
                    .map_err(|e| format!("compiling kernels/cuda/{} with NVRTC: {e}", self.file))
            })
            .as_deref()
            .map_err(|e| candle_core::Error::Msg(e.clone()))
    }
}
