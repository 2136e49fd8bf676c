//! The host side of the quantized formats: quantizing f32 rows into codes and scales, decoding
//! codes back to f32, FP8 E4M3 conversion, and packing stored rows into the device's `u32` words.
//! The one definition of each format's arithmetic (the CPU backend decodes through it too).

use super::QuantFormat;
use crate::{DType, Error, Result};

/// Largest FP8 E4M3 (`e4m3fn`) magnitude.
pub const E4M3_MAX: f32 = 448.0;

/// The value of an FP8 E4M3 (`e4m3fn`) code: sign, 4 exponent bits (bias 7), 3 mantissa bits;
/// exponent 0 is subnormal (`m/8 · 2⁻⁶`), `0x7f`/`0xff` are NaN, there are no infinities.
pub fn e4m3_to_f32(code: u8) -> f32 {
    let sign = if code & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = ((code >> 3) & 0xf) as i32;
    let m = (code & 7) as f32;
    let mag = match e {
        0 => m * (2f32).powi(-9),
        15 if m == 7.0 => return f32::NAN,
        _ => (8.0 + m) * (2f32).powi(e - 10),
    };
    sign * mag
}

/// The nearest FP8 E4M3 code to `v` (ties to even mantissa), saturating at ±448; NaN → `0x7f`.
pub fn f32_to_e4m3(v: f32) -> u8 {
    if v.is_nan() {
        return 0x7f;
    }
    let sign = if v.is_sign_negative() { 0x80 } else { 0 };
    let a = v.abs().min(E4M3_MAX);
    if a < (2f32).powi(-6) {
        // Subnormal: multiples of 2⁻⁹; 8·2⁻⁹ rounds up into the first normal code 0x08.
        return sign | (a * 512.0).round_ties_even() as u8;
    }
    let bits = a.to_bits();
    let mut exp = ((bits >> 23) as i32) - 127;
    let frac = bits & 0x7f_ffff;
    let (mut mant, rest) = (frac >> 20, frac & 0xf_ffff);
    if rest > 0x8_0000 || (rest == 0x8_0000 && mant & 1 == 1) {
        mant += 1;
    }
    if mant == 8 {
        mant = 0;
        exp += 1;
    }
    sign | (((exp + 7) as u8) << 3) | mant as u8
}

/// The decoded (unscaled) value of code `c` of `format` as stored in one byte or nibble.
fn decode_code(format: QuantFormat, c: u8) -> f32 {
    match format {
        QuantFormat::Int8 { .. } => c as i8 as f32,
        QuantFormat::Int4 { .. } => (c as i32 - 8) as f32,
        QuantFormat::Fp8E4M3 => e4m3_to_f32(c),
    }
}

/// The dtype the scales are stored in on disk by `joyrt quantize`: f16 for int8/int4 (one per
/// block, so their size counts), f32 for fp8 (one per row, as FP8 checkpoints store them).
pub fn stored_scale_dtype(format: QuantFormat) -> DType {
    match format {
        QuantFormat::Int8 { .. } | QuantFormat::Int4 { .. } => DType::F16,
        QuantFormat::Fp8E4M3 => DType::F32,
    }
}

/// Quantized rows: the stored code bytes and the scales (already rounded to the stored scale
/// dtype, so `codes` and `scales` decode to exactly what a reader of the files gets).
#[derive(Debug)]
pub struct QuantizedRows {
    pub codes: Vec<u8>,
    pub scales: Vec<f32>,
}

