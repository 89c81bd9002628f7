/*! Matrix products on k-quant weights (Q4_K, Q6_K) with Q8_K activations.

[`KMatrix`] holds a `[rows, cols]` matrix as GGML blocks in the file's own layout (copied once
into an aligned vector at load; no repacked second copy). [`KBlock`] names each block type's
dot product. [`matmul`] quantizes each token to Q8_K once (tokens split across the pool), then
splits the output rows across candle's CPU worker pool: each worker meets every token with one
weight row while that row is in L1, so decode (one token) streams the weights once and prefill
reads them once per batch. [`matmul_x8`] does the same on eight-row interleaved Q4_K
and Q6_K ([`Q4Kx8Matrix`], [`Q6Kx8Matrix`]), the AVX2 and AVX-512 VNNI path, with tokens in tiles
of `TOKEN_TILE`.
*/

use super::pool::{parallel, SharedMut as Out};
use super::q4_k::BlockQ4K;
use super::q4_k_x8::BlockQ4Kx8;
use super::q6_k::BlockQ6K;
use super::q6_k_x8::BlockQ6Kx8;
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

impl<B: Copy> KMatrix<B> {
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

    /// All blocks, row-major.
    pub fn blocks(&self) -> &[B] {
        &self.blocks
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

/// Each token of `x` (`[tokens, cols]`) as Q8_K blocks, tokens split across the pool.
fn quantize_tokens(x: &[f32], cols: usize) -> Vec<BlockQ8K> {
    assert!(x.len().is_multiple_of(cols), "matmul: activation shape");
    let (tokens, nb) = (x.len() / cols, cols / QK_K);
    let mut y = vec![BlockQ8K::ZERO; tokens * nb];
    let y_out = Out(y.as_mut_ptr());
    parallel(tokens, tokens * nb >= 64, |range| {
        for t in range {
            // SAFETY: token t's blocks are written by this worker only; y outlives the call.
            let q = unsafe { std::slice::from_raw_parts_mut(y_out.at(t * nb), nb) };
            quantize_q8_k(&x[t * cols..(t + 1) * cols], q);
        }
    });
    y
}

/// `x` is `[tokens, w.cols]` row-major; returns `[tokens, w.rows]`.
pub fn matmul<B: KBlock>(w: &KMatrix<B>, x: &[f32]) -> Vec<f32> {
    let (rows, cols) = (w.rows, w.cols);
    let y = quantize_tokens(x, cols);
    let nb = cols / QK_K;
    let tokens = y.len() / nb;
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

/// Tokens per tile of [`matmul_x8`]'s outer loop: their activations stay in L2 while a worker
/// walks its row groups.
const TOKEN_TILE: usize = 32;

/// A block of eight interleaved rows ([`BlockQ4Kx8`], [`BlockQ6Kx8`]).
pub trait X8Block: Copy + Send + Sync + 'static {
    /// The GGML block type it interleaves.
    type Row: Copy;
    /// Interleave block `b` of eight rows.
    fn interleave(rows: [&Self::Row; 8]) -> Self;
    /// One group's eight rows times `T` tokens (`T` in 1..=4): `out[t][r]`.
    fn dot_x8<const T: usize>(g: &[Self], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T];
}

impl X8Block for BlockQ4Kx8 {
    type Row = BlockQ4K;
    fn interleave(rows: [&BlockQ4K; 8]) -> Self {
        BlockQ4Kx8::interleave(rows)
    }
    fn dot_x8<const T: usize>(g: &[Self], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T] {
        super::q4_k_x8::dot_x8(g, ys)
    }
}

impl X8Block for BlockQ6Kx8 {
    type Row = BlockQ6K;
    fn interleave(rows: [&BlockQ6K; 8]) -> Self {
        BlockQ6Kx8::interleave(rows)
    }
    fn dot_x8<const T: usize>(g: &[Self], ys: [&[BlockQ8K]; T]) -> [[f32; 8]; T] {
        super::q6_k_x8::dot_x8(g, ys)
    }
}

/// A `[rows, cols]` matrix, `rows` a multiple of 8, as groups of eight interleaved rows: a
/// [`KMatrix`] whose "rows" are the groups.
#[derive(Clone, Debug, PartialEq)]
pub struct X8Matrix<B> {
    pub rows: usize,
    pub cols: usize,
    groups: KMatrix<B>,
}

impl<B: X8Block> X8Matrix<B> {
    /// Interleave row-major GGML blocks (`None` unless `rows` is a multiple of 8 and the block
    /// count matches).
    pub fn from_blocks(blocks: &[B::Row], rows: usize, cols: usize) -> Option<Self> {
        let nb = cols / QK_K;
        if !rows.is_multiple_of(8) || !cols.is_multiple_of(QK_K) || blocks.len() != rows * nb {
            return None;
        }
        let mut out = Vec::with_capacity(rows / 8 * nb);
        for g in 0..rows / 8 {
            for b in 0..nb {
                out.push(B::interleave(std::array::from_fn(|r| &blocks[(8 * g + r) * nb + b])));
            }
        }
        Some(Self { rows, cols, groups: KMatrix::from_blocks(out, rows / 8, cols)? })
    }

    /// Group `g` (rows `8g..8g+8`): its blocks in column order.
    pub fn group(&self, g: usize) -> &[B] {
        self.groups.row(g)
    }

    /// Stack matrices with the same `cols`, in order.
    pub fn concat(parts: Vec<X8Matrix<B>>) -> Option<Self> {
        let rows = parts.iter().map(|p| p.rows).sum();
        let groups = KMatrix::concat(parts.into_iter().map(|p| p.groups).collect())?;
        Some(Self { rows, cols: groups.cols, groups })
    }
}

/// Interleaved Q4_K, the AVX2 and AVX-512 VNNI path ([`super::q4_k_x8`]).
pub type Q4Kx8Matrix = X8Matrix<BlockQ4Kx8>;
/// Interleaved Q6_K, the AVX2 and AVX-512 VNNI path ([`super::q6_k_x8`]).
pub type Q6Kx8Matrix = X8Matrix<BlockQ6Kx8>;

/// [`matmul`] for eight-row interleaved matrices: workers take row groups; each group meets the
/// tokens four at a time.
pub fn matmul_x8<B: X8Block>(w: &X8Matrix<B>, x: &[f32]) -> Vec<f32> {
    let (rows, cols) = (w.rows, w.cols);
    let y = quantize_tokens(x, cols);
    let nb = cols / QK_K;
    let tokens = y.len() / nb;
    let mut out = vec![0f32; rows * tokens];
    let o = Out(out.as_mut_ptr());
    let y = &y;
    let yt = |t: usize| &y[t * nb..(t + 1) * nb];
    let groups = rows / 8;
    parallel(groups, groups * tokens * nb >= PARALLEL_MIN_BLOCKS / 8, |range| {
        let store = |g: usize, t: usize, v: &[f32; 8]| {
            for (i, x) in v.iter().enumerate() {
                // SAFETY: group g's rows are written only by the worker owning it.
                unsafe { *o.at(t * rows + 8 * g + i) = *x };
            }
        };
        for tile in (0..tokens).step_by(TOKEN_TILE) {
            let end = (tile + TOKEN_TILE).min(tokens);
            for g in range.clone() {
                let mut t = tile;
                // Group g times tokens t + k for the listed k, stored.
                macro_rules! tile {
                    ($($k:literal),+) => {
                        B::dot_x8(w.group(g), [$(yt(t + $k)),+])
                            .iter()
                            .enumerate()
                            .for_each(|(i, v)| store(g, t + i, v))
                    };
                }
                while t + 4 <= end {
                    tile!(0, 1, 2, 3);
                    t += 4;
                }
                match end - t {
                    3 => tile!(0, 1, 2),
                    2 => tile!(0, 1),
                    1 => tile!(0),
                    _ => {}
                }
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
        for (rows, cols, tokens) in [(3, 256, 1), (136, 1536, 1), (64, 512, 7), (9, 768, 33), (16, 512, 38)] {
            let w = KMatrix::from_blocks(blocks(rows * cols / QK_K, &mut r), rows, cols).unwrap();
            let x: Vec<f32> = (0..tokens * cols).map(|_| (r() % 2001) as f32 / 1000.0 - 1.0).collect();
            let want = matmul_reference(&w, &x);
            let got = matmul(&w, &x);
            assert_eq!(got.len(), rows * tokens);
            for (i, (g, q)) in got.iter().zip(&want).enumerate() {
                assert!((g - q).abs() <= 1e-4 * (1.0 + q.abs()), "{rows}x{cols}x{tokens} [{i}]: {g} vs {q}");
            }
            if rows % 8 == 0 {
                let x8 = Q4Kx8Matrix::from_blocks(&w.blocks, rows, cols).unwrap();
                let got = matmul_x8(&x8, &x);
                for (i, (g, q)) in got.iter().zip(&want).enumerate() {
                    assert!((g - q).abs() <= 1e-4 * (1.0 + q.abs()), "x8 {rows}x{cols}x{tokens} [{i}]: {g} vs {q}");
                }
                // Q6_K: the same shapes.
                let w6 = super::super::q6_k::tests::blocks(rows * cols / QK_K, &mut r);
                let want = matmul_reference(&KMatrix::from_blocks(w6.clone(), rows, cols).unwrap(), &x);
                let plain = matmul(&KMatrix::from_blocks(w6.clone(), rows, cols).unwrap(), &x);
                let got = matmul_x8(&Q6Kx8Matrix::from_blocks(&w6, rows, cols).unwrap(), &x);
                for (i, q) in want.iter().enumerate() {
                    let ok = |g: f32| (g - q).abs() <= 1e-4 * (1.0 + q.abs());
                    assert!(
                        ok(got[i]) && ok(plain[i]),
                        "q6_k {rows}x{cols}x{tokens} [{i}]: {} {} vs {q}",
                        got[i],
                        plain[i]
                    );
                }
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
