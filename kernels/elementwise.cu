// Elementwise kernels: cast, activations, SwiGLU, broadcast binary ops, the Euler step, gated
// residual. One thread per element in a grid-stride loop; memory-bound, so the only concern is
// coalescing (consecutive threads touch consecutive elements). f32 arithmetic throughout.
//
// Types: TX = `x`/`a`/output dtype; TW = the second operand's dtype (`b`, `z`, `up`);
// TB = the gate's dtype; cast writes TC. Scalars: ElementwiseArgs (ops/elementwise.rs).
#include "common.cuh"

extern "C" __global__ void cast(const TX* x, TC* y, ElementwiseArgs p) {
    FOR_EACH(i, p.n) st(y, i, ld(x, i));
}

extern "C" __global__ void activation(const TX* x, TX* y, ElementwiseArgs p) {
    FOR_EACH(i, p.n) {
        float v = ld(x, i), r;
        if (p.act == ACT_SILU) {
            r = v / (1.0f + expf(-v));
        } else if (p.act == ACT_GELU_TANH) {
            const float k = 0.7978845608028654f;  // sqrt(2/pi)
            r = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        } else {  // ACT_GELU_ERF
            r = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
        }
        st(y, i, r);
    }
}

extern "C" __global__ void swiglu(const TX* gate, const TW* up, TX* y, ElementwiseArgs p) {
    FOR_EACH(i, p.n) {
        float g = ld(gate, i);
        st(y, i, g / (1.0f + expf(-g)) * ld(up, i));
    }
}

// b is indexed b[i] (BCAST_NONE), b[i % inner] (BCAST_ROW) or b[i / inner] (BCAST_COL).
extern "C" __global__ void binary(const TX* a, const TW* b, TX* y, ElementwiseArgs p) {
    FOR_EACH(i, p.n) {
        u64 j = p.bcast == BCAST_NONE ? i : (p.bcast == BCAST_ROW ? i % p.inner : i / p.inner);
        float u = ld(a, i), v = ld(b, j);
        st(y, i, p.op == BIN_ADD ? u + v : (p.op == BIN_SUB ? u - v : u * v));
    }
}

extern "C" __global__ void scaled_add(const TX* x, const TW* z, TX* y, ElementwiseArgs p) {
    FOR_EACH(i, p.n) st(y, i, ld(x, i) + p.alpha * ld(z, i));
}

// y[r, c] = x[r, c] + gate[c]·z[r, c], rows of `inner` elements.
extern "C" __global__ void gated_residual(const TX* x, const TW* z, const TB* gate, TX* y, ElementwiseArgs p) {
    FOR_EACH(i, p.n) st(y, i, ld(x, i) + ld(gate, i % p.inner) * ld(z, i));
}
