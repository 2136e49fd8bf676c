//! The Wan 2.1 VAE (`AutoencoderKLWan`) for single images, as the exact 2-D reduction of its causal
//! 3-D network (model-spec §4.5): with one frame every 3×3×3 causal conv sees `[0, 0, x]`, so it is
//! a 2-D conv with the last temporal tap; the temporal resample convs are skipped on the first
//! chunk, so `downsample3d`/`upsample3d` act as their 2-D versions.

use super::loader::{DTypePolicy, Loader};
use crate::limits::{all_in_range, in_range, positive, MAX_CHANNELS, MAX_VAE_BASE_DIM, MAX_VAE_DIM_MULT};
use crate::limits::{
    LATENTS_MEAN as LATENTS_MEAN_RANGE, LATENTS_STD as LATENTS_STD_RANGE, MAX_VAE_RES_BLOCKS, VAE_STAGES,
};
use crate::model_folder::{parse_config, read_json, sets};
use crate::weights::{param_count, wan_vae_key_to_diffusers, Checkpoint, ParamSpec};
use crate::{Backend, DType, Error, Result, Tensor};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// `vae/config.json`. Absent (or `null`) keys take the diffusers class defaults, which are the
/// released model's; `decoder_base_dim` defaults to `base_dim`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default = "VaeConfig::full")]
pub struct VaeConfig {
    pub base_dim: usize,
    pub decoder_base_dim: usize,
    pub z_dim: usize,
    pub dim_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub temperal_downsample: Vec<bool>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub latents_mean: Vec<f32>,
    pub latents_std: Vec<f32>,
}

/// The published latent statistics (model-spec §4.6).
pub const LATENTS_MEAN: [f32; 16] = [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632,
    -0.1922, -0.9497, 0.2503, -0.2921,
];
pub const LATENTS_STD: [f32; 16] = [
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382,
    1.1253, 2.8251, 1.9160,
];

/// A decoder up block: its residual blocks and its upsampler (none in the last).
pub(crate) type UpBlock = (Vec<Block>, Option<Block>);

/// One stage of the encoder's or decoder's flat block list.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Block {
    Res {
        cin: usize,
        cout: usize,
    },
    /// Zero pad (right, bottom) + 3×3 stride-2 conv; `temporal` marks the (unused) `time_conv`.
    Down {
        c: usize,
        temporal: bool,
    },
    /// Nearest ×2 + 3×3 conv `c → c/2`.
    Up {
        c: usize,
        temporal: bool,
    },
}

impl VaeConfig {
    /// The released model, which is also what diffusers' `AutoencoderKLWan` defaults to.
    pub fn full() -> VaeConfig {
        VaeConfig {
            base_dim: 96,
            decoder_base_dim: 96,
            z_dim: 16,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            temperal_downsample: vec![false, true, true],
            in_channels: 3,
            out_channels: 3,
            latents_mean: LATENTS_MEAN.to_vec(),
            latents_std: LATENTS_STD.to_vec(),
        }
    }

    pub fn from_file(path: &Path) -> Result<VaeConfig> {
        Self::from_json(&read_json(path)?, path)
    }

    pub fn from_json(v: &Value, path: &Path) -> Result<VaeConfig> {
        let bad = |m: String| Error::config(path, m);
        let mut cfg: VaeConfig = parse_config(v, path)?;
        if !sets(v, "decoder_base_dim") {
            cfg.decoder_base_dim = cfg.base_dim;
        }
        if v.get("is_residual").and_then(Value::as_bool) == Some(true) {
            return Err(bad("is_residual = true is the Wan 2.2 VAE; JoyAI-Image-Edit uses Wan 2.1".into()));
        }
        if v.get("attn_scales").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
            return Err(bad(
                "attention in the down/up blocks (attn_scales) is not supported; Wan 2.1 has none".into(),
            ));
        }
        if v.get("patch_size").is_some_and(|p| !p.is_null()) {
            return Err(bad("patch_size must be null (Wan 2.1)".into()));
        }
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// Every value in its range ([`crate::limits`]) before anything is sized from it.
    fn validate(&self) -> std::result::Result<(), String> {
        positive("base_dim", self.base_dim, MAX_VAE_BASE_DIM)?;
        positive("decoder_base_dim", self.decoder_base_dim, MAX_VAE_BASE_DIM)?;
        positive("z_dim", self.z_dim, MAX_CHANNELS)?;
        positive("num_res_blocks", self.num_res_blocks, MAX_VAE_RES_BLOCKS)?;
        positive("in_channels", self.in_channels, MAX_CHANNELS)?;
        positive("out_channels", self.out_channels, MAX_CHANNELS)?;
        in_range("dim_mult length", self.dim_mult.len(), VAE_STAGES)?;
        all_in_range("dim_mult", &self.dim_mult, (1, MAX_VAE_DIM_MULT))?;
        if self.temperal_downsample.len() != self.dim_mult.len() - 1 {
            return Err(format!(
                "dim_mult {:?} needs one temperal_downsample entry per downsampling",
                self.dim_mult
            ));
        }
        for (field, v) in [("latents_mean", &self.latents_mean), ("latents_std", &self.latents_std)] {
            if v.len() != self.z_dim {
                return Err(format!("`{field}` holds {} values, z_dim = {} expected", v.len(), self.z_dim));
            }
        }
        all_in_range("latents_mean", &self.latents_mean, LATENTS_MEAN_RANGE)?;
        all_in_range("latents_std", &self.latents_std, LATENTS_STD_RANGE)
    }

