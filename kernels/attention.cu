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
// This is the CUDA-core version (no tensor cores): correct for every shape joyrt uses.
#include "common.cuh"

#define ATT_THREADS 128
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

// Grid: (ceil(Lq / ROWS), Hq); 128 threads. TW = k's dtype, TB = v's dtype.
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_d128(const TX* q, const TW* k, const TB* v, TX* y, int q_len, int kv_len, int q_heads, int kv_heads,
                   int d, float scale, int causal) {
    attention_impl<4>(q, k, v, y, q_len, kv_len, q_heads, kv_heads, d, scale, causal);
}

extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_d512(const TX* q, const TW* k, const TB* v, TX* y, int q_len, int kv_len, int q_heads, int kv_heads,
                   int d, float scale, int causal) {
    attention_impl<16>(q, k, v, y, q_len, kv_len, q_heads, kv_heads, d, scale, causal);
}