/// Quantizes `values`, whole rows of `k` elements, row-major. The scale of each block is
/// rounded to its stored dtype first and the codes are computed against the rounded scale.
/// `Err` when `k` does not fit the format, the values hold NaN/Inf, or a scale overflows f16.
pub fn quantize_rows(format: QuantFormat, k: usize, values: &[f32]) -> Result<QuantizedRows> {
    format.check_cols(k).map_err(|m| Error::shape("quantize", m))?;
    if !values.len().is_multiple_of(k) {
        return Err(Error::shape("quantize", format!("{} values are not whole rows of {k}", values.len())));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::Input(format!("cannot quantize: element {i} is {}", values[i])));
    }
    let rows = values.len() / k;
    let block = format.block(k);
    let sdt = stored_scale_dtype(format);
    let mut out = QuantizedRows {
        codes: Vec::with_capacity(rows * format.row_bytes(k)),
        scales: Vec::with_capacity(rows * format.scales_per_row(k)),
    };
    let mut nibble: Option<u8> = None;
    for blk in values.chunks_exact(block) {
        let scale = sdt.round_f32(match format {
            QuantFormat::Int8 { .. } => blk.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0,
            QuantFormat::Int4 { .. } => {
                let m = blk.iter().fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
                m / -8.0
            }
            QuantFormat::Fp8E4M3 => blk.iter().fold(0f32, |a, v| a.max(v.abs())) / E4M3_MAX,
        });
        if !scale.is_finite() {
            return Err(Error::Input(format!(
                "cannot quantize to {}: a block's scale overflows {sdt} (weights too large)",
                format.name()
            )));
        }
        out.scales.push(scale);
        for &v in blk {
            let r = if scale == 0.0 { 0.0 } else { v / scale };
            match format {
                QuantFormat::Int8 { .. } => {
                    out.codes.push(r.round_ties_even().clamp(-127.0, 127.0) as i8 as u8)
                }
                QuantFormat::Int4 { .. } => {
                    let u = (r.round_ties_even().clamp(-8.0, 7.0) as i32 + 8) as u8;
                    match nibble.take() {
                        None => nibble = Some(u),
                        Some(lo) => out.codes.push(lo | (u << 4)),
                    }
                }
                QuantFormat::Fp8E4M3 => out.codes.push(f32_to_e4m3(r)),
            }
        }
    }
    Ok(out)
}

/// Decodes stored rows back to f32: `w = decode(q) · scale` (one f32 multiply), row-major
/// `[codes.len() / row_bytes, k]`. Sizes must match (as [`quantize_rows`] makes them).
pub fn dequantize_rows(format: QuantFormat, k: usize, codes: &[u8], scales: &[f32]) -> Vec<f32> {
    let (rb, s) = (format.row_bytes(k), format.scales_per_row(k));
    let block = format.block(k);
    let mut out = Vec::with_capacity(codes.len() / rb.max(1) * k);
    for (row, sc) in codes.chunks_exact(rb).zip(scales.chunks_exact(s)) {
        for i in 0..k {
            let c = match format {
                QuantFormat::Int4 { .. } => (row[i / 2] >> (4 * (i % 2))) & 0xf,
                _ => row[i],
            };
            out.push(decode_code(format, c) * sc[i / block]);
        }
    }
    out
}

/// Decodes one device row (`format.row_words(k)` words) into `out` (`k` values) with the row's
/// `S` scales: the CPU backend's `linear_quantized` inner step.
pub fn dequantize_row_words(format: QuantFormat, k: usize, words: &[u32], scales: &[f32], out: &mut [f32]) {
    let (bits, per) = (format.bits(), format.codes_per_word());
    let block = format.block(k);
    let mask = (1u32 << bits) - 1;
    for (i, o) in out[..k].iter_mut().enumerate() {
        let c = ((words[i / per] >> ((i % per) * bits)) & mask) as u8;
        *o = decode_code(format, c) * scales[i / block];
    }
}

