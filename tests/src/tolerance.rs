//! Named tolerance presets. Every comparison in the suite uses one of these; no test carries its
//! own numbers.

use joyrt_core::DType;

/// Limits a comparison must meet. `None` disables a criterion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub name: &'static str,
    /// Maximum relative L2 error `‖out − ref‖ / ‖ref‖`.
    pub rel_l2: f64,
    /// Every element must satisfy `|out − ref| ≤ abs + rel·|ref|`.
    pub abs: f64,
    pub rel: f64,
    /// Minimum cosine similarity.
    pub min_cosine: Option<f64>,
}

/// One op on random inputs, f32 storage: f32 accumulation-order noise only.
pub const OP_F32: Tolerance =
    Tolerance { name: "op-f32", rel_l2: 1e-5, abs: 1e-5, rel: 1e-4, min_cosine: None };
/// One op with bf16 storage (8 mantissa bits: half an ulp is 2⁻⁹ relative) and f32 accumulation.
pub const OP_BF16: Tolerance =
    Tolerance { name: "op-bf16", rel_l2: 1e-2, abs: 1e-2, rel: 1.6e-2, min_cosine: Some(0.9999) };
/// One op with f16 storage (11 mantissa bits) and f32 accumulation.
pub const OP_F16: Tolerance =
    Tolerance { name: "op-f16", rel_l2: 2e-3, abs: 2e-3, rel: 4e-3, min_cosine: Some(0.9999) };
/// A whole network in f32 against a golden fixture (issue 4: ‖out−ref‖/‖ref‖ ≤ 1e-4).
pub const NET_F32: Tolerance =
    Tolerance { name: "net-f32", rel_l2: 1e-4, abs: f64::INFINITY, rel: 0.0, min_cosine: None };
/// A whole network with bf16 weights and activations (issue 4: rel ≤ 1e-2, cosine ≥ 0.999).
pub const NET_BF16: Tolerance =
    Tolerance { name: "net-bf16", rel_l2: 1e-2, abs: f64::INFINITY, rel: 0.0, min_cosine: Some(0.999) };
/// Host-side tables (scheduler σ/timesteps): 1e-6 absolute on σ (issue 4).
pub const TABLE: Tolerance =
    Tolerance { name: "table", rel_l2: f64::INFINITY, abs: 1e-6, rel: 1e-6, min_cosine: None };
/// Resized pixels: within ±1 of PIL (issue 4).
pub const PIXELS: Tolerance =
    Tolerance { name: "pixels±1", rel_l2: f64::INFINITY, abs: 1.0, rel: 0.0, min_cosine: None };
/// The end-to-end pipeline image: PSNR ≥ 40 dB is checked separately; this bounds intermediates.
pub const PIPELINE_F32: Tolerance =
    Tolerance { name: "pipeline-f32", rel_l2: 1e-3, abs: f64::INFINITY, rel: 0.0, min_cosine: Some(0.99999) };
/// Minimum PSNR of the pipeline's output image against diffusers' (issue 4).
pub const PIPELINE_MIN_PSNR_DB: f64 = 40.0;

/// The op preset for a storage dtype.
pub fn op_preset(dtype: DType) -> Tolerance {
    match dtype {
        DType::F32 => OP_F32,
        DType::BF16 => OP_BF16,
        DType::F16 => OP_F16,
    }
}

/// The network preset for an activation dtype.
pub fn net_preset(dtype: DType) -> Tolerance {
    match dtype {
        DType::F32 => NET_F32,
        DType::BF16 | DType::F16 => NET_BF16,
    }
}
