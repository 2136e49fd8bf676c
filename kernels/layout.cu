// Layout copies: permute (rank ≤ 6), slice and the column copies behind concat. Pure data
// movement; each thread writes one output element (writes coalesced, reads strided for permute).
// TX is the element type; no conversion happens here.
#include "common.cuh"

struct PermuteDims {
    u64 out_dims[6];
    u64 in_strides[6];  // input stride of each OUTPUT axis
    int rank;
};

extern "C" __global__ void permute(const TX* x, TX* y, u64 n, PermuteDims p) {
    FOR_EACH(i, n) {
        u64 r = i, off = 0;
        for (int a = p.rank - 1; a >= 0; --a) {
            off += (r % p.out_dims[a]) * p.in_strides[a];
            r /= p.out_dims[a];
        }
        y[i] = x[off];
    }
}

// Copies `x [outer, x_inner]` columns [x_start, x_start + len) into `y [outer, y_inner]` columns
// [y_start, y_start + len): slice is (x_start = start, y_start = 0), concat one call per input.
extern "C" __global__ void copy_cols(const TX* x, TX* y, u64 outer, u64 len, u64 x_inner, u64 x_start,
                                     u64 y_inner, u64 y_start) {
    FOR_EACH(i, outer * len) {
        u64 o = i / len, j = i % len;
        y[o * y_inner + y_start + j] = x[o * x_inner + x_start + j];
    }
}
