//! The CPU emulation of the CUDA kernels (see `emu/cuda_emu.hpp`): each family is compiled by the
//! host C++ compiler together with the emulation header into a shared library, loaded, and its
//! kernels (those the family's descriptors list) are called with the same argument lists as
//! `cuLaunchKernel` would get. Used by [`crate::CudaBackend::emulated`] so the conformance suite
//! runs the real kernel sources in CI.

use crate::kernel::{Family, Spec};
use crate::limits::{DeviceLimits, FunctionLimits, KernelResources, LaunchShape};
use crate::nvrtc;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

const HEADER: &str = include_str!("../emu/cuda_emu.hpp");
/// Hopper's mbarriers and tensor copies, after the scheduler they block on.
const ASYNC_HEADER: &str = include_str!("../emu/cuda_emu_async.hpp");

/// `emu_<kernel>(grid x, y, z, block x, dynamic shared memory bytes, args)`: null, or the fault
/// that stopped the launch.
pub type EmuFn = unsafe extern "C" fn(u32, u32, u32, u32, u32, *mut *mut c_void) -> *const c_char;

/// Why an emulated launch did not complete, told apart as the driver tells them apart.
#[derive(Debug, PartialEq, Eq)]
pub enum EmuLaunchError {
    /// Refused before it ran (`cuLaunchKernel`'s `CUDA_ERROR_INVALID_VALUE`): the context stays
    /// usable.
    Refused(String),
    /// A kernel fault (`__trap()`, a divergent barrier, an overrun of dynamic shared memory): on
    /// a GPU this poisons the context, and the emulator treats it so.
    Fault(String),
}

/// An emulated kernel, the library that holds it, and what the emulated driver knows of it:
/// the launch limits are enforced here, as `cuLaunchKernel` enforces them.
#[derive(Clone)]
pub struct EmuKernel {
    f: EmuFn,
    _lib: Arc<libloading::Library>,
    device: Arc<DeviceLimits>,
    function: FunctionLimits,
}

impl EmuKernel {
    /// The function's attributes as the emulated driver holds them.
    pub fn limits(&self) -> &FunctionLimits {
        &self.function
    }

    /// `cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes)`, refused past
    /// the emulated architecture's limit as the driver refuses it.
    pub fn set_max_dynamic_smem(&mut self, bytes: u32) -> Result<(), String> {
        let static_smem = self.function.resources.map_or(0, |r| r.static_smem);
        if let Some(why) = self.device.opt_in_refusal(bytes, static_smem) {
            return Err(format!(
                "cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES): {why}"
            ));
        }
        self.function.max_dynamic_smem = bytes;
        Ok(())
    }

    /// Runs the kernel over `shape` with `args` (`cuLaunchKernel`'s argument list), after the
    /// checks the driver makes. Synchronous: a fault is known when this returns.
    ///
    /// # Safety
    /// `args` must follow the kernel's C signature, pointing at values that outlive the call, and
    /// the buffers they address must be as large as the kernel reads and writes.
    pub unsafe fn launch(&self, shape: &LaunchShape, args: &mut [*mut c_void]) -> Result<(), EmuLaunchError> {
        self.device.check_launch(&self.function, shape).map_err(EmuLaunchError::Refused)?;
        let [x, y, z] = shape.grid;
        let _one_at_a_time = global_launch_lock();
        let fault = (self.f)(x, y, z, shape.block, shape.dynamic_smem, args.as_mut_ptr());
        if fault.is_null() {
            Ok(())
        } else {
            Err(EmuLaunchError::Fault(CStr::from_ptr(fault).to_string_lossy().into_owned()))
        }
    }
}

/// One family specialised for one spec, built and loaded (the emulation's module).
#[derive(Clone)]
pub struct EmuModule {
    /// The CUDA translation unit it was built from (`gemm.cu`).
    file: String,
    lib: Arc<libloading::Library>,
    device: Arc<DeviceLimits>,
    /// Registers and static shared memory per kernel, from NVRTC's compile report for the
    /// emulated architecture; empty without libnvrtc (those two checks are then skipped).
    resources: Arc<HashMap<String, KernelResources>>,
}

