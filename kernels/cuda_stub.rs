/*! Stand-in for pagemind's CUDA kernels in a build without the `cuda` feature: every entry
point declines (`None`), so callers take candle's path. See `cuda/mod.rs`. */

use candle_core::Result;
use candle_core::Tensor;

/// Always `None` without the `cuda` feature.
pub fn decode_attention(_q: &Tensor, _k: &Tensor, _v: &Tensor, _scale: f32) -> Result<Option<Tensor>> {
    Ok(None)
}

pub use crate::qkv_rope_shape::QkvRope;

/// Always `None` without the `cuda` feature.
pub fn qkv_rope(
    _y: &Tensor,
    _b: Option<&Tensor>,
    _cos: &Tensor,
    _sin: &Tensor,
    _s: &QkvRope,
) -> Result<Option<Tensor>> {
    Ok(None)
}

/// Always `None` without the `cuda` feature.
pub fn swiglu(_gu: &Tensor) -> Result<Option<Tensor>> {
    Ok(None)
}

/// Always `None` without the `cuda` feature.
pub fn add_rms_norm(_x: &Tensor, _y: &Tensor, _w: &Tensor, _eps: f32) -> Result<Option<(Tensor, Tensor)>> {
    Ok(None)
}
