// The emulation of Hopper's asynchronous copy machinery (included after cuda_emu.hpp): mbarriers
// and the tensor memory accelerator's 2-D tile loads (`cp.async.bulk.tensor.2d`), so that
// warp-specialised kernels run here with their ordering held to what the hardware guarantees.
//
// mbarrier (PTX ISA "Parallel Synchronization and Communication Instructions: mbarrier"): an
// 8-byte object in shared memory with an expected arrival count, the arrivals still pending in the
// current phase, a transaction count (bytes expected minus bytes completed) and a phase number.
// The phase completes when both its pending arrivals and its transaction count reach zero; the
// phase number then advances and the pending arrivals reset. try_wait.parity(P) passes once the
// phase of parity P has completed, i.e. while the current phase's parity differs from P. The
// emulation keeps the state beside the block (its 8 bytes hold a signature, checked at every
// operation, so an ordinary store or a copy over a barrier is a fault), counts more arrivals than
// a phase expects as a fault, and reports a wait no thread can satisfy as a deadlock (the
// scheduler in cuda_emu.hpp), never a hang.
//
// Tile loads: the copy is described at issue (tensor map, coordinates, destination, barrier) and
// its destination filled with NaN bytes, since on a GPU it changes at some moment after issue; it
// is performed, and its bytes completed on the barrier, when a thread waits on that barrier once
// all the phase's arrivals are in: the latest moment the phase could complete.
// So a kernel that reads a stage without waiting, or refills a stage whose readers (a wgmma still
// in flight) have not released it, sees NaN. The 128-byte swizzle is applied to the shared
// address bits as the hardware does (bits 4-6 XOR bits 7-9), the same decoding the emulated
// wgmma applies to its descriptors. Elements outside the tensor are zero (OOB fill NONE).
//
// What this cannot see: timing (copies complete in an order the hardware may not choose, and
// never late enough to expose a missing wait that a later wait by another thread happens to
// cover), the proxy fences (`fence.proxy.async`, `fence.mbarrier_init`: accepted, not checked),
// `setmaxnreg` (accepted; its register budget is checked by ptxas, not here), clusters and
// multicast (not emulated: a map or barrier outside this block's shared memory is a fault).
// Of wgmma (cuda_emu.hpp) it cannot see a kernel changing an A-from-registers fragment before
// the wait (the fragments are read at issue), nor that its decoding of a descriptor, K-major or
// MN-major, is the hardware's: both sides were written from the same reading of the PTX ISA and
// CUTLASS's canonical layouts, and a GPU run is the check.
#pragma once

#define __grid_constant__

// The 128 bytes of a tensor map, as the kernel receives them (CUDA's CUtensorMap). In the
// emulation they hold EmuTensorMap's words, written by emu.rs's encoder.
struct alignas(64) CUtensorMap {
    unsigned long long opaque[16];
};

// The emulation's tensor map (the words emu.rs writes; keep the two in step): w[0] = magic
// (low 32 bits) | element bytes << 32, w[1] = global address, w[2] = elements per row (dim 0),
// w[3] = rows (dim 1), w[4] = bytes between rows, w[5] = box elements per row | box rows << 32,
// w[6] = swizzle (CU_TENSOR_MAP_SWIZZLE_*: 0 none, 3 128-byte).
static const unsigned emu_tensor_map_magic = 0x4a544d31u;  // "JTM1"

struct EmuMbarrier {
    const void* addr;
    unsigned expected, pending, phase;
    long long tx;  // bytes expected minus bytes completed in the current phase
};
struct EmuTileLoad {
    unsigned char* dst;
    CUtensorMap map;
    int c0, c1;
    const void* bar;
};
static std::vector<EmuMbarrier> emu_mbarriers;
static std::vector<EmuTileLoad> emu_tile_loads;
static const unsigned long long emu_mbarrier_signature = 0x6d62617272696572ull;  // "mbarrier"

static void emu_async_reset() {
    emu_mbarriers.clear();
    emu_tile_loads.clear();
}

static const char* emu_async_leftover() {
    return emu_tile_loads.empty() ? nullptr
                                  : "the block exited with tensor copies in flight (no thread waited on their mbarrier)";
}

// The state of the mbarrier at `bar`, after checking its bytes were not overwritten; null (and
// a fault) if it was never initialised.
inline EmuMbarrier* emu_mbarrier(const void* bar) {
    for (EmuMbarrier& b : emu_mbarriers) {
        if (b.addr != bar) continue;
        unsigned long long bytes;
        std::memcpy(&bytes, bar, 8);
        if (bytes != emu_mbarrier_signature) {
            emu_fault("an mbarrier's shared memory was overwritten by a store or a copy");
            return nullptr;
        }
        return &b;
    }
    emu_fault("an mbarrier operation on shared memory that mbarrier.init did not initialise");
    return nullptr;
}

inline void emu_mbarrier_init(void* bar, unsigned count) {
    if (count == 0 || count > (1u << 20) - 1) emu_fault("mbarrier.init with an arrival count outside 1 .. 2^20 - 1");
    emu_smem_offset(bar);
    if ((reinterpret_cast<unsigned long long>(bar) & 7) != 0) emu_fault("mbarrier.init on an address not 8-byte aligned");
    std::memcpy(bar, &emu_mbarrier_signature, 8);
    for (EmuMbarrier& b : emu_mbarriers)
        if (b.addr == bar) {
            b = EmuMbarrier{bar, count, count, 0, 0};
            return;
        }
    emu_mbarriers.push_back(EmuMbarrier{bar, count, count, 0, 0});
    emu_progress++;
}

