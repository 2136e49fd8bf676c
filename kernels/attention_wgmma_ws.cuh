// The FlashAttention-3-style Hopper attention (sm_90a) behind JOYRT_CUDA_ATTENTION=wgmma-ws: head
// dim 128, same-dtype bf16/f16, the contract of attention.cu's kernels (q [Lq, Hq, D], k, v [Lk,
// Hkv, D], grouped-query heads, causal from the end, f32 softmax statistics, any scale).
//
// 384 threads, three warpgroups with one role each (the structure of gemm_wgmma_ws.cuh):
// - warpgroup 0, the producer, gives up registers (setmaxnreg.dec to AWS_PRODUCER_REGS); one
//   thread of it issues every copy by the tensor memory accelerator: Q once (128 rows, two
//   head-dim halves of 64, on `q_full`), then K and V tiles of AWS_BC = 128 keys into a ring of
//   AWS_STAGES stages, each with its own `full` barrier (count 1: the arrive.expect_tx of the
//   tile's 32 KiB) and `empty` barrier (count 256: every consumer thread, once its wgmmas that
//   read the stage retired). K and V have separate barriers and the producer loads K of tile
//   t + 1 before V of tile t, the order the consumers need them in.
// - warpgroups 1 and 2, the consumers (setmaxnreg.inc to AWS_CONSUMER_REGS), own 64 queries each
//   (rows 64c … 64c + 63 of the block's 128) in wgmma's accumulator layout (hopper.cuh):
//     S = Q·Kᵀ   wgmma m64n128k16 × 8, Q and K from shared memory (K-major, 128-byte swizzle);
//     softmax    online, in f32 registers: scale·log2(e) folded into one multiply, row max and
//                sum over the quad by shuffles, exp2;
//     O += P·V   wgmma m64n128k16 × 8 with P from registers (the S accumulators packed in pairs
//                are the A fragments) and V straight from its tile map's K-major layout, read as
//                the MN-major B operand (imm-trans-b, sw128_desc_mn): no transposition pass.
//
// The overlap (FlashAttention-3 §3.1, §3.2), both kinds:
// - within a warpgroup: tile t's S = Q·Kₜᵀ is issued together with tile t − 1's O += P·Vₜ₋₁, and
//   the softmax of Sₜ runs as soon as S retired (wgmma.wait_group 1) while P·V is still on the
//   tensor cores; O is rescaled and Pₜ packed only once P·V retired (wait_group 0), since both
//   the accumulators and the A registers of an in-flight wgmma must stay untouched.
// - between the two warpgroups (ping-pong): each issues its wgmmas only in its turn, named
//   barrier AWS_BAR_TURN + c, and hands the turn over (bar.arrive on the other's barrier) right
//   after issuing, so one warpgroup's softmax runs under the other's GEMMs. Warpgroup 2 opens
//   with an arrival on warpgroup 1's barrier and skips its last hand-over, so both barriers end
//   with every phase whole: each warpgroup has tiles + 1 turns.
//
// Phases: tile t lives in stage t % AWS_STAGES in its (t / AWS_STAGES)-th round; `full`
// completes once per round (consumers wait for parity round & 1), and the producer's first
// round finds the stages free (it waits for `empty` with the opposite parity). A key tail and
// query rows past Lq are the maps' zero fill; keys past Lk and causally hidden keys are masked
// to −∞ on the tiles that have any.
#pragma once
#include "attention_wgmma.cuh"
#include "tma.cuh"

#if defined(MMA_OK) && defined(WGMMA_OK)

static_assert(AWS_THREADS == 384 && AWS_BR == 128 && AWS_BC == 128,
              "a producer warpgroup and two consumer warpgroups × 64 queries; 128-key tiles");
static_assert(AWS_STAGES >= 1 && AWS_BAR_TURN >= 1 && AWS_BAR_TURN + 1 < 16, "a ring; named barriers 1 .. 15");
// setmaxnreg.inc is served from what .dec released, out of the block's registers at launch: 168
// a thread (65536 / 384, rounded down to a multiple of 8). More than that would wait forever.
static_assert(AWS_PRODUCER_REGS * 128 + AWS_CONSUMER_REGS * 256 <= 168 * 384, "the block's registers hold all three");

