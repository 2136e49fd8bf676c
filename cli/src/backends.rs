//! Choosing a backend at run time. `auto` takes the best one present: today the CPU reference is
//! the only backend built into joyrt; the wgpu and CUDA backends join through their own issues.

use anyhow::{bail, Result};
use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

/// A backend picked at run time.
pub enum AnyBackend {
    Cpu(joyrt_cpu::CpuBackend),
}

impl AnyBackend {
    pub fn open(choice: BackendChoice) -> Result<AnyBackend> {
        match choice {
            BackendChoice::Auto | BackendChoice::Cpu => Ok(AnyBackend::Cpu(joyrt_cpu::CpuBackend::default())),
            BackendChoice::Wgpu | BackendChoice::Cuda => bail!(
                "backend {} is not available in this build of joyrt (only cpu is); use --backend cpu or auto",
                format!("{choice:?}").to_lowercase()
            ),
        }
    }

    pub fn name(&self) -> String {
        match self {
            AnyBackend::Cpu(b) => joyrt_core::Backend::name(b),
        }
    }

    /// Bytes held now and at most so far, where the backend counts them.
    pub fn memory(&self) -> Option<(u64, u64)> {
        match self {
            AnyBackend::Cpu(b) => Some(b.memory_stats()),
        }
    }
}

/// Runs `$body` with `$b` bound to the concrete backend inside an [`AnyBackend`].
#[macro_export]
macro_rules! with_backend {
    ($any:expr, $b:ident => $body:expr) => {
        match $any {
            $crate::backends::AnyBackend::Cpu($b) => $body,
        }
    };
}
