//! Layout copies (`kernels/layout.cu`): permute, slice, concat and nearest ×2 upsampling in
//! grid-stride loops, one output element per thread (16-byte runs for slice and concat where
//! their extents allow). No conversion: the output has the input's dtype.

use super::{kernel, VEC};
use crate::kernel::{Family, Kernel, Spec};
use crate::launch::{addr, Grid};
use crate::{CudaBackend, CudaBuffer};
use joyrt_core::backend::{ConcatParams, ImageParams, PermuteParams, SliceParams};
use joyrt_core::{Error, Result, Tensor};

type T = Tensor<CudaBackend>;

/// The most axes `permute` takes.
const MAX_RANK: usize = 6;

joyrt_core::kernel_params! {
    /// The scalars of the layout kernels.
    pub struct LayoutArgs {
        /// Elements written.
        pub n: u64,
        /// `permute`: the output dims and the input stride of each output axis (`rank` used).
        pub out_dims: [u64; 6],
        pub in_strides: [u64; 6],
        pub rank: u64,
        /// `copy_cols`: `len` columns from `x [·, x_inner]` at `x_start` to `y [·, y_inner]` at
        /// `y_start`.
        pub len: u64,
        pub x_inner: u64,
        pub x_start: u64,
        pub y_inner: u64,
        pub y_start: u64,
        /// `upsample_nearest2x`: the input's height and width.
        pub height: u64,
        pub width: u64,
    }
}

family! {
    "layout", LayoutArgs,
    defines: &[],
    kernels: [PERMUTE, COPY_COLS, UPSAMPLE_NEAREST2X],
}

/// Runs `kernel` over `grid` from `x` into a new buffer of `args.n` elements.
fn copy(
    be: &CudaBackend,
    kernel: &'static Kernel<LayoutArgs>,
    grid: Grid,
    x: &T,
    args: LayoutArgs,
) -> Result<CudaBuffer> {
    let n = args.n as usize;
    be.launch_output(kernel, Spec::uniform(x.dtype()), grid, &[addr(x)], (x.dtype(), n), &args)
}

/// `copy_cols` moves runs of up to [`VEC`] elements (16 bytes) per thread.
fn copy_grid(args: &LayoutArgs) -> Grid {
    Grid::Stride((args.n as usize).div_ceil(VEC))
}

const PERMUTE: Kernel<LayoutArgs> = kernel("permute", Family::Layout);

pub fn permute(be: &CudaBackend, x: &T, p: &PermuteParams) -> Result<CudaBuffer> {
    let rank = p.dims.len();
    if rank > MAX_RANK {
        return Err(Error::shape("permute", format!("rank {rank} > {MAX_RANK}")));
    }
    let mut in_strides = [1u64; MAX_RANK];
    for i in (0..rank.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * p.dims[i + 1] as u64;
    }
    let mut args = LayoutArgs { n: x.numel() as u64, rank: rank as u64, ..Default::default() };
    for (a, &src) in p.perm.iter().enumerate() {
        args.out_dims[a] = p.dims[src] as u64;
        args.in_strides[a] = in_strides[src];
    }
    copy(be, &PERMUTE, Grid::Stride(args.n as usize), x, args)
}

const COPY_COLS: Kernel<LayoutArgs> = kernel("copy_cols", Family::Layout);

/// `copy_cols` arguments moving `len` columns of each of `outer` rows (the offsets to be set).
fn columns(outer: usize, len: usize) -> LayoutArgs {
    LayoutArgs { n: (outer * len) as u64, len: len as u64, ..Default::default() }
}

pub fn slice(be: &CudaBackend, x: &T, p: &SliceParams) -> Result<CudaBuffer> {
    let args = LayoutArgs {
        x_inner: p.x_inner as u64,
        x_start: p.start as u64,
        y_inner: p.len as u64,
        y_start: 0,
        ..columns(p.outer, p.len)
    };
    copy(be, &COPY_COLS, copy_grid(&args), x, args)
}

pub fn concat(be: &CudaBackend, xs: &[&T], p: &ConcatParams) -> Result<CudaBuffer> {
    let (total, dtype): (usize, _) = (p.inners.iter().sum(), xs[0].dtype());
    let out = be.output(dtype, p.outer * total)?;
    let mut at = 0;
    for (x, &inner) in xs.iter().zip(&p.inners) {
        let args = LayoutArgs {
            x_inner: inner as u64,
            x_start: 0,
            y_inner: total as u64,
            y_start: at as u64,
            ..columns(p.outer, inner)
        };
        be.launch(&COPY_COLS, Spec::uniform(dtype), copy_grid(&args), &[addr(x), out.ptr], &args)?;
        at += inner;
    }
    Ok(out)
}

const UPSAMPLE_NEAREST2X: Kernel<LayoutArgs> = kernel("upsample_nearest2x", Family::Layout);

pub fn upsample_nearest2x(be: &CudaBackend, x: &T, p: &ImageParams) -> Result<CudaBuffer> {
    let n = p.channels * 4 * p.height * p.width;
    let args =
        LayoutArgs { n: n as u64, height: p.height as u64, width: p.width as u64, ..Default::default() };
    copy(be, &UPSAMPLE_NEAREST2X, Grid::Stride(n), x, args)
}
