//! The built-in model used when `joyrt edit` gets no `--model`: the tiny random-weight
//! configuration of the golden fixtures, generated deterministically (seed 0) into a cache folder
//! on first use. It proves the pipeline end to end; it does not edit well.

use crate::make_model::{write_model, ConfigSet};
use anyhow::{Context, Result};
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::DType;
use std::path::Path;

/// Bump when the generated folder changes, so stale caches are not reused (v2: `joyrt.json`
/// with the tiny model's default base size).
const VERSION: &str = "v2";

/// The built-in model folder, written on first use (through a temporary folder and a rename, so
/// an interrupted run never leaves a half-written model behind).
pub fn model_folder() -> Result<ModelFolder> {
    let root = joyrt_core::cache_dir();
    let dir = root.join(format!("builtin-tiny-{VERSION}"));
    if !dir.join("model_index.json").is_file() {
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the cache folder {}", root.display()))?;
        let made = crate::staged_folder::write_folder(&dir, false, |tmp| {
            write_model(tmp, &ConfigSet::tiny(), 0, DType::BF16, 5_000_000_000, |_| {})
        });
        // Another joyrt may have written it meanwhile.
        if let Err(e) = made {
            if !dir.join("model_index.json").is_file() {
                return Err(e.context(reset_hint(&dir)));
            }
        }
    }
    ModelFolder::open(&dir).map_err(|e| anyhow::Error::new(e).context(reset_hint(&dir)))
}

/// What to do when the cached built-in model is unusable.
pub fn reset_hint(dir: &Path) -> String {
    format!(
        "the built-in model cached at {0} is unusable; remove that folder (rm -r '{0}') and joyrt \
         writes it again on the next run",
        dir.display()
    )
}

/// Adds [`reset_hint`] to an error of the pipeline that comes from the model's files (a corrupt
/// shard, a changed config), so a damaged cache says how to reset it.
pub fn explain_model_error(e: joyrt_core::Error, dir: &Path) -> anyhow::Error {
    use joyrt_core::Error as E;
    let from_files = matches!(e, E::Io { .. } | E::Safetensors { .. } | E::Weights { .. } | E::Config { .. });
    let e = anyhow::Error::new(e);
    if from_files {
        e.context(reset_hint(dir))
    } else {
        e
    }
}
