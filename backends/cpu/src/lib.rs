//! joyrt-cpu: the reference backend.
//!
//! Every op widens its inputs to f32, computes in f32 (f32 accumulation, f32 softmax and norm
//! statistics) and rounds once to the output dtype (round to nearest even). Simple and obviously
//! right first; multi-threaded with rayon where the work is: GEMM rows, attention (head × query
//! block), convolution output channels, and large elementwise ops.
//!
//! Threading and tiling: `linear` splits `x` into blocks of 8 rows, one rayon task per block; inside
//! a block each weight row is read once for the 8 dot products (8 independent accumulators per dot
//! so the compiler vectorises). `attention` runs one task per (head, 16-query block) and keeps one
//! row of scores at a time (two-pass f32 softmax), so memory stays O(Lk) per task. `conv2d` runs
//! one task per output channel with a direct loop whose inner dimension is the output row.

use half::{bf16, f16};
use joyrt_core::backend::*;
use joyrt_core::{Backend, DType, Error, Result, Tensor};
use rayon::prelude::*;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod kernels;

/// Host memory holding one tensor.
pub struct CpuBuffer {
    data: Data,
    stats: Arc<MemStats>,
}

enum Data {
    F32(Vec<f32>),
    BF16(Vec<bf16>),
    F16(Vec<f16>),
}

#[derive(Default)]
struct MemStats {
    current: AtomicU64,
    peak: AtomicU64,
}

impl MemStats {
    fn add(&self, bytes: u64) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        self.stats.current.fetch_sub(self.bytes(), Ordering::Relaxed);
    }
}

impl CpuBuffer {
    fn bytes(&self) -> u64 {
        match &self.data {
            Data::F32(v) => 4 * v.len() as u64,
            Data::BF16(v) => 2 * v.len() as u64,
            Data::F16(v) => 2 * v.len() as u64,
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::BF16(v) => v.len(),
            Data::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as f32 (borrowed when already f32).
    pub fn f32(&self) -> Cow<'_, [f32]> {
        match &self.data {
            Data::F32(v) => Cow::Borrowed(v),
            Data::BF16(v) => Cow::Owned(v.par_iter().map(|x| x.to_f32()).collect()),
            Data::F16(v) => Cow::Owned(v.par_iter().map(|x| x.to_f32()).collect()),
        }
    }
}

/// The CPU backend. Cloning shares the memory counters.
#[derive(Clone, Default)]
pub struct CpuBackend {
    stats: Arc<MemStats>,
}

impl CpuBackend {
    /// Bytes held by live buffers now, and the most held at once since the backend was made.
    pub fn memory_stats(&self) -> (u64, u64) {
        (self.stats.current.load(Ordering::Relaxed), self.stats.peak.load(Ordering::Relaxed))
    }

    fn buffer(&self, data: Data) -> CpuBuffer {
        let b = CpuBuffer { data, stats: self.stats.clone() };
        self.stats.add(b.bytes());
        b
    }

    /// Stores f32 results as `dtype`.
    fn store(&self, v: Vec<f32>, dtype: DType) -> CpuBuffer {
        self.buffer(match dtype {
            DType::F32 => Data::F32(v),
            DType::BF16 => Data::BF16(v.par_iter().map(|&x| bf16::from_f32(x)).collect()),
            DType::F16 => Data::F16(v.par_iter().map(|&x| f16::from_f32(x)).collect()),
        })
    }
}

fn f32s(t: &Tensor<CpuBackend>) -> Cow<'_, [f32]> {
    t.buffer().f32()
}

/// Elementwise map over a possibly large slice, in parallel chunks.
fn par_map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    x.par_iter().with_min_len(4096).map(|&v| f(v)).collect()
}

impl Backend for CpuBackend {
    type Buffer = CpuBuffer;

    fn name(&self) -> String {
        "cpu".into()
    }

