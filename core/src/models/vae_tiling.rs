//! Spatial tiling of the Wan VAE, as diffusers' `AutoencoderKLWan.tiled_encode` / `tiled_decode`
//! do it: the input is cut into overlapping tiles, each tile runs through the network alone (so
//! the device holds one tile's activations, not the whole image's), and the outputs are joined with
//! linear blends across each overlap. The mid block's attention then sees one tile at a time,
//! so a tiled result differs from the untiled one; the blends hide the seams.
//!
//! The tiles, their order, the blend weights and the in-place blending (each tile is blended
//! with its already-blended upper and left neighbours, then cropped to the stride) follow
//! diffusers; the blends run on the host in f32.

use super::vae::Vae;
use crate::{Backend, DType, Error, Result, Tensor};

/// Tile size and stride in pixels (diffusers' `tile_sample_min_*` and `tile_sample_stride_*`);
/// latents use both divided by the VAE's scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaeTiling {
    pub tile: usize,
    pub stride: usize,
}

impl Default for VaeTiling {
    /// diffusers' defaults for the Wan VAE: 256-pixel tiles every 192 pixels.
    fn default() -> Self {
        VaeTiling { tile: 256, stride: 192 }
    }
}

impl VaeTiling {
    /// Parses `TILE` or `TILE/STRIDE` (pixels); a bare tile takes three quarters of it as stride.
    pub fn parse(s: &str) -> Option<VaeTiling> {
        let (tile, stride) = match s.split_once('/') {
            Some((t, st)) => (t.trim().parse().ok()?, st.trim().parse().ok()?),
            None => {
                let t: usize = s.trim().parse().ok()?;
                (t, t / 4 * 3)
            }
        };
        Some(VaeTiling { tile, stride })
    }

    /// Both multiples of the VAE's `scale`, `0 < stride ≤ tile`.
    pub fn check(&self, scale: usize) -> Result<()> {
        let ok = self.stride > 0
            && self.stride <= self.tile
            && self.tile.is_multiple_of(scale)
            && self.stride.is_multiple_of(scale)
            && self.tile <= 1 << 16;
        if ok {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "VAE tiling {}/{} is not a tile and stride in pixels with 0 < stride ≤ tile ≤ 65536, both multiples of {scale}",
                self.tile, self.stride
            )))
        }
    }

    /// Whether an image of `h × w` pixels is tiled at all (diffusers: when a side exceeds a tile).
    pub fn applies(&self, h: usize, w: usize) -> bool {
        h > self.tile || w > self.tile
    }
}

/// A host plane stack `[c, h, w]` in f32.
#[derive(Clone, Debug, PartialEq)]
struct Planes {
    c: usize,
    h: usize,
    w: usize,
    data: Vec<f32>,
}

impl Planes {
    fn at(&mut self, c: usize, y: usize, x: usize) -> &mut f32 {
        &mut self.data[(c * self.h + y) * self.w + x]
    }

    fn get(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.h + y) * self.w + x]
    }
}

/// diffusers' blend weights for offset `i` of an `extent`-wide overlap: `(1 − i/e, i/e)`, taken in
/// f64 and rounded to f32, as torch multiplies an f32 tensor by a Python float.
fn weights(i: usize, extent: usize) -> (f32, f32) {
    let t = i as f64 / extent as f64;
    ((1.0 - t) as f32, t as f32)
}

/// `b`'s first rows blended with `a`'s last (`blend_v`).
fn blend_rows(a: &Planes, b: &mut Planes, extent: usize) {
    let e = extent.min(a.h).min(b.h);
    for y in 0..e {
        let (wa, wb) = weights(y, e);
        for c in 0..b.c {
            for x in 0..b.w.min(a.w) {
                let v = a.get(c, a.h - e + y, x) * wa + b.get(c, y, x) * wb;
                *b.at(c, y, x) = v;
            }
        }
    }
}