    /// Spatial downscale factor (8 for Wan 2.1).
    pub fn scale(&self) -> usize {
        1 << (self.dim_mult.len() - 1)
    }

    pub(crate) fn encoder_blocks(&self) -> (Vec<Block>, usize) {
        let dims: Vec<usize> =
            std::iter::once(1).chain(self.dim_mult.iter().copied()).map(|m| m * self.base_dim).collect();
        let mut out = Vec::new();
        for i in 0..self.dim_mult.len() {
            let mut cin = dims[i];
            for _ in 0..self.num_res_blocks {
                out.push(Block::Res { cin, cout: dims[i + 1] });
                cin = dims[i + 1];
            }
            if i != self.dim_mult.len() - 1 {
                out.push(Block::Down { c: dims[i + 1], temporal: self.temperal_downsample[i] });
            }
        }
        (out, *dims.last().unwrap())
    }

    /// Decoder up blocks: `(resnets, upsampler)` per block, and the first/last widths.
    pub(crate) fn decoder_blocks(&self) -> (Vec<UpBlock>, usize, usize) {
        let m = &self.dim_mult;
        let dims: Vec<usize> = std::iter::once(*m.last().unwrap())
            .chain(m.iter().rev().copied())
            .map(|k| k * self.decoder_base_dim)
            .collect();
        let up_temporal: Vec<bool> = self.temperal_downsample.iter().rev().copied().collect();
        let mut out = Vec::new();
        for i in 0..m.len() {
            // Wan 2.1: the previous upsampler halved the channels.
            let mut cin = if i > 0 { dims[i] / 2 } else { dims[i] };
            let cout = dims[i + 1];
            let mut res = Vec::new();
            for _ in 0..=self.num_res_blocks {
                res.push(Block::Res { cin, cout });
                cin = cout;
            }
            let up = (i != m.len() - 1).then(|| Block::Up { c: cout, temporal: up_temporal[i] });
            out.push((res, up));
        }
        (out, dims[0], *dims.last().unwrap())
    }

    /// Every stored tensor (diffusers names, 3-D conv weights with their 5-D shapes).
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut s = Vec::new();
        let conv3 = |s: &mut Vec<ParamSpec>, name: &str, o: usize, i: usize, k: usize| {
            s.push(ParamSpec::new(format!("{name}.weight"), [o, i, k, k, k]));
            s.push(ParamSpec::new(format!("{name}.bias"), [o]));
        };
        let res = |s: &mut Vec<ParamSpec>, p: &str, a: usize, b: usize| {
            s.push(ParamSpec::new(format!("{p}.norm1.gamma"), [a, 1, 1, 1]));
            conv3(s, &format!("{p}.conv1"), b, a, 3);
            s.push(ParamSpec::new(format!("{p}.norm2.gamma"), [b, 1, 1, 1]));
            conv3(s, &format!("{p}.conv2"), b, b, 3);
            if a != b {
                conv3(s, &format!("{p}.conv_shortcut"), b, a, 1);
            }
        };
        let mid = |s: &mut Vec<ParamSpec>, p: &str, c: usize| {
            res(s, &format!("{p}.resnets.0"), c, c);
            s.push(ParamSpec::new(format!("{p}.attentions.0.norm.gamma"), [c, 1, 1]));
            s.push(ParamSpec::new(format!("{p}.attentions.0.to_qkv.weight"), [3 * c, c, 1, 1]));
            s.push(ParamSpec::new(format!("{p}.attentions.0.to_qkv.bias"), [3 * c]));
            s.push(ParamSpec::new(format!("{p}.attentions.0.proj.weight"), [c, c, 1, 1]));
            s.push(ParamSpec::new(format!("{p}.attentions.0.proj.bias"), [c]));
            res(s, &format!("{p}.resnets.1"), c, c);
        };
        let resample = |s: &mut Vec<ParamSpec>, p: &str, cin: usize, cout: usize, temporal: Option<usize>| {
            s.push(ParamSpec::new(format!("{p}.resample.1.weight"), [cout, cin, 3, 3]));
            s.push(ParamSpec::new(format!("{p}.resample.1.bias"), [cout]));
            if let Some(tc) = temporal {
                s.push(ParamSpec::new(format!("{p}.time_conv.weight"), [tc, cin, 3, 1, 1]));
                s.push(ParamSpec::new(format!("{p}.time_conv.bias"), [tc]));
            }
        };

