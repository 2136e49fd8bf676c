//! The conformance suite on the CUDA backend's kernels run by its CPU emulation
//! (`CudaBackend::emulated`, backends/cuda/emu): the real `kernels/*.cu` sources and the real
//! host code, held to the CPU reference and the golden fixtures on a machine with no GPU. The
//! emulation checks logic (indexing, tiling, barriers, the mma fragment layout), not speed.

joyrt_conformance::conformance_suite!(cuda_emulated, joyrt_cuda::CudaBackend::emulated(), ops_layer = true);
