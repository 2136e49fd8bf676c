//! Writing a whole folder so that a failure leaves nothing half-made: the content goes into a
//! hidden temporary sibling of the destination, which takes the destination's name only once
//! complete.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What is at a destination path now.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    Absent,
    EmptyFolder,
    NonEmptyFolder,
    NotAFolder,
}

fn destination(dest: &Path) -> Result<Destination> {
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Destination::Absent),
        Err(e) => bail!("cannot check {}: {e}", dest.display()),
        Ok(m) if !m.is_dir() => Ok(Destination::NotAFolder),
        Ok(_) => {
            let mut entries =
                std::fs::read_dir(dest).with_context(|| format!("cannot list {}", dest.display()))?;
            Ok(if entries.next().is_some() { Destination::NonEmptyFolder } else { Destination::EmptyFolder })
        }
    }
}

/// The hidden sibling `dest` is staged in, or moved aside to while being replaced.
fn sibling(dest: &Path, role: &str) -> Result<PathBuf> {
    let name =
        dest.file_name().with_context(|| format!("{} does not end in a folder name", dest.display()))?;
    let parent = crate::output::parent_dir(dest);
    Ok(parent.join(format!(".{}.joyrt-{role}-{}", name.to_string_lossy(), std::process::id())))
}

/// Runs `fill` on an empty temporary folder next to `dest`, then moves that folder to `dest`.
/// `dest` may be absent or an empty folder; a non-empty folder is replaced only with `overwrite`
/// (and only once the new content is complete). On any error the temporary folder is removed and
/// `dest` is as it was.
pub fn write_folder<T>(dest: &Path, overwrite: bool, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let shown = dest.display();
    match destination(dest)? {
        Destination::NotAFolder => bail!("{shown} exists and is not a folder"),
        Destination::NonEmptyFolder if !overwrite => {
            bail!("{shown} exists and is not empty; choose a new folder or pass --overwrite")
        }
        _ => {}
    }
    let parent = crate::output::parent_dir(dest);
    if !parent.is_dir() {
        bail!("the folder {} does not exist", parent.display());
    }
    let tmp = sibling(dest, "tmp")?;
    // A leftover of this same process id can only be from an earlier, killed run.
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create a folder in {}", parent.display()))?;
    let result = fill(&tmp).and_then(|v| move_into_place(&tmp, dest).map(|()| v));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Moves the complete folder `tmp` to `dest`, replacing what is there; if that fails, what was at
/// `dest` is put back.
fn move_into_place(tmp: &Path, dest: &Path) -> Result<()> {
    let moved = |r: std::io::Result<()>| {
        r.with_context(|| format!("cannot move the new folder to {}", dest.display()))
    };
    if destination(dest)? == Destination::Absent {
        return moved(std::fs::rename(tmp, dest));
    }
    let old = sibling(dest, "old")?;
    std::fs::rename(dest, &old).with_context(|| format!("cannot move the old {} aside", dest.display()))?;
    if let Err(e) = moved(std::fs::rename(tmp, dest)) {
        let _ = std::fs::rename(&old, dest);
        return Err(e);
    }
    std::fs::remove_dir_all(&old).with_context(|| {
        format!(
            "{} is complete, but its old content could not be removed from {}",
            dest.display(),
            old.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("joyrt-staged-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        v.sort();
        v
    }

    fn fill_ok(d: &Path) -> Result<()> {
        std::fs::write(d.join("new.txt"), b"new")?;
        Ok(())
    }

    #[test]
    fn a_failure_leaves_nothing_and_success_leaves_only_the_folder() {
        let dir = scratch("fail");
        let dest = dir.join("model");
        let e = write_folder(&dest, false, |d| -> Result<()> {
            std::fs::write(d.join("half.txt"), b"x")?;
            bail!("generation failed")
        })
        .unwrap_err();
        assert_eq!(format!("{e:#}"), "generation failed");
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        write_folder(&dest, false, fill_ok).unwrap();
        assert_eq!(names(&dir), ["model"]);
        assert_eq!(names(&dest), ["new.txt"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_folder_is_replaced_only_with_overwrite_and_only_on_success() {
        let dir = scratch("overwrite");
        let dest = dir.join("model");
        std::fs::create_dir(&dest).unwrap();
        write_folder(&dest, false, fill_ok).unwrap(); // an empty folder may be filled
        std::fs::write(dest.join("old.txt"), b"old").unwrap();
        let e = write_folder(&dest, false, fill_ok).unwrap_err();
        assert!(format!("{e:#}").contains("--overwrite"), "{e:#}");
        let e = write_folder(&dest, true, |_| -> Result<()> { bail!("boom") }).unwrap_err();
        assert_eq!(format!("{e:#}"), "boom");
        assert_eq!(names(&dest), ["new.txt", "old.txt"], "a failed overwrite keeps the old content");
        write_folder(&dest, true, fill_ok).unwrap();
        assert_eq!(names(&dest), ["new.txt"]);
        assert_eq!(names(&dir), ["model"]);
        std::fs::write(dir.join("file"), b"f").unwrap();
        let e = write_folder(&dir.join("file"), true, fill_ok).unwrap_err();
        assert!(format!("{e:#}").contains("not a folder"), "{e:#}");
        let e = write_folder(&dir.join("no/such/x"), false, fill_ok).unwrap_err();
        assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
