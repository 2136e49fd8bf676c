//! The hostile folders: each a mutation of the tiny model and the text its error must contain.

use super::mutate::*;
use joyrt_core::Shape;
use serde_json::{json, Value};
use std::path::Path;

pub type Mutation = Box<dyn Fn(&Path) + Send + Sync>;

/// One hostile folder: what is broken, how, and the text the error must contain.
pub struct Case {
    pub name: String,
    pub mutate: Mutation,
    pub expect: String,
    /// Only `info --check-weights` sees the problem (NaN or Inf weights; plain `info` passes),
    /// and `edit` fails at the first non-finite value, naming that scan.
    pub weights_only: bool,
}

pub fn case(name: impl Into<String>, expect: &str, mutate: impl Fn(&Path) + Send + Sync + 'static) -> Case {
    Case { name: name.into(), mutate: Box::new(mutate), expect: expect.into(), weights_only: false }
}

/// Every case, over a hundred.
pub fn all() -> Vec<Case> {
    [config_cases(), file_cases(), tokenizer_cases(), weight_cases()].into_iter().flatten().collect()
}

const DIT: &str = "transformer/config.json";
const VAE: &str = "vae/config.json";
const QWEN: &str = "text_encoder/config.json";
const PROC: &str = "processor/preprocessor_config.json";
const SCHED: &str = "scheduler/scheduler_config.json";
const INDEX: &str = "model_index.json";
const TOK: &str = "tokenizer/tokenizer.json";

