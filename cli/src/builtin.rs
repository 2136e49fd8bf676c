//! The built-in model used when `joyrt edit` gets no `--model`: the tiny random-weight
//! configuration of the golden fixtures, generated deterministically (seed 0) into a cache folder
//! on first use. It proves the pipeline end to end; it does not edit well.

use crate::make_model::{write_model, ConfigSet};
use anyhow::{Context, Result};
use joyrt_core::image::Buckets;
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::DType;

/// Bump when the generated folder changes, so stale caches are not reused.
const VERSION: &str = "v1";

/// The built-in model folder, written on first use (through a temporary folder and a rename, so
/// an interrupted run never leaves a half-written model behind).
pub fn model_folder() -> Result<ModelFolder> {
    let root = joyrt_core::cache_dir();
    let dir = root.join(format!("builtin-tiny-{VERSION}"));
    if !dir.join("model_index.json").is_file() {
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the cache folder {}", root.display()))?;
        let tmp = root.join(format!(".builtin-tiny-{VERSION}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let made = write_model(&tmp, &ConfigSet::tiny(), 0, DType::BF16, 5_000_000_000, |_| {});
        if let Err(e) =
            made.and_then(|_| std::fs::rename(&tmp, &dir).context("moving the built-in model into place"))
        {
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.join("model_index.json").is_file() {
                return Err(e);
            }
        }
    }
    Ok(ModelFolder::open(&dir)?)
}

/// The built-in model's bucket base: ≈0.06 MP outputs, quick on a CPU.
pub const BASE_SIZE: usize = 256;

/// Buckets of diffusers' generator at `base` pixels, keeping the sizes that are multiples of 32
/// (the vision tower's patch × merge unit; every size of the 1024 table already is).
pub fn buckets_for(base: usize) -> Result<Buckets> {
    if !(128..=4096).contains(&base) || !base.is_multiple_of(64) {
        anyhow::bail!("--base-size must be a multiple of 64 between 128 and 4096, got {base}");
    }
    Ok(Buckets(Buckets::generate(base).0.into_iter().filter(|&(h, w)| h % 32 == 0 && w % 32 == 0).collect()))
}
