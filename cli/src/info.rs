//! `joyrt info DIR`: what a model folder holds and everything wrong with it, all at once.

use anyhow::{bail, Result};
use clap::Args;
use joyrt_core::model_folder::{ProcessorConfig, SchedulerConfig};
use joyrt_core::models::dit::DitConfig;
use joyrt_core::models::qwen::QwenConfig;
use joyrt_core::models::vae::VaeConfig;
use joyrt_core::weights::{dit_key_to_diffusers, wan_vae_key_to_diffusers, Checkpoint, ParamSpec};
use joyrt_core::Error;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct InfoArgs {
    /// Model folder in the published diffusers layout.
    pub dir: PathBuf,
}

/// One component's summary; `Err` lines are its problems.
fn component(
    dir: &Path,
    name: &str,
    specs: impl FnOnce(
        &Path,
    )
        -> joyrt_core::Result<(Vec<ParamSpec>, Vec<&'static str>, Box<dyn Fn(&str) -> String>)>,
) -> Vec<String> {
    let d = dir.join(name);
    let mut problems = Vec::new();
    let (specs, ignore, rename) = match specs(&d.join("config.json")) {
        Ok(x) => x,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    let expected: u64 = specs.iter().map(|s| s.shape.numel() as u64).sum();
    let ck = match Checkpoint::open(&d).and_then(|c| c.with_renames(rename)) {
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
    match ck.check_exact(name, &specs, &ignore) {
        Ok(()) => {}
        Err(Error::Weights { problems: p, .. }) => {
            problems.extend(p.into_iter().map(|p| format!("{name}: {p}")))
        }
        Err(e) => problems.push(format!("{name}: {e}")),
    }
    problems
}

pub fn run(a: InfoArgs) -> Result<()> {
    let dir = &a.dir;
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    println!("model folder {}", dir.display());
    let mut problems = Vec::new();
    if !dir.join("model_index.json").is_file() {
        problems.push("model_index.json is missing".to_string());
    }
    problems.extend(component(dir, "transformer", |p| {
        let c = DitConfig::from_file(p)?;
        println!(
            "  transformer config: hidden {}, {} heads, {} layers, rope {:?}",
            c.hidden_size, c.num_attention_heads, c.num_layers, c.rope_dim_list
        );
        Ok((c.param_specs(), vec![], Box::new(dit_key_to_diffusers) as Box<dyn Fn(&str) -> String>))
    }));
    problems.extend(component(dir, "vae", |p| {
        let c = VaeConfig::from_file(p)?;
        println!(
            "  vae config: base_dim {}, z_dim {}, dim_mult {:?}, {} res blocks",
            c.base_dim, c.z_dim, c.dim_mult, c.num_res_blocks
        );
        let nrb = c.num_res_blocks;
        Ok((
            c.param_specs(),
            vec![],
            Box::new(move |n: &str| wan_vae_key_to_diffusers(n, nrb)) as Box<dyn Fn(&str) -> String>,
        ))
    }));
    problems.extend(component(dir, "text_encoder", |p| {
        let c = QwenConfig::from_file(p)?;
        println!(
            "  text_encoder config: hidden {}, {} layers, {}/{} heads, vision depth {}, deepstack {:?}",
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.vision.depth,
            c.vision.deepstack_visual_indexes
        );
        Ok((
            c.param_specs(),
            QwenConfig::unused_names().to_vec(),
            Box::new(|n: &str| n.to_string()) as Box<dyn Fn(&str) -> String>,
        ))
    }));
    match SchedulerConfig::from_file(&dir.join("scheduler/scheduler_config.json")) {
        Ok(s) => println!("scheduler     flow-match Euler, shift {}", s.shift),
        Err(e) => problems.push(format!("scheduler: {e}")),
    }
    let tok = dir.join("tokenizer/tokenizer.json");
    match joyrt_core::prompt::PromptTokenizer::from_file(&tok) {
        Ok(t) => println!("tokenizer     ok (<|image_pad|> = {})", t.image_pad_id),
        Err(e) => problems.push(format!("tokenizer: {e}")),
    }
    if dir.join("processor").is_dir() {
        match ProcessorConfig::from_dir(&dir.join("processor")) {
            Ok(p) => println!(
                "processor     patch {}, merge {}, pixels [{}, {}]",
                p.patch_size, p.merge_size, p.min_pixels, p.max_pixels
            ),
            Err(e) => problems.push(format!("processor: {e}")),
        }
    }
    if problems.is_empty() {
        println!("no problems found");
        Ok(())
    } else {
        for p in &problems {
            println!("problem: {p}");
        }
        bail!("{} problem(s) in {}", problems.len(), dir.display())
    }
}
