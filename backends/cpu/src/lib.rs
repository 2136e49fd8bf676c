//! joyrt-cpu: the reference backend.
//!
//! Every op widens its inputs to f32, computes in f32 (f32 accumulation, f32 softmax and norm
//! statistics) and rounds once to the output dtype (round to nearest even). Simple and obviously
//! right first; multi-threaded with rayon where the work is: GEMM rows, attention (head × query
//! block), convolution output channels, and large elementwise ops.
//!
//! This file holds the buffers, the memory counters and the `Backend` impl, whose op methods each
//! call the function of the same name in `ops/<family>.rs` (the families of `core/src/backend.rs`);
//! each family file says how it threads and tiles.

use half::{bf16, f16};
use joyrt_core::backend::*;
use joyrt_core::{Backend, DType, Error, QuantFormat, QuantizedMatrix, Result, Tensor};
use rayon::prelude::*;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

type T = Tensor<CpuBackend>;

mod ops;

/// Host memory holding one tensor.
pub struct CpuBuffer {
    data: Data,
    stats: Arc<MemStats>,
}

#[derive(Clone)]
enum Data {
    F32(Vec<f32>),
    BF16(Vec<bf16>),
    F16(Vec<f16>),
    /// The packed codes of a quantized matrix (`Backend::upload_packed`); never a tensor's.
    Words(Vec<u32>),
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
            Data::Words(v) => 4 * v.len() as u64,
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::BF16(v) => v.len(),
            Data::F16(v) => v.len(),
            Data::Words(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as f32 (borrowed when already f32). A words buffer, which no tensor holds,
    /// reads as its bits.
    pub fn f32(&self) -> Cow<'_, [f32]> {
        match &self.data {
            Data::F32(v) => Cow::Borrowed(v),
            Data::BF16(v) => Cow::Owned(v.par_iter().map(|x| x.to_f32()).collect()),
            Data::F16(v) => Cow::Owned(v.par_iter().map(|x| x.to_f32()).collect()),
            Data::Words(v) => Cow::Owned(v.iter().map(|&w| f32::from_bits(w)).collect()),
        }
    }

    /// The words of a buffer made by `upload_packed` (`None` for a tensor's buffer).
    pub(crate) fn words(&self) -> Option<&[u32]> {
        match &self.data {
            Data::Words(v) => Some(v),
            _ => None,
        }
    }
}

/// The CPU backend. Cloning shares the memory counters and the quantized-linear mode.
#[derive(Clone, Default)]
pub struct CpuBackend {
    stats: Arc<MemStats>,
    dequantize_whole: Arc<std::sync::atomic::AtomicBool>,
    fp8_activations: Arc<std::sync::atomic::AtomicBool>,
}

impl CpuBackend {
    /// Makes `linear_quantized` dequantize each whole weight with the host codec and run the dense
    /// `linear` on it (`true`), instead of its blocked kernel (`false`, the default): the same
    /// forward "with the dense weights dequantized layer by layer", a reference for a quantized
    /// model too large to hold dense. Models loaded on any clone of this backend follow the switch.
    pub fn set_dequantize_whole(&self, on: bool) {
        self.dequantize_whole.store(on, Ordering::Relaxed);
    }

    /// Makes `linear_quantized` on fp8 weights quantize its activations too (W8A8,
    /// `QuantActivations::Fp8PerRow`): the reference of what `--dtype fp8` runs on CUDA. Models
    /// loaded on any clone of this backend follow the switch.
    pub fn set_fp8_activations(&self, on: bool) {
        self.fp8_activations.store(on, Ordering::Relaxed);
    }

    pub(crate) fn dequantizes_whole(&self) -> bool {
        self.dequantize_whole.load(Ordering::Relaxed)
    }

    fn buffer(&self, data: Data) -> CpuBuffer {
        let b = CpuBuffer { data, stats: self.stats.clone() };
        self.stats.add(b.bytes());
        b
    }

    /// Stores f32 results as `dtype`.
    pub(crate) fn store(&self, v: Vec<f32>, dtype: DType) -> CpuBuffer {
        self.buffer(match dtype {
            DType::F32 => Data::F32(v),
            DType::BF16 => Data::BF16(v.par_iter().map(|&x| bf16::from_f32(x)).collect()),
            DType::F16 => Data::F16(v.par_iter().map(|&x| f16::from_f32(x)).collect()),
        })
    }
}

pub(crate) fn f32s(t: &Tensor<CpuBackend>) -> Cow<'_, [f32]> {
    t.buffer().f32()
}

impl Backend for CpuBackend {
    type Buffer = CpuBuffer;
    type HostBuffer = CpuBuffer;

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

    fn upload_packed(&self, words: &[u32]) -> Result<CpuBuffer> {
        Ok(self.buffer(Data::Words(words.to_vec())))
    }

    fn download(&self, x: &Tensor<Self>) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(x.buffer().bytes() as usize);
        match &x.buffer().data {
            Data::F32(v) => v.iter().for_each(|e| out.extend_from_slice(&e.to_le_bytes())),
            Data::BF16(v) => v.iter().for_each(|e| out.extend_from_slice(&e.to_bits().to_le_bytes())),
            Data::F16(v) => v.iter().for_each(|e| out.extend_from_slice(&e.to_bits().to_le_bytes())),
            Data::Words(v) => v.iter().for_each(|e| out.extend_from_slice(&e.to_le_bytes())),
        }
        Ok(out)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    // The host is the device: a streamed weight's host copy is a buffer like any other (counted),
    // and its upload a copy of it, so the streaming path runs here as everywhere.
    fn to_host(&self, x: &CpuBuffer) -> Result<CpuBuffer> {
        Ok(self.buffer(x.data.clone()))
    }

