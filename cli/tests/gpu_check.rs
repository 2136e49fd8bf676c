//! `tests/gpu_check.sh --dry-run` as CI runs it: without a GPU it checks every path, tool, joyrt
//! command line and Python file the GPU run relies on, and writes the report with every GPU part
//! skipped, within the device tool's limits on returned files. Also the CLI surface the script
//! uses: `conformance --layers/--filter/--list/--json` and `bench --parts/--profile/--json`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GPU_PARTS: [&str; 13] = [
    "probe",
    "conformance",
    "bench-ops",
    "peer",
    "cfg-step",
    "profile",
    "bench-quantized",
    "memcheck",
    "racecheck",
    "conformance-wgmma",
    "conformance-ws",
    "cfg-step-fastest",
    "cfg-step-fp8",
];

fn work(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("joyrt-gpu-check-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/gpu_check.sh")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn dry_run(binary: &str, dir: &Path) -> (Output, Value) {
    let o = Command::new("bash")
        .arg(script())
        .args(["--dry-run", binary])
        .arg(dir.join("out"))
        .env("JOYRT_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    let report = std::fs::read_to_string(dir.join("out/report.json"))
        .unwrap_or_else(|e| panic!("no report.json ({e}): {}", text(&o)));
    (o, serde_json::from_str(&report).unwrap())
}

fn joyrt(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_joyrt"))
        .args(args)
        .env("JOYRT_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap()
}

fn part<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no part {name}"))
}

#[test]
fn dry_run_passes_and_reports_every_gpu_part_skipped() {
    let dir = work("ok");
    let (o, report) = dry_run(env!("CARGO_BIN_EXE_joyrt"), &dir);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(report["mode"], "dry-run", "{t}");
    assert_eq!(report["passed"], true, "{t}");
    for name in ["env", "checks"] {
        assert_eq!(part(&report, name)["status"], "passed", "{t}");
    }
    for name in GPU_PARTS {
        assert_eq!(part(&report, name)["status"], "skipped", "{name}: {t}");
        assert!(part(&report, name)["limit_s"].as_u64().is_some_and(|s| s > 0), "{name} has a time limit");
    }
    let md = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(md.contains("| cfg-step | skipped |") && md.contains("Overall: **PASSED**"), "{md}");
    let checks = std::fs::read_to_string(dir.join("out/checks.txt")).unwrap();
    assert!(!checks.contains("FAIL") && checks.contains("ok    cfg-step: bench --backend cuda"), "{checks}");

    // What the device tool returns: at most 8 plain files of under 16 MiB, plainly named.
    let files: Vec<_> = std::fs::read_dir(dir.join("out")).unwrap().map(|e| e.unwrap()).collect();
    assert!(files.len() <= 8, "{} files", files.len());
    for f in files {
        let name = f.file_name().into_string().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{name}");
        assert!(f.file_type().unwrap().is_file() && f.metadata().unwrap().len() < 16 << 20, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dry_run_with_a_missing_binary_fails_and_says_why() {
    let dir = work("missing");
    let (o, report) = dry_run("/nonexistent/joyrt", &dir);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(report["passed"], false);
    let checks = part(&report, "checks");
    assert_eq!(checks["status"], "failed");
    assert!(checks["note"].as_str().unwrap().contains("/nonexistent/joyrt is executable"), "{checks}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn script_without_arguments_prints_its_usage() {
    let o = Command::new("bash").arg(script()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("usage: tests/gpu_check.sh [--dry-run] BINARY OUTDIR"), "{}", text(&o));
}

#[test]
fn conformance_filter_selects_op_checks_and_refuses_bad_selections() {
    let dir = work("filter");
    // Substrings, any of them: "f16 Cast" also matches the bf16 label.
    let filters = ["--filter", "bf16 Linear { m: 7,", "--filter", "f16 Cast { len: 333, to: F32"];
    let o = joyrt(&[&["conformance", "--layers", "ops", "--list"][..], &filters].concat(), &dir);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().collect::<Vec<_>>(),
        [
            "bf16 Linear { m: 7, k: 13, n: 5, bias: true }",
            "bf16 Cast { len: 333, to: F32 }",
            "f16 Cast { len: 333, to: F32 }",
        ]
    );
    let o = joyrt(&["conformance", "--filter", "Linear"], &dir);
    assert!(!o.status.success() && text(&o).contains("use it with --layers ops"), "{}", text(&o));
    let o = joyrt(&["conformance", "--layers", "ops", "--filter", "no such op"], &dir);
    assert!(!o.status.success() && text(&o).contains("no op check matches"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_json_times_the_cfg_step_of_the_tiny_model() {
    let dir = work("bench");
    let args = ["bench", "--backend", "cpu", "--parts", "cfg-step", "--size", "32", "--text-tokens", "8"];
    let o = joyrt(&[&args[..], &["--iters", "1", "--json"]].concat(), &dir);
    assert!(o.status.success(), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let dit = &doc["dit"];
    // 32² pixels: 4×4 latents, 2×2 patches per item, two items (reference and target), 8 text tokens.
    assert_eq!(dit["tokens"], 16);
    assert!(dit["cfg_step_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{doc}");
    assert!(doc.get("ops").is_none() && dit.get("forward_ms").is_none(), "only the parts asked for: {doc}");
    let o = joyrt(&["bench", "--backend", "cpu", "--parts", "cfg-step", "--size", "40"], &dir);
    assert!(
        !o.status.success() && text(&o).contains("--size must be a multiple of 16 between 16 and 4096"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_profile_times_every_kernel_of_an_emulated_cfg_step() {
    let dir = work("profile");
    let args =
        ["bench", "--parts", "cfg-step", "--size", "32", "--text-tokens", "8", "--iters", "1", "--json"];
    let o = joyrt(&[&args[..], &["--backend", "cuda-emulated", "--profile"]].concat(), &dir);
    assert!(o.status.success(), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let p = &doc["dit"]["profile"];
    assert_eq!(p["timer"], "host clock (emulation)", "{p}");
    let kernels = p["kernels"].as_array().unwrap();
    let totals: Vec<f64> = kernels.iter().map(|k| k["total_ms"].as_f64().unwrap()).collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "sorted by total: {totals:?}");
    let launches: u64 = kernels.iter().map(|k| k["launches"].as_u64().unwrap()).sum();
    assert_eq!(p["launches"].as_u64(), Some(launches));
    // Glue kernels of the DiT's blocks and the CFG combine; the gated residuals are the GEMMs'
    // epilogues, Q/K/V come from one `joint_qkv` launch (`_warp` at heads of 128).
    for name in ["layer_norm", "copy_cols", "cfg_renorm"] {
        assert!(kernels.iter().any(|k| k["kernel"] == name), "{name} missing: {p}");
    }
    let named =
        |prefix: &str| kernels.iter().any(|k| k["kernel"].as_str().is_some_and(|n| n.starts_with(prefix)));
    assert!(named("joint_qkv") && !named("gated_residual") && !named("rms_norm_rope"), "{p}");
    // The host clock times each launch inside the step it belongs to.
    let (kernel_ms, step_ms) = (p["kernel_ms"].as_f64().unwrap(), p["step_ms"].as_f64().unwrap());
    assert!(kernel_ms > 0.0 && kernel_ms <= step_ms, "{p}");
    assert!(text(&o).contains("kernel profile of one CFG step"), "{}", text(&o));

    let o = joyrt(&[&args[..], &["--backend", "cpu", "--profile"]].concat(), &dir);
    assert!(
        !o.status.success() && text(&o).contains("--profile times the kernels of a CFG step"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
