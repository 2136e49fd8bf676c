// Hopper (sm_90a) building blocks: the warpgroup MMA (`wgmma.mma_async`) on operands in shared
// memory named by matrix descriptors, and the fences around it. Defined only where WGMMA_OK is
// (modules compiled for sm_90a, and the emulation of sm_90, JOYRT_CUDA_EMU_ARCH=sm_90); each has a
// C++ twin in emu/cuda_emu.hpp that decodes the same descriptors.
//
// The one shared-memory layout joyrt gives wgmma, "K-major with the 128-byte swizzle": a tile of
// R rows × 64 16-bit elements holds row r at byte r·128, and its eight 16-byte chunks permuted, chunk c
// at position c ^ (r % 8). Tiles start on a multiple of 1024 bytes (8 rows), so the hardware's
// swizzle (address bits 4–6 XOR bits 7–9) is exactly this permutation. The k16 step at k0 of such
// a tile is the descriptor of its first row advanced by 2·k0 bytes.
//
// Accumulators (f32, m64nN): warp q of the warpgroup owns rows 16q … 16q + 15; in each n8 column
// block j, d[4j], d[4j + 1] are (row g, columns 8j + 2t, 8j + 2t + 1) and d[4j + 2], d[4j + 3] the
// same columns of row g + 8 (g = lane / 4, t = lane % 4), as for mma.sync's m16n8.
#pragma once
#include "common.cuh"

#if defined(WGMMA_OK)

// The shared-window address of a pointer into shared memory.
__device__ __forceinline__ u32 smem_addr(const void* p) {
#ifdef JOYRT_CUDA_EMU
    return emu_smem_offset(p);
#else
    return (u32)__cvta_generic_to_shared(p);
#endif
}

// Byte offset of 16-byte chunk `chunk` (0–7) of row `r` in a 128-byte-swizzled tile.
__device__ __forceinline__ u32 sw128_offset(int r, int chunk) { return (u32)r * 128 + ((u32)(chunk ^ (r & 7)) << 4); }

// The matrix descriptor of a K-major, 128-byte-swizzled operand whose first row is at `addr`:
// start address >> 4 (bits 0–13), leading byte offset 16 (unused by this layout; bits 16–29),
// stride byte offset 1024 between 8-row groups (bits 32–45), base offset 0 (bits 49–51: the
// tile is 1024-aligned), layout 1 = 128-byte swizzle (bits 62–63).
__device__ __forceinline__ u64 sw128_desc(u32 addr) {
    return (u64)((addr & 0x3ffff) >> 4) | ((u64)(16 >> 4) << 16) | ((u64)(1024 >> 4) << 32) | ((u64)1 << 62);
}

// The matrix descriptor of an MN-major, 128-byte-swizzled B operand whose k16 step starts at
// `addr` (for imm-trans-b, the *_rs_tb wgmmas): each 128-byte row holds 64 consecutive N elements
// of one k, 8-row k groups 1024 bytes apart (stride byte offset), and the 64-element N blocks
// `n_block_bytes` apart (leading byte offset, bits 16–29). This is the layout a K-major tile map
// writes for a row-major [k][n] matrix (V's [key][head dim]), so V needs no transposition.
__device__ __forceinline__ u64 sw128_desc_mn(u32 addr, u32 n_block_bytes) {
    return (u64)((addr & 0x3ffff) >> 4) | ((u64)((n_block_bytes & 0x3ffff) >> 4) << 16) | ((u64)(1024 >> 4) << 32) |
           ((u64)1 << 62);
}

#ifdef JOYRT_CUDA_EMU
__device__ __forceinline__ void wgmma_fence() {}
__device__ __forceinline__ void wgmma_commit() { emu_wgmma_commit(); }
template <int N> __device__ __forceinline__ void wgmma_wait() { emu_wgmma_wait(N); }
__device__ __forceinline__ void fence_proxy_async() {}
__device__ __forceinline__ void fence_operand(float&) {}
#define WGMMA_M64K16(BN, DT, TAG, ...)                                                                 \
    __device__ __forceinline__ void wgmma_m64n##BN##k16(float* d, u64 da, u64 db, TAG) {               \
        emu_wgmma(d, da, db, BN, DT[0] == 'b');                                    \
    }
#define WGMMA_M64K16_RS(BN, DT, TAG, ...)                                                              \
    __device__ __forceinline__ void wgmma_m64n##BN##k16_rs(float* d, const u32* a, u64 db, TAG) {      \
        emu_wgmma_rs(d, a, db, BN, DT[0] == 'b');                                                      \
    }
