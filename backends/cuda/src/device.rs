//! The device under the backend: opening a GPU (or the CPU emulation), its one stream, and the
//! memory every op reads and writes (allocation from the stream-ordered pool, copies, counters).

use crate::launch::{AttentionPath, GemmPath, KernelCache};
use crate::{driver, emu, kernel, nvrtc, CudaBackend, Inner};
use cudarc::driver::{sys as cu, CudaContext, CudaSlice, CudaStream, DevicePtr, DriverError};
use joyrt_core::{DType, Error, Result, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What runs the kernels.
pub(crate) enum Device {
    Gpu {
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        /// Where streamed weights are uploaded (`streaming.rs`).
        copy: crate::streaming::CopyStream,
    },
    /// The CPU emulation ([`CudaBackend::emulated`]).
    Emu(emu::Emulator),
}

/// Where a buffer's bytes live.
pub(crate) enum Mem {
    Device(CudaSlice<u8>),
    /// Host memory of the CPU emulation (u128 words: 16-byte aligned like cudaMalloc's).
    Host(Vec<u128>),
}

impl Mem {
    fn bytes(&self) -> usize {
        match self {
            Mem::Device(d) => d.len(),
            Mem::Host(h) => h.len() * 16,
        }
    }
}

/// Device memory of one tensor.
pub struct CudaBuffer {
    pub(crate) data: Mem,
    /// The device address kernels get (a host address in the emulation).
    pub(crate) ptr: u64,
    len: usize,
    dtype: DType,
    stats: Arc<MemStats>,
}

impl CudaBuffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        self.stats.live.fetch_sub(self.data.bytes() as u64, Ordering::Relaxed);
    }
}

/// Bytes held by live buffers, and the most held at once.
#[derive(Default)]
pub(crate) struct MemStats {
    live: AtomicU64,
    peak: AtomicU64,
}

fn unavailable(why: impl Into<String>) -> Error {
    Error::BackendUnavailable { backend: "cuda".into(), why: why.into() }
}

/// Why the CUDA backend cannot run on this machine, if it cannot: checked without creating a
/// context (and without the panics cudarc raises when a library is missing).
pub fn availability() -> std::result::Result<(), String> {
    // SAFETY: only tries to dlopen the driver library.
    if !unsafe { cu::is_culib_present() } {
        return Err("the NVIDIA driver library (libcuda.so) was not found".into());
    }
    if !nvrtc::nvrtc_present() {
        return Err(
            "libnvrtc was not found: install the CUDA toolkit or `pip install nvidia-cuda-nvrtc-cu12` \
                    and add its lib folder to LD_LIBRARY_PATH"
                .into(),
        );
    }
    Ok(())
}

/// The GEMM kernels `JOYRT_CUDA_GEMM` asks for on modules compiled for `arch`.
fn gemm_path(arch: &str) -> std::result::Result<GemmPath, String> {
    GemmPath::choose(std::env::var("JOYRT_CUDA_GEMM").ok().as_deref(), kernel::has_wgmma(arch))
}

/// Whether `JOYRT_CUDA_FP8` asks for W8A8 (`w8a8`) rather than W8A16 (`w8a16`, the default) on
/// fp8 weights, refused where `arch` has no FP8 `mma.sync`.
fn fp8_w8a8(arch: &str) -> std::result::Result<bool, String> {
    match std::env::var("JOYRT_CUDA_FP8").ok().as_deref() {
        None | Some("") | Some("w8a16") => Ok(false),
        Some("w8a8") if kernel::has_fp8_convert(arch) => Ok(true),
        Some("w8a8") => {
            Err(format!("JOYRT_CUDA_FP8=w8a8 needs FP8 mma.sync (sm_89 or later); this is {arch}"))
        }
        Some(other) => Err(format!("JOYRT_CUDA_FP8={other}: expected w8a16 or w8a8")),
    }
}

