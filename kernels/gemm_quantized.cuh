// `linear_quantized`: y = x·ŵᵀ + b for a quantized weight (joyrt-core's `quant` module has the
// formats and the word layout): code k of row n is bits (k % P)·BITS of word n·W + k / P
// (P = 32 / BITS codes per word, W = GemmArgs.row_words words per row), its scale
// scales[n·S + k / B] (B = GemmArgs.block, S = GemmArgs.scales_per_row; fp8: B = K, S = 1).
//
// Two kernels per format (FMT = QUANT_INT8, QUANT_INT4, QUANT_FP8, chosen at compile time):
//
// - *_simt (f32 activations, mixed dtypes, JOYRT_CUDA_GEMM=simt, or a block that is not a
//   multiple of the K tile): gemm_simt with the weight operand QuantRows, which dequantizes each
//   element into the f32 shared tile as ŵ = decode(q)·scale, one f32 multiply, exactly as the CPU
//   reference does; then exact f32 FMAs. The same result as the reference up to summation order.
//
// - *_mma (bf16/f16 activations, sm_80+): the 128×128×32 tiles, warp layout and fragments of
//   gemm_mma (gemm.cuh), with B's K tile decoded from the codes into shared memory in the
//   activation dtype. What goes into the MMA is the unscaled code value decode(q), which is exact
//   in bf16 and f16 (int8 −127…127, int4 −8…7 and every E4M3 value: 3 mantissa bits, exponents
//   2⁻⁹…2⁸), never decode(q)·scale rounded to 16 bits, which would not be. The scale is applied in
//   f32 once per K tile: each 32-wide tile's products are summed by two chained m16n8k16 MMAs
//   into a fresh f32 partial p, and acc = fma(scale[n, k0 / B], p, acc). A K tile must therefore
//   lie inside one block (B % 32 == 0, or fp8's B = K): the host takes *_simt otherwise. Error
//   against the reference's Σ x·f32(q·s): the products x·q are exact in f32 (≤ 8 + 11 significant
//   bits), so the difference is a reassociation of f32 sums plus one rounding of s·p per tile,
//   of the order of the f32 accumulation error any GEMM here has (|Δ| ≲ (K/32 + 32)·2⁻²⁴·Σ|x·ŵ|).
#pragma once
#include "gemm.cuh"

template <unsigned FMT> struct QuantLayout {
    static constexpr int BITS = FMT == QUANT_INT4 ? 4 : 8;
    static constexpr int PER_WORD = 32 / BITS;
    static constexpr u32 MASK = (1u << BITS) - 1u;
};

// The value of an FP8 E4M3 code (e4m3fn: bias 7, subnormals m·2⁻⁹, 0x7f/0xff NaN, no
// infinities), exactly, by bit manipulation.
__device__ __forceinline__ float e4m3_to_f32(u32 c) {
    const u32 sign = (c & 0x80u) << 24, e = (c >> 3) & 0xfu, m = c & 7u;
    if (e == 0) return __uint_as_float(__float_as_uint((float)m * 0.001953125f) | sign);
    if (e == 15 && m == 7) return __uint_as_float(0x7fc00000u | sign);
    return __uint_as_float(sign | ((e + 120u) << 23) | (m << 20));
}

// The unscaled value of code `c` (already shifted down and masked).
template <unsigned FMT> __device__ __forceinline__ float quant_decode(u32 c) {
    if (FMT == QUANT_INT8) return (float)((int)(c << 24) >> 24);
    if (FMT == QUANT_INT4) return (float)((int)c - 8);
    return e4m3_to_f32(c);
}

// The SIMT weight operand: element (r, kk) dequantized to f32, zero outside.
template <unsigned FMT> struct QuantRows {
    const u32* words;
    const float* scales;
    int rows, k, row_words, block, scales_per_row;
    __device__ __forceinline__ float at(int r, int kk) const {
        typedef QuantLayout<FMT> L;
        if (r >= rows || kk >= k) return 0.0f;
        const u32 w = words[(u64)r * row_words + kk / L::PER_WORD];
        const u32 c = (w >> ((kk % L::PER_WORD) * L::BITS)) & L::MASK;
        return quant_decode<FMT>(c) * scales[(u64)r * scales_per_row + kk / block];
    }
};

