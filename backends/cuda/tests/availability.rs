//! Whether joyrt-cuda's NVRTC kernel compile check really ran on this machine, printed by plain
//! `cargo test`. Without libnvrtc that unit test returns early and passes (unless
//! `JOYRT_REQUIRE_NVRTC=1`), and libtest hides its `SKIPPED` line unless run with `--nocapture`.
//! This target has no test harness (`harness = false` in Cargo.toml), so cargo shows what it
//! prints.

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // no libtest tests to list
    }
    match joyrt_cuda::nvrtc::nvrtc_version() {
        Some((major, minor)) => println!("joyrt-cuda: kernel compile check runs on NVRTC {major}.{minor}"),
        None => println!(
            "joyrt-cuda: kernel compile check SKIPPED, it passes without running: libnvrtc not found \
             (pip install nvidia-cuda-nvrtc-cu12; LD_LIBRARY_PATH)"
        ),
    }
    match joyrt_cuda::CudaBackend::new() {
        Ok(b) => println!("joyrt-cuda: CUDA device {}", joyrt_core::Backend::name(&b)),
        Err(e) => println!("joyrt-cuda: no CUDA device ({e}); the kernels run only emulated here"),
    }
}