fn config_cases() -> Vec<Case> {
    let big = json!(1_000_000_000u64);
    let huge = json!(u64::MAX);
    let half = json!(1u64 << 63);
    let mut c = Vec::new();
    let mut num = |file: &'static str, ptr: &str, v: Value, expect: &str| {
        c.push(case(format!("{file}{ptr}={v}"), expect, set(file, ptr, v)));
    };
    for (ptr, field) in [
        ("/hidden_size", "hidden_size"),
        ("/num_attention_heads", "num_attention_heads"),
        ("/num_layers", "num_layers"),
        ("/in_channels", "in_channels"),
        ("/out_channels", "out_channels"),
        ("/text_dim", "text_dim"),
    ] {
        num(DIT, ptr, json!(0), field);
        num(DIT, ptr, big.clone(), field);
    }
    num(DIT, "/hidden_size", huge.clone(), "hidden_size");
    num(DIT, "/num_attention_heads", json!(3), "num_attention_heads");
    num(DIT, "/hidden_size", json!(-64), "hidden_size");
    num(DIT, "/hidden_size", json!("64"), "hidden_size");
    num(DIT, "/in_channels", json!(8), "z_dim");
    num(DIT, "/text_dim", json!(32), "text_dim");
    num(DIT, "/mlp_width_ratio", json!(0.0), "mlp_width_ratio");
    num(DIT, "/mlp_width_ratio", json!(1e300), "mlp_width_ratio");
    num(DIT, "/theta", json!(-1.0), "theta");
    num(DIT, "/theta", json!(0.0), "theta");
    num(DIT, "/theta", json!(1e300), "theta");
    num(DIT, "/rope_dim_list", json!([half, half, 16]), "rope_dim_list");
    num(DIT, "/rope_dim_list", json!([huge, 1, 15]), "rope_dim_list");
    num(DIT, "/rope_dim_list", json!([0, 0, 0]), "rope_dim_list");
    num(DIT, "/rope_dim_list", json!([3, 6, 7]), "rope_dim_list");
    num(DIT, "/patch_size", json!([1, 4, 4]), "patch_size");
    num(DIT, "/patch_size", json!([0, 0, 0]), "patch_size");
    num(DIT, "/rope_type", json!("yarn"), "rope_type");

    for field in ["base_dim", "decoder_base_dim", "z_dim", "num_res_blocks", "in_channels", "out_channels"] {
        num(VAE, &format!("/{field}"), json!(0), field);
        num(VAE, &format!("/{field}"), big.clone(), field);
    }
    num(VAE, "/z_dim", json!(8), "z_dim");
    num(VAE, "/in_channels", json!(4), "in_channels");
    num(VAE, "/dim_mult", json!([]), "dim_mult");
    num(VAE, "/dim_mult", json!([1, 2]), "temperal_downsample");
    num(VAE, "/dim_mult", json!([1, 2, 4, 4, 4, 4, 4, 4, 4, 4]), "dim_mult");
    num(VAE, "/dim_mult", json!([1, 0, 4, 4]), "dim_mult");
    num(VAE, "/dim_mult", json!([1, big, 4, 4]), "dim_mult");
    num(VAE, "/temperal_downsample", json!([true]), "temperal_downsample");
    num(VAE, "/latents_std", json!(vec![0.0; 16]), "latents_std");
    num(VAE, "/latents_std", json!(vec![1e-9; 16]), "latents_std");
    num(VAE, "/latents_std", json!(vec![-1.0; 16]), "latents_std");
    num(VAE, "/latents_std", json!(vec![1.0; 3]), "latents_std");
    num(VAE, "/latents_mean", json!(vec![1e30; 16]), "latents_mean");
    num(VAE, "/is_residual", json!(true), "is_residual");
    num(VAE, "/attn_scales", json!([1.0]), "attn_scales");

    for field in [
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "vocab_size",
    ] {
        num(QWEN, &format!("/text_config/{field}"), json!(0), field);
        num(QWEN, &format!("/text_config/{field}"), big.clone(), field);
    }
    num(QWEN, "/text_config/num_key_value_heads", json!(3), "kv heads");
    num(QWEN, "/text_config/vocab_size", json!(10), "vocab_size");
    num(QWEN, "/text_config/rms_norm_eps", json!(-1.0), "rms_norm_eps");
    num(QWEN, "/text_config/rope_parameters/rope_theta", json!(-5.0), "rope_theta");
    num(QWEN, "/text_config/rope_parameters/rope_theta", json!(0.0), "rope_theta");
    num(QWEN, "/text_config/rope_parameters/mrope_section", json!([half, half, 16]), "mrope_section");
    num(QWEN, "/text_config/rope_parameters/mrope_section", json!([100, 100, 100]), "mrope_section");
    for field in [
        "depth",
        "hidden_size",
        "num_heads",
        "intermediate_size",
        "patch_size",
        "temporal_patch_size",
        "spatial_merge_size",
        "out_hidden_size",
        "num_position_embeddings",
    ] {
        num(QWEN, &format!("/vision_config/{field}"), json!(0), field);
        num(QWEN, &format!("/vision_config/{field}"), big.clone(), field);
    }
    num(QWEN, "/vision_config/temporal_patch_size", json!(1u64 << 32), "temporal_patch_size");
    num(QWEN, "/vision_config/num_position_embeddings", json!(15), "num_position_embeddings");
    num(QWEN, "/vision_config/num_position_embeddings", json!(1u64 << 40), "num_position_embeddings");
    num(QWEN, "/vision_config/patch_size", json!(8), "processor");
    num(QWEN, "/vision_config/in_channels", json!(4), "in_channels");
    num(QWEN, "/vision_config/deepstack_visual_indexes", json!([99]), "deepstack_visual_indexes");
    num(QWEN, "/vision_config/rope_parameters/rope_theta", json!(-5.0), "rope_theta");
    num(QWEN, "/image_token_id", big.clone(), "image_token_id");
    num(QWEN, "/image_token_id", json!(5), "token ids");
    num(QWEN, "/vision_start_token_id", json!(-1), "vision_start_token_id");

    num(PROC, "/image_processor/patch_size", json!(0), "patch_size");
    num(PROC, "/image_processor/patch_size", big.clone(), "patch_size");
    num(PROC, "/image_processor/temporal_patch_size", json!(1u64 << 32), "temporal_patch_size");
    num(PROC, "/image_processor/merge_size", big.clone(), "merge_size");
    num(PROC, "/image_processor/image_std", json!([0.0, 0.0, 0.0]), "image_std");
    num(PROC, "/image_processor/image_mean", json!([1e30, 0.0, 0.0]), "image_mean");
    num(PROC, "/image_processor/size", json!({"shortest_edge": 100, "longest_edge": 0}), "max_pixels");
    num(PROC, "/image_processor/size", json!({"shortest_edge": 1000, "longest_edge": 10}), "min_pixels");

    num(SCHED, "/shift", json!(0.0), "shift");
    num(SCHED, "/shift", json!(-1.0), "shift");
    num(SCHED, "/shift", json!(1e-9), "shift");
    num(SCHED, "/shift", json!(1e30), "shift");
    num(SCHED, "/use_dynamic_shifting", json!(true), "use_dynamic_shifting");
    num(SCHED, "/num_train_timesteps", json!(7), "num_train_timesteps");

    num(INDEX, "/transformer", json!(5), "transformer");
    num(INDEX, "/processor", Value::Null, "processor");
    c
}