template <unsigned FMT, typename TY, typename TBIAS>
__device__ __forceinline__ void linear_quantized_simt(const TX* x, const u32* w, const float* scales,
                                                      const GemmOut<TY, TBIAS>& out, const GemmArgs& p) {
    gemm_simt(RowMajor<TX>{x, p.m, p.k, 0},
              QuantRows<FMT>{w, scales, p.n, p.k, p.row_words, p.block, p.scales_per_row}, p.m, p.n, p.k, out);
}

#if defined(MMA_OK)

// One warp's share of a 128×128×32 block tile with per-column scales `ss` (this K tile's scale
// of each of the block's 128 weight rows): acc[i][j] += s ⊙ (A·Bᵀ over the tile's 32 k), the
// tile's sum formed in a fresh partial first (see the file header). Fragments as mma_block_tile.
__device__ __forceinline__ void mma_block_tile_scaled(float (*acc)[4][4], const u16* as, const u16* bs,
                                                      const float* ss, int wm, int wn, int lane) {
    u32 af[2][4][4], bfr[2][4][2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int kk = 16 * h;
#pragma unroll
        for (int i = 0; i < 4; ++i)
            ldsm_x4(af[h][i], &as[(wm * 64 + i * 16 + (lane & 15)) * MMA_LDS + kk + (lane >> 4) * 8]);
#pragma unroll
        for (int j = 0; j < 4; j += 2) {
            u32 r[4];
            ldsm_x4(r, &bs[(wn * 32 + j * 8 + (lane >> 4) * 8 + (lane & 7)) * MMA_LDS + kk + ((lane >> 3) & 1) * 8]);
            bfr[h][j][0] = r[0];
            bfr[h][j][1] = r[1];
            bfr[h][j + 1][0] = r[2];
            bfr[h][j + 1][1] = r[3];
        }
    }
    const int t4 = lane & 3;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        // Accumulator fragment columns: 2·t4 (d0, d2) and 2·t4 + 1 (d1, d3).
        const float s0 = ss[wn * 32 + j * 8 + 2 * t4], s1 = ss[wn * 32 + j * 8 + 2 * t4 + 1];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            mma16816(part, af[0][i], bfr[0][j], TX{});
            mma16816(part, af[1][i], bfr[1][j], TX{});
            acc[i][j][0] = fmaf(s0, part[0], acc[i][j][0]);
            acc[i][j][1] = fmaf(s1, part[1], acc[i][j][1]);
            acc[i][j][2] = fmaf(s0, part[2], acc[i][j][2]);
            acc[i][j][3] = fmaf(s1, part[3], acc[i][j][3]);
        }
    }
}

// The code value decode(q) as a 16-bit element of the activation dtype (exact: see the header).
template <unsigned FMT> __device__ __forceinline__ u32 quant_code_bits(u32 c) {
    return from_f32<TX>(quant_decode<FMT>(c)).bits;
}

// A pair of f16 values (low half first) as a pair of the activation dtype's elements, exactly for
// values that bf16 holds.
__device__ __forceinline__ u32 f16_pair_as(u32 h2, f16_t) { return h2; }
__device__ __forceinline__ u32 f16_pair_as(u32 h2, bf16_t) {
    const f16_t lo{(u16)(h2 & 0xffffu)}, hi{(u16)(h2 >> 16)};
    return from_f32<bf16_t>(to_f32(lo)).bits | ((u32)from_f32<bf16_t>(to_f32(hi)).bits << 16);
}

// Two E4M3 codes (code 0 in the low byte) as two 16-bit elements of the activation dtype (element 0
// in the low half), exactly: every E4M3 value is an f16 and a bf16. Where the GPU converts FP8 in
// hardware (sm_89 and later: FP8_CVT_OK) one cvt.rn.f16x2.e4m3x2 decodes the pair (the high byte
// goes to the high half, as for every packed cvt); the emulation gives that instruction a twin
// built from e4m3_to_f32, so the packing around it runs there. sm_80 decodes each code by bits.
__device__ __forceinline__ u32 fp8_pair_bits(u32 codes) {
#if defined(FP8_CVT_OK)
    u32 h2;
#ifdef JOYRT_CUDA_EMU
    h2 = (u32)emu_f32_to_f16(e4m3_to_f32(codes & 0xffu)) | ((u32)emu_f32_to_f16(e4m3_to_f32((codes >> 8) & 0xffu)) << 16);
#else
    asm("{\n .reg .b16 c;\n cvt.u16.u32 c, %1;\n cvt.rn.f16x2.e4m3x2 %0, c;\n}" : "=r"(h2) : "r"(codes));
#endif
    return f16_pair_as(h2, TX{});
#else
    return quant_code_bits<QUANT_FP8>(codes & 0xffu) | (quant_code_bits<QUANT_FP8>((codes >> 8) & 0xffu) << 16);
#endif
}

