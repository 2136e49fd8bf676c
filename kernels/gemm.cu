// `linear`: y = e(x·Wᵀ + b), W in PyTorch's [N, K] layout, on the block-tile GEMM of gemm.cuh
// (A = x [M, K], B = W [N, K], bias per column), e the epilogue op p.epilogue (epilogue.cuh; a
// gated residual reads `residual` [M, N] and `gate` [N], null otherwise). Scalars: GemmArgs
// (ops/gemm.rs). At the end, the quantized linear (gemm_quantized.cuh).
#include "gemm.cuh"

// Every linear kernel's store: its bias per column, then its epilogue op.
__device__ __forceinline__ GemmOut<TX, TB> linear_out(TX* y, const TB* bias, const TX* residual, const TX* gate,
                                                      const GemmArgs& p) {
    return GemmOut<TX, TB>{y, bias, 0, (u32)p.epilogue, residual, gate, p.m, p.n};
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_simt(const TX* x, const TW* w, const TB* bias, const TX* residual, const TX* gate, TX* y, GemmArgs p) {
    gemm_simt(RowMajor<TX>{x, p.m, p.k, 0}, RowMajor<TW>{w, p.n, p.k, 0}, p.m, p.n, p.k,
              linear_out(y, bias, residual, gate, p));
}

#if defined(MMA_OK)

// Takes the shapes with K % 8 ≠ 0 (ops/gemm.rs gives the rest to the pipelined kernel), so its
// operands load element by element: compiling the 16-byte path too cost the registers that
// made it spill beside the GELU epilogue on sm_90a.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_mma(const TX* x, const TW* w, const TB* bias, const TX* residual, const TX* gate, TX* y, GemmArgs p) {
    gemm_mma(RowMajor<TX>{x, p.m, p.k, 0}, RowMajor<TW>{w, p.n, p.k, 0}, p.m, p.n, p.k,
             linear_out(y, bias, residual, gate, p));
}

// ---- the pipelined tensor-core GEMM (linear with K % 8 == 0: every DiT and Qwen shape) -------
//
// 128×128 block tiles, K tiles of PIPE_BK = 64, PIPE_THREADS = 128: 4 warps as 2 (M) × 2 (N),
// 64×64 per warp = 4×8 tiles of mma.m16n8k16 (128 f32 accumulators per thread). Against the
// 64×32 warp tiles of gemm_mma, each k16 slice reads 128 bytes of fragments per MMA from shared
// memory instead of 192 (docs/benchmarks.md counts it).
//
// Shared memory: a ring of PIPE_STAGES stages (A tile, then B tile) in dynamic shared memory,
// filled by cp.async PIPE_STAGES − 1 K tiles ahead. A tile row is one K tile of 64 16-bit
// elements = 128 bytes = 8 chunks of 16 bytes, stored without padding and XOR-swizzled (chunk c
// of row r at c ^ (r % 8)), so the 8 rows of each 8×8 matrix an ldmatrix reads, and the 8
// chunks of a row segment a cp.async writes, fall in distinct banks.
//
// Fragments are double-buffered: the next k16 slice's A and B fragments are loaded by ldmatrix
// while the current slice's 32 MMAs issue; the last slice's MMAs overlap the loads of the next K
// tile's first slice. One barrier per K tile, after the third of its four slices:
//   slice 0: load slice 1; copy K tile t + PIPE_STAGES − 1 into the stage of tile t − 1; commit
//   slice 2: load slice 3; MMAs; wait until tile t + 1 has landed (PIPE_STAGES − 2 groups left
//            pending); barrier
//   slice 3: load slice 0 of tile t + 1; MMAs.
// The stage refilled at slice 0 of tile t was last read (slice 3 of tile t − 1, loaded at its
// slice 2) before the previous barrier. Group accounting: the prologue commits PIPE_STAGES − 1
// groups and each K tile exactly one (empty past the last), so group g holds K tile g.
//
// Blocks are numbered along a 1-D grid in groups of PIPE_GROUP_M block rows (all column tiles of
// those rows, down the rows first): consecutive blocks share their weight tile, and the blocks
// resident at once read a few row panels of x and of W from L2 rather than streaming W from
// memory once per block row.
static_assert(PIPE_BM == 128 && PIPE_BN == 128 && PIPE_THREADS == 128,
              "4 warps x 64x64 = a 128x128 tile; each thread copies 8 rows of each operand");
