//! Finding and launching kernels: the per-process cache of compiled modules and functions, the
//! launch shape a [`Grid`] gives a kernel, and the argument list every kernel takes (its buffers'
//! device addresses, then its family's parameter struct by value).
//!
//! Every launch goes through [`CudaBackend::launch`] with the kernel's descriptor, so what a
//! launch needs from the kernel (block size, dynamic shared memory, and anything a device must
//! be told about the function before it runs) is decided in one place. That includes the opt-in
//! to more than 48 KiB of dynamic shared memory ([`CudaBackend::opt_in_dynamic_smem`]), made once
//! per loaded function, for the GPU and the emulation alike: the emulation refuses a launch past
//! the default as the driver does, so a missing opt-in fails the emulated suite.
//!
//! A launch is also where the opt-in kernel profile (`profile.rs`) times it.
//!
//! With `JOYRT_CUDA_SYNC=1` every GPU launch is followed by a synchronisation, so a kernel fault
//! is reported against the kernel that made it (name, launch shape, parameters) rather than at
//! whichever driver call comes next.

use crate::device::Device;
use crate::emu::{self, EmuLaunchError};
use crate::kernel::{Family, Kernel, KernelDesc, Spec};
use crate::limits::{FunctionLimits, KernelResources, LaunchShape};
use crate::tensor_map::{TensorMap, TileMap};
use crate::{nvrtc, CudaBackend, CudaBuffer};
use cudarc::driver::sys::CUfunction_attribute as Attr;
use cudarc::driver::{CudaFunction, CudaModule};
use joyrt_core::kernel_abi::KernelParams;
use joyrt_core::{DType, Error, Result, Tensor};
use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

/// A family compiled for one spec.
#[derive(Clone)]
enum Module {
    Gpu(Arc<CudaModule>),
    Emu(emu::EmuModule),
}

/// A loaded kernel.
#[derive(Clone)]
enum Function {
    Gpu(GpuFunction),
    /// The emulated driver keeps the function's attributes itself.
    Emu(emu::EmuKernel),
}

/// A kernel loaded on the GPU, and its attributes as the host last set them.
#[derive(Clone)]
struct GpuFunction {
    f: CudaFunction,
    limits: FunctionLimits,
}

impl Function {
    fn limits(&self) -> &FunctionLimits {
        match self {
            Function::Gpu(g) => &g.limits,
            Function::Emu(k) => k.limits(),
        }
    }
}

/// Compiled modules (one per family and spec) and the functions loaded from them.
#[derive(Default)]
pub(crate) struct KernelCache {
    modules: Mutex<HashMap<(Family, Spec), Module>>,
    functions: Mutex<HashMap<(&'static str, Spec), Function>>,
}

/// How many blocks a launch runs; the block size comes from the kernel's descriptor.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Grid {
    /// A grid-stride loop over `n` elements: a block per `threads` elements, at most as many
    /// blocks as keep the device busy (the kernel loops over the rest).
    Stride(usize),
    /// One block per row of `cols` elements; the block takes the row's width rounded up to whole
    /// warps, at most the kernel's threads.
    Rows { rows: usize, cols: usize },
    /// `(x, y)` blocks of the kernel's threads (tiled kernels).
    Blocks(usize, usize),
}

/// The device address of `t`'s buffer, as a kernel argument.
pub(crate) fn addr(t: &Tensor<CudaBackend>) -> u64 {
    t.buffer().ptr
}

/// The device address of an optional tensor, null where there is none.
pub(crate) fn opt_addr(t: Option<&Tensor<CudaBackend>>) -> u64 {
    t.map_or(0, addr)
}

/// `v` as a kernel's 32-bit index, or an error naming the dimension.
pub(crate) fn i32_of(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::backend("cuda", format!("{what} = {v} exceeds the kernels' 32-bit index range")))
}

/// Which kernels a GEMM (`linear`) of same-dtype 16-bit operands with K % 8 == 0 takes:
/// `JOYRT_CUDA_GEMM` = `simt` (no tensor cores, for conv and attention too), `mma` (mma.sync,
/// every GPU), `wgmma` (Hopper: 128 × 256 tiles, a block per tile), `wgmma-persistent` (Hopper:
/// the same tiles, one block per multiprocessor walking them), `wgmma-ws` (Hopper: the same
/// tiles, persistent and warp-specialised, fed by TMA through an mbarrier ring; not yet measured
/// on a GPU, so not the default); unset or `auto`: `wgmma` where the modules have it (sm_90a:
/// measured fastest so far, docs/benchmarks.md), else `mma`. fp8 W8A8 follows it on Hopper: its
/// warp-specialised kernel for `wgmma-ws`, its block-per-tile one for the other two `wgmma` paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    Simt,
    Mma,
    Wgmma,
    WgmmaPersistent,
    WgmmaWs,
}

