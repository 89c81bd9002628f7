/*! Matrix products on k-quant weights (Q4_K, Q6_K) with Q8_K activations.

[`KMatrix`] holds a `[rows, cols]` matrix as GGML blocks in the file's own layout (copied once
into an aligned vector at load; no repacked second copy). [`KBlock`] names each block type's
dot product. [`matmul`] quantizes each token to Q8_K once (tokens split across the pool), then
splits the output rows across candle's CPU worker pool: each worker meets every token with one
weight row while that row is in L1, so decode (one token) streams the weights once and prefill
reads them once per batch.
*/

use super::pool::{parallel, SharedMut as Out};
use super::q4_k::BlockQ4K;
use super::q6_k::BlockQ6K;
use super::q8_k::{quantize_q8_k, BlockQ8K, QK_K};

/// Below this many block products, the calling thread does the work alone.
const PARALLEL_MIN_BLOCKS: usize = 256;

/// A k-quant block type: its dot product with Q8_K activations.
pub trait KBlock: Copy + Send + Sync + 'static {
    /// The fastest dot product of one row and one token this CPU supports.
    fn dot(x: &[Self], y: &[BlockQ8K]) -> f32;
    /// The scalar reference.
    fn dot_scalar(x: &[Self], y: &[BlockQ8K]) -> f32;
}

impl KBlock for BlockQ4K {
    fn dot(x: &[Self], y: &[BlockQ8K]) -> f32 {
        super::q4_k::dot(x, y)
    }
    fn dot_scalar(x: &[Self], y: &[BlockQ8K]) -> f32 {
        super::q4_k::dot_scalar(x, y)
    }
}

impl KBlock for BlockQ6K {
    fn dot(x: &[Self], y: &[BlockQ8K]) -> f32 {
        super::q6_k::dot(x, y)
    }
    fn dot_scalar(x: &[Self], y: &[BlockQ8K]) -> f32 {
        super::q6_k::dot_scalar(x, y)
    }
}

/// A `[rows, cols]` matrix of k-quant blocks, row-major (GGML's layout).
#[derive(Clone, Debug, PartialEq)]
pub struct KMatrix<B> {
    pub rows: usize,
    pub cols: usize,
    blocks: Vec<B>,
}

impl<B: KBlock> KMatrix<B> {
    /// From a GGUF tensor's raw bytes (`None` unless they are exactly `rows * cols / 256`
    /// blocks and `cols` is a multiple of 256).
    pub fn from_bytes(bytes: &[u8], rows: usize, cols: usize) -> Option<Self> {
        let size = std::mem::size_of::<B>();
        let n = rows * cols / QK_K;
        if !cols.is_multiple_of(QK_K) || bytes.len() != n * size {
            return None;
        }
        let mut blocks: Vec<B> = Vec::with_capacity(n);
        // SAFETY: B is a repr(C) GGML block of plain integers and f16s (valid for any bits);
        // exactly n blocks are initialised from `bytes` (checked length) before set_len.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), blocks.as_mut_ptr() as *mut u8, bytes.len());
            blocks.set_len(n);
        }
        Some(Self { rows, cols, blocks })
    }

    /// From blocks, `rows * cols / 256` of them in row-major order.
    pub fn from_blocks(blocks: Vec<B>, rows: usize, cols: usize) -> Option<Self> {
        (cols.is_multiple_of(QK_K) && blocks.len() == rows * cols / QK_K).then_some(Self { rows, cols, blocks })
    }

    /// Row `r`'s blocks.
    pub fn row(&self, r: usize) -> &[B] {
        let nb = self.cols / QK_K;
        &self.blocks[r * nb..(r + 1) * nb]
    }

    /// Stack matrices with the same `cols`, in order.
    pub fn concat(parts: Vec<KMatrix<B>>) -> Option<Self> {
        let cols = parts.first()?.cols;
        let mut out = Self { rows: 0, cols, blocks: Vec::new() };
        for p in parts {
            if p.cols != cols {
                return None;
            }
            out.rows += p.rows;
            out.blocks.extend(p.blocks);
        }
        Some(out)
    }
}

