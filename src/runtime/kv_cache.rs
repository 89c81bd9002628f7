/*! A KV cache the runtime owns: preallocated per layer, written in place, truncatable.

Keys and values of layer `l` live in `[1, n_kv_heads, capacity, head_dim]` tensors. Appending
writes into the buffer (`slice_set`, no concatenation); reading returns a view of the first `len`
positions. [`KvCache::truncate`] only moves the length, so prefix reuse costs nothing. Capacity
grows geometrically (one copy per doubling) up to the context window, so a small prompt does
not pay for a 32k-token buffer.
*/

use crate::Result;
use candle_core::{DType, Device, Tensor};

/// Per-layer key/value buffers and the number of valid positions.
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
    capacity: usize,
    max: usize,
    n_kv_heads: usize,
    head_dim: usize,
    device: Device,
}

const GROW_STEP: usize = 256;

impl KvCache {
    /// An empty cache for `n_layers` that may hold up to `max` positions.
    pub fn new(n_layers: usize, n_kv_heads: usize, head_dim: usize, max: usize, device: &Device) -> Self {
        Self { layers: vec![None; n_layers], len: 0, capacity: 0, max, n_kv_heads, head_dim, device: device.clone() }
    }

    /// Valid positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache may hold.
    pub fn max_len(&self) -> usize {
        self.max
    }

    /// Forget every position at or after `n`.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// Make room for `extra` more positions (grows every layer's buffer once if needed).
    pub fn reserve(&mut self, extra: usize) -> Result<()> {
        let need = self.len + extra;
        if need <= self.capacity {
            return Ok(());
        }
        let cap = need.max(self.capacity * 2).div_ceil(GROW_STEP) * GROW_STEP;
        let cap = cap.min(self.max.max(need));
        for slot in self.layers.iter_mut() {
            let shape = (1, self.n_kv_heads, cap, self.head_dim);
            let k = Tensor::zeros(shape, DType::F32, &self.device)?;
            let v = Tensor::zeros(shape, DType::F32, &self.device)?;
            if let Some((ok, ov)) = slot.as_ref() {
                if self.len > 0 {
                    k.slice_set(&ok.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                    v.slice_set(&ov.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
            }
            *slot = Some((k, v));
        }
        self.capacity = cap;
        Ok(())
    }

    /// Write `k`, `v` (`[1, n_kv_heads, t, head_dim]`) for `layer` at the current length and
    /// return views of all `len + t` positions. [`KvCache::advance`] commits the length once
    /// every layer has been written.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let (ck, cv) = self.layers[layer].as_ref().expect("reserve() before append()");
        ck.slice_set(k, 2, self.len)?;
        cv.slice_set(v, 2, self.len)?;
        Ok((ck.narrow(2, 0, self.len + t)?, cv.narrow(2, 0, self.len + t)?))
    }

    /// Commit `t` appended positions.
    pub fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Keys and values of the first `n` valid positions of `layer`, each
    /// `[n_kv_heads, n, head_dim]` flattened (copied to the host).
    pub fn layer_data(&self, layer: usize, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = n.min(self.len);
        let flat = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.narrow(2, 0, n)?.contiguous()?.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
        };
        match self.layers.get(layer).and_then(|s| s.as_ref()) {
            Some((k, v)) if n > 0 => Ok((flat(k)?, flat(v)?)),
            _ => Ok((vec![], vec![])),
        }
    }

    /// Replace the contents with `len` positions per layer, laid out as [`KvCache::layer_data`]
    /// returns them.
    pub fn load(&mut self, layers: &[(Vec<f32>, Vec<f32>)], len: usize) -> Result<()> {
        if layers.len() != self.layers.len() || len > self.max {
            return Err(crate::Error::Invalid("KV state does not fit this cache".into()));
        }
        self.len = 0;
        if len == 0 {
            return Ok(());
        }
        self.reserve(len)?;
        let shape = (1, self.n_kv_heads, len, self.head_dim);
        for (slot, (k, v)) in self.layers.iter().zip(layers) {
            let (ck, cv) = slot.as_ref().expect("reserve() allocates every layer");
            ck.slice_set(&Tensor::from_slice(k, shape, &self.device)?, 2, 0)?;
            cv.slice_set(&Tensor::from_slice(v, shape, &self.device)?, 2, 0)?;
        }
        self.len = len;
        Ok(())
    }

    /// Copies of the keys and values of positions `start..start + n` of every layer.
    pub fn copy_range(&self, start: usize, n: usize) -> Result<Vec<(Tensor, Tensor)>> {
        let mut out = Vec::with_capacity(self.layers.len());
        for slot in &self.layers {
            let (k, v) = slot.as_ref().ok_or_else(|| crate::Error::Invalid("empty KV cache".into()))?;
            out.push((k.narrow(2, start, n)?.contiguous()?, v.narrow(2, start, n)?.contiguous()?));
        }
        Ok(out)
    }

    /// Append the same number of positions to every layer (`[1, kv_heads, n, head_dim]` each).
    pub fn push_layers(&mut self, layers: &[(Tensor, Tensor)]) -> Result<()> {
        let Some(n) = layers.first().map(|(k, _)| k.dim(2)).transpose()? else { return Ok(()) };
        self.reserve(n)?;
        for (l, (k, v)) in layers.iter().enumerate() {
            self.append(l, k, v)?;
        }
        self.advance(n);
        Ok(())
    }
}
