//! Layer 3: the whole edit, PNG + prompt → PNG, against `JoyImageEditPipeline` on the tiny model
//! with the noise injected and the reference latent taken as the posterior mean.

use crate::fixtures::{json, Golden};
use crate::report::{psnr_u8, Report};
use crate::tolerance::{PIPELINE_F32, PIPELINE_MIN_PSNR_DB};
use joyrt_core::image::RgbImage;
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::pipeline::{edit, EditParams};
use joyrt_core::{Backend, DType};
use std::path::Path;

pub fn read_png(path: &Path) -> Result<RgbImage, String> {
    let img = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?.to_rgb8();
    RgbImage::new(img.width() as usize, img.height() as usize, img.into_raw()).map_err(|e| e.to_string())
}

pub fn run<B: Backend>(b: &B, fx: &Path, report: &mut Report) {
    let layer = "pipeline";
    let setup = (|| -> Result<_, String> {
        let meta = json(&fx.join("golden/pipeline.json"))?;
        let g = Golden::open(&fx.join("golden/pipeline.safetensors"))?;
        let model = ModelFolder::open(&fx.join("tiny_model")).map_err(|e| e.to_string())?;
        let input = read_png(&fx.join("pipeline/input.png"))?;
        let want_png = read_png(&fx.join("pipeline/output.png"))?;
        let buckets = crate::fixtures::buckets(&meta["tiny_buckets"]);
        let params = EditParams {
            prompt: meta["prompt"].as_str().unwrap_or_default().to_string(),
            negative_prompt: meta["negative_prompt"].as_str().unwrap_or_default().to_string(),
            steps: meta["steps"].as_u64().unwrap_or(0) as usize,
            guidance: meta["guidance"].as_f64().unwrap_or(0.0) as f32,
            buckets: Some(buckets),
            noise: Some(g.f32("noise")?),
            dtype: DType::F32,
            trace: true,
            ..Default::default()
        };
        Ok((g, model, input, want_png, params))
    })();
    let Some((g, model, input, want_png, params)) = report.attempt(layer, "pipeline setup", setup) else {
        return;
    };
    let out = edit(b, &model, &input, &params, &mut |_| true).map_err(|e| e.to_string());
    let Some(out) = report.attempt(layer, "pipeline f32 run", out) else { return };
    let trace = out.trace.expect("trace requested");
    let tol = PIPELINE_F32;
    let mut cmp = |check: &str, got: &[f32], key: &str, f: &dyn Fn(Vec<f32>) -> Vec<f32>| match g.f32(key) {
        Ok(w) => report.compare(layer, check, got, &f(w), tol),
        Err(e) => report.check(layer, check, false, e),
    };
    let id = |v: Vec<f32>| v;
    cmp("prompt_embeds", &trace.prompt_embeds, "prompt_embeds", &id);
    cmp("negative_prompt_embeds", &trace.negative_prompt_embeds, "negative_prompt_embeds", &id);
    cmp("vae mean of the input", &trace.vae_mean, "vae_mean", &id);
    cmp("z_ref", &trace.z_ref, "z_ref", &id);
    for (i, lat) in trace.latents.iter().enumerate() {
        // Golden latents are (items, 16, h, w); item 1 is the target slot joyrt keeps.
        let target = |v: Vec<f32>| v[v.len() / 2..].to_vec();
        cmp(&format!("latents after step {i} (target)"), lat, &format!("latents_step{i}"), &target);
    }
    let to_unit: Vec<f32> = trace.decoded.iter().map(|x| (x / 2.0 + 0.5).clamp(0.0, 1.0)).collect();
    cmp("decoded image (f32, [0,1])", &to_unit, "output_f32", &id);
    report.check(
        layer,
        "output size = bucket",
        out.bucket == (want_png.height, want_png.width),
        format!("{}x{} vs {}x{}", out.image.width, out.image.height, want_png.width, want_png.height),
    );
    if out.image.data.len() == want_png.data.len() {
        let p = psnr_u8(&out.image.data, &want_png.data);
        report.check(
            layer,
            "output PNG PSNR vs diffusers",
            p >= PIPELINE_MIN_PSNR_DB,
            format!("{p:.1} dB (≥ {PIPELINE_MIN_PSNR_DB})"),
        );
    }
}
