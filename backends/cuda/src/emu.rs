//! The CPU emulation of the CUDA kernels (see `emu/cuda_emu.hpp`): each family is compiled by the
//! host C++ compiler together with the emulation header into a shared library, loaded, and its
//! kernels (those the family's descriptors list) are called with the same argument lists as
//! `cuLaunchKernel` would get. Used by [`crate::CudaBackend::emulated`] so the conformance suite
//! runs the real kernel sources in CI.

use crate::kernel::{Family, KernelDesc, Spec};
use crate::nvrtc;
use std::ffi::c_void;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

const HEADER: &str = include_str!("../emu/cuda_emu.hpp");

/// `emu_<kernel>(grid x, y, z, block x, dynamic shared memory bytes, args)`.
pub type EmuFn = unsafe extern "C" fn(u32, u32, u32, u32, u32, *mut *mut c_void);

/// An emulated kernel and the library that holds it.
#[derive(Clone)]
pub struct EmuKernel {
    pub f: EmuFn,
    _lib: Arc<libloading::Library>,
}

/// One family specialised for one spec, built and loaded (the emulation's module).
#[derive(Clone)]
pub struct EmuModule {
    family: Family,
    lib: Arc<libloading::Library>,
}

impl EmuModule {
    /// The kernel `desc` of this module.
    pub fn kernel(&self, desc: &KernelDesc) -> Result<EmuKernel, String> {
        let symbol = format!("emu_{}", desc.name);
        // SAFETY: every exported `emu_*` symbol has the EmuFn signature (EMU_EXPORT).
        let f: EmuFn = unsafe {
            *self
                .lib
                .get::<EmuFn>(symbol.as_bytes())
                .map_err(|e| format!("{}: {symbol}: {e}", self.family.file()))?
        };
        Ok(EmuKernel { f, _lib: self.lib.clone() })
    }
}

/// Builds modules with the host's C++ compiler, in a scratch folder of its own.
pub struct Emulator {
    compiler: String,
    dir: PathBuf,
}

static LAUNCH_LOCK: Mutex<()> = Mutex::new(());

/// Serialises emulated launches in the process: each library keeps its scheduler (and
/// `__shared__` memory) in globals, so two launches of one kernel must not overlap.
pub fn global_launch_lock() -> std::sync::MutexGuard<'static, ()> {
    LAUNCH_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

impl Emulator {
    /// Finds a C++ compiler (`$CXX`, else `g++`, else `c++`).
    pub fn new() -> Result<Emulator, String> {
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
        Ok(Emulator { compiler, dir })
    }

    /// Compiles `family` specialised by `spec`, with the kernels its descriptors list exported,
    /// and loads it.
    pub fn build(&self, family: Family, spec: Spec) -> Result<EmuModule, String> {
        let stem = format!("{}-{:?}-{:?}-{:?}-{:?}", family.def().name, spec.x, spec.w, spec.b, spec.c);
        let src_path = self.dir.join(format!("{stem}.cpp"));
        let lib_path = self.dir.join(format!("{stem}.so"));
        let mut src = String::from("#define JOYRT_CUDA_EMU 1\n");
        src += HEADER;
        src += "\n";
        src += &nvrtc::source(family, &spec);
        for k in family.kernels(&spec) {
            src += &format!("EMU_EXPORT({})\n", k.name);
        }
        std::fs::write(&src_path, src).map_err(|e| format!("{}: {e}", src_path.display()))?;
        let out = Command::new(&self.compiler)
            .args(["-std=c++17", "-O2", "-shared", "-fPIC", "-w", "-o"])
            .arg(&lib_path)
            .arg(&src_path)
            .output()
            .map_err(|e| format!("running {}: {e}", self.compiler))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed on {} (emulated {}):\n{}",
                self.compiler,
                src_path.display(),
                family.file(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // SAFETY: a library we just built; its initialisers only set up statics.
        let lib = unsafe { libloading::Library::new(&lib_path) }
            .map_err(|e| format!("{}: {e}", lib_path.display()))?;
        Ok(EmuModule { family, lib: Arc::new(lib) })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
