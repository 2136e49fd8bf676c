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
// (any head dim up to 512, mixed dtypes, any scale). The tensor-core version at the end of the
// file takes over for same-dtype bf16/f16 with D = 64 or 128 and scale > 0 (the DiT's and Qwen's
// text heads).
//
// Scalars: AttentionArgs (ops/attention.rs); the host also emits the block shapes it launches
// with: ATT_THREADS, the threads per query ATT_TPR_D128 / ATT_TPR_D512, and the tensor-core
// block and tiles FA_THREADS, FA_BR, FA_BC, FA_STAGES.
#include "common.cuh"

static_assert(FA_BR == FA_THREADS / 32 * 16, "the tensor-core version: 16 queries per warp");
static_assert(FA_BC % 16 == 0 && FA_STAGES == 3, "whole k16 steps of keys; the loop below is written for 3 stages");

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
// FlashAttention-2 on mma.sync.m16n8k16 (every sm_80+ GPU). A block of 8 warps owns FA_BR = 128
// queries of one head, each warp 16 of them: 16 rows per warp (not 32) because the warp keeps its
// Q fragments in registers for the whole key loop, and 32 rows would need 64 (Q) + 128 (O) + 64
// (S) accumulator registers before any address or fragment, past the 255 limit. K and V tiles of
// FA_BC = 64 keys go through a 3-stage cp.async ring, so two tiles are in flight while one is
// used, with one barrier per tile. Shared rows are unpadded with their 16-byte chunks XOR-swizzled
// by row % 8 (see swz): ldmatrix's eight row addresses and the cp.async writes then fall in eight
// different bank groups, and the ring fits 96 KiB at D = 128 (a 16-byte pad would need 102 KiB,
// past the 99 KiB a block gets on sm_86/sm_89).
//
// Per tile and warp: S = Q·Kᵀ (16 × 64, f32 registers; K by ldmatrix as the col-major B operand),
// the online softmax on each thread's two rows (g and g + 8) with the maxima and sums reduced over
// the quad by shuffles, P = exp2(S·c − m·c) with c = scale·log2(e) folded into one FMA, P rounded
// by one cvt per pair into the A fragments of O += P·V (the accumulator layout of two n8 tiles is
// the A layout of one k16 step, so P never touches shared memory), V by ldmatrix.trans. Masking
// runs only on the tiles that need it (the ragged last tile, the causal diagonal). At the end O/l
// goes through shared memory so that each lane stores whole 16-byte chunks.
#if defined(MMA_OK)

// Two f32 as one register of two 16-bit values (lo in the low half: the fragment order), rounded
// to nearest even; one cvt on the GPU (whose first operand lands in the upper half).
__device__ __forceinline__ u32 pack2(float lo, float hi, bf16_t) {
#ifdef JOYRT_CUDA_EMU
    return (u32)from_f32<bf16_t>(lo).bits | ((u32)from_f32<bf16_t>(hi).bits << 16);
#else
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
}

__device__ __forceinline__ u32 pack2(float lo, float hi, f16_t) {
#ifdef JOYRT_CUDA_EMU
    return (u32)from_f32<f16_t>(lo).bits | ((u32)from_f32<f16_t>(hi).bits << 16);
#else
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
}

// 2^x as the single MUFU instruction (exp2f adds a denormal-range fix-up around it; the results
// here are probabilities in [0, 1], where a flushed denormal is 0 either way).
__device__ __forceinline__ float fast_exp2(float x) {
#ifdef JOYRT_CUDA_EMU
    return exp2f(x);
#else
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
#endif
}

