//! `joyrt plan`: the memory plan (`joyrt_core::plan`) of an edit, as a table or JSON.

use crate::backends::{memory_budget, AnyBackend, BackendChoice};
use crate::make_model::ConfigSet;
use anyhow::{bail, Context, Result};
use clap::Args;
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::models::vae_tiling::VaeTiling;
use joyrt_core::plan::{plan, PlanRequest, WeightFormat};
use joyrt_core::{DType, QuantFormat};
use std::path::PathBuf;

#[derive(Args)]
pub struct PlanArgs {
    /// Model folder (its configs, and the quantized format its checkpoints store).
    #[arg(long, conflicts_with = "config")]
    pub model: Option<PathBuf>,
    /// A built-in config instead of a folder: `tiny` (the default) or `full` (the released sizes).
    #[arg(long)]
    pub config: Option<String>,
    /// Bucket size in pixels: `N` (square) or `WxH`.
    #[arg(long, conflicts_with = "image")]
    pub size: Option<String>,
    /// An input image: the plan is for the bucket `joyrt edit` would choose for it.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Bucket base size with `--image` (default: the model folder's own, else 1024).
    #[arg(long)]
    pub base_size: Option<usize>,
    /// Weight and activation dtype: bf16, f16 or f32.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// With `--config`: price the block linears quantized as int8, int4 or fp8 (a folder's
    /// format is read from its checkpoints).
    #[arg(long, conflicts_with = "model")]
    pub quant: Option<String>,
    /// The backend whose device memory bounds the plan (unless `--max-memory-gb` is given).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Device memory in GB to plan for, instead of the device's.
    #[arg(long)]
    pub max_memory_gb: Option<f64>,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: PlanArgs) -> Result<()> {
    let dtype = DType::parse(&a.dtype)
        .with_context(|| format!("unknown dtype {:?}: use bf16, f16 or f32", a.dtype))?;
    // The configs, the weights' format and the bucket base the model's edits default to.
    let (configs, format, default_base) = match &a.model {
        Some(dir) => {
            let folder = ModelFolder::open(&crate::hf_cache::resolve(dir)?)?;
            let format = WeightFormat::of_folder(&folder, dtype)?;
            (folder.configs.clone(), format, crate::base_size::folder_default(&folder.root)?)
        }
        None => {
            let set = match a.config.as_deref().unwrap_or("tiny") {
                "tiny" => ConfigSet::tiny(),
                "full" => ConfigSet::full()?,
                other => bail!("--config {other:?}: use tiny or full"),
            };
            let quant = a
                .quant
                .as_deref()
                .map(|q| {
                    QuantFormat::parse(q).with_context(|| format!("--quant {q:?}: use int8, int4 or fp8"))
                })
                .transpose()?;
            (set.network_configs()?, WeightFormat::new(dtype, quant), set.default_base_size)
        }
    };
    let pixels = bucket(&a, default_base)?;
    // The device is opened only to ask its memory.
    let backend = a.max_memory_gb.is_none().then(|| AnyBackend::open(a.backend)).transpose()?;
    let device_bytes = match (&backend, a.max_memory_gb) {
        (Some(b), _) => memory_budget(b, None),
        (None, gb) => gb.map(|gb| (gb * 1e9) as u64),
    };
    let streaming = match &backend {
        Some(b) => !matches!(b, AnyBackend::Cpu(_)),
        None => a.backend != BackendChoice::Cpu,
    };
    let request = PlanRequest { pixels, format, device_bytes, tiling: VaeTiling::default(), streaming };
    let p = plan(&configs, &request)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        println!("{} at {}x{} ({})", model_label(&a), pixels.1, pixels.0, describe(&format));
        println!("{}", p.table());
    }
    Ok(())
}

fn model_label(a: &PlanArgs) -> String {
    match &a.model {
        Some(m) => m.display().to_string(),
        None => format!("built-in {}", a.config.as_deref().unwrap_or("tiny")),
    }
}

fn describe(f: &WeightFormat) -> String {
    let q =
        |n: &str, f: Option<QuantFormat>| f.map(|f| format!(", {n} blocks {}", f.name())).unwrap_or_default();
    format!("{}{}{}", f.dtype.name(), q("DiT", f.transformer_quant), q("text encoder", f.text_encoder_quant))
}

/// `(h, w)` of the bucket: `--size`, or the bucket `joyrt edit` picks for `--image`.
fn bucket(a: &PlanArgs, default_base: Option<usize>) -> Result<(usize, usize)> {
    if let Some(s) = &a.size {
        return parse_size(s)
            .with_context(|| format!("--size {s:?} is not N or WxH in pixels, multiples of 16"));
    }
    let Some(path) = &a.image else { bail!("give --size N|WxH or --image PATH") };
    let image = crate::output::read_image(path)?;
    let base = a.base_size.or(default_base).unwrap_or(1024);
    Ok(crate::base_size::buckets_for(base)?.best(image.height, image.width))
}

fn parse_size(s: &str) -> Option<(usize, usize)> {
    let (w, h) = match s.split_once('x') {
        Some((w, h)) => (w.trim().parse().ok()?, h.trim().parse().ok()?),
        None => {
            let n: usize = s.trim().parse().ok()?;
            (n, n)
        }
    };
    (w > 0 && h > 0 && w % 16 == 0 && h % 16 == 0 && w <= 1 << 14 && h <= 1 << 14).then_some((h, w))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_are_square_or_w_by_h() {
        assert_eq!(parse_size("1024"), Some((1024, 1024)));
        assert_eq!(parse_size("768x512"), Some((512, 768)));
        assert_eq!(parse_size("1000"), None);
        assert_eq!(parse_size("0"), None);
    }
}
