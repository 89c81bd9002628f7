/*! Attention for one new token over the KV cache in place (`decode_attention.cu`). */
use super::Source;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::Result;
use candle_core::{CudaStorage, CustomOp3, Layout, Shape, Tensor};

static SRC: Source =
    Source::new("pagemind_decode_attention", "decode_attention.cu", include_str!("decode_attention.cu"));
const WARPS: u32 = 4;

/// Keys per block when the context is short; longer contexts get at most `MAX_SPLITS` blocks per
/// head (enough to fill a GPU with a handful of heads).
const KEYS_PER_BLOCK: usize = 64;
const MAX_SPLITS: usize = 256;

/// `(chunk, n_split)` for `len` keys: every split gets at least one key.
fn split(len: usize) -> (usize, usize) {
    let chunk = KEYS_PER_BLOCK.max(len.div_ceil(MAX_SPLITS));
    (chunk, len.div_ceil(chunk))
}

struct DecodeAttention {
    scale: f32,
}

impl CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "pagemind-decode-attention"
    }

    super::cuda_only_cpu_fwd3!("pagemind-decode-attention is a CUDA kernel (the CPU has runtime::attention::decode)");

    fn cuda_fwd(
        &self,
        qs: &CudaStorage,
        ql: &Layout,
        ks: &CudaStorage,
        kl: &Layout,
        vs: &CudaStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (_, n_head, _, d) = ql.shape().dims4()?;
        let (_, n_kv, len, _) = kl.shape().dims4()?;
        let kv_stride = kl.stride()[1];
        let (Some((q0, _)), true) = (ql.contiguous_offsets(), kl.stride() == vl.stride()) else {
            candle_core::bail!("decode attention: q must be contiguous and k, v share one layout")
        };
        let dev = qs.device().clone();
        let q = qs.as_cuda_slice::<f32>()?.slice(q0..);
        let k = ks.as_cuda_slice::<f32>()?.slice(kl.start_offset()..);
        let v = vs.as_cuda_slice::<f32>()?.slice(vl.start_offset()..);
        let ptx = SRC.ptx()?;
        let part_fn = dev.get_or_load_custom_func("pm_decode_attention_part_f32", SRC.module, ptx)?;
        let merge_fn = dev.get_or_load_custom_func("pm_decode_attention_merge_f32", SRC.module, ptx)?;
        let (chunk, n_split) = split(len);
        // SAFETY: the part kernel writes every partial, the merge kernel every output.
        let part = unsafe { dev.alloc::<f32>(n_head * n_split * (d + 2))? };
        let out = unsafe { dev.alloc::<f32>(n_head * d)? };
        let cfg = LaunchConfig {
            grid_dim: (n_head as u32, n_split as u32, 1),
            block_dim: (32 * WARPS, 1, 1),
            shared_mem_bytes: WARPS * d as u32 * 4,
        };
        let mut b = part_fn.builder();
        b.arg(&q);
        b.arg(&k);
        b.arg(&v);
        b.arg(&part);
        candle_core::builder_arg!(
            b,
            (n_head / n_kv) as i32,
            len as i32,
            kv_stride as i32,
            d as i32,
            self.scale,
            chunk as i32
        );
        // SAFETY: the arguments match the kernel's signature; sizes are checked by the caller.
        unsafe { b.launch(cfg) }.w()?;
        let cfg = LaunchConfig { grid_dim: (n_head as u32, 1, 1), block_dim: (d as u32, 1, 1), shared_mem_bytes: 0 };
        let mut b = merge_fn.builder();
        b.arg(&part);
        b.arg(&out);
        candle_core::builder_arg!(b, n_split as i32, d as i32);
        // SAFETY: as above.
        unsafe { b.launch(cfg) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from((1, 1, n_head * d))))
    }
}

/// `q`: `[1, n_head, 1, d]`; `k`, `v`: `[1, n_kv, len, d]` views of the cache (last dim
/// contiguous). Returns `[1, 1, n_head * d]`, or `None` where the kernel does not apply (not
/// f32 CUDA tensors, `d` not a multiple of 32 up to 256, more than one query position).
pub fn decode_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Option<Tensor>> {
    let (_, n_head, t, d) = q.dims4()?;
    let (_, n_kv, len, dk) = k.dims4()?;
    let applies = q.device().is_cuda()
        && [q.dtype(), k.dtype(), v.dtype()].iter().all(|t| *t == candle_core::DType::F32)
        && t == 1
        && dk == d
        && d % 32 == 0
        && d <= 256
        && len > 0
        && n_kv > 0
        && n_head % n_kv == 0
        && v.dims() == k.dims()
        && k.stride()[3] == 1
        && k.stride()[2] == d
        && k.stride() == v.stride();
    if !applies {
        return Ok(None);
    }
    q.contiguous()?.apply_op3_no_bwd(k, v, &DecodeAttention { scale }).map(Some)
}

