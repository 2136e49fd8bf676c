//! Peak device bytes of each network's activations, from the shapes its graph makes. Each
//! function follows its network's code (`models/`) to the point where the most tensors are alive
//! at once and adds their sizes: the tensors a block's body has bound so far (a `let` keeps its
//! tensor until the end of the block body, a shadowed one too), the temporaries of the statement
//! running, and what the caller holds across the call. Backends' own scratch (a wgpu f32 work
//! buffer before a 16-bit pack, a staging buffer) is not a tensor and is not counted here.

use crate::models::dit::DitConfig;
use crate::models::qwen::QwenConfig;
use crate::models::vae::{Block, VaeConfig};
use crate::DType;

/// Token counts of one edit at one resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// Pixels of the bucket, `(h, w)`.
    pub pixels: (usize, usize),
    /// Prompt-encoder tokens (template, image pads, prompt), and the DiT's text stream (the same
    /// less the dropped prefix).
    pub encoder: usize,
    pub dit_text: usize,
}

/// One DiT forward (one CFG branch) at the step's peak, the image stream's MLP: `img, txt`, the
/// block's bound QKV projections per stream and joint `q/k/v`, the attention output and its image
/// slice, the new residual, the modulated norm and two `[N, M]` tensors: fc1's GELU is fused, but
/// wgpu runs that epilogue as a pass from the GEMM's sums into a second buffer, so two are alive at
/// once there (measured: planning one puts the tiny model's wgpu peak at 0.82 of measured). Plus what
/// the denoiser holds for the request: the RoPE table (f32 cos and sin), both text streams, the
/// latents, the time vector and the conditional velocity while the unconditional branch runs.
pub fn dit_forward(cfg: &DitConfig, dtype: DType, t: Tokens) -> u64 {
    let s = dtype.size() as u64;
    let (h, w) = (t.pixels.0 / 8, t.pixels.1 / 8);
    let n = (2 * (h / 2) * (w / 2)) as u64;
    let l = t.dit_text as u64;
    let (d, m, hd) = (cfg.hidden_size as u64, cfg.mlp_hidden() as u64, cfg.head_dim() as u64);
    let block = s * (7 * n * d + 4 * l * d + 4 * (n + l) * d + 2 * n * m);
    let latent = (cfg.in_channels * h * w) as u64;
    let request = 4 * n * hd + 2 * s * l * d + 4 * latent * 4 + s * 2 * latent + 6 * d * s;
    block + request
}

/// One residual block on `[cin, P]` → `[cout, P]`: conv1 runs on the norm and SiLU of the input
/// (both alive), conv2 on those of conv1's output, beside the shortcut's output when the widths
/// differ.
fn vae_res(cin: u64, cout: u64) -> u64 {
    let shortcut = if cin != cout { cout } else { 0 };
    (3 * cin + cout).max(cin + 4 * cout) + shortcut
}

/// The mid block's attention at `[c, P]`: the input, qkv, q, k, v and the output, with a slice and
/// its transpose in flight.
fn vae_attention(c: u64) -> u64 {
    8 * c
}

/// VAE encode of `[3, H, W]` pixels: the largest stage at its resolution (the full-resolution
/// residual blocks at 1024²), beside the pixels the pipeline holds.
pub fn vae_encode(cfg: &VaeConfig, dtype: DType, pixels: (usize, usize)) -> u64 {
    let s = dtype.size() as u64;
    let mut p = (pixels.0 * pixels.1) as u64;
    let input = 3 * p;
    let base = cfg.base_dim as u64;
    let mut peak = input + base * p;
    let (blocks, top) = cfg.encoder_blocks();
    for b in &blocks {
        let here = match *b {
            Block::Res { cin, cout } => vae_res(cin as u64, cout as u64) * p,
            Block::Down { c, .. } => {
                let out = c as u64 * p / 4;
                let here = c as u64 * p + out;
                p /= 4;
                here
            }
            Block::Up { .. } => 0,
        };
        peak = peak.max(input + here);
    }
    let top = top as u64;
    let mid = vae_res(top, top).max(vae_attention(top)) * p;
    let out = 3 * top * p + 2 * cfg.z_dim as u64 * p;
    s * peak.max(input + mid).max(input + out)
}

