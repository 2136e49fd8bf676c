//! Row gathers and scatters (shaders/gather.wgsl): one invocation per element of the rows moved.

use crate::buffer::Span;
use crate::dispatch::{element_groups, Shader};
use crate::ops::elementwise::widen_into;
use crate::split::Split;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::{GatherParams, ScatterParams};
use joyrt_core::kernel_abi::OpCode;
use joyrt_core::{DType, Result, Tensor};

type T = Tensor<WgpuBackend>;

joyrt_core::kernel_params! {
    /// Parameters of the kernels of gather.wgsl.
    pub struct GatherArgs {
        /// Elements of the rows moved (invocations) and the row length.
        pub n: u32, pub cols: u32,
        /// gather_rows: taps per output row, whether they are weighted, the table elements
        /// `[e0, e1)` the bound chunk holds, and whether this dispatch writes OUT fresh.
        pub taps: u32, pub has_weights: u32, pub e0: u32, pub e1: u32, pub first: u32,
        /// scatter_rows: `SCATTER_*`.
        pub mode: u32,
    }
}

static GATHER: Shader<GatherArgs> = Shader::new("gather", include_str!("../../../../shaders/gather.wgsl"));

pub fn gather_rows(
    be: &WgpuBackend,
    table: &T,
    index: &[u32],
    weights: Option<&[f32]>,
    p: &GatherParams,
) -> Result<WgpuBuffer> {
    let idx = be.u32_buf(index)?;
    let w: Vec<u32> = weights.map(|w| w.iter().map(|v| v.to_bits()).collect()).unwrap_or_default();
    let wb = be.u32_buf(&w)?;
    let n = p.rows * p.cols;
    let out = be.f32_buf(n)?;
    let tb = table.buffer();
    // A table past the binding limit is in chunks: run only over the chunks some index
    // touches, each adding the taps whose elements it holds (see gather.wgsl).
    let mut touched = vec![false; tb.chunk_count()];
    for &r in index {
        let (first, last) = (r as usize * p.cols, (r as usize + 1) * p.cols);
        if last > first {
            let end = tb.chunk_count() - 1;
            let (j0, j1) = ((first / tb.chunk_elems).min(end), ((last - 1) / tb.chunk_elems).min(end));
            touched[j0..=j1].iter_mut().for_each(|t| *t = true);
        }
    }
    if !touched.contains(&true) {
        touched[0] = true;
    }
    // Output rows past the binding limit: by rows, with their indices and weights.
    let split = Split::new("gather_rows", p.rows).out(Span::f32(&out, n), p.cols).split(
        "indices",
        Span::f32(&idx, index.len()),
        p.taps,
    );
    let split = match weights {
        Some(_) => split.split("weights", Span::f32(&wb, w.len()), p.taps),
        None => split.whole((wb.bind(), DType::F32)),
    };
    for piece in split.pieces(be)? {
        let n = piece.len() * p.cols;
        let mut first = true;
        for j in (0..tb.chunk_count()).filter(|&j| touched[j]) {
            let (chunk, e0, e1) = tb.chunk(j);
            let args = GatherArgs {
                n: n as u32,
                cols: p.cols as u32,
                taps: p.taps as u32,
                has_weights: weights.is_some() as u32,
                e0: e0 as u32,
                e1: e1 as u32,
                first: first as u32,
                ..Default::default()
            };
            // Indices and weights are read as raw words, so their dtype (loader) does not matter.
            let inputs = [(chunk, tb.dtype), piece.inputs[0], piece.inputs[1]];
            be.run(GATHER.entry("gather_rows"), &args, &inputs, piece.out, element_groups(n))?;
            first = false;
        }
    }
    be.finish(out, p.rows * p.cols, table.dtype())
}

pub fn scatter_rows(
    be: &WgpuBackend,
    dst: &T,
    rows: &[u32],
    src: &T,
    p: &ScatterParams,
) -> Result<WgpuBuffer> {
    let total = p.dst_rows * p.cols;
    let out = be.f32_buf(total)?;
    widen_into(be, be.span(dst, "scatter_rows")?, Span::f32(&out, total))?;
    let rb = be.u32_buf(rows)?;
    let n = p.src_rows * p.cols;
    if n > 0 {
        let args = GatherArgs { n: n as u32, cols: p.cols as u32, mode: p.mode.code(), ..Default::default() };
        // A source row may go anywhere in the output: both are bound whole.
        let inputs = [be.inp(src, "scatter_rows src")?, (rb.bind(), DType::F32)];
        let dst = be.whole(Span::f32(&out, total), "scatter_rows output")?.0;
        be.run(GATHER.entry("scatter_rows"), &args, &inputs, dst, element_groups(n))?;
    }
    be.finish(out, total, dst.dtype())
}
