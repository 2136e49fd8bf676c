//! Elementwise ops (shaders/elementwise.wgsl): one invocation per output element.

use crate::buffer::{Bind, Input};
use crate::dispatch::{element_groups, Shader};
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::{Activation, BinaryParams, RowsParams};
use joyrt_core::kernel_abi::OpCode;
use joyrt_core::{DType, Result, Tensor};

type T = Tensor<WgpuBackend>;

joyrt_core::kernel_params! {
    /// Parameters of the kernels of elementwise.wgsl.
    pub struct ElementwiseArgs {
        /// Elements of the output; `ACT_*` (activation) or `BIN_*` (binary).
        pub n: u32, pub op: u32,
        /// `BCAST_*` and its extent: how binary's second operand is indexed. gated_residual's
        /// gate length (the columns) is `inner` too.
        pub bcast: u32, pub inner: u32,
        /// scaled_add's α.
        pub alpha: f32,
    }
}

static ELEMENTWISE: Shader<ElementwiseArgs> =
    Shader::new("elementwise", include_str!("../../../../shaders/elementwise.wgsl"));

fn args(n: usize) -> ElementwiseArgs {
    ElementwiseArgs { n: n as u32, ..Default::default() }
}

pub fn cast(be: &WgpuBackend, x: &T, to: DType) -> Result<WgpuBuffer> {
    let n = x.numel();
    let out = be.f32_buf(n)?;
    widen_into(be, be.inp(x, "cast")?, out.bind(), n)?;
    be.finish(out, n, to)
}

/// Writes the `n` elements of `x` to `out` as f32.
pub(crate) fn widen_into(be: &WgpuBackend, x: Input, out: Bind, n: usize) -> Result<()> {
    be.run(ELEMENTWISE.entry("copy"), &args(n), &[x], out, element_groups(n))
}

pub fn activation(be: &WgpuBackend, x: &T, act: Activation) -> Result<WgpuBuffer> {
    let n = x.numel();
    let a = ElementwiseArgs { op: act.code(), ..args(n) };
    be.per_element(ELEMENTWISE.entry("activation"), &a, &[be.inp(x, "activation")?], n, x.dtype())
}

pub fn swiglu(be: &WgpuBackend, gate: &T, up: &T) -> Result<WgpuBuffer> {
    let n = gate.numel();
    let inputs = [be.inp(gate, "swiglu")?, be.inp(up, "swiglu")?];
    be.per_element(ELEMENTWISE.entry("swiglu"), &args(n), &inputs, n, gate.dtype())
}

pub fn binary(be: &WgpuBackend, a: &T, b: &T, p: &BinaryParams) -> Result<WgpuBuffer> {
    let (mode, inner) = p.broadcast.mode_inner();
    let k = ElementwiseArgs { op: p.op.code(), bcast: mode.code(), inner: inner as u32, ..args(p.len) };
    let inputs = [be.inp(a, "binary")?, be.inp(b, "binary")?];
    be.per_element(ELEMENTWISE.entry("binary"), &k, &inputs, p.len, a.dtype())
}

pub fn scaled_add(be: &WgpuBackend, x: &T, z: &T, alpha: f32) -> Result<WgpuBuffer> {
    let n = x.numel();
    let inputs = [be.inp(x, "scaled_add")?, be.inp(z, "scaled_add")?];
    be.per_element(
        ELEMENTWISE.entry("scaled_add"),
        &ElementwiseArgs { alpha, ..args(n) },
        &inputs,
        n,
        x.dtype(),
    )
}

pub fn gated_residual(be: &WgpuBackend, x: &T, z: &T, gate: &T, p: &RowsParams) -> Result<WgpuBuffer> {
    let op = "gated_residual";
    let n = p.rows * p.cols;
    let a = ElementwiseArgs { inner: p.cols as u32, ..args(n) };
    let inputs = [be.inp(x, op)?, be.inp(z, op)?, be.inp(gate, op)?];
    be.per_element(ELEMENTWISE.entry("gated_residual"), &a, &inputs, n, x.dtype())
}