/// VAE decode of latents `[z, h, w]` to `[3, 8h, 8w]`: the largest stage at its resolution (the
/// last up block's residual blocks, or its upsampler's `[c, 4P]` input and `[c/2, 4P]` output).
pub fn vae_decode(cfg: &VaeConfig, dtype: DType, pixels: (usize, usize)) -> u64 {
    let s = dtype.size() as u64;
    let scale = cfg.scale();
    let mut p = ((pixels.0 / scale) * (pixels.1 / scale)) as u64;
    let z = cfg.z_dim as u64 * p;
    let (blocks, top, last) = cfg.decoder_blocks();
    let top = top as u64;
    let mut peak = z + top * p + vae_res(top, top).max(vae_attention(top)) * p;
    for (res, up) in &blocks {
        for b in res {
            if let Block::Res { cin, cout } = *b {
                peak = peak.max(z + vae_res(cin as u64, cout as u64) * p);
            }
        }
        if let Some(Block::Up { c, .. }) = *up {
            let c = c as u64;
            peak = peak.max(z + c * p + c * 4 * p + c / 2 * 4 * p);
            p *= 4;
        }
    }
    let out = 3 * last as u64 * p + 3 * p;
    s * peak.max(z + out) + 4 * 3 * p
}

/// The prompt encoder for both prompts: the vision tower's peak (its MLP, beside the block's
/// bound norm, qkv, q/k/v and attention output) and the text decoder's (its MLP's gate, up and
/// SwiGLU beside the layer's bound tensors), with the K/V cache of the shared prefix, the first
/// prompt's states and the image features it holds.
pub fn text_encoder(cfg: &QwenConfig, dtype: DType, t: Tokens) -> u64 {
    let s = dtype.size() as u64;
    let v = &cfg.vision;
    let n = ((t.pixels.0 / v.patch_size) * (t.pixels.1 / v.patch_size)) as u64;
    let merged = n / (v.spatial_merge_size * v.spatial_merge_size) as u64;
    let features = merged * cfg.hidden_size as u64 * (1 + v.deepstack_visual_indexes.len() as u64);
    let (vh, vi) = (v.hidden_size as u64, v.intermediate_size as u64);
    let patch_len = (v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size) as u64;
    let vision = n * (10 * vh + 2 * vi + patch_len) + 4 * n * (vh / v.num_heads as u64);
    let tok = t.encoder as u64;
    let (h, i) = (cfg.hidden_size as u64, cfg.intermediate_size as u64);
    let (q, kv) =
        ((cfg.num_attention_heads * cfg.head_dim) as u64, (cfg.num_key_value_heads * cfg.head_dim) as u64);
    let layer = tok * (3 * h + 2 * q + 2 * kv + 3 * i);
    let cache = cfg.num_hidden_layers as u64 * tok * 2 * kv;
    let text = layer + cache + tok * h + tok * 2 * kv + 4 * tok * cfg.head_dim as u64;
    s * (features + vision.max(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_size_figures_at_1024() {
        let t = Tokens { pixels: (1024, 1024), encoder: 1024 + 290, dit_text: 1024 + 256 };
        let dit = dit_forward(&DitConfig::full(), DType::BF16, t);
        // Issue 15: one MLP activation at 1024² is about 300 MB; a block holds several of them.
        let mlp = 2 * 2 * 64 * 64 * 16384;
        assert!(dit > 2 * mlp && dit < 12 * mlp, "{dit}");
        // The decoder's peak is a full-resolution residual block of 96 channels: five
        // [96, H, W] tensors; the encoder's is smaller.
        let dec = vae_decode(&VaeConfig::full(), DType::BF16, (1024, 1024));
        let enc = vae_encode(&VaeConfig::full(), DType::BF16, (1024, 1024));
        let res = 5 * 96 * 1024 * 1024 * 2;
        assert!(dec >= res && dec < res + res / 10, "{dec}");
        assert!(enc < dec, "{enc} {dec}");
        let te = text_encoder(&QwenConfig::full(), DType::BF16, t);
        assert!(te > 100_000_000 && te < 2_000_000_000, "{te}");
    }
}
