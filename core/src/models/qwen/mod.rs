//! The Qwen3-VL encoder as JoyAI-Image-Edit uses it (model-spec §3): the vision tower with its
//! DeepStack taps, and the text decoder whose last layer's states **before** the final norm are the
//! DiT's text stream. `lm_head` and the final norm are never used.

mod config;

pub use config::{QwenConfig, VisionConfig};

use super::loader::{DTypePolicy, Loader};
use super::Linear;
use crate::backend::{RopePairing, ScatterMode};
use crate::weights::Checkpoint;
use crate::{Backend, DType, Error, Result, Rope, Tensor};

const VISION_EPS: f32 = 1e-6;

struct Norm<B: Backend> {
    w: Tensor<B>,
    b: Tensor<B>,
}

impl<B: Backend> Norm<B> {
    fn load(vb: &Loader<B>) -> Result<Self> {
        Ok(Norm { w: vb.tensor("weight")?, b: vb.tensor("bias")? })
    }
    fn fwd(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        x.layer_norm(Some(&self.w), Some(&self.b), VISION_EPS)
    }
}

struct VisionBlock<B: Backend> {
    norm1: Norm<B>,
    norm2: Norm<B>,
    qkv: Linear<B>,
    proj: Linear<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

struct Merger<B: Backend> {
    norm: Norm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
    /// DeepStack mergers normalise after grouping 4 patches; the final merger before.
    post_shuffle: bool,
}

impl<B: Backend> Merger<B> {
    fn load(vb: &Loader<B>, post_shuffle: bool) -> Result<Self> {
        Ok(Merger {
            norm: Norm::load(&vb.pp("norm"))?,
            fc1: Linear::load(&vb.pp("linear_fc1"))?,
            fc2: Linear::load(&vb.pp("linear_fc2"))?,
            post_shuffle,
        })
    }
    fn fwd(&self, x: &Tensor<B>, group: usize) -> Result<Tensor<B>> {
        let (n, c) = (x.dims()[0], x.dims()[1]);
        let g = if self.post_shuffle {
            self.norm.fwd(&x.reshape([n / group, c * group])?)?
        } else {
            self.norm.fwd(x)?.reshape([n / group, c * group])?
        };
        self.fc2.fwd(&self.fc1.fwd(&g)?.gelu_erf()?)
    }
}

struct TextLayer<B: Backend> {
    input_norm: Tensor<B>,
    post_norm: Tensor<B>,
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    o: Linear<B>,
    q_norm: Tensor<B>,
    k_norm: Tensor<B>,
    gate: Linear<B>,
    up: Linear<B>,
    down: Linear<B>,
}

/// The vision tower's outputs for one image.
pub struct VisionFeatures<B: Backend> {
    /// Merger output `[N_vis, out_hidden]`, in the order of the `<|image_pad|>` tokens.
    pub embeds: Tensor<B>,
    /// One DeepStack feature `[N_vis, out_hidden]` per tap, added after decoder layers 0, 1, ….
    pub deepstack: Vec<Tensor<B>>,
    /// The merged grid `(rows, cols)`.
    pub grid: (usize, usize),
}

/// The Qwen3-VL encoder with its weights on a backend.
pub struct Qwen<B: Backend> {
    cfg: QwenConfig,
    backend: B,
    dtype: DType,
    patch_embed: Linear<B>,
    pos_embed: Tensor<B>,
    blocks: Vec<VisionBlock<B>>,
    merger: Merger<B>,
    deepstack: Vec<Merger<B>>,
    embed_tokens: Tensor<B>,
    layers: Vec<TextLayer<B>>,
}

/// Per-layer K/V of a shared prompt prefix (after RoPE), for encoding a second prompt that starts
/// with the same tokens.
struct PrefixCache<B: Backend> {
    kv: Vec<(Tensor<B>, Tensor<B>)>,
    len: usize,
}

impl<B: Backend> Qwen<B> {
    pub fn load(be: &B, ck: &Checkpoint, cfg: &QwenConfig, dtype: DType) -> Result<Self> {
        ck.check_exact("text_encoder", &cfg.param_specs(), &QwenConfig::unused_names())?;
        let policy = DTypePolicy::uniform(dtype);
        let vb = Loader::new(ck, be, &policy);
        let visual = vb.pp("model.visual");
        let blocks = (0..cfg.vision.depth)
            .map(|b| {
                let block = visual.pp(format!("blocks.{b}"));
                Ok(VisionBlock {
                    norm1: Norm::load(&block.pp("norm1"))?,
                    norm2: Norm::load(&block.pp("norm2"))?,
                    qkv: Linear::load(&block.pp("attn.qkv"))?,
                    proj: Linear::load(&block.pp("attn.proj"))?,
                    fc1: Linear::load(&block.pp("mlp.linear_fc1"))?,
                    fc2: Linear::load(&block.pp("mlp.linear_fc2"))?,
                })
            })
            .collect::<Result<_>>()?;
        let deepstack = (0..cfg.vision.deepstack_visual_indexes.len())
            .map(|k| Merger::load(&visual.pp(format!("deepstack_merger_list.{k}")), true))
            .collect::<Result<_>>()?;
        let text = vb.pp("model.language_model");
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| {
                let layer = text.pp(format!("layers.{l}"));
                let lin = |n: &str| Linear::load(&layer.pp(n));
                Ok(TextLayer {
                    input_norm: layer.tensor("input_layernorm.weight")?,
                    post_norm: layer.tensor("post_attention_layernorm.weight")?,
                    q: lin("self_attn.q_proj")?,
                    k: lin("self_attn.k_proj")?,
                    v: lin("self_attn.v_proj")?,
                    o: lin("self_attn.o_proj")?,
                    q_norm: layer.tensor("self_attn.q_norm.weight")?,
                    k_norm: layer.tensor("self_attn.k_norm.weight")?,
                    gate: lin("mlp.gate_proj")?,
                    up: lin("mlp.up_proj")?,
                    down: lin("mlp.down_proj")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Qwen {
            cfg: cfg.clone(),
            backend: be.clone(),
            dtype,
            patch_embed: Linear::load_patch_embed(&visual.pp("patch_embed.proj"))?,
            pos_embed: visual.tensor("pos_embed.weight")?,
            blocks,
            merger: Merger::load(&visual.pp("merger"), false)?,
            deepstack,
            embed_tokens: text.tensor("embed_tokens.weight")?,
            layers,
        })
    }

    pub fn config(&self) -> &QwenConfig {
        &self.cfg
    }

    /// Runs the vision tower on `pixel_values [gh·gw, C·T·P·P]` (merge-block patch order).
    pub fn encode_image(
        &self,
        pixel_values: &Tensor<B>,
        grid_h: usize,
        grid_w: usize,
    ) -> Result<VisionFeatures<B>> {
        let v = &self.cfg.vision;
        let m = v.spatial_merge_size;
        let n = grid_h * grid_w;
        if pixel_values.shape().rank() != 2
            || pixel_values.dims()[0] != n
            || !grid_h.is_multiple_of(m)
            || !grid_w.is_multiple_of(m)
        {
            return Err(Error::shape(
                "qwen vision",
                format!("pixel values {} do not fit a {grid_h}x{grid_w} patch grid", pixel_values.shape()),
            ));
        }
        // Patch (row, col) in merge-block order.
        let pos: Vec<(usize, usize)> = (0..n)
            .map(|i| {
                let (blk, inner) = (i / (m * m), i % (m * m));
                let (br, bc) = (blk / (grid_w / m), blk % (grid_w / m));
                (br * m + inner / m, bc * m + inner % m)
            })
            .collect();
        let mut x = self.patch_embed.fwd(&pixel_values.cast(self.dtype)?)?;

        // Bilinear resampling of the square position table (align_corners = true), 4 taps per patch.
        let side = (v.num_position_embeddings as f64).sqrt() as usize;
        let axis = |i: usize, len: usize| -> [(u32, f32); 2] {
            let src = i as f32 * (side - 1) as f32 / (len.max(2) - 1) as f32;
            let f = src.floor();
            let t0 = (f as usize).min(side - 1);
            let t1 = (f as usize + 1).min(side - 1);
            [(t0 as u32, (1.0 - (src - f)).max(0.0)), (t1 as u32, (1.0 - (src - f - 1.0).abs()).max(0.0))]
        };
        let (mut idx, mut wts) = (Vec::with_capacity(4 * n), Vec::with_capacity(4 * n));
        for &(r, c) in &pos {
            for (hr, hw) in axis(r, grid_h) {
                for (wc, ww) in axis(c, grid_w) {
                    idx.push(hr * side as u32 + wc);
                    wts.push(hw * ww);
                }
            }
        }
        x = x.add(&self.pos_embed.gather_rows(&idx, Some(&wts), 4)?)?;

        // 2-D rotary angles: [h·inv_freq, w·inv_freq], pairs (m, m + D/2).
        let hd = v.hidden_size / v.num_heads;
        let spatial = hd / 2;
        let inv: Vec<f32> = (0..spatial / 2)
            .map(|k| 1.0 / (v.rope_theta as f32).powf((2 * k) as f32 / spatial as f32))
            .collect();
        let mut ang = Vec::with_capacity(n * spatial);
        for &(r, c) in &pos {
            ang.extend(inv.iter().map(|f| r as f32 * f));
            ang.extend(inv.iter().map(|f| c as f32 * f));
        }
        let rope = Rope::from_angles(&self.backend, n, &ang, RopePairing::HalfSplit)?;

        let mut deepstack = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            let h = b.norm1.fwd(&x)?;
            let qkv = b.qkv.fwd(&h)?;
            let part =
                |k: usize| qkv.slice(1, k * v.hidden_size, v.hidden_size)?.reshape([n, v.num_heads, hd]);
            let (q, k, vv) = (part(0)?.rope(&rope)?, part(1)?.rope(&rope)?, part(2)?);
            let a = q.attention(&k, &vv, false, None)?.reshape([n, v.hidden_size])?;
            x = x.add(&b.proj.fwd(&a)?)?;
            x = x.add(&b.fc2.fwd(&b.fc1.fwd(&b.norm2.fwd(&x)?)?.gelu_tanh()?)?)?;
            if let Some(k) = v.deepstack_visual_indexes.iter().position(|&d| d == i) {
                deepstack.push((k, self.deepstack[k].fwd(&x, m * m)?));
            }
        }
        deepstack.sort_by_key(|(k, _)| *k);
        Ok(VisionFeatures {
            embeds: self.merger.fwd(&x, m * m)?,
            deepstack: deepstack.into_iter().map(|(_, t)| t).collect(),
            grid: (grid_h / m, grid_w / m),
        })
    }

    /// 3-D M-RoPE positions `(t, h, w)` for `ids` (transformers' `get_rope_index` for one image):
    /// text counts up; the image pads take `(p₀, p₀ + row, p₀ + col)` on the merged grid; text after
    /// the image resumes at `p₀ + max(rows, cols)`.
    pub fn positions(&self, ids: &[u32], grid: (usize, usize)) -> Result<Vec<[usize; 3]>> {
        let pads: Vec<usize> =
            ids.iter().enumerate().filter(|(_, &t)| t == self.cfg.image_token_id).map(|(i, _)| i).collect();
        let n_vis = grid.0 * grid.1;
        if pads.len() != n_vis || pads.windows(2).any(|w| w[1] != w[0] + 1) {
            return Err(Error::Input(format!(
                "the prompt holds {} image pad tokens; the image needs {n_vis} in one run",
                pads.len()
            )));
        }
        let mut out = Vec::with_capacity(ids.len());
        let p0 = pads.first().copied().unwrap_or(ids.len());
        for i in 0..p0 {
            out.push([i; 3]);
        }
        for k in 0..n_vis {
            out.push([p0, p0 + k / grid.1, p0 + k % grid.1]);
        }
        let next = p0 + if n_vis > 0 { grid.0.max(grid.1) } else { 0 };
        for (j, _) in ids.iter().enumerate().skip(p0 + n_vis) {
            let p = next + (j - p0 - n_vis);
            out.push([p; 3]);
        }
        Ok(out)
    }

    /// Interleaved M-RoPE angles per token: slot `m` takes H if `m % 3 == 1`, W if `m % 3 == 2`
    /// (within `3·section`), T otherwise.
    fn text_angles(&self, pos: &[[usize; 3]]) -> Vec<f32> {
        let d = self.cfg.head_dim;
        let inv: Vec<f32> =
            (0..d / 2).map(|k| 1.0 / (self.cfg.rope_theta as f32).powf((2 * k) as f32 / d as f32)).collect();
        let [_, sh, sw] = self.cfg.mrope_section;
        let axis = |m: usize| -> usize {
            if m % 3 == 1 && m < 3 * sh {
                1
            } else if m % 3 == 2 && m < 3 * sw {
                2
            } else {
                0
            }
        };
        pos.iter().flat_map(|p| inv.iter().enumerate().map(move |(m, f)| p[axis(m)] as f32 * f)).collect()
    }

    /// The last decoder layer's output before the final norm, all `ids.len()` rows.
    pub fn encode_text(&self, ids: &[u32], image: &VisionFeatures<B>) -> Result<Tensor<B>> {
        Ok(self.run_text(ids, image, None, false)?.0)
    }

    /// Encodes the positive and the negative prompt for the same image. The negative pass reuses
    /// the K/V of the prefix the two prompts share (everything up to the vision end token), so
    /// only its own suffix runs through the decoder; the result equals encoding it alone.
    pub fn encode_pair(
        &self,
        pos: &[u32],
        neg: &[u32],
        image: &VisionFeatures<B>,
    ) -> Result<(Tensor<B>, Tensor<B>)> {
        let end = self.cfg.vision_end_token_id;
        let shared = pos.iter().zip(neg).take_while(|(a, b)| a == b).count();
        let prefix = pos[..shared].iter().rposition(|&t| t == end).map(|i| i + 1).unwrap_or(0);
        if prefix == 0 || prefix == neg.len() {
            return Ok((self.encode_text(pos, image)?, self.encode_text(neg, image)?));
        }
        let (hp, cache) = self.run_text(pos, image, None, true)?;
        let cache = cache.map(|c| PrefixCache { kv: c.kv, len: prefix });
        let (suffix, _) = self.run_text(neg, image, cache.as_ref(), false)?;
        let hn = Tensor::concat(&[&hp.slice(0, 0, prefix)?, &suffix], 0)?;
        Ok((hp, hn))
    }

    fn run_text(
        &self,
        ids: &[u32],
        image: &VisionFeatures<B>,
        prefix: Option<&PrefixCache<B>>,
        keep_kv: bool,
    ) -> Result<(Tensor<B>, Option<PrefixCache<B>>)> {
        let c = &self.cfg;
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::Input(format!(
                "token id {bad} is outside the vocabulary of {}",
                c.vocab_size
            )));
        }
        let positions = self.positions(ids, image.grid)?;
        let start = prefix.map_or(0, |p| p.len);
        let s = ids.len() - start;
        let pads: Vec<u32> =
            (start..ids.len()).filter(|&i| ids[i] == c.image_token_id).map(|i| (i - start) as u32).collect();
        let mut h = self.embed_tokens.embedding(&ids[start..])?;
        if !pads.is_empty() {
            // A prefix that ends mid-image cannot happen: the cache always ends after the vision end token.
            h = h.scatter_rows(&pads, &image.embeds.cast(self.dtype)?, ScatterMode::Assign)?;
        }
        let rope = Rope::from_angles(
            &self.backend,
            s,
            &self.text_angles(&positions[start..]),
            RopePairing::HalfSplit,
        )?;
        let (hq, hkv, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let mut kv_out = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let x = h.rms_norm(&layer.input_norm, c.rms_norm_eps)?;
            let q =
                layer.q.fwd(&x)?.reshape([s, hq, d])?.rms_norm_rope(&layer.q_norm, &rope, c.rms_norm_eps)?;
            let mut k =
                layer.k.fwd(&x)?.reshape([s, hkv, d])?.rms_norm_rope(&layer.k_norm, &rope, c.rms_norm_eps)?;
            let mut v = layer.v.fwd(&x)?.reshape([s, hkv, d])?;
            if keep_kv {
                kv_out.push((k.clone(), v.clone()));
            }
            if let Some(p) = prefix {
                let (pk, pv) = &p.kv[l];
                k = Tensor::concat(&[&pk.slice(0, 0, p.len)?, &k], 0)?;
                v = Tensor::concat(&[&pv.slice(0, 0, p.len)?, &v], 0)?;
            }
            let a = q.attention(&k, &v, true, None)?.reshape([s, hq * d])?;
            h = h.add(&layer.o.fwd(&a)?)?;
            let x = h.rms_norm(&layer.post_norm, c.rms_norm_eps)?;
            h = h.add(&layer.down.fwd(&layer.gate.fwd(&x)?.swiglu(&layer.up.fwd(&x)?)?)?)?;
            if let Some(feat) = image.deepstack.get(l) {
                if !pads.is_empty() {
                    h = h.scatter_rows(&pads, &feat.cast(self.dtype)?, ScatterMode::Add)?;
                }
            }
        }
        Ok((h, keep_kv.then_some(PrefixCache { kv: kv_out, len: ids.len() })))
    }
}
