//! The CPU reference's ops, one file per op family (the families of `core/src/backend.rs`).

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod gather;
pub mod gemm;
pub mod layout;
pub mod norm;
pub mod rope;
