//! Choosing a backend at run time. `auto` takes the best one present: CUDA (an NVIDIA GPU with
//! its driver and NVRTC), else a hardware wgpu adapter, else the CPU reference (a software
//! adapter such as lavapipe is slower than the CPU backend).

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::DType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Auto,
    Cpu,
    Wgpu,
    Cuda,
    /// The CUDA kernels on the CPU through joyrt-cuda's emulation of CUDA (needs g++; slow: for
    /// checking the kernels' logic, e.g. `joyrt conformance --backend cuda-emulated`).
    CudaEmulated,
}

/// A backend picked at run time.
pub enum AnyBackend {
    Cpu(joyrt_cpu::CpuBackend),
    Wgpu(joyrt_wgpu::WgpuBackend),
    Cuda(joyrt_cuda::CudaBackend),
}

impl AnyBackend {
    pub fn open(choice: BackendChoice) -> Result<AnyBackend> {
        match choice {
            BackendChoice::Cpu => Ok(AnyBackend::Cpu(joyrt_cpu::CpuBackend::default())),
            BackendChoice::Auto => {
                if let Ok(c) = joyrt_cuda::CudaBackend::new() {
                    return Ok(AnyBackend::Cuda(c));
                }
                Ok(match joyrt_wgpu::WgpuBackend::new() {
                    Ok(w) if !w.is_software() => AnyBackend::Wgpu(w),
                    _ => AnyBackend::Cpu(joyrt_cpu::CpuBackend::default()),
                })
            }
            BackendChoice::Wgpu => Ok(AnyBackend::Wgpu(joyrt_wgpu::WgpuBackend::new()?)),
            BackendChoice::Cuda => Ok(AnyBackend::Cuda(joyrt_cuda::CudaBackend::new()?)),
            BackendChoice::CudaEmulated => Ok(AnyBackend::Cuda(joyrt_cuda::CudaBackend::emulated()?)),
        }
    }

    pub fn name(&self) -> String {
        crate::with_backend!(self, b => joyrt_core::Backend::name(b))
    }

    /// The storage dtype of `--dtype` (`bf16`, `f16`, `f32`), or for `fp8` bf16 with this backend
    /// switched to W8A8 on fp8 weights: each linear on an fp8-quantized weight (a folder written
    /// by `joyrt quantize --format fp8`) quantizes its activations per row to E4M3 too. CUDA runs
    /// that on FP8 tensor cores (sm_89 and later, or the sm_89/sm_90 emulation); the CPU runs the
    /// reference math; wgpu has no W8A8 kernel and is refused.
    pub fn run_dtype(&self, dtype: &str) -> Result<DType> {
        if dtype != "fp8" {
            return DType::parse(dtype)
                .with_context(|| format!("unknown dtype {dtype:?}: use bf16, f16, f32 or fp8"));
        }
        match self {
            AnyBackend::Cpu(c) => c.set_fp8_activations(true),
            AnyBackend::Cuda(c) => c.set_fp8_activations(true)?,
            AnyBackend::Wgpu(_) => {
                bail!("--dtype fp8 (W8A8) needs --backend cuda (sm_89 or later) or the CPU reference")
            }
        }
        Ok(DType::BF16)
    }

    /// Bytes held now and at most so far, where the backend counts them.
    pub fn memory(&self) -> (u64, u64) {
        crate::with_backend!(self, b => joyrt_core::Backend::memory_stats(b))
    }
}

/// Runs `$body` with `$b` bound to the concrete backend inside an [`AnyBackend`].
#[macro_export]
macro_rules! with_backend {
    ($any:expr, $b:ident => $body:expr) => {
        match $any {
            $crate::backends::AnyBackend::Cpu($b) => $body,
            $crate::backends::AnyBackend::Wgpu($b) => $body,
            $crate::backends::AnyBackend::Cuda($b) => $body,
        }
    };
}

/// Bytes of memory available to a CPU run (`MemAvailable` of /proc/meminfo), if known.
fn host_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The bytes a run may use on `backend`: `--max-memory-gb` when given (it pretends a smaller
/// device), else what the system reports available (CPU: the host's available memory; CUDA: the
/// device's free memory), `None` where the backend cannot tell (wgpu has no memory query).
pub fn memory_budget(backend: &AnyBackend, max_gb: Option<f64>) -> Option<u64> {
    match (max_gb, backend) {
        (Some(gb), _) => Some((gb * 1e9) as u64),
        (None, AnyBackend::Cpu(_)) => host_available(),
        (None, AnyBackend::Wgpu(_)) => None,
        (None, AnyBackend::Cuda(b)) => b.device_memory().ok().map(|(free, _)| free),
    }
}

/// Refuses a resident session (a server: all three networks at once) whose weights cannot fit.
pub fn check_memory(
    backend: &AnyBackend,
    model: &ModelFolder,
    dtype: DType,
    max_gb: Option<f64>,
    resident: bool,
) -> Result<()> {
    let Some(limit) = memory_budget(backend, max_gb) else { return Ok(()) };
    let c = &model.configs;
    let (dit, vae, qwen) = (c.transformer.param_count(), c.vae.param_count(), c.text_encoder.param_count());
    let params = if resident { qwen + dit + vae } else { qwen.max(dit + vae) };
    let need = params * dtype.size() as u64;
    if need > limit {
        bail!(
            "out of memory: the weights need {} at once in {dtype} on {}, {} is available; \
             use --dtype bf16, a GPU backend, or a machine with more memory",
            human_bytes(need),
            backend.name(),
            human_bytes(limit)
        );
    }
    Ok(())
}

/// `1.23 GB` / `4.5 MB`.
pub use joyrt_core::plan::bytes_label as human_bytes;