// Same double-buffered register staging as gemm_mma: the next K tile's A chunks, packed words and
// scale are loaded into registers while the current tile is multiplied, then A is stored and the
// words decoded into the other buffer. B: thread t holds 16 codes of weight row t / 2 (k offset
// (t % 2)·16), i.e. 16 / P words; threads 0…127 hold the scale of row n0 + t.
template <unsigned FMT, typename TY, typename TBIAS>
__device__ __forceinline__ void linear_quantized_mma(const TX* x, const u32* w, const float* scales,
                                                     const GemmOut<TY, TBIAS>& out, const GemmArgs& p) {
    typedef QuantLayout<FMT> L;
    constexpr int WORDS = 16 / L::PER_WORD;
    __shared__ __align__(16) u16 As[2][MMA_BM][MMA_LDS];
    __shared__ __align__(16) u16 Bs[2][MMA_BN][MMA_LDS];
    __shared__ float Ss[2][MMA_BN];
    const int M = p.m, N = p.n, K = p.k;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 2, wn = warp & 3;
    const int m0 = blockIdx.y * MMA_BM, n0 = blockIdx.x * MMA_BN;
    const RowMajor<TX> a{x, M, K, p.vec};

    float acc[4][4][4];
    mma_zero(acc);

    uint4 ra[2];
    u32 rw[WORDS];
    float rs = 0.0f;
    const int row0 = tid >> 2, kc = (tid & 3) * 8;
    const int bn = n0 + (tid >> 1), bk = (tid & 1) * 16;
    const u32* wrow = w + (u64)bn * p.row_words;
    auto load = [&](int k0) {
#pragma unroll
        for (int i = 0; i < 2; ++i) ra[i] = a.load8(m0 + row0 + 64 * i, k0 + kc);
#pragma unroll
        for (int j = 0; j < WORDS; ++j) {
            const int k = k0 + bk + j * L::PER_WORD;
            rw[j] = bn < N && k < K ? wrow[k / L::PER_WORD] : 0u;
        }
        if (tid < MMA_BN && n0 + tid < N) rs = scales[(u64)(n0 + tid) * p.scales_per_row + k0 / p.block];
    };
    auto store = [&](int buf, int k0) {
#pragma unroll
        for (int i = 0; i < 2; ++i) *(uint4*)&As[buf][row0 + 64 * i][kc] = ra[i];
        u32 packed[8];
#pragma unroll
        for (int e = 0; e < 16; e += 2) {
            u32 pair = 0;
            if (FMT == QUANT_FP8) {
                // Both codes of the pair are one byte pair of one word (4 codes per word).
                const u32 codes = (rw[e / 4] >> ((e % 4) * 8)) & 0xffffu;
                pair = fp8_pair_bits(codes);
            } else {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const u32 c = (rw[(e + h) / L::PER_WORD] >> (((e + h) % L::PER_WORD) * L::BITS)) & L::MASK;
                    pair |= quant_code_bits<FMT>(c) << (16 * h);
                }
            }
            // Codes past K (an fp8 row's last word) and rows past N contribute zero.
            const int k = k0 + bk + e;
            if (!(bn < N && k < K)) pair = 0u;
            else if (k + 1 >= K) pair &= 0xffffu;
            packed[e / 2] = pair;
        }
        *(uint4*)&Bs[buf][tid >> 1][bk] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
        *(uint4*)&Bs[buf][tid >> 1][bk + 8] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
        if (tid < MMA_BN) Ss[buf][tid] = rs;
    };

    const int tiles = (K + MMA_BK - 1) / MMA_BK;
    load(0);
    store(0, 0);
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
        const int cur = t & 1;
        if (t + 1 < tiles) load((t + 1) * MMA_BK);
        mma_block_tile_scaled(acc, &As[cur][0][0], &Bs[cur][0][0], Ss[cur], wm, wn, lane);
        if (t + 1 < tiles) store(cur ^ 1, (t + 1) * MMA_BK);
        __syncthreads();
    }

    mma_block_store(acc, out, m0, n0, wm, wn, lane);
}

