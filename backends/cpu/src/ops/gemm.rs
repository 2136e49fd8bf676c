//! `linear`: one rayon task per block of 8 rows of `x`; inside a block each weight row is read
//! once for the 8 dot products.

use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::LinearParams;
use joyrt_core::{Result, Tensor};
use rayon::prelude::*;

pub fn linear(
    be: &CpuBackend,
    x: &Tensor<CpuBackend>,
    w: &Tensor<CpuBackend>,
    bias: Option<&Tensor<CpuBackend>>,
    p: &LinearParams,
) -> Result<CpuBuffer> {
    let b = bias.map(f32s);
    Ok(be.store(linear_f32(&f32s(x), &f32s(w), b.as_deref(), p.m, p.k, p.n), x.dtype()))
}

/// `out[m, n] = Σ_k x[m, k]·w[n, k] + b[n]`.
pub fn linear_f32(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
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
