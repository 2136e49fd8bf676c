//! The CUDA kernel sources (`kernels/*.cu`, one file per op family) and their compilation by
//! NVRTC.
//!
//! A module is one family specialised for the dtypes of its inputs ([`Spec`]): the host prepends
//! `#define TX …` lines and inlines `common.cuh` (with `#line` markers, so compiler messages name
//! the real file and line). Kernels need no CUDA headers, so libnvrtc alone compiles them; that
//! is how CI checks every family for sm_80 and sm_90a on a machine with no GPU.
//!
//! The output is a cubin for the device's exact architecture rather than PTX: a cubin made by a
//! newer 12.x NVRTC loads on an older 12.x driver (minor-version compatibility), while PTX of a
//! newer ISA would be refused by the driver's JIT.

use cudarc::nvrtc::sys;
use joyrt_core::DType;
use std::ffi::{c_char, CString};

const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// An op family: one `.cu` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Elementwise,
    Layout,
    Gemm,
    Norm,
    Misc,
    Attention,
}

impl Family {
    pub const ALL: [Family; 6] =
        [Family::Elementwise, Family::Layout, Family::Gemm, Family::Norm, Family::Misc, Family::Attention];

    pub fn file(self) -> &'static str {
        match self {
            Family::Elementwise => "elementwise.cu",
            Family::Layout => "layout.cu",
            Family::Gemm => "gemm.cu",
            Family::Norm => "norm.cu",
            Family::Misc => "misc.cu",
            Family::Attention => "attention.cu",
        }
    }

    /// The `extern "C"` kernels the file defines (`mma` adds the tensor-core GEMMs, compiled only
    /// when [`Spec::mma`] holds).
    pub fn kernels(self, mma: bool) -> &'static [&'static str] {
        match (self, mma) {
            (Family::Elementwise, _) => {
                &["cast", "activation", "swiglu", "binary", "scaled_add", "gated_residual"]
            }
            (Family::Layout, _) => &["permute", "copy_cols"],
            (Family::Gemm, false) => &["linear_simt", "conv2d_simt"],
            (Family::Gemm, true) => {
                &["linear_simt", "conv2d_simt", "linear_mma", "conv2d_mma", "linear_mma_pipelined"]
            }
            (Family::Norm, _) => &[
                "layer_norm",
                "layer_norm_modulate",
                "rms_norm",
                "channel_rms_norm",
                "rope",
                "rms_norm_rope",
            ],
            (Family::Misc, _) => &["gather_rows", "scatter_rows", "upsample_nearest2x", "cfg_renorm"],
            (Family::Attention, false) => &["attention_d128", "attention_d512"],
            (Family::Attention, true) => {
                &["attention_d128", "attention_d512", "attention_mma_d64", "attention_mma_d128"]
            }
        }
    }

    fn text(self) -> &'static str {
        match self {
            Family::Elementwise => include_str!("../../../kernels/elementwise.cu"),
            Family::Layout => include_str!("../../../kernels/layout.cu"),
            Family::Gemm => include_str!("../../../kernels/gemm.cu"),
            Family::Norm => include_str!("../../../kernels/norm.cu"),
            Family::Misc => include_str!("../../../kernels/misc.cu"),
            Family::Attention => include_str!("../../../kernels/attention.cu"),
        }
    }
}

/// The storage dtypes a module is compiled for: `x` is the primary input and the output, `w`,
/// `b`, `c` the kernels' secondary operands (see each `.cu` header for which is which).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Spec {
    pub x: DType,
    pub w: DType,
    pub b: DType,
    pub c: DType,
}

impl Spec {
    /// Every operand of dtype `x`.
    pub fn uniform(x: DType) -> Spec {
        Spec { x, w: x, b: x, c: x }
    }

    /// Whether the tensor-core GEMM applies: `x` and `w` share one 16-bit dtype.
    pub fn mma(&self) -> bool {
        self.x == self.w && self.x != DType::F32
    }
}

fn ctype(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::BF16 => "bf16_t",
        DType::F16 => "f16_t",
    }
}

