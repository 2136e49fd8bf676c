//! What the page does, over any [`Backend`]: the built-in tiny model (the CLI's, to the bit),
//! the check that a model fits the adapter, and one edit from image bytes to PNG bytes.

use joyrt_core::image::{Buckets, RgbImage};
use joyrt_core::model_folder::{MemoryFolder, ModelFolder, Network};
use joyrt_core::models::dit::DitConfig;
use joyrt_core::models::qwen::QwenConfig;
use joyrt_core::models::vae::VaeConfig;
use joyrt_core::pipeline::{EditParams, Progress, Session};
use joyrt_core::quant::is_quantized_companion;
use joyrt_core::random_weights::{network_seed, safetensors_in_memory};
use joyrt_core::weights::Checkpoint;
use joyrt_core::{Backend, DType, Error, Result};
use std::path::{Path, PathBuf};

/// The built-in model's seed, weight dtype and bucket base: the CLI's (`cli/src/builtin.rs`,
/// `cli/src/base_size.rs`), so a page edit and `joyrt edit` without `--model` agree.
pub const BUILTIN_SEED: u64 = 0;
pub const BUILTIN_DTYPE: DType = DType::BF16;
pub const BUILTIN_BASE_SIZE: usize = 256;
/// What the built-in model is called in messages.
pub const BUILTIN_LABEL: &str = "<built-in tiny model>";

/// The tiny configuration's small files: the golden fixtures' own, as `joyrt make-model` writes them.
const TINY_FILES: [(&str, &[u8]); 8] = [
    ("model_index.json", include_bytes!("../../tests/fixtures/tiny_model/model_index.json")),
    ("transformer/config.json", include_bytes!("../../tests/fixtures/tiny_model/transformer/config.json")),
    ("vae/config.json", include_bytes!("../../tests/fixtures/tiny_model/vae/config.json")),
    ("text_encoder/config.json", include_bytes!("../../tests/fixtures/tiny_model/text_encoder/config.json")),
    (
        "scheduler/scheduler_config.json",
        include_bytes!("../../tests/fixtures/tiny_model/scheduler/scheduler_config.json"),
    ),
    ("tokenizer/tokenizer.json", include_bytes!("../../tests/fixtures/tiny_model/tokenizer/tokenizer.json")),
    (
        "processor/preprocessor_config.json",
        include_bytes!("../../tests/fixtures/tiny_model/processor/processor_config.json"),
    ),
    ("processor/tokenizer.json", include_bytes!("../../tests/fixtures/tiny_model/tokenizer/tokenizer.json")),
];

/// The built-in tiny model, its weights drawn in memory from the CLI's seed (about 2.7 MB).
pub fn builtin_model() -> Result<ModelFolder> {
    let mut folder = MemoryFolder::new();
    for (path, bytes) in TINY_FILES {
        folder.add(path, Box::new(bytes.to_vec()))?;
    }
    let config = |path: &str| -> Result<(serde_json::Value, PathBuf)> {
        let (_, bytes) = TINY_FILES.iter().find(|(p, _)| *p == path).expect("a tiny config");
        let v = serde_json::from_slice(bytes).map_err(|e| Error::config(path, e.to_string()))?;
        Ok((v, Path::new(BUILTIN_LABEL).join(path)))
    };
    let (v, p) = config("transformer/config.json")?;
    let dit = DitConfig::from_json(&v, &p)?.param_specs();
    let (v, p) = config("vae/config.json")?;
    let vae = VaeConfig::from_json(&v, &p)?.param_specs();
    let (v, p) = config("text_encoder/config.json")?;
    let qwen = QwenConfig::from_json(&v, &p)?.param_specs();
    for (network, file, specs) in [
        (Network::Transformer, "transformer/diffusion_pytorch_model.safetensors", dit),
        (Network::Vae, "vae/diffusion_pytorch_model.safetensors", vae),
        (Network::TextEncoder, "text_encoder/model.safetensors", qwen),
    ] {
        let seed = network_seed(BUILTIN_SEED, network);
        folder.add(file, Box::new(safetensors_in_memory(&specs, BUILTIN_DTYPE, seed)?))?;
    }
    ModelFolder::from_memory(BUILTIN_LABEL, folder)
}

/// What a model needs on the device, for the check before loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Every weight stored in the session's dtype.
    pub weight_bytes: u64,
    /// The largest single weight in that dtype (one device buffer unless the backend splits it).
    pub largest_tensor_bytes: u64,
}

/// The device memory the weights of `model` take in `dtype`: float tensors in `dtype`, quantized
/// weights as the backend holds them (the codes in whole `u32` words per row, the scales in f32).
pub fn footprint(model: &ModelFolder, dtype: DType) -> Result<Footprint> {
    let mut f = Footprint { weight_bytes: 0, largest_tensor_bytes: 0 };
    for network in [Network::Transformer, Network::Vae, Network::TextEncoder] {
        let ck = model.checkpoint(network)?;
        for name in ck.names() {
            let bytes = device_bytes(&ck, name, dtype);
            f.weight_bytes += bytes;
            f.largest_tensor_bytes = f.largest_tensor_bytes.max(bytes);
        }
    }
    Ok(f)
}

