//! Layer 1: every op of the `Backend` trait on random inputs, the backend under test against the
//! CPU reference. Shapes are small enough for a software adapter but include the awkward ones:
//! odd sizes, sizes that are not multiples of a tile, sequences longer than one key tile.

use crate::report::Report;
use crate::tolerance::op_preset;
use joyrt_core::backend::{Epilogue, QkvStream, QuantActivations};
use joyrt_core::quant::codec;
use joyrt_core::{
    Activation, Backend, BinaryOp, DType, QuantFormat, QuantizedMatrix, Result, Rng, Rope, RopePairing,
    ScatterMode, Tensor,
};
use joyrt_cpu::CpuBackend;

/// One op invocation. Inputs are generated from the case's shapes; `run` is the same code for
/// every backend.
#[derive(Clone, Debug)]
pub enum Op {
    Linear {
        m: usize,
        k: usize,
        n: usize,
        bias: bool,
    },
    /// `linear_quantized` with a random weight quantized by `joyrt_core::quant::codec` (the same
    /// codes and scales on every backend).
    LinearQuantized {
        m: usize,
        k: usize,
        n: usize,
        bias: bool,
        format: QuantFormat,
    },
    /// `linear` (`linear_quantized` with a `format`) with an epilogue: the gated residual where
    /// `gated`, else GELU-tanh.
    LinearFused {
        m: usize,
        k: usize,
        n: usize,
        format: Option<QuantFormat>,
        gated: bool,
    },
    /// `linear_quantized` W8A8 (`QuantActivations::Fp8PerRow`) on an fp8 weight as
    /// `LinearQuantized` makes it, with the gated residual epilogue where `gated`. A backend
    /// without it (`Error::Unsupported`) is reported as skipped.
    LinearW8A8 {
        m: usize,
        k: usize,
        n: usize,
        bias: bool,
        gated: bool,
    },
    LayerNorm {
        rows: usize,
        cols: usize,
        affine: bool,
    },
    LayerNormModulate {
        rows: usize,
        cols: usize,
    },
    RmsNorm {
        rows: usize,
        cols: usize,
    },
    ChannelRmsNorm {
        c: usize,
        h: usize,
        w: usize,
    },
    Rope {
        l: usize,
        h: usize,
        d: usize,
        pairing: RopePairing,
    },
    RmsNormRope {
        l: usize,
        h: usize,
        d: usize,
        pairing: RopePairing,
    },
    /// `joint_qkv` of an image stream of `l[0]` tokens (rotated with `pairing`) and a text
    /// stream of `l[1]` tokens (rotated by its own table with `pairing` when `text_rope`); the
    /// output is Q, K, V concatenated along the head dim. Not `fused`: the same from the slices,
    /// norms and concatenations it replaces (`crate::fusions`).
    JointQkv {
        l: [usize; 2],
        h: usize,
        d: usize,
        pairing: RopePairing,
        text_rope: bool,
        fused: bool,
    },
    Act {
        len: usize,
        act: Activation,
    },
    Swiglu {
        len: usize,
    },
    Binary {
        a: Vec<usize>,
        b: Vec<usize>,
        op: BinaryOp,
    },
    ScaledAdd {
        len: usize,
    },
    GatedResidual {
        rows: usize,
        cols: usize,
    },
    CfgRenorm {
        c: usize,
        p: usize,
    },
    Attention {
        lq: usize,
        lk: usize,
        hq: usize,
        hkv: usize,
        d: usize,
        causal: bool,
    },
    Conv2d {
        c: usize,
        o: usize,
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        pad: (usize, usize, usize, usize),
    },
    Upsample {
        c: usize,
        h: usize,
        w: usize,
    },
    Permute {
        dims: Vec<usize>,
        perm: Vec<usize>,
    },
    Slice {
        dims: Vec<usize>,
        axis: usize,
        start: usize,
        len: usize,
    },
    Concat {
        dims: Vec<Vec<usize>>,
        axis: usize,
    },
    Gather {
        v: usize,
        c: usize,
        n: usize,
        taps: usize,
    },
    Scatter {
        r: usize,
        c: usize,
        n: usize,
        mode: ScatterMode,
    },
    Cast {
        len: usize,
        to: DType,
    },
}