static_assert(PIPE_BK == 64, "a K tile row is one 128-byte swizzled row of 8 chunks");
static_assert(PIPE_STAGES >= 3, "the K tile refilled at slice 0 is two tiles behind the one waited for");

#define PIPE_KS (PIPE_BK / 16)                               // k16 slices per K tile
#define PIPE_STAGE_ELEMS ((PIPE_BM + PIPE_BN) * PIPE_BK)    // A then B tile, 16-bit elements

// Element offset of 16-byte chunk c (0..7) of row r in a swizzled tile.
__device__ __forceinline__ int pipe_swz(int r, int c) { return r * PIPE_BK + ((c ^ (r & 7)) << 3); }

// The origin of output tile `tile` in grouped order.
__device__ __forceinline__ void pipe_tile_origin(int tile, int M, int N, int& m0, int& n0) {
    const int tiles_m = (M + PIPE_BM - 1) / PIPE_BM, tiles_n = (N + PIPE_BN - 1) / PIPE_BN;
    const int per_group = PIPE_GROUP_M * tiles_n, in_group = tile % per_group;
    const int first_m = tile / per_group * PIPE_GROUP_M, group_rows = min(tiles_m - first_m, PIPE_GROUP_M);
    m0 = (first_m + in_group % group_rows) * PIPE_BM;
    n0 = in_group / group_rows * PIPE_BN;
}

// One thread's share of the copies of one operand's K tiles: chunk t % 8 of rows t / 8 + 16·i
// (i < 8) of the block's 128 rows, so 8 consecutive threads read one 128-byte row segment.
// Rows past the operand and chunks past K (K % 8 == 0: a chunk is wholly in or out) are zero
// filled. The row pointer, stride and in-range mask are set once per block.
struct PipeCopier {
    const u16* base;  // the operand (a valid address for zero fills)
    const u16* row;   // this thread's first row, at its chunk's k
    u64 stride;       // 16 rows
    u32 rows_in;      // bit i: row i in range
    int k_first;      // this thread's chunk's k in K tile 0

    __device__ __forceinline__ PipeCopier(const u16* src, int r0, int rows, int K, int tid) {
        const int r = r0 + (tid >> 3);
        base = src;
        k_first = (tid & 7) * 8;
        row = src + (u64)r * K + k_first;
        stride = (u64)16 * K;
        rows_in = 0;
#pragma unroll
        for (int i = 0; i < 8; ++i) rows_in |= (u32)(r + 16 * i < rows) << i;
    }

    // K tile t into the swizzled tile `dst` (this thread's chunk of row t / 8 at `dst_off`).
    __device__ __forceinline__ void copy(u16* dst, int dst_off, int t, int K) const {
        const int k0 = t * PIPE_BK;
        const bool k_in = k_first + k0 < K;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const bool in = k_in && (rows_in >> i & 1u);
            cp_async16(dst + dst_off + i * 16 * PIPE_BK, in ? row + i * stride + k0 : base, in ? 16 : 0);
        }
    }
};

// One warp's fragments of one k16 slice: A of its 4 m16 blocks, B of its 8 n8 blocks.
struct PipeFrags {
    u32 a[4][4], b[8][2];
};

// ldmatrix.x4 of slice `ks` from the stage tiles `as`, `bs` for the warp at (wm·64, wn·64): A as
// (rows 0-7 | 8-15) × (k 0-7 | 8-15) = a0…a3 per m16 block; B two n8 blocks per instruction,
// each (k 0-7, k 8-15) = b0, b1.
__device__ __forceinline__ void pipe_load_frags(PipeFrags& f, const u16* as, const u16* bs, int ks, int wm, int wn,
                                                int lane) {
#pragma unroll
    for (int i = 0; i < 4; ++i) ldsm_x4(f.a[i], &as[pipe_swz(wm * 64 + i * 16 + (lane & 15), 2 * ks + (lane >> 4))]);
#pragma unroll
    for (int j = 0; j < 8; j += 2) {
        u32 r[4];
        ldsm_x4(r, &bs[pipe_swz(wn * 64 + j * 8 + (lane >> 4) * 8 + (lane & 7), 2 * ks + ((lane >> 3) & 1))]);
        f.b[j][0] = r[0];
        f.b[j][1] = r[1];
        f.b[j + 1][0] = r[2];
        f.b[j + 1][1] = r[3];
    }
}

