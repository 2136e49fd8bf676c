//! Ways to break a copy of the tiny model. Every mutation removes the hard link before writing,
//! so the shared base model stays intact.

use joyrt_core::weights::{write_safetensors, Checkpoint};
use joyrt_core::{DType, Shape};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn remove(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).unwrap(),
        Ok(_) => std::fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

pub fn replace(p: &Path, bytes: &[u8]) {
    remove(p);
    std::fs::write(p, bytes).unwrap();
}

pub fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Sets the value at the JSON `pointer` (`/a/b`) of the file `rel`.
pub fn set(rel: &'static str, pointer: &str, value: Value) -> impl Fn(&Path) + Send + Sync {
    let pointer = pointer.to_string();
    move |d: &Path| {
        let p = d.join(rel);
        let mut v = read_json(&p);
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let slot = v.pointer_mut(parent).unwrap_or_else(|| panic!("{rel}: no {parent}"));
        slot.as_object_mut().unwrap().insert(key.to_string(), value.clone());
        replace(&p, &serde_json::to_vec_pretty(&v).unwrap());
    }
}

pub fn fifo(p: &Path) {
    remove(p);
    let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
    assert!(ok, "mkfifo {}", p.display());
}

pub fn sparse(p: &Path, len: u64) {
    remove(p);
    std::fs::File::create(p).unwrap().set_len(len).unwrap();
}

/// The first file of `dir` whose path contains `suffix`.
pub fn file_in(dir: &Path, suffix: &str) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(suffix))
        .collect();
    files.sort();
    files.into_iter().next().unwrap_or_else(|| panic!("no *{suffix} in {}", dir.display()))
}

/// Rewrites the safetensors file holding `tensor` in `component`, with `f` applied to that
/// tensor's (dtype, shape, bytes); `None` drops it.
pub fn edit_tensor(
    component: &'static str,
    tensor: &'static str,
    f: impl Fn(DType, Shape, Vec<u8>) -> Option<(DType, Shape, Vec<u8>)> + Send + Sync,
) -> impl Fn(&Path) + Send + Sync {
    move |d: &Path| {
        let dir = d.join(component);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        for file in files {
            let ck = Checkpoint::open(&file).unwrap();
            if ck.info(tensor).is_none() {
                continue;
            }
            let mut tensors = Vec::new();
            for n in ck.names() {
                let (info, bytes) = ck.raw(n).unwrap();
                let stored = info.dtype.float().unwrap();
                if n == tensor {
                    if let Some((dt, shape, b)) = f(stored, info.shape, bytes.to_vec()) {
                        tensors.push((n.to_string(), dt, shape, b));
                    }
                } else {
                    tensors.push((n.to_string(), stored, info.shape, bytes.to_vec()));
                }
            }
            drop(ck);
            remove(&file);
            write_safetensors(&file, &tensors).unwrap();
            return;
        }
        panic!("{component} has no tensor {tensor}");
    }
}

/// Sets every value of a tensor to `v`.
pub fn poison(component: &'static str, tensor: &'static str, v: f32) -> impl Fn(&Path) + Send + Sync {
    edit_tensor(component, tensor, move |dt, shape, _| {
        let b = dt.encode_f32(&vec![v; shape.numel()]);
        Some((dt, shape, b))
    })
}

/// A safetensors file with a hand-written header and `data` bytes.
pub fn raw_safetensors(header: &str, data: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + data, 0);
    out
}
