// A residual add and the RMS norm that follows it, in one pass: for each row r of n values,
// sum = x + y, then normed = sum / sqrt(mean(sum^2) + eps) * w. out: [2, rows, n], the sums
// first (the new residual stream), then the normed rows (the next projection's input).
// One block per row; the sum of squares is reduced across the block through shared memory.
// Replaces candle's add and rms_norm kernels. Compiled at run time with NVRTC (no headers).

extern "C" __global__ void pm_add_rms_norm_f32(const float* __restrict__ x, const float* __restrict__ y,
                                               const float* __restrict__ w, float* __restrict__ out, int rows, int n,
                                               float eps) {
    __shared__ float partial[32];
    const int r = blockIdx.x;
    const float* xr = x + (long long)r * n;
    const float* yr = y + (long long)r * n;
    float* sum = out + (long long)r * n;
    float* normed = out + ((long long)rows + r) * n;
    float sq = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float s = xr[i] + yr[i];
        sum[i] = s;
        sq += s * s;
    }
    for (int off = 16; off > 0; off >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, off);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = sq;
    __syncthreads();
    if (warp == 0) {
        sq = lane < (int)(blockDim.x >> 5) ? partial[lane] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, off);
        if (lane == 0) partial[0] = sq;
    }
    __syncthreads();
    const float scale = rsqrtf(partial[0] / (float)n + eps);
    // Each thread reads back only the sums it wrote itself.
    for (int i = threadIdx.x; i < n; i += blockDim.x) normed[i] = sum[i] * scale * w[i];
}
