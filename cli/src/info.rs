//! `joyrt info DIR`: what a model folder holds and everything wrong with it, all at once. The
//! configs, tokenizer and processor go through the same check as `joyrt edit`
//! ([`FolderCheck`]), so `info` reports exactly what an edit would refuse.

use anyhow::{bail, Result};
use clap::Args;
use joyrt_core::finite::non_finite_tensors;
use joyrt_core::model_folder::FolderCheck;
use joyrt_core::models::qwen::QwenConfig;
use joyrt_core::quant::read_quantized;
use joyrt_core::weights::{dit_key_to_diffusers, wan_vae_key_to_diffusers, Checkpoint, ParamSpec};
use joyrt_core::{Error, MAX_LISTED_PROBLEMS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct InfoArgs {
    /// Model folder in the published diffusers layout, or a Hugging Face repository id
    /// (`ORG/NAME[@REVISION]`) already in the Hugging Face cache.
    pub dir: PathBuf,
    /// Also read every tensor of every component and report those holding NaN or Inf (reads the
    /// whole model once, one tensor at a time).
    #[arg(long)]
    pub check_weights: bool,
}

/// What one component's weights are checked against.
struct Expected<'a> {
    specs: Vec<ParamSpec>,
    ignore: &'a [&'static str],
    rename: &'a dyn Fn(&str) -> String,
}

/// One component's weights: a summary line, and its problems (missing, unexpected or mis-shaped
/// tensors; with `scan`, tensors holding NaN or Inf).
fn weights(dir: &Path, name: &str, want: Expected, scan: bool) -> Vec<String> {
    let expected: u64 = want.specs.iter().map(|s| s.shape.numel() as u64).sum();
    let ck = match Checkpoint::open(&dir.join(name)).and_then(|c| c.with_renames(want.rename)) {
        Ok(c) => c,
        Err(e) => {
            println!("{name:<13} config ok, {expected} parameters expected; weights unreadable");
            return vec![format!("{name}: {e}")];
        }
    };
    let mut by_dtype: BTreeMap<&str, u64> = BTreeMap::new();
    for n in ck.names() {
        if let Some(i) = ck.info(n) {
            *by_dtype.entry(i.dtype.name()).or_default() += i.shape.numel() as u64;
        }
    }
    let dtypes: Vec<String> = by_dtype.iter().map(|(d, n)| format!("{d} {n}")).collect();
    println!(
        "{name:<13} {expected:>15} parameters expected, {} tensors stored ({}), {:.3} GB",
        ck.names().len(),
        dtypes.join(", "),
        ck.total_bytes() as f64 / 1e9
    );
    match quantized_summary(&ck) {
        Ok(Some(q)) => println!("{:<13} quantized: {q}", ""),
        Ok(None) => {}
        Err(e) => println!("{:<13} quantized weights unreadable: {e}", ""),
    }
    let mut problems = match ck.check_exact(name, &want.specs, want.ignore) {
        Ok(()) => Vec::new(),
        Err(Error::Weights { problems: p, .. }) => p.into_iter().map(|p| format!("{name}: {p}")).collect(),
        Err(e) => vec![format!("{name}: {e}")],
    };
    if scan {
        match non_finite_tensors(&ck) {
            Ok(bad) if bad.is_empty() => println!("{:<13} no NaN or Inf in any tensor", ""),
            Ok(bad) => problems.extend(bad.into_iter().map(|b| format!("{name}: {b}"))),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    problems
}

/// The formats of a checkpoint's quantized weights with how many of each, e.g.
/// `int8 (block 32) × 24, 0.123 GB of codes and scales` (`None` when it holds none).
fn quantized_summary(ck: &Checkpoint) -> joyrt_core::Result<Option<String>> {
    let mut by_format: BTreeMap<String, usize> = BTreeMap::new();
    let mut bytes = 0u64;
    for n in ck.names() {
        if let Some(q) = read_quantized(ck, n)? {
            *by_format.entry(q.format.to_string()).or_default() += 1;
            for t in [n.to_string(), format!("{n}_scale")] {
                bytes += ck.info(&t).map_or(0, |i| (i.shape.numel() * i.dtype.size()) as u64);
            }
        }
    }
    if by_format.is_empty() {
        return Ok(None);
    }
    let formats: Vec<String> = by_format.iter().map(|(f, n)| format!("{f} × {n}")).collect();
    Ok(Some(format!("{}, {:.3} GB of codes and scales", formats.join(", "), bytes as f64 / 1e9)))
}

/// The configs' summaries/// The configs' summaries and the weights of each component whose config reads.
fn components(check: &FolderCheck, scan: bool) -> Vec<String> {
    let dir = &check.root;
    let mut problems = Vec::new();
    if let Ok(c) = &check.transformer {
        println!(
            "  transformer config: hidden {}, {} heads, {} layers, rope {:?}",
            c.hidden_size, c.num_attention_heads, c.num_layers, c.rope_dim_list
        );
        let want = Expected { specs: c.param_specs(), ignore: &[], rename: &dit_key_to_diffusers };
        problems.extend(weights(dir, "transformer", want, scan));
    }
    if let Ok(c) = &check.vae {
        println!(
            "  vae config: base_dim {}, z_dim {}, dim_mult {:?}, {} res blocks",
            c.base_dim, c.z_dim, c.dim_mult, c.num_res_blocks
        );
        let nrb = c.num_res_blocks;
        let rename = move |n: &str| wan_vae_key_to_diffusers(n, nrb);
        problems.extend(weights(
            dir,
            "vae",
            Expected { specs: c.param_specs(), ignore: &[], rename: &rename },
            scan,
        ));
    }
    if let Ok(c) = &check.text_encoder {
        println!(
            "  text_encoder config: hidden {}, {} layers, {}/{} heads, vision depth {}, deepstack {:?}",
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.vision.depth,
            c.vision.deepstack_visual_indexes
        );
        let unused = QwenConfig::unused_names();
        let want = Expected { specs: c.param_specs(), ignore: &unused, rename: &|n: &str| n.to_string() };
        problems.extend(weights(dir, "text_encoder", want, scan));
    }
    if let Ok(s) = &check.scheduler {
        println!("scheduler     flow-match Euler, shift {}", s.shift);
    }
    if let Ok(t) = &check.tokenizer {
        println!("tokenizer     ok ({} tokens, <|image_pad|> = {})", t.vocab_size(), t.image_pad_id);
    }
    if let Ok(p) = &check.processor {
        println!(
            "processor     patch {}, merge {}, pixels [{}, {}]",
            p.patch_size, p.merge_size, p.min_pixels, p.max_pixels
        );
    }
    problems
}

pub fn run(a: InfoArgs) -> Result<()> {
    let dir = crate::hf_cache::resolve(&a.dir)?;
    let check = FolderCheck::run(&dir)?;
    println!("model folder {}", dir.display());
    let mut problems = check.problems();
    problems.extend(components(&check, a.check_weights));
    if problems.is_empty() {
        println!("no problems found");
        return Ok(());
    }
    for p in problems.iter().take(MAX_LISTED_PROBLEMS) {
        println!("problem: {p}");
    }
    if problems.len() > MAX_LISTED_PROBLEMS {
        println!("… and {} more", problems.len() - MAX_LISTED_PROBLEMS);
    }
    bail!("{} problem(s) in {}", problems.len(), a.dir.display())
}
