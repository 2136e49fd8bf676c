//! `joyrt make-model`: a random-weight model folder in the published diffusers layout.
//!
//! Weights are generated and written tensor by tensor into shards of at most `--max-shard-gb`
//! (with `*.safetensors.index.json`), so the full-size folder (≈49 GB in bf16) never sits in RAM.

use anyhow::{bail, Context, Result};
use clap::Args;
use joyrt_core::model_folder::{Configs, Network};
use joyrt_core::models::dit::DitConfig;
use joyrt_core::models::qwen::QwenConfig;
use joyrt_core::models::vae::VaeConfig;
use joyrt_core::random_weights::{self, network_seed};
use joyrt_core::weights::{write_index, ParamSpec, ShardWriter};
use joyrt_core::{DType, Rng, Shape};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct MakeModelArgs {
    /// tiny, full, or a folder holding transformer.json, vae.json, text_encoder.json (and optionally
    /// scheduler.json, processor.json) to use as the components' config.json files.
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Output folder: new, or empty. It is written under a temporary name and renamed when
    /// complete, so a failure leaves nothing behind.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output folder if it exists and is not empty (once the new one is complete).
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weight dtype on disk: bf16 (as published), f16 or f32.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Largest shard, in GB (the published model uses 5 GB shards).
    #[arg(long, default_value_t = 5.0)]
    pub max_shard_gb: f64,
}

/// The config texts of one model folder.
pub struct ConfigSet {
    pub transformer: String,
    pub vae: String,
    pub text_encoder: String,
    pub scheduler: String,
    pub processor: String,
    pub model_index: String,
    pub tokenizer_json: Vec<u8>,
    /// The bucket base `joyrt edit` uses for this model when `--base-size` is not given (`None`:
    /// the published model's 1024).
    pub default_base_size: Option<usize>,
}

impl ConfigSet {
    pub fn tiny() -> ConfigSet {
        // The tiny configs and tokenizer are the golden fixtures' own (made by the reference classes).
        ConfigSet {
            transformer: include_str!("../../tests/fixtures/tiny_model/transformer/config.json").into(),
            vae: include_str!("../../tests/fixtures/tiny_model/vae/config.json").into(),
            text_encoder: include_str!("../../tests/fixtures/tiny_model/text_encoder/config.json").into(),
            scheduler: include_str!("../../tests/fixtures/tiny_model/scheduler/scheduler_config.json").into(),
            processor: include_str!("../../tests/fixtures/tiny_model/processor/processor_config.json").into(),
            model_index: include_str!("../../tests/fixtures/tiny_model/model_index.json").into(),
            tokenizer_json: include_bytes!("../../tests/fixtures/tiny_model/tokenizer/tokenizer.json")
                .to_vec(),
            default_base_size: Some(crate::base_size::TINY),
        }
    }

    pub fn full() -> Result<ConfigSet> {
        let gz: &[u8] = include_bytes!("../../tests/fixtures/tokenizer/qwen3_tokenizer.json.gz");
        let mut tokenizer_json = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut tokenizer_json)
            .context("decompressing the Qwen tokenizer")?;
        Ok(ConfigSet {
            transformer: include_str!("configs/full/transformer.json").into(),
            vae: include_str!("configs/full/vae.json").into(),
            text_encoder: include_str!("configs/full/text_encoder.json").into(),
            scheduler: include_str!("configs/full/scheduler.json").into(),
            processor: include_str!("configs/full/processor.json").into(),
            model_index: include_str!("configs/full/model_index.json").into(),
            tokenizer_json,
            default_base_size: None,
        })
    }

    /// The three networks' configs, parsed and validated.
    pub fn network_configs(&self) -> Result<Configs> {
        let p = |s: &str| Path::new("make-model").join(s);
        Ok(Configs {
            transformer: DitConfig::from_json(
                &serde_json::from_str(&self.transformer)?,
                &p("transformer/config.json"),
            )?,
            vae: VaeConfig::from_json(&serde_json::from_str(&self.vae)?, &p("vae/config.json"))?,
            text_encoder: QwenConfig::from_json(
                &serde_json::from_str(&self.text_encoder)?,
                &p("text_encoder/config.json"),
            )?,
        })
    }

    /// Component configs from a folder; the rest (tokenizer, scheduler, processor) from `full`.
    fn from_dir(dir: &Path) -> Result<ConfigSet> {
        let mut c = Self::full()?;
        let read = |n: &str| {
            std::fs::read_to_string(dir.join(n)).with_context(|| format!("reading {}", dir.join(n).display()))
        };
        c.transformer = read("transformer.json")?;
        c.vae = read("vae.json")?;
        c.text_encoder = read("text_encoder.json")?;
        if dir.join("scheduler.json").is_file() {
            c.scheduler = read("scheduler.json")?;
        }
        if dir.join("processor.json").is_file() {
            c.processor = read("processor.json")?;
        }
        Ok(c)
    }
}

