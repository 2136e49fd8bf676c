//! The resident session: its edits equal one-shot edits, and nothing of a refused, cancelled or
//! mistyped request reaches the next one.

use joyrt_core::image::{Buckets, RgbImage};
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::pipeline::{edit, EditParams, Progress, Session, Stage};
use joyrt_core::{DType, Error};
use joyrt_cpu::CpuBackend;
use std::path::Path;

fn tiny_model() -> ModelFolder {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_model");
    ModelFolder::open(&dir).unwrap()
}

fn input() -> RgbImage {
    let data = (0..64 * 48 * 3).map(|i| (i * 7 % 251) as u8).collect();
    RgbImage::new(64, 48, data).unwrap()
}

fn params(prompt: &str, seed: u64) -> EditParams {
    EditParams {
        prompt: prompt.into(),
        steps: 2,
        seed,
        buckets: Some(Buckets(vec![(64, 64)])),
        ..Default::default()
    }
}

#[test]
fn resident_edits_match_one_shot_edits_and_errors_do_not_leak() {
    let backend = CpuBackend::default();
    let model = tiny_model();
    let mut stages = Vec::new();
    let session = Session::load(&backend, model.clone(), DType::F32, &mut |p| {
        if let Progress::StageEnd(s, _) = p {
            stages.push(s);
        }
        true
    })
    .unwrap();
    assert_eq!(stages, [Stage::LoadTextEncoder, Stage::LoadVae, Stage::LoadTransformer]);
    let img = input();
    let one_shot = edit(&backend, &model, &img, &params("Make it blue", 3), &mut |_| true).unwrap();

    let mut seen = Vec::new();
    let first = session
        .edit(&img, &params("Make it blue", 3), &mut |p| {
            if let Progress::StageStart(s) = p {
                seen.push(s);
            }
            true
        })
        .unwrap();
    assert_eq!(first.image, one_shot.image, "the resident networks give the one-shot result");
    assert!(!seen
        .iter()
        .any(|s| matches!(s, Stage::LoadTextEncoder | Stage::LoadVae | Stage::LoadTransformer)));

    // A refused request, a cancelled one and one in the wrong dtype change nothing after them.
    let bad = EditParams { steps: 0, ..params("x", 1) };
    assert!(matches!(session.edit(&img, &bad, &mut |_| true), Err(Error::Input(_))));
    let cancel = |p: Progress| !matches!(p, Progress::Step { index: 0, .. });
    let r = session.edit(&img, &params("Make it blue", 3), &mut { cancel });
    assert!(matches!(r, Err(Error::Cancelled)), "{:?}", r.err());
    let wrong = EditParams { dtype: DType::BF16, ..params("x", 1) };
    let e = session.edit(&img, &wrong, &mut |_| true).err().unwrap().to_string();
    assert!(e.contains("holds its networks in f32"), "{e}");

    let again = session.edit(&img, &params("Make it blue", 3), &mut |_| true).unwrap();
    assert_eq!(again.image, first.image, "same request, same image");
    let other = session.edit(&img, &params("Make it blue", 4), &mut |_| true).unwrap();
    assert_ne!(other.image, first.image, "the seed is the request's own");
}
