//! A model folder in the published diffusers layout (JoyAI-Image-Edit-Diffusers):
//! `model_index.json`, `transformer/`, `vae/`, `text_encoder/`, `tokenizer/`, `processor/`,
//! `scheduler/`. Opening it checks that every part is there and reads and validates the configs
//! and the tokenizer ([`FolderCheck`], shared with `joyrt info`); the weights stay on disk until a
//! component is loaded.

mod check;
mod source;
pub use check::FolderCheck;
pub use source::{Disk, FolderFiles, MemoryFolder, Networks, WeightFiles};

use crate::files::MAX_CONFIG_BYTES;
use crate::limits::{all_in_range, in_range, positive, IMAGE_MEAN, IMAGE_STD, MAX_MERGE, MAX_PATCH};
use crate::limits::{MAX_PIXELS, MAX_TEMPORAL_PATCH, SHIFT};
use crate::models::dit::DitConfig;
use crate::models::qwen::QwenConfig;
use crate::models::vae::VaeConfig;
use crate::prompt::PromptTokenizer;
use crate::weights::Checkpoint;
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

/// The paths of a model folder and everything read from it before any weight: the validated
/// configs of the three networks, the tokenizer, the processor and scheduler settings.
#[derive(Clone, Debug)]
pub struct ModelFolder {
    pub root: PathBuf,
    pub transformer: PathBuf,
    pub vae: PathBuf,
    pub text_encoder: PathBuf,
    pub configs: Configs,
    pub tokenizer: PromptTokenizer,
    pub processor: ProcessorConfig,
    pub scheduler: SchedulerConfig,
    /// Where the networks' weights are read from (the component folders, or files in memory).
    pub weights: WeightFiles,
}

/// One of the three networks of a model folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    Transformer,
    Vae,
    TextEncoder,
}

/// The validated configs of the three networks.
#[derive(Clone, Debug)]
pub struct Configs {
    pub transformer: DitConfig,
    pub vae: VaeConfig,
    pub text_encoder: QwenConfig,
}

/// A config or index JSON file (a regular file of at most [`MAX_CONFIG_BYTES`]).
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    read_json_in(&Disk, path)
}

/// [`read_json`] from `files`.
pub(crate) fn read_json_in(files: &dyn FolderFiles, path: &Path) -> Result<Value> {
    let bytes = files.read(path, MAX_CONFIG_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::config(path, format!("invalid JSON: {e}")))
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
        Self::from_dir_in(&Disk, dir)
    }

    /// [`ProcessorConfig::from_dir`] from `files`.
    pub fn from_dir_in(files: &dyn FolderFiles, dir: &Path) -> Result<ProcessorConfig> {
        let pre = dir.join("preprocessor_config.json");
        // `exists`, not `is_file`: a FIFO or folder under this name is refused by name when read.
        let path = if files.exists(&pre) { pre } else { dir.join("processor_config.json") };
        if !files.exists(&path) {
            return Err(Error::Input(format!(
                "{} holds neither preprocessor_config.json nor processor_config.json",
                dir.display()
            )));
        }
        // transformers 5 nests the image processor's settings in `processor_config.json`.
        let v = read_json_in(files, &path)?;
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
        cfg.validate().map_err(|m| Error::config(&path, m))?;
        Ok(cfg)
    }
}

impl ProcessorConfig {
    /// Every value in its range ([`crate::limits`]).
    fn validate(&self) -> std::result::Result<(), String> {
        positive("patch_size", self.patch_size, MAX_PATCH)?;
        positive("temporal_patch_size", self.temporal_patch_size, MAX_TEMPORAL_PATCH)?;
        positive("merge_size", self.merge_size, MAX_MERGE)?;
        all_in_range("image_mean", &self.image_mean, IMAGE_MEAN)?;
        all_in_range("image_std", &self.image_std, IMAGE_STD)?;
        positive("max_pixels (size.longest_edge)", self.max_pixels, MAX_PIXELS)?;
        in_range("min_pixels (size.shortest_edge)", self.min_pixels, (1, self.max_pixels))
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
        Self::from_json(&read_json(path)?, path)
    }

    /// The settings in `v`, the JSON read from `path` (named in errors).
    pub fn from_json(v: &Value, path: &Path) -> Result<SchedulerConfig> {
        let f: SchedulerFile = parse_config(v, path)?;
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
        in_range("shift", shift, SHIFT).map_err(|m| Error::config(path, m))?;
        Ok(SchedulerConfig { shift })
    }
}

impl ModelFolder {
    /// Opens and validates a model folder ([`FolderCheck`]): every problem found before any
    /// weight is read is reported, one alone as itself, several as [`Error::Folder`].
    pub fn open(root: &Path) -> Result<ModelFolder> {
        FolderCheck::run(root)?.into_folder()
    }

    /// A model folder held in memory (in a browser), checked exactly as [`ModelFolder::open`]
    /// checks one on disk; `label` stands for its root in messages.
    pub fn from_memory(label: &str, mut folder: MemoryFolder) -> Result<ModelFolder> {
        let root = PathBuf::from(label);
        let check = FolderCheck::read(&source::InMemory { root: &root, folder: &folder }, &root);
        let mut model = check.into_folder()?;
        model.weights = folder.take_checkpoints(&root)?;
        Ok(model)
    }

    /// The checkpoint of one network: its component folder opened now, or the files in memory.
    pub fn checkpoint(&self, network: Network) -> Result<Checkpoint> {
        match &self.weights {
            WeightFiles::Folders => Checkpoint::open(match network {
                Network::Transformer => &self.transformer,
                Network::Vae => &self.vae,
                Network::TextEncoder => &self.text_encoder,
            }),
            WeightFiles::Opened(n) => Ok(match network {
                Network::Transformer => n.transformer.clone(),
                Network::Vae => n.vae.clone(),
                Network::TextEncoder => n.text_encoder.clone(),
            }),
        }
    }
}
