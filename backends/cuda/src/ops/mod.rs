//! The CUDA backend's ops, one file per op family (the families of `core/src/backend.rs`), each
//! launching the kernels of `kernels/<family>.cu`: the file declares the family's parameter
//! struct (whose C declaration the kernels are compiled with) and its kernels' descriptors.

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod gather;
pub mod gemm;
pub mod layout;
pub mod norm;
pub mod rope;

use crate::CudaBackend;
use joyrt_core::{DType, Tensor};

/// Threads per block of the grid-stride kernels (which read `blockDim`, so any multiple of 32
/// would do) and the most a one-block-per-row kernel uses.
const STRIDE_THREADS: u32 = 256;

/// The dtype of an optional operand, `default` where it is absent (the module is compiled for
/// some type either way; the kernel never reads a null operand).
fn dtype_or(t: Option<&Tensor<CudaBackend>>, default: DType) -> DType {
    t.map_or(default, |t| t.dtype())
}
