//! Host-side image handling: the RGB image type, resolution buckets, the PIL-compatible bilinear
//! resize + centre crop of the diffusers pipeline, and the pixel encodings fed to the VAE and to
//! the Qwen3-VL vision tower.

use crate::{Error, Result};

/// An 8-bit RGB image, row-major, `3·width·height` bytes (R, G, B interleaved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// The sides, in pixels, of an input image [`RgbImage::decode`] accepts.
pub const INPUT_SIDE: std::ops::RangeInclusive<u32> = 8..=16384;

/// The most pixels of an input image [`RgbImage::decode`] accepts: 64 megapixels (a 50 MP camera
/// photo passes; a decoded image of this size takes up to 512 MiB as 16-bit RGBA).
pub const MAX_INPUT_PIXELS: u64 = 64 << 20;

/// Whether a JPEG's last scan ends with the end-of-image marker. Walks the marker segments by
/// their lengths (so an EXIF thumbnail's own markers inside APP1 are skipped), then the
/// entropy-coded data, where a 0xFF byte is followed only by 0x00 (a stuffed byte), a restart
/// marker or the marker that ends the scan.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    loop {
        // A marker: 0xFF (padding 0xFF allowed) then its code.
        while bytes.get(i) == Some(&0xFF) && bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(&0xFF), Some(&code)) = (bytes.get(i), bytes.get(i + 1)) else {
            return false;
        };
        i += 2;
        match code {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(len) = bytes.get(i..i + 2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
            return false;
        };
        i += len;
        if code == 0xDA {
            // Entropy-coded data up to the next marker that is not a stuffed byte or a restart.
            loop {
                match (bytes.get(i), bytes.get(i + 1)) {
                    (Some(0xFF), Some(0x00 | 0xD0..=0xD7)) => i += 2,
                    (Some(0xFF), Some(_)) => break,
                    (Some(_), _) => i += 1,
                    (None, _) => return false,
                }
            }
        }
    }
}

