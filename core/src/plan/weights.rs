//! Device bytes of each network's weights as the loaders store them: the checkpoint's parameter
//! specs in the run's dtype, except what a loader keeps otherwise (the DiT's time embedder in f32,
//! the VAE's 3-D convs reduced to their last tap, quantized linears as `u32` code words + f32
//! scales).

use crate::model_folder::{ModelFolder, Network};
use crate::models::dit::DitConfig;
use crate::models::qwen::QwenConfig;
use crate::models::vae::VaeConfig;
use crate::quant::policy::quantizable;
use crate::quant::read_quantized;
use crate::weights::ParamSpec;
use crate::{DType, QuantFormat, Result};
use serde::Serialize;

/// How the weights are stored on the device: the run's dtype, and the format of the quantized
/// block linears of each network that has them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WeightFormat {
    #[serde(serialize_with = "dtype_name")]
    pub dtype: DType,
    #[serde(serialize_with = "format_name")]
    pub transformer_quant: Option<QuantFormat>,
    #[serde(serialize_with = "format_name")]
    pub text_encoder_quant: Option<QuantFormat>,
}

fn dtype_name<S: serde::Serializer>(d: &DType, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(d.name())
}

fn format_name<S: serde::Serializer>(f: &Option<QuantFormat>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match f {
        Some(f) => s.serialize_str(f.name()),
        None => s.serialize_none(),
    }
}

/// A quantizable weight of each network, looked up to tell whether a folder is quantized.
const DIT_PROBE: &str = "double_blocks.0.img_mlp.net.0.proj.weight";
const QWEN_PROBE: &str = "model.language_model.layers.0.mlp.gate_proj.weight";

impl WeightFormat {
    /// `dtype` for everything; `quant` for the block linears of both networks (as `joyrt
    /// quantize` writes them).
    pub fn new(dtype: DType, quant: Option<QuantFormat>) -> Self {
        WeightFormat { dtype, transformer_quant: quant, text_encoder_quant: quant }
    }

    /// `dtype`, with the quantized formats the folder's checkpoints store.
    pub fn of_folder(folder: &ModelFolder, dtype: DType) -> Result<Self> {
        let format = |net: Network, probe: &str| -> Result<Option<QuantFormat>> {
            Ok(read_quantized(&folder.checkpoint(net)?, probe)?.map(|q| q.format))
        };
        Ok(WeightFormat {
            dtype,
            transformer_quant: format(Network::Transformer, DIT_PROBE)?,
            text_encoder_quant: format(Network::TextEncoder, QWEN_PROBE)?,
        })
    }

    /// Bytes of a linear weight `[rows, cols]` stored as `format`: code words and f32 scales.
    fn quantized_bytes(format: QuantFormat, rows: usize, cols: usize) -> u64 {
        (rows * (format.row_words(cols) + format.scales_per_row(cols)) * 4) as u64
    }

    /// Bytes of `spec` of `component` stored dense as `dtype` or quantized as `quant` when the
    /// quantization policy and the format take it.
    fn bytes(spec: &ParamSpec, component: &str, dtype: DType, quant: Option<QuantFormat>) -> u64 {
        let dims = spec.shape.dims();
        if let (Some(f), &[rows, cols]) = (quant, dims) {
            if quantizable(component, &spec.name) && f.check_cols(cols).is_ok() {
                return Self::quantized_bytes(f, rows, cols);
            }
        }
        (spec.shape.numel() * dtype.size()) as u64
    }

    /// The DiT's weights: all of them, and one double block's.
    pub fn transformer(&self, cfg: &DitConfig) -> (u64, u64) {
        let mut total = 0;
        let mut block0 = 0;
        for spec in cfg.param_specs() {
            let dtype = if spec.name.starts_with("condition_embedder.time_embedder") {
                DType::F32
            } else {
                self.dtype
            };
            let b = Self::bytes(&spec, "transformer", dtype, self.transformer_quant);
            total += b;
            if spec.name.starts_with("double_blocks.0.") {
                block0 += b;
            }
        }
        (total, block0)
    }

    /// The VAE's weights: 3-D conv kernels `[O, I, T, KH, KW]` keep one tap, `time_conv`s are not
    /// loaded, and the latent statistics (three `[z]` f32 tables) are added.
    pub fn vae(&self, cfg: &VaeConfig) -> u64 {
        let convs: u64 = cfg
            .param_specs()
            .iter()
            .filter(|s| !s.name.contains("time_conv"))
            .map(|s| {
                let d = s.shape.dims();
                let numel = if d.len() == 5 { d[0] * d[1] * d[3] * d[4] } else { s.shape.numel() };
                (numel * self.dtype.size()) as u64
            })
            .sum();
        convs + 3 * 4 * cfg.z_dim as u64
    }

    /// The text encoder's weights.
    pub fn text_encoder(&self, cfg: &QwenConfig) -> u64 {
        cfg.param_specs()
            .iter()
            .map(|s| Self::bytes(s, "text_encoder", self.dtype, self.text_encoder_quant))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_dit_bytes_follow_the_parameter_count() {
        let cfg = DitConfig::full();
        let (total, block) = WeightFormat::new(DType::BF16, None).transformer(&cfg);
        // bf16 everywhere except the time embedder (256·D + D + D·D + D values) in f32.
        let d = cfg.hidden_size as u64;
        let f32_params = 256 * d + d + d * d + d;
        assert_eq!(total, 2 * cfg.param_count() + 2 * f32_params);
        // The blocks hold about 99% of the bytes.
        let blocks = block * cfg.num_layers as u64;
        assert!(blocks < total && (total - blocks) * 50 < total, "{blocks} of {total}");
        // int4 blocks: 4 bits per weight plus one f32 scale per 32-value block ≈ 0.28 of bf16.
        let (q_total, q_block) = WeightFormat::new(DType::BF16, QuantFormat::parse("int4")).transformer(&cfg);
        let ratio = q_block as f64 / block as f64;
        assert!(ratio > 0.25 && ratio < 0.32, "{ratio}");
        assert!(q_total < total / 3);
    }
}