/// The full source NVRTC compiles for `family` specialised by `spec`.
pub fn source(family: Family, spec: &Spec) -> String {
    let mut s = format!(
        "#define TX {}\n#define TW {}\n#define TB {}\n#define TC {}\n",
        ctype(spec.x),
        ctype(spec.w),
        ctype(spec.b),
        ctype(spec.c)
    );
    if spec.mma() {
        s += "#define MMA_OK 1\n";
    }
    s += "#line 1 \"common.cuh\"\n";
    s += COMMON;
    s += &format!("\n#line 1 \"{}\"\n", family.file());
    for line in family.text().lines() {
        // The include was inlined above; keep the line so #line numbering stays right.
        if line.trim() == "#include \"common.cuh\"" {
            s += "\n";
        } else {
            s += line;
            s += "\n";
        }
    }
    s
}

/// Whether libnvrtc can be loaded (`LD_LIBRARY_PATH`, or the CUDA toolkit's lib64).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's version `(major, minor)`, or `None` without libnvrtc.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    if !nvrtc_present() {
        return None;
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; two out-pointers to live integers.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    (r == sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
}

/// The NVRTC architecture name for a compute capability: `sm_90a` on Hopper (the `a` features
/// such as wgmma are only in the arch-specific target), `sm_XY` elsewhere.
pub fn arch_for(major: i32, minor: i32) -> String {
    if (major, minor) == (9, 0) {
        "sm_90a".into()
    } else {
        format!("sm_{major}{minor}")
    }
}

/// Compiles `family` for `spec` to a cubin for `arch` (e.g. `sm_90a`). The error carries the
/// compiler log.
pub fn compile(family: Family, spec: &Spec, arch: &str) -> Result<Vec<u8>, String> {
    compile_source(family.file(), &source(family, spec), arch)
}

/// Compiles one translation unit named `file` to a cubin for `arch`.
pub fn compile_source(file: &str, source: &str, arch: &str) -> Result<Vec<u8>, String> {
    if !nvrtc_present() {
        return Err(format!(
            "libnvrtc was not found, so the CUDA kernels cannot be compiled: install the CUDA toolkit \
             or `pip install nvidia-cuda-nvrtc-cu12` and put its lib folder on LD_LIBRARY_PATH (wanted for {file})"
        ));
    }
    let src = CString::new(source).map_err(|e| e.to_string())?;
    let name = CString::new(file).map_err(|e| e.to_string())?;
    let opts: Vec<CString> = [format!("--gpu-architecture={arch}"), "--std=c++17".into()]
        .into_iter()
        .map(|o| CString::new(o).expect("options have no NUL"))
        .collect();
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
    let fail = |what: &str, r: sys::nvrtcResult| format!("{file} for {arch}: {what} failed: {r:?}");

    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings that outlive the program; no headers.
    let r = unsafe {
        sys::nvrtcCreateProgram(&mut prog, src.as_ptr(), name.as_ptr(), 0, std::ptr::null(), std::ptr::null())
    };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(fail("nvrtcCreateProgram", r));
    }
    // SAFETY: `prog` was created above and is destroyed exactly once at the end.
    let out = unsafe {
        let r = sys::nvrtcCompileProgram(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr());
        if r != sys::nvrtcResult::NVRTC_SUCCESS {
            Err(format!("{file} for {arch}: {r:?}\n{}", program_log(prog)))
        } else {
            let mut size = 0usize;
            let r = sys::nvrtcGetCUBINSize(prog, &mut size);
            if r != sys::nvrtcResult::NVRTC_SUCCESS {
                Err(fail("nvrtcGetCUBINSize", r))
            } else {
                let mut cubin = vec![0u8; size];
                let r = sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut c_char);
                if r != sys::nvrtcResult::NVRTC_SUCCESS {
                    Err(fail("nvrtcGetCUBIN", r))
                } else {
                    Ok(cubin)
                }
            }
        }
    };
    // SAFETY: as above.
    unsafe { sys::nvrtcDestroyProgram(&mut prog) };
    out
}

