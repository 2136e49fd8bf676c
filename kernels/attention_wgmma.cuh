// Flash attention on Hopper's warpgroup MMA (sm_90a), head dim 128, same-dtype bf16/f16: the
// DiT's and Qwen's text attention. Same contract as attention.cu's kernels (q [Lq, Hq, D],
// k, v [Lk, Hkv, D], grouped-query heads, causal from the end, f32 softmax statistics).
//
// A block of 256 threads (two warpgroups) owns WA_BR = 128 queries of one head; warpgroup w the
// rows 64w … 64w + 63, in wgmma's accumulator layout (hopper.cuh). Per tile of WA_BC = 128 keys:
//   S = Q·Kᵀ    wgmma m64n128k16 × 8, Q and K from shared memory (K-major, 128-byte swizzle,
//               the head dim split into two 64-element halves);
//   softmax     online, in registers: scale·log2(e) folded into one multiply, row max and sum
//               over the quad by shuffles, exp2, the running output rescaled;
//   O += P·V    wgmma m64n128k16 × 8 with P from registers (the S accumulators packed in pairs
//               are already the A fragments) and V from shared memory as Vᵀ (K-major: a row
//               per head-dim element, keys contiguous), transposed on the way in.
// K arrives by cp.async; V is read into registers for the next tile while S is computed, and
// transposed into the other stage's Vᵀ while P·V runs. Both stages' last readers (the previous
// tile's wgmmas) are retired before the barrier that opens a tile, so two stages suffice.
#pragma once
#include "hopper.cuh"

#if defined(MMA_OK) && defined(WGMMA_OK)

static_assert(WA_THREADS == 256 && WA_BR == 128 && WA_BC == 128, "two warpgroups × 64 queries; 128-key tiles");

// Two f32 as the 16-bit pair (lo, hi) of one register.
__device__ __forceinline__ u32 wa_pack(float lo, float hi) {
    return (u32)from_f32<TX>(lo).bits | ((u32)from_f32<TX>(hi).bits << 16);
}

// One query-row pair's online-softmax step over key tile t (both Hopper kernels): S's scores
// s[4n + e] (row row0 + 8·(e / 2), key t·BC + 8n + 2·t4 + e % 2) scaled by sl2 (scale · log2 e),
// or −∞ for keys past kv_len and, causal, past the row's diagonal (+ shift) unless the caller
// knows the whole tile visible; then the quad's new row maxima into m, the maxima to subtract
// into mu (0 while nothing is visible: p = 0, not NaN), the factor from the old maxima to the new
// into alpha, and the running sums l rescaled by it. The caller rescales O and sums P.
template <int BC>
__device__ __forceinline__ void wgmma_softmax_max_step(float* s, int t, int t4, int row0, int kv_len, bool causal,
                                                       int shift, bool whole, float sl2, float* m, float* l,
                                                       float* mu, float* alpha) {
    float mt[2] = {NEG_INF, NEG_INF};
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int r = e >> 1, key = t * BC + n * 8 + 2 * t4 + (e & 1);
            const bool visible = whole || (key < kv_len && (!causal || key <= row0 + 8 * r + shift));
            s[4 * n + e] = visible ? s[4 * n + e] * sl2 : NEG_INF;
            mt[r] = fmaxf(mt[r], s[4 * n + e]);
        }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 1));
        mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 2));
        const float mn = fmaxf(m[r], mt[r]);
        mu[r] = mn == NEG_INF ? 0.0f : mn;
        alpha[r] = exp2f(m[r] - mu[r]);
        m[r] = mn;
        l[r] *= alpha[r];
    }
}

