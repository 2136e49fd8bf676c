//! The JoyImage MMDiT (`JoyImageEditTransformer3DModel`): 40 double-stream blocks at full size
//! (model-spec §2). Image and text streams have their own weights and share one joint attention;
//! the image tokens carry 3-D RoPE (adjacent pairs), the text tokens none.

mod blocks;

use super::loader::{DTypePolicy, Loader};
use super::Linear;
use crate::backend::{Epilogue, QkvStream};
use crate::limits::MAX_CHANNELS;
use crate::limits::{
    all_in_range, in_range, positive, MAX_HEADS, MAX_HEAD_DIM, MAX_LAYERS, MAX_WIDTH, MLP_WIDTH_RATIO,
    ROPE_THETA,
};
use crate::model_folder::{parse_config, read_json, sets};
use crate::weights::{dit_key_to_diffusers, param_count, Checkpoint, ParamSpec};
use crate::{Backend, DType, Error, Result, Rope, RopePairing, Tensor};
use blocks::Blocks;
use serde::Deserialize;
use std::path::Path;

const EPS: f32 = 1e-6;
/// Width of the sinusoidal timestep embedding.
const TIME_FREQ_DIM: usize = 256;

/// `transformer/config.json`. Absent (or `null`) keys take the diffusers class defaults, as
/// diffusers does; `out_channels` defaults to `in_channels`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default = "DitConfig::class_defaults")]
pub struct DitConfig {
    pub patch_size: [usize; 3],
    pub in_channels: usize,
    pub out_channels: usize,
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub text_dim: usize,
    pub mlp_width_ratio: f64,
    pub num_layers: usize,
    pub rope_dim_list: [usize; 3],
    pub theta: f64,
}

impl DitConfig {
    /// The released model (model-spec §2.1).
    pub fn full() -> DitConfig {
        DitConfig {
            hidden_size: 4096,
            num_attention_heads: 32,
            num_layers: 40,
            theta: 10000.0,
            ..Self::class_defaults()
        }
    }

    /// The defaults of diffusers' `JoyImageEditTransformer3DModel.__init__`.
    fn class_defaults() -> DitConfig {
        DitConfig {
            patch_size: [1, 2, 2],
            in_channels: 16,
            out_channels: 16,
            hidden_size: 3072,
            num_attention_heads: 24,
            text_dim: 4096,
            mlp_width_ratio: 4.0,
            num_layers: 20,
            rope_dim_list: [16, 56, 56],
            theta: 256.0,
        }
    }

    pub fn from_file(path: &Path) -> Result<DitConfig> {
        Self::from_json(&read_json(path)?, path)
    }

