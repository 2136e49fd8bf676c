//! The quantization error itself, on the tiny fixture model (docs/benchmarks.md): for each
//! quantized copy of `tests/fixtures/tiny_model` (made by `joyrt quantize`), the DiT and Qwen3-VL
//! against their golden f32 outputs (the unquantized model's, from diffusers/transformers) at f32
//! and bf16 activations, and the pipeline's PNG against the unquantized model's at f32 and bf16.
//! Also the CPU speed of `linear_quantized` against `linear` at one DiT-sized GEMM.
//!
//! ```sh
//! for f in int8 int4 fp8; do joyrt quantize --model tests/fixtures/tiny_model --format $f -o Q/$f; done
//! cargo run --release -p joyrt-conformance --example quant_fidelity -- Q/int8 Q/int4 Q/fp8
//! ```
//!
//! `--w8a8` first: each fp8 folder is also run W8A8 (`--dtype fp8`: the activations of every fp8
//! linear quantized per row to E4M3, the CPU reference's math), against the goldens and against
//! the same folder run W8A16.

use joyrt_conformance::fixtures::{json, Golden};
use joyrt_conformance::pipeline::read_png;
use joyrt_conformance::report::psnr_u8;
use joyrt_conformance::{networks, Outcome, Report};
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::pipeline::{edit, EditParams};
use joyrt_core::quant::codec;
use joyrt_core::{DType, QuantFormat, QuantizedMatrix, Rng, Tensor};
use joyrt_cpu::CpuBackend;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A fixtures folder whose `tiny_model` is `model` and whose goldens are the real ones.
fn fixtures_with(model: &Path, scratch: &Path) -> PathBuf {
    let fx = joyrt_conformance::fixtures_dir();
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).unwrap();
    std::os::unix::fs::symlink(model.canonicalize().unwrap(), scratch.join("tiny_model")).unwrap();
    for d in ["golden", "pipeline", "tokenizer"] {
        std::os::unix::fs::symlink(fx.join(d), scratch.join(d)).unwrap();
    }
    scratch.to_path_buf()
}

/// The pipeline's PNG for `model` at `dtype`, with the golden fixture's prompt and noise.
fn edit_png(b: &CpuBackend, model: &Path, dtype: DType) -> Vec<u8> {
    let fx = joyrt_conformance::fixtures_dir();
    let meta = json(&fx.join("golden/pipeline.json")).unwrap();
    let g = Golden::open(&fx.join("golden/pipeline.safetensors")).unwrap();
    let params = EditParams {
        prompt: meta["prompt"].as_str().unwrap().to_string(),
        negative_prompt: meta["negative_prompt"].as_str().unwrap().to_string(),
        steps: meta["steps"].as_u64().unwrap() as usize,
        guidance: meta["guidance"].as_f64().unwrap() as f32,
        buckets: Some(joyrt_conformance::fixtures::buckets(&meta["tiny_buckets"])),
        noise: Some(g.f32("noise").unwrap()),
        dtype,
        ..Default::default()
    };
    let folder = ModelFolder::open(model).unwrap();
    let input = read_png(&fx.join("pipeline/input.png")).unwrap();
    edit(b, &folder, &input, &params, &mut |_| true).unwrap().image.data
}

fn network_rows(b: &CpuBackend, fx: &Path) {
    for dtype in [DType::F32, DType::BF16] {
        let mut r = Report::new("cpu");
        networks::dit(b, fx, dtype, &mut r);
        networks::qwen(b, fx, dtype, &mut r);
        for row in &r.rows {
            if let Outcome::Compared { metrics: m, .. } = &row.outcome {
                println!("  {dtype:<5} {:<48} rel_l2 {:.3e}  cosine {:.6}", row.check, m.rel_l2, m.cosine);
            }
        }
    }
}

fn gemm_speed() {
    let b = CpuBackend::default();
    let (m, k, n) = (256, 4096, 4096);
    let mut rng = Rng::new(1);
    let x = Tensor::from_f32(&b, [m, k], &rng.uniform_vec(m * k, -1.0, 1.0), DType::BF16).unwrap();
    let wv = rng.normal_vec(n * k, 0.02);
    let dense = Tensor::from_f32(&b, [n, k], &wv, DType::BF16).unwrap();
    let time = |f: &dyn Fn()| {
        f();
        let t = Instant::now();
        for _ in 0..3 {
            f();
        }
        t.elapsed().as_secs_f64() / 3.0
    };
    let td = time(&|| drop(x.linear(&dense, None).unwrap()));
    println!("CPU GEMM {m}x{k}x{n}, bf16 activations: dense bf16 weight {:.3} s", td);
    for f in [QuantFormat::Int8 { block: 32 }, QuantFormat::Int4 { block: 32 }, QuantFormat::Fp8E4M3] {
        let q = codec::quantize_rows(f, k, &wv).unwrap();
        let w = QuantizedMatrix::upload(&b, f, n, k, &q.codes, &q.scales).unwrap();
        let tq = time(&|| drop(x.linear_quantized(&w, None).unwrap()));
        println!("  {f}: {tq:.3} s, {:.2}× the dense time", tq / td);
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let w8a8 = args.first().is_some_and(|a| a == "--w8a8");
    if w8a8 {
        args.remove(0);
    }
    let dirs: Vec<PathBuf> = args.into_iter().map(PathBuf::from).collect();
    let fx = joyrt_conformance::fixtures_dir();
    let plain = fx.join("tiny_model");
    let cpu = CpuBackend::default();
    println!("unquantized (bf16 weights as stored) vs golden f32:");
    network_rows(&cpu, &fx);
    let base = [
        (DType::F32, edit_png(&cpu, &plain, DType::F32)),
        (DType::BF16, edit_png(&cpu, &plain, DType::BF16)),
    ];
    println!("  pipeline bf16 vs f32 (unquantized): PSNR {:.1} dB", psnr_u8(&base[1].1, &base[0].1));
    for d in &dirs {
        let scratch = std::env::temp_dir().join(format!("joyrt-quant-fidelity-{}", std::process::id()));
        println!("{}:", d.display());
        let fixtures = fixtures_with(d, &scratch);
        network_rows(&cpu, &fixtures);
        let mut weight_only = Vec::new();
        for (dtype, want) in &base {
            let got = edit_png(&cpu, d, *dtype);
            println!(
                "  pipeline {dtype}: PSNR vs the unquantized {dtype} output {:.1} dB",
                psnr_u8(&got, want)
            );
            weight_only.push(got);
        }
        let fp8 = ModelFolder::open(d).is_ok_and(|f| {
            joyrt_core::plan::WeightFormat::of_folder(&f, DType::BF16)
                .is_ok_and(|w| w.transformer_quant == Some(QuantFormat::Fp8E4M3))
        });
        if w8a8 && fp8 {
            let w8 = CpuBackend::default();
            w8.set_fp8_activations(true);
            println!("{} W8A8 (activations E4M3 per row):", d.display());
            network_rows(&w8, &fixtures);
            for ((dtype, want), w8a16) in base.iter().zip(&weight_only) {
                let got = edit_png(&w8, d, *dtype);
                println!(
                    "  pipeline {dtype}: PSNR vs the unquantized {dtype} output {:.1} dB, vs W8A16 {dtype} {:.1} dB",
                    psnr_u8(&got, want),
                    psnr_u8(&got, w8a16)
                );
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
    if !w8a8 {
        gemm_speed();
    }
}
