//! The CPU's fused ops: against plainly written f64 implementations, and to the bit against the
//! unfused sequences of ops they replace in the DiT block.

use joyrt_core::backend::{Epilogue, QkvStream, RopePairing};
use joyrt_core::quant::codec;
use joyrt_core::{DType, QuantFormat, QuantizedMatrix, Rng, Rope, Tensor};
use joyrt_cpu::CpuBackend;

type T = Tensor<CpuBackend>;

/// A random tensor of `dt` and the f64 values it actually holds (rounded to the storage dtype).
fn rand(b: &CpuBackend, rng: &mut Rng, shape: &[usize], lo: f32, hi: f32, dt: DType) -> (T, Vec<f64>) {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = rng.uniform_vec(n, lo, hi).into_iter().map(|x| dt.round_f32(x)).collect();
    (Tensor::from_f32(b, shape.to_vec(), &v, dt).unwrap(), v.iter().map(|&x| x as f64).collect())
}

/// A rope table of `l` tokens and head dim `d`, and the exact angles whose f32 cos/sin it holds.
fn table(
    b: &CpuBackend,
    rng: &mut Rng,
    l: usize,
    d: usize,
    pairing: RopePairing,
) -> (Rope<CpuBackend>, Vec<f64>) {
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
    fn new(
        b: &CpuBackend,
        rng: &mut Rng,
        l: usize,
        h: usize,
        d: usize,
        rope: Option<RopePairing>,
        dt: DType,
    ) -> Self {
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
                    assert!(
                        err <= 1e-5 + rel * w.abs(),
                        "{dt} {l0}+{l1}×{h}×{d} part {j} element {e}: {g} vs {w}"
                    );
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

fn gelu64(a: f64) -> f64 {
    0.5 * a * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (a + 0.044715 * a.powi(3))).tanh())
}

fn bits(t: &T) -> Vec<u32> {
    t.to_f32_vec().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn linear_epilogues_against_f64() {
    let b = CpuBackend::default();
    let (m, k, n) = (9, 37, 11);
    for (i, dt) in DType::ALL.into_iter().enumerate() {
        let mut rng = Rng::new(30 + i as u64);
        let (x, xv) = rand(&b, &mut rng, &[m, k], -1.0, 1.0, dt);
        let (w, wv) = rand(&b, &mut rng, &[n, k], -0.5, 0.5, dt);
        let (bias, bv) = rand(&b, &mut rng, &[n], -1.0, 1.0, dt);
        let (res, rv) = rand(&b, &mut rng, &[m, n], -2.0, 2.0, dt);
        let (gate, gv) = rand(&b, &mut rng, &[n], -1.0, 1.0, dt);
        let a = |r: usize, c: usize| (0..k).map(|j| xv[r * k + j] * wv[c * k + j]).sum::<f64>() + bv[c];
        let rel = match dt {
            DType::F32 => 2e-5,
            DType::BF16 => 4.0 / 512.0,
            DType::F16 => 1.0 / 1024.0,
        };
        let cases = [
            ("gelu", Epilogue::GeluTanh, (0..m * n).map(|e| gelu64(a(e / n, e % n))).collect::<Vec<_>>()),
            (
                "gated residual",
                Epilogue::GatedResidual { residual: &res, gate: &gate },
                (0..m * n).map(|e| rv[e] + gv[e % n] * a(e / n, e % n)).collect(),
            ),
        ];
        for (what, epilogue, want) in cases {
            let got = x.linear_with(&w, Some(&bias), epilogue).unwrap().to_f32_vec().unwrap();
            for (e, (g, w)) in got.iter().zip(&want).enumerate() {
                let err = (*g as f64 - w).abs();
                assert!(err <= 2e-5 + rel * w.abs(), "{dt} {what} element {e}: {g} vs {w}");
            }
        }
    }
}

/// In f32 the unfused sequence's extra rounding changes nothing, so the fused GEMMs equal
/// `linear` then `gelu_tanh` / `gated_residual` to the bit, dense and quantized.
#[test]
fn linear_epilogues_are_the_unfused_sequence_in_f32() {
    let b = CpuBackend::default();
    let mut rng = Rng::new(5);
    let (m, k, n) = (13, 64, 24);
    let f = DType::F32;
    let (x, _) = rand(&b, &mut rng, &[m, k], -1.0, 1.0, f);
    let (w, wv) = rand(&b, &mut rng, &[n, k], -0.5, 0.5, f);
    let (bias, _) = rand(&b, &mut rng, &[n], -1.0, 1.0, f);
    let (res, _) = rand(&b, &mut rng, &[m, n], -2.0, 2.0, f);
    let (gate, _) = rand(&b, &mut rng, &[n], -1.0, 1.0, f);
    let dense: Vec<f32> = wv.iter().map(|&v| v as f32).collect();
    let format = QuantFormat::Int8 { block: 32 };
    let q = codec::quantize_rows(format, k, &dense).unwrap();
    let wq = QuantizedMatrix::upload(&b, format, n, k, &q.codes, &q.scales).unwrap();
    let gated = Epilogue::GatedResidual { residual: &res, gate: &gate };
    let plain = x.linear(&w, Some(&bias)).unwrap();
    assert_eq!(
        bits(&x.linear_with(&w, Some(&bias), Epilogue::GeluTanh).unwrap()),
        bits(&plain.gelu_tanh().unwrap())
    );
    assert_eq!(
        bits(&x.linear_with(&w, Some(&bias), gated).unwrap()),
        bits(&res.gated_residual(&plain, &gate).unwrap())
    );
    let plain = x.linear_quantized(&wq, Some(&bias)).unwrap();
    assert_eq!(
        bits(&x.linear_quantized_with(&wq, Some(&bias), Epilogue::GeluTanh).unwrap()),
        bits(&plain.gelu_tanh().unwrap())
    );
    assert_eq!(
        bits(&x.linear_quantized_with(&wq, Some(&bias), gated).unwrap()),
        bits(&res.gated_residual(&plain, &gate).unwrap())
    );
}

#[test]
fn a_gated_epilogue_must_fit_the_output() {
    let b = CpuBackend::default();
    let mut rng = Rng::new(2);
    let f = DType::F32;
    let (x, _) = rand(&b, &mut rng, &[4, 8], -1.0, 1.0, f);
    let (w, _) = rand(&b, &mut rng, &[6, 8], -1.0, 1.0, f);
    let (short, _) = rand(&b, &mut rng, &[4, 5], -1.0, 1.0, f);
    let (gate, _) = rand(&b, &mut rng, &[6], -1.0, 1.0, f);
    let e = x.linear_with(&w, None, Epilogue::GatedResidual { residual: &short, gate: &gate }).unwrap_err();
    assert!(e.to_string().contains("gated residual"), "{e}");
    let bf = gate.cast(DType::BF16).unwrap();
    let (res, _) = rand(&b, &mut rng, &[4, 6], -1.0, 1.0, f);
    let e = x.linear_with(&w, None, Epilogue::GatedResidual { residual: &res, gate: &bf }).unwrap_err();
    assert!(e.to_string().contains("gate"), "{e}");
}
