//! `--model ORG/NAME[@REVISION]`: a model already in the Hugging Face cache (downloaded by
//! diffusers, `huggingface-cli` or `hf download`), used in place. The cache layout is
//! huggingface_hub's: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`
//! (`XDG_CACHE_HOME` honoured); a repository is `models--ORG--NAME/`, its revisions
//! `snapshots/<commit>/` and its branches `refs/<branch>` (a file holding the commit). A revision
//! already there is used as it is, with no request; one that is not is downloaded
//! (`hf_download.rs`), unless `HF_HUB_OFFLINE` is set, where it is an error that says so.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The model folder `arg` names: itself when it is an existing folder (or does not look like a
/// repository id), else the snapshot of the repository id in the Hugging Face cache.
pub fn resolve(arg: &Path) -> Result<PathBuf> {
    if arg.is_dir() {
        return Ok(arg.to_path_buf());
    }
    match arg.to_str().and_then(RepoId::parse) {
        Some(id) => {
            let cache = hub_cache()?;
            match id.snapshot(&cache) {
                Ok(snapshot) => Ok(snapshot),
                Err(e) if crate::hf_download::offline() => Err(e),
                Err(_) => crate::hf_download::download(&id.repo, &id.revision, &cache),
            }
        }
        None => Ok(arg.to_path_buf()),
    }
}

/// The id a served model is listed under: the repository id, or the folder's name.
pub fn model_id(arg: &Path) -> Option<String> {
    if !arg.is_dir() {
        if let Some(id) = arg.to_str().and_then(RepoId::parse) {
            return Some(id.repo);
        }
    }
    arg.canonicalize().ok()?.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// `ORG/NAME` and an optional `@REVISION` (a branch or a commit; default `main`).
#[derive(Debug, PartialEq)]
struct RepoId {
    repo: String,
    revision: String,
}

impl RepoId {
    fn parse(s: &str) -> Option<RepoId> {
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (s, "main"),
        };
        let (org, name) = repo.split_once('/')?;
        let part = |p: &str| {
            !p.is_empty()
                && !p.starts_with(['.', '-'])
                && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let rev_ok = !revision.is_empty()
            && !revision.split('/').any(|p| p.is_empty() || p == "." || p == "..")
            && revision.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        (part(org) && part(name) && rev_ok)
            .then(|| RepoId { repo: repo.to_string(), revision: revision.to_string() })
    }

    /// The snapshot folder of this revision under the hub cache `cache`.
    fn snapshot(&self, cache: &Path) -> Result<PathBuf> {
        let dir = cache.join(format!("models--{}", self.repo.replace('/', "--")));
        // Only reached as an error when HF_HUB_OFFLINE forbids the download.
        let how = format!(
            "HF_HUB_OFFLINE is set, so joyrt does not download it: unset HF_HUB_OFFLINE, or download it with \
             `huggingface-cli download {}{}` (or set HF_HUB_CACHE / HF_HOME), or give a model folder",
            self.repo,
            if self.revision == "main" { String::new() } else { format!(" --revision {}", self.revision) }
        );
        if !dir.is_dir() {
            bail!("the model {} is not in the Hugging Face cache {}: {how}", self.repo, cache.display());
        }
        let ref_file = dir.join("refs").join(&self.revision);
        let commit = if ref_file.is_file() {
            let text = std::fs::read_to_string(&ref_file)
                .with_context(|| format!("cannot read {}", ref_file.display()))?;
            text.trim().to_string()
        } else {
            self.revision.clone()
        };
        if commit.is_empty() || commit.contains(['/', '\\']) || commit.starts_with('.') {
            bail!("{} does not hold a commit id", ref_file.display());
        }
        let snap = dir.join("snapshots").join(&commit);
        if !snap.is_dir() {
            bail!(
                "the Hugging Face cache has no snapshot of {} at revision {} ({} is missing): {how}",
                self.repo,
                self.revision,
                snap.display()
            );
        }
        Ok(snap)
    }
}

/// huggingface_hub's hub cache folder.
fn hub_cache() -> Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return Ok(p);
    }
    if let Some(home) = var("HF_HOME") {
        return Ok(home.join("hub"));
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .context("cannot find the Hugging Face cache: set HF_HUB_CACHE or HF_HOME")?;
    Ok(cache.join("huggingface").join("hub"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_paths_are_told_apart() {
        let id = |s: &str| RepoId::parse(s);
        assert_eq!(
            id("jdopensource/JoyAI-Image-Edit-Diffusers"),
            Some(RepoId { repo: "jdopensource/JoyAI-Image-Edit-Diffusers".into(), revision: "main".into() })
        );
        assert_eq!(id("a/b@v1.0").unwrap().revision, "v1.0");
        for not in ["model", "./a/b", "/abs/a", "a/b/c", "../b", "a/.b", "a/b@", "a/b@../x", "a b/c"] {
            assert_eq!(id(not), None, "{not}");
        }
    }

    #[test]
    fn snapshots_are_found_by_branch_and_by_commit() {
        let cache = std::env::temp_dir().join(format!("joyrt-hf-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let repo = cache.join("models--org--name");
        std::fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        let find = |s: &str| RepoId::parse(s).unwrap().snapshot(&cache);
        assert_eq!(find("org/name").unwrap(), repo.join("snapshots/abc123"));
        assert_eq!(find("org/name@abc123").unwrap(), repo.join("snapshots/abc123"));
        let e = format!("{:#}", find("org/name@dev").unwrap_err());
        assert!(e.contains("no snapshot") && e.contains("--revision dev"), "{e}");
        let e = format!("{:#}", find("org/other").unwrap_err());
        assert!(
            e.contains("not in the Hugging Face cache") && e.contains("huggingface-cli download org/other"),
            "{e}"
        );
        std::fs::write(repo.join("refs/main"), "../../x").unwrap();
        assert!(format!("{:#}", find("org/name").unwrap_err()).contains("does not hold a commit id"));
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
