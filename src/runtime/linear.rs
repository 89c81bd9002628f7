/*! A linear layer on quantized weights: pagemind's own kernels on the CPU, candle's elsewhere.

[`Linear::new`] keeps Q4_1 weights on the CPU in pagemind's row layout
([`crate::kernels::matmul`]) and Q4_K / Q6_K weights as their GGML blocks
([`crate::kernels::k_matmul`]; with eight rows interleaved where the CPU has AVX2 or AVX-512
VNNI, [`q4_k_x8::best`]); every other case (Q8_0, F16, GPU devices) goes to candle's
`QMatMul`. Setting `PAGEMIND_KERNELS=candle` forces candle everywhere, for A/B benchmarks.

[`LinearGroup`] holds the layers that read the same input (Q/K/V; gate/up): when all are on
pagemind's kernel, or all candle's of one GGML type, they become one product (one activation
quantization, one trip through the worker pool, or on a GPU one kernel launch instead of three
or two: decode there is bound by launches), and the output is split afterwards.
*/

use crate::kernels::k_matmul::{self, KMatrix, Q4Kx8Matrix, Q6Kx8Matrix};
use crate::kernels::matmul::matmul;
use crate::kernels::q4_1::blocks_q4_1;
use crate::kernels::q4_1_matrix::Q4_1Matrix;
use crate::kernels::q4_k::BlockQ4K;
use crate::kernels::q4_k_x8;
use crate::kernels::q6_k::BlockQ6K;
use crate::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor, D};
use std::borrow::Cow;

/// `y = x W^T` for a quantized `W` of shape `[rows, cols]`.
pub enum Linear {
    /// Q4_1 weights on the CPU in pagemind's row layout.
    Q4_1(Q4_1Matrix),
    /// Q4_K weights on the CPU (GGML blocks).
    Q4K(KMatrix<BlockQ4K>),
    /// Q4_K weights on an AVX2 or AVX-512 VNNI CPU, eight rows interleaved.
    Q4Kx8(Q4Kx8Matrix),
    /// Q6_K weights on the CPU (GGML blocks).
    Q6K(KMatrix<BlockQ6K>),
    /// Q6_K weights on an AVX2 or AVX-512 VNNI CPU, eight rows interleaved.
    Q6Kx8(Q6Kx8Matrix),
    /// Anything else: candle's quantized matmul.
    Candle(QMatMul),
}

/// Whether pagemind's kernels are enabled (`PAGEMIND_KERNELS` is not `candle`; read once per
/// process, since the CUDA decode path asks on every layer of every token).
pub fn own_kernels() -> bool {
    static OWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| std::env::var("PAGEMIND_KERNELS").map(|v| v != "candle").unwrap_or(true))
}

impl Linear {
    pub fn new(w: QTensor, device: &Device) -> Result<Self> {
        let dims = w.shape().dims().to_vec();
        if device.is_cpu() && dims.len() == 2 && own_kernels() {
            let (rows, cols) = (dims[0], dims[1]);
            let own = match w.dtype() {
                GgmlDType::Q4_1 => {
                    blocks_q4_1(&w.data()?).and_then(|b| Q4_1Matrix::from_blocks(b, rows, cols)).map(Linear::Q4_1)
                }
                GgmlDType::Q4K => KMatrix::<BlockQ4K>::from_bytes(&w.data()?, rows, cols).map(|m| {
                    match q4_k_x8::available().then(|| Q4Kx8Matrix::from_blocks(m.blocks(), rows, cols)).flatten() {
                        Some(x8) => Linear::Q4Kx8(x8),
                        None => Linear::Q4K(m),
                    }
                }),
                GgmlDType::Q6K => KMatrix::<BlockQ6K>::from_bytes(&w.data()?, rows, cols).map(|m| {
                    match q4_k_x8::available().then(|| Q6Kx8Matrix::from_blocks(m.blocks(), rows, cols)).flatten() {
                        Some(x8) => Linear::Q6Kx8(x8),
                        None => Linear::Q6K(m),
                    }
                }),
                _ => None,
            };
            if let Some(own) = own {
                return Ok(own);
            }
        }
        Ok(Linear::Candle(QMatMul::from_qtensor(on_device(w, device)?)?))
    }

