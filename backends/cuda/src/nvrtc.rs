//! The source NVRTC compiles for a family, and its compilation.
//!
//! A module is one family specialised for the dtypes of its inputs ([`Spec`]). Its source is the
//! family's `.cu` behind a prelude: the dtype `#define`s (`TX`, …, `MMA_OK`), joyrt-core's op
//! codes ([`kernel_abi::c_constants`]), the family's shared constants and the C declaration of
//! its parameter struct; `#include`d headers are inlined with `#line` markers, so compiler
//! messages name the real file and line. Kernels need no CUDA headers, so libnvrtc alone
//! compiles them; that is how CI checks every family for sm_80 and sm_90a on a machine with no
//! GPU.
//!
//! The output is a cubin for the device's exact architecture rather than PTX: a cubin made by a
//! newer 12.x NVRTC loads on an older 12.x driver (minor-version compatibility), while PTX of a
//! newer ISA would be refused by the driver's JIT.

use crate::cubin_cache::{CacheKey, CubinCache, Lookup};
use crate::kernel::{has_fp8_convert, has_wgmma, Family, Spec};
use crate::limits::KernelResources;
use cudarc::nvrtc::sys;
use joyrt_core::{kernel_abi, DType};
use std::ffi::{c_char, CString};

/// The headers kernel files include, by the name they include them by.
const HEADERS: [(&str, &str); 11] = [
    ("common.cuh", include_str!("../../../kernels/common.cuh")),
    ("gemm.cuh", include_str!("../../../kernels/gemm.cuh")),
    ("epilogue.cuh", include_str!("../../../kernels/epilogue.cuh")),
    ("hopper.cuh", include_str!("../../../kernels/hopper.cuh")),
    ("gemm_wgmma.cuh", include_str!("../../../kernels/gemm_wgmma.cuh")),
    ("tma.cuh", include_str!("../../../kernels/tma.cuh")),
    ("gemm_wgmma_ws.cuh", include_str!("../../../kernels/gemm_wgmma_ws.cuh")),
    ("gemm_quantized.cuh", include_str!("../../../kernels/gemm_quantized.cuh")),
    ("attention_wgmma.cuh", include_str!("../../../kernels/attention_wgmma.cuh")),
    ("attention_wgmma_ws.cuh", include_str!("../../../kernels/attention_wgmma_ws.cuh")),
    ("vec.cuh", include_str!("../../../kernels/vec.cuh")),
];

fn ctype(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::BF16 => "bf16_t",
        DType::F16 => "f16_t",
    }
}

/// The full source NVRTC (or the emulation) compiles for `family` specialised by `spec`, for the
/// NVRTC architecture `arch` (`WGMMA_OK` only where it has `wgmma`).
pub fn source(family: Family, spec: &Spec, arch: &str) -> String {
    let def = family.def();
    let mut s = format!(
        "#define TX {}\n#define TW {}\n#define TB {}\n#define TC {}\n",
        ctype(spec.x),
        ctype(spec.w),
        ctype(spec.b),
        ctype(spec.c)
    );
    if spec.mma() {
        s += "#define MMA_OK 1\n";
        if has_wgmma(arch) {
            s += "#define WGMMA_OK 1\n";
        }
        if has_fp8_convert(arch) {
            s += "#define FP8_CVT_OK 1\n";
        }
    }
    // The W8A8 kernels read their activations once, in their quantizer, so any dtype takes them.
    if has_fp8_convert(arch) {
        s += "#define FP8_MMA_OK 1\n";
    }
    s += &kernel_abi::c_constants();
    for (name, value) in def.defines {
        s += &format!("#define {name} {value}\n");
    }
    s += &(def.params)();
    inline_includes(&mut s, &family.file(), def.source, &mut Vec::new());
    s
}

/// Appends `text` (the file `name`) to `out` with each `#include "h"` of a known header replaced
/// by the header's text (once per header, as its `#pragma once` would), and `#line` markers
/// around it. An unknown include is left for the compiler to report.
fn inline_includes(out: &mut String, name: &str, text: &str, seen: &mut Vec<&'static str>) {
    *out += &format!("#line 1 \"{name}\"\n");
    for (i, line) in text.lines().enumerate() {
        let included = line.trim().strip_prefix("#include \"").and_then(|r| r.strip_suffix('"'));
        match included.and_then(|h| HEADERS.iter().find(|(n, _)| *n == h)) {
            Some(&(header, header_text)) => {
                if !seen.contains(&header) {
                    seen.push(header);
                    inline_includes(out, header, header_text, seen);
                }
                *out += &format!("#line {} \"{name}\"\n", i + 2);
            }
            None => {
                *out += line;
                *out += "\n";
            }
        }
    }
}

