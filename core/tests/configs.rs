//! Component configs as diffusers and transformers write them: absent and `null` keys take the
//! class defaults, and a bad value is an error that names the file and the key.

use joyrt_core::model_folder::{ProcessorConfig, SchedulerConfig};
use joyrt_core::models::dit::DitConfig;
use joyrt_core::models::qwen::QwenConfig;
use joyrt_core::models::vae::VaeConfig;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixture(part: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_model").join(part)
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `v` with the JSON-pointer `at` set to `x`.
fn with(v: &Value, at: &str, x: Value) -> Value {
    let mut v = v.clone();
    *v.pointer_mut(at).unwrap_or_else(|| panic!("{at} not in the config")) = x;
    v
}

#[track_caller]
fn assert_names(e: impl ToString, parts: &[&str]) {
    let e = e.to_string();
    for p in parts {
        assert!(e.contains(p), "{p:?} missing in: {e}");
    }
}

#[test]
fn dit_absent_and_null_keys_take_the_class_defaults() {
    let p = Path::new("transformer/config.json");
    let empty = DitConfig::from_json(&json!({"rope_dim_list": [16, 56, 56]}), p).unwrap();
    assert_eq!((empty.hidden_size, empty.num_attention_heads, empty.num_layers), (3072, 24, 20));
    assert_eq!((empty.theta, empty.out_channels), (256.0, 16));
    let v = json!({"in_channels": 8, "out_channels": null, "hidden_size": 64, "num_attention_heads": 4,
        "rope_dim_list": [4, 6, 6], "theta": null, "patch_size": null});
    let c = DitConfig::from_json(&v, p).unwrap();
    assert_eq!((c.out_channels, c.theta, c.patch_size), (8, 256.0, [1, 2, 2]));
    let full = DitConfig::from_json(&read(&fixture("transformer/config.json")), p).unwrap();
    assert_eq!((full.hidden_size, full.out_channels, full.theta), (64, 16, 10000.0));
}

#[test]
fn dit_bad_values_name_the_key_and_file() {
    let p = Path::new("transformer/config.json");
    let base = read(&fixture("transformer/config.json"));
    for (key, x) in [
        ("hidden_size", json!("64")),
        ("num_layers", json!(-2)),
        ("in_channels", json!(16.5)),
        ("patch_size", json!([1, 2])),
        ("rope_dim_list", json!([4, 6, "6"])),
        ("mlp_width_ratio", json!([4.0])),
    ] {
        let e = DitConfig::from_json(&with(&base, &format!("/{key}"), x), p).unwrap_err();
        assert_names(e, &[key, "transformer/config.json"]);
    }
}

#[test]
fn qwen_reads_the_published_layout_with_defaults() {
    let p = fixture("text_encoder/config.json");
    let base = read(&p);
    let c = QwenConfig::from_json(&base, &p).unwrap();
    assert_eq!((c.head_dim, c.mrope_section, c.rope_theta), (32, [6, 5, 5], 5_000_000.0));
    assert_eq!((c.vision.in_channels, c.vision.rope_theta), (3, 10000.0));
    assert_eq!(c.vision.deepstack_visual_indexes, [0, 2, 3]);
    // Older files spell the RoPE settings `rope_scaling` (or `rope_theta` at the top of
    // `text_config`); `null` means the default.
    let mut old = base.clone();
    let text = old["text_config"].as_object_mut().unwrap();
    let rope = text.remove("rope_parameters").unwrap();
    text.insert("rope_scaling".into(), json!({"mrope_section": rope["mrope_section"]}));
    text.insert("rope_theta".into(), json!(1000.0));
    text.insert("head_dim".into(), Value::Null); // hidden_size / num_attention_heads = 64 / 2
    text.insert("num_attention_heads".into(), json!(2));
    text.insert("rms_norm_eps".into(), Value::Null);
    old["vision_config"]["rope_parameters"] = Value::Null;
    old["vision_config"].as_object_mut().unwrap().remove("deepstack_visual_indexes");
    let o = QwenConfig::from_json(&old, &p).unwrap();
    assert_eq!((o.head_dim, o.mrope_section, o.rope_theta, o.rms_norm_eps), (32, [6, 5, 5], 1000.0, 1e-6));
    assert_eq!((o.vision.rope_theta, o.vision.deepstack_visual_indexes.len()), (10000.0, 0));
}

#[test]
fn qwen_bad_or_missing_values_name_the_key_and_file() {
    let p = Path::new("text_encoder/config.json");
    let base = read(&fixture("text_encoder/config.json"));
    for (at, x, key) in [
        ("/text_config/hidden_size", json!("64"), "text_config.hidden_size"),
        ("/text_config/rope_parameters/mrope_section", json!([6, 5]), "mrope_section"),
        ("/vision_config/depth", Value::Null, "depth"),
        ("/vision_config/deepstack_visual_indexes", json!([0, 9]), "deepstack_visual_indexes"),
        ("/image_token_id", json!(-1), "image_token_id"),
        ("/text_config/num_key_value_heads", json!(3), "kv heads"),
    ] {
        let e = QwenConfig::from_json(&with(&base, at, x), p).unwrap_err();
        assert_names(e, &[key, "text_encoder/config.json"]);
    }
    let mut no_vision = base.clone();
    no_vision.as_object_mut().unwrap().remove("vision_config");
    assert_names(QwenConfig::from_json(&no_vision, p).unwrap_err(), &["vision_config", "text_encoder"]);
}

#[test]
fn scheduler_and_processor_configs() {
    let dir = std::env::temp_dir().join(format!("joyrt-configs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sched = dir.join("scheduler_config.json");
    let write = |p: &Path, v: Value| std::fs::write(p, v.to_string()).unwrap();
    write(&sched, json!({"shift": null, "shift_terminal": null, "use_dynamic_shifting": false}));
    assert_eq!(SchedulerConfig::from_file(&sched).unwrap().shift, 1.0);
    write(&sched, json!({"shift": "3"}));
    assert_names(SchedulerConfig::from_file(&sched).unwrap_err(), &["shift", "scheduler_config.json"]);
    write(&sched, json!({"use_dynamic_shifting": true}));
    assert_names(SchedulerConfig::from_file(&sched).unwrap_err(), &["use_dynamic_shifting"]);

    let fx = ProcessorConfig::from_dir(&fixture("processor")).unwrap();
    assert_eq!((fx.patch_size, fx.min_pixels, fx.max_pixels), (16, 4096, 16_777_216));
    let pre = dir.join("preprocessor_config.json");
    write(&pre, json!({"min_pixels": 1024, "image_mean": null, "size": null}));
    let c = ProcessorConfig::from_dir(&dir).unwrap();
    assert_eq!(c, ProcessorConfig { min_pixels: 1024, ..Default::default() });
    write(&pre, json!({"image_std": [0.5, 0.5]}));
    assert_names(ProcessorConfig::from_dir(&dir).unwrap_err(), &["image_std", "preprocessor_config.json"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn absurd_values_name_the_field_and_the_allowed_range() {
    let dit = read(&fixture("transformer/config.json"));
    let p = Path::new("transformer/config.json");
    for (key, x) in [
        ("/num_layers", json!(1_000_000_000u64)),
        ("/hidden_size", json!(u64::MAX)),
        ("/theta", json!(-1.0)),
        ("/rope_dim_list", json!([1u64 << 63, 1u64 << 63, 16])),
    ] {
        let e = DitConfig::from_json(&with(&dit, key, x), p).unwrap_err();
        assert_names(e, &[&key[1..], "allowed range", "transformer/config.json"]);
    }
    let qwen = read(&fixture("text_encoder/config.json"));
    let p = Path::new("text_encoder/config.json");
    for (key, x, name) in [
        ("/vision_config/depth", json!(1_000_000_000u64), "vision_config.depth"),
        ("/vision_config/temporal_patch_size", json!(1u64 << 32), "temporal_patch_size"),
        ("/text_config/rope_parameters/rope_theta", json!(-5.0), "rope_theta"),
        ("/text_config/rope_parameters/mrope_section", json!([1u64 << 63, 1u64 << 63, 4]), "mrope_section"),
    ] {
        let e = QwenConfig::from_json(&with(&qwen, key, x), p).unwrap_err();
        assert_names(e, &[name, "allowed range"]);
    }
    let vae = read(&fixture("vae/config.json"));
    let p = Path::new("vae/config.json");
    let e = VaeConfig::from_json(&with(&vae, "/num_res_blocks", json!(1_000_000_000u64)), p).unwrap_err();
    assert_names(e, &["num_res_blocks", "[1, 32]"]);
    let e = VaeConfig::from_json(&with(&vae, "/latents_std", json!(vec![1e-9; 16])), p).unwrap_err();
    assert_names(e, &["latents_std[0]", "allowed range"]);
}

#[test]
fn the_published_configs_are_within_the_limits() {
    let full = |name: &str| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src/configs/full").join(name);
        (read(&p), p)
    };
    let (v, p) = full("transformer.json");
    assert_eq!(DitConfig::from_json(&v, &p).unwrap(), DitConfig::full());
    let (v, p) = full("vae.json");
    assert_eq!(VaeConfig::from_json(&v, &p).unwrap(), VaeConfig::full());
    let (v, p) = full("text_encoder.json");
    assert_eq!(QwenConfig::from_json(&v, &p).unwrap(), QwenConfig::full());
}
