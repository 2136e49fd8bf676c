//! `joyrt quantize` as a user runs it: each format from the tiny made model, read by `info` and
//! edited with on the CPU, wgpu and the emulated CUDA backend; and every kind of bad input a clear error that leaves no output folder.

use std::path::{Path, PathBuf};
use std::process::Output;

mod support;
use support::*;

fn quantize(model: &Path, format: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args =
        vec!["quantize", "--model", model.to_str().unwrap(), "--format", format, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    joyrt(&args)
}

/// `joyrt edit` of the pipeline fixture's image, one step at base size 256, then `extra`.
fn edit(model: &Path, out: &Path, backend: &str, extra: &[&str]) -> Output {
    let image = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/pipeline/input.png");
    let mut args = vec![
        "edit",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image,
        "--prompt",
        "Make it blue",
        "-o",
        out.to_str().unwrap(),
        "--steps",
        "1",
        "--base-size",
        "256",
        "--backend",
        backend,
    ];
    args.extend_from_slice(extra);
    joyrt(&args)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn each_format_quantizes_the_made_model_and_edits_on_the_cpu() {
    for (format, shown) in [
        ("int8", "int8 (block 32) × 16"),
        ("int4", "int4 (block 32) × 16"),
        ("fp8", "fp8 e4m3 (per-row scale) × 16"),
    ] {
        let q = work().join(format!("tiny-{format}"));
        let o = quantize(tiny_model(), format, &q, &[]);
        assert!(o.status.success(), "{}", text(&o));
        // The transformer's 16 block linears and the text encoder's 44 are quantized.
        assert!(text(&o).contains("text_encoder: 44 weights quantized"), "{}", text(&o));
        let o = joyrt(&["info", q.to_str().unwrap()]);
        let t = text(&o);
        assert!(o.status.success() && t.contains("no problems found"), "{t}");
        assert!(t.contains(&format!("quantized: {shown}")), "{t}");
        let config = std::fs::read_to_string(q.join("transformer/config.json")).unwrap();
        assert!(
            config.contains("\"quant_method\": \"joyrt\"")
                && config.contains(&format!("\"format\": \"{format}\""))
        );
        // Everything besides the two quantized components is a copy.
        for f in [
            "vae/config.json",
            "tokenizer/tokenizer.json",
            "scheduler/scheduler_config.json",
            "model_index.json",
        ] {
            assert_eq!(
                std::fs::read(q.join(f)).unwrap(),
                std::fs::read(tiny_model().join(f)).unwrap(),
                "{f}"
            );
        }
        let png = work().join(format!("edit-{format}.png"));
        let o = edit(&q, &png, "cpu", &[]);
        assert!(o.status.success(), "{}", text(&o));
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (288, 224));
    }
}

/// `--dtype fp8` (W8A8) edits an fp8 folder on the CPU reference, refuses a folder with no fp8
/// weights, and refuses the emulated sm_80 GPU (no FP8 tensor cores).
#[test]
fn dtype_fp8_runs_w8a8_where_it_can_and_says_why_not_elsewhere() {
    let q = work().join("tiny-fp8-w8a8");
    let o = quantize(tiny_model(), "fp8", &q, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let run =
        |model: &Path, png: &Path, backend: &str| edit(model, png, backend, &["--dtype", "fp8", "--json"]);
    let png = work().join("edit-w8a8.png");
    let o = run(&q, &png, "cpu");
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((summary["dtype"].as_str(), summary["w8a8"].as_bool()), (Some("bf16"), Some(true)));
    assert_eq!(image::open(&png).unwrap().width(), 288);

    let refused = work().join("edit-w8a8-refused.png");
    let o = run(tiny_model(), &refused, "cpu");
    assert!(!o.status.success() && text(&o).contains("has none"), "{}", text(&o));
    let o = joyrt_cmd(&[
        "bench",
        "--backend",
        "cuda-emulated",
        "--dtype",
        "fp8",
        "--parts",
        "ops",
        "--iters",
        "1",
    ])
    .env("JOYRT_CUDA_EMU_ARCH", "sm_80")
    .output()
    .unwrap();
    let t = text(&o);
    // (Without a C++ compiler the emulated backend itself is unavailable.)
    assert!(!o.status.success() && (t.contains("needs FP8 mma.sync") || t.contains("not available")), "{t}");
    assert!(!refused.exists());
}

#[test]
fn one_component_can_be_quantized_alone() {
    let q = work().join("tiny-int8-dit");
    let o = quantize(tiny_model(), "int8", &q, &["--components", "transformer"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&joyrt(&["info", q.to_str().unwrap()]));
    assert_eq!(t.matches("quantized: int8").count(), 1, "{t}");
}

/// `--link-weights`: the text encoder left dense is the input's file (one inode, two links),
/// not a copy; the quantized transformer is new; the folder reads and edits as the copied one.
#[test]
#[cfg(unix)]
fn unquantized_weights_can_be_hard_linked() {
    use std::os::unix::fs::MetadataExt;
    // A private copy of the fixture, so the link count is this test's alone.
    let src = work().join("tiny-for-links");
    let o = joyrt(&["make-model", "--config", "tiny", "-o", src.to_str().unwrap(), "--overwrite"]);
    assert!(o.status.success(), "{}", text(&o));
    let q = work().join("tiny-int8-dit-linked");
    let o = quantize(&src, "int8", &q, &["--components", "transformer", "--link-weights", "--overwrite"]);
    assert!(o.status.success(), "{}", text(&o));
    let te = entries(&src.join("text_encoder")).into_iter().find(|n| n.ends_with(".safetensors")).unwrap();
    let te = Path::new("text_encoder").join(te);
    let (a, b) = (std::fs::metadata(src.join(&te)).unwrap(), std::fs::metadata(q.join(&te)).unwrap());
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{} is not linked", te.display());
    assert_eq!(b.nlink(), 2);
    let (a, b) = (
        std::fs::metadata(src.join("transformer/config.json")).unwrap(),
        std::fs::metadata(q.join("transformer/config.json")).unwrap(),
    );
    assert_ne!(a.ino(), b.ino(), "configs are written, never linked");
    let o = joyrt(&["info", q.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("no problems found"), "{}", text(&o));
}

/// `bench --check-dequantized` (the check the full-size int8 forward reports in
/// docs/benchmarks.md) runs the DiT once with the blocked quantized kernel and once with each
/// weight dequantized whole; on the made model they agree. Its flags are refused where they
/// cannot apply.
#[test]
fn bench_checks_a_quantized_forward_against_the_dequantized_one() {
    let q = work().join("tiny-int4-dit-bench");
    let o = quantize(tiny_model(), "int4", &q, &["--components", "transformer"]);
    assert!(o.status.success(), "{}", text(&o));
    let args = ["bench", "--backend", "cpu", "--model", q.to_str().unwrap(), "--parts", "forward"];
    let o = joyrt(&[&args[..], &["--size", "64", "--iters", "1", "--check-dequantized", "--json"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let check = &doc["dit"]["dequantized_check"];
    assert_eq!(check["agree"], true, "{check}");
    assert!(check["elements"].as_u64().unwrap() > 0, "{check}");
    assert!(check["output_rms"].as_f64().unwrap() > 0.0, "{check}");
    assert!(doc["dit"]["peak_rss_bytes"].as_u64().unwrap() > 0, "{doc}");

    let o = joyrt(&["bench", "--backend", "cuda-emulated", "--parts", "forward", "--check-dequantized"]);
    assert_clean_error(&o, "needs --parts forward and --backend cpu");
    let o = joyrt(&["bench", "--full-dit-format", "int8"]);
    assert_clean_error(&o, "--full-dit");
    let o = joyrt(&["bench", "--full-dit", "--full-dit-format", "int3"]);
    assert_clean_error(&o, "unknown quantized format");
}

/// A quantized folder edits on the GPU backends too (wgpu on this machine's adapter, the CUDA
/// kernels through their CPU emulation), close to the CPU's result on the same quantized weights.
#[test]
fn quantized_folders_edit_on_wgpu_and_cuda_emulated_like_on_the_cpu() {
    for (format, backend) in [("int4", "wgpu"), ("fp8", "wgpu"), ("int8", "cuda-emulated")] {
        let q = work().join(format!("tiny-{format}-{backend}"));
        if !q.exists() {
            assert!(quantize(tiny_model(), format, &q, &[]).status.success());
        }
        let cpu = work().join(format!("{format}-{backend}-cpu.png"));
        let o = edit(&q, &cpu, "cpu", &[]);
        assert!(o.status.success(), "{}", text(&o));
        let out = work().join(format!("{format}-{backend}.png"));
        let o = edit(&q, &out, backend, &[]);
        let t = text(&o);
        if t.contains("not available") {
            println!("SKIPPED {backend}: {t}");
            continue;
        }
        assert!(o.status.success(), "{format} on {backend}: {t}");
        let psnr = psnr_rgb8(&image::open(&out).unwrap().to_rgb8(), &image::open(&cpu).unwrap().to_rgb8());
        println!("{format} on {backend} vs cpu: {psnr:.1} dB");
        assert!(psnr > 40.0, "{format} on {backend}: {psnr:.1} dB against the CPU");
    }
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_no_output() {
    let model = tiny_model();
    let out = work().join("bad-out");
    let cases: Vec<(Vec<&str>, &str, PathBuf)> = vec![
        (vec!["--format", "int3"], "unknown --format \"int3\"", model.clone()),
        (vec!["--format", "int8", "--components", "vae"], "the vae has no linear layers", model.clone()),
        (vec!["--format", "int8", "--components", "unet"], "unknown component \"unet\"", model.clone()),
        (vec!["--format", "int8", "--max-shard-gb", "0"], "--max-shard-gb must be positive", model.clone()),
        (vec!["--format", "int8"], "does not exist", work().join("no-such-model")),
    ];
    for (args, expect, m) in cases {
        let mut all = vec!["quantize", "--model", m.to_str().unwrap(), "-o", out.to_str().unwrap()];
        all.extend(args);
        assert_clean_error(&joyrt(&all), expect);
        assert!(!out.exists(), "{expect}");
    }
    // An already quantized folder.
    let q = work().join("tiny-int8-again");
    assert!(quantize(model, "int8", &q, &[]).status.success());
    assert_clean_error(&quantize(&q, "int4", &out, &[]), "already quantized");
    assert!(!out.exists());
    // A transformer shard that lost a tensor: refused before anything is written.
    let broken = work().join("tiny-broken");
    copy_dir(model, &broken);
    let shard = broken.join("transformer/diffusion_pytorch_model-00003-of-00003.safetensors");
    let last = joyrt_core::weights::Checkpoint::open(&shard).unwrap();
    let kept: Vec<(String, joyrt_core::DType, joyrt_core::Shape, Vec<u8>)> = last
        .names()
        .into_iter()
        .filter(|n| *n != "proj_out.weight")
        .map(|n| {
            let (i, b) = last.raw(n).unwrap();
            (n.to_string(), i.dtype.float().unwrap(), i.shape, b.to_vec())
        })
        .collect();
    drop(last);
    joyrt_core::weights::write_safetensors(&shard, &kept).unwrap();
    // (The index still lists it, so the checkpoint itself is refused.)
    assert_clean_error(&quantize(&broken, "int8", &out, &[]), "tensor proj_out.weight is listed");
    assert!(!out.exists());
    // The output inside the model folder, and a non-empty output without --overwrite.
    assert_clean_error(&quantize(model, "int8", &model.join("q"), &[]), "inside the model folder");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"x").unwrap();
    assert_clean_error(&quantize(model, "int8", &out, &[]), "--overwrite");
    assert_eq!(entries(&out), ["keep.txt"]);
}
