//! The conformance suite on the wgpu backend (a software Vulkan adapter, lavapipe, in CI).

joyrt_conformance::conformance_suite!(wgpu, joyrt_wgpu::WgpuBackend::new(), ops_layer = true);

/// Every op that splits its work past the binding limit, on an adapter capped at
/// `SPLIT_BINDING_LIMIT` so that the split cases run in several pieces: against the CPU reference
/// with the op presets, and bit for bit against the same ops unsplit (the kernels are the same,
/// run on sub-ranges).
#[test]
fn ops_split_past_a_small_binding_limit() {
    use joyrt_conformance::ops::{run_cases, split_cases, SPLIT_BINDING_LIMIT};
    use joyrt_core::{Backend, DType};
    use joyrt_wgpu::{WgpuBackend, WgpuOptions};
    let capped = WgpuOptions { binding_limit: Some(SPLIT_BINDING_LIMIT), ..WgpuOptions::from_env() };
    let (split, whole) = match (WgpuBackend::with_options(capped), WgpuBackend::new()) {
        (Ok(s), Ok(w)) => (s, w),
        (Err(e), _) | (_, Err(e)) => {
            println!("SKIPPED: backend wgpu not available for the split ops: {e}");
            return;
        }
    };
    assert_eq!(split.binding_limit(), SPLIT_BINDING_LIMIT);
    let mut report =
        joyrt_conformance::Report::new(format!("{} capped at {SPLIT_BINDING_LIMIT} bytes", split.name()));
    run_cases(&split, &mut report, &split_cases(), |_| true);
    joyrt_conformance::finish(&report);
    for (i, op) in split_cases().iter().enumerate() {
        for dtype in DType::ALL {
            let run =
                |b: &WgpuBackend| op.run(b, dtype, 1000 + i as u64).and_then(|t| t.to_f32_vec()).unwrap();
            let (got, want) = (run(&split), run(&whole));
            let same =
                got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{}: split and unsplit results differ", op.label(dtype));
        }
    }
}

/// A full-size DiT block (hidden 4096, 32 heads of 128, MLP 16384: `DitConfig::full()` with one
/// layer) at a 1024² image's token count (one 128×128 latent frame: 4096 image tokens, plus
/// `JOYRT_SPLIT_TEXT_TOKENS` text tokens, default 64), synthetic bf16 weights, on the adapter's
/// real binding limit (128 MiB on lavapipe: the MLP activation alone is 285 MB in f32), against
/// the CPU reference with the bf16 network preset. About 2 TFLOP: lavapipe's GEMM runs near
/// 1 GFLOP/s on one core, so this takes over 40 CPU-minutes there (a hardware adapter: seconds),
/// with ~3.5 GB of host memory:
/// `cargo test --release -p joyrt-conformance --test wgpu -- --ignored full_size_dit_block --nocapture`.
#[test]
#[ignore]
fn full_size_dit_block_at_1024_on_the_real_binding_limit() {
    use joyrt_conformance::tolerance::net_preset;
    use joyrt_core::models::dit::DitConfig;
    use joyrt_core::weights::Checkpoint;
    use joyrt_core::{Backend, DType, Rng};
    let gpu = match joyrt_wgpu::WgpuBackend::new() {
        Ok(b) => b,
        Err(e) => {
            println!("SKIPPED: backend wgpu not available for the full-size DiT block: {e}");
            return;
        }
    };
    let dtype = DType::BF16;
    let text_tokens: usize =
        std::env::var("JOYRT_SPLIT_TEXT_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let cfg = DitConfig { num_layers: 1, ..DitConfig::full() };
    let ck = Checkpoint::synthetic("one full-size DiT block", &cfg.param_specs(), dtype, 7).unwrap();
    let mut rng = Rng::new(3);
    let latent = rng.normal_vec(16 * 128 * 128, 1.0);
    let text = rng.normal_vec(text_tokens * cfg.text_dim, 0.5);
    println!("{}: binding limit {} bytes; {:?}", gpu.name(), gpu.binding_limit(), gpu.adapter_report());
    let got = dit_forward(&gpu, &ck, &cfg, dtype, &latent, &text);
    println!("wgpu pool peak: {:.0} MB", gpu.pool_stats().peak_bytes as f64 / 1e6);
    let want = dit_forward(&joyrt_cpu::CpuBackend::default(), &ck, &cfg, dtype, &latent, &text);
    let m = joyrt_conformance::Metrics::compare(&got, &want, &net_preset(dtype));
    println!("wgpu vs cpu: {m:?}");
    assert!(m.passes(&net_preset(dtype)), "{m:?}");
}

/// The DiT of `cfg` loaded from `ck` and run once on a `[1, 16, 128, 128]` latent and `text`,
/// timed (load, forward and read back).
fn dit_forward<B: joyrt_core::Backend>(
    b: &B,
    ck: &joyrt_core::weights::Checkpoint,
    cfg: &joyrt_core::models::dit::DitConfig,
    dtype: joyrt_core::DType,
    latent: &[f32],
    text: &[f32],
) -> Vec<f32> {
    use joyrt_core::Tensor;
    let t0 = std::time::Instant::now();
    let dit = joyrt_core::models::dit::Dit::load(b, ck, cfg, dtype).unwrap();
    let x = Tensor::from_f32(b, [1, 16, 128, 128], latent, dtype).unwrap();
    let txt = Tensor::from_f32(b, [text.len() / cfg.text_dim, cfg.text_dim], text, dtype).unwrap();
    let loaded = t0.elapsed().as_secs_f64();
    let out = dit.forward(&x, 500.0, &txt).and_then(|y| y.to_f32_vec()).unwrap();
    println!("{}: load {loaded:.1} s, forward {:.1} s", b.name(), t0.elapsed().as_secs_f64() - loaded);
    out
}
