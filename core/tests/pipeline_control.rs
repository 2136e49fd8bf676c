//! Pipeline control: progress reports every stage and step in order, and returning `false` from
//! the callback cancels between steps.

use joyrt_core::image::{Buckets, RgbImage};
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::pipeline::{edit, EditParams, Progress, Stage};
use joyrt_core::{DType, Error};
use joyrt_cpu::CpuBackend;
use std::path::Path;

fn setup() -> (ModelFolder, RgbImage, EditParams) {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_model");
    let model = ModelFolder::open(&fx).unwrap();
    let img = RgbImage::new(96, 64, (0..96 * 64 * 3).map(|i| (i * 7 % 251) as u8).collect()).unwrap();
    let params = EditParams {
        prompt: "Make it blue".into(),
        steps: 3,
        dtype: DType::F32,
        buckets: Some(Buckets(vec![(64, 96)])),
        ..Default::default()
    };
    (model, img, params)
}

#[test]
fn progress_covers_every_stage_and_step() {
    let (model, img, params) = setup();
    let mut events = Vec::new();
    let out = edit(&CpuBackend::default(), &model, &img, &params, &mut |p| {
        events.push(p);
        true
    })
    .unwrap();
    let starts: Vec<Stage> =
        events.iter().filter_map(|e| if let Progress::StageStart(s) = e { Some(*s) } else { None }).collect();
    assert_eq!(
        starts,
        [
            Stage::Preprocess,
            Stage::LoadTextEncoder,
            Stage::EncodePrompt,
            Stage::LoadVae,
            Stage::VaeEncode,
            Stage::LoadTransformer,
            Stage::Denoise,
            Stage::VaeDecode
        ]
    );
    let steps: Vec<usize> = events
        .iter()
        .filter_map(|e| if let Progress::Step { index, .. } = e { Some(*index) } else { None })
        .collect();
    assert_eq!(steps, [0, 1, 2]);
    assert_eq!((out.image.width, out.image.height), (96, 64));
    assert_eq!(out.timings.len(), 8);
}

#[test]
fn returning_false_cancels_between_steps() {
    let (model, img, params) = setup();
    let mut steps = 0;
    let r = edit(&CpuBackend::default(), &model, &img, &params, &mut |p| {
        if let Progress::Step { .. } = p {
            steps += 1;
            return steps < 2;
        }
        true
    });
    assert!(matches!(r, Err(Error::Cancelled)), "{:?}", r.err());
    assert_eq!(steps, 2);
}

#[test]
fn bad_parameters_are_errors() {
    let (model, img, mut params) = setup();
    params.guidance = 0.5;
    let e = edit(&CpuBackend::default(), &model, &img, &params, &mut |_| true).err().unwrap();
    assert!(e.to_string().contains("`guidance` = 0.5 is outside the allowed range [1, 100]"), "{e}");
    params.guidance = f32::NAN;
    let e = edit(&CpuBackend::default(), &model, &img, &params, &mut |_| true).err().unwrap();
    assert!(e.to_string().contains("guidance"), "{e}");
    params.guidance = 4.0;
    params.noise = Some(vec![0.0; 5]);
    let e = edit(&CpuBackend::default(), &model, &img, &params, &mut |_| true).err().unwrap();
    assert!(e.to_string().contains("noise"), "{e}");
}

#[test]
fn nan_weights_stop_the_loop_at_the_first_step() {
    use joyrt_core::weights::{write_safetensors, Checkpoint};
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_model");
    let dir = std::env::temp_dir().join(format!("joyrt-nan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for e in std::fs::read_dir(&fx).unwrap() {
        let e = e.unwrap();
        std::fs::create_dir_all(dir.join(e.file_name())).unwrap();
        if e.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), dir.join(e.file_name()).join(f.file_name())).unwrap();
            }
        } else {
            std::fs::remove_dir(dir.join(e.file_name())).unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let shard = dir.join("transformer/diffusion_pytorch_model-00003-of-00003.safetensors");
    let ck = Checkpoint::open(&shard).unwrap();
    let tensors: Vec<_> = ck
        .names()
        .into_iter()
        .map(|n| {
            let (info, bytes) = ck.raw(n).unwrap();
            let dt = info.dtype.float().unwrap();
            let mut v = dt.decode_f32(&bytes);
            if n == "proj_out.bias" {
                v[0] = f32::NAN;
            }
            (n.to_string(), dt, info.shape, dt.encode_f32(&v))
        })
        .collect();
    drop(ck);
    write_safetensors(&shard, &tensors).unwrap();

    let (_, img, params) = setup();
    let model = ModelFolder::open(&dir).unwrap();
    let mut steps = 0;
    let e = edit(&CpuBackend::default(), &model, &img, &params, &mut |p| {
        steps += matches!(p, Progress::Step { .. }) as usize;
        true
    })
    .err()
    .unwrap();
    assert!(matches!(e, Error::NonFinite { .. }), "{e}");
    assert!(
        e.to_string().contains("denoising step 1 of 3") && e.to_string().contains("--check-weights"),
        "{e}"
    );
    assert_eq!(steps, 0, "the loop stops before reporting the step");
    std::fs::remove_dir_all(&dir).unwrap();
}