        let (enc, top) = self.encoder_blocks();
        conv3(&mut s, "encoder.conv_in", self.base_dim, self.in_channels, 3);
        for (k, b) in enc.iter().enumerate() {
            let p = format!("encoder.down_blocks.{k}");
            match *b {
                Block::Res { cin, cout } => res(&mut s, &p, cin, cout),
                Block::Down { c, temporal } => resample(&mut s, &p, c, c, temporal.then_some(c)),
                Block::Up { .. } => unreachable!("encoder has no upsamplers"),
            }
        }
        mid(&mut s, "encoder.mid_block", top);
        s.push(ParamSpec::new("encoder.norm_out.gamma", [top, 1, 1, 1]));
        conv3(&mut s, "encoder.conv_out", 2 * self.z_dim, top, 3);
        conv3(&mut s, "quant_conv", 2 * self.z_dim, 2 * self.z_dim, 1);
        conv3(&mut s, "post_quant_conv", self.z_dim, self.z_dim, 1);

        let (dec, first, last) = self.decoder_blocks();
        conv3(&mut s, "decoder.conv_in", first, self.z_dim, 3);
        mid(&mut s, "decoder.mid_block", first);
        for (i, (resnets, up)) in dec.iter().enumerate() {
            for (j, b) in resnets.iter().enumerate() {
                if let Block::Res { cin, cout } = *b {
                    res(&mut s, &format!("decoder.up_blocks.{i}.resnets.{j}"), cin, cout);
                }
            }
            if let Some(Block::Up { c, temporal }) = *up {
                resample(
                    &mut s,
                    &format!("decoder.up_blocks.{i}.upsamplers.0"),
                    c,
                    c / 2,
                    temporal.then_some(2 * c),
                );
            }
        }
        s.push(ParamSpec::new("decoder.norm_out.gamma", [last, 1, 1, 1]));
        conv3(&mut s, "decoder.conv_out", self.out_channels, last, 3);
        s
    }

    pub fn param_count(&self) -> u64 {
        param_count(&self.param_specs())
    }
}

/// A conv as 2-D weights (the last temporal tap of a causal 3-D conv).
struct Conv<B: Backend> {
    w: Tensor<B>,
    b: Tensor<B>,
    pad: usize,
}

impl<B: Backend> Conv<B> {
    fn load(vb: &Loader<B>) -> Result<Self> {
        let (shape, full) = vb.host_f32("weight")?;
        let d = shape.dims();
        let (w, k) = if d.len() == 5 {
            // [O, I, T, KH, KW] → [O, I, KH, KW] at t = T−1: the only tap that sees the frame.
            let (o, i, t, kh, kw) = (d[0], d[1], d[2], d[3], d[4]);
            let plane = kh * kw;
            let mut w = Vec::with_capacity(o * i * plane);
            for oi in 0..o * i {
                let base = (oi * t + t - 1) * plane;
                w.extend_from_slice(&full[base..base + plane]);
            }
            (vb.upload("weight", [o, i, kh, kw], &w)?, kh)
        } else {
            (vb.upload("weight", d.to_vec(), &full)?, d[2])
        };
        Ok(Conv { w, b: vb.tensor("bias")?, pad: k / 2 })
    }

