//! What a device allows one launch: threads per block, grid size, shared memory and registers per
//! block, and the shape of a launch measured against them.
//!
//! On a GPU the limits come from the driver's device attributes and the driver enforces them; the
//! emulation takes them from the architecture it emulates ([`DeviceLimits::SM80`] by default) and
//! enforces them itself with [`DeviceLimits::check_launch`], the checks `cuLaunchKernel` makes, so
//! a kernel that would be refused on hardware (e.g. one given more than 48 KiB of dynamic shared
//! memory without the opt-in) is refused there too.

use std::borrow::Cow;
use std::fmt;

/// Dynamic shared memory a kernel may take (with its static shared memory) before it is opted in
/// with `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`: 48 KiB on every architecture.
pub const DEFAULT_DYNAMIC_SMEM: u32 = 48 * 1024;

/// Registers are given to a warp in units of this many (sm_80 and sm_90).
const REGISTER_ALLOCATION_UNIT: u32 = 256;

/// The per-block limits of one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// What the limits are of (`sm_80`, or the GPU's name).
    pub label: Cow<'static, str>,
    pub max_threads_per_block: u32,
    /// Blocks in x, y and z.
    pub max_grid: [u32; 3],
    /// Static + dynamic shared memory per block once a kernel is opted in
    /// (`CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN`).
    pub smem_per_block_optin: u32,
    pub registers_per_block: u32,
}

impl DeviceLimits {
    /// Ampere (A100): 163 KiB of shared memory per block.
    pub const SM80: DeviceLimits = DeviceLimits {
        label: Cow::Borrowed("sm_80"),
        max_threads_per_block: 1024,
        max_grid: [i32::MAX as u32, 65535, 65535],
        smem_per_block_optin: 163 * 1024,
        registers_per_block: 65536,
    };

    /// Hopper (H100, H200): 227 KiB of shared memory per block.
    pub const SM90: DeviceLimits = DeviceLimits {
        label: Cow::Borrowed("sm_90"),
        smem_per_block_optin: 227 * 1024,
        ..DeviceLimits::SM80
    };

    /// Consumer Ampere and Ada (RTX 30xx, 40xx: sm_86, sm_89): 99 KiB of shared memory per block,
    /// the tightest of the sm_80+ cards, so a kernel meant for all of them fits this.
    pub const SM86: DeviceLimits =
        DeviceLimits { label: Cow::Borrowed("sm_86"), smem_per_block_optin: 99 * 1024, ..DeviceLimits::SM80 };

    /// Ada (RTX 40xx, L4, L40S: sm_89): sm_86's 99 KiB per block, and FP8 tensor cores.
    pub const SM89: DeviceLimits = DeviceLimits { label: Cow::Borrowed("sm_89"), ..DeviceLimits::SM86 };

    /// The architecture the emulation enforces: `$JOYRT_CUDA_EMU_ARCH` (`sm_80`, the default: the
    /// oldest the kernels support; `sm_89`, the tightest shared memory and FP8 `mma.sync`; or
    /// `sm_90`).
    pub fn emulated() -> Result<DeviceLimits, String> {
        DeviceLimits::for_emulated_arch(std::env::var("JOYRT_CUDA_EMU_ARCH").ok().as_deref())
    }

    fn for_emulated_arch(arch: Option<&str>) -> Result<DeviceLimits, String> {
        match arch {
            None | Some("") | Some("sm_80") => Ok(DeviceLimits::SM80),
            Some("sm_89") => Ok(DeviceLimits::SM89),
            Some("sm_90") | Some("sm_90a") => Ok(DeviceLimits::SM90),
            Some(other) => {
                Err(format!("JOYRT_CUDA_EMU_ARCH={other}: the emulation knows sm_80, sm_89 and sm_90"))
            }
        }
    }

