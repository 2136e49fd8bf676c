//! Row norms (one rayon task per row), the Wan VAE's channel RMS norm and CFG's per-position norm
//! rescale (reductions over the channels of a channel-first `[C, P]` tensor).

use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::{CfgParams, ChannelParams, NormParams};
use joyrt_core::{Result, Tensor};
use rayon::prelude::*;

type T = Tensor<CpuBackend>;

pub fn layer_norm(be: &CpuBackend, x: &T, w: Option<&T>, b: Option<&T>, p: &NormParams) -> Result<CpuBuffer> {
    let (w, b) = (w.map(f32s), b.map(f32s));
    let out = rows(&f32s(x), p.cols, |row, out| {
        let (mean, rstd) = mean_rstd(row, p.eps);
        for (c, (o, &v)) in out.iter_mut().zip(row).enumerate() {
            let n = (v - mean) * rstd;
            *o = n * w.as_ref().map_or(1.0, |w| w[c]) + b.as_ref().map_or(0.0, |b| b[c]);
        }
    });
    Ok(be.store(out, x.dtype()))
}

pub fn layer_norm_modulate(
    be: &CpuBackend,
    x: &T,
    shift: &T,
    scale: &T,
    p: &NormParams,
) -> Result<CpuBuffer> {
    let (sh, sc) = (f32s(shift), f32s(scale));
    let out = rows(&f32s(x), p.cols, |row, out| {
        let (mean, rstd) = mean_rstd(row, p.eps);
        for (c, (o, &v)) in out.iter_mut().zip(row).enumerate() {
            *o = (v - mean) * rstd * (1.0 + sc[c]) + sh[c];
        }
    });
    Ok(be.store(out, x.dtype()))
}

pub fn rms_norm(be: &CpuBackend, x: &T, w: &T, p: &NormParams) -> Result<CpuBuffer> {
    let w = f32s(w);
    let out = rows(&f32s(x), p.cols, |row, out| {
        let r = rms_scale(row, p.eps);
        for (c, (o, &v)) in out.iter_mut().zip(row).enumerate() {
            *o = v * r * w[c];
        }
    });
    Ok(be.store(out, x.dtype()))
}

pub fn channel_rms_norm(be: &CpuBackend, x: &T, gamma: &T, p: &ChannelParams) -> Result<CpuBuffer> {
    let (xv, g) = (f32s(x), f32s(gamma));
    let (c, n) = (p.channels, p.positions);
    let mut inv = vec![0f32; n];
    for ch in 0..c {
        for (s, &v) in inv.iter_mut().zip(&xv[ch * n..(ch + 1) * n]) {
            *s += v * v;
        }
    }
    let root_c = (c as f32).sqrt();
    inv.iter_mut().for_each(|s| *s = root_c / s.sqrt().max(1e-12));
    let mut out = vec![0f32; c * n];
    out.par_chunks_mut(n).enumerate().for_each(|(ch, o)| {
        for ((o, &v), &s) in o.iter_mut().zip(&xv[ch * n..(ch + 1) * n]).zip(&inv) {
            *o = v * s * g[ch];
        }
    });
    Ok(be.store(out, x.dtype()))
}

pub fn cfg_renorm(be: &CpuBackend, cond: &T, uncond: &T, p: &CfgParams) -> Result<CpuBuffer> {
    let (c, u) = (f32s(cond), f32s(uncond));
    let (ch, n) = (p.channels, p.positions);
    let mut out = vec![0f32; ch * n];
    for pos in 0..n {
        let (mut nc, mut ng) = (0f32, 0f32);
        for k in 0..ch {
            let (cv, uv) = (c[k * n + pos], u[k * n + pos]);
            let g = uv + p.guidance * (cv - uv);
            out[k * n + pos] = g;
            nc += cv * cv;
            ng += g * g;
        }
        let s = nc.sqrt() / ng.sqrt().max(1e-6);
        for k in 0..ch {
            out[k * n + pos] *= s;
        }
    }
    Ok(be.store(out, cond.dtype()))
}

/// Applies `f(row, out_row)` to every row of length `cols`, in parallel.
fn rows(x: &[f32], cols: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    if cols > 0 {
        out.par_chunks_mut(cols).zip(x.par_chunks(cols)).for_each(|(o, r)| f(r, o));
    }
    out
}

/// Mean and `1/√(var + eps)` of a row (biased variance, two passes in f32).
fn mean_rstd(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// `1/√(mean(x²) + eps)`.
pub(super) fn rms_scale(row: &[f32], eps: f32) -> f32 {
    1.0 / (row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32 + eps).sqrt()
}
