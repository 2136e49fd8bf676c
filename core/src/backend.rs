//! The `Backend` trait: the whole op surface of joyrt in one place.
//!
//! The three networks (Qwen3-VL, the JoyImage MMDiT, the Wan 2.1 VAE), the scheduler and the
//! pipeline are written once against this trait. Each backend (CPU reference, wgpu, CUDA)
//! hand-writes every method.
//!
//! Conventions that hold for every method:
//! - Tensors are contiguous and row-major; there are no strides. Layout changes are explicit
//!   copies (`permute`, `slice`, `concat`).
//! - Methods receive tensors that [`Tensor`]'s op methods (in `tensor.rs`) have already checked:
//!   shapes fit, sizes are non-zero where needed, and the dims in the params structs are the
//!   derived sizes. A backend never re-derives shapes; it returns a buffer of exactly the
//!   documented output size.
//! - The output dtype is the dtype of the first tensor argument (`x`, `a`, `q`, ...), except for
//!   `cast`. Weights, biases, norm gains and tables may be stored in any dtype; backends widen
//!   them. Arithmetic and all accumulation are f32 (f32 softmax, f32 norm statistics).
//! - `R` = rows, `C` = columns of a 2-D view of a tensor; `[L, H, D]` = tokens, heads, head dim.
//!
//! Methods are grouped by op family. The family name in each section header (`elementwise`,
//! `layout`, `gemm`, `conv`, `norm`, `rope`, `attention`, `gather`) is the file name of the
//! family in every backend: `backends/<backend>/src/ops/<family>.rs`, `shaders/<family>.wgsl`,
//! `kernels/<family>.cu` (see docs/ARCHITECTURE.md, "Checklist: adding an op").

use crate::{DType, Error, QuantFormat, QuantizedMatrix, Result, Tensor};
use std::future::Future;

/// `Send` natively; nothing in a browser, where WebGPU's handles belong to the one thread that made
/// them (wgpu's `WasmNotSend` is the same idea). Natively `B: Backend` still implies `B: Send`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` natively; nothing in a browser (see [`MaybeSend`]).
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}

