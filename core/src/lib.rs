//! joyrt-core: dtypes, shapes, the backend-agnostic tensor handle, the `Backend` op trait, the
//! error type, weight loading, the model graphs and the edit pipeline.

// The shared handles (`Arc`) hold `MaybeSend + MaybeSync` values: `Send + Sync` natively, where
// they cross threads; in a browser there is one thread and WebGPU's handles are neither.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod backend;
mod cache_dir;
mod contain;
mod dtype;
mod error;
pub mod files;
pub mod finite;
pub mod image;
pub mod kernel_abi;
pub mod limits;
pub mod model_folder;
pub mod models;
pub mod pipeline;
pub mod plan;
pub mod prompt;
pub mod quant;
pub mod random_weights;
pub mod rng;
pub mod scheduler;
mod shape;
mod tensor;
pub mod weights;

pub use backend::{Activation, Backend, BinaryOp, Rope, RopePairing, ScatterMode};
pub use cache_dir::cache_dir;
pub use dtype::{DType, StoredDType};
pub use error::{listed, Error, Result, MAX_LISTED_PROBLEMS};
pub use quant::{QuantFormat, QuantizedMatrix};
pub use rng::Rng;
pub use shape::Shape;
pub use tensor::Tensor;
