// Flash-style attention forward: y = softmax(scale·q·kᵀ)·v per head, with an online softmax over
// key tiles, so no score matrix exists in memory at any length. Causal masks key j for query i
// when j > i + Lk − Lq; grouped-query attention maps query head h to kv head h / (Hq / Hkv).
//
// Tiling: a block of 128 threads owns ROWS = 128 / TPR queries of one head; each query is shared
// by TPR threads, thread `part` holding elements d = e·TPR + part (e < 32) of q and of the output
// accumulator in registers, so a head dim up to 32·TPR fits (TPR 4: D ≤ 128; TPR 16: D ≤ 512, the
// VAE's single-head 384). K and V tiles of BC = min(32, 4096 / D) keys are staged in shared memory
// as f32 (32 KiB); the threads of one query read consecutive words of a key row and all queries
// read the same row (a broadcast). A score is a partial dot per thread reduced over the TPR
// threads with shuffles. Per tile: the scores go to a per-query row in shared memory, then the
// running max and sum are rescaled once per tile (exp2, with log2(e) folded into the query
// scale) and the tile's V rows are accumulated. f32 throughout.
//
// attention_d128/d512 below are the CUDA-core version: correct for every shape joyrt uses
// (any head dim up to 512, mixed dtypes). The tensor-core version at the end of the file takes
// over for same-dtype bf16/f16 with D = 64 or 128 (the DiT's and Qwen's text heads).
//
// Scalars: AttentionArgs (ops/attention.rs); the host also emits the block shapes it launches
// with: ATT_THREADS, the threads per query ATT_TPR_D128 / ATT_TPR_D512, and the tensor-core
// tiles FA_BR, FA_BC, FA_ROW_PAD.
#include "common.cuh"

static_assert(ATT_THREADS == 128 && FA_BR == 4 * 16, "the tensor-core version: 4 warps of 16 queries each");
static_assert(FA_BC % 16 == 0 && FA_ROW_PAD % 8 == 0, "whole k16 steps of keys; 16-byte aligned shared rows");

#define ATT_DPT 32
#define ATT_SMEM_FLOATS 4096

