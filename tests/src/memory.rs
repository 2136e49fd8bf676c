//! The memory plan against measured peaks, and streamed DiT blocks against resident ones.
//!
//! Each stage runs alone on a fresh backend (the counters' peak is since the backend was made):
//! the network loaded, its weights measured as the live bytes after the load, then the stage run
//! as the pipeline runs it and its peak read from [`Backend::memory_stats`] (the CPU backend's
//! buffers, the wgpu pool's live bytes, the CUDA allocator's). The plan's figures for the same
//! shapes (`joyrt_core::plan`) must agree within [`PLAN_TOLERANCE`].

use crate::Report;
use joyrt_core::image::{qwen_patchify, RgbImage};
use joyrt_core::model_folder::{Configs, ModelFolder, Network};
use joyrt_core::models::dit::{Dit, DitConfig};
use joyrt_core::models::qwen::Qwen;
use joyrt_core::models::vae::Vae;
use joyrt_core::pipeline::Denoiser;
use joyrt_core::plan::activations::{self, Tokens};
use joyrt_core::plan::WeightFormat;
use joyrt_core::prompt::{PromptTokenizer, DROP_TOKENS};
use joyrt_core::weights::Checkpoint;
use joyrt_core::{Backend, DType, Rng, Tensor};
use std::path::Path;

/// How far a planned figure may be from the measured one: |planned / measured − 1|.
pub const PLAN_TOLERANCE: f64 = 0.10;

const LAYER: &str = "memory";

/// A model to measure: configs, checkpoints, the tokenizer and the bucket it runs at.
pub struct Model {
    pub name: &'static str,
    pub configs: Configs,
    dit: Checkpoint,
    vae: Checkpoint,
    text: Checkpoint,
    tokenizer: PromptTokenizer,
    pub pixels: (usize, usize),
}

impl Model {
    /// The tiny model of the fixtures at 256².
    pub fn tiny(fx: &Path) -> Result<Model, String> {
        let f = ModelFolder::open(&fx.join("tiny_model")).map_err(|e| e.to_string())?;
        let ck = |n| f.checkpoint(n).map_err(|e| e.to_string());
        Ok(Model {
            name: "tiny",
            dit: ck(Network::Transformer)?,
            vae: ck(Network::Vae)?,
            text: ck(Network::TextEncoder)?,
            configs: f.configs.clone(),
            tokenizer: f.tokenizer.clone(),
            pixels: (256, 256),
        })
    }

    /// A mid-size model with random weights (the tiny model's layouts, widened: a 6-block DiT of
    /// width 256, a VAE of base width 32 with two residual blocks per stage, a 6-layer text
    /// encoder of width 256) at 256².
    pub fn mid(fx: &Path) -> Result<Model, String> {
        let tiny = Model::tiny(fx)?;
        let mut c = tiny.configs.clone();
        let d = &mut c.transformer;
        (d.hidden_size, d.num_attention_heads, d.num_layers, d.text_dim) = (256, 4, 6, 256);
        d.rope_dim_list = [16, 24, 24];
        (c.vae.base_dim, c.vae.decoder_base_dim, c.vae.num_res_blocks) = (32, 32, 2);
        let q = &mut c.text_encoder;
        (q.hidden_size, q.intermediate_size, q.num_hidden_layers, q.head_dim) = (256, 768, 6, 64);
        (q.vision.hidden_size, q.vision.intermediate_size, q.vision.out_hidden_size) = (128, 256, 256);
        let synth = |label, specs: &[joyrt_core::weights::ParamSpec], seed| {
            Checkpoint::synthetic(label, specs, DType::F32, seed).map_err(|e| e.to_string())
        };
        Ok(Model {
            name: "mid",
            dit: synth("mid transformer", &c.transformer.param_specs(), 1)?,
            vae: synth("mid vae", &c.vae.param_specs(), 2)?,
            text: synth("mid text encoder", &c.text_encoder.param_specs(), 3)?,
            configs: c,
            tokenizer: tiny.tokenizer,
            pixels: (256, 256),
        })
    }
}

/// The models the memory and streaming tests run: the tiny model always; the mid-size one too
/// when `JOYRT_TEST_MID_MODEL=1` (minutes per backend on a 2-core CPU, tens of minutes through
/// lavapipe or the CUDA emulation, so CI runs the tiny model only; docs/benchmarks.md has the
/// mid-size figures).
pub fn models(fx: &Path) -> Vec<Result<Model, String>> {
    let mut v = vec![Model::tiny(fx)];
    if std::env::var("JOYRT_TEST_MID_MODEL").is_ok_and(|v| v == "1") {
        v.push(Model::mid(fx));
    }
    v
}

/// Why the memory and streaming tests skip the CUDA emulation unless asked.
const EMULATED_ON_DEMAND: &str = "on the CUDA emulation these run with JOYRT_TEST_EMULATED_MEMORY=1 \
     (the emulated kernels are slow: 11 minutes for the tiny model on a loaded 2-core machine)";

