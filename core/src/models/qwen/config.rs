//! `text_encoder/config.json` (transformers `Qwen3VLConfig`) and the tensors it implies.

use crate::limits::{all_in_range, in_range, positive, MAX_CHANNELS, MAX_HEADS, MAX_HEAD_DIM, MAX_LAYERS};
use crate::limits::{
    MAX_MERGE, MAX_PATCH, MAX_POSITION_EMBEDDINGS, MAX_TEMPORAL_PATCH, MAX_VOCAB, MAX_WIDTH,
};
use crate::limits::{RMS_NORM_EPS, ROPE_THETA};
use crate::model_folder::{parse_config, read_json};
use crate::weights::{param_count, ParamSpec};
use crate::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// `text_encoder/config.json` (transformers `Qwen3VLConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct QwenConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f64,
    pub mrope_section: [usize; 3],
    pub vocab_size: usize,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
}

/// `vision_config` of `text_encoder/config.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub spatial_merge_size: usize,
    #[serde(default = "VisionConfig::default_in_channels")]
    pub in_channels: usize,
    pub out_hidden_size: usize,
    pub num_position_embeddings: usize,
    #[serde(default)]
    pub deepstack_visual_indexes: Vec<usize>,
    /// Stored as `rope_parameters.rope_theta`.
    #[serde(
        rename = "rope_parameters",
        default = "VisionConfig::default_rope_theta",
        deserialize_with = "theta_of"
    )]
    pub rope_theta: f64,
}

impl VisionConfig {
    fn default_in_channels() -> usize {
        3
    }

    fn default_rope_theta() -> f64 {
        10000.0
    }
}

/// `rope_parameters` (transformers 5) or `rope_scaling` (older): the keys joyrt reads.
#[derive(Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    mrope_section: Option<[usize; 3]>,
}

/// The vision tower's θ from its `rope_parameters`.
fn theta_of<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(RopeParameters::deserialize(d)?.rope_theta.unwrap_or_else(VisionConfig::default_rope_theta))
}

/// `text_encoder/config.json` as transformers writes it.
#[derive(Deserialize)]
struct QwenFile {
    text_config: TextFile,
    vision_config: VisionConfig,
    image_token_id: u32,
    vision_start_token_id: u32,
    vision_end_token_id: u32,
}

/// `text_config`; the keys without a default are required.
#[derive(Deserialize)]
struct TextFile {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    /// Absent: `hidden_size / num_attention_heads`.
    head_dim: Option<usize>,
    intermediate_size: usize,
    rms_norm_eps: Option<f32>,
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    rope_scaling: Option<RopeParameters>,
    vocab_size: usize,
}

impl QwenConfig {
    /// Qwen3-VL-8B as shipped with JoyAI-Image-Edit (model-spec §3.1).
    pub fn full() -> QwenConfig {
        QwenConfig {
            hidden_size: 4096,
            num_hidden_layers: 36,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            head_dim: 128,
            intermediate_size: 12288,
            rms_norm_eps: 1e-6,
            rope_theta: 5_000_000.0,
            mrope_section: [24, 20, 20],
            vocab_size: 151_936,
            vision: VisionConfig {
                depth: 27,
                hidden_size: 1152,
                num_heads: 16,
                intermediate_size: 4304,
                patch_size: 16,
                temporal_patch_size: 2,
                spatial_merge_size: 2,
                in_channels: 3,
                out_hidden_size: 4096,
                num_position_embeddings: 2304,
                deepstack_visual_indexes: vec![8, 16, 24],
                rope_theta: 10000.0,
            },
            image_token_id: 151_655,
            vision_start_token_id: 151_652,
            vision_end_token_id: 151_653,
        }
    }

    pub fn from_file(path: &Path) -> Result<QwenConfig> {
        Self::from_json(&read_json(path)?, path)
    }

    pub fn from_json(v: &Value, path: &Path) -> Result<QwenConfig> {
        let f: QwenFile = parse_config(v, path)?;
        let t = f.text_config;
        let rope = t.rope_parameters.or(t.rope_scaling);
        let rope_theta = rope.as_ref().and_then(|r| r.rope_theta).or(t.rope_theta).unwrap_or(5_000_000.0);
        let cfg = QwenConfig {
            hidden_size: t.hidden_size,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            num_key_value_heads: t.num_key_value_heads,
            head_dim: t.head_dim.unwrap_or(t.hidden_size / t.num_attention_heads.max(1)),
            intermediate_size: t.intermediate_size,
            rms_norm_eps: t.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            // transformers' fallback
            mrope_section: rope.and_then(|r| r.mrope_section).unwrap_or([24, 20, 20]),
            vocab_size: t.vocab_size,
            vision: f.vision_config,
            image_token_id: f.image_token_id,
            vision_start_token_id: f.vision_start_token_id,
            vision_end_token_id: f.vision_end_token_id,
        };
        cfg.validate().map_err(|m| Error::config(path, m))?;
        Ok(cfg)
    }