/// The cases every backend runs, at each storage dtype.
pub fn cases() -> Vec<Op> {
    use Op::*;
    vec![
        Linear { m: 7, k: 13, n: 5, bias: true },
        Linear { m: 33, k: 70, n: 19, bias: false },
        Linear { m: 130, k: 96, n: 72, bias: true },
        // K % 8 == 0 with many more K tiles than the CUDA GEMM's pipeline stages, ragged M and N.
        Linear { m: 150, k: 520, n: 136, bias: true },
        // K spans several of the wgpu GEMM's K chunks.
        Linear { m: 70, k: 2500, n: 40, bias: true },
        // More block rows than one raster group of the Hopper GEMM (8 × 128 rows), three
        // 256-column tiles with a ragged last one.
        Linear { m: 1100, k: 64, n: 520, bias: true },
        // An odd N on the K % 8 == 0 kernels (no paired stores).
        Linear { m: 20, k: 128, n: 37, bias: true },
        // The CUDA pipelined GEMM's 128 × 128 × 64 tiles: M and N each one row or column past
        // a whole number of tiles, K a multiple of 8 but not of 64 (a last K tile of 8, shorter
        // than a stage) over more K tiles than its ring has stages; then a single K tile of 72
        // with N past two tiles and no bias.
        Linear { m: 257, k: 200, n: 129, bias: true },
        Linear { m: 40, k: 72, n: 260, bias: false },
        // Every format; one block, several blocks, ragged M and N, K across the wgpu GEMM's K
        // chunks, fp8 rows with a padded last word (K % 4 ≠ 0).
        LinearQuantized { m: 7, k: 32, n: 5, bias: true, format: QuantFormat::Int8 { block: 32 } },
        LinearQuantized { m: 33, k: 96, n: 70, bias: false, format: QuantFormat::Int8 { block: 32 } },
        LinearQuantized { m: 70, k: 2560, n: 40, bias: true, format: QuantFormat::Int8 { block: 32 } },
        LinearQuantized { m: 7, k: 64, n: 5, bias: true, format: QuantFormat::Int4 { block: 32 } },
        LinearQuantized { m: 130, k: 256, n: 72, bias: true, format: QuantFormat::Int4 { block: 32 } },
        LinearQuantized { m: 150, k: 520, n: 136, bias: false, format: QuantFormat::Int4 { block: 8 } },
        LinearQuantized { m: 7, k: 13, n: 5, bias: true, format: QuantFormat::Fp8E4M3 },
        LinearQuantized { m: 130, k: 96, n: 72, bias: true, format: QuantFormat::Fp8E4M3 },
        LinearQuantized { m: 70, k: 2500, n: 40, bias: false, format: QuantFormat::Fp8E4M3 },
        // One row (M = 1) at the minimum K of a block and of an fp8 row ending inside a word;
        // N odd past one tile; M and N past the CUDA tensor-core tiles (128); blocks of 64 (a
        // CUDA K tile inside a block) and 16 (the CUDA SIMT kernel for 16-bit activations).
        LinearQuantized { m: 1, k: 32, n: 37, bias: false, format: QuantFormat::Int4 { block: 32 } },
        LinearQuantized { m: 1, k: 1030, n: 33, bias: true, format: QuantFormat::Fp8E4M3 },
        LinearQuantized { m: 200, k: 256, n: 130, bias: true, format: QuantFormat::Fp8E4M3 },
        LinearQuantized { m: 150, k: 544, n: 136, bias: true, format: QuantFormat::Int8 { block: 32 } },
        LinearQuantized { m: 33, k: 192, n: 19, bias: true, format: QuantFormat::Int4 { block: 64 } },
        LinearQuantized { m: 20, k: 48, n: 9, bias: true, format: QuantFormat::Int8 { block: 16 } },
        LayerNorm { rows: 9, cols: 67, affine: true },
        LayerNorm { rows: 5, cols: 128, affine: false },
        LayerNormModulate { rows: 11, cols: 96 },
        RmsNorm { rows: 12, cols: 72 },
        ChannelRmsNorm { c: 24, h: 5, w: 7 },
        Rope { l: 9, h: 3, d: 16, pairing: RopePairing::Interleaved },
        Rope { l: 9, h: 2, d: 72, pairing: RopePairing::HalfSplit },
        RmsNormRope { l: 13, h: 4, d: 32, pairing: RopePairing::HalfSplit },
        RmsNormRope { l: 10, h: 2, d: 16, pairing: RopePairing::Interleaved },
        Act { len: 1001, act: joyrt_core::Activation::Silu },
        Act { len: 1001, act: joyrt_core::Activation::GeluTanh },
        Act { len: 1001, act: joyrt_core::Activation::GeluErf },
        Swiglu { len: 515 },
        Binary { a: vec![6, 5, 7], b: vec![6, 5, 7], op: BinaryOp::Add },
        Binary { a: vec![6, 5, 7], b: vec![7], op: BinaryOp::Mul },
        Binary { a: vec![6, 5, 7], b: vec![6, 1, 1], op: BinaryOp::Sub },
        ScaledAdd { len: 777 },
        GatedResidual { rows: 9, cols: 40 },
        CfgRenorm { c: 16, p: 35 },
        Attention { lq: 19, lk: 19, hq: 4, hkv: 4, d: 16, causal: false },
        Attention { lq: 70, lk: 70, hq: 4, hkv: 2, d: 32, causal: true },
        Attention { lq: 5, lk: 77, hq: 4, hkv: 1, d: 32, causal: true },
        Attention { lq: 150, lk: 150, hq: 2, hkv: 2, d: 72, causal: false },
        Attention { lq: 40, lk: 40, hq: 1, hkv: 1, d: 128, causal: false },
        // The tensor-core attention's head dims with several 64-query and 64-key tiles, a ragged
        // last tile, causal with Lq < Lk, and GQA.
        Attention { lq: 100, lk: 150, hq: 4, hkv: 2, d: 128, causal: true },
        Attention { lq: 130, lk: 130, hq: 2, hkv: 1, d: 64, causal: false },
        // Its 128-query blocks and 3-stage K/V ring: two query blocks (the second ragged), five
        // and seven key tiles (every stage refilled), Lq ≠ Lk, causal with Lq < Lk across blocks.
        Attention { lq: 200, lk: 300, hq: 2, hkv: 1, d: 128, causal: false },
        Attention { lq: 150, lk: 400, hq: 2, hkv: 2, d: 64, causal: true },
        // Head dims past 128 (the Wan VAE's mid-block attention is single-head with d = 384).
        Attention { lq: 45, lk: 45, hq: 1, hkv: 1, d: 384, causal: false },
        // Longer than one key chunk of the wgpu kernel (the VAE's mid-block attention is this shape).
        Attention { lq: 1100, lk: 1100, hq: 1, hkv: 1, d: 32, causal: true },
        // Head dim 128 over several 128-query blocks and 128-key tiles of the Hopper kernel:
        // causal with grouped heads and ragged lengths, and more keys than queries.
        Attention { lq: 300, lk: 300, hq: 2, hkv: 1, d: 128, causal: true },
        Attention { lq: 200, lk: 390, hq: 2, hkv: 2, d: 128, causal: false },
        Conv2d { c: 5, o: 7, h: 9, w: 11, k: 3, stride: 1, pad: (1, 1, 1, 1) },
        Conv2d { c: 6, o: 6, h: 10, w: 13, k: 3, stride: 2, pad: (0, 1, 0, 1) },
        Conv2d { c: 8, o: 3, h: 6, w: 5, k: 1, stride: 1, pad: (0, 0, 0, 0) },
        Upsample { c: 3, h: 5, w: 7 },
        Permute { dims: vec![3, 5], perm: vec![1, 0] },
        Permute { dims: vec![16, 2, 3, 2, 4, 2], perm: vec![1, 2, 4, 0, 3, 5] },
        Slice { dims: vec![4, 9, 5], axis: 1, start: 2, len: 6 },
        Concat { dims: vec![vec![3, 4, 5], vec![3, 2, 5], vec![3, 1, 5]], axis: 1 },
        Gather { v: 50, c: 24, n: 9, taps: 1 },
        Gather { v: 16, c: 32, n: 24, taps: 4 },
        Scatter { r: 12, c: 20, n: 5, mode: ScatterMode::Assign },
        Scatter { r: 12, c: 20, n: 5, mode: ScatterMode::Add },
        Cast { len: 333, to: DType::BF16 },
        Cast { len: 333, to: DType::F16 },
        Cast { len: 333, to: DType::F32 },
        // Extents in multiples of 8, which the memory-bound CUDA kernels take in 16-byte runs
        // (the cases above take their one-element paths), at the DiT's widths where the row is
        // the unit: hidden 4096, head dim 128.
        Act { len: 2048, act: joyrt_core::Activation::GeluTanh },
        Swiglu { len: 1024 },
        Binary { a: vec![4, 6, 8], b: vec![4, 6, 8], op: BinaryOp::Add },
        Binary { a: vec![4, 6, 8], b: vec![8], op: BinaryOp::Mul },
        Binary { a: vec![4, 6, 8], b: vec![4, 1, 1], op: BinaryOp::Sub },
        ScaledAdd { len: 1024 },
        GatedResidual { rows: 3, cols: 4096 },
        Cast { len: 1024, to: DType::BF16 },
        Cast { len: 1024, to: DType::F32 },
        Slice { dims: vec![5, 48, 8], axis: 1, start: 16, len: 24 },
        Concat { dims: vec![vec![2, 3, 64], vec![2, 1, 64]], axis: 1 },
        Concat { dims: vec![vec![3, 2, 8], vec![5, 2, 8]], axis: 0 },
        LayerNorm { rows: 3, cols: 4096, affine: true },
        LayerNormModulate { rows: 3, cols: 4096 },
        RmsNorm { rows: 3, cols: 4096 },
        RmsNorm { rows: 20, cols: 128 },
        RmsNormRope { l: 5, h: 3, d: 128, pairing: RopePairing::Interleaved },
        RmsNormRope { l: 5, h: 3, d: 128, pairing: RopePairing::HalfSplit },
        Rope { l: 5, h: 3, d: 128, pairing: RopePairing::Interleaved },
        // The DiT's joint Q/K/V: odd head dims past one warp, and the DiT's 128 (the CUDA
        // warp-per-row kernel), with and without the text stream's table.
        JointQkv { l: [9, 5], h: 3, d: 16, pairing: RopePairing::Interleaved, text_rope: false, fused: true },
        JointQkv { l: [7, 4], h: 2, d: 72, pairing: RopePairing::HalfSplit, text_rope: true, fused: true },
        JointQkv {
            l: [5, 3],
            h: 3,
            d: 128,
            pairing: RopePairing::Interleaved,
            text_rope: false,
            fused: true,
        },
        JointQkv { l: [6, 2], h: 2, d: 128, pairing: RopePairing::HalfSplit, text_rope: true, fused: true },
        // The GEMM epilogues on every linear kernel: SIMT (K % 8 ≠ 0 or f32), register-staged
        // mma (K % 8 ≠ 0), pipelined mma and wgmma (K % 8 == 0) with ragged tiles and odd N (the
        // wgmma store's unpaired path), the quantized SIMT and mma kernels.
        LinearFused { m: 7, k: 13, n: 5, format: None, gated: false },
        LinearFused { m: 130, k: 96, n: 72, format: None, gated: true },
        LinearFused { m: 150, k: 136, n: 130, format: None, gated: false },
        LinearFused { m: 33, k: 70, n: 37, format: None, gated: true },
        LinearFused { m: 20, k: 128, n: 37, format: None, gated: true },
        LinearFused { m: 33, k: 96, n: 70, format: Some(QuantFormat::Int8 { block: 32 }), gated: true },
        LinearFused { m: 20, k: 48, n: 9, format: Some(QuantFormat::Int4 { block: 16 }), gated: false },
        // W8A8: K inside one 64-code tile and ending inside a word; K % 16 == 0 (the 16-byte
        // loads) over ragged M past a 128 tile; many K tiles with K % 16 ≠ 0; the epilogue with
        // N past a tile; one row with K % 4 ≠ 0.
        LinearW8A8 { m: 7, k: 13, n: 5, bias: true, gated: false },
        LinearW8A8 { m: 130, k: 96, n: 72, bias: true, gated: false },
        LinearW8A8 { m: 70, k: 2500, n: 40, bias: false, gated: false },
        LinearW8A8 { m: 200, k: 256, n: 130, bias: true, gated: true },
        LinearW8A8 { m: 1, k: 1030, n: 33, bias: true, gated: false },
    ]
}