template <typename TY, typename TBIAS>
__device__ __forceinline__ void gemm_mma_pipelined(const u16* a, const u16* b, int M, int N, int K,
                                                   const GemmOut<TY, TBIAS>& out) {
    DYNAMIC_SMEM(smem_raw);
    REQUIRE_DYNAMIC_SMEM(PIPE_STAGES * PIPE_STAGE_ELEMS * 2);
    u16* smem = (u16*)smem_raw;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 1, wn = warp & 1;
    int m0, n0;
    pipe_tile_origin(blockIdx.x, M, N, m0, n0);

    float acc[4][8][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

    const PipeCopier copy_a(a, m0, M, K, tid), copy_b(b, n0, N, K, tid);
    const int copy_off = pipe_swz(tid >> 3, tid & 7);  // rows 16·i further keep its swizzle
    auto copy = [&](int stage, int t) {
        u16* as = smem + stage * PIPE_STAGE_ELEMS;
        copy_a.copy(as, copy_off, t, K);
        copy_b.copy(as + PIPE_BM * PIPE_BK, copy_off, t, K);
    };

    const int tiles = (K + PIPE_BK - 1) / PIPE_BK;
#pragma unroll
    for (int s = 0; s < PIPE_STAGES - 1; ++s) {
        if (s < tiles) copy(s, s);
        cp_async_commit();
    }
    cp_async_wait<PIPE_STAGES - 2>();
    __syncthreads();

    // `as`: the stage slices are read from; it moves to the next K tile's at the barrier, so
    // the last slice's loads already read the next tile. After the last K tile they read a stage
    // no copy is pending on, into fragments nobody uses: unconditional, because the branch
    // around them costs ptxas the registers to stay spill-free (255, docs/benchmarks.md).
    int stage = 0;
    const u16* as = smem;
    PipeFrags f[2];
    pipe_load_frags(f[0], as, as + PIPE_BM * PIPE_BK, 0, wm, wn, lane);
    for (int t = 0; t < tiles; ++t) {
#pragma unroll
        for (int ks = 0; ks < PIPE_KS; ++ks) {
            pipe_load_frags(f[(ks + 1) & 1], as, as + PIPE_BM * PIPE_BK, (ks + 1) % PIPE_KS, wm, wn, lane);
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) mma16816(acc[i][j], f[ks & 1].a[i], f[ks & 1].b[j], TX{});
            if (ks == 0) {  // into the stage of K tile t − 1 (the one before `stage`)
                const int ahead = t + PIPE_STAGES - 1;
                if (ahead < tiles) copy(stage == 0 ? PIPE_STAGES - 1 : stage - 1, ahead);
                cp_async_commit();
            }
            if (ks == PIPE_KS - 2) {
                cp_async_wait<PIPE_STAGES - 2>();
                __syncthreads();
                stage = stage + 1 == PIPE_STAGES ? 0 : stage + 1;
                as = smem + stage * PIPE_STAGE_ELEMS;
            }
        }
    }
    cp_async_wait<0>();

    mma_warp_store<4, 8>(acc, out, m0 + wm * 64, n0 + wn * 64, lane);
}

// Needs K % 8 == 0, a 1-D grid of one block per 128×128 output tile, and
// PIPE_STAGES · PIPE_STAGE_ELEMS · 2 = 98304 bytes of dynamic shared memory (≤ 99 KiB: it
// launches on sm_86 and sm_89).
extern "C" __global__ void __launch_bounds__(PIPE_THREADS)
    linear_mma_pipelined(const TX* x, const TW* w, const TB* bias, const TX* residual, const TX* gate, TX* y,
                         GemmArgs p) {
    gemm_mma_pipelined((const u16*)x, (const u16*)w, p.m, p.n, p.k, linear_out(y, bias, residual, gate, p));
}

