//! Elementwise ops (`kernels/elementwise.cu`): grid-stride loops over runs of [`VEC`] elements
//! (single elements where the extents do not allow runs).

use super::{kernel, VEC};
use crate::kernel::{Family, Kernel, Spec};
use crate::launch::{addr, Grid};
use crate::{CudaBackend, CudaBuffer};
use joyrt_core::backend::{Activation, BinaryParams, RowsParams};
use joyrt_core::kernel_abi::OpCode;
use joyrt_core::{DType, Result, Tensor};

type T = Tensor<CudaBackend>;

joyrt_core::kernel_params! {
    /// The scalars of the elementwise kernels.
    pub struct ElementwiseArgs {
        /// Elements of the output.
        pub n: u64,
        /// `binary`: the extent of `b`'s broadcast (1 for none); `gated_residual`: the row length.
        pub inner: u64,
        /// `binary`: a `BIN_*` code.
        pub op: u32,
        /// `binary`: a `BCAST_*` code.
        pub bcast: u32,
        /// `activation`: an `ACT_*` code.
        pub act: u32,
        /// `scaled_add`: α.
        pub alpha: f32,
    }
}

family! {
    "elementwise", ElementwiseArgs,
    defines: &[],
    kernels: [CAST, ACTIVATION, SWIGLU, BINARY, SCALED_ADD, GATED_RESIDUAL],
}

/// Runs `kernel` over the `n` elements of a new `dtype` output, after `inputs`.
fn map(
    be: &CudaBackend,
    kernel: &'static Kernel<ElementwiseArgs>,
    spec: Spec,
    dtype: DType,
    inputs: &[u64],
    args: ElementwiseArgs,
) -> Result<CudaBuffer> {
    let n = args.n as usize;
    be.launch_output(kernel, spec, Grid::Stride(n.div_ceil(VEC)), inputs, (dtype, n), &args)
}

fn over(n: usize) -> ElementwiseArgs {
    ElementwiseArgs { n: n as u64, inner: 1, ..Default::default() }
}

const CAST: Kernel<ElementwiseArgs> = kernel("cast", Family::Elementwise);

pub fn cast(be: &CudaBackend, x: &T, to: DType) -> Result<CudaBuffer> {
    let spec = Spec { c: to, ..Spec::uniform(x.dtype()) };
    map(be, &CAST, spec, to, &[addr(x)], over(x.numel()))
}

const ACTIVATION: Kernel<ElementwiseArgs> = kernel("activation", Family::Elementwise);

pub fn activation(be: &CudaBackend, x: &T, act: Activation) -> Result<CudaBuffer> {
    let args = ElementwiseArgs { act: act.code(), ..over(x.numel()) };
    map(be, &ACTIVATION, Spec::uniform(x.dtype()), x.dtype(), &[addr(x)], args)
}

const SWIGLU: Kernel<ElementwiseArgs> = kernel("swiglu", Family::Elementwise);

pub fn swiglu(be: &CudaBackend, gate: &T, up: &T) -> Result<CudaBuffer> {
    let spec = Spec { w: up.dtype(), ..Spec::uniform(gate.dtype()) };
    map(be, &SWIGLU, spec, gate.dtype(), &[addr(gate), addr(up)], over(gate.numel()))
}

const BINARY: Kernel<ElementwiseArgs> = kernel("binary", Family::Elementwise);

pub fn binary(be: &CudaBackend, a: &T, b: &T, p: &BinaryParams) -> Result<CudaBuffer> {
    let spec = Spec { w: b.dtype(), ..Spec::uniform(a.dtype()) };
    let (mode, inner) = p.broadcast.mode_inner();
    let args = ElementwiseArgs { inner: inner as u64, op: p.op.code(), bcast: mode.code(), ..over(p.len) };
    map(be, &BINARY, spec, a.dtype(), &[addr(a), addr(b)], args)
}

const SCALED_ADD: Kernel<ElementwiseArgs> = kernel("scaled_add", Family::Elementwise);

pub fn scaled_add(be: &CudaBackend, x: &T, z: &T, alpha: f32) -> Result<CudaBuffer> {
    let spec = Spec { w: z.dtype(), ..Spec::uniform(x.dtype()) };
    map(be, &SCALED_ADD, spec, x.dtype(), &[addr(x), addr(z)], ElementwiseArgs { alpha, ..over(x.numel()) })
}

const GATED_RESIDUAL: Kernel<ElementwiseArgs> = kernel("gated_residual", Family::Elementwise);

pub fn gated_residual(be: &CudaBackend, x: &T, z: &T, gate: &T, p: &RowsParams) -> Result<CudaBuffer> {
    let spec = Spec { x: x.dtype(), w: z.dtype(), b: gate.dtype(), c: x.dtype() };
    let args = ElementwiseArgs { inner: p.cols.max(1) as u64, ..over(p.rows * p.cols) };
    map(be, &GATED_RESIDUAL, spec, x.dtype(), &[addr(x), addr(z), addr(gate)], args)
}