#endif

// ---- W8A8: FP8 E4M3 activations × FP8 E4M3 weights (sm_89 and later: FP8_MMA_OK) -----------
//
// fp8_quantize_rows quantizes each row m of x to E4M3 with one f32 scale per row: s = absmax/448
// (IEEE division, as the reference), code f32_to_e4m3(x / s), so the largest |x| of the row
// lands on ±448, E4M3's largest finite value; a row of zeros gets s = 0 and codes 0. The codes
// are packed like an fp8 weight's (4 per word, row_words words per row, zero past K).
//
// linear_fp8_w8a8_mma then multiplies the two code matrices on mma.m16n8k32 e4m3: the tiling,
// warp layout and register-staged double buffer of gemm_mma, with a K tile of 64 codes (64
// bytes: the same 32 16-bit columns of the padded shared rows, so each warp runs gemm_mma's
// mma_block_tile with the 8-bit MMA passed in). Every product of two E4M3 values is exact in f32, and the f32 sums carry no scale:
// y = (s_x[m]·s_w[n])·Σ q_x·q_w, applied once after the K loop, then bias and epilogue through
// GemmOut. Against the reference's Σ (q_x·s_x)·(q_w·s_w): a reassociation of f32 products and
// sums, no more.
#if defined(FP8_MMA_OK)

// The nearest E4M3 code to v (ties to even), saturating at ±448, NaN → 0x7f: joyrt-core's
// codec::f32_to_e4m3, operation for operation, so the codes agree bit for bit.
__device__ __forceinline__ u32 f32_to_e4m3(float v) {
    const u32 u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fu;
    const u32 sign = (u >> 24) & 0x80u;
    const float a = fminf(__uint_as_float(u & 0x7fffffffu), 448.0f);
    if (a < 0.015625f) {
        // Subnormal: a multiple of 2⁻⁹ (a·512 is exact), rounded half to even by integer steps.
        const float f = a * 512.0f;
        u32 i = (u32)f;
        const float r = f - (float)i;
        if (r > 0.5f || (r == 0.5f && (i & 1u))) ++i;
        return sign | i;
    }
    const u32 bits = __float_as_uint(a);
    int e = (int)(bits >> 23) - 127;
    u32 mant = (bits >> 20) & 7u;
    const u32 rest = bits & 0xfffffu;
    if (rest > 0x80000u || (rest == 0x80000u && (mant & 1u))) ++mant;
    if (mant == 8u) {
        mant = 0u;
        ++e;
    }
    return sign | ((u32)(e + 7) << 3) | mant;
}

// One block per row: codes [M, row_words] words, scales [M] f32.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    fp8_quantize_rows(const TX* x, u32* codes, float* scales, GemmArgs p) {
    __shared__ float scratch[32];
    const u64 row = blockIdx.x, base = row * (u64)p.k;
    float amax = 0.0f;
    for (int k = threadIdx.x; k < p.k; k += blockDim.x) amax = fmaxf(amax, fabsf(ld(x, base + k)));
    amax = block_max(amax, scratch);
    const float s = amax / 448.0f;
    for (int wi = threadIdx.x; wi < p.row_words; wi += blockDim.x) {
        u32 word = 0u;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int k = 4 * wi + j;
            if (k < p.k && s > 0.0f) word |= f32_to_e4m3(ld(x, base + k) / s) << (8 * j);
        }
        codes[row * (u64)p.row_words + wi] = word;
    }
    if (threadIdx.x == 0) scales[row] = s;
}

// A [rows, K] matrix of E4M3 codes, 4 per word, row_words words per row.
struct Fp8Rows {
    const u32* words;
    int rows, k, row_words;
    int vec;  // 1: K % 16 == 0, so 16 codes from a multiple of 16 are one aligned 16-byte load
    // Codes k0 … k0 + 15 (k0 a multiple of 16) of row r, zero outside the matrix: codes past K in
    // a row's last word are masked, since a NaN code there would make 0·NaN a NaN sum.
    __device__ __forceinline__ uint4 load16(int r, int k0) const {
        if (r >= rows || k0 >= k) return make_uint4(0u, 0u, 0u, 0u);
        const u32* row = words + (u64)r * row_words;
        if (vec) return *(const uint4*)(row + k0 / 4);
        u32 v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int kk = k0 + 4 * j;
            u32 w = kk < k ? row[kk / 4] : 0u;
            if (kk < k && kk + 4 > k) w &= (1u << (8 * (k - kk))) - 1u;
            v[j] = w;
        }
        return make_uint4(v[0], v[1], v[2], v[3]);
    }
};

