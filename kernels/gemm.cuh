// The block-tile GEMM shared by gemm.cu (`linear`) and conv.cu (conv2d as an implicit GEMM):
// C[m, n] = Σ_k A[m, k]·B[n, k] over two "K-contiguous" operands ([rows, K]), which is what
// mma.sync's row.col form wants (A row-major, B column-major). An operand is any type with
// `at(r, k)` (an f32 element, zero outside) and `load8(r, k0)` (8 16-bit elements as one uint4):
// RowMajor below, Im2col in conv.cu. The store is epilogue.cuh's `GemmOut`: a bias per column
// (linear) or per row (conv), linear's epilogue op, C row-major; the tensor-core kernels store
// column pairs (one 4-byte store where N is even).
//
// gemm_simt (f32, or operands of different dtypes): SIMT_TILE² (64×64) × 16 tile, GEMM_THREADS
// (256) threads × 4×4 outputs, f32 FMA. It is the exact-f32 path (no TF32), matching the
// reference to f32 rounding.
//
// gemm_mma (bf16/f16 operands of one dtype, sm_80+): 128×128×32 block tile, 8 warps as 2 (M) ×
// 4 (N), 64×32 per warp = 4×4 tiles of mma.m16n8k16 with f32 accumulators (64 per thread).
// Shared tiles are double-buffered: the next K tile is loaded from global memory into registers
// (16-byte loads when K % 8 == 0) while the current one is multiplied, then stored to the other
// buffer; one barrier per K tile. Fragments come from shared memory by ldmatrix.x4 (one
// instruction per 16×16 A block or pair of n8 B blocks); rows are padded to MMA_LDS = 40
// elements (80 bytes) so the 8 row addresses of each 8×8 tile hit 32 distinct banks.
//
// gemm_mma takes any operand (conv's gathered im2col tiles, K % 8 ≠ 0, the quantized linear's
// decoded weights), which is why it stages through registers; linear with K % 8 == 0 takes
// gemm.cu's cp.async kernel (64×64 warp tiles, swizzled 64-wide K tiles, a 3-stage ring).
//
// The tile constants come from the host (ops/gemm.rs), which sizes grids and shared memory with
// them; the thread-to-element maps below are written for these values.
#pragma once
#include "common.cuh"
#include "epilogue.cuh"

static_assert(GEMM_THREADS == 256 && SIMT_TILE == 64, "gemm_simt: 256 threads x 4x4 outputs = a 64x64 tile");
static_assert(MMA_BM == 128 && MMA_BN == 128 && MMA_BK == 32, "gemm_mma: 8 warps x 64x32 = 128x128, K tiles of 32");
static_assert(MMA_LDS >= MMA_BK && MMA_LDS % 8 == 0, "shared rows hold a K tile and stay 16-byte aligned");

// Element (r, k) of a [rows, K] row-major operand; zero outside.
template <typename T> struct RowMajor {
    const T* p;
    int rows, k;
    int vec;  // 1: K % 8 == 0, so 8 elements starting at a multiple of 8 are one aligned 16-byte load
    __device__ __forceinline__ float at(int r, int kk) const {
        return (r < rows && kk < k) ? ld(p, (u64)r * k + kk) : 0.0f;
    }
    __device__ __forceinline__ u16 bits(int r, int kk) const {
        return (r < rows && kk < k) ? ((const u16*)p)[(u64)r * k + kk] : (u16)0;
    }
    __device__ __forceinline__ uint4 load8(int r, int k0) const {
        if (vec && r < rows && k0 + 8 <= k) return *(const uint4*)((const u16*)p + (u64)r * k + k0);
        uint4 v;
        v.x = bits(r, k0) | ((u32)bits(r, k0 + 1) << 16);
        v.y = bits(r, k0 + 2) | ((u32)bits(r, k0 + 3) << 16);
        v.z = bits(r, k0 + 4) | ((u32)bits(r, k0 + 5) << 16);
        v.w = bits(r, k0 + 6) | ((u32)bits(r, k0 + 7) << 16);
        return v;
    }
};

// Stores a warp's MI × NJ tiles of m16n8 accumulators whose top-left output is (r0, c0) through
// `out`. Accumulator fragment: d0, d1 at (g, 2·t4 + {0, 1}), d2, d3 at (g + 8, 2·t4 + {0, 1}); each
// thread stores column pairs.
template <int MI, int NJ, typename TY, typename TBIAS>
__device__ __forceinline__ void mma_warp_store(float (*acc)[NJ][4], const GemmOut<TY, TBIAS>& out, int r0, int c0,
                                               int lane) {
    const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                out.template store<2>(r0 + i * 16 + g + 8 * h, c0 + j * 8 + 2 * t4, acc[i][j] + 2 * h);
}

template <class LA, class LB, typename TY, typename TBIAS>
__device__ __forceinline__ void gemm_simt(LA a, LB b, int M, int N, int K, const GemmOut<TY, TBIAS>& out) {
    __shared__ float As[16][SIMT_TILE + 4];
    __shared__ float Bs[16][SIMT_TILE + 4];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int m0 = blockIdx.y * SIMT_TILE, n0 = blockIdx.x * SIMT_TILE;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < K; k0 += 16) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int e = threadIdx.x + GEMM_THREADS * i, r = e / 16, kk = e % 16;
            As[kk][r] = a.at(m0 + r, k0 + kk);
            Bs[kk][r] = b.at(n0 + r, k0 + kk);
        }
        __syncthreads();
        // Each K tile is summed on its own, then added: the rounding error grows with K/16 + 16
        // terms instead of K (one long chain), close to the reference's blocked dot products.
        float part[4][4] = {};