    fn fwd(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let p = self.pad;
        x.conv2d(&self.w, Some(&self.b), 1, (p, p, p, p))
    }
}

/// A norm's `gamma`, stored `[C, 1, 1(, 1)]`, as `[C]`.
fn gamma<B: Backend>(vb: &Loader<B>) -> Result<Tensor<B>> {
    let g = vb.tensor("gamma")?;
    let c = g.dims()[0];
    g.reshape([c])
}

struct Res<B: Backend> {
    norm1: Tensor<B>,
    conv1: Conv<B>,
    norm2: Tensor<B>,
    conv2: Conv<B>,
    shortcut: Option<Conv<B>>,
}

impl<B: Backend> Res<B> {
    fn load(vb: &Loader<B>) -> Result<Self> {
        let shortcut = if vb.contains("conv_shortcut.weight") {
            Some(Conv::load(&vb.pp("conv_shortcut"))?)
        } else {
            None
        };
        Ok(Res {
            norm1: gamma(&vb.pp("norm1"))?,
            conv1: Conv::load(&vb.pp("conv1"))?,
            norm2: gamma(&vb.pp("norm2"))?,
            conv2: Conv::load(&vb.pp("conv2"))?,
            shortcut,
        })
    }

    fn fwd(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let h = match &self.shortcut {
            Some(s) => s.fwd(x)?,
            None => x.clone(),
        };
        let y = self.conv1.fwd(&x.channel_rms_norm(&self.norm1)?.silu()?)?;
        let y = self.conv2.fwd(&y.channel_rms_norm(&self.norm2)?.silu()?)?;
        y.add(&h)
    }
}

struct Attn<B: Backend> {
    norm: Tensor<B>,
    to_qkv: Conv<B>,
    proj: Conv<B>,
}

impl<B: Backend> Attn<B> {
    fn load(vb: &Loader<B>) -> Result<Self> {
        Ok(Attn {
            norm: gamma(&vb.pp("norm"))?,
            to_qkv: Conv::load(&vb.pp("to_qkv"))?,
            proj: Conv::load(&vb.pp("proj"))?,
        })
    }

    /// Single-head attention over the `H·W` positions with head dim `C`.
    fn fwd(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let [c, h, w] = x.dims()[..] else { unreachable!("VAE activations are [C, H, W]") };
        let qkv = self.to_qkv.fwd(&x.channel_rms_norm(&self.norm)?)?.reshape([3 * c, h * w])?;
        let part = |i: usize| qkv.slice(0, i * c, c)?.transpose_last2()?.reshape([h * w, 1, c]);
        let a = part(0)?.attention(&part(1)?, &part(2)?, false, None)?;
        let a = a.reshape([h * w, c])?.transpose_last2()?.reshape([c, h, w])?;
        self.proj.fwd(&a)?.add(x)
    }
}

struct Mid<B: Backend> {
    res0: Res<B>,
    attn: Attn<B>,
    res1: Res<B>,
}

impl<B: Backend> Mid<B> {
    fn load(vb: &Loader<B>) -> Result<Self> {
        Ok(Mid {
            res0: Res::load(&vb.pp("resnets.0"))?,
            attn: Attn::load(&vb.pp("attentions.0"))?,
            res1: Res::load(&vb.pp("resnets.1"))?,
        })
    }
    fn fwd(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        self.res1.fwd(&self.attn.fwd(&self.res0.fwd(x)?)?)
    }
}

enum Stage<B: Backend> {
    Res(Box<Res<B>>),
    Down(Tensor<B>, Tensor<B>),
    Up(Tensor<B>, Tensor<B>),
}

impl<B: Backend> Stage<B> {
    fn fwd(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        match self {
            Stage::Res(r) => r.fwd(x),
            // ZeroPad2d((0, 1, 0, 1)) then a 3×3 stride-2 conv.
            Stage::Down(w, b) => x.conv2d(w, Some(b), 2, (0, 1, 0, 1)),
            Stage::Up(w, b) => x.upsample_nearest2x()?.conv2d(w, Some(b), 1, (1, 1, 1, 1)),
        }
    }
}