/// The storage binding limit (bytes) that [`split_cases`] are sized for.
pub const SPLIT_BINDING_LIMIT: u64 = 8192;

/// Cases whose output (as f32) and split inputs are larger than [`SPLIT_BINDING_LIMIT`] while the
/// operands an op binds whole (weights, gains, keys and values, broadcast rows) fit it, so a
/// backend capped at that limit runs every op that splits in several pieces: rows, tokens,
/// queries, output rows and input channels. Row widths keep the pieces' windows aligned to 256
/// bytes within the limit at every dtype. Ops that bind everything whole (permute, scatter,
/// cfg_renorm) are not here.
pub fn split_cases() -> Vec<Op> {
    use Op::*;
    vec![
        Linear { m: 300, k: 24, n: 40, bias: true },
        LinearQuantized { m: 300, k: 32, n: 24, bias: true, format: QuantFormat::Int8 { block: 32 } },
        LinearFused { m: 300, k: 24, n: 40, format: None, gated: true },
        LinearFused { m: 300, k: 32, n: 24, format: Some(QuantFormat::Int8 { block: 32 }), gated: false },
        LayerNorm { rows: 200, cols: 72, affine: true },
        LayerNormModulate { rows: 150, cols: 64 },
        RmsNorm { rows: 200, cols: 48 },
        ChannelRmsNorm { c: 24, h: 8, w: 16 },
        Rope { l: 100, h: 3, d: 16, pairing: RopePairing::Interleaved },
        RmsNormRope { l: 120, h: 2, d: 32, pairing: RopePairing::HalfSplit },
        // The text stream's rows start in the middle of an aligned window of the output.
        JointQkv {
            l: [101, 70],
            h: 2,
            d: 16,
            pairing: RopePairing::Interleaved,
            text_rope: true,
            fused: true,
        },
        Act { len: 5001, act: Activation::Silu },
        Act { len: 5001, act: Activation::GeluTanh },
        Swiglu { len: 4099 },
        ScaledAdd { len: 3001 },
        Binary { a: vec![40, 9, 16], b: vec![40, 9, 16], op: BinaryOp::Add },
        Binary { a: vec![40, 9, 16], b: vec![16], op: BinaryOp::Mul },
        Binary { a: vec![40, 9, 16], b: vec![40, 1, 1], op: BinaryOp::Sub },
        GatedResidual { rows: 100, cols: 40 },
        Attention { lq: 60, lk: 60, hq: 4, hkv: 1, d: 32, causal: true },
        Attention { lq: 40, lk: 60, hq: 4, hkv: 1, d: 32, causal: true },
        Attention { lq: 100, lk: 50, hq: 2, hkv: 2, d: 16, causal: false },
        Conv2d { c: 6, o: 5, h: 20, w: 24, k: 3, stride: 1, pad: (1, 1, 1, 1) },
        Conv2d { c: 4, o: 12, h: 22, w: 32, k: 3, stride: 2, pad: (0, 1, 0, 1) },
        Upsample { c: 6, h: 8, w: 32 },
        Slice { dims: vec![40, 9, 16], axis: 1, start: 2, len: 5 },
        Concat { dims: vec![vec![40, 4, 16], vec![40, 2, 16]], axis: 1 },
        Gather { v: 50, c: 24, n: 200, taps: 2 },
        Cast { len: 5000, to: DType::BF16 },
        Cast { len: 5000, to: DType::F16 },
        Cast { len: 5000, to: DType::F32 },
    ]
}

