// Shared definitions for every joyrt CUDA kernel file.
//
// joyrt compiles kernels with NVRTC at first use and needs no CUDA headers: 16-bit storage types
// are plain structs of bits, widened to f32 with a shift (bf16) or one PTX `cvt` (f16), so the
// same sources compile on a machine that has only libnvrtc (CI compile-checks them that way).
//
// The host's source builder (backends/cuda/src/nvrtc.rs) prepends, before this file:
// - the specialisation: `#define TX <type>` (the primary input and output dtype) and, where a
//   kernel reads a second tensor of its own dtype, `TW`, `TB`, `TC` (weights, bias, tables);
//   `MMA_OK` where TX and TW are one 16-bit type (the tensor-core kernels are compiled then);
// - the op codes of joyrt-core's kernel_abi (`ACT_SILU`, `BIN_ADD`, `BCAST_ROW`, ...);
// - the family's shared constants (tile sizes the host's grid and shared-memory sizes use too)
//   and its parameter struct (`NormArgs`, ...), declared once in Rust in ops/<family>.rs.
// Every kernel takes its buffers, then that struct by value. The defaults below only keep the
// headers readable by an editor; a kernel file compiles through the builder.
//
// The same sources also run on a CPU emulation of CUDA (backends/cuda/emu/cuda_emu.hpp, with
// JOYRT_CUDA_EMU defined) so the conformance suite exercises them without a GPU; the only
// difference is that the inline PTX below has a C++ twin there.
//
// Numerics: every kernel loads with `ld()` into f32, accumulates in f32, and stores with `st()`,
// which rounds to nearest even (NaN stays NaN), matching joyrt-core's host conversions.
#pragma once

typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

struct bf16_t {
    u16 bits;
};
struct f16_t {
    u16 bits;
};

#ifndef TX
#define TX float
#endif
#ifndef TW
#define TW TX
#endif
#ifndef TB
#define TB TX
#endif
#ifndef TC
#define TC TX
#endif

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(bf16_t v) { return __uint_as_float(((u32)v.bits) << 16); }
__device__ __forceinline__ float to_f32(f16_t v) {
#ifdef JOYRT_CUDA_EMU
    return emu_f16_to_f32(v.bits);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
    return f;
#endif
}

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16_t from_f32<bf16_t>(float v) {
    u32 u = __float_as_uint(v);
    bf16_t r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.bits = (u16)((u >> 16) | 0x40u);  // quiet NaN, sign kept
    } else {
        r.bits = (u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    return r;
}
template <> __device__ __forceinline__ f16_t from_f32<f16_t>(float v) {
    f16_t r;
#ifdef JOYRT_CUDA_EMU
    r.bits = emu_f32_to_f16(v);
#else
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(v));
#endif
    return r;
}

template <typename T> __device__ __forceinline__ float ld(const T* p, u64 i) { return to_f32(p[i]); }
template <typename T> __device__ __forceinline__ void st(T* p, u64 i, float v) { p[i] = from_f32<T>(v); }

