//! `joyrt bench`: per-op and per-step timings with device synchronisation.

use crate::backends::{AnyBackend, BackendChoice};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use joyrt_core::backend::{Epilogue, QuantActivations};
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::models::dit::{Dit, DitConfig};
use joyrt_core::pipeline::Denoiser;
use joyrt_core::quant::{self, codec};
use joyrt_core::weights::Checkpoint;
use joyrt_core::{Backend, DType, QuantFormat, QuantizedMatrix, Rng, Tensor};
use joyrt_cpu::CpuBackend;
use joyrt_cuda::profile::KernelProfile;
use joyrt_cuda::{AttentionPath, CudaBackend, GemmPath};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

mod vae;

/// A timed part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// `linear` at the DiT block's four K×N shapes (M = --tokens) and attention (32 heads × 128).
    Ops,
    /// One DiT forward over two items (reference and target latents) and the text.
    Forward,
    /// One CFG denoising step as the edit pipeline runs it: two DiT forwards (prompt and negative
    /// prompt), the CFG combine with its norm rescale, and the Euler update.
    CfgStep,
    /// `linear_quantized` (int8, int4, fp8 weights) against the dense `linear` at the DiT block's
    /// K×N shapes (M = --tokens), as time ratios measured in one run.
    Quantized,
    /// The VAE's encode and decode at --size, untiled and tiled (--vae-tiling), each on a fresh
    /// backend: time, peak memory against the memory plan, and the tiled outputs' PSNR against the
    /// untiled ones.
    Vae,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Model folder whose transformer is timed (default: the built-in tiny model).
    #[arg(long, conflicts_with = "full_dit")]
    pub model: Option<PathBuf>,
    /// What to time, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ops,forward")]
    pub parts: Vec<Part>,
    /// With --parts ops on CUDA: time `linear` on each of these GEMM kernels (JOYRT_CUDA_GEMM's
    /// names, comma-separated), or `all`: every tensor-core GEMM the device has (mma; on sm_90a
    /// also wgmma, wgmma-persistent and wgmma-ws); with --parts quantized, the fp8 W8A8 GEMM of
    /// each (wgmma-persistent's is the block-per-tile wgmma kernel). Default: the backend's own.
    #[arg(long, value_delimiter = ',')]
    pub gemm_paths: Vec<String>,
    /// With --parts ops on CUDA: time attention on each of these kernels (JOYRT_CUDA_ATTENTION's
    /// names, comma-separated), or `all`: every tensor-core attention the device has (mma; on
    /// sm_90a also wgmma and wgmma-ws). Default: the backend's own.
    #[arg(long, value_delimiter = ',')]
    pub attention_paths: Vec<String>,
    /// The K×N weight shapes of `linear` in --parts ops and quantized, comma-separated (default:
    /// the DiT block's QKV, attention output, MLP up and down projections).
    #[arg(long, value_delimiter = ',', value_parser = parse_gemm_shape,
          default_value = "4096x12288,4096x4096,4096x16384,16384x4096")]
    pub gemm_shapes: Vec<(usize, usize)>,
    /// Tokens (rows) of the op benchmarks; the DiT at 1024² has 9231.
    #[arg(long, default_value_t = 512)]
    pub tokens: usize,
    /// Sequence length of the attention benchmark (default: --tokens).
    #[arg(long)]
    pub attn_tokens: Option<usize>,
    /// Image size of the DiT forward and CFG step (square, multiple of 16).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Timed runs of each part (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Text tokens of the DiT forward (JoyAI at 1024² has 9231 tokens in all: 2 × 4096 image + text).
    #[arg(long, default_value_t = 64)]
    pub text_tokens: usize,
    /// Time the full-size DiT (the published 16B configuration) on synthetic random weights
    /// held in memory, instead of the model folder's transformer.
    #[arg(long)]
    pub full_dit: bool,
    /// With --full-dit: the block linears of the synthetic weights in this quantized format
    /// (int8, int4, fp8; everything else in --dtype), generated tensor by tensor as they load, so
    /// the host holds only the quantized model.
    #[arg(long, requires = "full_dit", value_parser = parse_quant_format)]
    pub full_dit_format: Option<QuantFormat>,
    /// After timing the DiT forward, run it once more with every quantized weight dequantized
    /// whole and multiplied by the dense `linear` (the CPU reference's dense path), and check the
    /// two outputs agree to the op tolerance of --dtype (`--backend cpu`, `--parts forward`).
    #[arg(long)]
    pub check_dequantized: bool,
    /// Keep only the first N DiT double blocks on the device and stream the others from host
    /// memory at every forward (the memory plan's streamed placement; 0 streams them all).
    #[arg(long)]
    pub dit_resident_blocks: Option<usize>,
    /// With --parts vae: the published VAE configuration on random weights drawn as
    /// `joyrt make-model` draws them, instead of the model folder's VAE.
    #[arg(long, conflicts_with = "model")]
    pub full_vae: bool,
    /// With --parts vae: the tiles of the tiled runs, `TILE` or `TILE/STRIDE` in pixels.
    #[arg(long, default_value = "256/192")]
    pub vae_tiling: String,
    /// After timing the CFG step, run one more with every kernel launch timed (CUDA events; the
    /// host clock in the emulation) and print the time per kernel (`--backend cuda` or
    /// `cuda-emulated`, with `--parts cfg-step`).
    #[arg(long)]
    pub profile: bool,
    /// Print one JSON object with every figure on stdout at the end (progress goes to stderr).
    /// tests/gpu_check_report.py reads its keys.
    #[arg(long)]
    pub json: bool,
}