    /// Output width, for pagemind's kernels (`None` for candle's).
    fn own_rows(&self) -> Option<usize> {
        match self {
            Linear::Q4_1(m) => Some(m.rows),
            Linear::Q4K(m) => Some(m.rows),
            Linear::Q4Kx8(m) => Some(m.rows),
            Linear::Q6K(m) => Some(m.rows),
            Linear::Q6Kx8(m) => Some(m.rows),
            Linear::Candle(_) => None,
        }
    }

    /// Output width.
    fn rows(&self) -> usize {
        match (self, self.own_rows()) {
            (_, Some(rows)) => rows,
            (Linear::Candle(QMatMul::QTensor(q)), _) => q.shape().dims()[0],
            (Linear::Candle(QMatMul::Tensor(w) | QMatMul::TensorF16(w)), _) => w.dims()[0],
            _ => unreachable!("own kernels report their rows"),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rows = match (self, self.own_rows()) {
            (Linear::Candle(m), _) => return Ok(m.forward(x)?),
            (_, rows) => rows.expect("own kernel"),
        };
        let mut dims = x.dims().to_vec();
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let out = match self {
            Linear::Q4_1(m) => matmul(m, &xs),
            Linear::Q4K(m) => k_matmul::matmul(m, &xs),
            Linear::Q4Kx8(m) => k_matmul::matmul_x8(m, &xs),
            Linear::Q6K(m) => k_matmul::matmul(m, &xs),
            Linear::Q6Kx8(m) => k_matmul::matmul_x8(m, &xs),
            Linear::Candle(_) => unreachable!("handled above"),
        };
        *dims.last_mut().expect("at least one dim") = rows;
        Ok(Tensor::from_vec(out, dims, x.device())?)
    }
}

/// Linear layers applied to the same input, fused into one product where possible.
pub enum LinearGroup {
    /// One product over the stacked rows; `sizes` are each part's output width.
    Fused { linear: Linear, sizes: Vec<usize> },
    /// Parts of mixed types or input widths, run one by one.
    Separate(Vec<Linear>),
}

/// Stack same-typed matrices of pagemind's kernels, or give the parts back.
fn stack(parts: Vec<Linear>) -> std::result::Result<Linear, Vec<Linear>> {
    macro_rules! same {
        ($variant:ident, $concat:expr) => {
            if parts.iter().all(|p| matches!(p, Linear::$variant(_))) {
                let mats: Vec<_> = parts
                    .into_iter()
                    .map(|p| match p {
                        Linear::$variant(m) => m,
                        _ => unreachable!("checked above"),
                    })
                    .collect();
                let cols = mats[0].cols;
                if mats.iter().all(|m| m.cols == cols) {
                    return Ok(Linear::$variant($concat(mats).expect("same widths, checked above")));
                }
                return Err(mats.into_iter().map(Linear::$variant).collect());
            }
        };
    }
    if parts.is_empty() {
        return Err(parts);
    }
    if matches!(parts[0], Linear::Candle(_)) {
        return stack_candle(parts);
    }
    same!(Q4_1, Q4_1Matrix::concat);
    same!(Q4K, KMatrix::concat);
    same!(Q4Kx8, Q4Kx8Matrix::concat);
    same!(Q6K, KMatrix::concat);
    same!(Q6Kx8, Q6Kx8Matrix::concat);
    Err(parts)
}

/// `w` on `device` (moved there once if it was read elsewhere).
fn on_device(w: QTensor, device: &Device) -> Result<QTensor> {
    if w.device().same_device(device) {
        return Ok(w);
    }
    let storage = QStorage::from_data(w.data()?, device, w.dtype())?;
    Ok(QTensor::new(storage, w.shape().clone())?)
}

/// Quantized matrices of one GGML type and input width stacked into one, on their own device:
/// their GGML blocks are rows, so the stacked matrix is their bytes concatenated. `None` when
/// the types or widths differ.
fn concat_rows(qs: &[&QTensor]) -> Result<Option<QTensor>> {
    let first = qs[0];
    let cols = |q: &QTensor| match q.shape().dims() {
        &[_, c] => Some(c),
        _ => None,
    };
    if cols(first).is_none() || qs.iter().any(|q| q.dtype() != first.dtype() || cols(q) != cols(first)) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    for q in qs {
        bytes.extend_from_slice(&q.data()?);
    }
    let rows: usize = qs.iter().map(|q| q.shape().dims()[0]).sum();
    let storage = QStorage::from_data(Cow::Owned(bytes), &first.device(), first.dtype())?;
    Ok(Some(QTensor::new(storage, (rows, cols(first).expect("checked above")))?))
}

/// Stack candle-side quantized matrices (one activation quantization and one kernel instead of
/// one each per part), or give the parts back.
fn stack_candle(parts: Vec<Linear>) -> std::result::Result<Linear, Vec<Linear>> {
    let qs: Option<Vec<&QTensor>> = parts
        .iter()
        .map(|p| match p {
            Linear::Candle(QMatMul::QTensor(q)) => Some(q.as_ref()),
            _ => None,
        })
        .collect();
    // A failed copy only costs the fusion: the parts still work one by one.
    match qs.map(|qs| concat_rows(&qs)) {
        Some(Ok(Some(w))) => QMatMul::from_qtensor(w).map(Linear::Candle).map_err(|_| parts),
        _ => Err(parts),
    }
}

impl LinearGroup {
    /// Stack `parts` if they are all on the same one of pagemind's kernels, or all candle's of one
    /// GGML type, with the same input width.
    pub fn new(parts: Vec<Linear>) -> Self {
        let sizes: Vec<usize> = parts.iter().map(Linear::rows).collect();
        match stack(parts) {
            Ok(linear) => LinearGroup::Fused { linear, sizes },
            Err(parts) => LinearGroup::Separate(parts),
        }
    }

