//! joyrt-cuda: the CUDA backend, hand-written kernels on cudarc.
//!
//! Kernels live in `kernels/<family>.cu`, one file per op family, each launched from the
//! `ops/<family>.rs` of the same name, which declares the family's parameter struct and its
//! kernels' descriptors ([`kernel`]). A family is compiled by NVRTC at first use for the device's
//! exact architecture and the dtypes of the call ([`nvrtc`]), then cached for the process
//! (`launch.rs`). Nothing CUDA is needed to build the crate: libcuda and libnvrtc are loaded at run
//! time, and their absence is a [`joyrt_core::Error::BackendUnavailable`], never a panic.
//!
//! Storage: a buffer is raw device bytes (`f32`, or the 16-bit patterns of bf16/f16); kernels
//! widen to f32, compute in f32 and round to nearest even on store. One stream runs every op in
//! order; buffers come from the driver's stream-ordered pool (`cuMemAllocAsync`), whose release
//! threshold is raised so memory freed in one denoising step is reused by the next instead of
//! going back to the driver (`device.rs`).
//!
//! This file holds the backend handle and the `Backend` impl, whose op methods each call the
//! function of the same name in `ops/<family>.rs`.

pub mod cubin_cache;
mod device;
mod driver;
pub mod emu;
pub mod kernel;
mod launch;
pub mod limits;
pub mod nvrtc;
mod ops;
pub mod profile;
mod streaming;
pub mod tensor_map;

pub use device::{availability, CudaBuffer};
pub use launch::{AttentionPath, GemmPath};
pub use streaming::CudaHostBuffer;

use joyrt_core::backend::*;
use joyrt_core::{Backend, DType, QuantizedMatrix, Result, Tensor};
use std::sync::Arc;

type T = Tensor<CudaBackend>;

struct Inner {
    dev: device::Device,
    name: String,
    arch: String,
    /// What the device allows one launch (the emulated architecture's limits in the emulation).
    limits: limits::DeviceLimits,
    /// Synchronise after every launch, to name a faulting kernel (`JOYRT_CUDA_SYNC=1`).
    sync_each_launch: bool,
    /// The kernel launched last, named when a fault surfaces at a later driver call.
    last_launch: std::sync::Mutex<Option<&'static str>>,
    /// Which GEMM kernels `linear` takes (`JOYRT_CUDA_GEMM`; see [`launch::GemmPath`]).
    gemm: std::sync::Mutex<launch::GemmPath>,
    /// Whether `linear_quantized` on fp8 weights quantizes its activations too (W8A8;
    /// `JOYRT_CUDA_FP8=w8a8` or [`CudaBackend::set_fp8_activations`]).
    fp8_w8a8: std::sync::atomic::AtomicBool,
    /// Which tensor-core attention runs at head dim 128 (`JOYRT_CUDA_ATTENTION`).
    attention: std::sync::Mutex<launch::AttentionPath>,
    /// Fill fresh outputs with NaN bytes (`JOYRT_CUDA_POISON=1`; always in the emulation) so an
    /// unwritten element shows as NaN in the conformance suite.
    poison: bool,
    /// Resident grid size for grid-stride kernels.
    max_blocks: u32,
    /// Blocks of a persistent kernel (one per multiprocessor; 3 in the emulation, so that each
    /// emulated block walks several tiles).
    persistent_blocks: u32,
    kernels: launch::KernelCache,
    /// The opt-in per-kernel profile ([`CudaBackend::profile_start`]).
    profiler: profile::Profiler,
    stats: Arc<device::MemStats>,
}

/// The CUDA backend. Cloning shares the context, stream and kernel cache.
#[derive(Clone)]
pub struct CudaBackend {
    inner: Arc<Inner>,
}

impl CudaBackend {
    fn from_inner(inner: Inner) -> CudaBackend {
        CudaBackend { inner: Arc::new(inner) }
    }

    /// The NVRTC architecture the kernels are compiled for (`sm_90a` on H100/H200).
    pub fn arch(&self) -> &str {
        &self.inner.arch
    }
}

impl Backend for CudaBackend {
    type Buffer = CudaBuffer;
    type HostBuffer = CudaHostBuffer;

    fn name(&self) -> String {
        self.inner.name.clone()
    }

    fn zeros(&self, dtype: DType, len: usize) -> Result<CudaBuffer> {
        self.alloc(dtype, len, true)
    }

    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<CudaBuffer> {
        self.upload_bytes(dtype, bytes)
    }

    fn upload_packed(&self, words: &[u32]) -> Result<CudaBuffer> {
        self.upload_words(words)
    }

    fn download(&self, x: &T) -> Result<Vec<u8>> {
        self.download_bytes(x)
    }

    fn synchronize(&self) -> Result<()> {
        self.sync()
    }

    fn to_host(&self, x: &CudaBuffer) -> Result<CudaHostBuffer> {
        self.buffer_to_host(x)
    }

    fn upload_from_host(&self, src: &CudaHostBuffer) -> Result<CudaBuffer> {
        self.upload_host(src)
    }

    fn await_uploads(&self) -> Result<()> {
        self.await_host_uploads()
    }

    fn memory_stats(&self) -> (u64, u64) {
        self.mem_stats()
    }