    pub fn from_json(v: &serde_json::Value, path: &Path) -> Result<DitConfig> {
        let bad = |m: String| Error::config(path, m);
        let mut cfg: DitConfig = parse_config(v, path)?;
        if !sets(v, "out_channels") {
            cfg.out_channels = cfg.in_channels;
        }
        if let Some(rt) = v.get("rope_type").and_then(|x| x.as_str()) {
            if rt != "rope" {
                return Err(bad(format!(
                    "rope_type {rt:?} is not supported (JoyAI-Image-Edit uses \"rope\")"
                )));
            }
        }
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// Every value in its range ([`crate::limits`]) before anything is sized from it.
    fn validate(&self) -> std::result::Result<(), String> {
        positive("hidden_size", self.hidden_size, MAX_WIDTH)?;
        positive("num_attention_heads", self.num_attention_heads, MAX_HEADS)?;
        positive("num_layers", self.num_layers, MAX_LAYERS)?;
        positive("in_channels", self.in_channels, MAX_CHANNELS)?;
        positive("out_channels", self.out_channels, MAX_CHANNELS)?;
        positive("text_dim", self.text_dim, MAX_WIDTH)?;
        in_range("mlp_width_ratio", self.mlp_width_ratio, MLP_WIDTH_RATIO)?;
        in_range("theta", self.theta, ROPE_THETA)?;
        positive("mlp hidden width (hidden_size × mlp_width_ratio)", self.mlp_hidden(), MAX_WIDTH)?;
        let h = self.num_attention_heads;
        if !self.hidden_size.is_multiple_of(h) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {h}",
                self.hidden_size
            ));
        }
        let hd = self.head_dim();
        positive("head dim (hidden_size / num_attention_heads)", hd, MAX_HEAD_DIM)?;
        all_in_range("rope_dim_list", &self.rope_dim_list, (0, hd))?;
        if self.rope_dim_list.iter().sum::<usize>() != hd || self.rope_dim_list.iter().any(|d| d % 2 != 0) {
            return Err(format!(
                "rope_dim_list {:?} must be even and sum to the head dim {hd}",
                self.rope_dim_list
            ));
        }
        if self.patch_size != [1, 2, 2] {
            return Err(format!(
                "patch_size {:?} is not supported (single images use [1, 2, 2])",
                self.patch_size
            ));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_width_ratio) as usize
    }

    fn patch_len(&self, channels: usize) -> usize {
        channels * self.patch_size.iter().product::<usize>()
    }

    /// Every stored tensor with its shape, in the diffusers names.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let (d, hd, m) = (self.hidden_size, self.head_dim(), self.mlp_hidden());
        let [pt, ph, pw] = self.patch_size;
        let mut s = vec![
            ParamSpec::new("img_in.weight", [d, self.in_channels, pt, ph, pw]),
            ParamSpec::new("img_in.bias", [d]),
            ParamSpec::new("condition_embedder.time_embedder.linear_1.weight", [d, TIME_FREQ_DIM]),
            ParamSpec::new("condition_embedder.time_embedder.linear_1.bias", [d]),
            ParamSpec::new("condition_embedder.time_embedder.linear_2.weight", [d, d]),
            ParamSpec::new("condition_embedder.time_embedder.linear_2.bias", [d]),
            ParamSpec::new("condition_embedder.time_proj.weight", [6 * d, d]),
            ParamSpec::new("condition_embedder.time_proj.bias", [6 * d]),
            ParamSpec::new("condition_embedder.text_embedder.linear_1.weight", [d, self.text_dim]),
            ParamSpec::new("condition_embedder.text_embedder.linear_1.bias", [d]),
            ParamSpec::new("condition_embedder.text_embedder.linear_2.weight", [d, d]),
            ParamSpec::new("condition_embedder.text_embedder.linear_2.bias", [d]),
        ];
        for l in 0..self.num_layers {
            let p = format!("double_blocks.{l}");
            for st in ["img", "txt"] {
                s.push(ParamSpec::new(format!("{p}.{st}_mod.modulate_table"), [1, 6, d]));
                s.push(ParamSpec::new(format!("{p}.attn.{st}_attn_qkv.weight"), [3 * d, d]));
                s.push(ParamSpec::new(format!("{p}.attn.{st}_attn_qkv.bias"), [3 * d]));
                s.push(ParamSpec::new(format!("{p}.attn.{st}_attn_q_norm.weight"), [hd]));
                s.push(ParamSpec::new(format!("{p}.attn.{st}_attn_k_norm.weight"), [hd]));
                s.push(ParamSpec::new(format!("{p}.attn.{st}_attn_proj.weight"), [d, d]));
                s.push(ParamSpec::new(format!("{p}.attn.{st}_attn_proj.bias"), [d]));
                s.push(ParamSpec::new(format!("{p}.{st}_mlp.net.0.proj.weight"), [m, d]));
                s.push(ParamSpec::new(format!("{p}.{st}_mlp.net.0.proj.bias"), [m]));
                s.push(ParamSpec::new(format!("{p}.{st}_mlp.net.2.weight"), [d, m]));
                s.push(ParamSpec::new(format!("{p}.{st}_mlp.net.2.bias"), [d]));
            }
        }
        s.push(ParamSpec::new("proj_out.weight", [self.patch_len(self.out_channels), d]));
        s.push(ParamSpec::new("proj_out.bias", [self.patch_len(self.out_channels)]));
        s
    }

    pub fn param_count(&self) -> u64 {
        param_count(&self.param_specs())
    }
}

