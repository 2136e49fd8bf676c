//! What the host knows about its kernels: the op families (one `kernels/<family>.cu` and one
//! `ops/<family>.rs` each), the dtype specialisation a module is compiled for ([`Spec`]), and one
//! [`KernelDesc`] per kernel, declared in its family's table beside the op that launches it.
//!
//! The descriptors are the only list of kernels: the launch path takes one (block size, dynamic
//! shared memory), the emulation exports the kernels they name, and the NVRTC check holds every
//! compiled module to them (no kernel missing, none unlisted).

use crate::ops;
use joyrt_core::DType;
use std::marker::PhantomData;

/// An op family: `kernels/<name>.cu`, `ops/<name>.rs` (the families of `core/src/backend.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Elementwise,
    Layout,
    Gemm,
    Conv,
    Norm,
    Rope,
    Attention,
    Gather,
}

/// A family's kernel source and what is compiled in front of it.
pub struct FamilyDef {
    /// The family's name: `kernels/<name>.cu`, `ops/<name>.rs`.
    pub name: &'static str,
    /// The text of `kernels/<name>.cu`.
    pub source: &'static str,
    /// The C declaration of the family's parameter struct (its `KernelParams::c`).
    pub params: fn() -> String,
    /// Constants the host and the kernels both depend on (block shapes, tile sizes), emitted as
    /// `#define NAME value` so that the host's grids and shared-memory sizes are the kernels'.
    pub defines: &'static [(&'static str, u32)],
    pub kernels: &'static [&'static KernelDesc],
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::Elementwise,
        Family::Layout,
        Family::Gemm,
        Family::Conv,
        Family::Norm,
        Family::Rope,
        Family::Attention,
        Family::Gather,
    ];

    pub fn def(self) -> &'static FamilyDef {
        match self {
            Family::Elementwise => &ops::elementwise::FAMILY,
            Family::Layout => &ops::layout::FAMILY,
            Family::Gemm => &ops::gemm::FAMILY,
            Family::Conv => &ops::conv::FAMILY,
            Family::Norm => &ops::norm::FAMILY,
            Family::Rope => &ops::rope::FAMILY,
            Family::Attention => &ops::attention::FAMILY,
            Family::Gather => &ops::gather::FAMILY,
        }
    }

    /// `<name>.cu`.
    pub fn file(self) -> String {
        format!("{}.cu", self.def().name)
    }

    /// The kernels a module of this family specialised by `spec` and compiled for the NVRTC
    /// architecture `arch` defines.
    pub fn kernels<'a>(
        self,
        spec: &'a Spec,
        arch: &'a str,
    ) -> impl Iterator<Item = &'static KernelDesc> + 'a {
        self.def().kernels.iter().copied().filter(move |k| {
            (!k.needs_mma || spec.mma())
                && (!k.needs_wgmma || has_wgmma(arch))
                && (!k.needs_fp8_mma || has_fp8_convert(arch))
        })
    }
}

/// A compute capability `(major, minor)`.
pub type Arch = (u32, u32);

/// Ampere: cp.async, ldmatrix and bf16 `mma.sync` (every kernel here needs no more).
pub const SM80: Arch = (8, 0);

/// Whether modules compiled for the NVRTC architecture `arch` have Hopper's warpgroup MMA
/// (`wgmma`, sm_90a only: the arch-specific target), so that `WGMMA_OK` is defined for them.
pub fn has_wgmma(arch: &str) -> bool {
    arch == "sm_90a"
}

/// Whether `arch` converts FP8 in hardware (`cvt.rn.f16x2.e4m3x2`: sm_89 and later), and so has
/// FP8 `mma.sync` (`FP8_MMA_OK`).
pub fn has_fp8_convert(arch: &str) -> bool {
    let number = arch.strip_prefix("sm_").map(|n| n.trim_end_matches(|c: char| c.is_ascii_alphabetic()));
    number.and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n >= 89)
}

