// Vector memory access for the memory-bound kernels (elementwise, layout, norms, rope).
//
// A warp of 2-byte loads moves 64 bytes per instruction; the memory system serves 16-byte
// accesses best, and the per-element index arithmetic of a scalar loop (64-bit division in
// particular) costs more than the bytes it moves. So a kernel whose extents allow it works on
// runs of N consecutive elements: one aligned load or store of N·sizeof(T) bytes (two 16-byte
// ones for eight f32), widened to or rounded from f32 with common.cuh's conversions, so results
// are those of the scalar code. Callers check the alignment (every buffer starts 16-byte aligned:
// cudaMalloc gives 256, the emulation 16; a run starting at a multiple of N elements is then
// aligned to its size, up to 16 bytes); the emulation traps on a misaligned run as the GPU faults.
#pragma once
#include "common.cuh"

// Elements of the runs the elementwise kernels and the row norms use: 16 bytes of a 16-bit type.
#define VEC 8

// Raw bytes of one access, aligned as the hardware's vector loads need (at most 16).
template <int BYTES> struct alignas(BYTES < 16 ? BYTES : 16) Bits {
    u32 w[BYTES / 4];
};

template <int BYTES> __device__ __forceinline__ Bits<BYTES> load_bits(const void* p) {
#ifdef JOYRT_CUDA_EMU
    if ((unsigned long long)p % (BYTES < 16 ? BYTES : 16)) __trap();
    Bits<BYTES> b;
    std::memcpy(&b, p, BYTES);
    return b;
#else
    return *(const Bits<BYTES>*)p;
#endif
}

template <int BYTES> __device__ __forceinline__ void store_bits(void* p, const Bits<BYTES>& b) {
#ifdef JOYRT_CUDA_EMU
    if ((unsigned long long)p % (BYTES < 16 ? BYTES : 16)) __trap();
    std::memcpy(p, &b, BYTES);
#else
    *(Bits<BYTES>*)p = b;
#endif
}

// v[0..N) = p[i..i+N) widened to f32.
template <int N> __device__ __forceinline__ void ld_run(const float* p, u64 i, float* v) {
    const Bits<4 * N> b = load_bits<4 * N>(p + i);
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = __uint_as_float(b.w[k]);
}
template <int N, typename H> __device__ __forceinline__ void ld_run16(const H* p, u64 i, float* v) {
    const Bits<2 * N> b = load_bits<2 * N>(p + i);
#pragma unroll
    for (int k = 0; k < N / 2; ++k) {
        v[2 * k] = to_f32(H{(u16)(b.w[k] & 0xffffu)});
        v[2 * k + 1] = to_f32(H{(u16)(b.w[k] >> 16)});
    }
}
template <int N> __device__ __forceinline__ void ld_run(const bf16_t* p, u64 i, float* v) { ld_run16<N>(p, i, v); }
template <int N> __device__ __forceinline__ void ld_run(const f16_t* p, u64 i, float* v) { ld_run16<N>(p, i, v); }

// p[i..i+N) = v[0..N) rounded as st() rounds.
template <int N> __device__ __forceinline__ void st_run(float* p, u64 i, const float* v) {
    Bits<4 * N> b;
#pragma unroll
    for (int k = 0; k < N; ++k) b.w[k] = __float_as_uint(v[k]);
    store_bits<4 * N>(p + i, b);
}
template <int N, typename H> __device__ __forceinline__ void st_run16(H* p, u64 i, const float* v) {
    Bits<2 * N> b;
#pragma unroll
    for (int k = 0; k < N / 2; ++k)
        b.w[k] = (u32)from_f32<H>(v[2 * k]).bits | ((u32)from_f32<H>(v[2 * k + 1]).bits << 16);
    store_bits<2 * N>(p + i, b);
}
template <int N> __device__ __forceinline__ void st_run(bf16_t* p, u64 i, const float* v) { st_run16<N>(p, i, v); }
template <int N> __device__ __forceinline__ void st_run(f16_t* p, u64 i, const float* v) { st_run16<N>(p, i, v); }

// q = a / b and r = a % b, in 32-bit arithmetic where both fit (64-bit division is a long
// software sequence on the GPU).
__device__ __forceinline__ void div_mod(u64 a, u64 b, u64* q, u64* r) {
    if (((a | b) >> 32) == 0) {
        const u32 q32 = (u32)a / (u32)b;
        *q = q32;
        *r = (u32)a - q32 * (u32)b;
    } else {
        *q = a / b;
        *r = a - *q * b;
    }
}
