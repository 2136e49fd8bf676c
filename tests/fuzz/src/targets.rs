//! The fuzz targets: which seeds each mutates and which library code it runs on the result.

use crate::{fixtures, Mutator};
use joyrt_core::image::RgbImage;
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::prompt::PromptTokenizer;
use joyrt_core::weights::Checkpoint;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// An input path of the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A single-file safetensors checkpoint (header, offsets, dtypes, data), opened and read.
    Safetensors,
    /// A sharded checkpoint's index file, opened and every tensor read.
    Index,
    /// The model folder's JSON configs, opened and validated as `joyrt info` and `edit` do.
    Config,
    /// A tokenizer.json, loaded and used to encode and decode an edit prompt.
    Tokenizer,
    /// PNG and JPEG input images, decoded.
    Image,
}

impl Target {
    pub const ALL: [Target; 5] =
        [Target::Safetensors, Target::Index, Target::Config, Target::Tokenizer, Target::Image];

    pub fn name(self) -> &'static str {
        match self {
            Target::Safetensors => "safetensors",
            Target::Index => "index",
            Target::Config => "config",
            Target::Tokenizer => "tokenizer",
            Target::Image => "image",
        }
    }

    /// Copies what the target needs into `dir` and reads its seeds.
    pub(crate) fn prepare(self, dir: &Path) -> std::io::Result<Harness> {
        let model = fixtures().join("tiny_model");
        copy_dir(&model, &dir.join("model"))?;
        let root = dir.join("model");
        let file = |rel: &str| -> std::io::Result<Seed> { Seed::read(&root, rel) };
        let seeds = match self {
            Target::Safetensors => vec![file("vae/diffusion_pytorch_model.safetensors")?],
            Target::Index => vec![file("transformer/diffusion_pytorch_model.safetensors.index.json")?],
            Target::Config => [
                "model_index.json",
                "transformer/config.json",
                "vae/config.json",
                "text_encoder/config.json",
                "processor/processor_config.json",
                "scheduler/scheduler_config.json",
            ]
            .iter()
            .map(|rel| file(rel))
            .collect::<std::io::Result<_>>()?,
            Target::Tokenizer => vec![file("tokenizer/tokenizer.json")?],
            Target::Image => {
                let png = std::fs::read(fixtures().join("pipeline/input.png"))?;
                let img = image::load_from_memory(&png).map_err(std::io::Error::other)?;
                let mut jpeg = std::io::Cursor::new(Vec::new());
                img.to_rgb8().write_to(&mut jpeg, image::ImageFormat::Jpeg).map_err(std::io::Error::other)?;
                // The headers (PNG chunks before the image data, JPEG tables) are where the
                // decoders parse structure.
                vec![
                    Seed { rel: PathBuf::new(), focus: 64, json: None, bytes: png },
                    Seed { rel: PathBuf::new(), focus: 700, json: None, bytes: jpeg.into_inner() },
                ]
            }
        };
        Ok(Harness { target: self, root, seeds })
    }
}

/// One seed file: its path in the model copy, its bytes, and its JSON value if it is JSON.
pub(crate) struct Seed {
    rel: PathBuf,
    bytes: Vec<u8>,
    json: Option<Value>,
    /// Where byte mutations concentrate: the safetensors header, or the whole of a JSON file.
    focus: usize,
}

impl Seed {
    fn read(root: &Path, rel: &str) -> std::io::Result<Seed> {
        let bytes = std::fs::read(root.join(rel))?;
        let json = serde_json::from_slice(&bytes).ok();
        let focus = if rel.ends_with(".safetensors") {
            let len = u64::from_le_bytes(bytes[..8].try_into().map_err(std::io::Error::other)?);
            8 + len as usize
        } else {
            bytes.len()
        };
        Ok(Seed { rel: rel.into(), bytes, json, focus })
    }
}

/// A prepared target: a private copy of the tiny model and the seeds.
pub(crate) struct Harness {
    target: Target,
    root: PathBuf,
    seeds: Vec<Seed>,
}

impl Harness {
    /// A mutated input: one byte choosing the seed, then the seed's mutated content.
    pub(crate) fn mutate(&self, m: &mut Mutator) -> Vec<u8> {
        let i = m.below(self.seeds.len());
        let seed = &self.seeds[i];
        let content = match &seed.json {
            Some(doc) if m.chance(80) => m.json(doc),
            _ => m.bytes(&seed.bytes, seed.focus),
        };
        let mut input = vec![i as u8];
        input.extend(content);
        input
    }

    /// Runs the target's library code on `input`; whether the library accepted it.
    pub(crate) fn execute(&self, input: &[u8]) -> bool {
        let (seed, content) = (&self.seeds[usize::from(input[0])], &input[1..]);
        match self.target {
            Target::Image => RgbImage::decode(content, "input").is_ok(),
            Target::Tokenizer => tokenize(content),
            _ => {
                let path = self.root.join(&seed.rel);
                let accepted = std::fs::write(&path, content).is_ok() && self.load(&seed.rel);
                // Every execution starts from the original folder.
                std::fs::write(&path, &seed.bytes).expect("restoring a seed file in the scratch folder");
                accepted
            }
        }
    }

    /// Loads the component `rel` belongs to as `joyrt info` and `edit` would.
    fn load(&self, rel: &Path) -> bool {
        let component = rel.parent().map(|p| self.root.join(p)).unwrap_or_else(|| self.root.clone());
        match self.target {
            Target::Safetensors | Target::Index => read_checkpoint(&component),
            _ => open_model(&self.root),
        }
    }
}

fn read_checkpoint(dir: &Path) -> bool {
    let Ok(ck) = Checkpoint::open(dir) else { return false };
    ck.names().iter().all(|name| ck.read_f32(name).is_ok())
}

/// The one validation `info` and `edit` share, then the tensor lists the configs imply.
fn open_model(root: &Path) -> bool {
    let Ok(folder) = ModelFolder::open(root) else { return false };
    let c = &folder.configs;
    let tensors =
        c.transformer.param_specs().len() + c.vae.param_specs().len() + c.text_encoder.param_specs().len();
    tensors > 0
}

fn tokenize(json: &[u8]) -> bool {
    let Ok(t) = PromptTokenizer::from_bytes(json, "tokenizer.json") else { return false };
    match t.encode_edit("Add a red hat", 4) {
        Ok((ids, _)) => t.decode(&ids).is_ok(),
        Err(_) => false,
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
