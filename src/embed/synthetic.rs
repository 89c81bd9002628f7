/*! A tiny sentence encoder written to a folder: the three files of a BERT model
(`model.safetensors` with random f32 weights, `config.json`, and a `tokenizer.json` whose
WordPiece vocabulary is single characters), ~60 KB in all.

It runs the whole embedding path (tokenizer, [`super::bert::CpuBert`], pooling) without a model
file, for tests that need an [`super::Embedder`] but not a meaningful one: its vectors do not
rank by meaning, only texts that share characters come out closer. Archival search still finds
a passage that holds the query verbatim first (the hybrid search does not use the vectors for
that).
*/

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// Hidden size of the tiny encoder (the dimension of its vectors).
pub const TINY_DIM: usize = 16;

/// Special tokens, ids 0-4, as BERT numbers them in its own vocabulary's order.
const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Write `model.safetensors`, `config.json` and `tokenizer.json` of the tiny encoder into
/// `dir`; weights are drawn from `seed`.
pub fn write_tiny_bert(dir: &Path, seed: u64) -> Result<()> {
    let mut vocab: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    // After lowercasing, a word splits into characters: a first one and `##` continuations.
    for c in (33u8..127).map(char::from).filter(|c| !c.is_ascii_uppercase()) {
        vocab.push(c.to_string());
        vocab.push(format!("##{c}"));
    }
    let (h, ff, positions) = (TINY_DIM, 2 * TINY_DIM, 512);
    let config = json!({
        "model_type": "bert", "vocab_size": vocab.len(), "hidden_size": h, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": ff, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": positions, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
        "use_cache": true, "classifier_dropout": null
    });
    let mut rng = crate::runtime::synthetic::Weights::new(seed);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: String, dims: &[usize], fill: Option<f32>| -> Result<()> {
        let data = rng.take(dims.iter().product(), fill);
        tensors.insert(name, Tensor::from_vec(data, dims, &Device::Cpu)?);
        Ok(())
    };
    put("embeddings.word_embeddings.weight".into(), &[vocab.len(), h], None)?;
    put("embeddings.position_embeddings.weight".into(), &[positions, h], None)?;
    put("embeddings.token_type_embeddings.weight".into(), &[2, h], None)?;
    let l = "encoder.layer.0";
    for (name, out, inp) in [
        ("attention.self.query", h, h),
        ("attention.self.key", h, h),
        ("attention.self.value", h, h),
        ("attention.output.dense", h, h),
        ("intermediate.dense", ff, h),
        ("output.dense", h, ff),
    ] {
        put(format!("{l}.{name}.weight"), &[out, inp], None)?;
        put(format!("{l}.{name}.bias"), &[out], None)?;
    }
    for norm in
        ["embeddings.LayerNorm".to_string(), format!("{l}.attention.output.LayerNorm"), format!("{l}.output.LayerNorm")]
    {
        put(format!("{norm}.weight"), &[h], Some(1.0))?;
        put(format!("{norm}.bias"), &[h], Some(0.0))?;
    }
    let weights = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights).map_err(|e| Error::file(&weights, e))?;
    write_json(&dir.join("config.json"), &config)?;
    write_json(&dir.join("tokenizer.json"), &tokenizer_json(&vocab))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_vec_pretty(v).map_err(|e| Error::file(path, e))?;
    std::fs::write(path, text).map_err(|e| Error::file(path, e))
}

/// A `tokenizer.json` as sentence-transformers ships BERT's: normalizer, pre-tokenizer,
/// WordPiece model and the `[CLS] ... [SEP]` template.
fn tokenizer_json(vocab: &[String]) -> Value {
    let ids: serde_json::Map<String, Value> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let special = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
    let seq = |s: &str| json!({"Sequence": {"id": s, "type_id": 0}});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]"), seq("A"), special("[SEP]")],
            "pair": [special("[CLS]"), seq("A"), special("[SEP]"), seq("B"), special("[SEP]")],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::{cosine, Embedder};

    #[test]
    fn the_tiny_encoder_loads_tokenizes_and_embeds_on_both_paths() {
        let d = tempfile::tempdir().unwrap();
        write_tiny_bert(d.path(), 3).unwrap();
        let p = |f: &str| d.path().join(f);
        let load = |candle: bool| {
            let f = if candle { Embedder::load_candle } else { Embedder::load };
            f(&p("model.safetensors"), &p("config.json"), &p("tokenizer.json"), 256, &Device::Cpu).unwrap()
        };
        let (own, reference) = (load(false), load(true));
        assert_eq!(own.dim, TINY_DIM);
        let ids = own.token_ids("Hi, Ana!").unwrap();
        // [CLS] h ##i , a ##n ##a ! [SEP]
        assert_eq!(ids.len(), 9, "{ids:?}");
        assert_eq!((ids[0], ids[8]), (2, 3));
        let texts = ["The pump limit is 8 bar.", "THE PUMP LIMIT IS 8 BAR.", "Zebras yawn."];
        let a = own.embed(&texts).unwrap();
        let b = reference.embed(&texts).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!(cosine(x, y) > 0.999, "the CPU encoder and candle's agree");
            assert!((x.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4, "normalised");
        }
        // Lowercasing makes the first two the same text.
        assert!(cosine(&a[0], &a[1]) > 0.999 && cosine(&a[0], &a[2]) < 0.999);
    }
}
