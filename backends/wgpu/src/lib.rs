//! joyrt-wgpu: the WGSL backend on wgpu.
//!
//! Storage: f32 tensors are `array<f32>` words; bf16 and f16 tensors are packed two per `u32`
//! (little-endian, element `2k` in the low half), widened in the shaders (bf16 by a 16-bit shift,
//! f16 by `unpack2x16float`), so no `shader-f16` feature is needed. Every kernel computes in f32 into
//! an f32 buffer; a pack pass then stores 16-bit outputs (round to nearest even for bf16).
//!
//! Shaders live in `shaders/*.wgsl`, one file per op family. Each is specialised at pipeline
//! creation by prepending the bindings and one load function per input dtype; pipelines are cached
//! by their source. All six bindings (params, output, four inputs) are always bound, unused ones to
//! a 4-byte dummy, under one explicit layout; each binding covers exactly the bytes in use.
//!
//! Memory: every buffer (tensors, f32 work buffers, params, index lists, download staging) comes
//! from a pool of free lists by size class and goes back to it on drop, so a denoising loop
//! reaches a steady state with no device allocation per op; free buffers beyond a budget are
//! released. [`WgpuBackend::memory_stats`] and [`WgpuBackend::pool_stats`] count them.
//!
//! Limits: sizes are checked against `max_buffer_size` and `max_storage_buffer_binding_size` before
//! wgpu sees them, with an error that gives the numbers. A tensor larger than the binding limit is
//! held in chunks ([`WgpuBuffer`]); `linear` (weight) and `gather_rows` (table) run over the chunks,
//! so a 1.2 GB embedding table or a large weight works on a 128 MiB-binding adapter; other ops
//! refuse chunked inputs with an error.
//!
//! Optional features are requested only when the adapter offers them ([`WgpuOptions::fast_paths`]):
//! `SUBGROUP` switches the row norms' reductions to `subgroupAdd`; `SHADER_F16` is requested and
//! reported but nothing depends on it (the packed-u32 path runs everywhere).

mod headless;
pub use headless::quiet_headless_device_select;

use joyrt_core::backend::*;
use joyrt_core::{Backend, DType, Error, Result, Tensor};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard};

// ---- buffer pool ---------------------------------------------------------------------------------

/// The smallest size class: params and index buffers all share it.
const MIN_CLASS: u64 = 256;

/// Pool budget when neither [`WgpuOptions::pool_budget`] nor `JOYRT_WGPU_POOL_MB` says otherwise.
pub const DEFAULT_POOL_BUDGET: u64 = 1 << 30;

/// The size class of a request of `bytes`: powers of two with three steps of a quarter between
/// them (256, 320, 384, 448, 512, 640, ...), so a pooled buffer wastes less than 25%.
fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(MIN_CLASS);
    let p = b.next_power_of_two();
    if p == b {
        return p;
    }
    let step = p / 8;
    b.div_ceil(step) * step
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
enum Kind {
    /// Tensors, work buffers, params, index lists.
    Storage,
    /// Staging buffers of `download`.
    Readback,
}

impl Kind {
    fn usage(self) -> wgpu::BufferUsages {
        match self {
            Kind::Storage => {
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
            }
            Kind::Readback => wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        }
    }
}

/// Counters of the buffer pool (see [`WgpuBackend::pool_stats`]). Bytes are size-class bytes,
/// i.e. device memory, not tensor bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes of device buffers held now by tensors and in-flight temporaries.
    pub live_bytes: u64,
    /// The most `live_bytes` has been since the backend was made.
    pub peak_bytes: u64,
    /// Bytes of free buffers kept for reuse (not counted in `live_bytes`).
    pub pooled_bytes: u64,
    /// `device.create_buffer` calls made for the pool.
    pub allocations: u64,
    /// Requests served from the free lists.
    pub reuses: u64,
    /// Free buffers handed back to the device because the pool exceeded its budget.
    pub releases: u64,
}

struct PoolState {
    /// Free buffers by (kind, size class), each stamped with the tick it was returned at.
    free: HashMap<(Kind, u64), Vec<(u64, wgpu::Buffer)>>,
    tick: u64,
    budget: u64,
    stats: PoolStats,
}

impl PoolState {
    /// Releases the least recently returned free buffers until at most `budget` bytes are pooled.
    fn evict_to(&mut self, budget: u64) {
        while self.stats.pooled_bytes > budget {
            let oldest = self.free.iter().filter_map(|(k, v)| v.first().map(|(t, _)| (*t, *k))).min();
            let Some((_, key)) = oldest else { break };
            let list = self.free.get_mut(&key).expect("key just found");
            let (_, buf) = list.remove(0);
            if list.is_empty() {
                self.free.remove(&key);
            }
            self.stats.pooled_bytes -= key.1;
            self.stats.releases += 1;
            // Dropping is safe with work in flight: wgpu frees the memory once the queue is done with it.
            drop(buf);
        }
    }
}

