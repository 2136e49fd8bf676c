//! The memory plan of an edit: for the model's configs, a resolution, the weights' format and a
//! device memory size, the weight and activation bytes of every stage and the placement that fits
//! — the components loaded in turn or kept resident, the DiT's blocks resident or streamed from
//! host memory, the VAE tiled or not. `joyrt plan` prints it; `joyrt edit` follows it.
//!
//! Weights are priced as the loaders store them (`plan/weights.rs`); activations from the graphs'
//! shapes (`plan/activations.rs`). A stage's peak is its network's weights (those on the device at
//! once), its activations, and what the pipeline carries across it (the prompt states, the VAE
//! while the DiT runs: `pipeline::edit` keeps it loaded for the decode).

pub mod activations;
mod weights;

pub use activations::Tokens;
pub use weights::WeightFormat;

use crate::model_folder::Configs;
use crate::models::vae_tiling::VaeTiling;
use crate::prompt::DROP_TOKENS;
use crate::{Error, Result};
use serde::Serialize;

/// Tokens the plan allows for the chat template and the prompt beside the image's tokens (the
/// tokenizer runs later; a longer prompt adds `hidden_size` bytes per token per live tensor).
pub const PROMPT_TOKENS: usize = 256;

/// What a plan is made for.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    /// Bucket pixels `(h, w)`.
    pub pixels: (usize, usize),
    pub format: WeightFormat,
    /// Bytes the device may hold; `None`: unknown (everything resident, nothing refused).
    pub device_bytes: Option<u64>,
    /// The VAE tiles to use when the plan tiles it.
    pub tiling: VaeTiling,
    /// Whether streaming DiT blocks saves device memory: not where the device's memory is the
    /// host's (the CPU backend), where the plan keeps them resident.
    pub streaming: bool,
}

/// Where the DiT's double blocks live during the denoising loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DitPlacement {
    Resident,
    /// The first `resident_blocks` on the device, the others kept in host memory and copied to
    /// the device a block at a time (the next block's copy runs beside the current block's
    /// compute), so at most two of them are on the device at once.
    Streamed {
        resident_blocks: usize,
    },
}

impl DitPlacement {
    /// Blocks kept on the device when the DiT has `blocks`.
    pub fn resident_blocks(self, blocks: usize) -> usize {
        match self {
            DitPlacement::Resident => blocks,
            DitPlacement::Streamed { resident_blocks } => resident_blocks.min(blocks),
        }
    }

    /// Blocks on the device at once: the resident ones and up to two streamed ones.
    fn device_blocks(self, blocks: usize) -> usize {
        let r = self.resident_blocks(blocks);
        r + (blocks - r).min(2)
    }
}

/// Whether the three networks can stay loaded together (a server's session) or are loaded in turn
/// (an edit's default: each dropped when no longer needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Components {
    Resident,
    InTurn,
}

/// One stage's bytes on the device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StagePlan {
    pub stage: &'static str,
    /// Weights on the device during the stage (with the chosen placement).
    pub weight_bytes: u64,
    /// Peak activations with the chosen placement (a tiled VAE: one tile's).
    pub activation_bytes: u64,
    /// Tensors the pipeline carries across the stage (prompt states, other networks' weights).
    pub carried_bytes: u64,
}

impl StagePlan {
    pub fn peak(&self) -> u64 {
        self.weight_bytes + self.activation_bytes + self.carried_bytes
    }
}

/// The plan: figures per stage and the placement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub pixels: (usize, usize),
    pub format: WeightFormat,
    pub device_bytes: Option<u64>,
    pub components: Components,
    pub dit: DitPlacement,
    /// `Some`: the VAE runs in these tiles.
    #[serde(serialize_with = "tiling_json")]
    pub vae_tiling: Option<VaeTiling>,
    pub stages: Vec<StagePlan>,
    /// One DiT double block's weight bytes (what a streamed slot holds).
    pub dit_block_bytes: u64,
    pub dit_blocks: usize,
}

