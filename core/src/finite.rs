//! Finding NaN and Inf: in host f32 values (the latents after each denoising step, the decoded
//! image) and in stored weights, by bit pattern, without decoding or copying a tensor.

use crate::weights::Checkpoint;
use crate::{DType, Error, Result, StoredDType};

/// `Err(NonFinite)` naming `what` when `values` holds a NaN or an Inf.
pub fn check_finite(what: impl FnOnce() -> String, values: &[f32]) -> Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::NonFinite { what: what() })
    }
}

/// How many of the little-endian `dtype` values in `bytes` are NaN or Inf: those whose exponent
/// bits are all ones (for FP8 E4M3, which has no infinities, the NaN codes `0x7f`/`0xff`;
/// integer codes are always finite).
pub fn count_non_finite(dtype: impl Into<StoredDType>, bytes: &[u8]) -> usize {
    let dtype = match dtype.into() {
        StoredDType::Float(d) => d,
        StoredDType::F8E4M3 => return bytes.iter().filter(|&&b| b & 0x7f == 0x7f).count(),
        StoredDType::I8 | StoredDType::U8 => return 0,
    };
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .filter(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7f80_0000 == 0x7f80_0000)
            .count(),
        DType::BF16 => {
            bytes.chunks_exact(2).filter(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7f80 == 0x7f80).count()
        }
        DType::F16 => {
            bytes.chunks_exact(2).filter(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 == 0x7c00).count()
        }
    }
}

/// Every tensor of `ck` holding NaN or Inf, as `name: N of M values`, in name order. Tensors are
/// scanned one at a time from the mapping, so a checkpoint larger than memory can be checked.
pub fn non_finite_tensors(ck: &Checkpoint) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in ck.names() {
        let (info, bytes) = ck.raw(name)?;
        let bad = count_non_finite(info.dtype, &bytes);
        if bad > 0 {
            out.push(format!("{name}: {bad} of {} values are NaN or Inf", info.shape.numel()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_inf_are_counted_in_every_dtype() {
        let vals = [1.0, f32::NAN, -0.0, f32::INFINITY, f32::NEG_INFINITY, 65504.0, -1e-30];
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            assert_eq!(count_non_finite(dtype, &dtype.encode_f32(&vals)), 3, "{dtype}");
        }
        assert_eq!(count_non_finite(StoredDType::F8E4M3, &[0x7f, 0xff, 0x7e, 0x00]), 2);
        assert_eq!(count_non_finite(StoredDType::I8, &[0x7f, 0xff]), 0);
        assert!(check_finite(|| "x".into(), &[0.0, 1e30]).is_ok());
        let e = check_finite(|| "denoising step 2".into(), &[0.0, f32::NAN]).unwrap_err();
        assert!(e.to_string().contains("denoising step 2"), "{e}");
        assert!(e.to_string().contains("joyrt info --check-weights"), "{e}");
    }
}