/// Free lists of device buffers by size class, so a denoising loop reaches a steady state where
/// no op allocates. Buffers come back through [`Block`]'s `Drop`.
///
/// Reuse is safe without waiting for the GPU: every op is submitted to the one queue in order, so a
/// buffer's next user runs after its previous one, and `queue.write_buffer` lands before the next
/// submission's commands, after every earlier submission. Recycled buffers are not zeroed:
/// `zeros` clears explicitly and every kernel writes all of its output.
struct Pool {
    device: wgpu::Device,
    max_buffer: u64,
    state: Mutex<PoolState>,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A buffer of at least `size` bytes (a multiple of 4, already checked against the limits).
    fn take(self: &Arc<Self>, kind: Kind, size: u64) -> Block {
        let mut class = size_class(size);
        if class > self.max_buffer {
            class = size;
        }
        let mut s = self.lock();
        let buf = match s.free.get_mut(&(kind, class)).and_then(|v| v.pop()) {
            Some((_, b)) => {
                s.stats.reuses += 1;
                s.stats.pooled_bytes -= class;
                b
            }
            None => {
                s.stats.allocations += 1;
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size: class,
                    usage: kind.usage(),
                    mapped_at_creation: false,
                })
            }
        };
        s.stats.live_bytes += class;
        s.stats.peak_bytes = s.stats.peak_bytes.max(s.stats.live_bytes);
        Block { buf: Some(buf), kind, class, size, pool: self.clone() }
    }

    fn put(&self, kind: Kind, class: u64, buf: wgpu::Buffer) {
        let mut s = self.lock();
        s.stats.live_bytes -= class;
        s.tick += 1;
        let tick = s.tick;
        s.free.entry((kind, class)).or_default().push((tick, buf));
        s.stats.pooled_bytes += class;
        let budget = s.budget;
        s.evict_to(budget);
    }
}

/// A pooled device buffer; `size` bytes of it are in use (and bound). Goes back to the pool on drop.
struct Block {
    buf: Option<wgpu::Buffer>,
    kind: Kind,
    class: u64,
    size: u64,
    pool: Arc<Pool>,
}

impl Block {
    fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("a live block holds its buffer")
    }

    fn bind(&self) -> Bind<'_> {
        Bind { buf: self.buffer(), size: self.size }
    }
}

impl Block {
    /// Drops the buffer without returning it to the pool (its creation may have failed).
    fn discard(mut self) {
        if self.buf.take().is_some() {
            self.pool.lock().stats.live_bytes -= self.class;
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.put(self.kind, self.class, b);
        }
    }
}

// ---- tensors -------------------------------------------------------------------------------------

/// A device buffer holding one tensor.
///
/// A tensor larger than the storage binding limit is held in several chunks, each within the
/// limit, of `chunk_elems` elements (the last one shorter). Chunks split at word boundaries, not
/// rows: the upload path does not know the row length, so the kernels that accept chunked inputs
/// (`linear`'s weight, `gather_rows`' table) take the element range each chunk holds and handle rows
/// that straddle two chunks. Every other op refuses a chunked input with an error that says so.
pub struct WgpuBuffer {
    chunks: Vec<Block>,
    chunk_elems: usize,
    len: usize,
    dtype: DType,
}

impl WgpuBuffer {
    /// The number of device buffers holding this tensor (more than one only past the binding limit).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Chunk `j` and the element range `[e0, e1)` of the tensor it holds.
    fn chunk(&self, j: usize) -> (&Block, usize, usize) {
        let e0 = j * self.chunk_elems;
        (&self.chunks[j], e0, (e0 + self.chunk_elems).min(self.len))
    }
}

/// A bound range of a buffer: bytes `[0, size)`.
#[derive(Clone, Copy)]
struct Bind<'a> {
    buf: &'a wgpu::Buffer,
    size: u64,
}

/// An input of a dispatch: a buffer and the dtype its loader decodes.
type Input<'a> = (Bind<'a>, DType);

// ---- the backend ---------------------------------------------------------------------------------

/// Options of [`WgpuBackend::with_options`]; [`WgpuOptions::from_env`] gives `new()`'s.
#[derive(Clone, Debug)]
pub struct WgpuOptions {
    /// Use optional adapter features where the adapter offers them: today subgroup reductions
    /// (`Features::SUBGROUP`) in the row norms. `false` runs the portable kernels everywhere.
    /// Env: `JOYRT_WGPU_FAST_PATHS=0` turns them off.
    pub fast_paths: bool,
    /// Treat the storage binding limit as at most this many bytes (tests of the split paths on a
    /// device whose real limit is large).
    pub binding_limit: Option<u64>,
    /// Bytes of free buffers the pool may keep; beyond it the least recently freed are released.
    /// Env: `JOYRT_WGPU_POOL_MB`.
    pub pool_budget: u64,
}

impl Default for WgpuOptions {
    fn default() -> Self {
        WgpuOptions { fast_paths: true, binding_limit: None, pool_budget: DEFAULT_POOL_BUDGET }
    }
}

impl WgpuOptions {
    /// The defaults, changed by `JOYRT_WGPU_FAST_PATHS=0` and `JOYRT_WGPU_POOL_MB=<n>`.
    pub fn from_env() -> WgpuOptions {
        let mut o = WgpuOptions::default();
        if let Ok(v) = std::env::var("JOYRT_WGPU_FAST_PATHS") {
            o.fast_paths = !matches!(v.trim(), "0" | "false" | "off" | "no");
        }
        if let Some(mb) = std::env::var("JOYRT_WGPU_POOL_MB").ok().and_then(|v| v.trim().parse::<u64>().ok())
        {
            o.pool_budget = mb << 20;
        }
        o
    }
}

struct Inner {
    /// The last error wgpu reported outside a Result (validation, out of memory): wgpu's default
    /// handler would panic, so it is recorded here and returned by the op that caused it.
    error: Arc<Mutex<Option<String>>>,
    software: bool,
    device: wgpu::Device,
    queue: wgpu::Queue,
    name: String,
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    dummy: wgpu::Buffer,
    pool: Arc<Pool>,
    /// The storage binding limit in force (the adapter's, or lower by [`WgpuOptions::binding_limit`]).
    max_binding: u64,
    /// The adapter's own `max_storage_buffer_binding_size`, for messages.
    adapter_binding: u64,
    max_buffer: u64,
    max_groups: u32,
    /// `Features::SUBGROUP` requested (offered by the adapter and fast paths on).
    subgroups: bool,
    /// `Features::SHADER_F16` requested. No kernel needs it: 16-bit storage is packed in u32 and
    /// widened by bit operations, which every adapter runs; this records that native f16 is there.
    shader_f16: bool,
}