/// One stream's weights in one block.
struct Stream<B: Backend> {
    table: Tensor<B>,
    qkv: Linear<B>,
    q_norm: Tensor<B>,
    k_norm: Tensor<B>,
    proj: Linear<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

/// The six modulation rows of one stream in one block.
struct Modulation<B: Backend> {
    rows: Vec<Tensor<B>>,
}

impl<B: Backend> Stream<B> {
    /// Stream `st` (`img` or `txt`) of the block at `block`.
    fn load(block: &Loader<B>, st: &str) -> Result<Self> {
        let attn = block.pp("attn");
        Ok(Stream {
            table: block.tensor(&format!("{st}_mod.modulate_table"))?,
            qkv: Linear::load(&attn.pp(format!("{st}_attn_qkv")))?,
            q_norm: attn.tensor(&format!("{st}_attn_q_norm.weight"))?,
            k_norm: attn.tensor(&format!("{st}_attn_k_norm.weight"))?,
            proj: Linear::load(&attn.pp(format!("{st}_attn_proj")))?,
            fc1: Linear::load(&block.pp(format!("{st}_mlp.net.0.proj")))?,
            fc2: Linear::load(&block.pp(format!("{st}_mlp.net.2")))?,
        })
    }

    /// `table + vec`, split into shift₁, scale₁, gate₁, shift₂, scale₂, gate₂.
    fn modulation(&self, vec: &Tensor<B>) -> Result<Modulation<B>> {
        let d = vec.dims()[1];
        let m = self.table.reshape([6, d])?.add(vec)?;
        Ok(Modulation { rows: (0..6).map(|k| m.slice(0, k, 1)?.reshape([d])).collect::<Result<_>>()? })
    }

    /// The fused QKV projection of the LN-modulated stream, `[L, 3·D]`.
    fn project_qkv(&self, x: &Tensor<B>, m: &Modulation<B>) -> Result<Tensor<B>> {
        self.qkv.fwd(&x.layer_norm_modulate(&m.rows[0], &m.rows[1], EPS)?)
    }

    /// This stream's part of the joint Q, K, V: its projection `qkv`, its q/k norms, and RoPE
    /// (the image stream) or none (the text stream).
    fn qkv_stream<'a>(&'a self, qkv: &'a Tensor<B>, rope: Option<&'a Rope<B>>) -> QkvStream<'a, B> {
        QkvStream { qkv, q_norm: &self.q_norm, k_norm: &self.k_norm, rope }
    }

    /// Gated attention output, then the gated MLP.
    /// The GELU and both gated residuals are the GEMMs' epilogues.
    fn finish(&self, x: &Tensor<B>, attn: &Tensor<B>, m: &Modulation<B>) -> Result<Tensor<B>> {
        let x = self.proj.fwd_with(attn, Epilogue::GatedResidual { residual: x, gate: &m.rows[2] })?;
        let h =
            self.fc1.fwd_with(&x.layer_norm_modulate(&m.rows[3], &m.rows[4], EPS)?, Epilogue::GeluTanh)?;
        self.fc2.fwd_with(&h, Epilogue::GatedResidual { residual: &x, gate: &m.rows[5] })
    }
}

/// The MMDiT with its weights on a backend.
pub struct Dit<B: Backend> {
    cfg: DitConfig,
    backend: B,
    dtype: DType,
    img_in: Linear<B>,
    time_1: Linear<B>,
    time_2: Linear<B>,
    time_proj: Linear<B>,
    text_1: Linear<B>,
    text_2: Linear<B>,
    blocks: Blocks<B>,
    proj_out: Linear<B>,
}

/// The sinusoidal timestep embedding `[cos(t·ω_k), sin(t·ω_k)]`, `ω_k = 10000^(−k/128)`, in f32
/// like diffusers' `get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0)`.
pub fn timestep_embedding(t: f32) -> Vec<f32> {
    let half = TIME_FREQ_DIM / 2;
    // -ln(10000) is a Python float that torch multiplies into an f32 arange.
    let freqs: Vec<f32> =
        (0..half).map(|k| (-(10000f64.ln() as f32) * k as f32 / half as f32).exp()).collect();
    let args: Vec<f32> = freqs.iter().map(|f| t * f).collect();
    args.iter()
        .map(|a| (*a as f64).cos() as f32)
        .chain(args.iter().map(|a| (*a as f64).sin() as f32))
        .collect()
}

