/*! A tiny chat model built in memory: a complete GGUF file (llama architecture, byte-level BPE
vocabulary with ChatML control tokens, an embedded chat template, random f32 weights) of ~40 KB.

It exercises every part of loading and running a model (GGUF reader, tokenizer, template,
weights, one forward pass) without a model file: the seed of the `gguf_model` fuzz target, and
a model for tests that need a real [`super::ChatModel`] but not a sensible one.
*/

use crate::{Error, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// The shapes of the tiny model.
pub struct TinyShape {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
}

impl Default for TinyShape {
    fn default() -> Self {
        TinyShape { n_layer: 1, n_embd: 16, n_head: 2, n_head_kv: 1, n_ff: 32 }
    }
}

/// Control tokens of the tiny vocabulary (ChatML's and an end-of-text token).
pub const TINY_CONTROLS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Seeded random weights in [-0.25, 0.25) (an LCG): the synthetic models' one source.
pub struct Weights(u64);

impl Weights {
    pub fn new(seed: u64) -> Self {
        Weights(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }

    /// `n` values, each `fill` if given (the generator still advances), else random.
    pub fn take(&mut self, n: usize, fill: Option<f32>) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                fill.unwrap_or(((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5)
            })
            .collect()
    }
}

/// The bytes of a tiny GGUF chat model with `shape`; weights are drawn from `seed`.
pub fn tiny_gguf(shape: &TinyShape, seed: u64) -> Result<Vec<u8>> {
    let alphabet = super::tokenizer::byte_level_alphabet();
    let mut tokens: Vec<String> = alphabet.iter().map(|(_, c)| c.to_string()).collect();
    let merges = ["h e", "l l", "Ġ t"];
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    let n_plain = tokens.len();
    tokens.extend(TINY_CONTROLS.iter().map(|s| s.to_string()));
    let token_types: Vec<Value> = (0..tokens.len()).map(|i| Value::I32(if i < n_plain { 1 } else { 3 })).collect();
    let eos = (n_plain + 2) as u32;
    let s = |v: &str| Value::String(v.to_string());
    let u = |v: usize| Value::U32(v as u32);
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", s("llama")),
        ("general.name", s("tiny")),
        ("llama.block_count", u(shape.n_layer)),
        ("llama.context_length", u(16384)),
        ("llama.embedding_length", u(shape.n_embd)),
        ("llama.feed_forward_length", u(shape.n_ff)),
        ("llama.attention.head_count", u(shape.n_head)),
        ("llama.attention.head_count_kv", u(shape.n_head_kv)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("default")),
        ("tokenizer.ggml.tokens", Value::Array(tokens.iter().map(|t| s(t)).collect())),
        ("tokenizer.ggml.token_type", Value::Array(token_types)),
        ("tokenizer.ggml.merges", Value::Array(merges.iter().map(|m| s(m)).collect())),
        ("tokenizer.ggml.bos_token_id", u(n_plain + 1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(eos)),
        ("tokenizer.chat_template", s(super::CHATML)),
    ];
    let head_dim = shape.n_embd / shape.n_head;
    let (d, q_out, kv_out, vocab) = (shape.n_embd, shape.n_head * head_dim, shape.n_head_kv * head_dim, tokens.len());
    let mut rng = Weights::new(seed);
    let mut weight = |dims: &[usize], ones: bool| -> Result<QTensor> {
        let data = rng.take(dims.iter().product(), ones.then_some(1.0));
        Ok(QTensor::quantize(&Tensor::from_vec(data, dims, &Device::Cpu)?, GgmlDType::F32)?)
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), weight(&[vocab, d], false)?),
        ("output_norm.weight".into(), weight(&[d], true)?),
    ];
    for i in 0..shape.n_layer {
        let p = |n: &str| format!("blk.{i}.{n}");
        tensors.push((p("attn_norm.weight"), weight(&[d], true)?));
        tensors.push((p("attn_q.weight"), weight(&[q_out, d], false)?));
        tensors.push((p("attn_k.weight"), weight(&[kv_out, d], false)?));
        tensors.push((p("attn_v.weight"), weight(&[kv_out, d], false)?));
        tensors.push((p("attn_output.weight"), weight(&[d, q_out], false)?));
        tensors.push((p("ffn_norm.weight"), weight(&[d], true)?));
        tensors.push((p("ffn_gate.weight"), weight(&[shape.n_ff, d], false)?));
        tensors.push((p("ffn_up.weight"), weight(&[shape.n_ff, d], false)?));
        tensors.push((p("ffn_down.weight"), weight(&[d, shape.n_ff], false)?));
    }
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tens: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta, &tens).map_err(|e| Error::Invalid(format!("writing the tiny GGUF: {e}")))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ChatMessage, ChatModel, Session};

    #[test]
    fn the_tiny_model_loads_tokenizes_and_runs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tiny.gguf");
        let bytes = tiny_gguf(&TinyShape::default(), 7).unwrap();
        assert!(bytes.len() < 64 << 10, "{} bytes", bytes.len());
        std::fs::write(&p, &bytes).unwrap();
        let m = ChatModel::load(&p, &Device::Cpu, None).unwrap();
        let (text, ids) = m.chat_prompt(&[ChatMessage::new("user", "hello there")], true).unwrap();
        assert!(text.starts_with("<|im_start|>user\n"), "{text}");
        assert_eq!(ids[0], m.tokenizer.token_id("<|im_start|>").unwrap());
        assert_eq!(m.tokenizer.decode(&ids, false).unwrap(), text);
        let mut s = Session::new(&m, 64).unwrap();
        let logits = s.eval(&ids).unwrap();
        assert_eq!(logits.len(), m.tokenizer.vocab_size());
        assert!(logits.iter().all(|x| x.is_finite()));
        // Other weights, other logits: the seed is used.
        std::fs::write(&p, tiny_gguf(&TinyShape::default(), 8).unwrap()).unwrap();
        let m2 = ChatModel::load(&p, &Device::Cpu, None).unwrap();
        assert_ne!(Session::new(&m2, 64).unwrap().eval(&ids).unwrap(), logits);
    }
}
