// Rotary embeddings: rope (one thread per rotated pair) and the fused per-head RMSNorm + rope
// (one block per (token, head) row, the statistics as rms_norm's, the normalised values kept in
// f32 between the two steps). Angles are f32 tables `[L, D/2]`. Scalars: RopeArgs (ops/rope.rs).
#include "common.cuh"

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
