//! The edit pipeline (model-spec §1): bucket + resize/crop, prompt encoding with Qwen3-VL, VAE
//! encode of the reference, the flow-matching denoising loop with CFG and norm rescale, VAE decode.
//!
//! [`edit`] loads the components one at a time and drops each as soon as the pipeline no longer
//! needs it, so the text encoder's memory is free before the DiT is loaded (issue 4, item 7). A
//! [`Session`] loads them once and keeps them for many edits (a server).

mod session;
pub use session::Session;

use crate::finite::check_finite;
use crate::image::{qwen_patchify, resize_center_crop, Buckets, RgbImage};
use crate::limits::{in_range, GUIDANCE, SHIFT, STEPS};
use crate::model_folder::{ModelFolder, Network};
use crate::models::dit::{Dit, DitRequest, TextStream};
use crate::models::qwen::Qwen;
use crate::models::vae::Vae;
use crate::models::vae_tiling::VaeTiling;
use crate::plan::DitPlacement;
use crate::prompt::DROP_TOKENS;
use crate::scheduler::{Schedule, SigmaSchedule};
use crate::{Backend, DType, Error, Result, Rng, Tensor};
use std::time::Duration;
use web_time::Instant;

/// The longest DiT text stream diffusers keeps (`max_sequence_length`); longer prompts keep the
/// last tokens in diffusers — joyrt refuses them instead of silently cutting the instruction.
pub const MAX_TEXT_TOKENS: usize = 4096;

/// What to do with one image.
#[derive(Clone, Debug)]
pub struct EditParams {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub guidance: f32,
    pub seed: u64,
    /// `None`: the scheduler config's shift.
    pub shift: Option<f32>,
    pub schedule: SigmaSchedule,
    /// Storage and activation dtype of the networks (latents and the scheduler stay f32).
    pub dtype: DType,
    /// `None`: diffusers' 1024-px buckets.
    pub buckets: Option<Buckets>,
    /// Target-slot noise `[16, h, w]` to use instead of seeded noise (conformance runs).
    pub noise: Option<Vec<f32>>,
    /// Keep intermediate tensors in [`EditOutput::trace`].
    pub trace: bool,
    /// Run the VAE tile by tile when the image is larger than a tile (less device memory; a
    /// slightly different result: `models/vae_tiling.rs`).
    pub vae_tiling: Option<VaeTiling>,
    /// Where an edit that loads its own DiT keeps the double blocks (a memory plan's choice:
    /// [`crate::plan`]); streamed blocks give the same result. A [`Session`]'s DiT is resident.
    pub dit: DitPlacement,
}

impl Default for EditParams {
    fn default() -> Self {
        EditParams {
            prompt: String::new(),
            negative_prompt: String::new(),
            steps: 40,
            guidance: 4.0,
            seed: 0,
            shift: None,
            schedule: SigmaSchedule::Diffusers,
            dtype: DType::F32,
            buckets: None,
            noise: None,
            trace: false,
            vae_tiling: None,
            dit: DitPlacement::Resident,
        }
    }
}

/// Pipeline stages, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Preprocess,
    LoadTextEncoder,
    EncodePrompt,
    LoadVae,
    VaeEncode,
    LoadTransformer,
    Denoise,
    VaeDecode,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Preprocess => "preprocess",
            Stage::LoadTextEncoder => "load text encoder",
            Stage::EncodePrompt => "encode prompt",
            Stage::LoadVae => "load vae",
            Stage::VaeEncode => "vae encode",
            Stage::LoadTransformer => "load transformer",
            Stage::Denoise => "denoise",
            Stage::VaeDecode => "vae decode",
        }
    }
}

/// Progress reported to the caller, who may cancel by returning `false`.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    StageStart(Stage),
    StageEnd(Stage, Duration),
    /// Denoising step `index` (0-based) of `total` finished.
    Step {
        index: usize,
        total: usize,
        elapsed: Duration,
    },
}

