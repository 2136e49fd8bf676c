//! The allowed range of every numeric value joyrt reads from a model folder or takes as an edit
//! parameter, in one place, and the one check that applies them.
//!
//! Bounds exist so that an absurd config is refused with a message before anything is sized from
//! it (a layer count of 10⁹ would otherwise allocate a billion tensor specs; a patch size of 2³²
//! overflows the patch length). They are chosen from the released model's configs
//! (`cli/src/configs/full/`) with generous headroom, so that larger variants of the same
//! architecture still load: sizes (widths, head dims) allow about 8× the largest released value,
//! counts (layers, heads) more than 10×, and every product of two bounded values stays far below
//! `usize::MAX` on 64-bit targets, which is what makes the arithmetic on them safe.

use std::fmt::Display;

/// Hidden and intermediate widths. Released: 16384 (the DiT's MLP), 12288 (Qwen's MLP).
pub const MAX_WIDTH: usize = 1 << 17;
/// Layers or blocks of any tower. Released: 40 (DiT), 36 (Qwen text), 27 (vision).
pub const MAX_LAYERS: usize = 512;
/// Attention heads. Released: 32.
pub const MAX_HEADS: usize = 1024;
/// Per-head width. Released: 128.
pub const MAX_HEAD_DIM: usize = 1024;
/// Input or output channels of a network (image, latent). Released: 3 and 16.
pub const MAX_CHANNELS: usize = 256;
/// Vocabulary rows. Released: 151,936.
pub const MAX_VOCAB: usize = 1 << 22;
/// Rows of the vision position table. Released: 2304 (48²).
pub const MAX_POSITION_EMBEDDINGS: usize = 1 << 20;
/// Spatial patch side of the vision tower and the processor. Released: 16.
pub const MAX_PATCH: usize = 64;
/// Frames per vision patch. Released: 2.
pub const MAX_TEMPORAL_PATCH: usize = 16;
/// Side of the vision tower's patch merger. Released: 2.
pub const MAX_MERGE: usize = 8;
/// VAE base width. Released: 96.
pub const MAX_VAE_BASE_DIM: usize = 1024;
/// VAE width multiplier per stage. Released: 4.
pub const MAX_VAE_DIM_MULT: usize = 64;
/// Entries of the VAE's `dim_mult` (stages; the image shrinks 2× per stage after the first).
/// Released: 4.
pub const VAE_STAGES: (usize, usize) = (2, 8);
/// VAE residual blocks per stage. Released: 2.
pub const MAX_VAE_RES_BLOCKS: usize = 32;
/// Largest image area (pixels) a processor may allow. Released: 16,777,216 (2²⁴).
pub const MAX_PIXELS: usize = 1 << 28;
/// RoPE base θ. Released: 10⁴ (DiT, vision), 5·10⁶ (Qwen text). Below 2 the frequencies
/// collapse (θ = 1 makes every pair rotate alike); above 10¹² they underflow in f32.
pub const ROPE_THETA: (f64, f64) = (2.0, 1e12);
/// The DiT's MLP width over its hidden size. Released: 4.
pub const MLP_WIDTH_RATIO: (f64, f64) = (0.0625, 64.0);
/// RMSNorm ε. Released: 10⁻⁶.
pub const RMS_NORM_EPS: (f32, f32) = (0.0, 0.1);
/// The VAE's per-channel latent std. Released: 1.13 to 3.27; a value near 0 blows the
/// normalised reference latent up to huge values (the output then saturates to a flat image).
pub const LATENTS_STD: (f32, f32) = (0.01, 100.0);
/// The VAE's per-channel latent mean. Released: within ±1.6.
pub const LATENTS_MEAN: (f32, f32) = (-100.0, 100.0);
/// The processor's per-channel pixel mean. Released: 0.5 (pixels are scaled to [0, 1]).
pub const IMAGE_MEAN: (f32, f32) = (-10.0, 10.0);
/// The processor's per-channel pixel std. Released: 0.5.
pub const IMAGE_STD: (f32, f32) = (0.001, 100.0);
/// The flow shift. Released: 1.5; flow-matching models use 1 to 12. σ' = sσ / (1 + (s − 1)σ):
/// below 0.1 every σ but the first is near 0, so the first step jumps from noise to the end and
/// the rest do nothing (at 10⁻⁸ the σ underflow and the output is flat); above 100 every σ but
/// the last is near 1.
pub const SHIFT: (f32, f32) = (0.1, 100.0);
/// The CFG scale. diffusers runs CFG only when it is above 1, so 1 is "no guidance"; below 1
/// would silently be the same, so it is refused. Far above 100 the guided velocity overflows
/// before the norm rescale.
pub const GUIDANCE: (f32, f32) = (1.0, 100.0);
/// Denoising steps: at most the scheduler's 1000 training timesteps.
pub const STEPS: (usize, usize) = (1, 1000);

/// `Ok` when `lo ≤ v ≤ hi` (NaN is never in range); otherwise a message naming `field`, its value
/// and the range.
pub fn in_range<T: PartialOrd + Display>(field: &str, v: T, (lo, hi): (T, T)) -> Result<(), String> {
    if v >= lo && v <= hi {
        Ok(())
    } else {
        Err(format!("`{field}` = {v} is outside the allowed range [{lo}, {hi}]"))
    }
}

/// [`in_range`] for a positive count or size up to `hi`.
pub fn positive(field: &str, v: usize, hi: usize) -> Result<(), String> {
    in_range(field, v, (1, hi))
}

/// [`in_range`] for every entry of a list, naming the first bad one by index.
pub fn all_in_range<T: PartialOrd + Display + Copy>(
    field: &str,
    v: &[T],
    range: (T, T),
) -> Result<(), String> {
    v.iter().enumerate().try_for_each(|(i, &x)| in_range(&format!("{field}[{i}]"), x, range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_and_refuse_nan() {
        assert!(in_range("x", 1.0, (1.0, 2.0)).is_ok());
        assert!(in_range("x", 2.0, (1.0, 2.0)).is_ok());
        let e = in_range("x", f64::NAN, (1.0, 2.0)).unwrap_err();
        assert_eq!(e, "`x` = NaN is outside the allowed range [1, 2]");
        assert!(positive("n", 0, 4).is_err());
        assert_eq!(
            all_in_range("v", &[1, 5, 9], (0, 8)).unwrap_err(),
            "`v[2]` = 9 is outside the allowed range [0, 8]"
        );
    }
}