// Grid-stride index over `n` elements for 1-D launches (grids are capped by the host).
#define FOR_EACH(i, n) for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n); i += (u64)gridDim.x * blockDim.x)

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// `warp_op` (warp_sum, warp_max) over the whole block (blockDim.x a multiple of 32, at most
// 1024), lanes past the block's warps contributing 0; every thread gets the result. `scratch`
// holds 32 floats; the trailing barrier makes it safe to call again at once.
template <float (*warp_op)(float)> __device__ __forceinline__ float block_reduce(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_op(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : 0.0f;
    t = warp_op(t);
    __syncthreads();
    return t;
}
__device__ __forceinline__ float block_sum(float v, float* scratch) { return block_reduce<warp_sum>(v, scratch); }
// The maximum of non-negative values (0 is the identity it pads with).
__device__ __forceinline__ float block_max(float v, float* scratch) { return block_reduce<warp_max>(v, scratch); }

// 1/√(mean(x²) + eps) of the row of `cols` elements at `base`, reduced over the block; every
// thread gets it (rms_norm and the fused rms_norm_rope).
__device__ __forceinline__ float row_rms_rstd(const TX* x, u64 base, u64 cols, float eps, float* scratch) {
    float q = 0.0f;
    for (u64 c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = ld(x, base + c);
        q += v * v;
    }
    return rsqrtf(block_sum(q, scratch) / (float)cols + eps);
}

// −∞ without math.h (NVRTC compiles these files with no headers at all).
#define NEG_INF __int_as_float(0xff800000)

// ldmatrix.x4: four 8×8 tiles of 16-bit elements from shared memory, lane l giving the address
// of row l % 8 of tile l / 8 (16-byte aligned); r[i] receives tile i's elements at row lane / 4,
// columns 2·(lane % 4) + {0, 1}: exactly an mma.m16n8k16 fragment register.
__device__ __forceinline__ void ldsm_x4(u32* r, const u16* row) {
#ifdef JOYRT_CUDA_EMU
    emu_ldmatrix_x4(r, row);
#else
    const u32 a = (u32)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
#endif
}

// ldmatrix.x4.trans: the same addressing, but r[i] receives tile i transposed: rows
// 2·(lane % 4) + {0, 1} of column lane / 4 (a B fragment from a row-major [k][n] tile).
__device__ __forceinline__ void ldsm_x4_trans(u32* r, const u16* row) {
#ifdef JOYRT_CUDA_EMU
    emu_ldmatrix_x4_trans(r, row);
#else
    const u32 a = (u32)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
#endif
}

// cp.async (sm_80+): a 16-byte global → shared copy that completes asynchronously; `src_bytes`
// < 16 zero-fills the rest (0 = a pure zero fill; `src` must still be a valid address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
#ifdef JOYRT_CUDA_EMU
    emu_cp_async16(dst, src, src_bytes);
#else
    const u32 d = (u32)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(src_bytes));
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef JOYRT_CUDA_EMU
    emu_cp_async_commit();
#else
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
#ifdef JOYRT_CUDA_EMU
    emu_cp_async_wait(N);
#else
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// Bytes of dynamic shared memory this launch got.
__device__ __forceinline__ unsigned dynamic_smem_bytes() {
#ifdef JOYRT_CUDA_EMU
    return emu_dynamic_smem_bytes;
#else
    unsigned r;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(r));
    return r;
#endif
}

// A kernel that carves `bytes` out of dynamic shared memory traps (a launch error on the host,
// an abort in the emulation) instead of overrunning it when the host's size disagrees.
#define REQUIRE_DYNAMIC_SMEM(bytes) \
    if (dynamic_smem_bytes() < (unsigned)(bytes)) __trap()

// The kernel's dynamic shared memory (sized at launch).
#ifdef JOYRT_CUDA_EMU
#define DYNAMIC_SMEM(name) unsigned char* name = emu_dynamic_smem
#else
#define DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// mma.sync.aligned.m16n8k16.row.col with f32 accumulators, for bf16 or f16 operands (chosen by
// the tag type): d += a·b on one warp's fragments (a: 4 registers, b: 2, d: 4; PTX ISA layout).
#ifdef JOYRT_CUDA_EMU
__device__ __forceinline__ void mma16816(float* d, const u32* a, const u32* b, bf16_t) { emu_mma16816(d, a, b, true); }
__device__ __forceinline__ void mma16816(float* d, const u32* a, const u32* b, f16_t) { emu_mma16816(d, a, b, false); }
#else
__device__ __forceinline__ void mma16816(float* d, const u32* a, const u32* b, bf16_t) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void mma16816(float* d, const u32* a, const u32* b, f16_t) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

// mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 (sm_89 and later: FP8_MMA_OK): d += a·b
// with both operands FP8 E4M3 codes, four per register (lowest k in the low byte; PTX ISA
// layout: a0 = (g, 4t…4t+3), a1 = (g+8, 4t…), a2 = (g, 16+4t…), a3 = (g+8, 16+4t…); b0 = (k 4t…,
// n g), b1 = (k 16+4t…, n g)), f32 accumulators as mma16816's.
#if defined(FP8_MMA_OK)
#ifdef JOYRT_CUDA_EMU
__device__ __forceinline__ void mma_e4m3_16832(float* d, const u32* a, const u32* b) { emu_mma_e4m3_16832(d, a, b); }
#else
__device__ __forceinline__ void mma_e4m3_16832(float* d, const u32* a, const u32* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif
#endif
