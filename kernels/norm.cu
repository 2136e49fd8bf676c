// Normalisation and rotary kernels.
//
// Row norms (layer_norm, layer_norm_modulate, rms_norm, rms_norm_rope): one block per row, the
// block strides over the row; statistics are f32 block reductions (warp shuffles, then one
// warp over the per-warp partials). LayerNorm uses two passes (mean, then Σ(x − mean)²) like the
// reference, not E[x²] − E[x]², which loses precision for rows with a large mean. Rows are
// re-read from global memory (L2-resident for the widths here: 4096 × 2 bytes).
// channel_rms_norm: one thread per position of a channel-first `[C, P]` tensor, looping over
// channels, so a warp reads 32 consecutive positions (coalesced).
// rope: one thread per rotated pair; angles are f32 tables.
#include "common.cuh"

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

// w, b may be null (absent = 1 / 0).
extern "C" __global__ void layer_norm(const TX* x, const TW* w, const TB* b, TX* y, u64 cols, float eps) {
    __shared__ float scratch[32];
    const u64 base = (u64)blockIdx.x * cols;
    float mean, rstd;
    row_mean_rstd(x, base, cols, eps, scratch, &mean, &rstd);
    for (u64 c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = (ld(x, base + c) - mean) * rstd;
        if (w) v *= ld(w, c);
        if (b) v += ld(b, c);
        st(y, base + c, v);
    }
}

// y = LN(x)·(1 + scale) + shift, LN without affine.
extern "C" __global__ void layer_norm_modulate(const TX* x, const TW* shift, const TB* scale, TX* y, u64 cols,
                                               float eps) {
    __shared__ float scratch[32];
    const u64 base = (u64)blockIdx.x * cols;
    float mean, rstd;
    row_mean_rstd(x, base, cols, eps, scratch, &mean, &rstd);
    for (u64 c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = (ld(x, base + c) - mean) * rstd;
        st(y, base + c, v * (1.0f + ld(scale, c)) + ld(shift, c));
    }
}

extern "C" __global__ void rms_norm(const TX* x, const TW* w, TX* y, u64 cols, float eps) {
    __shared__ float scratch[32];
    const u64 base = (u64)blockIdx.x * cols;
    float q = 0.0f;
    for (u64 c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = ld(x, base + c);
        q += v * v;
    }
    const float rs = rsqrtf(block_sum(q, scratch) / (float)cols + eps);
    for (u64 c = threadIdx.x; c < cols; c += blockDim.x) st(y, base + c, ld(x, base + c) * rs * ld(w, c));
}

// x [C, P]: y[c, p] = x[c, p] / max(‖x[:, p]‖₂, 1e-12) · √C · γ[c].
extern "C" __global__ void channel_rms_norm(const TX* x, const TW* gamma, TX* y, u64 channels, u64 positions) {
    FOR_EACH(p, positions) {
        float q = 0.0f;
        for (u64 c = 0; c < channels; ++c) {
            float v = ld(x, c * positions + p);
            q += v * v;
        }
        const float k = sqrtf((float)channels) / fmaxf(sqrtf(q), 1e-12f);
        for (u64 c = 0; c < channels; ++c) st(y, c * positions + p, ld(x, c * positions + p) * k * ld(gamma, c));
    }
}

// Element indices of pair m in a head of `d` elements: interleaved (2m, 2m+1) or half-split (m, m+d/2).
__device__ __forceinline__ void pair_index(int half_split, u64 m, u64 d, u64* i, u64* j) {
    if (half_split) {
        *i = m;
        *j = m + d / 2;
    } else {
        *i = 2 * m;
        *j = 2 * m + 1;
    }
}

// x [L, H, D]; cos, sin f32 [L, D/2]. One thread per pair.
extern "C" __global__ void rope(const TX* x, const float* cos_t, const float* sin_t, TX* y, u64 tokens, u64 heads,
                                u64 d, int half_split) {
    const u64 half = d / 2;
    FOR_EACH(t, tokens * heads * half) {
        const u64 m = t % half, row = t / half, l = row / heads;
        u64 i, j;
        pair_index(half_split, m, d, &i, &j);
        const float c = cos_t[l * half + m], s = sin_t[l * half + m];
        const float x1 = ld(x, row * d + i), x2 = ld(x, row * d + j);
        st(y, row * d + i, x1 * c - x2 * s);
        st(y, row * d + j, x2 * c + x1 * s);
    }
}

// Fused per-head RMSNorm then rotation; one block per (token, head) row of D elements. The
// normalised values stay f32 between the two steps.
extern "C" __global__ void rms_norm_rope(const TX* x, const TW* w, const float* cos_t, const float* sin_t, TX* y,
                                         u64 heads, u64 d, float eps, int half_split) {
    __shared__ float scratch[32];
    const u64 row = blockIdx.x, l = row / heads, base = row * d, half = d / 2;
    float q = 0.0f;
    for (u64 c = threadIdx.x; c < d; c += blockDim.x) {
        float v = ld(x, base + c);
        q += v * v;
    }
    const float rs = rsqrtf(block_sum(q, scratch) / (float)d + eps);
    for (u64 m = threadIdx.x; m < half; m += blockDim.x) {
        u64 i, j;
        pair_index(half_split, m, d, &i, &j);
        const float x1 = ld(x, base + i) * rs * ld(w, i), x2 = ld(x, base + j) * rs * ld(w, j);
        const float c = cos_t[l * half + m], s = sin_t[l * half + m];
        st(y, base + i, x1 * c - x2 * s);
        st(y, base + j, x2 * c + x1 * s);
    }
}
