// Normalisation kernels.
//
// Row norms (layer_norm, also for layer_norm_modulate, and rms_norm): one block per row, the block strides
// over the row; statistics are f32 block reductions (warp shuffles, then one warp over the
// per-warp partials). LayerNorm uses two passes (mean, then Σ(x − mean)²) like the reference,
// not E[x²] − E[x]², which loses precision for rows with a large mean. A row whose width is a
// multiple of VEC and at most VEC · ROW_RUNS per thread (8192 at 256 threads; the DiT's and
// Qwen's 4096 included) is read once, in 16-byte runs held in registers through both passes and
// the output; other rows are re-read from global memory for each pass.
// Channel norms (channel_rms_norm, cfg_renorm): one thread per position of a channel-first
// `[C, P]` tensor, looping over channels, so a warp reads 32 consecutive positions (coalesced).
// Scalars: NormArgs (ops/norm.rs).
#include "vec.cuh"

// Runs of VEC elements a thread holds of a cached row: run k of thread t is run t + k·blockDim.x.
#define ROW_RUNS 4

// Whether the block's row of `cols` elements takes the cached path.
__device__ __forceinline__ bool row_cached(u64 cols) {
    return cols % VEC == 0 && cols <= (u64)VEC * ROW_RUNS * blockDim.x;
}

// This thread's runs of the row at `base` into v (those past the row's end are left unset and
// never read: `has(k)` says which exist).
#define ROW_RUN_LOOP(k, r, cols)                                                   \
    _Pragma("unroll") for (int k = 0; k < ROW_RUNS; ++k)                          \
        if (const u64 r = threadIdx.x + (u64)k * blockDim.x; r < (cols) / VEC)

// Mean and 1/√(var + eps) of the row of `cols` elements at `base` (biased variance, two passes),
// reduced over the block; every thread gets both.
__device__ __forceinline__ void row_mean_rstd(const TX* x, u64 base, u64 cols, float eps, float* scratch,
                                              float* mean, float* rstd) {
    float s = 0.0f;
    for (u64 c = threadIdx.x; c < cols; c += blockDim.x) s += ld(x, base + c);
    const float m = block_sum(s, scratch) / (float)cols;
    float q = 0.0f;
    for (u64 c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = ld(x, base + c) - m;
        q += d * d;
    }
    *mean = m;
    *rstd = rsqrtf(block_sum(q, scratch) / (float)cols + eps);
}

// layer_norm of a cached row (row_cached): the row read once.
__device__ __forceinline__ void layer_norm_cached(const TX* x, const TW* w, const TB* b, TX* y, const NormArgs& p,
                                                  float* scratch) {
    const u64 base = (u64)blockIdx.x * p.cols;
    float v[ROW_RUNS][VEC];
    float s = 0.0f;
    ROW_RUN_LOOP(k, r, p.cols) {
        ld_run<VEC>(x, base + r * VEC, v[k]);
#pragma unroll
        for (int e = 0; e < VEC; ++e) s += v[k][e];
    }
    const float mean = block_sum(s, scratch) / (float)p.cols;
    float q = 0.0f;
    ROW_RUN_LOOP(k, r, p.cols) {
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const float d = v[k][e] - mean;
            q += d * d;
        }
    }
    const float rstd = rsqrtf(block_sum(q, scratch) / (float)p.cols + p.eps);
    ROW_RUN_LOOP(k, r, p.cols) {
        float f[VEC], t[VEC];
        if (w) {
            ld_run<VEC>(w, r * VEC, f);
#pragma unroll
            for (int e = 0; e < VEC; ++e) f[e] += p.weight_offset;
        } else {
#pragma unroll
            for (int e = 0; e < VEC; ++e) f[e] = p.weight_offset;
        }
        if (b) ld_run<VEC>(b, r * VEC, t);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            f[e] = (v[k][e] - mean) * rstd * f[e];
            if (b) f[e] += t[e];
        }
        st_run<VEC>(y, base + r * VEC, f);
    }
}

// y = x̂·(p.weight_offset + w[c]) + b[c], x̂ the row normalised without affine; w, b may be null
// (absent = 0). layer_norm passes its weight with offset 0 (offset 1 without a weight);
// layer_norm_modulate passes scale as w and shift as b with offset 1.
extern "C" __global__ void layer_norm(const TX* x, const TW* w, const TB* b, TX* y, NormArgs p) {
    __shared__ float scratch[32];
    if (row_cached(p.cols)) {
        layer_norm_cached(x, w, b, y, p, scratch);
        return;
    }
    const u64 base = (u64)blockIdx.x * p.cols;
    float mean, rstd;
    row_mean_rstd(x, base, p.cols, p.eps, scratch, &mean, &rstd);
    for (u64 c = threadIdx.x; c < p.cols; c += blockDim.x) {
        const float factor = w ? p.weight_offset + ld(w, c) : p.weight_offset;
        float v = (ld(x, base + c) - mean) * rstd * factor;
        if (b) v += ld(b, c);
        st(y, base + c, v);
    }
}