/// The device bytes of the stored tensor `name` (docs/quantized-formats.md, "Device layout").
fn device_bytes(ck: &Checkpoint, name: &str, dtype: DType) -> u64 {
    let info = ck.info(name).expect("a name the checkpoint listed");
    let numel = info.shape.numel() as u64;
    if info.dtype.float().is_none() {
        // Code tensors are one byte per stored element, a row padded to whole words.
        let (rows, row_bytes) = match info.shape.dims() {
            &[n, c] => (n as u64, c as u64),
            _ => (1, numel),
        };
        return rows * row_bytes.div_ceil(4) * 4;
    }
    if is_quantized_companion(name, |n| ck.info(n)) {
        // A weight's scales are widened to f32; an fp8 `input_scale` is not loaded.
        return if name.ends_with(".weight_scale") { numel * 4 } else { 0 };
    }
    numel * dtype.size() as u64
}

/// The bucket base a model folder asks for in its `joyrt.json` (`{"default_base_size": N}`, as
/// `joyrt make-model` writes it; the CLI's `base_size::folder_default` reads the same file with the
/// same bounds), so a picked tiny folder edits at its own small base as `joyrt edit` does.
pub fn folder_base_size(json: &[u8]) -> std::result::Result<Option<usize>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("joyrt.json is not valid JSON: {e}"))?;
    let Some(base) = v.get("default_base_size") else { return Ok(None) };
    match base.as_u64().map(|b| b as usize) {
        Some(b) if (128..=4096).contains(&b) && b.is_multiple_of(64) => Ok(Some(b)),
        _ => Err(format!(
            "joyrt.json: `default_base_size` must be a multiple of 64 between 128 and 4096, got {base}"
        )),
    }
}

/// The share of the visitor's memory a page plans to use: WebGPU reports no device memory, and on
/// integrated and software adapters buffers live in system memory, so the weights may take half
/// of what the browser reports (`navigator.deviceMemory`, which Chrome rounds and caps at 8 GB).
pub const MEMORY_SHARE: f64 = 0.5;

/// A byte count for messages: GiB, or MiB below one GiB (a tiny model's weights are a few MiB).
fn gib(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// Refuses, with the numbers, a model that cannot fit: a weight larger than the adapter's
/// `max_buffer_size` (only a linear weight may be split below the binding limit, never past the
/// buffer limit), weights beyond [`MEMORY_SHARE`] of `device_memory` (bytes, when the browser says),
/// or beyond wasm32's 4 GiB when a loaded weight passes through wasm memory one at a time.
pub fn check_fits(
    f: &Footprint,
    max_buffer_size: u64,
    device_memory: Option<u64>,
) -> std::result::Result<(), String> {
    if f.largest_tensor_bytes > max_buffer_size {
        return Err(format!(
            "the model's largest weight is {} and this adapter's max_buffer_size is {}: it cannot hold it",
            gib(f.largest_tensor_bytes),
            gib(max_buffer_size)
        ));
    }
    if let Some(mem) = device_memory {
        let budget = (mem as f64 * MEMORY_SHARE) as u64;
        if f.weight_bytes > budget {
            return Err(format!(
                "the model's weights take {} on the device; this machine reports {} of memory, and \
                 the page uses at most half of it ({})",
                gib(f.weight_bytes),
                gib(mem),
                gib(budget)
            ));
        }
    }
    Ok(())
}

/// One edit's request as the page gives it.
pub struct EditRequest<'a> {
    pub image: &'a [u8],
    /// Name of the image in messages (the picked file's name).
    pub image_name: &'a str,
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub guidance: f32,
    pub seed: u64,
    /// Bucket base (`None`: diffusers' 1024).
    pub base_size: Option<usize>,
}

/// Runs one edit on the loaded session and returns the result as PNG bytes. The image is decoded
/// (and refused with a clear message) before anything runs on the device.
pub async fn edit_png<B: Backend>(
    session: &Session<'_, B>,
    req: EditRequest<'_>,
    on_progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Vec<u8>> {
    let image = RgbImage::decode(req.image, req.image_name)?;
    let params = EditParams {
        prompt: req.prompt,
        negative_prompt: req.negative_prompt,
        steps: req.steps,
        guidance: req.guidance,
        seed: req.seed,
        dtype: session.dtype(),
        buckets: req.base_size.map(Buckets::vision_aligned),
        ..Default::default()
    };
    params.validate()?;
    let out = session.edit_async(&image, &params, on_progress).await?;
    out.image.encode_png()
}

/// A one-line message for the page.
pub fn message(e: &Error) -> String {
    match e {
        Error::Cancelled => "cancelled".into(),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests;
