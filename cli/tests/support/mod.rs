//! What the binary-level test files share: a scratch folder per test binary, `joyrt` run with its
//! cache inside that folder, its output as text, and a tiny model made once per test binary.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The test binary's scratch folder, emptied when first asked for.
pub fn work() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let d = std::env::temp_dir().join(format!("joyrt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// `joyrt args…` with the built-in model cached under [`work`].
pub fn joyrt_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_joyrt"));
    c.args(args).env("JOYRT_CACHE_DIR", work().join("cache"));
    c
}

pub fn joyrt(args: &[&str]) -> Output {
    joyrt_cmd(args).output().unwrap()
}

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A tiny model made once per test binary by `joyrt make-model --config tiny`.
pub fn tiny_model() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = work().join("tiny");
        let o = joyrt(&["make-model", "--config", "tiny", "-o", d.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        d
    })
}

/// `to` as a copy of the tree `from`, each file placed by `place(file, destination)`.
fn tree(from: &Path, to: &Path, place: fn(&Path, &Path) -> std::io::Result<()>) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            tree(&e.path(), &t, place);
        } else {
            place(&e.path(), &t).unwrap();
        }
    }
}

/// `to` as a copy of the folder `from`.
pub fn copy_dir(from: &Path, to: &Path) {
    tree(from, to, |f, t| std::fs::copy(f, t).map(|_| ()));
}

/// `to` as a tree of hard links to the files of `from` (for cases that replace, not edit, files).
pub fn link_tree(from: &Path, to: &Path) {
    tree(from, to, |f, t| std::fs::hard_link(f, t));
}

/// Fails on success, and on a panic (exit code 101 or a Rust panic message); the output must
/// contain `expect`.
#[track_caller]
pub fn assert_clean_error(o: &Output, expect: &str) {
    let t = text(o);
    assert!(!o.status.success(), "expected failure: {t}");
    assert_ne!(o.status.code(), Some(101), "panicked: {t}");
    assert!(!t.contains("panicked"), "panicked: {t}");
    assert!(t.contains(expect), "expected {expect:?} in: {t}");
}

/// PSNR in dB of two 8-bit RGB images of one size.
pub fn psnr_rgb8(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let mse = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}
