//! The CPU `linear_quantized` against a plainly written f64 implementation that decodes the
//! stored codes itself (from the byte layout of docs/quantized-formats.md, not through
//! `joyrt_core::quant::codec`), on random codes and scales, odd shapes, at every activation dtype.
//! (Beside `ops.rs`, which holds the dense ops' checks, to keep each file short.)

use joyrt_core::{DType, QuantFormat, QuantizedMatrix, Rng, Tensor};
use joyrt_cpu::CpuBackend;

/// FP8 E4M3 (`e4m3fn`) in f64: sign, exponent bias 7 (0 = subnormal), 3 mantissa bits.
fn e4m3_64(c: u8) -> f64 {
    let s = if c & 0x80 != 0 { -1.0 } else { 1.0 };
    let (e, m) = (((c >> 3) & 15) as i32, (c & 7) as f64);
    s * if e == 0 { m / 8.0 * 2f64.powi(-6) } else { (1.0 + m / 8.0) * 2f64.powi(e - 7) }
}

/// The value of code `i` of a stored row of `format`.
fn code64(format: QuantFormat, row: &[u8], i: usize) -> f64 {
    match format {
        QuantFormat::Int8 { .. } => row[i] as i8 as f64,
        QuantFormat::Int4 { .. } => ((row[i / 2] >> (4 * (i % 2))) & 15) as f64 - 8.0,
        QuantFormat::Fp8E4M3 => e4m3_64(row[i]),
    }
}

/// Random stored codes for `[n, k]` (no FP8 NaN codes) and scales `[n, S]`.
fn random_stored(rng: &mut Rng, f: QuantFormat, n: usize, k: usize) -> (Vec<u8>, Vec<f32>) {
    let codes: Vec<u8> = (0..n * f.row_bytes(k))
        .map(|_| {
            let b = rng.below(256) as u8;
            if f == QuantFormat::Fp8E4M3 && b & 0x7f == 0x7f {
                b & 0xfe
            } else {
                b
            }
        })
        .collect();
    let span = if f == QuantFormat::Fp8E4M3 { 1.0 / 448.0 } else { 1.0 / 64.0 };
    // Scales of both signs: int4 scales are negative when the block's largest value is positive.
    let scales = rng.uniform_vec(n * f.scales_per_row(k), -span, span);
    (codes, scales)
}

#[test]
fn linear_quantized_matches_f64_in_every_format_and_dtype() {
    let b = CpuBackend::default();
    let mut rng = Rng::new(7);
    let formats = [
        QuantFormat::Int8 { block: 32 },
        QuantFormat::Int8 { block: 8 },
        QuantFormat::Int4 { block: 32 },
        QuantFormat::Int4 { block: 16 },
        QuantFormat::Fp8E4M3,
    ];
    // (m, k, n): k = 96 makes three int8/int4 blocks; fp8 also gets k = 13 (a padded last word).
    let shapes = [(1, 32, 1), (7, 96, 5), (33, 64, 70), (3, 13, 9)];
    // Both ways the CPU runs it: the blocked kernel and the whole-weight dequantizing reference.
    for whole in [false, true] {
        b.set_dequantize_whole(whole);
        for f in formats {
            for &(m, k, n) in &shapes {
                if f.check_cols(k).is_err() {
                    continue;
                }
                for dt in DType::ALL {
                    let (codes, scales) = random_stored(&mut rng, f, n, k);
                    let w = QuantizedMatrix::upload(&b, f, n, k, &codes, &scales).unwrap();
                    let xv: Vec<f32> =
                        rng.uniform_vec(m * k, -1.0, 1.0).into_iter().map(|v| dt.round_f32(v)).collect();
                    let bv = rng.uniform_vec(n, -1.0, 1.0);
                    let x = Tensor::from_f32(&b, [m, k], &xv, dt).unwrap();
                    let bias = Tensor::from_f32(&b, [n], &bv, DType::F32).unwrap();
                    let got = x.linear_quantized(&w, Some(&bias)).unwrap();
                    assert_eq!((got.dims(), got.dtype()), (&[m, n][..], dt));
                    let got = got.to_f32_vec().unwrap();
                    let (rb, s, blk) = (f.row_bytes(k), f.scales_per_row(k), f.block(k));
                    for i in 0..m {
                        for j in 0..n {
                            let row = &codes[j * rb..(j + 1) * rb];
                            let want: f64 = (0..k)
                                .map(|l| {
                                    xv[i * k + l] as f64 * code64(f, row, l) * scales[j * s + l / blk] as f64
                                })
                                .sum::<f64>()
                                + bv[j] as f64;
                            let g = got[i * n + j] as f64;
                            // Rounded once to the output dtype, plus f32 accumulation noise.
                            let rel = match dt {
                                DType::F32 => 2e-5,
                                DType::BF16 => 4.0 / 512.0,
                                DType::F16 => 1.0 / 1024.0,
                            };
                            assert!(
                                (g - want).abs() <= 2e-5 + rel * want.abs(),
                                "{f} {dt} {m}x{k}x{n} [{i}, {j}] (whole {whole}): got {g}, want {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn linear_quantized_refuses_a_mismatched_input_or_bias() {
    let b = CpuBackend::default();
    let f = QuantFormat::Int8 { block: 32 };
    let w = QuantizedMatrix::upload(&b, f, 4, 64, &[0u8; 256], &[1.0; 8]).unwrap();
    let x = Tensor::zeros(&b, [2, 32], DType::F32).unwrap();
    let e = x.linear_quantized(&w, None).unwrap_err().to_string();
    assert!(e.contains("linear_quantized") && e.contains("[4, 64]"), "{e}");
    let x = Tensor::zeros(&b, [2, 64], DType::F32).unwrap();
    let bias = Tensor::zeros(&b, [3], DType::F32).unwrap();
    let e = x.linear_quantized(&w, Some(&bias)).unwrap_err().to_string();
    assert!(e.contains("bias"), "{e}");
    let e = QuantizedMatrix::upload(&b, f, 4, 64, &[0u8; 255], &[1.0; 8]).err().unwrap().to_string();
    assert!(e.contains("255 code bytes"), "{e}");
    let e = QuantizedMatrix::upload(&b, f, 4, 64, &[0u8; 256], &[1.0; 4]).err().unwrap().to_string();
    assert!(e.contains("4 scales"), "{e}");
}