    fn upload_from_host(&self, src: &CpuBuffer) -> Result<CpuBuffer> {
        Ok(self.buffer(src.data.clone()))
    }

    fn memory_stats(&self) -> (u64, u64) {
        (self.stats.current.load(Ordering::Relaxed), self.stats.peak.load(Ordering::Relaxed))
    }

    // ---- elementwise ----
    fn cast(&self, x: &T, to: DType) -> Result<CpuBuffer> {
        ops::elementwise::cast(self, x, to)
    }
    fn activation(&self, x: &T, act: Activation) -> Result<CpuBuffer> {
        ops::elementwise::activation(self, x, act)
    }
    fn swiglu(&self, gate: &T, up: &T) -> Result<CpuBuffer> {
        ops::elementwise::swiglu(self, gate, up)
    }
    fn binary(&self, a: &T, b: &T, p: &BinaryParams) -> Result<CpuBuffer> {
        ops::elementwise::binary(self, a, b, p)
    }
    fn scaled_add(&self, x: &T, z: &T, alpha: f32) -> Result<CpuBuffer> {
        ops::elementwise::scaled_add(self, x, z, alpha)
    }
    fn gated_residual(&self, x: &T, z: &T, gate: &T, p: &RowsParams) -> Result<CpuBuffer> {
        ops::elementwise::gated_residual(self, x, z, gate, p)
    }

    // ---- layout ----
    fn permute(&self, x: &T, p: &PermuteParams) -> Result<CpuBuffer> {
        ops::layout::permute(self, x, p)
    }
    fn slice(&self, x: &T, p: &SliceParams) -> Result<CpuBuffer> {
        ops::layout::slice(self, x, p)
    }
    fn concat(&self, xs: &[&T], p: &ConcatParams) -> Result<CpuBuffer> {
        ops::layout::concat(self, xs, p)
    }
    fn upsample_nearest2x(&self, x: &T, p: &ImageParams) -> Result<CpuBuffer> {
        ops::layout::upsample_nearest2x(self, x, p)
    }

    // ---- gemm, conv ----
    fn linear(
        &self,
        x: &T,
        w: &T,
        bias: Option<&T>,
        e: Epilogue<'_, Self>,
        p: &LinearParams,
    ) -> Result<CpuBuffer> {
        ops::gemm::linear(self, x, w, bias, e, p)
    }
    fn quantized_activations(&self, format: QuantFormat) -> QuantActivations {
        if format == QuantFormat::Fp8E4M3 && self.fp8_activations.load(Ordering::Relaxed) {
            QuantActivations::Fp8PerRow
        } else {
            QuantActivations::Native
        }
    }
    fn linear_quantized(
        &self,
        x: &T,
        w: &QuantizedMatrix<Self>,
        bias: Option<&T>,
        e: Epilogue<'_, Self>,
        p: &QuantLinearParams,
    ) -> Result<CpuBuffer> {
        ops::gemm::linear_quantized(self, x, w, bias, e, p)
    }
    fn conv2d(&self, x: &T, w: &T, bias: Option<&T>, p: &Conv2dParams) -> Result<CpuBuffer> {
        ops::conv::conv2d(self, x, w, bias, p)
    }

    // ---- norm ----
    fn layer_norm(&self, x: &T, w: Option<&T>, b: Option<&T>, p: &NormParams) -> Result<CpuBuffer> {
        ops::norm::layer_norm(self, x, w, b, p)
    }
    fn layer_norm_modulate(&self, x: &T, shift: &T, scale: &T, p: &NormParams) -> Result<CpuBuffer> {
        ops::norm::layer_norm_modulate(self, x, shift, scale, p)
    }
    fn rms_norm(&self, x: &T, w: &T, p: &NormParams) -> Result<CpuBuffer> {
        ops::norm::rms_norm(self, x, w, p)
    }
    fn channel_rms_norm(&self, x: &T, gamma: &T, p: &ChannelParams) -> Result<CpuBuffer> {
        ops::norm::channel_rms_norm(self, x, gamma, p)
    }
    fn cfg_renorm(&self, cond: &T, uncond: &T, p: &CfgParams) -> Result<CpuBuffer> {
        ops::norm::cfg_renorm(self, cond, uncond, p)
    }

    // ---- rope ----
    fn rope(&self, x: &T, rope: &Rope<Self>, p: &HeadParams) -> Result<CpuBuffer> {
        ops::rope::rope(self, x, None, rope, p)
    }
    fn rms_norm_rope(&self, x: &T, w: &T, rope: &Rope<Self>, p: &HeadParams) -> Result<CpuBuffer> {
        ops::rope::rope(self, x, Some(w), rope, p)
    }
    fn joint_qkv(&self, streams: [&QkvStream<'_, Self>; 2], p: &JointQkvParams) -> Result<[CpuBuffer; 3]> {
        ops::rope::joint_qkv(self, streams, p)
    }

    // ---- attention ----
    fn attention(&self, q: &T, k: &T, v: &T, p: &AttentionParams) -> Result<CpuBuffer> {
        ops::attention::attention(self, q, k, v, p)
    }

    // ---- gather ----
    fn gather_rows(
        &self,
        table: &T,
        index: &[u32],
        weights: Option<&[f32]>,
        p: &GatherParams,
    ) -> Result<CpuBuffer> {
        ops::gather::gather_rows(self, table, index, weights, p)
    }
    fn scatter_rows(&self, dst: &T, rows: &[u32], src: &T, p: &ScatterParams) -> Result<CpuBuffer> {
        ops::gather::scatter_rows(self, dst, rows, src, p)
    }
}
