//! Rotary embeddings (shaders/rope.wgsl), alone or after a per-head RMS norm, and the joint
//! attention's Q/K/V from two streams' fused projections: one invocation per head vector, split
//! by tokens past the binding limit.

use crate::buffer::Span;
use crate::dispatch::{element_groups, Shader};
use crate::split::Split;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::{HeadParams, JointQkvParams, QkvStream, Rope};
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
        /// rms_norm_rope's and joint_qkv's ε.
        pub eps: f32,
        /// joint_qkv: the part (0 q, 1 k, 2 v), whether the stream rotates (0 / 1), and the
        /// elements of OUT's window before the stream's first row.
        pub part: u32, pub rotate: u32, pub out_shift: u32,
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
        part: 0,
        rotate: 1,
        out_shift: 0,
    };
    split.run(be, ROPE.entry(entry), args, |tokens| element_groups(tokens * p.heads))?;
    be.finish(out, x.numel(), x.dtype())
}

/// `joint_qkv`: a dispatch per stream and part (q, k, v) into that part's f32 work buffer, each
/// split by the stream's tokens (a token's row of the projection and of the stream's tables)
/// and writing the stream's rows of the joint layout; six dispatches bind at most four inputs.
pub fn joint_qkv(
    be: &WgpuBackend,
    streams: [&QkvStream<'_, WgpuBackend>; 2],
    p: &JointQkvParams,
) -> Result<[WgpuBuffer; 3]> {
    const OP: &str = "joint_qkv";
    let hd = p.heads * p.head_dim;
    let n = (p.tokens[0] + p.tokens[1]) * hd;
    let outs = [be.f32_buf(n)?, be.f32_buf(n)?, be.f32_buf(n)?];
    let mut first = 0;
    for (s, tokens) in streams.into_iter().zip(p.tokens) {
        let gains = [Some(s.q_norm), Some(s.k_norm), None];
        for (part, (out, gain)) in outs.iter().zip(gains).enumerate() {
            let rope = s.rope.filter(|_| gain.is_some());
            let qkv = be.span(s.qkv, OP)?;
            let mut split =
                Split::new(OP, tokens).out_at(Span::f32(out, n), hd, first * hd).split("qkv", qkv, 3 * hd);
            split = match rope {
                Some(r) => split.split("cos table", be.span(&r.cos, OP)?, p.head_dim / 2).split(
                    "sin table",
                    be.span(&r.sin, OP)?,
                    p.head_dim / 2,
                ),
                None => split.whole(be.dummy()).whole(be.dummy()),
            };
            let split =
                split.whole(gain.map(|g| be.inp(g, "joint_qkv gain")).transpose()?.unwrap_or(be.dummy()));
            let shift = split.out_shift(be) as u32;
            let args = |r: std::ops::Range<usize>| RopeArgs {
                n: (r.len() * p.heads) as u32,
                heads: p.heads as u32,
                head_dim: p.head_dim as u32,
                pairing: rope.map_or(0, |r| r.pairing.code()),
                eps: p.eps,
                part: part as u32,
                rotate: rope.is_some() as u32,
                out_shift: shift,
            };
            split.run(be, ROPE.entry(OP), args, |tokens| element_groups(tokens * p.heads))?;
        }
        first += tokens;
    }
    let dtype = streams[0].qkv.dtype();
    let [q, k, v] = outs;
    Ok([be.finish(q, n, dtype)?, be.finish(k, n, dtype)?, be.finish(v, n, dtype)?])
}