/// A compute device with its own memory and kernels.
///
/// `Clone` must be cheap (a handle): every [`Tensor`] keeps a clone of its backend.
pub trait Backend: Clone + MaybeSend + MaybeSync + Sized + 'static {
    /// Device memory holding one tensor's elements.
    type Buffer: MaybeSend + MaybeSync + 'static;
    /// Host memory a streamed weight waits in between its uses (page-locked on CUDA, so that its
    /// copy to the device runs beside the kernels).
    type HostBuffer: MaybeSend + MaybeSync + 'static;

    /// A short name for messages and tables (`cpu`, `wgpu:<adapter>`, `cuda:<gpu>`).
    fn name(&self) -> String;

    // ---- memory ---------------------------------------------------------------------------------

    /// A buffer of `len` elements of `dtype`, all zero.
    fn zeros(&self, dtype: DType, len: usize) -> Result<Self::Buffer>;
    /// A buffer holding `bytes`, the little-endian encoding of `bytes.len() / dtype.size()` elements.
    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<Self::Buffer>;
    /// A buffer holding `words` unchanged: the packed codes of a [`QuantizedMatrix`] (never a
    /// tensor's elements; only `linear_quantized` reads it, as `u32` words in this order). A
    /// backend may type it as any 4-byte element internally.
    fn upload_packed(&self, words: &[u32]) -> Result<Self::Buffer>;
    /// The little-endian bytes of `x` (waits for pending work on `x`). A backend that cannot block
    /// (WebGPU in a browser) returns an error here and implements [`Backend::download_async`].
    fn download(&self, x: &Tensor<Self>) -> Result<Vec<u8>>;
    /// [`Backend::download`] without blocking the thread: the pipeline reads back through this, so
    /// one pipeline body serves both the blocking native API and the browser. By default the
    /// blocking download, ready at the first poll.
    fn download_async(&self, x: &Tensor<Self>) -> impl Future<Output = Result<Vec<u8>>> {
        std::future::ready(self.download(x))
    }
    /// Blocks until all queued work has finished (for timing).
    fn synchronize(&self) -> Result<()>;
    /// An error the device reported outside the `Result` of the op that caused it and that no op
    /// has returned yet, taken (wgpu reports validation and out-of-memory errors this way). A
    /// resident session takes it before each edit, so one edit's error never fails the next.
    fn take_late_error(&self) -> Option<Error> {
        None
    }
    /// A host copy of `x` (waits for pending work on `x`), which [`Backend::upload_from_host`]
    /// turns back into a buffer with the same bytes, dtype and length.
    fn to_host(&self, x: &Self::Buffer) -> Result<Self::HostBuffer>;
    /// A new buffer holding `src`'s bytes. The copy starts after the work queued so far and may
    /// still run when this returns (beside the kernels queued next); work queued after the next
    /// [`Backend::await_uploads`] sees the bytes.
    fn upload_from_host(&self, src: &Self::HostBuffer) -> Result<Self::Buffer>;
    /// Makes the work queued from now on wait for every [`Backend::upload_from_host`] started
    /// before (without blocking the host). A backend whose uploads are ordered with its kernels
    /// (one queue) has nothing to do.
    fn await_uploads(&self) -> Result<()> {
        Ok(())
    }
    /// Bytes of device memory held by live buffers now, and the most held at once since the
    /// backend was made (each backend counts what it allocates).
    fn memory_stats(&self) -> (u64, u64);

    // ---- elementwise (`elementwise`) ------------------------------------------------------------

    /// `y[i] = round_to(to, x[i])` (round to nearest even; same length as `x`).
    fn cast(&self, x: &Tensor<Self>, to: DType) -> Result<Self::Buffer>;
    /// `y = f(x)` elementwise: SiLU `x·σ(x)`, GELU-tanh `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`,
    /// GELU-erf `½x(1 + erf(x/√2))`.
    fn activation(&self, x: &Tensor<Self>, act: Activation) -> Result<Self::Buffer>;
    /// `y = silu(gate) ⊙ up` (same shape).
    fn swiglu(&self, gate: &Tensor<Self>, up: &Tensor<Self>) -> Result<Self::Buffer>;
    /// `y = a ∘ b` for `∘ ∈ {+, −, ×}` with `b` broadcast as `p.broadcast` says.
    fn binary(&self, a: &Tensor<Self>, b: &Tensor<Self>, p: &BinaryParams) -> Result<Self::Buffer>;
    /// `y = x + α·z` (same shape; the Euler step).
    fn scaled_add(&self, x: &Tensor<Self>, z: &Tensor<Self>, alpha: f32) -> Result<Self::Buffer>;
    /// `y[r, c] = x[r, c] + gate[c]·z[r, c]` for `x, z [R, C]`, `gate [C]` (gated residual).
    fn gated_residual(
        &self,
        x: &Tensor<Self>,
        z: &Tensor<Self>,
        gate: &Tensor<Self>,
        p: &RowsParams,
    ) -> Result<Self::Buffer>;

    // ---- layout copies (`layout`) ---------------------------------------------------------------

    /// `y = x.permute(p.perm)` for `x` of shape `p.dims` (rank ≤ 6): `y[i_{perm[0]}, …] = x[i_0, …]`,
    /// i.e. output axis `a` is input axis `perm[a]`.
    fn permute(&self, x: &Tensor<Self>, p: &PermuteParams) -> Result<Self::Buffer>;
    /// With `x` viewed as `[outer, x_inner]`: `y[o, j] = x[o, start + j]` for `j < len` → `[outer, len]`.
    fn slice(&self, x: &Tensor<Self>, p: &SliceParams) -> Result<Self::Buffer>;
    /// With each `xs[k]` viewed as `[outer, inner_k]`: `y[o] = xs[0][o] ++ xs[1][o] ++ …` →
    /// `[outer, Σ inner_k]`. All inputs share one dtype.
    fn concat(&self, xs: &[&Tensor<Self>], p: &ConcatParams) -> Result<Self::Buffer>;
    /// Nearest ×2 upsampling of `x [C, H, W]`: `y[c, i, j] = x[c, i/2, j/2]` → `[C, 2H, 2W]`.
    fn upsample_nearest2x(&self, x: &Tensor<Self>, p: &ImageParams) -> Result<Self::Buffer>;

    // ---- GEMM (`gemm`) --------------------------------------------------------------------------

    /// `y[m, n] = e(Σ_k x[m, k]·w[n, k] + bias[n])`: `x [M, K]`, `w [N, K]` (PyTorch layout),
    /// `bias [N]` optional → `[M, N]`, with `e` the [`Epilogue`] applied to the f32 sum before
    /// its one rounding.
    fn linear(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        epilogue: Epilogue<'_, Self>,
        p: &LinearParams,
    ) -> Result<Self::Buffer>;

    /// The activations [`Tensor::linear_quantized`] gives a weight of `format` on this backend:
    /// `Native` unless the backend was switched to W8A8 for fp8 weights (`--dtype fp8`).
    fn quantized_activations(&self, format: QuantFormat) -> QuantActivations {
        let _ = format;
        QuantActivations::Native
    }

    /// `y[m, n] = Σ_k x[m, k]·ŵ[n, k] + bias[n]` with the quantized `w [N, K]` dequantized
    /// exactly: `ŵ[n, k] = f32(decode(q[n, k]) · scales[n·S + k/B])`, one f32 multiply (`decode`:
    /// int8 `q`, int4 `nibble − 8`, fp8 the E4M3 value), f32 accumulation, bias optional `[N]`
    /// → `[M, N]` in `x`'s dtype. Code `k` of row `n` is bits `(k % P)·bits ..` of word
    /// `n·W + k/P` of `w.data()` (`P = 32/bits` codes per word, `W = p.row_words`); the layout is
    /// documented in `crate::quant`. `p.block` is `B` (`K` for fp8), `p.scales_per_row` is `S`.
    /// The [`Epilogue`] applies to the f32 sum as in [`Backend::linear`]. With
    /// `p.activations` = [`QuantActivations::Fp8PerRow`] (fp8 weights only), `x` is first
    /// replaced by its per-row E4M3 quantization as that variant defines; a backend that cannot
    /// do that returns [`Error::Unsupported`].
    fn linear_quantized(
        &self,
        x: &Tensor<Self>,
        w: &QuantizedMatrix<Self>,
        bias: Option<&Tensor<Self>>,
        epilogue: Epilogue<'_, Self>,
        p: &QuantLinearParams,
    ) -> Result<Self::Buffer>;

    // ---- convolution (`conv`) -------------------------------------------------------------------

    /// 2-D cross-correlation of `x [C, H, W]` with `w [O, C, KH, KW]` (+ `bias [O]`), stride `s`,
    /// zero padding `(top, bottom, left, right)` →
    /// `[O, (H + top + bottom − KH)/s + 1, (W + left + right − KW)/s + 1]`.
    fn conv2d(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        p: &Conv2dParams,
    ) -> Result<Self::Buffer>;

    // ---- normalisation (`norm`) -----------------------------------------------------------------

    /// Per row of `x [R, C]`: `y = (x − mean)/√(var + eps)·w + b` (biased variance; `w`, `b`
    /// optional `[C]`, absent = 1 / 0).
    fn layer_norm(
        &self,
        x: &Tensor<Self>,
        w: Option<&Tensor<Self>>,
        b: Option<&Tensor<Self>>,
        p: &NormParams,
    ) -> Result<Self::Buffer>;
    /// Per row of `x [R, C]`: `y = LN(x)·(1 + scale) + shift` with LN without affine;
    /// `shift`, `scale` are `[C]`.
    fn layer_norm_modulate(
        &self,
        x: &Tensor<Self>,
        shift: &Tensor<Self>,
        scale: &Tensor<Self>,
        p: &NormParams,
    ) -> Result<Self::Buffer>;
    /// Per row of `x [R, C]`: `y = x/√(mean(x²) + eps)·w`, `w [C]`. Per-head norms use `R = L·H`.
    fn rms_norm(&self, x: &Tensor<Self>, w: &Tensor<Self>, p: &NormParams) -> Result<Self::Buffer>;
    /// Per position `p` of `x [C, P]` (channel-first): `y[c, p] = x[c, p]/max(‖x[:, p]‖₂, 1e-12)·√C·γ[c]`,
    /// `γ [C]` (the Wan VAE's channel RMS norm).
    fn channel_rms_norm(
        &self,
        x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        p: &ChannelParams,
    ) -> Result<Self::Buffer>;
    /// Classifier-free guidance with norm rescale on `cond, uncond [C, P]` (channel-first):
    /// `g = u + s·(c − u)`, `y[:, p] = g[:, p]·‖c[:, p]‖₂ / max(‖g[:, p]‖₂, 1e-6)`.
    fn cfg_renorm(&self, cond: &Tensor<Self>, uncond: &Tensor<Self>, p: &CfgParams) -> Result<Self::Buffer>;

    // ---- rotary embeddings (`rope`) -------------------------------------------------------------

    /// Rotates `x [L, H, D]` by the angle table `rope` (`cos`, `sin` are f32 `[L, D/2]`, the same
    /// for every head). Pair `m` is `(2m, 2m+1)` for [`RopePairing::Interleaved`] (DiT) and
    /// `(m, m + D/2)` for [`RopePairing::HalfSplit`] (Qwen): `y₁ = x₁·cos − x₂·sin`,
    /// `y₂ = x₂·cos + x₁·sin` with `cos = rope.cos[l, m]`. f32 arithmetic.
    fn rope(&self, x: &Tensor<Self>, rope: &Rope<Self>, p: &HeadParams) -> Result<Self::Buffer>;
    /// Fused per-head RMSNorm then rotation: `y = rope(rms_norm(x [L·H, D], w [D], eps))`
    /// (q/k-norm + RoPE, with the normalised value kept in f32 between the two steps).
    fn rms_norm_rope(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        rope: &Rope<Self>,
        p: &HeadParams,
    ) -> Result<Self::Buffer>;

    /// Joint attention's `Q`, `K`, `V` (each `[L₀ + L₁, H, D]`) straight from two streams'
    /// fused projections `streams[s].qkv [L_s, 3·H·D]` (columns `q ++ k ++ v`, each head-major):
    /// with `o₀ = 0`, `o₁ = L₀` and `x_s[l, j, h] = qkv_s[l, j·H·D + h·D .. + D]`,
    /// `Q[o_s + l, h] = rot_s(l, rms_norm(x_s[l, 0, h], q_norm_s, eps))`,
    /// `K[o_s + l, h] = rot_s(l, rms_norm(x_s[l, 1, h], k_norm_s, eps))`, `V[o_s + l, h] = x_s[l, 2, h]`,
    /// where `rot_s` is [`Backend::rope`]'s rotation by the stream's table and the identity for a
    /// stream without one. Exactly `rms_norm_rope` (`rms_norm` without a table) of the slices,
    /// concatenated: the normalised value stays f32 until the one rounding of each output.
    fn joint_qkv(&self, streams: [&QkvStream<'_, Self>; 2], p: &JointQkvParams) -> Result<[Self::Buffer; 3]>;

    // ---- attention (`attention`) ----------------------------------------------------------------

    /// Scaled dot-product attention, `q [Lq, Hq, D]`, `k, v [Lk, Hkv, D]`, `Hq = G·Hkv` (query head
    /// `h` uses kv head `h / G`): `y[i, h] = Σ_j softmax_j(scale·q[i,h]·k[j,h/G]) v[j,h/G]` →
    /// `[Lq, Hq, D]`. Causal: key `j` is visible to query `i` iff `j ≤ i + Lk − Lq` (queries are
    /// the last `Lq` positions). f32 softmax; never materialises all scores for long sequences.
    fn attention(
        &self,
        q: &Tensor<Self>,
        k: &Tensor<Self>,
        v: &Tensor<Self>,
        p: &AttentionParams,
    ) -> Result<Self::Buffer>;

    // ---- gather / scatter (`gather`) ------------------------------------------------------------

    /// Weighted row gather from `table [V, C]`: `y[n] = Σ_{j<K} weight[n·K+j]·table[index[n·K+j]]`
    /// → `[N, C]` (`weights = None` means all ones; `K = 1` is an embedding lookup). Indices and
    /// weights come from the host; indices are `< V` (checked by the caller).
    fn gather_rows(
        &self,
        table: &Tensor<Self>,
        index: &[u32],
        weights: Option<&[f32]>,
        p: &GatherParams,
    ) -> Result<Self::Buffer>;
    /// Row scatter into a copy of `dst [R, C]` from `src [N, C]`: `y = dst`, then for each `n`
    /// `y[rows[n]] = src[n]` (`Assign`) or `y[rows[n]] = dst[rows[n]] + src[n]` (`Add`). Rows are
    /// distinct and `< R` (checked by the caller).
    fn scatter_rows(
        &self,
        dst: &Tensor<Self>,
        rows: &[u32],
        src: &Tensor<Self>,
        p: &ScatterParams,
    ) -> Result<Self::Buffer>;
}

// ---- parameter structs (derived sizes, filled in by the checked op methods) ------------------

#[derive(Clone, Debug, PartialEq)]
pub struct PermuteParams {
    /// Input dims.
    pub dims: Vec<usize>,
    /// Output axis `a` is input axis `perm[a]`.
    pub perm: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SliceParams {
    pub outer: usize,
    /// Row length of the input view `[outer, x_inner]`.
    pub x_inner: usize,
    pub start: usize,
    pub len: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConcatParams {
    pub outer: usize,
    /// Row length of each input view `[outer, inner_k]`.
    pub inners: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearParams {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

/// What `linear` and `linear_quantized` do with each f32 result `a[m, n] = Σ_k x·w + bias[n]`
/// before rounding it once to the output dtype. The unfused sequences (`linear` then
/// `activation` or `gated_residual`) round `a` first: the fused result is one rounding fewer
/// (bit-identical for f32 outputs of the same sum).
pub enum Epilogue<'a, B: Backend> {
    /// `y = a`.
    None,
    /// `y = ½a(1 + tanh(√(2/π)(a + 0.044715a³)))`, [`Activation::GeluTanh`] (fc1, the text
    /// embedder).
    GeluTanh,
    /// `y[m, n] = residual[m, n] + gate[n]·a[m, n]`: `residual [M, N]` and `gate [N]` in the
    /// output's dtype (the DiT block's gated residuals after proj and fc2).
    GatedResidual { residual: &'a Tensor<B>, gate: &'a Tensor<B> },
}

// Not derived: a derive would ask `B: Copy`, and only references are held.
impl<B: Backend> Clone for Epilogue<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Epilogue<'_, B> {}

impl<B: Backend> Epilogue<'_, B> {
    /// The kind, as kernels take it (an `EPI_*` code).
    pub fn kind(&self) -> EpilogueKind {
        match self {
            Epilogue::None => EpilogueKind::None,
            Epilogue::GeluTanh => EpilogueKind::GeluTanh,
            Epilogue::GatedResidual { .. } => EpilogueKind::GatedResidual,
        }
    }
}

/// An [`Epilogue`] without its operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpilogueKind {
    None,
    GeluTanh,
    GatedResidual,
}

/// Sizes of a `linear_quantized` call (see [`Backend::linear_quantized`] and `crate::quant`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantLinearParams {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub format: QuantFormat,
    /// Codes per scale along K (`K` for fp8).
    pub block: usize,
    /// Scales per weight row `S = K / block`.
    pub scales_per_row: usize,
    /// `u32` words per weight row `W = ⌈K·bits/32⌉`.
    pub row_words: usize,
    /// What happens to `x` before the product (fp8 weights only may take anything but `Native`).
    pub activations: QuantActivations,
}

/// The activations of a `linear_quantized` call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuantActivations {
    /// `x` as stored (W8A16, W4A16: only the weight is quantized).
    #[default]
    Native,
    /// W8A8 for an fp8 weight: each row `m` of `x` is quantized to FP8 E4M3 with one f32 scale,
    /// `s[m] = max_k |x[m, k]| / 448` (IEEE f32 division), `q[m, k] = codec::f32_to_e4m3(x[m, k]
    /// / s[m])` (nearest, ties to even, saturating; all zero with `s = 0` for a zero row), and the
    /// product uses `x̂[m, k] = f32(decode(q)·s[m])` in place of `x` (one f32 multiply): what an
    /// FP8×FP8 tensor-core GEMM computes, up to the order of its f32 sums.
    Fp8PerRow,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormParams {
    pub rows: usize,
    pub cols: usize,
    pub eps: f32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelParams {
    pub channels: usize,
    pub positions: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadParams {
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// RMSNorm epsilon (used by `rms_norm_rope` only).
    pub eps: f32,
}

/// Sizes of a `joint_qkv` call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JointQkvParams {
    /// Tokens of each stream `[L₀, L₁]`.
    pub tokens: [usize; 2],
    pub heads: usize,
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
}

/// One stream of [`Backend::joint_qkv`]: its fused projection `qkv [L, 3·H·D]`, its q and k
/// RMSNorm gains (`[D]`, the four gains of a call share one dtype) and its rotary table (f32
/// `[L, D/2]`), `None` for a stream that is not rotated (the DiT's text tokens).
pub struct QkvStream<'a, B: Backend> {
    pub qkv: &'a Tensor<B>,
    pub q_norm: &'a Tensor<B>,
    pub k_norm: &'a Tensor<B>,
    pub rope: Option<&'a Rope<B>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowsParams {
    pub rows: usize,
    pub cols: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    GeluTanh,
    GeluErf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
}

/// How `b` is broadcast against `a` (viewed as `[outer, inner]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broadcast {
    /// Same number of elements: `b[i]`.
    None,
    /// `b` has `inner` elements, repeated for every outer index: `b[i % inner]`.
    Row { inner: usize },
    /// `b` has `outer` elements, each spread over its inner block: `b[i / inner]`.
    Col { inner: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryParams {
    pub op: BinaryOp,
    pub broadcast: Broadcast,
    /// Elements of `a` (and of the output).
    pub len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CfgParams {
    pub channels: usize,
    pub positions: usize,
    pub guidance: f32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionParams {
    pub q_len: usize,
    pub kv_len: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub causal: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: usize,
    /// Zero padding `(top, bottom, left, right)`.
    pub pad: (usize, usize, usize, usize),
    pub out_height: usize,
    pub out_width: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageParams {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatherParams {
    pub table_rows: usize,
    pub cols: usize,
    /// Output rows `N`.
    pub rows: usize,
    /// Taps per output row `K`.
    pub taps: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScatterMode {
    Assign,
    Add,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScatterParams {
    pub dst_rows: usize,
    pub cols: usize,
    /// Rows of `src` (= `rows.len()`).
    pub src_rows: usize,
    pub mode: ScatterMode,
}

/// Which elements of a head vector rotate together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopePairing {
    /// `(2m, 2m+1)`: GPT-J style, the JoyImage DiT.
    Interleaved,
    /// `(m, m + D/2)`: NeoX `rotate_half` style, Qwen3-VL text and vision.
    HalfSplit,
}

/// A rotary angle table: `cos`, `sin` are f32 `[L, D/2]`.
#[derive(Clone)]
pub struct Rope<B: Backend> {
    pub cos: Tensor<B>,
    pub sin: Tensor<B>,
    pub pairing: RopePairing,
}