    /// The NVRTC architecture whose compile report gives an emulated kernel's registers and
    /// static shared memory.
    pub fn nvrtc_arch(&self) -> &'static str {
        match &*self.label {
            "sm_90" => "sm_90a",
            "sm_89" => "sm_89",
            _ => "sm_80",
        }
    }

    /// Why a kernel with `static_smem` bytes of static shared memory cannot be opted in to
    /// `dynamic_smem` bytes of dynamic shared memory on this device, if it cannot (the check
    /// `cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)` makes).
    pub fn opt_in_refusal(&self, dynamic_smem: u32, static_smem: u32) -> Option<String> {
        (dynamic_smem.saturating_add(static_smem) > self.smem_per_block_optin).then(|| {
            format!(
                "it needs {dynamic_smem} B of dynamic shared memory (+ {static_smem} B static) per block, \
                 but {} allows at most {} B per block",
                self.label, self.smem_per_block_optin
            )
        })
    }

    /// Why `cuLaunchKernel` would refuse a launch of `shape` of a function (as `function` stands)
    /// on this device, if it would: the message names the limit.
    pub fn check_launch(&self, function: &FunctionLimits, shape: &LaunchShape) -> Result<(), String> {
        let refuse = |why: String| Err(format!("{why}, beyond {}'s limits", self.label));
        if shape.block == 0 || shape.block > self.max_threads_per_block {
            return refuse(format!(
                "{} threads per block (at most {})",
                shape.block, self.max_threads_per_block
            ));
        }
        for (axis, (&n, &max)) in ["x", "y", "z"].iter().zip(shape.grid.iter().zip(&self.max_grid)) {
            if n == 0 || n > max {
                return refuse(format!("{n} blocks in {axis} (1 to {max})"));
            }
        }
        let static_smem = function.resources.map_or(0, |r| r.static_smem);
        if shape.dynamic_smem > function.max_dynamic_smem {
            let opted_in = if function.max_dynamic_smem > DEFAULT_DYNAMIC_SMEM {
                "as opted in"
            } else {
                "the default: the kernel was not opted in with CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES"
            };
            return refuse(format!(
                "{} B of dynamic shared memory exceeds the function's limit of {} B ({opted_in})",
                shape.dynamic_smem, function.max_dynamic_smem
            ));
        }
        let smem = shape.dynamic_smem.saturating_add(static_smem);
        if smem > self.smem_per_block_optin {
            return refuse(format!(
                "{smem} B of shared memory ({static_smem} B static) exceeds {} B per block",
                self.smem_per_block_optin
            ));
        }
        if let Some(r) = function.resources {
            let per_warp = (r.registers * 32).div_ceil(REGISTER_ALLOCATION_UNIT) * REGISTER_ALLOCATION_UNIT;
            let registers = per_warp * shape.block.div_ceil(32);
            if registers > self.registers_per_block {
                return refuse(format!(
                    "{} registers per thread × {} threads take {registers} registers (allocated per warp in \
                     units of {REGISTER_ALLOCATION_UNIT}), more than {} per block",
                    r.registers, shape.block, self.registers_per_block
                ));
            }
        }
        Ok(())
    }
}

/// What the compiler reports a kernel uses (ptxas' `-v` report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelResources {
    pub registers: u32,
    pub static_smem: u32,
}

/// What the launch checks know of one loaded function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionLimits {
    /// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`: the default until the host opts in.
    pub max_dynamic_smem: u32,
    /// From the compile report; `None` where there is none (the static shared memory and
    /// register checks are then skipped).
    pub resources: Option<KernelResources>,
}

impl FunctionLimits {
    /// A function as loaded, before any opt-in: 48 KiB of shared memory in all, static included.
    pub fn loaded(resources: Option<KernelResources>) -> FunctionLimits {
        let static_smem = resources.map_or(0, |r| r.static_smem);
        FunctionLimits { max_dynamic_smem: DEFAULT_DYNAMIC_SMEM.saturating_sub(static_smem), resources }
    }
}

/// The shape of one launch (every joyrt kernel uses x threads only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchShape {
    pub grid: [u32; 3],
    pub block: u32,
    pub dynamic_smem: u32,
}