/// RoPE angles of the image tokens: token `(f, i, j)` for `f < frames`, `i < gh`, `j < gw`; head
/// dims split into the t, h, w axis blocks of `dims`, angle `p·θ^(−2m/d)` per pair. f32 products,
/// as diffusers' `get_rotary_pos_embed` computes them.
pub fn rope_angles(frames: usize, gh: usize, gw: usize, dims: [usize; 3], theta: f64) -> Vec<f32> {
    let inv = |d: usize| -> Vec<f32> {
        (0..d / 2).map(|m| 1.0 / (theta as f32).powf((2 * m) as f32 / d as f32)).collect()
    };
    let (it, ih, iw) = (inv(dims[0]), inv(dims[1]), inv(dims[2]));
    let mut out = Vec::with_capacity(frames * gh * gw * (dims.iter().sum::<usize>() / 2));
    for f in 0..frames {
        for i in 0..gh {
            for j in 0..gw {
                out.extend(it.iter().map(|w| f as f32 * w));
                out.extend(ih.iter().map(|w| i as f32 * w));
                out.extend(iw.iter().map(|w| j as f32 * w));
            }
        }
    }
    out
}

/// What stays fixed for one request: the latent layout and the image tokens' RoPE table, built
/// once by [`Dit::prepare`] and shared by every step and both CFG branches.
pub struct DitRequest<B: Backend> {
    /// `[items, C, h, w]` of the latents every step passes.
    latent_dims: [usize; 4],
    rope: Rope<B>,
}

/// A prompt's text states after the DiT's text embedder (`[L, D]`), computed once per request by
/// [`Dit::embed_text`].
pub struct TextStream<B: Backend>(Tensor<B>);

impl<B: Backend> Dit<B> {
    /// Loads the transformer, checking the exact tensor set first (both key spellings accepted).
    pub fn load(backend: &B, ck: &Checkpoint, cfg: &DitConfig, dtype: DType) -> Result<Self> {
        Self::load_streamed(backend, ck, cfg, dtype, usize::MAX)
    }

    /// [`Dit::load`] with only the first `resident_blocks` double blocks kept on the device; the
    /// others wait in host memory and are streamed to the device block by block at every forward
    /// (with the same results). Each block passes through the device once while loading.
    pub fn load_streamed(
        backend: &B,
        ck: &Checkpoint,
        cfg: &DitConfig,
        dtype: DType,
        resident_blocks: usize,
    ) -> Result<Self> {
        let ck = ck.clone().with_renames(dit_key_to_diffusers)?;
        ck.check_exact("transformer", &cfg.param_specs(), &[])?;
        // diffusers keeps the time embedder in fp32 (`_keep_in_fp32_modules`).
        let policy = DTypePolicy::uniform(dtype).with("condition_embedder.time_embedder", DType::F32);
        let vb = Loader::new(&ck, backend, &policy);
        let cond = |name: &str| Linear::load(&vb.pp("condition_embedder").pp(name));
        let img_in = Linear::load_patch_embed(&vb.pp("img_in"))?;
        let mut blocks = Blocks::new(backend);
        for l in 0..cfg.num_layers {
            let block = vb.pp(format!("double_blocks.{l}"));
            blocks.push((Stream::load(&block, "img")?, Stream::load(&block, "txt")?), resident_blocks)?;
        }
        Ok(Dit {
            cfg: cfg.clone(),
            backend: backend.clone(),
            dtype,
            img_in,
            time_1: cond("time_embedder.linear_1")?,
            time_2: cond("time_embedder.linear_2")?,
            time_proj: cond("time_proj")?,
            text_1: cond("text_embedder.linear_1")?,
            text_2: cond("text_embedder.linear_2")?,
            blocks,
            proj_out: Linear::load(&vb.pp("proj_out"))?,
        })
    }

    pub fn config(&self) -> &DitConfig {
        &self.cfg
    }

