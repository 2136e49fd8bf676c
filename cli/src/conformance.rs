//! `joyrt conformance`: the conformance layers against one backend, with the error table.

use crate::backends::{AnyBackend, BackendChoice};
use anyhow::{bail, Result};
use clap::Args;
use joyrt_conformance::{networks, ops, pipeline, Report};
use joyrt_core::DType;
use std::path::PathBuf;

#[derive(Args)]
pub struct ConformanceArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Fixture folder in the layout of tests/fixtures (see its README to bring your own). Defaults
    /// to the repository's fixtures when joyrt runs from a checkout.
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
}

pub fn run(a: ConformanceArgs) -> Result<()> {
    let fx = match a.fixtures {
        Some(f) => f,
        None => joyrt_conformance::fixtures_dir(),
    };
    if !fx.join("golden").is_dir() || !fx.join("tiny_model").is_dir() {
        bail!("{} is not a fixture folder (no golden/ and tiny_model/); pass --fixtures DIR", fx.display());
    }
    let backend = AnyBackend::open(a.backend)?;
    let mut host = Report::new("host");
    networks::host_tables(&fx, &mut host);
    println!("{}", host.table());
    let report = crate::with_backend!(&backend, b => {
        let mut r = Report::new(joyrt_core::Backend::name(b));
        if r.backend == "cpu" {
            r.skip("ops", "all ops", "cpu is the reference; joyrt-cpu's unit tests hold it to f64");
        } else {
            ops::run_ops(b, &mut r);
        }
        for dtype in [DType::F32, DType::BF16] {
            networks::dit(b, &fx, dtype, &mut r);
            networks::vae(b, &fx, dtype, &mut r);
            networks::qwen(b, &fx, dtype, &mut r);
        }
        pipeline::run(b, &fx, &mut r);
        r
    });
    println!("{}", report.table());
    let failed = host.failures().len() + report.failures().len();
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}
