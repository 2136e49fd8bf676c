// Rotary embeddings: rope (one thread per rotated pair) and the fused per-head RMSNorm + rope
// (one block per (token, head) row, the statistics as rms_norm's, the normalised values kept in
// f32 between the two steps). Angles are f32 tables `[L, D/2]`. Scalars: RopeArgs (ops/rope.rs).
//
// joint_qkv (at the end) writes the DiT's joint Q, K, V from both streams' QKV projections.
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

// Lane `lane`'s 4 consecutive elements v of a row of 128, RMS-normalised by w when NORM (a warp
// reduction), then rotated by row l of the tables when `rotate`, into o. Every lane of the warp
// calls it with the same row (the shuffles); `live` is false past the last row (o unset).
template <bool NORM>
__device__ __forceinline__ void norm_rope_row128(float* v, const TW* w, const float* cos_t, const float* sin_t,
                                                 u64 l, u32 pairing, bool rotate, bool live, float eps, float* o) {
    const u32 lane = threadIdx.x & 31;
    if (NORM) {
        const float q = warp_sum(v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3]);
        const float rs = rsqrtf(q / 128.0f + eps);
        float g[4];
        ld_run<4>(w, lane * 4, g);
#pragma unroll
        for (int k = 0; k < 4; ++k) v[k] = v[k] * rs * g[k];
    }
    if (!rotate) {
#pragma unroll
        for (int k = 0; k < 4; ++k) o[k] = v[k];
    } else if (pairing == ROPE_HALF_SPLIT) {
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
        norm_rope_row128<NORM>(v, w, cos_t, sin_t, l, p.pairing, true, live, p.eps, o);
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

// ---- joint_qkv ---------------------------------------------------------------------------------
// The joint attention's Q, K, V (`[L₀ + L₁, H, D]` each) from the two streams' fused projections
// x0 [L₀, 3·H·D], x1 [L₁, 3·H·D] (L₀ = p.tokens, L₁ = p.text_tokens): per (token, head) row, q
// and k RMS-normalised by the stream's gains and rotated where bit s of p.rotate is set (stream
// 0's tables with p.pairing, stream 1's with p.text_pairing), as rms_norm_rope computes them; v
// copied. One kernel replaces three slices, two norm(+rope) passes and three concatenations.

// Which stream a joint token `t` belongs to, and its operands.
struct JointStream {
    const TX* x;
    const TW* wq;
    const TW* wk;
    const float* cos_t;
    const float* sin_t;
    u64 l;  // the token within its stream
    u32 pairing;
    bool rotate;
};

__device__ __forceinline__ JointStream joint_stream(u64 t, const TX* x0, const TX* x1, const TW* q0, const TW* k0,
                                                    const TW* q1, const TW* k1, const float* cos0, const float* sin0,
                                                    const float* cos1, const float* sin1, const RopeArgs& p) {
    if (t < p.tokens) return {x0, q0, k0, cos0, sin0, t, p.pairing, (p.rotate & 1u) != 0};
    return {x1, q1, k1, cos1, sin1, t - p.tokens, p.text_pairing, (p.rotate & 2u) != 0};
}

// One block per (joint token, head) row of D elements.
extern "C" __global__ void joint_qkv(const TX* x0, const TX* x1, const TW* q0, const TW* k0, const TW* q1,
                                     const TW* k1, const float* cos0, const float* sin0, const float* cos1,
                                     const float* sin1, TX* yq, TX* yk, TX* yv, RopeArgs p) {
    __shared__ float scratch[32];
    const u64 d = p.head_dim, half = d / 2, hd = p.heads * d, row = blockIdx.x, out = row * d;
    u64 t, h;
    div_mod(row, p.heads, &t, &h);
    const JointStream s = joint_stream(t, x0, x1, q0, k0, q1, k1, cos0, sin0, cos1, sin1, p);
    const u64 src = s.l * 3 * hd + h * d;
    for (int part = 0; part < 2; ++part) {
        const TW* w = part == 0 ? s.wq : s.wk;
        TX* y = part == 0 ? yq : yk;
        const u64 base = src + part * hd;
        const float rs = row_rms_rstd(s.x, base, d, p.eps, scratch);
        if (s.rotate) {
            for (u64 m = threadIdx.x; m < half; m += blockDim.x) {
                u64 i, j;
                pair_index(s.pairing, m, d, &i, &j);
                const float x1 = ld(s.x, base + i) * rs * ld(w, i), x2 = ld(s.x, base + j) * rs * ld(w, j);
                rotate_store(y, out, i, j, x1, x2, s.cos_t[s.l * half + m], s.sin_t[s.l * half + m]);
            }
        } else {
            for (u64 c = threadIdx.x; c < d; c += blockDim.x) st(y, out + c, ld(s.x, base + c) * rs * ld(w, c));
        }
    }
    for (u64 c = threadIdx.x; c < d; c += blockDim.x) st(yv, out + c, ld(s.x, src + 2 * hd + c));
}

// Heads of 128: a warp per (joint token, head) row, as rope_rows128 (every warp of a block runs
// the same iterations; a row's stream, and so whether it rotates, is the same for all its lanes).
extern "C" __global__ void joint_qkv_warp(const TX* x0, const TX* x1, const TW* q0, const TW* k0, const TW* q1,
                                          const TW* k1, const float* cos0, const float* sin0, const float* cos1,
                                          const float* sin1, TX* yq, TX* yk, TX* yv, RopeArgs p) {
    if (p.head_dim != 128) __trap();  // the host launches it only for heads of 128
    const u32 lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const u64 rows = (p.tokens + p.text_tokens) * p.heads, hd = p.heads * 128;
    for (u64 first = (u64)blockIdx.x * warps; first < rows; first += (u64)gridDim.x * warps) {
        const u64 row = first + (threadIdx.x >> 5);
        const bool live = row < rows;
        u64 t, h;
        div_mod(live ? row : 0, p.heads, &t, &h);
        const JointStream s = joint_stream(t, x0, x1, q0, k0, q1, k1, cos0, sin0, cos1, sin1, p);
        const u64 src = s.l * 3 * hd + h * 128 + lane * 4, dst = row * 128 + lane * 4;
        float v[4] = {0.0f, 0.0f, 0.0f, 0.0f}, o[4];
        for (int part = 0; part < 2; ++part) {
            if (live) ld_run<4>(s.x, src + part * hd, v);
            norm_rope_row128<true>(v, part == 0 ? s.wq : s.wk, s.cos_t, s.sin_t, s.l, s.pairing, s.rotate, live,
                                   p.eps, o);
            if (live) st_run<4>(part == 0 ? yq : yk, dst, o);
        }
        if (live) {
            ld_run<4>(s.x, src + 2 * hd, v);
            st_run<4>(yv, dst, v);
        }
    }
}
