//! Helpers shared by the benchmarks (`mod common;` in each bench): timing statistics and JSON output.

#![allow(dead_code)]

use std::time::Instant;

/// Median and 99th percentile of `v` (sorted in place).
pub fn p50_p99(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Microseconds taken by `f`.
pub fn time_us(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e6
}

/// Round to 2 decimals for printing.
pub fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Smaller sizes, for a smoke run: under `cargo test` (which runs bench targets without the
/// `--bench` flag that `cargo bench` passes), or with `--quick` / `PAGEMIND_BENCH_QUICK=1`.
pub fn quick() -> bool {
    let args: Vec<String> = std::env::args().collect();
    !args.iter().any(|a| a == "--bench")
        || args.iter().any(|a| a == "--quick")
        || std::env::var("PAGEMIND_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// Deterministic pseudo-random numbers (xorshift), so runs are comparable.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}
