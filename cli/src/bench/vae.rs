//! `joyrt bench --parts vae`: the Wan VAE's encode and decode at `--size`, untiled and tiled, each
//! on a fresh backend, so that each run's peak memory is its own. The tiled outputs are compared
//! with the untiled ones (PSNR), and the peaks with the memory plan's figures.

use super::{peak_rss_bytes, BenchArgs, Lines};
use crate::backends::AnyBackend;
use anyhow::{Context, Result};
use joyrt_core::image::{psnr_f32, test_pattern};
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::models::vae::{Vae, VaeConfig};
use joyrt_core::models::vae_tiling::VaeTiling;
use joyrt_core::plan::{activations, WeightFormat};
use joyrt_core::weights::Checkpoint;
use joyrt_core::{random_weights, Backend, DType, Tensor};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// Seed of the synthetic full-size VAE's weights.
const FULL_VAE_SEED: u64 = 11;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encode,
    Decode,
}

/// One measured run: the network's output on the host, its median time, its peaks.
struct Run {
    output: Vec<f32>,
    seconds: f64,
    backend_peak: u64,
    rss_peak_growth: Option<u64>,
}

/// Sets this process's peak resident size (`VmHWM`) back to its current size, where Linux allows
/// it (`/proc/self/clear_refs`); returns the current size after the reset.
fn reset_peak_rss() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    peak_rss_bytes()
}

/// The VAE's configuration and weights: the published configuration on random weights drawn as
/// `joyrt make-model` draws them (norm gains ≈ 1, weights N(0, 1/fan_in)), or the model folder's.
fn weights(
    a: &BenchArgs,
    dtype: DType,
    model: &ModelFolder,
    doc: &mut Value,
) -> Result<(VaeConfig, Checkpoint)> {
    if !a.full_vae {
        doc["weights"] = json!(model.vae.display().to_string());
        return Ok((model.configs.vae.clone(), Checkpoint::open(&model.vae)?));
    }
    let cfg = VaeConfig::full();
    let bytes = random_weights::safetensors_in_memory(&cfg.param_specs(), dtype, FULL_VAE_SEED)?;
    let origin = PathBuf::from("<synthetic full-size VAE>");
    let ck = Checkpoint::from_sources(&origin, vec![(origin.join("weights"), Box::new(bytes))])?;
    doc["weights"] = json!("synthetic full-size");
    Ok((cfg, ck))
}

/// Loads the VAE on `b` and runs `dir` on `input` (`--iters` times, no warm-up: the first run's
/// output is kept), tiled when `tiling` is given; returns the output and the median seconds.
fn run_on<B: Backend>(
    b: &B,
    a: &BenchArgs,
    dtype: DType,
    (cfg, ck): (&VaeConfig, &Checkpoint),
    dir: Direction,
    (shape, values): (&[usize], &[f32]),
    tiling: Option<VaeTiling>,
) -> Result<(Vec<f32>, f64)> {
    let vae = Vae::load(b, ck, cfg, dtype)?;
    let x = Tensor::from_f32(b, shape.to_vec(), values, dtype)?;
    let once = || -> joyrt_core::Result<Vec<f32>> {
        let out = match (dir, tiling) {
            (Direction::Encode, None) => vae.encode(&x)?.0.to_f32_vec()?,
            (Direction::Encode, Some(t)) => vae.encode_mean_tiled(&x, t)?.to_f32_vec()?,
            (Direction::Decode, None) => vae.decode(&x)?,
            (Direction::Decode, Some(t)) => vae.decode_tiled(&x, t)?,
        };
        b.synchronize()?;
        Ok(out)
    };
    let mut times = Vec::with_capacity(a.iters);
    let mut output = None;
    for _ in 0..a.iters {
        let t0 = Instant::now();
        let out = once()?;
        times.push(t0.elapsed().as_secs_f64());
        output.get_or_insert(out);
    }
    times.sort_by(|p, q| p.total_cmp(q));
    Ok((output.unwrap_or_default(), times[times.len() / 2]))
}

