//! `conv2d` (shaders/conv.wgsl): a direct convolution, one invocation per output element.

use crate::dispatch::{u32s, Shader};
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::Conv2dParams;
use joyrt_core::{Result, Tensor};

type T = Tensor<WgpuBackend>;

joyrt_core::kernel_params! {
    /// Parameters of conv.wgsl's `conv2d`.
    pub struct ConvArgs {
        /// Output elements.
        pub n: u32,
        /// The input's `[C, H, W]`, the kernel's `[KH, KW]`, the stride, the zero padding
        /// `[top, left]` and the output's `[H, W]`.
        pub input: [u32; 3], pub kernel: [u32; 2], pub stride: u32, pub pad: [u32; 2], pub output: [u32; 2],
        pub has_bias: u32,
    }
}

static CONV: Shader<ConvArgs> = Shader::new("conv", include_str!("../../../../shaders/conv.wgsl"));

pub fn conv2d(be: &WgpuBackend, x: &T, w: &T, bias: Option<&T>, p: &Conv2dParams) -> Result<WgpuBuffer> {
    let op = "conv2d";
    let n = p.out_channels * p.out_height * p.out_width;
    let bi = bias.map(|b| be.inp(b, op)).transpose()?.unwrap_or(be.dummy());
    let inputs = [be.inp(x, op)?, be.inp(w, op)?, bi];
    let args = ConvArgs {
        n: n as u32,
        input: u32s([p.in_channels, p.height, p.width]),
        kernel: u32s([p.kernel_h, p.kernel_w]),
        stride: p.stride as u32,
        pad: u32s([p.pad.0, p.pad.2]),
        output: u32s([p.out_height, p.out_width]),
        has_bias: bias.is_some() as u32,
    };
    be.per_element(CONV.entry("conv2d"), &args, &inputs, n, x.dtype())
}
