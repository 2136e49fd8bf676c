//! `gather_rows` (one rayon task per output row) and `scatter_rows` (a copy of `dst`, then the
//! rows of `src` in order).

use crate::{f32s, CpuBackend, CpuBuffer};
use joyrt_core::backend::{GatherParams, ScatterMode, ScatterParams};
use joyrt_core::{Result, Tensor};
use rayon::prelude::*;

pub fn gather_rows(
    be: &CpuBackend,
    table: &Tensor<CpuBackend>,
    index: &[u32],
    weights: Option<&[f32]>,
    p: &GatherParams,
) -> Result<CpuBuffer> {
    let t = f32s(table);
    let c = p.cols;
    let mut out = vec![0f32; p.rows * c];
    out.par_chunks_mut(c.max(1)).enumerate().for_each(|(n, o)| {
        for j in 0..p.taps {
            let (row, wt) = (index[n * p.taps + j] as usize, weights.map_or(1.0, |w| w[n * p.taps + j]));
            for (o, &v) in o.iter_mut().zip(&t[row * c..(row + 1) * c]) {
                *o += wt * v;
            }
        }
    });
    Ok(be.store(out, table.dtype()))
}

pub fn scatter_rows(
    be: &CpuBackend,
    dst: &Tensor<CpuBackend>,
    rows: &[u32],
    src: &Tensor<CpuBackend>,
    p: &ScatterParams,
) -> Result<CpuBuffer> {
    let mut out = f32s(dst).into_owned();
    let s = f32s(src);
    let c = p.cols;
    for (n, &r) in rows.iter().enumerate() {
        let (o, v) = (&mut out[r as usize * c..(r as usize + 1) * c], &s[n * c..(n + 1) * c]);
        match p.mode {
            ScatterMode::Assign => o.copy_from_slice(v),
            ScatterMode::Add => o.iter_mut().zip(v).for_each(|(o, v)| *o += v),
        }
    }
    Ok(be.store(out, dst.dtype()))
}
