//! The CPU's fused ops: against plainly written f64 implementations, and to the bit against the
//! unfused sequences of ops they replace in the DiT block.

use joyrt_core::backend::{QkvStream, RopePairing};
use joyrt_core::{DType, Rng, Rope, Tensor};
use joyrt_cpu::CpuBackend;

type T = Tensor<CpuBackend>;

/// A random tensor of `dt` and the f64 values it actually holds (rounded to the storage dtype).
fn rand(b: &CpuBackend, rng: &mut Rng, shape: &[usize], lo: f32, hi: f32, dt: DType) -> (T, Vec<f64>) {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = rng.uniform_vec(n, lo, hi).into_iter().map(|x| dt.round_f32(x)).collect();
    (Tensor::from_f32(b, shape.to_vec(), &v, dt).unwrap(), v.iter().map(|&x| x as f64).collect())
}

/// A rope table of `l` tokens and head dim `d`, and the exact angles whose f32 cos/sin it holds.
fn table(b: &CpuBackend, rng: &mut Rng, l: usize, d: usize, pairing: RopePairing) -> (Rope<CpuBackend>, Vec<f64>) {
    let angles = rng.uniform_vec(l * d / 2, -6.0, 6.0);
    let (cos, sin): (Vec<f32>, Vec<f32>) = angles.iter().map(|a| (a.cos(), a.sin())).unzip();
    let exact = cos.iter().zip(&sin).map(|(c, s)| (*s as f64).atan2(*c as f64)).collect();
    let t = |v: &[f32]| Tensor::from_f32(b, [l, d / 2], v, DType::F32).unwrap();
    (Rope { cos: t(&cos), sin: t(&sin), pairing }, exact)
}

/// One stream's inputs: `qkv [l, 3·h·d]`, the q and k gains, a table when `rotated`.
struct Stream {
    qkv: (T, Vec<f64>),
    gains: [(T, Vec<f64>); 2],
    rope: Option<(Rope<CpuBackend>, Vec<f64>)>,
}

impl Stream {
    fn new(b: &CpuBackend, rng: &mut Rng, l: usize, h: usize, d: usize, rope: Option<RopePairing>, dt: DType) -> Self {
        Stream {
            qkv: rand(b, rng, &[l, 3 * h * d], -2.0, 2.0, dt),
            gains: [rand(b, rng, &[d], 0.5, 1.5, dt), rand(b, rng, &[d], 0.5, 1.5, dt)],
            rope: rope.map(|p| table(b, rng, l, d, p)),
        }
    }

    fn op(&self) -> QkvStream<'_, CpuBackend> {
        QkvStream {
            qkv: &self.qkv.0,
            q_norm: &self.gains[0].0,
            k_norm: &self.gains[1].0,
            rope: self.rope.as_ref().map(|r| &r.0),
        }
    }

    /// Part `j` (q, k, v) as `[l, h, d]` in f64: normalised and rotated for q and k.
    fn part64(&self, j: usize, h: usize, d: usize) -> Vec<f64> {
        let hd = h * d;
        let x = &self.qkv.1;
        let mut out = Vec::new();
        for (l, row) in x.chunks(3 * hd).enumerate() {
            for head in row[j * hd..(j + 1) * hd].chunks(d) {
                let mut v = head.to_vec();
                if j < 2 {
                    let r = 1.0 / (v.iter().map(|a| a * a).sum::<f64>() / d as f64 + 1e-6).sqrt();
                    v.iter_mut().zip(&self.gains[j].1).for_each(|(a, g)| *a *= r * g);
                    if let Some((rope, angles)) = &self.rope {
                        for m in 0..d / 2 {
                            let (i, k) = match rope.pairing {
                                RopePairing::Interleaved => (2 * m, 2 * m + 1),
                                RopePairing::HalfSplit => (m, m + d / 2),
                            };
                            let a = angles[l * d / 2 + m];
                            let (x1, x2) = (v[i], v[k]);
                            v[i] = x1 * a.cos() - x2 * a.sin();
                            v[k] = x2 * a.cos() + x1 * a.sin();
                        }
                    }
                }
                out.extend(v);
            }
        }
        out
    }

    /// The DiT block's unfused sequence for part `j`: slice, reshape, then `rms_norm_rope` (or
    /// `rms_norm` without a table) for q and k.
    fn unfused(&self, j: usize, h: usize, d: usize) -> T {
        let x = &self.qkv.0;
        let part = x.slice(1, j * h * d, h * d).unwrap().reshape([x.dims()[0], h, d]).unwrap();
        if j == 2 {
            return part;
        }
        let g = &self.gains[j].0;
        match &self.rope {
            Some((r, _)) => part.rms_norm_rope(g, r, 1e-6).unwrap(),
            None => part.rms_norm(g, 1e-6).unwrap(),
        }
    }
}