    // ---- elementwise ----
    fn cast(&self, x: &T, to: DType) -> Result<CudaBuffer> {
        ops::elementwise::cast(self, x, to)
    }
    fn activation(&self, x: &T, act: Activation) -> Result<CudaBuffer> {
        ops::elementwise::activation(self, x, act)
    }
    fn swiglu(&self, gate: &T, up: &T) -> Result<CudaBuffer> {
        ops::elementwise::swiglu(self, gate, up)
    }
    fn binary(&self, a: &T, b: &T, p: &BinaryParams) -> Result<CudaBuffer> {
        ops::elementwise::binary(self, a, b, p)
    }
    fn scaled_add(&self, x: &T, z: &T, alpha: f32) -> Result<CudaBuffer> {
        ops::elementwise::scaled_add(self, x, z, alpha)
    }
    fn gated_residual(&self, x: &T, z: &T, gate: &T, p: &RowsParams) -> Result<CudaBuffer> {
        ops::elementwise::gated_residual(self, x, z, gate, p)
    }

    // ---- layout ----
    fn permute(&self, x: &T, p: &PermuteParams) -> Result<CudaBuffer> {
        ops::layout::permute(self, x, p)
    }
    fn slice(&self, x: &T, p: &SliceParams) -> Result<CudaBuffer> {
        ops::layout::slice(self, x, p)
    }
    fn concat(&self, xs: &[&T], p: &ConcatParams) -> Result<CudaBuffer> {
        ops::layout::concat(self, xs, p)
    }
    fn upsample_nearest2x(&self, x: &T, p: &ImageParams) -> Result<CudaBuffer> {
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
    ) -> Result<CudaBuffer> {
        ops::gemm::linear(self, x, w, bias, e, p)
    }
    fn quantized_activations(&self, format: joyrt_core::QuantFormat) -> QuantActivations {
        if format == joyrt_core::QuantFormat::Fp8E4M3 && self.fp8_activations() {
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
    ) -> Result<CudaBuffer> {
        ops::gemm::linear_quantized(self, x, w, bias, e, p)
    }
    fn conv2d(&self, x: &T, w: &T, bias: Option<&T>, p: &Conv2dParams) -> Result<CudaBuffer> {
        ops::conv::conv2d(self, x, w, bias, p)
    }

    // ---- norm ----
    fn layer_norm(&self, x: &T, w: Option<&T>, b: Option<&T>, p: &NormParams) -> Result<CudaBuffer> {
        ops::norm::layer_norm(self, x, w, b, p)
    }
    fn layer_norm_modulate(&self, x: &T, shift: &T, scale: &T, p: &NormParams) -> Result<CudaBuffer> {
        ops::norm::layer_norm_modulate(self, x, shift, scale, p)
    }
    fn rms_norm(&self, x: &T, w: &T, p: &NormParams) -> Result<CudaBuffer> {
        ops::norm::rms_norm(self, x, w, p)
    }
    fn channel_rms_norm(&self, x: &T, gamma: &T, p: &ChannelParams) -> Result<CudaBuffer> {
        ops::norm::channel_rms_norm(self, x, gamma, p)
    }
    fn cfg_renorm(&self, cond: &T, uncond: &T, p: &CfgParams) -> Result<CudaBuffer> {
        ops::norm::cfg_renorm(self, cond, uncond, p)
    }

    // ---- rope ----
    fn rope(&self, x: &T, rope: &Rope<Self>, p: &HeadParams) -> Result<CudaBuffer> {
        ops::rope::rope(self, x, rope, p)
    }
    fn rms_norm_rope(&self, x: &T, w: &T, rope: &Rope<Self>, p: &HeadParams) -> Result<CudaBuffer> {
        ops::rope::rms_norm_rope(self, x, w, rope, p)
    }
    fn joint_qkv(&self, streams: [&QkvStream<'_, Self>; 2], p: &JointQkvParams) -> Result<[CudaBuffer; 3]> {
        ops::rope::joint_qkv(self, streams, p)
    }

    // ---- attention ----
    fn attention(&self, q: &T, k: &T, v: &T, p: &AttentionParams) -> Result<CudaBuffer> {
        ops::attention::attention(self, q, k, v, p)
    }

    // ---- gather ----
    fn gather_rows(
        &self,
        table: &T,
        index: &[u32],
        weights: Option<&[f32]>,
        p: &GatherParams,
    ) -> Result<CudaBuffer> {
        ops::gather::gather_rows(self, table, index, weights, p)
    }
    fn scatter_rows(&self, dst: &T, rows: &[u32], src: &T, p: &ScatterParams) -> Result<CudaBuffer> {
        ops::gather::scatter_rows(self, dst, rows, src, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joyrt_core::Error;

    #[test]
    fn no_gpu_is_a_clear_error_not_a_panic() {
        match CudaBackend::new() {
            Ok(b) => println!("a CUDA device is present: {}", b.name()),
            Err(e) => {
                let msg = e.to_string();
                assert!(matches!(e, Error::BackendUnavailable { .. }), "{msg}");
                assert!(msg.contains("cuda"), "{msg}");
                println!("as expected without a GPU: {msg}");
            }
        }
    }
}