// The end of both Hopper kernels: one thread's rows row0 and row0 + 8 of O (o[4n + 2r + e]: row
// row0 + 8r, column 8n + 2·t4 + e of head h) over the quad's summed l, stored to y (rows
// `row_stride` elements apart) where they lie before q_len; a row that saw no key stores 0.
template <int D>
__device__ __forceinline__ void wgmma_attention_store(const float* o, float* l, TX* y, u64 row_stride, int h,
                                                      int row0, int q_len, int t4) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = row0 + 8 * r;
        if (row >= q_len) continue;
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        TX* out = y + (u64)row * row_stride + (u64)h * D + 2 * t4;
#pragma unroll
        for (int n = 0; n < D / 8; ++n)
            *(u32*)(out + n * 8) = wa_pack(o[4 * n + 2 * r] * inv, o[4 * n + 2 * r + 1] * inv);
    }
}

__device__ __forceinline__ void attention_wgmma_d128_impl(const TX* q, const TX* k, const TX* v, TX* y, int q_len,
                                                          int kv_len, int q_heads, int kv_heads, float scale,
                                                          int causal) {
    constexpr int D = 128, BR = WA_BR, BC = WA_BC;
    // Shared: Q (2 halves of BR rows × 128 B), then 2 stages of K (2 halves of BC rows) and Vᵀ
    // (2 key halves of D rows). Every part is a multiple of 1024 bytes.
    constexpr u32 Q_HALF = BR * 128, K_HALF = BC * 128, V_HALF = D * 128;
    constexpr u32 STAGE = 2 * K_HALF + 2 * V_HALF, Q_BYTES = 2 * Q_HALF;
    DYNAMIC_SMEM(smem_raw);
    REQUIRE_DYNAMIC_SMEM(Q_BYTES + 2 * STAGE + 1024);
    const u32 raw = smem_addr(smem_raw), base = (raw + 1023) & ~1023u;
    unsigned char* const sm = smem_raw + (base - raw);

    const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int h = blockIdx.y, kh = h / (q_heads / kv_heads), q0 = blockIdx.x * BR;
    const int shift = kv_len - q_len;
    // Keys any query of this block sees.
    const int kv_end = causal ? min(kv_len, q0 + BR + shift) : kv_len;
    const int tiles = kv_end > 0 ? (kv_end + BC - 1) / BC : 0;
    const u16* qb = (const u16*)q;
    const u16* kb = (const u16*)k;
    const u16* vb = (const u16*)v;
    const u64 q_row = (u64)q_heads * D, kv_row = (u64)kv_heads * D;

    // Q and K tiles: chunk c of rows × 16 chunks is row c / 16, head-dim chunk c % 16 (half
    // (c % 16) / 8), so 16 consecutive threads read one row's 256 bytes.
    auto load_rows = [&](unsigned char* dst, u32 half_bytes, const u16* src, u64 row_stride, int first, int limit,
                         int rows) {
        for (int c = tid; c < rows * 16; c += WA_THREADS) {
            const int r = c >> 4, dc = c & 15, row = first + r;
            const bool in = row < limit;
            cp_async16(dst + (dc >> 3) * half_bytes + sw128_offset(r, dc & 7),
                       in ? src + (u64)row * row_stride + dc * 8 : src, in ? 16 : 0);
        }
    };
    auto stage_of = [&](int t) { return sm + Q_BYTES + (t & 1) * STAGE; };
    // V tile rows as pairs of keys: item i is key pair p = i % 64 (keys 2p, 2p + 1) and head-dim
    // chunk dc = i / 64; a warp's 32 lanes then write one 128-byte Vᵀ row segment per element.
    uint4 vr[4][2];
    auto read_v = [&](int t) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int it = tid + WA_THREADS * i, p = it & 63, dc = it >> 6;
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int key = t * BC + 2 * p + e;
                vr[i][e] = key < kv_len ? *(const uint4*)(vb + (u64)key * kv_row + (u64)kh * D + dc * 8)
                                        : make_uint4(0, 0, 0, 0);
            }
        }
    };
    auto write_vt = [&](int t) {
        unsigned char* vt = stage_of(t) + 2 * K_HALF;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int it = tid + WA_THREADS * i, p = it & 63, dc = it >> 6;
            const int key = 2 * p, half = key >> 6, col = key & 63;
            const u32* lo = (const u32*)&vr[i][0];
            const u32* hi = (const u32*)&vr[i][1];
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                const int d = dc * 8 + e;
                const u32 a = lo[e >> 1], b = hi[e >> 1];
                // Element e of each key's chunk: the low or high half of word e / 2.
                const u32 pair = (e & 1) ? ((a >> 16) | (b & 0xffff0000u)) : ((a & 0xffffu) | (b << 16));
                *(u32*)(vt + half * V_HALF + sw128_offset(d, col >> 3) + (col & 7) * 2) = pair;
            }
        }
    };

    load_rows(sm, Q_HALF, qb + (u64)h * D, q_row, q0, q_len, BR);
    if (tiles > 0) load_rows(stage_of(0), K_HALF, kb + (u64)kh * D, kv_row, 0, kv_len, BC);
    cp_async_commit();
    if (tiles > 0) {
        read_v(0);
        write_vt(0);
    }
    fence_proxy_async();

    float o[64], s[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.0f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};
    const float sl2 = scale * 1.4426950408889634f;
    const int row0 = q0 + wg * 64 + ((tid >> 5) & 3) * 16 + g;  // this thread's rows: row0, row0 + 8
    const u32 q_desc = base + wg * 64 * 128;

    for (int t = 0; t < tiles; ++t) {
        cp_async_wait<0>();
        fence_proxy_async();
        __syncthreads();
        const u32 k_addr = base + Q_BYTES + (t & 1) * STAGE, v_addr = k_addr + 2 * K_HALF;

#pragma unroll
        for (int i = 0; i < 64; ++i) s[i] = 0.0f;
#pragma unroll
        for (int i = 0; i < 64; ++i) fence_operand(s[i]);
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
            const u32 off = (ks & 3) * 32;
            wgmma_m64n128k16(s, sw128_desc(q_desc + (ks >> 2) * Q_HALF + off),
                             sw128_desc(k_addr + (ks >> 2) * K_HALF + off), TX{});
        }
        wgmma_commit();
        // The next tile's K (into the other stage, whose readers retired before the barrier),
        // and its V into registers, while S is computed.
        const bool more = t + 1 < tiles;
        if (more) load_rows(stage_of(t + 1), K_HALF, kb + (u64)kh * D, kv_row, (t + 1) * BC, kv_len, BC);
        cp_async_commit();
        if (more) read_v(t + 1);
        wgmma_wait<0>();
