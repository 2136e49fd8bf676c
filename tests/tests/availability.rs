//! Which backends the conformance suite really ran on this machine, printed by plain
//! `cargo test`. A backend that is not available makes its tests (`tests/<backend>.rs`) return
//! early and pass; libtest shows them as `ok` and hides their `SKIPPED` lines unless run with
//! `--nocapture`. This target has no test harness (`harness = false` in Cargo.toml), so cargo
//! shows what it prints.

fn line<B: joyrt_core::Backend, E: std::fmt::Display>(name: &str, probe: Result<B, E>) -> String {
    match probe {
        Ok(b) => format!("  {name:<20} runs on {}", joyrt_core::Backend::name(&b)),
        Err(why) => format!("  {name:<20} SKIPPED, its tests pass without running: {why}"),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // no libtest tests to list
    }
    joyrt_wgpu::quiet_headless_device_select();
    println!("joyrt-conformance backends on this machine:");
    println!("  {:<20} runs (the reference)", "cpu");
    println!("{}", line("wgpu", joyrt_wgpu::WgpuBackend::new()));
    println!("{}", line("cuda", joyrt_cuda::CudaBackend::new()));
    println!("{}", line("cuda_emulated", joyrt_cuda::CudaBackend::emulated()));
    println!("{}", line("cuda_emulated_hopper", joyrt_cuda::CudaBackend::emulated_hopper()));
}