// Element offset of (row, col) in a tile of rows of D 16-bit elements whose 16-byte chunks are
// XOR-swizzled by row % 8 (col % 8 == 0 for a chunk's address).
template <int D> __device__ __forceinline__ int swz(int row, int col) {
    return row * D + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

// Dynamic shared memory of attention_mma_d{D}: FA_STAGES × (K, V) × FA_BC keys × D × 2 bytes (the
// Q tile before the loop and the O tile after it reuse the ring: FA_BR × D fits one stage).
#define FA_SMEM_BYTES(D) (FA_STAGES * 2 * FA_BC * (D) * 2)
static_assert(FA_BR == 2 * FA_BC, "the Q and O tiles take exactly one stage");

template <int D>
__device__ __forceinline__ void attention_mma_impl(const TX* q, const TX* k, const TX* v, TX* y, int q_len,
                                                   int kv_len, int q_heads, int kv_heads, float scale,
                                                   int causal) {
    constexpr int STAGE = 2 * FA_BC * D;  // elements: K then V
    constexpr int CHUNKS = D / 8;         // 16-byte chunks per row
    static_assert(FA_BC * CHUNKS % FA_THREADS == 0 && FA_BR * CHUNKS % FA_THREADS == 0, "whole copy rounds");
    DYNAMIC_SMEM(smem_raw);
    REQUIRE_DYNAMIC_SMEM(FA_SMEM_BYTES(D));
    u16* smem = (u16*)smem_raw;
    const int h = blockIdx.y, kh = h / (q_heads / kv_heads);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    // Causal blocks differ in length: start the longest (last queries) first.
    const int qblock = causal ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
    const int q0 = qblock * FA_BR + warp * 16;  // this warp's first query
    // c = scale·log2(e). The host sends only scale > 0 here, so the maximum of the raw scores is
    // the maximum of the scaled ones and a masked score (−∞) gives p = 0.
    const float sl2 = scale * 1.4426950408889634f;

    const int shift = kv_len - q_len;  // causal: key j visible to query i iff j <= i + shift
    const int last_q = min(q_len, (qblock + 1) * FA_BR) - 1;
    const int kv_end = causal ? min(kv_len, last_q + shift + 1) : kv_len;
    const int tiles = kv_end > 0 ? (kv_end + FA_BC - 1) / FA_BC : 0;

    // Copies keys [j0, j0 + FA_BC) of K and V into `stage` (zero past kv_len).
    auto load_kv = [&](int stage, int j0) {
        u16* ks = smem + stage * STAGE;
        u16* vs = ks + FA_BC * D;
#pragma unroll
        for (int i = 0; i < FA_BC * CHUNKS / FA_THREADS; ++i) {
            const int c = i * FA_THREADS + threadIdx.x, key = c / CHUNKS, col = (c % CHUNKS) * 8, j = j0 + key;
            const bool in = j < kv_len;
            const u64 off = in ? ((u64)j * kv_heads + kh) * D + col : 0;
            cp_async16(ks + swz<D>(key, col), (const u16*)k + off, in ? 16 : 0);
            cp_async16(vs + swz<D>(key, col), (const u16*)v + off, in ? 16 : 0);
        }
    };

    // The block's FA_BR × D queries go to the last stage (free until the first tile's barrier).
    {
        u16* qs = smem + (FA_STAGES - 1) * STAGE;
#pragma unroll
        for (int i = 0; i < FA_BR * CHUNKS / FA_THREADS; ++i) {
            const int c = i * FA_THREADS + threadIdx.x, row = c / CHUNKS, col = (c % CHUNKS) * 8;
            const int qi = qblock * FA_BR + row;
            const bool in = qi < q_len;
            const u64 off = in ? ((u64)qi * q_heads + h) * D + col : 0;
            cp_async16(qs + swz<D>(row, col), (const u16*)q + off, in ? 16 : 0);
        }
    }
    cp_async_commit();
    if (tiles > 0) load_kv(0, 0);
    cp_async_commit();
    if (tiles > 1) load_kv(1, FA_BC);
    cp_async_commit();
    cp_async_wait<2>();  // the Q tile has landed
    __syncthreads();

    // Q fragments of rows q0 + g and q0 + g + 8, all D columns, as D/16 k-steps (ldmatrix x4:
    // tiles rows 0-7 / 8-15 × columns 0-7 / 8-15 of each step, the A-fragment order).
    u32 qf[D / 16][4];
    {
        const u16* qs = smem + (FA_STAGES - 1) * STAGE;
        const int row = warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
#pragma unroll
        for (int s = 0; s < D / 16; ++s) ldsm_x4(qf[s], qs + swz<D>(row, s * 16 + (lane >> 4) * 8));
    }
    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};  // raw-score maxima; per-thread partial sums

    int stage = 0;
    for (int t = 0; t < tiles; ++t) {
        const int j0 = t * FA_BC;
        cp_async_wait<1>();  // tile t has landed (only tile t + 1 may still be in flight)
        // Every thread's copies of tile t are visible, and every warp is done with tile t − 1,
        // whose stage the copy below refills.
        __syncthreads();
        if (t + 2 < tiles) load_kv(stage == 0 ? 2 : stage - 1, j0 + 2 * FA_BC);
        cp_async_commit();
        const u16* ks = smem + stage * STAGE;
        const u16* vs = ks + FA_BC * D;
        stage = stage == FA_STAGES - 1 ? 0 : stage + 1;

        // S = Q·Kᵀ for this warp's 16 rows × FA_BC keys (raw scores); ldmatrix tiles: keys n·8 +
        // 0-7 and (n+1)·8 + 0-7 × d 0-7 / 8-15 of the step, two n8 B fragments.
        float s[FA_BC / 8][4];
#pragma unroll
        for (int n = 0; n < FA_BC / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
            for (int n = 0; n < FA_BC / 8; n += 2) {
                u32 r[4];
                ldsm_x4(r, ks + swz<D>(n * 8 + (lane >> 4) * 8 + (lane & 7), kk * 16 + ((lane >> 3) & 1) * 8));
                mma16816(s[n], qf[kk], r, TX{});
                mma16816(s[n + 1], qf[kk], r + 2, TX{});
            }
        // Only the ragged last tile and, causally, a tile reaching past the warp's first query's
        // last visible key hide anything (the test is uniform over the warp).
        if (j0 + FA_BC > kv_len || (causal && j0 + FA_BC - 1 > q0 + shift)) {
#pragma unroll
            for (int n = 0; n < FA_BC / 8; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int qi = q0 + g + 8 * (e >> 1), j = j0 + n * 8 + 2 * t4 + (e & 1);
                    if (j >= kv_len || (causal && j > qi + shift)) s[n][e] = NEG_INF;
                }
        }
        // New row maxima (rows g: r = 0, g + 8: r = 1), over the quad that shares each row.
        float mt[2] = {m[0], m[1]};
#pragma unroll
        for (int n = 0; n < FA_BC / 8; ++n) {
            mt[0] = fmaxf(mt[0], fmaxf(s[n][0], s[n][1]));
            mt[1] = fmaxf(mt[1], fmaxf(s[n][2], s[n][3]));
        }
        float ms[2];  // the subtrahend of the exponent: max · c
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 1));
            mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 2));
            const float mu = mt[r] == NEG_INF ? 0.0f : mt[r];  // nothing visible yet: p = 0, not NaN
            const float alpha = fast_exp2((m[r] - mu) * sl2);
            m[r] = mt[r];
            ms[r] = mu * sl2;
            l[r] *= alpha;