impl fmt::Display for LaunchShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [x, y, z] = self.grid;
        write!(f, "grid {x}×{y}×{z}, block {}, {} B dynamic shared memory", self.block, self.dynamic_smem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: LaunchShape = LaunchShape { grid: [4, 2, 1], block: 256, dynamic_smem: 0 };

    fn refusal(limits: &DeviceLimits, function: FunctionLimits, shape: LaunchShape) -> String {
        limits.check_launch(&function, &shape).unwrap_err()
    }

    #[test]
    fn a_launch_within_the_limits_passes() {
        let f = FunctionLimits::loaded(Some(KernelResources { registers: 255, static_smem: 1024 }));
        assert_eq!(DeviceLimits::SM80.check_launch(&f, &SHAPE), Ok(()));
        let big = LaunchShape { grid: [i32::MAX as u32, 65535, 65535], block: 1024, dynamic_smem: 47 * 1024 };
        assert_eq!(DeviceLimits::SM80.check_launch(&FunctionLimits::loaded(None), &big), Ok(()));
    }

    #[test]
    fn threads_and_grid_beyond_the_limits_are_refused() {
        let f = FunctionLimits::loaded(None);
        let m = refusal(&DeviceLimits::SM80, f, LaunchShape { block: 1056, ..SHAPE });
        assert!(m.contains("1056 threads per block (at most 1024)"), "{m}");
        let m = refusal(&DeviceLimits::SM80, f, LaunchShape { grid: [1, 65536, 1], ..SHAPE });
        assert!(m.contains("65536 blocks in y (1 to 65535)"), "{m}");
        let m = refusal(&DeviceLimits::SM80, f, LaunchShape { grid: [1 << 31, 1, 1], ..SHAPE });
        assert!(m.contains("blocks in x"), "{m}");
        let m = refusal(&DeviceLimits::SM80, f, LaunchShape { grid: [1, 1, 65536], ..SHAPE });
        assert!(m.contains("blocks in z"), "{m}");
    }

    #[test]
    fn dynamic_shared_memory_past_48_kib_needs_the_opt_in() {
        let shape = LaunchShape { dynamic_smem: 61440, ..SHAPE };
        let m = refusal(&DeviceLimits::SM80, FunctionLimits::loaded(None), shape);
        assert!(
            m.contains("61440 B of dynamic shared memory exceeds the function's limit of 49152 B"),
            "{m}"
        );
        assert!(m.contains("not opted in"), "{m}");
        let opted = FunctionLimits { max_dynamic_smem: 61440, resources: None };
        assert_eq!(DeviceLimits::SM80.check_launch(&opted, &shape), Ok(()));
        // Static shared memory counts against the 48 KiB too.
        let with_static =
            FunctionLimits::loaded(Some(KernelResources { registers: 32, static_smem: 40 * 1024 }));
        let m = refusal(&DeviceLimits::SM80, with_static, LaunchShape { dynamic_smem: 9 * 1024, ..SHAPE });
        assert!(m.contains("limit of 8192 B"), "{m}");
    }

    #[test]
    fn the_opt_in_is_bounded_by_the_architecture() {
        assert_eq!(DeviceLimits::SM80.opt_in_refusal(163 * 1024, 0), None);
        let m = DeviceLimits::SM80.opt_in_refusal(163 * 1024, 16).unwrap();
        assert!(m.contains("16 B static") && m.contains("sm_80 allows at most 166912 B"), "{m}");
        assert_eq!(DeviceLimits::SM90.opt_in_refusal(227 * 1024, 0), None);
        // An opt-in past the limit that slipped through is still refused at launch.
        let over = FunctionLimits { max_dynamic_smem: 200 * 1024, resources: None };
        let m = refusal(&DeviceLimits::SM80, over, LaunchShape { dynamic_smem: 200 * 1024, ..SHAPE });
        assert!(m.contains("exceeds 166912 B per block"), "{m}");
    }

    #[test]
    fn registers_per_block_are_counted_per_warp() {
        let regs = |registers| FunctionLimits::loaded(Some(KernelResources { registers, static_smem: 0 }));
        // 64 registers × 1024 threads is exactly 65536; 65 rounds each warp up to 2304.
        assert_eq!(DeviceLimits::SM80.check_launch(&regs(64), &LaunchShape { block: 1024, ..SHAPE }), Ok(()));
        let m = refusal(&DeviceLimits::SM80, regs(65), LaunchShape { block: 1024, ..SHAPE });
        assert!(m.contains("65 registers per thread × 1024 threads take 73728 registers"), "{m}");
        assert_eq!(DeviceLimits::SM80.check_launch(&regs(255), &LaunchShape { block: 256, ..SHAPE }), Ok(()));
    }

    #[test]
    fn the_emulated_architecture_is_sm80_unless_set() {
        assert_eq!(DeviceLimits::for_emulated_arch(None), Ok(DeviceLimits::SM80));
        assert_eq!(DeviceLimits::for_emulated_arch(Some("sm_90")), Ok(DeviceLimits::SM90));
        assert_eq!(DeviceLimits::SM90.nvrtc_arch(), "sm_90a");
        assert_eq!(DeviceLimits::for_emulated_arch(Some("sm_89")), Ok(DeviceLimits::SM89));
        assert_eq!(DeviceLimits::SM89.nvrtc_arch(), "sm_89");
        assert_eq!(DeviceLimits::SM89.smem_per_block_optin, 99 * 1024);
        let m = DeviceLimits::for_emulated_arch(Some("sm_70")).unwrap_err();
        assert!(m.contains("JOYRT_CUDA_EMU_ARCH=sm_70"), "{m}");
    }

    #[test]
    fn launch_shapes_read_as_cuda_writes_them() {
        let s = LaunchShape { grid: [8, 4, 1], block: 256, dynamic_smem: 61440 };
        assert_eq!(s.to_string(), "grid 8×4×1, block 256, 61440 B dynamic shared memory");
    }
}
