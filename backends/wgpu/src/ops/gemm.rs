//! `linear` (shaders/gemm.wgsl): 64×64 output tiles per workgroup, one dispatch per (weight chunk,
//! K chunk).

use crate::dispatch::Shader;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::{LinearParams, QuantLinearParams};
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
    }
}

static GEMM: Shader<GemmArgs> = Shader::new("gemm", include_str!("../../../../shaders/gemm.wgsl"));

/// Output rows and columns per workgroup tile.
const TILE: usize = 64;
/// K per dispatch: chunks of K keep each invocation within software adapters' loop limit.
const K_CHUNK: usize = 1024;

pub fn linear(be: &WgpuBackend, x: &T, w: &T, bias: Option<&T>, p: &LinearParams) -> Result<WgpuBuffer> {
    let out = be.f32_buf(p.m * p.n)?;
    let tm = p.m.div_ceil(TILE);
    let xin = be.inp(x, "linear")?;
    let bin = bias.map(|b| be.inp(b, "linear bias")).transpose()?;
    let wb = w.buffer();
    let kchunks = p.k.div_ceil(K_CHUNK).max(1);
    // A weight past the binding limit comes in chunks of whole words, not rows: each chunk
    // runs over the rows it touches, and a row split between two chunks gets its two partial
    // sums accumulated in OUT (see gemm.wgsl).
    for j in 0..wb.chunk_count() {
        let (chunk, e0, e1) = wb.chunk(j);
        let (n_lo, n_hi) = (e0 / p.k.max(1), e1.div_ceil(p.k.max(1)).min(p.n));
        let tn = (n_hi - n_lo).div_ceil(TILE);
        let mut inputs = vec![xin, (chunk.bind(), wb.dtype)];
        inputs.extend(bin);
        for c in 0..kchunks {
            let args = GemmArgs {
                m: p.m as u32,
                k: p.k as u32,
                n: p.n as u32,
                has_bias: bias.is_some() as u32,
                groups_n: tn as u32,
                k0: (c * K_CHUNK) as u32,
                k1: ((c + 1) * K_CHUNK).min(p.k) as u32,
                n_lo: n_lo as u32,
                n_hi: n_hi as u32,
                e0: e0 as u32,
                e1: e1 as u32,
            };
            be.run(GEMM.entry("linear"), &args, &inputs, out.bind(), (tm * tn) as u64)?;
        }
    }
    be.finish(out, p.m * p.n, x.dtype())
}

/// `linear_quantized`: no kernel in this backend yet, so an error naming the op and the backend
/// (never a silent dequantization on the host).
pub fn linear_quantized(
    be: &WgpuBackend,
    _x: &T,
    _w: &QuantizedMatrix<WgpuBackend>,
    _bias: Option<&T>,
    _p: &QuantLinearParams,
) -> Result<WgpuBuffer> {
    Err(Error::Unsupported { backend: be.name(), op: "linear_quantized" })
}