/// Writes one component's weights as shards of at most `max_bytes` (one file when it fits).
fn write_weights(
    dir: &Path,
    stem: &str,
    index_name: &str,
    specs: &[ParamSpec],
    dtype: DType,
    seed: u64,
    max_bytes: u64,
) -> Result<u64> {
    let mut shards: Vec<Vec<&ParamSpec>> = vec![vec![]];
    let mut size = 0u64;
    for s in specs {
        let b = (s.shape.numel() * dtype.size()) as u64;
        if size + b > max_bytes && !shards.last().unwrap().is_empty() {
            shards.push(vec![]);
            size = 0;
        }
        shards.last_mut().unwrap().push(s);
        size += b;
    }
    let n = shards.len();
    let mut map = BTreeMap::new();
    let mut total = 0u64;
    let mut rng = Rng::new(seed);
    for (k, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            format!("{stem}.safetensors")
        } else {
            format!("{stem}-{:05}-of-{n:05}.safetensors", k + 1)
        };
        let header: Vec<(String, DType, Shape)> =
            shard.iter().map(|s| (s.name.clone(), dtype, s.shape.clone())).collect();
        let mut w = ShardWriter::create(&dir.join(&file), &header)?;
        for s in shard {
            random_weights::draw(s, dtype, &mut rng, |b| w.write(b))?;
            map.insert(s.name.clone(), file.clone());
            total += (s.shape.numel() * dtype.size()) as u64;
        }
        w.finish()?;
    }
    if n > 1 {
        write_index(&dir.join(index_name), &map, total)?;
    }
    Ok(total)
}

/// Writes a complete model folder into the empty folder `out`; returns the bytes of weights
/// written.
pub fn write_model(
    out: &Path,
    c: &ConfigSet,
    seed: u64,
    dtype: DType,
    max_shard_bytes: u64,
    mut log: impl FnMut(&str),
) -> Result<u64> {
    let Configs { transformer: dit, vae, text_encoder: qwen } = c.network_configs()?;
    let mut total = 0;
    for (dir, files) in [
        ("", vec![("model_index.json", c.model_index.as_bytes())]),
        ("transformer", vec![("config.json", c.transformer.as_bytes())]),
        ("vae", vec![("config.json", c.vae.as_bytes())]),
        ("text_encoder", vec![("config.json", c.text_encoder.as_bytes())]),
        ("scheduler", vec![("scheduler_config.json", c.scheduler.as_bytes())]),
        ("tokenizer", vec![("tokenizer.json", &c.tokenizer_json[..])]),
        (
            "processor",
            vec![
                ("preprocessor_config.json", c.processor.as_bytes()),
                ("tokenizer.json", &c.tokenizer_json[..]),
            ],
        ),
    ] {
        let d = out.join(dir);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        for (name, bytes) in files {
            std::fs::write(d.join(name), bytes)
                .with_context(|| format!("writing {}", d.join(name).display()))?;
        }
    }
    if let Some(base) = c.default_base_size {
        crate::base_size::write_default(out, base)?;
    }
    let dit_specs = dit.param_specs();
    // The published transformer is sharded; shard even the tiny one so loaders see an index.
    let dit_shard = max_shard_bytes
        .min((joyrt_core::weights::param_count(&dit_specs) * dtype.size() as u64).div_ceil(2).max(1));
    log(&format!("transformer: {} parameters", dit.param_count()));
    total += write_weights(
        &out.join("transformer"),
        "diffusion_pytorch_model",
        "diffusion_pytorch_model.safetensors.index.json",
        &dit_specs,
        dtype,
        network_seed(seed, Network::Transformer),
        dit_shard,
    )?;
    log(&format!("vae: {} parameters", vae.param_count()));
    total += write_weights(
        &out.join("vae"),
        "diffusion_pytorch_model",
        "diffusion_pytorch_model.safetensors.index.json",
        &vae.param_specs(),
        dtype,
        network_seed(seed, Network::Vae),
        max_shard_bytes,
    )?;
    log(&format!("text_encoder: {} parameters", qwen.param_count()));
    total += write_weights(
        &out.join("text_encoder"),
        "model",
        "model.safetensors.index.json",
        &qwen.param_specs(),
        dtype,
        network_seed(seed, Network::TextEncoder),
        max_shard_bytes,
    )?;
    Ok(total)
}

pub fn run(a: MakeModelArgs) -> Result<()> {
    let dtype = DType::parse(&a.dtype)
        .with_context(|| format!("unknown dtype {:?}: use bf16, f16 or f32", a.dtype))?;
    if a.max_shard_gb.is_nan() || a.max_shard_gb <= 0.0 {
        bail!("--max-shard-gb must be positive");
    }
    let configs = match a.config.as_str() {
        "tiny" => ConfigSet::tiny(),
        "full" => ConfigSet::full()?,
        dir => ConfigSet::from_dir(Path::new(dir))
            .with_context(|| format!("--config {dir}: not tiny, full or a config folder"))?,
    };
    let bytes = crate::staged_folder::write_folder(&a.output, a.overwrite, |tmp| {
        write_model(tmp, &configs, a.seed, dtype, (a.max_shard_gb * 1e9) as u64, |m| eprintln!("{m}"))
    })?;
    eprintln!("wrote {} ({:.2} GB of {} weights)", a.output.display(), bytes as f64 / 1e9, dtype);
    Ok(())
}
