//! The embedding runtime against sentence-transformers (tests/fixtures/minilm-l6-v2.reference.json).

use crate::util::{self, fixture};
use pagemind::embed::cosine;

#[test]
fn minilm_ids_and_embeddings_match_sentence_transformers() {
    let e = util::minilm();
    let r = fixture("minilm-l6-v2.reference.json");
    let cases = r["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let got = e.embed(&texts).unwrap();
    for (c, v) in cases.iter().zip(&got) {
        let want_ids: Vec<u32> =
            c["input_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let text = c["text"].as_str().unwrap();
        assert_eq!(e.token_ids(text).unwrap(), want_ids, "ids of {text:?}");
        let want: Vec<f32> = c["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let cos = cosine(v, &want);
        assert!(cos >= 0.9999, "cosine {cos} for {text:?}");
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    // Batching does not change a text's embedding (padding is masked out).
    let alone = e.embed(&texts[..1]).unwrap();
    assert!(cosine(&alone[0], &got[0]) > 0.99999);
}

#[test]
fn the_cpu_encoder_matches_candles_bert_on_mixed_lengths() {
    let fast = util::minilm();
    let reference = util::load_minilm(pagemind::embed::Embedder::load_candle);
    // Lengths from one token to past the 256-token truncation, in one batch, so packing (fast) and
    // padding with masks (candle) must agree text by text.
    let long = "paging memory between tiers ".repeat(80);
    let texts: Vec<String> = vec![
        "a".into(),
        "The archive holds every passage ever loaded.".into(),
        long.clone(),
        "Quarterly revenue rose 12% while the context window stayed at 2048 tokens.".repeat(3),
        String::new(),
    ];
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let a = fast.embed(&refs).unwrap();
    let b = reference.embed(&refs).unwrap();
    assert_eq!(a.len(), texts.len());
    for ((x, y), t) in a.iter().zip(&b).zip(&texts) {
        let cos = cosine(x, y);
        assert!(cos > 0.99999, "cosine {cos} for a {}-byte text", t.len());
        let diff = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-3, "max component difference {diff}");
    }
}
