// Elementwise kernels: cast, activations, SwiGLU, broadcast binary ops, the Euler step, gated
// residual. Grid-stride loops; memory-bound, so what matters is the width of each access and
// the index arithmetic per byte. Where the extents allow (n, and a broadcast's extent, multiples
// of VEC), each thread takes runs of VEC elements: one 16-byte access per operand for 16-bit
// types (vec.cuh), one index computation per run. Otherwise one element per thread. The math
// is the same function of each element either way, in f32.
//
// Types: TX = `x`/`a`/output dtype; TW = the second operand's dtype (`b`, `z`, `up`);
// TB = the gate's dtype; cast writes TC. Scalars: ElementwiseArgs (ops/elementwise.rs).
#include "vec.cuh"

// The runs of VEC elements a thread takes, as the element index of each run's first element.
#define FOR_EACH_RUN(i, n) FOR_EACH(run_##i, (n) / VEC) for (u64 i = run_##i * VEC, once_##i = 1; once_##i; once_##i = 0)

extern "C" __global__ void cast(const TX* x, TC* y, ElementwiseArgs p) {
    if (p.n % VEC == 0) {
        FOR_EACH_RUN(i, p.n) {
            float v[VEC];
            ld_run<VEC>(x, i, v);
            st_run<VEC>(y, i, v);
        }
        return;
    }
    FOR_EACH(i, p.n) st(y, i, ld(x, i));
}

__device__ __forceinline__ float activate(float v, u32 act) {
    if (act == ACT_SILU) return v / (1.0f + expf(-v));
    if (act == ACT_GELU_TANH) {
        const float k = 0.7978845608028654f;  // sqrt(2/pi)
        return 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
    return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));  // ACT_GELU_ERF
}

extern "C" __global__ void activation(const TX* x, TX* y, ElementwiseArgs p) {
    if (p.n % VEC == 0) {
        FOR_EACH_RUN(i, p.n) {
            float v[VEC];
            ld_run<VEC>(x, i, v);
#pragma unroll
            for (int k = 0; k < VEC; ++k) v[k] = activate(v[k], p.act);
            st_run<VEC>(y, i, v);
        }
        return;
    }
    FOR_EACH(i, p.n) st(y, i, activate(ld(x, i), p.act));
}

__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + expf(-g)) * u; }

extern "C" __global__ void swiglu(const TX* gate, const TW* up, TX* y, ElementwiseArgs p) {
    if (p.n % VEC == 0) {
        FOR_EACH_RUN(i, p.n) {
            float g[VEC], u[VEC];
            ld_run<VEC>(gate, i, g);
            ld_run<VEC>(up, i, u);
#pragma unroll
            for (int k = 0; k < VEC; ++k) g[k] = silu_times(g[k], u[k]);
            st_run<VEC>(y, i, g);
        }
        return;
    }
    FOR_EACH(i, p.n) st(y, i, silu_times(ld(gate, i), ld(up, i)));
}

__device__ __forceinline__ float apply(u32 op, float u, float v) {
    return op == BIN_ADD ? u + v : (op == BIN_SUB ? u - v : u * v);
}

// b is indexed b[i] (BCAST_NONE), b[i % inner] (BCAST_ROW) or b[i / inner] (BCAST_COL).
extern "C" __global__ void binary(const TX* a, const TW* b, TX* y, ElementwiseArgs p) {
    if (p.n % VEC == 0 && (p.bcast == BCAST_NONE || p.inner % VEC == 0)) {
        // A broadcast run never crosses a multiple of `inner`: one row of b, or one element.
        FOR_EACH_RUN(i, p.n) {
            float u[VEC], v[VEC];
            ld_run<VEC>(a, i, u);
            u64 q, r;
            div_mod(i, p.inner, &q, &r);
            if (p.bcast == BCAST_COL) {
                const float s = ld(b, q);
#pragma unroll
                for (int k = 0; k < VEC; ++k) v[k] = s;
            } else {
                ld_run<VEC>(b, p.bcast == BCAST_NONE ? i : r, v);
            }
#pragma unroll
            for (int k = 0; k < VEC; ++k) u[k] = apply(p.op, u[k], v[k]);
            st_run<VEC>(y, i, u);
        }
        return;
    }
    FOR_EACH(i, p.n) {
        u64 q, r;
        div_mod(i, p.inner, &q, &r);
        const u64 j = p.bcast == BCAST_NONE ? i : (p.bcast == BCAST_ROW ? r : q);
        st(y, i, apply(p.op, ld(a, i), ld(b, j)));
    }
}

extern "C" __global__ void scaled_add(const TX* x, const TW* z, TX* y, ElementwiseArgs p) {
    if (p.n % VEC == 0) {
        FOR_EACH_RUN(i, p.n) {
            float u[VEC], v[VEC];
            ld_run<VEC>(x, i, u);
            ld_run<VEC>(z, i, v);
#pragma unroll
            for (int k = 0; k < VEC; ++k) u[k] += p.alpha * v[k];
            st_run<VEC>(y, i, u);
        }
        return;
    }
    FOR_EACH(i, p.n) st(y, i, ld(x, i) + p.alpha * ld(z, i));
}

// y[r, c] = x[r, c] + gate[c]·z[r, c], rows of `inner` elements.
extern "C" __global__ void gated_residual(const TX* x, const TW* z, const TB* gate, TX* y, ElementwiseArgs p) {
    if (p.n % VEC == 0 && p.inner % VEC == 0) {
        FOR_EACH_RUN(i, p.n) {
            float u[VEC], v[VEC], g[VEC];
            u64 row, col;
            div_mod(i, p.inner, &row, &col);
            ld_run<VEC>(x, i, u);
            ld_run<VEC>(z, i, v);
            ld_run<VEC>(gate, col, g);
#pragma unroll
            for (int k = 0; k < VEC; ++k) u[k] += g[k] * v[k];
            st_run<VEC>(y, i, u);
        }
        return;
    }
    FOR_EACH(i, p.n) {
        u64 row, col;
        div_mod(i, p.inner, &row, &col);
        st(y, i, ld(x, i) + ld(gate, col) * ld(z, i));
    }
}
