//! joyrt-wgpu: the WGSL backend on wgpu.
//!
//! Storage: f32 tensors are `array<f32>` words; bf16 and f16 tensors are packed two per `u32`
//! (little-endian, element `2k` in the low half), widened in the shaders (bf16 by a 16-bit shift,
//! f16 by `unpack2x16float`), so no `shader-f16` feature is needed. Every kernel computes in f32 into
//! an f32 buffer; a pack pass then stores 16-bit outputs (round to nearest even for bf16).
//!
//! Layout of the crate: this file holds the backend handle, its memory methods and the `Backend`
//! impl, whose op methods each call the function of the same name in `ops/<family>.rs` (the
//! families of `core/src/backend.rs`; the family's WGSL is `shaders/<family>.wgsl`). The machinery
//! is apart from the ops: `device.rs` (adapter, limits, errors), `pool.rs` (buffer pool),
//! `buffer.rs` (tensors and their chunks), `dispatch.rs` (specialisation, pipeline cache, bind
//! groups, the pack pass).
//!
//! Kernels: each family's kernels are entry points of its WGSL, with one parameter struct per
//! family (declared with `joyrt_core::kernel_params!`) and the op codes of `joyrt_core::kernel_abi`.
//! A pipeline is specialised by prepending the codes, the struct, the bindings and one load
//! function per input dtype, and cached by (family, entry point, specialisation, input dtypes), so
//! a dispatch builds no source. All six bindings (params, output, four inputs) are always bound,
//! unused ones to a dummy, under one explicit layout; each binding covers exactly the bytes in use.
//!
//! Memory: every buffer (tensors, f32 work buffers, params, index lists, download staging) comes
//! from a pool of free lists by size class and goes back to it on drop, so a denoising loop
//! reaches a steady state with no device allocation per op; free buffers beyond a budget are
//! released. [`WgpuBackend::memory_stats`] and [`WgpuBackend::pool_stats`] count them.
//!
//! Limits: sizes are checked against `max_buffer_size` and `max_storage_buffer_binding_size` before
//! wgpu sees them, with an error that gives the numbers. A tensor is one buffer up to
//! `max_buffer_size`; ops bind windows of it within the binding limit, splitting their work by
//! rows, tokens, queries or channels (`split.rs`), so the 1024² activations run on a
//! 128 MiB-binding adapter. Past `max_buffer_size` a tensor is held in binding-sized chunks
//! ([`WgpuBuffer`]), which only `linear` (weight) and `gather_rows` (table) accept.
//!
//! Optional features are requested only when the adapter offers them ([`WgpuOptions::fast_paths`]):
//! `SUBGROUP` switches the row norms' reductions to `subgroupAdd`; `SHADER_F16` is requested and
//! reported but nothing depends on it (the packed-u32 path runs everywhere).

// In a browser wgpu's handles are neither `Send` nor `Sync` and there is one thread; natively the
// shared handles (`Arc`) cross threads and are both.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

mod headless;
pub use headless::quiet_headless_device_select;

use joyrt_core::backend::*;
use joyrt_core::{Backend, DType, Error, QuantizedMatrix, Result, Tensor};
use std::sync::Arc;

mod buffer;
mod device;
mod dispatch;
mod ops;
mod pool;
mod split;
mod streaming;

pub use buffer::WgpuBuffer;
pub use device::{AdapterReport, WgpuOptions};
pub use pool::{PoolStats, DEFAULT_POOL_BUDGET};
pub use streaming::WgpuHostBuffer;

use device::Gpu;
use dispatch::Pipelines;
use pool::{Kind, Pool};

type T = Tensor<WgpuBackend>;

struct Inner {
    gpu: Gpu,
    pool: Arc<Pool>,
    pipelines: Pipelines,
}

/// The wgpu backend. Cloning shares the device.
#[derive(Clone)]
pub struct WgpuBackend {
    inner: Arc<Inner>,
}