#endif

// ---- Hopper: warpgroup MMA (gemm_wgmma.cuh), sm_90a modules only ------------------------------
#include "gemm_wgmma.cuh"
#if defined(MMA_OK) && defined(WGMMA_OK)

// 128 × 256 tiles, one block per tile (grid: the tile count); needs K % 8 == 0 and the dynamic
// shared memory ops/gemm.rs gives it.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 1)
    linear_wgmma(const TX* x, const TW* w, const TB* bias, const TX* residual, const TX* gate, TX* y, GemmArgs p) {
    gemm_wgmma_tiles<256>((const u16*)x, (const u16*)w, p.m, p.n, p.k, linear_out(y, bias, residual, gate, p));
}

// The same tiles, persistent: a grid of at most as many blocks as tiles, each walking its share.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 1)
    linear_wgmma_persistent(const TX* x, const TW* w, const TB* bias, const TX* residual, const TX* gate, TX* y,
                            GemmArgs p) {
    gemm_wgmma_persistent<256>((const u16*)x, (const u16*)w, p.m, p.n, p.k, linear_out(y, bias, residual, gate, p));
}

#endif

// ---- Hopper, warp-specialised (gemm_wgmma_ws.cuh): x and w reach it as tensor maps ------------
#include "gemm_wgmma_ws.cuh"
#if defined(MMA_OK) && defined(WGMMA_OK)

// WS_THREADS threads (producer + 2 consumer warpgroups), persistent; x_map and w_map: the
// operands' tensor maps (ops/gemm.rs); K % 8 == 0.
extern "C" __global__ void __launch_bounds__(WS_THREADS, 1)
    linear_wgmma_ws(const TB* bias, const TX* residual, const TX* gate, TX* y, const __grid_constant__ CUtensorMap x_map,
                    const __grid_constant__ CUtensorMap w_map, GemmArgs p) {
    gemm_wgmma_ws(&x_map, &w_map, p.m, p.n, p.k, linear_out(y, bias, residual, gate, p));
}

#endif

// ---- linear_quantized (gemm_quantized.cuh): w = packed codes, scales f32 [N, S] ---------------
#include "gemm_quantized.cuh"

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_int8_simt(const TX* x, const u32* w, const float* scales, const TB* bias, const TX* residual,
                       const TX* gate, TX* y, GemmArgs p) {
    linear_quantized_simt<QUANT_INT8>(x, w, scales, linear_out(y, bias, residual, gate, p), p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_int4_simt(const TX* x, const u32* w, const float* scales, const TB* bias, const TX* residual,
                       const TX* gate, TX* y, GemmArgs p) {
    linear_quantized_simt<QUANT_INT4>(x, w, scales, linear_out(y, bias, residual, gate, p), p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_fp8_simt(const TX* x, const u32* w, const float* scales, const TB* bias, const TX* residual,
                       const TX* gate, TX* y, GemmArgs p) {
    linear_quantized_simt<QUANT_FP8>(x, w, scales, linear_out(y, bias, residual, gate, p), p);
}

#if defined(MMA_OK)

// Need every 32-wide K tile inside one scale block (B % 32 == 0, or fp8).
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_int8_mma(const TX* x, const u32* w, const float* scales, const TB* bias, const TX* residual,
                       const TX* gate, TX* y, GemmArgs p) {
    linear_quantized_mma<QUANT_INT8>(x, w, scales, linear_out(y, bias, residual, gate, p), p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_int4_mma(const TX* x, const u32* w, const float* scales, const TB* bias, const TX* residual,
                       const TX* gate, TX* y, GemmArgs p) {
    linear_quantized_mma<QUANT_INT4>(x, w, scales, linear_out(y, bias, residual, gate, p), p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_fp8_mma(const TX* x, const u32* w, const float* scales, const TB* bias, const TX* residual,
                       const TX* gate, TX* y, GemmArgs p) {
    linear_quantized_mma<QUANT_FP8>(x, w, scales, linear_out(y, bias, residual, gate, p), p);
}

#endif
