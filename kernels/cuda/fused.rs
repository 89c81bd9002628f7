/*! Fused element-wise kernels around a layer's projections: [`qkv_rope`] (`qkv_rope.cu`) and
[`swiglu`] (`swiglu.cu`) take the output of a fused product (Q/K/V, gate/up) as it comes out
of the matmul and do in one launch what candle's path does in four to six; [`add_rms_norm`]
(`add_rms_norm.cu`) adds a residual and normalizes the sum in one launch for two. */

use super::Source;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};

static QKV_ROPE: Source = Source::new("pagemind_qkv_rope", "qkv_rope.cu", include_str!("qkv_rope.cu"));
static SWIGLU: Source = Source::new("pagemind_swiglu", "swiglu.cu", include_str!("swiglu.cu"));
static ADD_RMS_NORM: Source = Source::new("pagemind_add_rms_norm", "add_rms_norm.cu", include_str!("add_rms_norm.cu"));

pub use crate::qkv_rope_shape::QkvRope;

struct QkvRopeOp {
    shape: QkvRope,
    bias: Option<Tensor>,
}

fn slice_at<'a>(
    s: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, f32>> {
    let Some((start, _)) = l.contiguous_offsets() else { candle_core::bail!("{what} must be contiguous") };
    Ok(s.as_cuda_slice::<f32>()?.slice(start..))
}

impl CustomOp3 for QkvRopeOp {
    fn name(&self) -> &'static str {
        "pagemind-qkv-rope"
    }

    super::cuda_only_cpu_fwd3!("pagemind-qkv-rope is a CUDA kernel (the CPU runs candle's rope)");

    fn cuda_fwd(
        &self,
        ys: &CudaStorage,
        yl: &Layout,
        cs: &CudaStorage,
        cl: &Layout,
        ss: &CudaStorage,
        sl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let s = &self.shape;
        let (d, rows) = (s.head_dim, s.rows());
        let t = yl.shape().elem_count() / (rows * d);
        let dev = ys.device().clone();
        let y = slice_at(ys, yl, "qkv")?;
        let cos = slice_at(cs, cl, "cos")?;
        let sin = slice_at(ss, sl, "sin")?;
        let guard = self.bias.as_ref().map(|b| b.storage_and_layout());
        let bias = match &guard {
            Some((st, bl)) => match &**st {
                Storage::Cuda(bs) => Some(slice_at(bs, bl, "bias")?),
                _ => candle_core::bail!("qkv bias must be on the GPU"),
            },
            None => None,
        };
        // SAFETY: the kernel writes every element (each of the rows x t blocks its d values).
        let out = unsafe { dev.alloc::<f32>(rows * t * d)? };
        let f = dev.get_or_load_custom_func("pm_qkv_rope_f32", QKV_ROPE.module, QKV_ROPE.ptx()?)?;
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, t as u32, 1),
            block_dim: ((d / 2).min(512) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = f.builder();
        b.arg(&y);
        // Without a bias the kernel reads none; `y` stands in for the pointer.
        match &bias {
            Some(bv) => b.arg(bv),
            None => b.arg(&y),
        };
        b.arg(&cos);
        b.arg(&sin);
        b.arg(&out);
        candle_core::builder_arg!(
            b,
            t as i32,
            rows as i32,
            (s.n_head + s.n_kv) as i32,
            d as i32,
            s.pos as i32,
            s.interleaved as i32,
            bias.is_some() as i32
        );
        // SAFETY: the arguments match the kernel's signature; `qkv_rope` checked the sizes
        // (y holds t rows of `rows * d`, the tables hold `pos + t` positions, the bias `rows * d`).
        unsafe { b.launch(cfg) }.w()?;
        drop(guard);
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from((rows, t, d))))
    }
}

