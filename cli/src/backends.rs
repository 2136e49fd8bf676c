//! Choosing a backend at run time. `auto` takes the best one present: CUDA, then wgpu, then CPU.

use anyhow::{bail, Result};
use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Auto,
    Cpu,
}

/// A backend picked at run time.
pub enum AnyBackend {
    Cpu(joyrt_cpu::CpuBackend),
}

impl AnyBackend {
    pub fn open(choice: BackendChoice) -> Result<AnyBackend> {
        match choice {
            BackendChoice::Auto | BackendChoice::Cpu => Ok(AnyBackend::Cpu(joyrt_cpu::CpuBackend::default())),
        }
    }

    pub fn name(&self) -> String {
        match self {
            AnyBackend::Cpu(b) => joyrt_core::Backend::name(b),
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

#[allow(dead_code)]
fn unavailable(name: &str, why: &str) -> Result<AnyBackend> {
    bail!("backend {name} is not available on this machine: {why}")
}
