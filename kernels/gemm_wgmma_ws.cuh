// The warp-specialised Hopper GEMM (sm_90a) behind `linear` with JOYRT_CUDA_GEMM=wgmma-ws, for the
// shapes linear_wgmma takes (same-dtype 16-bit operands, K % 8 == 0): C[m, n] = Σ_k A[m, k]·B[n, k]
// (+ bias[n]), A = x [M, K], B = W [N, K], each read through a tensor map (tma.cuh). Its loop,
// wgmma_ws_mainloop, also runs the fp8 W8A8 GEMM (gemm_quantized.cuh), which passes its own
// wgmma issue and epilogue.
//
// 384 threads, three warpgroups with one role each:
// - warpgroup 0, the producer, gives up registers (setmaxnreg.dec to WS_PRODUCER_REGS); one thread
//   of it issues every copy: per K step, the A box (128 rows × 64) and the B box (256 rows × 64)
//   by the tensor memory accelerator into one stage of a WS_STAGES-deep ring, both completing on
//   the stage's `full` barrier (count 1: its arrive.expect_tx of the stage's bytes);
// - warpgroups 1 and 2, the consumers (setmaxnreg.inc to WS_CONSUMER_REGS), each own 64 rows × 256
//   columns of the 128 × 256 output tile (128 f32 accumulators a thread); per K step they wait on
//   `full`, issue 4 wgmma.m64n256k16 from the stage, and once the previous step's wgmmas retired
//   (wgmma.wait_group 1) every consumer thread arrives on that step's `empty` barrier (count 256),
//   which the producer waits on before refilling the stage.
// Persistent: a grid of at most one block per multiprocessor, block b taking output tiles b, b +
// gridDim.x, … in the grouped order of gemm_wgmma.cuh. The ring runs over the flattened (tile,
// K step) sequence, so while the consumers store tile i the producer is already loading tile
// i + 1's first WS_STAGES K steps. A K, M or N tail is the map's zero fill (out-of-bounds box
// elements are zero), so the K loop has no tail case; the stores skip rows and columns past the
// matrix.
//
// Phases: step s uses stage s % WS_STAGES in its (s / WS_STAGES)-th round; `full` completes once
// per round, so consumers wait for parity round & 1; the producer's first round finds every
// stage free, so it waits for `empty` with the opposite parity (the phase "before" phase 0
// counts as complete).
#pragma once
#include "gemm_wgmma.cuh"
#include "tma.cuh"

#if defined(MMA_OK) && defined(WGMMA_OK)

static_assert(WS_THREADS == 384, "a producer warpgroup and two consumer warpgroups");
static_assert(WS_PRODUCER_REGS * 128 + WS_CONSUMER_REGS * 256 <= 65536, "the register file holds all three");

