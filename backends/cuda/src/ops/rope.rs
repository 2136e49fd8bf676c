//! Rotary embeddings (`kernels/rope.cu`): `rope` (one thread per rotated pair) and the fused
//! per-head RMSNorm + rope (one block per (token, head) row); heads of 128 take the `_warp`
//! kernels (a warp per row).

use super::kernel;
use crate::kernel::{Family, Kernel, Spec};
use crate::launch::{addr, Grid};
use crate::{CudaBackend, CudaBuffer};
use joyrt_core::backend::{HeadParams, Rope};
use joyrt_core::kernel_abi::OpCode;
use joyrt_core::{DType, Error, Result, Tensor};

type T = Tensor<CudaBackend>;

joyrt_core::kernel_params! {
    /// The scalars of the rope kernels: `x [tokens, heads, head_dim]`.
    pub struct RopeArgs {
        pub tokens: u64,
        pub heads: u64,
        pub head_dim: u64,
        /// `rms_norm_rope`: the RMSNorm epsilon.
        pub eps: f32,
        /// A `ROPE_*` code.
        pub pairing: u32,
    }
}

family! {
    "rope", RopeArgs,
    defines: &[],
    kernels: [ROPE, RMS_NORM_ROPE, ROPE_WARP, RMS_NORM_ROPE_WARP],
}

/// The head dim of the `_warp` kernels (a warp per row, 4 elements a lane).
const WARP_HEAD_DIM: usize = 128;

/// The `_warp` kernels' launch: a warp per (token, head) row, the block size the descriptor's.
fn warp_rows(p: &HeadParams) -> Grid {
    Grid::Stride(p.tokens * p.heads * 32)
}

/// The kernels' arguments for `rope`'s tables, which must be f32.
fn args(rope: &Rope<CudaBackend>, p: &HeadParams) -> Result<RopeArgs> {
    for t in [&rope.cos, &rope.sin] {
        if t.dtype() != DType::F32 {
            return Err(Error::DType { op: "rope (angle tables must be f32)", dtype: t.dtype() });
        }
    }
    Ok(RopeArgs {
        tokens: p.tokens as u64,
        heads: p.heads as u64,
        head_dim: p.head_dim as u64,
        eps: p.eps,
        pairing: rope.pairing.code(),
    })
}

const ROPE: Kernel<RopeArgs> = kernel("rope", Family::Rope);

const ROPE_WARP: Kernel<RopeArgs> = kernel("rope_warp", Family::Rope);

pub fn rope(be: &CudaBackend, x: &T, rope: &Rope<CudaBackend>, p: &HeadParams) -> Result<CudaBuffer> {
    let args = args(rope, p)?;
    let n = p.tokens * p.heads * p.head_dim;
    let inputs = [addr(x), addr(&rope.cos), addr(&rope.sin)];
    let (kernel, grid) =
        if p.head_dim == WARP_HEAD_DIM { (&ROPE_WARP, warp_rows(p)) } else { (&ROPE, Grid::Stride(n / 2)) };
    be.launch_output(kernel, Spec::uniform(x.dtype()), grid, &inputs, (x.dtype(), n), &args)
}

const RMS_NORM_ROPE: Kernel<RopeArgs> = kernel("rms_norm_rope", Family::Rope);

pub fn rms_norm_rope(
    be: &CudaBackend,
    x: &T,
    w: &T,
    rope: &Rope<CudaBackend>,
    p: &HeadParams,
) -> Result<CudaBuffer> {
    let args = args(rope, p)?;
    let spec = Spec { w: w.dtype(), ..Spec::uniform(x.dtype()) };
    let (rows, cols) = (p.tokens * p.heads, p.head_dim);
    let inputs = [addr(x), addr(w), addr(&rope.cos), addr(&rope.sin)];
    let (kernel, grid) = if cols == WARP_HEAD_DIM {
        (&RMS_NORM_ROPE_WARP, warp_rows(p))
    } else {
        (&RMS_NORM_ROPE, Grid::Rows { rows, cols })
    };
    be.launch_output(kernel, spec, grid, &inputs, (x.dtype(), rows * cols), &args)
}

const RMS_NORM_ROPE_WARP: Kernel<RopeArgs> = kernel("rms_norm_rope_warp", Family::Rope);