impl WgpuBackend {
    /// Opens the first adapter wgpu finds (`WGPU_BACKEND` selects vulkan/gl/...), with
    /// [`WgpuOptions::from_env`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<WgpuBackend> {
        Self::with_options(WgpuOptions::from_env())
    }

    /// Opens the first adapter wgpu finds with explicit options.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_options(opts: WgpuOptions) -> Result<WgpuBackend> {
        pollster::block_on(Self::with_options_async(opts))
    }

    /// [`WgpuBackend::with_options`] as a future: in a browser, where the adapter and the device
    /// are promises the page must not block on, this is the constructor.
    pub async fn with_options_async(opts: WgpuOptions) -> Result<WgpuBackend> {
        let gpu = Gpu::open(&opts).await?;
        let pool = Pool::new(gpu.device.clone(), gpu.max_buffer, opts.pool_budget);
        let pipelines = Pipelines::new(&gpu.device);
        Ok(WgpuBackend { inner: Arc::new(Inner { gpu, pool, pipelines }) })
    }

    /// The adapter's description and the limits that decide what fits (for a page to show).
    pub fn adapter_report(&self) -> AdapterReport {
        self.inner.gpu.report.clone()
    }

    /// Whether the adapter is a CPU implementation (lavapipe, SwiftShader): correct, but slower
    /// than the CPU backend, so `--backend auto` does not pick it.
    pub fn is_software(&self) -> bool {
        self.inner.gpu.software
    }

    /// Whether the row norms use subgroup reductions (the adapter offers `SUBGROUP` and fast paths
    /// are on).
    pub fn uses_subgroups(&self) -> bool {
        self.inner.gpu.subgroups
    }

    /// Whether `SHADER_F16` was requested (offered, fast paths on). Informational: 16-bit tensors
    /// are packed in u32 and widened by bit operations on every adapter.
    pub fn has_shader_f16(&self) -> bool {
        self.inner.gpu.shader_f16
    }

    /// The storage binding limit in force, in bytes: tensors above it are held in chunks.
    pub fn binding_limit(&self) -> u64 {
        self.inner.gpu.max_binding
    }

    /// The buffer pool's counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }

    /// Changes the pool budget (bytes of free buffers kept), releasing buffers beyond it now.
    pub fn set_pool_budget(&self, bytes: u64) {
        self.inner.pool.set_budget(bytes);
    }

    /// Releases every free pooled buffer to the device (for example between pipeline stages).
    pub fn trim_pool(&self) {
        self.inner.pool.trim();
    }

    pub(crate) fn gpu(&self) -> &Gpu {
        &self.inner.gpu
    }

    /// Reads `x` back one binding chunk at a time (so staging buffers stay within the binding limit).
    /// Natively `Gpu::wait` runs the map callback before `rx` is awaited, so the future is ready
    /// at its first poll; in a browser the callback comes from the page's event loop meanwhile.
    async fn read_back(&self, b: &WgpuBuffer) -> Result<Vec<u8>> {
        let gpu = self.gpu();
        let fail = |e: &dyn std::fmt::Display| Error::backend(self.name(), format!("download: {e}"));
        let n = b.len * b.dtype.size();
        let mut out = Vec::with_capacity(n + 4);
        for j in 0..b.chunk_count() {
            let (c, _, _) = b.chunk(j);
            gpu.check_buffer(c.size, "download staging")?;
            let staging = self.inner.pool.take(Kind::Readback, c.size);
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(c.buf, c.offset, staging.buffer(), 0, c.size);
            gpu.queue.submit([enc.finish()]);
            let slice = staging.buffer().slice(..c.size);
            let (tx, rx) = futures_channel::oneshot::channel();
            slice.map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            gpu.wait()?;
            rx.await.map_err(|e| fail(&e))?.map_err(|e| fail(&e))?;
            // Mapped from here on: unmap before the staging buffer goes back to the pool.
            let read = slice.get_mapped_range().map(|view| out.extend_from_slice(&view));
            staging.buffer().unmap();
            read.map_err(|e| fail(&e))?;
        }
        gpu.check("download")?;
        out.truncate(n);
        Ok(out)
    }
}

