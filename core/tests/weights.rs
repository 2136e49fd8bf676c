//! Weight loading: sharded vs single-file equality, dtype conversion, the exact-set check, key
//! renaming, and every kind of corrupt file giving an error (never a panic).

use joyrt_core::weights::*;
use joyrt_core::{DType, Error, Rng, Shape};
use joyrt_cpu::CpuBackend;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("joyrt-weights-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sample() -> Vec<(String, DType, Shape, Vec<u8>)> {
    let mut rng = Rng::new(5);
    let specs: [(&str, DType, &[usize]); 6] = [
        ("a.weight", DType::BF16, &[7, 5]),
        ("a.bias", DType::F32, &[7]),
        ("b.norm", DType::F16, &[3, 1, 1]),
        ("c.table", DType::F32, &[4, 6, 2]),
        ("d.scalar", DType::BF16, &[]),
        ("e.empty", DType::F32, &[0, 3]),
    ];
    specs
        .iter()
        .map(|(n, d, s)| {
            let shape = Shape::from(*s);
            (n.to_string(), *d, shape.clone(), d.encode_f32(&rng.uniform_vec(shape.numel(), -2.0, 2.0)))
        })
        .collect()
}

fn write_sharded(dir: &Path, tensors: &[(String, DType, Shape, Vec<u8>)], shards: usize) {
    let mut map = BTreeMap::new();
    let mut total = 0u64;
    for s in 0..shards {
        let name = format!("model-{:05}-of-{shards:05}.safetensors", s + 1);
        let part: Vec<_> =
            tensors.iter().enumerate().filter(|(i, _)| i % shards == s).map(|(_, t)| t).collect();
        let header: Vec<(String, DType, Shape)> =
            part.iter().map(|t| (t.0.clone(), t.1, t.2.clone())).collect();
        let mut w = ShardWriter::create(&dir.join(&name), &header).unwrap();
        for t in &part {
            // Stream each tensor in two pieces to exercise partial writes.
            let mid = t.3.len() / 2;
            w.write(&t.3[..mid]).unwrap();
            w.write(&t.3[mid..]).unwrap();
            map.insert(t.0.clone(), name.clone());
            total += t.3.len() as u64;
        }
        w.finish().unwrap();
    }
    write_index(&dir.join("model.safetensors.index.json"), &map, total).unwrap();
}

