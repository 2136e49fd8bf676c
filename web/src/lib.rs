//! joyrt-web: the browser demo's Rust side. `demo` is the page's logic over any backend (the
//! built-in model generated in memory, the memory check, one edit to PNG bytes), tested natively on
//! the CPU backend; `bindings` (wasm32 only) exposes it to the page's ES module (`web/main.js`) on
//! the wgpu backend over WebGPU.

pub mod demo;

#[cfg(target_arch = "wasm32")]
mod bindings;
