// The Hopper GEMM (sm_90a) behind `linear` for same-dtype 16-bit operands with K % 8 == 0: every
// DiT and Qwen projection. C[m, n] = Σ_k A[m, k]·B[n, k] (+ bias[n]), A = x [M, K], B = W [N, K].
//
// Block tile WG_BM (128) × BN (256) × WG_BK (64), 256 threads = two warpgroups, each
// owning 64 rows × BN columns of f32 accumulators (BN / 2 registers a thread) and issuing one
// wgmma.m64nBNk16 per k16 step with both operands read from shared memory by descriptor
// (hopper.cuh: K-major, 128-byte swizzle, one 128-byte row per tile row).
//
// Two forms (ops/gemm.rs picks one: JOYRT_CUDA_GEMM): gemm_wgmma_tiles, one block per output
// tile, and gemm_wgmma_persistent:
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

// Copies K tile k0 of operand rows r0 … r0 + ROWS − 1 (of `limit`) into the swizzled tile `dst`,
// by cp.async, zero past the operand: chunk c of the tile's 8 × ROWS 16-byte chunks is row c / 8,
// k chunk c % 8, so 8 consecutive threads read one 128-byte row segment.
template <int ROWS>
__device__ __forceinline__ void wgmma_copy_rows(unsigned char* dst, const u16* src, int r0, int limit, int K, int k0) {
#pragma unroll
    for (int i = 0; i < ROWS * 8 / GEMM_THREADS; ++i) {
        const int c = threadIdx.x + GEMM_THREADS * i, r = c >> 3, kc = k0 + (c & 7) * 8;
        const bool in = r0 + r < limit && kc < K;  // K % 8 == 0: a chunk is wholly in or out
        cp_async16(dst + sw128_offset(r, c & 7), in ? src + (u64)(r0 + r) * K + kc : src, in ? 16 : 0);
    }
}

// Stores rows r and r + 8 of one thread's accumulators for the tile at (m0, n0), with the bias:
// two adjacent columns per 4-byte store where N is even.
template <int BN, typename TY, typename TBIAS>
__device__ __forceinline__ void wgmma_store(const float* acc, const GemmOut<TY, TBIAS>& out, int r, int n0, int t4) {
    const int M = out.M, N = out.N;
    TY* y = out.y;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        const int c = n0 + j * 8 + 2 * t4;
        if (c >= N) continue;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = r + 8 * h;
            if (row >= M) continue;
            const float v0 = out.apply(row, c, acc[4 * j + 2 * h]);
            const float v1 = c + 1 < N ? out.apply(row, c + 1, acc[4 * j + 2 * h + 1]) : 0.0f;
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

// gemm_wgmma_tiles: one block per output tile (the grid numbers them), copies two K tiles ahead,
// the barrier before each wgmma issue, one element per store. Measured on an H200 (run 2 in
// docs/gpu-runs): 0.64–0.79× cuBLAS at the DiT shapes.
// Issues one 64-wide K tile's wgmmas as one group: acc += A·Bᵀ over the swizzled 128-byte-row
// tiles at shared addresses a_tile (this warpgroup's 64 rows) and b_tile (BN rows), with the
// operand fences wgmma needs around its register accumulators.
template <int BN> __device__ __forceinline__ void wgmma_issue_k_tile(float* acc, u32 a_tile, u32 b_tile) {
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < WG_BK / 16; ++ks) wgmma_m64k16<BN>(acc, sw128_desc(a_tile + ks * 32), sw128_desc(b_tile + ks * 32));
    wgmma_commit();
}

// The block-per-tile main loop: this block's output tile (grouped rasterisation) into m0, n0 and
// its accumulators acc[BN / 2] = A·Bᵀ over K (in 16-bit elements: the fp8 kernel passes pairs of
// codes) through the WG_STAGES ring, `issue(acc, a_tile, b_tile)` issuing one K tile's wgmma group.
// Returns with every wgmma retired. Copies run two K tiles ahead and the barrier comes before
// the issue, so the stage refilled at t (tile t + 2) last held tile t − 2, retired before the
// barrier.
template <int BN, class Issue>
__device__ __forceinline__ void wgmma_tile_mainloop(float* acc, const u16* a, const u16* b, int M, int N, int K,
                                                    int& m0, int& n0, Issue issue) {
    constexpr u32 A_BYTES = WG_BM * WG_BK * 2, B_BYTES = BN * WG_BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;
    constexpr int TILES_PREFETCH = WG_STAGES - 2;
    DYNAMIC_SMEM(smem_raw);
    // 1024 bytes of slack: the swizzle pattern is anchored to 1024-byte boundaries of the
    // shared window, wherever the dynamic allocation starts.
    REQUIRE_DYNAMIC_SMEM(WG_STAGES * STAGE_BYTES + 1024);
    const u32 raw = smem_addr(smem_raw), base = (raw + 1023) & ~1023u;
    unsigned char* const ring = smem_raw + (base - raw);

    const int wg = threadIdx.x >> 7;
    wgmma_tile_origin(blockIdx.x, M, N, BN, m0, n0);
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;

    // Copies K tile `k0` into `stage`.
    auto load = [&](int stage, int k0) {
        unsigned char* as = ring + stage * STAGE_BYTES;
        wgmma_copy_rows<WG_BM>(as, a, m0, M, K, k0);
        wgmma_copy_rows<BN>(as + A_BYTES, b, n0, N, K, k0);
    };

    const int tiles = (K + WG_BK - 1) / WG_BK;
#pragma unroll
    for (int s = 0; s < TILES_PREFETCH; ++s) {
        if (s < tiles) load(s, s * WG_BK);
        cp_async_commit();
    }
    for (int t = 0; t < tiles; ++t) {
        cp_async_wait<TILES_PREFETCH - 1>();
        fence_proxy_async();
        __syncthreads();
        const int next = t + TILES_PREFETCH;
        if (next < tiles) load(next % WG_STAGES, next * WG_BK);
        cp_async_commit();

        const u32 a_tile = base + (t % WG_STAGES) * STAGE_BYTES + wg * 64 * 128, b_tile = a_tile - wg * 64 * 128 + A_BYTES;
        issue(acc, a_tile, b_tile);
        wgmma_wait<1>();
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);
    }
    wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);
}

