//! `rope` and `rms_norm_rope`: one pass over the tokens in parallel, each head rotated in place
//! (after its RMSNorm, kept in f32 between the two steps, for the fused op).

use super::norm::rms_scale;
use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::{HeadParams, Rope, RopePairing};
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
                let r = rms_scale(head, p.eps);
                head.iter_mut().zip(w.iter()).for_each(|(v, &g)| *v = *v * r * g);
            }
            rotate(head, &cos[angles.clone()], &sin[angles.clone()], rope.pairing);
        }
    });
    Ok(be.store(out, x.dtype()))
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
