//! `attention`: one rayon task per (head, 16-query block), one row of scores at a time (two-pass
//! f32 softmax), so memory stays O(Lk) per task.

use super::gemm::dot;
use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::AttentionParams;
use joyrt_core::{Result, Tensor};
use rayon::prelude::*;

pub fn attention(
    be: &CpuBackend,
    q: &Tensor<CpuBackend>,
    k: &Tensor<CpuBackend>,
    v: &Tensor<CpuBackend>,
    p: &AttentionParams,
) -> Result<CpuBuffer> {
    Ok(be.store(attention_f32(&f32s(q), &f32s(k), &f32s(v), p), q.dtype()))
}

/// Attention for `q [Lq, Hq, D]`, `k, v [Lk, Hkv, D]`.
fn attention_f32(q: &[f32], k: &[f32], v: &[f32], p: &AttentionParams) -> Vec<f32> {
    const QB: usize = 16;
    let (lq, lk, hq, hkv, d) = (p.q_len, p.kv_len, p.q_heads, p.kv_heads, p.head_dim);
    let group = hq / hkv;
    let blocks = lq.div_ceil(QB);
    // One task per (head, query block); results are scattered into [Lq, Hq, D] afterwards.
    let parts: Vec<(usize, usize, Vec<f32>)> = (0..hq * blocks)
        .into_par_iter()
        .map(|task| {
            let (h, blk) = (task / blocks, task % blocks);
            let kh = h / group;
            let (i0, i1) = (blk * QB, ((blk + 1) * QB).min(lq));
            let mut out = vec![0f32; (i1 - i0) * d];
            let mut scores = vec![0f32; lk];
            for i in i0..i1 {
                let qi = &q[(i * hq + h) * d..(i * hq + h + 1) * d];
                let visible = if p.causal { (i + lk - lq + 1).min(lk) } else { lk };
                let mut max = f32::NEG_INFINITY;
                for (j, s) in scores[..visible].iter_mut().enumerate() {
                    *s = p.scale * dot(qi, &k[(j * hkv + kh) * d..(j * hkv + kh + 1) * d]);
                    max = max.max(*s);
                }
                let mut sum = 0f32;
                for s in &mut scores[..visible] {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let o = &mut out[(i - i0) * d..(i - i0 + 1) * d];
                for (j, &s) in scores[..visible].iter().enumerate() {
                    let vj = &v[(j * hkv + kh) * d..(j * hkv + kh + 1) * d];
                    for (o, &vv) in o.iter_mut().zip(vj) {
                        *o += s * vv;
                    }
                }
                o.iter_mut().for_each(|x| *x /= sum);
            }
            (h, i0, out)
        })
        .collect();
    let mut y = vec![0f32; lq * hq * d];
    for (h, i0, part) in parts {
        for (r, row) in part.chunks(d).enumerate() {
            let i = i0 + r;
            y[(i * hq + h) * d..(i * hq + h + 1) * d].copy_from_slice(row);
        }
    }
    y
}
