//! The op checks on the CUDA emulation of an sm_90 device (`CudaBackend::emulated_hopper`): each
//! Hopper kernel (compiled only for sm_90a: the `wgmma` GEMM in its three forms and the `wgmma`
//! attention in its two) against the CPU reference. The networks and the pipeline run on the sm_80
//! emulation (cuda_emulated.rs); on sm_90 they run on demand: `JOYRT_CUDA_EMU_ARCH=sm_90
//! JOYRT_CUDA_ATTENTION=wgmma joyrt conformance --backend cuda-emulated`.

use joyrt_cuda::{AttentionPath, CudaBackend, GemmPath};

fn check(gemm: GemmPath, attention: AttentionPath, keep: impl Fn(&str) -> bool) {
    let b = match CudaBackend::emulated_hopper(gemm, attention) {
        Ok(b) => b,
        Err(why) => {
            println!("SKIPPED: the sm_90 CUDA emulation is not available: {why}");
            eprintln!("SKIPPED: the sm_90 CUDA emulation is not available: {why}");
            return;
        }
    };
    let mut report = joyrt_conformance::Report::new(joyrt_core::Backend::name(&b));
    joyrt_conformance::ops::run_ops_where(&b, &mut report, keep);
    joyrt_conformance::finish(&report);
}

/// Every op, with the default GEMM (`wgmma`, a block per tile) and the `wgmma` attention.
#[test]
fn hopper_ops_vs_cpu_reference() {
    check(GemmPath::Wgmma, AttentionPath::Wgmma, |_| true);
}

/// The GEMM cases on the persistent `wgmma` GEMM (3 emulated multiprocessors, so each block
/// walks several tiles).
#[test]
fn persistent_hopper_gemm_vs_cpu_reference() {
    check(GemmPath::WgmmaPersistent, AttentionPath::Mma, |label| label.contains("Linear"));
}

/// The GEMM cases on the warp-specialised GEMM (TMA into an mbarrier ring, a producer and two
/// consumer warpgroups, persistent over 3 emulated multiprocessors).
#[test]
fn warp_specialised_hopper_gemm_vs_cpu_reference() {
    check(GemmPath::WgmmaWs, AttentionPath::Mma, |label| label.contains("Linear"));
}

/// The attention cases on the warp-specialised attention (TMA into a K/V mbarrier ring, a
/// producer and two consumer warpgroups taking turns through named barriers).
#[test]
fn warp_specialised_hopper_attention_vs_cpu_reference() {
    check(GemmPath::Wgmma, AttentionPath::WgmmaWs, |label| label.contains("Attention"));
}
