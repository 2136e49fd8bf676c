//! `joyrt bench`: per-op and per-step timings with device synchronisation.

use crate::backends::{AnyBackend, BackendChoice};
use anyhow::{bail, Context, Result};
use clap::Args;
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::models::dit::{Dit, DitConfig};
use joyrt_core::weights::Checkpoint;
use joyrt_core::{Backend, DType, Rng, Tensor};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Model folder whose transformer is timed (default: the built-in tiny model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Tokens (rows) of the op benchmarks; the DiT at 1024² has 9231.
    #[arg(long, default_value_t = 512)]
    pub tokens: usize,
    /// Sequence length of the attention benchmark (default: --tokens).
    #[arg(long)]
    pub attn_tokens: Option<usize>,
    /// Image size of the DiT step (square, multiple of 16).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Text tokens of the DiT step (JoyAI at 1024² has 9231 tokens in all: 2 × 4096 image + text).
    #[arg(long, default_value_t = 64)]
    pub text_tokens: usize,
    /// Time the full-size DiT (the published 16B configuration) on synthetic random weights
    /// held in memory, instead of the model folder's transformer.
    #[arg(long)]
    pub full_dit: bool,
}

const FULL_DIT_CONFIG: &str = include_str!("configs/full/transformer.json");

/// Median seconds of `iters` runs after one warm-up, synchronising the device around each.
fn time<B: Backend>(b: &B, iters: usize, mut f: impl FnMut() -> joyrt_core::Result<()>) -> Result<f64> {
    f()?;
    b.synchronize()?;
    let mut t = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t0 = Instant::now();
        f()?;
        b.synchronize()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

fn bench<B: Backend>(b: &B, a: &BenchArgs, dtype: DType, model: &ModelFolder) -> Result<()> {
    let mut rng = Rng::new(1);
    let mut rand = |shape: &[usize]| {
        Tensor::from_f32(b, shape.to_vec(), &rng.normal_vec(shape.iter().product(), 0.5), dtype)
    };
    let m = a.tokens;
    println!("{:<44} {:>10} {:>10}", "op (DiT block shapes, K×N)", "ms", "GFLOP/s");
    for (k, n) in [(4096, 12288), (4096, 4096), (4096, 16384), (16384, 4096)] {
        let (x, w) = (rand(&[m, k])?, rand(&[n, k])?);
        let s = time(b, a.iters, || x.linear(&w, None).map(|_| ()))?;
        println!(
            "{:<44} {:>10.2} {:>10.1}",
            format!("linear M={m} {k}x{n}"),
            s * 1e3,
            2.0 * (m * k * n) as f64 / s / 1e9
        );
    }
    let l = a.attn_tokens.unwrap_or(m);
    let (q, kk, v) = (rand(&[l, 32, 128])?, rand(&[l, 32, 128])?, rand(&[l, 32, 128])?);
    let s = time(b, a.iters, || q.attention(&kk, &v, false, None).map(|_| ()))?;
    println!(
        "{:<44} {:>10.2} {:>10.1}",
        format!("attention L={l} 32x128"),
        s * 1e3,
        4.0 * (l * l * 4096) as f64 / s / 1e9
    );

    let (cfg, ck) = if a.full_dit {
        let json: serde_json::Value = serde_json::from_str(FULL_DIT_CONFIG)?;
        let cfg = DitConfig::from_json(&json, std::path::Path::new("configs/full/transformer.json"))?;
        let t0 = Instant::now();
        let ck = Checkpoint::synthetic("full-size DiT", &cfg.param_specs(), dtype, 7)?;
        println!(
            "synthetic full-size DiT weights: {} params in {:.1} s",
            cfg.param_count(),
            t0.elapsed().as_secs_f64()
        );
        (cfg, ck)
    } else {
        (DitConfig::from_file(&model.transformer.join("config.json"))?, Checkpoint::open(&model.transformer)?)
    };
    let t0 = Instant::now();
    let dit = Dit::load(b, &ck, &cfg, dtype)?;
    b.synchronize()?;
    println!("DiT loaded to {} in {:.1} s", b.name(), t0.elapsed().as_secs_f64());
    drop(ck);
    if a.size == 0 || !a.size.is_multiple_of(16) {
        bail!("--size must be a positive multiple of 16");
    }
    let lat = rand(&[2, cfg.in_channels, a.size / 8, a.size / 8])?;
    let text = rand(&[a.text_tokens.max(1), cfg.text_dim])?;
    let s = time(b, a.iters, || dit.forward(&lat, 500.0, &text).map(|_| ()))?;
    println!("{:<44} {:>10.2}", format!("DiT forward {}² (×2 per CFG step)", a.size), s * 1e3);
    Ok(())
}

pub fn run(a: BenchArgs) -> Result<()> {
    let dtype = joyrt_core::DType::parse(&a.dtype).with_context(|| format!("unknown dtype {:?}", a.dtype))?;
    let model = match &a.model {
        Some(d) => ModelFolder::open(d)?,
        None => crate::builtin::model_folder()?,
    };
    let backend = AnyBackend::open(a.backend)?;
    println!("backend {} dtype {dtype}", backend.name());
    crate::with_backend!(&backend, b => bench(b, &a, dtype, &model))?;
    if let AnyBackend::Wgpu(w) = &backend {
        let s = w.pool_stats();
        println!(
            "wgpu: subgroup norms {}, shader-f16 {}, binding limit {} MiB; buffers: peak {} MiB live, \
             {} device allocations, {} reuses from the pool",
            w.uses_subgroups(),
            w.has_shader_f16(),
            w.binding_limit() >> 20,
            s.peak_bytes >> 20,
            s.allocations,
            s.reuses
        );
    }
    Ok(())
}