extern "C" __global__ void rms_norm(const TX* x, const TW* w, TX* y, NormArgs p) {
    __shared__ float scratch[32];
    const u64 base = (u64)blockIdx.x * p.cols;
    if (row_cached(p.cols)) {
        float v[ROW_RUNS][VEC];
        float q = 0.0f;
        ROW_RUN_LOOP(k, r, p.cols) {
            ld_run<VEC>(x, base + r * VEC, v[k]);
#pragma unroll
            for (int e = 0; e < VEC; ++e) q += v[k][e] * v[k][e];
        }
        const float rs = rsqrtf(block_sum(q, scratch) / (float)p.cols + p.eps);
        ROW_RUN_LOOP(k, r, p.cols) {
            float g[VEC];
            ld_run<VEC>(w, r * VEC, g);
#pragma unroll
            for (int e = 0; e < VEC; ++e) g[e] = v[k][e] * rs * g[e];
            st_run<VEC>(y, base + r * VEC, g);
        }
        return;
    }
    const float rs = row_rms_rstd(x, base, p.cols, p.eps, scratch);
    for (u64 c = threadIdx.x; c < p.cols; c += blockDim.x) st(y, base + c, ld(x, base + c) * rs * ld(w, c));
}

// Rows of 128 (the per-head q/k norms of the DiT's text stream and of Qwen3): a warp per row,
// 4 elements a lane (one 8-byte access of a 16-bit type), where one block per row would leave
// most of each block idle and run tens of thousands of blocks. Every warp of a block runs the
// same number of iterations, idle past the last row, so the block's shuffles stay in step.
extern "C" __global__ void rms_norm_warp(const TX* x, const TW* w, TX* y, NormArgs p) {
    if (p.cols != 128) __trap();  // the host launches it only for rows of 128
    const u32 lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    for (u64 first = (u64)blockIdx.x * warps; first < p.rows; first += (u64)gridDim.x * warps) {
        const u64 row = first + (threadIdx.x >> 5), base = row * 128 + lane * 4;
        const bool live = row < p.rows;
        float v[4] = {0.0f, 0.0f, 0.0f, 0.0f}, g[4];
        if (live) ld_run<4>(x, base, v);
        const float rs = rsqrtf(warp_sum(v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3]) / 128.0f + p.eps);
        if (!live) continue;
        ld_run<4>(w, lane * 4, g);
#pragma unroll
        for (int k = 0; k < 4; ++k) g[k] = v[k] * rs * g[k];
        st_run<4>(y, base, g);
    }
}

// x [C, P]: y[c, p] = x[c, p] / max(‖x[:, p]‖₂, 1e-12) · √C · γ[c].
extern "C" __global__ void channel_rms_norm(const TX* x, const TW* gamma, TX* y, NormArgs p) {
    const u64 channels = p.channels, positions = p.positions;
    FOR_EACH(pos, positions) {
        float q = 0.0f;
        for (u64 c = 0; c < channels; ++c) {
            float v = ld(x, c * positions + pos);
            q += v * v;
        }
        const float k = sqrtf((float)channels) / fmaxf(sqrtf(q), 1e-12f);
        for (u64 c = 0; c < channels; ++c)
            st(y, c * positions + pos, ld(x, c * positions + pos) * k * ld(gamma, c));
    }
}

// g = u + s·(c − u); y[:, p] = g[:, p]·‖c[:, p]‖₂ / max(‖g[:, p]‖₂, 1e-6).
extern "C" __global__ void cfg_renorm(const TX* cond, const TW* uncond, TX* y, NormArgs p) {
    const u64 channels = p.channels, positions = p.positions;
    const float guidance = p.guidance;
    FOR_EACH(pos, positions) {
        float cc = 0.0f, gg = 0.0f;
        for (u64 ch = 0; ch < channels; ++ch) {
            const float c = ld(cond, ch * positions + pos), u = ld(uncond, ch * positions + pos);
            const float g = u + guidance * (c - u);
            cc += c * c;
            gg += g * g;
        }
        const float k = sqrtf(cc) / fmaxf(sqrtf(gg), 1e-6f);
        for (u64 ch = 0; ch < channels; ++ch) {
            const float c = ld(cond, ch * positions + pos), u = ld(uncond, ch * positions + pos);
            st(y, ch * positions + pos, (u + guidance * (c - u)) * k);
        }
    }
}