    fn zeros(&self, dtype: DType, len: usize) -> Result<CpuBuffer> {
        Ok(self.buffer(match dtype {
            DType::F32 => Data::F32(vec![0.0; len]),
            DType::BF16 => Data::BF16(vec![bf16::ZERO; len]),
            DType::F16 => Data::F16(vec![f16::ZERO; len]),
        }))
    }

    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<CpuBuffer> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(Error::backend(
                "cpu",
                format!("upload: {} bytes is not a whole number of {dtype} elements", bytes.len()),
            ));
        }
        let u16s = || bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
        Ok(self.buffer(match dtype {
            DType::F32 => Data::F32(dtype.decode_f32(bytes)),
            DType::BF16 => Data::BF16(u16s().map(bf16::from_bits).collect()),
            DType::F16 => Data::F16(u16s().map(f16::from_bits).collect()),
        }))
    }

    fn download(&self, x: &Tensor<Self>) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(x.buffer().bytes() as usize);
        match &x.buffer().data {
            Data::F32(v) => v.iter().for_each(|e| out.extend_from_slice(&e.to_le_bytes())),
            Data::BF16(v) => v.iter().for_each(|e| out.extend_from_slice(&e.to_bits().to_le_bytes())),
            Data::F16(v) => v.iter().for_each(|e| out.extend_from_slice(&e.to_bits().to_le_bytes())),
        }
        Ok(out)
    }

    fn cast(&self, x: &Tensor<Self>, to: DType) -> Result<CpuBuffer> {
        Ok(self.store(f32s(x).into_owned(), to))
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn permute(&self, x: &Tensor<Self>, p: &PermuteParams) -> Result<CpuBuffer> {
        Ok(self.store(kernels::permute(&f32s(x), &p.dims, &p.perm), x.dtype()))
    }

    fn slice(&self, x: &Tensor<Self>, p: &SliceParams) -> Result<CpuBuffer> {
        let xv = f32s(x);
        let mut out = Vec::with_capacity(p.outer * p.len);
        for o in 0..p.outer {
            let row = o * p.x_inner + p.start;
            out.extend_from_slice(&xv[row..row + p.len]);
        }
        Ok(self.store(out, x.dtype()))
    }

    fn concat(&self, xs: &[&Tensor<Self>], p: &ConcatParams) -> Result<CpuBuffer> {
        let dtype = xs[0].dtype();
        if let Some(bad) = xs.iter().find(|t| t.dtype() != dtype) {
            return Err(Error::DType { op: "concat", dtype: bad.dtype() });
        }
        let vs: Vec<Cow<[f32]>> = xs.iter().map(|t| f32s(t)).collect();
        let mut out = Vec::with_capacity(p.outer * p.inners.iter().sum::<usize>());
        for o in 0..p.outer {
            for (v, &inner) in vs.iter().zip(&p.inners) {
                out.extend_from_slice(&v[o * inner..(o + 1) * inner]);
            }
        }
        Ok(self.store(out, dtype))
    }

    fn linear(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        p: &LinearParams,
    ) -> Result<CpuBuffer> {
        let b = bias.map(f32s);
        Ok(self.store(kernels::linear(&f32s(x), &f32s(w), b.as_deref(), p.m, p.k, p.n), x.dtype()))
    }

    fn layer_norm(
        &self,
        x: &Tensor<Self>,
        w: Option<&Tensor<Self>>,
        b: Option<&Tensor<Self>>,
        p: &NormParams,
    ) -> Result<CpuBuffer> {
        let (w, b) = (w.map(f32s), b.map(f32s));
        let out = kernels::rows(&f32s(x), p.cols, |row, out| {
            let (mean, rstd) = kernels::mean_rstd(row, p.eps);
            for (c, (o, &v)) in out.iter_mut().zip(row).enumerate() {
                let n = (v - mean) * rstd;
                *o = n * w.as_ref().map_or(1.0, |w| w[c]) + b.as_ref().map_or(0.0, |b| b[c]);
            }
        });
        Ok(self.store(out, x.dtype()))
    }

    fn layer_norm_modulate(
        &self,
        x: &Tensor<Self>,
        shift: &Tensor<Self>,
        scale: &Tensor<Self>,
        p: &NormParams,
    ) -> Result<CpuBuffer> {
        let (sh, sc) = (f32s(shift), f32s(scale));
        let out = kernels::rows(&f32s(x), p.cols, |row, out| {
            let (mean, rstd) = kernels::mean_rstd(row, p.eps);
            for (c, (o, &v)) in out.iter_mut().zip(row).enumerate() {
                *o = (v - mean) * rstd * (1.0 + sc[c]) + sh[c];
            }
        });
        Ok(self.store(out, x.dtype()))
    }

    fn rms_norm(&self, x: &Tensor<Self>, w: &Tensor<Self>, p: &NormParams) -> Result<CpuBuffer> {
        let w = f32s(w);
        let out = kernels::rows(&f32s(x), p.cols, |row, out| {
            let r = kernels::rms_scale(row, p.eps);
            for (c, (o, &v)) in out.iter_mut().zip(row).enumerate() {
                *o = v * r * w[c];
            }
        });
        Ok(self.store(out, x.dtype()))
    }

    fn channel_rms_norm(
        &self,
        x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        p: &ChannelParams,
    ) -> Result<CpuBuffer> {
        let (xv, g) = (f32s(x), f32s(gamma));
        let (c, n) = (p.channels, p.positions);
        let mut inv = vec![0f32; n];
        for ch in 0..c {
            for (s, &v) in inv.iter_mut().zip(&xv[ch * n..(ch + 1) * n]) {
                *s += v * v;
            }
        }
        let root_c = (c as f32).sqrt();
        inv.iter_mut().for_each(|s| *s = root_c / s.sqrt().max(1e-12));
        let mut out = vec![0f32; c * n];
        out.par_chunks_mut(n).enumerate().for_each(|(ch, o)| {
            for ((o, &v), &s) in o.iter_mut().zip(&xv[ch * n..(ch + 1) * n]).zip(&inv) {
                *o = v * s * g[ch];
            }
        });
        Ok(self.store(out, x.dtype()))
    }

    fn rope(&self, x: &Tensor<Self>, rope: &Rope<Self>, p: &HeadParams) -> Result<CpuBuffer> {
        let (cos, sin) = (f32s(&rope.cos), f32s(&rope.sin));
        let d = p.head_dim;
        let mut out = f32s(x).into_owned();
        out.par_chunks_mut(p.heads * d).enumerate().for_each(|(l, tok)| {
            for head in tok.chunks_mut(d) {
                kernels::rotate(
                    head,
                    &cos[l * d / 2..(l + 1) * d / 2],
                    &sin[l * d / 2..(l + 1) * d / 2],
                    rope.pairing,
                );
            }
        });
        Ok(self.store(out, x.dtype()))
    }

    fn rms_norm_rope(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        rope: &Rope<Self>,
        p: &HeadParams,
    ) -> Result<CpuBuffer> {
        let (cos, sin, w) = (f32s(&rope.cos), f32s(&rope.sin), f32s(w));
        let d = p.head_dim;
        let mut out = f32s(x).into_owned();
        out.par_chunks_mut(p.heads * d).enumerate().for_each(|(l, tok)| {
            for head in tok.chunks_mut(d) {
                let r = kernels::rms_scale(head, p.eps);
                head.iter_mut().zip(w.iter()).for_each(|(v, &g)| *v = *v * r * g);
                kernels::rotate(
                    head,
                    &cos[l * d / 2..(l + 1) * d / 2],
                    &sin[l * d / 2..(l + 1) * d / 2],
                    rope.pairing,
                );
            }
        });
        Ok(self.store(out, x.dtype()))
    }

    fn activation(&self, x: &Tensor<Self>, act: Activation) -> Result<CpuBuffer> {
        let f = match act {
            Activation::Silu => kernels::silu,
            Activation::GeluTanh => kernels::gelu_tanh,
            Activation::GeluErf => kernels::gelu_erf,
        };
        Ok(self.store(par_map(&f32s(x), f), x.dtype()))
    }

    fn swiglu(&self, gate: &Tensor<Self>, up: &Tensor<Self>) -> Result<CpuBuffer> {
        let (g, u) = (f32s(gate), f32s(up));
        let out =
            g.par_iter().zip(u.par_iter()).with_min_len(4096).map(|(&g, &u)| kernels::silu(g) * u).collect();
        Ok(self.store(out, gate.dtype()))
    }

    fn binary(&self, a: &Tensor<Self>, b: &Tensor<Self>, p: &BinaryParams) -> Result<CpuBuffer> {
        let (av, bv) = (f32s(a), f32s(b));
        let op = |x: f32, y: f32| match p.op {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
        };
        let out = (0..p.len)
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| {
                let j = match p.broadcast {
                    Broadcast::None => i,
                    Broadcast::Row { inner } => i % inner,
                    Broadcast::Col { inner } => i / inner,
                };
                op(av[i], bv[j])
            })
            .collect();
        Ok(self.store(out, a.dtype()))
    }

    fn scaled_add(&self, x: &Tensor<Self>, z: &Tensor<Self>, alpha: f32) -> Result<CpuBuffer> {
        let (xv, zv) = (f32s(x), f32s(z));
        let out = xv.par_iter().zip(zv.par_iter()).with_min_len(4096).map(|(&x, &z)| x + alpha * z).collect();
        Ok(self.store(out, x.dtype()))
    }

    fn gated_residual(
        &self,
        x: &Tensor<Self>,
        z: &Tensor<Self>,
        gate: &Tensor<Self>,
        p: &RowsParams,
    ) -> Result<CpuBuffer> {
        let (xv, zv, g) = (f32s(x), f32s(z), f32s(gate));
        let out = (0..p.rows * p.cols)
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| xv[i] + g[i % p.cols] * zv[i])
            .collect();
        Ok(self.store(out, x.dtype()))
    }

    fn cfg_renorm(&self, cond: &Tensor<Self>, uncond: &Tensor<Self>, p: &CfgParams) -> Result<CpuBuffer> {
        let (c, u) = (f32s(cond), f32s(uncond));
        let (ch, n) = (p.channels, p.positions);
        let mut out = vec![0f32; ch * n];
        for pos in 0..n {
            let (mut nc, mut ng) = (0f32, 0f32);
            for k in 0..ch {
                let (cv, uv) = (c[k * n + pos], u[k * n + pos]);
                let g = uv + p.guidance * (cv - uv);
                out[k * n + pos] = g;
                nc += cv * cv;
                ng += g * g;
            }
            let s = nc.sqrt() / ng.sqrt().max(1e-6);
            for k in 0..ch {
                out[k * n + pos] *= s;
            }
        }
        Ok(self.store(out, cond.dtype()))
    }

    fn attention(
        &self,
        q: &Tensor<Self>,
        k: &Tensor<Self>,
        v: &Tensor<Self>,
        p: &AttentionParams,
    ) -> Result<CpuBuffer> {
        Ok(self.store(kernels::attention(&f32s(q), &f32s(k), &f32s(v), p), q.dtype()))
    }

    fn conv2d(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        p: &Conv2dParams,
    ) -> Result<CpuBuffer> {
        let b = bias.map(f32s);
        Ok(self.store(kernels::conv2d(&f32s(x), &f32s(w), b.as_deref(), p), x.dtype()))
    }

    fn upsample_nearest2x(&self, x: &Tensor<Self>, p: &ImageParams) -> Result<CpuBuffer> {
        let xv = f32s(x);
        let (h, w) = (p.height, p.width);
        let mut out = vec![0f32; p.channels * 4 * h * w];
        out.par_chunks_mut(2 * w).enumerate().for_each(|(row, o)| {
            let (c, y) = (row / (2 * h), (row % (2 * h)) / 2);
            for (xo, v) in o.iter_mut().enumerate() {
                *v = xv[(c * h + y) * w + xo / 2];
            }
        });
        Ok(self.store(out, x.dtype()))
    }

    fn gather_rows(
        &self,
        table: &Tensor<Self>,
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
        Ok(self.store(out, table.dtype()))
    }

    fn scatter_rows(
        &self,
        dst: &Tensor<Self>,
        rows: &[u32],
        src: &Tensor<Self>,
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
        Ok(self.store(out, dst.dtype()))
    }
}