/// The NVRTC functions this crate calls. cudarc resolves each at its first call and panics where
/// the library lacks it, so a library without all of them counts as absent.
const SYMBOLS: [&str; 8] = [
    "nvrtcVersion",
    "nvrtcCreateProgram",
    "nvrtcCompileProgram",
    "nvrtcGetProgramLogSize",
    "nvrtcGetProgramLog",
    "nvrtcGetCUBINSize",
    "nvrtcGetCUBIN",
    "nvrtcDestroyProgram",
];

/// Whether a libnvrtc with every function this crate calls can be loaded (`LD_LIBRARY_PATH`, or
/// the CUDA toolkit's lib64). cudarc's loader looks for `libnvrtc.so` and `libnvrtc.so.12` and
/// older, not `libnvrtc.so.13`: a CUDA 13 NVRTC is found through its `libnvrtc.so` name.
pub fn nvrtc_present() -> bool {
    // SAFETY: dlopens the library (cudarc's `culib` only once `is_culib_present` found it) and
    // looks symbols up without calling them.
    unsafe {
        sys::is_culib_present()
            && SYMBOLS.iter().all(|name| sys::culib().get::<*const ()>(name.as_bytes()).is_ok())
    }
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

/// A compiled module: the cubin and the compiler's log (ptxas' report with `--ptxas-options=-v`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    pub cubin: Vec<u8>,
    pub log: String,
}

/// What every module is compiled with after the architecture and language standard: ptxas'
/// resource report, which the emulation reads each kernel's registers and static shared memory
/// from.
const MODULE_OPTIONS: [&str; 1] = ["--ptxas-options=-v"];

/// Compiles `family` for `spec` to a cubin for `arch` (e.g. `sm_90a`), or takes it from the cubin
/// cache on disk ([`CubinCache::default_location`]) where an earlier run compiled the same
/// source with the same NVRTC and options. The error carries the compiler log.
pub fn compile_cached(family: Family, spec: &Spec, arch: &str) -> Result<Compiled, String> {
    compile_with_cache(
        CubinCache::default_location().as_ref(),
        &family.file(),
        &source(family, spec, arch),
        arch,
    )
}

/// As [`compile_cached`], for one translation unit, with `cache` (none: always compile). An
/// unreadable or invalid entry is compiled again and replaced; a cache that cannot be written
/// only costs the next run a compilation.
pub fn compile_with_cache(
    cache: Option<&CubinCache>,
    file: &str,
    source: &str,
    arch: &str,
) -> Result<Compiled, String> {
    let version = nvrtc_version().ok_or_else(|| missing_nvrtc(file))?;
    let options = options(arch, &MODULE_OPTIONS);
    let key = CacheKey { file, source, options: &options, nvrtc_version: version };
    if let Some(Lookup::Hit(compiled)) = cache.map(|c| c.get(&key)) {
        return Ok(compiled);
    }
    let compiled = compile_source(file, source, arch, &MODULE_OPTIONS)?;
    if let Some(cache) = cache {
        let _ = cache.put(&key, &compiled);
    }
    Ok(compiled)
}

fn missing_nvrtc(file: &str) -> String {
    format!(
        "libnvrtc was not found, so the CUDA kernels cannot be compiled: install the CUDA toolkit \
         or `pip install nvidia-cuda-nvrtc-cu12` and put its lib folder on LD_LIBRARY_PATH (wanted for {file})"
    )
}

/// NVRTC's options for `arch`: the architecture, the language standard, then `extra`.
fn options(arch: &str, extra: &[&str]) -> Vec<String> {
    [format!("--gpu-architecture={arch}"), "--std=c++17".into()]
        .into_iter()
        .chain(extra.iter().map(|o| o.to_string()))
        .collect()
}

/// ptxas' report of one entry function (`--ptxas-options=-v`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryReport {
    pub name: String,
    pub resources: KernelResources,
    pub spill_bytes: u32,
}

