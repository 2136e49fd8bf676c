//! The op checks on the CUDA emulation of an sm_90 device (`CudaBackend::emulated_hopper`): the
//! Hopper kernels (the `wgmma` GEMM and attention, compiled only for sm_90a) against the CPU
//! reference. The networks and the pipeline run on the sm_80 emulation (cuda_emulated.rs); on
//! sm_90 they are run on demand: `JOYRT_CUDA_EMU_ARCH=sm_90 joyrt conformance --backend
//! cuda-emulated`.

#[test]
fn hopper_ops_vs_cpu_reference() {
    let b = match joyrt_cuda::CudaBackend::emulated_hopper() {
        Ok(b) => b,
        Err(why) => {
            println!("SKIPPED: the sm_90 CUDA emulation is not available: {why}");
            eprintln!("SKIPPED: the sm_90 CUDA emulation is not available: {why}");
            return;
        }
    };
    let mut report = joyrt_conformance::Report::new(joyrt_core::Backend::name(&b));
    joyrt_conformance::ops::run_ops(&b, &mut report);
    joyrt_conformance::finish(&report);
}
