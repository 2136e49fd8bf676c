//! The tiled VAE (`models/vae_tiling.rs`) on the tiny fixture VAE (CPU): one tile is the untiled
//! network exactly; several tiles stay close to it (the mid block's attention sees one tile at a
//! time, so they cannot be equal), encode and decode. The PSNR figures are printed
//! (`--nocapture`) and reported in docs/benchmarks.md.

use joyrt_core::image::{psnr_f32, test_pattern};
use joyrt_core::models::vae::{Vae, VaeConfig};
use joyrt_core::models::vae_tiling::VaeTiling;
use joyrt_core::weights::Checkpoint;
use joyrt_core::{DType, Tensor};
use joyrt_cpu::CpuBackend;
use std::path::Path;

fn vae(be: &CpuBackend) -> Vae<CpuBackend> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_model/vae");
    let cfg = VaeConfig::from_file(&dir.join("config.json")).unwrap();
    let ck = Checkpoint::open(&dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    Vae::load(be, &ck, &cfg, DType::F32).unwrap()
}

#[test]
fn one_tile_is_the_untiled_vae_and_many_stay_close() {
    let be = CpuBackend::default();
    let vae = vae(&be);
    let (h, w) = (96, 160);
    let x = Tensor::from_f32(&be, [3, h, w], &test_pattern(h, w), DType::F32).unwrap();
    let whole = VaeTiling { tile: 256, stride: 192 };
    let tiles = VaeTiling { tile: 64, stride: 48 };

    let mean = vae.encode(&x).unwrap().0.to_f32_vec().unwrap();
    let one = vae.encode_mean_tiled(&x, whole).unwrap();
    assert_eq!(one.dims(), &[16, h / 8, w / 8]);
    assert_eq!(one.to_f32_vec().unwrap(), mean, "a single tile is the untiled encoder");
    let tiled = vae.encode_mean_tiled(&x, tiles).unwrap().to_f32_vec().unwrap();
    let span = mean.iter().fold(0f32, |m, v| m.max(v.abs())) as f64 * 2.0;
    let enc_db = psnr_f32(&tiled, &mean, span);

    let z = Tensor::from_f32(&be, [16, h / 8, w / 8], &mean, DType::F32).unwrap();
    let img = vae.decode(&z).unwrap();
    assert_eq!(vae.decode_tiled(&z, whole).unwrap(), img, "a single tile is the untiled decoder");
    let tiled = vae.decode_tiled(&z, tiles).unwrap();
    assert_eq!(tiled.len(), 3 * h * w);
    let dec_db = psnr_f32(&tiled, &img, 2.0);
    println!("tiny VAE, {h}x{w}, tiles 64/48 px: encode mean PSNR {enc_db:.1} dB, decode PSNR {dec_db:.1} dB vs untiled");
    // Measured 23.8 and 43.3 dB. The encoder's tiles are 8 latents wide here, so its attention
    // and padding differ much from the whole image's (with 128-px tiles on 192x256: 26–29 dB).
    // Where the tiles go is tested exactly in the module's own tests.
    assert!(enc_db > 20.0 && dec_db > 38.0, "encode {enc_db:.1} dB, decode {dec_db:.1} dB");
}

#[test]
fn a_bad_tiling_is_an_input_error() {
    let be = CpuBackend::default();
    let vae = vae(&be);
    let z = Tensor::from_f32(&be, [16, 4, 4], &[0.0; 256], DType::F32).unwrap();
    let e = vae.decode_tiled(&z, VaeTiling { tile: 60, stride: 48 }).unwrap_err().to_string();
    assert!(e.contains("multiples of 8"), "{e}");
}
