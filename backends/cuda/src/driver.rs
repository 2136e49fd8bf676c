//! What the backend asks of the NVIDIA driver before it trusts it, and how it explains what the
//! driver reports: the driver API symbols it calls, the driver's CUDA version against NVRTC's,
//! the device's launch limits, and the errors that mean a kernel fault poisoned the context.

use crate::limits::DeviceLimits;
use cudarc::driver::sys::{self as cu, CUdevice_attribute as A, CUresult};
use cudarc::driver::CudaContext;
use std::borrow::Cow;
use std::sync::Arc;

/// The driver API functions this backend (and the parts of cudarc it uses) call. cudarc resolves
/// each at its first call and panics where the library lacks it; checking them all when the
/// device is opened turns a driver too old for them into `BackendUnavailable` instead.
const SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuDeviceGet",
    "cuDeviceGetCount",
    "cuDeviceGetAttribute",
    "cuDeviceGetName",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuCtxSynchronize",
    "cuStreamSynchronize",
    "cuMemGetInfo_v2",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemAllocAsync",
    "cuMemFreeAsync",
    "cuDeviceGetDefaultMemPool",
    "cuMemPoolSetAttribute",
    "cuMemsetD8Async",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemcpyDtoDAsync_v2",
    "cuModuleLoadData",
    "cuModuleUnload",
    "cuModuleGetFunction",
    "cuFuncGetAttribute",
    "cuFuncSetAttribute",
    "cuLaunchKernel",
    "cuGetErrorName",
    "cuGetErrorString",
];

/// The driver API functions of the opt-in kernel profile (`profile.rs`), checked when a profile
/// starts rather than when the device opens, so a driver without them only refuses profiling.
const PROFILE_SYMBOLS: &[&str] = &[
    "cuEventCreate",
    "cuEventRecord",
    "cuEventQuery",
    "cuEventSynchronize",
    "cuEventElapsedTime",
    "cuEventDestroy_v2",
];

/// The first of [`PROFILE_SYMBOLS`] the driver library lacks, if one is missing.
///
/// # Safety
/// As for [`missing_symbol`].
pub(crate) unsafe fn missing_profile_symbol() -> Option<&'static str> {
    let lib = cu::culib();
    PROFILE_SYMBOLS.iter().copied().find(|name| lib.get::<*const ()>(name.as_bytes()).is_err())
}

/// The first of [`SYMBOLS`] the driver library lacks, if one is missing.
///
/// # Safety
/// The driver library must be present (`cu::is_culib_present`); otherwise cudarc panics.
pub(crate) unsafe fn missing_symbol() -> Option<&'static str> {
    let lib = cu::culib();
    SYMBOLS.iter().copied().find(|name| lib.get::<*const ()>(name.as_bytes()).is_err())
}

/// The CUDA version the driver supports, as `(major, minor)`.
pub(crate) fn driver_version() -> Result<(i32, i32), String> {
    let mut v = 0;
    // SAFETY: one out-pointer to a live integer.
    let r = unsafe { cu::cuDriverGetVersion(&mut v) };
    if r != CUresult::CUDA_SUCCESS {
        return Err(format!("cuDriverGetVersion: {r:?}"));
    }
    Ok((v / 1000, v % 1000 / 10))
}

/// Why cubins from NVRTC `nvrtc` will not load on a driver of CUDA `driver`, if they will not.
///
/// A driver loads cubins of its own CUDA major version and older (minor-version compatibility
/// makes a 12.9 cubin load on a 12.2 driver); a newer major's cubins are refused at module load
/// with an opaque error. Compiling PTX for the driver to JIT is no way out: NVRTC writes its own
/// PTX ISA version, which an older driver refuses as well. So the remedy is an NVRTC of the
/// driver's major version (or a newer driver).
pub(crate) fn version_mismatch(nvrtc: (i32, i32), driver: (i32, i32)) -> Option<String> {
    (nvrtc.0 > driver.0).then(|| {
        let (n, d) = (nvrtc, driver);
        format!(
            "NVRTC {}.{} makes cubins that the driver (CUDA {}.{}) cannot load: use an NVRTC of CUDA {}.x \
             (the CUDA toolkit that matches the driver, or `pip install nvidia-cuda-nvrtc-cu{}`, with its \
             lib folder first on LD_LIBRARY_PATH), or update the driver to one for CUDA {}.{}",
            n.0, n.1, d.0, d.1, d.0, d.0, n.0, n.1
        )
    })
}

