// conv2d as an implicit GEMM on the block-tile GEMM of gemm.cuh: A = W [O, C·KH·KW], B =
// im2col(x) [P, C·KH·KW], output [O, P] (channel-first, as joyrt's VAE stores images), bias per
// row. The im2col matrix is never stored: its tiles are gathered from `x` as they are loaded into
// shared memory. Scalars: ConvArgs (ops/conv.rs).
#include "gemm.cuh"

// Row n = output position (oy, ox), column k = (c, ky, kx) of the im2col matrix of x [C, H, W].
template <typename T> struct Im2col {
    const T* x;
    ConvArgs s;
    __device__ __forceinline__ long long offset(int n, int kk) const {
        const int taps = s.kernel_h * s.kernel_w, positions = s.out_height * s.out_width;
        if (n >= positions || kk >= s.channels * taps) return -1;
        const int c = kk / taps, t = kk % taps, ky = t / s.kernel_w, kx = t % s.kernel_w;
        const int oy = n / s.out_width, ox = n % s.out_width;
        const int iy = oy * s.stride + ky - s.pad_top, ix = ox * s.stride + kx - s.pad_left;
        if (iy < 0 || iy >= s.height || ix < 0 || ix >= s.width) return -1;
        return ((long long)c * s.height + iy) * s.width + ix;
    }
    __device__ __forceinline__ float at(int n, int kk) const {
        const long long o = offset(n, kk);
        return o < 0 ? 0.0f : ld(x, (u64)o);
    }
    // Columns k0..k0+7 of row n. The tensor-core GEMM's inner loop: the divisions that split n
    // into (oy, ox) and k0 into (c, ky, kx) are made once per 8 elements, which then step
    // through the taps by increments (offset() would divide six times per element).
    __device__ __forceinline__ uint4 load8(int n, int k0) const {
        u32 w[4] = {0u, 0u, 0u, 0u};
        if (n >= s.out_height * s.out_width) return make_uint4(0u, 0u, 0u, 0u);
        const int taps = s.kernel_h * s.kernel_w, oy = n / s.out_width, ox = n - oy * s.out_width;
        const int iy0 = oy * s.stride - s.pad_top, ix0 = ox * s.stride - s.pad_left;
        int c = k0 / taps, t = k0 - c * taps, ky = t / s.kernel_w, kx = t - ky * s.kernel_w;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int iy = iy0 + ky, ix = ix0 + kx;
            if (c < s.channels && iy >= 0 && iy < s.height && ix >= 0 && ix < s.width)
                w[i / 2] |= (u32)((const u16*)x)[((long long)c * s.height + iy) * s.width + ix] << (16 * (i % 2));
            if (++kx == s.kernel_w) {
                kx = 0;
                if (++ky == s.kernel_h) {
                    ky = 0;
                    ++c;
                }
            }
        }
        return make_uint4(w[0], w[1], w[2], w[3]);
    }
};

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    conv2d_simt(const TX* x, const TW* w, const TB* bias, TX* y, ConvArgs s) {
    const int K = s.channels * s.kernel_h * s.kernel_w, P = s.out_height * s.out_width;
    gemm_simt(RowMajor<TW>{w, s.out_channels, K, 0}, Im2col<TX>{x, s}, s.out_channels, P, K,
              gemm_out(y, bias, 1, s.out_channels, P));
}

#if defined(MMA_OK)

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    conv2d_mma(const TX* x, const TW* w, const TB* bias, TX* y, ConvArgs s) {
    const int K = s.channels * s.kernel_h * s.kernel_w, P = s.out_height * s.out_width;
    gemm_mma(RowMajor<TW>{w, s.out_channels, K, s.vec}, Im2col<TX>{x, s}, s.out_channels, P, K,
             gemm_out(y, bias, 1, s.out_channels, P));
}

#endif