/// Each entry function's report in a compile log made with `--ptxas-options=-v`.
pub fn entry_reports(log: &str) -> Vec<EntryReport> {
    // The number just before `what` on line `l` (0 where there is none).
    let number_before = |l: &str, what: &str| -> u32 {
        l.find(what)
            .and_then(|at| l[..at].split(|c: char| !c.is_ascii_digit()).rfind(|w| !w.is_empty()))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let mut out: Vec<EntryReport> = Vec::new();
    for l in log.lines() {
        if let Some(rest) = l.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default();
            out.push(EntryReport { name: name.into(), ..Default::default() });
        } else if let Some(e) = out.last_mut() {
            if l.contains("bytes spill stores") {
                e.spill_bytes =
                    number_before(l, " bytes spill stores") + number_before(l, " bytes spill loads");
            } else if l.contains("Used ") && l.contains(" registers") {
                e.resources.registers = number_before(l, " registers");
                e.resources.static_smem = number_before(l, " bytes smem");
            }
        }
    }
    out
}

/// `(kernel, resources)` for each entry function of a compile log.
pub fn entry_resources(log: &str) -> Vec<(String, KernelResources)> {
    entry_reports(log).into_iter().map(|e| (e.name, e.resources)).collect()
}

/// Compiles one translation unit named `file` to a cubin for `arch`, with `extra` options after
/// the architecture and language standard.
pub fn compile_source(file: &str, source: &str, arch: &str, extra: &[&str]) -> Result<Compiled, String> {
    if !nvrtc_present() {
        return Err(missing_nvrtc(file));
    }
    let src = CString::new(source).map_err(|e| e.to_string())?;
    let name = CString::new(file).map_err(|e| e.to_string())?;
    let opts: Vec<CString> = options(arch, extra)
        .into_iter()
        .map(|o| CString::new(o).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
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
        let log = program_log(prog);
        if r != sys::nvrtcResult::NVRTC_SUCCESS {
            Err(format!("{file} for {arch}: {r:?}\n{log}"))
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
                    Ok(Compiled { cubin, log })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::required_arch;

    /// Every line of a generated source is the prelude, a `#line` marker, or the line of the
    /// file and number the last marker names.
    #[test]
    fn source_inlines_headers_and_keeps_line_numbers() {
        let text_of = |file: &str| {
            HEADERS
                .iter()
                .find(|(n, _)| *n == file)
                .map(|(_, t)| *t)
                .or_else(|| Family::ALL.iter().find(|f| f.file() == file).map(|f| f.def().source))
        };
        for f in Family::ALL {
            let s = source(f, &Spec::uniform(DType::BF16), "sm_80");
            let (prelude, body) = s.split_once("#line ").expect("a #line marker");
            assert!(prelude.starts_with("#define TX bf16_t\n"));
            assert!(prelude.contains("#define MMA_OK 1\n") && prelude.contains("#define ACT_SILU 0u\n"));
            assert!(prelude.contains(&format!("struct {}Args {{", capitalised(f.def().name))), "{prelude}");
            for (name, value) in f.def().defines {
                assert!(prelude.contains(&format!("#define {name} {value}\n")));
            }
            assert!(!body.contains("#include \""), "{} keeps an include", f.file());
            let (mut file, mut line, mut files) = (String::new(), 0usize, Vec::new());
            for l in format!("#line {body}").lines() {
                if let Some(marker) = l.strip_prefix("#line ") {
                    let (n, name) = marker.split_once(' ').unwrap();
                    (file, line) = (name.trim_matches('"').to_string(), n.parse().unwrap());
                    files.push(file.clone());
                    continue;
                }
                let text = text_of(&file).unwrap_or_else(|| panic!("unknown file {file}"));
                assert_eq!(Some(l), text.lines().nth(line - 1), "{file}:{line}");
                line += 1;
            }
            assert!(files.contains(&"common.cuh".to_string()), "{}", f.file());
            assert_eq!(files.iter().filter(|n| **n == "common.cuh").count(), 1, "common.cuh inlined twice");
        }
        assert!(!source(Family::Gemm, &Spec::uniform(DType::F32), "sm_90a").contains("#define MMA_OK"));
        assert!(source(Family::Conv, &Spec::uniform(DType::F16), "sm_80").contains("#line 1 \"gemm.cuh\""));
    }

    fn capitalised(name: &str) -> String {
        name[..1].to_uppercase() + &name[1..]
    }

    #[test]
    fn arch_names() {
        assert_eq!(arch_for(9, 0), "sm_90a");
        assert_eq!(arch_for(8, 0), "sm_80");
        assert_eq!(arch_for(8, 9), "sm_89");
        assert_eq!(arch_for(10, 0), "sm_100");
    }

    /// The specs CI compiles every family for: each dtype alone, and 16-bit activations with f32
    /// secondary operands (norm gains, biases and tables kept in f32) and the reverse.
    fn check_specs() -> Vec<Spec> {
        let mut v: Vec<Spec> = [DType::F32, DType::BF16, DType::F16].into_iter().map(Spec::uniform).collect();
        for x in [DType::BF16, DType::F16] {
            v.push(Spec { x, w: DType::F32, b: DType::F32, c: DType::F32 });
            v.push(Spec { x: DType::F32, w: x, b: x, c: x });
        }
        v
    }

    /// Compiles every family for every checked spec for sm_80, sm_89 and sm_90a, and holds each
    /// module to the descriptors: its entry functions are exactly the family's kernels for that
    /// spec (none missing, none unlisted), and none spills registers (the register-staged GEMM's
    /// 4 bytes on sm_90a f16 went with its column-pair epilogue). Without libnvrtc
    /// the test says SKIPPED, unless `JOYRT_REQUIRE_NVRTC=1` (set by CI) makes that a failure.
    #[test]
    fn every_kernel_compiles_for_sm80_and_sm90a_as_described() {
        if !nvrtc_present() {
            let why = "libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12; LD_LIBRARY_PATH)";
            assert!(std::env::var("JOYRT_REQUIRE_NVRTC").is_err(), "JOYRT_REQUIRE_NVRTC is set but {why}");
            println!("SKIPPED: kernel compile check: {why}");
            eprintln!("SKIPPED: kernel compile check: {why}");
            return;
        }
        println!("NVRTC {:?}", nvrtc_version());
        let mut failures = Vec::new();
        for (arch, cc) in [("sm_80", (8, 0)), ("sm_89", (8, 9)), ("sm_90a", (9, 0))] {
            assert!(required_arch() <= cc);
            for f in Family::ALL {
                for spec in check_specs() {
                    let at = format!("{} {arch} {spec:?}", f.file());
                    let compiled = match compile_source(
                        &f.file(),
                        &source(f, &spec, arch),
                        arch,
                        &["--ptxas-options=-v"],
                    ) {
                        Ok(c) => c,
                        Err(e) => {
                            failures.push(format!("{at}: {e}"));
                            continue;
                        }
                    };
                    assert!(compiled.cubin.len() > 100, "{at}: empty cubin");
                    let reports = entry_reports(&compiled.log);
                    for r in &reports {
                        // The resource report docs/benchmarks.md quotes (`-- --nocapture`).
                        println!(
                            "{at}: {} {} registers, {} B static smem, {} B spilled",
                            r.name, r.resources.registers, r.resources.static_smem, r.spill_bytes
                        );
                    }
                    let mut entries: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
                    let mut described: Vec<&str> = f.kernels(&spec, arch).map(|k| k.name).collect();
                    entries.sort();
                    described.sort();
                    if entries != described {
                        failures.push(format!("{at}: compiled {entries:?}, described {described:?}"));
                    }
                    for r in reports.iter().filter(|r| r.spill_bytes > 0) {
                        failures.push(format!(
                            "{at}: {} spills {} bytes ({} registers)",
                            r.name, r.spill_bytes, r.resources.registers
                        ));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n\n"));
    }

    /// ptxas' report read back: the register-staged GEMM's static shared tiles (2 stages × (A, B)
    /// × 128 rows × 40 16-bit elements), none in the pipelined one (its ring is dynamic), and
    /// every kernel's registers.
    #[test]
    fn the_compile_report_gives_registers_and_static_shared_memory() {
        if !nvrtc_present() {
            println!("SKIPPED: needs libnvrtc");
            return;
        }
        let src = source(Family::Gemm, &Spec::uniform(DType::BF16), "sm_80");
        let compiled = compile_with_cache(None, "gemm.cu", &src, "sm_80").unwrap();
        let r: std::collections::HashMap<_, _> = entry_resources(&compiled.log).into_iter().collect();
        assert_eq!(r.len(), 9, "linear's 3 kernels and linear_quantized's 2 per format: {r:?}");
        assert_eq!(r["linear_mma"].static_smem, 2 * 2 * 128 * 40 * 2, "{r:?}");
        assert_eq!(r["linear_mma_pipelined"].static_smem, 0, "{r:?}");
        assert!(r.values().all(|k| (32..=255).contains(&k.registers)), "{r:?}");
    }

    /// The Hopper kernels as ptxas builds them for sm_90a: no spills, their wgmma instructions
    /// kept asynchronous (ptxas says "wgmma.mma_async instructions are serialized" where it
    /// cannot prove the accumulators untouched between issue and wait, which would forfeit the
    /// overlap), and no `setmaxnreg` ignored.
    #[test]
    fn the_hopper_kernels_keep_their_wgmma_asynchronous() {
        if !nvrtc_present() {
            println!("SKIPPED: needs libnvrtc");
            return;
        }
        let hopper = [
            (Family::Gemm, &["linear_wgmma", "linear_wgmma_persistent", "linear_wgmma_ws"][..]),
            (Family::Attention, &["attention_wgmma_d128", "attention_wgmma_ws_d128"][..]),
        ];
        for (family, kernels) in hopper {
            for dtype in [DType::BF16, DType::F16] {
                let src = source(family, &Spec::uniform(dtype), "sm_90a");
                let compiled =
                    compile_source(&family.file(), &src, "sm_90a", &["--ptxas-options=-v"]).unwrap();
                println!("{} {dtype:?}:\n{}", family.file(), compiled.log);
                assert!(!compiled.log.contains("serialized"), "{}", compiled.log);
                // C7508: ptxas ignored a setmaxnreg (the warp-specialised kernels' register split).
                assert!(!compiled.log.contains("C7508"), "{}", compiled.log);
                let reports = entry_reports(&compiled.log);
                for name in kernels {
                    let r = reports
                        .iter()
                        .find(|r| r.name == *name)
                        .unwrap_or_else(|| panic!("{name}: {reports:?}"));
                    assert_eq!(r.spill_bytes, 0, "{r:?}");
                }
            }
        }
    }

    /// A module compiled once is read from the cache the next time: an entry put in its place is
    /// what the next compilation returns.
    #[test]
    fn a_second_compile_comes_from_the_cache() {
        if !nvrtc_present() {
            println!("SKIPPED: needs libnvrtc");
            return;
        }
        let dir = std::env::temp_dir().join(format!("joyrt-nvrtc-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = CubinCache::new(&dir);
        let src = source(Family::Norm, &Spec::uniform(DType::F32), "sm_80");
        let first = compile_with_cache(Some(&cache), "norm.cu", &src, "sm_80").unwrap();
        let options = options("sm_80", &MODULE_OPTIONS);
        let key = CacheKey {
            file: "norm.cu",
            source: &src,
            options: &options,
            nvrtc_version: nvrtc_version().unwrap(),
        };
        assert_eq!(cache.get(&key), Lookup::Hit(first.clone()));
        let marked = Compiled { cubin: b"from the cache".to_vec(), log: first.log.clone() };
        cache.put(&key, &marked).unwrap();
        assert_eq!(compile_with_cache(Some(&cache), "norm.cu", &src, "sm_80").unwrap(), marked);
        // Another architecture is another entry.
        assert_ne!(compile_with_cache(Some(&cache), "norm.cu", &src, "sm_90a").unwrap(), marked);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_compile_error_comes_back_with_the_log() {
        if !nvrtc_present() {
            println!("SKIPPED: needs libnvrtc");
            return;
        }
        // Misuse a kernel file's specialisation: an undefined dtype macro value.
        let spec = Spec::uniform(DType::F32);
        let mut src = source(Family::Elementwise, &spec, "sm_80");
        src = src.replacen("#define TX float", "#define TX no_such_type", 1);
        let err = compile_source("broken.cu", &src, "sm_80", &[]).map(|_| ()).unwrap_err();
        assert!(err.contains("no_such_type"), "{err}");
        assert!(err.contains("elementwise.cu("), "the log names the real file: {err}");
    }
}