#pragma unroll
            for (int j = 0; j < D / 8; ++j) {
                o[j][2 * r] *= alpha;
                o[j][2 * r + 1] *= alpha;
            }
        }
        // P = exp2(S·c − m·c), packed as the A fragments of O += P·V (k16 step n/2).
        u32 pf[FA_BC / 16][4];
#pragma unroll
        for (int n = 0; n < FA_BC / 8; ++n) {
            float p[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) p[e] = fast_exp2(fmaf(s[n][e], sl2, -ms[e >> 1]));
            l[0] += p[0] + p[1];
            l[1] += p[2] + p[3];
            pf[n / 2][(n & 1) * 2 + 0] = pack2(p[0], p[1], TX{});
            pf[n / 2][(n & 1) * 2 + 1] = pack2(p[2], p[3], TX{});
        }
        // V fragments (k = key, n = d) by ldmatrix.trans: tiles (keys 0-7, 8-15 of the step) ×
        // (d blocks j, j + 1).
#pragma unroll
        for (int kk = 0; kk < FA_BC / 16; ++kk)
#pragma unroll
            for (int j = 0; j < D / 8; j += 2) {
                u32 r[4];
                ldsm_x4_trans(r, vs + swz<D>(kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), (j + (lane >> 4)) * 8));
                mma16816(o[j], pf[kk], r, TX{});
                mma16816(o[j + 1], pf[kk], r + 2, TX{});
            }
    }
    cp_async_wait<0>();
    __syncthreads();  // every warp is done with the ring: its first stage takes the O tile

    // Row sums are per-thread partials: add the quad's. Then O / l as 16-bit pairs into this
    // warp's 16 rows of the O tile, and from there to y in 16-byte chunks.
    u16* os = smem;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        const int row = warp * 16 + g + 8 * r;