__device__ __forceinline__ void attention_wgmma_ws_d128_impl(const CUtensorMap* q_map, const CUtensorMap* k_map,
                                                             const CUtensorMap* v_map, TX* y, int q_len, int kv_len,
                                                             int q_heads, int kv_heads, float scale, int causal) {
    constexpr int D = 128, BR = AWS_BR, BC = AWS_BC, STAGES = AWS_STAGES;
    // One box: 128 rows of one 64-element head-dim half (128 bytes a row). Q, a K tile and a V
    // tile are two boxes each; every part is a multiple of 1024 bytes, as the swizzle needs.
    constexpr u32 HALF = 128 * 128, TILE = 2 * HALF, Q_BYTES = 2 * HALF;
    DYNAMIC_SMEM(smem_raw);
    REQUIRE_DYNAMIC_SMEM(1024 + Q_BYTES + 2 * STAGES * TILE + (1 + 4 * STAGES) * 8);
    const u32 raw = smem_addr(smem_raw), base = (raw + 1023) & ~1023u;
    unsigned char* const sm = smem_raw + (base - raw);
    unsigned char* const k_tiles = sm + Q_BYTES;
    unsigned char* const v_tiles = k_tiles + STAGES * TILE;
    u64* const q_full = (u64*)(v_tiles + STAGES * TILE);
    u64* const k_full = q_full + 1;
    u64* const v_full = k_full + STAGES;
    u64* const k_empty = v_full + STAGES;
    u64* const v_empty = k_empty + STAGES;

    const int tid = threadIdx.x, wg = tid >> 7;
    const int h = blockIdx.y, kh = h / (q_heads / kv_heads), q0 = blockIdx.x * BR;
    const int shift = kv_len - q_len;
    // Keys any query of this block sees.
    const int kv_end = causal ? min(kv_len, q0 + BR + shift) : kv_len;
    const int tiles = kv_end > 0 ? (kv_end + BC - 1) / BC : 0;

    if (tid == 0) {
        mbar_init(q_full, 1);
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(&k_full[s], 1);
            mbar_init(&v_full[s], 1);
            mbar_init(&k_empty[s], 256);
            mbar_init(&v_empty[s], 256);
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (wg == 0) {
        setmaxnreg_dec<AWS_PRODUCER_REGS>();
        // A block that sees no key loads nothing: its consumers write zeros without waiting.
        if (tid != 0 || tiles == 0) return;
        mbar_arrive_expect_tx(q_full, Q_BYTES);
        tma_load_2d(sm, q_map, h * D, q0, q_full);
        tma_load_2d(sm + HALF, q_map, h * D + 64, q0, q_full);
        auto load = [&](const CUtensorMap* map, unsigned char* ring, u64* full, u64* empty, int t) {
            const int s = t % STAGES;
            mbar_wait(&empty[s], ((u32)(t / STAGES) & 1) ^ 1);
            unsigned char* const dst = ring + s * TILE;
            mbar_arrive_expect_tx(&full[s], TILE);
            tma_load_2d(dst, map, kh * D, t * BC, &full[s]);
            tma_load_2d(dst + HALF, map, kh * D + 64, t * BC, &full[s]);
        };
        load(k_map, k_tiles, k_full, k_empty, 0);
        for (int t = 0; t < tiles; ++t) {
            if (t + 1 < tiles) load(k_map, k_tiles, k_full, k_empty, t + 1);
            load(v_map, v_tiles, v_full, v_empty, t);
        }
        return;
    }

    setmaxnreg_inc<AWS_CONSUMER_REGS>();
    const int c = wg - 1, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int row0 = q0 + c * 64 + ((tid >> 5) & 3) * 16 + g;  // this thread's rows: row0, row0 + 8
    float o[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.0f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};

    if (tiles > 0) {
        const float sl2 = scale * 1.4426950408889634f;
        const u32 q_desc = base + c * 64 * 128, k_ring = smem_addr(k_tiles), v_ring = smem_addr(v_tiles);
        const u32 my_turn = AWS_BAR_TURN + c, next_turn = AWS_BAR_TURN + (c ^ 1);
        float s[64], alpha[2];
        u32 p[BC / 16][4];

        auto issue_s = [&](int t) {
            mbar_wait(&k_full[t % STAGES], (u32)(t / STAGES) & 1);
            const u32 k_addr = k_ring + (t % STAGES) * TILE;
#pragma unroll
            for (int i = 0; i < 64; ++i) s[i] = 0.0f;
#pragma unroll
            for (int i = 0; i < 64; ++i) fence_operand(s[i]);
            wgmma_fence();
#pragma unroll
            for (int ks = 0; ks < D / 16; ++ks) {
                const u32 off = (ks >> 2) * HALF + (ks & 3) * 32;
                wgmma_m64n128k16(s, sw128_desc(q_desc + off), sw128_desc(k_addr + off), TX{});
            }
            wgmma_commit();
        };
        // V's tile map wrote row = key, 64 head-dim elements per 128-byte row: the k16 step kk
        // (keys 16kk …) starts 16 rows in, and the second head-dim half (N 64 … 127) is HALF on.
        auto issue_pv = [&](int t) {
            mbar_wait(&v_full[t % STAGES], (u32)(t / STAGES) & 1);
            const u32 v_addr = v_ring + (t % STAGES) * TILE;
#pragma unroll
            for (int i = 0; i < 64; ++i) fence_operand(o[i]);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < BC / 16; ++kk)
                wgmma_m64n128k16_rs_tb(o, p[kk], sw128_desc_mn(v_addr + kk * 16 * 128, HALF), TX{});
            wgmma_commit();
        };
        // Sₜ (retired) → exp2(Sₜ·scale·log2 e − m) in place, the new maxima and sums, and the factor
        // alpha that rescales O from the old maxima to the new.
        auto softmax = [&](int t) {
#pragma unroll
            for (int i = 0; i < 64; ++i) fence_operand(s[i]);
            const int last_key = (t + 1) * BC - 1, first_row = q0 + c * 64;
            const bool whole = last_key < kv_len && (!causal || last_key <= first_row + shift);
            float mu[2];
            wgmma_softmax_max_step<BC>(s, t, t4, row0, kv_len, causal, shift, whole, sl2, m, l, mu, alpha);
#pragma unroll
            for (int n = 0; n < BC / 8; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    s[4 * n + e] = exp2f(s[4 * n + e] - mu[e >> 1]);
                    l[e >> 1] += s[4 * n + e];
                }
        };
        // After P·V retired: O to the new maxima, and P as the next P·V's A fragments (k16 step kk
        // takes n8 blocks 2kk, 2kk + 1).
        auto rescale_and_pack = [&]() {
#pragma unroll
            for (int i = 0; i < 64; ++i) fence_operand(o[i]);
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                o[4 * n] *= alpha[0];
                o[4 * n + 1] *= alpha[0];
                o[4 * n + 2] *= alpha[1];
                o[4 * n + 3] *= alpha[1];
            }
#pragma unroll
            for (int n = 0; n < BC / 8; ++n) {
                p[n >> 1][(n & 1) * 2 + 0] = wa_pack(s[4 * n], s[4 * n + 1]);
                p[n >> 1][(n & 1) * 2 + 1] = wa_pack(s[4 * n + 2], s[4 * n + 3]);
            }
        };

        if (c == 1) named_bar_arrive(AWS_BAR_TURN, 256);  // consumer 0 takes the first turn
        mbar_wait(q_full, 0);

        named_bar_sync(my_turn, 256);
        issue_s(0);
        named_bar_arrive(next_turn, 256);
        wgmma_wait<0>();
        mbar_arrive(&k_empty[0]);
        softmax(0);
        rescale_and_pack();

        for (int t = 1; t < tiles; ++t) {
            named_bar_sync(my_turn, 256);
            issue_s(t);
            issue_pv(t - 1);
            named_bar_arrive(next_turn, 256);
            wgmma_wait<1>();  // Sₜ retired; P·Vₜ₋₁ may still run
            mbar_arrive(&k_empty[t % STAGES]);
            softmax(t);
            wgmma_wait<0>();
            mbar_arrive(&v_empty[(t - 1) % STAGES]);
            rescale_and_pack();
        }

        named_bar_sync(my_turn, 256);
        issue_pv(tiles - 1);
        if (c == 0) named_bar_arrive(next_turn, 256);  // consumer 1's last turn hands over to none
        wgmma_wait<0>();
#pragma unroll
        for (int i = 0; i < 64; ++i) fence_operand(o[i]);
        mbar_arrive(&v_empty[(tiles - 1) % STAGES]);
    }

    wgmma_attention_store<D>(o, l, y, (u64)q_heads * D, h, row0, q_len, t4);
}

#endif
