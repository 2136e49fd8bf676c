//! Elementwise ops: casts, activations, SwiGLU, binary ops with broadcasting, the Euler step and
//! the gated residual, in parallel chunks of at least 4096 elements.

use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::{Activation, BinaryOp, BinaryParams, Broadcast, RowsParams};
use joyrt_core::{DType, Result, Tensor};
use rayon::prelude::*;

type T = Tensor<CpuBackend>;

/// The smallest piece of an elementwise op given to one rayon task.
const MIN_TASK: usize = 4096;

pub fn cast(be: &CpuBackend, x: &T, to: DType) -> Result<CpuBuffer> {
    Ok(be.store(f32s(x).into_owned(), to))
}

pub fn activation(be: &CpuBackend, x: &T, act: Activation) -> Result<CpuBuffer> {
    let f = match act {
        Activation::Silu => silu,
        Activation::GeluTanh => gelu_tanh,
        Activation::GeluErf => gelu_erf,
    };
    let out = f32s(x).par_iter().with_min_len(MIN_TASK).map(|&v| f(v)).collect();
    Ok(be.store(out, x.dtype()))
}

pub fn swiglu(be: &CpuBackend, gate: &T, up: &T) -> Result<CpuBuffer> {
    zip_map(be, gate, up, |g, u| silu(g) * u)
}

pub fn scaled_add(be: &CpuBackend, x: &T, z: &T, alpha: f32) -> Result<CpuBuffer> {
    zip_map(be, x, z, |x, z| x + alpha * z)
}

pub fn binary(be: &CpuBackend, a: &T, b: &T, p: &BinaryParams) -> Result<CpuBuffer> {
    let (av, bv) = (f32s(a), f32s(b));
    let op = |x: f32, y: f32| match p.op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
    };
    let out = (0..p.len)
        .into_par_iter()
        .with_min_len(MIN_TASK)
        .map(|i| {
            let j = match p.broadcast {
                Broadcast::None => i,
                Broadcast::Row { inner } => i % inner,
                Broadcast::Col { inner } => i / inner,
            };
            op(av[i], bv[j])
        })
        .collect();
    Ok(be.store(out, a.dtype()))
}

pub fn gated_residual(be: &CpuBackend, x: &T, z: &T, gate: &T, p: &RowsParams) -> Result<CpuBuffer> {
    let (xv, zv, g) = (f32s(x), f32s(z), f32s(gate));
    let out = (0..p.rows * p.cols)
        .into_par_iter()
        .with_min_len(MIN_TASK)
        .map(|i| xv[i] + g[i % p.cols] * zv[i])
        .collect();
    Ok(be.store(out, x.dtype()))
}

/// `y[i] = f(a[i], b[i])` in `a`'s dtype.
fn zip_map(be: &CpuBackend, a: &T, b: &T, f: impl Fn(f32, f32) -> f32 + Sync) -> Result<CpuBuffer> {
    let (av, bv) = (f32s(a), f32s(b));
    let out = av.par_iter().zip(bv.par_iter()).with_min_len(MIN_TASK).map(|(&a, &b)| f(a, b)).collect();
    Ok(be.store(out, a.dtype()))
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // √(2/π)
    0.5 * x * (1.0 + (K * (x + 0.044715 * x * x * x)).tanh())
}

fn gelu_erf(x: f32) -> f32 {
    (0.5 * x as f64 * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2))) as f32
}

/// erf with relative error below 1.2e-7 everywhere (Chebyshev fit of erfc, Numerical Recipes'
/// `erfcc`), evaluated in f64.
fn erf(x: f64) -> f64 {
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
