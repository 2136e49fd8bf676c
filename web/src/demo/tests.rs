use super::*;
use joyrt_core::pipeline::Stage;
use joyrt_cpu::CpuBackend;

fn png(w: usize, h: usize) -> Vec<u8> {
    let data = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    RgbImage::new(w, h, data).unwrap().encode_png().unwrap()
}

fn request(image: &[u8], steps: usize) -> EditRequest<'_> {
    EditRequest {
        image,
        image_name: "input.png",
        prompt: "Make it blue".into(),
        negative_prompt: String::new(),
        steps,
        guidance: 4.0,
        seed: 3,
        base_size: Some(BUILTIN_BASE_SIZE),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    // The CPU backend's readbacks are ready at once: one poll finishes the edit.
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a CPU edit waited"),
    }
}

#[test]
fn builtin_model_edits_cancels_and_refuses_a_non_image() {
    let cpu = CpuBackend::default();
    let model = builtin_model().unwrap();
    let f = footprint(&model, DType::F32).unwrap();
    assert!(f.weight_bytes > 1_000_000 && f.largest_tensor_bytes < f.weight_bytes, "{f:?}");
    let session = Session::load(&cpu, model, DType::F32, &mut |_| true).unwrap();
    let input = png(96, 64);

    let mut steps = Vec::new();
    let out = block_on(edit_png(&session, request(&input, 2), &mut |p| {
        if let Progress::Step { index, total, .. } = p {
            steps.push((index, total));
        }
        true
    }))
    .unwrap();
    assert_eq!(steps, [(0, 2), (1, 2)]);
    let img = RgbImage::decode(&out, "out.png").unwrap();
    // A landscape input gets the landscape bucket of the built-in base nearest its aspect ratio.
    assert_eq!((img.height, img.width), Buckets::vision_aligned(BUILTIN_BASE_SIZE).best(64, 96));
    let again = block_on(edit_png(&session, request(&input, 2), &mut |_| true)).unwrap();
    assert_eq!(out, again, "same seed, same PNG");

    let cancelled =
        block_on(edit_png(&session, request(&input, 3), &mut |p| !matches!(p, Progress::Step { .. })));
    assert_eq!(message(&cancelled.unwrap_err()), "cancelled");
    let cancelled = block_on(edit_png(&session, request(&input, 3), &mut |p| {
        !matches!(p, Progress::StageStart(Stage::Denoise))
    }));
    assert!(matches!(cancelled, Err(Error::Cancelled)));

    let e = block_on(edit_png(&session, request(b"hello, not an image", 2), &mut |_| true)).unwrap_err();
    assert!(message(&e).contains("input.png is not a PNG or JPEG image"), "{e}");
}

#[test]
fn the_memory_check_refuses_with_the_numbers() {
    let f = Footprint { weight_bytes: 6 << 30, largest_tensor_bytes: 2 << 30 };
    let e = check_fits(&f, 1 << 30, None).unwrap_err();
    assert!(e.contains("2.00 GiB") && e.contains("1.00 GiB") && e.contains("max_buffer_size"), "{e}");
    let e = check_fits(&f, 4 << 30, Some(8 << 30)).unwrap_err();
    assert!(e.contains("6.00 GiB") && e.contains("8.00 GiB") && e.contains("4.00 GiB"), "{e}");
    assert!(check_fits(&f, 4 << 30, Some(16 << 30)).is_ok());
    assert!(check_fits(&f, 4 << 30, None).is_ok());
    let small = Footprint { weight_bytes: 5 << 20, largest_tensor_bytes: 1 << 20 };
    let e = check_fits(&small, 1 << 30, Some(1 << 20)).unwrap_err();
    assert!(e.contains("5.0 MiB") && e.contains("reports 1.0 MiB") && e.contains("(0.5 MiB)"), "{e}");
}

#[test]
fn quantized_weights_count_as_the_device_holds_them() {
    use joyrt_core::weights::safetensors_header;
    use joyrt_core::{Shape, StoredDType};
    let t = |n: &str, d: StoredDType, s: &[usize]| (n.to_string(), d, Shape::new(s.to_vec()));
    let tensors = [
        t("int8.weight", StoredDType::I8, &[4, 8]),
        t("int8.weight_scale", StoredDType::Float(DType::F16), &[4, 1]),
        t("int4.weight", StoredDType::U8, &[3, 5]),
        t("int4.weight_scale", StoredDType::Float(DType::F16), &[3, 1]),
        t("fp8.weight", StoredDType::F8E4M3, &[2, 5]),
        t("fp8.weight_scale", StoredDType::Float(DType::F32), &[2]),
        t("fp8.input_scale", StoredDType::Float(DType::F32), &[]),
        t("norm.weight", StoredDType::Float(DType::BF16), &[6]),
    ];
    let mut file = safetensors_header(&tensors, &Default::default());
    let data: usize = tensors.iter().map(|(_, d, s)| s.numel() * d.size()).sum();
    file.resize(file.len() + data, 0);
    let ck = Checkpoint::from_sources(Path::new("<mem>"), vec![(PathBuf::from("<mem>/a"), Box::new(file))])
        .unwrap();
    let bytes = |n: &str| device_bytes(&ck, n, DType::F32);
    // Codes: rows of whole u32 words (5 bytes → 8); scales: f32; the unused input scale: nothing.
    assert_eq!((bytes("int8.weight"), bytes("int8.weight_scale")), (32, 16));
    assert_eq!((bytes("int4.weight"), bytes("int4.weight_scale")), (24, 12));
    assert_eq!((bytes("fp8.weight"), bytes("fp8.weight_scale"), bytes("fp8.input_scale")), (16, 8, 0));
    assert_eq!(bytes("norm.weight"), 24);
    assert_eq!(device_bytes(&ck, "norm.weight", DType::BF16), 12);
}

#[test]
fn a_folder_names_its_base_size_in_joyrt_json() {
    assert_eq!(folder_base_size(br#"{"default_base_size": 256}"#), Ok(Some(256)));
    assert_eq!(folder_base_size(b"{}"), Ok(None));
    let e = folder_base_size(br#"{"default_base_size": 100}"#).unwrap_err();
    assert!(e.contains("got 100"), "{e}");
    assert!(folder_base_size(b"[").unwrap_err().contains("not valid JSON"));
}
