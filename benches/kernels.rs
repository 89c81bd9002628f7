//! Quantized matrix products, pagemind's kernels against candle's `QMatMul` on the same weights
//! in the same run: random weights quantized to each type the models use, Qwen2.5-1.5B's and
//! SmolLM2's layer shapes, one token (decode) and a 64-token batch (prefill). One JSON line per
//! (type, shape, tokens) with both times (median of the repetitions), ours in weights/ns, and
//! the ratio candle / ours (above 1: ours is faster). Decode is also timed with the weights
//! coming from memory (`dram_*_ms`: a pass over copies larger than the L3 cache), as in a real
//! decode step. For Q4_K and Q6_K, which run eight rows interleaved where the CPU has AVX2 or
//! AVX-512 VNNI, `rows_ms` times the row-by-row kernel on the same weights (`rows_ratio`: rows /
//! ours). `cargo bench --bench kernels [-- --quick]`.

mod common;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use common::*;
use pagemind::kernels::k_matmul::KMatrix;
use pagemind::runtime::linear::Linear;
use serde_json::json;

fn weights(rows: usize, cols: usize, dtype: GgmlDType, seed: u64) -> QTensor {
    let mut r = Rng(seed);
    let w: Vec<f32> = (0..rows * cols).map(|_| r.f() * 0.05).collect();
    let t = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
    QTensor::quantize(&t, dtype).unwrap()
}

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up (page in, first pool wake-up)
    let mut v: Vec<f64> = (0..reps).map(|_| time_us(&mut f) / 1e3).collect();
    p50_p99(&mut v).0
}

fn main() {
    let quick = quick();
    let shapes: &[(&str, usize, usize)] = if quick {
        &[("qwen.attn_q", 256, 512)]
    } else {
        &[("qwen.attn_q", 1536, 1536), ("qwen.ffn_up", 8960, 1536), ("qwen.ffn_down", 1536, 8960)]
    };
    let reps = if quick { 3 } else { 20 };
    for &dtype in &[GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q4_1] {
        for &(name, rows, cols) in shapes {
            let (shape_name, rows, cols) = if dtype == GgmlDType::Q4_1 && !quick {
                ("smollm.ffn_up", 1536, 576) // SmolLM2's shape for its type
            } else {
                (name, rows, cols)
            };
            let ours = Linear::new(weights(rows, cols, dtype, 7), &Device::Cpu).unwrap();
            let theirs = QMatMul::from_qtensor(weights(rows, cols, dtype, 7)).unwrap();
            // The row-by-row kernel on the same blocks (what runs without an interleaved body).
            let bytes = weights(rows, cols, dtype, 7).data().unwrap().into_owned();
            let by_rows = match dtype {
                GgmlDType::Q4K => KMatrix::from_bytes(&bytes, rows, cols).map(Linear::Q4K),
                GgmlDType::Q6K => KMatrix::from_bytes(&bytes, rows, cols).map(Linear::Q6K),
                _ => None,
            };
            for tokens in [1, 64] {
                let mut r = Rng(11);
                let x: Vec<f32> = (0..tokens * cols).map(|_| r.f()).collect();
                let x = Tensor::from_vec(x, (1, tokens, cols), &Device::Cpu).unwrap();
                let (a, b) = (ours.forward(&x).unwrap(), theirs.forward(&x).unwrap());
                let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let t_ours = median_ms(reps, || drop(ours.forward(&x).unwrap()));
                let t_candle = median_ms(reps, || drop(theirs.forward(&x).unwrap()));
                let t_rows = by_rows.as_ref().map(|l| median_ms(reps, || drop(l.forward(&x).unwrap())));
                // Decode with the weights streamed from memory: cycle through copies larger than L3.
                let (dram_ours, dram_candle) = if tokens == 1 && !quick {
                    let copies = (256 << 20) / (rows * cols / 2) + 1;
                    let o: Vec<Linear> = (0..copies)
                        .map(|i| Linear::new(weights(rows, cols, dtype, 7 + i as u64), &Device::Cpu).unwrap())
                        .collect();
                    let c: Vec<QMatMul> = (0..copies)
                        .map(|i| QMatMul::from_qtensor(weights(rows, cols, dtype, 7 + i as u64)).unwrap())
                        .collect();
                    let per = |t: f64| r2(t * 100.0 / copies as f64) / 100.0;
                    (
                        per(median_ms(5, || o.iter().for_each(|l| drop(l.forward(&x).unwrap())))),
                        per(median_ms(5, || c.iter().for_each(|l| drop(l.forward(&x).unwrap())))),
                    )
                } else {
                    (0.0, 0.0)
                };
                let line = json!({
                    "dram_ours_ms": dram_ours, "dram_candle_ms": dram_candle,
                    "bench": "kernels", "dtype": format!("{dtype:?}"), "shape": shape_name,
                    "rows": rows, "cols": cols, "tokens": tokens,
                    "ours_ms": r2(t_ours * 100.0) / 100.0, "candle_ms": r2(t_candle * 100.0) / 100.0,
                    "ours_weights_per_ns": r2((rows * cols * tokens) as f64 / (t_ours * 1e6)),
                    "ratio": r2(t_candle / t_ours), "max_abs_diff": diff,
                    "rows_ms": t_rows.map(|t| r2(t * 100.0) / 100.0), "rows_ratio": t_rows.map(|t| r2(t / t_ours)),
                });
                println!("{line}");
            }
            if dtype == GgmlDType::Q4_1 && !quick {
                break; // one shape for SmolLM2's type
            }
        }
    }
}
