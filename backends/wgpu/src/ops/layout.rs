//! Layout copies (shaders/layout.wgsl): one invocation per output element; row copies and
//! upsampling split by rows and channels past the binding limit, permute binds whole.

use crate::buffer::Span;
use crate::dispatch::{element_groups, Shader};
use crate::split::Split;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::{ConcatParams, ImageParams, PermuteParams, SliceParams};
use joyrt_core::{Backend, Error, Result, Shape, Tensor};

type T = Tensor<WgpuBackend>;

/// The highest rank `permute` takes (the length of the arrays in [`LayoutArgs`]).
const MAX_RANK: usize = 6;

joyrt_core::kernel_params! {
    /// Parameters of the kernels of layout.wgsl.
    pub struct LayoutArgs {
        /// Elements copied (invocations).
        pub n: u32,
        /// permute: the rank, the output dims and the input strides of the output axes.
        pub rank: u32, pub dims: [u32; MAX_RANK], pub strides: [u32; MAX_RANK],
        /// copy_rows: row length, and the width and first column of the source and destination.
        pub len: u32, pub src_width: u32, pub src_start: u32, pub dst_width: u32, pub dst_start: u32,
        /// upsample_nearest2x: the input's shape.
        pub channels: u32, pub height: u32, pub width: u32,
    }
}

static LAYOUT: Shader<LayoutArgs> = Shader::new("layout", include_str!("../../../../shaders/layout.wgsl"));

pub fn permute(be: &WgpuBackend, x: &T, p: &PermuteParams) -> Result<WgpuBuffer> {
    let rank = p.dims.len();
    if rank > MAX_RANK {
        return Err(Error::backend(be.name(), format!("permute: rank {rank} > {MAX_RANK}")));
    }
    let strides = Shape::new(p.dims.clone()).strides();
    let n = x.numel();
    let mut a = LayoutArgs { n: n as u32, rank: rank as u32, dims: [1; MAX_RANK], ..Default::default() };
    for (ax, &src) in p.perm.iter().enumerate() {
        a.dims[ax] = p.dims[src] as u32;
        a.strides[ax] = strides[src] as u32;
    }
    // An output element may come from anywhere in x: both are bound whole.
    be.per_element(LAYOUT.entry("permute"), "permute", &a, &[be.inp(x, "permute x")?], n, x.dtype())
}

pub fn slice(be: &WgpuBackend, x: &T, p: &SliceParams) -> Result<WgpuBuffer> {
    let n = p.outer * p.len;
    let out = be.f32_buf(n)?;
    let rows = Rows { count: p.outer, len: p.len, src: (p.x_inner, p.start), dst: (p.len, 0) };
    copy_rows(be, be.span(x, "slice")?, Span::f32(&out, n), rows)?;
    be.finish(out, n, x.dtype())
}

pub fn concat(be: &WgpuBackend, xs: &[&T], p: &ConcatParams) -> Result<WgpuBuffer> {
    let dtype = xs[0].dtype();
    let total: usize = p.inners.iter().sum();
    let out = be.f32_buf(p.outer * total)?;
    let dst = Span::f32(&out, p.outer * total);
    let mut off = 0;
    for (x, &inner) in xs.iter().zip(&p.inners) {
        if x.dtype() != dtype {
            return Err(Error::DType { op: "concat", dtype: x.dtype() });
        }
        if p.outer * inner > 0 {
            let rows = Rows { count: p.outer, len: inner, src: (inner, 0), dst: (total, off) };
            copy_rows(be, be.span(x, "concat")?, dst, rows)?;
        }
        off += inner;
    }
    be.finish(out, p.outer * total, dtype)
}

pub fn upsample_nearest2x(be: &WgpuBackend, x: &T, p: &ImageParams) -> Result<WgpuBuffer> {
    let op = "upsample_nearest2x";
    let (plane, n) = (p.height * p.width, 4 * x.numel());
    let out = be.f32_buf(n)?;
    // By channels: a channel's plane and its four times larger image.
    let split =
        Split::new(op, p.channels).out(Span::f32(&out, n), 4 * plane).split("x", be.span(x, op)?, plane);
    let args = |r: std::ops::Range<usize>| LayoutArgs {
        n: (4 * plane * r.len()) as u32,
        channels: r.len() as u32,
        height: p.height as u32,
        width: p.width as u32,
        ..Default::default()
    };
    split.run(be, LAYOUT.entry(op), args, |c| element_groups(4 * plane * c))?;
    be.finish(out, n, x.dtype())
}

/// `count` rows of `len` elements, copied from columns `src.1..` of a matrix `src.0` wide to
/// columns `dst.1..` of one `dst.0` wide.
pub(crate) struct Rows {
    pub count: usize,
    pub len: usize,
    pub src: (usize, usize),
    pub dst: (usize, usize),
}

/// Copies `rows` of `x` into `out` (f32), split by rows past the binding limit.
pub(crate) fn copy_rows(be: &WgpuBackend, x: Span, out: Span, rows: Rows) -> Result<()> {
    let split = Split::new("copy_rows", rows.count).out(out, rows.dst.0).split("source", x, rows.src.0);
    let args = |r: std::ops::Range<usize>| LayoutArgs {
        n: (r.len() * rows.len) as u32,
        len: rows.len as u32,
        src_width: rows.src.0 as u32,
        src_start: rows.src.1 as u32,
        dst_width: rows.dst.0 as u32,
        dst_start: rows.dst.1 as u32,
        ..Default::default()
    };
    split.run(be, LAYOUT.entry("copy_rows"), args, |r| element_groups(r * rows.len))
}