impl RgbImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<RgbImage> {
        if width == 0 || height == 0 || data.len() != 3 * width * height {
            return Err(Error::Input(format!(
                "an RGB image of {width}x{height} needs {} bytes, got {}",
                3 * width * height,
                data.len()
            )));
        }
        Ok(RgbImage { width, height, data })
    }

    /// The `h × w` window whose top-left corner is `(top, left)`.
    pub fn crop(&self, top: usize, left: usize, h: usize, w: usize) -> RgbImage {
        assert!(top + h <= self.height && left + w <= self.width, "crop window inside the image");
        let mut data = Vec::with_capacity(3 * h * w);
        for y in top..top + h {
            let row = 3 * (y * self.width + left);
            data.extend_from_slice(&self.data[row..row + 3 * w]);
        }
        RgbImage { width: w, height: h, data }
    }

    /// Decodes a PNG or JPEG held in memory into 8-bit RGB (alpha dropped, greyscale expanded);
    /// `origin` names the image in errors. The size is checked from the header before any pixel
    /// is decoded ([`INPUT_SIDE`] pixels a side, [`MAX_INPUT_PIXELS`] in all), and a JPEG must
    /// end its last scan with the end-of-image marker: the decoder would fill a truncated one
    /// with grey without a word.
    pub fn decode(bytes: &[u8], origin: &str) -> Result<RgbImage> {
        use image::{ImageFormat, ImageReader};
        let unreadable = |why: &dyn std::fmt::Display| {
            Error::Input(format!("{origin} is not a PNG or JPEG image joyrt can decode ({why})"))
        };
        let format = image::guess_format(bytes).map_err(|e| unreadable(&e))?;
        if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
            return Err(Error::Input(format!("{origin} is a {format:?} image; joyrt reads PNG and JPEG")));
        }
        let reader = || ImageReader::with_format(std::io::Cursor::new(bytes), format);
        let (w, h) = reader().into_dimensions().map_err(|e| unreadable(&e))?;
        let pixels = u64::from(w) * u64::from(h);
        if !INPUT_SIDE.contains(&w) || !INPUT_SIDE.contains(&h) || pixels > MAX_INPUT_PIXELS {
            return Err(Error::Input(format!(
                "{origin} is {w}x{h} pixels; joyrt accepts {}..={} pixels a side and at most {} \
                 megapixels (the pipeline resizes every input to about base-size² pixels, so \
                 downscale it first)",
                INPUT_SIDE.start(),
                INPUT_SIDE.end(),
                MAX_INPUT_PIXELS >> 20
            )));
        }
        if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
            return Err(Error::Input(format!(
                "{origin} is a truncated JPEG (its last scan has no end-of-image marker)"
            )));
        }
        let mut reader = reader();
        let mut limits = image::Limits::default();
        // The largest accepted image as 16-bit RGBA, the widest form a decoder produces.
        limits.max_alloc = Some(MAX_INPUT_PIXELS * 8);
        reader.limits(limits);
        let rgb = reader.decode().map_err(|e| unreadable(&e))?.to_rgb8();
        RgbImage::new(rgb.width() as usize, rgb.height() as usize, rgb.into_raw())
    }

    /// The image as a PNG file.
    pub fn encode_png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        image::write_buffer_with_format(
            &mut std::io::Cursor::new(&mut out),
            &self.data,
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::Input(format!("encoding a {}x{} PNG: {e}", self.width, self.height)))?;
        Ok(out)
    }

    /// Channel-first f32 pixels mapped to `[-1, 1]` as `p/127.5 − 1` → `[3, H, W]` (the VAE input).
    pub fn to_vae_pixels(&self) -> Vec<f32> {
        let n = self.width * self.height;
        let mut out = vec![0f32; 3 * n];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * n + i] = px[c] as f32 / 127.5 - 1.0;
            }
        }
        out
    }

    /// Converts channel-first `[3, H, W]` values in `[-1, 1]` back to 8-bit:
    /// `round(255·clamp(x/2 + 0.5, 0, 1))` (diffusers' `VaeImageProcessor.postprocess`).
    pub fn from_vae_pixels(width: usize, height: usize, chw: &[f32]) -> Result<RgbImage> {
        let n = width * height;
        if chw.len() != 3 * n {
            return Err(Error::Input(format!("{} values for a 3x{height}x{width} image", chw.len())));
        }
        let mut data = vec![0u8; 3 * n];
        for i in 0..n {
            for c in 0..3 {
                let v = (chw[c * n + i] / 2.0 + 0.5).clamp(0.0, 1.0);
                data[3 * i + c] = (v * 255.0).round() as u8;
            }
        }
        RgbImage::new(width, height, data)
    }
}

/// A set of `(height, width)` resolution buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets(pub Vec<(usize, usize)>);

impl Buckets {
    /// The buckets of the official generator for `basesize` (1024 gives diffusers' `BUCKETS[1024]`,
    /// 49 pairs): walk a 256-base grid with step 16 from `(4096, 16)`, record pairs with aspect
    /// ratio ≤ 4, scale by `basesize/256`. Sorted ascending by height like diffusers' table.
    pub fn generate(basesize: usize) -> Buckets {
        let (mut h, mut w) = (65536 / 16, 16usize);
        let mut out = Vec::new();
        while h >= 16 {
            if h.max(w) <= 4 * h.min(w) {
                out.push((h * basesize / 256, w * basesize / 256));
            }
            if h * (w + 16) <= 65536 {
                w += 16;
            } else {
                h -= 16;
            }
        }
        out.sort();
        out.dedup();
        Buckets(out)
    }

    /// [`Buckets::generate`]'s sizes that are multiples of 32 (the vision tower's patch × merge
    /// unit; every size of the 1024 table already is): the table joyrt uses at any base.
    pub fn vision_aligned(basesize: usize) -> Buckets {
        Buckets(Self::generate(basesize).0.into_iter().filter(|&(h, w)| h % 32 == 0 && w % 32 == 0).collect())
    }

