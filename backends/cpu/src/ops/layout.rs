//! Layout copies: permute, slice, concat and nearest ×2 upsampling. Values pass through f32
//! unchanged, so every copy is exact in every dtype.

use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::{ConcatParams, ImageParams, PermuteParams, SliceParams};
use joyrt_core::{Error, Result, Tensor};
use rayon::prelude::*;
use std::borrow::Cow;

type T = Tensor<CpuBackend>;

pub fn permute(be: &CpuBackend, x: &T, p: &PermuteParams) -> Result<CpuBuffer> {
    Ok(be.store(permute_f32(&f32s(x), &p.dims, &p.perm), x.dtype()))
}

pub fn slice(be: &CpuBackend, x: &T, p: &SliceParams) -> Result<CpuBuffer> {
    let xv = f32s(x);
    let mut out = Vec::with_capacity(p.outer * p.len);
    for o in 0..p.outer {
        let row = o * p.x_inner + p.start;
        out.extend_from_slice(&xv[row..row + p.len]);
    }
    Ok(be.store(out, x.dtype()))
}

pub fn concat(be: &CpuBackend, xs: &[&T], p: &ConcatParams) -> Result<CpuBuffer> {
    let dtype = xs[0].dtype();
    if let Some(bad) = xs.iter().find(|t| t.dtype() != dtype) {
        return Err(Error::DType { op: "concat", dtype: bad.dtype() });
    }
    let vs: Vec<Cow<[f32]>> = xs.iter().map(|t| f32s(t)).collect();
    let mut out = Vec::with_capacity(p.outer * p.inners.iter().sum::<usize>());
    for o in 0..p.outer {
        for (v, &inner) in vs.iter().zip(&p.inners) {
            out.extend_from_slice(&v[o * inner..(o + 1) * inner]);
        }
    }
    Ok(be.store(out, dtype))
}

pub fn upsample_nearest2x(be: &CpuBackend, x: &T, p: &ImageParams) -> Result<CpuBuffer> {
    let xv = f32s(x);
    let (h, w) = (p.height, p.width);
    let mut out = vec![0f32; p.channels * 4 * h * w];
    out.par_chunks_mut(2 * w).enumerate().for_each(|(row, o)| {
        let (c, y) = (row / (2 * h), (row % (2 * h)) / 2);
        for (xo, v) in o.iter_mut().enumerate() {
            *v = xv[(c * h + y) * w + xo / 2];
        }
    });
    Ok(be.store(out, x.dtype()))
}

/// General permutation of a rank ≤ 6 tensor: output axis `a` is input axis `perm[a]`.
fn permute_f32(x: &[f32], dims: &[usize], perm: &[usize]) -> Vec<f32> {
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
