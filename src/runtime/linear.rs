/*! A linear layer on quantized weights: pagemind's own kernel where candle has no SIMD one.

[`Linear::new`] keeps Q4_1 weights on the CPU in pagemind's layout and multiplies with
[`crate::kernels::matmul::matmul_q4_1`] (AVX2 Q4_1 x Q8_1); every other case goes to candle's
`QMatMul`. Setting `PAGEMIND_KERNELS=candle` forces candle everywhere, for A/B benchmarks.
*/

use crate::kernels::matmul::matmul_q4_1;
use crate::kernels::q4_1::BlockQ4_1;
use crate::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use half::f16;

/// `y = x W^T` for a quantized `W` of shape `[rows, cols]`.
pub enum Linear {
    /// Q4_1 weights on the CPU, multiplied by pagemind's kernels.
    Q4_1 { blocks: Vec<BlockQ4_1>, rows: usize, cols: usize },
    /// Anything else: candle's quantized matmul.
    Candle(QMatMul),
}

/// Whether pagemind's kernels are enabled (`PAGEMIND_KERNELS` is not `candle`).
pub fn own_kernels() -> bool {
    std::env::var("PAGEMIND_KERNELS").map(|v| v != "candle").unwrap_or(true)
}

impl Linear {
    pub fn new(w: QTensor, device: &Device) -> Result<Self> {
        let dims = w.shape().dims().to_vec();
        if w.dtype() == GgmlDType::Q4_1 && device.is_cpu() && dims.len() == 2 && own_kernels() {
            let bytes = w.data()?;
            let blocks = bytes
                .chunks_exact(20)
                .map(|b| BlockQ4_1 {
                    d: f16::from_le_bytes([b[0], b[1]]),
                    m: f16::from_le_bytes([b[2], b[3]]),
                    qs: b[4..20].try_into().expect("16 bytes"),
                })
                .collect::<Vec<_>>();
            if blocks.len() * 32 == dims[0] * dims[1] {
                return Ok(Linear::Q4_1 { blocks, rows: dims[0], cols: dims[1] });
            }
        }
        Ok(Linear::Candle(QMatMul::from_qtensor(w)?))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Candle(m) => Ok(m.forward(x)?),
            Linear::Q4_1 { blocks, rows, cols } => {
                let mut dims = x.dims().to_vec();
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                let out = matmul_q4_1(blocks, *rows, *cols, &xs);
                *dims.last_mut().expect("at least one dim") = *rows;
                Ok(Tensor::from_vec(out, dims, x.device())?)
            }
        }
    }
}