    /// Every value in its range ([`crate::limits`]) before anything is sized from it; the
    /// vision tower's fields are named `vision_config.*`.
    fn validate(&self) -> std::result::Result<(), String> {
        let vis = &self.vision;
        positive("text_config.hidden_size", self.hidden_size, MAX_WIDTH)?;
        positive("text_config.num_hidden_layers", self.num_hidden_layers, MAX_LAYERS)?;
        positive("text_config.num_attention_heads", self.num_attention_heads, MAX_HEADS)?;
        positive("text_config.num_key_value_heads", self.num_key_value_heads, MAX_HEADS)?;
        positive("text_config.head_dim", self.head_dim, MAX_HEAD_DIM)?;
        positive("text_config.intermediate_size", self.intermediate_size, MAX_WIDTH)?;
        positive("text_config.vocab_size", self.vocab_size, MAX_VOCAB)?;
        in_range("text_config.rms_norm_eps", self.rms_norm_eps, RMS_NORM_EPS)?;
        in_range("text_config rope_theta", self.rope_theta, ROPE_THETA)?;
        all_in_range("text_config mrope_section", &self.mrope_section, (0, self.head_dim))?;
        for (field, id) in [
            ("image_token_id", self.image_token_id),
            ("vision_start_token_id", self.vision_start_token_id),
            ("vision_end_token_id", self.vision_end_token_id),
        ] {
            in_range(
                &format!("{field} (an id below text_config.vocab_size)"),
                id as usize,
                (0, self.vocab_size - 1),
            )?;
        }
        positive("vision_config.depth", vis.depth, MAX_LAYERS)?;
        positive("vision_config.hidden_size", vis.hidden_size, MAX_WIDTH)?;
        positive("vision_config.num_heads", vis.num_heads, MAX_HEADS)?;
        positive("vision_config.intermediate_size", vis.intermediate_size, MAX_WIDTH)?;
        positive("vision_config.patch_size", vis.patch_size, MAX_PATCH)?;
        positive("vision_config.temporal_patch_size", vis.temporal_patch_size, MAX_TEMPORAL_PATCH)?;
        positive("vision_config.spatial_merge_size", vis.spatial_merge_size, MAX_MERGE)?;
        positive("vision_config.in_channels", vis.in_channels, MAX_CHANNELS)?;
        positive("vision_config.out_hidden_size", vis.out_hidden_size, MAX_WIDTH)?;
        positive(
            "vision_config.num_position_embeddings",
            vis.num_position_embeddings,
            MAX_POSITION_EMBEDDINGS,
        )?;
        in_range("vision_config rope_theta", vis.rope_theta, ROPE_THETA)?;
        in_range(
            "vision_config.deepstack_visual_indexes length",
            vis.deepstack_visual_indexes.len(),
            (0, vis.depth),
        )?;
        if self.num_key_value_heads == 0 || !self.num_attention_heads.is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "{} attention heads are not a multiple of {} kv heads",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.mrope_section.iter().sum::<usize>() != self.head_dim / 2 {
            return Err(format!(
                "mrope_section {:?} must sum to head_dim/2 = {}",
                self.mrope_section,
                self.head_dim / 2
            ));
        }
        let side = (vis.num_position_embeddings as f64).sqrt() as usize;
        if side * side != vis.num_position_embeddings || side < 2 {
            return Err(format!(
                "num_position_embeddings {} is not a square ≥ 4",
                vis.num_position_embeddings
            ));
        }
        if vis.num_heads == 0
            || !vis.hidden_size.is_multiple_of(vis.num_heads)
            || !(vis.hidden_size / vis.num_heads).is_multiple_of(4)
        {
            return Err(format!(
                "vision hidden_size {} / num_heads {} must give a head dim divisible by 4",
                vis.hidden_size, vis.num_heads
            ));
        }
        positive(
            "vision head dim (vision_config.hidden_size / num_heads)",
            vis.hidden_size / vis.num_heads,
            MAX_HEAD_DIM,
        )?;
        if vis.out_hidden_size != self.hidden_size {
            // The merger's output is scattered into the text states, DeepStack adds to them.
            return Err(format!(
                "vision_config.out_hidden_size {} differs from text_config.hidden_size {}",
                vis.out_hidden_size, self.hidden_size
            ));
        }
        if vis.deepstack_visual_indexes.iter().any(|&i| i >= vis.depth) {
            return Err(format!(
                "deepstack_visual_indexes {:?} exceed depth {}",
                vis.deepstack_visual_indexes, vis.depth
            ));
        }
        Ok(())
    }

