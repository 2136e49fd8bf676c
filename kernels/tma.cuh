// Hopper's asynchronous copy machinery: mbarriers, the tensor memory accelerator's 2-D tile loads
// from a CUtensorMap the host encodes (`cuTensorMapEncodeTiled`, passed by value as a
// `const __grid_constant__` kernel parameter), `setmaxnreg`, and named barriers. Defined where
// WGMMA_OK is (sm_90a modules, and the emulation of sm_90); each has a C++ twin in
// emu/cuda_emu_async.hpp (named barriers: emu/cuda_emu.hpp, beside the scheduler).
//
// Every barrier here lives in the launch's dynamic shared memory (the emulation models only
// that). A tile map's box lands in shared memory row after row, each row of 64 16-bit elements
// (128 bytes) with its 16-byte chunks permuted by the 128-byte swizzle: exactly the K-major
// layout the wgmma descriptors of hopper.cuh decode, when the destination is 1024-aligned.
#pragma once
#include "hopper.cuh"

#if defined(WGMMA_OK)

#ifndef JOYRT_CUDA_EMU
// CUDA's opaque tensor map (cuda.h's CUtensorMap, which NVRTC does not see): 128 bytes.
struct __align__(64) CUtensorMap {
    u64 opaque[16];
};
#endif

#ifdef JOYRT_CUDA_EMU
__device__ __forceinline__ void mbar_init(u64* bar, u32 count) { emu_mbarrier_init(bar, count); }
__device__ __forceinline__ void mbar_init_fence() {}
__device__ __forceinline__ void mbar_arrive(u64* bar) { emu_mbarrier_arrive(bar, 0); }
__device__ __forceinline__ void mbar_arrive_expect_tx(u64* bar, u32 bytes) { emu_mbarrier_arrive(bar, bytes); }
__device__ __forceinline__ void mbar_wait(u64* bar, u32 parity) { emu_mbarrier_wait(bar, parity); }
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int c0, int c1, u64* bar) {
    emu_tile_load_2d(dst, map, c0, c1, bar);
}
template <u32 N> __device__ __forceinline__ void setmaxnreg_inc() {}
template <u32 N> __device__ __forceinline__ void setmaxnreg_dec() {}
__device__ __forceinline__ void named_bar_sync(u32 id, u32 threads) { emu_named_barrier(id, threads, true); }
__device__ __forceinline__ void named_bar_arrive(u32 id, u32 threads) { emu_named_barrier(id, threads, false); }
#else
// Sets the barrier's arrival count for each phase; phase 0 begins.
__device__ __forceinline__ void mbar_init(u64* bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// Makes this thread's mbarrier.init visible to the other threads and the copy engine; a barrier
// (__syncthreads) must follow before any of them uses the barriers.
__device__ __forceinline__ void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbar_arrive(u64* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// One arrival, and `bytes` more that the phase's copies must complete before it ends.
__device__ __forceinline__ void mbar_arrive_expect_tx(u64* bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
                 : "memory");
}
// Returns once the barrier's phase of parity `parity` has completed (the current phase's parity
// is then the other one).
__device__ __forceinline__ void mbar_wait(u64* bar, u32 parity) {
    asm volatile(
        "{\n.reg .pred done;\nLAB_WAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra LAB_WAIT;\n}\n" ::"r"(smem_addr(bar)),
        "r"(parity)
        : "memory");
}
// The box of `map` at element (c0, c1) (c0 along rows, c1 the row) into `dst` (1024-aligned for
// the 128-byte swizzle), its bytes completed on `bar`.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int c0, int c1, u64* bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::
            "r"(smem_addr(dst)),
        "l"((u64)map), "r"(c0), "r"(c1), "r"(smem_addr(bar))
        : "memory");
}
// The warpgroup's register budget per thread, raised or lowered (every warp of the warpgroup
// executes it; it takes effect only under a register cap at entry: __launch_bounds__(threads, 1)).
template <u32 N> __device__ __forceinline__ void setmaxnreg_inc() {
    static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg: 24 .. 256, a multiple of 8");
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <u32 N> __device__ __forceinline__ void setmaxnreg_dec() {
    static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg: 24 .. 256, a multiple of 8");
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
// Named barrier `id` (1 … 15; 0 is __syncthreads') of `threads` arrivals (a multiple of 32, in
// whole warps): wait for the phase to complete, or only arrive. How warpgroups take turns.
__device__ __forceinline__ void named_bar_sync(u32 id, u32 threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(u32 id, u32 threads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
#endif

#endif
