//! The DiT's prepared path (per-request state, text streams and per-step time vector computed
//! once) gives bit for bit the one-shot `forward`, over several steps and both CFG branches.

use joyrt_core::models::dit::{Dit, DitConfig};
use joyrt_core::weights::Checkpoint;
use joyrt_core::{DType, Rng, Tensor};
use joyrt_cpu::CpuBackend;
use std::path::Path;

fn tiny_dit(be: &CpuBackend, dtype: DType) -> Dit<CpuBackend> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_model/transformer");
    let cfg = DitConfig::from_file(&dir.join("config.json")).unwrap();
    Dit::load(be, &Checkpoint::open(&dir).unwrap(), &cfg, dtype).unwrap()
}

fn random(be: &CpuBackend, dims: &[usize], seed: u64) -> Tensor<CpuBackend> {
    let n = dims.iter().product();
    Tensor::from_f32(be, dims.to_vec(), &Rng::new(seed).normal_vec(n, 1.0), DType::F32).unwrap()
}

fn bits(t: Tensor<CpuBackend>) -> Vec<u32> {
    t.to_f32_vec().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn prepared_forward_is_bit_identical_to_one_shot() {
    let be = CpuBackend::default();
    for dtype in [DType::F32, DType::BF16] {
        let dit = tiny_dit(&be, dtype);
        let dims = [2, 16, 8, 12];
        // Prompts of different lengths, as the positive and negative prompts usually are.
        let (pos, neg) = (random(&be, &[20, 64], 1), random(&be, &[7, 64], 2));
        let request = dit.prepare(&dims).unwrap();
        let streams = [dit.embed_text(&pos).unwrap(), dit.embed_text(&neg).unwrap()];
        for (step, t) in [1000.0f32, 640.5, 2.247].into_iter().enumerate() {
            // The latents change every step; the request state does not.
            let latents = random(&be, &dims, 10 + step as u64).cast(dtype).unwrap();
            let vec = dit.time_vector(t).unwrap();
            for (text, stream) in [&pos, &neg].into_iter().zip(&streams) {
                let prepared = bits(dit.forward_with(&request, &latents, &vec, stream).unwrap());
                let one_shot = bits(dit.forward(&latents, t, text).unwrap());
                assert_eq!(prepared, one_shot, "{dtype} t={t}, text of {} tokens", text.dims()[0]);
            }
        }
    }
}

#[test]
fn prepared_state_that_does_not_fit_is_an_error() {
    let be = CpuBackend::default();
    let dit = tiny_dit(&be, DType::F32);
    let request = dit.prepare(&[2, 16, 8, 12]).unwrap();
    let stream = dit.embed_text(&random(&be, &[5, 64], 1)).unwrap();
    let vec = dit.time_vector(500.0).unwrap();

    let other = random(&be, &[2, 16, 8, 8], 3);
    let e = dit.forward_with(&request, &other, &vec, &stream).unwrap_err().to_string();
    assert!(e.contains("prepared"), "{e}");
    let latents = random(&be, &[2, 16, 8, 12], 3);
    let e = dit.forward_with(&request, &latents, &random(&be, &[6, 32], 4), &stream).unwrap_err().to_string();
    assert!(e.contains("time vector"), "{e}");

    for bad in [&[2, 16, 8][..], &[2, 8, 8, 12], &[2, 16, 7, 12], &[0, 16, 8, 12]] {
        assert!(dit.prepare(bad).is_err(), "{bad:?}");
    }
    let e = dit.embed_text(&random(&be, &[5, 32], 5)).err().unwrap().to_string();
    assert!(e.contains("text states"), "{e}");
}
