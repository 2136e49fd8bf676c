//! The hostile-folder battery (issue 13): two hundred broken copies of the tiny model — absurd
//! config values of every kind, overflowing sums, FIFOs, devices, huge sparse files, folders
//! where files belong, corrupt tokenizers, NaN weights, bad index files, truncated shards — each
//! run through `joyrt info` (with `--check-weights` for poisoned weights) and `joyrt edit` by the
//! built binary under a timeout. Every run must end with a clean error naming the problem: no
//! panic (101), abort (134) or signal, no hang, no success, no output file.
//!
//! Each case is the tiny model with its files hard-linked (a mutated file is replaced, never
//! written through the link), so the cases cost a few MB.

#[path = "hostile/cases.rs"]
mod cases;
#[path = "hostile/mutate.rs"]
mod mutate;

use cases::Case;
use mutate::fifo;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod support;
use support::*;

/// Longest a single `joyrt` run may take: the tiny model's whole one-step edit takes well under
/// a second, so this is only reached by a hang (on a busy machine, with margin).
const TIMEOUT: Duration = Duration::from_secs(20);

/// How one `joyrt` run ended.
struct Run {
    code: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, tag: &str, args: &[&str]) -> Run {
    let (out, err) = (dir.join(format!("{tag}.stdout")), dir.join(format!("{tag}.stderr")));
    let mut child = Command::new(env!("CARGO_BIN_EXE_joyrt"))
        .args(args)
        .env("JOYRT_CACHE_DIR", work().join("cache"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > TIMEOUT {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Run { code: status.code(), timed_out, stdout: read(&out), stderr: read(&err) }
}

/// Why a run is not a clean failure naming `expect`, if it is not.
fn fault(r: &Run, expect: &str) -> Option<String> {
    let all = format!("{}{}", r.stdout, r.stderr);
    let why = if r.timed_out {
        format!("no answer within {TIMEOUT:?}")
    } else if r.code.is_none() {
        "killed by a signal".into()
    } else if r.code == Some(0) {
        "exit 0".into()
    } else if matches!(r.code, Some(101) | Some(134)) || all.contains("panicked") {
        format!("exit {:?} (panic or abort)", r.code)
    } else if !r.stderr.starts_with("error: ") {
        "stderr does not start with `error: `".into()
    } else if r.stderr.lines().count() > 25 {
        format!("a {}-line error", r.stderr.lines().count())
    } else if !all.to_lowercase().contains(&expect.to_lowercase()) {
        format!("the message does not name {expect:?}")
    } else {
        return None;
    };
    let tail: String = all.chars().take(1500).collect();
    Some(format!("{why}:\n{tail}"))
}

fn input_png() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/pipeline/input.png").to_string()
}

fn edit_args<'a>(model: &'a str, out: &'a str, image: &'a str) -> Vec<&'a str> {
    let common = ["--prompt", "p", "--steps", "1", "--base-size", "256", "--backend", "cpu", "--quiet"];
    let mut a = vec!["edit", "--model", model, "--image", image, "-o", out];
    a.extend(common);
    a
}

/// Every case's faults (none when it is handled cleanly).
fn check_case(base: &Path, c: &Case, i: usize) -> Vec<String> {
    let dir = work().join(format!("case-{i:03}"));
    let model = dir.join("model");
    link_tree(base, &model);
    (c.mutate)(&model);
    let m = model.to_str().unwrap();
    let out = dir.join("out.png");
    let image = input_png();
    let mut faults = Vec::new();
    // `--check-weights` only adds the NaN/Inf scan to what `info` reports.
    let mut runs = vec![if c.weights_only {
        ("info --check-weights", run(&dir, "check", &["info", "--check-weights", m]))
    } else {
        ("info", run(&dir, "info", &["info", m]))
    }];
    runs.push(("edit", run(&dir, "edit", &edit_args(m, out.to_str().unwrap(), &image))));
    for (what, r) in runs {
        // An edit cannot name the poisoned tensor; it must point to the scan that does.
        let expect = if c.weights_only && what == "edit" { "info --check-weights" } else { &c.expect };
        if let Some(f) = fault(&r, expect) {
            faults.push(format!("[{}] {what}: {f}", c.name));
        }
    }
    if out.exists() {
        faults.push(format!("[{}] edit left {}", c.name, out.display()));
    }
    if faults.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    faults
}