// Completes the current phase if nothing more is pending.
inline void emu_mbarrier_settle(EmuMbarrier& b) {
    if (b.pending == 0 && b.tx == 0) {
        b.phase++;
        b.pending = b.expected;
    }
}

// mbarrier.arrive.expect_tx (tx > 0) or mbarrier.arrive (tx = 0).
inline void emu_mbarrier_arrive(void* bar, unsigned tx) {
    if (EmuMbarrier* b = emu_mbarrier(bar)) {
        if (b->pending == 0) {
            emu_fault("more arrivals on an mbarrier than its arrival count in one phase");
            return;
        }
        b->tx += tx;
        b->pending--;
        emu_mbarrier_settle(*b);
        emu_progress++;
    }
}

// Performs the described copy `t`: the box at (c0, c1), zero outside the tensor, swizzled into
// its destination.
inline void emu_tile_load_perform(const EmuTileLoad& t) {
    const unsigned long long* w = t.map.opaque;
    const unsigned elem = (unsigned)(w[0] >> 32), box0 = (unsigned)w[5], box1 = (unsigned)(w[5] >> 32);
    const unsigned char* src = reinterpret_cast<const unsigned char*>(w[1]);
    const long long dim0 = (long long)w[2], dim1 = (long long)w[3];
    const unsigned row_bytes = box0 * elem, base = emu_smem_offset(t.dst);
    for (unsigned r = 0; r < box1; ++r)
        for (unsigned e = 0; e < box0; ++e) {
            const unsigned linear = base + r * row_bytes + e * elem;
            const unsigned at = w[6] == 3 ? linear ^ (((linear >> 7) & 7) << 4) : linear;
            const long long x = (long long)t.c0 + e, y = (long long)t.c1 + r;
            unsigned char* d = emu_dynamic_smem + at;
            if (x < 0 || x >= dim0 || y < 0 || y >= dim1)
                std::memset(d, 0, elem);
            else
                std::memcpy(d, src + (unsigned long long)y * w[4] + (unsigned long long)x * elem, elem);
        }
}

// Performs the copies in flight to `bar` and completes their bytes on it, once every arrival of
// the phase is in (so their data appears no earlier than the phase can complete).
inline void emu_tile_loads_land(const void* bar, EmuMbarrier& b) {
    if (b.pending != 0) return;
    for (size_t i = 0; i < emu_tile_loads.size();) {
        if (emu_tile_loads[i].bar != bar) {
            ++i;
            continue;
        }
        const EmuTileLoad t = emu_tile_loads[i];
        emu_tile_loads.erase(emu_tile_loads.begin() + (long)i);
        emu_tile_load_perform(t);
        const unsigned long long* w = t.map.opaque;
        b.tx -= (long long)(unsigned)w[5] * (long long)(unsigned)(w[5] >> 32) * (long long)(w[0] >> 32);
        emu_progress++;
    }
    emu_mbarrier_settle(b);
}

// mbarrier.try_wait.parity in a loop: returns once the phase of parity `parity` has completed.
inline void emu_mbarrier_wait(void* bar, unsigned parity) {
    for (;;) {
        EmuMbarrier* b = emu_mbarrier(bar);
        if (!b) return;
        emu_tile_loads_land(bar, *b);
        if ((b->phase & 1) != (parity & 1)) {
            emu_progress++;
            return;
        }
        char what[160];
        std::snprintf(what, sizeof what,
                      "thread %u waits on the mbarrier at shared offset %u for its phase of parity %u (phase %u, "
                      "%u arrivals and %lld bytes pending)",
                      threadIdx.x, emu_smem_offset(bar), parity & 1, b->phase, b->pending, b->tx);
        emu_block_on(what);
    }
}

// cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [dst], [map, {c0,
// c1}], [bar]: described now, performed when a thread waits on `bar`.
inline void emu_tile_load_2d(void* dst, const CUtensorMap* map, int c0, int c1, void* bar) {
    const unsigned long long* w = map->opaque;
    if ((unsigned)w[0] != emu_tensor_map_magic) {
        emu_fault("a tensor copy with a map the emulation's cuTensorMapEncodeTiled did not make");
        return;
    }
    const unsigned elem = (unsigned)(w[0] >> 32), box0 = (unsigned)w[5], box1 = (unsigned)(w[5] >> 32);
    const unsigned offset = emu_smem_offset(dst), bytes = box0 * box1 * elem;
    if (offset % (w[6] == 3 ? 1024 : 128) != 0) {
        emu_fault("a tensor copy into shared memory not aligned to 128 bytes (1024 with the 128-byte swizzle)");
        return;
    }
    if (offset + bytes > emu_dynamic_smem_bytes) {
        emu_fault("a tensor copy past the launch's dynamic shared memory");
        return;
    }
    if (!emu_mbarrier(bar)) return;
    std::memset(dst, 0xff, bytes);
    emu_tile_loads.push_back(EmuTileLoad{static_cast<unsigned char*>(dst), *map, c0, c1, bar});
    emu_progress++;
}
