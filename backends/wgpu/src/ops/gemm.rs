//! `linear` and `linear_quantized` (shaders/gemm.wgsl): 64×64 output tiles per workgroup, one
//! dispatch per (row piece, weight chunk, K chunk): x and the output split by rows past the binding
//! limit. A quantized weight's words may be chunked like a dense
//! weight's elements; its scales (an eighth of the int8 words' bytes) must fit one binding. An
//! epilogue (GELU-tanh, gated residual) runs over the f32 sums in place of the pack pass
//! (`elementwise::gemm_epilogue`): one rounding, as the op defines.

use super::elementwise::gemm_epilogue;
use crate::buffer::Span;
use crate::dispatch::Shader;
use crate::split::Split;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::{Epilogue, LinearParams, QuantActivations, QuantLinearParams};
use joyrt_core::kernel_abi::{OpCode, QuantCode};
use joyrt_core::{Backend, Error, QuantizedMatrix, Result, Tensor};

type T = Tensor<WgpuBackend>;

joyrt_core::kernel_params! {
    /// Parameters of gemm.wgsl's `linear`.
    pub struct GemmArgs {
        pub m: u32, pub k: u32, pub n: u32, pub has_bias: u32,
        /// Workgroups along N in this dispatch.
        pub groups_n: u32,
        /// The K range `[k0, k1)` of this K chunk, the weight rows `[n_lo, n_hi)` this dispatch
        /// covers and the weight elements `[e0, e1)` the bound chunk holds.
        pub k0: u32, pub k1: u32, pub n_lo: u32, pub n_hi: u32, pub e0: u32, pub e1: u32,
        /// A weight row's length in the bound buffer's elements: K, or the quantized row's words.
        pub row_len: u32,
        /// `linear_quantized` only: the `QUANT_*` code, codes per scale along K, scales per row.
        pub format: u32, pub block: u32, pub scales_per_row: u32,
    }
}

static GEMM: Shader<GemmArgs> = Shader::new("gemm", include_str!("../../../../shaders/gemm.wgsl"));

/// Output rows and columns per workgroup tile.
const TILE: usize = 64;
/// K per dispatch: chunks of K keep each invocation within software adapters' loop limit.
const K_CHUNK: usize = 1024;

/// The weight of one GEMM: its buffer, the length of a row in the buffer's elements, and for a
/// quantized weight its code format, block, scales per row and scales.
struct GemmWeight<'a> {
    buffer: &'a WgpuBuffer,
    row_len: usize,
    quant: Option<(&'a QuantLinearParams, &'a T)>,
}

pub fn linear(
    be: &WgpuBackend,
    x: &T,
    w: &T,
    bias: Option<&T>,
    epilogue: Epilogue<'_, WgpuBackend>,
    p: &LinearParams,
) -> Result<WgpuBuffer> {
    let weight = GemmWeight { buffer: w.buffer(), row_len: p.k, quant: None };
    gemm(be, x, weight, bias, epilogue, (p.m, p.k, p.n))
}

pub fn linear_quantized(
    be: &WgpuBackend,
    x: &T,
    w: &QuantizedMatrix<WgpuBackend>,
    bias: Option<&T>,
    epilogue: Epilogue<'_, WgpuBackend>,
    p: &QuantLinearParams,
) -> Result<WgpuBuffer> {
    if p.activations != QuantActivations::Native {
        return Err(Error::Unsupported {
            backend: be.name(),
            op: "linear_quantized with fp8 activations (W8A8)",
        });
    }
    let weight = GemmWeight { buffer: w.data(), row_len: p.row_words, quant: Some((p, w.scales())) };
    gemm(be, x, weight, bias, epilogue, (p.m, p.k, p.n))
}

fn gemm(
    be: &WgpuBackend,
    x: &T,
    w: GemmWeight,
    bias: Option<&T>,
    epilogue: Epilogue<'_, WgpuBackend>,
    (m, k, n): (usize, usize, usize),
) -> Result<WgpuBuffer> {
    let out = be.f32_buf(m * n)?;
    let bin = match bias {
        Some(b) => be.inp(b, "linear bias")?,
        None => be.dummy(),
    };
    let (entry, scales) = match w.quant {
        Some((_, s)) => ("linear_quantized", be.inp(s, "linear_quantized scales")?),
        None => ("linear", be.dummy()),
    };
    let wb = w.buffer;
    let rl = w.row_len.max(1);
    let kchunks = k.div_ceil(K_CHUNK).max(1);
    // Activations and output past the binding limit: by rows of x and of the output.
    let rows = Split::new("linear", m).out(Span::f32(&out, m * n), n).split("x", be.span(x, "linear")?, k);
    for piece in rows.pieces(be)? {
        let (m, xin) = (piece.len(), piece.inputs[0]);
        let tm = m.div_ceil(TILE);
        // A weight past the binding limit comes in chunks of whole words, not rows: each chunk
        // runs over the rows it touches, and a row split between two chunks gets its two partial
        // sums accumulated in OUT (see gemm.wgsl).
        for j in 0..wb.chunk_count() {
            let (chunk, e0, e1) = wb.chunk(j);
            let (n_lo, n_hi) = (e0 / rl, e1.div_ceil(rl).min(n));
            let tn = (n_hi - n_lo).div_ceil(TILE);
            let inputs = [xin, (chunk, wb.dtype), bin, scales];
            for c in 0..kchunks {
                let mut args = GemmArgs {
                    m: m as u32,
                    k: k as u32,
                    n: n as u32,
                    has_bias: bias.is_some() as u32,
                    groups_n: tn as u32,
                    k0: (c * K_CHUNK) as u32,
                    k1: ((c + 1) * K_CHUNK).min(k) as u32,
                    n_lo: n_lo as u32,
                    n_hi: n_hi as u32,
                    e0: e0 as u32,
                    e1: e1 as u32,
                    row_len: rl as u32,
                    ..GemmArgs::default()
                };
                if let Some((q, _)) = w.quant {
                    args.format = QuantCode::from(q.format).code();
                    args.block = q.block as u32;
                    args.scales_per_row = q.scales_per_row as u32;
                }
                be.run(GEMM.entry(entry), &args, &inputs, piece.out, (tm * tn) as u64)?;
            }
        }
    }
    gemm_epilogue(be, out, (m, n), epilogue, x.dtype())
}