/// Whether the memory and streaming tests run for the suite instance `suite` (`cpu`, `wgpu`,
/// `cuda_emulated`, …): everywhere but the CUDA emulation, which runs them on demand. Where they
/// do not, `report` records the skip of `what`.
pub fn runs_on(suite: &str, report: &mut Report, what: &str) -> bool {
    let runs =
        suite != "cuda_emulated" || std::env::var("JOYRT_TEST_EMULATED_MEMORY").is_ok_and(|v| v == "1");
    if !runs {
        report.skip("memory", what, EMULATED_ON_DEMAND);
    }
    runs
}

/// `(weights, peak)` bytes of one stage on a fresh backend.
type Measured = (u64, u64);

/// Compares the plan's figures for every stage of `model` with the measured ones, in `dtype`.
pub fn plan_vs_measured<B: Backend>(
    make: &dyn Fn() -> Option<B>,
    model: &Model,
    dtype: DType,
    report: &mut Report,
) {
    let c = &model.configs;
    let format = WeightFormat::new(dtype, None);
    let prompt = "turn the sky green";
    let pc_patch = c.text_encoder.vision.patch_size * c.text_encoder.vision.spatial_merge_size;
    let n_vis = (model.pixels.0 / pc_patch) * (model.pixels.1 / pc_patch);
    let encode = |p| model.tokenizer.encode_edit(p, n_vis).map(|(ids, _)| ids);
    let (ids, neg) = match (encode(prompt), encode("")) {
        (Ok(ids), Ok(neg)) => (ids, neg),
        (Err(e), _) | (_, Err(e)) => return report.check(LAYER, "tokenize", false, e.to_string()),
    };
    let tokens = Tokens { pixels: model.pixels, encoder: ids.len(), dit_text: ids.len() - DROP_TOKENS };
    let (dit_weights, _) = format.transformer(&c.transformer);
    let planned = [
        (
            "text encoder",
            format.text_encoder(&c.text_encoder),
            activations::text_encoder(&c.text_encoder, dtype, tokens),
        ),
        ("vae encode", format.vae(&c.vae), activations::vae_encode(&c.vae, dtype, model.pixels)),
        ("dit step", dit_weights, activations::dit_forward(&c.transformer, dtype, tokens)),
        ("vae decode", format.vae(&c.vae), activations::vae_decode(&c.vae, dtype, model.pixels)),
    ];
    for (stage, weights, act) in planned {
        let check = format!("{} {dtype} {stage} at {}x{}", model.name, model.pixels.1, model.pixels.0);
        let Some(b) = make() else { return };
        let measured = match stage {
            "text encoder" => text_stage(&b, model, dtype, (&ids, &neg)),
            "vae encode" => vae_encode_stage(&b, model, dtype),
            "dit step" => dit_stage(&b, model, dtype, tokens.dit_text),
            _ => vae_decode_stage(&b, model, dtype),
        };
        let Some((mw, mp)) = report.attempt(LAYER, &check, measured) else { continue };
        let (rw, rp) = (weights as f64 / mw as f64, (weights + act) as f64 / mp as f64);
        // The peak is what the plan decides on; the weights' ratio is reported (a pooled backend
        // rounds small buffers up to its size classes: wgpu's VAE weights measure ~10 % over).
        let ok = (rp - 1.0).abs() <= PLAN_TOLERANCE;
        let detail = format!(
            "planned/measured: weights {rw:.3} ({weights} / {mw}), peak {rp:.3} ({} / {mp})",
            weights + act
        );
        println!("{}: {check}: {detail}", report.backend);
        report.check(LAYER, check, ok, detail);
    }
}

fn text_stage<B: Backend>(
    b: &B,
    m: &Model,
    dtype: DType,
    (ids, neg): (&[u32], &[u32]),
) -> Result<Measured, String> {
    let e = |e: joyrt_core::Error| e.to_string();
    let qwen = Qwen::load(b, &m.text, &m.configs.text_encoder, dtype).map_err(e)?;
    let weights = b.memory_stats().0;
    let img = test_image(m.pixels);
    let v = &m.configs.text_encoder.vision;
    let (pv, gh, gw) =
        qwen_patchify(&img, v.patch_size, v.spatial_merge_size, v.temporal_patch_size, [0.5; 3], [0.5; 3])
            .map_err(e)?;
    let pv = Tensor::from_f32(b, [gh * gw, pv.len() / (gh * gw)], &pv, dtype).map_err(e)?;
    let vis = qwen.encode_image(&pv, gh, gw).map_err(e)?;
    let (hp, hn) = qwen.encode_pair(ids, neg, &vis).map_err(e)?;
    b.synchronize().map_err(e)?;
    drop((hp, hn));
    Ok((weights, b.memory_stats().1))
}