/// [`run_on`] on a fresh backend, with its peaks: the backend's counters and the process's
/// resident-size growth.
fn run(
    a: &BenchArgs,
    dtype: DType,
    vae: (&VaeConfig, &Checkpoint),
    dir: Direction,
    input: (&[usize], &[f32]),
    tiling: Option<VaeTiling>,
) -> Result<Run> {
    let backend = AnyBackend::open(a.backend)?;
    let rss_base = reset_peak_rss();
    let (output, seconds) =
        crate::with_backend!(&backend, b => run_on(b, a, dtype, vae, dir, input, tiling))?;
    let rss_peak_growth = rss_base.and_then(|base| Some(peak_rss_bytes()?.saturating_sub(base)));
    Ok(Run { output, seconds, backend_peak: backend.memory().1, rss_peak_growth })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// Times the VAE's encode and decode untiled and tiled; returns the figures as one JSON object.
pub(super) fn bench_vae(a: &BenchArgs, dtype: DType, model: &ModelFolder, out: &Lines) -> Result<Value> {
    let mut doc = json!({ "size": a.size });
    let tiling = VaeTiling::parse(&a.vae_tiling)
        .with_context(|| format!("--vae-tiling {:?} is not TILE or TILE/STRIDE in pixels", a.vae_tiling))?;
    let t0 = Instant::now();
    let (cfg, ck) = weights(a, dtype, model, &mut doc)?;
    tiling.check(cfg.scale())?;
    out.say(format!(
        "VAE {} ({} params) ready in {:.1} s; tiles {}/{} px",
        doc["weights"].as_str().unwrap_or(""),
        cfg.param_count(),
        t0.elapsed().as_secs_f64(),
        tiling.tile,
        tiling.stride
    ));
    doc["params"] = json!(cfg.param_count());
    doc["tiling"] = json!(format!("{}/{}", tiling.tile, tiling.stride));
    let (size, s) = (a.size, cfg.scale());
    let weight_bytes = WeightFormat::new(dtype, None).vae(&cfg);
    let tile_px = (tiling.tile.min(size), tiling.tile.min(size));
    let planned = |dir: Direction, tiled: bool| {
        let px = if tiled { tile_px } else { (size, size) };
        weight_bytes
            + match dir {
                Direction::Encode => activations::vae_encode(&cfg, dtype, px),
                Direction::Decode => activations::vae_decode(&cfg, dtype, px),
            }
    };
    out.say(format!(
        "{:<22} {:>10} {:>14} {:>14} {:>8} {:>16}",
        "VAE run", "s", "peak MiB", "planned MiB", "plan/peak", "RSS growth MiB"
    ));
    let image = test_pattern(size, size);
    let mut runs = Vec::new();
    let mut latent: Option<Vec<f32>> = None;
    for dir in [Direction::Encode, Direction::Decode] {
        let mut pair = Vec::new();
        for tiled in [false, true] {
            // The decoder gets the untiled encoder's posterior mean (a round trip).
            let z_shape = [cfg.z_dim, size / s, size / s];
            let input: (&[usize], &[f32]) = match dir {
                Direction::Encode => (&[3, size, size], &image),
                Direction::Decode => (&z_shape, latent.as_deref().unwrap_or_default()),
            };
            let r = run(a, dtype, (&cfg, &ck), dir, input, tiled.then_some(tiling))?;
            let name = format!(
                "{} {}",
                if dir == Direction::Encode { "encode" } else { "decode" },
                if tiled { "tiled" } else { "untiled" }
            );
            let plan = planned(dir, tiled);
            let growth = r.rss_peak_growth.map_or("-".to_string(), |g| format!("{:.0}", mib(g)));
            out.say(format!(
                "{name:<22} {:>10.2} {:>14.1} {:>14.1} {:>8.3} {growth:>16}",
                r.seconds,
                mib(r.backend_peak),
                mib(plan),
                plan as f64 / r.backend_peak.max(1) as f64
            ));
            runs.push(json!({
                "run": name, "seconds": r.seconds, "peak_bytes": r.backend_peak, "planned_bytes": plan,
                "rss_peak_growth_bytes": r.rss_peak_growth,
            }));
            pair.push(r);
        }
        if dir == Direction::Encode {
            latent = Some(pair[0].output.clone());
        }
        // Pixels span 2; the posterior mean is given twice its largest magnitude as its span.
        let span = match dir {
            Direction::Decode => 2.0,
            Direction::Encode => 2.0 * pair[0].output.iter().fold(0f32, |m, v| m.max(v.abs())) as f64,
        };
        let db = psnr_f32(&pair[1].output, &pair[0].output, span);
        let what = if dir == Direction::Encode { "encode" } else { "decode" };
        out.say(format!("{what}: tiled vs untiled PSNR {db:.2} dB (span {span:.3})"));
        doc[format!("{what}_psnr_db")] = json!(db);
    }
    doc["runs"] = Value::Array(runs);
    Ok(doc)
}
