//! Normalisation (`kernels/norm.cu`): the row norms (one block per row, block reductions; RMS
//! norms of rows of 128 a warp per row) and
//! the channel norms of channel-first `[C, P]` tensors (one thread per position, looping over
//! channels): the VAE's channel RMS norm and CFG's per-position norm rescale.

use super::{dtype_or, kernel};
use crate::kernel::{Family, Kernel, Spec};
use crate::launch::{addr, opt_addr, Grid};
use crate::{CudaBackend, CudaBuffer};
use joyrt_core::backend::{CfgParams, ChannelParams, NormParams};
use joyrt_core::{Result, Tensor};

type T = Tensor<CudaBackend>;

joyrt_core::kernel_params! {
    /// The scalars of the norm kernels.
    pub struct NormArgs {
        /// Row norms: the rows and their length.
        pub rows: u64,
        pub cols: u64,
        /// Channel norms: `[channels, positions]`.
        pub channels: u64,
        pub positions: u64,
        pub eps: f32,
        /// `cfg_renorm`: the guidance scale.
        pub guidance: f32,
        /// `layer_norm`: the affine factor is `weight_offset + w[c]` (`weight_offset` alone
        /// without a weight).
        pub weight_offset: f32,
        /// Keeps the struct free of padding (the C side must see the same layout).
        pub reserved: u32,
    }
}

family! {
    "norm", NormArgs,
    defines: &[],
    kernels: [LAYER_NORM, RMS_NORM, RMS_NORM_WARP, CHANNEL_RMS_NORM, CFG_RENORM],
}

/// A row norm over `x [rows, cols]` launched over `grid`; `weight_offset` for `layer_norm`.
fn row_norm(
    be: &CudaBackend,
    kernel: &'static Kernel<NormArgs>,
    grid: Grid,
    spec: Spec,
    inputs: &[u64],
    p: &NormParams,
    weight_offset: f32,
) -> Result<CudaBuffer> {
    let args = NormArgs {
        rows: p.rows as u64,
        cols: p.cols as u64,
        eps: p.eps,
        weight_offset,
        ..Default::default()
    };
    be.launch_output(kernel, spec, grid, inputs, (spec.x, p.rows * p.cols), &args)
}

/// One block per row.
fn block_rows(p: &NormParams) -> Grid {
    Grid::Rows { rows: p.rows, cols: p.cols }
}

/// A channel norm over `[channels, positions]`: one thread per position.
fn channel_norm(
    be: &CudaBackend,
    kernel: &'static Kernel<NormArgs>,
    spec: Spec,
    inputs: &[u64],
    (channels, positions): (usize, usize),
    guidance: f32,
) -> Result<CudaBuffer> {
    let args =
        NormArgs { channels: channels as u64, positions: positions as u64, guidance, ..Default::default() };
    be.launch_output(kernel, spec, Grid::Stride(positions), inputs, (spec.x, channels * positions), &args)
}

const LAYER_NORM: Kernel<NormArgs> = kernel("layer_norm", Family::Norm);

pub fn layer_norm(
    be: &CudaBackend,
    x: &T,
    w: Option<&T>,
    b: Option<&T>,
    p: &NormParams,
) -> Result<CudaBuffer> {
    let spec = Spec { x: x.dtype(), w: dtype_or(w, x.dtype()), b: dtype_or(b, x.dtype()), c: x.dtype() };
    let weight_offset = if w.is_some() { 0.0 } else { 1.0 };
    row_norm(be, &LAYER_NORM, block_rows(p), spec, &[addr(x), opt_addr(w), opt_addr(b)], p, weight_offset)
}

/// `layer_norm` with factor `1 + scale` and term `shift`.
pub fn layer_norm_modulate(
    be: &CudaBackend,
    x: &T,
    shift: &T,
    scale: &T,
    p: &NormParams,
) -> Result<CudaBuffer> {
    let spec = Spec { x: x.dtype(), w: scale.dtype(), b: shift.dtype(), c: x.dtype() };
    row_norm(be, &LAYER_NORM, block_rows(p), spec, &[addr(x), addr(scale), addr(shift)], p, 1.0)
}

const RMS_NORM: Kernel<NormArgs> = kernel("rms_norm", Family::Norm);

const RMS_NORM_WARP: Kernel<NormArgs> = kernel("rms_norm_warp", Family::Norm);

/// The row length of `rms_norm_warp` (a warp per row, 4 elements a lane).
const WARP_COLS: usize = 128;

pub fn rms_norm(be: &CudaBackend, x: &T, w: &T, p: &NormParams) -> Result<CudaBuffer> {
    let spec = Spec { w: w.dtype(), ..Spec::uniform(x.dtype()) };
    let (kernel, grid) = if p.cols == WARP_COLS {
        (&RMS_NORM_WARP, Grid::Stride(p.rows * 32))
    } else {
        (&RMS_NORM, block_rows(p))
    };
    row_norm(be, kernel, grid, spec, &[addr(x), addr(w)], p, 0.0)
}

const CHANNEL_RMS_NORM: Kernel<NormArgs> = kernel("channel_rms_norm", Family::Norm);

pub fn channel_rms_norm(be: &CudaBackend, x: &T, gamma: &T, p: &ChannelParams) -> Result<CudaBuffer> {
    let spec = Spec { w: gamma.dtype(), ..Spec::uniform(x.dtype()) };
    channel_norm(be, &CHANNEL_RMS_NORM, spec, &[addr(x), addr(gamma)], (p.channels, p.positions), 0.0)
}

const CFG_RENORM: Kernel<NormArgs> = kernel("cfg_renorm", Family::Norm);

pub fn cfg_renorm(be: &CudaBackend, cond: &T, uncond: &T, p: &CfgParams) -> Result<CudaBuffer> {
    let spec = Spec { w: uncond.dtype(), ..Spec::uniform(cond.dtype()) };
    channel_norm(be, &CFG_RENORM, spec, &[addr(cond), addr(uncond)], (p.channels, p.positions), p.guidance)
}
