//! `joyrt edit`.

use crate::backends::{memory_budget, AnyBackend, BackendChoice};
use crate::output::{check_output_png, read_image, write_png_atomic};
use crate::progress::StageReporter;
use crate::prompt_input::PromptArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use joyrt_core::image::Buckets;
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::models::vae_tiling::VaeTiling;
use joyrt_core::pipeline::{edit, EditParams, Progress, Stage};
use joyrt_core::plan::{plan, PlanRequest, WeightFormat};
use joyrt_core::scheduler::SigmaSchedule;
use joyrt_core::DType;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct EditArgs {
    /// Input image (PNG or JPEG).
    #[arg(long)]
    pub image: PathBuf,
    #[command(flatten)]
    pub prompts: PromptArgs,
    /// Output PNG, checked before any compute. Written atomically: on any error no file is left
    /// behind.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output file if it exists (never the input image, never a read-only file).
    #[arg(long)]
    pub overwrite: bool,
    /// Model folder in the published diffusers layout (JoyAI-Image-Edit-Diffusers), or a Hugging
    /// Face repository id (`ORG/NAME[@REVISION]`), downloaded into the Hugging Face cache when missing. Without it a
    /// built-in tiny random-weight model is used: it proves the pipeline, it does not edit well.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Denoising steps.
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    /// Guidance scale; CFG is on when > 1.
    #[arg(long, default_value_t = 4.0)]
    pub guidance: f32,
    /// Seed of the initial noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Flow shift (default: the model's scheduler config, 1.5 for JoyAI-Image-Edit).
    #[arg(long)]
    pub shift: Option<f32>,
    /// Use the original JoyAI release's σ formula instead of diffusers'.
    #[arg(long)]
    pub original_schedule: bool,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Base size of the resolution buckets: a multiple of 64 from 128 to 4096. Default: the model
    /// folder's own (256 for a tiny model made by make-model and for the built-in model), else
    /// 1024, diffusers' about-1-MP table. Smaller bases give smaller outputs.
    #[arg(long)]
    pub base_size: Option<usize>,
    /// Weight and activation dtype: bf16, f16 or f32 (latents and the scheduler stay f32); or
    /// fp8 for a folder quantized by `joyrt quantize --format fp8`: bf16 activations, and every
    /// fp8 linear run W8A8 (its activations quantized per row to E4M3, FP8 tensor cores on CUDA
    /// sm_89 and later; the CPU runs the reference math).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Device memory the run may use, in GB (default: what the device reports free; the host's
    /// available memory on the CPU). The memory plan (`joyrt plan`) streams DiT blocks and tiles
    /// the VAE to fit it, and refuses with the numbers a run that cannot fit, instead of failing
    /// part-way.
    #[arg(long)]
    pub max_memory_gb: Option<f64>,
    /// Run the VAE in overlapping tiles (diffusers' `vae.enable_tiling()`): `auto` (when the
    /// memory plan needs it), `off`, `on` (256-pixel tiles every 192 pixels, diffusers' defaults)
    /// or `TILE[/STRIDE]` in pixels. Less device memory for large images; the result differs
    /// slightly from the untiled VAE.
    #[arg(long, default_value = "auto", value_name = "auto|off|on|TILE[/STRIDE]")]
    pub vae_tiling: String,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print a machine-readable JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The folder's weight format; `--dtype fp8` needs fp8 weights to run W8A8 on.
fn weight_format(folder: &ModelFolder, dtype: DType, asked: &str) -> Result<WeightFormat> {
    let format = WeightFormat::of_folder(folder, dtype)?;
    let fp8 = Some(joyrt_core::QuantFormat::Fp8E4M3);
    if asked == "fp8" && format.transformer_quant != fp8 && format.text_encoder_quant != fp8 {
        bail!(
            "--dtype fp8 runs W8A8 on fp8-quantized weights, and {} has none: quantize it with `joyrt quantize --format fp8`",
            folder.root.display()
        );
    }
    Ok(format)
}

pub fn run(a: EditArgs) -> Result<()> {
    let tiling_choice = parse_vae_tiling(&a.vae_tiling)?;
    check_output_png(&a.output, &a.image, a.overwrite)?;
    let (prompt, negative_prompt) = a.prompts.resolve()?;
    let image = read_image(&a.image)?;
    let (folder, builtin) = match &a.model {
        Some(dir) => (ModelFolder::open(&crate::hf_cache::resolve(dir)?)?, false),
        None => (crate::builtin::model_folder()?, true),
    };
    let base_size = match a.base_size {
        Some(b) => Some(b),
        None => crate::base_size::folder_default(&folder.root)?,
    };
    let backend = AnyBackend::open(a.backend)?;
    let dtype = backend.run_dtype(&a.dtype)?;
    let buckets = base_size.map(crate::base_size::buckets_for).transpose()?;
    let bucket = buckets.clone().unwrap_or_else(|| Buckets::generate(1024)).best(image.height, image.width);
    let plan = plan(
        &folder.configs,
        &PlanRequest {
            pixels: bucket,
            format: weight_format(&folder, dtype, &a.dtype)?,
            device_bytes: memory_budget(&backend, a.max_memory_gb),
            tiling: match tiling_choice {
                Tiling::Forced(Some(t)) => t,
                _ => VaeTiling::default(),
            },
            streaming: !matches!(backend, AnyBackend::Cpu(_)),
        },
    )?;
    let vae_tiling = match tiling_choice {
        Tiling::Auto => plan.vae_tiling,
        Tiling::Forced(t) => t,
    };
    if !a.quiet && !a.json {
        eprintln!("{}", plan.summary());
    }
    if builtin && !a.quiet {
        eprintln!("note: no --model given: using the built-in tiny random-weight model (it proves the pipeline; it does not edit well)");
    }
    let params = EditParams {
        prompt,
        negative_prompt,
        steps: a.steps,
        guidance: a.guidance,
        seed: a.seed,
        shift: a.shift,
        schedule: if a.original_schedule { SigmaSchedule::Original } else { SigmaSchedule::Diffusers },
        dtype,
        buckets,
        vae_tiling,
        dit: plan.dit,
        ..Default::default()
    };

    let progress = StageReporter::new(a.steps, !a.quiet && !a.json);
    let t0 = Instant::now();
    let mut on_progress = |p: Progress| {
        progress.on(p);
        true
    };
    let out = crate::with_backend!(&backend, b => edit(b, &folder, &image, &params, &mut on_progress));
    progress.finish();
    let out = match out {
        Ok(out) => out,
        Err(e) if builtin => return Err(crate::builtin::explain_model_error(e, &folder.root)),
        Err(e) => return Err(e.into()),
    };
    write_png_atomic(&out.image, &a.output, a.overwrite)?;
    let total = t0.elapsed();

    if a.json {
        let timings: serde_json::Map<String, serde_json::Value> = out
            .timings
            .iter()
            .map(|(s, d)| (s.name().to_string(), serde_json::json!(d.as_secs_f64())))
            .collect();
        let summary = serde_json::json!({
            "output": a.output.display().to_string(),
            "width": out.bucket.1,
            "height": out.bucket.0,
            "input_width": image.width,
            "input_height": image.height,
            "steps": a.steps,
            "guidance": a.guidance,
            "seed": a.seed,
            "shift": out.schedule.sigmas.len().checked_sub(1).map(|_| a.shift.unwrap_or(folder.scheduler.shift)),
            "dtype": dtype.name(),
            "w8a8": a.dtype == "fp8",
            "backend": backend.name(),
            "builtin_model": builtin,
            "base_size": base_size,
            "peak_memory_bytes": backend.memory().1,
            "plan": plan,
            "timings_s": timings,
            "total_s": total.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !a.quiet {
        let denoise = out
            .timings
            .iter()
            .find(|(s, _)| *s == Stage::Denoise)
            .map(|(_, d)| d.as_secs_f64())
            .unwrap_or(0.0);
        eprintln!(
            "wrote {} ({}x{}) in {:.2} s on {} ({:.3} s/step)",
            a.output.display(),
            out.bucket.1,
            out.bucket.0,
            total.as_secs_f64(),
            backend.name(),
            denoise / a.steps as f64
        );
    }
    Ok(())
}

/// `--vae-tiling`: as the memory plan says, or as asked.
enum Tiling {
    Auto,
    Forced(Option<VaeTiling>),
}

/// `--vae-tiling`: `auto`, `off`, `on` or `TILE[/STRIDE]` (checked against the VAE's scale by the
/// pipeline).
fn parse_vae_tiling(s: &str) -> Result<Tiling> {
    match s {
        "auto" => Ok(Tiling::Auto),
        "off" => Ok(Tiling::Forced(None)),
        "on" => Ok(Tiling::Forced(Some(VaeTiling::default()))),
        other => VaeTiling::parse(other).map(|t| Tiling::Forced(Some(t))).with_context(|| {
            format!("--vae-tiling {other:?} is not auto, off, on, or TILE[/STRIDE] in pixels (e.g. 256/192)")
        }),
    }
}
