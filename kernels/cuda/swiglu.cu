// The feed-forward gate of Llama and Qwen2 after the fused gate/up product, in one pass:
// out[r, j] = silu(gu[r, j]) * gu[r, ff + j], where gu: [rows, 2 * ff] (gate, then up) and
// out: [rows, ff]. Replaces two copies (the halves), the SiLU and the product of candle's path.
// Compiled at run time with NVRTC (no headers).

extern "C" __global__ void pm_swiglu_f32(const float* __restrict__ gu, float* __restrict__ out, int rows, int ff) {
    const long long n = (long long)rows * ff;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (long long)gridDim.x * blockDim.x) {
        const long long r = k / ff;
        const long long j = k - r * ff;
        const float g = gu[r * 2 * ff + j];
        const float u = gu[r * 2 * ff + ff + j];
        out[k] = g / (1.0f + expf(-g)) * u;
    }
}
