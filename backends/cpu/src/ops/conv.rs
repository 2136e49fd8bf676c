//! `conv2d`: a direct loop, one rayon task per output channel, the output row innermost.

use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::Conv2dParams;
use joyrt_core::{Result, Tensor};
use rayon::prelude::*;

pub fn conv2d(
    be: &CpuBackend,
    x: &Tensor<CpuBackend>,
    w: &Tensor<CpuBackend>,
    bias: Option<&Tensor<CpuBackend>>,
    p: &Conv2dParams,
) -> Result<CpuBuffer> {
    let b = bias.map(f32s);
    Ok(be.store(conv2d_f32(&f32s(x), &f32s(w), b.as_deref(), p), x.dtype()))
}

fn conv2d_f32(x: &[f32], w: &[f32], b: Option<&[f32]>, p: &Conv2dParams) -> Vec<f32> {
    let (c, h, wd) = (p.in_channels, p.height, p.width);
    let (kh, kw, s) = (p.kernel_h, p.kernel_w, p.stride);
    let (ho, wo) = (p.out_height, p.out_width);
    let (top, left) = (p.pad.0 as isize, p.pad.2 as isize);
    let mut out = vec![0f32; p.out_channels * ho * wo];
    out.par_chunks_mut((ho * wo).max(1)).enumerate().for_each(|(o, plane)| {
        plane.fill(b.map_or(0.0, |b| b[o]));
        for ci in 0..c {
            let xc = &x[ci * h * wd..(ci + 1) * h * wd];
            for ky in 0..kh {
                for kx in 0..kw {
                    let wv = w[((o * c + ci) * kh + ky) * kw + kx];
                    for oy in 0..ho {
                        let iy = (oy * s + ky) as isize - top;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let xrow = &xc[iy as usize * wd..(iy as usize + 1) * wd];
                        let orow = &mut plane[oy * wo..(oy + 1) * wo];
                        for (ox, ov) in orow.iter_mut().enumerate() {
                            let ix = (ox * s + kx) as isize - left;
                            if ix >= 0 && ix < wd as isize {
                                *ov += wv * xrow[ix as usize];
                            }
                        }
                    }
                }
            }
        }
    });
    out
}
