//! `Tensor<B>`: a handle to a contiguous tensor on a backend, and the checked op methods the
//! model graphs call. Each method validates shapes and dtypes, derives the sizes the backend
//! needs, and wraps the backend's output buffer with its shape.

use crate::backend::*;
use crate::{DType, Error, Result, Shape};
use std::sync::Arc;

mod fused;

/// A contiguous row-major tensor living on backend `B`. Cloning is cheap (the buffer is shared);
/// tensors are immutable values, so every op returns a new tensor.
pub struct Tensor<B: Backend> {
    backend: B,
    buf: Arc<B::Buffer>,
    shape: Shape,
    dtype: DType,
}

impl<B: Backend> Clone for Tensor<B> {
    fn clone(&self) -> Self {
        Tensor {
            backend: self.backend.clone(),
            buf: self.buf.clone(),
            shape: self.shape.clone(),
            dtype: self.dtype,
        }
    }
}

impl<B: Backend> std::fmt::Debug for Tensor<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({} {} on {})", self.dtype, self.shape, self.backend.name())
    }
}

fn check(cond: bool, op: &'static str, msg: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::shape(op, msg()))
    }
}

impl<B: Backend> Tensor<B> {
    /// Wraps a backend buffer that holds exactly `shape.numel()` elements of `dtype`.
    pub fn from_buffer(backend: &B, buf: B::Buffer, shape: impl Into<Shape>, dtype: DType) -> Self {
        Tensor { backend: backend.clone(), buf: Arc::new(buf), shape: shape.into(), dtype }
    }

    /// Uploads little-endian bytes of `dtype`.
    pub fn from_bytes(backend: &B, shape: impl Into<Shape>, dtype: DType, bytes: &[u8]) -> Result<Self> {
        let shape = shape.into();
        if bytes.len() != shape.numel() * dtype.size() {
            return Err(Error::shape(
                "upload",
                format!(
                    "{} bytes given for {dtype} {shape} ({} expected)",
                    bytes.len(),
                    shape.numel() * dtype.size()
                ),
            ));
        }
        let buf = backend.upload(dtype, bytes)?;
        Ok(Self::from_buffer(backend, buf, shape, dtype))
    }

    /// Uploads f32 values, stored as `dtype` (rounded to nearest even).
    pub fn from_f32(backend: &B, shape: impl Into<Shape>, values: &[f32], dtype: DType) -> Result<Self> {
        let shape = shape.into();
        if values.len() != shape.numel() {
            return Err(Error::shape(
                "upload",
                format!("{} values given for shape {shape} ({} elements)", values.len(), shape.numel()),
            ));
        }
        Self::from_bytes(backend, shape, dtype, &dtype.encode_f32(values))
    }

