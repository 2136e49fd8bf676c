//! `joyrt quantize`: a copy of a model folder whose block linear layers are quantized (int8, int4
//! or fp8; `joyrt_core::quant`, docs/quantized-formats.md), everything else copied as it is.
//!
//! Memory stays bounded: the input is read one shard file at a time (each mapped, then unmapped
//! before the next), a weight is quantized in slices of rows, and the output is streamed into
//! shards of at most `--max-shard-gb`, so the peak is about one input shard's touched pages plus
//! a slice, whatever the model's size. The folder is written under a temporary name and renamed
//! when complete: a failure leaves no output folder.

use anyhow::{bail, Context, Result};
use clap::Args;
use joyrt_core::model_folder::FolderCheck;
use joyrt_core::models::qwen::QwenConfig;
use joyrt_core::quant::{codec, policy};
use joyrt_core::weights::{dit_key_to_diffusers, write_index, Checkpoint, ShardWriter};
use joyrt_core::{QuantFormat, Shape, StoredDType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct QuantizeArgs {
    /// Model folder in the published diffusers layout, or a Hugging Face repository id
    /// (`ORG/NAME[@REVISION]`) already in the Hugging Face cache.
    #[arg(long)]
    pub model: PathBuf,
    /// int8 (W8A16, block 32), int4 (W4A16, block 32) or fp8 (E4M3, one scale per output row).
    #[arg(long)]
    pub format: String,
    /// Output folder: new, or empty (see --overwrite).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Components to quantize, comma-separated: transformer, text_encoder. The others are copied.
    #[arg(long, value_delimiter = ',', default_value = "transformer,text_encoder")]
    pub components: Vec<String>,
    /// Replace the output folder if it exists and is not empty (once the new one is complete).
    #[arg(long)]
    pub overwrite: bool,
    /// Largest output shard, in GB.
    #[arg(long, default_value_t = 5.0)]
    pub max_shard_gb: f64,
    /// Hard-link the weight files (`*.safetensors`) of the components left as they are instead
    /// of copying them, where the output is on the input's filesystem (copied elsewhere): the
    /// 16 GB text encoder beside a quantized transformer then costs no disk. The two folders
    /// share those files; joyrt never writes a weight file in place.
    #[arg(long)]
    pub link_weights: bool,
}

/// The components that hold linear layers, with their weight files' stem.
const QUANTIZABLE: [(&str, &str); 2] =
    [("transformer", "diffusion_pytorch_model"), ("text_encoder", "model")];

/// Rows quantized at once: about this many elements.
const SLICE_ELEMENTS: usize = 1 << 22;

/// What one component's conversion did.
#[derive(Default)]
struct Summary {
    quantized: usize,
    /// Quantizable weights kept dense because K does not fit the format's block.
    kept_for_k: Vec<String>,
    bytes_in: u64,
    bytes_out: u64,
}

/// One tensor of the output, or a quantized weight's pair (codes, scales) written together.
enum Unit {
    Copy { file: usize, name: String, dtype: StoredDType, shape: Shape },
    Quantize { file: usize, name: String, rows: usize, cols: usize },
}

impl Unit {
    fn file(&self) -> usize {
        match self {
            Unit::Copy { file, .. } | Unit::Quantize { file, .. } => *file,
        }
    }

    /// The output tensors' headers.
    fn headers(&self, f: QuantFormat) -> Vec<(String, StoredDType, Shape)> {
        match self {
            Unit::Copy { name, dtype, shape, .. } => vec![(name.clone(), *dtype, shape.clone())],
            Unit::Quantize { name, rows, cols, .. } => {
                let codes = match f {
                    QuantFormat::Int8 { .. } => StoredDType::I8,
                    QuantFormat::Int4 { .. } => StoredDType::U8,
                    QuantFormat::Fp8E4M3 => StoredDType::F8E4M3,
                };
                let sdt = codec::stored_scale_dtype(f).into();
                vec![
                    (name.clone(), codes, Shape::new([*rows, f.row_bytes(*cols)])),
                    (format!("{name}_scale"), sdt, Shape::new([*rows, f.scales_per_row(*cols)])),
                ]
            }
        }
    }

    fn bytes(&self, f: QuantFormat) -> u64 {
        self.headers(f).iter().map(|(_, d, s)| (s.numel() * d.size()) as u64).sum()
    }
}

/// The component's safetensors files, each a checkpoint of its own, checked to be exactly the
/// checkpoint the loader reads (the index's shards, no strays).
fn input_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let whole = Checkpoint::open(dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    let mut seen = 0;
    for f in &files {
        let ck = Checkpoint::open(f)?;
        if let Some(n) = ck.names().into_iter().find(|n| whole.info(n).is_none()) {
            bail!("{} holds {n}, which is not part of the checkpoint {}", f.display(), dir.display());
        }
        seen += ck.names().len();
    }
    if seen != whole.names().len() {
        bail!("{}: the shard files do not hold the checkpoint's tensors exactly once", dir.display());
    }
    Ok(files)
}

/// Plans the output of one component: which tensors are quantized, in input-file order.
fn plan(component: &str, files: &[PathBuf], f: QuantFormat, sum: &mut Summary) -> Result<Vec<Unit>> {
    let mut units = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let ck = Checkpoint::open(path)?;
        for name in ck.names() {
            let info = ck.info(name).context("a listed tensor")?;
            let Some(_) = info.dtype.float() else {
                bail!(
                    "{}: {name} is already quantized ({}); quantize the unquantized model",
                    path.display(),
                    info.dtype.tag()
                );
            };
            let q = match info.shape.dims() {
                &[rows, cols] if policy::quantizable(component, name) => {
                    if f.check_cols(cols).is_ok() {
                        Some((rows, cols))
                    } else {
                        sum.kept_for_k.push(name.to_string());
                        None
                    }
                }
                _ => None,
            };
            units.push(match q {
                Some((rows, cols)) => Unit::Quantize { file: i, name: name.into(), rows, cols },
                None => {
                    Unit::Copy { file: i, name: name.into(), dtype: info.dtype, shape: info.shape.clone() }
                }
            });
            sum.bytes_in += (info.shape.numel() * info.dtype.size()) as u64;
        }
    }
    Ok(units)
}