// The warp-specialised main loop over this block's output tiles: acc = A·Bᵀ per tile through the
// ring, `issue(acc, a_tile, b_tile)` issuing one K tile's wgmma group (K in 16-bit elements: the
// fp8 kernel passes its code rows as rows of pairs, and its maps so), then
// `store(acc, m0, n0, row_in_tile, t4)` for the consumer thread's rows row_in_tile and
// row_in_tile + 8 of the tile at (m0, n0), columns n0 + 8j + 2·t4 (+1) in acc[4j …].
template <int BN, class Issue, class Store>
__device__ __forceinline__ void wgmma_ws_mainloop(const CUtensorMap* a_map, const CUtensorMap* b_map, int M, int N,
                                                  int K, Issue issue, Store store) {
    constexpr u32 A_BYTES = WG_BM * WG_BK * 2, B_BYTES = BN * WG_BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;
    DYNAMIC_SMEM(smem_raw);
    // 1024 bytes of slack to align the ring (the swizzle is anchored to 1024-byte boundaries),
    // then the ring, then the barriers.
    REQUIRE_DYNAMIC_SMEM(1024 + WS_STAGES * STAGE_BYTES + 2 * WS_STAGES * 8);
    const u32 raw = smem_addr(smem_raw), base = (raw + 1023) & ~1023u;
    unsigned char* const ring = smem_raw + (base - raw);
    u64* const full = (u64*)(ring + WS_STAGES * STAGE_BYTES);
    u64* const empty = full + WS_STAGES;

    const int tid = threadIdx.x, wg = tid >> 7;
    if (tid == 0) {
        for (int s = 0; s < WS_STAGES; ++s) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], 256);
        }
        mbar_init_fence();
    }
    __syncthreads();

    const int tiles = ((M + WG_BM - 1) / WG_BM) * ((N + BN - 1) / BN), k_steps = (K + WG_BK - 1) / WG_BK;
    if (wg == 0) {
        setmaxnreg_dec<WS_PRODUCER_REGS>();
        if (tid != 0) return;
        int stage = 0;
        u32 round = 0;
        for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
            int m0, n0;
            wgmma_tile_origin(tile, M, N, BN, m0, n0);
            for (int k = 0; k < k_steps; ++k) {
                mbar_wait(&empty[stage], (round & 1) ^ 1);
                unsigned char* const a_stage = ring + stage * STAGE_BYTES;
                mbar_arrive_expect_tx(&full[stage], STAGE_BYTES);
                tma_load_2d(a_stage, a_map, k * WG_BK, m0, &full[stage]);
                tma_load_2d(a_stage + A_BYTES, b_map, k * WG_BK, n0, &full[stage]);
                if (++stage == WS_STAGES) {
                    stage = 0;
                    ++round;
                }
            }
        }
        return;
    }

    setmaxnreg_inc<WS_CONSUMER_REGS>();
    const int consumer = wg - 1, lane = tid & 31;
    const int row_in_tile = consumer * 64 + ((tid >> 5) & 3) * 16 + (lane >> 2), t4 = lane & 3;
    float acc[BN / 2];
    int stage = 0, released = -1;
    u32 round = 0;
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
        for (int k = 0; k < k_steps; ++k) {
            mbar_wait(&full[stage], round & 1);
            const u32 a_tile = base + stage * STAGE_BYTES + consumer * 64 * 128, b_tile = base + stage * STAGE_BYTES + A_BYTES;
            issue(acc, a_tile, b_tile);
            wgmma_wait<1>();
#pragma unroll
            for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);
            // The previous step's wgmmas have retired: its stage may be refilled.
            if (released >= 0) mbar_arrive(&empty[released]);
            released = stage;
            if (++stage == WS_STAGES) {
                stage = 0;
                ++round;
            }
        }
        wgmma_wait<0>();
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) fence_operand(acc[i]);
        if (released >= 0) mbar_arrive(&empty[released]);
        released = -1;

        int m0, n0;
        wgmma_tile_origin(tile, M, N, BN, m0, n0);
        store(acc, m0, n0, row_in_tile, t4);
    }
}

template <typename TY, typename TBIAS>
__device__ __forceinline__ void gemm_wgmma_ws(const CUtensorMap* a_map, const CUtensorMap* b_map, int M, int N, int K,
                                              const GemmOut<TY, TBIAS>& out) {
    constexpr int BN = 256;
    wgmma_ws_mainloop<BN>(
        a_map, b_map, M, N, K, [](float* c, u32 a_tile, u32 b_tile) { wgmma_issue_k_tile<BN>(c, a_tile, b_tile); },
        [&](float* acc, int m0, int n0, int row_in_tile, int t4) {
#pragma unroll
            for (int j = 0; j < BN / 8; ++j) {
                const int c = n0 + j * 8 + 2 * t4, r = m0 + row_in_tile;
                out.template store<2>(r, c, acc + 4 * j);
                out.template store<2>(r + 8, c, acc + 4 * j + 2);
            }
        });
}

#endif
