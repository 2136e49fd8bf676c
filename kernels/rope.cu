// Rotary embeddings: rope (one thread per rotated pair) and the fused per-head RMSNorm + rope
// (one block per (token, head) row, the statistics as rms_norm's, the normalised values kept in
// f32 between the two steps). Angles are f32 tables `[L, D/2]`. Scalars: RopeArgs (ops/rope.rs).
//
// Heads of 128 (the DiT's and Qwen3's) take the `_warp` kernels instead: one warp per row, each
// lane holding 4 consecutive elements (one 8-byte access of a 16-bit type), the RMS statistic a
// warp reduction, a rotated pair either within a lane (interleaved) or across lanes l and l + 16
// (half-split, one shuffle). A block of a thousand-odd rows per launch instead of one block per
// row: the DiT's image stream has 262144 (token, head) rows per projection.
#include "vec.cuh"

// Element indices of pair m in a head of `d` elements: interleaved (2m, 2m+1) or half-split
// (m, m + d/2).
__device__ __forceinline__ void pair_index(u32 pairing, u64 m, u64 d, u64* i, u64* j) {
    if (pairing == ROPE_HALF_SPLIT) {
        *i = m;
        *j = m + d / 2;
    } else {
        *i = 2 * m;
        *j = 2 * m + 1;
    }
}

// Stores (x1, x2) rotated by the angle with cosine c and sine s at elements i, j of the head at
// `base`.
__device__ __forceinline__ void rotate_store(TX* y, u64 base, u64 i, u64 j, float x1, float x2, float c, float s) {
    st(y, base + i, x1 * c - x2 * s);
    st(y, base + j, x2 * c + x1 * s);
}

// x [L, H, D]. One thread per pair.
extern "C" __global__ void rope(const TX* x, const float* cos_t, const float* sin_t, TX* y, RopeArgs p) {
    const u64 d = p.head_dim, half = d / 2;
    FOR_EACH(t, p.tokens * p.heads * half) {
        const u64 m = t % half, row = t / half, l = row / p.heads;
        u64 i, j;
        pair_index(p.pairing, m, d, &i, &j);
        const float c = cos_t[l * half + m], s = sin_t[l * half + m];
        rotate_store(y, row * d, i, j, ld(x, row * d + i), ld(x, row * d + j), c, s);
    }
}

// One block per (token, head) row of D elements.
extern "C" __global__ void rms_norm_rope(const TX* x, const TW* w, const float* cos_t, const float* sin_t, TX* y,
                                         RopeArgs p) {
    __shared__ float scratch[32];
    const u64 d = p.head_dim, row = blockIdx.x, l = row / p.heads, base = row * d, half = d / 2;
    const float rs = row_rms_rstd(x, base, d, p.eps, scratch);
    for (u64 m = threadIdx.x; m < half; m += blockDim.x) {
        u64 i, j;
        pair_index(p.pairing, m, d, &i, &j);
        const float x1 = ld(x, base + i) * rs * ld(w, i), x2 = ld(x, base + j) * rs * ld(w, j);
        rotate_store(y, base, i, j, x1, x2, cos_t[l * half + m], sin_t[l * half + m]);
    }
}

// The rows of 128 elements of `x [tokens, heads, 128]`, a warp each (8 per block of 256), with
// the RMSNorm by `w` first where NORM. Every warp of a block runs the same number of iterations,
// idle past the last row, so the block's shuffles stay in step.
template <bool NORM>
__device__ __forceinline__ void rope_rows128(const TX* x, const TW* w, const float* cos_t, const float* sin_t, TX* y,
                                             const RopeArgs& p) {
    if (p.head_dim != 128) __trap();  // the host launches these only for heads of 128
    const u32 lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const u64 rows = p.tokens * p.heads;
    for (u64 first = (u64)blockIdx.x * warps; first < rows; first += (u64)gridDim.x * warps) {
        const u64 row = first + (threadIdx.x >> 5);
        const bool live = row < rows;
        u64 l, h;
        div_mod(live ? row : 0, p.heads, &l, &h);
        const u64 base = row * 128 + lane * 4;
        float v[4] = {0.0f, 0.0f, 0.0f, 0.0f}, o[4];
        if (live) ld_run<4>(x, base, v);
        if (NORM) {
            const float q = warp_sum(v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3]);
            const float rs = rsqrtf(q / 128.0f + p.eps);
            float g[4];
            ld_run<4>(w, lane * 4, g);
#pragma unroll
            for (int k = 0; k < 4; ++k) v[k] = v[k] * rs * g[k];
        }
        if (p.pairing == ROPE_HALF_SPLIT) {
            // Lane l < 16 holds the first elements of pairs 4l..4l+3, lane l + 16 their partners.
            float c[4], s[4], other[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) other[k] = __shfl_xor_sync(0xffffffffu, v[k], 16);
            if (live) {
                ld_run<4>(cos_t, l * 64 + (lane & 15) * 4, c);
                ld_run<4>(sin_t, l * 64 + (lane & 15) * 4, s);
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    o[k] = lane < 16 ? v[k] * c[k] - other[k] * s[k] : v[k] * c[k] + other[k] * s[k];
            }
        } else if (live) {
            // Pairs (2m, 2m + 1): the lane holds pairs 2·lane and 2·lane + 1.
            float c[2], s[2];
            ld_run<2>(cos_t, l * 64 + lane * 2, c);
            ld_run<2>(sin_t, l * 64 + lane * 2, s);
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const float x1 = v[2 * j], x2 = v[2 * j + 1];
                o[2 * j] = x1 * c[j] - x2 * s[j];
                o[2 * j + 1] = x2 * c[j] + x1 * s[j];
            }
        }
        if (live) st_run<4>(y, base, o);
    }
}

extern "C" __global__ void rope_warp(const TX* x, const float* cos_t, const float* sin_t, TX* y, RopeArgs p) {
    rope_rows128<false>(x, (const TW*)nullptr, cos_t, sin_t, y, p);
}

extern "C" __global__ void rms_norm_rope_warp(const TX* x, const TW* w, const float* cos_t, const float* sin_t,
                                              TX* y, RopeArgs p) {
    rope_rows128<true>(x, w, cos_t, sin_t, y, p);
}