/// One kernel: everything the host needs to compile, find and launch it.
#[derive(Debug)]
pub struct KernelDesc {
    /// The `extern "C"` name in the family's `.cu`.
    pub name: &'static str,
    pub family: Family,
    /// Threads per block: what the kernel's tiling is written for, or for grid-stride and row
    /// kernels (which read `blockDim`) the most a launch uses.
    pub threads: u32,
    /// Bytes of dynamic shared memory a launch gives the kernel, for a module specialised by the
    /// `Spec` (0 for a kernel with only static shared memory).
    pub dynamic_smem: fn(&Spec) -> u32,
    /// The oldest compute capability the kernel runs on.
    pub min_arch: Arch,
    /// Defined only in modules whose operands take tensor-core MMA ([`Spec::mma`]; the kernel
    /// sits inside `#if defined(MMA_OK)`).
    pub needs_mma: bool,
    /// Defined only in MMA modules compiled for an architecture with `wgmma` ([`has_wgmma`]; the
    /// kernel sits inside `#if defined(WGMMA_OK)`). Such a kernel is an addition: every op keeps a
    /// kernel for sm_80, so it does not raise [`required_arch`].
    pub needs_wgmma: bool,
    /// Defined only in modules for an architecture with FP8 `mma.sync` (sm_89 and later: the
    /// kernel sits inside `#if defined(FP8_MMA_OK)`), whatever the activation dtype. An addition
    /// as `needs_wgmma` is: it does not raise [`required_arch`].
    pub needs_fp8_mma: bool,
    /// Tensor maps (`const __grid_constant__ CUtensorMap`) the kernel takes between its buffers
    /// and its parameter struct; a launch passes exactly this many.
    pub tensor_maps: usize,
}

fn no_dynamic_smem(_: &Spec) -> u32 {
    0
}

impl KernelDesc {
    /// A kernel with no dynamic shared memory and no tensor cores, for sm_80.
    pub const fn new(name: &'static str, family: Family, threads: u32) -> KernelDesc {
        KernelDesc {
            name,
            family,
            threads,
            dynamic_smem: no_dynamic_smem,
            min_arch: SM80,
            needs_mma: false,
            needs_wgmma: false,
            needs_fp8_mma: false,
            tensor_maps: 0,
        }
    }

    /// The same kernel on tensor cores: only in MMA modules.
    pub const fn mma(self) -> KernelDesc {
        KernelDesc { needs_mma: true, ..self }
    }

    /// The same kernel on Hopper's warpgroup MMA: only in MMA modules for sm_90a.
    pub const fn wgmma(self) -> KernelDesc {
        KernelDesc { needs_mma: true, needs_wgmma: true, ..self }
    }

    /// The same kernel on FP8 `mma.sync`: only in modules for sm_89 and later.
    pub const fn fp8_mma(self) -> KernelDesc {
        KernelDesc { needs_fp8_mma: true, ..self }
    }

    /// The same kernel taking `n` tensor maps after its buffers.
    pub const fn tensor_maps(self, n: usize) -> KernelDesc {
        KernelDesc { tensor_maps: n, ..self }
    }

    /// The same kernel carving `bytes(spec)` of dynamic shared memory.
    pub const fn dynamic_smem(self, bytes: fn(&Spec) -> u32) -> KernelDesc {
        KernelDesc { dynamic_smem: bytes, ..self }
    }
}

/// A kernel whose parameter struct is `P`, its family's: launching it with another family's
/// struct does not compile.
pub struct Kernel<P> {
    pub desc: KernelDesc,
    params: PhantomData<fn(P)>,
}

impl<P> Kernel<P> {
    pub const fn new(desc: KernelDesc) -> Kernel<P> {
        Kernel { desc, params: PhantomData }
    }
}