    /// A zero tensor.
    pub fn zeros(backend: &B, shape: impl Into<Shape>, dtype: DType) -> Result<Self> {
        let shape = shape.into();
        let buf = backend.zeros(dtype, shape.numel())?;
        Ok(Self::from_buffer(backend, buf, shape, dtype))
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }
    pub fn buffer(&self) -> &B::Buffer {
        &self.buf
    }
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// Little-endian bytes of the elements.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.backend.download(self)
    }

    /// The elements widened to f32.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        Ok(self.dtype.decode_f32(&self.to_bytes()?))
    }

    /// [`Tensor::to_f32_vec`] through [`Backend::download_async`] (what the pipeline calls).
    pub async fn to_f32_vec_async(&self) -> Result<Vec<f32>> {
        Ok(self.dtype.decode_f32(&self.backend.download_async(self).await?))
    }

    fn wrap(&self, buf: B::Buffer, shape: impl Into<Shape>, dtype: DType) -> Self {
        Self::from_buffer(&self.backend, buf, shape, dtype)
    }

    /// The same elements under another shape with the same element count (no copy).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        check(shape.numel() == self.numel(), "reshape", || format!("{} cannot become {shape}", self.shape))?;
        Ok(Tensor { shape, ..self.clone() })
    }

    /// Converts to another storage dtype (a no-op handle clone when it already is).
    pub fn cast(&self, to: DType) -> Result<Self> {
        if to == self.dtype {
            return Ok(self.clone());
        }
        Ok(self.wrap(self.backend.cast(self, to)?, self.shape.clone(), to))
    }

    // ---- layout ------------------------------------------------------------------------------

    /// Reorders axes: output axis `a` is input axis `perm[a]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Self> {
        let dims = self.dims();
        let mut seen = vec![false; dims.len()];
        let ok = perm.len() == dims.len()
            && perm.iter().all(|&a| a < dims.len() && !std::mem::replace(&mut seen[a], true));
        check(ok, "permute", || format!("{perm:?} is not a permutation of the axes of {}", self.shape))?;
        check(dims.len() <= 6, "permute", || format!("rank {} > 6", dims.len()))?;
        let out: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
        let p = PermuteParams { dims: dims.to_vec(), perm: perm.to_vec() };
        Ok(self.wrap(self.backend.permute(self, &p)?, out, self.dtype))
    }

    /// Swaps the last two axes.
    pub fn transpose_last2(&self) -> Result<Self> {
        let r = self.shape.rank();
        check(r >= 2, "transpose", || format!("needs rank ≥ 2, got {}", self.shape))?;
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.permute(&perm)
    }

    /// `len` entries of `axis` starting at `start`.
    pub fn slice(&self, axis: usize, start: usize, len: usize) -> Result<Self> {
        check(axis < self.shape.rank(), "slice", || format!("axis {axis} out of range for {}", self.shape))?;
        let n = self.shape.dim(axis);
        check(start + len <= n, "slice", || {
            format!("[{start}, {}) out of range of axis {axis} in {}", start + len, self.shape)
        })?;
        let inner = self.shape.inner(axis);
        let p = SliceParams {
            outer: self.shape.outer(axis),
            x_inner: n * inner,
            start: start * inner,
            len: len * inner,
        };
        let mut out = self.dims().to_vec();
        out[axis] = len;
        Ok(self.wrap(self.backend.slice(self, &p)?, out, self.dtype))
    }

    /// Joins tensors along `axis`; all other dims and the dtype must agree.
    pub fn concat(xs: &[&Self], axis: usize) -> Result<Self> {
        let first = xs.first().ok_or_else(|| Error::shape("concat", "no tensors"))?;
        let rank = first.shape.rank();
        check(axis < rank, "concat", || format!("axis {axis} out of range for {}", first.shape))?;
        let mut out = first.dims().to_vec();
        out[axis] = 0;
        for x in xs {
            let ok = x.shape.rank() == rank
                && (0..rank).all(|a| a == axis || x.shape.dim(a) == first.shape.dim(a))
                && x.dtype == first.dtype;
            check(ok, "concat", || {
                format!(
                    "{} {} does not match {} {} off axis {axis}",
                    x.dtype, x.shape, first.dtype, first.shape
                )
            })?;
            out[axis] += x.shape.dim(axis);
        }
        let p = ConcatParams {
            outer: first.shape.outer(axis),
            inners: xs.iter().map(|x| x.shape.dim(axis) * x.shape.inner(axis)).collect(),
        };
        Ok(first.wrap(first.backend.concat(xs, &p)?, out, first.dtype))
    }

    // ---- GEMM --------------------------------------------------------------------------------

    /// `x [.., K] · wᵀ + bias` with `w [N, K]` → `[.., N]`.
    pub fn linear(&self, w: &Self, bias: Option<&Self>) -> Result<Self> {
        self.linear_with(w, bias, Epilogue::None)
    }

    /// [`Tensor::linear`] with `epilogue` applied to each f32 result before its rounding.
    pub fn linear_with(&self, w: &Self, bias: Option<&Self>, epilogue: Epilogue<'_, B>) -> Result<Self> {
        let k = self.shape.last();
        check(w.shape.rank() == 2 && w.shape.dim(1) == k && self.shape.rank() >= 1, "linear", || {
            format!("x {} does not fit weight {} (expected [N, {k}])", self.shape, w.shape)
        })?;
        let n = w.shape.dim(0);
        if let Some(b) = bias {
            check(b.numel() == n, "linear", || format!("bias {} does not match N = {n}", b.shape))?;
        }
        let m = self.numel() / k.max(1);
        let mut out = self.dims().to_vec();
        *out.last_mut().unwrap() = n;
        self.check_epilogue("linear", &epilogue, &out)?;
        let p = LinearParams { m, k, n };
        Ok(self.wrap(self.backend.linear(self, w, bias, epilogue, &p)?, out, self.dtype))
    }

    /// `x·dequant(w)ᵀ + bias` for a quantized weight `w [N, K]` (see `Backend::linear_quantized`).
    pub fn linear_quantized(&self, w: &crate::QuantizedMatrix<B>, bias: Option<&Self>) -> Result<Self> {
        self.linear_quantized_with(w, bias, Epilogue::None)
    }

    /// [`Tensor::linear_quantized`] with `epilogue` applied to each f32 result before its rounding.
    pub fn linear_quantized_with(
        &self,
        w: &crate::QuantizedMatrix<B>,
        bias: Option<&Self>,
        epilogue: Epilogue<'_, B>,
    ) -> Result<Self> {
        let activations = self.backend.quantized_activations(w.format());
        self.linear_quantized_as(w, bias, epilogue, activations)
    }

    /// [`Tensor::linear_quantized_with`] with the activations handled as `activations` says
    /// (whatever the backend's default; W8A8 needs an fp8 weight).
    pub fn linear_quantized_as(
        &self,
        w: &crate::QuantizedMatrix<B>,
        bias: Option<&Self>,
        epilogue: Epilogue<'_, B>,
        activations: QuantActivations,
    ) -> Result<Self> {
        check(
            activations == QuantActivations::Native || w.format() == crate::QuantFormat::Fp8E4M3,
            "linear_quantized",
            || format!("{activations:?} activations need an fp8 weight, not {}", w.format()),
        )?;
        let (k, n) = (w.cols(), w.rows());
        check(self.shape.rank() >= 1 && self.shape.last() == k, "linear_quantized", || {
            format!("x {} does not fit the {} weight [{n}, {k}]", self.shape, w.format())
        })?;
        if let Some(b) = bias {
            check(b.numel() == n, "linear_quantized", || format!("bias {} does not match N = {n}", b.shape))?;
        }
        let f = w.format();
        let p = QuantLinearParams {
            m: self.numel() / k.max(1),
            k,
            n,
            format: f,
            block: f.block(k),
            scales_per_row: f.scales_per_row(k),
            row_words: f.row_words(k),
            activations,
        };
        let mut out = self.dims().to_vec();
        *out.last_mut().unwrap() = n;
        self.check_epilogue("linear_quantized", &epilogue, &out)?;
        Ok(self.wrap(self.backend.linear_quantized(self, w, bias, epilogue, &p)?, out, self.dtype))
    }

    // ---- normalisation -----------------------------------------------------------------------

    fn row_params(&self, op: &'static str, vecs: &[Option<&Self>], eps: f32) -> Result<NormParams> {
        let cols = self.shape.last();
        for v in vecs.iter().flatten() {
            check(v.numel() == cols, op, || {
                format!("parameter {} does not match the last dim of x {}", v.shape, self.shape)
            })?;
        }
        Ok(NormParams { rows: self.numel() / cols.max(1), cols, eps })
    }

    /// LayerNorm over the last dim with optional affine weight and bias.
    pub fn layer_norm(&self, w: Option<&Self>, b: Option<&Self>, eps: f32) -> Result<Self> {
        let p = self.row_params("layer_norm", &[w, b], eps)?;
        Ok(self.wrap(self.backend.layer_norm(self, w, b, &p)?, self.shape.clone(), self.dtype))
    }

    /// `LN(x)·(1 + scale) + shift` over the last dim.
    pub fn layer_norm_modulate(&self, shift: &Self, scale: &Self, eps: f32) -> Result<Self> {
        let p = self.row_params("layer_norm_modulate", &[Some(shift), Some(scale)], eps)?;
        Ok(self.wrap(
            self.backend.layer_norm_modulate(self, shift, scale, &p)?,
            self.shape.clone(),
            self.dtype,
        ))
    }

    /// RMSNorm over the last dim with weight `w`.
    pub fn rms_norm(&self, w: &Self, eps: f32) -> Result<Self> {
        let p = self.row_params("rms_norm", &[Some(w)], eps)?;
        Ok(self.wrap(self.backend.rms_norm(self, w, &p)?, self.shape.clone(), self.dtype))
    }

    /// Channel RMS norm of `x [C, ...]` (channel-first) with `gamma [C]`.
    pub fn channel_rms_norm(&self, gamma: &Self) -> Result<Self> {
        check(self.shape.rank() >= 1, "channel_rms_norm", || "rank-0 input".into())?;
        let c = self.shape.dim(0);
        check(gamma.numel() == c, "channel_rms_norm", || {
            format!("gamma {} does not match C = {c} of x {}", gamma.shape, self.shape)
        })?;
        let p = ChannelParams { channels: c, positions: self.numel() / c.max(1) };
        Ok(self.wrap(self.backend.channel_rms_norm(self, gamma, &p)?, self.shape.clone(), self.dtype))
    }

    // ---- rotary ------------------------------------------------------------------------------

    fn head_params(&self, op: &'static str, rope: Option<&Rope<B>>, eps: f32) -> Result<HeadParams> {
        check(self.shape.rank() == 3, op, || format!("expects [L, H, D], got {}", self.shape))?;
        let (l, h, d) = (self.shape.dim(0), self.shape.dim(1), self.shape.dim(2));
        if let Some(r) = rope {
            check(d.is_multiple_of(2), op, || format!("head dim {d} is odd"))?;
            for t in [&r.cos, &r.sin] {
                check(t.dims() == [l, d / 2] && t.dtype == DType::F32, op, || {
                    format!("rope table {} {} does not match f32 [{l}, {}]", t.dtype, t.shape, d / 2)
                })?;
            }
        }
        Ok(HeadParams { tokens: l, heads: h, head_dim: d, eps })
    }

    /// Rotates `x [L, H, D]` by a rope table.
    pub fn rope(&self, rope: &Rope<B>) -> Result<Self> {
        let p = self.head_params("rope", Some(rope), 0.0)?;
        Ok(self.wrap(self.backend.rope(self, rope, &p)?, self.shape.clone(), self.dtype))
    }

    /// Per-head RMSNorm of `x [L, H, D]` with `w [D]`, then rotation.
    pub fn rms_norm_rope(&self, w: &Self, rope: &Rope<B>, eps: f32) -> Result<Self> {
        let p = self.head_params("rms_norm_rope", Some(rope), eps)?;
        check(w.numel() == p.head_dim, "rms_norm_rope", || {
            format!("weight {} does not match head dim {}", w.shape, p.head_dim)
        })?;
        Ok(self.wrap(self.backend.rms_norm_rope(self, w, rope, &p)?, self.shape.clone(), self.dtype))
    }

    // ---- elementwise -------------------------------------------------------------------------

    pub fn activation(&self, act: Activation) -> Result<Self> {
        Ok(self.wrap(self.backend.activation(self, act)?, self.shape.clone(), self.dtype))
    }
    pub fn silu(&self) -> Result<Self> {
        self.activation(Activation::Silu)
    }
    pub fn gelu_tanh(&self) -> Result<Self> {
        self.activation(Activation::GeluTanh)
    }
    pub fn gelu_erf(&self) -> Result<Self> {
        self.activation(Activation::GeluErf)
    }

    /// `silu(self) ⊙ up`.
    pub fn swiglu(&self, up: &Self) -> Result<Self> {
        check(self.shape == up.shape, "swiglu", || format!("gate {} vs up {}", self.shape, up.shape))?;
        Ok(self.wrap(self.backend.swiglu(self, up)?, self.shape.clone(), self.dtype))
    }

    /// `self ∘ b`. `b` may have the same number of elements, or match a trailing block of dims
    /// (broadcast over leading rows), or match a leading block of dims (broadcast over trailing
    /// positions), e.g. a per-channel `[C]` or `[C, 1, 1]` against `[C, H, W]`.
    pub fn binary(&self, b: &Self, op: BinaryOp) -> Result<Self> {
        let len = self.numel();
        let broadcast = if b.numel() == len {
            Broadcast::None
        } else {
            let a = self.dims();
            let bd: Vec<usize> = b.dims().iter().copied().skip_while(|&d| d == 1).collect();
            let bt: Vec<usize> = {
                let mut v = b.dims().to_vec();
                while v.last() == Some(&1) {
                    v.pop();
                }
                v
            };
            if !bd.is_empty() && a.ends_with(&bd) {
                Broadcast::Row { inner: b.numel() }
            } else if !bt.is_empty() && a.starts_with(&bt) {
                Broadcast::Col { inner: len / b.numel() }
            } else {
                return Err(Error::shape(
                    "binary",
                    format!("{} cannot broadcast against {}", b.shape, self.shape),
                ));
            }
        };
        let p = BinaryParams { op, broadcast, len };
        Ok(self.wrap(self.backend.binary(self, b, &p)?, self.shape.clone(), self.dtype))
    }
    pub fn add(&self, b: &Self) -> Result<Self> {
        self.binary(b, BinaryOp::Add)
    }
    pub fn sub(&self, b: &Self) -> Result<Self> {
        self.binary(b, BinaryOp::Sub)
    }
    pub fn mul(&self, b: &Self) -> Result<Self> {
        self.binary(b, BinaryOp::Mul)
    }

    /// `self + alpha·z`.
    pub fn scaled_add(&self, z: &Self, alpha: f32) -> Result<Self> {
        check(self.shape == z.shape, "scaled_add", || format!("{} vs {}", self.shape, z.shape))?;
        Ok(self.wrap(self.backend.scaled_add(self, z, alpha)?, self.shape.clone(), self.dtype))
    }

    /// `self + gate ⊙ z` with `gate` over the last dim.
    pub fn gated_residual(&self, z: &Self, gate: &Self) -> Result<Self> {
        check(self.shape == z.shape, "gated_residual", || format!("x {} vs z {}", self.shape, z.shape))?;
        let cols = self.shape.last();
        check(gate.numel() == cols, "gated_residual", || {
            format!("gate {} does not match last dim {cols}", gate.shape)
        })?;
        let p = RowsParams { rows: self.numel() / cols.max(1), cols };
        Ok(self.wrap(self.backend.gated_residual(self, z, gate, &p)?, self.shape.clone(), self.dtype))
    }

    /// CFG with per-position norm rescale; `self` is the conditional prediction `[C, ...]`.
    pub fn cfg_renorm(&self, uncond: &Self, guidance: f32) -> Result<Self> {
        check(self.shape == uncond.shape && self.shape.rank() >= 1, "cfg_renorm", || {
            format!("cond {} vs uncond {}", self.shape, uncond.shape)
        })?;
        let c = self.shape.dim(0);
        let p = CfgParams { channels: c, positions: self.numel() / c.max(1), guidance };
        Ok(self.wrap(self.backend.cfg_renorm(self, uncond, &p)?, self.shape.clone(), self.dtype))
    }

    // ---- attention ---------------------------------------------------------------------------

    /// Attention with `self` = `q [Lq, Hq, D]`, `k, v [Lk, Hkv, D]`; scale `1/√D` unless given.
    pub fn attention(&self, k: &Self, v: &Self, causal: bool, scale: Option<f32>) -> Result<Self> {
        let ok = self.shape.rank() == 3
            && k.shape.rank() == 3
            && k.shape == v.shape
            && k.shape.dim(2) == self.shape.dim(2);
        check(ok, "attention", || {
            format!("q {} k {} v {} (expected [Lq, Hq, D], [Lk, Hkv, D] twice)", self.shape, k.shape, v.shape)
        })?;
        let (lq, hq, d) = (self.shape.dim(0), self.shape.dim(1), self.shape.dim(2));
        let (lk, hkv) = (k.shape.dim(0), k.shape.dim(1));
        check(hkv > 0 && hq.is_multiple_of(hkv), "attention", || {
            format!("{hq} query heads are not a multiple of {hkv} kv heads")
        })?;
        check(lk > 0 && (!causal || lk >= lq), "attention", || {
            format!("causal attention needs Lk ≥ Lq > 0, got Lq = {lq}, Lk = {lk}")
        })?;
        let p = AttentionParams {
            q_len: lq,
            kv_len: lk,
            q_heads: hq,
            kv_heads: hkv,
            head_dim: d,
            scale: scale.unwrap_or(1.0 / (d as f32).sqrt()),
            causal,
        };
        Ok(self.wrap(self.backend.attention(self, k, v, &p)?, self.shape.clone(), self.dtype))
    }

    // ---- convolution -------------------------------------------------------------------------

    /// 2-D convolution of `x [C, H, W]` by `w [O, C, KH, KW]`, stride, padding (top, bottom, left, right).
    pub fn conv2d(
        &self,
        w: &Self,
        bias: Option<&Self>,
        stride: usize,
        pad: (usize, usize, usize, usize),
    ) -> Result<Self> {
        let ok = self.shape.rank() == 3
            && w.shape.rank() == 4
            && w.shape.dim(1) == self.shape.dim(0)
            && stride > 0;
        check(ok, "conv2d", || {
            format!(
                "x {} does not fit weight {} (expected x [C, H, W], w [O, C, KH, KW]) stride {stride}",
                self.shape, w.shape
            )
        })?;
        let (c, h, wd) = (self.shape.dim(0), self.shape.dim(1), self.shape.dim(2));
        let (o, kh, kw) = (w.shape.dim(0), w.shape.dim(2), w.shape.dim(3));
        if let Some(b) = bias {
            check(b.numel() == o, "conv2d", || {
                format!("bias {} does not match {o} output channels", b.shape)
            })?;
        }
        let (ph, pw) = (h + pad.0 + pad.1, wd + pad.2 + pad.3);
        check(ph >= kh && pw >= kw, "conv2d", || {
            format!("kernel {kh}x{kw} larger than padded input {ph}x{pw}")
        })?;
        let p = Conv2dParams {
            in_channels: c,
            out_channels: o,
            height: h,
            width: wd,
            kernel_h: kh,
            kernel_w: kw,
            stride,
            pad,
            out_height: (ph - kh) / stride + 1,
            out_width: (pw - kw) / stride + 1,
        };
        Ok(self.wrap(self.backend.conv2d(self, w, bias, &p)?, [o, p.out_height, p.out_width], self.dtype))
    }

    /// Nearest ×2 upsampling of `[C, H, W]`.
    pub fn upsample_nearest2x(&self) -> Result<Self> {
        check(self.shape.rank() == 3, "upsample_nearest2x", || {
            format!("expects [C, H, W], got {}", self.shape)
        })?;
        let p =
            ImageParams { channels: self.shape.dim(0), height: self.shape.dim(1), width: self.shape.dim(2) };
        Ok(self.wrap(
            self.backend.upsample_nearest2x(self, &p)?,
            [p.channels, 2 * p.height, 2 * p.width],
            self.dtype,
        ))
    }

    // ---- gather / scatter --------------------------------------------------------------------

    /// Embedding lookup: rows `ids` of `self [V, C]` → `[ids.len(), C]`.
    pub fn embedding(&self, ids: &[u32]) -> Result<Self> {
        self.gather_rows(ids, None, 1)
    }

    /// Weighted gather of `taps` rows per output row from `self [V, C]` → `[index.len()/taps, C]`.
    pub fn gather_rows(&self, index: &[u32], weights: Option<&[f32]>, taps: usize) -> Result<Self> {
        check(self.shape.rank() == 2, "gather_rows", || format!("table must be [V, C], got {}", self.shape))?;
        let (v, c) = (self.shape.dim(0), self.shape.dim(1));
        check(taps > 0 && index.len().is_multiple_of(taps), "gather_rows", || {
            format!("{} indices are not a multiple of {taps} taps", index.len())
        })?;
        if let Some(w) = weights {
            check(w.len() == index.len(), "gather_rows", || {
                format!("{} weights for {} indices", w.len(), index.len())
            })?;
        }
        if let Some(bad) = index.iter().find(|&&i| i as usize >= v) {
            return Err(Error::shape(
                "gather_rows",
                format!("index {bad} out of range for a table of {v} rows"),
            ));
        }
        let p = GatherParams { table_rows: v, cols: c, rows: index.len() / taps, taps };
        Ok(self.wrap(self.backend.gather_rows(self, index, weights, &p)?, [p.rows, c], self.dtype))
    }

    /// A copy of `self [R, C]` with rows `rows[n]` replaced by (or incremented by) `src[n]`.
    pub fn scatter_rows(&self, rows: &[u32], src: &Self, mode: ScatterMode) -> Result<Self> {
        check(
            self.shape.rank() == 2 && src.shape.rank() == 2 && src.shape.dim(1) == self.shape.dim(1),
            "scatter_rows",
            || format!("dst {} and src {} must be [R, C] and [N, C]", self.shape, src.shape),
        )?;
        let r = self.shape.dim(0);
        check(src.shape.dim(0) == rows.len(), "scatter_rows", || {
            format!("{} rows for src {}", rows.len(), src.shape)
        })?;
        let mut seen = std::collections::HashSet::new();
        if let Some(bad) = rows.iter().find(|&&i| i as usize >= r || !seen.insert(i)) {
            return Err(Error::shape(
                "scatter_rows",
                format!("row {bad} is out of range for {r} rows or repeated"),
            ));
        }
        let p = ScatterParams { dst_rows: r, cols: self.shape.dim(1), src_rows: rows.len(), mode };
        Ok(self.wrap(self.backend.scatter_rows(self, rows, src, &p)?, self.shape.clone(), self.dtype))
    }
}
