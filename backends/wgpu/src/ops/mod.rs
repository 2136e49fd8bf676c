//! The wgpu backend's ops, one file per op family (the families of `core/src/backend.rs`), each
//! with its kernels' parameter struct and the WGSL of shaders/<family>.wgsl.

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod gather;
pub mod gemm;
pub mod layout;
pub mod norm;
pub mod rope;
