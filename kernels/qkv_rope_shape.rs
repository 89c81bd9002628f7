/*! [`QkvRope`]: what the fused Q/K/V + RoPE kernel needs to know of a model's attention, shared
by the CUDA kernels (`cuda/fused.rs`) and their stand-in without the `cuda` feature. */

/// The attention heads' shapes and the rotary embedding's style, for `cuda::qkv_rope`.
#[derive(Debug, Clone, Copy)]
pub struct QkvRope {
    pub n_head: usize,
    pub n_kv: usize,
    pub head_dim: usize,
    /// Position of the first token (row `pos + i` of the cos/sin tables for token `i`).
    pub pos: usize,
    /// GGML's "normal" RoPE, pairs `(2j, 2j + 1)` (Llama; candle's `rope_i`); otherwise NEOX,
    /// pairs `(j, j + d/2)` (Qwen2; candle's `rope`).
    pub interleaved: bool,
}

impl QkvRope {
    /// Heads of the fused product's output: queries, keys, values.
    pub fn rows(&self) -> usize {
        self.n_head + 2 * self.n_kv
    }
}