impl EmuModule {
    /// The kernel `name` of this module, as loaded: no dynamic shared memory opted in.
    pub fn kernel(&self, name: &str) -> Result<EmuKernel, String> {
        let symbol = format!("emu_{name}");
        // SAFETY: every exported `emu_*` symbol has the EmuFn signature (EMU_EXPORT).
        let f: EmuFn = unsafe {
            *self.lib.get::<EmuFn>(symbol.as_bytes()).map_err(|e| format!("{}: {symbol}: {e}", self.file))?
        };
        let function = FunctionLimits::loaded(self.resources.get(name).copied());
        Ok(EmuKernel { f, _lib: self.lib.clone(), device: self.device.clone(), function })
    }
}

/// Builds modules with the host's C++ compiler, in a scratch folder of its own.
pub struct Emulator {
    compiler: String,
    dir: PathBuf,
    device: Arc<DeviceLimits>,
    /// The first kernel fault: like a GPU context after one, the emulator then refuses all work.
    fault: Mutex<Option<String>>,
}

static LAUNCH_LOCK: Mutex<()> = Mutex::new(());

/// A built library, or why it could not be built: once per source in the process.
type BuiltSlot = Arc<OnceLock<Result<Arc<libloading::Library>, String>>>;

/// Every library built in this process, by compiler and translation unit.
static BUILT: LazyLock<Mutex<HashMap<(String, String), BuiltSlot>>> = LazyLock::new(Default::default);

/// Serialises emulated launches in the process: each library keeps its scheduler (and
/// `__shared__` memory) in globals, so two launches of one kernel must not overlap.
fn global_launch_lock() -> std::sync::MutexGuard<'static, ()> {
    LAUNCH_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

impl Emulator {
    /// Finds a C++ compiler (`$CXX`, else `g++`, else `c++`); emulates the architecture
    /// [`DeviceLimits::emulated`] names.
    pub fn new() -> Result<Emulator, String> {
        Emulator::for_device(DeviceLimits::emulated()?)
    }