impl GemmPath {
    /// Every path, by its `JOYRT_CUDA_GEMM` name.
    pub const ALL: [(&'static str, GemmPath); 5] = [
        ("simt", GemmPath::Simt),
        ("mma", GemmPath::Mma),
        ("wgmma", GemmPath::Wgmma),
        ("wgmma-persistent", GemmPath::WgmmaPersistent),
        ("wgmma-ws", GemmPath::WgmmaWs),
    ];

    /// The path's `JOYRT_CUDA_GEMM` name.
    pub fn name(self) -> &'static str {
        GemmPath::ALL.iter().find(|(_, p)| *p == self).map_or("?", |(n, _)| n)
    }

    /// Whether the path needs `wgmma` (an sm_90a device).
    pub fn needs_wgmma(self) -> bool {
        matches!(self, GemmPath::Wgmma | GemmPath::WgmmaPersistent | GemmPath::WgmmaWs)
    }

    /// The path `setting` (`JOYRT_CUDA_GEMM`) names, on modules with or without `wgmma`.
    pub fn choose(setting: Option<&str>, wgmma: bool) -> std::result::Result<GemmPath, String> {
        let path = match setting.unwrap_or("auto") {
            "auto" | "" => return Ok(if wgmma { GemmPath::Wgmma } else { GemmPath::Mma }),
            name => match GemmPath::ALL.iter().find(|(n, _)| *n == name) {
                Some(&(_, path)) => path,
                None => {
                    return Err(format!(
                    "JOYRT_CUDA_GEMM={name}: expected auto, simt, mma, wgmma, wgmma-persistent or wgmma-ws"
                ))
                }
            },
        };
        if path.needs_wgmma() && !wgmma {
            return Err(format!(
                "JOYRT_CUDA_GEMM={}: wgmma needs an sm_90a device (or JOYRT_CUDA_EMU_ARCH=sm_90 in the emulation)",
                setting.unwrap_or_default()
            ));
        }
        Ok(path)
    }
}

/// Which tensor-core attention a same-dtype 16-bit attention with head dim 128 takes:
/// `JOYRT_CUDA_ATTENTION` = `mma` (FlashAttention-2 on mma.sync, every GPU), `wgmma` (Hopper) or
/// `wgmma-ws` (Hopper, FlashAttention-3-style: TMA producer, two consumer warpgroups taking turns;
/// not yet measured on a GPU); unset or `auto`: `mma`, measured faster than the `wgmma` kernel on
/// an H200 (docs/benchmarks.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionPath {
    Mma,
    Wgmma,
    WgmmaWs,
}

impl AttentionPath {
    /// Every path, by its `JOYRT_CUDA_ATTENTION` name.
    pub const ALL: [(&'static str, AttentionPath); 3] =
        [("mma", AttentionPath::Mma), ("wgmma", AttentionPath::Wgmma), ("wgmma-ws", AttentionPath::WgmmaWs)];

    /// The path's `JOYRT_CUDA_ATTENTION` name.
    pub fn name(self) -> &'static str {
        AttentionPath::ALL.iter().find(|(_, p)| *p == self).map_or("?", |(n, _)| n)
    }

    /// Whether the path needs `wgmma` (an sm_90a device).
    pub fn needs_wgmma(self) -> bool {
        self != AttentionPath::Mma
    }

    /// The path `setting` (`JOYRT_CUDA_ATTENTION`) names, on modules with or without `wgmma`.
    pub fn choose(setting: Option<&str>, wgmma: bool) -> std::result::Result<AttentionPath, String> {
        let name = match setting.unwrap_or("auto") {
            "auto" | "" => return Ok(AttentionPath::Mma),
            name => name,
        };
        let Some(&(_, path)) = AttentionPath::ALL.iter().find(|(n, _)| *n == name) else {
            return Err(format!("JOYRT_CUDA_ATTENTION={name}: expected auto, mma, wgmma or wgmma-ws"));
        };
        if path.needs_wgmma() && !wgmma {
            return Err(format!(
                "JOYRT_CUDA_ATTENTION={name}: wgmma needs an sm_90a device (or JOYRT_CUDA_EMU_ARCH=sm_90 in the emulation)"
            ));
        }
        Ok(path)
    }
}

impl CudaBackend {
    /// Whether the tensor-core kernels apply to operands of `spec` (and are not switched off).
    pub(crate) fn tensor_cores(&self, spec: &Spec) -> bool {
        self.gemm_path() != GemmPath::Simt && spec.mma()
    }