fn vae_encode_stage<B: Backend>(b: &B, m: &Model, dtype: DType) -> Result<Measured, String> {
    let e = |e: joyrt_core::Error| e.to_string();
    let vae = Vae::load(b, &m.vae, &m.configs.vae, dtype).map_err(e)?;
    let weights = b.memory_stats().0;
    let (h, w) = m.pixels;
    let x = Tensor::from_f32(b, [3, h, w], &test_image(m.pixels).to_vae_pixels(), dtype).map_err(e)?;
    let mean = vae.encode(&x).map_err(e)?.0;
    let z = vae.normalize(&mean.cast(DType::F32).map_err(e)?).map_err(e)?;
    b.synchronize().map_err(e)?;
    drop(z);
    Ok((weights, b.memory_stats().1))
}

fn vae_decode_stage<B: Backend>(b: &B, m: &Model, dtype: DType) -> Result<Measured, String> {
    let e = |e: joyrt_core::Error| e.to_string();
    let vae = Vae::load(b, &m.vae, &m.configs.vae, dtype).map_err(e)?;
    let weights = b.memory_stats().0;
    let s = m.configs.vae.scale();
    let (h, w) = (m.pixels.0 / s, m.pixels.1 / s);
    let zc = m.configs.vae.z_dim;
    let z =
        Tensor::from_f32(b, [zc, h, w], &Rng::new(5).normal_vec(zc * h * w, 1.0), DType::F32).map_err(e)?;
    let out = vae.decode_unclamped(&vae.denormalize(&z).map_err(e)?.cast(dtype).map_err(e)?).map_err(e)?;
    out.to_f32_vec().map_err(e)?;
    Ok((weights, b.memory_stats().1))
}

/// One CFG denoising step, as the pipeline runs it.
fn dit_stage<B: Backend>(b: &B, m: &Model, dtype: DType, text: usize) -> Result<Measured, String> {
    let e = |e: joyrt_core::Error| e.to_string();
    let cfg = &m.configs.transformer;
    let dit = Dit::load(b, &m.dit, cfg, dtype).map_err(e)?;
    let weights = b.memory_stats().0;
    let step = one_step(b, &dit, cfg, m.pixels, text, dtype).map_err(e)?;
    drop(step);
    Ok((weights, b.memory_stats().1))
}

/// The velocity-updated latent of one CFG step on seeded inputs (f32 `[1, C, h, w]`).
fn one_step<B: Backend>(
    b: &B,
    dit: &Dit<B>,
    cfg: &DitConfig,
    pixels: (usize, usize),
    text: usize,
    dtype: DType,
) -> joyrt_core::Result<Vec<u8>> {
    let (c, h, w) = (cfg.in_channels, pixels.0 / 8, pixels.1 / 8);
    let mut rng = Rng::new(7);
    let lat = |rng: &mut Rng| Tensor::from_f32(b, [1, c, h, w], &rng.normal_vec(c * h * w, 1.0), DType::F32);
    let (z_ref, x) = (lat(&mut rng)?, lat(&mut rng)?);
    let states = |rng: &mut Rng| {
        Tensor::from_f32(b, [text, cfg.text_dim], &rng.normal_vec(text * cfg.text_dim, 1.0), dtype)
    };
    let (e_pos, e_neg) = (states(&mut rng)?, states(&mut rng)?);
    let denoiser = Denoiser::new(dit, z_ref, &e_pos, Some(&e_neg), 4.0, dtype)?;
    let out = denoiser.step(&x, 500.0, -0.05)?;
    b.download(&out)
}

/// A smooth seeded test image.
fn test_image((h, w): (usize, usize)) -> RgbImage {
    let data = (0..h * w * 3).map(|i| ((i * 37 + i / (3 * w) * 11) % 251) as u8).collect();
    RgbImage { width: w, height: h, data }
}

/// A DiT step with the double blocks streamed (none or one resident) against the resident DiT:
/// the same bytes.
pub fn streamed_dit<B: Backend>(b: &B, model: &Model, dtype: DType, report: &mut Report) {
    let cfg = &model.configs.transformer;
    let text = 24;
    let run = |resident: usize| {
        let dit = Dit::load_streamed(b, &model.dit, cfg, dtype, resident)?;
        one_step(b, &dit, cfg, model.pixels, text, dtype)
    };
    let check = format!("{} {dtype} DiT step streamed = resident", model.name);
    let Some(want) = report.attempt(LAYER, &check, run(usize::MAX)) else { return };
    for resident in [0, 1] {
        let Some(got) = report.attempt(LAYER, &check, run(resident)) else { continue };
        let same = got == want;
        report.check(
            LAYER,
            format!("{check} ({resident} resident)"),
            same,
            if same { "bit-identical" } else { "bytes differ" },
        );
    }
}
