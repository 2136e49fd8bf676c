use super::*;
use crate::models::dit::DitConfig;
use crate::models::qwen::QwenConfig;
use crate::models::vae::VaeConfig;
use crate::{DType, QuantFormat};

fn full() -> Configs {
    Configs { transformer: DitConfig::full(), vae: VaeConfig::full(), text_encoder: QwenConfig::full() }
}

fn request(gb: f64, dtype: DType, quant: Option<&str>) -> PlanRequest {
    PlanRequest {
        pixels: (1024, 1024),
        format: WeightFormat::new(dtype, quant.and_then(QuantFormat::parse)),
        device_bytes: Some((gb * 1e9) as u64),
        tiling: VaeTiling::default(),
        streaming: true,
    }
}

#[test]
fn full_size_placements_by_device() {
    let c = full();
    // 80 GB: the bf16 DiT (32.5 GB) stays resident.
    let p = plan(&c, &request(80.0, DType::BF16, None)).unwrap();
    assert_eq!(p.dit, DitPlacement::Resident);
    // 24 GB: the text encoder (16.3 GB) fits alone; the DiT streams with as many resident blocks
    // as its stage leaves room for, and one more would not fit.
    let r = request(24.0, DType::BF16, None);
    let p = plan(&c, &r).unwrap();
    let DitPlacement::Streamed { resident_blocks } = p.dit else { panic!("{:?}", p.dit) };
    assert!(resident_blocks > 0 && resident_blocks < 38, "{resident_blocks}");
    assert!(p.peak() <= r.device_bytes.unwrap());
    let more = make(
        &Sizes::new(&c, &r),
        &r,
        40,
        DitPlacement::Streamed { resident_blocks: resident_blocks + 1 },
        false,
    );
    assert!(dit_stage(&more).peak() > r.device_bytes.unwrap());
    // 16 GB in bf16: the text encoder alone does not fit; the refusal gives the numbers.
    let e = plan(&c, &request(16.0, DType::BF16, None)).unwrap_err().to_string();
    assert!(e.contains("nothing fits in 16.00 GB") && e.contains("text encoder needs 16.69 GB"), "{e}");
    // int8 on 16 GB and int4 on 8 GB fit.
    for (gb, q) in [(16.0, "int8"), (8.0, "int4")] {
        let r = request(gb, DType::BF16, Some(q));
        let p = plan(&c, &r).unwrap();
        assert!(p.peak() <= r.device_bytes.unwrap(), "{q}: {}", p.table());
    }
}

#[test]
fn the_vae_tiles_only_when_it_must_and_the_cpu_never_streams() {
    // A small text encoder and DiT, so that the VAE decode is the largest stage at 2048².
    let mut c = full();
    c.transformer.num_layers = 2;
    c.transformer.hidden_size = 512;
    c.transformer.num_attention_heads = 4;
    c.text_encoder.num_hidden_layers = 2;
    c.text_encoder.vision.depth = 2;
    c.text_encoder.vision.deepstack_visual_indexes = vec![0];
    let mut r = request(80.0, DType::F32, None);
    r.pixels = (2048, 2048);
    let untiled = plan(&c, &r).unwrap();
    assert_eq!(untiled.vae_tiling, None);
    // A device just below the untiled decode's need, above the text encoder's: tiles.
    let decode = untiled.stages.iter().find(|s| s.stage == "vae decode").unwrap().peak();
    let text = untiled.stages[0].peak();
    r.device_bytes = Some(decode - 1);
    assert!(text < decode - 1);
    assert_eq!(plan(&c, &r).unwrap().vae_tiling, Some(VaeTiling::default()));
    // Without streaming a DiT that does not fit is refused.
    let c = full();
    let mut r = request(24.0, DType::BF16, None);
    r.streaming = false;
    assert!(plan(&c, &r).unwrap_err().to_string().contains("even with the VAE tiled"));
}