#pragma unroll
        for (int i = 0; i < 64; ++i) fence_operand(s[i]);

        // Scale, mask, the new row maxima; O to them.
        float mu[2], alpha[2];
        wgmma_softmax_max_step<BC>(s, t, t4, row0, kv_len, causal, shift, false, sl2, m, l, mu, alpha);
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                o[4 * n + 2 * r] *= alpha[r];
                o[4 * n + 2 * r + 1] *= alpha[r];
            }
        // P = exp2(S − m) as A fragments: k16 step kk takes n8 blocks 2kk, 2kk + 1.
        u32 pf[BC / 16][4];
#pragma unroll
        for (int n = 0; n < BC / 8; ++n) {
            float p[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) p[e] = exp2f(s[4 * n + e] - mu[e >> 1]);
            l[0] += p[0] + p[1];
            l[1] += p[2] + p[3];
            pf[n >> 1][(n & 1) * 2 + 0] = wa_pack(p[0], p[1]);
            pf[n >> 1][(n & 1) * 2 + 1] = wa_pack(p[2], p[3]);
        }

#pragma unroll
        for (int i = 0; i < 64; ++i) fence_operand(o[i]);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk)
            wgmma_m64n128k16_rs(o, pf[kk], sw128_desc(v_addr + (kk >> 2) * V_HALF + (kk & 3) * 32), TX{});
        wgmma_commit();
        if (more) write_vt(t + 1);
        fence_proxy_async();
        wgmma_wait<0>();
#pragma unroll
        for (int i = 0; i < 64; ++i) fence_operand(o[i]);
    }
    cp_async_wait<0>();

    wgmma_attention_store<D>(o, l, y, q_row, h, row0, q_len, t4);
}

#endif
