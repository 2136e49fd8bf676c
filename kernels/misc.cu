// Gather/scatter of rows, nearest upsampling and classifier-free guidance with norm rescale.
// All memory-bound, one thread per output element (or per position for cfg_renorm, looping over
// channel-first `[C, P]` data so that a warp reads consecutive positions). f32 arithmetic.
#include "common.cuh"

// y[n, c] = Σ_j weight[n·K + j] · table[index[n·K + j], c]; weight null = all ones.
extern "C" __global__ void gather_rows(const TX* table, const u32* index, const float* weight, TX* y, u64 rows,
                                       u64 cols, u64 taps) {
    FOR_EACH(i, rows * cols) {
        const u64 n = i / cols, c = i % cols;
        float acc = 0.0f;
        for (u64 j = 0; j < taps; ++j) {
            const float wt = weight ? weight[n * taps + j] : 1.0f;
            acc += wt * ld(table, (u64)index[n * taps + j] * cols + c);
        }
        st(y, i, acc);
    }
}

// y already holds a copy of dst; mode 0 = assign, 1 = add.
extern "C" __global__ void scatter_rows(const TX* dst, const u32* rows, const TW* src, TX* y, u64 src_rows, u64 cols,
                                        int add) {
    FOR_EACH(i, src_rows * cols) {
        const u64 n = i / cols, c = i % cols, o = (u64)rows[n] * cols + c;
        const float v = ld(src, i);
        st(y, o, add ? ld(dst, o) + v : v);
    }
}

// x [C, H, W] → [C, 2H, 2W].
extern "C" __global__ void upsample_nearest2x(const TX* x, TX* y, u64 channels, u64 height, u64 width) {
    const u64 ow = 2 * width, oh = 2 * height;
    FOR_EACH(i, channels * oh * ow) {
        const u64 c = i / (oh * ow), r = (i / ow) % oh, col = i % ow;
        y[i] = x[(c * height + r / 2) * width + col / 2];
    }
}

// g = u + s·(c − u); y[:, p] = g[:, p]·‖c[:, p]‖₂ / max(‖g[:, p]‖₂, 1e-6).
extern "C" __global__ void cfg_renorm(const TX* cond, const TW* uncond, TX* y, u64 channels, u64 positions,
                                      float guidance) {
    FOR_EACH(p, positions) {
        float cc = 0.0f, gg = 0.0f;
        for (u64 ch = 0; ch < channels; ++ch) {
            const float c = ld(cond, ch * positions + p), u = ld(uncond, ch * positions + p);
            const float g = u + guidance * (c - u);
            cc += c * c;
            gg += g * g;
        }
        const float k = sqrtf(cc) / fmaxf(sqrtf(gg), 1e-6f);
        for (u64 ch = 0; ch < channels; ++ch) {
            const float c = ld(cond, ch * positions + p), u = ld(uncond, ch * positions + p);
            st(y, ch * positions + p, (u + guidance * (c - u)) * k);
        }
    }
}