/// Intermediate host tensors of a traced run (all f32).
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub prompt_embeds: Vec<f32>,
    pub negative_prompt_embeds: Vec<f32>,
    pub vae_mean: Vec<f32>,
    pub z_ref: Vec<f32>,
    /// Target-slot latents `[16, h, w]` after each step.
    pub latents: Vec<Vec<f32>>,
    /// Decoder output `[3, H, W]` before the 8-bit conversion.
    pub decoded: Vec<f32>,
}

pub struct EditOutput {
    pub image: RgbImage,
    /// `(height, width)` of the bucket (= the output size).
    pub bucket: (usize, usize),
    pub schedule: Schedule,
    pub timings: Vec<(Stage, Duration)>,
    pub trace: Option<Trace>,
}

struct Clock<'a> {
    on: &'a mut dyn FnMut(Progress) -> bool,
    timings: Vec<(Stage, Duration)>,
}

impl Clock<'_> {
    /// Runs a stage that does not read back from the device.
    fn run<T>(&mut self, stage: Stage, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let t0 = self.start(stage)?;
        let out = f(self)?;
        self.end(stage, t0)?;
        Ok(out)
    }

    /// Opens a stage that awaits a readback (closed by [`Clock::end`]): async closures would tie
    /// the clock's borrow to the future, so those stages are written between the two calls.
    fn start(&mut self, stage: Stage) -> Result<Instant> {
        if !(self.on)(Progress::StageStart(stage)) {
            return Err(Error::Cancelled);
        }
        Ok(Instant::now())
    }

    fn end(&mut self, stage: Stage, t0: Instant) -> Result<()> {
        let dt = t0.elapsed();
        self.timings.push((stage, dt));
        if !(self.on)(Progress::StageEnd(stage, dt)) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

impl EditParams {
    /// The request's parameters in their ranges ([`crate::limits`]); [`edit`] calls it before
    /// any work, and a caller can call it earlier, before loading anything.
    pub fn validate(&self) -> Result<()> {
        let check = |r: std::result::Result<(), String>| r.map_err(Error::Input);
        check(in_range("steps", self.steps, STEPS))?;
        check(in_range("guidance", self.guidance, GUIDANCE))?;
        if let Some(s) = self.shift {
            check(in_range("shift", s, SHIFT))?;
        }
        Ok(())
    }
}

/// Runs one edit, loading each network when the pipeline first needs it and dropping it as soon as
/// it no longer does (a [`Session`] keeps them loaded across edits instead). `on_progress` is
/// called at every stage boundary and after every step; returning `false` cancels between steps
/// with [`Error::Cancelled`].
#[cfg(not(target_arch = "wasm32"))]
pub fn edit<B: Backend>(
    backend: &B,
    model: &ModelFolder,
    image: &RgbImage,
    params: &EditParams,
    on_progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<EditOutput> {
    pollster::block_on(edit_async(backend, model, image, params, on_progress))
}

/// [`edit`] as a future: the pipeline reads back through [`Backend::download_async`], so in a
/// browser the page's event loop runs while the device works. [`edit`] drives this same future.
pub async fn edit_async<B: Backend>(
    backend: &B,
    model: &ModelFolder,
    image: &RgbImage,
    params: &EditParams,
    on_progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<EditOutput> {
    let networks = LoadEach { backend, model, dtype: params.dtype, dit: params.dit };
    run(backend, model, image, params, on_progress, &networks).await
}

/// A network the pipeline uses: lent by a resident [`Session`], or loaded for this edit alone (and
/// freed when the pipeline drops it).
enum Held<'a, T> {
    Lent(&'a T),
    Owned(T),
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Held::Lent(t) => t,
            Held::Owned(t) => t,
        }
    }
}

/// Where [`run`] gets the three networks. A load is timed as its stage on `clock`.
trait Networks<B: Backend> {
    fn text_encoder(&self, clock: &mut Clock<'_>) -> Result<Held<'_, Qwen<B>>>;
    fn vae(&self, clock: &mut Clock<'_>) -> Result<Held<'_, Vae<B>>>;
    fn transformer(&self, clock: &mut Clock<'_>) -> Result<Held<'_, Dit<B>>>;
}

/// Each network loaded when asked for, in `dtype`.
struct LoadEach<'a, B: Backend> {
    backend: &'a B,
    model: &'a ModelFolder,
    dtype: DType,
    dit: DitPlacement,
}

impl<B: Backend> Networks<B> for LoadEach<'_, B> {
    fn text_encoder(&self, clock: &mut Clock<'_>) -> Result<Held<'_, Qwen<B>>> {
        clock
            .run(Stage::LoadTextEncoder, |_| load_text_encoder(self.backend, self.model, self.dtype))
            .map(Held::Owned)
    }
    fn vae(&self, clock: &mut Clock<'_>) -> Result<Held<'_, Vae<B>>> {
        clock.run(Stage::LoadVae, |_| load_vae(self.backend, self.model, self.dtype)).map(Held::Owned)
    }
    fn transformer(&self, clock: &mut Clock<'_>) -> Result<Held<'_, Dit<B>>> {
        clock
            .run(Stage::LoadTransformer, |_| {
                let ck = self.model.checkpoint(Network::Transformer)?;
                let cfg = &self.model.configs.transformer;
                let resident = self.dit.resident_blocks(cfg.num_layers);
                Dit::load_streamed(self.backend, &ck, cfg, self.dtype, resident)
            })
            .map(Held::Owned)
    }
}

fn load_text_encoder<B: Backend>(backend: &B, model: &ModelFolder, dtype: DType) -> Result<Qwen<B>> {
    Qwen::load(backend, &model.checkpoint(Network::TextEncoder)?, &model.configs.text_encoder, dtype)
}

fn load_vae<B: Backend>(backend: &B, model: &ModelFolder, dtype: DType) -> Result<Vae<B>> {
    Vae::load(backend, &model.checkpoint(Network::Vae)?, &model.configs.vae, dtype)
}

fn load_transformer<B: Backend>(backend: &B, model: &ModelFolder, dtype: DType) -> Result<Dit<B>> {
    Dit::load(backend, &model.checkpoint(Network::Transformer)?, &model.configs.transformer, dtype)
}

/// The edit itself, with its networks from `networks`. The one body of every edit: natively
/// driven to completion by `pollster` (each readback is ready at its first poll), in a browser
/// awaited by the page.
async fn run<B: Backend>(
    backend: &B,
    model: &ModelFolder,
    image: &RgbImage,
    params: &EditParams,
    on_progress: &mut dyn FnMut(Progress) -> bool,
    networks: &dyn Networks<B>,
) -> Result<EditOutput> {
    params.validate()?;
    if let Some(t) = params.vae_tiling {
        // Before the denoising, not after it.
        t.check(model.configs.vae.scale())?;
    }
    let dtype = params.dtype;
    let mut clock = Clock { on: on_progress, timings: Vec::new() };
    let mut trace = params.trace.then(Trace::default);

    // The folder's configs were validated when it was opened (`ModelFolder::open`).
    let vae_cfg = &model.configs.vae;
    let tokenizer = &model.tokenizer;
    let shift = params.shift.unwrap_or(model.scheduler.shift);
    let schedule = Schedule::new(params.schedule, params.steps, shift);

    // Bucket, resize + crop; the same pixels feed the VAE and the vision tower.
    let (bucket, pixels) = clock.run(Stage::Preprocess, |_| {
        let buckets = params.buckets.clone().unwrap_or_else(|| Buckets::generate(1024));
        let (h, w) = buckets.best(image.height, image.width);
        let img = resize_center_crop(image, h, w);
        let pc = &model.processor;
        if h * w < pc.min_pixels || h * w > pc.max_pixels {
            return Err(Error::Input(format!(
                "bucket {w}x{h} is outside the processor's pixel range [{}, {}]",
                pc.min_pixels, pc.max_pixels
            )));
        }
        Ok(((h, w), img))
    })?;
    let (h, w) = bucket;
    let lat = (h / 8, w / 8);
    let zc = vae_cfg.z_dim;
    if h % 16 != 0 || w % 16 != 0 {
        return Err(Error::Input(format!("bucket {w}x{h} is not a multiple of 16 pixels")));
    }

    // Text encoder: loaded, used for both prompts, dropped.
    let (e_pos, e_neg) = {
        let qwen = networks.text_encoder(&mut clock)?;
        clock.run(Stage::EncodePrompt, |_| {
            let pc = &model.processor;
            let (pv, gh, gw) = qwen_patchify(
                &pixels,
                pc.patch_size,
                pc.merge_size,
                pc.temporal_patch_size,
                pc.image_mean,
                pc.image_std,
            )?;
            let n_vis = gh * gw / (pc.merge_size * pc.merge_size);
            let encode = |what: &str, text: &str| {
                tokenizer
                    .encode_edit(text, n_vis)
                    .map(|(ids, _)| ids)
                    .map_err(|e| Error::Input(format!("the {what}: {e}")))
            };
            let ids_pos = encode("prompt", &params.prompt)?;
            let ids_neg = encode("negative prompt", &params.negative_prompt)?;
            for (what, ids) in [("prompt", &ids_pos), ("negative prompt", &ids_neg)] {
                if ids.len() - DROP_TOKENS > MAX_TEXT_TOKENS {
                    return Err(Error::Input(format!(
                        "the {what} is too long: {} text tokens with the image, at most {MAX_TEXT_TOKENS}",
                        ids.len() - DROP_TOKENS
                    )));
                }
            }
            let pv = Tensor::from_f32(backend, [gh * gw, pv.len() / (gh * gw)], &pv, dtype)?;
            let vis = qwen.encode_image(&pv, gh, gw)?;
            let (hp, hn) = qwen.encode_pair(&ids_pos, &ids_neg, &vis)?;
            let keep = |t: Tensor<B>| t.slice(0, DROP_TOKENS, t.dims()[0] - DROP_TOKENS);
            Ok((keep(hp)?, keep(hn)?))
        })?
    };
    if let Some(t) = trace.as_mut() {
        t.prompt_embeds = e_pos.to_f32_vec_async().await?;
        t.negative_prompt_embeds = e_neg.to_f32_vec_async().await?;
    }

    // VAE: the reference latent is the posterior mean (deterministic; diffusers samples).
    let vae = networks.vae(&mut clock)?;
    let t0 = clock.start(Stage::VaeEncode)?;
    let x = Tensor::from_f32(backend, [3, h, w], &pixels.to_vae_pixels(), dtype)?;
    let mean = match params.vae_tiling.filter(|t| t.applies(h, w)) {
        Some(t) => vae.encode_mean_tiled_async(&x, t).await?,
        None => vae.encode(&x)?.0,
    };
    if let Some(t) = trace.as_mut() {
        t.vae_mean = mean.to_f32_vec_async().await?;
    }
    let z_ref = vae.normalize(&mean.cast(DType::F32)?)?;
    clock.end(Stage::VaeEncode, t0)?;
    let z_ref = z_ref.cast(DType::F32)?.reshape([1, zc, lat.0, lat.1])?;
    if let Some(t) = trace.as_mut() {
        t.z_ref = z_ref.to_f32_vec_async().await?;
    }

    // Target noise.
    let n_lat = zc * lat.0 * lat.1;
    let noise = match &params.noise {
        Some(n) if n.len() == n_lat => n.clone(),
        Some(n) => {
            return Err(Error::Input(format!("injected noise has {} values, {n_lat} expected", n.len())))
        }
        None => Rng::new(params.seed).normal_vec(n_lat, 1.0),
    };
    let mut x = Tensor::from_f32(backend, [1, zc, lat.0, lat.1], &noise, DType::F32)?;

    // Denoise: DiT loaded only now, dropped after the loop.
    let latents = {
        let dit = networks.transformer(&mut clock)?;
        let stage_t0 = clock.start(Stage::Denoise)?;
        let neg = (params.guidance > 1.0).then_some(&e_neg);
        let denoiser = Denoiser::new(&*dit, z_ref, &e_pos, neg, params.guidance, dtype)?;
        let total = schedule.steps();
        for i in 0..total {
            let t0 = Instant::now();
            x = denoiser.step(&x, schedule.timesteps[i], schedule.dt(i))?;
            // NaN or Inf weights (or an overflow) would otherwise run on and end in a flat
            // image; reading z_dim·h·w values back per step is cheap next to the DiT.
            let host = x.to_f32_vec_async().await?;
            check_finite(|| format!("denoising step {} of {total}", i + 1), &host)?;
            if let Some(tr) = trace.as_mut() {
                tr.latents.push(host);
            }
            if !(clock.on)(Progress::Step { index: i, total, elapsed: t0.elapsed() }) {
                return Err(Error::Cancelled);
            }
        }
        clock.end(Stage::Denoise, stage_t0)?;
        x
    };

    // Decode the target only.
    let t0 = clock.start(Stage::VaeDecode)?;
    let z = vae.denormalize(&latents.reshape([zc, lat.0, lat.1])?)?;
    let out = match params.vae_tiling.filter(|t| t.applies(h, w)) {
        Some(t) => vae.decode_tiled_async(&z.cast(dtype)?, t).await?,
        None => vae.decode_async(&z.cast(dtype)?).await?,
    };
    let image_out = RgbImage::from_vae_pixels(w, h, &out)?;
    if let Some(t) = trace.as_mut() {
        t.decoded = out;
    }
    clock.end(Stage::VaeDecode, t0)?;

    Ok(EditOutput { image: image_out, bucket, schedule, timings: clock.timings, trace })
}

/// The denoising loop's step for one request: everything fixed for the request (the DiT's RoPE
/// table and text streams, the reference latent) prepared once by [`Denoiser::new`].
pub struct Denoiser<'a, B: Backend> {
    dit: &'a Dit<B>,
    request: DitRequest<B>,
    /// The reference latent `[1, C, h, w]` (f32), restored in front of the target every step.
    z_ref: Tensor<B>,
    text_pos: TextStream<B>,
    /// The negative prompt's text stream; `None` runs without CFG.
    text_neg: Option<TextStream<B>>,
    guidance: f32,
    dtype: DType,
}

impl<'a, B: Backend> Denoiser<'a, B> {
    /// `z_ref` is the reference latent `[1, C, h, w]`; `e_pos`, `e_neg` the prompt encoder's
    /// states; `e_neg = None` disables CFG. `dtype` is the DiT's activation dtype.
    pub fn new(
        dit: &'a Dit<B>,
        z_ref: Tensor<B>,
        e_pos: &Tensor<B>,
        e_neg: Option<&Tensor<B>>,
        guidance: f32,
        dtype: DType,
    ) -> Result<Self> {
        let [1, c, h, w] = z_ref.dims()[..] else {
            return Err(Error::shape(
                "denoise",
                format!("reference latent {} is not [1, C, h, w]", z_ref.shape()),
            ));
        };
        Ok(Denoiser {
            dit,
            request: dit.prepare(&[2, c, h, w])?,
            z_ref,
            text_pos: dit.embed_text(e_pos)?,
            text_neg: e_neg.map(|e| dit.embed_text(e)).transpose()?,
            guidance,
            dtype,
        })
    }

    /// One Euler step from the f32 target latent `x [1, C, h, w]` at timestep `t`: the reference
    /// slot (item 0) and the target (item 1) through the DiT once per prompt, the target's
    /// velocities combined by CFG with norm rescale, then `x + dt·v`. The time vector is computed
    /// once for both branches.
    pub fn step(&self, x: &Tensor<B>, t: f32, dt: f32) -> Result<Tensor<B>> {
        let [_, c, h, w] = x.dims()[..] else {
            return Err(Error::shape("denoise", format!("latent {} is not [1, C, h, w]", x.shape())));
        };
        let items = Tensor::concat(&[&self.z_ref, x], 0)?.cast(self.dtype)?;
        let vec = self.dit.time_vector(t)?;
        let velocity = |text: &TextStream<B>| -> Result<Tensor<B>> {
            let v = self.dit.forward_with(&self.request, &items, &vec, text)?;
            v.slice(0, 1, 1)?.cast(DType::F32)?.reshape([c, h * w])
        };
        let v_c = velocity(&self.text_pos)?;
        let v = match &self.text_neg {
            Some(neg) => v_c.cfg_renorm(&velocity(neg)?, self.guidance)?,
            None => v_c,
        };
        x.scaled_add(&v.reshape([1, c, h, w])?, dt)
    }
}