fn file_cases() -> Vec<Case> {
    let mut c = Vec::new();
    for rel in [INDEX, DIT, VAE, QWEN, TOK, PROC, SCHED] {
        c.push(case(format!("{rel} is a FIFO"), "FIFO", move |d| fifo(&d.join(rel))));
        c.push(case(format!("{rel} is a folder"), "directory", move |d| {
            remove(&d.join(rel));
            std::fs::create_dir(d.join(rel)).unwrap();
        }));
        c.push(case(format!("{rel} is /dev/zero"), "device", move |d| {
            remove(&d.join(rel));
            std::os::unix::fs::symlink("/dev/zero", d.join(rel)).unwrap();
        }));
        c.push(case(format!("{rel} is a 1 GiB sparse file"), "limit", move |d| {
            sparse(&d.join(rel), 1 << 30)
        }));
        c.push(case(format!("{rel} is missing"), rel.rsplit('/').next().unwrap(), move |d| {
            remove(&d.join(rel))
        }));
        c.push(case(format!("{rel} is empty"), rel.rsplit('/').next().unwrap(), move |d| {
            replace(&d.join(rel), b"")
        }));
    }
    c.push(case("model_index.json is not JSON", "model_index.json", |d| {
        replace(&d.join(INDEX), b"{\"vae\": [")
    }));
    c.push(case("model_index.json is a list", "not a JSON object", |d| replace(&d.join(INDEX), b"[]")));
    c.push(case("config.json is a config loop", "config.json", |d| {
        remove(&d.join(DIT));
        std::os::unix::fs::symlink("config.json", d.join(DIT)).unwrap();
    }));
    for part in ["processor", "transformer", "vae", "text_encoder", "tokenizer", "scheduler"] {
        c.push(case(format!("no {part}/"), part, move |d| remove(&d.join(part))));
    }
    c.push(case("vae/ is a file", "not a folder", |d| {
        remove(&d.join("vae"));
        std::fs::write(d.join("vae"), b"x").unwrap();
    }));
    c
}