/// The wgpu backend. Cloning shares the device.
#[derive(Clone)]
pub struct WgpuBackend {
    inner: Arc<Inner>,
}

const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");
const LAYOUT: &str = include_str!("../../../shaders/layout.wgsl");
const GEMM: &str = include_str!("../../../shaders/gemm.wgsl");
const NORM: &str = include_str!("../../../shaders/norm.wgsl");
const NORM_REDUCE: &str = include_str!("../../../shaders/norm_reduce.wgsl");
const NORM_REDUCE_SUBGROUP: &str = include_str!("../../../shaders/norm_reduce_subgroup.wgsl");
const MISC: &str = include_str!("../../../shaders/misc.wgsl");
const ATTENTION: &str = include_str!("../../../shaders/attention.wgsl");
const CONV: &str = include_str!("../../../shaders/conv.wgsl");
const PACK: &str = include_str!("../../../shaders/pack.wgsl");

fn unavailable(why: impl Into<String>) -> Error {
    Error::BackendUnavailable { backend: "wgpu".into(), why: why.into() }
}

/// WGSL load function for input `name` (binding array `arr`) stored as `dtype`.
fn loader(name: &str, arr: &str, dtype: DType) -> String {
    match dtype {
        DType::F32 => format!("fn ld_{name}(i: u32) -> f32 {{ return bitcast<f32>({arr}[i]); }}\n"),
        DType::BF16 => format!(
            "fn ld_{name}(i: u32) -> f32 {{ let w = {arr}[i >> 1u]; return bitcast<f32>(((w >> ((i & 1u) * 16u)) & 0xffffu) << 16u); }}\n"
        ),
        DType::F16 => format!("fn ld_{name}(i: u32) -> f32 {{ return unpack2x16float({arr}[i >> 1u])[i & 1u]; }}\n"),
    }
}

impl WgpuBackend {
    /// Opens the first adapter wgpu finds (`WGPU_BACKEND` selects vulkan/gl/...), with
    /// [`WgpuOptions::from_env`].
    pub fn new() -> Result<WgpuBackend> {
        Self::with_options(WgpuOptions::from_env())
    }

