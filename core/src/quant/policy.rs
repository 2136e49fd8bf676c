//! Which stored tensors `joyrt quantize` turns into quantized weights, by the role the networks
//! give them. Only the linear layers of the repeated blocks are quantized: they hold almost all
//! the parameters (≈ 99% of the DiT's, ≈ 90% of the text encoder's without its embedding table).
//! Everything else keeps its stored dtype, because it is small, or sensitive, or not a matmul:
//!
//! - norms, biases, the DiT's modulation tables, RoPE-free q/k norms: vectors, a negligible share
//!   of the bytes, and they scale every activation they touch;
//! - the DiT's `condition_embedder` (timestep and text embedders): the timestep path is kept in f32
//!   even for bf16 models (`models::dit`), since its error reaches every block's modulation;
//! - patch embeddings (`img_in`, the vision `patch_embed`): conv-shaped, and the first layer, whose
//!   error every later layer sees;
//! - `proj_out` (the DiT's last layer, its error is the velocity's), the vision mergers (their
//!   output is added straight into the text stream by DeepStack);
//! - the token embedding table (a gather, not a matmul) and `lm_head` (joyrt never reads it).
//!
//! A quantizable tensor whose K does not fit the format (int8/int4: K a multiple of the block)
//! stays dense too; `joyrt quantize` counts those.

/// Whether the tensor `name` of `component` (`transformer` or `text_encoder`) is a linear weight
/// of a repeated block, which `joyrt quantize` quantizes.
pub fn quantizable(component: &str, name: &str) -> bool {
    match component {
        "transformer" => {
            const LINEARS: [&str; 6] = [
                "img_attn_qkv.weight",
                "txt_attn_qkv.weight",
                "img_attn_proj.weight",
                "txt_attn_proj.weight",
                "net.0.proj.weight",
                "net.2.weight",
            ];
            name.starts_with("double_blocks.") && LINEARS.iter().any(|s| name.ends_with(&format!(".{s}")))
        }
        "text_encoder" => {
            const VISION: [&str; 4] =
                ["attn.qkv.weight", "attn.proj.weight", "mlp.linear_fc1.weight", "mlp.linear_fc2.weight"];
            (name.starts_with("model.language_model.layers.") && name.ends_with("_proj.weight"))
                || (name.starts_with("model.visual.blocks.")
                    && VISION.iter().any(|s| name.ends_with(&format!(".{s}"))))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::quantizable;

    #[test]
    fn only_block_linears_are_quantized() {
        for n in [
            "double_blocks.3.attn.img_attn_qkv.weight",
            "double_blocks.3.img_attn_qkv.weight", // the original key spelling
            "double_blocks.0.txt_mlp.net.0.proj.weight",
            "double_blocks.0.img_mlp.net.2.weight",
        ] {
            assert!(quantizable("transformer", n), "{n}");
        }
        for n in [
            "double_blocks.3.attn.img_attn_qkv.bias",
            "double_blocks.3.attn.img_attn_q_norm.weight",
            "double_blocks.0.img_mod.modulate_table",
            "condition_embedder.time_embedder.linear_1.weight",
            "img_in.weight",
            "proj_out.weight",
        ] {
            assert!(!quantizable("transformer", n), "{n}");
        }
        for n in [
            "model.language_model.layers.2.self_attn.q_proj.weight",
            "model.language_model.layers.2.mlp.down_proj.weight",
            "model.visual.blocks.1.attn.qkv.weight",
            "model.visual.blocks.1.mlp.linear_fc2.weight",
        ] {
            assert!(quantizable("text_encoder", n), "{n}");
        }
        for n in [
            "model.language_model.embed_tokens.weight",
            "lm_head.weight",
            "model.language_model.layers.2.input_layernorm.weight",
            "model.visual.merger.linear_fc1.weight",
            "model.visual.deepstack_merger_list.0.linear_fc2.weight",
            "model.visual.patch_embed.proj.weight",
            "model.visual.blocks.1.attn.qkv.bias",
        ] {
            assert!(!quantizable("text_encoder", n), "{n}");
        }
        assert!(!quantizable("vae", "decoder.conv_in.weight"));
    }
}
