// A CPU emulation of the slice of CUDA that joyrt's kernels use, so that the very same
// kernels/*.cu sources run (slowly) on a machine with no GPU and the whole conformance suite can
// hold them to the CPU reference in CI.
//
// Execution model: blocks run one after another; the threads of a block are cooperative fibers
// (ucontext) on one OS thread, each with its own stack, so per-thread locals are real locals and
// `__shared__` (mapped to `static`) is one copy shared by the block. Every synchronisation point
// parks the fiber until the threads it synchronises with are all there, then releases them
// together: __syncthreads waits for every live thread of the block; a warp collective (__syncwarp,
// a shuffle, mma.sync, ldmatrix, wgmma's register operand) for the 32 lanes of its warp only; a
// named barrier (`bar.sync id, n` / `bar.arrive id, n`, ids 1 … 15) for n arrivals, per thread, in
// whole warps. Threads that reach a different number of __syncthreads (a divergent barrier,
// undefined in CUDA), lanes of one warp at different collectives, a named barrier used against
// the hardware's rules (id ≥ 16, a count that is not a multiple of 32 or exceeds the block, two
// counts in one phase, a warp arriving with part of its lanes or twice), a `__trap()` and a write
// past the launch's dynamic shared memory are faults:
// the launch stops and returns a message, as a kernel fault surfaces on the host (the Rust side
// then treats the emulated context as poisoned, as the driver does). The launch limits (threads,
// grid, shared memory, registers) are checked by the Rust side before a launch gets here (emu.rs,
// limits.rs).
//
// Hopper's mbarrier waits (cuda_emu_async.hpp) block one fiber instead: it is retried at every
// sweep over the fibers until its phase completes. A fiber runs on until it blocks or parks: the
// schedule that lets a producer thread run furthest ahead of its consumers, so a stage refilled
// before every reader released it (or released before its wgmma retired) is overwritten while
// still in use and the result shows it. A sweep in which no fiber gets further (all blocked, or
// blocked and parked) is a deadlock, reported as a fault naming the wait (an mbarrier, a named
// barrier short of arrivals, a warp collective some lane never reaches, a __syncthreads).
// Since a warp collective waits for its warp only, warp-specialised kernels whose consumers
// shuffle and exchange fragments while a producer warp waits on an mbarrier run here.
//
// Warp-level operations exchange values through per-thread slots between two sync points.
// mma.sync.m16n8k16 is computed from the PTX ISA's fragment layout (transcribed here
// independently of the kernels' own fragment loads, so the emulation checks them).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>
#include <ucontext.h>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct EmuDim3 {
    unsigned x = 1, y = 1, z = 1;
};
static EmuDim3 threadIdx, blockIdx, blockDim, gridDim;