/// The fused Q/K/V product's output `y` (`[.., t, (n_head + 2 n_kv) * d]`, contiguous) with
/// `bias` (`[(n_head + 2 n_kv) * d]`) added and rotary embedding (`cos`, `sin`:
/// `[positions, d/2]`, contiguous) applied to the query and key heads: `[n_head + 2 n_kv, t, d]`,
/// query heads first, then key heads, then value heads, so `narrow(0, ..)` gives each part in
/// the `[heads, t, d]` layout attention and the KV cache take. `None` where the kernel does not
/// apply (not f32 CUDA tensors, odd `d`, tables too short): callers take candle's path.
pub fn qkv_rope(y: &Tensor, bias: Option<&Tensor>, cos: &Tensor, sin: &Tensor, s: &QkvRope) -> Result<Option<Tensor>> {
    let (rows, d) = (s.rows(), s.head_dim);
    let width = rows * d;
    let n = y.elem_count();
    let f32s = [Some(y), bias, Some(cos), Some(sin)].into_iter().flatten().all(|t| t.dtype() == DType::F32);
    let applies = y.device().is_cuda()
        && f32s
        && d % 2 == 0
        && d / 2 <= 512
        && width > 0
        && n % width == 0
        && n > 0
        && y.is_contiguous()
        && cos.is_contiguous()
        && sin.is_contiguous()
        && cos.dims() == sin.dims()
        && cos.dims().last() == Some(&(d / 2))
        && cos.dim(0)? >= s.pos + n / width
        && bias.is_none_or(|b| b.elem_count() == width && b.is_contiguous());
    if !applies {
        return Ok(None);
    }
    let op = QkvRopeOp { shape: *s, bias: bias.cloned() };
    y.apply_op3_no_bwd(cos, sin, &op).map(Some)
}

struct SwiGlu;

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "pagemind-swiglu"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("pagemind-swiglu is a CUDA kernel (the CPU runs candle's silu and product)")
    }

    fn cuda_fwd(&self, gs: &CudaStorage, gl: &Layout) -> Result<(CudaStorage, Shape)> {
        let dims = gl.dims();
        let ff = dims[dims.len() - 1] / 2;
        let rows = gl.shape().elem_count() / (2 * ff);
        let dev = gs.device().clone();
        let gu = slice_at(gs, gl, "gate/up")?;
        // SAFETY: the grid-stride loop writes every element.
        let out = unsafe { dev.alloc::<f32>(rows * ff)? };
        let f = dev.get_or_load_custom_func("pm_swiglu_f32", SWIGLU.module, SWIGLU.ptx()?)?;
        let n = rows * ff;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256).min(1 << 20) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = f.builder();
        b.arg(&gu);
        b.arg(&out);
        candle_core::builder_arg!(b, rows as i32, ff as i32);
        // SAFETY: the arguments match the kernel's signature; the grid-stride loop stays below
        // `rows * ff` outputs and reads `rows * 2 ff` inputs.
        unsafe { b.launch(cfg) }.w()?;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("checked non-empty") = ff;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from(out_dims)))
    }
}

/// `silu(gate) * up` for the fused gate/up product's output `gu` (`[.., 2 ff]`: gate, then up;
/// contiguous): `[.., ff]`. `None` where the kernel does not apply (not an f32 CUDA tensor, odd
/// last dimension): callers take candle's path.
pub fn swiglu(gu: &Tensor) -> Result<Option<Tensor>> {
    let last = gu.dims().last().copied().unwrap_or(0);
    let applies = gu.device().is_cuda()
        && gu.dtype() == DType::F32
        && last > 0
        && last % 2 == 0
        && gu.is_contiguous()
        && gu.elem_count() / 2 < i32::MAX as usize;
    if !applies {
        return Ok(None);
    }
    gu.apply_op1_no_bwd(&SwiGlu).map(Some)
}

struct AddRmsNorm {
    eps: f32,
}

impl CustomOp3 for AddRmsNorm {
    fn name(&self) -> &'static str {
        "pagemind-add-rms-norm"
    }

    super::cuda_only_cpu_fwd3!("pagemind-add-rms-norm is a CUDA kernel (the CPU runs candle's add and rms_norm)");

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ys: &CudaStorage,
        yl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let n = wl.shape().elem_count();
        let rows = xl.shape().elem_count() / n;
        let dev = xs.device().clone();
        let (x, y, w) = (slice_at(xs, xl, "x")?, slice_at(ys, yl, "residual")?, slice_at(ws, wl, "norm weight")?);
        // SAFETY: the kernel writes every element (each row's sums, then its normed values).
        let out = unsafe { dev.alloc::<f32>(2 * rows * n)? };
        let f = dev.get_or_load_custom_func("pm_add_rms_norm_f32", ADD_RMS_NORM.module, ADD_RMS_NORM.ptx()?)?;
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let mut b = f.builder();
        b.arg(&x);
        b.arg(&y);
        b.arg(&w);
        b.arg(&out);
        candle_core::builder_arg!(b, rows as i32, n as i32, self.eps);
        // SAFETY: the arguments match the kernel's signature; `add_rms_norm` checked that x and
        // y hold `rows * n` values and w holds `n`; the block is a whole number of warps.
        unsafe { b.launch(cfg) }.w()?;
        let mut dims = vec![2];
        dims.extend_from_slice(xl.dims());
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from(dims)))
    }
}

