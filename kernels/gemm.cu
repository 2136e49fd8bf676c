// `linear`: y = x·Wᵀ + b, W in PyTorch's [N, K] layout, on the block-tile GEMM of gemm.cuh
// (A = x [M, K], B = W [N, K], bias per column). Scalars: GemmArgs (ops/gemm.rs). At the end, the
// quantized linear (gemm_quantized.cuh).
#include "gemm.cuh"

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_simt(const TX* x, const TW* w, const TB* bias, TX* y, GemmArgs p) {
    gemm_simt(RowMajor<TX>{x, p.m, p.k, 0}, RowMajor<TW>{w, p.n, p.k, 0}, p.m, p.n, p.k, y, bias, 0);
}

#if defined(MMA_OK)

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_mma(const TX* x, const TW* w, const TB* bias, TX* y, GemmArgs p) {
    gemm_mma(RowMajor<TX>{x, p.m, p.k, p.vec}, RowMajor<TW>{w, p.n, p.k, p.vec}, p.m, p.n, p.k, y, bias, 0);
}

// ---- the pipelined tensor-core GEMM (linear with K % 8 == 0: every DiT and Qwen shape) -------
//
// Same 128×128×32 tiles, warp layout and ldmatrix fragments as gemm_mma, but the global → shared
// copies are cp.async (no register staging) into a ring of MMA_STAGES shared buffers in dynamic
// shared memory, so up to MMA_STAGES − 1 K tiles are in flight while one is multiplied. Group
// accounting: the prologue commits MMA_STAGES − 1 groups and each iteration exactly one (empty
// past the last tile), so waiting until MMA_STAGES − 2 remain means tile t has landed; the
// barrier after the wait makes every thread's copies visible and guarantees that the buffer
// refilled next (the one of tile t − 1) is no longer being read.
#define MMA_STAGE_ELEMS (2 * MMA_BM * MMA_LDS)  // A then B tile, 16-bit elements

template <typename TY, typename TBIAS>
__device__ __forceinline__ void gemm_mma_pipelined(const u16* a, const u16* b, int M, int N, int K, TY* y,
                                                   const TBIAS* bias) {
    DYNAMIC_SMEM(smem_raw);
    REQUIRE_DYNAMIC_SMEM(MMA_STAGES * MMA_STAGE_ELEMS * 2);
    u16* smem = (u16*)smem_raw;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 2, wn = warp & 3;
    const int m0 = blockIdx.y * MMA_BM, n0 = blockIdx.x * MMA_BN;
    const int row0 = tid >> 2, kc = (tid & 3) * 8;

    float acc[4][4][4];
    mma_zero(acc);

    auto load = [&](int stage, int k0) {
        u16* as = smem + stage * MMA_STAGE_ELEMS;
        u16* bs = as + MMA_BM * MMA_LDS;
        const bool k_in = k0 + kc < K;  // K % 8 == 0: a chunk is wholly in or out
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int r = row0 + 64 * i;
            const bool ar = k_in && m0 + r < M, br = k_in && n0 + r < N;
            cp_async16(&as[r * MMA_LDS + kc], ar ? a + (u64)(m0 + r) * K + k0 + kc : a, ar ? 16 : 0);
            cp_async16(&bs[r * MMA_LDS + kc], br ? b + (u64)(n0 + r) * K + k0 + kc : b, br ? 16 : 0);
        }
    };

    const int tiles = (K + MMA_BK - 1) / MMA_BK;
#pragma unroll
    for (int s = 0; s < MMA_STAGES - 1; ++s) {
        if (s < tiles) load(s, s * MMA_BK);
        cp_async_commit();
    }
    for (int t = 0; t < tiles; ++t) {
        cp_async_wait<MMA_STAGES - 2>();
        __syncthreads();
        const int next = t + MMA_STAGES - 1;
        if (next < tiles) load(next % MMA_STAGES, next * MMA_BK);
        cp_async_commit();

        const u16* as = smem + (t % MMA_STAGES) * MMA_STAGE_ELEMS;
        mma_block_tile(acc, as, as + MMA_BM * MMA_LDS, wm, wn, lane);
    }
    cp_async_wait<0>();

    mma_block_store(acc, y, bias, 0, m0, n0, M, N, wm, wn, lane);
}

