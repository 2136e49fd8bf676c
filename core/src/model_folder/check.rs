//! The one validation of a model folder: every part read and range-checked on its own, then the
//! parts checked against each other, before any weight is read. [`ModelFolder::open`] (and so
//! `joyrt edit`, the library and a server) and `joyrt info` both go through [`FolderCheck::run`],
//! so `info` reports exactly what an edit would refuse.

use super::WeightFiles;
use super::{read_json_in, Configs, Disk, FolderFiles, ModelFolder, ProcessorConfig, SchedulerConfig};
use crate::files::MAX_TOKENIZER_BYTES;
use crate::models::dit::DitConfig;
use crate::models::qwen::QwenConfig;
use crate::models::vae::VaeConfig;
use crate::prompt::PromptTokenizer;
use crate::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The components `model_index.json` must list, each a folder of the model folder.
pub const COMPONENTS: [&str; 6] =
    ["transformer", "vae", "text_encoder", "tokenizer", "processor", "scheduler"];

/// Each part of a model folder as read, with its own error, and the problems between parts.
pub struct FolderCheck {
    pub root: PathBuf,
    /// Problems of `model_index.json`.
    pub index: Vec<Error>,
    pub transformer: Result<DitConfig>,
    pub vae: Result<VaeConfig>,
    pub text_encoder: Result<QwenConfig>,
    pub tokenizer: Result<PromptTokenizer>,
    pub processor: Result<ProcessorConfig>,
    pub scheduler: Result<SchedulerConfig>,
    /// Disagreements between components, checked when every part reads.
    pub consistency: Vec<Error>,
}

impl FolderCheck {
    /// Reads every part of the folder at `root`; an error only when `root` is not a folder.
    pub fn run(root: &Path) -> Result<FolderCheck> {
        if !root.is_dir() {
            return Err(Error::Input(format!(
                "model folder {} does not exist (expected the JoyAI-Image-Edit-Diffusers layout)",
                root.display()
            )));
        }
        Ok(Self::read(&Disk, root))
    }

    /// Reads every part of the folder at `root` from `files`.
    pub fn read(files: &dyn FolderFiles, root: &Path) -> FolderCheck {
        let component = |name: &str| component(files, root, name);
        let json = |p: PathBuf| read_json_in(files, &p).map(|v| (v, p));
        let config = |name: &str| component(name).and_then(|d| json(d.join("config.json")));
        let tokenizer = |d: PathBuf| {
            let p = d.join("tokenizer.json");
            let bytes = files.read(&p, MAX_TOKENIZER_BYTES)?;
            PromptTokenizer::from_bytes(&bytes, &p.display().to_string())
        };
        let mut check = FolderCheck {
            root: root.to_path_buf(),
            index: index_problems(files, &root.join("model_index.json")),
            transformer: config("transformer").and_then(|(v, p)| DitConfig::from_json(&v, &p)),
            vae: config("vae").and_then(|(v, p)| VaeConfig::from_json(&v, &p)),
            text_encoder: config("text_encoder").and_then(|(v, p)| QwenConfig::from_json(&v, &p)),
            tokenizer: component("tokenizer").and_then(tokenizer),
            processor: component("processor").and_then(|d| ProcessorConfig::from_dir_in(files, &d)),
            scheduler: component("scheduler")
                .and_then(|d| json(d.join("scheduler_config.json")))
                .and_then(|(v, p)| SchedulerConfig::from_json(&v, &p)),
            consistency: Vec::new(),
        };
        check.consistency = check.cross_problems();
        check
    }

    /// Every problem found, as one line each (file and field named), in a fixed order.
    pub fn problems(&self) -> Vec<String> {
        self.errors().map(|e| e.to_string()).collect()
    }

    fn errors(&self) -> impl Iterator<Item = &Error> {
        let parts = [
            self.transformer.as_ref().err(),
            self.vae.as_ref().err(),
            self.text_encoder.as_ref().err(),
            self.tokenizer.as_ref().err(),
            self.processor.as_ref().err(),
            self.scheduler.as_ref().err(),
        ];
        self.index.iter().chain(parts.into_iter().flatten()).chain(&self.consistency)
    }

    /// The folder when nothing is wrong; otherwise its one problem, or [`Error::Folder`] listing
    /// them all.
    pub fn into_folder(self) -> Result<ModelFolder> {
        let problems = self.problems();
        if problems.len() > 1 {
            return Err(Error::Folder { root: self.root, problems });
        }
        // At most one problem is left: the first `?` or this `if` returns it.
        let FolderCheck {
            root,
            index,
            transformer,
            vae,
            text_encoder,
            tokenizer,
            processor,
            scheduler,
            consistency,
        } = self;
        if let Some(e) = index.into_iter().chain(consistency).next() {
            return Err(e);
        }
        Ok(ModelFolder {
            transformer: root.join("transformer"),
            vae: root.join("vae"),
            text_encoder: root.join("text_encoder"),
            configs: Configs { transformer: transformer?, vae: vae?, text_encoder: text_encoder? },
            tokenizer: tokenizer?,
            processor: processor?,
            scheduler: scheduler?,
            weights: WeightFiles::Folders,
            root,
        })
    }

