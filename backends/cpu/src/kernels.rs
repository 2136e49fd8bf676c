//! The f32 compute routines behind the CPU backend's trait methods.

use joyrt_core::backend::{AttentionParams, Conv2dParams, RopePairing};
use rayon::prelude::*;

/// `out[m, n] = Σ_k x[m, k]·w[n, k] + b[n]`.
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    const MB: usize = 8;
    let mut out = vec![0f32; m * n];
    out.par_chunks_mut(MB * n.max(1)).enumerate().for_each(|(blk, o)| {
        let rows = o.len() / n.max(1);
        let xb = &x[blk * MB * k..(blk * MB + rows) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let bias = b.map_or(0.0, |b| b[j]);
            for r in 0..rows {
                o[r * n + j] = dot(&xb[r * k..(r + 1) * k], wr) + bias;
            }
        }
    });
    out
}

/// Dot product with 8 independent partial sums (vectorisable, and a fixed summation order).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Applies `f(row, out_row)` to every row of length `cols`, in parallel.
pub fn rows(x: &[f32], cols: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    if cols > 0 {
        out.par_chunks_mut(cols).zip(x.par_chunks(cols)).for_each(|(o, r)| f(r, o));
    }
    out
}

/// Mean and `1/√(var + eps)` of a row (biased variance, two passes in f32).
pub fn mean_rstd(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// `1/√(mean(x²) + eps)`.
pub fn rms_scale(row: &[f32], eps: f32) -> f32 {
    1.0 / (row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32 + eps).sqrt()
}

/// Rotates one head vector in place by angles with the given cos/sin (`D/2` each).
pub fn rotate(head: &mut [f32], cos: &[f32], sin: &[f32], pairing: RopePairing) {
    let half = head.len() / 2;
    for m in 0..half {
        let (i, j) = match pairing {
            RopePairing::Interleaved => (2 * m, 2 * m + 1),
            RopePairing::HalfSplit => (m, m + half),
        };
        let (x1, x2) = (head[i], head[j]);
        head[i] = x1 * cos[m] - x2 * sin[m];
        head[j] = x2 * cos[m] + x1 * sin[m];
    }
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

pub fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // √(2/π)
    0.5 * x * (1.0 + (K * (x + 0.044715 * x * x * x)).tanh())
}

pub fn gelu_erf(x: f32) -> f32 {
    (0.5 * x as f64 * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2))) as f32
}

/// erf with relative error below 1.2e-7 everywhere (Chebyshev fit of erfc, Numerical Recipes'
/// `erfcc`), evaluated in f64.
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * (-z * z + poly).exp();
    if x >= 0.0 {
        1.0 - erfc
    } else {
        erfc - 1.0
    }
}

/// General permutation of a rank ≤ 6 tensor: output axis `a` is input axis `perm[a]`.
pub fn permute(x: &[f32], dims: &[usize], perm: &[usize]) -> Vec<f32> {
    let rank = dims.len();
    let mut in_strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * dims[i + 1];
    }
    let out_dims: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
    let strides: Vec<usize> = perm.iter().map(|&a| in_strides[a]).collect();
    let last = out_dims.last().copied().unwrap_or(1);
    let mut out = vec![0f32; x.len()];
    if last == 0 {
        return out;
    }
    out.par_chunks_mut(last).enumerate().for_each(|(row, o)| {
        // Offset of the row's first element from the row index's mixed-radix digits.
        let (mut r, mut off) = (row, 0usize);
        for a in (0..rank.saturating_sub(1)).rev() {
            off += (r % out_dims[a]) * strides[a];
            r /= out_dims[a];
        }
        let s = strides.last().copied().unwrap_or(1);
        for (i, v) in o.iter_mut().enumerate() {
            *v = x[off + i * s];
        }
    });
    out
}

/// Attention for `q [Lq, Hq, D]`, `k, v [Lk, Hkv, D]`.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], p: &AttentionParams) -> Vec<f32> {
    const QB: usize = 16;
    let (lq, lk, hq, hkv, d) = (p.q_len, p.kv_len, p.q_heads, p.kv_heads, p.head_dim);
    let group = hq / hkv;
    let blocks = lq.div_ceil(QB);
    // One task per (head, query block); results are scattered into [Lq, Hq, D] afterwards.
    let parts: Vec<(usize, usize, Vec<f32>)> = (0..hq * blocks)
        .into_par_iter()
        .map(|task| {
            let (h, blk) = (task / blocks, task % blocks);
            let kh = h / group;
            let (i0, i1) = (blk * QB, ((blk + 1) * QB).min(lq));
            let mut out = vec![0f32; (i1 - i0) * d];
            let mut scores = vec![0f32; lk];
            for i in i0..i1 {
                let qi = &q[(i * hq + h) * d..(i * hq + h + 1) * d];
                let visible = if p.causal { (i + lk - lq + 1).min(lk) } else { lk };
                let mut max = f32::NEG_INFINITY;
                for (j, s) in scores[..visible].iter_mut().enumerate() {
                    *s = p.scale * dot(qi, &k[(j * hkv + kh) * d..(j * hkv + kh + 1) * d]);
                    max = max.max(*s);
                }
                let mut sum = 0f32;
                for s in &mut scores[..visible] {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let o = &mut out[(i - i0) * d..(i - i0 + 1) * d];
                for (j, &s) in scores[..visible].iter().enumerate() {
                    let vj = &v[(j * hkv + kh) * d..(j * hkv + kh + 1) * d];
                    for (o, &vv) in o.iter_mut().zip(vj) {
                        *o += s * vv;
                    }
                }
                o.iter_mut().for_each(|x| *x /= sum);
            }
            (h, i0, out)
        })
        .collect();
    let mut y = vec![0f32; lq * hq * d];
    for (h, i0, part) in parts {
        for (r, row) in part.chunks(d).enumerate() {
            let i = i0 + r;
            y[(i * hq + h) * d..(i * hq + h + 1) * d].copy_from_slice(row);
        }
    }
    y
}

/// Direct 2-D convolution, one parallel task per output channel.
pub fn conv2d(x: &[f32], w: &[f32], b: Option<&[f32]>, p: &Conv2dParams) -> Vec<f32> {
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
