//! Quantized weight matrices (weight-only: activations stay f32/bf16/f16): the formats, the
//! device layout a `linear_quantized` kernel reads, and the host-side codec.
//!
//! # Formats
//!
//! A quantized matrix is the weight `W [N, K]` of a linear layer (PyTorch layout: row `n` holds
//! the `K` input weights of output `n`). Each element is a small code `q`; its value is
//! `w[n, k] = decode(q[n, k]) · scale[n, k / B]` computed as one f32 multiply, where `B` is the
//! block length along K (the whole row for fp8):
//!
//! | format | code | `decode(q)` | block `B` | scales per row `S` |
//! |---|---|---|---|---|
//! | `int8` | 8-bit two's complement, `−127..=127` | `q` | 32 (K % B = 0) | `K / B` |
//! | `int4` | 4-bit unsigned nibble `u`, `0..=15` | `u − 8` (`−8..=7`) | 32 (K % B = 0) | `K / B` |
//! | `fp8` | 8-bit OCP FP8 E4M3 (`e4m3fn`: bias 7, no infinities, `0x7f`/`0xff` NaN, max 448) | its value | K | 1 |
//!
//! int8 is symmetric (`scale = max|w|/127` per block); int4 is symmetric with the full signed
//! range (`scale = m / −8` where `m` is the block's element of largest magnitude, so the scale may
//! be negative), the layout llama.cpp calls Q4_0. The int4 block length and the choice of a
//! symmetric scale without a minimum were measured (docs/quantized-formats.md).
//!
//! # Device layout (what a kernel reads)
//!
//! - **data**: `N · W` little-endian `u32` words, `W = ⌈K · bits / 32⌉` words per row (bits = 8 for
//!   int8 and fp8, 4 for int4); row `n` starts at word `n · W`. Element `k` of row `n` is in word
//!   `n · W + k / P` (`P` = 32 / bits = 4 or 8 codes per word) at bit offset `(k % P) · bits`:
//!   element 0 of a word is its lowest byte (or lowest nibble). Codes past `K` in a row's last
//!   word are zero. For int8 and int4, `K % B = 0` and `B % P = 0`, so rows never pad; fp8 rows
//!   pad when `K % 4 ≠ 0`. These are exactly the stored bytes of the safetensors tensors read as
//!   words, row by row.
//! - **scales**: an f32 tensor `[N, S]` (stored on disk as f16 for int8/int4, f32/bf16/f16 for
//!   fp8; widened exactly on upload). The scale of element `(n, k)` is `scales[n · S + k / B]`.
//!
//! The op is `y[m, n] = Σ_k x[m, k] · (decode(q[n, k]) · scale[n, k / B]) + bias[n]` with the
//! product `decode(q)·scale` rounded to f32 (dequantization is exact in f32 up to that one
//! rounding) and f32 accumulation, like `linear`.

pub mod codec;
pub mod policy;
mod stored;

pub use stored::{is_quantized_companion, load_quantized, logical_shape, read_quantized, StoredQuantized};

use crate::{Backend, DType, Error, Result, Tensor};
use std::sync::Arc;

/// How a quantized matrix's codes and scales are laid out (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    /// Symmetric 8-bit integers, one scale per `block` codes along K.
    Int8 { block: usize },
    /// Symmetric 4-bit integers (`nibble − 8`), one scale per `block` codes along K.
    Int4 { block: usize },
    /// FP8 E4M3 values with one scale per output row.
    Fp8E4M3,
}

impl QuantFormat {
    /// The default int8 block length along K.
    pub const INT8_BLOCK: usize = 32;
    /// The default int4 block length along K (measured: docs/quantized-formats.md).
    pub const INT4_BLOCK: usize = 32;

    /// `int8`, `int4` or `fp8` with the default blocks.
    pub fn parse(s: &str) -> Option<QuantFormat> {
        match s.to_ascii_lowercase().as_str() {
            "int8" | "i8" => Some(QuantFormat::Int8 { block: Self::INT8_BLOCK }),
            "int4" | "i4" => Some(QuantFormat::Int4 { block: Self::INT4_BLOCK }),
            "fp8" | "f8" | "f8_e4m3" | "fp8_e4m3" => Some(QuantFormat::Fp8E4M3),
            _ => None,
        }
    }