#pragma unroll
        for (int j = 0; j < D / 8; ++j)
            *(u32*)(os + swz<D>(row, j * 8) + 2 * t4) = pack2(o[j][2 * r] * inv, o[j][2 * r + 1] * inv, TX{});
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < 16 * CHUNKS / 32; ++i) {
        const int c = i * 32 + lane, row = warp * 16 + c / CHUNKS, col = (c % CHUNKS) * 8;
        const int qi = qblock * FA_BR + row;
        if (qi < q_len) *(uint4*)((u16*)y + ((u64)qi * q_heads + h) * D + col) = *(const uint4*)(os + swz<D>(row, col));
    }
}

// Grid: (ceil(Lq / FA_BR), Hq); FA_THREADS threads; FA_SMEM_BYTES(D) of dynamic shared memory.
extern "C" __global__ void __launch_bounds__(FA_THREADS)
    attention_mma_d64(const TX* q, const TX* k, const TX* v, TX* y, AttentionArgs p) {
    attention_mma_impl<64>(q, k, v, y, p.q_len, p.kv_len, p.q_heads, p.kv_heads, p.scale, p.causal);
}

extern "C" __global__ void __launch_bounds__(FA_THREADS)
    attention_mma_d128(const TX* q, const TX* k, const TX* v, TX* y, AttentionArgs p) {
    attention_mma_impl<128>(q, k, v, y, p.q_len, p.kv_len, p.q_heads, p.kv_heads, p.scale, p.causal);
}

#endif

// ---- Hopper: warpgroup MMA (attention_wgmma.cuh), sm_90a modules only -------------------------
#include "attention_wgmma.cuh"
#if defined(MMA_OK) && defined(WGMMA_OK)

// Grid: (ceil(Lq / WA_BR), Hq); WA_THREADS threads; the dynamic shared memory ops/attention.rs
// gives it.
extern "C" __global__ void __launch_bounds__(WA_THREADS, 1)
    attention_wgmma_d128(const TX* q, const TX* k, const TX* v, TX* y, AttentionArgs p) {
    attention_wgmma_d128_impl(q, k, v, y, p.q_len, p.kv_len, p.q_heads, p.kv_heads, p.scale, p.causal);
}

#endif

// ---- Hopper, warp-specialised (attention_wgmma_ws.cuh): q, k, v reach it as tensor maps -------
#include "attention_wgmma_ws.cuh"
#if defined(MMA_OK) && defined(WGMMA_OK)

// Grid: (ceil(Lq / AWS_BR), Hq); AWS_THREADS threads; the dynamic shared memory ops/attention.rs
// gives it. The maps: rows of q [Lq, Hq·128] and k, v [Lk, Hkv·128] in boxes of 128 rows × 64.
extern "C" __global__ void __launch_bounds__(AWS_THREADS, 1)
    attention_wgmma_ws_d128(TX* y, const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                            const __grid_constant__ CUtensorMap v_map, AttentionArgs p) {
    attention_wgmma_ws_d128_impl(&q_map, &k_map, &v_map, y, p.q_len, p.kv_len, p.q_heads, p.kv_heads, p.scale,
                                 p.causal);
}

#endif