    /// Every tensor JoyAI uses, with the transformers names (the final norm and `lm_head` are
    /// present in checkpoints but unused: see [`QwenConfig::unused_names`]).
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let v = &self.vision;
        let (h, vh, m) =
            (self.hidden_size, v.hidden_size, v.hidden_size * v.spatial_merge_size * v.spatial_merge_size);
        let mut s = vec![
            ParamSpec::new(
                "model.visual.patch_embed.proj.weight",
                [vh, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size],
            ),
            ParamSpec::new("model.visual.patch_embed.proj.bias", [vh]),
            ParamSpec::new("model.visual.pos_embed.weight", [v.num_position_embeddings, vh]),
        ];
        let lin = |s: &mut Vec<ParamSpec>, n: &str, o: usize, i: usize| {
            s.push(ParamSpec::new(format!("{n}.weight"), [o, i]));
            s.push(ParamSpec::new(format!("{n}.bias"), [o]));
        };
        for b in 0..v.depth {
            let p = format!("model.visual.blocks.{b}");
            for n in ["norm1", "norm2"] {
                s.push(ParamSpec::new(format!("{p}.{n}.weight"), [vh]));
                s.push(ParamSpec::new(format!("{p}.{n}.bias"), [vh]));
            }
            lin(&mut s, &format!("{p}.attn.qkv"), 3 * vh, vh);
            lin(&mut s, &format!("{p}.attn.proj"), vh, vh);
            lin(&mut s, &format!("{p}.mlp.linear_fc1"), v.intermediate_size, vh);
            lin(&mut s, &format!("{p}.mlp.linear_fc2"), vh, v.intermediate_size);
        }
        let merger = |s: &mut Vec<ParamSpec>, p: &str, norm: usize| {
            s.push(ParamSpec::new(format!("{p}.norm.weight"), [norm]));
            s.push(ParamSpec::new(format!("{p}.norm.bias"), [norm]));
            lin(s, &format!("{p}.linear_fc1"), m, m);
            lin(s, &format!("{p}.linear_fc2"), v.out_hidden_size, m);
        };
        merger(&mut s, "model.visual.merger", vh);
        for k in 0..v.deepstack_visual_indexes.len() {
            merger(&mut s, &format!("model.visual.deepstack_merger_list.{k}"), m);
        }
        s.push(ParamSpec::new("model.language_model.embed_tokens.weight", [self.vocab_size, h]));
        let (q, kv) = (self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim);
        for l in 0..self.num_hidden_layers {
            let p = format!("model.language_model.layers.{l}");
            s.push(ParamSpec::new(format!("{p}.input_layernorm.weight"), [h]));
            s.push(ParamSpec::new(format!("{p}.post_attention_layernorm.weight"), [h]));
            s.push(ParamSpec::new(format!("{p}.self_attn.q_proj.weight"), [q, h]));
            s.push(ParamSpec::new(format!("{p}.self_attn.k_proj.weight"), [kv, h]));
            s.push(ParamSpec::new(format!("{p}.self_attn.v_proj.weight"), [kv, h]));
            s.push(ParamSpec::new(format!("{p}.self_attn.o_proj.weight"), [h, q]));
            s.push(ParamSpec::new(format!("{p}.self_attn.q_norm.weight"), [self.head_dim]));
            s.push(ParamSpec::new(format!("{p}.self_attn.k_norm.weight"), [self.head_dim]));
            s.push(ParamSpec::new(format!("{p}.mlp.gate_proj.weight"), [self.intermediate_size, h]));
            s.push(ParamSpec::new(format!("{p}.mlp.up_proj.weight"), [self.intermediate_size, h]));
            s.push(ParamSpec::new(format!("{p}.mlp.down_proj.weight"), [h, self.intermediate_size]));
        }
        s
    }

    /// Stored but unused by JoyAI.
    pub fn unused_names() -> [&'static str; 2] {
        ["model.language_model.norm.weight", "lm_head.weight"]
    }

    pub fn param_count(&self) -> u64 {
        param_count(&self.param_specs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_size_parameter_count() {
        // model-spec §5.1 counts 8,144,793,840 "used by JoyAI (no lm_head)", which includes the
        // final norm's 4096 weights that joyrt skips (the DiT takes the pre-norm states).
        assert_eq!(QwenConfig::full().param_count() + 4096, 8_144_793_840);
    }
}
