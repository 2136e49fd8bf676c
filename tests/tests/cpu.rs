//! The conformance suite on the CPU reference backend.

joyrt_conformance::conformance_suite!(
    cpu,
    Ok::<_, String>(joyrt_cpu::CpuBackend::default()),
    ops_layer = false
);