    /// Blocks a persistent kernel is launched with: one per multiprocessor.
    pub(crate) fn persistent_blocks(&self) -> u32 {
        self.inner.persistent_blocks
    }

    /// The attention kernel taken where tensor cores apply at head dim 128.
    pub fn attention_path(&self) -> AttentionPath {
        *self.inner.attention.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Switches the attention kernel taken from now on (for this backend and its clones): how
    /// `joyrt bench --attention-paths` times each in one run. Refused for a `wgmma` path on a
    /// device without it.
    pub fn set_attention_path(&self, path: AttentionPath) -> Result<()> {
        if path.needs_wgmma() && !self.has_wgmma() {
            return Err(Error::backend(
                self.inner.name.clone(),
                format!(
                    "the {} attention needs wgmma: an sm_90a device, or JOYRT_CUDA_EMU_ARCH=sm_90",
                    path.name()
                ),
            ));
        }
        *self.inner.attention.lock().unwrap_or_else(|e| e.into_inner()) = path;
        Ok(())
    }

    /// The GEMM kernels this backend takes where tensor cores apply.
    pub fn gemm_path(&self) -> GemmPath {
        *self.inner.gemm.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Switches the GEMM kernels `linear` takes from now on (for this backend and its clones):
    /// how `joyrt bench` times each path in one run. Refused for a `wgmma` path on a device
    /// without it.
    pub fn set_gemm_path(&self, path: GemmPath) -> Result<()> {
        if path.needs_wgmma() && !self.has_wgmma() {
            return Err(Error::backend(
                self.inner.name.clone(),
                format!(
                    "the {} GEMM needs wgmma: an sm_90a device, or JOYRT_CUDA_EMU_ARCH=sm_90",
                    path.name()
                ),
            ));
        }
        *self.inner.gemm.lock().unwrap_or_else(|e| e.into_inner()) = path;
        Ok(())
    }

    /// Whether this backend's modules have the W8A8 kernels (FP8 `mma.sync`: sm_89 and later).
    pub fn has_fp8_mma(&self) -> bool {
        match &self.inner.dev {
            Device::Gpu { .. } => crate::kernel::has_fp8_convert(&self.inner.arch),
            Device::Emu(e) => crate::kernel::has_fp8_convert(e.limits().nvrtc_arch()),
        }
    }

    /// Whether `linear_quantized` on fp8 weights runs W8A8 (activations quantized per row).
    pub fn fp8_activations(&self) -> bool {
        self.inner.fp8_w8a8.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Switches `linear_quantized` on fp8 weights between W8A16 (`false`) and W8A8 (`true`) for
    /// this backend and its clones (`joyrt edit/bench --dtype fp8`). Refused for W8A8 on a device
    /// without FP8 `mma.sync`.
    pub fn set_fp8_activations(&self, on: bool) -> Result<()> {
        if on && !self.has_fp8_mma() {
            return Err(Error::backend(
                self.inner.name.clone(),
                "W8A8 fp8 (--dtype fp8) needs FP8 mma.sync: an sm_89 or later GPU, or JOYRT_CUDA_EMU_ARCH=sm_89/sm_90",
            ));
        }
        self.inner.fp8_w8a8.store(on, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Whether this backend's modules have the Hopper (`wgmma`) kernels.
    pub fn has_wgmma(&self) -> bool {
        match &self.inner.dev {
            Device::Gpu { .. } => crate::kernel::has_wgmma(&self.inner.arch),
            Device::Emu(e) => crate::kernel::has_wgmma(e.limits().nvrtc_arch()),
        }
    }

    /// The tensor map of `map` for this device: encoded by the driver on a GPU, by the
    /// emulation's own encoder there.
    pub(crate) fn tensor_map(&self, map: &TileMap) -> Result<TensorMap> {
        let encoded = match &self.inner.dev {
            Device::Gpu { .. } => crate::tensor_map::encode_gpu(map),
            Device::Emu(_) => crate::tensor_map::encode_emulated(map),
        };
        encoded.map_err(|why| Error::backend(self.inner.name.clone(), format!("tensor map: {why}")))
    }

    /// Runs `kernel` of the module specialised by `spec` over `grid`, with `buffers` (device
    /// addresses, 0 for an absent optional input) and then `params` as its arguments, in the
    /// order of the kernel's C signature. A refusal or a fault names the kernel, its launch shape
    /// and its parameters.
    pub(crate) fn launch<P: KernelParams + Debug>(
        &self,
        kernel: &'static Kernel<P>,
        spec: Spec,
        grid: Grid,
        buffers: &[u64],
        params: &P,
    ) -> Result<()> {
        self.launch_with_maps(kernel, spec, grid, buffers, &[], params)
    }

    /// As [`CudaBackend::launch`], with `maps` (the kernel's `const __grid_constant__
    /// CUtensorMap` parameters, by value) between the buffers and the parameter struct.
    pub(crate) fn launch_with_maps<P: KernelParams + Debug>(
        &self,
        kernel: &'static Kernel<P>,
        spec: Spec,
        grid: Grid,
        buffers: &[u64],
        maps: &[TensorMap],
        params: &P,
    ) -> Result<()> {
        let desc = &kernel.desc;
        if maps.len() != desc.tensor_maps {
            return Err(Error::backend(
                self.inner.name.clone(),
                format!("kernel {} takes {} tensor maps, given {}", desc.name, desc.tensor_maps, maps.len()),
            ));
        }
        let Some(shape) = self.launch_shape(desc, spec, grid)? else {
            return Ok(());
        };
        let function = self.function(desc, spec)?;
        // cuLaunchKernel's argument list: one pointer per parameter, to its value (a tensor map's
        // 128 bytes are copied from where it points, as any by-value parameter's).
        let mut args: Vec<*mut c_void> = buffers
            .iter()
            .map(|b| b as *const u64 as *mut c_void)
            .chain(maps.iter().map(|m| m as *const TensorMap as *mut c_void))
            .chain([params as *const P as *mut c_void])
            .collect();
        let failed = |why: String| {
            Error::backend(
                self.inner.name.clone(),
                format!("kernel {} ({shape}; {params:?}): {why}", desc.name),
            )
        };
        match (&function, &self.inner.dev) {
            (Function::Gpu(g), Device::Gpu { ctx, stream, .. }) => {
                // The driver's checks, made first so a refusal names the limit.
                self.inner
                    .limits
                    .check_launch(&g.limits, &shape)
                    .map_err(|why| failed(format!("refused: {why}")))?;
                ctx.bind_to_thread().map_err(|e| self.driver_err("binding the context", e))?;
                let stamp = self.inner.profiler.begin_gpu(ctx, stream)?;
                let [x, y, z] = shape.grid;
                // SAFETY: `args` follows the kernel's C signature (the op that calls this passes
                // the buffers its kernel takes, each sized by the checked op, then the family's
                // parameter struct, whose C declaration the kernel was compiled with); the values
                // pointed to outlive the call, which copies them.
                unsafe {
                    cudarc::driver::result::launch_kernel(
                        g.f.cu_function(),
                        (x, y, z),
                        (shape.block, 1, 1),
                        shape.dynamic_smem,
                        stream.cu_stream(),
                        &mut args,
                    )
                }
                .map_err(|e| failed(format!("cuLaunchKernel: {}", self.describe_driver_error(e))))?;
                self.inner.profiler.end(desc.name, stamp, Some(stream))?;
                self.note_launch(desc.name);
                if self.inner.sync_each_launch {
                    stream.synchronize().map_err(|e| {
                        failed(format!(
                            "failed while running (JOYRT_CUDA_SYNC=1 synchronised after it): {e:?}"
                        ))
                    })?;
                }
                Ok(())
            }
            (Function::Emu(k), Device::Emu(emulator)) => {
                emulator.check_usable().map_err(&failed)?;
                let stamp = self.inner.profiler.begin_host();
                // SAFETY: as for the GPU launch; host buffers stand in for device memory.
                match unsafe { k.launch(&shape, &mut args) } {
                    Ok(()) => self.inner.profiler.end(desc.name, stamp, None),
                    Err(EmuLaunchError::Refused(why)) => Err(failed(format!("launch refused: {why}"))),
                    Err(EmuLaunchError::Fault(why)) => {
                        emulator.poison(format!("kernel {} faulted: {why}", desc.name));
                        Err(failed(format!("faulted: {why}")))
                    }
                }
            }
            _ => unreachable!("kernels come from the backend's own device"),
        }
    }

    /// Launches `kernel` with `inputs` and then a new buffer of `output = (dtype, elements)` as
    /// its buffers (the output last, as every kernel takes it), and returns that buffer.
    pub(crate) fn launch_output<P: KernelParams + Debug>(
        &self,
        kernel: &'static Kernel<P>,
        spec: Spec,
        grid: Grid,
        inputs: &[u64],
        output: (DType, usize),
        params: &P,
    ) -> Result<CudaBuffer> {
        let out = self.output(output.0, output.1)?;
        let buffers: Vec<u64> = inputs.iter().copied().chain([out.ptr]).collect();
        self.launch(kernel, spec, grid, &buffers, params)?;
        Ok(out)
    }

    /// The launch of `desc` over `grid` for a module of `spec`; none for an empty grid.
    fn launch_shape(&self, desc: &KernelDesc, spec: Spec, grid: Grid) -> Result<Option<LaunchShape>> {
        let (x, y, threads) = match grid {
            Grid::Stride(n) => {
                (n.div_ceil(desc.threads as usize).min(self.inner.max_blocks as usize), 1, desc.threads)
            }
            Grid::Rows { rows, cols } => {
                (rows, 1, (cols.div_ceil(32) * 32).clamp(32, desc.threads as usize) as u32)
            }
            Grid::Blocks(x, y) => (x, y, desc.threads),
        };
        if x == 0 || y == 0 {
            return Ok(None);
        }
        let blocks = |n: usize| {
            u32::try_from(n).map_err(|_| {
                Error::backend(self.inner.name.clone(), format!("{}: a grid of {x} × {y} blocks", desc.name))
            })
        };
        let dynamic_smem = (desc.dynamic_smem)(&spec);
        Ok(Some(LaunchShape { grid: [blocks(x)?, blocks(y)?, 1], block: threads, dynamic_smem }))
    }

    /// The kernel `desc` of the module specialised by `spec`, compiled on first use.
    fn function(&self, desc: &'static KernelDesc, spec: Spec) -> Result<Function> {
        let key = (desc.name, spec);
        let functions = &self.inner.kernels.functions;
        if let Some(f) = functions.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(f.clone());
        }
        let mut function = match self.module(desc.family, spec)? {
            Module::Gpu(m) => {
                let err = |e| self.driver_err(&format!("kernel {}", desc.name), e);
                let f = m.load_function(desc.name).map_err(err)?;
                let resources = KernelResources {
                    registers: f.get_attribute(Attr::CU_FUNC_ATTRIBUTE_NUM_REGS).map_err(err)? as u32,
                    static_smem: f.get_attribute(Attr::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES).map_err(err)?
                        as u32,
                };
                Function::Gpu(GpuFunction { f, limits: FunctionLimits::loaded(Some(resources)) })
            }
            Module::Emu(m) => {
                Function::Emu(m.kernel(desc.name).map_err(|e| Error::backend(self.inner.name.clone(), e))?)
            }
        };
        self.opt_in_dynamic_smem(desc, spec, &mut function)?;
        functions.lock().unwrap_or_else(|e| e.into_inner()).insert(key, function.clone());
        Ok(function)
    }

    /// Lets `function` take the dynamic shared memory `desc` gives it for `spec` where that is
    /// more than a function may take by default (48 KiB with its static shared memory):
    /// `cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)`, which the driver
    /// (and the emulation) require before such a launch. Refused with the kernel, the bytes and
    /// the device's limit where the device has less.
    fn opt_in_dynamic_smem(&self, desc: &KernelDesc, spec: Spec, function: &mut Function) -> Result<()> {
        let bytes = (desc.dynamic_smem)(&spec);
        if bytes <= function.limits().max_dynamic_smem {
            return Ok(());
        }
        let static_smem = function.limits().resources.map_or(0, |r| r.static_smem);
        let refused = |why: String| {
            Error::backend(
                self.inner.name.clone(),
                format!("kernel {} cannot run on this device: {why}", desc.name),
            )
        };
        if let Some(why) = self.inner.limits.opt_in_refusal(bytes, static_smem) {
            return Err(refused(why));
        }
        match function {
            Function::Gpu(g) => {
                g.f.set_attribute(Attr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes as i32)
                    .map_err(|e| {
                        refused(format!("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, {bytes}): {e:?}"))
                    })?;
                g.limits.max_dynamic_smem = bytes;
            }
            Function::Emu(k) => k.set_max_dynamic_smem(bytes).map_err(refused)?,
        }
        Ok(())
    }

    /// `family` compiled for `spec` (by NVRTC for the GPU, by the C++ compiler for the
    /// emulation), on first use.
    fn module(&self, family: Family, spec: Spec) -> Result<Module> {
        let mut modules = self.inner.kernels.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = modules.get(&(family, spec)) {
            return Ok(m.clone());
        }
        let name = self.inner.name.clone();
        let module = match &self.inner.dev {
            Device::Gpu { ctx, .. } => {
                let arch = &self.inner.arch;
                let compiled = nvrtc::compile_cached(family, &spec, arch)
                    .map_err(|log| Error::backend(name, format!("kernel compilation failed: {log}")))?;
                Module::Gpu(
                    ctx.load_module(cudarc::nvrtc::Ptx::from_binary(compiled.cubin))
                        .map_err(|e| self.driver_err(&format!("loading {} for {arch}", family.file()), e))?,
                )
            }
            Device::Emu(emulator) => Module::Emu(
                emulator
                    .build(family, spec)
                    .map_err(|log| Error::backend(name, format!("building the emulated kernels: {log}")))?,
            ),
        };
        modules.insert((family, spec), module.clone());
        Ok(module)
    }
}

#[cfg(test)]
mod gemm_path_tests {
    use super::GemmPath;

    #[test]
    fn the_gemm_path_follows_the_setting_and_the_architecture() {
        assert_eq!(GemmPath::choose(None, true), Ok(GemmPath::Wgmma));
        assert_eq!(GemmPath::choose(None, false), Ok(GemmPath::Mma));
        assert_eq!(GemmPath::choose(Some("auto"), false), Ok(GemmPath::Mma));
        assert_eq!(GemmPath::choose(Some("mma"), true), Ok(GemmPath::Mma));
        assert_eq!(GemmPath::choose(Some("simt"), true), Ok(GemmPath::Simt));
        assert_eq!(GemmPath::choose(Some("wgmma-persistent"), true), Ok(GemmPath::WgmmaPersistent));
        assert_eq!(GemmPath::choose(Some("wgmma-ws"), true), Ok(GemmPath::WgmmaWs));
        assert!(GemmPath::choose(Some("wgmma-ws"), false).unwrap_err().contains("sm_90a"));
        for (name, path) in GemmPath::ALL {
            assert_eq!(path.name(), name);
        }
        let e = GemmPath::choose(Some("wgmma"), false).unwrap_err();
        assert!(e.contains("sm_90a"), "{e}");
        let e = GemmPath::choose(Some("fast"), true).unwrap_err();
        assert!(e.contains("JOYRT_CUDA_GEMM=fast"), "{e}");
    }

    #[test]
    fn the_attention_path_follows_the_setting_and_the_architecture() {
        use super::AttentionPath;
        assert_eq!(AttentionPath::choose(None, true), Ok(AttentionPath::Mma));
        assert_eq!(AttentionPath::choose(Some("wgmma"), true), Ok(AttentionPath::Wgmma));
        assert_eq!(AttentionPath::choose(Some("wgmma-ws"), true), Ok(AttentionPath::WgmmaWs));
        assert_eq!(AttentionPath::choose(Some("mma"), false), Ok(AttentionPath::Mma));
        assert!(AttentionPath::choose(Some("wgmma"), false).unwrap_err().contains("sm_90a"));
        assert!(AttentionPath::choose(Some("wgmma-ws"), false).unwrap_err().contains("sm_90a"));
        for (name, path) in AttentionPath::ALL {
            assert_eq!(path.name(), name);
        }
        assert!(AttentionPath::choose(Some("x"), true).unwrap_err().contains("JOYRT_CUDA_ATTENTION=x"));
    }
}