fn tokenizer_cases() -> Vec<Case> {
    let edit = |f: fn(&mut Value)| {
        move |d: &Path| {
            let p = d.join(TOK);
            let mut v = read_json(&p);
            f(&mut v);
            replace(&p, &serde_json::to_vec(&v).unwrap());
        }
    };
    let text_edit = |f: fn(String) -> String| {
        move |d: &Path| {
            let p = d.join(TOK);
            let s = String::from_utf8(std::fs::read(&p).unwrap()).unwrap();
            replace(&p, f(s).as_bytes());
        }
    };
    vec![
        case(
            "tokenizer: bad continuing_subword_prefix",
            "tokenizer",
            edit(|v| {
                v["model"]["continuing_subword_prefix"] = json!("\u{0}\u{1}##");
                v["model"]["end_of_word_suffix"] = json!("\u{2}");
            }),
        ),
        case(
            "tokenizer: control character in the decoder",
            "tokenizer",
            text_edit(|s| {
                s.replacen("\"decoder\":", "\"decoder\":\u{1}", 1).replacen(
                    "\"decoder\": ",
                    "\"decoder\": \u{1}",
                    1,
                )
            }),
        ),
        case(
            "tokenizer: syntax error in the decoder",
            "tokenizer",
            text_edit(|s| {
                let at = s.find("\"decoder\"").unwrap();
                format!("{}\"decoder\": {{\"type\": \"ByteLevel\",, }}, \"x\"{}", &s[..at], &s[at + 9..])
            }),
        ),
        case(
            "tokenizer: unknown decoder type",
            "tokenizer",
            edit(|v| v["decoder"] = json!({"type": "Nope"})),
        ),
        case("tokenizer: model is a number", "tokenizer", edit(|v| v["model"] = json!(5))),
        case("tokenizer: no vocab", "tokenizer", edit(|v| v["model"]["vocab"] = json!({}))),
        case(
            "tokenizer: merges of unknown tokens",
            "tokenizer",
            edit(|v| {
                v["model"]["merges"] = json!([["zz\u{1}", "qq\u{2}"]]);
            }),
        ),
        case(
            "tokenizer: no <|image_pad|>",
            "image_pad",
            edit(|v| {
                let added = v["added_tokens"].as_array_mut().unwrap();
                added.retain(|t| t["content"] != "<|image_pad|>");
                if let Some(vocab) = v["model"]["vocab"].as_object_mut() {
                    vocab.remove("<|image_pad|>");
                }
            }),
        ),
        case("tokenizer: not JSON", "tokenizer", |d| replace(&d.join(TOK), b"{\"model\": {")),
        case("tokenizer: a list", "tokenizer", |d| replace(&d.join(TOK), b"[1, 2]")),
        case(
            "tokenizer: pre_tokenizer regex invalid",
            "tokenizer",
            edit(|v| {
                v["pre_tokenizer"] = json!({"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated", "invert": false});
            }),
        ),
    ]
}

