//! `conv2d`: a direct loop. One rayon task per block of `OUT_BLOCK` output channels; inside it the
//! output is walked in tiles of `TILE_ROWS` rows, each summed over every input channel and tap
//! while it stays in cache, the output row innermost (a contiguous, vectorisable run per tap).
//! Every output element still receives its bias, then its terms in (channel, ky, kx) order: the
//! tiling changes where the sums happen, not their order, so results do not depend on it.

use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::Conv2dParams;
use joyrt_core::{Result, Tensor};
use rayon::prelude::*;

/// Output channels per task: they share each input row read.
const OUT_BLOCK: usize = 4;
/// Output rows per tile: 4 × OUT_BLOCK rows of a 1024-wide image is 64 KB of f32, within L2.
const TILE_ROWS: usize = 4;

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
    let (kh, kw) = (p.kernel_h, p.kernel_w);
    let (ho, wo) = (p.out_height, p.out_width);
    let plane = ho * wo;
    let mut out = vec![0f32; p.out_channels * plane];
    if plane == 0 {
        return out;
    }
    // For each kx, the output columns whose input column lies inside the image: [lo, hi).
    let cols: Vec<(usize, usize)> = (0..kw).map(|kx| valid_range(wo, p.stride, kx, p.pad.2, wd)).collect();
    out.par_chunks_mut(OUT_BLOCK * plane).enumerate().for_each(|(blk, planes)| {
        let o0 = blk * OUT_BLOCK;
        let outs = planes.len() / plane;
        for y0 in (0..ho).step_by(TILE_ROWS) {
            let y1 = (y0 + TILE_ROWS).min(ho);
            for (j, pl) in planes.chunks_mut(plane).enumerate() {
                pl[y0 * wo..y1 * wo].fill(b.map_or(0.0, |b| b[o0 + j]));
            }
            for ci in 0..c {
                let xc = &x[ci * h * wd..(ci + 1) * h * wd];
                for ky in 0..kh {
                    for (kx, &(lo, hi)) in cols.iter().enumerate() {
                        for oy in y0..y1 {
                            let iy = (oy * p.stride + ky) as isize - p.pad.0 as isize;
                            if iy < 0 || iy >= h as isize || lo >= hi {
                                continue;
                            }
                            let xrow = &xc[iy as usize * wd..(iy as usize + 1) * wd];
                            // Input column of output column ox: ox·stride + kx − left (≥ 0 from lo).
                            let ix0 = lo * p.stride + kx - p.pad.2;
                            for j in 0..outs {
                                let wv = w[(((o0 + j) * c + ci) * kh + ky) * kw + kx];
                                let orow = &mut planes[j * plane + oy * wo + lo..j * plane + oy * wo + hi];
                                if p.stride == 1 {
                                    for (ov, xv) in orow.iter_mut().zip(&xrow[ix0..ix0 + (hi - lo)]) {
                                        *ov += wv * xv;
                                    }
                                } else {
                                    for (ov, xv) in orow.iter_mut().zip(xrow[ix0..].iter().step_by(p.stride))
                                    {
                                        *ov += wv * xv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    out
}

/// The output columns `ox < wo` whose input column `ox·stride + kx − left` lies in `[0, width)`.
fn valid_range(wo: usize, stride: usize, kx: usize, left: usize, width: usize) -> (usize, usize) {
    // ox·s + kx ≥ left  ⇔  ox ≥ ⌈(left − kx) / s⌉;   ox·s + kx − left < width  ⇔  ox·s < width + left − kx.
    let lo = left.saturating_sub(kx).div_ceil(stride);
    let limit = (width + left).saturating_sub(kx); // ox·s < limit
    let hi = limit.div_ceil(stride).min(wo);
    (lo.min(hi), hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, element by element, in the same (bias, channel, ky, kx) order.
    fn reference(x: &[f32], w: &[f32], b: Option<&[f32]>, p: &Conv2dParams) -> Vec<f32> {
        let mut out = vec![0f32; p.out_channels * p.out_height * p.out_width];
        for o in 0..p.out_channels {
            for oy in 0..p.out_height {
                for ox in 0..p.out_width {
                    let mut s = b.map_or(0.0, |b| b[o]);
                    for ci in 0..p.in_channels {
                        for ky in 0..p.kernel_h {
                            for kx in 0..p.kernel_w {
                                let iy = (oy * p.stride + ky) as isize - p.pad.0 as isize;
                                let ix = (ox * p.stride + kx) as isize - p.pad.2 as isize;
                                if iy < 0 || ix < 0 || iy >= p.height as isize || ix >= p.width as isize {
                                    continue;
                                }
                                let xv = x[(ci * p.height + iy as usize) * p.width + ix as usize];
                                s += w[((o * p.in_channels + ci) * p.kernel_h + ky) * p.kernel_w + kx] * xv;
                            }
                        }
                    }
                    out[(o * p.out_height + oy) * p.out_width + ox] = s;
                }
            }
        }
        out
    }

    #[test]
    fn tiled_loops_are_bit_identical_to_the_definition() {
        let mut rng = joyrt_core::Rng::new(5);
        // (c, o, h, w, k, stride, pad): odd sizes, padding wider than the kernel reach, stride 2
        // with asymmetric padding (the VAE's downsampler), 1×1, more output channels than a block.
        let cases = [
            (3, 9, 7, 11, 3, 1, (1, 1, 1, 1)),
            (2, 5, 9, 8, 3, 2, (0, 1, 0, 1)),
            (4, 3, 6, 5, 1, 1, (0, 0, 0, 0)),
            (1, 6, 5, 4, 3, 1, (3, 2, 4, 3)),
            (2, 2, 3, 3, 3, 2, (2, 2, 2, 2)),
        ];
        for (c, o, h, wd, k, s, pad) in cases {
            let out_h = (h + pad.0 + pad.1 - k) / s + 1;
            let out_w = (wd + pad.2 + pad.3 - k) / s + 1;
            let p = Conv2dParams {
                in_channels: c,
                out_channels: o,
                height: h,
                width: wd,
                kernel_h: k,
                kernel_w: k,
                stride: s,
                pad,
                out_height: out_h,
                out_width: out_w,
            };
            let x = rng.normal_vec(c * h * wd, 1.0);
            let w = rng.normal_vec(o * c * k * k, 1.0);
            let b = rng.normal_vec(o, 1.0);
            for bias in [None, Some(&b[..])] {
                let (got, want) = (conv2d_f32(&x, &w, bias, &p), reference(&x, &w, bias, &p));
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{p:?}");
            }
        }
    }
}
