// Layout copies: permute (rank ≤ 6), slice and the column copies behind concat, nearest ×2
// upsampling. Pure data movement; each thread writes one output element (writes coalesced, reads
// strided for permute), except copy_cols, which moves 16-byte runs where its extents allow; index
// splits use 32-bit division where the values fit (div_mod). TX is the element type; no
// conversion happens here. Scalars: LayoutArgs (ops/layout.rs).
#include "vec.cuh"

extern "C" __global__ void permute(const TX* x, TX* y, LayoutArgs p) {
    FOR_EACH(i, p.n) {
        u64 r = i, off = 0;
        for (int a = (int)p.rank - 1; a >= 0; --a) {
            u64 q, c;
            div_mod(r, p.out_dims[a], &q, &c);
            off += c * p.in_strides[a];
            r = q;
        }
        y[i] = x[off];
    }
}

// Copies `x [n / len, x_inner]` columns [x_start, x_start + len) into `y [n / len, y_inner]`
// columns [y_start, y_start + len): slice is (x_start = start, y_start = 0), concat one call per
// input.
// The DiT's slices and concatenations (Q/K/V out of the fused projection, the joint sequence)
// have extents in multiples of 16 bytes: 16-byte runs, one index computation per run.
extern "C" __global__ void copy_cols(const TX* x, TX* y, LayoutArgs p) {
    const u64 run = 16 / sizeof(TX);
    if ((p.len | p.x_inner | p.x_start | p.y_inner | p.y_start) % run == 0) {
        FOR_EACH(r, p.n / run) {
            u64 o, j;
            div_mod(r * run, p.len, &o, &j);
            store_bits<16>(y + o * p.y_inner + p.y_start + j, load_bits<16>(x + o * p.x_inner + p.x_start + j));
        }
        return;
    }
    FOR_EACH(i, p.n) {
        u64 o, j;
        div_mod(i, p.len, &o, &j);
        y[o * p.y_inner + p.y_start + j] = x[o * p.x_inner + p.x_start + j];
    }
}

// x [C, H, W] → [C, 2H, 2W] (n = C·2H·2W).
extern "C" __global__ void upsample_nearest2x(const TX* x, TX* y, LayoutArgs p) {
    const u64 ow = 2 * p.width, oh = 2 * p.height;
    FOR_EACH(i, p.n) {
        u64 row, col, c, r;
        div_mod(i, ow, &row, &col);
        div_mod(row, oh, &c, &r);
        y[i] = x[(c * p.height + r / 2) * p.width + col / 2];
    }
}
