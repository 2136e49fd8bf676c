//! Row gather and scatter (`kernels/gather.cu`): one thread per element moved, with indices (and
//! gather weights) uploaded from the host for the call.

use super::kernel;
use crate::kernel::{Family, Kernel, Spec};
use crate::launch::{addr, Grid};
use crate::{CudaBackend, CudaBuffer};
use joyrt_core::backend::{GatherParams, ScatterParams};
use joyrt_core::kernel_abi::OpCode;
use joyrt_core::{Result, Tensor};

type T = Tensor<CudaBackend>;

joyrt_core::kernel_params! {
    /// The scalars of the gather kernels.
    pub struct GatherArgs {
        /// Rows moved: gather's output rows, scatter's source rows.
        pub rows: u64,
        pub cols: u64,
        /// `gather_rows`: taps summed per output row.
        pub taps: u32,
        /// `scatter_rows`: a `SCATTER_*` code.
        pub mode: u32,
    }
}

family! {
    "gather", GatherArgs,
    defines: &[],
    kernels: [GATHER_ROWS, SCATTER_ROWS],
}

const GATHER_ROWS: Kernel<GatherArgs> = kernel("gather_rows", Family::Gather);

pub fn gather_rows(
    be: &CudaBackend,
    table: &T,
    index: &[u32],
    weights: Option<&[f32]>,
    p: &GatherParams,
) -> Result<CudaBuffer> {
    let index = be.upload_words(index)?;
    let weights = weights.map(|w| be.upload_words(w)).transpose()?;
    let taps = u32::try_from(p.taps)
        .map_err(|_| joyrt_core::Error::backend("cuda", format!("gather_rows: {} taps per row", p.taps)))?;
    let args = GatherArgs { rows: p.rows as u64, cols: p.cols as u64, taps, ..Default::default() };
    let inputs = [addr(table), index.ptr, weights.as_ref().map_or(0, |w| w.ptr)];
    let n = p.rows * p.cols;
    be.launch_output(
        &GATHER_ROWS,
        Spec::uniform(table.dtype()),
        Grid::Stride(n),
        &inputs,
        (table.dtype(), n),
        &args,
    )
}

const SCATTER_ROWS: Kernel<GatherArgs> = kernel("scatter_rows", Family::Gather);

pub fn scatter_rows(
    be: &CudaBackend,
    dst: &T,
    rows: &[u32],
    src: &T,
    p: &ScatterParams,
) -> Result<CudaBuffer> {
    let out = be.duplicate(dst)?;
    if rows.is_empty() {
        return Ok(out);
    }
    let index = be.upload_words(rows)?;
    let spec = Spec { w: src.dtype(), ..Spec::uniform(dst.dtype()) };
    let args = GatherArgs {
        rows: p.src_rows as u64,
        cols: p.cols as u64,
        mode: p.mode.code(),
        ..Default::default()
    };
    let grid = Grid::Stride(p.src_rows * p.cols);
    be.launch(&SCATTER_ROWS, spec, grid, &[addr(dst), index.ptr, addr(src), out.ptr], &args)?;
    Ok(out)
}
