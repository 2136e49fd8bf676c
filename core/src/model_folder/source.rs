//! Where a model folder's files are read from: the disk (native), or files held in memory (a
//! browser: a generated model, or a folder the visitor picked or the page fetched). The one folder
//! check ([`super::FolderCheck`]) reads through this, so a folder in a page is refused exactly as
//! `joyrt info` would refuse it on disk.

use crate::files::read_capped;
use crate::weights::{ByteSource, Checkpoint, SourceFile};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files of a model folder, by path (the folder's root joined with the relative path).
pub trait FolderFiles {
    /// The contents of the regular file `path`, refused when larger than `cap` bytes.
    fn read(&self, path: &Path, cap: u64) -> Result<Vec<u8>>;
    /// Whether `path` is a folder.
    fn is_dir(&self, path: &Path) -> bool;
    /// Whether anything is at `path`.
    fn exists(&self, path: &Path) -> bool;
}

/// The disk.
pub struct Disk;

impl FolderFiles for Disk {
    fn read(&self, path: &Path, cap: u64) -> Result<Vec<u8>> {
        read_capped(path, cap)
    }
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// A model folder held in memory: the small files (configs, tokenizer) as bytes, and the
/// safetensors files of each network as byte sources, read one tensor at a time when loaded.
#[derive(Default)]
pub struct MemoryFolder {
    files: BTreeMap<PathBuf, Vec<u8>>,
    weights: BTreeMap<String, Vec<SourceFile>>,
}

impl MemoryFolder {
    pub fn new() -> MemoryFolder {
        MemoryFolder::default()
    }

    /// Adds a file at `path` (relative to the folder, e.g. `vae/config.json`). A
    /// `*.safetensors` file under `transformer/`, `vae/` or `text_encoder/` becomes part of that
    /// network's checkpoint (shards need no index: a tensor stored twice is refused); index files
    /// are not needed and are skipped.
    pub fn add(&mut self, path: &str, bytes: Box<dyn ByteSource>) -> Result<()> {
        let rel = Path::new(path);
        let bad = || Error::Input(format!("{path}: not a relative path inside a model folder"));
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(bad());
        }
        if path.ends_with(".safetensors") {
            let component = rel.iter().next().and_then(|c| c.to_str()).ok_or_else(bad)?.to_string();
            self.weights.entry(component).or_default().push((rel.to_path_buf(), bytes));
        } else if !path.ends_with(".safetensors.index.json") {
            let size = bytes.size();
            let all = bytes.read(0, size as usize)?.into_owned();
            self.files.insert(rel.to_path_buf(), all);
        }
        Ok(())
    }

    /// The networks' checkpoints, taken out of the folder (each component folder's files).
    pub(crate) fn take_checkpoints(&mut self, root: &Path) -> Result<WeightFiles> {
        let mut take = |c: &str| {
            let files = self.weights.remove(c).unwrap_or_default();
            if files.is_empty() {
                return Err(Error::Input(format!(
                    "model folder {} has no {c}/*.safetensors",
                    root.display()
                )));
            }
            let files = files.into_iter().map(|(p, b)| (root.join(p), b)).collect();
            Checkpoint::from_sources(&root.join(c), files)
        };
        Ok(WeightFiles::Opened(Arc::new(Networks {
            transformer: take("transformer")?,
            vae: take("vae")?,
            text_encoder: take("text_encoder")?,
        })))
    }
}

/// A view of a [`MemoryFolder`] under the label `root`.
pub(crate) struct InMemory<'a> {
    pub root: &'a Path,
    pub folder: &'a MemoryFolder,
}

impl InMemory<'_> {
    fn rel<'p>(&self, path: &'p Path) -> Option<&'p Path> {
        path.strip_prefix(self.root).ok()
    }
}

impl FolderFiles for InMemory<'_> {
    fn read(&self, path: &Path, cap: u64) -> Result<Vec<u8>> {
        let bytes = self
            .rel(path)
            .and_then(|r| self.folder.files.get(r))
            .ok_or_else(|| Error::Input(format!("{} is missing from the files given", path.display())))?;
        if bytes.len() as u64 > cap {
            return Err(Error::Input(format!(
                "{} is {} bytes, more than the {cap}-byte limit",
                path.display(),
                bytes.len()
            )));
        }
        Ok(bytes.clone())
    }
    fn is_dir(&self, path: &Path) -> bool {
        let Some(rel) = self.rel(path) else { return false };
        let under = |p: &Path| p.starts_with(rel) && p != rel;
        self.folder.files.keys().any(|p| under(p))
            || self.folder.weights.values().flatten().any(|(p, _)| under(p))
    }
    fn exists(&self, path: &Path) -> bool {
        self.rel(path).is_some_and(|r| self.folder.files.contains_key(r)) || self.is_dir(path)
    }
}

/// The three networks' checkpoints, opened by the caller.
pub struct Networks {
    pub transformer: Checkpoint,
    pub vae: Checkpoint,
    pub text_encoder: Checkpoint,
}

/// Where a [`super::ModelFolder`]'s weights are read from.
#[derive(Clone)]
pub enum WeightFiles {
    /// The component folders on disk, opened when a network is loaded.
    Folders,
    /// Checkpoints over files held in memory ([`MemoryFolder`]).
    Opened(Arc<Networks>),
}

impl std::fmt::Debug for WeightFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WeightFiles::Folders => "Folders",
            WeightFiles::Opened(_) => "Opened",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_folder_answers_like_a_disk_folder() {
        let mut m = MemoryFolder::new();
        m.add("vae/config.json", Box::new(b"{}".to_vec())).unwrap();
        m.add("vae/diffusion_pytorch_model.safetensors", Box::new(vec![0u8; 8])).unwrap();
        m.add("vae/diffusion_pytorch_model.safetensors.index.json", Box::new(vec![])).unwrap();
        assert!(m.add("../x.json", Box::new(vec![])).is_err());
        assert!(m.add("/etc/passwd", Box::new(vec![])).is_err());
        let root = Path::new("<page>");
        let v = InMemory { root, folder: &m };
        assert_eq!(v.read(&root.join("vae/config.json"), 10).unwrap(), b"{}");
        assert!(v.read(&root.join("vae/config.json"), 1).unwrap_err().to_string().contains("limit"));
        assert!(v.read(&root.join("vae/x.json"), 10).unwrap_err().to_string().contains("missing"));
        assert!(v.is_dir(&root.join("vae")) && !v.is_dir(&root.join("vae/config.json")));
        assert!(v.exists(&root.join("vae/config.json")) && !v.exists(&root.join("tokenizer")));
        assert!(!v.exists(&root.join("vae/diffusion_pytorch_model.safetensors.index.json")));
    }
}