    /// Double blocks kept on the device, and blocks streamed from host memory.
    pub fn block_placement(&self) -> (usize, usize) {
        self.blocks.counts()
    }

    /// The shared modulation vector `vec = time_proj(SiLU(temb))` as `[6, D]`: once per step.
    pub fn time_vector(&self, t: f32) -> Result<Tensor<B>> {
        let e = Tensor::from_f32(&self.backend, [1, TIME_FREQ_DIM], &timestep_embedding(t), DType::F32)?;
        let temb = self.time_2.fwd(&self.time_1.fwd(&e)?.silu()?)?;
        let vec = self.time_proj.fwd(&temb.cast(self.dtype)?.silu()?)?;
        vec.reshape([6, self.cfg.hidden_size])
    }

    /// The text stream's input `text_2(gelu(text_1(text)))` for text states `text [L, text_dim]`.
    pub fn embed_text(&self, text: &Tensor<B>) -> Result<TextStream<B>> {
        if text.shape().rank() != 2 || text.dims()[1] != self.cfg.text_dim {
            return Err(Error::shape(
                "dit",
                format!("text states {} are not [L, {}]", text.shape(), self.cfg.text_dim),
            ));
        }
        Ok(TextStream(self.text_2.fwd(&self.text_1.fwd_with(&text.cast(self.dtype)?, Epilogue::GeluTanh)?)?))
    }

    /// The per-request state for latents of shape `latent_dims` (`[items, C, h, w]`).
    pub fn prepare(&self, latent_dims: &[usize]) -> Result<DitRequest<B>> {
        let cfg = &self.cfg;
        let &[n, c, h, w] = latent_dims else {
            return Err(Error::shape(
                "dit",
                format!("latents must be [items, C, h, w], got {latent_dims:?}"),
            ));
        };
        if c != cfg.in_channels || h % 2 != 0 || w % 2 != 0 || n == 0 {
            return Err(Error::shape(
                "dit",
                format!("latents {latent_dims:?} do not fit {} channels and 2x2 patches", cfg.in_channels),
            ));
        }
        let (gh, gw) = (h / 2, w / 2);
        let angles = rope_angles(n, gh, gw, cfg.rope_dim_list, cfg.theta);
        let rope = Rope::from_angles(&self.backend, n * gh * gw, &angles, RopePairing::Interleaved)?;
        Ok(DitRequest { latent_dims: [n, c, h, w], rope })
    }

    /// Velocity for `latents [items, C, h, w]` (pipeline order: item 0 the reference, the last
    /// item the noisy target) at timestep `t` with text states `text [L, text_dim]`. Returns
    /// `[items, C_out, h, w]` in the same item order. One-shot: a denoising loop calls
    /// [`Dit::prepare`], [`Dit::embed_text`] and [`Dit::time_vector`] once and
    /// [`Dit::forward_with`] per step and branch.
    pub fn forward(&self, latents: &Tensor<B>, t: f32, text: &Tensor<B>) -> Result<Tensor<B>> {
        let req = self.prepare(latents.dims())?;
        let text = self.embed_text(text)?;
        self.forward_with(&req, latents, &self.time_vector(t)?, &text)
    }

