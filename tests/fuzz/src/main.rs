//! `joyrt-fuzz`: runs the fuzz targets for a time or a number of executions and prints what each
//! did; any finding is written under `--out` and makes the exit status non-zero.

use clap::Parser;
use joyrt_fuzz::{run, Budget, Target};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Mutation fuzzing of joyrt's input paths (see tests/fuzz/src/lib.rs)")]
struct Args {
    /// Targets to run (default: all).
    #[arg(value_enum)]
    targets: Vec<Target>,
    /// Seconds per target.
    #[arg(long, default_value_t = 60, conflicts_with = "executions")]
    seconds: u64,
    /// Executions per target instead of a time (deterministic for a given --seed).
    #[arg(long)]
    executions: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where inputs that broke a target are written.
    #[arg(long, default_value = "fuzz-findings")]
    out: PathBuf,
}

fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let targets = if a.targets.is_empty() { Target::ALL.to_vec() } else { a.targets };
    let budget = match a.executions {
        Some(n) => Budget::Executions(n),
        None => Budget::Time(Duration::from_secs(a.seconds)),
    };
    let mut found = 0;
    for target in targets {
        let r = run(target, a.seed, budget, 20)?;
        println!(
            "{:<12} {:>9} executions in {:>6.1} s ({:>7.0}/s), {:>6} accepted, {} findings",
            target.name(),
            r.executions,
            r.elapsed.as_secs_f64(),
            r.executions as f64 / r.elapsed.as_secs_f64().max(1e-9),
            r.accepted,
            r.findings.len()
        );
        for f in &r.findings {
            std::fs::create_dir_all(&a.out)?;
            let path = a.out.join(format!("{}-seed{}-exec{}", target.name(), a.seed, f.execution));
            std::fs::write(&path, &f.input[1..])?;
            println!("  execution {}: {} (input: {})", f.execution, f.what, path.display());
        }
        found += r.findings.len();
    }
    if found > 0 {
        std::process::exit(1);
    }
    Ok(())
}
