//! joyrt's conformance suite: one body, instantiated per backend.
//!
//! Layers (see docs/ARCHITECTURE.md, "Conformance"):
//! 1. [`ops`]: every op vs the CPU reference on random inputs (the CPU backend itself is held to an
//!    independent f64 implementation in `joyrt-cpu`'s own tests);
//! 2. networks vs golden fixtures from diffusers/transformers;
//! 3. the pipeline vs its golden fixture;
//! 4. the cross-backend differential runner (`joyrt conformance`).
//!
//! [`conformance_suite!`] expands to the `#[test]`s for one backend; an absent backend prints a loud
//! `SKIPPED` line instead of passing silently.

pub mod fixtures;
pub mod fusions;
pub mod memory;
pub mod networks;
pub mod ops;
pub mod pipeline;
pub mod report;
pub mod tolerance;

pub use report::{Metrics, Outcome, Report, Row};
pub use tolerance::Tolerance;

/// The golden fixture folder (`tests/fixtures`).
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Prints a report and fails the calling test if any check failed.
pub fn finish(report: &Report) {
    println!("{}", report.table());
    let failed = report.failures();
    assert!(
        failed.is_empty(),
        "{} check(s) failed on {}: {:?}",
        failed.len(),
        report.backend,
        failed.iter().map(|r| &r.check).collect::<Vec<_>>()
    );
}

/// Instantiates the suite for one backend. `$make` is an expression of type
/// `Result<B, impl Display>`; an `Err` means the backend is not available on this machine, and
/// each test prints `SKIPPED: backend ... not available: <why>`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr, ops_layer = $ops:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn backend_or_skip(test: &str) -> Option<impl joyrt_core::Backend> {
                match $make {
                    Ok(b) => Some(b),
                    Err(why) => {
                        println!("SKIPPED: backend {} not available for {test}: {why}", stringify!($name));
                        eprintln!("SKIPPED: backend {} not available for {test}: {why}", stringify!($name));
                        None
                    }
                }
            }

            #[test]
            fn ops_vs_cpu_reference() {
                let Some(b) = backend_or_skip("ops") else { return };
                let mut report = $crate::Report::new(joyrt_core::Backend::name(&b));
                if $ops {
                    $crate::ops::run_ops(&b, &mut report);
                    $crate::fusions::run_fusion_identities(&b, &mut report);
                } else {
                    report.skip(
                        "ops",
                        "all ops",
                        "this backend is the reference; joyrt-cpu's unit tests hold it to f64",
                    );
                }
                $crate::finish(&report);
            }

            #[test]
            fn networks_vs_golden_fixtures() {
                let Some(b) = backend_or_skip("networks") else { return };
                let mut report = $crate::Report::new(joyrt_core::Backend::name(&b));
                let fx = $crate::fixtures_dir();
                for dtype in [joyrt_core::DType::F32, joyrt_core::DType::BF16] {
                    $crate::networks::dit(&b, &fx, dtype, &mut report);
                    $crate::networks::vae(&b, &fx, dtype, &mut report);
                    $crate::networks::qwen(&b, &fx, dtype, &mut report);
                }
                $crate::finish(&report);
            }

            #[test]
            fn memory_plan_vs_measured_peaks() {
                let Some(b) = backend_or_skip("memory") else { return };
                let mut report = $crate::Report::new(joyrt_core::Backend::name(&b));
                if !$crate::memory::runs_on(stringify!($name), &mut report, "plan vs measured") {
                    $crate::finish(&report);
                    return;
                }
                let fx = $crate::fixtures_dir();
                let make = || backend_or_skip("memory");
                for model in $crate::memory::models(&fx) {
                    let Some(model) = report.attempt("memory", "model", model) else { continue };
                    $crate::memory::plan_vs_measured(&make, &model, joyrt_core::DType::F32, &mut report);
                }
                $crate::finish(&report);
            }

            #[test]
            fn dit_streamed_is_bit_identical() {
                let Some(b) = backend_or_skip("streaming") else { return };
                let mut report = $crate::Report::new(joyrt_core::Backend::name(&b));
                if !$crate::memory::runs_on(stringify!($name), &mut report, "streamed DiT") {
                    $crate::finish(&report);
                    return;
                }
                let fx = $crate::fixtures_dir();
                for model in $crate::memory::models(&fx) {
                    let Some(model) = report.attempt("memory", "model", model) else { continue };
                    for dtype in [joyrt_core::DType::F32, joyrt_core::DType::BF16] {
                        $crate::memory::streamed_dit(&b, &model, dtype, &mut report);
                    }
                }
                $crate::finish(&report);
            }

            #[test]
            fn pipeline_vs_golden_fixture() {
                let Some(b) = backend_or_skip("pipeline") else { return };
                let mut report = $crate::Report::new(joyrt_core::Backend::name(&b));
                $crate::pipeline::run(&b, &$crate::fixtures_dir(), &mut report);
                $crate::finish(&report);
            }
        }
    };
}