/// The Wan VAE with its weights on a backend.
pub struct Vae<B: Backend> {
    cfg: VaeConfig,
    enc_in: Conv<B>,
    enc: Vec<Stage<B>>,
    enc_mid: Mid<B>,
    enc_norm: Tensor<B>,
    enc_out: Conv<B>,
    quant: Conv<B>,
    post_quant: Conv<B>,
    dec_in: Conv<B>,
    dec_mid: Mid<B>,
    dec: Vec<Stage<B>>,
    dec_norm: Tensor<B>,
    dec_out: Conv<B>,
    mean: Tensor<B>,
    std: Tensor<B>,
    inv_std: Tensor<B>,
}

impl<B: Backend> Vae<B> {
    /// Loads the VAE (diffusers or original Wan names), checking the exact tensor set first. The
    /// `time_conv` weights are checked but not loaded: single images never use them.
    pub fn load(be: &B, ck: &Checkpoint, cfg: &VaeConfig, dtype: DType) -> Result<Self> {
        let nrb = cfg.num_res_blocks;
        let ck = ck.clone().with_renames(|n| wan_vae_key_to_diffusers(n, nrb))?;
        ck.check_exact("vae", &cfg.param_specs(), &[])?;
        let policy = DTypePolicy::uniform(dtype);
        let vb = Loader::new(&ck, be, &policy);
        let resample = |vb: Loader<B>| -> Result<(Tensor<B>, Tensor<B>)> {
            Ok((vb.tensor("resample.1.weight")?, vb.tensor("resample.1.bias")?))
        };
        let (eb, _) = cfg.encoder_blocks();
        let enc = eb
            .iter()
            .enumerate()
            .map(|(k, b)| {
                let p = vb.pp(format!("encoder.down_blocks.{k}"));
                Ok(match b {
                    Block::Res { .. } => Stage::Res(Box::new(Res::load(&p)?)),
                    _ => {
                        let (w, bb) = resample(p)?;
                        Stage::Down(w, bb)
                    }
                })
            })
            .collect::<Result<_>>()?;
        let (db, _, _) = cfg.decoder_blocks();
        let mut dec = Vec::new();
        for (i, (resnets, up)) in db.iter().enumerate() {
            let block = vb.pp(format!("decoder.up_blocks.{i}"));
            for j in 0..resnets.len() {
                dec.push(Stage::Res(Box::new(Res::load(&block.pp(format!("resnets.{j}")))?)));
            }
            if up.is_some() {
                let (w, b) = resample(block.pp("upsamplers.0"))?;
                dec.push(Stage::Up(w, b));
            }
        }
        let z = cfg.z_dim;
        // The latent statistics stay f32 whatever the weights' dtype: they act on f32 latents.
        let stat = |v: &[f32]| Tensor::from_f32(be, [z, 1, 1], v, DType::F32);
        Ok(Vae {
            cfg: cfg.clone(),
            enc_in: Conv::load(&vb.pp("encoder.conv_in"))?,
            enc,
            enc_mid: Mid::load(&vb.pp("encoder.mid_block"))?,
            enc_norm: gamma(&vb.pp("encoder.norm_out"))?,
            enc_out: Conv::load(&vb.pp("encoder.conv_out"))?,
            quant: Conv::load(&vb.pp("quant_conv"))?,
            post_quant: Conv::load(&vb.pp("post_quant_conv"))?,
            dec_in: Conv::load(&vb.pp("decoder.conv_in"))?,
            dec_mid: Mid::load(&vb.pp("decoder.mid_block"))?,
            dec,
            dec_norm: gamma(&vb.pp("decoder.norm_out"))?,
            dec_out: Conv::load(&vb.pp("decoder.conv_out"))?,
            mean: stat(&cfg.latents_mean)?,
            std: stat(&cfg.latents_std)?,
            inv_std: stat(&cfg.latents_std.iter().map(|s| 1.0 / s).collect::<Vec<_>>())?,
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// Posterior `(mean, logvar)`, each `[z_dim, H/8, W/8]`, of pixels `[3, H, W]` in `[−1, 1]`.
    pub fn encode(&self, x: &Tensor<B>) -> Result<(Tensor<B>, Tensor<B>)> {
        let h = self.encoder_mid(x)?;
        let h = self.enc_out.fwd(&h.channel_rms_norm(&self.enc_norm)?.silu()?)?;
        let q = self.quant.fwd(&h)?;
        let z = self.cfg.z_dim;
        Ok((q.slice(0, 0, z)?, q.slice(0, z, z)?))
    }

    /// The encoder's mid-block output `[C_top, H/8, W/8]` (a debug point the fixtures dump).
    pub fn encoder_mid(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let s = self.cfg.scale();
        let ok = x.shape().rank() == 3
            && x.dims()[0] == self.cfg.in_channels
            && x.dims()[1].is_multiple_of(s)
            && x.dims()[2].is_multiple_of(s);
        if !ok {
            return Err(Error::shape(
                "vae encode",
                format!(
                    "pixels {} are not [{}, H, W] with H, W multiples of {s}",
                    x.shape(),
                    self.cfg.in_channels
                ),
            ));
        }
        let mut h = self.enc_in.fwd(x)?;
        for st in &self.enc {
            h = st.fwd(&h)?;
        }
        self.enc_mid.fwd(&h)
    }

    /// Pixels `[3, 8h, 8w]` of latents `z [z_dim, h, w]` (already de-normalised), clamped to
    /// `[−1, 1]` as diffusers' `_decode` does; returned on the host, where they are consumed.
    /// NaN or Inf in the output is an [`crate::Error::NonFinite`].
    pub fn decode(&self, z: &Tensor<B>) -> Result<Vec<f32>> {
        Self::clamp_decoded(self.decode_unclamped(z)?.to_f32_vec()?)
    }

    /// [`Vae::decode`] with the pixels read back through [`Backend::download_async`].
    pub async fn decode_async(&self, z: &Tensor<B>) -> Result<Vec<f32>> {
        Self::clamp_decoded(self.decode_unclamped(z)?.to_f32_vec_async().await?)
    }

    /// The decoder's host output checked and clamped to `[−1, 1]`.
    pub(super) fn clamp_decoded(raw: Vec<f32>) -> Result<Vec<f32>> {
        // Before the clamp, which would turn ±Inf into a flat ±1 image.
        crate::finite::check_finite(|| "the VAE decoder".into(), &raw)?;
        Ok(raw.into_iter().map(|v| v.clamp(-1.0, 1.0)).collect())
    }

    /// The decoder's output before the clamp.
    pub fn decode_unclamped(&self, z: &Tensor<B>) -> Result<Tensor<B>> {
        let mut h = self.decoder_mid(z)?;
        for st in &self.dec {
            h = st.fwd(&h)?;
        }
        self.dec_out.fwd(&h.channel_rms_norm(&self.dec_norm)?.silu()?)
    }

    /// The decoder's mid-block output `[C_top, h, w]` (a debug point the fixtures dump).
    pub fn decoder_mid(&self, z: &Tensor<B>) -> Result<Tensor<B>> {
        if z.shape().rank() != 3 || z.dims()[0] != self.cfg.z_dim {
            return Err(Error::shape(
                "vae decode",
                format!("latents {} are not [{}, h, w]", z.shape(), self.cfg.z_dim),
            ));
        }
        self.dec_mid.fwd(&self.dec_in.fwd(&self.post_quant.fwd(z)?)?)
    }

    /// `(z − latents_mean)/latents_std` per channel (f32 in, f32 out). diffusers divides; the
    /// product with the f32 reciprocal used here differs from it by at most an ulp.
    pub fn normalize(&self, z: &Tensor<B>) -> Result<Tensor<B>> {
        z.cast(DType::F32)?.sub(&self.mean)?.mul(&self.inv_std)
    }

    /// `z·latents_std + latents_mean` per channel (f32).
    pub fn denormalize(&self, z: &Tensor<B>) -> Result<Tensor<B>> {
        z.cast(DType::F32)?.mul(&self.std)?.add(&self.mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_size_parameter_count() {
        // model-spec §4.1 / §5.1.
        let c = VaeConfig::full();
        assert_eq!(c.param_count(), 126_892_531);
        assert_eq!(c.param_specs().len(), 194);
    }

    #[test]
    fn tiny_config_matches_spec_counts() {
        // model-spec §7: base_dim 8, num_res_blocks 1 → 668,043 params in 146 tensors.
        let v = serde_json::json!({"base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1,
            "attn_scales": [], "temperal_downsample": [false, true, true]});
        let c = VaeConfig::from_json(&v, Path::new("vae/config.json")).unwrap();
        assert_eq!((c.param_count(), c.param_specs().len()), (668_043, 146));
    }

    #[test]
    fn wan22_is_refused() {
        let v = serde_json::json!({"is_residual": true});
        let e = VaeConfig::from_json(&v, Path::new("vae/config.json")).unwrap_err().to_string();
        assert!(e.contains("Wan 2.2"), "{e}");
    }
}
