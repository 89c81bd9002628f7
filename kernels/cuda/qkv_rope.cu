// Q/K/V after the fused projection, in one pass: bias added, rotary embedding applied to the
// query and key heads, and every head written head-major, ready for the KV cache and attention.
//
// y: [t, n_rows, d] (the fused product's output, one token per row of n_rows * d floats);
// bias: [n_rows, d] when has_bias; cos, sin: [positions, d / 2] tables (position pos + i for
// token i); out: [n_rows, t, d]. Rows [0, n_rot) (the query heads, then the key heads) are
// rotated, the rest (value heads) copied. Rotation pairs: (2j, 2j + 1) when interleaved (GGML's
// "normal" RoPE: Llama, candle's rope_i), (j, j + d / 2) otherwise (NEOX: Qwen2, candle's rope).
// Grid (n_rows, t), one thread per pair. Replaces the bias add, three transposing copies and
// two rope kernels of candle's path. Compiled at run time with NVRTC (no headers).

extern "C" __global__ void pm_qkv_rope_f32(const float* __restrict__ y, const float* __restrict__ bias,
                                           const float* __restrict__ cos, const float* __restrict__ sin,
                                           float* __restrict__ out, int t, int n_rows, int n_rot, int d, int pos,
                                           int interleaved, int has_bias) {
    const int row = blockIdx.x;
    const int i = blockIdx.y;
    const int half = d / 2;
    const float* src = y + ((long long)i * n_rows + row) * d;
    const float* b = bias + (long long)row * d;
    float* dst = out + ((long long)row * t + i) * d;
    const float* c = cos + (long long)(pos + i) * half;
    const float* s = sin + (long long)(pos + i) * half;
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        const int ia = interleaved ? 2 * j : j;
        const int ib = interleaved ? 2 * j + 1 : j + half;
        float xa = src[ia];
        float xb = src[ib];
        if (has_bias) {
            xa += b[ia];
            xb += b[ib];
        }
        if (row < n_rot) {
            const float cj = c[j];
            const float sj = s[j];
            dst[ia] = xa * cj - xb * sj;
            dst[ib] = xa * sj + xb * cj;
        } else {
            dst[ia] = xa;
            dst[ib] = xb;
        }
    }
}
