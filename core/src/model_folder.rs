//! A model folder in the published diffusers layout (JoyAI-Image-Edit-Diffusers):
//! `model_index.json`, `transformer/`, `vae/`, `text_encoder/`, `tokenizer/`, `processor/`,
//! `scheduler/`. Opening it checks that every part is there and reads the small configs; the
//! weights stay on disk until a component is loaded.

use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The Qwen image processor settings the pipeline needs (`processor/preprocessor_config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessorConfig {
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// Smallest and largest image area the processor accepts without resizing.
    pub min_pixels: usize,
    pub max_pixels: usize,
}

impl Default for ProcessorConfig {
    /// Qwen3-VL's values (model-spec §3.2).
    fn default() -> Self {
        ProcessorConfig {
            patch_size: 16,
            temporal_patch_size: 2,
            merge_size: 2,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
            min_pixels: 65_536,
            max_pixels: 16_777_216,
        }
    }
}

/// The flow-matching scheduler settings (`scheduler/scheduler_config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    pub shift: f32,
}

/// The paths and small configs of a model folder.
#[derive(Clone, Debug)]
pub struct ModelFolder {
    pub root: PathBuf,
    pub transformer: PathBuf,
    pub vae: PathBuf,
    pub text_encoder: PathBuf,
    pub tokenizer_json: PathBuf,
    pub processor: ProcessorConfig,
    pub scheduler: SchedulerConfig,
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::config(path, format!("invalid JSON: {e}")))
}

/// Deserializes the config `v` read from `path`. A `null` value counts as absent (diffusers and
/// transformers write `null` for "the class default"); an error names the file and the key.
pub(crate) fn parse_config<T: DeserializeOwned>(v: &Value, path: &Path) -> Result<T> {
    serde_path_to_error::deserialize(without_nulls(v)).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        Error::config(path, if key == "." { inner.to_string() } else { format!("`{key}`: {inner}") })
    })
}

/// Whether the config sets `key` (present and not `null`), for defaults that depend on other keys.
pub(crate) fn sets(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(_, x)| !x.is_null()).map(|(k, x)| (k.clone(), without_nulls(x))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        x => x.clone(),
    }
}

/// `preprocessor_config.json` as transformers writes it; absent keys take Qwen3-VL's values.
#[derive(Deserialize)]
struct ProcessorFile {
    patch_size: Option<usize>,
    temporal_patch_size: Option<usize>,
    merge_size: Option<usize>,
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
    /// Newer processors give the pixel range here, older ones as `min_pixels`/`max_pixels`.
    size: Option<PixelRange>,
    min_pixels: Option<usize>,
    max_pixels: Option<usize>,
}

#[derive(Deserialize)]
struct PixelRange {
    shortest_edge: Option<usize>,
    longest_edge: Option<usize>,
}

impl ProcessorConfig {
    /// Reads the image-processor settings from a processor folder (`preprocessor_config.json`, or
    /// the `image_processor` entry of `processor_config.json`). Missing keys take Qwen3-VL's values.
    pub fn from_dir(dir: &Path) -> Result<ProcessorConfig> {
        let pre = dir.join("preprocessor_config.json");
        let path = if pre.is_file() { pre } else { dir.join("processor_config.json") };
        // transformers 5 nests the image processor's settings in `processor_config.json`.
        let v = read_json(&path)?;
        let f: ProcessorFile = parse_config(v.get("image_processor").unwrap_or(&v), &path)?;
        let d = ProcessorConfig::default();
        let size = f.size.unwrap_or(PixelRange { shortest_edge: None, longest_edge: None });
        let cfg = ProcessorConfig {
            patch_size: f.patch_size.unwrap_or(d.patch_size),
            temporal_patch_size: f.temporal_patch_size.unwrap_or(d.temporal_patch_size),
            merge_size: f.merge_size.unwrap_or(d.merge_size),
            image_mean: f.image_mean.unwrap_or(d.image_mean),
            image_std: f.image_std.unwrap_or(d.image_std),
            min_pixels: size.shortest_edge.or(f.min_pixels).unwrap_or(d.min_pixels),
            max_pixels: size.longest_edge.or(f.max_pixels).unwrap_or(d.max_pixels),
        };
        if cfg.patch_size == 0 || cfg.merge_size == 0 || cfg.temporal_patch_size == 0 {
            return Err(Error::config(
                &path,
                "patch_size, merge_size and temporal_patch_size must be positive",
            ));
        }
        if cfg.image_std.contains(&0.0) {
            return Err(Error::config(&path, "image_std must not contain 0"));
        }
        Ok(cfg)
    }
}

/// `scheduler_config.json` (`FlowMatchEulerDiscreteScheduler`): the keys joyrt reads or refuses.
#[derive(Deserialize)]
struct SchedulerFile {
    shift: Option<f32>,
    use_dynamic_shifting: Option<bool>,
    num_train_timesteps: Option<usize>,
}

impl SchedulerConfig {
    pub fn from_file(path: &Path) -> Result<SchedulerConfig> {
        let f: SchedulerFile = parse_config(&read_json(path)?, path)?;
        if f.use_dynamic_shifting == Some(true) {
            return Err(Error::config(
                path,
                "use_dynamic_shifting = true is not supported (JoyAI uses a fixed shift)",
            ));
        }
        if let Some(n) = f.num_train_timesteps {
            if n != crate::scheduler::NUM_TRAIN_TIMESTEPS {
                return Err(Error::config(
                    path,
                    format!("num_train_timesteps = {n}; only 1000 is supported"),
                ));
            }
        }
        let shift = f.shift.unwrap_or(1.0);
        if !(shift > 0.0 && shift.is_finite()) {
            return Err(Error::config(path, format!("shift must be a positive number, got {shift}")));
        }
        Ok(SchedulerConfig { shift })
    }
}

impl ModelFolder {
    /// Opens a model folder, naming the first missing part in the error.
    pub fn open(root: &Path) -> Result<ModelFolder> {
        if !root.is_dir() {
            return Err(Error::Input(format!(
                "model folder {} does not exist (expected the JoyAI-Image-Edit-Diffusers layout)",
                root.display()
            )));
        }
        let index = root.join("model_index.json");
        let v = read_json(&index)?;
        for part in ["transformer", "vae", "text_encoder", "tokenizer", "scheduler"] {
            if v.get(part).is_none() {
                return Err(Error::config(&index, format!("no `{part}` component listed")));
            }
        }
        let dir = |name: &str| -> Result<PathBuf> {
            let d = root.join(name);
            if d.is_dir() {
                Ok(d)
            } else {
                Err(Error::Input(format!("model folder {} has no {name}/ folder", root.display())))
            }
        };
        let tokenizer_json = dir("tokenizer")?.join("tokenizer.json");
        if !tokenizer_json.is_file() {
            return Err(Error::Input(format!("{} is missing", tokenizer_json.display())));
        }
        let processor_dir = root.join("processor");
        let processor = if processor_dir.is_dir() {
            ProcessorConfig::from_dir(&processor_dir)?
        } else {
            ProcessorConfig::default()
        };
        Ok(ModelFolder {
            transformer: dir("transformer")?,
            vae: dir("vae")?,
            text_encoder: dir("text_encoder")?,
            scheduler: SchedulerConfig::from_file(&dir("scheduler")?.join("scheduler_config.json"))?,
            tokenizer_json,
            processor,
            root: root.to_path_buf(),
        })
    }
}