/// `b`'s first columns blended with `a`'s last (`blend_h`).
fn blend_cols(a: &Planes, b: &mut Planes, extent: usize) {
    let e = extent.min(a.w).min(b.w);
    for x in 0..e {
        let (wa, wb) = weights(x, e);
        for c in 0..b.c {
            for y in 0..b.h.min(a.h) {
                let v = a.get(c, y, a.w - e + x) * wa + b.get(c, y, x) * wb;
                *b.at(c, y, x) = v;
            }
        }
    }
}

/// Joins a grid of output tiles (row-major) into `[c, out_h, out_w]`: each blended in place with
/// its blended upper and left neighbours over `blend` rows/columns, then cropped to `stride`.
fn assemble(mut rows: Vec<Vec<Planes>>, blend: usize, stride: usize, out_h: usize, out_w: usize) -> Planes {
    let c = rows[0][0].c;
    let mut out = Planes { c, h: out_h, w: out_w, data: vec![0.0; c * out_h * out_w] };
    for i in 0..rows.len() {
        for j in 0..rows[i].len() {
            let (above, current) = rows.split_at_mut(i);
            let tile = &mut current[0];
            if i > 0 {
                blend_rows(&above[i - 1][j], &mut tile[j], blend);
            }
            if j > 0 {
                let (left, here) = tile.split_at_mut(j);
                blend_cols(&left[j - 1], &mut here[0], blend);
            }
            let t = &tile[j];
            let (y0, x0) = (i * stride, j * stride);
            for ch in 0..c {
                for y in 0..t.h.min(stride).min(out_h.saturating_sub(y0)) {
                    for x in 0..t.w.min(stride).min(out_w.saturating_sub(x0)) {
                        *out.at(ch, y0 + y, x0 + x) = t.get(ch, y, x);
                    }
                }
            }
        }
    }
    out
}

/// The window `[.., y .. y+h, x .. x+w]` of a `[C, H, W]` device tensor (clipped to its size).
fn window<B: Backend>(t: &Tensor<B>, y: usize, x: usize, size: usize) -> Result<Tensor<B>> {
    let (hh, ww) = (t.dims()[1], t.dims()[2]);
    t.slice(1, y, size.min(hh - y))?.slice(2, x, size.min(ww - x))
}

async fn planes<B: Backend>(t: &Tensor<B>) -> Result<Planes> {
    let d = t.dims();
    Ok(Planes { c: d[0], h: d[1], w: d[2], data: t.to_f32_vec_async().await? })
}

/// Runs `f` on each tile of a `[C, H, W]` input (tiles of `tile`, every `stride`, in input
/// units) and joins the outputs, which are `ratio` times the input's size (`ratio` a fraction
/// `num/den`).
async fn tiled<B: Backend>(
    x: &Tensor<B>,
    tile: usize,
    stride: usize,
    (num, den): (usize, usize),
    f: impl Fn(&Tensor<B>) -> Result<Tensor<B>>,
) -> Result<Planes> {
    let (h, w) = (x.dims()[1], x.dims()[2]);
    let mut rows = Vec::new();
    for y in (0..h).step_by(stride) {
        let mut row = Vec::new();
        for xx in (0..w).step_by(stride) {
            row.push(planes(&f(&window(x, y, xx, tile)?)?).await?);
        }
        rows.push(row);
    }
    let out_stride = stride * num / den;
    let blend = (tile - stride) * num / den;
    Ok(assemble(rows, blend, out_stride, h * num / den, w * num / den))
}

impl<B: Backend> Vae<B> {
    #[cfg(not(target_arch = "wasm32"))]
    /// [`Vae::decode`] tile by tile: pixels `[3, 8h, 8w]`, clamped to `[−1, 1]`, on the host.
    pub fn decode_tiled(&self, z: &Tensor<B>, t: VaeTiling) -> Result<Vec<f32>> {
        pollster::block_on(self.decode_tiled_async(z, t))
    }

