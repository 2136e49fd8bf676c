//! The deployment recipes in `deploy/`, tested as far as a machine without a container runtime or
//! a cluster allows: the image's build step (`deploy/build-binary.sh`) makes a binary that needs
//! nothing but glibc, the command lines of the image and of the Kubernetes manifest are ones
//! `joyrt serve` accepts, and the manifest passes a schema validator (`kubernetes-validate`, from
//! PyPI in a venv the test makes). The drain behaviour is tested in `serve.rs`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::*;

/// Held while a test runs the binary or rebuilds it: the build step replaces `target/release/joyrt`.
static BINARY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Where a missing tool makes a test say SKIPPED and pass, unless JOYRT_REQUIRE_DEPLOY_TOOLS=1
/// (`.ci/run` sets it).
fn skip(why: &str) {
    let required = std::env::var("JOYRT_REQUIRE_DEPLOY_TOOLS").is_ok_and(|v| v == "1");
    assert!(!required, "JOYRT_REQUIRE_DEPLOY_TOOLS=1 but {why}");
    println!("SKIPPED: {why}");
}

/// The JSON-array instruction `name` of the Containerfile (ENTRYPOINT, CMD).
fn containerfile_array(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("deploy/Containerfile")).unwrap();
    let line =
        text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{name} is not a JSON array: {e}"))
}

/// Runs `joyrt serve` with `args` and asserts that every flag was accepted: the run fails on the
/// model folder (absent here), not on the command line.
fn serve_accepts(args: &[String], what: &str) {
    let mut all = vec!["serve".to_string()];
    all.extend(args.iter().cloned());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let _binary = BINARY.lock().unwrap_or_else(|p| p.into_inner());
    let o = joyrt_cmd(&all).env("JOYRT_API_KEY", "k").env("HF_HUB_OFFLINE", "1").output().unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{what}: serve started without its model folder: {t}");
    assert_ne!(o.status.code(), Some(2), "{what}: the command line was refused: {t}");
    assert!(
        t.contains("/models/JoyAI-Image-Edit-Diffusers"),
        "{what}: failed on something else than the model folder: {t}"
    );
}

#[test]
fn the_image_runs_a_command_line_serve_accepts() {
    let entry = containerfile_array("ENTRYPOINT");
    assert_eq!(&entry[..2], ["joyrt", "serve"]);
    let mut args = entry[2..].to_vec();
    args.extend(containerfile_array("CMD"));
    serve_accepts(&args, "the Containerfile");
}

/// The image's build stage, run here with JOYRT_TEST_IMAGE_BUILD=1 (`.ci/run` sets it; a minute
/// or two: cargo builds the binary again without the test suite's dependencies); otherwise the
/// binary under test is checked. Either binary starts and links nothing the CUDA runtime image
/// lacks (only glibc's own libraries; the GPU libraries are opened at run time).
#[test]
fn the_image_build_step_makes_a_binary_that_needs_only_glibc() {
    let binary = if std::env::var("JOYRT_TEST_IMAGE_BUILD").is_ok_and(|v| v == "1") {
        // The target folder this test binary was built in: the build step reuses its dependencies.
        let target = Path::new(env!("CARGO_BIN_EXE_joyrt")).parent().unwrap().parent().unwrap();
        let out = work().join("image-out");
        let _binary = BINARY.lock().unwrap_or_else(|p| p.into_inner());
        let o = Command::new(repo().join("deploy/build-binary.sh"))
            .arg(&out)
            .env("CARGO_TARGET_DIR", target)
            .output()
            .unwrap();
        assert!(o.status.success(), "the build step failed: {}", text(&o));
        assert!(text(&o).contains("joyrt 0."), "{}", text(&o));
        out.join("joyrt")
    } else {
        println!("the image's build step is not run (JOYRT_TEST_IMAGE_BUILD=1 runs it); checking the binary under test");
        PathBuf::from(env!("CARGO_BIN_EXE_joyrt"))
    };
    let ldd = match Command::new("ldd").arg(&binary).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => return skip("no ldd"),
    };
    let glibc = [
        "linux-vdso",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "ld-linux",
    ];
    for line in ldd.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            glibc.iter().any(|g| line.starts_with(g) || line.starts_with(&format!("/lib64/{g}"))),
            "links {line}"
        );
    }
}

/// A Python venv with `kubernetes-validate` (which carries the Kubernetes schemas; no cluster and
/// no network at validation time), made once under the target folder.
fn validator() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-validate-venv");
    let tool = venv.join("bin/kubernetes-validate");
    if tool.is_file() {
        return Some(tool);
    }
    let ok = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
    if !ok(Command::new("python3").args(["-m", "venv"]).arg(&venv)) {
        skip("python3 -m venv failed");
        return None;
    }
    if !ok(Command::new(venv.join("bin/pip")).args(["install", "-q", "kubernetes-validate==1.37.0"])) {
        skip("pip could not install kubernetes-validate==1.37.0");
        return None;
    }
    Some(tool)
}

fn validates(tool: &Path, manifest: &Path) -> (bool, String) {
    let o = Command::new(tool).args(["--strict", "-k", "1.37.0"]).arg(manifest).output().unwrap();
    (o.status.success(), text(&o))
}

#[test]
fn the_kubernetes_manifest_validates_and_its_command_line_is_served() {
    let manifest = repo().join("deploy/kubernetes.yaml");
    let Some(tool) = validator() else { return };
    let (ok, out) = validates(&tool, &manifest);
    assert!(ok, "{out}");
    for kind in ["deployment/joyrt", "service/joyrt", "poddisruptionbudget/joyrt"] {
        assert!(out.contains(&format!("passed for resource {kind}")), "{kind} not validated: {out}");
    }
    // The validator does reject: the same manifest with a misspelt field fails.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let broken = work().join("broken.yaml");
    std::fs::write(&broken, text.replacen("readinessProbe:", "readynessProbe:", 1)).unwrap();
    assert!(!validates(&tool, &broken).0, "a misspelt field passed");

    // The container's args, read by the venv's YAML parser, make a command line serve accepts;
    // the probes are the server's routes.
    let py = tool.with_file_name("python");
    let code = "import json,sys,yaml; d=next(x for x in yaml.safe_load_all(open(sys.argv[1])) if x['kind']=='Deployment'); \
                c=d['spec']['template']['spec']['containers'][0]; print(json.dumps(c))";
    let o = Command::new(py).args(["-c", code]).arg(&manifest).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut args: Vec<String> = containerfile_array("ENTRYPOINT")[2..].to_vec();
    args.extend(c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()));
    serve_accepts(&args, "the manifest");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health/live");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health/ready");
}
