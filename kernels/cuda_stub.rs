/*! Stand-in for pagemind's CUDA kernels in a build without the `cuda` feature: every entry
point declines (`None`), so callers take candle's path. See `cuda/mod.rs`. */

use candle_core::Result;
use candle_core::Tensor;

/// Always `None` without the `cuda` feature.
pub fn decode_attention(_q: &Tensor, _k: &Tensor, _v: &Tensor, _scale: f32) -> Result<Option<Tensor>> {
    Ok(None)
}