/// Shapes: (image tokens, text tokens, heads, head dim, image pairing, text pairing or none).
const SHAPES: [(usize, usize, usize, usize, RopePairing, Option<RopePairing>); 3] = [
    (9, 5, 3, 16, RopePairing::Interleaved, None),
    (7, 4, 2, 72, RopePairing::HalfSplit, Some(RopePairing::Interleaved)),
    (5, 3, 2, 128, RopePairing::Interleaved, None),
];

#[test]
fn joint_qkv_against_f64() {
    let b = CpuBackend::default();
    for (i, dt) in DType::ALL.into_iter().enumerate() {
        let mut rng = Rng::new(7 + i as u64);
        let rel = match dt {
            DType::F32 => 2e-5,
            DType::BF16 => 4.0 / 512.0,
            DType::F16 => 1.0 / 1024.0,
        };
        for &(l0, l1, h, d, p0, p1) in &SHAPES {
            let img = Stream::new(&b, &mut rng, l0, h, d, Some(p0), dt);
            let txt = Stream::new(&b, &mut rng, l1, h, d, p1, dt);
            let out = Tensor::joint_qkv([img.op(), txt.op()], h, 1e-6).unwrap();
            for (j, got) in out.iter().enumerate() {
                assert_eq!(got.dims(), [l0 + l1, h, d]);
                let want: Vec<f64> = img.part64(j, h, d).into_iter().chain(txt.part64(j, h, d)).collect();
                for (e, (g, w)) in got.to_f32_vec().unwrap().iter().zip(&want).enumerate() {
                    let err = (*g as f64 - w).abs();
                    assert!(err <= 1e-5 + rel * w.abs(), "{dt} {l0}+{l1}×{h}×{d} part {j} element {e}: {g} vs {w}");
                }
            }
        }
    }
}

#[test]
fn joint_qkv_is_the_unfused_sequence_to_the_bit() {
    let b = CpuBackend::default();
    for dt in DType::ALL {
        let mut rng = Rng::new(99);
        for &(l0, l1, h, d, p0, p1) in &SHAPES {
            let img = Stream::new(&b, &mut rng, l0, h, d, Some(p0), dt);
            let txt = Stream::new(&b, &mut rng, l1, h, d, p1, dt);
            let fused = Tensor::joint_qkv([img.op(), txt.op()], h, 1e-6).unwrap();
            for (j, got) in fused.iter().enumerate() {
                let want = Tensor::concat(&[&img.unfused(j, h, d), &txt.unfused(j, h, d)], 0).unwrap();
                assert_eq!(got.dims(), want.dims());
                let bits = |t: &T| t.to_f32_vec().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(got), bits(&want), "{dt} {l0}+{l1}×{h}×{d} part {j}");
            }
        }
    }
}

#[test]
fn joint_qkv_refuses_mismatched_streams() {
    let b = CpuBackend::default();
    let mut rng = Rng::new(1);
    let img = Stream::new(&b, &mut rng, 4, 2, 8, Some(RopePairing::Interleaved), DType::F32);
    // Three heads of 8 do not fit a qkv of 3 × 2 × 8 columns.
    let e = Tensor::joint_qkv([img.op(), img.op()], 3, 1e-6).unwrap_err().to_string();
    assert!(e.contains("joint_qkv") && e.contains("[L, 72]"), "{e}");
    let txt = Stream::new(&b, &mut rng, 4, 2, 8, None, DType::BF16);
    let e = Tensor::joint_qkv([img.op(), txt.op()], 2, 1e-6).unwrap_err().to_string();
    assert!(e.contains("stream 1"), "{e}");
    // A table of the wrong length.
    let short = Stream::new(&b, &mut rng, 3, 2, 8, Some(RopePairing::Interleaved), DType::F32);
    let wrong = QkvStream { rope: short.op().rope, ..img.op() };
    let e = Tensor::joint_qkv([wrong, img.op()], 2, 1e-6).unwrap_err().to_string();
    assert!(e.contains("rope table"), "{e}");
}
