//! joyrt-cuda: the CUDA backend, hand-written kernels on cudarc.
//!
//! Kernels live in `kernels/*.cu` (one file per op family, see [`kernels`]); each family is
//! compiled by NVRTC at first use for the device's exact architecture and the dtypes of the call,
//! then cached for the process. Nothing CUDA is needed to build the crate: libcuda and libnvrtc
//! are loaded at run time, and their absence is a [`Error::BackendUnavailable`], never a panic.
//!
//! Storage: a buffer is raw device bytes (`f32`, or the 16-bit patterns of bf16/f16); kernels
//! widen to f32, compute in f32 and round to nearest even on store. One stream runs every op in
//! order; buffers come from the driver's stream-ordered pool (`cuMemAllocAsync`), whose release
//! threshold is raised so memory freed in one denoising step is reused by the next instead of
//! going back to the driver.

pub mod emu;
pub mod kernels;

use cudarc::driver::{
    sys as cu, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    DriverError, LaunchConfig, PushKernelArg,
};
use joyrt_core::backend::*;
use joyrt_core::{Backend, DType, Error, Result, Tensor};
use kernels::{Family, Spec};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where a buffer's bytes live.
enum Mem {
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
    data: Mem,
    ptr: u64,
    len: usize,
    dtype: DType,
    stats: Arc<Stats>,
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

#[derive(Default)]
struct Stats {
    live: AtomicU64,
    peak: AtomicU64,
}

type FunctionKey = (Family, Spec, &'static str);

/// What runs the kernels.
enum Dev {
    Gpu {
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
    },
    /// The CPU emulation ([`CudaBackend::emulated`]).
    Emu(emu::Emulator),
}

#[derive(Clone)]
enum Kernel {
    Gpu(CudaFunction),
    Emu(emu::EmuKernel),
}

struct Inner {
    dev: Dev,
    name: String,
    arch: String,
    /// Tensor-core GEMM for same-dtype 16-bit operands (off with `JOYRT_CUDA_GEMM=simt`).
    mma: bool,
    /// Fill fresh outputs with NaN bytes (`JOYRT_CUDA_POISON=1`; always in the emulation) so an
    /// unwritten element shows as NaN in the conformance suite.
    poison: bool,
    /// Resident grid size for grid-stride kernels.
    max_blocks: u32,
    modules: Mutex<HashMap<(Family, Spec), Arc<CudaModule>>>,
    functions: Mutex<HashMap<FunctionKey, Kernel>>,
    stats: Arc<Stats>,
}

/// The CUDA backend. Cloning shares the context, stream and kernel cache.
#[derive(Clone)]
pub struct CudaBackend {
    inner: Arc<Inner>,
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
    if !kernels::nvrtc_present() {
        return Err(
            "libnvrtc was not found: install the CUDA toolkit or `pip install nvidia-cuda-nvrtc-cu12` \
                    and add its lib folder to LD_LIBRARY_PATH"
                .into(),
        );
    }
    Ok(())
}

/// A raw kernel argument. Pointers are device addresses (0 = null).
#[derive(Clone, Copy)]
enum Arg {
    Ptr(u64),
    I32(i32),
    U64(u64),
    F32(f32),
    /// The op's output buffer, filled in by the launcher.
    Out,
    Conv(ConvShape),
    Perm(PermuteDims),
}

/// `ConvShape` in kernels/gemm.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct ConvShape {
    channels: i32,
    height: i32,
    width: i32,
    kernel_h: i32,
    kernel_w: i32,
    stride: i32,
    pad_top: i32,
    pad_left: i32,
    out_height: i32,
    out_width: i32,
}
// SAFETY: plain old data, laid out as the C struct of the same name.
unsafe impl DeviceRepr for ConvShape {}

/// `PermuteDims` in kernels/layout.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct PermuteDims {
    out_dims: [u64; 6],
    in_strides: [u64; 6],
    rank: i32,
}
// SAFETY: plain old data, laid out as the C struct of the same name (trailing padding included).
unsafe impl DeviceRepr for PermuteDims {}

const THREADS: u32 = 256;

/// The `Arg` for an optional tensor: its device address, or null.
fn opt_ptr(t: Option<&Tensor<CudaBackend>>) -> Arg {
    Arg::Ptr(t.map_or(0, |t| t.buffer().ptr))
}

fn ptr(t: &Tensor<CudaBackend>) -> Arg {
    Arg::Ptr(t.buffer().ptr)
}

fn dt(t: Option<&Tensor<CudaBackend>>, default: DType) -> DType {
    t.map_or(default, |t| t.dtype())
}

fn i32_of(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::backend("cuda", format!("{what} = {v} exceeds the kernels' 32-bit index range")))
}

