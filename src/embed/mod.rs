/*! The embedding runtime: BERT-family sentence encoders (all-MiniLM-L6-v2).

[`Embedder`] loads `model.safetensors`, `config.json` and `tokenizer.json`, tokenizes with
truncation at the model's max length, runs batches padded to their longest text, mean-pools over
the attention mask and L2-normalises: the sentence-transformers pipeline.

On the CPU the encoder is [`bert::CpuBert`] (no padding, fused and reused buffers, vectorized
GELU/softmax); on GPUs, for unsupported configs, or with `PAGEMIND_KERNELS=candle`, it is candle's
`BertModel`. Both give the same vectors (tested).
*/

pub mod bert;
pub mod synthetic;

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, HiddenAct, PositionEmbeddingType};
use std::path::Path;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Texts per forward pass.
pub const BATCH: usize = 32;

enum Encoder {
    Cpu(bert::CpuBert),
    Candle(BertModel),
}

/// A loaded sentence-embedding model.
pub struct Embedder {
    model: Encoder,
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation or padding, for chunking.
    plain: Tokenizer,
    device: Device,
    /// Output dimension.
    pub dim: usize,
    /// Tokens per text after truncation (special tokens included).
    pub max_len: usize,
}

impl Embedder {
    /// Load from a folder's three files (`model.safetensors`, `config.json`, `tokenizer.json`).
    pub fn load(weights: &Path, config: &Path, tokenizer: &Path, max_len: usize, device: &Device) -> Result<Self> {
        Self::load_with(weights, config, tokenizer, max_len, device, crate::runtime::linear::own_kernels())
    }

    /// As [`Embedder::load`], but always on candle's `BertModel` (the reference for A/B tests).
    pub fn load_candle(
        weights: &Path,
        config: &Path,
        tokenizer: &Path,
        max_len: usize,
        device: &Device,
    ) -> Result<Self> {
        Self::load_with(weights, config, tokenizer, max_len, device, false)
    }

    fn load_with(
        weights: &Path,
        config: &Path,
        tokenizer: &Path,
        max_len: usize,
        device: &Device,
        own: bool,
    ) -> Result<Self> {
        let cfg_text = std::fs::read_to_string(config).map_err(|e| Error::file(config, e))?;
        let cfg: Config =
            serde_json::from_str(&cfg_text).map_err(|e| Error::file(config, format!("not a BERT config: {e}")))?;
        let mut tk = Tokenizer::from_file(tokenizer)
            .map_err(|e| Error::file(tokenizer, format!("not a tokenizer.json: {e}")))?;
        let mut plain = tk.clone();
        plain.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
        plain.with_padding(None);
        tk.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tk.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        if !weights.exists() {
            return Err(Error::file(weights, "model file not found"));
        }
        if device.is_cpu() && own {
            if let Some(dims) = cpu_dims(&cfg) {
                let model = Encoder::Cpu(bert::CpuBert::load(weights, dims)?);
                return Ok(Self { model, tokenizer: tk, plain, device: device.clone(), dim: dims.hidden, max_len });
            }
        }
        // SAFETY: the file is memory-mapped read-only; pagemind never writes model files in place
        // (pulls write a `.partial` file and rename it).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device) }
            .map_err(|e| Error::file(weights, format!("not a valid safetensors file: {e}")))?;
        let model =
            BertModel::load(vb, &cfg).map_err(|e| Error::file(weights, format!("cannot load BERT weights: {e}")))?;
        let model = Encoder::Candle(model);
        Ok(Self { model, tokenizer: tk, plain, device: device.clone(), dim: cfg.hidden_size, max_len })
    }

    /// Token ids of `text` as the model sees it (special tokens, truncation).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Byte ranges of the tokens of `text` (no special tokens, no truncation): what chunking counts.
    pub fn token_spans(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        let enc = self.plain.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_offsets().to_vec())
    }

    /// Embed `texts` (any number; batched internally). Each vector has unit length.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            out.extend(self.embed_batch(batch)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let model = match &self.model {
            Encoder::Cpu(m) => {
                let texts: Vec<(&[u32], &[u32])> = enc
                    .iter()
                    .map(|e| {
                        let n = e.get_attention_mask().iter().filter(|&&m| m != 0).count();
                        (&e.get_ids()[..n], &e.get_type_ids()[..n])
                    })
                    .collect();
                return m.embed(&texts);
            }
            Encoder::Candle(m) => m,
        };
        let n = enc.len();
        let len = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            enc.iter().flat_map(|e| f(e).to_vec()).collect()
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (n, len), &self.device)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (n, len), &self.device)?;
        let mask = Tensor::from_vec(flat(&|e| e.get_attention_mask()), (n, len), &self.device)?;
        let hidden = model.forward(&ids, &types, Some(&mask))?; // [n, len, dim]
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

/// The CPU encoder's shape, if the config describes a model it supports (BERT, absolute
/// positions, erf GELU).
fn cpu_dims(cfg: &Config) -> Option<bert::Dims> {
    let bert = cfg.model_type.as_deref().is_none_or(|t| t == "bert");
    let supported = bert
        && matches!(cfg.hidden_act, HiddenAct::Gelu)
        && matches!(cfg.position_embedding_type, PositionEmbeddingType::Absolute);
    let heads = cfg.num_attention_heads;
    (supported && heads > 0 && cfg.hidden_size.is_multiple_of(heads)).then_some(bert::Dims {
        hidden: cfg.hidden_size,
        heads,
        layers: cfg.num_hidden_layers,
        intermediate: cfg.intermediate_size,
        max_positions: cfg.max_position_embeddings,
        eps: cfg.layer_norm_eps as f32,
    })
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}
