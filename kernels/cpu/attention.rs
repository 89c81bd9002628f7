/*! One token's attention over a KV cache, the arithmetic part: scores of a query against key
rows, their maximum, and the weighted sum of value rows, each rounding exactly like the plain
one-at-a-time loops (AVX2 for the scores, where available). `pagemind`'s `runtime::attention`
reads the cache's buffers and runs these per head.
*/

/// Keys scored together.
const LANES: usize = 8;

/// `scores[p] = (q . k_p) * scale` for the `d`-wide key rows in `keys`, each dot product summed
/// in order over the head dimension (the f32 rounding of a one-key-at-a-time loop), eight keys
/// at a time: eight chains in flight, not one. With AVX2 and `d` a multiple of 8 the eight keys'
/// elements are transposed in registers (lane = key), so each step is one vector multiply and
/// one add (separate, as the scalar loop rounds).
#[inline]
pub fn score(q: &[f32], keys: &[f32], scale: f32, scores: &mut [f32]) {
    let d = q.len();
    let mut s8 = scores.chunks_exact_mut(LANES);
    let mut k8 = keys.chunks_exact(LANES * d);
    for (s, ks) in (&mut s8).zip(&mut k8) {
        #[cfg(target_arch = "x86_64")]
        let acc = if d.is_multiple_of(8) && super::has_avx2_fma() {
            // SAFETY: AVX2 checked; `ks` holds 8 rows of d (a multiple of 8) floats.
            unsafe { avx2::eight_dots(q, ks) }
        } else {
            eight_dots(q, ks)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let acc = eight_dots(q, ks);
        for (s, a) in s.iter_mut().zip(acc) {
            *s = a * scale;
        }
    }
    for (s, krow) in s8.into_remainder().iter_mut().zip(k8.remainder().chunks_exact(d)) {
        *s = q.iter().zip(krow).map(|(a, b)| a * b).sum::<f32>() * scale;
    }
}

/// The largest score (max is exact in any order, so sixteen lanes then a fold).
#[inline]
pub fn max_of(v: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = v.chunks_exact(16);
    for c in &mut chunks {
        lanes.iter_mut().zip(c).for_each(|(m, x)| *m = m.max(*x));
    }
    chunks.remainder().iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Values per register-resident slice of the output in [`weighted_sum`].
const OUT_BLOCK: usize = 64;

/// `o = sum_p w[p] * v_p` over the `o.len()`-wide value rows `v`, each output element summed in
/// position order (as a row-at-a-time loop rounds), one 64-wide slice of `o` at a time so its
/// partial sums stay in registers.
#[inline]
pub fn weighted_sum(w: &[f32], v: &[f32], o: &mut [f32]) {
    let d = o.len();
    let mut start = 0;
    while start < d {
        let n = OUT_BLOCK.min(d - start);
        let mut acc = [0f32; OUT_BLOCK];
        if n == OUT_BLOCK {
            for (p, row) in w.iter().zip(v.chunks_exact(d)) {
                let x = &row[start..start + OUT_BLOCK];
                acc.iter_mut().zip(x).for_each(|(a, x)| *a += p * x);
            }
        } else {
            for (p, row) in w.iter().zip(v.chunks_exact(d)) {
                acc[..n].iter_mut().zip(&row[start..start + n]).for_each(|(a, x)| *a += p * x);
            }
        }
        o[start..start + n].copy_from_slice(&acc[..n]);
        start += n;
    }
}

/// Eight dot products of `q` with the rows of `ks`, each in order.
fn eight_dots(q: &[f32], ks: &[f32]) -> [f32; LANES] {
    let d = q.len();
    let mut acc = [0f32; LANES];
    for (i, &qi) in q.iter().enumerate() {
        for (a, p) in acc.iter_mut().zip(0..LANES) {
            *a += qi * ks[p * d + i];
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::eight_dots`] with an 8 x 8 register transpose per eight elements.
    #[target_feature(enable = "avx2")]
    pub unsafe fn eight_dots(q: &[f32], ks: &[f32]) -> [f32; 8] {
        let d = q.len();
        let mut acc = _mm256_setzero_ps();
        for i in (0..d).step_by(8) {
            let r: [__m256; 8] = std::array::from_fn(|p| _mm256_loadu_ps(ks.as_ptr().add(p * d + i)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            // Column j: element i + j of the eight keys.
            let cols = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (j, c) in cols.iter().enumerate() {
                acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(*q.get_unchecked(i + j)), *c));
            }
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_values_and_max_round_exactly_like_the_plain_loops() {
        let mut s = 5u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        for (d, n) in [(128, 37), (64, 1), (80, 19), (12, 5)] {
            let w: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let v: Vec<f32> = (0..n * d).map(|_| rnd() * 3.0).collect();
            let mut want = vec![0f32; d];
            for (p, row) in w.iter().zip(v.chunks_exact(d)) {
                want.iter_mut().zip(row).for_each(|(a, x)| *a += p * x);
            }
            let mut got = vec![f32::NAN; d];
            weighted_sum(&w, &v, &mut got);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "d={d} n={n}");
            assert_eq!(max_of(&v), v.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        }
    }

    #[test]
    fn scores_round_exactly_like_one_key_at_a_time() {
        let mut s = 3u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        for (d, n) in [(128, 37), (64, 8), (12, 19)] {
            let q: Vec<f32> = (0..d).map(|_| rnd()).collect();
            let keys: Vec<f32> = (0..n * d).map(|_| rnd() * 3.0).collect();
            let mut got = vec![0f32; n];
            score(&q, &keys, 0.125, &mut got);
            for (p, g) in got.iter().enumerate() {
                let want = q.iter().zip(&keys[p * d..(p + 1) * d]).map(|(a, b)| a * b).sum::<f32>() * 0.125;
                assert_eq!(g.to_bits(), want.to_bits(), "d={d} key {p}");
            }
        }
    }
}