    /// The name on the command line and in configs and metadata: `int8`, `int4`, `fp8`.
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::Int8 { .. } => "int8",
            QuantFormat::Int4 { .. } => "int4",
            QuantFormat::Fp8E4M3 => "fp8",
        }
    }

    /// Bits per code.
    pub fn bits(self) -> usize {
        match self {
            QuantFormat::Int4 { .. } => 4,
            QuantFormat::Int8 { .. } | QuantFormat::Fp8E4M3 => 8,
        }
    }

    /// Codes per `u32` word.
    pub fn codes_per_word(self) -> usize {
        32 / self.bits()
    }

    /// The block length along K for a row of `k` codes.
    pub fn block(self, k: usize) -> usize {
        match self {
            QuantFormat::Int8 { block } | QuantFormat::Int4 { block } => block,
            QuantFormat::Fp8E4M3 => k,
        }
    }

    /// Scales per row `S` for rows of `k` codes.
    pub fn scales_per_row(self, k: usize) -> usize {
        match self {
            QuantFormat::Int8 { block } | QuantFormat::Int4 { block } => k / block.max(1),
            QuantFormat::Fp8E4M3 => 1,
        }
    }

    /// Device words per row `W = ⌈k·bits/32⌉`.
    pub fn row_words(self, k: usize) -> usize {
        (k * self.bits()).div_ceil(32)
    }

    /// Stored bytes per row on disk (`⌈k·bits/8⌉`, no padding).
    pub fn row_bytes(self, k: usize) -> usize {
        (k * self.bits()).div_ceil(8)
    }

    /// Whether rows of `k` codes fit this format: int8/int4 need `K % B = 0`, and `B` a whole
    /// number of words. `Err` says why not.
    pub fn check_cols(self, k: usize) -> std::result::Result<(), String> {
        match self {
            QuantFormat::Int8 { block } | QuantFormat::Int4 { block } => {
                if block == 0 || !block.is_multiple_of(self.codes_per_word()) {
                    Err(format!(
                        "{} block {block} is not a positive multiple of {}",
                        self.name(),
                        self.codes_per_word()
                    ))
                } else if k == 0 || !k.is_multiple_of(block) {
                    Err(format!(
                        "{} needs K to be a positive multiple of the block {block}; K = {k}",
                        self.name()
                    ))
                } else {
                    Ok(())
                }
            }
            QuantFormat::Fp8E4M3 if k == 0 => Err("fp8 needs K > 0".into()),
            QuantFormat::Fp8E4M3 => Ok(()),
        }
    }
}

impl std::fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuantFormat::Int8 { block } | QuantFormat::Int4 { block } => {
                write!(f, "{} (block {block})", self.name())
            }
            QuantFormat::Fp8E4M3 => f.write_str("fp8 e4m3 (per-row scale)"),
        }
    }
}

/// A quantized weight matrix `[rows N, cols K]` on a backend, in the device layout of the module
/// docs: `data` holds `N · format.row_words(K)` words, `scales` is f32 `[N, S]`. Cloning is cheap.
#[derive(Clone)]
pub struct QuantizedMatrix<B: Backend> {
    format: QuantFormat,
    rows: usize,
    cols: usize,
    data: Arc<B::Buffer>,
    scales: Tensor<B>,
}

impl<B: Backend> QuantizedMatrix<B> {
    /// Uploads a matrix from its stored form: `codes` are the row-major stored bytes
    /// (`rows · format.row_bytes(cols)` bytes, as in the safetensors tensor), `scales` the
    /// `rows · S` scales widened to f32.
    pub fn upload(
        backend: &B,
        format: QuantFormat,
        rows: usize,
        cols: usize,
        codes: &[u8],
        scales: &[f32],
    ) -> Result<Self> {
        let bad = |msg: String| Error::shape("quantized upload", msg);
        format.check_cols(cols).map_err(bad)?;
        let want = rows * format.row_bytes(cols);
        if codes.len() != want {
            return Err(bad(format!(
                "{} code bytes for {format} [{rows}, {cols}] ({want} expected)",
                codes.len()
            )));
        }
        let s = format.scales_per_row(cols);
        if scales.len() != rows * s {
            return Err(bad(format!(
                "{} scales for {format} [{rows}, {cols}] ({} expected)",
                scales.len(),
                rows * s
            )));
        }
        let words = codec::pack_words(format, rows, cols, codes);
        let data = backend.upload_packed(&words)?;
        let scales = Tensor::from_f32(backend, [rows, s], scales, DType::F32)?;
        Ok(QuantizedMatrix { format, rows, cols, data: Arc::new(data), scales })
    }

    pub fn format(&self) -> QuantFormat {
        self.format
    }
    /// `N`, the output features.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// `K`, the input features.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The packed codes: `rows · format.row_words(cols)` words.
    pub fn data(&self) -> &B::Buffer {
        &self.data
    }
    /// f32 `[N, S]`.
    pub fn scales(&self) -> &Tensor<B> {
        &self.scales
    }

    /// A matrix from the parts another one gave (its codes' buffer brought back from host memory).
    pub(crate) fn from_parts(
        format: QuantFormat,
        rows: usize,
        cols: usize,
        data: B::Buffer,
        scales: Tensor<B>,
    ) -> Self {
        QuantizedMatrix { format, rows, cols, data: Arc::new(data), scales }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_layout() {
        let i8f = QuantFormat::Int8 { block: 32 };
        let i4f = QuantFormat::Int4 { block: 32 };
        assert_eq!((i8f.row_words(64), i8f.row_bytes(64), i8f.scales_per_row(64)), (16, 64, 2));
        assert_eq!((i4f.row_words(64), i4f.row_bytes(64), i4f.scales_per_row(64)), (8, 32, 2));
        let f8 = QuantFormat::Fp8E4M3;
        assert_eq!((f8.row_words(5), f8.row_bytes(5), f8.scales_per_row(5), f8.block(5)), (2, 5, 1, 5));
        assert!(i8f.check_cols(48).unwrap_err().contains("multiple of the block 32"));
        assert!(QuantFormat::Int4 { block: 12 }.check_cols(48).unwrap_err().contains("multiple of 8"));
        assert!(f8.check_cols(5).is_ok() && f8.check_cols(0).is_err());
        assert_eq!(QuantFormat::parse("INT4"), Some(i4f));
        assert_eq!(QuantFormat::parse("int3"), None);
    }
}
