/*! A linear layer on quantized weights: pagemind's own kernel where candle has no SIMD one.

[`Linear::new`] keeps Q4_1 weights on the CPU in pagemind's layout and multiplies with
[`crate::kernels::matmul::matmul_q4_1`] (AVX2 Q4_1 x Q8_1); every other case goes to candle's
`QMatMul`. Setting `PAGEMIND_KERNELS=candle` forces candle everywhere, for A/B benchmarks.

[`LinearGroup`] holds the layers that read the same input (Q/K/V; gate/up): when all are on
pagemind's kernel they become one product (one activation quantization, one trip through the
worker pool instead of three or two), and the output is split afterwards.
*/

use crate::kernels::matmul::matmul;
use crate::kernels::q4_1::blocks_q4_1;
use crate::kernels::q4_1_matrix::Q4_1Matrix;
use crate::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor, D};

/// `y = x W^T` for a quantized `W` of shape `[rows, cols]`.
pub enum Linear {
    /// Q4_1 weights on the CPU, multiplied by pagemind's kernels.
    Q4_1(Q4_1Matrix),
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
            if let Some(m) = blocks_q4_1(&bytes).and_then(|b| Q4_1Matrix::from_blocks(b, dims[0], dims[1])) {
                return Ok(Linear::Q4_1(m));
            }
        }
        Ok(Linear::Candle(QMatMul::from_qtensor(w)?))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Candle(m) => Ok(m.forward(x)?),
            Linear::Q4_1(m) => {
                let mut dims = x.dims().to_vec();
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                let out = matmul(m, &xs);
                *dims.last_mut().expect("at least one dim") = m.rows;
                Ok(Tensor::from_vec(out, dims, x.device())?)
            }
        }
    }
}

/// Linear layers applied to the same input, fused into one product where possible.
pub enum LinearGroup {
    /// One Q4_1 product over the stacked rows; `sizes` are each part's output width.
    Fused { linear: Linear, sizes: Vec<usize> },
    /// Parts on candle's kernels (or of mixed types), run one by one.
    Separate(Vec<Linear>),
}

impl LinearGroup {
    /// Stack `parts` if they are all Q4_1 with the same input width.
    pub fn new(parts: Vec<Linear>) -> Self {
        let cols = match parts.first() {
            Some(Linear::Q4_1(m)) => m.cols,
            _ => return LinearGroup::Separate(parts),
        };
        if !parts.iter().all(|p| matches!(p, Linear::Q4_1(m) if m.cols == cols)) {
            return LinearGroup::Separate(parts);
        }
        let mut mats = Vec::with_capacity(parts.len());
        for p in parts {
            if let Linear::Q4_1(m) = p {
                mats.push(m);
            }
        }
        let sizes = mats.iter().map(|m| m.rows).collect();
        let fused = Q4_1Matrix::concat(mats).expect("same widths, checked above");
        LinearGroup::Fused { linear: Linear::Q4_1(fused), sizes }
    }

    /// Each part's output, in the order given to [`LinearGroup::new`].
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            LinearGroup::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
            LinearGroup::Fused { linear, sizes } => {
                let y = linear.forward(x)?;
                let mut out = Vec::with_capacity(sizes.len());
                let mut start = 0;
                for &n in sizes {
                    out.push(y.narrow(D::Minus1, start, n)?.contiguous()?);
                    start += n;
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::q4_1::BlockQ4_1;
    use half::f16;

    fn q4_1(rows: usize, cols: usize, seed: u8) -> Linear {
        let blocks: Vec<BlockQ4_1> = (0..rows * cols / 32)
            .map(|i| BlockQ4_1 {
                d: f16::from_f32(0.01 * ((i % 7) as f32 + 1.0)),
                m: f16::from_f32(-0.05 * (i % 3) as f32),
                qs: std::array::from_fn(|j| (j as u8).wrapping_mul(seed).wrapping_add(i as u8)),
            })
            .collect();
        Linear::Q4_1(Q4_1Matrix::from_blocks(&blocks, rows, cols).unwrap())
    }

    #[test]
    fn a_fused_group_gives_each_part_its_own_output() {
        let (a, b, c) = (q4_1(64, 96, 3), q4_1(32, 96, 5), q4_1(32, 96, 7));
        let x = Tensor::from_vec(
            (0..3 * 96).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
            (1, 3, 96),
            &Device::Cpu,
        )
        .unwrap();
        let want: Vec<Vec<f32>> =
            [&a, &b, &c].iter().map(|l| l.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap()).collect();
        let group = LinearGroup::new(vec![a, b, c]);
        assert!(matches!(&group, LinearGroup::Fused { sizes, .. } if sizes == &[64, 32, 32]));
        let got = group.forward(&x).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.dims()[..2], [1, 3]);
            assert_eq!(&g.flatten_all().unwrap().to_vec1::<f32>().unwrap(), w);
        }
        // Different input widths cannot share a product.
        assert!(matches!(LinearGroup::new(vec![q4_1(32, 96, 1), q4_1(32, 64, 1)]), LinearGroup::Separate(_)));
    }
}
