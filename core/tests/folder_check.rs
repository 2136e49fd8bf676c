//! `FolderCheck`, the one validation of a model folder: all problems at once, across components,
//! and `ModelFolder::open` refusing exactly what it reports.

use joyrt_core::model_folder::{FolderCheck, ModelFolder};
use joyrt_core::Error;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_model")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of the tiny model with `key` of the JSON file `rel` set to `v`.
fn set(dir: &Path, rel: &str, key: &str, v: Value) {
    let p = dir.join(rel);
    let mut json: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    json[key] = v;
    std::fs::write(&p, json.to_string()).unwrap();
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("joyrt-folder-check-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    copy_dir(&fixture(), &d);
    d
}

#[test]
fn the_tiny_model_has_no_problems() {
    let check = FolderCheck::run(&fixture()).unwrap();
    assert_eq!(check.problems(), Vec::<String>::new());
    let folder = check.into_folder().unwrap();
    assert_eq!(folder.configs.transformer.text_dim, folder.configs.text_encoder.hidden_size);
}

#[test]
fn every_problem_is_reported_at_once_and_open_refuses_them() {
    let d = scratch("many");
    std::fs::remove_dir_all(d.join("processor")).unwrap();
    set(&d, "scheduler/scheduler_config.json", "shift", 0.0.into());
    set(&d, "model_index.json", "vae", 5.into());
    let problems = FolderCheck::run(&d).unwrap().problems();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    let e = ModelFolder::open(&d).unwrap_err();
    let Error::Folder { problems: listed, .. } = &e else { panic!("{e}") };
    assert_eq!(listed, &problems);
    for part in ["has no processor/ folder", "`shift` = 0", "`vae` is not a [library, class] pair"] {
        assert!(e.to_string().contains(part), "{part} missing in {e}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn components_that_disagree_are_refused_by_name() {
    let d = scratch("cross");
    set(&d, "transformer/config.json", "text_dim", 32.into());
    let e = ModelFolder::open(&d).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("`text_dim` 32") && msg.contains("transformer/config.json"), "{msg}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_being_opened() {
    let d = scratch("fifo");
    let index = d.join("model_index.json");
    std::fs::remove_file(&index).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&index).status().unwrap().success());
    // Opening the FIFO for reading would block this test forever.
    let e = ModelFolder::open(&d).unwrap_err().to_string();
    assert!(e.contains("model_index.json is a FIFO"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}