struct uint4 {
    unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

using std::max;
using std::min;

inline float __int_as_float(int v) {
    float f;
    std::memcpy(&f, &v, 4);
    return f;
}
inline float __uint_as_float(unsigned v) {
    float f;
    std::memcpy(&f, &v, 4);
    return f;
}
inline unsigned __float_as_uint(float v) {
    unsigned u;
    std::memcpy(&u, &v, 4);
    return u;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

// IEEE binary16 <-> binary32, round to nearest even (what cvt.rn.f16.f32 does).
inline float emu_f16_to_f32(unsigned short h) {
    const unsigned sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    unsigned bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal
            float f = std::ldexp((float)man, -24);
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    return __uint_as_float(bits);
}
inline unsigned short emu_f32_to_f16(float f) {
    const unsigned u = __float_as_uint(f), sign = (u >> 16) & 0x8000u;
    const unsigned abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return (unsigned short)(sign | 0x7e00u);  // NaN
    if (abs >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // rounds to inf
    if (abs < 0x38800000u) {  // subnormal or zero in f16: scale and round to an integer of 2^-24
        const float a = __uint_as_float(abs) * 16777216.0f;  // exact: power of two
        return (unsigned short)(sign | (unsigned)std::nearbyint(a));  // default mode: ties to even
    }
    unsigned r = abs - 0x38000000u;  // rebias exponent 127 -> 15
    r = r + 0xfffu + ((r >> 13) & 1u);
    return (unsigned short)(sign | (r >> 13));
}

// ---- fiber scheduler ---------------------------------------------------------------------------

// Where a fiber stopped: runnable (released from a sync point), parked at one, or blocked on a wait.
enum class EmuAt { Runnable, Parked, Blocked };
// What a parked fiber waits for: every thread of the block, its warp's lanes, or a named barrier.
enum class EmuPark { Block, Warp, Named };

struct EmuFiber {
    ucontext_t ctx;
    std::vector<char> stack;
    bool done = false;
    long syncs = 0;       // __syncthreads passed or reached
    long warp_syncs = 0;  // warp collectives reached
    EmuAt at = EmuAt::Runnable;
    EmuPark park = EmuPark::Block;
    unsigned bar_id = 0;        // the named barrier a fiber parked on EmuPark::Named waits at
    char blocked_on[160] = {};  // what a blocked fiber waits for, for the deadlock report
};

struct EmuBlock {
    ucontext_t sched;
    std::vector<EmuFiber> fibers;
    int current = 0;
    std::function<void()> body;
    bool faulted = false;  // a fiber faulted: the scheduler abandons the launch
};
static EmuBlock emu_block;

// The message of the launch's fault, returned to the host.
static char emu_fault_message[512];
static bool emu_in_fiber = false;

// Records a fault of the current launch; from a fiber, leaves it for good (its stack is reset by
// the next launch).
static void emu_fault(const char* what, bool of_thread = true) {
    int n = std::snprintf(emu_fault_message, sizeof emu_fault_message, "%s (block (%u, %u, %u)", what, blockIdx.x,
                          blockIdx.y, blockIdx.z);
    if (n > 0 && (size_t)n < sizeof emu_fault_message)
        std::snprintf(emu_fault_message + n, sizeof emu_fault_message - n, of_thread ? ", thread %u)" : ")",
                      threadIdx.x);
    emu_block.faulted = true;
    if (emu_in_fiber) swapcontext(&emu_block.fibers[emu_block.current].ctx, &emu_block.sched);
}

static void emu_fiber_entry() {
    emu_block.body();
    emu_block.fibers[emu_block.current].done = true;
}

// Bumped by every step that can unblock another fiber (a sync point reached, a fiber finished,
// an mbarrier operation, a wait passed): a sweep that leaves it unchanged made no progress.
static long emu_progress = 0;

inline void emu_park(EmuPark kind) {
    EmuFiber& f = emu_block.fibers[emu_block.current];
    f.at = EmuAt::Parked;
    f.park = kind;
    emu_progress++;
    swapcontext(&f.ctx, &emu_block.sched);
}

// __syncthreads: released by the scheduler once every live thread of the block is parked here.
inline void emu_sync() {
    emu_block.fibers[emu_block.current].syncs++;
    emu_park(EmuPark::Block);
}

// A warp collective: the last lane of the warp to arrive releases the others and goes on.
inline void emu_sync_warp() {
    EmuFiber& me = emu_block.fibers[emu_block.current];
    me.warp_syncs++;
    const unsigned w0 = threadIdx.x & ~31u, end = std::min<unsigned>(w0 + 32, (unsigned)emu_block.fibers.size());
    for (unsigned l = w0; l < end; ++l) {
        const EmuFiber& o = emu_block.fibers[l];
        if (l != threadIdx.x && (o.done || o.at != EmuAt::Parked || o.park != EmuPark::Warp)) {
            emu_park(EmuPark::Warp);
            return;
        }
    }
    for (unsigned l = w0; l < end; ++l) {
        EmuFiber& o = emu_block.fibers[l];
        if (o.warp_syncs != me.warp_syncs) {
            emu_fault("lanes of a warp reached different warp collectives (a shuffle, mma, ldmatrix or "
                      "__syncwarp in divergent code)");
            return;
        }
        o.at = EmuAt::Runnable;
    }
    emu_progress++;
}

// The named barriers 1 … 15 of the block (`bar.sync` / `bar.arrive` with a thread count): the
// arrivals of the current phase, in total and per warp, and the count its first arrival gave.
struct EmuNamedBarrier {
    unsigned expected, arrived;
    unsigned warp_arrivals[32];
};
static EmuNamedBarrier emu_bar_state[16];

// bar.sync (wait) or bar.arrive id, count: one arrival of this thread; the arrival that makes the
// count completes the phase and releases the threads parked at it.
inline void emu_named_barrier(unsigned id, unsigned count, bool wait) {
    char what[200];
    const unsigned block = (blockDim.x + 31) / 32 * 32;
    if (id == 0 || id >= 16) {
        std::snprintf(what, sizeof what,
                      "named barrier %u: ids are 1 .. 15 (16 per block; 0 is __syncthreads', modelled only as that)", id);
        emu_fault(what);
        return;
    }
    if (count == 0 || count % 32 != 0 || count > block) {
        std::snprintf(what, sizeof what,
                      "named barrier %u with a thread count of %u: it must be a nonzero multiple of 32, at most the "
                      "block's %u threads",
                      id, count, block);
        emu_fault(what);
        return;
    }
    EmuNamedBarrier& b = emu_bar_state[id];
    if (b.arrived == 0) {
        b.expected = count;
        std::memset(b.warp_arrivals, 0, sizeof b.warp_arrivals);
    } else if (b.expected != count) {
        std::snprintf(what, sizeof what, "named barrier %u: threads of one phase give different thread counts (%u, %u)",
                      id, b.expected, count);
        emu_fault(what);
        return;
    }
    b.arrived++;
    b.warp_arrivals[threadIdx.x / 32]++;
    emu_progress++;
    if (b.arrived == b.expected) {
        for (unsigned w = 0; w < 32; ++w)
            if (b.warp_arrivals[w] != 0 && b.warp_arrivals[w] != 32) {
                std::snprintf(what, sizeof what,
                              "named barrier %u completed a phase with %u arrivals from warp %u: bar.sync and "
                              "bar.arrive are warp-wide, one arrival per thread and phase",
                              id, b.warp_arrivals[w], w);
                emu_fault(what);
                return;
            }
        for (EmuFiber& f : emu_block.fibers)
            if (!f.done && f.at == EmuAt::Parked && f.park == EmuPark::Named && f.bar_id == id) f.at = EmuAt::Runnable;
        b.arrived = 0;
        return;
    }
    if (wait) {
        emu_block.fibers[emu_block.current].bar_id = id;
        emu_park(EmuPark::Named);
    }
}

// Blocks this fiber until the next sweep (the caller retries its wait then); `what` names the
// wait in the deadlock report.
inline void emu_block_on(const char* what) {
    EmuFiber& f = emu_block.fibers[emu_block.current];
    f.at = EmuAt::Blocked;
    std::snprintf(f.blocked_on, sizeof f.blocked_on, "%s", what);
    swapcontext(&f.ctx, &emu_block.sched);
}

// cuda_emu_async.hpp: the mbarriers and tensor copies of a block, reset before it runs; what a
// finished block left in flight (null if nothing).
static void emu_async_reset();
static const char* emu_async_leftover();

inline void __syncthreads() { emu_sync(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu_sync_warp(); }

static float emu_shfl_slot[1024];
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
    const int t = threadIdx.x;
    emu_shfl_slot[t] = v;
    emu_sync_warp();
    const float r = emu_shfl_slot[(t & ~31) | ((t & 31) ^ lane_mask)];
    emu_sync_warp();
    return r;
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: per PTX ISA, with g = lane / 4, t = lane % 4:
// A (16×16): reg0 = (g, 2t..2t+1), reg1 = (g+8, 2t..), reg2 = (g, 2t+8..), reg3 = (g+8, 2t+8..);
// B (16×8, k × n): reg0 = (k 2t..2t+1, n g), reg1 = (k 2t+8.., n g);
// C/D (16×8): d0, d1 = (g, 2t..2t+1), d2, d3 = (g+8, 2t..2t+1). Low half = lower index.
static unsigned emu_mma_a[1024][4], emu_mma_b[1024][2];
inline float emu_half_bits(unsigned bits, bool bf16) {
    return bf16 ? __uint_as_float(bits << 16) : emu_f16_to_f32((unsigned short)bits);
}
inline void emu_mma16816(float* d, const unsigned* a, const unsigned* b, bool bf16) {
    const int t = threadIdx.x, w0 = t & ~31, lane = t & 31;
    for (int i = 0; i < 4; ++i) emu_mma_a[t][i] = a[i];
    for (int i = 0; i < 2; ++i) emu_mma_b[t][i] = b[i];
    emu_sync_warp();
    auto A = [&](int r, int k) {
        const int l = w0 + (r % 8) * 4 + (k % 8) / 2, reg = (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
        return emu_half_bits((emu_mma_a[l][reg] >> (16 * (k % 2))) & 0xffffu, bf16);
    };
    auto B = [&](int k, int n) {
        const int l = w0 + n * 4 + (k % 8) / 2, reg = k >= 8 ? 1 : 0;
        return emu_half_bits((emu_mma_b[l][reg] >> (16 * (k % 2))) & 0xffffu, bf16);
    };
    const int g = lane / 4, tq = lane % 4;
    for (int i = 0; i < 4; ++i) {
        const int row = g + (i >= 2 ? 8 : 0), col = 2 * tq + (i % 2);
        float acc = 0.0f;
        for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
        d[i] += acc;
    }
    emu_sync_warp();
}

// The value of an FP8 E4M3 code (e4m3fn: bias 7, subnormals m·2⁻⁹, 0x7f/0xff NaN), exactly;
// written apart from the kernels' own decoder so that the emulated MMA checks it.
inline float emu_e4m3(unsigned c) {
    const int e = (c >> 3) & 15, m = c & 7;
    float v;
    if (e == 15 && m == 7) v = NAN;
    else if (e == 0) v = std::ldexp((float)m, -9);
    else v = std::ldexp(1.0f + (float)m / 8.0f, e - 7);
    return (c & 0x80u) ? -v : v;
}

// mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 (sm_89+), per the PTX ISA's layout for
// 8-bit operands, with g = lane / 4, t = lane % 4 and byte i of a register the lowest k first:
// A (16×32): reg0 = (g, 4t+i), reg1 = (g+8, 4t+i), reg2 = (g, 16+4t+i), reg3 = (g+8, 16+4t+i);
// B (32×8, k × n): reg0 = (k 4t+i, n g), reg1 = (k 16+4t+i, n g); C/D as m16n8k16. Products of
// two E4M3 values are exact in f32; they are summed in f32.
inline void emu_mma_e4m3_16832(float* d, const unsigned* a, const unsigned* b) {
    const int t = threadIdx.x, w0 = t & ~31, lane = t & 31;
    for (int i = 0; i < 4; ++i) emu_mma_a[t][i] = a[i];
    for (int i = 0; i < 2; ++i) emu_mma_b[t][i] = b[i];
    emu_sync_warp();
    auto A = [&](int r, int k) {
        const int l = w0 + (r % 8) * 4 + (k % 16) / 4, reg = (r >= 8 ? 1 : 0) + (k >= 16 ? 2 : 0);
        return emu_e4m3((emu_mma_a[l][reg] >> (8 * (k % 4))) & 0xffu);
    };
    auto B = [&](int k, int n) {
        const int l = w0 + n * 4 + (k % 16) / 4, reg = k >= 16 ? 1 : 0;
        return emu_e4m3((emu_mma_b[l][reg] >> (8 * (k % 4))) & 0xffu);
    };
    const int g = lane / 4, tq = lane % 4;
    for (int i = 0; i < 4; ++i) {
        const int row = g + (i >= 2 ? 8 : 0), col = 2 * tq + (i % 2);
        float acc = 0.0f;
        for (int k = 0; k < 32; ++k) acc += A(row, k) * B(k, col);
        d[i] += acc;
    }
    emu_sync_warp();
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane l gives the address of row l % 8 of matrix
// l / 8; each lane receives, from matrix i, the two elements at row lane / 4, columns
// 2·(lane % 4) and 2·(lane % 4) + 1.
static const unsigned short* emu_ldsm_row[1024];
inline void emu_ldmatrix_x4(unsigned* r, const unsigned short* row) {
    const int t = threadIdx.x, w0 = t & ~31, lane = t & 31;
    emu_ldsm_row[t] = row;
    emu_sync_warp();
    for (int i = 0; i < 4; ++i) {
        const unsigned short* src = emu_ldsm_row[w0 + i * 8 + lane / 4] + 2 * (lane % 4);
        r[i] = (unsigned)src[0] | ((unsigned)src[1] << 16);
    }
    emu_sync_warp();
}

// cp.async: copies are queued per thread and only performed when a later cp.async.wait_group
// lets them complete, so a kernel that reads its shared tile before waiting sees stale data; and
// the destination is filled with NaN bytes at issue, since on a GPU it may change at any moment
// from then on, so a reader still using the old contents (e.g. a wgmma in flight on a stage being
// refilled) sees NaN here.
struct EmuCopy {
    void* dst;
    const void* src;
    int bytes;  // bytes read from src; the rest of the 16 is zero-filled
};
static std::vector<EmuCopy> emu_open_group[1024];
static std::vector<std::vector<EmuCopy>> emu_pending[1024];
inline void emu_cp_async16(void* dst, const void* src, int bytes) {
    std::memset(dst, 0xff, 16);
    emu_open_group[threadIdx.x].push_back(EmuCopy{dst, src, bytes});
}
inline void emu_cp_async_commit() {
    emu_pending[threadIdx.x].push_back(std::move(emu_open_group[threadIdx.x]));
    emu_open_group[threadIdx.x].clear();
}
inline void emu_cp_async_wait(int newest_pending) {
    auto& q = emu_pending[threadIdx.x];
    while ((int)q.size() > newest_pending) {
        for (const EmuCopy& c : q.front()) {
            std::memset(c.dst, 0, 16);
            if (c.bytes > 0) std::memcpy(c.dst, c.src, (size_t)c.bytes);
        }
        q.erase(q.begin());
    }
}

// Dynamic shared memory (`extern __shared__`): exactly what the launch asked for, 16-byte
// aligned, followed by guard bytes that a kernel writing past its share would change.
struct alignas(16) EmuSmemWord {
    unsigned char bytes[16];
};
static std::unique_ptr<EmuSmemWord[]> emu_dynamic_smem_words;
static unsigned char* emu_dynamic_smem = nullptr;
static unsigned emu_dynamic_smem_bytes = 0;  // what the launch asked for
static const unsigned emu_smem_guard = 64;
static const unsigned char emu_guard_byte = 0xa5;

inline void emu_alloc_dynamic_smem(unsigned bytes) {
    const unsigned words = (bytes + emu_smem_guard + 15) / 16;
    emu_dynamic_smem_words.reset(new EmuSmemWord[words]);
    emu_dynamic_smem = reinterpret_cast<unsigned char*>(emu_dynamic_smem_words.get());
    emu_dynamic_smem_bytes = bytes;
    std::memset(emu_dynamic_smem + bytes, emu_guard_byte, emu_smem_guard);
}

inline bool emu_dynamic_smem_guard_intact() {
    for (unsigned i = 0; i < emu_smem_guard; ++i)
        if (emu_dynamic_smem[emu_dynamic_smem_bytes + i] != emu_guard_byte) return false;
    return true;
}

// ldmatrix...x4.trans: as above, but each lane receives tile i's elements at rows 2·(lane % 4)
// and 2·(lane % 4) + 1, column lane / 4 (the transposed tile).
inline void emu_ldmatrix_x4_trans(unsigned* r, const unsigned short* row) {
    const int t = threadIdx.x, w0 = t & ~31, lane = t & 31;
    emu_ldsm_row[t] = row;
    emu_sync_warp();
    for (int i = 0; i < 4; ++i) {
        const unsigned short lo = emu_ldsm_row[w0 + i * 8 + 2 * (lane % 4)][lane / 4];
        const unsigned short hi = emu_ldsm_row[w0 + i * 8 + 2 * (lane % 4) + 1][lane / 4];
        r[i] = (unsigned)lo | ((unsigned)hi << 16);
    }
    emu_sync_warp();
}

// ---- Hopper: wgmma.mma_async with both operands in shared memory ------------------------------
//
// Shared addresses are offsets into the launch's dynamic shared memory (the only shared memory a
// wgmma operand lives in here). A thread's wgmma is queued with a pointer to its accumulators
// and computed when a wgmma.wait_group retires its group, so a kernel that refills an operand's
// stage, or reads its accumulators, before waiting gets a wrong result here as it would on a GPU.
// Each thread computes only its own accumulator elements (the m64nN layout: warp q of the
// warpgroup owns rows 16q …; n8 block j gives d[4j..4j+3] at (g, 8j + 2t + {0,1}) and (g + 8, …)),
// reading A and B through an independent decoding of the matrix descriptors: start address
// (bits 0–13, × 16), stride byte offset between 8-row groups (bits 32–45, × 16), layout (bits
// 62–63). Only the layouts joyrt uses are modelled (128-byte swizzle, base offset 0): K-major,
// and for a B operand the instruction marks transposed (imm-trans-b), MN-major, where a 128-byte
// row holds 64 consecutive N elements of one k, 8-row K groups lie SBO apart and 64-element N
// blocks LBO apart (bits 16–29, × 16: CUTLASS's canonical ((8,n),(8,k)):((1,LBO),(8,SBO)) in
// 16-byte units). Any other descriptor is a fault, not a guess.
inline unsigned emu_smem_offset(const void* p) {
    const unsigned char* c = static_cast<const unsigned char*>(p);
    if (c < emu_dynamic_smem || c >= emu_dynamic_smem + emu_dynamic_smem_bytes) {
        emu_fault("a shared address outside the launch's dynamic shared memory (the emulation's wgmma reads only that)");
        return 0;
    }
    return (unsigned)(c - emu_dynamic_smem);
}

struct EmuWgmma {
    float* d;
    unsigned long long desc_a, desc_b;
    int n;
    bool bf16;
    bool e4m3;  // both operands FP8 E4M3 codes, k32 (then `bf16` is unused)
    bool a_in_registers;  // then `a` holds this thread's rows g, g + 8 (k 0–15), read at issue
    bool b_mn_major;      // imm-trans-b: B's descriptor names an MN-major tile
    float a[2][16];
};
static std::vector<EmuWgmma> emu_wgmma_open[1024];
static std::vector<std::vector<EmuWgmma>> emu_wgmma_pending[1024];

// Element (row, k) of a K-major 128-byte-swizzled operand: the byte address of the canonical
// layout, then address bits 4–6 XOR bits 7–9.
inline float emu_wgmma_operand(unsigned long long desc, int row, int k, bool bf16, bool e4m3 = false) {
    const unsigned start = (unsigned)(desc & 0x3fff) << 4, sbo = (unsigned)((desc >> 32) & 0x3fff) << 4;
    if ((desc >> 62) != 1 || ((desc >> 49) & 7) != 0) {
        emu_fault("wgmma descriptor: only K-major 128-byte-swizzled operands with base offset 0 are emulated");
        return 0.0f;
    }
    const unsigned size = e4m3 ? 1 : 2;
    const unsigned addr = start + (unsigned)(row / 8) * sbo + (unsigned)(row % 8) * 128 + (unsigned)k * size;
    const unsigned at = addr ^ (((addr >> 7) & 7) << 4);
    if (at + size > emu_dynamic_smem_bytes) {
        emu_fault("wgmma operand read past the launch's dynamic shared memory");
        return 0.0f;
    }
    if (e4m3) return emu_e4m3(emu_dynamic_smem[at]);
    unsigned short bits;
    std::memcpy(&bits, emu_dynamic_smem + at, 2);
    return emu_half_bits(bits, bf16);
}

// Element (n, k) of an MN-major 128-byte-swizzled B operand (imm-trans-b).
inline float emu_wgmma_operand_mn(unsigned long long desc, int n, int k, bool bf16) {
    const unsigned start = (unsigned)(desc & 0x3fff) << 4, lbo = (unsigned)((desc >> 16) & 0x3fff) << 4,
                   sbo = (unsigned)((desc >> 32) & 0x3fff) << 4;
    if ((desc >> 62) != 1 || ((desc >> 49) & 7) != 0) {
        emu_fault("wgmma descriptor: only MN-major 128-byte-swizzled operands with base offset 0 are emulated");
        return 0.0f;
    }
    const unsigned addr = start + (unsigned)(n / 64) * lbo + (unsigned)(k / 8) * sbo + (unsigned)(k % 8) * 128 +
                          (unsigned)(n % 64) * 2;
    const unsigned at = addr ^ (((addr >> 7) & 7) << 4);
    if (at + 2 > emu_dynamic_smem_bytes) {
        emu_fault("wgmma operand read past the launch's dynamic shared memory");
        return 0.0f;
    }
    unsigned short bits;
    std::memcpy(&bits, emu_dynamic_smem + at, 2);
    return emu_half_bits(bits, bf16);
}

inline void emu_wgmma_run(const EmuWgmma& w) {
    const int t = threadIdx.x, q = (t >> 5) & 3, lane = t & 31, g = lane / 4, tq = lane % 4;
    for (int j = 0; j < w.n / 8; ++j)
        for (int i = 0; i < 4; ++i) {
            const int row = 16 * q + g + (i >= 2 ? 8 : 0), col = 8 * j + 2 * tq + (i % 2);
            float acc = 0.0f;
            for (int k = 0; k < (w.e4m3 ? 32 : 16); ++k) {
                const float av = w.a_in_registers ? w.a[i >= 2][k]
                                                  : emu_wgmma_operand(w.desc_a, row, k, w.bf16, w.e4m3);
                const float bv = w.b_mn_major ? emu_wgmma_operand_mn(w.desc_b, col, k, w.bf16)
                                              : emu_wgmma_operand(w.desc_b, col, k, w.bf16, w.e4m3);
                acc += av * bv;
            }
            w.d[4 * j + i] += acc;
        }
}

inline void emu_wgmma(float* d, unsigned long long desc_a, unsigned long long desc_b, int n, bool bf16) {
    if (blockDim.x % 128 != 0) emu_fault("wgmma in a block that is not whole warpgroups (128 threads)");
    EmuWgmma w{d, desc_a, desc_b, n, bf16, false, false, false, {}};
    emu_wgmma_open[threadIdx.x].push_back(w);
}

// wgmma.mma_async m64nNk32 .e4m3.e4m3 (both operands from shared memory): the same K-major
// swizzled layout, one byte per code, each product exact in f32.
inline void emu_wgmma_e4m3(float* d, unsigned long long desc_a, unsigned long long desc_b, int n) {
    if (blockDim.x % 128 != 0) emu_fault("wgmma in a block that is not whole warpgroups (128 threads)");
    EmuWgmma w{d, desc_a, desc_b, n, false, true, false, false, {}};
    emu_wgmma_open[threadIdx.x].push_back(w);
}

// A from registers: the warp's fragments are exchanged at issue (the instruction is warpgroup-
// wide and reads its registers then), each thread keeping the two rows it accumulates.
static unsigned emu_wgmma_a[1024][4];
inline void emu_wgmma_rs(float* d, const unsigned* a, unsigned long long desc_b, int n, bool bf16,
                         bool b_mn_major = false) {
    if (blockDim.x % 128 != 0) emu_fault("wgmma in a block that is not whole warpgroups (128 threads)");
    const int t = threadIdx.x, w0 = t & ~31, lane = t & 31, g = lane / 4;
    for (int i = 0; i < 4; ++i) emu_wgmma_a[t][i] = a[i];
    emu_sync_warp();
    EmuWgmma w{d, 0, desc_b, n, bf16, false, true, b_mn_major, {}};
    for (int h = 0; h < 2; ++h)
        for (int k = 0; k < 16; ++k) {
            const int l = w0 + g * 4 + (k % 8) / 2, reg = h + (k >= 8 ? 2 : 0);
            w.a[h][k] = emu_half_bits((emu_wgmma_a[l][reg] >> (16 * (k % 2))) & 0xffffu, bf16);
        }
    emu_sync_warp();
    emu_wgmma_open[t].push_back(w);
}
inline void emu_wgmma_commit() {
    emu_wgmma_pending[threadIdx.x].push_back(std::move(emu_wgmma_open[threadIdx.x]));
    emu_wgmma_open[threadIdx.x].clear();
}
inline void emu_wgmma_wait(int newest_pending) {
    auto& q = emu_wgmma_pending[threadIdx.x];
    while ((int)q.size() > newest_pending) {
        for (const EmuWgmma& w : q.front()) emu_wgmma_run(w);
        q.erase(q.begin());
    }
}

// Runs `body` as every thread of one block; false where the block faulted. Each sweep resumes
// every fiber not parked; when all live fibers are parked they are released together.
inline bool emu_run_block(unsigned threads, const std::function<void()>& body) {
    const size_t stack = 256 * 1024;
    emu_block.body = body;
    emu_block.fibers.resize(threads);
    emu_async_reset();
    std::memset(emu_bar_state, 0, sizeof emu_bar_state);
    for (unsigned i = 0; i < threads; ++i) {
        EmuFiber& f = emu_block.fibers[i];
        if (f.stack.size() != stack) f.stack.assign(stack, 0);
        f.done = false;
        f.syncs = 0;
        f.warp_syncs = 0;
        f.at = EmuAt::Runnable;
        emu_open_group[i].clear();
        emu_pending[i].clear();
        emu_wgmma_open[i].clear();
        emu_wgmma_pending[i].clear();
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = stack;
        f.ctx.uc_link = &emu_block.sched;
        makecontext(&f.ctx, emu_fiber_entry, 0);
    }
    for (;;) {
        const long progress_before = emu_progress;
        for (unsigned i = 0; i < threads; ++i) {
            EmuFiber& f = emu_block.fibers[i];
            if (f.done || f.at == EmuAt::Parked) continue;
            emu_block.current = (int)i;
            threadIdx.x = i;
            emu_in_fiber = true;
            swapcontext(&emu_block.sched, &f.ctx);
            emu_in_fiber = false;
            if (emu_block.faulted) return false;
            if (f.done) emu_progress++;
        }
        unsigned live = 0, at_block = 0, exited = 0;
        int blocked = -1, named = -1, warp = -1, block = -1;
        long round = -1;
        for (unsigned i = 0; i < threads; ++i) {
            const EmuFiber& f = emu_block.fibers[i];
            if (f.done) {
                exited++;
                continue;
            }
            live++;
            if (f.at == EmuAt::Parked) {
                if (f.park == EmuPark::Named) {
                    if (named < 0) named = (int)i;
                    continue;
                }
                if (f.park == EmuPark::Warp) {
                    if (warp < 0) warp = (int)i;
                    continue;
                }
                at_block++;
                if (block < 0) block = (int)i;
                if (round < 0) round = f.syncs;
                if (f.syncs != round) {
                    emu_fault("threads of a block reached different barriers (divergent __syncthreads)");
                    return false;
                }
            } else if (f.at == EmuAt::Blocked && blocked < 0) {
                blocked = (int)i;
            }
        }
        if (live == 0) break;
        if (at_block == live) {
            if (exited > 0) {
                for (unsigned i = 0; i < threads; ++i)
                    if (emu_block.fibers[i].done) threadIdx.x = i;
                emu_fault("a thread exited while others still wait at a barrier");
                return false;
            }
            for (unsigned i = 0; i < threads; ++i) emu_block.fibers[i].at = EmuAt::Runnable;
            continue;
        }
        if (emu_progress == progress_before) {
            // Nothing moved in a whole sweep: every live thread waits for something no thread is
            // left to bring about. Named: an mbarrier wait first, then a named barrier, a warp
            // collective, a __syncthreads.
            char what[240];
            int who = blocked;
            if (blocked >= 0) {
                std::snprintf(what, sizeof what, "%s", emu_block.fibers[blocked].blocked_on);
            } else if (named >= 0) {
                who = named;
                const unsigned id = emu_block.fibers[named].bar_id;
                std::snprintf(what, sizeof what, "thread %d waits at named barrier %u (%u of %u threads arrived)", named,
                              id, emu_bar_state[id].arrived, emu_bar_state[id].expected);
            } else if (warp >= 0) {
                who = warp;
                std::snprintf(what, sizeof what,
                              "thread %d waits at a warp collective that other lanes of its warp never reach", warp);
            } else {
                who = block;
                std::snprintf(what, sizeof what, "thread %d waits at a __syncthreads that other threads never reach",
                              block);
            }
            char message[400];
            std::snprintf(message, sizeof message,
                          "deadlock: %s, which can never complete (no thread is left to get it there; %u of %u "
                          "live threads wait at a __syncthreads)",
                          what, at_block, live);
            threadIdx.x = (unsigned)who;
            emu_fault(message);
            return false;
        }
    }
    for (unsigned i = 0; i < threads; ++i) {
        if (!emu_wgmma_open[i].empty() || !emu_wgmma_pending[i].empty()) {
            threadIdx.x = i;
            emu_fault("a thread exited with wgmma operations not retired by wgmma.wait_group");
            return false;
        }
    }
    if (const char* left = emu_async_leftover()) {
        emu_fault(left, false);
        return false;
    }
    return true;
}

template <class... A, size_t... I>
inline void emu_call(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}

inline void __trap() { emu_fault("__trap(): a kernel's guard failed (e.g. too little dynamic shared memory)"); }

// One launch: null, or the fault that stopped it. Launches run one at a time (the host holds a
// lock), so the statics above belong to this one.
template <class... A>
inline const char* emu_launch(void (*f)(A...), unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned smem,
                              void** args) {
    emu_block.faulted = false;
    emu_alloc_dynamic_smem(smem);
    gridDim.x = gx;
    gridDim.y = gy;
    gridDim.z = gz;
    blockDim.x = bx;
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                blockIdx.x = x;
                blockIdx.y = y;
                blockIdx.z = z;
                if (!emu_run_block(bx, [&] { emu_call(f, args, std::index_sequence_for<A...>{}); }))
                    return emu_fault_message;
                if (!emu_dynamic_smem_guard_intact()) {
                    emu_fault("a thread wrote past the launch's dynamic shared memory", false);
                    return emu_fault_message;
                }
            }
    return nullptr;
}

#define EMU_EXPORT(name)                                                                                  \
    extern "C" const char* emu_##name(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned smem,   \
                                      void** args) {                                                      \
        return emu_launch(name, gx, gy, gz, bx, smem, args);                                               \
    }