#[test]
fn sharded_equals_single_file() {
    let dir = tmpdir("shard");
    let t = sample();
    let single = dir.join("single.safetensors");
    write_safetensors(&single, &t).unwrap();
    let sharded = dir.join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    write_sharded(&sharded, &t, 3);

    let a = Checkpoint::open(&single).unwrap();
    let b = Checkpoint::open(&sharded).unwrap(); // a folder with an index
    let c = Checkpoint::open(&sharded.join("model.safetensors.index.json")).unwrap();
    assert_eq!(a.names(), b.names());
    assert_eq!(b.names(), c.names());
    assert_eq!(a.total_bytes(), t.iter().map(|x| x.3.len() as u64).sum::<u64>());
    let cpu = CpuBackend::default();
    for (name, dtype, shape, bytes) in &t {
        let (ia, ra) = a.raw(name).unwrap();
        let (ib, rb) = b.raw(name).unwrap();
        assert_eq!((ia.dtype, &ia.shape), ((*dtype).into(), shape));
        assert_eq!(ia, ib);
        assert_eq!((&ra[..], &rb[..]), (&bytes[..], &bytes[..]));
        for to in DType::ALL {
            let la = a.load(&cpu, name, to).unwrap();
            let lb = b.load(&cpu, name, to).unwrap();
            assert_eq!(la.dims(), shape.dims());
            assert_eq!(la.dtype(), to);
            assert_eq!(la.to_bytes().unwrap(), lb.to_bytes().unwrap(), "{name} as {to}");
            let want: Vec<f32> = dtype.decode_f32(bytes).iter().map(|&v| to.round_f32(v)).collect();
            assert_eq!(la.to_f32_vec().unwrap(), want, "{name} {dtype}→{to}");
        }
    }
    // A folder of shards without an index loads too.
    std::fs::remove_file(sharded.join("model.safetensors.index.json")).unwrap();
    assert_eq!(Checkpoint::open(&sharded).unwrap().names(), a.names());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_exact_reports_every_problem_at_once() {
    let dir = tmpdir("exact");
    let p = dir.join("m.safetensors");
    write_safetensors(&p, &sample()).unwrap();
    let ck = Checkpoint::open(&p).unwrap();
    let expected = vec![
        ParamSpec::new("a.weight", [7, 5]),
        ParamSpec::new("a.bias", [8]),
        ParamSpec::new("b.norm", [3, 1, 1]),
        ParamSpec::new("c.table", [4, 6, 2]),
        ParamSpec::new("d.scalar", Shape::new(vec![])),
        ParamSpec::new("z.missing", [2]),
    ];
    let err = ck.check_exact("test", &expected, &[]).unwrap_err();
    let Error::Weights { problems, .. } = &err else { panic!("{err}") };
    assert_eq!(problems.len(), 3, "{err}");
    let text = err.to_string();
    assert!(text.contains("missing tensor z.missing"), "{text}");
    assert!(text.contains("tensor a.bias has shape [7], expected [8]"), "{text}");
    assert!(text.contains("unexpected tensor e.empty"), "{text}");
    let mut ok = expected.clone();
    ok[1] = ParamSpec::new("a.bias", [7]);
    ok.pop();
    ck.check_exact("test", &ok, &["e.empty"]).unwrap();
    assert_eq!(param_count(&ok), 35 + 7 + 3 + 48 + 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn renames_apply_and_collisions_are_errors() {
    let dir = tmpdir("rename");
    let p = dir.join("m.safetensors");
    write_safetensors(&p, &sample()).unwrap();
    let ck = Checkpoint::open(&p).unwrap().with_renames(|n| n.replace("a.", "x.")).unwrap();
    assert!(ck.info("x.weight").is_some() && ck.info("a.weight").is_none());
    let err = Checkpoint::open(&p).unwrap().with_renames(|_| "same".into()).err().unwrap();
    assert!(err.to_string().contains("both map to same"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes a file with a hand-made header and data section.
fn raw_file(path: &Path, header: &str, data: &[u8]) {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    std::fs::write(path, b).unwrap();
}

type Maker<'a> = Box<dyn Fn(&Path) + 'a>;

#[test]
fn corrupt_files_are_errors_naming_the_problem() {
    let dir = tmpdir("corrupt");
    let good = dir.join("good.safetensors");
    write_safetensors(&good, &sample()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cases: Vec<(&str, Maker, &str)> = vec![
        (
            "truncated data",
            Box::new(|p: &Path| std::fs::write(p, &bytes[..bytes.len() - 10]).unwrap()),
            "out of range",
        ),
        (
            "truncated header",
            Box::new(|p: &Path| std::fs::write(p, &bytes[..20]).unwrap()),
            "exceeds the file size",
        ),
        (
            "tiny file",
            Box::new(|p: &Path| std::fs::write(p, [1u8, 2, 3]).unwrap()),
            "shorter than the 8-byte header",
        ),
        ("bad json", Box::new(|p: &Path| raw_file(p, "{\"a\": [1, 2", &[])), "not valid JSON"),
        ("not an object", Box::new(|p: &Path| raw_file(p, "[1, 2]", &[])), "not a JSON object"),
        (
            "unknown dtype",
            Box::new(|p: &Path| {
                raw_file(p, r#"{"w":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#, &[0; 16])
            }),
            "unsupported dtype I64",
        ),
        (
            "offsets out of range",
            Box::new(|p: &Path| {
                raw_file(p, r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &[0; 4])
            }),
            "out of range",
        ),
        (
            "size mismatch",
            Box::new(|p: &Path| {
                raw_file(p, r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &[0; 8])
            }),
            "12 expected",
        ),
        (
            "overlap",
            Box::new(|p: &Path| {
                raw_file(
                    p,
                    r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                    &[0; 12],
                )
            }),
            "overlap",
        ),
        (
            "bad shape",
            Box::new(|p: &Path| {
                raw_file(p, r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, &[0; 4])
            }),
            "shape is not a list",
        ),
    ];
    for (what, make, expect) in cases {
        let p = dir.join(format!("{}.safetensors", what.replace(' ', "_")));
        make(&p);
        let err = Checkpoint::open(&p).err().unwrap_or_else(|| panic!("{what}: opened"));
        let msg = err.to_string();
        assert!(
            msg.contains(expect) && msg.contains(p.file_name().unwrap().to_str().unwrap()),
            "{what}: {msg}"
        );
    }
    assert!(Checkpoint::open(&dir.join("absent.safetensors")).is_err());

    // Index problems: a missing shard, and a tensor the named shard does not hold.
    let sh = dir.join("sharded");
    std::fs::create_dir_all(&sh).unwrap();
    write_sharded(&sh, &sample(), 2);
    let index = sh.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, text.replace("\"a.bias\"", "\"ghost\"")).unwrap();
    let msg = Checkpoint::open(&sh).err().unwrap().to_string();
    assert!(msg.contains("ghost") && msg.contains("does not hold it"), "{msg}");
    std::fs::write(&index, text.clone()).unwrap();
    std::fs::remove_file(sh.join("model-00002-of-00002.safetensors")).unwrap();
    let msg = Checkpoint::open(&sh).err().unwrap().to_string();
    assert!(msg.contains("shard model-00002-of-00002.safetensors is missing"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dit_key_spellings() {
    assert_eq!(
        dit_key_to_diffusers("double_blocks.3.img_attn_qkv.weight"),
        "double_blocks.3.attn.img_attn_qkv.weight"
    );
    assert_eq!(
        dit_key_to_diffusers("double_blocks.0.txt_attn_k_norm.weight"),
        "double_blocks.0.attn.txt_attn_k_norm.weight"
    );
    for same in [
        "double_blocks.3.attn.img_attn_proj.bias",
        "double_blocks.1.img_mlp.net.2.weight",
        "img_in.weight",
        "double_blocks.2.txt_mod.modulate_table",
    ] {
        assert_eq!(dit_key_to_diffusers(same), same);
    }
}

#[test]
fn wan_original_keys_map_to_diffusers() {
    let cases = [
        ("encoder.conv1.weight", "encoder.conv_in.weight"),
        ("encoder.downsamples.0.residual.0.gamma", "encoder.down_blocks.0.norm1.gamma"),
        ("encoder.downsamples.3.residual.2.bias", "encoder.down_blocks.3.conv1.bias"),
        ("encoder.downsamples.3.residual.3.gamma", "encoder.down_blocks.3.norm2.gamma"),
        ("encoder.downsamples.3.residual.6.weight", "encoder.down_blocks.3.conv2.weight"),
        ("encoder.downsamples.3.shortcut.weight", "encoder.down_blocks.3.conv_shortcut.weight"),
        ("encoder.downsamples.5.resample.1.weight", "encoder.down_blocks.5.resample.1.weight"),
        ("encoder.downsamples.5.time_conv.bias", "encoder.down_blocks.5.time_conv.bias"),
        ("encoder.middle.0.residual.0.gamma", "encoder.mid_block.resnets.0.norm1.gamma"),
        ("encoder.middle.1.to_qkv.weight", "encoder.mid_block.attentions.0.to_qkv.weight"),
        ("encoder.middle.1.norm.gamma", "encoder.mid_block.attentions.0.norm.gamma"),
        ("encoder.middle.2.residual.6.bias", "encoder.mid_block.resnets.1.conv2.bias"),
        ("encoder.head.0.gamma", "encoder.norm_out.gamma"),
        ("encoder.head.2.weight", "encoder.conv_out.weight"),
        ("conv1.weight", "quant_conv.weight"),
        ("conv2.bias", "post_quant_conv.bias"),
        ("decoder.conv1.bias", "decoder.conv_in.bias"),
        ("decoder.upsamples.0.residual.0.gamma", "decoder.up_blocks.0.resnets.0.norm1.gamma"),
        ("decoder.upsamples.2.residual.2.weight", "decoder.up_blocks.0.resnets.2.conv1.weight"),
        ("decoder.upsamples.3.resample.1.weight", "decoder.up_blocks.0.upsamplers.0.resample.1.weight"),
        ("decoder.upsamples.3.time_conv.weight", "decoder.up_blocks.0.upsamplers.0.time_conv.weight"),
        ("decoder.upsamples.4.shortcut.weight", "decoder.up_blocks.1.resnets.0.conv_shortcut.weight"),
        ("decoder.upsamples.7.resample.1.bias", "decoder.up_blocks.1.upsamplers.0.resample.1.bias"),
        ("decoder.upsamples.10.residual.3.gamma", "decoder.up_blocks.2.resnets.2.norm2.gamma"),
        ("decoder.upsamples.11.resample.1.weight", "decoder.up_blocks.2.upsamplers.0.resample.1.weight"),
        ("decoder.upsamples.14.residual.6.weight", "decoder.up_blocks.3.resnets.2.conv2.weight"),
        ("decoder.head.0.gamma", "decoder.norm_out.gamma"),
        ("decoder.head.2.bias", "decoder.conv_out.bias"),
    ];
    for (orig, want) in cases {
        assert_eq!(wan_vae_key_to_diffusers(orig, 2), want, "{orig}");
        assert_eq!(wan_vae_key_to_diffusers(want, 2), want, "diffusers name {want} must be unchanged");
    }
    // One residual block per stage (the tiny config): 2 resnets + 1 upsampler per decoder block.
    assert_eq!(
        wan_vae_key_to_diffusers("decoder.upsamples.2.resample.1.weight", 1),
        "decoder.up_blocks.0.upsamplers.0.resample.1.weight"
    );
    assert_eq!(
        wan_vae_key_to_diffusers("decoder.upsamples.3.residual.0.gamma", 1),
        "decoder.up_blocks.1.resnets.0.norm1.gamma"
    );
}

#[test]
fn synthetic_checkpoint_holds_exactly_the_specs_with_small_random_values() {
    use joyrt_core::weights::{Checkpoint, ParamSpec};
    use joyrt_core::DType;
    let specs = vec![ParamSpec::new("a.weight", [64, 33]), ParamSpec::new("b.bias", [7])];
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let ck = Checkpoint::synthetic("test", &specs, dtype, 3).unwrap();
        ck.check_exact("test", &specs, &[]).unwrap();
        let a = ck.read_f32("a.weight").unwrap();
        assert_eq!(a.len(), 64 * 33);
        assert!(a.iter().all(|v| v.abs() <= 0.0347), "{dtype}: out of range");
        let std = (a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32).sqrt();
        assert!((0.017..0.023).contains(&std), "{dtype}: std {std}");
        let again = Checkpoint::synthetic("test", &specs, dtype, 3).unwrap().read_f32("a.weight").unwrap();
        assert_eq!(a, again, "same seed, same weights");
        assert_eq!(ck.read_f32("b.bias").unwrap().len(), 7);
    }
}