    /// Opens the first adapter wgpu finds with explicit options.
    pub fn with_options(opts: WgpuOptions) -> Result<WgpuBackend> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("no GPU adapter: {e}")))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Optional features are requested only where the adapter offers them, so the device request
        // never fails for their sake; the portable kernels stay the fallback.
        // Not in the browser: WebGPU requires `enable subgroups;` in the WGSL, which naga (native)
        // rejects, and the subgroup shader has not been run there.
        let wanted = if opts.fast_paths && info.backend != wgpu::Backend::BrowserWebGpu {
            adapter.features() & (wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16)
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("joyrt"),
            required_features: wanted,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("{}: {e}", info.name)))?;
        let error = Arc::new(Mutex::new(None));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert_with(|| e.to_string());
        }));
        let entry = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("joyrt"),
            entries: &[
                entry(0, true),
                entry(1, false),
                entry(2, true),
                entry(3, true),
                entry(4, true),
                entry(5, true),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("joyrt"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let adapter_binding = limits.max_storage_buffer_binding_size as u64;
        let max_buffer = limits.max_buffer_size;
        let max_binding = opts.binding_limit.unwrap_or(u64::MAX).min(adapter_binding).min(max_buffer).max(16);
        let pool = Arc::new(Pool {
            device: device.clone(),
            max_buffer,
            state: Mutex::new(PoolState {
                free: HashMap::new(),
                tick: 0,
                budget: opts.pool_budget,
                stats: PoolStats::default(),
            }),
        });
        Ok(WgpuBackend {
            inner: Arc::new(Inner {
                error,
                software: info.device_type == wgpu::DeviceType::Cpu,
                name: format!("wgpu:{} ({:?})", info.name, info.backend),
                max_binding,
                adapter_binding,
                max_buffer,
                max_groups: limits.max_compute_workgroups_per_dimension,
                subgroups: wanted.contains(wgpu::Features::SUBGROUP),
                shader_f16: wanted.contains(wgpu::Features::SHADER_F16),
                device,
                queue,
                layout,
                pipeline_layout,
                pipelines: Mutex::new(HashMap::new()),
                dummy,
                pool,
            }),
        })
    }

    /// Whether the adapter is a CPU implementation (lavapipe, SwiftShader): correct, but slower
    /// than the CPU backend, so `--backend auto` does not pick it.
    pub fn is_software(&self) -> bool {
        self.inner.software
    }

    /// Whether the row norms use subgroup reductions (the adapter offers `SUBGROUP` and fast paths
    /// are on).
    pub fn uses_subgroups(&self) -> bool {
        self.inner.subgroups
    }

    /// Whether `SHADER_F16` was requested (offered, fast paths on). Informational: 16-bit tensors
    /// are packed in u32 and widened by bit operations on every adapter.
    pub fn has_shader_f16(&self) -> bool {
        self.inner.shader_f16
    }

    /// The storage binding limit in force, in bytes: tensors above it are held in chunks.
    pub fn binding_limit(&self) -> u64 {
        self.inner.max_binding
    }

    /// The buffer pool's counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.lock().stats
    }

    /// Changes the pool budget (bytes of free buffers kept), releasing buffers beyond it now.
    pub fn set_pool_budget(&self, bytes: u64) {
        let mut s = self.inner.pool.lock();
        s.budget = bytes;
        s.evict_to(bytes);
    }

    /// Releases every free pooled buffer to the device (for example between pipeline stages).
    pub fn trim_pool(&self) {
        self.inner.pool.lock().evict_to(0);
    }

    /// The error wgpu reported since the last check, if any.
    fn check(&self, what: &str) -> Result<()> {
        let taken = self.inner.error.lock().unwrap_or_else(|p| p.into_inner()).take();
        match taken {
            None => Ok(()),
            Some(e) if e.to_lowercase().contains("out of memory") => {
                Err(Error::OutOfMemory { backend: self.name(), bytes: 0, what: format!("{what}: {e}") })
            }
            Some(e) => Err(Error::backend(self.name(), format!("{what}: {e}"))),
        }
    }

    /// Refuses, before wgpu sees it, a buffer the device cannot bind or create.
    fn check_size(&self, size: u64, what: &str) -> Result<()> {
        let i = &self.inner;
        if size > i.max_buffer {
            return Err(Error::backend(
                self.name(),
                format!(
                    "{what}: {size} bytes exceed this adapter's max_buffer_size of {} bytes",
                    i.max_buffer
                ),
            ));
        }
        if size > i.max_binding {
            let lowered = if i.max_binding < i.adapter_binding {
                format!(" (lowered by options from the adapter's {} bytes)", i.adapter_binding)
            } else {
                String::new()
            };
            return Err(Error::backend(
                self.name(),
                format!(
                    "{what}: {size} bytes exceed the max_storage_buffer_binding_size of {} bytes{lowered} \
                     (max_buffer_size {} bytes); only linear weights and gather_rows tables are split",
                    i.max_binding, i.max_buffer
                ),
            ));
        }
        Ok(())
    }

    /// A pooled storage buffer of `bytes` (rounded up to a word), within the binding limit.
    fn storage(&self, bytes: u64, what: &str) -> Result<Block> {
        let size = bytes.max(4).div_ceil(4) * 4;
        self.check_size(size, what)?;
        let b = self.inner.pool.take(Kind::Storage, size);
        if let Err(e) = self.check(what) {
            // Most likely this buffer's creation (out of memory): keep it out of the free lists.
            b.discard();
            return Err(e);
        }
        Ok(b)
    }

    /// Device memory for a tensor of `len` elements: one buffer, or chunks past the binding limit.
    fn tensor(&self, dtype: DType, len: usize, what: &str) -> Result<WgpuBuffer> {
        let bytes = (len * dtype.size()) as u64;
        if bytes <= self.inner.max_binding {
            let b = self.storage(bytes, what)?;
            return Ok(WgpuBuffer { chunks: vec![b], chunk_elems: len.max(1), len, dtype });
        }
        if len > u32::MAX as usize {
            return Err(Error::backend(
                self.name(),
                format!("{what}: {len} elements exceed the kernels' 32-bit element indices"),
            ));
        }
        // Whole words per chunk, so a packed 16-bit chunk starts at an even element.
        let chunk_bytes = self.inner.max_binding / 4 * 4;
        let chunk_elems = (chunk_bytes / dtype.size() as u64) as usize;
        let chunks = (0..len.div_ceil(chunk_elems))
            .map(|j| {
                let n = (len - j * chunk_elems).min(chunk_elems);
                self.storage((n * dtype.size()) as u64, what)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WgpuBuffer { chunks, chunk_elems, len, dtype })
    }

    /// The single buffer of an op's input; a chunked tensor is refused with the reason.
    fn inp<'a>(&self, t: &'a Tensor<Self>, op: &str) -> Result<Input<'a>> {
        let b = t.buffer();
        if b.chunks.len() > 1 {
            return Err(Error::backend(
                self.name(),
                format!(
                    "{op}: an input of {} bytes is split into {} chunks (over the max_storage_buffer_binding_size \
                     of {} bytes); only linear weights and gather_rows tables may be that large",
                    b.len * b.dtype.size(),
                    b.chunks.len(),
                    self.inner.max_binding
                ),
            ));
        }
        Ok((b.chunks[0].bind(), b.dtype))
    }

    fn dummy(&self) -> Input<'_> {
        (Bind { buf: &self.inner.dummy, size: 16 }, DType::F32)
    }

    fn pipeline(&self, src: String) -> Arc<wgpu::ComputePipeline> {
        let mut cache = self.inner.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&src) {
            return p.clone();
        }
        let module = self.inner.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(src.clone().into()),
        });
        let p = Arc::new(self.inner.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: Some(&self.inner.pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        }));
        cache.insert(src, p.clone());
        p
    }

    /// Runs `shader` (specialised for the inputs' dtypes) over `groups` workgroups, writing `out`.
    fn dispatch(&self, shader: &str, params: &[u32], inputs: &[Input], out: Bind, groups: u64) -> Result<()> {
        let mut src = String::from(
            "@group(0) @binding(0) var<storage, read> P: array<u32>;\n@group(0) @binding(1) var<storage, read_write> OUT: array<f32>;\n",
        );
        for (k, (name, arr)) in [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")].iter().enumerate() {
            src += &format!("@group(0) @binding({}) var<storage, read> {arr}: array<u32>;\n", k + 2);
            src += &loader(name, arr, inputs.get(k).map_or(DType::F32, |i| i.1));
        }
        src += shader;
        self.run(src, params, inputs.iter().map(|i| i.0).collect(), out, groups)
    }

    fn run(&self, src: String, params: &[u32], inputs: Vec<Bind>, out: Bind, groups: u64) -> Result<()> {
        let pipeline = self.pipeline(src);
        // Params come from the pool too: one small buffer per dispatch, back in the free list as
        // soon as the dispatch is submitted (see `Pool` on why that is safe).
        let pbuf = self.storage(4 * params.len() as u64, "params")?;
        self.inner.queue.write_buffer(pbuf.buffer(), 0, bytemuck::cast_slice(params));
        let mut bufs = vec![pbuf.bind(), out];
        bufs.extend(inputs);
        while bufs.len() < 6 {
            bufs.push(self.dummy().0);
        }
        let entries: Vec<wgpu::BindGroupEntry> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buf,
                    offset: 0,
                    size: NonZeroU64::new(b.size),
                }),
            })
            .collect();
        let bind = self.inner.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.inner.layout,
            entries: &entries,
        });
        // Grids beyond the per-dimension limit fold into a second dimension.
        let maxg = self.inner.max_groups as u64;
        let (gx, gy) = if groups <= maxg { (groups.max(1), 1) } else { (maxg, groups.div_ceil(maxg)) };
        if gy > maxg {
            return Err(Error::backend(
                self.name(),
                format!("{groups} workgroups exceed the adapter's {maxg}² grid"),
            ));
        }
        let mut enc = self.inner.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(gx as u32, gy as u32, 1);
        }
        self.inner.queue.submit([enc.finish()]);
        self.check("dispatch")
    }

    /// An f32 work buffer of `n` elements.
    fn f32_buf(&self, n: usize) -> Result<Block> {
        self.storage(4 * n as u64, "f32 work buffer")
    }

    /// Stores an f32 work buffer of `n` elements as `dtype`.
    fn finish(&self, f: Block, n: usize, dtype: DType) -> Result<WgpuBuffer> {
        if dtype == DType::F32 {
            return Ok(WgpuBuffer { chunks: vec![f], chunk_elems: n.max(1), len: n, dtype });
        }
        let words = n.div_ceil(2);
        let out = self.storage(4 * words as u64, "packed output")?;
        let mode = if dtype == DType::BF16 { 0 } else { 1 };
        self.run(
            PACK.to_string(),
            &[words as u32, n as u32, mode],
            vec![f.bind()],
            out.bind(),
            (words as u64).div_ceil(256),
        )?;
        Ok(WgpuBuffer { chunks: vec![out], chunk_elems: n.max(1), len: n, dtype })
    }

    /// One thread per element of an `n`-element f32 result, then stored as `dtype`.
    fn elementwise(
        &self,
        shader: &str,
        params: &[u32],
        inputs: &[Input],
        n: usize,
        dtype: DType,
    ) -> Result<WgpuBuffer> {
        let out = self.f32_buf(n)?;
        self.dispatch(shader, params, inputs, out.bind(), (n as u64).div_ceil(256))?;
        self.finish(out, n, dtype)
    }

    fn u32_buf(&self, v: &[u32]) -> Result<Block> {
        let b = self.storage(4 * v.len() as u64, "index buffer")?;
        if !v.is_empty() {
            self.inner.queue.write_buffer(b.buffer(), 0, bytemuck::cast_slice(v));
        }
        Ok(b)
    }
}