/// `x + y` and its RMS norm scaled by `w` (`[n]`, `n` the last dimension), as candle's
/// `(x + y)` then `rms_norm(.., w, eps)`: `(sum, normed)`, each shaped like `x`. `None` where the
/// kernel does not apply (not f32 CUDA tensors, shapes that differ, not contiguous).
pub fn add_rms_norm(x: &Tensor, y: &Tensor, w: &Tensor, eps: f32) -> Result<Option<(Tensor, Tensor)>> {
    let n = x.dims().last().copied().unwrap_or(0);
    let applies = x.device().is_cuda()
        && [x, y, w].iter().all(|t| t.dtype() == DType::F32 && t.is_contiguous())
        && x.dims() == y.dims()
        && n > 0
        && w.elem_count() == n
        && x.elem_count() / n < u32::MAX as usize;
    if !applies {
        return Ok(None);
    }
    let both = x.apply_op3_no_bwd(y, w, &AddRmsNorm { eps })?;
    Ok(Some((both.get(0)?, both.get(1)?)))
}

#[cfg(test)]
mod tests {
    use super::super::random;
    use super::*;
    use candle_core::Device;

    /// Scalar reference of `qkv_rope`: `[rows, t, d]` from `y` `[t, rows, d]`.
    fn qkv_rope_ref(y: &[f32], bias: Option<&[f32]>, cos: &[f32], sin: &[f32], s: &QkvRope, t: usize) -> Vec<f32> {
        let (rows, d, half) = (s.rows(), s.head_dim, s.head_dim / 2);
        let mut out = vec![0f32; rows * t * d];
        for i in 0..t {
            for r in 0..rows {
                let x: Vec<f32> =
                    (0..d).map(|e| y[(i * rows + r) * d + e] + bias.map_or(0.0, |b| b[r * d + e])).collect();
                let o = &mut out[(r * t + i) * d..][..d];
                for j in 0..half {
                    let (a, b) = if s.interleaved { (2 * j, 2 * j + 1) } else { (j, j + half) };
                    let (c, sn) = (cos[(s.pos + i) * half + j], sin[(s.pos + i) * half + j]);
                    if r < s.n_head + s.n_kv {
                        o[a] = x[a] * c - x[b] * sn;
                        o[b] = x[a] * sn + x[b] * c;
                    } else {
                        (o[a], o[b]) = (x[a], x[b]);
                    }
                }
            }
        }
        out
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
    }

    #[test]
    fn qkv_rope_matches_the_scalar_reference() {
        let Ok(dev) = Device::new_cuda(0) else {
            eprintln!("skipped: no CUDA device");
            return;
        };
        // SmolLM2's (9/3 heads of 64, interleaved, no bias) and Qwen2.5's (12/2 of 128, NEOX,
        // bias) shapes; one token (decode) and a batch at a later position (prefill).
        let cases = [
            (9, 3, 64, true, false, 1, 0),
            (9, 3, 64, true, false, 7, 30),
            (12, 2, 128, false, true, 1, 99),
            (12, 2, 128, false, true, 5, 3),
        ];
        for (ci, &(n_head, n_kv, d, interleaved, with_bias, t, pos)) in cases.iter().enumerate() {
            let s = QkvRope { n_head, n_kv, head_dim: d, pos, interleaved };
            let width = s.rows() * d;
            let positions = pos + t + 4;
            let seed = 10 * ci as u64;
            let y = random(t * width, seed + 1, 2.0);
            let bias = with_bias.then(|| random(width, seed + 2, 0.5));
            let cos = random(positions * d / 2, seed + 3, 1.0);
            let sin = random(positions * d / 2, seed + 4, 1.0);
            let want = qkv_rope_ref(&y, bias.as_deref(), &cos, &sin, &s, t);
            let yt = Tensor::from_vec(y, (1, t, width), &dev).unwrap();
            let bt = bias.map(|b| Tensor::from_vec(b, width, &dev).unwrap());
            let ct = Tensor::from_vec(cos, (positions, d / 2), &dev).unwrap();
            let st = Tensor::from_vec(sin, (positions, d / 2), &dev).unwrap();
            let got = qkv_rope(&yt, bt.as_ref(), &ct, &st, &s).unwrap().expect("the kernel applies");
            assert_eq!(got.dims(), [s.rows(), t, d]);
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let w = worst(&got, &want);
            assert!(w < 1e-5, "case {ci}: off by {w}");
        }
        // Tables too short for the positions: declined, not read out of bounds.
        let s = QkvRope { n_head: 2, n_kv: 1, head_dim: 32, pos: 8, interleaved: true };
        let y = Tensor::zeros((1, 1, 4 * 32), DType::F32, &dev).unwrap();
        let c = Tensor::zeros((8, 16), DType::F32, &dev).unwrap();
        assert!(qkv_rope(&y, None, &c, &c, &s).unwrap().is_none());
    }

