//! Reading input images, checking the output path before any compute, and writing the output
//! image atomically.

use anyhow::{bail, Context, Result};
use joyrt_core::image::RgbImage;
use std::path::Path;

/// Largest input image file: 1 GiB, more than an uncompressed 16k × 16k RGB PNG.
const MAX_IMAGE_BYTES: u64 = 1 << 30;

/// Reads and decodes a PNG or JPEG file into 8-bit RGB (see [`RgbImage::decode`]).
pub fn read_image(path: &Path) -> Result<RgbImage> {
    // Only a regular file, capped: a FIFO would block and /dev/zero never end.
    let bytes = joyrt_core::files::read_capped(path, MAX_IMAGE_BYTES)
        .with_context(|| format!("cannot read input image {}", path.display()))?;
    Ok(RgbImage::decode(&bytes, &path.display().to_string())?)
}

/// The folder a file path lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Refuses an output path that the run could not, or should not, write, so that a bad `-o` fails
/// in milliseconds instead of after minutes of compute: not a `.png`, a folder, the input image
/// itself, an existing file (unless `overwrite`), a read-only or special file, a folder that does
/// not exist or that this process cannot create files in.
pub fn check_output_png(output: &Path, input: &Path, overwrite: bool) -> Result<()> {
    let shown = output.display();
    if output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() != Some("png") {
        bail!("the output must be a .png file, got {shown}");
    }
    if output.file_name().is_none() {
        bail!("the output {shown} has no file name");
    }
    let dir = parent_dir(output);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("the output folder {} is not a folder", dir.display()),
        Err(_) => bail!("the output folder {} does not exist", dir.display()),
    }
    match std::fs::metadata(output) {
        Ok(m) => {
            if m.is_dir() {
                bail!("the output {shown} is a folder; give the path of a .png file");
            }
            if same_file(output, input) {
                bail!("the output {shown} is the input image; write the result to another file");
            }
            if !m.is_file() {
                bail!("the output {shown} exists and is not a regular file");
            }
            if !overwrite {
                bail!("the output {shown} already exists; pass --overwrite to replace it");
            }
            if m.permissions().readonly() {
                bail!("the output {shown} is read-only; joyrt does not replace read-only files");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot check the output {shown}: {e}"),
    }
    probe_writable(dir)
}

/// Whether `a` and `b` name the same existing file (through links, `..`, or another spelling).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Fails unless this process can create a file in `dir` (permissions, a read-only mount, a full
/// quota of inodes): creates and removes an empty probe file.
pub fn probe_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".joyrt-write-probe.{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("cannot create files in the output folder {}", dir.display()))?;
    std::fs::remove_file(&probe).with_context(|| format!("cannot remove the probe file {}", probe.display()))
}

/// Writes `img` as PNG to `path` through a temporary file in the same folder, so a failure never
/// leaves a partial file at `path`. Without `overwrite` a file that appeared at `path` meanwhile
/// is left alone and the write fails.
pub fn write_png_atomic(img: &RgbImage, path: &Path, overwrite: bool) -> Result<()> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        bail!("the output folder {} does not exist", dir.display());
    }
    let name =
        path.file_name().with_context(|| format!("output path {} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<()> {
        let buf = image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data.clone())
            .context("image buffer size mismatch")?;
        buf.save_with_format(&tmp, image::ImageFormat::Png)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        if overwrite {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot move the result to {}", path.display()))
        } else {
            publish_no_clobber(&tmp, path)
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Gives `tmp` the name `path` unless `path` exists. A hard link does this atomically; where the
/// file system has no hard links, an existence check and a rename come close.
fn publish_no_clobber(tmp: &Path, path: &Path) -> Result<()> {
    let exists = || anyhow::anyhow!("{} appeared while joyrt was running; not replaced", path.display());
    match std::fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(_) if path.symlink_metadata().is_ok() => Err(exists()),
        Err(_) => std::fs::rename(tmp, path)
            .with_context(|| format!("cannot move the result to {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("joyrt-output-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn png_roundtrip_and_no_partial_file_on_error() {
        let dir = scratch("roundtrip");
        let img = RgbImage::new(9, 8, (0..9 * 8 * 3).map(|v| v as u8).collect()).unwrap();
        let p = dir.join("a.png");
        write_png_atomic(&img, &p, false).unwrap();
        assert_eq!(read_image(&p).unwrap(), img);
        let e = write_png_atomic(&img, &p, false).unwrap_err();
        assert!(format!("{e:#}").contains("appeared while joyrt was running"), "{e:#}");
        write_png_atomic(&img, &p, true).unwrap();
        let bad = dir.join("missing-folder").join("b.png");
        assert!(write_png_atomic(&img, &bad, true).is_err());
        assert!(!bad.exists());
        std::fs::write(dir.join("not.png"), b"hello").unwrap();
        let e = read_image(&dir.join("not.png")).unwrap_err();
        assert!(format!("{e:#}").contains("not a PNG or JPEG"), "{e:#}");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "temporary files left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn output_checks_name_each_problem() {
        let dir = scratch("checks");
        let input = dir.join("in.png");
        std::fs::write(&input, b"x").unwrap();
        let err = |out: &Path, overwrite: bool| {
            check_output_png(out, &input, overwrite)
                .map(|_| String::new())
                .unwrap_or_else(|e| format!("{e:#}"))
        };
        assert_eq!(err(&dir.join("new.png"), false), "");
        assert!(err(&dir.join("new.jpg"), false).contains("must be a .png"));
        assert!(err(&dir.join("nope").join("x.png"), false).contains("does not exist"));
        assert!(err(&input, true).contains("is the input image"));
        let other = dir.join("sub").join("..").join("in.png");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        assert!(err(&other, true).contains("is the input image"), "another spelling of the input");
        let existing = dir.join("old.png");
        std::fs::write(&existing, b"y").unwrap();
        assert!(err(&existing, false).contains("--overwrite"));
        assert_eq!(err(&existing, true), "");
        let mut perm = std::fs::metadata(&existing).unwrap().permissions();
        perm.set_readonly(true);
        std::fs::set_permissions(&existing, perm).unwrap();
        assert!(err(&existing, true).contains("read-only"));
        let folder = dir.join("folder.png");
        std::fs::create_dir_all(&folder).unwrap();
        assert!(err(&folder, true).contains("is a folder"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&input, dir.join("link.png")).unwrap();
            assert!(err(&dir.join("link.png"), true).contains("is the input image"));
        }
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!left.iter().any(|n| n.to_string_lossy().contains("probe")), "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
