//! The `joyrt` binary as a user runs it: make a tiny model, inspect it, edit with it, and get a
//! clear one-line error (non-zero exit, no panic, no partial output) for each kind of bad input.

use joyrt_core::weights::{write_safetensors, Checkpoint};
use joyrt_core::Shape;

mod support;
use support::*;

fn input_png() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/pipeline/input.png").to_string()
}

#[test]
fn make_model_info_lists_parameter_counts() {
    let o = joyrt(&["info", tiny_model().to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for n in ["262784", "668043", "409504", "no problems found"] {
        assert!(t.contains(n), "{n} missing in {t}");
    }
    // The transformer is sharded with an index, like the published folder.
    assert!(tiny_model().join("transformer/diffusion_pytorch_model.safetensors.index.json").is_file());
}

#[test]
fn edit_with_a_made_model_writes_the_bucket_sized_png() {
    let out = work().join("edited.png");
    let o = joyrt(&[
        "edit",
        "--model",
        tiny_model().to_str().unwrap(),
        "--image",
        &input_png(),
        "--prompt",
        "Make it blue",
        "-o",
        out.to_str().unwrap(),
        "--steps",
        "2",
        "--base-size",
        "256",
        "--json",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let img = image::open(&out).unwrap();
    assert_eq!(
        (img.width() as u64, img.height() as u64),
        (summary["width"].as_u64().unwrap(), summary["height"].as_u64().unwrap())
    );
    // 100x70 input → the closest bucket of the 256 base by aspect ratio.
    assert_eq!((img.width(), img.height()), (288, 224));
    assert!(summary["timings_s"]["denoise"].as_f64().unwrap() > 0.0);
}

#[test]
fn builtin_model_runs_without_model_flag() {
    let out = work().join("builtin.png");
    let o = joyrt(&[
        "edit",
        "--image",
        &input_png(),
        "--prompt",
        "Add a hat",
        "-o",
        out.to_str().unwrap(),
        "--steps",
        "2",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("built-in tiny random-weight model"), "{t}");
    assert!(out.is_file());
}

#[test]
fn corrupt_and_missing_tensors_are_all_reported() {
    let broken = work().join("broken-tensors");
    copy_dir(tiny_model(), &broken);
    let vae = broken.join("vae");
    let ck = Checkpoint::open(&vae).unwrap();
    let mut tensors = Vec::new();
    for n in ck.names() {
        let (info, bytes) = ck.raw(n).unwrap();
        let dt = info.dtype.float().unwrap();
        match n {
            "decoder.conv_out.bias" => continue, // missing
            "encoder.conv_in.bias" => {
                tensors.push((n.to_string(), dt, Shape::from([7]), dt.encode_f32(&[0.0; 7])))
            }
            _ => tensors.push((n.to_string(), dt, info.shape, bytes.to_vec())),
        }
    }
    tensors.push(("stray.weight".into(), joyrt_core::DType::F32, Shape::from([2]), vec![0; 8]));
    drop(ck);
    for e in std::fs::read_dir(&vae).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors" || x == "json") && !p.ends_with("config.json") {
            std::fs::remove_file(p).unwrap();
        }
    }
    write_safetensors(&vae.join("diffusion_pytorch_model.safetensors"), &tensors).unwrap();
    let o = joyrt(&["info", broken.to_str().unwrap()]);
    let t = text(&o);
    assert_clean_error(&o, "3 problem(s)");
    for p in [
        "missing tensor decoder.conv_out.bias",
        "unexpected tensor stray.weight",
        "encoder.conv_in.bias has shape [7]",
    ] {
        assert!(t.contains(p), "{p} missing in {t}");
    }
    // Editing with it fails before any output is written.
    let out = work().join("never.png");
    let o = joyrt(&[
        "edit",
        "--model",
        broken.to_str().unwrap(),
        "--image",
        &input_png(),
        "--prompt",
        "x",
        "-o",
        out.to_str().unwrap(),
        "--steps",
        "1",
        "--base-size",
        "256",
    ]);
    assert_clean_error(&o, "missing tensor decoder.conv_out.bias");
    assert!(!out.exists());

    // A truncated shard.
    let trunc = work().join("truncated");
    copy_dir(tiny_model(), &trunc);
    let shard = std::fs::read_dir(trunc.join("transformer"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy().ends_with("-00001-of-00002.safetensors")
                || p.to_string_lossy().contains("-00001-of-")
        })
        .expect("a sharded transformer");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_error(&joyrt(&["info", trunc.to_str().unwrap()]), "corrupt safetensors file");
}

#[test]
fn bad_input_gets_a_clear_error_and_no_output() {
    let out = work().join("bad.png");
    let o_str = out.to_str().unwrap();
    let model = tiny_model().to_str().unwrap().to_string();
    let not_image = work().join("not-an-image.png");
    std::fs::write(&not_image, b"this is text").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--image".into(), "/nonexistent/in.png".into()], "cannot read input image"),
        (vec!["--image".into(), not_image.to_str().unwrap().into()], "not a PNG or JPEG"),
        (vec!["--image".into(), input_png(), "--backend".into(), "cuda".into()], "not available"),
        (
            vec!["--image".into(), input_png(), "--steps".into(), "0".into()],
            "`steps` = 0 is outside the allowed range",
        ),
        (vec!["--image".into(), input_png(), "--dtype".into(), "int3".into()], "unknown dtype"),
    ];
    for (extra, expect) in cases {
        let mut args: Vec<String> = vec![
            "edit".into(),
            "--model".into(),
            model.clone(),
            "--prompt".into(),
            "p".into(),
            "-o".into(),
            o_str.into(),
            "--base-size".into(),
            "256".into(),
        ];
        args.extend(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_clean_error(&joyrt(&refs), expect);
        assert!(!out.exists(), "{expect}: partial output left");
    }
    let long = "word ".repeat(5000);
    let o = joyrt(&[
        "edit",
        "--model",
        &model,
        "--image",
        &input_png(),
        "--prompt",
        &long,
        "-o",
        o_str,
        "--base-size",
        "256",
    ]);
    assert_clean_error(&o, "too long");
    let o = joyrt(&[
        "edit",
        "--model",
        "/nonexistent/model",
        "--image",
        &input_png(),
        "--prompt",
        "p",
        "-o",
        o_str,
    ]);
    assert_clean_error(&o, "does not exist");
    let o = joyrt(&[
        "edit",
        "--model",
        &model,
        "--image",
        &input_png(),
        "--prompt",
        "p",
        "-o",
        o_str,
        "--max-memory-gb",
        "0.001",
    ]);
    assert_clean_error(&o, "out of memory");
    // A missing component folder.
    let partial = work().join("no-vae");
    copy_dir(tiny_model(), &partial);
    std::fs::remove_dir_all(partial.join("vae")).unwrap();
    let o = joyrt(&[
        "edit",
        "--model",
        partial.to_str().unwrap(),
        "--image",
        &input_png(),
        "--prompt",
        "p",
        "-o",
        o_str,
    ]);
    assert_clean_error(&o, "vae");
    // An output folder that does not exist.
    let o = joyrt(&[
        "edit",
        "--image",
        &input_png(),
        "--prompt",
        "p",
        "-o",
        "/nonexistent/dir/out.png",
        "--steps",
        "1",
    ]);
    assert_clean_error(&o, "does not exist");
    assert!(!out.exists());
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back() {
    let out = work().join("cuda.png");
    let args =
        ["edit", "--image", &input_png(), "--prompt", "a hat", "--steps", "1", "-o", out.to_str().unwrap()];
    if let Ok(b) = joyrt_cuda::CudaBackend::new() {
        println!(
            "SKIPPED: this machine has a CUDA device ({}), so there is no error to check",
            joyrt_core::Backend::name(&b)
        );
        return;
    }
    let o = joyrt(&[&args[..], &["--backend", "cuda"]].concat());
    assert_clean_error(&o, "backend cuda is not available");
    assert!(!out.exists(), "no output file on error");
    let o = joyrt(&[&args[..], &["--backend", "auto", "--json"]].concat());
    assert!(o.status.success(), "auto must fall back: {}", text(&o));
    assert!(out.exists());
}

/// A model in a Hugging Face cache as huggingface_hub lays it out: snapshot files are relative
/// links to content-addressed blobs, `refs/main` names the snapshot.
#[cfg(unix)]
#[test]
fn a_repository_id_finds_the_model_in_the_hugging_face_cache() {
    fn link_blobs(from: &std::path::Path, snap: &std::path::Path, blobs: &std::path::Path, depth: usize) {
        std::fs::create_dir_all(snap).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let to = snap.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                link_blobs(&e.path(), &to, blobs, depth + 1);
            } else {
                // A blob is named by its content's hash; a running number stands in for it.
                let blob = format!("blob{}", std::fs::read_dir(blobs).unwrap().count());
                std::fs::copy(e.path(), blobs.join(&blob)).unwrap();
                std::os::unix::fs::symlink(format!("{}blobs/{blob}", "../".repeat(depth + 2)), &to).unwrap();
            }
        }
    }
    let cache = work().join("hf-cache");
    let repo = cache.join("models--someorg--tiny-edit");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd\n").unwrap();
    link_blobs(tiny_model(), &repo.join("snapshots/0123abcd"), &repo.join("blobs"), 0);

    let o = joyrt_cmd(&["info", "someorg/tiny-edit"]).env("HF_HUB_CACHE", &cache).output().unwrap();
    let t = text(&o);
    assert!(o.status.success() && t.contains("no problems found") && t.contains("snapshots/0123abcd"), "{t}");
    let out = work().join("from-hf-cache.png");
    let o = joyrt_cmd(&[
        "edit",
        "--model",
        "someorg/tiny-edit",
        "--backend",
        "cpu",
        "--image",
        &input_png(),
        "--prompt",
        "x",
        "--steps",
        "1",
        "-o",
        out.to_str().unwrap(),
    ])
    .env("HF_HOME", cache.parent().unwrap().join("unused"))
    .env("HF_HUB_CACHE", &cache)
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.is_file());
    // Absent and offline: an error that says how to get it (downloads: tests/hf_download.rs, which
    // runs its own hub; this test must not reach the real one).
    let o = joyrt_cmd(&["info", "someorg/absent"])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_clean_error(&o, "huggingface-cli download someorg/absent");
}