impl Backend for WgpuBackend {
    type Buffer = WgpuBuffer;
    type HostBuffer = WgpuHostBuffer;

    fn name(&self) -> String {
        self.inner.gpu.name.clone()
    }

    fn zeros(&self, dtype: DType, len: usize) -> Result<WgpuBuffer> {
        // Pooled buffers are recycled, so clear them (new wgpu buffers would be zero anyway).
        let gpu = self.gpu();
        let t = self.tensor(dtype, len, "zeros")?;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for c in &t.blocks {
            enc.clear_buffer(c.buffer(), 0, Some(c.size()));
        }
        gpu.queue.submit([enc.finish()]);
        gpu.check("zeros")?;
        Ok(t)
    }

    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<WgpuBuffer> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(Error::backend(
                self.name(),
                format!("upload: {} bytes is not a whole number of {dtype} elements", bytes.len()),
            ));
        }
        let gpu = self.gpu();
        let t = self.tensor(dtype, bytes.len() / dtype.size(), "upload")?;
        let cb = t.block_elems * dtype.size();
        for (j, c) in t.blocks.iter().enumerate() {
            let part = &bytes[j * cb..((j + 1) * cb).min(bytes.len())];
            if part.len().is_multiple_of(4) {
                gpu.queue.write_buffer(c.buffer(), 0, part);
            } else {
                let mut padded = part.to_vec();
                padded.resize(part.len().div_ceil(4) * 4, 0);
                gpu.queue.write_buffer(c.buffer(), 0, &padded);
            }
        }
        gpu.check("upload")?;
        Ok(t)
    }

    fn upload_packed(&self, words: &[u32]) -> Result<WgpuBuffer> {
        // A 4-byte element buffer holding the words' bits unchanged (f32 storage copies bytes).
        self.upload(DType::F32, bytemuck::cast_slice(words))
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn download(&self, x: &T) -> Result<Vec<u8>> {
        pollster::block_on(self.read_back(x.buffer()))
    }

    #[cfg(target_arch = "wasm32")]
    fn download(&self, _: &T) -> Result<Vec<u8>> {
        Err(Error::backend(
            self.name(),
            "a blocking download cannot run in a browser: read back with download_async",
        ))
    }

    fn download_async(&self, x: &T) -> impl std::future::Future<Output = Result<Vec<u8>>> {
        self.read_back(x.buffer())
    }

    fn to_host(&self, x: &WgpuBuffer) -> Result<WgpuHostBuffer> {
        self.buffer_to_host(x)
    }

    fn upload_from_host(&self, src: &WgpuHostBuffer) -> Result<WgpuBuffer> {
        self.upload_host(src)
    }

    fn synchronize(&self) -> Result<()> {
        self.gpu().wait()
    }

    fn take_late_error(&self) -> Option<Error> {
        self.gpu().check("reported late").err()
    }

    fn memory_stats(&self) -> (u64, u64) {
        let s = self.pool_stats();
        (s.live_bytes, s.peak_bytes)
    }

    // ---- elementwise ----
    fn cast(&self, x: &T, to: DType) -> Result<WgpuBuffer> {
        ops::elementwise::cast(self, x, to)
    }
    fn activation(&self, x: &T, act: Activation) -> Result<WgpuBuffer> {
        ops::elementwise::activation(self, x, act)
    }
    fn swiglu(&self, gate: &T, up: &T) -> Result<WgpuBuffer> {
        ops::elementwise::swiglu(self, gate, up)
    }
    fn binary(&self, a: &T, b: &T, p: &BinaryParams) -> Result<WgpuBuffer> {
        ops::elementwise::binary(self, a, b, p)
    }
    fn scaled_add(&self, x: &T, z: &T, alpha: f32) -> Result<WgpuBuffer> {
        ops::elementwise::scaled_add(self, x, z, alpha)
    }
    fn gated_residual(&self, x: &T, z: &T, gate: &T, p: &RowsParams) -> Result<WgpuBuffer> {
        ops::elementwise::gated_residual(self, x, z, gate, p)
    }

    // ---- layout ----
    fn permute(&self, x: &T, p: &PermuteParams) -> Result<WgpuBuffer> {
        ops::layout::permute(self, x, p)
    }
    fn slice(&self, x: &T, p: &SliceParams) -> Result<WgpuBuffer> {
        ops::layout::slice(self, x, p)
    }
    fn concat(&self, xs: &[&T], p: &ConcatParams) -> Result<WgpuBuffer> {
        ops::layout::concat(self, xs, p)
    }
    fn upsample_nearest2x(&self, x: &T, p: &ImageParams) -> Result<WgpuBuffer> {
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
    ) -> Result<WgpuBuffer> {
        ops::gemm::linear(self, x, w, bias, e, p)
    }
    fn linear_quantized(
        &self,
        x: &T,
        w: &QuantizedMatrix<Self>,
        bias: Option<&T>,
        e: Epilogue<'_, Self>,
        p: &QuantLinearParams,
    ) -> Result<WgpuBuffer> {
        ops::gemm::linear_quantized(self, x, w, bias, e, p)
    }
    fn conv2d(&self, x: &T, w: &T, bias: Option<&T>, p: &Conv2dParams) -> Result<WgpuBuffer> {
        ops::conv::conv2d(self, x, w, bias, p)
    }

    // ---- norm ----
    fn layer_norm(&self, x: &T, w: Option<&T>, b: Option<&T>, p: &NormParams) -> Result<WgpuBuffer> {
        ops::norm::layer_norm(self, x, w, b, p)
    }
    fn layer_norm_modulate(&self, x: &T, shift: &T, scale: &T, p: &NormParams) -> Result<WgpuBuffer> {
        ops::norm::layer_norm_modulate(self, x, shift, scale, p)
    }
    fn rms_norm(&self, x: &T, w: &T, p: &NormParams) -> Result<WgpuBuffer> {
        ops::norm::rms_norm(self, x, w, p)
    }
    fn channel_rms_norm(&self, x: &T, gamma: &T, p: &ChannelParams) -> Result<WgpuBuffer> {
        ops::norm::channel_rms_norm(self, x, gamma, p)
    }
    fn cfg_renorm(&self, cond: &T, uncond: &T, p: &CfgParams) -> Result<WgpuBuffer> {
        ops::norm::cfg_renorm(self, cond, uncond, p)
    }

    // ---- rope ----
    fn rope(&self, x: &T, rope: &Rope<Self>, p: &HeadParams) -> Result<WgpuBuffer> {
        ops::rope::rope(self, x, rope, p)
    }
    fn rms_norm_rope(&self, x: &T, w: &T, rope: &Rope<Self>, p: &HeadParams) -> Result<WgpuBuffer> {
        ops::rope::rms_norm_rope(self, x, w, rope, p)
    }
    fn joint_qkv(&self, streams: [&QkvStream<'_, Self>; 2], p: &JointQkvParams) -> Result<[WgpuBuffer; 3]> {
        ops::rope::joint_qkv(self, streams, p)
    }

    // ---- attention ----
    fn attention(&self, q: &T, k: &T, v: &T, p: &AttentionParams) -> Result<WgpuBuffer> {
        ops::attention::attention(self, q, k, v, p)
    }

    // ---- gather ----
    fn gather_rows(
        &self,
        table: &T,
        index: &[u32],
        weights: Option<&[f32]>,
        p: &GatherParams,
    ) -> Result<WgpuBuffer> {
        ops::gather::gather_rows(self, table, index, weights, p)
    }
    fn scatter_rows(&self, dst: &T, rows: &[u32], src: &T, p: &ScatterParams) -> Result<WgpuBuffer> {
        ops::gather::scatter_rows(self, dst, rows, src, p)
    }
}
