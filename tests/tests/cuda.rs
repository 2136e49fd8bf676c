//! The conformance suite on the CUDA backend. Without an NVIDIA GPU, driver and NVRTC every test
//! prints `SKIPPED: backend cuda not available ...` (the kernels are still compile-checked for
//! sm_80 and sm_90a by joyrt-cuda's own tests).

joyrt_conformance::conformance_suite!(cuda, joyrt_cuda::CudaBackend::new(), ops_layer = true);
