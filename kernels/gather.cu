// Row gather (embedding lookups, weighted taps) and row scatter. Memory-bound, one thread per
// output element, f32 arithmetic. Indices and weights are host uploads (u32, f32). Scalars:
// GatherArgs (ops/gather.rs).
#include "common.cuh"

// y[n, c] = Σ_j weight[n·K + j] · table[index[n·K + j], c]; weight null = all ones.
extern "C" __global__ void gather_rows(const TX* table, const u32* index, const float* weight, TX* y, GatherArgs p) {
    const u64 cols = p.cols, taps = p.taps;
    FOR_EACH(i, p.rows * cols) {
        const u64 n = i / cols, c = i % cols;
        float acc = 0.0f;
        for (u64 j = 0; j < taps; ++j) {
            const float wt = weight ? weight[n * taps + j] : 1.0f;
            acc += wt * ld(table, (u64)index[n * taps + j] * cols + c);
        }
        st(y, i, acc);
    }
}

// y already holds a copy of dst; `rows` src rows go to y's rows `index[n]`.
extern "C" __global__ void scatter_rows(const TX* dst, const u32* index, const TW* src, TX* y, GatherArgs p) {
    const u64 cols = p.cols;
    FOR_EACH(i, p.rows * cols) {
        const u64 n = i / cols, c = i % cols, o = (u64)index[n] * cols + c;
        const float v = ld(src, i);
        st(y, o, p.mode == SCATTER_ADD ? ld(dst, o) + v : v);
    }
}
