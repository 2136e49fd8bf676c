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
    __device__ __forceinline__ uint4 load8(int n, int k0) const {
        u32 w[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const long long o0 = offset(n, k0 + 2 * i), o1 = offset(n, k0 + 2 * i + 1);
            const u32 lo = o0 < 0 ? 0u : ((const u16*)x)[o0], hi = o1 < 0 ? 0u : ((const u16*)x)[o1];
            w[i] = lo | (hi << 16);
        }
        return make_uint4(w[0], w[1], w[2], w[3]);
    }
};

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    conv2d_simt(const TX* x, const TW* w, const TB* bias, TX* y, ConvArgs s) {
    const int K = s.channels * s.kernel_h * s.kernel_w, P = s.out_height * s.out_width;
    gemm_simt(RowMajor<TW>{w, s.out_channels, K, 0}, Im2col<TX>{x, s}, s.out_channels, P, K, y, bias, 1);
}

#if defined(MMA_OK)

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    conv2d_mma(const TX* x, const TW* w, const TB* bias, TX* y, ConvArgs s) {
    const int K = s.channels * s.kernel_h * s.kernel_w, P = s.out_height * s.out_width;
    gemm_mma(RowMajor<TW>{w, s.out_channels, K, s.vec}, Im2col<TX>{x, s}, s.out_channels, P, K, y, bias, 1);
}

#endif
