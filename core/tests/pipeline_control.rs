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
    params.guidance = f32::NAN;
    let e = edit(&CpuBackend::default(), &model, &img, &params, &mut |_| true).err().unwrap();
    assert!(e.to_string().contains("guidance"), "{e}");
    params.guidance = 4.0;
    params.noise = Some(vec![0.0; 5]);
    let e = edit(&CpuBackend::default(), &model, &img, &params, &mut |_| true).err().unwrap();
    assert!(e.to_string().contains("noise"), "{e}");
}