/// One stream's inputs of a `JointQkv` case.
pub(crate) struct QkvInputs<B: Backend> {
    pub(crate) qkv: Tensor<B>,
    pub(crate) gains: [Tensor<B>; 2],
    pub(crate) rope: Option<Rope<B>>,
}

fn rope_table<B: Backend>(b: &B, l: usize, d: usize, pairing: RopePairing, rng: &mut Rng) -> Result<Rope<B>> {
    let angles: Vec<f32> = rng.uniform_vec(l * d / 2, -6.0, 6.0);
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    Ok(Rope {
        cos: Tensor::from_f32(b, [l, d / 2], &cos, DType::F32)?,
        sin: Tensor::from_f32(b, [l, d / 2], &sin, DType::F32)?,
        pairing,
    })
}

impl Op {
    /// Runs the op on `b` with inputs drawn from `seed`; the same seed gives the same inputs on
    /// every backend.
    pub fn run<B: Backend>(&self, b: &B, dtype: DType, seed: u64) -> Result<Tensor<B>> {
        let mut rng = Rng::new(seed);
        let mut t = |shape: &[usize], lo: f32, hi: f32| {
            let n = shape.iter().product();
            Tensor::from_f32(b, shape.to_vec(), &rng.uniform_vec(n, lo, hi), dtype)
        };
        match self {
            Op::Linear { m, k, n, bias } => {
                let (x, w) = (t(&[*m, *k], -1.0, 1.0)?, t(&[*n, *k], -0.5, 0.5)?);
                let bias = if *bias { Some(t(&[*n], -1.0, 1.0)?) } else { None };
                x.linear(&w, bias.as_ref())
            }
            Op::LinearQuantized { m, k, n, bias, format } => {
                let x = t(&[*m, *k], -1.0, 1.0)?;
                let bias = if *bias { Some(t(&[*n], -1.0, 1.0)?) } else { None };
                let dense = Rng::new(seed ^ 0x9a47).uniform_vec(n * k, -0.5, 0.5);
                let q = codec::quantize_rows(*format, *k, &dense)?;
                let w = QuantizedMatrix::upload(b, *format, *n, *k, &q.codes, &q.scales)?;
                x.linear_quantized(&w, bias.as_ref())
            }
            Op::LinearW8A8 { m, k, n, bias, gated } => {
                let x = t(&[*m, *k], -1.0, 1.0)?;
                let bias = if *bias { Some(t(&[*n], -1.0, 1.0)?) } else { None };
                let (residual, gate) = (t(&[*m, *n], -2.0, 2.0)?, t(&[*n], -1.0, 1.0)?);
                let epilogue = if *gated {
                    Epilogue::GatedResidual { residual: &residual, gate: &gate }
                } else {
                    Epilogue::None
                };
                let dense = Rng::new(seed ^ 0x9a47).uniform_vec(n * k, -0.5, 0.5);
                let q = codec::quantize_rows(QuantFormat::Fp8E4M3, *k, &dense)?;
                let w = QuantizedMatrix::upload(b, QuantFormat::Fp8E4M3, *n, *k, &q.codes, &q.scales)?;
                x.linear_quantized_as(&w, bias.as_ref(), epilogue, QuantActivations::Fp8PerRow)
            }
            Op::LinearFused { m, k, n, format, gated } => {
                let (x, bias) = (t(&[*m, *k], -1.0, 1.0)?, t(&[*n], -1.0, 1.0)?);
                let (residual, gate) = (t(&[*m, *n], -2.0, 2.0)?, t(&[*n], -1.0, 1.0)?);
                let epilogue = if *gated {
                    Epilogue::GatedResidual { residual: &residual, gate: &gate }
                } else {
                    Epilogue::GeluTanh
                };
                match format {
                    None => x.linear_with(&t(&[*n, *k], -0.5, 0.5)?, Some(&bias), epilogue),
                    Some(f) => {
                        let dense = Rng::new(seed ^ 0x9a47).uniform_vec(n * k, -0.5, 0.5);
                        let q = codec::quantize_rows(*f, *k, &dense)?;
                        let w = QuantizedMatrix::upload(b, *f, *n, *k, &q.codes, &q.scales)?;
                        x.linear_quantized_with(&w, Some(&bias), epilogue)
                    }
                }
            }
            Op::LayerNorm { rows, cols, affine } => {
                let x = t(&[*rows, *cols], -3.0, 5.0)?;
                if *affine {
                    let (w, bb) = (t(&[*cols], 0.5, 1.5)?, t(&[*cols], -1.0, 1.0)?);
                    x.layer_norm(Some(&w), Some(&bb), 1e-6)
                } else {
                    x.layer_norm(None, None, 1e-6)
                }
            }
            Op::LayerNormModulate { rows, cols } => {
                let (x, sh, sc) =
                    (t(&[*rows, *cols], -3.0, 3.0)?, t(&[*cols], -1.0, 1.0)?, t(&[*cols], -1.0, 1.0)?);
                x.layer_norm_modulate(&sh, &sc, 1e-6)
            }
            Op::RmsNorm { rows, cols } => {
                t(&[*rows, *cols], -2.0, 2.0)?.rms_norm(&t(&[*cols], 0.5, 1.5)?, 1e-6)
            }
            Op::ChannelRmsNorm { c, h, w } => {
                t(&[*c, *h, *w], -2.0, 2.0)?.channel_rms_norm(&t(&[*c], 0.5, 1.5)?)
            }
            Op::Rope { l, h, d, pairing } => {
                let x = t(&[*l, *h, *d], -2.0, 2.0)?;
                x.rope(&rope_table(b, *l, *d, *pairing, &mut Rng::new(seed ^ 0xabc))?)
            }
            Op::RmsNormRope { l, h, d, pairing } => {
                let (x, w) = (t(&[*l, *h, *d], -2.0, 2.0)?, t(&[*d], 0.5, 1.5)?);
                x.rms_norm_rope(&w, &rope_table(b, *l, *d, *pairing, &mut Rng::new(seed ^ 0xabc))?, 1e-6)
            }
            Op::JointQkv { l, h, d, pairing, text_rope, fused } => {
                let mut tables = Rng::new(seed ^ 0xabc);
                let mut streams = Vec::new();
                for (s, &len) in l.iter().enumerate() {
                    let qkv = t(&[len, 3 * h * d], -2.0, 2.0)?;
                    let gains = [t(&[*d], 0.5, 1.5)?, t(&[*d], 0.5, 1.5)?];
                    let rope = (s == 0 || *text_rope)
                        .then(|| rope_table(b, len, *d, *pairing, &mut tables))
                        .transpose()?;
                    streams.push(QkvInputs { qkv, gains, rope });
                }
                let [q, k, v] = if *fused {
                    let ops = std::array::from_fn(|s| {
                        let QkvInputs { qkv, gains: [q_norm, k_norm], rope } = &streams[s];
                        QkvStream { qkv, q_norm, k_norm, rope: rope.as_ref() }
                    });
                    Tensor::joint_qkv(ops, *h, 1e-6)?
                } else {
                    crate::fusions::unfused_qkv(&streams, *h, *d)?
                };
                // Along the head dim: rows a split backend can cut (along the tokens, the
                // concatenation would be one row).
                Tensor::concat(&[&q, &k, &v], 2)
            }
            Op::Act { len, act } => t(&[*len], -6.0, 6.0)?.activation(*act),
            Op::Swiglu { len } => t(&[*len], -6.0, 6.0)?.swiglu(&t(&[*len], -2.0, 2.0)?),
            Op::Binary { a, b: bs, op } => t(a, -2.0, 2.0)?.binary(&t(bs, 0.5, 2.0)?, *op),
            Op::ScaledAdd { len } => t(&[*len], -2.0, 2.0)?.scaled_add(&t(&[*len], -2.0, 2.0)?, -0.0371),
            Op::GatedResidual { rows, cols } => {
                let (x, z, g) =
                    (t(&[*rows, *cols], -2.0, 2.0)?, t(&[*rows, *cols], -2.0, 2.0)?, t(&[*cols], -1.0, 1.0)?);
                x.gated_residual(&z, &g)
            }
            Op::CfgRenorm { c, p } => t(&[*c, *p], -2.0, 2.0)?.cfg_renorm(&t(&[*c, *p], -2.0, 2.0)?, 4.0),
            Op::Attention { lq, lk, hq, hkv, d, causal } => {
                let (q, k, v) = (
                    t(&[*lq, *hq, *d], -1.5, 1.5)?,
                    t(&[*lk, *hkv, *d], -1.5, 1.5)?,
                    t(&[*lk, *hkv, *d], -1.0, 1.0)?,
                );
                q.attention(&k, &v, *causal, None)
            }
            Op::Conv2d { c, o, h, w, k, stride, pad } => {
                let (x, wt, bias) =
                    (t(&[*c, *h, *w], -1.0, 1.0)?, t(&[*o, *c, *k, *k], -0.5, 0.5)?, t(&[*o], -0.5, 0.5)?);
                x.conv2d(&wt, Some(&bias), *stride, *pad)
            }
            Op::Upsample { c, h, w } => t(&[*c, *h, *w], -1.0, 1.0)?.upsample_nearest2x(),
            Op::Permute { dims, perm } => t(dims, -1.0, 1.0)?.permute(perm),
            Op::Slice { dims, axis, start, len } => t(dims, -1.0, 1.0)?.slice(*axis, *start, *len),
            Op::Concat { dims, axis } => {
                let xs = dims.iter().map(|d| t(d, -1.0, 1.0)).collect::<Result<Vec<_>>>()?;
                Tensor::concat(&xs.iter().collect::<Vec<_>>(), *axis)
            }
            Op::Gather { v, c, n, taps } => {
                let table = t(&[*v, *c], -1.0, 1.0)?;
                let mut r = Rng::new(seed ^ 0x5eed);
                let idx: Vec<u32> = (0..n * taps).map(|_| r.below(*v as u64) as u32).collect();
                let w: Vec<f32> = r.uniform_vec(n * taps, 0.0, 1.0);
                table.gather_rows(&idx, (*taps > 1).then_some(&w[..]), *taps)
            }
            Op::Scatter { r, c, n, mode } => {
                let (dst, src) = (t(&[*r, *c], -1.0, 1.0)?, t(&[*n, *c], -1.0, 1.0)?);
                let rows: Vec<u32> = (0..*n as u32).map(|i| (i * 7 + 3) % *r as u32).collect();
                dst.scatter_rows(&rows, &src, *mode)
            }
            Op::Cast { len, to } => t(&[*len], -100.0, 100.0)?.cast(*to),
        }
    }

