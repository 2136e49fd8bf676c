// The GEMM epilogue, shared by every kernel that stores a GEMM's results (gemm.cuh's SIMT and
// mma.sync tiles, the quantized kernels, the Hopper wgmma kernels, conv's implicit GEMM): each
// f32 result a = Σ_k A[m, k]·B[n, k] gets its bias (per column for linear, per row for conv),
// then the op `op` (an EPI_* code, ops/gemm.rs), and is rounded once to the output:
//   EPI_NONE            y = a
//   EPI_GELU_TANH       y = ½a(1 + tanh(√(2/π)(a + 0.044715a³)))   (the activation kernel's formula)
//   EPI_GATED_RESIDUAL  y = residual[m, n] + gate[n]·a              (residual [M, N], gate [N])
// Unfused, the GEMM rounded `a` to the output dtype before the activation or the residual read it
// back: fused, that rounding and a pass over the output are gone.
#pragma once
#include "common.cuh"

// Two adjacent elements p[i], p[i + 1] (i even, p + i 4-byte aligned) as one store.
template <typename T> __device__ __forceinline__ void st_pair(T* p, u64 i, float v0, float v1) {
    *(u32*)(p + i) = (u32)from_f32<T>(v0).bits | ((u32)from_f32<T>(v1).bits << 16);
}
__device__ __forceinline__ void st_pair(float* p, u64 i, float v0, float v1) {
    p[i] = v0;
    p[i + 1] = v1;
}

template <typename TY, typename TBIAS> struct GemmOut {
    TY* y;
    const TBIAS* bias;  // null: none
    int bias_rows;      // 1: one bias per row (conv), 0: per column (linear)
    u32 op;             // EPI_*
    const TY* residual;
    const TY* gate;
    int M, N;

    // The value stored at (m, n) for the accumulator v (m < M, n < N).
    __device__ __forceinline__ float apply(int m, int n, float v) const {
        if (bias) v += ld(bias, bias_rows ? m : n);
        if (op == EPI_GELU_TANH) {
            const float k = 0.7978845608028654f;  // sqrt(2/pi)
            v = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        } else if (op == EPI_GATED_RESIDUAL) {
            v = ld(residual, (u64)m * N + n) + ld(gate, n) * v;
        }
        return v;
    }

    // Stores C[m, n .. n + COUNT) from the accumulators v, skipping what lies outside [M, N). A
    // column pair (n even) of an even-width output is aligned and wholly inside or outside: one
    // 4-byte store.
    template <int COUNT> __device__ __forceinline__ void store(int m, int n, const float* v) const {
        if (m >= M) return;
        if (COUNT == 2 && (N & 1) == 0 && (n & 1) == 0) {
            if (n < N) st_pair(y, (u64)m * N + n, apply(m, n, v[0]), apply(m, n + 1, v[1]));
            return;
        }
#pragma unroll
        for (int k = 0; k < COUNT; ++k)
            if (n + k < N) st(y, (u64)m * N + n + k, apply(m, n + k, v[k]));
    }
};

// The plain output (bias only) of a GEMM whose caller has no epilogue op (conv).
template <typename TY, typename TBIAS>
__device__ __forceinline__ GemmOut<TY, TBIAS> gemm_out(TY* y, const TBIAS* bias, int bias_rows, int M, int N) {
    return GemmOut<TY, TBIAS>{y, bias, bias_rows, EPI_NONE, nullptr, nullptr, M, N};
}
