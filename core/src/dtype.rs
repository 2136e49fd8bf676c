//! Storage dtypes and their host-side encodings.
//!
//! Every dtype is stored little-endian. Compute is always f32 whatever the storage dtype
//! (the project's numerics rule), so the host helpers here convert to and from f32.

use half::{bf16, f16};
use std::fmt;

/// A tensor's storage type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    BF16,
    F16,
}

impl DType {
    pub const ALL: [DType; 3] = [DType::F32, DType::BF16, DType::F16];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
        }
    }

    /// The name used on the command line and in safetensors headers (`F32`, `BF16`, `F16`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        }
    }

    /// Parses `f32|bf16|f16` (case-insensitive; `float32`/`bfloat16`/`float16` too).
    pub fn parse(s: &str) -> Option<DType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Some(DType::F32),
            "bf16" | "bfloat16" => Some(DType::BF16),
            "f16" | "float16" | "fp16" | "half" => Some(DType::F16),
            _ => None,
        }
    }

    /// Decodes little-endian elements of this dtype into f32. `bytes.len()` must be a multiple of
    /// [`DType::size`] (checked by the callers that build tensors).
    pub fn decode_f32(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            DType::F32 => {
                bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
        }
    }

    /// Encodes f32 values into little-endian elements of this dtype (round to nearest even).
    pub fn encode_f32(self, values: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(values.len() * self.size());
        match self {
            DType::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            DType::BF16 => {
                values.iter().for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_bits().to_le_bytes()))
            }
            DType::F16 => {
                values.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes()))
            }
        }
        out
    }

    /// Rounds an f32 value to the nearest value representable in this dtype.
    pub fn round_f32(self, v: f32) -> f32 {
        match self {
            DType::F32 => v,
            DType::BF16 => bf16::from_f32(v).to_f32(),
            DType::F16 => f16::from_f32(v).to_f32(),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The element type of a stored (safetensors) tensor: a float [`DType`], or one of the code types
/// quantized weights are stored in (`crate::quant`), which are never a tensor's dtype on a
/// backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoredDType {
    Float(DType),
    /// Signed bytes: int8 codes.
    I8,
    /// Unsigned bytes: int4 codes, two per byte.
    U8,
    /// FP8 E4M3 (`e4m3fn`) codes.
    F8E4M3,
}

impl StoredDType {
    /// From a safetensors header's dtype tag.
    pub fn from_tag(tag: &str) -> Option<StoredDType> {
        match tag {
            "F32" => Some(DType::F32.into()),
            "BF16" => Some(DType::BF16.into()),
            "F16" => Some(DType::F16.into()),
            "I8" => Some(StoredDType::I8),
            "U8" => Some(StoredDType::U8),
            "F8_E4M3" => Some(StoredDType::F8E4M3),
            _ => None,
        }
    }

    /// The safetensors header's dtype tag.
    pub fn tag(self) -> &'static str {
        match self {
            StoredDType::Float(DType::F32) => "F32",
            StoredDType::Float(DType::BF16) => "BF16",
            StoredDType::Float(DType::F16) => "F16",
            StoredDType::I8 => "I8",
            StoredDType::U8 => "U8",
            StoredDType::F8E4M3 => "F8_E4M3",
        }
    }

    /// A short lower-case name for messages (`bf16`, `i8`, `u8`, `f8_e4m3`).
    pub fn name(self) -> &'static str {
        match self {
            StoredDType::Float(d) => d.name(),
            StoredDType::I8 => "i8",
            StoredDType::U8 => "u8",
            StoredDType::F8E4M3 => "f8_e4m3",
        }
    }

    /// Bytes per stored element.
    pub fn size(self) -> usize {
        match self {
            StoredDType::Float(d) => d.size(),
            StoredDType::I8 | StoredDType::U8 | StoredDType::F8E4M3 => 1,
        }
    }

    /// The float dtype, or `None` for a code type.
    pub fn float(self) -> Option<DType> {
        match self {
            StoredDType::Float(d) => Some(d),
            _ => None,
        }
    }
}

impl From<DType> for StoredDType {
    fn from(d: DType) -> StoredDType {
        StoredDType::Float(d)
    }
}

impl fmt::Display for StoredDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip_per_dtype() {
        let v = [0.0f32, 1.0, -2.5, 3.140625, 65504.0, -1e-3];
        for dt in DType::ALL {
            let back = dt.decode_f32(&dt.encode_f32(&v));
            for (a, b) in v.iter().zip(&back) {
                assert_eq!(dt.round_f32(*a), *b, "{dt}");
            }
        }
    }

    #[test]
    fn bf16_is_a_truncated_f32_exponent() {
        // 1 + 2^-8 is not representable in bf16 (7 mantissa bits): it rounds to 1 (ties to even).
        assert_eq!(DType::BF16.round_f32(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(DType::BF16.round_f32(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
    }

    #[test]
    fn stored_tags_round_trip() {
        for tag in ["F32", "BF16", "F16", "I8", "U8", "F8_E4M3"] {
            assert_eq!(StoredDType::from_tag(tag).unwrap().tag(), tag);
        }
        assert_eq!(StoredDType::from_tag("I64"), None);
        assert_eq!(StoredDType::I8.float(), None);
        assert_eq!(StoredDType::from(DType::BF16).size(), 2);
    }

    #[test]
    fn parse_names() {
        assert_eq!(DType::parse("BF16"), Some(DType::BF16));
        assert_eq!(DType::parse("float16"), Some(DType::F16));
        assert_eq!(DType::parse("i8"), None);
    }
}