    /// [`Dit::forward`] from the per-request state `req`, the step's time vector `vec` and a
    /// prompt's text stream.
    pub fn forward_with(
        &self,
        req: &DitRequest<B>,
        latents: &Tensor<B>,
        vec: &Tensor<B>,
        text: &TextStream<B>,
    ) -> Result<Tensor<B>> {
        let cfg = &self.cfg;
        if latents.dims() != req.latent_dims {
            return Err(Error::shape(
                "dit",
                format!("latents {} differ from the prepared {:?}", latents.shape(), req.latent_dims),
            ));
        }
        let (d, heads) = (cfg.hidden_size, cfg.num_attention_heads);
        if vec.dims() != [6, d] {
            return Err(Error::shape("dit", format!("time vector {} is not [6, {d}]", vec.shape())));
        }
        let [n, c, h, w] = req.latent_dims;
        let (gh, gw) = (h / 2, w / 2);
        let n_img = n * gh * gw;

        // The target (last item) becomes frame 0, the others follow in order.
        let order: Vec<usize> = std::iter::once(n - 1).chain(0..n - 1).collect();
        let frames = self.reorder(&latents.cast(self.dtype)?, &order)?;
        // Channel-major patch vectors (c·4 + ph·2 + pw), tokens frame-major then row then column.
        let patches =
            frames.reshape([n, c, gh, 2, gw, 2])?.permute(&[0, 2, 4, 1, 3, 5])?.reshape([n_img, c * 4])?;
        let mut img = self.img_in.fwd(&patches)?;
        let mut txt = text.0.clone();

        let l_txt = txt.dims()[0];
        self.blocks.for_each(|(si, st)| {
            let (mi, mt) = (si.modulation(vec)?, st.modulation(vec)?);
            let (xi, xt) = (si.project_qkv(&img, &mi)?, st.project_qkv(&txt, &mt)?);
            let streams = [si.qkv_stream(&xi, Some(&req.rope)), st.qkv_stream(&xt, None)];
            let [q, k, v] = Tensor::joint_qkv(streams, heads, EPS)?;
            let a = q.attention(&k, &v, false, None)?.reshape([n_img + l_txt, d])?;
            img = si.finish(&img, &a.slice(0, 0, n_img)?, &mi)?;
            txt = st.finish(&txt, &a.slice(0, n_img, l_txt)?, &mt)?;
            Ok(())
        })?;

        let y = self.proj_out.fwd(&img.layer_norm(None, None, EPS)?)?;
        // Features are channel-fastest: (ph·2 + pw)·C + c.
        let co = cfg.out_channels;
        let out = y.reshape([n, gh, gw, 2, 2, co])?.permute(&[0, 5, 1, 3, 2, 4])?.reshape([n, co, h, w])?;
        let mut inverse = vec![0; n];
        for (pos, &item) in order.iter().enumerate() {
            inverse[item] = pos;
        }
        self.reorder(&out, &inverse)
    }

    /// Items of `x [n, ...]` in the order `order` (frame k = item order[k]).
    fn reorder(&self, x: &Tensor<B>, order: &[usize]) -> Result<Tensor<B>> {
        if order.iter().enumerate().all(|(i, &o)| i == o) {
            return Ok(x.clone());
        }
        let parts: Vec<Tensor<B>> = order.iter().map(|&i| x.slice(0, i, 1)).collect::<Result<_>>()?;
        Tensor::concat(&parts.iter().collect::<Vec<_>>(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_size_parameter_count() {
        // model-spec §2.4 / §5.1; equals the published index's total_size / 2.
        assert_eq!(DitConfig::full().param_count(), 16_263_675_968);
    }

    #[test]
    fn config_validation_names_the_problem() {
        let p = Path::new("transformer/config.json");
        let mut v = serde_json::json!({"hidden_size": 64, "num_attention_heads": 4, "rope_dim_list": [4, 6, 6], "text_dim": 64, "num_layers": 2});
        assert!(DitConfig::from_json(&v, p).is_ok());
        v["rope_dim_list"] = serde_json::json!([4, 6, 8]);
        let e = DitConfig::from_json(&v, p).unwrap_err().to_string();
        assert!(e.contains("rope_dim_list") && e.contains("transformer/config.json"), "{e}");
        v["rope_dim_list"] = serde_json::json!([4, 6, 6]);
        v["rope_type"] = serde_json::json!("mrope");
        assert!(DitConfig::from_json(&v, p).unwrap_err().to_string().contains("rope_type"));
    }

    #[test]
    fn rope_angles_follow_axes() {
        let a = rope_angles(2, 2, 3, [4, 6, 6], 10000.0);
        assert_eq!(a.len(), 2 * 2 * 3 * 8);
        // Token (f=1, i=1, j=2): first t pair angle = 1, first h pair = 1, first w pair = 2.
        let tok = &a[(6 + 3 + 2) * 8..(6 + 3 + 2 + 1) * 8];
        assert_eq!((tok[0], tok[2], tok[5]), (1.0, 1.0, 2.0));
        assert!((tok[1] - 1.0 / 100.0).abs() < 1e-7);
    }
}