/// Writes one quantized weight: its codes slice by slice, then its scales.
fn write_quantized(
    w: &mut ShardWriter,
    ck: &Checkpoint,
    name: &str,
    cols: usize,
    f: QuantFormat,
) -> Result<()> {
    let (info, bytes) = ck.raw(name)?;
    let dtype = info.dtype.float().context("a float tensor")?;
    let rows_per_slice = (SLICE_ELEMENTS / cols).max(1);
    let mut scales = Vec::new();
    for slice in bytes.chunks(rows_per_slice * cols * dtype.size()) {
        let q = codec::quantize_rows(f, cols, &dtype.decode_f32(slice))
            .with_context(|| format!("quantizing {name}"))?;
        w.write(&q.codes)?;
        scales.extend(q.scales);
    }
    w.write(&codec::stored_scale_dtype(f).encode_f32(&scales))?;
    Ok(())
}

/// Quantizes one component's weights from `src` into `dst` (which holds its other files).
fn quantize_component(
    component: &str,
    stem: &str,
    src: &Path,
    dst: &Path,
    f: QuantFormat,
    max_bytes: u64,
) -> Result<Summary> {
    let mut sum = Summary::default();
    let files = input_files(src)?;
    let units = plan(component, &files, f, &mut sum)?;
    let mut shards: Vec<Vec<&Unit>> = vec![vec![]];
    let mut size = 0;
    for u in &units {
        let b = u.bytes(f);
        if size + b > max_bytes && !shards.last().is_some_and(Vec::is_empty) {
            shards.push(vec![]);
            size = 0;
        }
        shards.last_mut().context("one shard")?.push(u);
        size += b;
    }
    let n = shards.len();
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("joyrt_quantization".to_string(), f.name().to_string()),
        ("joyrt_block".to_string(), block_label(f)),
    ]);
    let mut map = BTreeMap::new();
    // The one input file mapped now: dropping it unmaps its pages before the next is read.
    let mut current: Option<(usize, Checkpoint)> = None;
    for (k, shard) in shards.iter().enumerate() {
        let file = format!("{stem}-{:05}-of-{n:05}.safetensors", k + 1);
        let headers: Vec<(String, StoredDType, Shape)> = shard.iter().flat_map(|u| u.headers(f)).collect();
        let mut w = ShardWriter::create_with_metadata(&dst.join(&file), &headers, &metadata)?;
        for u in shard {
            if current.as_ref().is_none_or(|(i, _)| *i != u.file()) {
                drop(current.take()); // unmap the previous file before mapping the next
                current = Some((u.file(), Checkpoint::open(&files[u.file()])?));
            }
            let ck = &current.as_ref().context("an open input file")?.1;
            match u {
                Unit::Copy { name, .. } => w.write(&ck.raw(name)?.1)?,
                Unit::Quantize { name, cols, .. } => {
                    write_quantized(&mut w, ck, name, *cols, f)?;
                    sum.quantized += 1;
                }
            }
            for (name, dtype, shape) in u.headers(f) {
                map.insert(name, file.clone());
                sum.bytes_out += (shape.numel() * dtype.size()) as u64;
            }
        }
        w.finish()?;
    }
    write_index(&dst.join(format!("{stem}.safetensors.index.json")), &map, sum.bytes_out)?;
    Ok(sum)
}