    /// As [`Emulator::new`], emulating `device`.
    pub fn for_device(device: DeviceLimits) -> Result<Emulator, String> {
        let device = Arc::new(device);
        let candidates: Vec<String> =
            std::env::var("CXX").into_iter().chain(["g++".to_string(), "c++".to_string()]).collect();
        let compiler = candidates
            .into_iter()
            .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
            .ok_or("no C++ compiler (g++/c++/$CXX) to build the CUDA emulation")?;
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // One folder per emulator: each removes its own when dropped.
        let dir = std::env::temp_dir().join(format!("joyrt-cuda-emu-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Emulator { compiler, dir, device, fault: Mutex::new(None) })
    }

    /// Compiles `family` specialised by `spec`, with the kernels its descriptors list exported,
    /// and loads it.
    pub fn build(&self, family: Family, spec: Spec) -> Result<EmuModule, String> {
        let stem = format!("{}-{:?}-{:?}-{:?}-{:?}", family.def().name, spec.x, spec.w, spec.b, spec.c);
        let arch = self.device.nvrtc_arch();
        let kernels: Vec<&str> = family.kernels(&spec, arch).map(|k| k.name).collect();
        let resources = self.compile_report(family, &spec)?;
        self.build_source(&stem, &family.file(), &nvrtc::source(family, &spec, arch), &kernels, resources)
    }

    /// Compiles `source` (the CUDA translation unit `file`) with the emulation header, exporting
    /// `kernels`, and loads it as a module whose kernels use `resources`.
    fn build_source(
        &self,
        stem: &str,
        file: &str,
        source: &str,
        kernels: &[&str],
        resources: HashMap<String, KernelResources>,
    ) -> Result<EmuModule, String> {
        let mut src = String::from("#define JOYRT_CUDA_EMU 1\n");
        src += HEADER;
        src += "\n";
        src += ASYNC_HEADER;
        src += "\n";
        src += source;
        for k in kernels {
            src += &format!("EMU_EXPORT({k})\n");
        }
        // A library is a pure function of its source and compiler, and holds no state between
        // launches, so every emulator in the process shares it: a fresh emulator (one per backend)
        // then costs no compilation for what another already built.
        let slot = {
            let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
            built.entry((self.compiler.clone(), src.clone())).or_default().clone()
        };
        let lib = slot.get_or_init(|| self.compile(stem, file, &src)).clone()?;
        Ok(EmuModule { file: file.into(), lib, device: self.device.clone(), resources: Arc::new(resources) })
    }

    /// Compiles the emulation translation unit `src` into a shared library and loads it.
    fn compile(&self, stem: &str, file: &str, src: &str) -> Result<Arc<libloading::Library>, String> {
        let src_path = self.dir.join(format!("{stem}.cpp"));
        let lib_path = self.dir.join(format!("{stem}.so"));
        std::fs::write(&src_path, src).map_err(|e| format!("{}: {e}", src_path.display()))?;
        let out = Command::new(&self.compiler)
            .args(["-std=c++17", "-O2", "-shared", "-fPIC", "-w", "-o"])
            .arg(&lib_path)
            .arg(&src_path)
            .output()
            .map_err(|e| format!("running {}: {e}", self.compiler))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed on {} (emulated {file}):\n{}",
                self.compiler,
                src_path.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // SAFETY: a library we just built; its initialisers only set up statics.
        let lib = unsafe { libloading::Library::new(&lib_path) }
            .map_err(|e| format!("{}: {e}", lib_path.display()))?;
        Ok(Arc::new(lib))
    }

    /// The limits of the emulated architecture.
    pub fn limits(&self) -> &DeviceLimits {
        &self.device
    }

    /// Each kernel's registers and static shared memory for the emulated architecture, as NVRTC
    /// reports them; nothing without libnvrtc.
    fn compile_report(
        &self,
        family: Family,
        spec: &Spec,
    ) -> Result<HashMap<String, KernelResources>, String> {
        if !nvrtc::nvrtc_present() {
            return Ok(HashMap::new());
        }
        let compiled = nvrtc::compile_cached(family, spec, self.device.nvrtc_arch())?;
        Ok(nvrtc::entry_resources(&compiled.log).into_iter().collect())
    }

    /// Records a kernel fault: every later launch and synchronisation fails with it, as on a
    /// poisoned GPU context.
    pub fn poison(&self, fault: String) {
        self.fault.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(fault);
    }

    /// Whether the emulated context still takes work: not after a kernel fault.
    pub fn check_usable(&self) -> Result<(), String> {
        match &*self.fault.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Ok(()),
            Some(fault) => {
                Err(format!("the emulated CUDA context is poisoned by an earlier kernel fault: {fault}"))
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kernels that fault on request: a trap in one thread, a write at byte `at` of the dynamic
    /// shared memory.
    const FAULTY: &str = r#"
extern "C" __global__ void trap_in_thread(int* out, int thread) {
    if ((int)threadIdx.x == thread) __trap();
    out[threadIdx.x] = 1;
}
extern "C" __global__ void write_smem(int* out, int at) {
    emu_dynamic_smem[at] = 1;
    out[threadIdx.x] = 2;
}
"#;

    fn shape(block: u32, dynamic_smem: u32) -> LaunchShape {
        LaunchShape { grid: [2, 1, 1], block, dynamic_smem }
    }

    /// Launches `k` with a 64-int output and `arg`.
    fn run(k: &EmuKernel, shape: LaunchShape, arg: i32) -> Result<Vec<i32>, EmuLaunchError> {
        let mut out = vec![0i32; 1024];
        let (mut ptr, mut arg) = (out.as_mut_ptr() as u64, arg);
        let mut args = [&mut ptr as *mut u64 as *mut c_void, &mut arg as *mut i32 as *mut c_void];
        // SAFETY: both kernels take (int*, int) and write at most 1024 ints.
        unsafe { k.launch(&shape, &mut args) }.map(|_| out)
    }

    #[test]
    fn faults_come_back_as_errors_and_the_limits_are_enforced() {
        let emulator = match Emulator::new() {
            Ok(e) => e,
            Err(why) => return println!("SKIPPED: {why}"),
        };
        assert_eq!(emulator.limits(), &DeviceLimits::emulated().unwrap());
        let module = emulator
            .build_source("faulty", "faulty.cu", FAULTY, &["trap_in_thread", "write_smem"], HashMap::new())
            .unwrap();
        let trap = module.kernel("trap_in_thread").unwrap();
        assert_eq!(run(&trap, shape(64, 0), -1).unwrap()[..64], [1; 64]);
        match run(&trap, shape(64, 0), 3) {
            Err(EmuLaunchError::Fault(m)) => {
                assert!(m.contains("__trap()") && m.contains("thread 3)"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let mut smem = module.kernel("write_smem").unwrap();
        assert_eq!(run(&smem, shape(32, 64), 63).unwrap()[0], 2);
        match run(&smem, shape(32, 64), 64) {
            Err(EmuLaunchError::Fault(m)) => {
                assert!(m.contains("past the launch's dynamic shared memory"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // Refused before running: too many threads, and dynamic shared memory past 48 KiB until
        // the function is opted in, and never past the architecture's limit.
        assert!(
            matches!(run(&smem, shape(1056, 0), 0), Err(EmuLaunchError::Refused(m)) if m.contains("1056 threads"))
        );
        let big = shape(32, 61440);
        assert!(matches!(run(&smem, big, 0), Err(EmuLaunchError::Refused(m)) if m.contains("not opted in")));
        smem.set_max_dynamic_smem(61440).unwrap();
        assert_eq!(run(&smem, big, 61439).unwrap()[0], 2);
        let m = smem.set_max_dynamic_smem(emulator.limits().smem_per_block_optin + 1).unwrap_err();
        assert!(m.contains("allows at most"), "{m}");
        // A fault poisons the emulated context.
        assert_eq!(emulator.check_usable(), Ok(()));
        emulator.poison("kernel k faulted: __trap()".into());
        let m = emulator.check_usable().unwrap_err();
        assert!(m.contains("poisoned") && m.contains("kernel k faulted"), "{m}");
    }

    /// Kernels over the emulated mbarrier and tensor copy (emu/cuda_emu_async.hpp). `tile_load`:
    /// thread 0 loads the box of `map` at (c0, c1) into shared offset 0, completing `bytes` on a
    /// barrier; the other threads copy the shared tile out, after waiting on the barrier or, with
    /// `early`, after the copy's issue but before its barrier's phase could complete. `phases`: threads 1 and 2 arrive on a barrier of count 2, thread 0 waits
    /// out each phase (and acknowledges phase 0 on a second barrier before phase 1 begins); `mode` 1 leaves phase 1's expected bytes uncompleted, 2 arrives once more
    /// in phase 0 while its bytes are pending, 3 waits on a barrier never initialised.
    const ASYNC: &str = r#"
extern "C" __global__ void tile_load(unsigned short* out, const __grid_constant__ CUtensorMap map, int c0, int c1,
                                     unsigned bytes, int early) {
    unsigned long long* bar = (unsigned long long*)(emu_dynamic_smem + 4096);
    const unsigned short* tile = (const unsigned short*)emu_dynamic_smem;
    const unsigned t = threadIdx.x;
    if (t == 0) emu_mbarrier_init(bar, 1);
    __syncthreads();
    if (t == 0) emu_tile_load_2d(emu_dynamic_smem, &map, c0, c1, bar);
    if (early && t > 0)
        for (unsigned i = t - 1; i < bytes / 2; i += blockDim.x - 1) out[i] = tile[i];
    __syncthreads();
    if (t == 0) emu_mbarrier_arrive(bar, bytes);
    emu_mbarrier_wait(bar, 0);
    if (!early && t > 0)
        for (unsigned i = t - 1; i < bytes / 2; i += blockDim.x - 1) out[i] = tile[i];
}
extern "C" __global__ void phases(int* out, int mode) {
    unsigned long long* bar = (unsigned long long*)emu_dynamic_smem;
    unsigned long long* ack = bar + 1;
    const int t = threadIdx.x;
    if (t == 0 && mode != 3) {
        emu_mbarrier_init(bar, 2);
        emu_mbarrier_init(ack, 1);
    }
    __syncthreads();
    if (t == 0) {
        emu_mbarrier_wait(bar, 1);  // the phase before phase 0 counts as complete
        out[0] = 1;
        emu_mbarrier_wait(bar, 0);
        out[1] = 2;
        emu_mbarrier_arrive(ack, 0);
        emu_mbarrier_wait(bar, 1);
        out[2] = 3;
    } else if (t < 3) {
        emu_mbarrier_arrive(bar, mode == 2 && t == 1 ? 16 : 0);
        if (mode == 2 && t == 1) emu_mbarrier_arrive(bar, 0);
        emu_mbarrier_wait(ack, 0);
        emu_mbarrier_arrive(bar, mode == 1 && t == 1 ? 16 : 0);
    }
}
"#;

    /// Named barriers and warp-local collectives (emu/cuda_emu.hpp). `mode` 0: two warpgroups
    /// take turns through barriers 1 and 2 (warpgroup 1 arrives on 1 first, and skips its last
    /// arrival so every phase is whole), each logging its number three times; 3: the same
    /// without the first arrival (a deadlock); 1: a count of 100; 2: barrier 16; 4: warp 0
    /// arrives twice in one phase of a 64-thread barrier. 5: warp 0 sums its lanes by shuffles
    /// and then arrives on an mbarrier warp 1 waits on (a warp collective parks its warp only);
    /// 6: lane 0 shuffles once more than the rest of its warp.
    const NAMED: &str = r#"
extern "C" __global__ void named(int* out, int mode) {
    int* log = (int*)emu_dynamic_smem;
    const int t = threadIdx.x, wg = t / 128;
    if (t == 0) log[15] = 0;
    __syncthreads();
    if (mode == 1 || mode == 2) {
        emu_named_barrier(mode == 1 ? 1 : 16, mode == 1 ? 100 : 256, true);
    } else if (mode == 4) {
        if (t < 64) emu_named_barrier(3, 64, false);
        if (t < 32) emu_named_barrier(3, 64, false);
    } else if (mode == 0 || mode == 3) {
        if (wg == 1 && mode == 0) emu_named_barrier(1, 256, false);
        for (int i = 0; i < 3; ++i) {
            emu_named_barrier(1 + wg, 256, true);
            if (t % 128 == 0) log[log[15]++] = wg;
            if (!(wg == 1 && i == 2)) emu_named_barrier(2 - wg, 256, false);
        }
        __syncthreads();
        if (t < 6) out[t] = log[t];
    } else if (mode == 5) {
        unsigned long long* bar = (unsigned long long*)(emu_dynamic_smem + 64);
        if (t == 0) emu_mbarrier_init(bar, 32);
        __syncthreads();
        if (t < 32) {
            float v = (float)t;
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (t == 0) log[0] = (int)v;
            emu_mbarrier_arrive(bar, 0);
        } else if (t < 64) {
            emu_mbarrier_wait(bar, 0);
            out[t - 32] = log[0];
        }
    } else if (mode == 6 && t < 32) {
        float v = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
        if (t == 0) v = __shfl_xor_sync(0xffffffffu, v, 1);
        out[t] = (int)v;
    }
}
"#;

    /// Warpgroups take turns in the order their named barriers give, a warp collective waits for
    /// its warp only, and every misuse the hardware forbids (or a wait that cannot complete) is a
    /// fault with its reason.
    #[test]
    fn named_barriers_order_warpgroups_and_warp_collectives_park_one_warp() {
        let Ok(emulator) = Emulator::new().map_err(|why| println!("SKIPPED: {why}")) else { return };
        let module = emulator.build_source("named", "named.cu", NAMED, &["named"], HashMap::new()).unwrap();
        let k = module.kernel("named").unwrap();
        let run = |mode: i32| {
            let mut out = vec![-1i32; 32];
            let (mut ptr, mut mode) = (out.as_mut_ptr() as u64, mode);
            launch(&k, 256, 128, &mut [arg(&mut ptr), arg(&mut mode)]).map(|_| out)
        };
        assert_eq!(run(0).unwrap()[..6], [0, 1, 0, 1, 0, 1]);
        assert_eq!(run(5).unwrap(), [496; 32]);
        let fault = |mode: i32, what: &[&str]| match run(mode) {
            Err(EmuLaunchError::Fault(m)) => assert!(what.iter().all(|w| m.contains(w)), "mode {mode}: {m}"),
            other => panic!("mode {mode}: {other:?}"),
        };
        fault(1, &["thread count of 100", "multiple of 32"]);
        fault(2, &["named barrier 16", "1 .. 15"]);
        fault(3, &["deadlock", "thread 0 waits at named barrier 1 (128 of 256 threads arrived)"]);
        fault(4, &["named barrier 3", "64 arrivals from warp 0", "warp-wide"]);
        fault(6, &["deadlock", "thread 0 waits at a warp collective"]);
    }

    /// A kernel argument: a pointer to its value.
    fn arg<T>(v: &mut T) -> *mut c_void {
        v as *mut T as *mut c_void
    }

    /// Launches `k` on one block of `threads` with `args` (pointers to each argument's value).
    fn launch(
        k: &EmuKernel,
        threads: u32,
        smem: u32,
        args: &mut [*mut c_void],
    ) -> Result<(), EmuLaunchError> {
        let shape = LaunchShape { grid: [1, 1, 1], block: threads, dynamic_smem: smem };
        // SAFETY: the callers pass the kernel's arguments in order, buffers as large as it uses.
        unsafe { k.launch(&shape, args) }
    }

    fn async_module() -> Option<(Emulator, EmuModule)> {
        let emulator = Emulator::new().map_err(|why| println!("SKIPPED: {why}")).ok()?;
        let module = emulator
            .build_source("async", "async.cu", ASYNC, &["tile_load", "phases"], HashMap::new())
            .unwrap();
        Some((emulator, module))
    }

    /// A box half outside a 5 × 72 matrix lands zero-filled where it is outside, with the
    /// 128-byte swizzle (16-byte chunk c of box row r at chunk c ^ (r % 8)); read before the
    /// barrier's phase completes, every element is NaN.
    #[test]
    fn a_tile_load_swizzles_fills_out_of_bounds_with_zero_and_is_nan_until_waited_on() {
        use crate::tensor_map::{encode_emulated, TileMap};
        let Some((_emulator, module)) = async_module() else { return };
        let k = module.kernel("tile_load").unwrap();
        let (rows, cols) = (5usize, 72usize);
        let matrix: Vec<u16> = (0..rows * cols).map(|i| i as u16 + 1).collect();
        let box_rows = 8u32;
        let tile = TileMap {
            address: matrix.as_ptr() as u64,
            dtype: joyrt_core::DType::BF16,
            rows,
            cols,
            box_rows,
            box_cols: 64,
        };
        let mut map = encode_emulated(&tile).unwrap();
        let (mut c0, mut c1, mut bytes) = (64i32, 1i32, tile.box_bytes());
        let run = |early: i32,
                   map: &mut crate::tensor_map::TensorMap,
                   c0: &mut i32,
                   c1: &mut i32,
                   bytes: &mut u32| {
            let mut out = vec![0u16; 512];
            let (mut ptr, mut early) = (out.as_mut_ptr() as u64, early);
            let mut args = [arg(&mut ptr), arg(map), arg(c0), arg(c1), arg(bytes), arg(&mut early)];
            launch(&k, 64, 8192, &mut args).map(|_| out)
        };
        let got = run(0, &mut map, &mut c0, &mut c1, &mut bytes).unwrap();
        for r in 0..box_rows as usize {
            for e in 0..64usize {
                let (y, x) = (1 + r, 64 + e);
                let want = if y < rows && x < cols { matrix[y * cols + x] } else { 0 };
                let at = r * 64 + ((e / 8) ^ (r % 8)) * 8 + e % 8;
                assert_eq!(got[at], want, "box ({r}, {e})");
            }
        }
        let early = run(1, &mut map, &mut c0, &mut c1, &mut bytes).unwrap();
        assert!(early.iter().all(|&v| v == 0xffff), "read before the wait: {:?}", &early[..8]);
    }

    /// A barrier's phases complete on their arrivals (the phase before phase 0 counting as
    /// complete); bytes never completed, an extra arrival and an uninitialised barrier are
    /// faults with their reason, not hangs.
    #[test]
    fn mbarrier_phases_complete_and_a_wait_that_cannot_complete_is_a_fault() {
        let Some((_emulator, module)) = async_module() else { return };
        let k = module.kernel("phases").unwrap();
        let run = |mode: i32| {
            let mut out = vec![0i32; 4];
            let (mut ptr, mut mode) = (out.as_mut_ptr() as u64, mode);
            launch(&k, 64, 64, &mut [arg(&mut ptr), arg(&mut mode)]).map(|_| out)
        };
        assert_eq!(run(0).unwrap(), [1, 2, 3, 0]);
        let fault = |mode: i32, what: &[&str]| match run(mode) {
            Err(EmuLaunchError::Fault(m)) => assert!(what.iter().all(|w| m.contains(w)), "mode {mode}: {m}"),
            other => panic!("mode {mode}: {other:?}"),
        };
        fault(1, &["deadlock", "thread 0 waits", "parity 1", "16 bytes pending", "thread 0)"]);
        fault(2, &["more arrivals"]);
        fault(3, &["did not initialise"]);
    }
}