fn fbits(v: f32) -> u32 {
    v.to_bits()
}

impl Backend for WgpuBackend {
    type Buffer = WgpuBuffer;

    fn name(&self) -> String {
        self.inner.name.clone()
    }

    fn zeros(&self, dtype: DType, len: usize) -> Result<WgpuBuffer> {
        // Pooled buffers are recycled, so clear them (new wgpu buffers would be zero anyway).
        let t = self.tensor(dtype, len, "zeros")?;
        let mut enc = self.inner.device.create_command_encoder(&Default::default());
        for c in &t.chunks {
            enc.clear_buffer(c.buffer(), 0, Some(c.size));
        }
        self.inner.queue.submit([enc.finish()]);
        self.check("zeros")?;
        Ok(t)
    }

    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<WgpuBuffer> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(Error::backend(
                self.name(),
                format!("upload: {} bytes is not a whole number of {dtype} elements", bytes.len()),
            ));
        }
        let t = self.tensor(dtype, bytes.len() / dtype.size(), "upload")?;
        let cb = t.chunk_elems * dtype.size();
        for (j, c) in t.chunks.iter().enumerate() {
            let part = &bytes[j * cb..((j + 1) * cb).min(bytes.len())];
            if part.len().is_multiple_of(4) {
                self.inner.queue.write_buffer(c.buffer(), 0, part);
            } else {
                let mut padded = part.to_vec();
                padded.resize(part.len().div_ceil(4) * 4, 0);
                self.inner.queue.write_buffer(c.buffer(), 0, &padded);
            }
        }
        self.check("upload")?;
        Ok(t)
    }

    fn download(&self, x: &Tensor<Self>) -> Result<Vec<u8>> {
        let b = x.buffer();
        let n = b.len * b.dtype.size();
        let mut out = Vec::with_capacity(n + 4);
        // One chunk at a time, so the staging buffer stays within max_buffer_size.
        for c in &b.chunks {
            self.check_size(c.size, "download staging")?;
            let staging = self.inner.pool.take(Kind::Readback, c.size);
            let mut enc = self.inner.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(c.buffer(), 0, staging.buffer(), 0, c.size);
            self.inner.queue.submit([enc.finish()]);
            let slice = staging.buffer().slice(..c.size);
            let (tx, rx) = std::sync::mpsc::channel();
            slice.map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            self.inner
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::backend(self.name(), format!("poll: {e}")))?;
            rx.recv()
                .map_err(|e| Error::backend(self.name(), format!("download: {e}")))?
                .map_err(|e| Error::backend(self.name(), format!("download: {e}")))?;
            // Mapped from here on: unmap before the staging buffer goes back to the pool.
            let read = slice.get_mapped_range().map(|view| out.extend_from_slice(&view));
            staging.buffer().unmap();
            read.map_err(|e| Error::backend(self.name(), format!("download: {e}")))?;
        }
        self.check("download")?;
        out.truncate(n);
        Ok(out)
    }

    fn cast(&self, x: &Tensor<Self>, to: DType) -> Result<WgpuBuffer> {
        let a = self.inp(x, "cast")?;
        self.elementwise(ELEMENTWISE, &[x.numel() as u32, 9, 0, 1, 0], &[a], x.numel(), to)
    }

    fn synchronize(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::backend(self.name(), format!("poll: {e}")))
    }

    fn memory_stats(&self) -> (u64, u64) {
        let s = self.pool_stats();
        (s.live_bytes, s.peak_bytes)
    }

    fn permute(&self, x: &Tensor<Self>, p: &PermuteParams) -> Result<WgpuBuffer> {
        let rank = p.dims.len();
        let strides = joyrt_core::Shape::new(p.dims.clone()).strides();
        let mut params = vec![x.numel() as u32, 0, rank as u32, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
        for (a, &src) in p.perm.iter().enumerate() {
            params[3 + a] = p.dims[src] as u32;
            params[9 + a] = strides[src] as u32;
        }
        self.elementwise(LAYOUT, &params, &[self.inp(x, "permute")?], x.numel(), x.dtype())
    }

    fn slice(&self, x: &Tensor<Self>, p: &SliceParams) -> Result<WgpuBuffer> {
        let n = p.outer * p.len;
        let params = [n as u32, 1, p.len as u32, p.x_inner as u32, p.start as u32, p.len as u32, 0];
        self.elementwise(LAYOUT, &params, &[self.inp(x, "slice")?], n, x.dtype())
    }

    fn concat(&self, xs: &[&Tensor<Self>], p: &ConcatParams) -> Result<WgpuBuffer> {
        let dtype = xs[0].dtype();
        let total: usize = p.inners.iter().sum();
        let out = self.f32_buf(p.outer * total)?;
        let mut off = 0;
        for (x, &inner) in xs.iter().zip(&p.inners) {
            if x.dtype() != dtype {
                return Err(Error::DType { op: "concat", dtype: x.dtype() });
            }
            let n = p.outer * inner;
            if n > 0 {
                let params = [n as u32, 1, inner as u32, inner as u32, 0, total as u32, off as u32];
                self.dispatch(
                    LAYOUT,
                    &params,
                    &[self.inp(x, "concat")?],
                    out.bind(),
                    (n as u64).div_ceil(256),
                )?;
            }
            off += inner;
        }
        self.finish(out, p.outer * total, dtype)
    }

    fn linear(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        p: &LinearParams,
    ) -> Result<WgpuBuffer> {
        let out = self.f32_buf(p.m * p.n)?;
        let tm = p.m.div_ceil(64);
        let xin = self.inp(x, "linear")?;
        let bin = bias.map(|b| self.inp(b, "linear bias")).transpose()?;
        let wb = w.buffer();
        // Chunks of K stay within software adapters' per-invocation loop limit.
        const KC: usize = 1024;
        let kchunks = p.k.div_ceil(KC).max(1);
        // A weight past the binding limit comes in chunks of whole words, not rows: each chunk
        // runs over the rows it touches, and a row split between two chunks gets its two partial
        // sums accumulated in OUT (see gemm.wgsl).
        for j in 0..wb.chunks.len() {
            let (chunk, e0, e1) = wb.chunk(j);
            let (n_lo, n_hi) = (e0 / p.k.max(1), e1.div_ceil(p.k.max(1)).min(p.n));
            let tn = (n_hi - n_lo).div_ceil(64);
            let mut inputs = vec![xin, (chunk.bind(), wb.dtype)];
            if let Some(b) = bin {
                inputs.push(b);
            }
            for c in 0..kchunks {
                let (k0, k1) = (c * KC, ((c + 1) * KC).min(p.k));
                let params = [
                    p.m as u32,
                    p.k as u32,
                    p.n as u32,
                    bias.is_some() as u32,
                    tn as u32,
                    k0 as u32,
                    k1 as u32,
                    n_lo as u32,
                    n_hi as u32,
                    e0 as u32,
                    e1 as u32,
                ];
                self.dispatch(GEMM, &params, &inputs, out.bind(), (tm * tn) as u64)?;
            }
        }
        self.finish(out, p.m * p.n, x.dtype())
    }

    fn layer_norm(
        &self,
        x: &Tensor<Self>,
        w: Option<&Tensor<Self>>,
        b: Option<&Tensor<Self>>,
        p: &NormParams,
    ) -> Result<WgpuBuffer> {
        let op = "layer_norm";
        let wi = w.map(|w| self.inp(w, op)).transpose()?.unwrap_or(self.dummy());
        let bi = b.map(|b| self.inp(b, op)).transpose()?.unwrap_or(self.dummy());
        self.norm(x, &[self.inp(x, op)?, wi, bi], p, 0, w.is_some(), b.is_some())
    }

    fn layer_norm_modulate(
        &self,
        x: &Tensor<Self>,
        shift: &Tensor<Self>,
        scale: &Tensor<Self>,
        p: &NormParams,
    ) -> Result<WgpuBuffer> {
        let op = "layer_norm_modulate";
        self.norm(x, &[self.inp(x, op)?, self.inp(shift, op)?, self.inp(scale, op)?], p, 1, true, true)
    }

    fn rms_norm(&self, x: &Tensor<Self>, w: &Tensor<Self>, p: &NormParams) -> Result<WgpuBuffer> {
        self.norm(x, &[self.inp(x, "rms_norm")?, self.inp(w, "rms_norm")?], p, 2, true, false)
    }

    fn channel_rms_norm(
        &self,
        x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        p: &ChannelParams,
    ) -> Result<WgpuBuffer> {
        let op = "channel_rms_norm";
        let out = self.f32_buf(x.numel())?;
        let params = [p.positions as u32, 0, p.channels as u32, p.positions as u32];
        let inputs = [self.inp(x, op)?, self.inp(gamma, op)?];
        self.dispatch(MISC, &params, &inputs, out.bind(), (p.positions as u64).div_ceil(256))?;
        self.finish(out, x.numel(), x.dtype())
    }

    fn rope(&self, x: &Tensor<Self>, rope: &Rope<Self>, p: &HeadParams) -> Result<WgpuBuffer> {
        self.rope_impl(x, None, rope, p)
    }

    fn rms_norm_rope(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        rope: &Rope<Self>,
        p: &HeadParams,
    ) -> Result<WgpuBuffer> {
        self.rope_impl(x, Some(w), rope, p)
    }

    fn activation(&self, x: &Tensor<Self>, act: Activation) -> Result<WgpuBuffer> {
        let op = match act {
            Activation::Silu => 0,
            Activation::GeluTanh => 1,
            Activation::GeluErf => 2,
        };
        let params = [x.numel() as u32, op, 0, 1, 0];
        self.elementwise(ELEMENTWISE, &params, &[self.inp(x, "activation")?], x.numel(), x.dtype())
    }

    fn swiglu(&self, gate: &Tensor<Self>, up: &Tensor<Self>) -> Result<WgpuBuffer> {
        self.elementwise(
            ELEMENTWISE,
            &[gate.numel() as u32, 6, 0, 1, 0],
            &[self.inp(gate, "swiglu")?, self.inp(up, "swiglu")?],
            gate.numel(),
            gate.dtype(),
        )
    }

    fn binary(&self, a: &Tensor<Self>, b: &Tensor<Self>, p: &BinaryParams) -> Result<WgpuBuffer> {
        let op = match p.op {
            BinaryOp::Add => 3,
            BinaryOp::Sub => 4,
            BinaryOp::Mul => 5,
        };
        let (mode, inner) = match p.broadcast {
            Broadcast::None => (0, 1),
            Broadcast::Row { inner } => (1, inner),
            Broadcast::Col { inner } => (2, inner),
        };
        self.elementwise(
            ELEMENTWISE,
            &[p.len as u32, op, mode, inner as u32, 0],
            &[self.inp(a, "binary")?, self.inp(b, "binary")?],
            p.len,
            a.dtype(),
        )
    }

    fn scaled_add(&self, x: &Tensor<Self>, z: &Tensor<Self>, alpha: f32) -> Result<WgpuBuffer> {
        self.elementwise(
            ELEMENTWISE,
            &[x.numel() as u32, 7, 0, 1, fbits(alpha)],
            &[self.inp(x, "scaled_add")?, self.inp(z, "scaled_add")?],
            x.numel(),
            x.dtype(),
        )
    }

    fn gated_residual(
        &self,
        x: &Tensor<Self>,
        z: &Tensor<Self>,
        gate: &Tensor<Self>,
        p: &RowsParams,
    ) -> Result<WgpuBuffer> {
        let op = "gated_residual";
        let n = p.rows * p.cols;
        self.elementwise(
            ELEMENTWISE,
            &[n as u32, 8, 0, p.cols as u32, 0],
            &[self.inp(x, op)?, self.inp(z, op)?, self.inp(gate, op)?],
            n,
            x.dtype(),
        )
    }

    fn cfg_renorm(&self, cond: &Tensor<Self>, uncond: &Tensor<Self>, p: &CfgParams) -> Result<WgpuBuffer> {
        let out = self.f32_buf(cond.numel())?;
        let params = [p.positions as u32, 2, p.channels as u32, p.positions as u32, fbits(p.guidance)];
        let inputs = [self.inp(cond, "cfg_renorm")?, self.inp(uncond, "cfg_renorm")?];
        self.dispatch(MISC, &params, &inputs, out.bind(), (p.positions as u64).div_ceil(256))?;
        self.finish(out, cond.numel(), cond.dtype())
    }

    fn attention(
        &self,
        q: &Tensor<Self>,
        k: &Tensor<Self>,
        v: &Tensor<Self>,
        p: &AttentionParams,
    ) -> Result<WgpuBuffer> {
        // The query row and accumulator are private arrays sized at specialisation: 128 covers the
        // DiT's and Qwen's heads, 512 the VAE's single-head mid-block attention (d = 384).
        let max_d = match p.head_dim {
            0..=128 => 128,
            129..=512 => 512,
            d => {
                return Err(Error::backend(
                    self.name(),
                    format!("attention: head dim {d} > 512 is not supported by this kernel"),
                ))
            }
        };
        let shader = ATTENTION.replace("array<f32, 128>", &format!("array<f32, {max_d}>"));
        let inputs = [self.inp(q, "attention")?, self.inp(k, "attention")?, self.inp(v, "attention")?];
        let threads = p.q_len * p.q_heads;
        let d = p.head_dim;
        // Running state per (query, head): acc[D], max, sum. Key chunks keep each invocation
        // within software adapters' loop limit.
        let state = self.f32_buf(threads * (d + 2))?;
        let kc = (48_000 / (2 * d + 1)).max(1);
        let chunks = p.kv_len.div_ceil(kc).max(1);
        for c in 0..chunks {
            let params = [
                threads as u32,
                0,
                p.q_len as u32,
                p.kv_len as u32,
                p.q_heads as u32,
                p.kv_heads as u32,
                d as u32,
                fbits(p.scale),
                p.causal as u32,
                (c * kc) as u32,
                ((c + 1) * kc).min(p.kv_len) as u32,
                (c == 0) as u32,
                (c == chunks - 1) as u32,
            ];
            self.dispatch(&shader, &params, &inputs, state.bind(), (threads as u64).div_ceil(64))?;
        }
        // Drop the two state columns: rows of D + 2 → rows of D.
        let n = threads * d;
        let out = self.f32_buf(n)?;
        let params = [n as u32, 1, d as u32, (d + 2) as u32, 0, d as u32, 0];
        self.dispatch(LAYOUT, &params, &[(state.bind(), DType::F32)], out.bind(), (n as u64).div_ceil(256))?;
        self.finish(out, n, q.dtype())
    }

    fn conv2d(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        p: &Conv2dParams,
    ) -> Result<WgpuBuffer> {
        let op = "conv2d";
        let n = p.out_channels * p.out_height * p.out_width;
        let bi = bias.map(|b| self.inp(b, op)).transpose()?.unwrap_or(self.dummy());
        let inputs = [self.inp(x, op)?, self.inp(w, op)?, self.dummy(), bi];
        let params = [
            n as u32,
            0,
            p.in_channels as u32,
            p.height as u32,
            p.width as u32,
            p.kernel_h as u32,
            p.kernel_w as u32,
            p.stride as u32,
            p.pad.0 as u32,
            p.pad.2 as u32,
            p.out_height as u32,
            p.out_width as u32,
            bias.is_some() as u32,
        ];
        self.elementwise(CONV, &params, &inputs, n, x.dtype())
    }

    fn upsample_nearest2x(&self, x: &Tensor<Self>, p: &ImageParams) -> Result<WgpuBuffer> {
        let n = 4 * x.numel();
        let params = [n as u32, 2, p.channels as u32, p.height as u32, p.width as u32];
        self.elementwise(LAYOUT, &params, &[self.inp(x, "upsample_nearest2x")?], n, x.dtype())
    }

    fn gather_rows(
        &self,
        table: &Tensor<Self>,
        index: &[u32],
        weights: Option<&[f32]>,
        p: &GatherParams,
    ) -> Result<WgpuBuffer> {
        let idx = self.u32_buf(index)?;
        let w: Vec<u32> = weights.map(|w| w.iter().map(|v| v.to_bits()).collect()).unwrap_or_default();
        let wb = self.u32_buf(&w)?;
        let n = p.rows * p.cols;
        let out = self.f32_buf(n)?;
        let tb = table.buffer();
        // A table past the binding limit is in chunks: run only over the chunks some index
        // touches, each adding the taps whose elements it holds (see misc.wgsl op 3).
        let mut touched = vec![false; tb.chunks.len()];
        for &r in index {
            let (first, last) = (r as usize * p.cols, (r as usize + 1) * p.cols);
            if last > first {
                let end = tb.chunks.len() - 1;
                let (j0, j1) = ((first / tb.chunk_elems).min(end), ((last - 1) / tb.chunk_elems).min(end));
                touched[j0..=j1].iter_mut().for_each(|t| *t = true);
            }
        }
        if !touched.contains(&true) {
            touched[0] = true;
        }
        let mut first = true;
        for j in (0..tb.chunks.len()).filter(|&j| touched[j]) {
            let (chunk, e0, e1) = tb.chunk(j);
            let params = [
                n as u32,
                3,
                p.cols as u32,
                p.taps as u32,
                weights.is_some() as u32,
                e0 as u32,
                e1 as u32,
                first as u32,
            ];
            let inputs = [(chunk.bind(), tb.dtype), (idx.bind(), DType::F32), (wb.bind(), DType::F32)];
            self.dispatch(MISC, &params, &inputs, out.bind(), (n as u64).div_ceil(256))?;
            first = false;
        }
        self.finish(out, n, table.dtype())
    }

    fn scatter_rows(
        &self,
        dst: &Tensor<Self>,
        rows: &[u32],
        src: &Tensor<Self>,
        p: &ScatterParams,
    ) -> Result<WgpuBuffer> {
        let total = p.dst_rows * p.cols;
        let out = self.f32_buf(total)?;
        self.dispatch(
            ELEMENTWISE,
            &[total as u32, 9, 0, 1, 0],
            &[self.inp(dst, "scatter_rows")?],
            out.bind(),
            (total as u64).div_ceil(256),
        )?;
        let rb = self.u32_buf(rows)?;
        let n = p.src_rows * p.cols;
        if n > 0 {
            let params = [n as u32, 4, p.cols as u32, (p.mode == ScatterMode::Add) as u32];
            let inputs = [self.inp(src, "scatter_rows")?, (rb.bind(), DType::F32)];
            self.dispatch(MISC, &params, &inputs, out.bind(), (n as u64).div_ceil(256))?;
        }
        self.finish(out, total, dst.dtype())
    }
}