/// The block length along K, or `row` for fp8's one scale per output row.
fn block_label(f: QuantFormat) -> String {
    match f {
        QuantFormat::Int8 { block } | QuantFormat::Int4 { block } => block.to_string(),
        QuantFormat::Fp8E4M3 => "row".into(),
    }
}

/// The component's `config.json` with a `quantization_config` saying how its weights are stored.
fn annotate_config(src: &Path, dst: &Path, f: QuantFormat, sum: &Summary) -> Result<()> {
    let text = std::fs::read_to_string(src).with_context(|| format!("reading {}", src.display()))?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", src.display()))?;
    let obj = v.as_object_mut().with_context(|| format!("{} is not a JSON object", src.display()))?;
    obj.insert(
        "quantization_config".into(),
        serde_json::json!({
            "quant_method": "joyrt",
            "format": f.name(),
            "block_size": block_label(f),
            "scale_dtype": codec::stored_scale_dtype(f).name(),
            "quantized_weights": sum.quantized,
            "layout": "docs/quantized-formats.md",
        }),
    );
    std::fs::write(dst, serde_json::to_string_pretty(&v)?)
        .with_context(|| format!("writing {}", dst.display()))
}

/// Copies `src` into `dst` recursively (symbolic links followed, as in a Hugging Face snapshot),
/// leaving out each quantized component's weight files and config (written by the conversion);
/// with `link`, weight files are hard-linked where the filesystem allows.
fn copy_tree(src: &Path, dst: &Path, skip_weights_of: &[PathBuf], link: bool) -> Result<()> {
    for e in std::fs::read_dir(src).with_context(|| format!("listing {}", src.display()))? {
        let path = e.with_context(|| format!("listing {}", src.display()))?.path();
        let to = dst.join(path.file_name().context("a named entry")?);
        if path.is_dir() {
            std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
            copy_tree(&path, &to, skip_weights_of, link)?;
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let weights = name.ends_with(".safetensors")
            || name.ends_with(".safetensors.index.json")
            || name == "config.json";
        if weights && skip_weights_of.iter().any(|d| path.parent() == Some(d.as_path())) {
            continue;
        }
        // The link goes to the file a snapshot's symbolic link names, not to the link itself.
        if link && name.ends_with(".safetensors") {
            let target = path.canonicalize().with_context(|| format!("resolving {}", path.display()))?;
            if std::fs::hard_link(&target, &to).is_ok() {
                continue;
            }
        }
        std::fs::copy(&path, &to)
            .with_context(|| format!("copying {} to {}", path.display(), to.display()))?;
    }
    Ok(())
}

/// The selected components, each checked.
fn selected(components: &[String]) -> Result<Vec<(&'static str, &'static str)>> {
    let mut out = Vec::new();
    for c in components {
        match QUANTIZABLE.iter().find(|(n, _)| n == c) {
            Some(&q) if !out.contains(&q) => out.push(q),
            Some(_) => {}
            None if c == "vae" => {
                bail!("--components: the vae has no linear layers (convolutions only); it is copied as it is")
            }
            None => bail!("--components: unknown component {c:?} (use transformer, text_encoder)"),
        }
    }
    if out.is_empty() {
        bail!("--components: no component given");
    }
    Ok(out)
}

/// Refuses an input whose weights an edit would refuse, before anything is written.
fn check_input(check: &FolderCheck, which: &[(&str, &str)]) -> Result<()> {
    let mut problems = check.problems();
    let root = &check.root;
    for (c, _) in which {
        let r = match *c {
            "transformer" => check.transformer.as_ref().map_err(|e| anyhow::anyhow!("{e}")).and_then(|cfg| {
                let ck = Checkpoint::open(&root.join(c))?.with_renames(dit_key_to_diffusers)?;
                Ok(ck.check_exact(c, &cfg.param_specs(), &[])?)
            }),
            _ => check.text_encoder.as_ref().map_err(|e| anyhow::anyhow!("{e}")).and_then(|cfg| {
                let ck = Checkpoint::open(&root.join(c))?;
                Ok(ck.check_exact(c, &cfg.param_specs(), &QwenConfig::unused_names())?)
            }),
        };
        if let Err(e) = r {
            problems.push(format!("{e:#}"));
        }
    }
    if !problems.is_empty() {
        bail!("{} cannot be quantized:\n{}", root.display(), joyrt_core::listed(&problems));
    }
    Ok(())
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    let format = QuantFormat::parse(&a.format)
        .with_context(|| format!("unknown --format {:?}: use int8, int4 or fp8", a.format))?;
    if a.max_shard_gb.is_nan() || a.max_shard_gb <= 0.0 {
        bail!("--max-shard-gb must be positive");
    }
    let which = selected(&a.components)?;
    let src = crate::hf_cache::resolve(&a.model)?;
    let check = FolderCheck::run(&src)?;
    check_input(&check, &which)?;
    let out_parent = crate::output::parent_dir(&a.output).canonicalize().ok();
    if out_parent.as_ref().zip(src.canonicalize().ok()).is_some_and(|(o, s)| o.starts_with(s)) {
        bail!("the output {} is inside the model folder {}", a.output.display(), src.display());
    }
    let max_bytes = (a.max_shard_gb * 1e9) as u64;
    let sums = crate::staged_folder::write_folder(&a.output, a.overwrite, |tmp| {
        let skip: Vec<PathBuf> = which.iter().map(|(c, _)| src.join(c)).collect();
        copy_tree(&src, tmp, &skip, a.link_weights)?;
        let mut sums = Vec::new();
        for (c, stem) in &which {
            eprintln!("{c}: quantizing to {format}");
            let sum = quantize_component(c, stem, &src.join(c), &tmp.join(c), format, max_bytes)?;
            annotate_config(
                &src.join(c).join("config.json"),
                &tmp.join(c).join("config.json"),
                format,
                &sum,
            )?;
            sums.push((*c, sum));
        }
        Ok(sums)
    })?;
    for (c, s) in &sums {
        eprintln!(
            "{c}: {} weights quantized, {:.3} GB → {:.3} GB ({:.2}×){}",
            s.quantized,
            s.bytes_in as f64 / 1e9,
            s.bytes_out as f64 / 1e9,
            s.bytes_in as f64 / s.bytes_out.max(1) as f64,
            if s.kept_for_k.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} kept dense (K not a multiple of the block): {}",
                    s.kept_for_k.len(),
                    s.kept_for_k.join(", ")
                )
            }
        );
    }
    eprintln!("wrote {}", a.output.display());
    Ok(())
}