// Needs K % 8 == 0 and MMA_STAGES · MMA_STAGE_ELEMS · 2 = 61440 bytes of dynamic shared memory.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_mma_pipelined(const TX* x, const TW* w, const TB* bias, TX* y, GemmArgs p) {
    gemm_mma_pipelined((const u16*)x, (const u16*)w, p.m, p.n, p.k, y, bias);
}

#endif

// ---- Hopper: warpgroup MMA (gemm_wgmma.cuh), sm_90a modules only ------------------------------
#include "gemm_wgmma.cuh"
#if defined(MMA_OK) && defined(WGMMA_OK)

// 128 × 256 tiles, one block per tile (grid: the tile count); needs K % 8 == 0 and the dynamic
// shared memory ops/gemm.rs gives it.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 1)
    linear_wgmma(const TX* x, const TW* w, const TB* bias, TX* y, GemmArgs p) {
    gemm_wgmma_tiles<256>((const u16*)x, (const u16*)w, p.m, p.n, p.k, y, bias);
}

// The same tiles, persistent: a grid of at most as many blocks as tiles, each walking its share.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 1)
    linear_wgmma_persistent(const TX* x, const TW* w, const TB* bias, TX* y, GemmArgs p) {
    gemm_wgmma_persistent<256>((const u16*)x, (const u16*)w, p.m, p.n, p.k, y, bias);
}

#endif

// ---- Hopper, warp-specialised (gemm_wgmma_ws.cuh): x and w reach it as tensor maps ------------
#include "gemm_wgmma_ws.cuh"
#if defined(MMA_OK) && defined(WGMMA_OK)

// WS_THREADS threads (producer + 2 consumer warpgroups), persistent; x_map and w_map: the
// operands' tensor maps (ops/gemm.rs); K % 8 == 0.
extern "C" __global__ void __launch_bounds__(WS_THREADS, 1)
    linear_wgmma_ws(const TB* bias, TX* y, const __grid_constant__ CUtensorMap x_map,
                    const __grid_constant__ CUtensorMap w_map, GemmArgs p) {
    gemm_wgmma_ws(&x_map, &w_map, p.m, p.n, p.k, y, bias);
}

#endif

// ---- linear_quantized (gemm_quantized.cuh): w = packed codes, scales f32 [N, S] ---------------
#include "gemm_quantized.cuh"

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_int8_simt(const TX* x, const u32* w, const float* scales, const TB* bias, TX* y, GemmArgs p) {
    linear_quantized_simt<QUANT_INT8>(x, w, scales, bias, y, p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_int4_simt(const TX* x, const u32* w, const float* scales, const TB* bias, TX* y, GemmArgs p) {
    linear_quantized_simt<QUANT_INT4>(x, w, scales, bias, y, p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_fp8_simt(const TX* x, const u32* w, const float* scales, const TB* bias, TX* y, GemmArgs p) {
    linear_quantized_simt<QUANT_FP8>(x, w, scales, bias, y, p);
}

#if defined(MMA_OK)

// Need every 32-wide K tile inside one scale block (B % 32 == 0, or fp8).
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_int8_mma(const TX* x, const u32* w, const float* scales, const TB* bias, TX* y, GemmArgs p) {
    linear_quantized_mma<QUANT_INT8>(x, w, scales, bias, y, p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_int4_mma(const TX* x, const u32* w, const float* scales, const TB* bias, TX* y, GemmArgs p) {
    linear_quantized_mma<QUANT_INT4>(x, w, scales, bias, y, p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_fp8_mma(const TX* x, const u32* w, const float* scales, const TB* bias, TX* y, GemmArgs p) {
    linear_quantized_mma<QUANT_FP8>(x, w, scales, bias, y, p);
}

#endif