    /// The bucket whose aspect ratio `h/w` is closest to `height/width`; the first one in table
    /// order wins a tie (as diffusers' `find_best_bucket`).
    pub fn best(&self, height: usize, width: usize) -> (usize, usize) {
        let r = height as f64 / width as f64;
        let mut best = self.0[0];
        let mut best_d = f64::INFINITY;
        for &(h, w) in &self.0 {
            let d = (h as f64 / w as f64 - r).abs();
            if d < best_d {
                best_d = d;
                best = (h, w);
            }
        }
        best
    }
}

/// Resizes to cover `(h, w)` with PIL's bilinear filter, then crops the centre `h × w` window —
/// diffusers' `resize_center_crop`: `s = max(h/H, w/W)`, resize to `(ceil(H·s), ceil(W·s))`,
/// crop at `top = (H_res − h)/2`, `left = (W_res − w)/2` (floor).
pub fn resize_center_crop(img: &RgbImage, h: usize, w: usize) -> RgbImage {
    let s = (h as f64 / img.height as f64).max(w as f64 / img.width as f64);
    let rh = (img.height as f64 * s).ceil() as usize;
    let rw = (img.width as f64 * s).ceil() as usize;
    let resized = resize_bilinear_pil(img, rw.max(w), rh.max(h));
    resized.crop((resized.height - h) / 2, (resized.width - w) / 2, h, w)
}

