//! Mutation fuzzing of joyrt's input paths, on stable Rust and without libFuzzer: every target
//! takes the tiny model's real files (`tests/fixtures/`) as seeds, mutates them (bytes, and JSON
//! values where the input is JSON) with a seeded generator, and runs the library's own loading
//! code on the result. An error is the expected outcome; a **finding** is a panic or an
//! execution slower than [`SLOW`]. An abort (e.g. an allocation of absurd size) ends the process,
//! which the caller sees as a failed run.
//!
//! Runs are deterministic for a given seed and count, so CI runs a fixed short budget of each
//! target and a finding reproduces with the same command. `cargo run --release -p joyrt-fuzz --
//! --help` for the longer runs.

mod mutate;
mod targets;

pub use mutate::Mutator;
pub use targets::Target;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An execution slower than this is a finding: every input here is a few kilobytes, so only a
/// hang-like path (a loop driven by a size in the input) takes this long.
pub const SLOW: Duration = Duration::from_secs(2);

/// How long to fuzz one target.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Executions(u64),
    Time(Duration),
}

/// One input that broke a target.
#[derive(Debug)]
pub struct Finding {
    pub execution: u64,
    /// The panic message, or how long the execution took.
    pub what: String,
    pub input: Vec<u8>,
}

/// What one target's run did.
#[derive(Debug)]
pub struct Report {
    pub target: Target,
    pub executions: u64,
    /// Executions that the library accepted (the rest were refused with an error).
    pub accepted: u64,
    pub elapsed: Duration,
    pub findings: Vec<Finding>,
}

/// A scratch folder under the system temp dir, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(label: &str) -> std::io::Result<Scratch> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("joyrt-fuzz-{label}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The repository's `tests/fixtures/` folder (the seeds).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Fuzzes `target` from `seed` for `budget`; at most `max_findings` are kept.
pub fn run(target: Target, seed: u64, budget: Budget, max_findings: usize) -> std::io::Result<Report> {
    let scratch = Scratch::new(target.name())?;
    let harness = target.prepare(scratch.path())?;
    let mut mutator = Mutator::new(seed);
    let message = silence_panics();
    let start = Instant::now();
    let mut report =
        Report { target, executions: 0, accepted: 0, elapsed: Duration::ZERO, findings: Vec::new() };
    while match budget {
        Budget::Executions(n) => report.executions < n,
        Budget::Time(t) => start.elapsed() < t,
    } {
        let input = harness.mutate(&mut mutator);
        let t0 = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| harness.execute(&input)));
        let took = t0.elapsed();
        let what = match outcome {
            Err(_) => Some(format!("panic: {}", message.lock().unwrap().take().unwrap_or_default())),
            Ok(_) if took > SLOW => Some(format!("took {:.1} s", took.as_secs_f64())),
            Ok(accepted) => {
                report.accepted += u64::from(accepted);
                None
            }
        };
        if let Some(what) = what {
            if report.findings.len() < max_findings {
                report.findings.push(Finding { execution: report.executions, what, input });
            }
        }
        report.executions += 1;
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Replaces the panic hook (once per process) with one that records the message instead of
/// printing it, so a fuzzing run's output is its report; returns where the last message is.
fn silence_panics() -> Arc<Mutex<Option<String>>> {
    static LAST: std::sync::OnceLock<Arc<Mutex<Option<String>>>> = std::sync::OnceLock::new();
    LAST.get_or_init(|| {
        let last = Arc::new(Mutex::new(None));
        let sink = last.clone();
        panic::set_hook(Box::new(move |info| {
            let location =
                info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if let Ok(mut slot) = sink.lock() {
                *slot = Some(format!("{payload}{location}"));
            }
        }));
        last
    })
    .clone()
}