/// The compiler log of `prog`.
///
/// # Safety
/// `prog` must be a live NVRTC program.
unsafe fn program_log(prog: sys::nvrtcProgram) -> String {
    let mut size = 0usize;
    if sys::nvrtcGetProgramLogSize(prog, &mut size) != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
        return String::new();
    }
    let mut log = vec![0u8; size];
    if sys::nvrtcGetProgramLog(prog, log.as_mut_ptr() as *mut c_char) != sys::nvrtcResult::NVRTC_SUCCESS {
        return String::new();
    }
    String::from_utf8_lossy(&log).trim_end_matches('\0').trim().to_string()
}

/// The specs CI compiles every family for: each dtype alone, and 16-bit activations with f32
/// secondary operands (norm gains, biases and tables kept in f32).
pub fn check_specs() -> Vec<Spec> {
    let mut v: Vec<Spec> = [DType::F32, DType::BF16, DType::F16].into_iter().map(Spec::uniform).collect();
    for x in [DType::BF16, DType::F16] {
        v.push(Spec { x, w: DType::F32, b: DType::F32, c: DType::F32 });
        v.push(Spec { x: DType::F32, w: x, b: x, c: x });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_inlines_common_and_keeps_line_numbers() {
        for f in Family::ALL {
            let s = source(f, &Spec::uniform(DType::BF16));
            assert!(s.starts_with("#define TX bf16_t\n"));
            assert!(s.contains("#define MMA_OK 1"));
            assert!(!s.contains("#include \"common.cuh\""), "{} still includes common.cuh", f.file());
            let body = s.split(&format!("#line 1 \"{}\"\n", f.file())).nth(1).unwrap();
            assert_eq!(body.lines().count(), f.text().lines().count(), "{}", f.file());
        }
        assert!(!source(Family::Gemm, &Spec::uniform(DType::F32)).contains("#define MMA_OK"));
        let mixed = Spec { x: DType::BF16, w: DType::F32, b: DType::F32, c: DType::F32 };
        assert!(!mixed.mma());
    }

    #[test]
    fn arch_names() {
        assert_eq!(arch_for(9, 0), "sm_90a");
        assert_eq!(arch_for(8, 0), "sm_80");
        assert_eq!(arch_for(8, 9), "sm_89");
        assert_eq!(arch_for(10, 0), "sm_100");
    }

    /// Compiles every family for every checked spec for sm_80 and sm_90a. Without libnvrtc the
    /// test says SKIPPED, unless `JOYRT_REQUIRE_NVRTC=1` (set by CI) makes that a failure.
    #[test]
    fn every_kernel_compiles_for_sm80_and_sm90a() {
        if !nvrtc_present() {
            let why = "libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12; LD_LIBRARY_PATH)";
            assert!(std::env::var("JOYRT_REQUIRE_NVRTC").is_err(), "JOYRT_REQUIRE_NVRTC is set but {why}");
            println!("SKIPPED: kernel compile check: {why}");
            eprintln!("SKIPPED: kernel compile check: {why}");
            return;
        }
        println!("NVRTC {:?}", nvrtc_version());
        let mut failures = Vec::new();
        for arch in ["sm_80", "sm_90a"] {
            for f in Family::ALL {
                for spec in check_specs() {
                    match compile(f, &spec, arch) {
                        Ok(cubin) => assert!(cubin.len() > 100, "{} {arch}: empty cubin", f.file()),
                        Err(e) => failures.push(format!("{spec:?}: {e}")),
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{} compile failure(s):\n{}", failures.len(), failures.join("\n\n"));
    }

    #[test]
    fn a_compile_error_comes_back_with_the_log() {
        if !nvrtc_present() {
            println!("SKIPPED: needs libnvrtc");
            return;
        }
        // Misuse a kernel file's specialisation: an undefined dtype macro value.
        let spec = Spec::uniform(DType::F32);
        let mut src = source(Family::Elementwise, &spec);
        src = src.replacen("#define TX float", "#define TX no_such_type", 1);
        let err = compile_source("broken.cu", &src, "sm_80").unwrap_err();
        assert!(err.contains("no_such_type"), "{err}");
        assert!(err.contains("elementwise.cu("), "the log names the real file: {err}");
    }
}
