//! Quantized weights as stored in safetensors (docs/quantized-formats.md): hand-built files read
//! back through the checkpoint, the exact-set check and `quant::load_quantized`, with the values
//! checked by running the CPU `linear_quantized` on the identity.

use half::f16;
use joyrt_core::quant::{codec, load_quantized};
use joyrt_core::weights::{write_safetensors, Checkpoint, ParamSpec};
use joyrt_core::{DType, QuantFormat, QuantizedMatrix, Shape, StoredDType, Tensor};
use joyrt_cpu::CpuBackend;
use std::path::PathBuf;

type Stored = (String, StoredDType, Shape, Vec<u8>);

fn t(name: &str, dtype: impl Into<StoredDType>, shape: &[usize], bytes: Vec<u8>) -> Stored {
    (name.into(), dtype.into(), Shape::new(shape), bytes)
}

fn f16s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect()
}

fn write(name: &str, tensors: &[Stored]) -> Checkpoint {
    let dir = std::env::temp_dir().join(format!("joyrt-quant-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(format!("{name}.safetensors"));
    write_safetensors(&path, tensors).unwrap();
    Checkpoint::open(&path).unwrap()
}

/// `W` as f32 `[N, K]`, read back by multiplying the identity: `I_K · Wᵀ = Wᵀ`.
fn dense(w: &QuantizedMatrix<CpuBackend>) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    let mut eye = vec![0f32; k * k];
    (0..k).for_each(|i| eye[i * k + i] = 1.0);
    let x = Tensor::from_f32(&CpuBackend::default(), [k, k], &eye, DType::F32).unwrap();
    let wt = x.linear_quantized(w, None).unwrap().to_f32_vec().unwrap();
    (0..n * k).map(|i| wt[(i % k) * n + i / k]).collect()
}

/// One layer of each format, with the values each code stands for written out by hand.
fn hand_built() -> Vec<Stored> {
    // int8, block 4 (K = 8, S = 2).
    let i8_codes: Vec<u8> =
        [1i8, -2, 3, 127, 1, 1, 1, 1, -127, 0, 5, -5, 0, 0, 0, 0].iter().map(|&c| c as u8).collect();
    // int4, K = 8, block 8: nibbles 0..=7 then 8..=15 (element 2j in the low nibble).
    let i4_codes = vec![0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe];
    // fp8: 1.0 (0x38), −2.0 (0xc0), 448 (0x7e), 2⁻⁹ (0x01), 0; row 2 the same.
    let f8_codes = vec![0x38, 0xc0, 0x7e, 0x01, 0x00, 0x38, 0xc0, 0x7e, 0x01, 0x00];
    vec![
        t("a.weight", StoredDType::I8, &[2, 8], i8_codes),
        t("a.weight_scale", DType::F16, &[2, 2], f16s(&[0.5, 2.0, -1.0, 0.25])),
        t("b.weight", StoredDType::U8, &[2, 4], i4_codes),
        t("b.weight_scale", DType::F16, &[2, 1], f16s(&[0.5, -0.25])),
        t("c.weight", StoredDType::F8E4M3, &[2, 5], f8_codes),
        t(
            "c.weight_scale",
            DType::F32,
            &[2, 1],
            [2.0f32, 0.5].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        t("c.input_scale", DType::F32, &[], 1.0f32.to_le_bytes().to_vec()),
        t("d.weight", DType::F32, &[1, 2], [3.0f32, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect()),
    ]
}

#[test]
fn each_format_reads_back_to_the_values_its_codes_stand_for() {
    let be = CpuBackend::default();
    let ck = write("formats", &hand_built());
    let specs = [
        ParamSpec::new("a.weight", [2, 8]),
        ParamSpec::new("b.weight", [2, 8]),
        ParamSpec::new("c.weight", [2, 5]),
        ParamSpec::new("d.weight", [1, 2]),
    ];
    ck.check_exact("hand-built", &specs, &[]).unwrap();

    let a = load_quantized(&ck, &be, "a.weight").unwrap().unwrap();
    assert_eq!((a.format(), a.rows(), a.cols()), (QuantFormat::Int8 { block: 4 }, 2, 8));
    let want_a = [0.5, -1.0, 1.5, 63.5, 2.0, 2.0, 2.0, 2.0, 127.0, 0.0, -5.0, 5.0, 0.0, 0.0, 0.0, 0.0];
    assert_eq!(dense(&a), want_a);

    let b = load_quantized(&ck, &be, "b.weight").unwrap().unwrap();
    assert_eq!((b.format(), b.cols()), (QuantFormat::Int4 { block: 8 }, 8));
    let want_b: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) * if i < 8 { 0.5 } else { -0.25 }).collect();
    assert_eq!(dense(&b), want_b);

    let c = load_quantized(&ck, &be, "c.weight").unwrap().unwrap();
    assert_eq!((c.format(), c.cols()), (QuantFormat::Fp8E4M3, 5));
    let tiny = 2f32.powi(-9);
    assert_eq!(dense(&c), [2.0, -4.0, 896.0, 2.0 * tiny, 0.0, 0.5, -1.0, 224.0, 0.5 * tiny, 0.0]);

    assert!(load_quantized(&ck, &be, "d.weight").unwrap().is_none(), "a float weight is dense");
    assert!(load_quantized(&ck, &be, "e.weight").unwrap().is_none(), "an absent weight is not quantized");
}

#[test]
fn fp8_scales_may_be_per_row_or_per_tensor() {
    let be = CpuBackend::default();
    let codes = vec![0x38u8; 6]; // 1.0 everywhere, [3, 2]
    for (shape, scales, want) in [
        (&[3][..], vec![1.0f32, 2.0, 3.0], [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]),
        (&[][..], vec![4.0], [4.0; 6]),
        (&[1][..], vec![0.5], [0.5; 6]),
    ] {
        let bytes = DType::BF16.encode_f32(&scales);
        let ck = write(
            "fp8-scales",
            &[
                t("w.weight", StoredDType::F8E4M3, &[3, 2], codes.clone()),
                t("w.weight_scale", DType::BF16, shape, bytes),
            ],
        );
        let w = load_quantized(&ck, &be, "w.weight").unwrap().unwrap();
        assert_eq!(dense(&w), want, "scale shape {shape:?}");
    }
}

#[test]
fn broken_quantized_weights_are_named_errors() {
    let be = CpuBackend::default();
    let all = hand_built();
    let without = |skip: &str| all.iter().filter(|s| s.0 != skip).cloned().collect::<Vec<_>>();
    let err = |tensors: &[Stored], name: &str| {
        let ck = write("broken", tensors);
        load_quantized(&ck, &be, name).err().unwrap().to_string()
    };
    let e = err(&without("a.weight_scale"), "a.weight");
    assert!(e.contains("a.weight") && e.contains("a.weight_scale is missing"), "{e}");
    let mut bad = without("a.weight_scale");
    bad.push(t("a.weight_scale", DType::F16, &[2, 3], f16s(&[1.0; 6])));
    let e = err(&bad, "a.weight");
    assert!(e.contains("S dividing K = 8"), "{e}");
    let mut bad = without("b.weight_scale");
    bad.push(t("b.weight_scale", StoredDType::I8, &[2, 1], vec![1, 1]));
    let e = err(&bad, "b.weight");
    assert!(e.contains("not a float tensor"), "{e}");
    let mut bad = without("c.weight_scale");
    bad.push(t("c.weight_scale", DType::F32, &[2, 2], vec![0; 16]));
    let e = err(&bad, "c.weight");
    assert!(e.contains("one scale per output row"), "{e}");
    let mut bad = without("c.weight_scale");
    bad.push(t(
        "c.weight_scale",
        DType::F32,
        &[2],
        [1.0f32, f32::NAN].iter().flat_map(|v| v.to_le_bytes()).collect(),
    ));
    let e = err(&bad, "c.weight");
    assert!(e.contains("non-finite scale at index 1"), "{e}");
    // An int4 tensor whose K is not a whole number of blocks of 8 codes (a word).
    let e = err(
        &[
            t("q.weight", StoredDType::U8, &[1, 2], vec![0, 0]),
            t("q.weight_scale", DType::F16, &[1, 1], f16s(&[1.0])),
        ],
        "q.weight",
    );
    assert!(e.contains("multiple of 8"), "{e}");

    // Codes are never read as floats, and an orphan scale is an unexpected tensor.
    let ck = write("codes-as-floats", &all);
    let e = ck.load(&be, "a.weight", DType::F32).err().unwrap().to_string();
    assert!(e.contains("holds I8 codes of a quantized weight"), "{e}");
    assert!(ck.read_f32("b.weight").is_err());
    let ck = write(
        "orphan",
        &[t("d.weight", DType::F32, &[1, 2], vec![0; 8]), t("d.weight_scale", DType::F32, &[1], vec![0; 4])],
    );
    let e = ck.check_exact("orphan", &[ParamSpec::new("d.weight", [1, 2])], &[]).unwrap_err().to_string();
    assert!(e.contains("unexpected tensor d.weight_scale"), "{e}");
}

#[test]
fn quantized_rows_written_and_read_back_agree_with_the_codec() {
    let be = CpuBackend::default();
    let (n, k) = (5, 64);
    let w = joyrt_core::Rng::new(1).normal_vec(n * k, 0.02);
    for f in [QuantFormat::Int8 { block: 32 }, QuantFormat::Int4 { block: 32 }, QuantFormat::Fp8E4M3] {
        let q = codec::quantize_rows(f, k, &w).unwrap();
        let code_dtype = match f {
            QuantFormat::Int8 { .. } => StoredDType::I8,
            QuantFormat::Int4 { .. } => StoredDType::U8,
            QuantFormat::Fp8E4M3 => StoredDType::F8E4M3,
        };
        let sdt = codec::stored_scale_dtype(f);
        let s = f.scales_per_row(k);
        let ck = write(
            "roundtrip",
            &[
                t("l.weight", code_dtype, &[n, f.row_bytes(k)], q.codes.clone()),
                t("l.weight_scale", sdt, &[n, s], sdt.encode_f32(&q.scales)),
            ],
        );
        let m = load_quantized(&ck, &be, "l.weight").unwrap().unwrap();
        assert_eq!(m.format(), f);
        assert_eq!(dense(&m), codec::dequantize_rows(f, k, &q.codes, &q.scales), "{f}");
    }
}