    /// [`Vae::decode_tiled`] with the tiles read back through [`Backend::download_async`].
    pub async fn decode_tiled_async(&self, z: &Tensor<B>, t: VaeTiling) -> Result<Vec<f32>> {
        let s = self.config().scale();
        t.check(s)?;
        let out = tiled(z, t.tile / s, t.stride / s, (s, 1), |tile| self.decode_unclamped(tile)).await?;
        Vae::<B>::clamp_decoded(out.data)
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// The posterior mean of [`Vae::encode`], tile by tile: `[z_dim, H/8, W/8]` in f32.
    pub fn encode_mean_tiled(&self, x: &Tensor<B>, t: VaeTiling) -> Result<Tensor<B>> {
        pollster::block_on(self.encode_mean_tiled_async(x, t))
    }

    /// [`Vae::encode_mean_tiled`] with the tiles read back through [`Backend::download_async`].
    pub async fn encode_mean_tiled_async(&self, x: &Tensor<B>, t: VaeTiling) -> Result<Tensor<B>> {
        let s = self.config().scale();
        t.check(s)?;
        let out = tiled(x, t.tile, t.stride, (1, s), |tile| Ok(self.encode(tile)?.0)).await?;
        Tensor::from_f32(x.backend(), [out.c, out.h, out.w], &out.data, DType::F32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(c: usize, h: usize, w: usize) -> Planes {
        let data = (0..c * h * w).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0).collect();
        Planes { c, h, w, data }
    }

    fn crop(p: &Planes, y: usize, x: usize, size: usize) -> Planes {
        let (h, w) = (size.min(p.h - y), size.min(p.w - x));
        let mut data = Vec::with_capacity(p.c * h * w);
        for c in 0..p.c {
            for yy in 0..h {
                for xx in 0..w {
                    data.push(p.get(c, y + yy, x + xx));
                }
            }
        }
        Planes { c: p.c, h, w, data }
    }

    /// Tiles that are crops of one image join back into that image: every output pixel comes
    /// from the right tile and the blends mix equal values (to an f32 rounding).
    #[test]
    fn crops_of_one_image_join_back_into_it() {
        for (h, w, tile, stride) in [(50, 37, 16, 12), (64, 64, 32, 24), (9, 40, 8, 8), (20, 20, 32, 24)] {
            let img = image(3, h, w);
            let rows: Vec<Vec<Planes>> = (0..h)
                .step_by(stride)
                .map(|y| (0..w).step_by(stride).map(|x| crop(&img, y, x, tile)).collect())
                .collect();
            let out = assemble(rows, tile - stride, stride, h, w);
            assert_eq!((out.c, out.h, out.w), (3, h, w));
            for (a, b) in out.data.iter().zip(&img.data) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{h}x{w} tile {tile}/{stride}: {a} vs {b}");
            }
        }
    }

    /// The blend is diffusers' ramp: the first overlap row is all upper tile, then linear.
    #[test]
    fn the_overlap_ramps_from_the_upper_tile_to_the_lower() {
        let a = Planes { c: 1, h: 4, w: 1, data: vec![9.0, 9.0, 10.0, 10.0] };
        let mut b = Planes { c: 1, h: 4, w: 1, data: vec![0.0, 0.0, 0.0, 0.0] };
        blend_rows(&a, &mut b, 2);
        assert_eq!(b.data, vec![10.0, 5.0, 0.0, 0.0]);
        let mut b = Planes { c: 1, h: 1, w: 4, data: vec![4.0; 4] };
        let a = Planes { c: 1, h: 1, w: 4, data: vec![0.0, 0.0, 0.0, 8.0] };
        blend_cols(&a, &mut b, 4);
        assert_eq!(b.data, vec![0.0, 1.0, 2.0, 5.0]);
    }

    #[test]
    fn tilings_are_checked() {
        assert_eq!(VaeTiling::parse("256"), Some(VaeTiling { tile: 256, stride: 192 }));
        assert_eq!(VaeTiling::parse("128/96"), Some(VaeTiling { tile: 128, stride: 96 }));
        assert!(VaeTiling::parse("x").is_none());
        assert!(VaeTiling::default().check(8).is_ok());
        for bad in [(256, 0), (256, 300), (250, 192), (256, 190)] {
            assert!(VaeTiling { tile: bad.0, stride: bad.1 }.check(8).is_err(), "{bad:?}");
        }
        assert!(VaeTiling::default().applies(257, 100) && !VaeTiling::default().applies(256, 256));
    }
}