/// Packs stored rows (`rows · format.row_bytes(k)` bytes) into device words: each row's bytes
/// read as little-endian `u32`s, its last word zero-padded.
pub fn pack_words(format: QuantFormat, rows: usize, k: usize, codes: &[u8]) -> Vec<u32> {
    let (rb, rw) = (format.row_bytes(k), format.row_words(k));
    let mut out = Vec::with_capacity(rows * rw);
    for row in codes.chunks_exact(rb.max(1)).take(rows) {
        let mut chunks = row.chunks_exact(4);
        out.extend(chunks.by_ref().map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut w = [0u8; 4];
            w[..tail.len()].copy_from_slice(tail);
            out.push(u32::from_le_bytes(w));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let n: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
        (d / n).sqrt()
    }

    fn sample(n: usize, seed: u64) -> Vec<f32> {
        crate::Rng::new(seed).normal_vec(n, 0.02)
    }

    #[test]
    fn e4m3_codes_round_trip_and_match_known_values() {
        for c in 0u8..=255 {
            let v = e4m3_to_f32(c);
            if v.is_nan() {
                assert!(c & 0x7f == 0x7f, "{c:#x}");
            } else if v == 0.0 {
                assert_eq!(c & 0x7f, 0);
            } else {
                assert_eq!(f32_to_e4m3(v), c, "{c:#x} = {v}");
            }
        }
        assert_eq!(e4m3_to_f32(0x7e), 448.0);
        assert_eq!(e4m3_to_f32(0x38), 1.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(e4m3_to_f32(0xc0), -2.0);
        assert_eq!(f32_to_e4m3(1e6), 0x7e, "saturates");
        assert_eq!(f32_to_e4m3(1.0 + 1.0 / 16.0), 0x38, "tie goes to the even mantissa 1.0");
        assert_eq!(f32_to_e4m3(1.0 + 3.0 / 16.0), 0x3a, "tie goes to the even mantissa 1.25");
        assert_eq!(f32_to_e4m3(2f32.powi(-10)), 0x00, "half the smallest subnormal ties to 0");
    }

    #[test]
    fn quantize_then_dequantize_is_within_the_format_error() {
        let k = 64;
        let w = sample(16 * k, 3);
        // Bounds: half a step per element relative to the block's range; in rel-L2 on normal
        // values this is ≈ 0.5% for int8, ≈ 9% for int4 and ≈ 2.5% for fp8's 3-bit mantissa.
        for (f, max_err) in [
            (QuantFormat::Int8 { block: 32 }, 0.01),
            (QuantFormat::Int4 { block: 32 }, 0.12),
            (QuantFormat::Fp8E4M3, 0.05),
        ] {
            let q = quantize_rows(f, k, &w).unwrap();
            assert_eq!(q.codes.len(), 16 * f.row_bytes(k));
            assert_eq!(q.scales.len(), 16 * f.scales_per_row(k));
            let back = dequantize_rows(f, k, &q.codes, &q.scales);
            let e = rel_l2(&w, &back);
            assert!(e < max_err && e > 0.0, "{f}: rel L2 {e}");
            // Re-quantizing the dequantized values reproduces the codes (the grid is stable).
            let q2 = quantize_rows(f, k, &back).unwrap();
            assert_eq!(dequantize_rows(f, k, &q2.codes, &q2.scales), back, "{f}");
        }
    }

    #[test]
    fn int_codes_follow_the_documented_scales() {
        // One int8 block: max |w| = 1.27 → scale 0.01 (as f16), codes round(w / scale).
        let mut w = vec![0f32; 32];
        w[0] = 1.27;
        w[1] = -0.5;
        w[2] = 0.004;
        let q = quantize_rows(QuantFormat::Int8 { block: 32 }, 32, &w).unwrap();
        let s = DType::F16.round_f32(0.01);
        assert_eq!(q.scales, [s]);
        assert_eq!(&q.codes[..3], &[(1.27f32 / s).round() as i8 as u8, (-0.5f32 / s).round() as i8 as u8, 0]);
        // int4: the largest magnitude is −0.8 → scale 0.1, it becomes −8 (nibble 0); 0.7 → 7 → 15.
        let mut w = vec![0f32; 32];
        w[0] = -0.8;
        w[1] = 0.7;
        let q = quantize_rows(QuantFormat::Int4 { block: 32 }, 32, &w).unwrap();
        assert_eq!(q.scales, [DType::F16.round_f32(0.1)]);
        assert_eq!(q.codes[0], 15 << 4, "element 0 (nibble 0) in the low nibble");
        assert_eq!(q.codes[1], 0x88, "zeros are nibble 8");
    }

    #[test]
    fn words_hold_the_stored_bytes_little_endian_with_padded_rows() {
        let codes = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(pack_words(QuantFormat::Fp8E4M3, 2, 5, &codes), [0x0403_0201, 0x05, 0x0908_0706, 0x0a]);
        let f = QuantFormat::Int4 { block: 8 };
        let k = 8;
        let words = pack_words(f, 1, k, &[0x10, 0x32, 0x54, 0x76]);
        assert_eq!(words, [0x7654_3210]);
        let mut out = [0f32; 8];
        dequantize_row_words(f, k, &words, &[2.0], &mut out);
        assert_eq!(out, [-16.0, -14.0, -12.0, -10.0, -8.0, -6.0, -4.0, -2.0]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let f = QuantFormat::Int8 { block: 32 };
        assert!(quantize_rows(f, 48, &[0.0; 48]).is_err());
        assert!(quantize_rows(f, 32, &[0.0; 33]).is_err());
        let mut w = vec![0.0; 32];
        w[5] = f32::NAN;
        assert!(quantize_rows(f, 32, &w).unwrap_err().to_string().contains("element 5"));
        w[5] = 1e9;
        assert!(quantize_rows(f, 32, &w).unwrap_err().to_string().contains("overflows f16"));
    }
}
