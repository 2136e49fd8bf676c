//! The Wan 2.1 VAE against the diffusers goldens (`tests/fixtures/golden/vae.safetensors`, see
//! `tests/fixtures/README.md`): encode mean/logvar of the fixed image, the encoder and decoder
//! mid-block dumps, and the clamped decode of the golden mean; f32 and bf16 on the CPU backend.
//! Also: the original Wan key spelling loads the same network, latent normalisation matches the
//! pipeline fixture, and config errors name the file and the field.

use joyrt_core::models::vae::{Vae, VaeConfig};
use joyrt_core::weights::{wan_vae_key_to_diffusers, write_safetensors, Checkpoint};
use joyrt_core::{DType, Shape, Tensor};
use joyrt_cpu::CpuBackend;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn tiny_vae_dir() -> PathBuf {
    fixtures().join("tiny_model/vae")
}

struct Golden(Checkpoint);

impl Golden {
    fn open(name: &str) -> Golden {
        Golden(Checkpoint::open(&fixtures().join("golden").join(name)).unwrap())
    }
    fn f32(&self, key: &str) -> Vec<f32> {
        self.0.read_f32(key).unwrap_or_else(|e| panic!("golden {key}: {e}"))
    }
    fn dims(&self, key: &str) -> Vec<usize> {
        self.0.info(key).unwrap_or_else(|| panic!("golden {key} missing")).shape.dims().to_vec()
    }
    fn upload(&self, be: &CpuBackend, key: &str, dtype: DType) -> Tensor<CpuBackend> {
        Tensor::from_f32(be, self.dims(key), &self.f32(key), dtype).unwrap()
    }
}

/// `(‖a−b‖/‖b‖, max |a−b|, cos(a, b))`, accumulated in f64.
fn errors(got: &[f32], want: &[f32]) -> (f64, f64, f64) {
    assert_eq!(got.len(), want.len(), "length");
    let (mut d2, mut w2, mut g2, mut dot, mut max) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        let (g, w) = (g as f64, w as f64);
        assert!(g.is_finite(), "non-finite output");
        d2 += (g - w) * (g - w);
        w2 += w * w;
        g2 += g * g;
        dot += g * w;
        max = max.max((g - w).abs());
    }
    (d2.sqrt() / w2.sqrt().max(1e-30), max, dot / (g2.sqrt() * w2.sqrt()).max(1e-30))
}

fn check(what: &str, got: &[f32], want: &[f32], max_rel: f64, min_cos: f64) {
    let (rel, max, cos) = errors(got, want);
    println!("{what:<28} rel {rel:.3e}  max abs {max:.3e}  cos {cos:.8}");
    assert!(
        rel <= max_rel && cos >= min_cos,
        "{what}: rel {rel:.3e} (≤ {max_rel:e}), cos {cos} (≥ {min_cos})"
    );
}

fn load(be: &CpuBackend, dir: &Path, dtype: DType) -> Vae<CpuBackend> {
    let cfg = VaeConfig::from_file(&dir.join("config.json")).unwrap();
    let ck = Checkpoint::open(dir).unwrap();
    Vae::load(be, &ck, &cfg, dtype).unwrap()
}

/// Every golden of `vae.safetensors`, computed in `dtype` (weights and activations).
fn run_goldens(dtype: DType, max_rel: f64, min_cos: f64) {
    let be = CpuBackend::default();
    let vae = load(&be, &tiny_vae_dir(), dtype);
    let g = Golden::open("vae.safetensors");
    let x = g.upload(&be, "pixels", dtype);
    let v = |t: Tensor<CpuBackend>| t.to_f32_vec().unwrap();

    let (mean, logvar) = vae.encode(&x).unwrap();
    assert_eq!(mean.dims(), g.dims("mean").as_slice());
    assert_eq!(logvar.dims(), g.dims("logvar").as_slice());
    check(
        &format!("{dtype} encoder mid block"),
        &v(vae.encoder_mid(&x).unwrap()),
        &g.f32("debug.encoder_mid"),
        max_rel,
        min_cos,
    );
    check(&format!("{dtype} encode mean"), &v(mean), &g.f32("mean"), max_rel, min_cos);
    check(&format!("{dtype} encode logvar"), &v(logvar), &g.f32("logvar"), max_rel, min_cos);

    // The decode goldens start from the golden mean, so the two halves are checked apart.
    let z = g.upload(&be, "mean", dtype);
    check(
        &format!("{dtype} decoder mid block"),
        &v(vae.decoder_mid(&z).unwrap()),
        &g.f32("debug.decoder_mid"),
        max_rel,
        min_cos,
    );
    let decoded = vae.decode(&z).unwrap();
    assert!(decoded.iter().all(|p| (-1.0..=1.0).contains(p)), "decode must clamp to [−1, 1]");
    check(&format!("{dtype} decode"), &decoded, &g.f32("decoded"), max_rel, min_cos);
}