// Pillow's 8-bit resampler keeps coefficients as fixed point with 22 fractional bits.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index and the fixed-point weights, as Pillow's
/// `precompute_coeffs` + `normalize_coeffs_8bpc` (triangle filter widened by the downscale factor,
/// so downscaling is antialiased).
fn pil_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0 × filterscale
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let ws: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) / filterscale).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = ws.iter().sum();
            let fixed = ws
                .iter()
                .map(|&v| {
                    let v = if total != 0.0 { v / total } else { v };
                    let f = v * (1u64 << PRECISION_BITS) as f64;
                    if v < 0.0 {
                        (f - 0.5) as i32
                    } else {
                        (f + 0.5) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((out_w, out_h), Image.BILINEAR)` on an RGB image, bit for bit: a
/// horizontal pass then a vertical pass, each rounding to 8 bits; a pass whose size does not
/// change is skipped.
pub fn resize_bilinear_pil(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let mut cur = img.clone();
    if out_w != img.width {
        let coeffs = pil_coeffs(img.width, out_w);
        let mut data = vec![0u8; 3 * out_w * cur.height];
        for y in 0..cur.height {
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                for c in 0..3 {
                    let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                    for (j, &kv) in k.iter().enumerate() {
                        ss += cur.data[3 * (y * cur.width + xmin + j) + c] as i32 * kv;
                    }
                    data[3 * (y * out_w + xx) + c] = clip8(ss);
                }
            }
        }
        cur = RgbImage { width: out_w, height: cur.height, data };
    }
    if out_h != img.height {
        let coeffs = pil_coeffs(img.height, out_h);
        let mut data = vec![0u8; 3 * cur.width * out_h];
        for (yy, (ymin, k)) in coeffs.iter().enumerate() {
            for x in 0..cur.width {
                for c in 0..3 {
                    let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                    for (j, &kv) in k.iter().enumerate() {
                        ss += cur.data[3 * ((ymin + j) * cur.width + x) + c] as i32 * kv;
                    }
                    data[3 * (yy * cur.width + x) + c] = clip8(ss);
                }
            }
        }
        cur = RgbImage { width: cur.width, height: out_h, data };
    }
    cur
}

/// The Qwen2/3-VL processor's patch layout for one image whose sides are multiples of
/// `patch·merge`: pixels normalised `(p/255 − mean)/std` per channel, the single frame repeated to
/// `temporal` frames, patches in merge-block order `(H/(p·m), W/(p·m), m, m)`, each patch flattened
/// as `(c, t, py, px)` → `[grid_h·grid_w, 3·temporal·p·p]` plus `(grid_h, grid_w)`.
pub fn qwen_patchify(
    img: &RgbImage,
    patch: usize,
    merge: usize,
    temporal: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<(Vec<f32>, usize, usize)> {
    let unit = patch * merge;
    if !img.height.is_multiple_of(unit) || !img.width.is_multiple_of(unit) {
        return Err(Error::Input(format!(
            "image {}x{} is not a multiple of {unit} pixels (patch {patch} × merge {merge})",
            img.width, img.height
        )));
    }
    let (gh, gw) = (img.height / patch, img.width / patch);
    let plen = 3 * temporal * patch * patch;
    let mut out = Vec::with_capacity(gh * gw * plen);
    for bh in 0..gh / merge {
        for bw in 0..gw / merge {
            for mh in 0..merge {
                for mw in 0..merge {
                    let (py0, px0) = ((bh * merge + mh) * patch, (bw * merge + mw) * patch);
                    for c in 0..3 {
                        for _t in 0..temporal {
                            for py in 0..patch {
                                for px in 0..patch {
                                    let v = img.data[3 * ((py0 + py) * img.width + px0 + px) + c];
                                    out.push((v as f32 / 255.0 - mean[c]) / std[c]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok((out, gh, gw))
}

/// A smooth, deterministic pseudo-image `[3, h, w]` in [−0.9, 0.9] (the VAE's pixel range): a
/// product of low-frequency waves per channel, so tiled and untiled VAE runs can be compared on
/// something image-like without an image file.
pub fn test_pattern(h: usize, w: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (fy, fx) = (y as f32 / h as f32, x as f32 / w as f32);
                v.push(((fy * 6.0 + c as f32).sin() * (fx * 4.0 - c as f32).cos()) * 0.9);
            }
        }
    }
    v
}

/// PSNR in dB of `a` against `b` (equal lengths), for signals spanning `range`. The mean squared
/// error is floored at 1e-30, so identical inputs give a large finite figure (300 dB for a span
/// of 1), which JSON can carry.
pub fn psnr_f32(a: &[f32], b: &[f32], range: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "psnr of tensors of different sizes");
    let mse =
        a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>() / a.len().max(1) as f64;
    10.0 * (range * range / mse.max(1e-30)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_known_error() {
        // A constant error of 0.02 over a span of 2: 10·log10(4 / 0.0004) = 40 dB.
        let a = vec![0.5f32; 64];
        let b: Vec<f32> = a.iter().map(|v| v + 0.02).collect();
        assert!((psnr_f32(&a, &b, 2.0) - 40.0).abs() < 1e-3);
        assert!(psnr_f32(&a, &a, 1.0).is_finite());
    }

    #[test]
    fn the_test_pattern_is_in_range_and_not_flat() {
        let p = test_pattern(32, 48);
        assert_eq!(p.len(), 3 * 32 * 48);
        assert!(p.iter().all(|v| v.abs() <= 0.9));
        assert!(p.iter().fold(0f32, |m, v| m.max(*v)) > 0.5);
    }

    fn encoded(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn png_round_trip() {
        let img = RgbImage::new(9, 8, (0..216).collect()).unwrap();
        assert_eq!(RgbImage::decode(&img.encode_png().unwrap(), "x.png").unwrap(), img);
    }

    #[test]
    fn decodes_png_and_jpeg() {
        let png = RgbImage::decode(&encoded(40, 24, image::ImageFormat::Png), "a.png").unwrap();
        assert_eq!((png.width, png.height, png.data[3 * 41]), (40, 24, 7));
        let jpeg = RgbImage::decode(&encoded(33, 17, image::ImageFormat::Jpeg), "a.jpg").unwrap();
        assert_eq!((jpeg.width, jpeg.height), (33, 17));
    }

    #[test]
    fn refuses_truncated_jpeg_at_every_cut() {
        let jpeg = encoded(64, 64, image::ImageFormat::Jpeg);
        for cut in [jpeg.len() - 1, jpeg.len() - 2, jpeg.len() / 2, jpeg.len() / 4, 3] {
            let e = RgbImage::decode(&jpeg[..cut], "cut.jpg").unwrap_err().to_string();
            assert!(
                e.contains("cut.jpg") && (e.contains("truncated") || e.contains("not a PNG or JPEG")),
                "{cut}: {e}"
            );
        }
    }

    #[test]
    fn refuses_other_formats_and_sizes_before_decoding() {
        let e = RgbImage::decode(b"GIF89a........", "x.gif").unwrap_err().to_string();
        assert!(e.contains("x.gif is a Gif image"), "{e}");
        let e = RgbImage::decode(b"not an image at all", "x.png").unwrap_err().to_string();
        assert!(e.contains("x.png is not a PNG or JPEG"), "{e}");
        let wide = encoded(16385, 8, image::ImageFormat::Png);
        let e = RgbImage::decode(&wide, "wide.png").unwrap_err().to_string();
        assert!(e.contains("wide.png is 16385x8 pixels") && e.contains("8..=16384"), "{e}");
        let small = encoded(7, 100, image::ImageFormat::Png);
        assert!(RgbImage::decode(&small, "s.png").unwrap_err().to_string().contains("7x100"));
    }

    #[test]
    fn generated_1024_buckets_are_diffusers_table() {
        let b = Buckets::generate(1024);
        assert_eq!(b.0.len(), 49);
        assert_eq!(b.0[0], (512, 1792));
        assert_eq!(b.0[23], (960, 1088));
        assert_eq!(b.0[24], (1024, 960));
        assert_eq!(b.0[25], (1024, 1024));
        assert_eq!(b.0[48], (2048, 512));
        assert!(b
            .0
            .iter()
            .all(|&(h, w)| h % 64 == 0 && w % 64 == 0 && (917_504..=1_048_576).contains(&(h * w))));
        assert_eq!(b.best(1000, 1000), (1024, 1024));
        assert_eq!(b.best(100, 1000), (512, 2048));
    }

    #[test]
    fn resize_identity_and_constant() {
        let img = RgbImage::new(5, 3, (0..45).map(|v| v as u8).collect()).unwrap();
        assert_eq!(resize_bilinear_pil(&img, 5, 3), img);
        let flat = RgbImage::new(7, 9, vec![77; 7 * 9 * 3]).unwrap();
        let r = resize_bilinear_pil(&flat, 4, 13);
        assert!(r.data.iter().all(|&v| v == 77));
    }

    #[test]
    fn pixels_roundtrip() {
        let img = RgbImage::new(2, 2, vec![0, 255, 128, 1, 2, 3, 250, 251, 252, 9, 8, 7]).unwrap();
        let back = RgbImage::from_vae_pixels(2, 2, &img.to_vae_pixels()).unwrap();
        assert_eq!(back, img);
    }

    #[test]
    fn patchify_order() {
        // 32x32 image, patch 16, merge 2: 4 patches in one merge block, row-major inside it.
        let data: Vec<u8> = (0..32 * 32).flat_map(|i| [(i % 32) as u8, (i / 32) as u8, 0]).collect();
        let img = RgbImage::new(32, 32, data).unwrap();
        let (p, gh, gw) = qwen_patchify(&img, 16, 2, 2, [0.0; 3], [1.0 / 255.0; 3]).unwrap();
        assert_eq!((gh, gw, p.len()), (2, 2, 4 * 1536));
        // Patch 1 = block (0, 1): its first R value is x = 16; its first G value (c = 1) is y = 0.
        assert_eq!(p[1536], 16.0);
        // Patch 2 = block (1, 0): G (offset 512 = c·t·p·p with c = 1) is y = 16.
        assert_eq!(p[2 * 1536 + 512], 16.0);
        assert!(qwen_patchify(&img.crop(0, 0, 16, 32), 16, 2, 2, [0.0; 3], [1.0; 3]).is_err());
    }
}
