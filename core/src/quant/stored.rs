//! Quantized weights as safetensors stores them (docs/quantized-formats.md), and how the
//! checkpoint reader and the loader see them.
//!
//! A linear layer `X` stored quantized keeps its dense name for the codes, `X.weight`, and adds
//! `X.weight_scale`. The code dtype says the format: `I8` [N, K] is int8, `U8` [N, K/2] is int4
//! (two codes per byte, element `2j` in the low nibble), `F8_E4M3` [N, K] is fp8. int8/int4
//! scales are `[N, K/B]` (the block `B = K / S` follows from the scale count); fp8 scales are
//! per row, `[N]` or `[N, 1]` (or one per tensor, `[]` or `[1]`, as some FP8 checkpoints store
//! them). An FP8 checkpoint's `X.input_scale` (for static activation quantization) is accepted
//! and not used: activations stay in float.

use super::{QuantFormat, QuantizedMatrix};
use crate::weights::{Checkpoint, TensorInfo};
use crate::{Backend, Error, Result, Shape, StoredDType};

/// The dense shape a stored tensor stands for: an int4 code tensor `U8 [N, K/2]` is `[N, K]`;
/// every other tensor is its stored shape.
pub fn logical_shape(info: &TensorInfo) -> Shape {
    match (info.dtype, info.shape.dims()) {
        (StoredDType::U8, &[n, c]) => Shape::new([n, 2 * c]),
        _ => info.shape.clone(),
    }
}

/// Whether `name` is a scale stored beside a quantized weight (`X.weight_scale` or
/// `X.input_scale` where `X.weight` holds codes), so not a tensor of its own.
pub fn is_quantized_companion(name: &str, info_of: impl Fn(&str) -> Option<TensorInfo>) -> bool {
    let base = name.strip_suffix(".weight_scale").or_else(|| name.strip_suffix(".input_scale"));
    base.and_then(|b| info_of(&format!("{b}.weight"))).is_some_and(|i| i.dtype.float().is_none())
}

/// The quantized matrix stored under `weight` (a layer's `X.weight`) uploaded to `backend`, or
/// `None` when `weight` is a float tensor. A code tensor without a usable scale is an error
/// naming both tensors.
pub fn load_quantized<B: Backend>(
    ck: &Checkpoint,
    backend: &B,
    weight: &str,
) -> Result<Option<QuantizedMatrix<B>>> {
    let Some(q) = read_quantized(ck, weight)? else { return Ok(None) };
    let (_, codes) = ck.raw(weight)?;
    QuantizedMatrix::upload(backend, q.format, q.rows, q.cols, codes, &q.scales).map(Some)
}

/// A quantized weight as stored: its format, dense shape `[rows, cols]` and scales widened to
/// f32 (`rows · S`; a per-tensor fp8 scale repeated per row).
pub struct StoredQuantized {
    pub format: QuantFormat,
    pub rows: usize,
    pub cols: usize,
    pub scales: Vec<f32>,
}

/// The format and scales of the quantized weight stored under `weight` (`None`: a float
/// tensor or none), with every check of [`load_quantized`] but without reading the codes.
pub fn read_quantized(ck: &Checkpoint, weight: &str) -> Result<Option<StoredQuantized>> {
    let Some(info) = ck.info(weight) else { return Ok(None) };
    let int_codes = match info.dtype {
        StoredDType::Float(_) => return Ok(None),
        StoredDType::I8 => Some(false),
        StoredDType::U8 => Some(true),
        StoredDType::F8E4M3 => None,
    };
    let scale_name = format!("{weight}_scale");
    let bad = |msg: String| Error::Weights {
        component: ck.origin().display().to_string(),
        problems: vec![format!("quantized weight {weight} ({} {}): {msg}", info.dtype.tag(), info.shape)],
    };
    let &[n, c] = info.shape.dims() else { return Err(bad("a quantized weight must be a matrix".into())) };
    let Some(sinfo) = ck.info(&scale_name) else { return Err(bad(format!("{scale_name} is missing"))) };
    if sinfo.dtype.float().is_none() {
        return Err(bad(format!("{scale_name} is {}, not a float tensor", sinfo.dtype.tag())));
    }
    let k = if int_codes == Some(true) { 2 * c } else { c };
    let scales = ck.read_f32(&scale_name)?;
    let per_row = |s: usize| sinfo.shape.dims() == [n, s];
    let (format, scales) = match int_codes {
        Some(int4) => {
            let s = sinfo.shape.dims().get(1).copied().unwrap_or(0);
            if !per_row(s) || s == 0 || !k.is_multiple_of(s) {
                return Err(bad(format!(
                    "{scale_name} has shape {}; expected [{n}, S] with S dividing K = {k}",
                    sinfo.shape
                )));
            }
            let block = k / s;
            let f = if int4 { QuantFormat::Int4 { block } } else { QuantFormat::Int8 { block } };
            (f, scales)
        }
        None => match sinfo.shape.dims() {
            [] | [1] => (QuantFormat::Fp8E4M3, vec![scales[0]; n]),
            d if d == [n] || d == [n, 1] => (QuantFormat::Fp8E4M3, scales),
            _ => {
                return Err(bad(format!(
                    "{scale_name} has shape {}; expected one scale per output row ([{n}] or [{n}, 1]) or one in all",
                    sinfo.shape
                )))
            }
        },
    };
    format.check_cols(k).map_err(bad)?;
    if let Some(i) = scales.iter().position(|s| !s.is_finite()) {
        return Err(bad(format!("{scale_name} holds a non-finite scale at index {i}")));
    }
    Ok(Some(StoredQuantized { format, rows: n, cols: k, scales }))
}
