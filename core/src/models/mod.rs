//! The three networks of JoyAI-Image-Edit, written once over the [`Backend`](crate::Backend) trait.

pub mod dit;
pub mod qwen;
pub mod vae;