    /// A group from weights read on the CPU. On another device, parts of one type are stacked
    /// before they are moved there (one copy to the device, none back).
    pub fn load(parts: Vec<QTensor>, device: &Device) -> Result<Self> {
        if !device.is_cpu() {
            if let Some(w) = concat_rows(&parts.iter().collect::<Vec<_>>())? {
                let sizes = parts.iter().map(|q| q.shape().dims()[0]).collect();
                return Ok(LinearGroup::Fused { linear: Linear::new(w, device)?, sizes });
            }
        }
        let parts = parts.into_iter().map(|w| Linear::new(w, device)).collect::<Result<Vec<_>>>()?;
        Ok(Self::new(parts))
    }

    /// Each part's output, in the order given to [`LinearGroup::new`].
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        self.forward_biased(x, None)
    }

    /// [`LinearGroup::forward`] plus a bias: the parts' biases concatenated (one addition when
    /// the group is fused).
    pub fn forward_biased(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Vec<Tensor>> {
        match self {
            LinearGroup::Separate(parts) => {
                let mut start = 0;
                let mut out = Vec::with_capacity(parts.len());
                for p in parts {
                    let mut y = p.forward(x)?;
                    if let Some(b) = bias {
                        let n = y.dim(D::Minus1)?;
                        y = y.broadcast_add(&b.narrow(0, start, n)?)?;
                        start += n;
                    }
                    out.push(y);
                }
                Ok(out)
            }
            LinearGroup::Fused { linear, .. } => {
                let y = linear.forward(x)?;
                self.split(y, bias)
            }
        }
    }

    /// The fused product alone (no bias, not split): `[.., sum of the parts' widths]`, for
    /// kernels that take it whole; `None` (nothing computed) when the parts run separately.
    pub fn forward_fused(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match self {
            LinearGroup::Fused { linear, .. } => Ok(Some(linear.forward(x)?)),
            LinearGroup::Separate(_) => Ok(None),
        }
    }

    /// The parts of a fused product `y` ([`LinearGroup::forward_fused`]), `bias` added first.
    pub fn split(&self, y: Tensor, bias: Option<&Tensor>) -> Result<Vec<Tensor>> {
        let LinearGroup::Fused { sizes, .. } = self else {
            return Err(crate::Error::Invalid("split: the parts were not fused".into()));
        };
        let y = match bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for &n in sizes {
            out.push(y.narrow(D::Minus1, start, n)?.contiguous()?);
            start += n;
        }
        Ok(out)
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

    /// `[1, tokens, cols]` activations.
    fn input(tokens: usize, cols: usize) -> Tensor {
        let x: Vec<f32> = (0..tokens * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        Tensor::from_vec(x, (1, tokens, cols), &Device::Cpu).unwrap()
    }

    /// Each layer's output on its own, flattened.
    fn outputs(layers: &[&Linear], x: &Tensor) -> Vec<Vec<f32>> {
        layers.iter().map(|l| l.forward(x).unwrap().flatten_all().unwrap().to_vec1().unwrap()).collect()
    }

    #[test]
    fn a_fused_group_gives_each_part_its_own_output() {
        let (a, b, c) = (q4_1(64, 96, 3), q4_1(32, 96, 5), q4_1(32, 96, 7));
        let x = input(3, 96);
        let want = outputs(&[&a, &b, &c], &x);
        let group = LinearGroup::new(vec![a, b, c]);
        assert!(matches!(&group, LinearGroup::Fused { sizes, .. } if sizes == &[64, 32, 32]));
        let got = group.forward(&x).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.dims()[..2], [1, 3]);
            assert_eq!(&g.flatten_all().unwrap().to_vec1::<f32>().unwrap(), w);
        }
        // A bias over the stacked rows lands on each part's own columns.
        let bias = Tensor::arange(0f32, 128., &Device::Cpu).unwrap();
        for (i, g) in group.forward_biased(&x, Some(&bias)).unwrap().iter().enumerate() {
            let plain = got[i].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let start = [0, 64, 96][i];
            let n = g.dim(2).unwrap();
            for (j, (b, p)) in g.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().zip(&plain).enumerate() {
                assert_eq!(*b, p + (start + j % n) as f32);
            }
        }
        // Different input widths cannot share a product.
        assert!(matches!(LinearGroup::new(vec![q4_1(32, 96, 1), q4_1(32, 64, 1)]), LinearGroup::Separate(_)));
    }

    fn candle(rows: usize, cols: usize, dtype: GgmlDType, seed: usize) -> Linear {
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * seed) as f32 * 0.013).sin() * 0.1).collect();
        let w = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
        Linear::Candle(QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap())
    }

    #[test]
    fn candle_parts_of_one_type_stack_into_one_product() {
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let (a, b, c) = (candle(64, 256, dtype, 3), candle(32, 256, dtype, 5), candle(32, 256, dtype, 7));
            let x = input(2, 256);
            let want = outputs(&[&a, &b, &c], &x);
            let group = LinearGroup::new(vec![a, b, c]);
            assert!(matches!(&group, LinearGroup::Fused { sizes, .. } if sizes == &[64, 32, 32]), "{dtype:?}");
            for (g, w) in group.forward(&x).unwrap().iter().zip(&want) {
                assert_eq!(g.dims(), [1, 2, w.len() / 2]);
                assert_eq!(&g.flatten_all().unwrap().to_vec1::<f32>().unwrap(), w, "{dtype:?}");
            }
        }
        // Mixed types (Q4_K_M's Q6_K value projections) stay separate; a bias is split between them.
        let (a, b) = (candle(32, 256, GgmlDType::Q4K, 1), candle(16, 256, GgmlDType::Q6K, 1));
        let x = input(1, 256);
        let bias = Tensor::arange(0f32, 48., &Device::Cpu).unwrap();
        let want = [a.forward(&x).unwrap(), b.forward(&x).unwrap()];
        let mixed = LinearGroup::new(vec![a, b]);
        assert!(matches!(mixed, LinearGroup::Separate(_)));
        for (i, (g, w)) in mixed.forward_biased(&x, Some(&bias)).unwrap().iter().zip(&want).enumerate() {
            let w = w.broadcast_add(&bias.narrow(0, i * 32, 32 - 16 * i).unwrap()).unwrap();
            assert_eq!(
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                w.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
    }
}
