// Attention for one new token (decode), read straight from pagemind's KV cache.
//
// q: [n_head, d] (contiguous); k, v: [n_kv, cap, d] cache buffers of which the first `len`
// positions are valid (`kv_stride` = cap * d floats between KV heads); out: [n_head, d].
// Grouped-query attention: query head h reads KV head h / n_rep.
//
// Split-K ("flash decoding"), two kernels. `pm_decode_attention_part_f32`: a grid of
// (n_head, n_split) blocks, block (h, b) takes keys [b * chunk, (b + 1) * chunk); its warps take
// one key at a time (the 32 lanes split the d components, d % 32 == 0, d <= 256; a shuffle
// reduction gives the score) and keep an online softmax (running max, sum, weighted sum of
// values), merged across warps in shared memory and written as a partial (d sums, max, sum).
// `pm_decode_attention_merge_f32`: one block per head rescales the partials to their common max
// and divides. Enough blocks to fill the GPU at any context length; nothing is sized by `len`
// but the partials. Compiled at run time with NVRTC (no headers).

#define PM_MAX_PER_LANE 8
#define PM_NEG_INF __int_as_float(0xff800000)

extern "C" __global__ void pm_decode_attention_part_f32(const float* __restrict__ q, const float* __restrict__ k,
                                                        const float* __restrict__ v, float* __restrict__ part,
                                                        int n_rep, int len, int kv_stride, int d, float scale,
                                                        int chunk) {
    const int h = blockIdx.x;
    const int b = blockIdx.y;
    const int n_split = gridDim.y;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int n_warps = blockDim.x >> 5;
    const int per = d / 32;
    const float* kb = k + (long long)(h / n_rep) * kv_stride;
    const float* vb = v + (long long)(h / n_rep) * kv_stride;
    const int end = min(len, (b + 1) * chunk);

    float qv[PM_MAX_PER_LANE], acc[PM_MAX_PER_LANE];
    for (int i = 0; i < per; i++) {
        qv[i] = q[h * d + lane + 32 * i];
        acc[i] = 0.f;
    }
    float m = PM_NEG_INF, s = 0.f;
    for (int p = b * chunk + warp; p < end; p += n_warps) {
        float x = 0.f;
        for (int i = 0; i < per; i++) x += qv[i] * kb[(long long)p * d + lane + 32 * i];
        for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
        x *= scale;
        const float mn = fmaxf(m, x);
        const float c = expf(m - mn);  // 0 on the first key (m = -inf)
        const float e = expf(x - mn);
        s = s * c + e;
        for (int i = 0; i < per; i++) acc[i] = acc[i] * c + e * vb[(long long)p * d + lane + 32 * i];
        m = mn;
    }

    __shared__ float sm[32], ss[32];
    extern __shared__ float so[];  // n_warps * d partial outputs
    if (lane == 0) {
        sm[warp] = m;
        ss[warp] = s;
    }
    for (int i = 0; i < per; i++) so[warp * d + lane + 32 * i] = acc[i];
    __syncthreads();
    if (warp != 0) return;
    float mx = PM_NEG_INF;
    for (int w = 0; w < n_warps; w++) mx = fmaxf(mx, sm[w]);
    float total = 0.f, o[PM_MAX_PER_LANE];
    for (int i = 0; i < per; i++) o[i] = 0.f;
    for (int w = 0; w < n_warps; w++) {
        const float c = sm[w] == PM_NEG_INF ? 0.f : expf(sm[w] - mx);  // a warp that saw no key
        total += ss[w] * c;
        for (int i = 0; i < per; i++) o[i] += so[w * d + lane + 32 * i] * c;
    }
    float* dst = part + ((long long)h * n_split + b) * (d + 2);
    for (int i = 0; i < per; i++) dst[lane + 32 * i] = o[i];
    if (lane == 0) {
        dst[d] = mx;
        dst[d + 1] = total;
    }
}

// part: [n_head, n_split, d + 2] from the kernel above (every split holds at least one key).
extern "C" __global__ void pm_decode_attention_merge_f32(const float* __restrict__ part, float* __restrict__ out,
                                                         int n_split, int d) {
    const int h = blockIdx.x;
    const float* src = part + (long long)h * n_split * (d + 2);
    float mx = PM_NEG_INF;
    for (int b = 0; b < n_split; b++) mx = fmaxf(mx, src[b * (d + 2) + d]);
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float total = 0.f, o = 0.f;
        for (int b = 0; b < n_split; b++) {
            const float* p = src + b * (d + 2);
            const float c = expf(p[d] - mx);
            total += p[d + 1] * c;
            o += p[i] * c;
        }
        out[h * d + i] = o / total;
    }
}