impl WgpuBackend {
    fn norm(
        &self,
        x: &Tensor<Self>,
        inputs: &[Input],
        p: &NormParams,
        mode: u32,
        has_w: bool,
        has_b: bool,
    ) -> Result<WgpuBuffer> {
        let out = self.f32_buf(x.numel())?;
        let params = [p.rows as u32, p.cols as u32, fbits(p.eps), mode, has_w as u32, has_b as u32];
        // The row reduction: subgroup sums where the device has them, else a workgroup-memory tree.
        let reduce = if self.inner.subgroups { NORM_REDUCE_SUBGROUP } else { NORM_REDUCE };
        self.dispatch(&format!("{reduce}{NORM}"), &params, inputs, out.bind(), p.rows as u64)?;
        self.finish(out, x.numel(), x.dtype())
    }

    fn rope_impl(
        &self,
        x: &Tensor<Self>,
        w: Option<&Tensor<Self>>,
        rope: &Rope<Self>,
        p: &HeadParams,
    ) -> Result<WgpuBuffer> {
        let op = "rope";
        let threads = p.tokens * p.heads;
        let out = self.f32_buf(x.numel())?;
        let pairing = match rope.pairing {
            RopePairing::Interleaved => 0,
            RopePairing::HalfSplit => 1,
        };
        let wi = w.map(|w| self.inp(w, op)).transpose()?.unwrap_or(self.dummy());
        let inputs = [self.inp(x, op)?, self.inp(&rope.cos, op)?, self.inp(&rope.sin, op)?, wi];
        let params =
            [threads as u32, 1, p.heads as u32, p.head_dim as u32, pairing, w.is_some() as u32, fbits(p.eps)];
        self.dispatch(MISC, &params, &inputs, out.bind(), (threads as u64).div_ceil(256))?;
        self.finish(out, x.numel(), x.dtype())
    }
}
