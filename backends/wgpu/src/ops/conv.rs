//! `conv2d` (shaders/conv.wgsl): a direct convolution, one invocation per output element; past the
//! binding limit, split by output rows and summed over input channel ranges.

use crate::buffer::Span;
use crate::dispatch::{element_groups, u32s, Shader};
use crate::split::Split;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::Conv2dParams;
use joyrt_core::{Result, Tensor};

type T = Tensor<WgpuBackend>;

joyrt_core::kernel_params! {
    /// Parameters of conv.wgsl's `conv2d`.
    pub struct ConvArgs {
        /// Output elements of this dispatch, and the index of the first in the whole output.
        pub n: u32, pub out_start: u32,
        /// The input's `[C, H, W]`, the kernel's `[KH, KW]`, the stride, the zero padding
        /// `[top, left]` and the output's `[H, W]`.
        pub input: [u32; 3], pub kernel: [u32; 2], pub stride: u32, pub pad: [u32; 2], pub output: [u32; 2],
        pub has_bias: u32,
        /// The input channels `[c_lo, c_hi)` of this dispatch (bound from `c_lo` on), and whether
        /// it adds to the partial sums in OUT.
        pub c_lo: u32, pub c_hi: u32, pub resume: u32,
    }
}

static CONV: Shader<ConvArgs> = Shader::new("conv", include_str!("../../../../shaders/conv.wgsl"));

pub fn conv2d(be: &WgpuBackend, x: &T, w: &T, bias: Option<&T>, p: &Conv2dParams) -> Result<WgpuBuffer> {
    let op = "conv2d";
    let (plane_out, plane_in) = (p.out_height * p.out_width, p.height * p.width);
    let n = p.out_channels * plane_out;
    let out = be.f32_buf(n)?;
    let bi = bias.map(|b| be.inp(b, "conv2d bias")).transpose()?.unwrap_or(be.dummy());
    let wi = be.inp(w, "conv2d weight")?;
    // The output by its rows (an output channel's row at a time), the input by channels: every
    // output element reads every input channel, so each row piece runs over each channel piece.
    let rows = Split::new(op, p.out_channels * p.out_height).out(Span::f32(&out, n), p.out_width);
    let channels = Split::new(op, p.in_channels).split("x", be.span(x, op)?, plane_in).whole(wi).whole(bi);
    let channel_pieces = channels.pieces(be)?;
    for piece in rows.pieces(be)? {
        let (start, len) = (piece.units.start * p.out_width, piece.len() * p.out_width);
        for c in &channel_pieces {
            let args = ConvArgs {
                n: len as u32,
                out_start: start as u32,
                input: u32s([p.in_channels, p.height, p.width]),
                kernel: u32s([p.kernel_h, p.kernel_w]),
                stride: p.stride as u32,
                pad: u32s([p.pad.0, p.pad.2]),
                output: u32s([p.out_height, p.out_width]),
                has_bias: bias.is_some() as u32,
                c_lo: c.units.start as u32,
                c_hi: c.units.end as u32,
                resume: (c.units.start > 0) as u32,
            };
            be.run(CONV.entry(op), &args, &c.inputs, piece.out, element_groups(len))?;
        }
    }
    be.finish(out, n, x.dtype())
}