template <int TPR>
__device__ __forceinline__ void attention_impl(const TX* q, const TW* k, const TB* v, TX* y, int q_len, int kv_len,
                                               int q_heads, int kv_heads, int d, float scale, int causal) {
    constexpr int ROWS = ATT_THREADS / TPR;
    __shared__ float ks[ATT_SMEM_FLOATS];
    __shared__ float vs[ATT_SMEM_FLOATS];
    __shared__ float ss[ROWS * 32];  // each query's scores for the current tile
    const int h = blockIdx.y, kh = h / (q_heads / kv_heads);
    const int part = threadIdx.x % TPR, qi = blockIdx.x * ROWS + threadIdx.x / TPR;
    const bool valid = qi < q_len;
    const int bc = min(32, ATT_SMEM_FLOATS / d);
    const float qscale = scale * 1.4426950408889634f;  // log2(e): softmax via exp2

    float qr[ATT_DPT], o[ATT_DPT];
#pragma unroll
    for (int e = 0; e < ATT_DPT; ++e) {
        const int dd = e * TPR + part;
        qr[e] = (valid && dd < d) ? ld(q, ((u64)qi * q_heads + h) * d + dd) * qscale : 0.0f;
        o[e] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    const int shift = kv_len - q_len;  // causal: key j visible to query i iff j <= i + shift
    const int last_q = min(q_len, (int)(blockIdx.x + 1) * ROWS) - 1;
    const int kv_end = causal ? min(kv_len, last_q + shift + 1) : kv_len;

    for (int j0 = 0; j0 < kv_end; j0 += bc) {
        const int n = min(bc, kv_end - j0);
        __syncthreads();
        for (int t = threadIdx.x; t < n * d; t += ATT_THREADS) {
            const int jj = t / d, dd = t % d;
            const u64 src = ((u64)(j0 + jj) * kv_heads + kh) * d + dd;
            ks[jj * d + dd] = ld(k, src);
            vs[jj * d + dd] = ld(v, src);
        }
        __syncthreads();

        // The tile's scores go to shared memory (one row of 32 per query), not registers: a
        // register array would need both key loops fully unrolled (15 s of NVRTC time).
        float* srow = ss + (threadIdx.x / TPR) * 32;
        float mt = NEG_INF;
#pragma unroll 2
        for (int jj = 0; jj < n; ++jj) {  // n is uniform over the block: every lane shuffles
            float acc = 0.0f;
#pragma unroll
            for (int e = 0; e < ATT_DPT; ++e) {
                const int dd = e * TPR + part;
                if (dd < d) acc = fmaf(qr[e], ks[jj * d + dd], acc);
            }
#pragma unroll
            for (int w = TPR / 2; w > 0; w >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, w);
            const bool visible = !causal || (j0 + jj <= qi + shift);
            const float sc = visible ? acc : NEG_INF;
            if (part == 0) srow[jj] = sc;
            mt = fmaxf(mt, sc);
        }
        __syncwarp();  // the TPR threads of a query are in one warp
        const float m_new = fmaxf(m, mt);
        if (m_new == NEG_INF) continue;  // nothing visible to this query yet
        const float alpha = exp2f(m - m_new);
        l *= alpha;
#pragma unroll
        for (int e = 0; e < ATT_DPT; ++e) o[e] *= alpha;
#pragma unroll 2
        for (int jj = 0; jj < n; ++jj) {
            const float p = exp2f(srow[jj] - m_new);
            l += p;
#pragma unroll
            for (int e = 0; e < ATT_DPT; ++e) {
                const int dd = e * TPR + part;
                if (dd < d) o[e] = fmaf(p, vs[jj * d + dd], o[e]);
            }
        }
        m = m_new;
    }
    if (!valid) return;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int e = 0; e < ATT_DPT; ++e) {
        const int dd = e * TPR + part;
        if (dd < d) st(y, ((u64)qi * q_heads + h) * d + dd, o[e] * inv);
    }
}

// Grid: (ceil(Lq / ROWS), Hq); ATT_THREADS threads. TW = k's dtype, TB = v's dtype.
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_d128(const TX* q, const TW* k, const TB* v, TX* y, AttentionArgs p) {
    attention_impl<ATT_TPR_D128>(q, k, v, y, p.q_len, p.kv_len, p.q_heads, p.kv_heads, p.head_dim, p.scale, p.causal);
}

extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_d512(const TX* q, const TW* k, const TB* v, TX* y, AttentionArgs p) {
    attention_impl<ATT_TPR_D512>(q, k, v, y, p.q_len, p.kv_len, p.q_heads, p.kv_heads, p.head_dim, p.scale, p.causal);
}

// ---- tensor-core version (bf16/f16 q, k, v of one dtype; D = 64 or 128) ----------------------
//
// FlashAttention-2 structure on mma.sync.m16n8k16: a block of 4 warps owns 64 queries of one
// head, each warp 16 of them, held as A fragments in registers for the whole run. K and V tiles
// of 64 keys are copied by cp.async into two stages of dynamic shared memory, both as [key][d]
// (padded rows), so tile t + 1 is in flight while tile t is used; fragments come from ldmatrix
// (K as the col-major B operand of S = Q·Kᵀ, V through ldmatrix.trans for O += P·V). S (16×64 per warp, f32) stays in registers;
// the online softmax works on each thread's two rows (g and g+8), reducing max and sum over the
// four threads of a quad with shuffles; P is rounded to the input dtype and re-used directly as
// the A fragment of P·V (the accumulator layout of two n8 tiles is the A layout of one k16 step).
// O is f32 in registers, divided by the row sum at the end.
#if defined(MMA_OK)