#[cfg(test)]
mod tests {
    use super::super::random;
    use super::*;
    use candle_core::{Device, Tensor};

    /// Scalar reference in f64: softmax(q k^T * scale) v per head, over the first `len` keys.
    fn reference(q: &[f32], k: &[f32], v: &[f32], c: &Case, scale: f32) -> Vec<f32> {
        let Case { n_head, n_kv, d, cap, len, .. } = *c;
        let mut out = vec![0f32; n_head * d];
        for h in 0..n_head {
            let g = h / (n_head / n_kv);
            let scores: Vec<f64> = (0..len)
                .map(|p| {
                    (0..d).map(|i| q[h * d + i] as f64 * k[(g * cap + p) * d + i] as f64).sum::<f64>() * scale as f64
                })
                .collect();
            let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
            let sum: f64 = w.iter().sum();
            for i in 0..d {
                out[h * d + i] = ((0..len).map(|p| w[p] * v[(g * cap + p) * d + i] as f64).sum::<f64>() / sum) as f32;
            }
        }
        out
    }

    #[derive(Clone, Copy)]
    struct Case {
        n_head: usize,
        n_kv: usize,
        d: usize,
        cap: usize,
        len: usize,
        /// Query amplitude (large: scores that overflow a plain `exp`).
        amp: f32,
    }

    #[test]
    fn splits_cover_every_key_and_none_is_empty() {
        for len in [1, 63, 64, 65, 2000, 16_384, 16_385, 131_072] {
            let (chunk, n) = split(len);
            assert!(n <= MAX_SPLITS && chunk * n >= len && chunk * (n - 1) < len, "len {len}: {chunk} x {n}");
        }
    }

    #[test]
    fn decode_attention_matches_the_scalar_reference() {
        let Ok(dev) = Device::new_cuda(0) else {
            eprintln!("skipped: no CUDA device");
            return;
        };
        // SmolLM2's and Qwen2.5's head shapes; one key, fewer keys than warps, one and several
        // splits (64 keys each, up to 256), and scores large enough to overflow a plain `exp`.
        let case = |n_head, n_kv, d, cap, len, amp| Case { n_head, n_kv, d, cap, len, amp };
        let cases = [
            case(9, 3, 64, 64, 1, 1.0),
            case(9, 3, 64, 64, 3, 1.0),
            case(9, 3, 64, 256, 65, 1.0),
            case(12, 2, 128, 2048, 2000, 1.0),
            case(12, 2, 128, 512, 511, 60.0),
            case(4, 4, 256, 128, 100, 1.0),
            case(2, 1, 32, 20_000, 17_000, 1.0),
        ];
        for (i, c) in cases.iter().enumerate() {
            let Case { n_head, n_kv, d, cap, len, amp } = *c;
            let q = random(n_head * d, 3 * i as u64 + 1, amp);
            let k = random(n_kv * cap * d, 3 * i as u64 + 2, 1.0);
            let v = random(n_kv * cap * d, 3 * i as u64 + 3, 1.0);
            let scale = 1.0 / (d as f32).sqrt();
            let want = reference(&q, &k, &v, c, scale);
            let qt = Tensor::from_vec(q, (1, n_head, 1, d), &dev).unwrap();
            let kt = Tensor::from_vec(k, (1, n_kv, cap, d), &dev).unwrap().narrow(2, 0, len).unwrap();
            let vt = Tensor::from_vec(v, (1, n_kv, cap, d), &dev).unwrap().narrow(2, 0, len).unwrap();
            let got = decode_attention(&qt, &kt, &vt, scale).unwrap().expect("the kernel applies");
            assert_eq!(got.dims(), [1, 1, n_head * d]);
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "case {i} (n_head {n_head}, n_kv {n_kv}, d {d}, len {len}): off by {worst}");
        }
        // Shapes the kernel does not take fall back to candle (None), not an error.
        let q = Tensor::zeros((1, 2, 1, 48), candle_core::DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 1, 4, 48), candle_core::DType::F32, &dev).unwrap();
        assert!(decode_attention(&q, &k, &k, 1.0).unwrap().is_none());
    }
}
