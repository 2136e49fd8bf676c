//! A short deterministic run of every fuzz target (what CI runs); the longer runs are
//! `cargo run --release -p joyrt-fuzz -- --seconds N` (docs/ARCHITECTURE.md, "Fuzzing").

use joyrt_fuzz::{run, Budget, Target};

fn fuzz(target: Target, executions: u64) {
    let r = run(target, 1, Budget::Executions(executions), 5).expect("preparing the fuzz target");
    let findings: Vec<String> =
        r.findings.iter().map(|f| format!("execution {}: {}", f.execution, f.what)).collect();
    assert!(findings.is_empty(), "{}: {} findings:\n{}", target.name(), findings.len(), findings.join("\n"));
    // A run where nothing was ever accepted would only exercise the first check.
    assert!(r.accepted > 0, "{}: no mutated input was accepted in {executions} executions", target.name());
}

#[test]
fn safetensors() {
    fuzz(Target::Safetensors, 400);
}

#[test]
fn index() {
    fuzz(Target::Index, 300);
}

#[test]
fn config() {
    fuzz(Target::Config, 400);
}

#[test]
fn tokenizer() {
    fuzz(Target::Tokenizer, 300);
}

#[test]
fn image() {
    fuzz(Target::Image, 300);
}
