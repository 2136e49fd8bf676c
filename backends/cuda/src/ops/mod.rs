//! The CUDA backend's ops, one file per op family (the families of `core/src/backend.rs`), each
//! launching the kernels of `kernels/<family>.cu`: the file declares the family's parameter
//! struct (whose C declaration the kernels are compiled with) and its kernels' descriptors.

/// Declares `FAMILY`, the family's [`FamilyDef`](crate::kernel::FamilyDef): the family `name`
/// (so its kernels are `kernels/<name>.cu`), its parameter struct, the constants its kernels share
/// with the host, and its kernels.
macro_rules! family {
    ($name:literal, $params:ty, defines: $defines:expr, kernels: [$($kernel:ident),* $(,)?] $(,)?) => {
        pub(crate) static FAMILY: $crate::kernel::FamilyDef = $crate::kernel::FamilyDef {
            name: $name,
            source: include_str!(concat!("../../../../kernels/", $name, ".cu")),
            params: <$params as joyrt_core::kernel_abi::KernelParams>::c,
            defines: $defines,
            kernels: &[$(&$kernel.desc),*],
        };
    };
}

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod gather;
pub mod gemm;
pub mod layout;
pub mod norm;
pub mod rope;

use crate::kernel::{Family, Kernel, KernelDesc};
use crate::CudaBackend;
use joyrt_core::{DType, Tensor};

/// Threads per block of the kernels that read `blockDim` (grid-stride loops, one block per row):
/// any multiple of 32 up to 1024 would do; a row narrower than this takes fewer.
const BLOCK_THREADS: u32 = 256;

/// Elements of the runs the memory-bound kernels take per access (`VEC` of `kernels/vec.cuh`);
/// the host sizes their grids by runs. Only the grid depends on it: a kernel that cannot take
/// runs loops over single elements with the same threads.
const VEC: usize = 8;

/// A kernel of `family` that reads `blockDim`, launched with [`BLOCK_THREADS`].
const fn kernel<P>(name: &'static str, family: Family) -> Kernel<P> {
    Kernel::new(KernelDesc::new(name, family, BLOCK_THREADS))
}

/// The dtype of an optional operand, `default` where it is absent (the module is compiled for
/// some type either way; the kernel never reads a null operand).
fn dtype_or(t: Option<&Tensor<CudaBackend>>, default: DType) -> DType {
    t.map_or(default, |t| t.dtype())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_run_length_is_the_kernels() {
        let header = include_str!("../../../../kernels/vec.cuh");
        assert!(header.contains(&format!("\n#define VEC {}\n", super::VEC)), "VEC differs from vec.cuh");
    }
}