fn parse_quant_format(s: &str) -> std::result::Result<QuantFormat, String> {
    QuantFormat::parse(s).ok_or_else(|| format!("unknown quantized format {s:?} (int8, int4 or fp8)"))
}

/// The most elements of one benchmark weight (the DiT's largest is 16384 × 4096), and of one
/// activation of the op benchmarks (--tokens 65536 × 16384).
const MAX_GEMM_ELEMENTS: usize = 1 << 28;
const MAX_ACTIVATION_ELEMENTS: usize = 1 << 30;

fn parse_gemm_shape(s: &str) -> std::result::Result<(usize, usize), String> {
    let parsed =
        s.split_once('x').and_then(|(k, n)| Some((k.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((k, n)) if k > 0 && n > 0 && k.checked_mul(n).is_some_and(|e| e <= MAX_GEMM_ELEMENTS) => {
            Ok((k, n))
        }
        Some(_) => Err(format!("{s}: K and N must be positive with K·N at most {MAX_GEMM_ELEMENTS}")),
        None => Err(format!("{s}: expected KxN, e.g. 4096x12288")),
    }
}

/// Peak resident memory of this process (`VmHWM`), in bytes, where /proc tells it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().strip_suffix("kB")?;
    kb.trim().parse::<u64>().ok().map(|k| k * 1024)
}

const FULL_DIT_CONFIG: &str = include_str!("configs/full/transformer.json");
/// The edit pipeline's default guidance; the CFG combine costs the same at any value above 1.
const GUIDANCE: f32 = 4.0;

/// Human-readable lines go to stdout, or to stderr when stdout carries the JSON.
struct Lines {
    json: bool,
}

impl Lines {
    fn say(&self, line: String) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

/// Median seconds of `iters` runs after one warm-up, synchronising the device around each.
fn time<B: Backend>(b: &B, iters: usize, mut f: impl FnMut() -> joyrt_core::Result<()>) -> Result<f64> {
    f()?;
    b.synchronize()?;
    let mut t = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = Instant::now();
        f()?;
        b.synchronize()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

fn random<B: Backend>(b: &B, rng: &mut Rng, shape: &[usize], dtype: DType) -> Result<Tensor<B>> {
    Ok(Tensor::from_f32(b, shape.to_vec(), &rng.normal_vec(shape.iter().product(), 0.5), dtype)?)
}

/// The GEMM kernels `--gemm-paths` names (none: the backend's own), each checked against the
/// device.
fn gemm_paths(backend: &AnyBackend, names: &[String]) -> Result<Vec<GemmPath>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let AnyBackend::Cuda(cuda) = backend else {
        bail!("--gemm-paths chooses among the CUDA GEMM kernels: it needs --backend cuda or cuda-emulated");
    };
    let mut paths = Vec::new();
    for name in names {
        if name == "all" {
            let tensor_cores = GemmPath::ALL.iter().map(|&(_, p)| p).filter(|p| *p != GemmPath::Simt);
            paths.extend(tensor_cores.filter(|p| !p.needs_wgmma() || cuda.has_wgmma()));
            continue;
        }
        let Some(&(_, path)) = GemmPath::ALL.iter().find(|(n, _)| *n == name.as_str()) else {
            let known: Vec<_> = GemmPath::ALL.iter().map(|(n, _)| *n).collect();
            bail!("--gemm-paths {name}: expected all or one of {}", known.join(", "));
        };
        if path.needs_wgmma() && !cuda.has_wgmma() {
            bail!("--gemm-paths {name}: the {} kernels need an sm_90a device (JOYRT_CUDA_EMU_ARCH=sm_90 in the emulation)", path.name());
        }
        paths.push(path);
    }
    Ok(paths)
}

/// The attention kernels `--attention-paths` names (none: the backend's own), each checked
/// against the device.
fn attention_paths(backend: &AnyBackend, names: &[String]) -> Result<Vec<AttentionPath>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let AnyBackend::Cuda(cuda) = backend else {
        bail!("--attention-paths chooses among the CUDA attention kernels: it needs --backend cuda or cuda-emulated");
    };
    let mut paths = Vec::new();
    for name in names {
        if name == "all" {
            let all = AttentionPath::ALL.iter().map(|&(_, p)| p);
            paths.extend(all.filter(|p| !p.needs_wgmma() || cuda.has_wgmma()));
            continue;
        }
        let Some(&(_, path)) = AttentionPath::ALL.iter().find(|(n, _)| *n == name.as_str()) else {
            let known: Vec<_> = AttentionPath::ALL.iter().map(|(n, _)| *n).collect();
            bail!("--attention-paths {name}: expected all or one of {}", known.join(", "));
        };
        if path.needs_wgmma() && !cuda.has_wgmma() {
            bail!("--attention-paths {name}: the {} kernel needs an sm_90a device (JOYRT_CUDA_EMU_ARCH=sm_90 in the emulation)", path.name());
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Times the ops, `linear` on each of `paths` and attention on each of `attention` (switched on
/// `cuda`, the same backend as `b`; none: `b`'s own kernel); returns one JSON record per op.
fn bench_ops<B: Backend>(
    b: &B,
    a: &BenchArgs,
    dtype: DType,
    cuda: Option<&CudaBackend>,
    (paths, attention): (&[GemmPath], &[AttentionPath]),
    out: &Lines,
) -> Result<Vec<Value>> {
    let mut rng = Rng::new(1);
    let m = a.tokens;
    let mut records = Vec::new();
    let mut record = |label: String, s: f64, flop: f64, mut r: Value| {
        out.say(format!("{label:<44} {:>10.2} {:>10.1}", s * 1e3, flop / s / 1e9));
        r["ms"] = json!(s * 1e3);
        r["flop"] = json!(flop);
        records.push(r);
    };
    out.say(format!("{:<44} {:>10} {:>10}", "op (DiT block shapes, K×N)", "ms", "GFLOP/s"));
    let own = cuda.map(|c| c.gemm_path());
    let runs: Vec<Option<GemmPath>> =
        if paths.is_empty() { vec![None] } else { paths.iter().copied().map(Some).collect() };
    for &(k, n) in &a.gemm_shapes {
        let (x, w) = (random(b, &mut rng, &[m, k], dtype)?, random(b, &mut rng, &[n, k], dtype)?);
        let flop = 2.0 * (m * k * n) as f64;
        for path in &runs {
            let mut r = json!({ "op": "linear", "m": m, "k": k, "n": n });
            let mut label = format!("linear M={m} {k}x{n}");
            if let (Some(c), Some(p)) = (cuda, path) {
                c.set_gemm_path(*p)?;
                r["gemm_path"] = json!(p.name());
                label += &format!(" {}", p.name());
            }
            let s = time(b, a.iters, || x.linear(&w, None).map(|_| ()))?;
            record(label, s, flop, r);
        }
    }
    if let (Some(c), Some(p)) = (cuda, own) {
        c.set_gemm_path(p)?;
    }
    let (l, heads, d) = (a.attn_tokens.unwrap_or(m), 32, 128);
    let q = random(b, &mut rng, &[l, heads, d], dtype)?;
    let (k, v) = (random(b, &mut rng, &[l, heads, d], dtype)?, random(b, &mut rng, &[l, heads, d], dtype)?);
    let flop = 4.0 * (l * l * heads * d) as f64;
    let own = cuda.map(|c| c.attention_path());
    let runs: Vec<Option<AttentionPath>> =
        if attention.is_empty() { vec![None] } else { attention.iter().copied().map(Some).collect() };
    for path in runs {
        let mut r = json!({ "op": "attention", "tokens": l, "heads": heads, "head_dim": d });
        let mut label = format!("attention L={l} {heads}x{d}");
        if let (Some(c), Some(p)) = (cuda, path) {
            c.set_attention_path(p)?;
            r["attention_path"] = json!(p.name());
            label += &format!(" {}", p.name());
        }
        let s = time(b, a.iters, || q.attention(&k, &v, false, None).map(|_| ()))?;
        record(label, s, flop, r);
    }
    if let (Some(c), Some(p)) = (cuda, own) {
        c.set_attention_path(p)?;
    }
    Ok(records)
}

/// Times `linear` on a dense weight of `dtype` and `linear_quantized` on the same weight quantized
/// to each format; W8A8 also on each of `paths` (switched on `cuda`, the same backend as `b`: the
/// fp8 GEMM kernel of each path). Returns one JSON record per shape.
fn bench_quantized<B: Backend>(
    b: &B,
    a: &BenchArgs,
    dtype: DType,
    (cuda, paths): (Option<&CudaBackend>, &[GemmPath]),
    out: &Lines,
) -> Result<Vec<Value>> {
    let mut rng = Rng::new(3);
    let m = a.tokens;
    let formats = [QuantFormat::Int8 { block: 32 }, QuantFormat::Int4 { block: 32 }, QuantFormat::Fp8E4M3];
    out.say(format!(
        "{:<32} {:>10} {:>16} {:>16} {:>16} {:>16}",
        "quantized linear (K×N)", "dense ms", "int8 ms (×)", "int4 ms (×)", "fp8 ms (×)", "fp8 W8A8 ms (×)"
    ));
    let mut records = Vec::new();
    for &(k, n) in &a.gemm_shapes {
        let x = random(b, &mut rng, &[m, k], dtype)?;
        let wv = rng.normal_vec(n * k, 0.02);
        let dense = Tensor::from_f32(b, [n, k], &wv, dtype)?;
        let dense_s = time(b, a.iters, || x.linear(&dense, None).map(|_| ()))?;
        drop(dense);
        let mut line = format!("{:<32} {:>10.2}", format!("M={m} {k}x{n}"), dense_s * 1e3);
        let mut r = json!({ "m": m, "k": k, "n": n, "dense_ms": dense_s * 1e3 });
        for f in formats {
            let q = codec::quantize_rows(f, k, &wv)?;
            let w = QuantizedMatrix::upload(b, f, n, k, &q.codes, &q.scales)?;
            // The weight's own activations (W8A16 for fp8, whatever --dtype fp8 switched on).
            let native = |act| x.linear_quantized_as(&w, None, Epilogue::None, act).map(|_| ());
            let s = time(b, a.iters, || native(QuantActivations::Native))?;
            line += &format!(" {:>16}", format!("{:.2} ({:.2})", s * 1e3, s / dense_s));
            r[format!("{}_ms", f.name())] = json!(s * 1e3);
            r[format!("{}_ratio", f.name())] = json!(s / dense_s);
            if f == QuantFormat::Fp8E4M3 {
                // W8A8 where the backend has it (CUDA sm_89+, the CPU reference).
                match native(QuantActivations::Fp8PerRow) {
                    Err(joyrt_core::Error::Unsupported { .. }) => line += &format!(" {:>16}", "—"),
                    first => {
                        first?;
                        let s = time(b, a.iters, || native(QuantActivations::Fp8PerRow))?;
                        line += &format!(" {:>16}", format!("{:.2} ({:.2})", s * 1e3, s / dense_s));
                        r["fp8_w8a8_ms"] = json!(s * 1e3);
                        r["fp8_w8a8_ratio"] = json!(s / dense_s);
                        if let Some(c) = cuda.filter(|_| !paths.is_empty()) {
                            let own = c.gemm_path();
                            let mut by_path = Vec::new();
                            for &p in paths {
                                c.set_gemm_path(p)?;
                                let timed = w8a8_on_path(c, a.iters, || native(QuantActivations::Fp8PerRow));
                                c.set_gemm_path(own)?;
                                let (s, kernels) = timed?;
                                line += &format!(" {}: {:.2}", p.name(), s * 1e3);
                                by_path.push(
                                    json!({ "gemm_path": p.name(), "ms": s * 1e3, "kernels": kernels }),
                                );
                            }
                            r["fp8_w8a8_paths"] = Value::Array(by_path);
                        }
                    }
                }
            }
        }
        out.say(line);
        records.push(r);
    }
    Ok(records)
}

/// The median time of `f` (one W8A8 linear), then the median launch of each kernel it runs (the
/// activation quantization, the GEMM) over `iters` more runs under the kernel profile.
fn w8a8_on_path(
    c: &CudaBackend,
    iters: usize,
    mut f: impl FnMut() -> joyrt_core::Result<()>,
) -> Result<(f64, Value)> {
    let s = time(c, iters, &mut f)?;
    c.profile_start()?;
    let runs = (0..iters).try_for_each(|_| f());
    let profile = c.profile_finish()?;
    runs?;
    let kernels = profile.kernels.iter().map(|k| json!({ "kernel": k.kernel, "median_us": k.median_us }));
    Ok((s, kernels.collect()))
}

/// Loads the DiT (the model folder's, or the full-size one on synthetic weights) and times the
/// forward and/or the CFG step; returns the figures as one JSON object.
fn bench_dit<B: Backend>(
    b: &B,
    a: &BenchArgs,
    dtype: DType,
    model: &ModelFolder,
    profiler: Option<&CudaBackend>,
    reference: Option<&CpuBackend>,
    out: &Lines,
) -> Result<Value> {
    let mut doc = json!({});
    let (cfg, ck) = if a.full_dit {
        let json: serde_json::Value = serde_json::from_str(FULL_DIT_CONFIG)?;
        let cfg = DitConfig::from_json(&json, std::path::Path::new("configs/full/transformer.json"))?;
        let t0 = Instant::now();
        let ck = match a.full_dit_format {
            // Made as the loader reads each tensor: the load time below includes making them.
            Some(format) => {
                let quantize = |name: &str| quant::policy::quantizable("transformer", name);
                doc["format"] = json!(format.name());
                Checkpoint::synthetic_quantized(
                    "full-size DiT",
                    &cfg.param_specs(),
                    dtype,
                    format,
                    quantize,
                    7,
                )?
            }
            None => Checkpoint::synthetic("full-size DiT", &cfg.param_specs(), dtype, 7)?,
        };
        let s = t0.elapsed().as_secs_f64();
        out.say(format!("synthetic full-size DiT weights: {} params in {s:.1} s", cfg.param_count()));
        // tests/gpu_check_report.py counts a step's FLOP only for this value.
        doc["weights"] = json!("synthetic full-size");
        doc["synthetic_weights_s"] = json!(s);
        (cfg, ck)
    } else {
        doc["weights"] = json!(model.transformer.display().to_string());
        (model.configs.transformer.clone(), Checkpoint::open(&model.transformer)?)
    };
    let t0 = Instant::now();
    let dit = Dit::load_streamed(b, &ck, &cfg, dtype, a.dit_resident_blocks.unwrap_or(usize::MAX))?;
    b.synchronize()?;
    let (resident, streamed) = dit.block_placement();
    doc["dit_blocks_resident"] = json!(resident);
    doc["dit_blocks_streamed"] = json!(streamed);
    let load_s = t0.elapsed().as_secs_f64();
    out.say(format!(
        "DiT loaded to {} in {load_s:.1} s ({resident} blocks resident, {streamed} streamed)",
        b.name()
    ));
    drop(ck);
    if let Some(rss) = peak_rss_bytes() {
        out.say(format!("peak RSS after loading: {:.2} GiB", rss as f64 / (1u64 << 30) as f64));
        doc["peak_rss_after_load_bytes"] = json!(rss);
    }
    let (h, w) = (a.size / 8, a.size / 8);
    let image_tokens = 2 * (h / cfg.patch_size[1]) * (w / cfg.patch_size[2]);
    doc["params"] = json!(cfg.param_count());
    doc["load_s"] = json!(load_s);
    doc["size"] = json!(a.size);
    doc["text_tokens"] = json!(a.text_tokens);
    doc["tokens"] = json!(image_tokens + a.text_tokens);

    let mut rng = Rng::new(2);
    let c = cfg.in_channels;
    let text = random(b, &mut rng, &[a.text_tokens, cfg.text_dim], dtype)?;
    if a.parts.contains(&Part::Forward) {
        let items = random(b, &mut rng, &[2, c, h, w], dtype)?;
        // As the pipeline runs it: the per-request RoPE table and text stream prepared once.
        let (request, stream) = (dit.prepare(&[2, c, h, w])?, dit.embed_text(&text)?);
        let vec = dit.time_vector(500.0)?;
        let s = time(b, a.iters, || dit.forward_with(&request, &items, &vec, &stream).map(|_| ()))?;
        out.say(format!("{:<44} {:>10.2}", format!("DiT forward {}² (×2 per CFG step)", a.size), s * 1e3));
        doc["forward_ms"] = json!(s * 1e3);
        if let Some(cpu) = reference {
            let forward = || dit.forward_with(&request, &items, &vec, &stream)?.to_f32_vec();
            let quantized = forward()?;
            cpu.set_dequantize_whole(true);
            let t0 = Instant::now();
            let dense = forward();
            let dense_s = t0.elapsed().as_secs_f64();
            cpu.set_dequantize_whole(false);
            let dense = dense?;
            let tol = joyrt_conformance::tolerance::op_preset(dtype);
            let m = joyrt_conformance::Metrics::compare(&quantized, &dense, &tol);
            // An all-zero or constant output would agree trivially: its size is reported too.
            let rms = (quantized.iter().map(|v| (*v as f64).powi(2)).sum::<f64>()
                / quantized.len().max(1) as f64)
                .sqrt();
            let pass = m.passes(&tol) && rms > 0.0 && rms.is_finite();
            out.say(format!(
                "against the forward with whole dequantized weights ({dense_s:.1} s): output rms {rms:.4e}, rel L2 {:.2e}, \
                 max abs {:.2e}, cosine {:.8}, {} of {} elements outside {}: {}",
                m.rel_l2,
                m.max_abs,
                m.cosine,
                m.violations,
                m.len,
                tol.name,
                if pass { "agree" } else { "DISAGREE" }
            ));
            doc["dequantized_check"] = json!({
                "tolerance": tol.name, "output_rms": rms, "rel_l2": m.rel_l2, "max_abs": m.max_abs, "cosine": m.cosine,
                "violations": m.violations, "elements": m.len, "dense_forward_s": dense_s, "agree": pass,
            });
            if !pass {
                bail!(
                    "the quantized forward (output rms {rms:e}) and the dequantized dense forward disagree beyond {}, \
                     or the output is zero or not finite",
                    tol.name
                );
            }
        }
        if let Some(rss) = peak_rss_bytes() {
            out.say(format!("peak RSS: {:.2} GiB", rss as f64 / (1u64 << 30) as f64));
            doc["peak_rss_bytes"] = json!(rss);
        }
    }
    if a.parts.contains(&Part::CfgStep) {
        // The pipeline's step: f32 latents, the reference slot restored in front of the target,
        // prompt and negative prompt through the DiT, the target's velocities combined, one Euler
        // update. Each timed step starts from the same latents.
        let negative = random(b, &mut rng, &[a.text_tokens, cfg.text_dim], dtype)?;
        let z_ref = random(b, &mut rng, &[1, c, h, w], DType::F32)?;
        let x = random(b, &mut rng, &[1, c, h, w], DType::F32)?;
        let denoiser = Denoiser::new(&dit, z_ref, &text, Some(&negative), GUIDANCE, dtype)?;
        let step = || denoiser.step(&x, 500.0, -0.025).map(|_| ());
        let s = time(b, a.iters, step)?;
        out.say(format!("{:<44} {:>10.2}", format!("CFG step {}² (2 forwards + combine)", a.size), s * 1e3));
        doc["cfg_step_ms"] = json!(s * 1e3);
        if let Some(cuda) = profiler {
            cuda.profile_start()?;
            let t0 = Instant::now();
            let stepped = step().and_then(|()| b.synchronize());
            let step_ms = t0.elapsed().as_secs_f64() * 1e3;
            let profile = cuda.profile_finish()?;
            stepped?;
            doc["profile"] = profile_report(&profile, step_ms, out);
        }
    }
    Ok(doc)
}

/// Prints `p`, the kernel profile of one CFG step that took `step_ms` (profiled), as a table,
/// and returns it as JSON.
fn profile_report(p: &KernelProfile, step_ms: f64, out: &Lines) -> Value {
    out.say(format!(
        "kernel profile of one CFG step ({}): {} launches, kernels {:.2} ms of the profiled step's {:.2} ms",
        p.timer.label(),
        p.launches(),
        p.total_ms(),
        step_ms
    ));
    out.say(format!(
        "{:<32} {:>9} {:>11} {:>8} {:>12}",
        "kernel", "launches", "total ms", "share", "median µs"
    ));
    let mut kernels = Vec::new();
    for k in &p.kernels {
        let share = k.total_ms / step_ms;
        out.say(format!(
            "{:<32} {:>9} {:>11.3} {:>7.1}% {:>12.1}",
            k.kernel,
            k.launches,
            k.total_ms,
            share * 100.0,
            k.median_us
        ));
        kernels.push(json!({
            "kernel": k.kernel,
            "launches": k.launches,
            "total_ms": k.total_ms,
            "median_us": k.median_us,
            "share_of_step": share,
        }));
    }
    json!({
        "timer": p.timer.label(),
        "step_ms": step_ms,
        "kernel_ms": p.total_ms(),
        "launches": p.launches(),
        "kernels": kernels,
    })
}

/// NVRTC as this process loaded it: the version it reports and the file the dynamic loader
/// picked (read back from the process's mappings, so it is the library actually in use).
fn nvrtc() -> Value {
    let Some((major, minor)) = joyrt_cuda::nvrtc::nvrtc_version() else { return Value::Null };
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let library = maps
        .lines()
        .filter_map(|l| l.splitn(6, char::is_whitespace).nth(5).map(str::trim))
        .find(|p| p.rsplit('/').next().is_some_and(|f| f.starts_with("libnvrtc.so")));
    json!({ "version": format!("{major}.{minor}"), "library": library })
}

/// Most op-benchmark rows: twice the DiT's 37k tokens at 2048² (a 16384×65536 f32 activation
/// is 4 GiB), so no value in range asks for absurd memory before anything is timed.
const MAX_TOKENS: usize = 65_536;
/// Largest square image of the DiT benchmarks: the largest `--base-size` of `joyrt edit`.
const MAX_SIZE: usize = 4096;
const MAX_ITERS: usize = 1000;

/// Every size flag in its range, refused with the range before any allocation.
fn check_ranges(a: &BenchArgs) -> Result<()> {
    let within = |flag: &str, v: usize, hi: usize| -> Result<()> {
        if !(1..=hi).contains(&v) {
            bail!("{flag} must be between 1 and {hi}, got {v}");
        }
        Ok(())
    };
    within("--tokens", a.tokens, MAX_TOKENS)?;
    within("--attn-tokens", a.attn_tokens.unwrap_or(a.tokens), MAX_TOKENS)?;
    within("--text-tokens", a.text_tokens, joyrt_core::pipeline::MAX_TEXT_TOKENS)?;
    within("--iters", a.iters, MAX_ITERS)?;
    // x [M, K] and y [M, N] of each benchmark shape (the DiT's four at --tokens 65536 reach it).
    for &(k, n) in &a.gemm_shapes {
        if a.tokens.saturating_mul(k.max(n)) > MAX_ACTIVATION_ELEMENTS {
            bail!(
                "--tokens {} with --gemm-shapes {k}x{n}: an activation of more than {MAX_ACTIVATION_ELEMENTS} elements",
                a.tokens
            );
        }
    }
    if !(16..=MAX_SIZE).contains(&a.size) || !a.size.is_multiple_of(16) {
        bail!("--size must be a multiple of 16 between 16 and {MAX_SIZE}, got {}", a.size);
    }
    Ok(())
}

pub fn run(a: BenchArgs) -> Result<()> {
    check_ranges(&a)?;
    let model = match &a.model {
        Some(d) => ModelFolder::open(d)?,
        None => crate::builtin::model_folder()?,
    };
    let out = Lines { json: a.json };
    let backend = AnyBackend::open(a.backend)?;
    // fp8: bf16 with the fp8 linears (--parts quantized, an fp8 --full-dit-format or folder) W8A8.
    let dtype = backend.run_dtype(&a.dtype)?;
    if a.profile && !(a.parts.contains(&Part::CfgStep) && matches!(backend, AnyBackend::Cuda(_))) {
        bail!("--profile times the kernels of a CFG step: it needs --parts cfg-step and --backend cuda or cuda-emulated");
    }
    if a.check_dequantized && !(a.parts.contains(&Part::Forward) && matches!(backend, AnyBackend::Cpu(_))) {
        bail!("--check-dequantized reruns the DiT forward on the CPU reference: it needs --parts forward and --backend cpu");
    }
    out.say(format!("backend {} dtype {dtype}", backend.name()));
    let mut doc = json!({ "backend": backend.name(), "dtype": dtype.to_string(), "iters": a.iters });
    if let AnyBackend::Cuda(c) = &backend {
        // The kernels every part below runs unless it names others (--gemm-paths, --attention-paths).
        doc["gemm_path"] = json!(c.gemm_path().name());
        doc["attention_path"] = json!(c.attention_path().name());
        doc["fp8_activations"] = json!(c.fp8_activations());
        if c.arch() != "emulated" {
            doc["nvrtc"] = nvrtc();
            out.say(format!("NVRTC {}", doc["nvrtc"]));
        }
    }
    let cuda = match &backend {
        AnyBackend::Cuda(c) => Some(c),
        _ => None,
    };
    let paths = gemm_paths(&backend, &a.gemm_paths)?;
    if a.parts.contains(&Part::Ops) {
        let attention = attention_paths(&backend, &a.attention_paths)?;
        doc["ops"] = Value::Array(
            crate::with_backend!(&backend, b => bench_ops(b, &a, dtype, cuda, (&paths[..], &attention[..]), &out))?,
        );
    }
    if a.parts.contains(&Part::Quantized) {
        doc["quantized"] = Value::Array(
            crate::with_backend!(&backend, b => bench_quantized(b, &a, dtype, (cuda, &paths[..]), &out))?,
        );
    }
    if a.parts.contains(&Part::Forward) || a.parts.contains(&Part::CfgStep) {
        let profiler = match &backend {
            AnyBackend::Cuda(c) if a.profile => Some(c),
            _ => None,
        };
        let reference = match &backend {
            AnyBackend::Cpu(c) if a.check_dequantized => Some(c),
            _ => None,
        };
        doc["dit"] =
            crate::with_backend!(&backend, b => bench_dit(b, &a, dtype, &model, profiler, reference, &out))?;
    }
    if a.parts.contains(&Part::Vae) {
        // Each VAE run opens its own backend, so that its peak is its own.
        doc["vae"] = vae::bench_vae(&a, dtype, &model, &out)?;
    }
    let (now, peak) = backend.memory();
    doc["memory"] = json!({ "current_bytes": now, "peak_bytes": peak });
    if let AnyBackend::Wgpu(w) = &backend {
        let s = w.pool_stats();
        out.say(format!(
            "wgpu: subgroup norms {}, shader-f16 {}, binding limit {} MiB; buffers: peak {} MiB live, \
             {} device allocations, {} reuses from the pool",
            w.uses_subgroups(),
            w.has_shader_f16(),
            w.binding_limit() >> 20,
            s.peak_bytes >> 20,
            s.allocations,
            s.reuses
        ));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}
