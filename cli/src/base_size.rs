//! The base size of the resolution buckets: the `--base-size` range, and the default a model
//! folder may carry for itself.
//!
//! The published model works at diffusers' 1024 base (≈1 MP outputs). A tiny random-weight model
//! made by `joyrt make-model` has nothing in its configs that says what resolution it is for, and
//! at 1024 a CPU run of it takes minutes for nothing, so `make-model` writes a default base into
//! the folder's [`DEFAULTS_FILE`], which `joyrt edit` uses when `--base-size` is not given.

use anyhow::{bail, Context, Result};
use joyrt_core::image::Buckets;
use std::path::Path;

/// joyrt's own per-folder defaults, at the root of a model folder (diffusers ignores it).
pub const DEFAULTS_FILE: &str = "joyrt.json";

/// The base of the tiny configuration (≈0.06 MP outputs, seconds on a CPU).
pub const TINY: usize = 256;

/// The `--base-size` range; the help text says the same.
pub const MIN: usize = 128;
pub const MAX: usize = 4096;
pub const MULTIPLE: usize = 64;

/// The longest `joyrt.json` read: it holds one number.
const MAX_DEFAULTS_BYTES: u64 = 64 * 1024;

/// [`Buckets::vision_aligned`] at `base` pixels, the base checked.
pub fn buckets_for(base: usize) -> Result<Buckets> {
    if !(MIN..=MAX).contains(&base) || !base.is_multiple_of(MULTIPLE) {
        bail!("--base-size must be a multiple of {MULTIPLE} between {MIN} and {MAX}, got {base}");
    }
    Ok(Buckets::vision_aligned(base))
}

/// Writes `base` as the default base size of the model folder `dir`.
pub fn write_default(dir: &Path, base: usize) -> Result<()> {
    buckets_for(base)?;
    let path = dir.join(DEFAULTS_FILE);
    let text = serde_json::to_string_pretty(&serde_json::json!({ "default_base_size": base }))?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The default base size stored in the model folder `dir`, if it has one.
pub fn folder_default(dir: &Path) -> Result<Option<usize>> {
    let path = dir.join(DEFAULTS_FILE);
    let shown = path.display();
    let meta = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("cannot read {shown}: {e}"),
        Ok(m) => m,
    };
    if !meta.is_file() || meta.len() > MAX_DEFAULTS_BYTES {
        bail!("{shown} is not a regular file of at most {MAX_DEFAULTS_BYTES} bytes");
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {shown}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{shown} is not valid JSON"))?;
    let Some(base) = v.get("default_base_size") else { return Ok(None) };
    let base = base
        .as_u64()
        .and_then(|b| usize::try_from(b).ok())
        .with_context(|| format!("{shown}: `default_base_size` must be a whole number, got {base}"))?;
    buckets_for(base).with_context(|| format!("{shown}: `default_base_size`"))?;
    Ok(Some(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_and_folder_default() {
        assert!(buckets_for(TINY).is_ok());
        for bad in [MIN - MULTIPLE, MAX + MULTIPLE, 300] {
            assert!(format!("{:#}", buckets_for(bad).unwrap_err()).contains("multiple of 64"));
        }
        let dir = std::env::temp_dir().join(format!("joyrt-base-size-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(folder_default(&dir).unwrap(), None);
        write_default(&dir, 512).unwrap();
        assert_eq!(folder_default(&dir).unwrap(), Some(512));
        std::fs::write(dir.join(DEFAULTS_FILE), r#"{"default_base_size": 100}"#).unwrap();
        let e = format!("{:#}", folder_default(&dir).unwrap_err());
        assert!(e.contains("joyrt.json") && e.contains("got 100"), "{e}");
        std::fs::write(dir.join(DEFAULTS_FILE), r#"{"default_base_size": -1}"#).unwrap();
        assert!(format!("{:#}", folder_default(&dir).unwrap_err()).contains("whole number"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