#define WGMMA_M64K16_RS_TB(BN, DT, TAG, ...)                                                           \
    __device__ __forceinline__ void wgmma_m64n##BN##k16_rs_tb(float* d, const u32* a, u64 db, TAG) {   \
        emu_wgmma_rs(d, a, db, BN, DT[0] == 'b', true);                                                \
    }
#else
// Orders this warpgroup's earlier register and shared-memory accesses before the next wgmma.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most N of this warpgroup's committed wgmma groups are pending.
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Makes this thread's ordinary (and cp.async) shared-memory writes visible to the async proxy
// that wgmma reads through; each writer fences before the barrier that publishes the tile.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keeps the compiler from moving accesses to an accumulator across the asynchronous MMA.
__device__ __forceinline__ void fence_operand(float& v) { asm volatile("" : "+f"(v)::"memory"); }

#define WG_D8(o) "+f"(d[o]), "+f"(d[o + 1]), "+f"(d[o + 2]), "+f"(d[o + 3]), "+f"(d[o + 4]), "+f"(d[o + 5]), \
                 "+f"(d[o + 6]), "+f"(d[o + 7])
#define WG_D64(o) WG_D8(o), WG_D8(o + 8), WG_D8(o + 16), WG_D8(o + 24), WG_D8(o + 32), WG_D8(o + 40), \
                  WG_D8(o + 48), WG_D8(o + 56)
#define WG_R8(a, b, c, d_, e, f, g, h) "%" #a ",%" #b ",%" #c ",%" #d_ ",%" #e ",%" #f ",%" #g ",%" #h
#define WG_REGS64                                                                                      \
    WG_R8(0, 1, 2, 3, 4, 5, 6, 7) "," WG_R8(8, 9, 10, 11, 12, 13, 14, 15) ","                          \
    WG_R8(16, 17, 18, 19, 20, 21, 22, 23) "," WG_R8(24, 25, 26, 27, 28, 29, 30, 31) ","                \
    WG_R8(32, 33, 34, 35, 36, 37, 38, 39) "," WG_R8(40, 41, 42, 43, 44, 45, 46, 47) ","                \
    WG_R8(48, 49, 50, 51, 52, 53, 54, 55) "," WG_R8(56, 57, 58, 59, 60, 61, 62, 63)
#define WG_REGS128                                                                                     \
    WG_REGS64 "," WG_R8(64, 65, 66, 67, 68, 69, 70, 71) "," WG_R8(72, 73, 74, 75, 76, 77, 78, 79) ","  \
    WG_R8(80, 81, 82, 83, 84, 85, 86, 87) "," WG_R8(88, 89, 90, 91, 92, 93, 94, 95) ","                \
    WG_R8(96, 97, 98, 99, 100, 101, 102, 103) "," WG_R8(104, 105, 106, 107, 108, 109, 110, 111) ","    \
    WG_R8(112, 113, 114, 115, 116, 117, 118, 119) "," WG_R8(120, 121, 122, 123, 124, 125, 126, 127)

// d (64 × BN, f32) += A (64 × 16, descriptor da) · B (BN × 16, descriptor db)ᵀ, both K-major.
// RA, RB, RP: the operand numbers after the BN / 2 accumulators. The scale-d predicate is
// always 1 (accumulate): the accumulators start at zero instead.
#define WGMMA_ASM(BN, DT, TAG, REGS, RA, RB, RP, ...)                                                  \
    __device__ __forceinline__ void wgmma_m64n##BN##k16(float* d, u64 da, u64 db, TAG) {               \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #RP ", 0;\n"                                 \
                     "wgmma.mma_async.sync.aligned.m64n" #BN "k16.f32." DT "." DT " {" REGS "}, "       \
                     "%" #RA ", %" #RB ", p, 1, 1, 0, 0;\n}\n"                                          \
                     : __VA_ARGS__                                                                      \
                     : "l"(da), "l"(db), "r"(1));                                                       \
    }
#define WGMMA_M64K16(BN, DT, TAG, ...) WGMMA_ASM(BN, DT, TAG, __VA_ARGS__)

