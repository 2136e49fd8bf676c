//! `joyrt conformance`: the conformance layers against one backend, with the error table.

use crate::backends::{AnyBackend, BackendChoice};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use joyrt_conformance::{networks, ops, pipeline, Outcome, Report, Row};
use joyrt_core::DType;
use serde_json::json;
use std::path::PathBuf;

/// A layer of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Layer {
    /// Scheduler, buckets, resize and tokenizer against their fixtures (no backend involved).
    Host,
    /// Every op against the CPU reference on random inputs.
    Ops,
    /// The DiT, VAE and Qwen against golden fixtures, in f32 and bf16.
    Networks,
    /// The whole edit pipeline against its golden fixture.
    Pipeline,
}

#[derive(Args)]
pub struct ConformanceArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Fixture folder in the layout of tests/fixtures (see its README to bring your own). Defaults
    /// to the repository's fixtures when joyrt runs from a checkout.
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// The layers to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "host,ops,networks,pipeline")]
    pub layers: Vec<Layer>,
    /// Run only the op checks whose label contains this text (repeat for several: a check runs if
    /// any matches). Needs `--layers ops`; `--list` prints the labels.
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
    /// Print the labels of the op checks selected (after --filter) and exit; opens no backend.
    #[arg(long)]
    pub list: bool,
    /// Print a JSON summary on stdout (the tables go to stderr).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ConformanceArgs) -> Result<()> {
    if !a.filter.is_empty() && a.layers != [Layer::Ops] {
        bail!("--filter selects op checks: use it with --layers ops");
    }
    let keep = |label: &str| a.filter.is_empty() || a.filter.iter().any(|f| label.contains(f.as_str()));
    let selected: Vec<String> = ops::labels().into_iter().filter(|l| keep(l)).collect();
    if selected.is_empty() {
        bail!("no op check matches --filter {:?}; `joyrt conformance --list` prints every label", a.filter);
    }
    if a.list {
        for label in &selected {
            println!("{label}");
        }
        return Ok(());
    }
    let needs_fixtures = a.layers.iter().any(|l| *l != Layer::Ops);
    let fx = a.fixtures.clone().unwrap_or_else(joyrt_conformance::fixtures_dir);
    if needs_fixtures && (!fx.join("golden").is_dir() || !fx.join("tiny_model").is_dir()) {
        bail!("{} is not a fixture folder (no golden/ and tiny_model/); pass --fixtures DIR", fx.display());
    }
    let backend = AnyBackend::open(a.backend)?;
    let show = |table: String| if a.json { eprintln!("{table}") } else { println!("{table}") };
    let mut host = Report::new("host");
    if a.layers.contains(&Layer::Host) {
        networks::host_tables(&fx, &mut host);
        show(host.table());
    }
    let report = crate::with_backend!(&backend, b => {
        let mut r = Report::new(joyrt_core::Backend::name(b));
        if a.layers.contains(&Layer::Ops) {
            if r.backend == "cpu" {
                r.skip("ops", "all ops", "cpu is the reference; joyrt-cpu's unit tests hold it to f64");
            } else {
                ops::run_ops_where(b, &mut r, keep);
                joyrt_conformance::fusions::run_fusion_identities_where(b, &mut r, keep);
            }
        }
        if a.layers.contains(&Layer::Networks) {
            for dtype in [DType::F32, DType::BF16] {
                networks::dit(b, &fx, dtype, &mut r);
                networks::vae(b, &fx, dtype, &mut r);
                networks::qwen(b, &fx, dtype, &mut r);
            }
        }
        if a.layers.contains(&Layer::Pipeline) {
            pipeline::run(b, &fx, &mut r);
        }
        r
    });
    show(report.table());
    let failed: Vec<&Row> = host.failures().into_iter().chain(report.failures()).collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary(&report, &host, &failed))?);
    }
    if !failed.is_empty() {
        bail!("{} check(s) failed", failed.len());
    }
    Ok(())
}

/// Counts over both reports, and each failure with what went wrong.
fn summary(report: &Report, host: &Report, failed: &[&Row]) -> serde_json::Value {
    let rows = || report.rows.iter().chain(&host.rows);
    let failures: Vec<_> = failed
        .iter()
        .map(|r| {
            let detail = match &r.outcome {
                Outcome::Compared { metrics: m, tol } => format!(
                    "max_abs {:.3e}, rel_l2 {:.3e}, cosine {:.7}, {} violations (tolerance {})",
                    m.max_abs, m.rel_l2, m.cosine, m.violations, tol.name
                ),
                Outcome::Checked { detail, .. } | Outcome::Failed(detail) | Outcome::Skipped(detail) => {
                    detail.clone()
                }
            };
            json!({ "layer": r.layer, "check": r.check, "detail": detail })
        })
        .collect();
    json!({
        "backend": report.backend,
        "passed": rows().filter(|r| r.passed()).count(),
        "failed": failed.len(),
        "skipped": rows().filter(|r| r.skipped()).count(),
        "failures": failures,
    })
}
