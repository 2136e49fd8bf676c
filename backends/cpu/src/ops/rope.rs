//! `rope`, `rms_norm_rope` and `joint_qkv`: one pass over the tokens in parallel, each head
//! rotated in place (after its RMSNorm, kept in f32 between the two steps, for the fused ops).

use super::norm::rms_scale;
use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::{HeadParams, JointQkvParams, QkvStream, Rope, RopePairing};
use joyrt_core::{Result, Tensor};
use rayon::prelude::*;

/// Rotates every head of `x` by `rope`, after a per-head RMSNorm with gain `norm` when given.
pub fn rope(
    be: &CpuBackend,
    x: &Tensor<CpuBackend>,
    norm: Option<&Tensor<CpuBackend>>,
    rope: &Rope<CpuBackend>,
    p: &HeadParams,
) -> Result<CpuBuffer> {
    let (cos, sin) = (f32s(&rope.cos), f32s(&rope.sin));
    let w = norm.map(f32s);
    let d = p.head_dim;
    let mut out = f32s(x).into_owned();
    out.par_chunks_mut(p.heads * d).enumerate().for_each(|(l, tok)| {
        let angles = l * d / 2..(l + 1) * d / 2;
        for head in tok.chunks_mut(d) {
            if let Some(w) = &w {
                normalise(head, w, p.eps);
            }
            rotate(head, &cos[angles.clone()], &sin[angles.clone()], rope.pairing);
        }
    });
    Ok(be.store(out, x.dtype()))
}

/// Q, K, V of both streams into the joint `[L₀ + L₁, H, D]` layout: each token's q and k heads
/// normalised (and rotated where the stream has a table) exactly as `rms_norm_rope` / `rms_norm`
/// do, its v heads copied.
pub fn joint_qkv(
    be: &CpuBackend,
    streams: [&QkvStream<'_, CpuBackend>; 2],
    p: &JointQkvParams,
) -> Result<[CpuBuffer; 3]> {
    let (d, hd) = (p.head_dim, p.heads * p.head_dim);
    let total = p.tokens[0] + p.tokens[1];
    let mut outs = [vec![0f32; total * hd], vec![0f32; total * hd], vec![0f32; total * hd]];
    let mut first = 0;
    for (s, l_s) in streams.iter().zip(p.tokens) {
        let x = f32s(s.qkv);
        let tables = s.rope.map(|r| (f32s(&r.cos), f32s(&r.sin), r.pairing));
        let gains = [Some(f32s(s.q_norm)), Some(f32s(s.k_norm)), None];
        for (part, (out, gain)) in outs.iter_mut().zip(&gains).enumerate() {
            let rows = &mut out[first * hd..(first + l_s) * hd];
            rows.par_chunks_mut(hd).enumerate().for_each(|(l, tok)| {
                tok.copy_from_slice(&x[(3 * l + part) * hd..][..hd]);
                let Some(w) = gain else { return };
                let angles = l * d / 2..(l + 1) * d / 2;
                for head in tok.chunks_mut(d) {
                    normalise(head, w, p.eps);
                    if let Some((cos, sin, pairing)) = &tables {
                        rotate(head, &cos[angles.clone()], &sin[angles.clone()], *pairing);
                    }
                }
            });
        }
        first += l_s;
    }
    let dtype = streams[0].qkv.dtype();
    Ok(outs.map(|o| be.store(o, dtype)))
}

/// `rms_norm` of one head vector in place: `v·r·w` with `r = 1/√(mean(v²) + eps)`.
fn normalise(head: &mut [f32], w: &[f32], eps: f32) {
    let r = rms_scale(head, eps);
    head.iter_mut().zip(w).for_each(|(v, &g)| *v = *v * r * g);
}

/// Rotates one head vector in place by angles with the given cos/sin (`D/2` each).
fn rotate(head: &mut [f32], cos: &[f32], sin: &[f32], pairing: RopePairing) {
    let half = head.len() / 2;
    for m in 0..half {
        let (i, j) = match pairing {
            RopePairing::Interleaved => (2 * m, 2 * m + 1),
            RopePairing::HalfSplit => (m, m + half),
        };
        let (x1, x2) = (head[i], head[j]);
        head[i] = x1 * cos[m] - x2 * sin[m];
        head[j] = x2 * cos[m] + x1 * sin[m];
    }
}