#pragma unroll
        for (int kk = 0; kk < 16; ++kk) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                av[i] = As[kk][ty + 16 * i];
                bv[i] = Bs[kk][tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) part[i][j] = fmaf(av[i], bv[j], part[i][j]);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] += part[i][j];
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) out.template store<1>(m0 + ty + 16 * i, n0 + tx + 16 * j, &acc[i][j]);
}

// One warp's share of a 128×128×32 block tile: acc[i][j] (m16 block i, n8 block j of the warp's
// 64×32) += A·Bᵀ over the 32 16-bit columns of the shared tiles `as`, `bs` ([row][k], rows
// MMA_LDS apart), `mma(d, a, b)` being one MMA on the fragments: mma.m16n8k16 of 16-bit elements,
// or m16n8k32 e4m3 where the columns hold pairs of fp8 codes (an 8×8 b16 matrix that ldmatrix
// reads is exactly an 8-row × 16-code fragment of the 8-bit MMA). Outside MMA_OK: the fp8 kernels
// take it in modules of any activation dtype.
template <class Mma>
__device__ __forceinline__ void mma_block_tile(float (*acc)[4][4], const u16* as, const u16* bs, int wm, int wn,
                                               int lane, Mma mma) {
#pragma unroll
    for (int kk = 0; kk < MMA_BK; kk += 16) {
        u32 bfr[4][2];
        // B: two n8 blocks per ldmatrix, each as (k 0-7, k 8-15) = b0, b1.
#pragma unroll
        for (int j = 0; j < 4; j += 2) {
            u32 r[4];
            ldsm_x4(r, &bs[(wn * 32 + j * 8 + (lane >> 4) * 8 + (lane & 7)) * MMA_LDS + kk + ((lane >> 3) & 1) * 8]);
            bfr[j][0] = r[0];
            bfr[j][1] = r[1];
            bfr[j + 1][0] = r[2];
            bfr[j + 1][1] = r[3];
        }
        // A: tiles (rows 0-7 | 8-15) × (k 0-7 | 8-15) of each m16 block, in a0..a3 order, loaded
        // just before its four MMAs: holding all four blocks' fragments at once (16 registers
        // beside the 64 accumulators and the 16 of the next tile's loads) made conv2d_mma spill
        // at sm_90a's 128-register choice.
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            u32 af[4];
            ldsm_x4(af, &as[(wm * 64 + i * 16 + (lane & 15)) * MMA_LDS + kk + (lane >> 4) * 8]);
#pragma unroll
            for (int j = 0; j < 4; ++j) mma(acc[i][j], af, bfr[j]);
        }
    }
}

#if defined(MMA_OK)

// Stores one warp's accumulators of the 128×128 block tile at (m0, n0).
template <typename TY, typename TBIAS>
__device__ __forceinline__ void mma_block_store(float (*acc)[4][4], const GemmOut<TY, TBIAS>& out, int m0, int n0,
                                                int wm, int wn, int lane) {
    mma_warp_store<4, 4>(acc, out, m0 + wm * 64, n0 + wn * 32, lane);
}

__device__ __forceinline__ void mma_zero(float (*acc)[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;
}

template <class LA, class LB, typename TY, typename TBIAS>
__device__ __forceinline__ void gemm_mma(LA a, LB b, int M, int N, int K, const GemmOut<TY, TBIAS>& out) {
    __shared__ __align__(16) u16 As[2][MMA_BM][MMA_LDS];
    __shared__ __align__(16) u16 Bs[2][MMA_BN][MMA_LDS];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 2, wn = warp & 3;  // warp tile origin: (wm·64, wn·32)
    const int m0 = blockIdx.y * MMA_BM, n0 = blockIdx.x * MMA_BN;

    float acc[4][4][4];
    mma_zero(acc);

    // Each thread moves two 8-element chunks of each operand per K tile: chunk c → row c/4, k (c%4)·8.
    uint4 ra[2], rb[2];
    const int row0 = tid >> 2, kc = (tid & 3) * 8;
    auto load = [&](int k0) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            ra[i] = a.load8(m0 + row0 + 64 * i, k0 + kc);
            rb[i] = b.load8(n0 + row0 + 64 * i, k0 + kc);
        }
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            *(uint4*)&As[buf][row0 + 64 * i][kc] = ra[i];
            *(uint4*)&Bs[buf][row0 + 64 * i][kc] = rb[i];
        }
    };

    const int tiles = (K + MMA_BK - 1) / MMA_BK;
    load(0);
    store(0);
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
        const int cur = t & 1;
        if (t + 1 < tiles) load((t + 1) * MMA_BK);
        mma_block_tile(acc, &As[cur][0][0], &Bs[cur][0][0], wm, wn, lane,
                       [](float* d, const u32* a, const u32* b) { mma16816(d, a, b, TX{}); });
        if (t + 1 < tiles) store(cur ^ 1);
        __syncthreads();
    }

    mma_block_store(acc, out, m0, n0, wm, wn, lane);
}

#endif