__device__ __forceinline__ u32 pack2(float lo, float hi) {
    return (u32)from_f32<TX>(lo).bits | ((u32)from_f32<TX>(hi).bits << 16);
}

// Dynamic shared memory of attention_mma_d{D}: 2 stages × (K, V) × FA_BC keys × (D + FA_ROW_PAD)
// × 2 bytes.
#define FA_SMEM_BYTES(D) (2 * 2 * FA_BC * ((D) + FA_ROW_PAD) * 2)

template <int D>
__device__ __forceinline__ void attention_mma_impl(const TX* q, const TX* k, const TX* v, TX* y, int q_len,
                                                   int kv_len, int q_heads, int kv_heads, float scale,
                                                   int causal) {
    constexpr int KS = D + FA_ROW_PAD;  // padded row (16-bit elements; 16-byte aligned rows)
    constexpr int STAGE = 2 * FA_BC * KS;
    DYNAMIC_SMEM(smem_raw);
    REQUIRE_DYNAMIC_SMEM(FA_SMEM_BYTES(D));
    u16* smem = (u16*)smem_raw;
    const int h = blockIdx.y, kh = h / (q_heads / kv_heads);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int q0 = blockIdx.x * FA_BR + warp * 16;  // this warp's first query
    const float sl2 = scale * 1.4426950408889634f;
    const u16* qb = (const u16*)q;

    // Q fragments: rows q0+g and q0+g+8, all D columns, as D/16 k-steps.
    u32 qf[D / 16][4];
#pragma unroll
    for (int s = 0; s < D / 16; ++s) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int row = q0 + g + ((r & 1) ? 8 : 0), col = s * 16 + 2 * t4 + ((r & 2) ? 8 : 0);
            qf[s][r] = row < q_len ? *(const u32*)(qb + ((u64)row * q_heads + h) * D + col) : 0u;
        }
    }
    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};

    const int shift = kv_len - q_len;
    const int last_q = min(q_len, (int)(blockIdx.x + 1) * FA_BR) - 1;
    const int kv_end = causal ? min(kv_len, last_q + shift + 1) : kv_len;
    const int tiles = (kv_end + FA_BC - 1) / FA_BC;

    // Copies keys [j0, j0 + 64) of K and V into stage `st` (16-byte chunks, zero past kv_len).
    auto load = [&](int st, int j0) {
        u16* ks = smem + st * STAGE;
        u16* vs = ks + FA_BC * KS;
        for (int c = threadIdx.x; c < FA_BC * D / 8; c += ATT_THREADS) {
            const int key = c / (D / 8), d0 = (c % (D / 8)) * 8, j = j0 + key;
            const bool in = j < kv_len;
            const u64 off = in ? ((u64)j * kv_heads + kh) * D + d0 : 0;
            cp_async16(&ks[key * KS + d0], (const u16*)k + off, in ? 16 : 0);
            cp_async16(&vs[key * KS + d0], (const u16*)v + off, in ? 16 : 0);
        }
    };

    if (tiles > 0) load(0, 0);
    cp_async_commit();
    for (int t = 0; t < tiles; ++t) {
        const int j0 = t * FA_BC;
        if (t + 1 < tiles) load((t + 1) & 1, j0 + FA_BC);
        cp_async_commit();
        cp_async_wait<1>();  // tile t has landed (tile t + 1 may still be in flight)
        __syncthreads();
        const u16* ks = smem + (t & 1) * STAGE;
        const u16* vs = ks + FA_BC * KS;

        // S = Q·Kᵀ for this warp's 16 rows × 64 keys; K fragments by ldmatrix, two n8 blocks each.
        float s[FA_BC / 8][4];
#pragma unroll
        for (int n = 0; n < FA_BC / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
            for (int n = 0; n < FA_BC / 8; n += 2) {
                u32 r[4];
                ldsm_x4(r, &ks[(n * 8 + (lane >> 4) * 8 + (lane & 7)) * KS + kk * 16 + ((lane >> 3) & 1) * 8]);
                mma16816(s[n], qf[kk], r, TX{});
                mma16816(s[n + 1], qf[kk], r + 2, TX{});
            }
        // Scale, mask, and the new row maxima (rows g: r = 0, g + 8: r = 1).
        float mt[2] = {NEG_INF, NEG_INF};
#pragma unroll
        for (int n = 0; n < FA_BC / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int r = e >> 1, qi = q0 + g + 8 * r, j = j0 + n * 8 + 2 * t4 + (e & 1);
                const bool visible = j < kv_len && (!causal || j <= qi + shift);
                s[n][e] = visible ? s[n][e] * sl2 : NEG_INF;
                mt[r] = fmaxf(mt[r], s[n][e]);
            }
        float alpha[2], mu[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 1));
            mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 2));
            const float mn = fmaxf(m[r], mt[r]);
            mu[r] = mn == NEG_INF ? 0.0f : mn;  // a row with nothing visible yet: p = 0, not NaN
            alpha[r] = exp2f(m[r] - mu[r]);
            m[r] = mn;
            l[r] *= alpha[r];
        }
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
            o[j][0] *= alpha[0];
            o[j][1] *= alpha[0];
            o[j][2] *= alpha[1];
            o[j][3] *= alpha[1];
        }
        // P = exp2(S − m), packed as the A fragments of O += P·V (one k16 step per two n8 tiles).
        u32 pf[FA_BC / 16][4];