/// The oldest compute capability every kernel runs on.
pub fn required_arch() -> Arch {
    Family::ALL.iter().flat_map(|f| f.def().kernels).map(|k| k.min_arch).max().unwrap_or(SM80)
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

    /// Whether the tensor-core kernels apply: `x` and `w` share one 16-bit dtype.
    pub fn mma(&self) -> bool {
        self.x == self.w && self.x != DType::F32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp8_is_converted_in_hardware_from_sm_89() {
        for (arch, hw) in
            [("sm_80", false), ("sm_86", false), ("sm_89", true), ("sm_90a", true), ("sm_120", true)]
        {
            assert_eq!(has_fp8_convert(arch), hw, "{arch}");
        }
        assert!(!has_fp8_convert("compute_x"));
    }

    /// The C parameter list of kernel `name` in `source`.
    fn c_params<'a>(source: &'a str, name: &str) -> Option<Vec<&'a str>> {
        let at = source.find(&format!(" {name}("))?;
        let head = &source[..at];
        if !head[head.rfind("extern \"C\"")?..].contains("__global__") {
            return None;
        }
        let list = &source[at + name.len() + 2..];
        Some(list[..list.find(')')?].split(',').map(str::trim).collect())
    }

    /// Each descriptor names a kernel of its family's source (headers included: a kernel may be
    /// defined in one) that takes buffers, then as many tensor maps as it declares, then the
    /// family's parameter struct by value (what `CudaBackend::launch` passes); names are unique.
    #[test]
    fn descriptors_match_the_kernel_sources() {
        let mut names = Vec::new();
        for f in Family::ALL {
            let def = f.def();
            let params = format!("{}{}Args", def.name[..1].to_uppercase(), &def.name[1..]);
            assert!((def.params)().starts_with(&format!("struct {params} {{")));
            let source = crate::nvrtc::source(f, &Spec::uniform(DType::BF16), "sm_90a");
            for k in def.kernels {
                assert_eq!(k.family, f, "{} is listed under {}", k.name, def.name);
                let c = c_params(&source, k.name)
                    .unwrap_or_else(|| panic!("no kernel {} in {}", k.name, f.file()));
                let (last, rest) = c.split_last().unwrap();
                assert!(last.starts_with(&format!("{params} ")), "{}: last parameter {last}", k.name);
                let (buffers, maps) = rest.split_at(rest.len() - k.tensor_maps);
                assert!(
                    maps.iter().all(|m| m.starts_with("const __grid_constant__ CUtensorMap ")),
                    "{}: {maps:?} are not its {} tensor maps",
                    k.name,
                    k.tensor_maps
                );
                assert!(
                    buffers.iter().all(|b| b.contains('*')),
                    "{}: {buffers:?} are not all buffers",
                    k.name
                );
                assert!(k.threads > 0 && k.threads <= 1024 && k.threads % 32 == 0, "{}", k.name);
                names.push(k.name);
            }
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a kernel name is used twice: {names:?}");
        assert_eq!(required_arch(), SM80);
    }

    #[test]
    fn mma_kernels_only_in_mma_modules() {
        let bf16 = Spec::uniform(DType::BF16);
        let mixed = Spec { x: DType::BF16, w: DType::F32, b: DType::F32, c: DType::F32 };
        assert!(bf16.mma() && !mixed.mma() && !Spec::uniform(DType::F32).mma());
        let gemm: Vec<_> = Family::Gemm.kernels(&bf16, "sm_80").map(|k| k.name).collect();
        assert!(gemm.contains(&"linear_mma_pipelined") && gemm.contains(&"linear_simt"), "{gemm:?}");
        assert!(!gemm.iter().any(|k| k.starts_with("linear_wgmma")), "{gemm:?}");
        let hopper: Vec<_> = Family::Gemm.kernels(&bf16, "sm_90a").map(|k| k.name).collect();
        assert!(hopper.contains(&"linear_wgmma") && hopper.contains(&"linear_mma_pipelined"), "{hopper:?}");
        let simt = ["linear_simt", "linear_int8_simt", "linear_int4_simt", "linear_fp8_simt"];
        let mixed_at = |arch: &str| Family::Gemm.kernels(&mixed, arch).map(|k| k.name).collect::<Vec<_>>();
        assert_eq!(mixed_at("sm_80"), simt);
        // The W8A8 kernels quantize their activations themselves: in every module from sm_89.
        assert_eq!(
            mixed_at("sm_90a"),
            [&simt[..], &["fp8_quantize_rows", "linear_fp8_w8a8_mma"][..]].concat()
        );
        assert!(!gemm.iter().any(|k| k.contains("w8a8")), "{gemm:?}");
    }
}