// xq, xs: fp8_quantize_rows' codes and scales of x; w, scales: the fp8 weight (one scale per
// row). p.vec: K % 16 == 0.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    linear_fp8_w8a8_mma(const u32* xq, const float* xs, const u32* w, const float* scales, const TB* bias,
                        const TX* residual, const TX* gate, TX* y, GemmArgs p) {
    // Shared rows hold 64 codes as 32 16-bit columns (MMA_BK), padded as gemm_mma's.
    __shared__ __align__(16) u16 As[2][MMA_BM][MMA_LDS];
    __shared__ __align__(16) u16 Bs[2][MMA_BN][MMA_LDS];
    const int M = p.m, N = p.n, K = p.k;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 2, wn = warp & 3;
    const int m0 = blockIdx.y * MMA_BM, n0 = blockIdx.x * MMA_BN;
    const Fp8Rows a{xq, M, K, p.row_words, p.vec}, b{w, N, K, p.row_words, p.vec};

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

    // Each thread moves two 16-code chunks of each operand per K tile: chunk c → row c / 4,
    // codes (c % 4)·16, i.e. 16-bit column (c % 4)·8.
    uint4 ra[2], rb[2];
    const int row0 = tid >> 2, kc = (tid & 3) * 8;
    auto load = [&](int k0) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            ra[i] = a.load16(m0 + row0 + 64 * i, k0 + 2 * kc);
            rb[i] = b.load16(n0 + row0 + 64 * i, k0 + 2 * kc);
        }
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            *(uint4*)&As[buf][row0 + 64 * i][kc] = ra[i];
            *(uint4*)&Bs[buf][row0 + 64 * i][kc] = rb[i];
        }
    };

    constexpr int BK_CODES = 2 * MMA_BK;
    const int tiles = (K + BK_CODES - 1) / BK_CODES;
    load(0);
    store(0);
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
        const int cur = t & 1;
        if (t + 1 < tiles) load((t + 1) * BK_CODES);
        // A K tile of 64 codes: two k32 steps.
        mma_block_tile(acc, &As[cur][0][0], &Bs[cur][0][0], wm, wn, lane,
                       [](float* d, const u32* a, const u32* b) { mma_e4m3_16832(d, a, b); });
        if (t + 1 < tiles) store(cur ^ 1);
        __syncthreads();
    }

    // The two scales, on the f32 sums: accumulator (i, j, 2h + c) is at row g + 8h of m16 block
    // i, column 2·t4 + c of n8 block j.
    const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int c = n0 + wn * 32 + j * 8 + 2 * t4;
        const float s0 = c < N ? scales[(u64)c * p.scales_per_row] : 0.0f;
        const float s1 = c + 1 < N ? scales[(u64)(c + 1) * p.scales_per_row] : 0.0f;
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = m0 + wm * 64 + i * 16 + g + 8 * h;
                const float sx = r < M ? xs[r] : 0.0f;
                acc[i][j][2 * h] *= sx * s0;
                acc[i][j][2 * h + 1] *= sx * s1;
            }
    }
    mma_warp_store<4, 4>(acc, GemmOut<TX, TB>{y, bias, 0, (u32)p.epilogue, residual, gate, M, N}, m0 + wm * 64,
                         n0 + wn * 32, lane);
}

#endif

// ---- W8A8 on Hopper (sm_90a, 16-bit activations): FP8 warpgroup MMA ------------------------
//
// gemm_wgmma_tiles' 128 × 256 tiles, ring and schedule with both operands E4M3 codes: a 128-byte
// swizzled shared row holds a K tile of 128 codes, issued as four wgmma.m64n256k32 e4m3 (each
// k32 step is the same 32-byte descriptor advance as a k16 step of 16-bit elements); then the two
// scales and the epilogue, as linear_fp8_w8a8_mma. The code rows are copied as rows of 16-bit
// pairs (K / 2 of them), so it needs K % 16 == 0: rows of whole 16-byte chunks, the weight's rows
// K bytes apart.
#if defined(FP8_MMA_OK) && defined(MMA_OK) && defined(WGMMA_OK)

