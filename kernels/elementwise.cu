// Elementwise kernels: cast, activations, SwiGLU, broadcast binary ops, the Euler step, gated
// residual. One thread per element in a grid-stride loop; memory-bound, so the only concern is
// coalescing (consecutive threads touch consecutive elements). f32 arithmetic throughout.
//
// Types: TX = `x`/`a`/output dtype; TW = the second operand's dtype (`b`, `z`, `up`);
// TB = the gate's dtype; cast writes TC.
#include "common.cuh"

extern "C" __global__ void cast(const TX* x, TC* y, u64 n) {
    FOR_EACH(i, n) st(y, i, ld(x, i));
}

// 0 = SiLU, 1 = GELU-tanh, 2 = GELU-erf.
extern "C" __global__ void activation(const TX* x, TX* y, u64 n, int act) {
    FOR_EACH(i, n) {
        float v = ld(x, i), r;
        if (act == 0) {
            r = v / (1.0f + expf(-v));
        } else if (act == 1) {
            const float k = 0.7978845608028654f;  // sqrt(2/pi)
            r = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        } else {
            r = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
        }
        st(y, i, r);
    }
}

extern "C" __global__ void swiglu(const TX* gate, const TW* up, TX* y, u64 n) {
    FOR_EACH(i, n) {
        float g = ld(gate, i);
        st(y, i, g / (1.0f + expf(-g)) * ld(up, i));
    }
}

// op: 0 = add, 1 = sub, 2 = mul. bcast: 0 = none (b[i]), 1 = row (b[i % inner]), 2 = col (b[i / inner]).
extern "C" __global__ void binary(const TX* a, const TW* b, TX* y, u64 n, int op, int bcast, u64 inner) {
    FOR_EACH(i, n) {
        u64 j = bcast == 0 ? i : (bcast == 1 ? i % inner : i / inner);
        float u = ld(a, i), v = ld(b, j);
        st(y, i, op == 0 ? u + v : (op == 1 ? u - v : u * v));
    }
}

extern "C" __global__ void scaled_add(const TX* x, const TW* z, TX* y, u64 n, float alpha) {
    FOR_EACH(i, n) st(y, i, ld(x, i) + alpha * ld(z, i));
}

// y[r, c] = x[r, c] + gate[c]·z[r, c].
extern "C" __global__ void gated_residual(const TX* x, const TW* z, const TB* gate, TX* y, u64 n, u64 cols) {
    FOR_EACH(i, n) st(y, i, ld(x, i) + ld(gate, i % cols) * ld(z, i));
}