    #[test]
    fn swiglu_matches_the_scalar_reference() {
        let Ok(dev) = Device::new_cuda(0) else {
            eprintln!("skipped: no CUDA device");
            return;
        };
        for (rows, ff) in [(1, 1536), (1, 8960), (3, 1536), (1, 5)] {
            let gu = random(rows * 2 * ff, (rows * ff) as u64, 8.0);
            let want: Vec<f32> = (0..rows * ff)
                .map(|k| {
                    let (r, j) = (k / ff, k % ff);
                    let (g, u) = (gu[r * 2 * ff + j] as f64, gu[r * 2 * ff + ff + j] as f64);
                    (g / (1.0 + (-g).exp()) * u) as f32
                })
                .collect();
            let t = Tensor::from_vec(gu, (1, rows, 2 * ff), &dev).unwrap();
            let got = swiglu(&t).unwrap().expect("the kernel applies");
            assert_eq!(got.dims(), [1, rows, ff]);
            let w = worst(&got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &want);
            assert!(w < 1e-4, "rows {rows}, ff {ff}: off by {w}");
        }
    }

    #[test]
    fn add_rms_norm_matches_the_scalar_reference() {
        let Ok(dev) = Device::new_cuda(0) else {
            eprintln!("skipped: no CUDA device");
            return;
        };
        // SmolLM2's and Qwen2.5's widths, one row (decode) and several (prefill), a width that
        // is no multiple of the block.
        for (rows, n) in [(1, 576), (1, 1536), (4, 1536), (3, 100)] {
            let x = random(rows * n, n as u64, 3.0);
            let y = random(rows * n, n as u64 + 1, 3.0);
            let w = random(n, n as u64 + 2, 1.0);
            let eps = 1e-6f32;
            let sum: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
            let mut normed = vec![0f32; rows * n];
            for r in 0..rows {
                let row = &sum[r * n..(r + 1) * n];
                let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
                let scale = 1.0 / (ms + eps as f64).sqrt();
                for i in 0..n {
                    normed[r * n + i] = (row[i] as f64 * scale * w[i] as f64) as f32;
                }
            }
            let xt = Tensor::from_vec(x, (1, rows, n), &dev).unwrap();
            let yt = Tensor::from_vec(y, (1, rows, n), &dev).unwrap();
            let wt = Tensor::from_vec(w, n, &dev).unwrap();
            let (s, h) = add_rms_norm(&xt, &yt, &wt, eps).unwrap().expect("the kernel applies");
            assert_eq!((s.dims(), h.dims()), ([1, rows, n].as_slice(), [1, rows, n].as_slice()));
            let ws = worst(&s.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &sum);
            let wh = worst(&h.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &normed);
            assert!(ws < 1e-6 && wh < 1e-4, "rows {rows}, n {n}: sums off by {ws}, normed by {wh}");
            // candle's own rms_norm on the same sums agrees too.
            let want = candle_nn_free_rms_norm(&xt.add(&yt).unwrap(), &wt, eps);
            let wc = worst(&h.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &want);
            assert!(wc < 1e-4, "rows {rows}, n {n}: off candle's ops by {wc}");
        }
    }

    /// RMS norm by candle's tensor ops (this crate does not depend on candle-nn).
    fn candle_nn_free_rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Vec<f32> {
        let ms = x.sqr().unwrap().mean_keepdim(candle_core::D::Minus1).unwrap();
        let scale = (ms + eps as f64).unwrap().sqrt().unwrap().recip().unwrap();
        x.broadcast_mul(&scale).unwrap().broadcast_mul(w).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }
}