    /// What the pipeline needs the parts to agree on: latent channels, the text width, the VAE's
    /// 8× scale (the buckets are multiples of 16 px: 8× VAE, 2×2 DiT patches), RGB images, the
    /// vision patching the processor produces, and the tokenizer's ids.
    fn cross_problems(&self) -> Vec<Error> {
        let (Ok(dit), Ok(vae), Ok(qwen), Ok(tok), Ok(proc)) =
            (&self.transformer, &self.vae, &self.text_encoder, &self.tokenizer, &self.processor)
        else {
            return Vec::new();
        };
        let file = |c: &str| self.root.join(c).join("config.json");
        let mut out = Vec::new();
        let mut need = |ok: bool, c: &str, msg: String| {
            if !ok {
                out.push(Error::config(file(c), msg));
            }
        };
        need(
            dit.in_channels == vae.z_dim && dit.out_channels == vae.z_dim,
            "transformer",
            format!(
                "`in_channels` {} / `out_channels` {} differ from the VAE's `z_dim` {}",
                dit.in_channels, dit.out_channels, vae.z_dim
            ),
        );
        need(
            dit.text_dim == qwen.hidden_size,
            "transformer",
            format!(
                "`text_dim` {} differs from the text encoder's hidden_size {}",
                dit.text_dim, qwen.hidden_size
            ),
        );
        need(
            vae.scale() == 8,
            "vae",
            format!(
                "`dim_mult` {:?} gives a {}× scale; the pipeline needs 8× (4 stages)",
                vae.dim_mult,
                vae.scale()
            ),
        );
        need(
            vae.in_channels == 3 && vae.out_channels == 3,
            "vae",
            format!(
                "`in_channels` {} / `out_channels` {} must be 3 (RGB)",
                vae.in_channels, vae.out_channels
            ),
        );
        let v = &qwen.vision;
        need(
            v.in_channels == 3,
            "text_encoder",
            format!("`vision_config.in_channels` is {}; images are RGB (3)", v.in_channels),
        );
        need(
            (v.patch_size, v.temporal_patch_size, v.spatial_merge_size)
                == (proc.patch_size, proc.temporal_patch_size, proc.merge_size),
            "text_encoder",
            format!(
                "vision patch {}, temporal patch {}, merge {} differ from the processor's {}, {}, {}",
                v.patch_size,
                v.temporal_patch_size,
                v.spatial_merge_size,
                proc.patch_size,
                proc.temporal_patch_size,
                proc.merge_size
            ),
        );
        need(
            (tok.image_pad_id, tok.vision_start_id, tok.vision_end_id)
                == (qwen.image_token_id, qwen.vision_start_token_id, qwen.vision_end_token_id),
            "text_encoder",
            format!(
                "image/vision start/vision end token ids {}, {}, {} differ from the tokenizer's {}, {}, {}",
                qwen.image_token_id,
                qwen.vision_start_token_id,
                qwen.vision_end_token_id,
                tok.image_pad_id,
                tok.vision_start_id,
                tok.vision_end_id
            ),
        );
        need(
            tok.vocab_size() <= qwen.vocab_size,
            "text_encoder",
            format!(
                "`text_config.vocab_size` {} is smaller than the tokenizer's {} tokens",
                qwen.vocab_size,
                tok.vocab_size()
            ),
        );
        out
    }
}

/// The folder `root/name`, or an error naming what is there instead.
fn component(files: &dyn FolderFiles, root: &Path, name: &str) -> Result<PathBuf> {
    let d = root.join(name);
    if files.is_dir(&d) {
        Ok(d)
    } else if files.exists(&d) {
        Err(Error::Input(format!("{} is not a folder", d.display())))
    } else {
        Err(Error::Input(format!("model folder {} has no {name}/ folder", root.display())))
    }
}

/// `model_index.json` must be an object listing every component as `[library, class]`.
fn index_problems(files: &dyn FolderFiles, path: &Path) -> Vec<Error> {
    let v = match read_json_in(files, path) {
        Ok(v) => v,
        Err(e) => return vec![e],
    };
    let Some(obj) = v.as_object() else {
        return vec![Error::config(path, "not a JSON object")];
    };
    COMPONENTS
        .iter()
        .filter_map(|c| match obj.get(*c) {
            None | Some(Value::Null) => Some(Error::config(path, format!("no `{c}` component listed"))),
            Some(Value::Array(a)) if a.len() == 2 && a.iter().all(Value::is_string) => None,
            Some(_) => Some(Error::config(path, format!("`{c}` is not a [library, class] pair"))),
        })
        .collect()
}
