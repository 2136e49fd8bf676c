//! `conv2d` (`kernels/conv.cu`) as an implicit GEMM on the block-tile GEMM of
//! `kernels/gemm.cuh` (tiling in `ops/gemm.rs`): output channels × positions, with the im2col
//! operand gathered from `x` tile by tile.

use super::dtype_or;
use super::gemm::{gemm_kernel, GEMM_DEFINES, MMA_TILE, SIMT_TILE};
use crate::kernel::{Family, Kernel, Spec};
use crate::launch::{addr, i32_of, opt_addr, Grid};
use crate::{CudaBackend, CudaBuffer};
use joyrt_core::backend::Conv2dParams;
use joyrt_core::{Result, Tensor};

type T = Tensor<CudaBackend>;

joyrt_core::kernel_params! {
    /// The scalars of the conv kernels: `x [channels, height, width]`, a kernel_h × kernel_w
    /// window at `stride` with top/left zero padding, `y [out_channels, out_height, out_width]`.
    pub struct ConvArgs {
        pub channels: i32,
        pub height: i32,
        pub width: i32,
        pub kernel_h: i32,
        pub kernel_w: i32,
        pub stride: i32,
        pub pad_top: i32,
        pub pad_left: i32,
        pub out_height: i32,
        pub out_width: i32,
        pub out_channels: i32,
        /// 1 where the GEMM's K (channels · kernel_h · kernel_w) % 8 == 0: aligned 16-byte weight loads.
        pub vec: i32,
    }
}

const CONV2D_SIMT: Kernel<ConvArgs> = Kernel::new(gemm_kernel("conv2d_simt", Family::Conv));
const CONV2D_MMA: Kernel<ConvArgs> = Kernel::new(gemm_kernel("conv2d_mma", Family::Conv).mma());

family! {
    "conv", ConvArgs,
    defines: GEMM_DEFINES,
    kernels: [CONV2D_SIMT, CONV2D_MMA],
}

pub fn conv2d(be: &CudaBackend, x: &T, w: &T, bias: Option<&T>, p: &Conv2dParams) -> Result<CudaBuffer> {
    let spec = Spec { x: x.dtype(), w: w.dtype(), b: dtype_or(bias, x.dtype()), c: x.dtype() };
    let positions = p.out_height * p.out_width;
    i32_of("output positions", positions)?;
    let args = ConvArgs {
        channels: i32_of("in_channels", p.in_channels)?,
        height: i32_of("height", p.height)?,
        width: i32_of("width", p.width)?,
        kernel_h: p.kernel_h as i32,
        kernel_w: p.kernel_w as i32,
        stride: p.stride as i32,
        pad_top: p.pad.0 as i32,
        pad_left: p.pad.2 as i32,
        out_height: p.out_height as i32,
        out_width: p.out_width as i32,
        out_channels: i32_of("out_channels", p.out_channels)?,
        vec: (p.in_channels * p.kernel_h * p.kernel_w).is_multiple_of(8) as i32,
    };
    let (kernel, tile) =
        if be.tensor_cores(&spec) { (&CONV2D_MMA, MMA_TILE) } else { (&CONV2D_SIMT, SIMT_TILE) };
    let grid = Grid::Blocks(positions.div_ceil(tile), p.out_channels.div_ceil(tile));
    let output = (x.dtype(), p.out_channels * positions);
    be.launch_output(kernel, spec, grid, &[addr(x), addr(w), opt_addr(bias)], output, &args)
}