#[test]
fn goldens_f32() {
    run_goldens(DType::F32, 1e-4, 0.9999);
}

#[test]
fn goldens_bf16() {
    run_goldens(DType::BF16, 1e-2, 0.999);
}

/// The inverse of `wan_vae_key_to_diffusers`, for writing a checkpoint in the original spelling.
fn diffusers_to_wan(name: &str, num_res_blocks: usize) -> String {
    let res = |rest: &str| -> String {
        for (a, b) in [
            ("norm1.", "residual.0."),
            ("conv1.", "residual.2."),
            ("norm2.", "residual.3."),
            ("conv2.", "residual.6."),
            ("conv_shortcut.", "shortcut."),
        ] {
            if let Some(r) = rest.strip_prefix(a) {
                return format!("{b}{r}");
            }
        }
        rest.to_string()
    };
    let p: Vec<&str> = name.split('.').collect();
    let tail = |k: usize| p[k..].join(".");
    match p[..] {
        ["quant_conv", ..] => format!("conv1.{}", tail(1)),
        ["post_quant_conv", ..] => format!("conv2.{}", tail(1)),
        [side, "conv_in", ..] => format!("{side}.conv1.{}", tail(2)),
        [side, "norm_out", ..] => format!("{side}.head.0.{}", tail(2)),
        [side, "conv_out", ..] => format!("{side}.head.2.{}", tail(2)),
        [side, "mid_block", "resnets", i, ..] => {
            format!("{side}.middle.{}.{}", if i == "0" { 0 } else { 2 }, res(&tail(4)))
        }
        [side, "mid_block", "attentions", "0", ..] => format!("{side}.middle.1.{}", tail(4)),
        ["encoder", "down_blocks", k, ..] => format!("encoder.downsamples.{k}.{}", res(&tail(3))),
        ["decoder", "up_blocks", b, kind, j, ..] => {
            let b: usize = b.parse().unwrap();
            let per = num_res_blocks + 2;
            if kind == "resnets" {
                format!("decoder.upsamples.{}.{}", b * per + j.parse::<usize>().unwrap(), res(&tail(5)))
            } else {
                format!("decoder.upsamples.{}.{}", b * per + num_res_blocks + 1, tail(5))
            }
        }
        _ => panic!("unexpected VAE tensor {name}"),
    }
}

