//! `linear`: one rayon task per block of 8 rows of `x`; inside a block each weight row is read
//! once for the 8 dot products. `linear_quantized`: see its doc. Both apply their epilogue to the
//! f32 results before the one rounding to the output dtype.

use super::elementwise::gelu_tanh;
use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::{Epilogue, LinearParams, QuantActivations, QuantLinearParams};
use joyrt_core::quant::codec;
use joyrt_core::{Error, QuantizedMatrix, Result, Tensor};
use rayon::prelude::*;

pub fn linear(
    be: &CpuBackend,
    x: &Tensor<CpuBackend>,
    w: &Tensor<CpuBackend>,
    bias: Option<&Tensor<CpuBackend>>,
    epilogue: Epilogue<'_, CpuBackend>,
    p: &LinearParams,
) -> Result<CpuBuffer> {
    let b = bias.map(f32s);
    let out = linear_f32(&f32s(x), &f32s(w), b.as_deref(), p.m, p.k, p.n);
    Ok(be.store(apply(epilogue, out, p.n), x.dtype()))
}

/// `epilogue` on the f32 results `out [M, n]`, as the unfused `activation` / `gated_residual`
/// compute it from the rounded values.
fn apply(epilogue: Epilogue<'_, CpuBackend>, mut out: Vec<f32>, n: usize) -> Vec<f32> {
    match epilogue {
        Epilogue::None => {}
        Epilogue::GeluTanh => out.par_iter_mut().for_each(|v| *v = gelu_tanh(*v)),
        Epilogue::GatedResidual { residual, gate } => {
            let (r, g) = (f32s(residual), f32s(gate));
            out.par_chunks_mut(n.max(1)).zip(r.par_chunks(n.max(1))).for_each(|(o, r)| {
                for ((v, &r), &g) in o.iter_mut().zip(r).zip(g.iter()) {
                    *v = r + g * *v;
                }
            });
        }
    }
    out
}

/// `out[m, n] = Σ_k x[m, k]·w[n, k] + b[n]`.
pub fn linear_f32(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    const MB: usize = 8;
    let mut out = vec![0f32; m * n];
    out.par_chunks_mut(MB * n.max(1)).enumerate().for_each(|(blk, o)| {
        let rows = o.len() / n.max(1);
        let xb = &x[blk * MB * k..(blk * MB + rows) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let bias = b.map_or(0.0, |b| b[j]);
            for r in 0..rows {
                o[r * n + j] = dot(&xb[r * k..(r + 1) * k], wr) + bias;
            }
        }
    });
    out
}

/// Dot product with 8 independent partial sums (vectorisable, and a fixed summation order).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `linear_quantized`: one rayon task per block of 32 weight rows, which it dequantizes once
/// (`joyrt_core::quant::codec`, the format's one definition) into f32 and then dots with every
/// row of `x`, as `linear` does; the blocks' columns are then written into the output.
pub fn linear_quantized(
    be: &CpuBackend,
    x: &Tensor<CpuBackend>,
    w: &QuantizedMatrix<CpuBackend>,
    bias: Option<&Tensor<CpuBackend>>,
    epilogue: Epilogue<'_, CpuBackend>,
    p: &QuantLinearParams,
) -> Result<CpuBuffer> {
    const NB: usize = 32;
    let words = w.data().words().ok_or_else(|| {
        Error::backend("cpu", "linear_quantized: the weight's data is not a packed-words buffer")
    })?;
    let (m, k, n, rw, s) = (p.m, p.k, p.n, p.row_words, p.scales_per_row);
    let dtype = x.dtype();
    if m == 0 {
        return Ok(be.store(Vec::new(), dtype));
    }
    let x = match p.activations {
        QuantActivations::Native => f32s(x),
        QuantActivations::Fp8PerRow => std::borrow::Cow::Owned(fp8_rows(&f32s(x), k)),
    };
    let scales = f32s(w.scales());
    let b = bias.map(f32s);
    if be.dequantizes_whole() {
        let dense = dequantize_whole(p, words, &scales);
        return Ok(be.store(apply(epilogue, linear_f32(&x, &dense, b.as_deref(), m, k, n), n), dtype));
    }
    let blocks: Vec<Vec<f32>> = (0..n.div_ceil(NB))
        .into_par_iter()
        .map(|blk| {
            let rows = NB.min(n - blk * NB);
            let mut deq = vec![0f32; rows * k];
            for (r, d) in deq.chunks_exact_mut(k).enumerate() {
                let j = blk * NB + r;
                codec::dequantize_row_words(
                    p.format,
                    k,
                    &words[j * rw..(j + 1) * rw],
                    &scales[j * s..(j + 1) * s],
                    d,
                );
            }
            let mut o = vec![0f32; m * rows];
            for i in 0..m {
                let xr = &x[i * k..(i + 1) * k];
                for (r, d) in deq.chunks_exact(k).enumerate() {
                    o[i * rows + r] = dot(xr, d) + b.as_ref().map_or(0.0, |b| b[blk * NB + r]);
                }
            }
            o
        })
        .collect();
    let mut out = vec![0f32; m * n];
    out.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, orow)| {
        for (blk, o) in blocks.iter().enumerate() {
            let rows = o.len() / m;
            orow[blk * NB..blk * NB + rows].copy_from_slice(&o[i * rows..(i + 1) * rows]);
        }
    });
    Ok(be.store(apply(epilogue, out, n), dtype))
}

/// Each row of `x [.., k]` quantized to E4M3 with its own scale and dequantized, exactly as
/// [`QuantActivations::Fp8PerRow`] defines it.
fn fp8_rows(x: &[f32], k: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(k.max(1)).zip(x.par_chunks(k.max(1))).for_each(|(o, row)| {
        let s = row.iter().fold(0f32, |m, v| m.max(v.abs())) / 448.0;
        if s > 0.0 {
            for (o, v) in o.iter_mut().zip(row) {
                *o = codec::e4m3_to_f32(codec::f32_to_e4m3(v / s)) * s;
            }
        }
    });
    out
}

/// The whole `[n, k]` weight in f32 through the host codec (`codec::dequantize_rows`, from the
/// stored bytes), a path independent of the blocked kernel's word decoder.
fn dequantize_whole(p: &QuantLinearParams, words: &[u32], scales: &[f32]) -> Vec<f32> {
    let (k, rw, rb) = (p.k, p.row_words, p.format.row_bytes(p.k));
    let mut codes = Vec::with_capacity(p.n * rb);
    for row in words.chunks_exact(rw) {
        let bytes: Vec<u8> = row.iter().flat_map(|w| w.to_le_bytes()).collect();
        codes.extend_from_slice(&bytes[..rb]);
    }
    codec::dequantize_rows(p.format, k, &codes, scales)
}

#[cfg(test)]
mod tests {
    use super::fp8_rows;

    /// Each row gets its own scale absmax / 448 (here 56 / 448 = 0.125 exactly, so the values
    /// on E4M3's grid come back exactly), values between grid points round to the nearest (8.8 →
    /// 9 at E4M3's step of 1 in [8, 16)), and a zero row stays zero.
    #[test]
    fn fp8_rows_quantize_each_row_with_its_own_scale() {
        let x = [56.0, -3.0, 1.1, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(fp8_rows(&x, 5), [56.0, -3.0, 1.125, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
