//! Attention (shaders/attention.wgsl): one invocation per (query, head) with an online softmax,
//! one dispatch per chunk of keys, split by queries past the binding limit.

use crate::buffer::Span;
use crate::dispatch::{Shader, Spec};
use crate::ops::layout::{copy_rows, Rows};
use crate::split::Split;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::AttentionParams;
use joyrt_core::{Backend, Error, Result, Tensor};

type T = Tensor<WgpuBackend>;

joyrt_core::kernel_params! {
    /// Parameters of attention.wgsl's `attention`.
    pub struct AttentionArgs {
        /// (query, head) pairs, one invocation each.
        pub threads: u32,
        pub q_len: u32, pub kv_len: u32, pub q_heads: u32, pub kv_heads: u32, pub head_dim: u32,
        pub scale: f32, pub causal: u32,
        /// The keys `[key_start, key_end)` of this dispatch; whether it is the first (no state to
        /// resume) and the last (normalise).
        pub key_start: u32, pub key_end: u32, pub first_chunk: u32, pub last_chunk: u32,
    }
}

static ATTENTION: Shader<AttentionArgs> =
    Shader::new("attention", include_str!("../../../../shaders/attention.wgsl"));

/// attention.wgsl's `QUERY_GROUP`: invocations per workgroup.
const QUERY_GROUP: u64 = 64;

pub fn attention(be: &WgpuBackend, q: &T, k: &T, v: &T, p: &AttentionParams) -> Result<WgpuBuffer> {
    // The query row and accumulator are private arrays sized at specialisation: 128 covers the
    // DiT's and Qwen's heads, 512 the VAE's single-head mid-block attention (d = 384).
    let max_d = match p.head_dim {
        0..=128 => 128,
        129..=512 => 512,
        d => {
            return Err(Error::backend(
                be.name(),
                format!("attention: head dim {d} > 512 is not supported by this kernel"),
            ))
        }
    };
    let kernel = ATTENTION.entry("attention").spec(Spec::MaxHeadDim(max_d));
    let threads = p.q_len * p.q_heads;
    let d = p.head_dim;
    // Running state per (query, head): acc[D], max, sum. Key chunks keep each invocation
    // within software adapters' loop limit.
    let state = be.f32_buf(threads * (d + 2))?;
    let state_span = Span::f32(&state, threads * (d + 2));
    // By queries: a query's heads and their state rows; every query reads all the keys and values.
    let split = Split::new("attention", p.q_len)
        .out(state_span, p.q_heads * (d + 2))
        .split("q", be.span(q, "attention")?, p.q_heads * d)
        .whole(be.inp(k, "attention k")?)
        .whole(be.inp(v, "attention v")?);
    let kc = (48_000 / (2 * d + 1)).max(1);
    let chunks = p.kv_len.div_ceil(kc).max(1);
    for piece in split.pieces(be)? {
        let (q0, t) = (piece.units.start, piece.len() * p.q_heads);
        let whole = AttentionArgs {
            threads: t as u32,
            // The causal mask compares a query's index with q_len (key j visible iff
            // j ≤ i + kv_len − q_len): a piece's queries are numbered from 0, so its q_len is
            // shortened by the queries before it.
            q_len: (p.q_len - q0) as u32,
            kv_len: p.kv_len as u32,
            q_heads: p.q_heads as u32,
            kv_heads: p.kv_heads as u32,
            head_dim: d as u32,
            scale: p.scale,
            causal: p.causal as u32,
            ..Default::default()
        };
        for c in 0..chunks {
            let args = AttentionArgs {
                key_start: (c * kc) as u32,
                key_end: ((c + 1) * kc).min(p.kv_len) as u32,
                first_chunk: (c == 0) as u32,
                last_chunk: (c == chunks - 1) as u32,
                ..whole
            };
            be.run(kernel, &args, &piece.inputs, piece.out, (t as u64).div_ceil(QUERY_GROUP))?;
        }
    }
    // Drop the two state columns: rows of D + 2 → rows of D.
    let n = threads * d;
    let out = be.f32_buf(n)?;
    let rows = Rows { count: threads, len: d, src: (d + 2, 0), dst: (d, 0) };
    copy_rows(be, state_span, Span::f32(&out, n), rows)?;
    be.finish(out, n, q.dtype())
}