// The same with A (64 × 16) from registers: a[0..3] in mma.sync's m16n8k16 A-fragment layout
// for this warp's 16 rows (a0 = (g, 2t..2t+1), a1 = (g + 8, …), a2 = (g, 2t + 8..), a3 = (g + 8,
// 2t + 8..)), which is also the layout of an m64nN accumulator's n8 blocks 2i, 2i + 1 packed in
// pairs. RA0: the operand number of a[0], after the BN / 2 accumulators.
#define WGMMA_RS_ASM(BN, DT, TAG, REGS, RA0, RA1, RA2, RA3, RB, RP, ...)                               \
    __device__ __forceinline__ void wgmma_m64n##BN##k16_rs(float* d, const u32* a, u64 db, TAG) {      \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #RP ", 0;\n"                                 \
                     "wgmma.mma_async.sync.aligned.m64n" #BN "k16.f32." DT "." DT " {" REGS "}, "       \
                     "{%" #RA0 ",%" #RA1 ",%" #RA2 ",%" #RA3 "}, %" #RB ", p, 1, 1, 0;\n}\n"            \
                     : __VA_ARGS__                                                                      \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));                    \
    }
#define WGMMA_M64K16_RS(BN, DT, TAG, ...) WGMMA_RS_ASM(BN, DT, TAG, __VA_ARGS__)

// The same with B transposed (imm-trans-b = 1): B's descriptor names an MN-major tile
// (sw128_desc_mn).
#define WGMMA_RS_TB_ASM(BN, DT, TAG, REGS, RA0, RA1, RA2, RA3, RB, RP, ...)                            \
    __device__ __forceinline__ void wgmma_m64n##BN##k16_rs_tb(float* d, const u32* a, u64 db, TAG) {   \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #RP ", 0;\n"                                 \
                     "wgmma.mma_async.sync.aligned.m64n" #BN "k16.f32." DT "." DT " {" REGS "}, "       \
                     "{%" #RA0 ",%" #RA1 ",%" #RA2 ",%" #RA3 "}, %" #RB ", p, 1, 1, 1;\n}\n"            \
                     : __VA_ARGS__                                                                      \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));                    \
    }
#define WGMMA_M64K16_RS_TB(BN, DT, TAG, ...) WGMMA_RS_TB_ASM(BN, DT, TAG, __VA_ARGS__)
#endif

WGMMA_M64K16(256, "bf16", bf16_t, WG_REGS128, 128, 129, 130, WG_D64(0), WG_D64(64))
WGMMA_M64K16(256, "f16", f16_t, WG_REGS128, 128, 129, 130, WG_D64(0), WG_D64(64))
WGMMA_M64K16(128, "bf16", bf16_t, WG_REGS64, 64, 65, 66, WG_D64(0))
WGMMA_M64K16(128, "f16", f16_t, WG_REGS64, 64, 65, 66, WG_D64(0))
WGMMA_M64K16_RS(128, "bf16", bf16_t, WG_REGS64, 64, 65, 66, 67, 68, 69, WG_D64(0))
WGMMA_M64K16_RS(128, "f16", f16_t, WG_REGS64, 64, 65, 66, 67, 68, 69, WG_D64(0))
WGMMA_M64K16_RS_TB(128, "bf16", bf16_t, WG_REGS64, 64, 65, 66, 67, 68, 69, WG_D64(0))
WGMMA_M64K16_RS_TB(128, "f16", f16_t, WG_REGS64, 64, 65, 66, 67, 68, 69, WG_D64(0))

// d (64 × 256, f32) += A (64 × 32 E4M3 codes, descriptor da) · B (256 × 32 codes, db)ᵀ, both
// K-major as the 16-bit forms (a k32 step of 8-bit codes is the same 32 bytes of each 128-byte
// row as a k16 step of 16-bit elements). FP8 wgmma takes no transpose operands.
#ifdef JOYRT_CUDA_EMU
__device__ __forceinline__ void wgmma_m64n256k32_e4m3(float* d, u64 da, u64 db) { emu_wgmma_e4m3(d, da, db, 256); }
#else
__device__ __forceinline__ void wgmma_m64n256k32_e4m3(float* d, u64 da, u64 db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3 {" WG_REGS128 "}, %128, %129, p, 1, 1;\n}\n"
                 : WG_D64(0), WG_D64(64)
                 : "l"(da), "l"(db), "r"(1));
}
#endif

// The m64nBNk16 wgmma for the operand type TX.
template <int BN> __device__ __forceinline__ void wgmma_m64k16(float* d, u64 da, u64 db) {
    static_assert(BN == 256 || BN == 128, "wgmma_m64k16: BN is 128 or 256");
    if constexpr (BN == 256)
        wgmma_m64n256k16(d, da, db, TX{});
    else
        wgmma_m64n128k16(d, da, db, TX{});
}

#endif