    pub fn label(&self, dtype: DType) -> String {
        let s = format!("{self:?}");
        let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
        format!("{dtype} {}", s.replace("pairing: ", ""))
    }
}

/// The label of every op check (each case at each storage dtype), in the order they run.
pub fn labels() -> Vec<String> {
    cases().iter().flat_map(|op| DType::ALL.map(|dtype| op.label(dtype))).collect()
}

/// Runs every case at every storage dtype on `dut` and compares with the CPU reference.
pub fn run_ops<B: Backend>(dut: &B, report: &mut Report) {
    run_ops_where(dut, report, |_| true);
}

/// [`run_ops`] restricted to the checks whose label `keep` accepts (a subset for slow tools such
/// as compute-sanitizer); each check keeps the inputs it has in the full run.
pub fn run_ops_where<B: Backend>(dut: &B, report: &mut Report, keep: impl Fn(&str) -> bool) {
    run_cases(dut, report, &cases(), keep);
}

/// `cases` at every storage dtype on `dut` against the CPU reference, those whose label `keep`
/// accepts; case `i` draws its inputs from seed `1000 + i`.
pub fn run_cases<B: Backend>(dut: &B, report: &mut Report, cases: &[Op], keep: impl Fn(&str) -> bool) {
    let reference = CpuBackend::default();
    for (i, op) in cases.iter().enumerate() {
        for dtype in DType::ALL {
            let seed = 1000 + i as u64;
            let label = op.label(dtype);
            if !keep(&label) {
                continue;
            }
            let Some(want) =
                report.attempt("ops", &label, op.run(&reference, dtype, seed).and_then(|t| t.to_f32_vec()))
            else {
                continue;
            };
            let got = match op.run(dut, dtype, seed).and_then(|t| t.to_f32_vec()) {
                Err(e @ joyrt_core::Error::Unsupported { .. }) => {
                    report.skip("ops", label, e.to_string());
                    continue;
                }
                r => match report.attempt("ops", &label, r) {
                    Some(got) => got,
                    None => continue,
                },
            };
            let tol = match op {
                Op::Cast { to, .. } => op_preset(*to),
                _ => op_preset(dtype),
            };
            report.compare("ops", label, &got, &want, tol);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: every case builds legal inputs and runs through the checked op methods;
    /// the CPU reference agrees with itself exactly (same inputs from the same seed).
    #[test]
    fn every_case_runs_and_the_reference_is_deterministic() {
        let mut report = Report::new("cpu-vs-cpu");
        run_ops(&CpuBackend::default(), &mut report);
        assert_eq!(report.rows.len(), cases().len() * DType::ALL.len());
        for row in &report.rows {
            match &row.outcome {
                crate::Outcome::Compared { metrics, .. } => assert_eq!(metrics.max_abs, 0.0, "{}", row.check),
                other => panic!("{}: {other:?}", row.check),
            }
        }
    }

    /// Every split case is past the limit it is sized for: its f32 output (the work buffer a
    /// GPU backend computes into) is larger than one binding.
    #[test]
    fn split_cases_are_past_their_binding_limit() {
        let cpu = CpuBackend::default();
        for (i, op) in split_cases().iter().enumerate() {
            let out = op.run(&cpu, DType::F32, 1000 + i as u64).unwrap();
            let bytes = 4 * out.numel() as u64;
            assert!(bytes > SPLIT_BINDING_LIMIT, "{}: output of {bytes} bytes", op.label(DType::F32));
        }
    }
}
