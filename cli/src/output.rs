//! Reading input images and writing output images atomically.

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

/// Writes `img` as PNG to `path` through a temporary file in the same folder and a rename, so a
/// failure never leaves a partial file at `path`.
pub fn write_png_atomic(img: &RgbImage, path: &Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("output folder {} does not exist", dir.display());
    }
    let name =
        path.file_name().with_context(|| format!("output path {} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<()> {
        let buf = image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data.clone())
            .context("image buffer size mismatch")?;
        buf.save_with_format(&tmp, image::ImageFormat::Png)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move the result to {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_roundtrip_and_no_partial_file_on_error() {
        let dir = std::env::temp_dir().join(format!("joyrt-output-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = RgbImage::new(9, 8, (0..9 * 8 * 3).map(|v| v as u8).collect()).unwrap();
        let p = dir.join("a.png");
        write_png_atomic(&img, &p).unwrap();
        assert_eq!(read_image(&p).unwrap(), img);
        let bad = dir.join("missing-folder").join("b.png");
        assert!(write_png_atomic(&img, &bad).is_err());
        assert!(!bad.exists());
        std::fs::write(dir.join("not.png"), b"hello").unwrap();
        let e = read_image(&dir.join("not.png")).unwrap_err();
        assert!(format!("{e:#}").contains("not a PNG or JPEG"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