#[test]
fn every_hostile_folder_gets_a_clean_error() {
    let base = tiny_model();
    // The harness itself: the unmodified copy passes every run and writes its output.
    let ok = work().join("untouched");
    link_tree(base, &ok);
    let out = work().join("untouched.png");
    for args in [
        vec!["info", "--check-weights", ok.to_str().unwrap()],
        edit_args(ok.to_str().unwrap(), out.to_str().unwrap(), &input_png()),
    ] {
        let r = run(&ok, "untouched", &args);
        assert_eq!(r.code, Some(0), "{args:?}: {}{}", r.stdout, r.stderr);
    }
    assert!(out.is_file());

    let cases = cases::all();
    assert!(cases.len() > 100, "only {} cases", cases.len());
    let next = Mutex::new(0usize);
    let faults = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(c) = cases.get(i) else { break };
                let f = check_case(base, c, i);
                faults.lock().unwrap().extend(f);
            });
        }
    });
    let faults = faults.into_inner().unwrap();
    assert!(
        faults.is_empty(),
        "{} of {} cases not handled cleanly:\n{}",
        faults.len(),
        cases.len(),
        faults.join("\n\n")
    );
    for d in [base.as_path(), ok.as_path()] {
        std::fs::remove_dir_all(d).unwrap();
    }
    std::fs::remove_file(out).unwrap();
    // The other test may still be using the folder: the last one out removes it.
    let _ = std::fs::remove_dir(work());
}

#[test]
fn degenerate_flags_are_refused_with_their_range() {
    let dir = work().join("flags");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.png");
    let (o, image) = (out.to_str().unwrap(), input_png());
    let edit = |flag: &'static str, v: &'static str| {
        let mut a = vec!["edit", "--image", &image, "--prompt", "p", "-o", o, "--backend", "cpu", "--quiet"];
        a.extend([flag, v]);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let bench = |flag: &'static str, v: &'static str| {
        ["bench", "--backend", "cpu", flag, v].into_iter().map(String::from).collect::<Vec<_>>()
    };
    let cases = [
        (edit("--shift", "1e-9"), "`shift` = 0.000000001 is outside the allowed range [0.1, 100]"),
        (edit("--shift", "NaN"), "`shift` = NaN"),
        (
            edit("--guidance", "1e30"),
            "`guidance` = 1000000000000000000000000000000 is outside the allowed range [1, 100]",
        ),
        (edit("--guidance", "0.5"), "`guidance` = 0.5"),
        (edit("--steps", "1000000"), "`steps` = 1000000 is outside the allowed range [1, 1000]"),
        (bench("--tokens", "1000000000"), "--tokens must be between 1 and 65536"),
        (bench("--attn-tokens", "0"), "--attn-tokens must be between 1 and 65536"),
        (bench("--text-tokens", "1000000"), "--text-tokens must be between 1 and 4096"),
        (bench("--iters", "1000000000"), "--iters must be between 1 and 1000"),
        (bench("--size", "1000000000"), "--size must be a multiple of 16 between 16 and 4096"),
        (bench("--gemm-shapes", "0x5"), "0x5: K and N must be positive with K·N at most 268435456"),
        (bench("--gemm-shapes", "4096"), "4096: expected KxN, e.g. 4096x12288"),
        (
            bench("--gemm-shapes", "268435456x1"),
            "--tokens 512 with --gemm-shapes 268435456x1: an activation of more than 1073741824 elements",
        ),
    ];
    let fifo_png = dir.join("fifo.png");
    fifo(&fifo_png);
    let image_as = |p: &str| {
        let a = ["edit", "--image", p, "--prompt", "p", "-o", o, "--backend", "cpu", "--quiet"];
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let cases = cases.into_iter().chain([
        (image_as(fifo_png.to_str().unwrap()), "fifo.png is a FIFO"),
        (image_as("/dev/zero"), "/dev/zero is a device"),
        (image_as(dir.to_str().unwrap()), "is a directory"),
    ]);
    for (i, (args, expect)) in cases.enumerate() {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(&dir, &format!("flag-{i}"), &refs);
        if let Some(f) = fault(&r, expect) {
            panic!("{args:?}: {f}");
        }
        assert!(!out.exists(), "{args:?} left an output");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let _ = std::fs::remove_dir_all(work().join("cache"));
    let _ = std::fs::remove_dir(work());
}
