//! Rotary embeddings (shaders/rope.wgsl), alone or after a per-head RMS norm: one invocation per
//! head vector.

use crate::dispatch::{element_groups, Shader};
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
    let n = p.tokens * p.heads;
    let out = be.f32_buf(x.numel())?;
    let wi = w.map(|w| be.inp(w, entry)).transpose()?.unwrap_or(be.dummy());
    let inputs = [be.inp(x, entry)?, be.inp(&rope.cos, entry)?, be.inp(&rope.sin, entry)?, wi];
    let args = RopeArgs {
        n: n as u32,
        heads: p.heads as u32,
        head_dim: p.head_dim as u32,
        pairing: rope.pairing.code(),
        eps: p.eps,
    };
    be.run(ROPE.entry(entry), &args, &inputs, out.bind(), element_groups(n))?;
    be.finish(out, x.numel(), x.dtype())
}