/// `1.23 GB` from 1 GB up, `4.5 MB` below.
pub fn bytes_label(b: u64) -> String {
    if b >= 1_000_000_000 {
        format!("{:.2} GB", b as f64 / 1e9)
    } else {
        format!("{:.1} MB", b as f64 / 1e6)
    }
}

fn tiling_json<S: serde::Serializer>(t: &Option<VaeTiling>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format!("{}/{}", t.tile, t.stride)),
        None => s.serialize_none(),
    }
}

impl Plan {
    /// The largest stage peak.
    pub fn peak(&self) -> u64 {
        self.stages.iter().map(StagePlan::peak).max().unwrap_or(0)
    }

    /// One line: what was decided.
    pub fn summary(&self) -> String {
        format!(
            "memory plan: peak {} of {}; components {}, DiT blocks {}, VAE {}",
            bytes_label(self.peak()),
            self.device_bytes.map_or("an unknown size".into(), bytes_label),
            match self.components {
                Components::Resident => "resident",
                Components::InTurn => "loaded in turn",
            },
            match self.dit {
                DitPlacement::Resident => "resident".to_string(),
                DitPlacement::Streamed { resident_blocks } =>
                    format!("streamed ({resident_blocks} of {} resident)", self.dit_blocks),
            },
            match self.vae_tiling {
                Some(t) => format!("tiled {}/{}", t.tile, t.stride),
                None => "untiled".into(),
            }
        )
    }

    /// The table `joyrt plan` prints.
    pub fn table(&self) -> String {
        let mb = |b: u64| format!("{:.1}", b as f64 / 1e6);
        let mut s = format!(
            "{:<12} {:>12} {:>14} {:>12} {:>12}\n",
            "stage", "weights MB", "activations MB", "carried MB", "peak MB"
        );
        for st in &self.stages {
            s += &format!(
                "{:<12} {:>12} {:>14} {:>12} {:>12}\n",
                st.stage,
                mb(st.weight_bytes),
                mb(st.activation_bytes),
                mb(st.carried_bytes),
                mb(st.peak())
            );
        }
        s + &self.summary()
    }
}

/// The figures of every network at one resolution and format.
struct Sizes {
    text_weights: u64,
    vae_weights: u64,
    dit_weights: u64,
    dit_block: u64,
    text_act: u64,
    enc_act: (u64, u64),
    dec_act: (u64, u64),
    dit_act: u64,
    prompt_states: u64,
}

impl Sizes {
    fn new(configs: &Configs, r: &PlanRequest) -> Sizes {
        let f = &r.format;
        let (dit_weights, dit_block) = f.transformer(&configs.transformer);
        let q = &configs.text_encoder;
        let merge = q.vision.patch_size * q.vision.spatial_merge_size;
        let image_tokens = (r.pixels.0 / merge) * (r.pixels.1 / merge);
        let tokens = Tokens {
            pixels: r.pixels,
            encoder: DROP_TOKENS + image_tokens + PROMPT_TOKENS,
            dit_text: image_tokens + PROMPT_TOKENS,
        };
        // A tiled VAE holds one tile's activations (a side shorter than a tile is not cut).
        let tile = (r.tiling.tile.min(r.pixels.0), r.tiling.tile.min(r.pixels.1));
        let vae = &configs.vae;
        let dt = f.dtype;
        Sizes {
            text_weights: f.text_encoder(q),
            vae_weights: f.vae(vae),
            dit_weights,
            dit_block,
            text_act: activations::text_encoder(q, dt, tokens),
            enc_act: (activations::vae_encode(vae, dt, r.pixels), activations::vae_encode(vae, dt, tile)),
            dec_act: (activations::vae_decode(vae, dt, r.pixels), activations::vae_decode(vae, dt, tile)),
            dit_act: activations::dit_forward(&configs.transformer, dt, tokens),
            prompt_states: 2 * (tokens.dit_text * q.hidden_size * dt.size()) as u64,
        }
    }
}

