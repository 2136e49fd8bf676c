// The Hopper GEMM (sm_90a) behind `linear` for same-dtype 16-bit operands with K % 8 == 0: every
// DiT and Qwen projection. C[m, n] = Σ_k A[m, k]·B[n, k] (+ bias[n]), A = x [M, K], B = W [N, K].
//
// Block tile WG_BM (128) × BN (256 or 128) × WG_BK (64), 256 threads = two warpgroups, each
// owning 64 rows × BN columns of f32 accumulators (BN / 2 registers a thread) and issuing one
// wgmma.m64nBNk16 per k16 step with both operands read from shared memory by descriptor
// (hopper.cuh: K-major, 128-byte swizzle, one 128-byte row per tile row). All 256 threads copy:
// tiles arrive by cp.async into a ring of WG_STAGES stages, WG_PREFETCH tiles ahead of the one
// being multiplied, and one wgmma group stays in flight while the next is issued. A stage is
// refilled only once both warpgroups have waited for the wgmma group that read it:
//   iteration t:  wait for tile t's copies → fence.proxy.async → barrier
//                 → copy tile t + WG_PREFETCH into stage (t + WG_PREFETCH) % WG_STAGES
//                 → issue the wgmmas of tile t, commit → wait until only that group is pending.
// The stage refilled at t last held tile t + WG_PREFETCH − WG_STAGES ≤ t − 2, whose group each
// warpgroup finished at iteration t − 1 before the barrier; hence WG_STAGES ≥ WG_PREFETCH + 2.
//
// Tiles are numbered in groups of WG_GROUP_M block rows (all column tiles of 8 row tiles, then
// the next 8), so the blocks resident at once share their A rows and B columns in L2 instead of
// streaming the whole weight matrix from memory once per block row.
#pragma once
#include "hopper.cuh"

#if defined(MMA_OK) && defined(WGMMA_OK)

static_assert(GEMM_THREADS == 256 && WG_BM == 128, "two warpgroups of 64 rows each");
static_assert(WG_BK == 64, "one 128-byte swizzled row holds a K tile of 16-bit elements");
static_assert(WG_STAGES >= WG_PREFETCH + 2, "a refilled stage must not be read by a wgmma in flight");

template <int BN, typename TY, typename TBIAS>
__device__ __forceinline__ void gemm_wgmma(const u16* a, const u16* b, int M, int N, int K, TY* y,
                                           const TBIAS* bias) {
    constexpr u32 A_BYTES = WG_BM * WG_BK * 2, B_BYTES = BN * WG_BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;
    DYNAMIC_SMEM(smem_raw);
    // 1024 bytes of slack: the swizzle pattern is anchored to 1024-byte boundaries of the
    // shared window, wherever the dynamic allocation starts.
    REQUIRE_DYNAMIC_SMEM(WG_STAGES * STAGE_BYTES + 1024);
    const u32 raw = smem_addr(smem_raw), base = (raw + 1023) & ~1023u;
    unsigned char* const ring = smem_raw + (base - raw);

    const int tid = threadIdx.x, wg = tid >> 7;
    const int tiles_m = (M + WG_BM - 1) / WG_BM, tiles_n = (N + BN - 1) / BN;
    const int per_group = WG_GROUP_M * tiles_n, in_group = blockIdx.x % per_group;
    const int first_m = blockIdx.x / per_group * WG_GROUP_M, group_rows = min(tiles_m - first_m, WG_GROUP_M);
    const int m0 = (first_m + in_group % group_rows) * WG_BM, n0 = in_group / group_rows * BN;

    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;

    // Copies K tile `k0` into `stage`: chunk c of the tile's 8 × rows 16-byte chunks is row c / 8,
    // k chunk c % 8, so 8 consecutive threads read one 128-byte row segment.
    auto load = [&](int stage, int k0) {
        unsigned char* as = ring + stage * STAGE_BYTES;
        unsigned char* bs = as + A_BYTES;
#pragma unroll
        for (int i = 0; i < WG_BM * 8 / GEMM_THREADS; ++i) {
            const int c = tid + GEMM_THREADS * i, r = c >> 3, kc = k0 + (c & 7) * 8;
            const bool in = m0 + r < M && kc < K;  // K % 8 == 0: a chunk is wholly in or out
            cp_async16(as + sw128_offset(r, c & 7), in ? a + (u64)(m0 + r) * K + kc : a, in ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < BN * 8 / GEMM_THREADS; ++i) {
            const int c = tid + GEMM_THREADS * i, r = c >> 3, kc = k0 + (c & 7) * 8;
            const bool in = n0 + r < N && kc < K;
            cp_async16(bs + sw128_offset(r, c & 7), in ? b + (u64)(n0 + r) * K + kc : b, in ? 16 : 0);
        }
    };

    const int tiles = (K + WG_BK - 1) / WG_BK;
#pragma unroll
    for (int s = 0; s < WG_PREFETCH; ++s) {
        if (s < tiles) load(s, s * WG_BK);
        cp_async_commit();
    }
    for (int t = 0; t < tiles; ++t) {
        cp_async_wait<WG_PREFETCH - 1>();
        fence_proxy_async();
        __syncthreads();
        const int next = t + WG_PREFETCH;
        if (next < tiles) load(next % WG_STAGES, next * WG_BK);
        cp_async_commit();

        const u32 a_tile = base + (t % WG_STAGES) * STAGE_BYTES + wg * 64 * 128, b_tile = a_tile - wg * 64 * 128 + A_BYTES;
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < WG_BK / 16; ++ks) wgmma_m64k16<BN>(acc, sw128_desc(a_tile + ks * 32), sw128_desc(b_tile + ks * 32));
        wgmma_commit();
        wgmma_wait<1>();
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);
    }
    wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);

    const int lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int r = m0 + wg * 64 + ((tid >> 5) & 3) * 16 + g;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        const int c = n0 + j * 8 + 2 * t4;
        epilogue(y, bias, 0, r, c, M, N, acc[4 * j]);
        epilogue(y, bias, 0, r, c + 1, M, N, acc[4 * j + 1]);
        epilogue(y, bias, 0, r + 8, c, M, N, acc[4 * j + 2]);
        epilogue(y, bias, 0, r + 8, c + 1, M, N, acc[4 * j + 3]);
    }
}

#endif