__device__ __forceinline__ void wgmma_issue_k_tile_e4m3(float* acc, u32 a_tile, u32 b_tile) {
#pragma unroll
    for (int i = 0; i < 128; ++i) fence_operand(acc[i]);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < WG_BK / 16; ++ks)
        wgmma_m64n256k32_e4m3(acc, sw128_desc(a_tile + ks * 32), sw128_desc(b_tile + ks * 32));
    wgmma_commit();
}

// Rows r and r + 8 of one consumer thread's accumulators for the 128 × 256 tile with columns
// from n0: scaled by s_x[row]·s_w[column], then stored through `out` (bias, epilogue).
template <typename TY, typename TBIAS>
__device__ __forceinline__ void fp8_wgmma_store(float* acc, const GemmOut<TY, TBIAS>& out, const float* xs,
                                                const float* scales, int r, int n0, int t4) {
    const int M = out.M, N = out.N;
    const float sx0 = r < M ? xs[r] : 0.0f, sx1 = r + 8 < M ? xs[r + 8] : 0.0f;
#pragma unroll
    for (int j = 0; j < 256 / 8; ++j) {
        const int c = n0 + j * 8 + 2 * t4;
        const float s0 = c < N ? scales[c] : 0.0f, s1 = c + 1 < N ? scales[c + 1] : 0.0f;
        acc[4 * j] *= sx0 * s0;
        acc[4 * j + 1] *= sx0 * s1;
        acc[4 * j + 2] *= sx1 * s0;
        acc[4 * j + 3] *= sx1 * s1;
        out.template store<2>(r, c, acc + 4 * j);
        out.template store<2>(r + 8, c, acc + 4 * j + 2);
    }
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 1)
    linear_fp8_w8a8_wgmma(const u32* xq, const float* xs, const u32* w, const float* scales, const TB* bias,
                          const TX* residual, const TX* gate, TX* y, GemmArgs p) {
    constexpr int BN = 256;
    float acc[BN / 2];
    int m0, n0;
    // Rows of codes as rows of 16-bit pairs: K / 2 elements each.
    wgmma_tile_mainloop<BN>(acc, (const u16*)xq, (const u16*)w, p.m, p.n, p.k / 2, m0, n0,
                            [](float* c, u32 a_tile, u32 b_tile) { wgmma_issue_k_tile_e4m3(c, a_tile, b_tile); });
    const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31;
    const int r = m0 + wg * 64 + ((tid >> 5) & 3) * 16 + (lane >> 2);
    fp8_wgmma_store(acc, GemmOut<TX, TB>{y, bias, 0, (u32)p.epilogue, residual, gate, p.m, p.n}, xs, scales, r, n0,
                    lane & 3);
}

// The same, warp-specialised and persistent (gemm_wgmma_ws.cuh's loop; JOYRT_CUDA_GEMM=wgmma-ws):
// WS_THREADS threads, the code matrices read through tensor maps of 16-bit pairs (ops/gemm.rs:
// K / 2 columns, 128- and 256-row boxes of 64 pairs).
extern "C" __global__ void __launch_bounds__(WS_THREADS, 1)
    linear_fp8_w8a8_wgmma_ws(const float* xs, const float* scales, const TB* bias, const TX* residual, const TX* gate,
                             TX* y, const __grid_constant__ CUtensorMap xq_map, const __grid_constant__ CUtensorMap w_map,
                             GemmArgs p) {
    const GemmOut<TX, TB> out{y, bias, 0, (u32)p.epilogue, residual, gate, p.m, p.n};
    wgmma_ws_mainloop<256>(
        &xq_map, &w_map, p.m, p.n, p.k / 2,
        [](float* c, u32 a_tile, u32 b_tile) { wgmma_issue_k_tile_e4m3(c, a_tile, b_tile); },
        [&](float* acc, int m0, int n0, int row_in_tile, int t4) {
            fp8_wgmma_store(acc, out, xs, scales, m0 + row_in_tile, n0, t4);
        });
}

#endif