/// The plan for `configs` under `r`: the fastest placement whose every stage fits — a resident DiT
/// before a streamed one, and a streamed one with as many resident blocks as fit; an untiled VAE
/// before a tiled one. Where nothing fits, an [`Error::Input`] with the smallest placement's
/// numbers.
pub fn plan(configs: &Configs, r: &PlanRequest) -> Result<Plan> {
    let z = Sizes::new(configs, r);
    let layers = configs.transformer.num_layers;
    let fits = |p: &Plan| r.device_bytes.is_none_or(|m| p.peak() <= m);
    let mut smallest = None;
    for tiled in [false, true] {
        let p = make(&z, r, layers, DitPlacement::Resident, tiled);
        if fits(&p) {
            return Ok(p);
        }
        smallest = Some(p);
    }
    if r.streaming {
        for tiled in [false, true] {
            let p = make(&z, r, layers, DitPlacement::Streamed { resident_blocks: 0 }, tiled);
            if fits(&p) {
                // Each resident block adds one block's bytes to the DiT stage only.
                let room = r.device_bytes.map_or(0, |m| m - dit_stage(&p).peak());
                let extra = room.checked_div(z.dit_block).unwrap_or(0) as usize;
                let keep = extra.min(layers.saturating_sub(2));
                return Ok(make(&z, r, layers, DitPlacement::Streamed { resident_blocks: keep }, tiled));
            }
            smallest = Some(p);
        }
    }
    let p = smallest.expect("placements were tried");
    let gb = bytes_label;
    let worst = p.stages.iter().max_by_key(|s| s.peak()).expect("a plan has stages");
    Err(Error::Input(format!(
        "out of memory: nothing fits in {}: even with {}the VAE tiled, {} needs {} ({} weights, {} activations, \
         {} carried); use a smaller --base-size, a quantized model, or more memory\n{}",
        gb(r.device_bytes.unwrap_or(0)),
        if r.streaming { "the DiT blocks streamed and " } else { "" },
        worst.stage,
        gb(worst.peak()),
        gb(worst.weight_bytes),
        gb(worst.activation_bytes),
        gb(worst.carried_bytes),
        p.table()
    )))
}

const DIT_STAGE: &str = "dit step";

fn dit_stage(p: &Plan) -> &StagePlan {
    p.stages.iter().find(|s| s.stage == DIT_STAGE).expect("a plan has a DiT stage")
}

fn make(z: &Sizes, r: &PlanRequest, layers: usize, dit: DitPlacement, tiled: bool) -> Plan {
    let pick = |(full, tile): (u64, u64)| if tiled { tile } else { full };
    let blocks = layers as u64 * z.dit_block;
    let dit_weights = z.dit_weights - blocks + dit.device_blocks(layers) as u64 * z.dit_block;
    let stages = vec![
        StagePlan {
            stage: "text encoder",
            weight_bytes: z.text_weights,
            activation_bytes: z.text_act,
            carried_bytes: 0,
        },
        StagePlan {
            stage: "vae encode",
            weight_bytes: z.vae_weights,
            activation_bytes: pick(z.enc_act),
            carried_bytes: z.prompt_states,
        },
        StagePlan {
            stage: DIT_STAGE,
            weight_bytes: dit_weights,
            activation_bytes: z.dit_act,
            carried_bytes: z.prompt_states + z.vae_weights,
        },
        StagePlan {
            stage: "vae decode",
            weight_bytes: z.vae_weights,
            activation_bytes: pick(z.dec_act),
            carried_bytes: 0,
        },
    ];
    let largest_act = stages.iter().map(|s| s.activation_bytes).max().unwrap_or(0);
    let resident_peak = z.text_weights + z.vae_weights + dit_weights + largest_act;
    let components = if r.device_bytes.is_none_or(|m| resident_peak <= m) {
        Components::Resident
    } else {
        Components::InTurn
    };
    Plan {
        pixels: r.pixels,
        format: r.format,
        device_bytes: r.device_bytes,
        components,
        dit,
        vae_tiling: tiled.then_some(r.tiling),
        stages,
        dit_block_bytes: z.dit_block,
        dit_blocks: layers,
    }
}

#[cfg(test)]
mod tests;
