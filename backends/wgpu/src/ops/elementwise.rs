//! Elementwise ops (shaders/elementwise.wgsl): one invocation per output element, split by rows
//! (or elements) past the binding limit.

use crate::buffer::Span;
use crate::dispatch::{element_groups, Shader};
use crate::pool::Block;
use crate::split::Split;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::{Activation, BinaryParams, Broadcast, Epilogue, RowsParams};
use joyrt_core::kernel_abi::OpCode;
use joyrt_core::{DType, Error, Result, Tensor};

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
        /// binary: the row of this dispatch's first element when split by rows (a column
        /// broadcast reads `b[first_row + i / inner]`).
        pub first_row: u32,
    }
}

static ELEMENTWISE: Shader<ElementwiseArgs> =
    Shader::new("elementwise", include_str!("../../../../shaders/elementwise.wgsl"));

fn args(n: usize) -> ElementwiseArgs {
    ElementwiseArgs { n: n as u32, ..Default::default() }
}

/// Runs elementwise kernel `entry` over `rows` rows of `cols` output elements, split by rows past
/// the binding limit (`split` holds the inputs); `a` gives the arguments but for `n`.
fn rows_of(
    be: &WgpuBackend,
    entry: &'static str,
    split: Split,
    out: Block,
    (rows, cols): (usize, usize),
    a: ElementwiseArgs,
    dtype: DType,
) -> Result<WgpuBuffer> {
    let split = split.out(Span::f32(&out, rows * cols), cols);
    split.run(
        be,
        ELEMENTWISE.entry(entry),
        |r| ElementwiseArgs { n: (r.len() * cols) as u32, first_row: r.start as u32, ..a },
        |r| element_groups(r * cols),
    )?;
    be.finish(out, rows * cols, dtype)
}

/// Elementwise kernel `entry` on same-sized inputs `xs`, one invocation per element.
fn each(be: &WgpuBackend, op: &'static str, xs: &[&T], a: ElementwiseArgs) -> Result<WgpuBuffer> {
    let n = xs[0].numel();
    let split =
        xs.iter().try_fold(Split::new(op, n), |s, x| Ok::<_, Error>(s.split("input", be.span(x, op)?, 1)))?;
    rows_of(be, op, split, be.f32_buf(n)?, (n, 1), a, xs[0].dtype())
}

pub fn cast(be: &WgpuBackend, x: &T, to: DType) -> Result<WgpuBuffer> {
    let n = x.numel();
    let out = be.f32_buf(n)?;
    widen_into(be, be.span(x, "cast")?, Span::f32(&out, n))?;
    be.finish(out, n, to)
}

/// Writes the elements of `x` to `out` as f32.
pub(crate) fn widen_into(be: &WgpuBackend, x: Span, out: Span) -> Result<()> {
    let n = x.len;
    Split::new("copy", n).out(out, 1).split("input", x, 1).run(
        be,
        ELEMENTWISE.entry("copy"),
        |r| args(r.len()),
        element_groups,
    )
}

pub fn activation(be: &WgpuBackend, x: &T, act: Activation) -> Result<WgpuBuffer> {
    each(be, "activation", &[x], ElementwiseArgs { op: act.code(), ..Default::default() })
}

pub fn swiglu(be: &WgpuBackend, gate: &T, up: &T) -> Result<WgpuBuffer> {
    each(be, "swiglu", &[gate, up], ElementwiseArgs::default())
}

pub fn binary(be: &WgpuBackend, a: &T, b: &T, p: &BinaryParams) -> Result<WgpuBuffer> {
    let op = "binary";
    let (mode, inner) = p.broadcast.mode_inner();
    let k =
        ElementwiseArgs { op: p.op.code(), bcast: mode.code(), inner: inner as u32, ..Default::default() };
    let (sa, sb) = (be.span(a, op)?, be.span(b, op)?);
    // Split by rows of `inner` elements: a broadcast b (a row, or a value per row) is bound
    // whole; row broadcasts restart with each piece, column broadcasts start at `first_row`.
    let (rows, cols) = match p.broadcast {
        Broadcast::None => (p.len, 1),
        Broadcast::Row { inner } | Broadcast::Col { inner } => (p.len.checked_div(inner).unwrap_or(0), inner),
    };
    let split = Split::new(op, rows).split("a", sa, cols);
    let split = match p.broadcast {
        Broadcast::None => split.split("b", sb, 1),
        Broadcast::Row { .. } | Broadcast::Col { .. } => split.whole(be.whole(sb, "binary b (broadcast)")?),
    };
    rows_of(be, "binary", split, be.f32_buf(p.len)?, (rows, cols), k, a.dtype())
}

pub fn scaled_add(be: &WgpuBackend, x: &T, z: &T, alpha: f32) -> Result<WgpuBuffer> {
    each(be, "scaled_add", &[x, z], ElementwiseArgs { alpha, ..Default::default() })
}

pub fn gated_residual(be: &WgpuBackend, x: &T, z: &T, gate: &T, p: &RowsParams) -> Result<WgpuBuffer> {
    let op = "gated_residual";
    let a = ElementwiseArgs { inner: p.cols as u32, ..Default::default() };
    let split = Split::new(op, p.rows)
        .split("x", be.span(x, op)?, p.cols)
        .split("z", be.span(z, op)?, p.cols)
        .whole(be.inp(gate, "gated_residual gate")?);
    rows_of(be, op, split, be.f32_buf(p.rows * p.cols)?, (p.rows, p.cols), a, x.dtype())
}

/// A GEMM's epilogue over its f32 results `acc [rows, cols]`, rounded once into `dtype`: GELU-tanh
/// or the gated residual read the unrounded sums, as the fused op defines (gemm.rs runs this
/// instead of its pack pass; its K chunks accumulate in `acc` across dispatches, so no single
/// GEMM store sees a finished sum).
pub(crate) fn gemm_epilogue(
    be: &WgpuBackend,
    acc: Block,
    (rows, cols): (usize, usize),
    epilogue: Epilogue<'_, WgpuBackend>,
    dtype: DType,
) -> Result<WgpuBuffer> {
    let n = rows * cols;
    match epilogue {
        Epilogue::None => be.finish(acc, n, dtype),
        Epilogue::GeluTanh => {
            let op = "activation";
            let split = Split::new(op, n).split("GEMM sums", Span::f32(&acc, n), 1);
            let a = ElementwiseArgs { op: Activation::GeluTanh.code(), ..Default::default() };
            rows_of(be, op, split, be.f32_buf(n)?, (n, 1), a, dtype)
        }
        Epilogue::GatedResidual { residual, gate } => {
            let op = "gated_residual";
            let split = Split::new(op, rows)
                .split("x", be.span(residual, op)?, cols)
                .split("GEMM sums", Span::f32(&acc, n), cols)
                .whole(be.inp(gate, "gated_residual gate")?);
            let a = ElementwiseArgs { inner: cols as u32, ..Default::default() };
            rows_of(be, op, split, be.f32_buf(n)?, (rows, cols), a, dtype)
        }
    }
}
