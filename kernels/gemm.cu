// GEMM kernels: `linear` (y = x·Wᵀ + b, W in PyTorch's [N, K] layout) and the VAE's conv2d as an
// implicit GEMM (the im2col matrix is never stored: its tiles are gathered from `x` as they are
// loaded into shared memory).
//
// C[m, n] = Σ_k A[m, k]·B[n, k]: both operands are "K-contiguous" ([rows, K]), which is what
// mma.sync's row.col form wants (A row-major, B column-major). linear: A = x [M, K], B = W [N, K],
// bias per column. conv2d: A = W [O, C·KH·KW], B = im2col(x) [P, C·KH·KW], output [O, P]
// (channel-first, as joyrt's VAE stores images), bias per row.
//
// gemm_mma (bf16/f16 operands of one dtype, sm_80+): 128×128×32 block tile, 8 warps as 2 (M) ×
// 4 (N), 64×32 per warp = 4×4 tiles of mma.m16n8k16 with f32 accumulators (64 per thread).
// Shared tiles are double-buffered: the next K tile is loaded from global memory into registers
// (16-byte loads when K % 8 == 0) while the current one is multiplied, then stored to the other
// buffer; one barrier per K tile. Fragments come from shared memory by ldmatrix.x4 (one
// instruction per 16×16 A block or pair of n8 B blocks); rows are padded to 40 elements (80
// bytes) so the 8 row addresses of each 8×8 tile hit 32 distinct banks.
//
// gemm_simt (f32, or operands of different dtypes): 64×64×16 tile, 256 threads × 4×4 outputs,
// f32 FMA. It is the exact-f32 path (no TF32), matching the reference to f32 rounding.
#include "common.cuh"

struct ConvShape {
    int channels, height, width, kernel_h, kernel_w, stride, pad_top, pad_left, out_height, out_width;
};

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

// Row n = output position (oy, ox), column k = (c, ky, kx) of the im2col matrix of x [C, H, W].
template <typename T> struct Im2col {
    const T* x;
    ConvShape s;
    __device__ __forceinline__ long long offset(int n, int kk) const {
        const int taps = s.kernel_h * s.kernel_w, positions = s.out_height * s.out_width;
        if (n >= positions || kk >= s.channels * taps) return -1;
        const int c = kk / taps, t = kk % taps, ky = t / s.kernel_w, kx = t % s.kernel_w;
        const int oy = n / s.out_width, ox = n % s.out_width;
        const int iy = oy * s.stride + ky - s.pad_top, ix = ox * s.stride + kx - s.pad_left;
        if (iy < 0 || iy >= s.height || ix < 0 || ix >= s.width) return -1;
        return ((long long)c * s.height + iy) * s.width + ix;
    }
    __device__ __forceinline__ float at(int n, int kk) const {
        const long long o = offset(n, kk);
        return o < 0 ? 0.0f : ld(x, (u64)o);
    }
    __device__ __forceinline__ uint4 load8(int n, int k0) const {
        u32 w[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const long long o0 = offset(n, k0 + 2 * i), o1 = offset(n, k0 + 2 * i + 1);
            const u32 lo = o0 < 0 ? 0u : ((const u16*)x)[o0], hi = o1 < 0 ? 0u : ((const u16*)x)[o1];
            w[i] = lo | (hi << 16);
        }
        return make_uint4(w[0], w[1], w[2], w[3]);
    }
};

// Stores one output element with its bias (per column for linear, per row for conv).
template <typename TY, typename TBIAS>
__device__ __forceinline__ void epilogue(TY* y, const TBIAS* bias, int bias_rows, int m, int n, int M, int N,
                                         float v) {
    if (m >= M || n >= N) return;
    if (bias) v += ld(bias, bias_rows ? m : n);
    st(y, (u64)m * N + n, v);
}

template <class LA, class LB, typename TY, typename TBIAS>
__device__ __forceinline__ void gemm_simt(LA a, LB b, int M, int N, int K, TY* y, const TBIAS* bias,
                                          int bias_rows) {
    __shared__ float As[16][64 + 4];
    __shared__ float Bs[16][64 + 4];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < K; k0 += 16) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int e = threadIdx.x + 256 * i, r = e / 16, kk = e % 16;
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
        for (int j = 0; j < 4; ++j) epilogue(y, bias, bias_rows, m0 + ty + 16 * i, n0 + tx + 16 * j, M, N, acc[i][j]);
}

extern "C" __global__ void __launch_bounds__(256)
    linear_simt(const TX* x, const TW* w, const TB* bias, TX* y, int M, int N, int K) {
    gemm_simt(RowMajor<TX>{x, M, K, 0}, RowMajor<TW>{w, N, K, 0}, M, N, K, y, bias, 0);
}