fn weight_cases() -> Vec<Case> {
    let nan = |name: &str, component: &'static str, tensor: &'static str, v: f32| Case {
        name: name.into(),
        mutate: Box::new(poison(component, tensor, v)),
        expect: tensor.into(),
        weights_only: true,
    };
    let mut c = vec![
        nan("NaN in the DiT", "transformer", "img_in.weight", f32::NAN),
        nan("Inf in the DiT", "transformer", "proj_out.bias", f32::INFINITY),
        nan("NaN in the VAE encoder", "vae", "encoder.conv_in.weight", f32::NAN),
        nan("Inf in the VAE decoder", "vae", "decoder.conv_out.bias", f32::NEG_INFINITY),
        nan("NaN in the text encoder", "text_encoder", "model.language_model.embed_tokens.weight", f32::NAN),
    ];
    c.push(case(
        "a tensor missing",
        "missing tensor",
        edit_tensor("vae", "decoder.conv_out.bias", |_, _, _| None),
    ));
    c.push(case(
        "a tensor of the wrong shape",
        "has shape",
        edit_tensor("vae", "decoder.conv_out.bias", |dt, _, _| {
            Some((dt, Shape::from([2]), vec![0; 2 * dt.size()]))
        }),
    ));
    c.push(case("a shard truncated", "corrupt safetensors", |d| {
        let p = file_in(&d.join("transformer"), "-00001-of-");
        let b = std::fs::read(&p).unwrap();
        replace(&p, &b[..b.len() / 2]);
    }));
    c.push(case("a shard of 3 bytes", "8-byte header", |d| {
        replace(&file_in(&d.join("transformer"), "-00001-of-"), b"abc");
    }));
    c.push(case("a shard header of 2^63 bytes", "header length", |d| {
        let p = file_in(&d.join("transformer"), "-00001-of-");
        let mut b = std::fs::read(&p).unwrap();
        b[..8].copy_from_slice(&(1u64 << 63).to_le_bytes());
        replace(&p, &b);
    }));
    c.push(case("a shard header that is not JSON", "not valid JSON", |d| {
        replace(&file_in(&d.join("vae"), ".safetensors"), &raw_safetensors("{\"a\": [", 0));
    }));
    c.push(case("a tensor of shape [2^63] and 0 bytes", "overflows", |d| {
        let h = format!(r#"{{"x": {{"dtype": "F32", "shape": [{}], "data_offsets": [0, 0]}}}}"#, 1u64 << 63);
        replace(&file_in(&d.join("vae"), ".safetensors"), &raw_safetensors(&h, 0));
    }));
    c.push(case("a tensor of shape [2^32, 2^32]", "overflows", |d| {
        let h = r#"{"x": {"dtype": "BF16", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}"#;
        replace(&file_in(&d.join("vae"), ".safetensors"), &raw_safetensors(h, 0));
    }));
    c.push(case("overlapping tensors", "overlap", |d| {
        let h = r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#;
        replace(&file_in(&d.join("vae"), ".safetensors"), &raw_safetensors(h, 12));
    }));
    c.push(case("an int64 tensor", "unsupported dtype", |d| {
        let h = r#"{"a": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}"#;
        replace(&file_in(&d.join("vae"), ".safetensors"), &raw_safetensors(h, 16));
    }));
    c.push(case("offsets past the data", "out of range", |d| {
        let h = r#"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#;
        replace(&file_in(&d.join("vae"), ".safetensors"), &raw_safetensors(h, 4));
    }));
    c.push(case("300k stray tensors", "more", |d| {
        let mut h = String::from("{");
        for i in 0..300_000 {
            h.push_str(&format!(r#""stray.{i}": {{"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}},"#));
        }
        h.pop();
        h.push('}');
        let p = d.join("vae/extra.safetensors");
        replace(&p, &raw_safetensors(&h, 0));
    }));
    c.push(case("a shard is a FIFO", "FIFO", |d| fifo(&file_in(&d.join("transformer"), "-00001-of-"))));
    c.push(case("a shard is a folder", "directory", |d| {
        let p = file_in(&d.join("transformer"), "-00001-of-");
        remove(&p);
        std::fs::create_dir(&p).unwrap();
    }));
    c.push(case("a shard is /dev/zero", "device", |d| {
        let p = file_in(&d.join("transformer"), "-00001-of-");
        remove(&p);
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    }));
    c.push(case("a 64 GiB sparse shard", "safetensors", |d| {
        sparse(&file_in(&d.join("transformer"), "-00001-of-"), 64 << 30)
    }));
    c.push(case("a shard missing", "missing", |d| remove(&file_in(&d.join("transformer"), "-00002-of-"))));
    let index = |v: Value| {
        move |d: &Path| replace(&file_in(&d.join("transformer"), ".index.json"), v.to_string().as_bytes())
    };
    c.push(case("index without weight_map", "weight_map", index(json!({"metadata": {}}))));
    c.push(case("index weight_map a list", "weight_map", index(json!({"weight_map": []}))));
    c.push(case(
        "index points outside",
        "outside",
        index(json!({"weight_map": {"a": "../vae/x.safetensors"}})),
    ));
    c.push(case("index entry a number", "not a file name", index(json!({"weight_map": {"a": 5}}))));
    c.push(case(
        "index lists a tensor no shard holds",
        "does not hold",
        index(json!({"weight_map": {"nope": "diffusion_pytorch_model-00001-of-00003.safetensors"}})),
    ));
    c.push(case("index is a FIFO", "FIFO", |d| fifo(&file_in(&d.join("transformer"), ".index.json"))));
    c.push(case("index is a 1 GiB sparse file", "limit", |d| {
        sparse(&file_in(&d.join("transformer"), ".index.json"), 1 << 30)
    }));
    c.push(case("two index files", "several", |d| {
        std::fs::write(d.join("transformer/other.safetensors.index.json"), b"{}").unwrap();
    }));
    c.push(case("no weights at all", "no .safetensors", |d| {
        for e in std::fs::read_dir(d.join("vae")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "safetensors") {
                remove(&p);
            }
        }
    }));
    c
}
