// The Hopper GEMM (sm_90a) behind `linear` for same-dtype 16-bit operands with K % 8 == 0: every
// DiT and Qwen projection. C[m, n] = Σ_k A[m, k]·B[n, k] (+ bias[n]), A = x [M, K], B = W [N, K].
//
// Block tile WG_BM (128) × BN (256 or 128) × WG_BK (64), 256 threads = two warpgroups, each
// owning 64 rows × BN columns of f32 accumulators (BN / 2 registers a thread) and issuing one
// wgmma.m64nBNk16 per k16 step with both operands read from shared memory by descriptor
// (hopper.cuh: K-major, 128-byte swizzle, one 128-byte row per tile row).
//
// Persistent: a grid of about one block per multiprocessor walks the output tiles (block b takes
// tiles b, b + gridDim.x, …), and its copy pipeline runs over the flattened sequence of (tile,
// K tile) steps, so the next tile's first K tiles are already arriving while this one finishes
// and stores its results. All 256 threads copy, by cp.async into a ring of WG_STAGES stages,
// WG_PREFETCH = WG_STAGES − 1 steps ahead; one wgmma group stays in flight across the barrier:
//   step s:  issue the wgmmas of step s, commit → wait until only that group is pending (step
//            s − 1 retired; at a tile's last step wait for all, store, zero the accumulators)
//            → wait for step s + 1's copies → fence.proxy.async → barrier
//            → copy step s + WG_PREFETCH into stage (s + WG_PREFETCH) % WG_STAGES.
// That stage last held step s − 1, which every warpgroup retired before the barrier.
//
// Tiles are numbered in groups of WG_GROUP_M block rows (all column tiles of 8 row tiles, then
// the next 8), so the blocks working at once share their A rows and B columns in L2 instead of
// streaming the whole weight matrix from memory once per block row.
#pragma once
#include "hopper.cuh"

#if defined(MMA_OK) && defined(WGMMA_OK)

static_assert(GEMM_THREADS == 256 && WG_BM == 128, "two warpgroups of 64 rows each");
static_assert(WG_BK == 64, "one 128-byte swizzled row holds a K tile of 16-bit elements");
static_assert(WG_PREFETCH == WG_STAGES - 1, "the stage refilled at step s is the one of step s - 1");

// The origin of output tile `tile` in grouped order.
__device__ __forceinline__ void wgmma_tile_origin(int tile, int M, int N, int bn, int& m0, int& n0) {
    const int tiles_m = (M + WG_BM - 1) / WG_BM, tiles_n = (N + bn - 1) / bn;
    const int per_group = WG_GROUP_M * tiles_n, in_group = tile % per_group;
    const int first_m = tile / per_group * WG_GROUP_M, group_rows = min(tiles_m - first_m, WG_GROUP_M);
    m0 = (first_m + in_group % group_rows) * WG_BM;
    n0 = in_group / group_rows * bn;
}

// Stores rows r and r + 8 of one thread's accumulators for the tile at (m0, n0), with the bias:
// two adjacent columns per 4-byte store where N is even.
template <int BN, typename TY, typename TBIAS>
__device__ __forceinline__ void wgmma_store(const float* acc, TY* y, const TBIAS* bias, int r, int n0, int M,
                                            int N, int t4) {
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        const int c = n0 + j * 8 + 2 * t4;
        if (c >= N) continue;
        const float b0 = bias ? ld(bias, c) : 0.0f, b1 = bias && c + 1 < N ? ld(bias, c + 1) : 0.0f;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = r + 8 * h;
            if (row >= M) continue;
            const float v0 = acc[4 * j + 2 * h] + b0, v1 = acc[4 * j + 2 * h + 1] + b1;
            if ((N & 1) == 0) {  // c even, so c + 1 < N and the pair is 4-byte aligned
                const u32 pair = (u32)from_f32<TY>(v0).bits | ((u32)from_f32<TY>(v1).bits << 16);
                *(u32*)(y + (u64)row * N + c) = pair;
            } else {
                st(y, (u64)row * N + c, v0);
                if (c + 1 < N) st(y, (u64)row * N + c + 1, v1);
            }
        }
    }
}

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
    const int tiles = ((M + WG_BM - 1) / WG_BM) * ((N + BN - 1) / BN);
    const int my_tiles = blockIdx.x < tiles ? (tiles - 1 - blockIdx.x) / gridDim.x + 1 : 0;
    const int k_steps = (K + WG_BK - 1) / WG_BK, steps = my_tiles * k_steps;

    // Copies step s (this block's tile s / k_steps, K tile s % k_steps) into its stage: chunk c
    // of the tile's 8 × rows 16-byte chunks is row c / 8, k chunk c % 8, so 8 consecutive
    // threads read one 128-byte row segment.
    auto load = [&](int s) {
        int m0, n0;
        wgmma_tile_origin(blockIdx.x + s / k_steps * gridDim.x, M, N, BN, m0, n0);
        const int k0 = s % k_steps * WG_BK;
        unsigned char* as = ring + (s % WG_STAGES) * STAGE_BYTES;
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

    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;

#pragma unroll
    for (int s = 0; s < WG_PREFETCH; ++s) {
        if (s < steps) load(s);
        cp_async_commit();
    }
    cp_async_wait<WG_PREFETCH - 1>();
    fence_proxy_async();
    __syncthreads();

    const int lane = tid & 31, row_in_tile = wg * 64 + ((tid >> 5) & 3) * 16 + (lane >> 2);
    for (int s = 0; s < steps; ++s) {
        const u32 a_tile = base + (s % WG_STAGES) * STAGE_BYTES + wg * 64 * 128;
        const u32 b_tile = base + (s % WG_STAGES) * STAGE_BYTES + A_BYTES;
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < WG_BK / 16; ++ks)
            wgmma_m64k16<BN>(acc, sw128_desc(a_tile + ks * 32), sw128_desc(b_tile + ks * 32));
        wgmma_commit();
        if (s % k_steps == k_steps - 1) {
            wgmma_wait<0>();
#pragma unroll
            for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);
            int m0, n0;
            wgmma_tile_origin(blockIdx.x + s / k_steps * gridDim.x, M, N, BN, m0, n0);
            wgmma_store<BN>(acc, y, bias, m0 + row_in_tile, n0, M, N, lane & 3);
#pragma unroll
            for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
        } else {
            wgmma_wait<1>();
        }
        // Step s + 1's copies (committed WG_PREFETCH − 1 groups before the newest) have landed.
        cp_async_wait<WG_PREFETCH - 2>();
        fence_proxy_async();
        __syncthreads();
        if (s + WG_PREFETCH < steps) load(s + WG_PREFETCH);
        cp_async_commit();
    }
    cp_async_wait<0>();
}

#endif