/// The launch limits of the context's device, from its attributes.
pub(crate) fn device_limits(ctx: &Arc<CudaContext>, label: String) -> Result<DeviceLimits, String> {
    let get = |a: A| ctx.attribute(a).map(|v| v.max(0) as u32).map_err(|e| format!("{a:?}: {e:?}"));
    Ok(DeviceLimits {
        label: Cow::Owned(label),
        max_threads_per_block: get(A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
        max_grid: [
            get(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X)?,
            get(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y)?,
            get(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z)?,
        ],
        smem_per_block_optin: get(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?,
        registers_per_block: get(A::CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK)?,
    })
}

/// Whether `r` is a kernel fault the driver keeps returning from every later call on the context
/// (an illegal address, a trap, a misaligned access, ...), whatever that call was.
pub(crate) fn is_sticky(r: CUresult) -> bool {
    matches!(
        r,
        CUresult::CUDA_ERROR_ILLEGAL_ADDRESS
            | CUresult::CUDA_ERROR_LAUNCH_FAILED
            | CUresult::CUDA_ERROR_ASSERT
            | CUresult::CUDA_ERROR_HARDWARE_STACK_ERROR
            | CUresult::CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CUresult::CUDA_ERROR_MISALIGNED_ADDRESS
            | CUresult::CUDA_ERROR_INVALID_ADDRESS_SPACE
            | CUresult::CUDA_ERROR_INVALID_PC
            | CUresult::CUDA_ERROR_LAUNCH_TIMEOUT
    )
}

/// What a sticky error means, for a message about the call it surfaced at.
pub(crate) fn poisoned_note(last_kernel: Option<&str>) -> String {
    let last = last_kernel.map_or(String::new(), |k| format!(" (the last kernel launched was {k})"));
    format!(
        "the CUDA context is poisoned by an earlier kernel fault, which surfaces at whichever driver \
         call comes next, not at the kernel that made it{last}; rerun with JOYRT_CUDA_SYNC=1 to \
         synchronise after every launch and name the failing kernel, its launch shape and parameters"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_major_nvrtc_than_the_driver_is_refused_with_both_versions() {
        assert_eq!(version_mismatch((12, 9), (12, 2)), None, "minor-version compatibility");
        assert_eq!(version_mismatch((12, 9), (13, 0)), None, "an older NVRTC on a newer driver");
        assert_eq!(version_mismatch((13, 0), (13, 0)), None);
        let m = version_mismatch((13, 0), (12, 8)).unwrap();
        assert!(m.contains("NVRTC 13.0") && m.contains("CUDA 12.8"), "{m}");
        assert!(m.contains("nvidia-cuda-nvrtc-cu12"), "{m}");
    }

    #[test]
    fn faults_are_sticky_and_refusals_are_not() {
        assert!(is_sticky(CUresult::CUDA_ERROR_ILLEGAL_ADDRESS));
        assert!(is_sticky(CUresult::CUDA_ERROR_LAUNCH_FAILED));
        assert!(!is_sticky(CUresult::CUDA_ERROR_INVALID_VALUE));
        assert!(!is_sticky(CUresult::CUDA_ERROR_OUT_OF_MEMORY));
        let note = poisoned_note(Some("linear_mma_pipelined"));
        assert!(note.contains("JOYRT_CUDA_SYNC=1") && note.contains("linear_mma_pipelined"), "{note}");
    }
}