impl CudaBackend {
    /// Opens GPU 0.
    pub fn new() -> Result<CudaBackend> {
        CudaBackend::with_device(0)
    }

    /// Opens GPU `ordinal`. A missing driver, NVRTC, GPU or a GPU older than Ampere is
    /// [`Error::BackendUnavailable`].
    pub fn with_device(ordinal: usize) -> Result<CudaBackend> {
        availability().map_err(unavailable)?;
        // cudarc panics when the driver lacks a symbol it wants (a driver older than the CUDA
        // version it was built for); that is "unavailable" too.
        let opened = std::panic::catch_unwind(|| -> std::result::Result<_, String> {
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
        if major < 8 {
            return Err(unavailable(format!(
                "{gpu} has compute capability {major}.{minor}; joyrt's kernels need 8.0 (Ampere) or newer"
            )));
        }
        let sms = ctx
            .attribute(cu::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| unavailable(format!("{e:?}")))?;
        // One stream, so cudarc's per-buffer event tracking would only add overhead.
        // SAFETY: no buffer exists yet and all work goes to one stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        keep_freed_memory_pooled(&ctx);
        Ok(CudaBackend {
            inner: Arc::new(Inner {
                name: format!("cuda:{gpu} ({})", kernels::arch_for(major, minor)),
                arch: kernels::arch_for(major, minor),
                mma: gemm_mma_enabled(),
                poison: std::env::var("JOYRT_CUDA_POISON").is_ok_and(|v| v == "1"),
                max_blocks: (sms.max(1) as u32) * 16,
                dev: Dev::Gpu { ctx, stream },
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
                stats: Arc::new(Stats::default()),
            }),
        })
    }

    /// The same kernels on the CPU, through a C++ emulation of the CUDA execution model (needs a
    /// C++ compiler; slow). This is how the conformance suite runs the CUDA kernel sources on a
    /// machine without a GPU; it says nothing about speed.
    pub fn emulated() -> Result<CudaBackend> {
        let emulator = emu::Emulator::new()
            .map_err(|why| Error::BackendUnavailable { backend: "cuda-emulated".into(), why })?;
        Ok(CudaBackend {
            inner: Arc::new(Inner {
                name: "cuda-emulated (kernels on the CPU)".into(),
                arch: "emulated".into(),
                mma: gemm_mma_enabled(),
                poison: true,
                max_blocks: 8,
                dev: Dev::Emu(emulator),
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
                stats: Arc::new(Stats::default()),
            }),
        })
    }

    /// The NVRTC architecture the kernels are compiled for (`sm_90a` on H100/H200).
    pub fn arch(&self) -> &str {
        &self.inner.arch
    }

    /// Free and total device memory in bytes, as the driver reports them.
    pub fn device_memory(&self) -> Result<(u64, u64)> {
        match &self.inner.dev {
            Dev::Gpu { ctx, .. } => {
                let (free, total) = ctx.mem_get_info().map_err(|e| self.driver_err("cuMemGetInfo", e))?;
                Ok((free as u64, total as u64))
            }
            Dev::Emu(_) => Err(Error::backend(self.name(), "the emulation has no device memory")),
        }
    }

    fn driver_err(&self, what: &str, e: DriverError) -> Error {
        Error::backend(self.name(), format!("{what}: {e:?}"))
    }

    fn alloc(&self, dtype: DType, len: usize, zeroed: bool) -> Result<CudaBuffer> {
        let bytes = (len * dtype.size()).max(4);
        let (data, ptr) = match &self.inner.dev {
            Dev::Gpu { stream, .. } => {
                let data = if zeroed {
                    stream.alloc_zeros::<u8>(bytes)
                } else {
                    // SAFETY: every kernel writes its whole output before anything reads it.
                    unsafe { stream.alloc::<u8>(bytes) }
                }
                .map_err(|e| match e.0 {
                    cu::CUresult::CUDA_ERROR_OUT_OF_MEMORY => Error::OutOfMemory {
                        backend: self.name(),
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
            Dev::Emu(_) => {
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

    /// The kernel `name` of `family` specialised for `spec`, compiled on first use.
    fn function(&self, family: Family, spec: Spec, name: &'static str) -> Result<Kernel> {
        let key = (family, spec, name);
        if let Some(f) = self.inner.functions.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(f.clone());
        }
        let kernel = match &self.inner.dev {
            Dev::Emu(emulator) => Kernel::Emu(emulator.kernel(family, spec, name).map_err(|log| {
                Error::backend(self.name(), format!("building the emulated kernels: {log}"))
            })?),
            Dev::Gpu { ctx, .. } => {
                let module = {
                    let mut modules = self.inner.modules.lock().unwrap_or_else(|e| e.into_inner());
                    match modules.get(&(family, spec)) {
                        Some(m) => m.clone(),
                        None => {
                            let cubin = kernels::compile(family, &spec, &self.inner.arch).map_err(|log| {
                                Error::backend(self.name(), format!("kernel compilation failed: {log}"))
                            })?;
                            let m = ctx.load_module(cudarc::nvrtc::Ptx::from_binary(cubin)).map_err(|e| {
                                self.driver_err(
                                    &format!("loading {} for {}", family.file(), self.inner.arch),
                                    e,
                                )
                            })?;
                            modules.insert((family, spec), m.clone());
                            m
                        }
                    }
                };
                Kernel::Gpu(
                    module.load_function(name).map_err(|e| self.driver_err(&format!("kernel {name}"), e))?,
                )
            }
        };
        self.inner.functions.lock().unwrap_or_else(|e| e.into_inner()).insert(key, kernel.clone());
        Ok(kernel)
    }

    fn launch(&self, f: &Kernel, grid: (u32, u32, u32), block: u32, args: &[Arg]) -> Result<()> {
        self.launch_with_smem(f, grid, block, 0, args)
    }

    /// A launch with `smem` bytes of dynamic shared memory (the kernel's attribute must allow it).
    fn launch_with_smem(
        &self,
        f: &Kernel,
        grid: (u32, u32, u32),
        block: u32,
        smem: u32,
        args: &[Arg],
    ) -> Result<()> {
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        if grid.1 > 65535 || grid.2 > 65535 {
            return Err(Error::backend(
                self.name(),
                format!("grid {grid:?} exceeds CUDA's 65535 limit in y/z"),
            ));
        }
        match (f, &self.inner.dev) {
            (Kernel::Gpu(f), Dev::Gpu { stream, .. }) => {
                let mut b = stream.launch_builder(f);
                for a in args {
                    match a {
                        Arg::Ptr(v) | Arg::U64(v) => b.arg(v),
                        Arg::I32(v) => b.arg(v),
                        Arg::F32(v) => b.arg(v),
                        Arg::Conv(v) => b.arg(v),
                        Arg::Perm(v) => b.arg(v),
                        Arg::Out => unreachable!("Arg::Out is replaced before launch"),
                    };
                }
                let cfg = LaunchConfig { grid_dim: grid, block_dim: (block, 1, 1), shared_mem_bytes: smem };
                // SAFETY: each call site passes the argument list of the kernel's C signature
                // (pointers to buffers sized by the checked op that calls it).
                unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| self.driver_err("kernel launch", e))
            }
            (Kernel::Emu(k), Dev::Emu(_)) => {
                let mut ptrs: Vec<*mut std::ffi::c_void> = args
                    .iter()
                    .map(|a| match a {
                        Arg::Ptr(v) | Arg::U64(v) => v as *const u64 as *mut _,
                        Arg::I32(v) => v as *const i32 as *mut _,
                        Arg::F32(v) => v as *const f32 as *mut _,
                        Arg::Conv(v) => v as *const ConvShape as *mut _,
                        Arg::Perm(v) => v as *const PermuteDims as *mut _,
                        Arg::Out => unreachable!("Arg::Out is replaced before launch"),
                    })
                    .collect();
                let _one_at_a_time = emu::global_launch_lock();
                // SAFETY: as for the GPU launch; host buffers stand in for device memory.
                unsafe { (k.f)(grid.0, grid.1, grid.2, block, smem, ptrs.as_mut_ptr()) };
                Ok(())
            }
            _ => unreachable!("kernels come from the backend's own device"),
        }
    }

    /// A grid-stride launch over `n` elements.
    fn launch_1d(&self, f: &Kernel, n: usize, args: &[Arg]) -> Result<()> {
        let blocks = (n.div_ceil(THREADS as usize) as u64).clamp(1, self.inner.max_blocks as u64) as u32;
        if n == 0 {
            return Ok(());
        }
        self.launch(f, (blocks, 1, 1), THREADS, args)
    }

    /// An elementwise op: `name` in `family` over the `n` elements of a new `dtype` output.
    fn map(
        &self,
        family: Family,
        spec: Spec,
        name: &'static str,
        n: usize,
        args: &[Arg],
    ) -> Result<CudaBuffer> {
        let out = self.alloc(spec.x, n, false)?;
        let f = self.function(family, spec, name)?;
        let all = with_output(args, &out);
        self.launch_1d(&f, n, &all)?;
        Ok(out)
    }

    /// One block per row of `cols` elements.
    fn rows(
        &self,
        family: Family,
        spec: Spec,
        name: &'static str,
        (rows, cols): (usize, usize),
        args: &[Arg],
    ) -> Result<CudaBuffer> {
        let out = self.alloc(spec.x, rows * cols, false)?;
        let f = self.function(family, spec, name)?;
        let all = with_output(args, &out);
        let threads = (cols.div_ceil(32) * 32).clamp(32, 256) as u32;
        if rows > i32::MAX as usize {
            return Err(Error::backend(self.name(), format!("{rows} rows exceed the grid limit")));
        }
        self.launch(&f, (rows as u32, 1, 1), threads, &all)?;
        Ok(out)
    }

    /// Copies `bytes` to the start of `out`.
    fn copy_in(&self, out: &mut CudaBuffer, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match (&mut out.data, &self.inner.dev) {
            (Mem::Device(d), Dev::Gpu { stream, .. }) => stream
                .memcpy_htod(bytes, &mut d.slice_mut(..bytes.len()))
                .map_err(|e| self.driver_err("upload (cuMemcpyHtoD)", e)),
            (Mem::Host(h), _) => {
                bytemuck::cast_slice_mut::<u128, u8>(h)[..bytes.len()].copy_from_slice(bytes);
                Ok(())
            }
            _ => unreachable!("buffers come from the backend's own device"),
        }
    }

    fn upload_u32(&self, v: &[u32]) -> Result<CudaBuffer> {
        self.upload(DType::F32, bytemuck::cast_slice(v))
    }

    fn upload_f32(&self, v: &[f32]) -> Result<CudaBuffer> {
        self.upload(DType::F32, bytemuck::cast_slice(v))
    }
}

/// `args` with [`Arg::Out`] replaced by `out`'s address.
fn with_output(args: &[Arg], out: &CudaBuffer) -> Vec<Arg> {
    args.iter().map(|a| if matches!(a, Arg::Out) { Arg::Ptr(out.ptr) } else { *a }).collect()
}

/// Dynamic shared memory of the kernels that use it, in bytes: kernels/gemm.cu's MMA_STAGES · 2 ·
/// 128 · 40 16-bit elements, kernels/attention.cu's FA_SMEM_BYTES(D).
fn dynamic_smem(kernel: &str) -> Option<u32> {
    match kernel {
        "linear_mma_pipelined" => Some(3 * 2 * 128 * 40 * 2),
        "attention_mma_d64" => Some(2 * 2 * 64 * (64 + 8) * 2),
        "attention_mma_d128" => Some(2 * 2 * 64 * (128 + 8) * 2),
        _ => None,
    }
}

fn gemm_mma_enabled() -> bool {
    std::env::var("JOYRT_CUDA_GEMM").map_or(true, |v| v != "simt")
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

fn binary_op(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
    }
}

impl Backend for CudaBackend {
    type Buffer = CudaBuffer;

    fn name(&self) -> String {
        self.inner.name.clone()
    }

    fn zeros(&self, dtype: DType, len: usize) -> Result<CudaBuffer> {
        self.alloc(dtype, len, true)
    }

    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<CudaBuffer> {
        let len = bytes.len() / dtype.size();
        let mut out = self.alloc(dtype, len, false)?;
        self.copy_in(&mut out, bytes)?;
        Ok(out)
    }

    fn download(&self, x: &Tensor<Self>) -> Result<Vec<u8>> {
        let b = x.buffer();
        let bytes = b.len * b.dtype.size();
        let mut host = vec![0u8; bytes];
        match (&b.data, &self.inner.dev) {
            (_, _) if bytes == 0 => {}
            (Mem::Device(d), Dev::Gpu { stream, .. }) => stream
                .memcpy_dtoh(&d.slice(..bytes), &mut host)
                .map_err(|e| self.driver_err("download (cuMemcpyDtoH)", e))?,
            (Mem::Host(h), _) => host.copy_from_slice(&bytemuck::cast_slice::<u128, u8>(h)[..bytes]),
            _ => unreachable!("buffers come from the backend's own device"),
        }
        self.synchronize()?;
        Ok(host)
    }

    fn cast(&self, x: &Tensor<Self>, to: DType) -> Result<CudaBuffer> {
        let spec = Spec { c: to, ..Spec::uniform(x.dtype()) };
        let out = self.alloc(to, x.numel(), false)?;
        let f = self.function(Family::Elementwise, spec, "cast")?;
        self.launch_1d(&f, x.numel(), &[ptr(x), Arg::Ptr(out.ptr), Arg::U64(x.numel() as u64)])?;
        Ok(out)
    }

    fn synchronize(&self) -> Result<()> {
        match &self.inner.dev {
            Dev::Gpu { stream, .. } => stream
                .synchronize()
                .map_err(|e| self.driver_err("synchronize (a kernel may have faulted)", e)),
            Dev::Emu(_) => Ok(()),
        }
    }

    fn memory_stats(&self) -> (u64, u64) {
        let s = &self.inner.stats;
        (s.live.load(Ordering::Relaxed), s.peak.load(Ordering::Relaxed))
    }

    fn permute(&self, x: &Tensor<Self>, p: &PermuteParams) -> Result<CudaBuffer> {
        let rank = p.dims.len();
        if rank > 6 {
            return Err(Error::shape("permute", format!("rank {rank} > 6")));
        }
        let mut in_strides = [1u64; 6];
        for i in (0..rank.saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * p.dims[i + 1] as u64;
        }
        let mut d = PermuteDims { rank: rank as i32, ..Default::default() };
        for (a, &src) in p.perm.iter().enumerate() {
            d.out_dims[a] = p.dims[src] as u64;
            d.in_strides[a] = in_strides[src];
        }
        let n = x.numel();
        self.map(
            Family::Layout,
            Spec::uniform(x.dtype()),
            "permute",
            n,
            &[ptr(x), Arg::Out, Arg::U64(n as u64), Arg::Perm(d)],
        )
    }

    fn slice(&self, x: &Tensor<Self>, p: &SliceParams) -> Result<CudaBuffer> {
        let out = self.alloc(x.dtype(), p.outer * p.len, false)?;
        let f = self.function(Family::Layout, Spec::uniform(x.dtype()), "copy_cols")?;
        let u = |v: usize| Arg::U64(v as u64);
        self.launch_1d(
            &f,
            p.outer * p.len,
            &[ptr(x), Arg::Ptr(out.ptr), u(p.outer), u(p.len), u(p.x_inner), u(p.start), u(p.len), u(0)],
        )?;
        Ok(out)
    }

    fn concat(&self, xs: &[&Tensor<Self>], p: &ConcatParams) -> Result<CudaBuffer> {
        let dtype = xs[0].dtype();
        let total: usize = p.inners.iter().sum();
        let out = self.alloc(dtype, p.outer * total, false)?;
        let f = self.function(Family::Layout, Spec::uniform(dtype), "copy_cols")?;
        let u = |v: usize| Arg::U64(v as u64);
        let mut off = 0;
        for (x, &inner) in xs.iter().zip(&p.inners) {
            self.launch_1d(
                &f,
                p.outer * inner,
                &[ptr(x), Arg::Ptr(out.ptr), u(p.outer), u(inner), u(inner), u(0), u(total), u(off)],
            )?;
            off += inner;
        }
        Ok(out)
    }

    fn linear(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        p: &LinearParams,
    ) -> Result<CudaBuffer> {
        let spec = Spec { x: x.dtype(), w: w.dtype(), b: dt(bias, x.dtype()), c: x.dtype() };
        let (m, n, k) = (i32_of("M", p.m)?, i32_of("N", p.n)?, i32_of("K", p.k)?);
        let out = self.alloc(x.dtype(), p.m * p.n, false)?;
        let mut args =
            vec![ptr(x), ptr(w), opt_ptr(bias), Arg::Ptr(out.ptr), Arg::I32(m), Arg::I32(n), Arg::I32(k)];
        let grid = (p.n.div_ceil(128) as u32, p.m.div_ceil(128) as u32, 1);
        if self.inner.mma && spec.mma() && p.k.is_multiple_of(8) {
            let name = "linear_mma_pipelined";
            let f = self.function(Family::Gemm, spec, name)?;
            self.launch_with_smem(&f, grid, 256, dynamic_smem(name).unwrap_or(0), &args)?;
        } else if self.inner.mma && spec.mma() {
            args.push(Arg::I32(0));
            let f = self.function(Family::Gemm, spec, "linear_mma")?;
            self.launch(&f, grid, 256, &args)?;
        } else {
            let f = self.function(Family::Gemm, spec, "linear_simt")?;
            self.launch(&f, (p.n.div_ceil(64) as u32, p.m.div_ceil(64) as u32, 1), 256, &args)?;
        }
        Ok(out)
    }

    fn layer_norm(
        &self,
        x: &Tensor<Self>,
        w: Option<&Tensor<Self>>,
        b: Option<&Tensor<Self>>,
        p: &NormParams,
    ) -> Result<CudaBuffer> {
        let spec = Spec { x: x.dtype(), w: dt(w, x.dtype()), b: dt(b, x.dtype()), c: x.dtype() };
        self.rows(
            Family::Norm,
            spec,
            "layer_norm",
            (p.rows, p.cols),
            &[ptr(x), opt_ptr(w), opt_ptr(b), Arg::Out, Arg::U64(p.cols as u64), Arg::F32(p.eps)],
        )
    }

    fn layer_norm_modulate(
        &self,
        x: &Tensor<Self>,
        shift: &Tensor<Self>,
        scale: &Tensor<Self>,
        p: &NormParams,
    ) -> Result<CudaBuffer> {
        let spec = Spec { x: x.dtype(), w: shift.dtype(), b: scale.dtype(), c: x.dtype() };
        self.rows(
            Family::Norm,
            spec,
            "layer_norm_modulate",
            (p.rows, p.cols),
            &[ptr(x), ptr(shift), ptr(scale), Arg::Out, Arg::U64(p.cols as u64), Arg::F32(p.eps)],
        )
    }

    fn rms_norm(&self, x: &Tensor<Self>, w: &Tensor<Self>, p: &NormParams) -> Result<CudaBuffer> {
        let spec = Spec { w: w.dtype(), ..Spec::uniform(x.dtype()) };
        self.rows(
            Family::Norm,
            spec,
            "rms_norm",
            (p.rows, p.cols),
            &[ptr(x), ptr(w), Arg::Out, Arg::U64(p.cols as u64), Arg::F32(p.eps)],
        )
    }

    fn channel_rms_norm(
        &self,
        x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        p: &ChannelParams,
    ) -> Result<CudaBuffer> {
        let spec = Spec { w: gamma.dtype(), ..Spec::uniform(x.dtype()) };
        let out = self.alloc(x.dtype(), p.channels * p.positions, false)?;
        let f = self.function(Family::Norm, spec, "channel_rms_norm")?;
        self.launch_1d(
            &f,
            p.positions,
            &[
                ptr(x),
                ptr(gamma),
                Arg::Ptr(out.ptr),
                Arg::U64(p.channels as u64),
                Arg::U64(p.positions as u64),
            ],
        )?;
        Ok(out)
    }

    fn rope(&self, x: &Tensor<Self>, rope: &Rope<Self>, p: &HeadParams) -> Result<CudaBuffer> {
        check_rope_tables(rope)?;
        let n = p.tokens * p.heads * p.head_dim;
        let out = self.alloc(x.dtype(), n, false)?;
        let f = self.function(Family::Norm, Spec::uniform(x.dtype()), "rope")?;
        let u = |v: usize| Arg::U64(v as u64);
        self.launch_1d(
            &f,
            n / 2,
            &[
                ptr(x),
                ptr(&rope.cos),
                ptr(&rope.sin),
                Arg::Ptr(out.ptr),
                u(p.tokens),
                u(p.heads),
                u(p.head_dim),
                Arg::I32((rope.pairing == RopePairing::HalfSplit) as i32),
            ],
        )?;
        Ok(out)
    }

    fn rms_norm_rope(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        rope: &Rope<Self>,
        p: &HeadParams,
    ) -> Result<CudaBuffer> {
        check_rope_tables(rope)?;
        let spec = Spec { w: w.dtype(), ..Spec::uniform(x.dtype()) };
        self.rows(
            Family::Norm,
            spec,
            "rms_norm_rope",
            (p.tokens * p.heads, p.head_dim),
            &[
                ptr(x),
                ptr(w),
                ptr(&rope.cos),
                ptr(&rope.sin),
                Arg::Out,
                Arg::U64(p.heads as u64),
                Arg::U64(p.head_dim as u64),
                Arg::F32(p.eps),
                Arg::I32((rope.pairing == RopePairing::HalfSplit) as i32),
            ],
        )
    }

    fn activation(&self, x: &Tensor<Self>, act: Activation) -> Result<CudaBuffer> {
        let code = match act {
            Activation::Silu => 0,
            Activation::GeluTanh => 1,
            Activation::GeluErf => 2,
        };
        let n = x.numel();
        self.map(
            Family::Elementwise,
            Spec::uniform(x.dtype()),
            "activation",
            n,
            &[ptr(x), Arg::Out, Arg::U64(n as u64), Arg::I32(code)],
        )
    }

    fn swiglu(&self, gate: &Tensor<Self>, up: &Tensor<Self>) -> Result<CudaBuffer> {
        let spec = Spec { w: up.dtype(), ..Spec::uniform(gate.dtype()) };
        let n = gate.numel();
        self.map(Family::Elementwise, spec, "swiglu", n, &[ptr(gate), ptr(up), Arg::Out, Arg::U64(n as u64)])
    }

    fn binary(&self, a: &Tensor<Self>, b: &Tensor<Self>, p: &BinaryParams) -> Result<CudaBuffer> {
        let spec = Spec { w: b.dtype(), ..Spec::uniform(a.dtype()) };
        let (mode, inner) = match p.broadcast {
            Broadcast::None => (0, 1),
            Broadcast::Row { inner } => (1, inner),
            Broadcast::Col { inner } => (2, inner),
        };
        self.map(
            Family::Elementwise,
            spec,
            "binary",
            p.len,
            &[
                ptr(a),
                ptr(b),
                Arg::Out,
                Arg::U64(p.len as u64),
                Arg::I32(binary_op(p.op)),
                Arg::I32(mode),
                Arg::U64(inner.max(1) as u64),
            ],
        )
    }

    fn scaled_add(&self, x: &Tensor<Self>, z: &Tensor<Self>, alpha: f32) -> Result<CudaBuffer> {
        let spec = Spec { w: z.dtype(), ..Spec::uniform(x.dtype()) };
        let n = x.numel();
        self.map(
            Family::Elementwise,
            spec,
            "scaled_add",
            n,
            &[ptr(x), ptr(z), Arg::Out, Arg::U64(n as u64), Arg::F32(alpha)],
        )
    }

    fn gated_residual(
        &self,
        x: &Tensor<Self>,
        z: &Tensor<Self>,
        gate: &Tensor<Self>,
        p: &RowsParams,
    ) -> Result<CudaBuffer> {
        let spec = Spec { x: x.dtype(), w: z.dtype(), b: gate.dtype(), c: x.dtype() };
        let n = p.rows * p.cols;
        self.map(
            Family::Elementwise,
            spec,
            "gated_residual",
            n,
            &[ptr(x), ptr(z), ptr(gate), Arg::Out, Arg::U64(n as u64), Arg::U64(p.cols.max(1) as u64)],
        )
    }

    fn cfg_renorm(&self, cond: &Tensor<Self>, uncond: &Tensor<Self>, p: &CfgParams) -> Result<CudaBuffer> {
        let spec = Spec { w: uncond.dtype(), ..Spec::uniform(cond.dtype()) };
        let out = self.alloc(cond.dtype(), p.channels * p.positions, false)?;
        let f = self.function(Family::Misc, spec, "cfg_renorm")?;
        self.launch_1d(
            &f,
            p.positions,
            &[
                ptr(cond),
                ptr(uncond),
                Arg::Ptr(out.ptr),
                Arg::U64(p.channels as u64),
                Arg::U64(p.positions as u64),
                Arg::F32(p.guidance),
            ],
        )?;
        Ok(out)
    }

    fn attention(
        &self,
        q: &Tensor<Self>,
        k: &Tensor<Self>,
        v: &Tensor<Self>,
        p: &AttentionParams,
    ) -> Result<CudaBuffer> {
        let spec = Spec { x: q.dtype(), w: k.dtype(), b: v.dtype(), c: q.dtype() };
        let tensor_cores = self.inner.mma && spec.mma() && spec.b == spec.x;
        let (name, rows) = match p.head_dim {
            64 if tensor_cores => ("attention_mma_d64", 64),
            128 if tensor_cores => ("attention_mma_d128", 64),
            0..=128 => ("attention_d128", 32),
            129..=512 => ("attention_d512", 8),
            d => {
                return Err(Error::backend(
                    self.name(),
                    format!("attention: head dim {d} > 512 is not supported by the CUDA kernel"),
                ))
            }
        };
        let out = self.alloc(q.dtype(), p.q_len * p.q_heads * p.head_dim, false)?;
        let f = self.function(Family::Attention, spec, name)?;
        let args = [
            ptr(q),
            ptr(k),
            ptr(v),
            Arg::Ptr(out.ptr),
            Arg::I32(i32_of("q_len", p.q_len)?),
            Arg::I32(i32_of("kv_len", p.kv_len)?),
            Arg::I32(i32_of("q_heads", p.q_heads)?),
            Arg::I32(i32_of("kv_heads", p.kv_heads)?),
            Arg::I32(p.head_dim as i32),
            Arg::F32(p.scale),
            Arg::I32(p.causal as i32),
        ];
        let grid = (p.q_len.div_ceil(rows) as u32, p.q_heads as u32, 1);
        self.launch_with_smem(&f, grid, 128, dynamic_smem(name).unwrap_or(0), &args)?;
        Ok(out)
    }

    fn conv2d(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        p: &Conv2dParams,
    ) -> Result<CudaBuffer> {
        let spec = Spec { x: x.dtype(), w: w.dtype(), b: dt(bias, x.dtype()), c: x.dtype() };
        let shape = ConvShape {
            channels: i32_of("in_channels", p.in_channels)?,
            height: i32_of("height", p.height)?,
            width: i32_of("width", p.width)?,
            kernel_h: p.kernel_h as i32,
            kernel_w: p.kernel_w as i32,
            stride: p.stride as i32,
            pad_top: p.pad.0 as i32,
            pad_left: p.pad.2 as i32,
            out_height: p.out_height as i32,
            out_width: p.out_width as i32,
        };
        let positions = p.out_height * p.out_width;
        i32_of("output positions", positions)?;
        let k = p.in_channels * p.kernel_h * p.kernel_w;
        let out = self.alloc(x.dtype(), p.out_channels * positions, false)?;
        let mut args = vec![
            ptr(x),
            ptr(w),
            opt_ptr(bias),
            Arg::Ptr(out.ptr),
            Arg::Conv(shape),
            Arg::I32(i32_of("out_channels", p.out_channels)?),
        ];
        if self.inner.mma && spec.mma() {
            args.push(Arg::I32(k.is_multiple_of(8) as i32));
            let f = self.function(Family::Gemm, spec, "conv2d_mma")?;
            self.launch(
                &f,
                (positions.div_ceil(128) as u32, p.out_channels.div_ceil(128) as u32, 1),
                256,
                &args,
            )?;
        } else {
            let f = self.function(Family::Gemm, spec, "conv2d_simt")?;
            self.launch(
                &f,
                (positions.div_ceil(64) as u32, p.out_channels.div_ceil(64) as u32, 1),
                256,
                &args,
            )?;
        }
        Ok(out)
    }

    fn upsample_nearest2x(&self, x: &Tensor<Self>, p: &ImageParams) -> Result<CudaBuffer> {
        let n = p.channels * 4 * p.height * p.width;
        let u = |v: usize| Arg::U64(v as u64);
        self.map(
            Family::Misc,
            Spec::uniform(x.dtype()),
            "upsample_nearest2x",
            n,
            &[ptr(x), Arg::Out, u(p.channels), u(p.height), u(p.width)],
        )
    }

    fn gather_rows(
        &self,
        table: &Tensor<Self>,
        index: &[u32],
        weights: Option<&[f32]>,
        p: &GatherParams,
    ) -> Result<CudaBuffer> {
        let idx = self.upload_u32(index)?;
        let wts = weights.map(|w| self.upload_f32(w)).transpose()?;
        let u = |v: usize| Arg::U64(v as u64);
        self.map(
            Family::Misc,
            Spec::uniform(table.dtype()),
            "gather_rows",
            p.rows * p.cols,
            &[
                ptr(table),
                Arg::Ptr(idx.ptr),
                Arg::Ptr(wts.as_ref().map_or(0, |w| w.ptr)),
                Arg::Out,
                u(p.rows),
                u(p.cols),
                u(p.taps),
            ],
        )
    }

    fn scatter_rows(
        &self,
        dst: &Tensor<Self>,
        rows: &[u32],
        src: &Tensor<Self>,
        p: &ScatterParams,
    ) -> Result<CudaBuffer> {
        let mut out = self.alloc(dst.dtype(), p.dst_rows * p.cols, false)?;
        match (&dst.buffer().data, &mut out.data, &self.inner.dev) {
            (Mem::Device(s), Mem::Device(d), Dev::Gpu { stream, .. }) => {
                stream.memcpy_dtod(s, d).map_err(|e| self.driver_err("cuMemcpyDtoD", e))?
            }
            (Mem::Host(s), Mem::Host(d), _) => d.copy_from_slice(s),
            _ => unreachable!("buffers come from the backend's own device"),
        }
        if rows.is_empty() {
            return Ok(out);
        }
        let idx = self.upload_u32(rows)?;
        let spec = Spec { w: src.dtype(), ..Spec::uniform(dst.dtype()) };
        let f = self.function(Family::Misc, spec, "scatter_rows")?;
        let n = p.src_rows * p.cols;
        self.launch_1d(
            &f,
            n,
            &[
                ptr(dst),
                Arg::Ptr(idx.ptr),
                ptr(src),
                Arg::Ptr(out.ptr),
                Arg::U64(p.src_rows as u64),
                Arg::U64(p.cols as u64),
                Arg::I32((p.mode == ScatterMode::Add) as i32),
            ],
        )?;
        Ok(out)
    }
}

fn check_rope_tables(rope: &Rope<CudaBackend>) -> Result<()> {
    for t in [&rope.cos, &rope.sin] {
        if t.dtype() != DType::F32 {
            return Err(Error::DType { op: "rope (angle tables must be f32)", dtype: t.dtype() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_argument_structs_match_the_c_layout() {
        // int × 10 in gemm.cu; u64[6] + u64[6] + int (+ 4 bytes padding) in layout.cu.
        assert_eq!(std::mem::size_of::<ConvShape>(), 40);
        assert_eq!(std::mem::size_of::<PermuteDims>(), 104);
        assert_eq!(std::mem::align_of::<PermuteDims>(), 8);
    }

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
