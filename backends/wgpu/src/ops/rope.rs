//! Rotary embeddings (shaders/rope.wgsl), alone or after a per-head RMS norm: one invocation per
//! head vector, split by tokens past the binding limit.

use crate::buffer::Span;
use crate::dispatch::{element_groups, Shader};
use crate::split::Split;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::{HeadParams, Rope};
use joyrt_core::kernel_abi::OpCode;
use joyrt_core::{Result, Tensor};

type T = Tensor<WgpuBackend>;

joyrt_core::kernel_params! {
    /// Parameters of the kernels of rope.wgsl.
    pub struct RopeArgs {
        /// Head vectors (tokens × heads), heads, head dim.
        pub n: u32, pub heads: u32, pub head_dim: u32,
        /// `ROPE_*`: which elements rotate together.
        pub pairing: u32,
        /// rms_norm_rope's ε.
        pub eps: f32,
    }
}

static ROPE: Shader<RopeArgs> = Shader::new("rope", include_str!("../../../../shaders/rope.wgsl"));

pub fn rope(be: &WgpuBackend, x: &T, rope: &Rope<WgpuBackend>, p: &HeadParams) -> Result<WgpuBuffer> {
    rotate(be, "rope", x, None, rope, p)
}

pub fn rms_norm_rope(
    be: &WgpuBackend,
    x: &T,
    w: &T,
    rope: &Rope<WgpuBackend>,
    p: &HeadParams,
) -> Result<WgpuBuffer> {
    rotate(be, "rms_norm_rope", x, Some(w), rope, p)
}

/// Runs kernel `entry` on `x` with the tables of `rope` and the norm weight `w` (bound as D).
fn rotate(
    be: &WgpuBackend,
    entry: &'static str,
    x: &T,
    w: Option<&T>,
    rope: &Rope<WgpuBackend>,
    p: &HeadParams,
) -> Result<WgpuBuffer> {
    let out = be.f32_buf(x.numel())?;
    let wi = w.map(|w| be.inp(w, "rms_norm_rope weight")).transpose()?.unwrap_or(be.dummy());
    // By tokens: a token's head vectors and its row of each table.
    let (row, half) = (p.heads * p.head_dim, p.head_dim / 2);
    let split = Split::new(entry, p.tokens)
        .out(Span::f32(&out, x.numel()), row)
        .split("x", be.span(x, entry)?, row)
        .split("cos table", be.span(&rope.cos, entry)?, half)
        .split("sin table", be.span(&rope.sin, entry)?, half)
        .whole(wi);
    let args = |r: std::ops::Range<usize>| RopeArgs {
        n: (r.len() * p.heads) as u32,
        heads: p.heads as u32,
        head_dim: p.head_dim as u32,
        pairing: rope.pairing.code(),
        eps: p.eps,
    };
    split.run(be, ROPE.entry(entry), args, |tokens| element_groups(tokens * p.heads))?;
    be.finish(out, x.numel(), x.dtype())
}