extern "C" __global__ void __launch_bounds__(256)
    conv2d_simt(const TX* x, const TW* w, const TB* bias, TX* y, ConvShape s, int out_channels) {
    const int K = s.channels * s.kernel_h * s.kernel_w, P = s.out_height * s.out_width;
    gemm_simt(RowMajor<TW>{w, out_channels, K, 0}, Im2col<TX>{x, s}, out_channels, P, K, y, bias, 1);
}

// MMA_OK is defined by the host when TX and TW are the same 16-bit type.
#if defined(MMA_OK)

#define MMA_BM 128
#define MMA_BN 128
#define MMA_BK 32
#define MMA_LDS 40  // padded row length of the shared tiles, in 16-bit elements

// One warp's share of a 128×128×32 block tile: acc[i][j] (m16 block i, n8 block j of the warp's
// 64×32) += A·Bᵀ over the 32 k of the shared tiles `as`, `bs` ([row][k], rows MMA_LDS apart).
__device__ __forceinline__ void mma_block_tile(float (*acc)[4][4], const u16* as, const u16* bs, int wm, int wn,
                                               int lane) {
#pragma unroll
    for (int kk = 0; kk < MMA_BK; kk += 16) {
        u32 af[4][4], bfr[4][2];
        // A: tiles (rows 0-7 | 8-15) × (k 0-7 | 8-15) of each m16 block, in a0..a3 order.
#pragma unroll
        for (int i = 0; i < 4; ++i)
            ldsm_x4(af[i], &as[(wm * 64 + i * 16 + (lane & 15)) * MMA_LDS + kk + (lane >> 4) * 8]);
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
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) mma16816(acc[i][j], af[i], bfr[j], TX{});
    }
}

// Stores one warp's accumulators of the block tile at (m0, n0). Accumulator fragment: d0, d1 at
// (g, 2·t4 + {0, 1}), d2, d3 at (g + 8, 2·t4 + {0, 1}).
template <typename TY, typename TBIAS>
__device__ __forceinline__ void mma_block_store(float (*acc)[4][4], TY* y, const TBIAS* bias, int bias_rows, int m0,
                                                int n0, int M, int N, int wm, int wn, int lane) {
    const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int r = m0 + wm * 64 + i * 16 + g, c = n0 + wn * 32 + j * 8 + 2 * t4;
            epilogue(y, bias, bias_rows, r, c, M, N, acc[i][j][0]);
            epilogue(y, bias, bias_rows, r, c + 1, M, N, acc[i][j][1]);
            epilogue(y, bias, bias_rows, r + 8, c, M, N, acc[i][j][2]);
            epilogue(y, bias, bias_rows, r + 8, c + 1, M, N, acc[i][j][3]);
        }
}

template <class LA, class LB, typename TY, typename TBIAS>
__device__ __forceinline__ void gemm_mma(LA a, LB b, int M, int N, int K, TY* y, const TBIAS* bias, int bias_rows) {
    __shared__ __align__(16) u16 As[2][MMA_BM][MMA_LDS];
    __shared__ __align__(16) u16 Bs[2][MMA_BN][MMA_LDS];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 2, wn = warp & 3;  // warp tile origin: (wm·64, wn·32)
    const int m0 = blockIdx.y * MMA_BM, n0 = blockIdx.x * MMA_BN;

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

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
        mma_block_tile(acc, &As[cur][0][0], &Bs[cur][0][0], wm, wn, lane);
        if (t + 1 < tiles) store(cur ^ 1);
        __syncthreads();
    }

    mma_block_store(acc, y, bias, bias_rows, m0, n0, M, N, wm, wn, lane);
}

extern "C" __global__ void __launch_bounds__(256)
    linear_mma(const TX* x, const TW* w, const TB* bias, TX* y, int M, int N, int K, int vec) {
    gemm_mma(RowMajor<TX>{x, M, K, vec}, RowMajor<TW>{w, N, K, vec}, M, N, K, y, bias, 0);
}

extern "C" __global__ void __launch_bounds__(256)
    conv2d_mma(const TX* x, const TW* w, const TB* bias, TX* y, ConvShape s, int out_channels, int vec) {
    const int K = s.channels * s.kernel_h * s.kernel_w, P = s.out_height * s.out_width;
    gemm_mma(RowMajor<TW>{w, out_channels, K, vec}, Im2col<TX>{x, s}, out_channels, P, K, y, bias, 1);
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
#define MMA_STAGES 3
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
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

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

// Needs K % 8 == 0 and MMA_STAGES · 2 · 128 · 40 · 2 = 61440 bytes of dynamic shared memory.
extern "C" __global__ void __launch_bounds__(256)
    linear_mma_pipelined(const TX* x, const TW* w, const TB* bias, TX* y, int M, int N, int K) {
    gemm_mma_pipelined((const u16*)x, (const u16*)w, M, N, K, y, bias);
}

#endif