#pragma unroll
        for (int n = 0; n < FA_BC / 8; ++n) {
            float p[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) p[e] = exp2f(s[n][e] - mu[e >> 1]);
            l[0] += p[0] + p[1];
            l[1] += p[2] + p[3];
            pf[n / 2][(n & 1) * 2 + 0] = pack2(p[0], p[1]);
            pf[n / 2][(n & 1) * 2 + 1] = pack2(p[2], p[3]);
        }
        // V fragments (k = key, n = d) by ldmatrix.trans from the [key][d] tile: tiles (keys 0-7,
        // 8-15) × (d block j, j + 1).
#pragma unroll
        for (int kk = 0; kk < FA_BC / 16; ++kk)
#pragma unroll
            for (int j = 0; j < D / 8; j += 2) {
                u32 r[4];
                ldsm_x4_trans(r, &vs[(kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * KS + (j + (lane >> 4)) * 8]);
                mma16816(o[j], pf[kk], r, TX{});
                mma16816(o[j + 1], pf[kk], r + 2, TX{});
            }
        __syncthreads();  // every warp is done with this stage before it is refilled
    }
    cp_async_wait<0>();
    // Row sums are per-thread partials: add the quad's.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = q0 + g + 8 * r;
        if (row >= q_len) continue;
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
            const u64 base = ((u64)row * q_heads + h) * D + j * 8 + 2 * t4;
            st(y, base, o[j][2 * r] * inv);
            st(y, base + 1, o[j][2 * r + 1] * inv);
        }
    }
}

// Grid: (ceil(Lq / FA_BR), Hq); ATT_THREADS threads; FA_SMEM_BYTES(D) of dynamic shared memory.
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_mma_d64(const TX* q, const TX* k, const TX* v, TX* y, AttentionArgs p) {
    attention_mma_impl<64>(q, k, v, y, p.q_len, p.kv_len, p.q_heads, p.kv_heads, p.scale, p.causal);
}

extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_mma_d128(const TX* q, const TX* k, const TX* v, TX* y, AttentionArgs p) {
    attention_mma_impl<128>(q, k, v, y, p.q_len, p.kv_len, p.q_heads, p.kv_heads, p.scale, p.causal);
}

#endif

// ---- Hopper: warpgroup MMA (attention_wgmma.cuh), sm_90a modules only -------------------------
#include "attention_wgmma.cuh"