/// The attention kernels `JOYRT_CUDA_ATTENTION` asks for on modules compiled for `arch`.
fn attention_path(arch: &str) -> std::result::Result<AttentionPath, String> {
    AttentionPath::choose(std::env::var("JOYRT_CUDA_ATTENTION").ok().as_deref(), kernel::has_wgmma(arch))
}

impl CudaBackend {
    /// Opens GPU 0.
    pub fn new() -> Result<CudaBackend> {
        CudaBackend::with_device(0)
    }

    /// Opens GPU `ordinal`. A missing driver, NVRTC, GPU or a GPU older than the kernels need
    /// ([`kernel::required_arch`]: Ampere) is [`Error::BackendUnavailable`].
    pub fn with_device(ordinal: usize) -> Result<CudaBackend> {
        availability().map_err(unavailable)?;
        // cudarc panics when the driver lacks a symbol it wants (a driver older than the CUDA
        // version it was built for); that is "unavailable" too. The symbols the backend calls are
        // checked here, so none is found missing later, mid-run.
        let opened = std::panic::catch_unwind(|| -> std::result::Result<_, String> {
            // SAFETY: availability() found the driver library.
            if let Some(symbol) = unsafe { driver::missing_symbol() } {
                return Err(format!("the CUDA driver is too old for this build: it lacks {symbol}"));
            }
            let driver_version = driver::driver_version()?;
            let nvrtc_version = nvrtc::nvrtc_version().ok_or("libnvrtc could not report its version")?;
            if let Some(why) = driver::version_mismatch(nvrtc_version, driver_version) {
                return Err(why);
            }
            let count = CudaContext::device_count().map_err(|e| format!("cuInit/cuDeviceGetCount: {e:?}"))?;
            if count <= 0 {
                return Err("the driver reports no CUDA device".into());
            }
            if ordinal >= count as usize {
                return Err(format!("device {ordinal} requested but only {count} present"));
            }
            CudaContext::new(ordinal).map_err(|e| format!("creating a context on device {ordinal}: {e:?}"))
        });
        let ctx = match opened {
            Ok(Ok(ctx)) => ctx,
            Ok(Err(why)) => return Err(unavailable(why)),
            Err(_) => {
                return Err(unavailable(
                    "the CUDA driver is too old for this build (a driver API symbol is missing)",
                ))
            }
        };
        let (major, minor) = ctx.compute_capability().map_err(|e| unavailable(format!("{e:?}")))?;
        let gpu = ctx.name().unwrap_or_else(|_| "GPU".into());
        let (need_major, need_minor) = kernel::required_arch();
        if (major as u32, minor as u32) < (need_major, need_minor) {
            let need = format!("{need_major}.{need_minor}");
            return Err(unavailable(format!(
                "{gpu} has compute capability {major}.{minor}; joyrt's kernels need {need} or newer"
            )));
        }
        let sms = ctx
            .attribute(cu::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| unavailable(format!("{e:?}")))?;
        // One stream, so cudarc's per-buffer event tracking would only add overhead.
        // SAFETY: no buffer exists yet and all work goes to one stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let copy = crate::streaming::CopyStream::new(
            ctx.new_stream().map_err(|e| unavailable(format!("creating the copy stream: {e:?}")))?,
        );
        keep_freed_memory_pooled(&ctx);
        let arch = nvrtc::arch_for(major, minor);
        let name = format!("cuda:{gpu} ({arch})");
        let limits = driver::device_limits(&ctx, name.clone()).map_err(unavailable)?;
        let gemm = gemm_path(&arch).map_err(unavailable)?;
        let attention = attention_path(&arch).map_err(unavailable)?;
        let fp8_w8a8 = fp8_w8a8(&arch).map_err(unavailable)?;
        Ok(CudaBackend::from_inner(Inner {
            name,
            arch,
            limits,
            sync_each_launch: std::env::var("JOYRT_CUDA_SYNC").is_ok_and(|v| v == "1"),
            last_launch: Default::default(),
            gemm: gemm.into(),
            fp8_w8a8: fp8_w8a8.into(),
            attention: attention.into(),
            poison: std::env::var("JOYRT_CUDA_POISON").is_ok_and(|v| v == "1"),
            max_blocks: (sms.max(1) as u32) * 16,
            persistent_blocks: sms.max(1) as u32,
            dev: Device::Gpu { ctx, stream, copy },
            kernels: KernelCache::default(),
            profiler: Default::default(),
            stats: Arc::default(),
        }))
    }

    /// The same kernels on the CPU, through a C++ emulation of the CUDA execution model (needs a
    /// C++ compiler; slow). This is how the conformance suite runs the CUDA kernel sources on a
    /// machine without a GPU; it says nothing about speed.
    pub fn emulated() -> Result<CudaBackend> {
        CudaBackend::emulating(emu::Emulator::new(), None)
    }

    /// The emulation of an sm_90 device whatever `JOYRT_CUDA_EMU_ARCH` says (Hopper's launch
    /// limits), taking the given GEMM and attention kernels whatever `JOYRT_CUDA_GEMM` and
    /// `JOYRT_CUDA_ATTENTION` say: how the tests reach each Hopper kernel.
    pub fn emulated_hopper(gemm: GemmPath, attention: AttentionPath) -> Result<CudaBackend> {
        CudaBackend::emulating(
            emu::Emulator::for_device(crate::limits::DeviceLimits::SM90),
            Some((gemm, attention)),
        )
    }

    /// The emulation of `device` (e.g. `DeviceLimits::SM89`: Ada, with FP8 `mma.sync` and no
    /// `wgmma`) whatever `JOYRT_CUDA_EMU_ARCH` says; its kernels as `JOYRT_CUDA_GEMM` and
    /// `JOYRT_CUDA_ATTENTION` choose for it.
    pub fn emulated_on(device: crate::limits::DeviceLimits) -> Result<CudaBackend> {
        CudaBackend::emulating(emu::Emulator::for_device(device), None)
    }

    fn emulating(
        emulator: std::result::Result<emu::Emulator, String>,
        paths: Option<(GemmPath, AttentionPath)>,
    ) -> Result<CudaBackend> {
        let unavailable = |why| Error::BackendUnavailable { backend: "cuda-emulated".into(), why };
        let emulator = emulator.map_err(unavailable)?;
        let limits = emulator.limits().clone();
        let (gemm, attention) = match paths {
            Some(p) => p,
            None => (
                gemm_path(limits.nvrtc_arch()).map_err(unavailable)?,
                attention_path(limits.nvrtc_arch()).map_err(unavailable)?,
            ),
        };
        let fp8_w8a8 = fp8_w8a8(limits.nvrtc_arch()).map_err(unavailable)?;
        Ok(CudaBackend::from_inner(Inner {
            name: format!("cuda-emulated (kernels on the CPU, {} limits)", limits.label),
            arch: "emulated".into(),
            limits,
            // Emulated launches run to completion before they return.
            sync_each_launch: false,
            last_launch: Default::default(),
            gemm: gemm.into(),
            fp8_w8a8: fp8_w8a8.into(),
            attention: attention.into(),
            poison: true,
            max_blocks: 8,
            persistent_blocks: 3,
            dev: Device::Emu(emulator),
            kernels: KernelCache::default(),
            profiler: Default::default(),
            stats: Arc::default(),
        }))
    }

    /// Free and total device memory in bytes, as the driver reports them.
    pub fn device_memory(&self) -> Result<(u64, u64)> {
        match &self.inner.dev {
            Device::Gpu { ctx, .. } => {
                let (free, total) = ctx.mem_get_info().map_err(|e| self.driver_err("cuMemGetInfo", e))?;
                Ok((free as u64, total as u64))
            }
            Device::Emu(_) => {
                Err(Error::backend(self.inner.name.clone(), "the emulation has no device memory"))
            }
        }
    }

    /// The error of driver call `what`; a sticky kernel fault says that it is one.
    pub(crate) fn driver_err(&self, what: &str, e: DriverError) -> Error {
        Error::backend(self.inner.name.clone(), format!("{what}: {}", self.describe_driver_error(e)))
    }

    pub(crate) fn describe_driver_error(&self, e: DriverError) -> String {
        if driver::is_sticky(e.0) {
            let last = *self.inner.last_launch.lock().unwrap_or_else(|e| e.into_inner());
            format!("{e:?}: {}", driver::poisoned_note(last))
        } else {
            format!("{e:?}")
        }
    }

    /// Records the kernel last launched, for the message of a fault that surfaces later.
    pub(crate) fn note_launch(&self, kernel: &'static str) {
        *self.inner.last_launch.lock().unwrap_or_else(|e| e.into_inner()) = Some(kernel);
    }

    /// A buffer of `len` elements of `dtype`: all zero, or (an op's output, which its kernel
    /// writes whole) uninitialised, poisoned with NaN bytes where asked.
    pub(crate) fn alloc(&self, dtype: DType, len: usize, zeroed: bool) -> Result<CudaBuffer> {
        let bytes = (len * dtype.size()).max(4);
        let (data, ptr) = match &self.inner.dev {
            Device::Gpu { stream, .. } => {
                let data = if zeroed {
                    stream.alloc_zeros::<u8>(bytes)
                } else {
                    // SAFETY: every kernel writes its whole output before anything reads it.
                    unsafe { stream.alloc::<u8>(bytes) }
                }
                .map_err(|e| match e.0 {
                    cu::CUresult::CUDA_ERROR_OUT_OF_MEMORY => Error::OutOfMemory {
                        backend: self.inner.name.clone(),
                        bytes: bytes as u64,
                        what: format!("a {dtype} tensor of {len} elements"),
                    },
                    _ => self.driver_err("cuMemAllocAsync", e),
                })?;
                let ptr = {
                    let (ptr, _sync) = data.device_ptr(stream);
                    ptr
                };
                if !zeroed && self.inner.poison {
                    // SAFETY: `ptr` addresses `bytes` bytes just allocated on this stream.
                    let r = unsafe { cu::cuMemsetD8Async(ptr, 0xff, bytes, stream.cu_stream()) };
                    if r != cu::CUresult::CUDA_SUCCESS {
                        return Err(self.driver_err("cuMemsetD8Async", DriverError(r)));
                    }
                }
                (Mem::Device(data), ptr)
            }
            Device::Emu(_) => {
                // Fresh outputs are all-ones bytes (NaN in every float dtype) so that an element a
                // kernel forgets to write fails the comparison instead of passing as a stale 0.
                let words = vec![if zeroed { 0 } else { u128::MAX }; bytes.div_ceil(16)];
                let ptr = words.as_ptr() as u64;
                (Mem::Host(words), ptr)
            }
        };
        let stats = self.inner.stats.clone();
        let live = stats.live.fetch_add(data.bytes() as u64, Ordering::Relaxed) + data.bytes() as u64;
        stats.peak.fetch_max(live, Ordering::Relaxed);
        Ok(CudaBuffer { ptr, data, len, dtype, stats })
    }

    /// An op's output: `len` elements of `dtype` that its kernel writes whole.
    pub(crate) fn output(&self, dtype: DType, len: usize) -> Result<CudaBuffer> {
        self.alloc(dtype, len, false)
    }

    /// A buffer holding `bytes`, the encoding of `bytes.len() / dtype.size()` elements.
    pub(crate) fn upload_bytes(&self, dtype: DType, bytes: &[u8]) -> Result<CudaBuffer> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(Error::backend(
                self.inner.name.clone(),
                format!("upload: {} bytes is not a whole number of {dtype} elements", bytes.len()),
            ));
        }
        let mut out = self.alloc(dtype, bytes.len() / dtype.size(), false)?;
        if bytes.is_empty() {
            return Ok(out);
        }
        match (&mut out.data, &self.inner.dev) {
            (Mem::Device(d), Device::Gpu { stream, .. }) => stream
                .memcpy_htod(bytes, &mut d.slice_mut(..bytes.len()))
                .map_err(|e| self.driver_err("upload (cuMemcpyHtoD)", e))?,
            (Mem::Host(h), _) => {
                bytemuck::cast_slice_mut::<u128, u8>(h)[..bytes.len()].copy_from_slice(bytes)
            }
            _ => unreachable!("buffers come from the backend's own device"),
        }
        Ok(out)
    }

    /// Host words (indices, weights) as a 4-byte buffer for a kernel.
    pub(crate) fn upload_words<W: bytemuck::Pod>(&self, words: &[W]) -> Result<CudaBuffer> {
        self.upload_bytes(DType::F32, bytemuck::cast_slice(words))
    }

    pub(crate) fn download_bytes(&self, x: &Tensor<CudaBackend>) -> Result<Vec<u8>> {
        let b = x.buffer();
        let bytes = b.len * b.dtype.size();
        let mut host = vec![0u8; bytes];
        match (&b.data, &self.inner.dev) {
            (_, _) if bytes == 0 => {}
            (Mem::Device(d), Device::Gpu { stream, .. }) => stream
                .memcpy_dtoh(&d.slice(..bytes), &mut host)
                .map_err(|e| self.driver_err("download (cuMemcpyDtoH)", e))?,
            (Mem::Host(h), _) => host.copy_from_slice(&bytemuck::cast_slice::<u128, u8>(h)[..bytes]),
            _ => unreachable!("buffers come from the backend's own device"),
        }
        self.sync()?;
        Ok(host)
    }

    /// A new buffer holding a copy of `src`.
    pub(crate) fn duplicate(&self, src: &Tensor<CudaBackend>) -> Result<CudaBuffer> {
        let mut out = self.output(src.dtype(), src.numel())?;
        match (&src.buffer().data, &mut out.data, &self.inner.dev) {
            (Mem::Device(s), Mem::Device(d), Device::Gpu { stream, .. }) => {
                stream.memcpy_dtod(s, d).map_err(|e| self.driver_err("cuMemcpyDtoD", e))?
            }
            (Mem::Host(s), Mem::Host(d), _) => d.copy_from_slice(s),
            _ => unreachable!("buffers come from the backend's own device"),
        }
        Ok(out)
    }

    pub(crate) fn sync(&self) -> Result<()> {
        match &self.inner.dev {
            Device::Gpu { stream, .. } => stream.synchronize().map_err(|e| self.driver_err("synchronize", e)),
            Device::Emu(emulator) => {
                emulator.check_usable().map_err(|why| Error::backend(self.inner.name.clone(), why))
            }
        }
    }

    pub(crate) fn mem_stats(&self) -> (u64, u64) {
        let s = &self.inner.stats;
        (s.live.load(Ordering::Relaxed), s.peak.load(Ordering::Relaxed))
    }
}

/// Raises the default memory pool's release threshold so freed blocks stay in the pool (the
/// stream-ordered allocator then serves each denoising step from memory the previous step freed).
fn keep_freed_memory_pooled(ctx: &Arc<CudaContext>) {
    if !ctx.has_async_alloc() {
        return;
    }
    let mut pool: cu::CUmemoryPool = std::ptr::null_mut();
    let mut threshold: u64 = u64::MAX;
    // SAFETY: the context is current (bound by cudarc at creation); out-pointers are live.
    unsafe {
        if cu::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == cu::CUresult::CUDA_SUCCESS {
            cu::cuMemPoolSetAttribute(
                pool,
                cu::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut std::ffi::c_void,
            );
        }
    }
}