/// `x` is `[tokens, w.cols]` row-major; returns `[tokens, w.rows]`.
pub fn matmul<B: KBlock>(w: &KMatrix<B>, x: &[f32]) -> Vec<f32> {
    let (rows, cols) = (w.rows, w.cols);
    assert!(x.len().is_multiple_of(cols), "matmul: activation shape");
    let tokens = x.len() / cols;
    let nb = cols / QK_K;
    let mut y = vec![BlockQ8K::ZERO; tokens * nb];
    let y_out = Out(y.as_mut_ptr());
    parallel(tokens, tokens * nb >= 64, |range| {
        for t in range {
            // SAFETY: token t's blocks are written by this worker only; y outlives the call.
            let q = unsafe { std::slice::from_raw_parts_mut(y_out.at(t * nb), nb) };
            quantize_q8_k(&x[t * cols..(t + 1) * cols], q);
        }
    });
    let mut out = vec![0f32; rows * tokens];
    let o = Out(out.as_mut_ptr());
    let y = &y;
    parallel(rows, rows * tokens * nb >= PARALLEL_MIN_BLOCKS, |range| {
        for r in range {
            let row = w.row(r);
            for t in 0..tokens {
                // SAFETY: row r is written only by the worker owning it.
                unsafe { *o.at(t * rows + r) = B::dot(row, &y[t * nb..(t + 1) * nb]) };
            }
        }
    });
    out
}

/// The same product with the scalar reference kernel, one thread: for tests.
pub fn matmul_reference<B: KBlock>(w: &KMatrix<B>, x: &[f32]) -> Vec<f32> {
    let tokens = x.len() / w.cols;
    let mut out = vec![0f32; w.rows * tokens];
    for t in 0..tokens {
        let y = super::q8_k::quantize(&x[t * w.cols..(t + 1) * w.cols]);
        for r in 0..w.rows {
            out[t * w.rows + r] = B::dot_scalar(w.row(r), &y);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::q4_k::tests::{blocks, rng};
    use super::*;

    #[test]
    fn matches_the_reference_for_decode_and_prefill_shapes() {
        let mut r = rng(5);
        for (rows, cols, tokens) in [(3, 256, 1), (130, 1536, 1), (65, 512, 7), (9, 768, 33)] {
            let w = KMatrix::from_blocks(blocks(rows * cols / QK_K, &mut r), rows, cols).unwrap();
            let x: Vec<f32> = (0..tokens * cols).map(|_| (r() % 2001) as f32 / 1000.0 - 1.0).collect();
            let want = matmul_reference(&w, &x);
            let got = matmul(&w, &x);
            assert_eq!(got.len(), rows * tokens);
            for (i, (g, q)) in got.iter().zip(&want).enumerate() {
                assert!((g - q).abs() <= 1e-4 * (1.0 + q.abs()), "{rows}x{cols}x{tokens} [{i}]: {g} vs {q}");
            }
        }
    }

    #[test]
    fn bytes_must_be_whole_rows_of_blocks() {
        let mut r = rng(9);
        let b = blocks(4, &mut r);
        // SAFETY: viewing initialised plain-old-data blocks as bytes.
        let bytes = unsafe { std::slice::from_raw_parts(b.as_ptr() as *const u8, 4 * 144) };
        let m = KMatrix::<BlockQ4K>::from_bytes(bytes, 2, 512).unwrap();
        assert_eq!(m.row(1), &b[2..4]);
        assert!(KMatrix::<BlockQ4K>::from_bytes(&bytes[1..], 2, 512).is_none(), "short");
        assert!(KMatrix::<BlockQ4K>::from_bytes(bytes, 4, 256).is_some());
        assert!(KMatrix::<BlockQ4K>::from_bytes(bytes, 8, 128).is_none(), "cols not a multiple of 256");
        let two = KMatrix::concat(vec![m.clone(), m.clone()]).unwrap();
        assert_eq!((two.rows, two.row(3)), (4, &b[2..4]));
    }
}
