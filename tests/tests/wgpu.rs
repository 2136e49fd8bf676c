//! The conformance suite on the wgpu backend (a software Vulkan adapter, lavapipe, in CI).

joyrt_conformance::conformance_suite!(wgpu, joyrt_wgpu::WgpuBackend::new(), ops_layer = true);
