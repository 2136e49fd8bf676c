//! Finding and launching kernels: the per-process cache of compiled modules and functions, the
//! launch shape a [`Grid`] gives a kernel, and the argument list every kernel takes (its buffers'
//! device addresses, then its family's parameter struct by value).
//!
//! Every launch goes through [`CudaBackend::launch`] with the kernel's descriptor, so what a
//! launch needs from the kernel (block size, dynamic shared memory, and anything a device must
//! be told about the function before it runs) is decided in one place.

use crate::device::Device;
use crate::emu;
use crate::kernel::{Family, Kernel, KernelDesc, Spec};
use crate::{nvrtc, CudaBackend, CudaBuffer};
use cudarc::driver::{CudaFunction, CudaModule};
use joyrt_core::kernel_abi::KernelParams;
use joyrt_core::{DType, Error, Result, Tensor};
use std::collections::HashMap;
use std::ffi::c_void;
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
    Gpu(CudaFunction),
    Emu(emu::EmuKernel),
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

/// CUDA's limits on the grid: 2³¹ − 1 blocks in x, 65535 in y.
const MAX_GRID_X: usize = i32::MAX as usize;
const MAX_GRID_Y: usize = 65535;

impl CudaBackend {
    /// Whether the tensor-core kernels apply to operands of `spec` (and are not switched off).
    pub(crate) fn tensor_cores(&self, spec: &Spec) -> bool {
        self.inner.mma && spec.mma()
    }

    /// Runs `kernel` of the module specialised by `spec` over `grid`, with `buffers` (device
    /// addresses, 0 for an absent optional input) and then `params` as its arguments, in the
    /// order of the kernel's C signature.
    pub(crate) fn launch<P: KernelParams>(
        &self,
        kernel: &'static Kernel<P>,
        spec: Spec,
        grid: Grid,
        buffers: &[u64],
        params: &P,
    ) -> Result<()> {
        let desc = &kernel.desc;
        let (blocks, threads) = self.launch_shape(desc, grid)?;
        if blocks.0 == 0 || blocks.1 == 0 {
            return Ok(());
        }
        let function = self.function(desc, spec)?;
        let smem = (desc.dynamic_smem)(&spec);
        // cuLaunchKernel's argument list: one pointer per parameter, to its value.
        let mut args: Vec<*mut c_void> = buffers
            .iter()
            .map(|b| b as *const u64 as *mut c_void)
            .chain([params as *const P as *mut c_void])
            .collect();
        let grid_dim = (blocks.0, blocks.1, 1);
        match (&function, &self.inner.dev) {
            (Function::Gpu(f), Device::Gpu { ctx, stream }) => {
                ctx.bind_to_thread().map_err(|e| self.driver_err("binding the context", e))?;
                // SAFETY: `args` follows the kernel's C signature (the op that calls this passes
                // the buffers its kernel takes, each sized by the checked op, then the family's
                // parameter struct, whose C declaration the kernel was compiled with); the values
                // pointed to outlive the call, which copies them.
                unsafe {
                    cudarc::driver::result::launch_kernel(
                        f.cu_function(),
                        grid_dim,
                        (threads, 1, 1),
                        smem,
                        stream.cu_stream(),
                        &mut args,
                    )
                }
                .map_err(|e| self.driver_err(&format!("launching {}", desc.name), e))
            }
            (Function::Emu(k), Device::Emu(_)) => {
                let _one_at_a_time = emu::global_launch_lock();
                // SAFETY: as for the GPU launch; host buffers stand in for device memory.
                unsafe { (k.f)(grid_dim.0, grid_dim.1, grid_dim.2, threads, smem, args.as_mut_ptr()) };
                Ok(())
            }
            _ => unreachable!("kernels come from the backend's own device"),
        }
    }

    /// Launches `kernel` with `inputs` and then a new buffer of `output = (dtype, elements)` as
    /// its buffers (the output last, as every kernel takes it), and returns that buffer.
    pub(crate) fn launch_output<P: KernelParams>(
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

    /// `(grid x, grid y)` and threads per block for `grid` on `desc`.
    fn launch_shape(&self, desc: &KernelDesc, grid: Grid) -> Result<((u32, u32), u32)> {
        let (x, y, threads) = match grid {
            Grid::Stride(n) => {
                (n.div_ceil(desc.threads as usize).min(self.inner.max_blocks as usize), 1, desc.threads)
            }
            Grid::Rows { rows, cols } => {
                (rows, 1, (cols.div_ceil(32) * 32).clamp(32, desc.threads as usize) as u32)
            }
            Grid::Blocks(x, y) => (x, y, desc.threads),
        };
        if x > MAX_GRID_X || y > MAX_GRID_Y {
            return Err(Error::backend(
                self.inner.name.clone(),
                format!(
                    "{}: a grid of {x} × {y} blocks exceeds CUDA's limits ({MAX_GRID_X} × {MAX_GRID_Y})",
                    desc.name
                ),
            ));
        }
        Ok(((x as u32, y as u32), threads))
    }

    /// The kernel `desc` of the module specialised by `spec`, compiled on first use.
    fn function(&self, desc: &'static KernelDesc, spec: Spec) -> Result<Function> {
        let key = (desc.name, spec);
        let functions = &self.inner.kernels.functions;
        if let Some(f) = functions.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(f.clone());
        }
        let function = match self.module(desc.family, spec)? {
            Module::Gpu(m) => Function::Gpu(
                m.load_function(desc.name)
                    .map_err(|e| self.driver_err(&format!("kernel {}", desc.name), e))?,
            ),
            Module::Emu(m) => {
                Function::Emu(m.kernel(desc).map_err(|e| Error::backend(self.inner.name.clone(), e))?)
            }
        };
        functions.lock().unwrap_or_else(|e| e.into_inner()).insert(key, function.clone());
        Ok(function)
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
                let cubin = nvrtc::compile(family, &spec, arch)
                    .map_err(|log| Error::backend(name, format!("kernel compilation failed: {log}")))?;
                Module::Gpu(
                    ctx.load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
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