#[test]
fn original_wan_names_load_the_same_network() {
    let dir = tiny_vae_dir();
    let cfg = VaeConfig::from_file(&dir.join("config.json")).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    let nrb = cfg.num_res_blocks;
    let tensors: Vec<(String, DType, Shape, Vec<u8>)> = ck
        .names()
        .into_iter()
        .map(|n| {
            let wan = diffusers_to_wan(n, nrb);
            assert_eq!(wan_vae_key_to_diffusers(&wan, nrb), n, "round trip of {n} via {wan}");
            let (info, bytes) = ck.raw(n).unwrap();
            (wan, info.dtype.float().unwrap(), info.shape, bytes.to_vec())
        })
        .collect();
    let tmp = std::env::temp_dir().join(format!("joyrt-vae-wan-names-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let file = tmp.join("wan_2.1_vae.safetensors");
    write_safetensors(&file, &tensors).unwrap();

    let be = CpuBackend::default();
    let a = Vae::load(&be, &ck, &cfg, DType::F32).unwrap();
    let b = Vae::load(&be, &Checkpoint::open(&file).unwrap(), &cfg, DType::F32).unwrap();
    let g = Golden::open("vae.safetensors");
    let x = g.upload(&be, "pixels", DType::F32);
    let (ma, _) = a.encode(&x).unwrap();
    let (mb, _) = b.encode(&x).unwrap();
    assert_eq!(ma.to_f32_vec().unwrap(), mb.to_f32_vec().unwrap());
    assert_eq!(a.decode(&ma).unwrap(), b.decode(&mb).unwrap());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn latent_normalisation_matches_the_pipeline() {
    let be = CpuBackend::default();
    let vae = load(&be, &tiny_vae_dir(), DType::F32);
    let g = Golden::open("pipeline.safetensors");
    let mean = g.upload(&be, "vae_mean", DType::F32);
    let z_ref = vae.normalize(&mean).unwrap();
    assert_eq!(z_ref.dims(), g.dims("z_ref").as_slice());
    check("normalize", &z_ref.to_f32_vec().unwrap(), &g.f32("z_ref"), 1e-6, 0.999999);
    let back = vae.denormalize(&z_ref).unwrap();
    check("denormalize", &back.to_f32_vec().unwrap(), &g.f32("vae_mean"), 1e-6, 0.999999);
}

#[test]
fn tiny_checkpoint_is_exactly_the_param_specs() {
    let dir = tiny_vae_dir();
    let cfg = VaeConfig::from_file(&dir.join("config.json")).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    ck.check_exact("vae", &cfg.param_specs(), &[]).unwrap();
    let stored: u64 = ck.names().iter().map(|n| ck.info(n).unwrap().shape.numel() as u64).sum();
    assert_eq!(stored, cfg.param_count());
}

#[test]
fn published_config_parses_to_the_full_model() {
    // The published `vae/config.json` of JoyAI-Image-Edit (diffusers layout), extra keys included.
    let mut v = serde_json::json!({
        "_class_name": "AutoencoderKLWan", "_diffusers_version": "0.33.0", "attn_scales": [],
        "base_dim": 96, "decoder_base_dim": null, "dim_mult": [1, 2, 4, 4], "dropout": 0.0,
        "in_channels": 3, "is_residual": false, "num_res_blocks": 2, "out_channels": 3,
        "patch_size": null, "scale_factor_spatial": 8, "scale_factor_temporal": 4,
        "temperal_downsample": [false, true, true], "z_dim": 16, "clip_output": true
    });
    let full = VaeConfig::full();
    v["latents_mean"] = serde_json::json!(full.latents_mean);
    v["latents_std"] = serde_json::json!(full.latents_std);
    let path = Path::new("vae/config.json");
    let cfg = VaeConfig::from_json(&v, path).unwrap();
    assert_eq!(cfg, full);
    assert_eq!(cfg.param_count(), 126_892_531);
    assert_eq!(cfg.scale(), 8);

    let err = |patch: serde_json::Value| -> String {
        let mut bad = v.clone();
        for (k, x) in patch.as_object().unwrap() {
            bad[k] = x.clone();
        }
        VaeConfig::from_json(&bad, path).unwrap_err().to_string()
    };
    for (patch, field) in [
        (serde_json::json!({"is_residual": true}), "Wan 2.2"),
        (serde_json::json!({"base_dim": "96"}), "base_dim"),
        (serde_json::json!({"z_dim": 48}), "latents_mean"),
        (serde_json::json!({"temperal_downsample": [false, true]}), "temperal_downsample"),
        (serde_json::json!({"attn_scales": [1]}), "attn_scales"),
        (serde_json::json!({"latents_std": [1.0]}), "latents_std"),
    ] {
        let e = err(patch.clone());
        assert!(e.contains(field) && e.contains("vae/config.json"), "{patch}: {e}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let be = CpuBackend::default();
    let vae = load(&be, &tiny_vae_dir(), DType::F32);
    let odd = Tensor::from_f32(&be, [3, 60, 96], &vec![0.0; 3 * 60 * 96], DType::F32).unwrap();
    assert!(vae.encode(&odd).is_err(), "H not a multiple of 8");
    let rgba = Tensor::from_f32(&be, [4, 64, 96], &vec![0.0; 4 * 64 * 96], DType::F32).unwrap();
    assert!(vae.encode(&rgba).is_err(), "4 channels");
    let z = Tensor::from_f32(&be, [8, 8, 12], &vec![0.0; 8 * 8 * 12], DType::F32).unwrap();
    assert!(vae.decode(&z).is_err(), "8 latent channels");
}
