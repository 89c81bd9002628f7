/*! The token-embedding table, kept quantized on the CPU.

Dequantizing the whole table at load costs `vocab x n_embd x 4` bytes (930 MB for Qwen2.5-1.5B's
151,936 x 1,536), more than the quantized model itself. [`Embedding`] keeps the GGUF blocks and
dequantizes only the rows a forward pass looks up, with candle's own block decoders. On a GPU
the table is dequantized once (lookups there are a gather on device memory).
*/

use crate::Result;
use candle_core::quantized::k_quants::*;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::{bf16, f16};

/// Token id -> embedding row.
pub enum Embedding {
    /// GGUF blocks of a `[vocab, n_embd]` table, dequantized row by row.
    Quantized { bytes: Vec<u8>, dtype: GgmlDType, vocab: usize, n_embd: usize },
    /// A dequantized `[vocab, n_embd]` f32 table.
    Dense(Tensor),
}

fn rows<T: GgmlType>(bytes: &[u8], ids: &[u32], n_embd: usize, out: &mut [f32]) {
    let size = std::mem::size_of::<T>();
    let per_row = n_embd / T::BLCK_SIZE;
    for (i, &id) in ids.iter().enumerate() {
        let start = id as usize * per_row * size;
        let row = &bytes[start..start + per_row * size];
        // Copy into aligned blocks: the byte buffer carries no alignment guarantee.
        let mut blocks: Vec<T> = Vec::with_capacity(per_row);
        // SAFETY: GGML block types are plain old data (repr(C), valid for any bit pattern);
        // exactly per_row blocks are initialised from `row` before set_len.
        unsafe {
            std::ptr::copy_nonoverlapping(row.as_ptr(), blocks.as_mut_ptr() as *mut u8, row.len());
            blocks.set_len(per_row);
        }
        T::to_float(&blocks, &mut out[i * n_embd..(i + 1) * n_embd]);
    }
}

impl Embedding {
    pub fn new(q: &QTensor, device: &Device) -> Result<Self> {
        let dims = q.shape().dims().to_vec();
        if device.is_cpu() && dims.len() == 2 {
            let (vocab, n_embd) = (dims[0], dims[1]);
            let bytes = q.data()?.into_owned();
            if n_embd.is_multiple_of(q.dtype().block_size()) {
                return Ok(Embedding::Quantized { bytes, dtype: q.dtype(), vocab, n_embd });
            }
        }
        Ok(Embedding::Dense(q.dequantize(device)?))
    }

    /// `[ids.len(), n_embd]` f32 rows. Ids must be below the vocabulary size.
    pub fn lookup(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Embedding::Dense(t) => {
                let ids = Tensor::new(ids, device)?;
                Ok(t.index_select(&ids, 0)?)
            }
            Embedding::Quantized { bytes, dtype, vocab, n_embd } => {
                if let Some(&bad) = ids.iter().find(|&&i| i as usize >= *vocab) {
                    return Err(crate::Error::Invalid(format!("token id {bad} is outside the vocabulary ({vocab})")));
                }
                let mut out = vec![0f32; ids.len() * n_embd];
                let b = bytes.as_slice();
                let n = *n_embd;
                match dtype {
                    GgmlDType::F32 => rows::<f32>(b, ids, n, &mut out),
                    GgmlDType::F16 => rows::<f16>(b, ids, n, &mut out),
                    GgmlDType::BF16 => rows::<bf16>(b, ids, n, &mut out),
                    GgmlDType::Q4_0 => rows::<BlockQ4_0>(b, ids, n, &mut out),
                    GgmlDType::Q4_1 => rows::<BlockQ4_1>(b, ids, n, &mut out),
                    GgmlDType::Q5_0 => rows::<BlockQ5_0>(b, ids, n, &mut out),
                    GgmlDType::Q5_1 => rows::<BlockQ5_1>(b, ids, n, &mut out),
                    GgmlDType::Q8_0 => rows::<BlockQ8_0>(b, ids, n, &mut out),
                    GgmlDType::Q8_1 => rows::<BlockQ8_1>(b, ids, n, &mut out),
                    GgmlDType::Q2K => rows::<BlockQ2K>(b, ids, n, &mut out),
                    GgmlDType::Q3K => rows::<BlockQ3K>(b, ids, n, &mut out),
                    GgmlDType::Q4K => rows::<BlockQ4K>(b, ids, n, &mut out),
                    GgmlDType::Q5K => rows::<BlockQ5K>(b, ids, n, &mut out),
                    GgmlDType::Q6K => rows::<BlockQ6K>(b, ids, n, &mut out),
                    GgmlDType::Q8K => rows::<BlockQ8K>(b, ids, n, &mut out),
                }
                Ok(Tensor::from_vec(out, (ids.len(), n), device)?)
            }
        }
    }
}
