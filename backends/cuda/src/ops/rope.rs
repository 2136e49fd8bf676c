//! Rotary embeddings (`kernels/rope.cu`): `rope` (one thread per rotated pair), the fused
//! per-head RMSNorm + rope (one block per (token, head) row), and `joint_qkv` (both streams'
//! Q, K, V into the joint layout in one launch); heads of 128 take the `_warp` kernels (a warp
//! per row).

use super::kernel;
use crate::kernel::{Family, Kernel, Spec};
use crate::launch::{addr, Grid};
use crate::{CudaBackend, CudaBuffer};
use joyrt_core::backend::{HeadParams, JointQkvParams, QkvStream, Rope};
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
        /// `joint_qkv`: the second stream's tokens (the first's are `tokens`), its `ROPE_*`
        /// code, and which streams rotate (bit 0 the first, bit 1 the second).
        pub text_tokens: u64,
        pub text_pairing: u32,
        pub rotate: u32,
    }
}

family! {
    "rope", RopeArgs,
    defines: &[],
    kernels: [ROPE, RMS_NORM_ROPE, ROPE_WARP, RMS_NORM_ROPE_WARP, JOINT_QKV, JOINT_QKV_WARP],
}

/// The head dim of the `_warp` kernels (a warp per row, 4 elements a lane).
const WARP_HEAD_DIM: usize = 128;

/// The `_warp` kernels' launch: a warp per (token, head) row, the block size the descriptor's.
fn warp_rows(p: &HeadParams) -> Grid {
    Grid::Stride(p.tokens * p.heads * 32)
}

/// `rope`'s tables, which must be f32.
fn check_tables(rope: &Rope<CudaBackend>) -> Result<()> {
    for t in [&rope.cos, &rope.sin] {
        if t.dtype() != DType::F32 {
            return Err(Error::DType { op: "rope (angle tables must be f32)", dtype: t.dtype() });
        }
    }
    Ok(())
}

/// The kernels' arguments for `rope`'s tables.
fn args(rope: &Rope<CudaBackend>, p: &HeadParams) -> Result<RopeArgs> {
    check_tables(rope)?;
    Ok(RopeArgs {
        tokens: p.tokens as u64,
        heads: p.heads as u64,
        head_dim: p.head_dim as u64,
        eps: p.eps,
        pairing: rope.pairing.code(),
        text_tokens: 0,
        text_pairing: 0,
        rotate: 0,
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

const JOINT_QKV: Kernel<RopeArgs> = kernel("joint_qkv", Family::Rope);

const JOINT_QKV_WARP: Kernel<RopeArgs> = kernel("joint_qkv_warp", Family::Rope);

/// One launch for both streams and all three outputs: a block per (joint token, head) row, a
/// warp per row for heads of 128.
pub fn joint_qkv(
    be: &CudaBackend,
    streams: [&QkvStream<'_, CudaBackend>; 2],
    p: &JointQkvParams,
) -> Result<[CudaBuffer; 3]> {
    let [s0, s1] = streams;
    for r in [s0.rope, s1.rope].into_iter().flatten() {
        check_tables(r)?;
    }
    let code = |s: &QkvStream<'_, CudaBackend>| s.rope.map_or(0, |r| r.pairing.code());
    let args = RopeArgs {
        tokens: p.tokens[0] as u64,
        heads: p.heads as u64,
        head_dim: p.head_dim as u64,
        eps: p.eps,
        pairing: code(s0),
        text_tokens: p.tokens[1] as u64,
        text_pairing: code(s1),
        rotate: s0.rope.is_some() as u32 | (s1.rope.is_some() as u32) << 1,
    };
    let dtype = s0.qkv.dtype();
    let spec = Spec { w: s0.q_norm.dtype(), ..Spec::uniform(dtype) };
    let (rows, cols) = ((p.tokens[0] + p.tokens[1]) * p.heads, p.head_dim);
    let outs =
        [be.output(dtype, rows * cols)?, be.output(dtype, rows * cols)?, be.output(dtype, rows * cols)?];
    // Absent tables are null; the kernels read a stream's tables only where it rotates.
    let table = |s: &QkvStream<'_, CudaBackend>| s.rope.map_or([0, 0], |r| [addr(&r.cos), addr(&r.sin)]);
    let ([c0, n0], [c1, n1]) = (table(s0), table(s1));
    let buffers = [
        addr(s0.qkv),
        addr(s1.qkv),
        addr(s0.q_norm),
        addr(s0.k_norm),
        addr(s1.q_norm),
        addr(s1.k_norm),
        c0,
        n0,
        c1,
        n1,
        outs[0].ptr,
        outs[1].ptr,
        outs[2].ptr,
    ];
    let (kernel, grid) = if cols == WARP_HEAD_DIM {
        (&JOINT_QKV_WARP, Grid::Stride(rows * 32))
    } else {
        (&JOINT_QKV, Grid::Rows { rows, cols })
    };
    be.launch(kernel, spec, grid, &buffers, &args)?;
    Ok(outs)
}
