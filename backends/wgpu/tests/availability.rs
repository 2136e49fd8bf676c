//! Whether joyrt-wgpu's tests really ran on this machine, printed by plain `cargo test`. Without
//! a wgpu adapter the tests of `tests/backend.rs` return early and pass, and libtest hides their
//! `SKIPPED` lines unless run with `--nocapture`. This target has no test harness
//! (`harness = false` in Cargo.toml), so cargo shows what it prints.

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // no libtest tests to list
    }
    joyrt_wgpu::quiet_headless_device_select();
    match joyrt_wgpu::WgpuBackend::new() {
        Ok(b) => println!("joyrt-wgpu: tests run on {}", joyrt_core::Backend::name(&b)),
        Err(e) => println!("joyrt-wgpu: adapter tests SKIPPED, they pass without running: {e}"),
    }
}