template <int BN, typename TY, typename TBIAS>
__device__ __forceinline__ void gemm_wgmma_tiles(const u16* a, const u16* b, int M, int N, int K,
                                                 const GemmOut<TY, TBIAS>& out) {
    float acc[BN / 2];
    int m0, n0;
    wgmma_tile_mainloop<BN>(acc, a, b, M, N, K, m0, n0,
                            [](float* c, u32 a_tile, u32 b_tile) { wgmma_issue_k_tile<BN>(c, a_tile, b_tile); });

    const int tid = threadIdx.x, wg = tid >> 7;
    const int lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int r = m0 + wg * 64 + ((tid >> 5) & 3) * 16 + g;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        const int c = n0 + j * 8 + 2 * t4;
        out.template store<2>(r, c, acc + 4 * j);
        out.template store<2>(r + 8, c, acc + 4 * j + 2);
    }
}

// gemm_wgmma_persistent: the persistent form described at the top of this file.
template <int BN, typename TY, typename TBIAS>
__device__ __forceinline__ void gemm_wgmma_persistent(const u16* a, const u16* b, int M, int N, int K,
                                                      const GemmOut<TY, TBIAS>& out) {
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

    // Copies the next step (steps are loaded in order: K tile `ld_k` of this block's tile
    // `ld_tile`, whose origin is kept, not recomputed: the loop's index math stays off the path
    // between the barrier and the next wgmma) into stage `stage`.
    int ld_tile = blockIdx.x, ld_k = 0, ld_m0, ld_n0;
    wgmma_tile_origin(ld_tile, M, N, BN, ld_m0, ld_n0);
    auto load_next = [&](int stage) {
        const int k0 = ld_k * WG_BK;
        unsigned char* as = ring + stage * STAGE_BYTES;
        wgmma_copy_rows<WG_BM>(as, a, ld_m0, M, K, k0);
        wgmma_copy_rows<BN>(as + A_BYTES, b, ld_n0, N, K, k0);
        if (++ld_k == k_steps) {
            ld_k = 0;
            ld_tile += gridDim.x;
            if (ld_tile < tiles) wgmma_tile_origin(ld_tile, M, N, BN, ld_m0, ld_n0);
        }
    };

    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;

#pragma unroll
    for (int s = 0; s < WG_PREFETCH; ++s) {
        if (s < steps) load_next(s);
        cp_async_commit();
    }
    cp_async_wait<WG_PREFETCH - 1>();
    fence_proxy_async();
    __syncthreads();

    const int lane = tid & 31, row_in_tile = wg * 64 + ((tid >> 5) & 3) * 16 + (lane >> 2);
    int tile = blockIdx.x, k = 0, stage = 0;
    for (int s = 0; s < steps; ++s) {
        const u32 a_tile = base + stage * STAGE_BYTES + wg * 64 * 128;
        const u32 b_tile = base + stage * STAGE_BYTES + A_BYTES;
        wgmma_issue_k_tile<BN>(acc, a_tile, b_tile);
        if (++k == k_steps) {
            wgmma_wait<0>();
#pragma unroll
            for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);
            int m0, n0;
            wgmma_tile_origin(tile, M, N, BN, m0, n0);
            tile += gridDim.x;
            k = 0;
            wgmma_store<BN>(acc, out, m0 + row_in_tile, n0, lane & 3);
#pragma unroll
            for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
        } else {
            wgmma_wait<1>();
        }
        // Step s + 1's copies (committed WG_PREFETCH − 1 groups before the newest) have landed.
        cp_async_wait<WG_PREFETCH - 2>();
        fence_proxy_async();
        __syncthreads();
        // The stage of step s + WG_PREFETCH is the one step s − 1 used: (stage + 3) % 4.
        const int refill = stage == 0 ? WG_STAGES - 1 : stage - 1;
        if (s + WG_PREFETCH < steps) load_next(refill);
        cp_async_commit();
        stage = stage == WG_STAGES - 1 ? 0 : stage + 1;
    }
    cp_async_wait<0>();
}

#endif
