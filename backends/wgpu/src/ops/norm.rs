//! Norms (shaders/norm.wgsl): the row norms, one workgroup per row with the row reduction the
//! device supports (see `Spec::RowReduce`), split by rows past the binding limit; the per-position
//! channel norms, one invocation per position: channel_rms_norm in two passes over channel ranges
//! (split past the limit), cfg_renorm (on latents) bound whole.

use crate::buffer::{Input, Span};
use crate::dispatch::{element_groups, Kernel, Shader, Spec};
use crate::split::Split;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::backend::{CfgParams, ChannelParams, NormParams};
use joyrt_core::{Result, Tensor};

type T = Tensor<WgpuBackend>;

joyrt_core::kernel_params! {
    /// Parameters of the kernels of norm.wgsl.
    pub struct NormArgs {
        /// Row norms: the rows (one workgroup each), their length and ε.
        pub rows: u32, pub cols: u32, pub eps: f32,
        /// layer_norm's affine factor `weight_offset + B[c]` and term `C[c]`, each applied only
        /// when its flag is set.
        pub weight_offset: f32, pub has_weight: u32, pub has_bias: u32,
        /// Per-position norms over channel-first `[channels, positions]`; cfg_renorm's guidance.
        pub channels: u32, pub positions: u32, pub guidance: f32,
        /// channel_rms_norm's passes: the channels `[c_lo, c_hi)` of this dispatch, and whether
        /// the sums resume from OUT.
        pub c_lo: u32, pub c_hi: u32, pub resume: u32,
    }
}

static NORM: Shader<NormArgs> = Shader::new("norm", include_str!("../../../../shaders/norm.wgsl"));

/// Kernel `entry` of norm.wgsl with the row reduction this device runs.
fn kernel(be: &WgpuBackend, entry: &'static str) -> Kernel<NormArgs> {
    NORM.entry(entry).spec(Spec::RowReduce { subgroups: be.uses_subgroups() })
}

pub fn layer_norm(
    be: &WgpuBackend,
    x: &T,
    w: Option<&T>,
    b: Option<&T>,
    p: &NormParams,
) -> Result<WgpuBuffer> {
    let wi = w.map(|w| be.inp(w, "layer_norm weight")).transpose()?.unwrap_or(be.dummy());
    let bi = b.map(|b| be.inp(b, "layer_norm bias")).transpose()?.unwrap_or(be.dummy());
    let affine =
        NormArgs { has_weight: w.is_some() as u32, has_bias: b.is_some() as u32, ..Default::default() };
    row_norm(be, "layer_norm", x, &[wi, bi], p, affine)
}

/// A layer norm whose affine factor is `1 + scale` and term `shift`.
pub fn layer_norm_modulate(
    be: &WgpuBackend,
    x: &T,
    shift: &T,
    scale: &T,
    p: &NormParams,
) -> Result<WgpuBuffer> {
    let inputs = [be.inp(scale, "layer_norm_modulate scale")?, be.inp(shift, "layer_norm_modulate shift")?];
    let affine = NormArgs { weight_offset: 1.0, has_weight: 1, has_bias: 1, ..Default::default() };
    row_norm(be, "layer_norm", x, &inputs, p, affine)
}

pub fn rms_norm(be: &WgpuBackend, x: &T, w: &T, p: &NormParams) -> Result<WgpuBuffer> {
    row_norm(be, "rms_norm", x, &[be.inp(w, "rms_norm weight")?], p, NormArgs::default())
}

pub fn channel_rms_norm(be: &WgpuBackend, x: &T, gamma: &T, p: &ChannelParams) -> Result<WgpuBuffer> {
    let op = "channel_rms_norm";
    let (n, np) = (x.numel(), p.positions);
    let (out, sums) = (be.f32_buf(n)?, be.f32_buf(np)?);
    let sums_whole = be.whole(Span::f32(&sums, np), "channel_rms_norm sums")?;
    // By channel ranges: every position reads all the channels, a range at a time, the sums of
    // squares accumulated in order across the ranges (the same f32 additions as one range).
    let channels = Split::new(op, p.channels)
        .out(Span::f32(&out, n), np)
        .split("x", be.span(x, op)?, np)
        .whole(be.inp(gamma, "channel_rms_norm gamma")?)
        .whole(sums_whole);
    let pieces = channels.pieces(be)?;
    let args = |c: &std::ops::Range<usize>| NormArgs {
        channels: p.channels as u32,
        positions: np as u32,
        c_lo: c.start as u32,
        c_hi: c.end as u32,
        resume: (c.start > 0) as u32,
        ..Default::default()
    };
    let groups = element_groups(np);
    for c in &pieces {
        be.run(kernel(be, "channel_sum_squares"), &args(&c.units), &c.inputs[..1], sums_whole.0, groups)?;
    }
    for c in &pieces {
        be.run(kernel(be, "channel_rms_scale"), &args(&c.units), &c.inputs, c.out, groups)?;
    }
    be.finish(out, n, x.dtype())
}

pub fn cfg_renorm(be: &WgpuBackend, cond: &T, uncond: &T, p: &CfgParams) -> Result<WgpuBuffer> {
    let inputs = [be.inp(cond, "cfg_renorm cond")?, be.inp(uncond, "cfg_renorm uncond")?];
    let args = NormArgs {
        channels: p.channels as u32,
        positions: p.positions as u32,
        guidance: p.guidance,
        ..Default::default()
    };
    per_position(be, "cfg_renorm", cond, &inputs, args)
}

/// Row norm `entry` of `x` (one workgroup per row, split by rows past the binding limit); `gains`
/// are the inputs after `x`, bound whole; `affine` carries layer_norm's affine fields.
fn row_norm(
    be: &WgpuBackend,
    entry: &'static str,
    x: &T,
    gains: &[Input],
    p: &NormParams,
    affine: NormArgs,
) -> Result<WgpuBuffer> {
    let out = be.f32_buf(x.numel())?;
    let split = Split::new(entry, p.rows).out(Span::f32(&out, x.numel()), p.cols).split(
        "x",
        be.span(x, entry)?,
        p.cols,
    );
    let split = gains.iter().fold(split, |s, &g| s.whole(g));
    let args = |r: std::ops::Range<usize>| NormArgs {
        rows: r.len() as u32,
        cols: p.cols as u32,
        eps: p.eps,
        ..affine
    };
    split.run(be, kernel(be, entry), args, |rows| rows as u64)?;
    be.finish(out, x.numel(), x.dtype())
}

/// Per-position norm `entry` of channel-first `x`, one invocation per position, the tensors bound
/// whole (cfg_renorm runs on latents, far within the limit).
fn per_position(
    be: &WgpuBackend,
    entry: &'static str,
    x: &T,
    inputs: &[Input],
    args: NormArgs,
) -> Result<WgpuBuffer> {
    let n = x.numel();
    let out = be.f32_buf(n)?;
    let split = inputs.iter().fold(Split::new(entry, 1).out(Span::f32(&out, n), n), |s, &i| s.whole(i));
    split.run(be, kernel(be, entry), |_| args, |_| element_groups(args.positions as usize))?;
    be.finish(out, n, x.dtype())
}
