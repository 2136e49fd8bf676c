//! `conv2d` (shaders/conv.wgsl): a direct convolution, one invocation per output element.

use crate::dispatch::Shader;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::Conv2dParams;
use joyrt_core::{Result, Tensor};

type T = Tensor<WgpuBackend>;

joyrt_core::kernel_params! {
    /// Parameters of conv.wgsl's `conv2d`.
    pub struct ConvArgs {
        /// Output elements.
        pub n: u32,
        pub channels: u32,
        pub height: u32,
        pub width: u32,
        pub kernel_h: u32,
        pub kernel_w: u32,
        pub stride: u32,
        pub pad_top: u32,
        pub pad_left: u32,
        pub out_height: u32,
        pub out_width: u32,
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
        channels: p.in_channels as u32,
        height: p.height as u32,
        width: p.width as u32,
        kernel_h: p.kernel_h as u32,
        kernel_w: p.kernel_w as u32,
        stride: p.stride as u32,
        pad_top: p.pad.0 as u32,
        pad_left: p.pad.2 as u32,
        out_height: p.out_height as u32,
        out_width: p.out_width as u32,
        has_bias: bias.is_some() as u32,
    };
    be.per_element(CONV.entry("conv2d"), &args, &inputs, n, x.dtype())
}
