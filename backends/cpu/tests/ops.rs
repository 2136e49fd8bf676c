//! Every CPU op against a plainly written f64 implementation (independent of the backend's own
//! code), on random inputs of odd and non-square shapes, at every storage dtype.

use joyrt_core::backend::RopePairing;
use joyrt_core::{Activation, Backend, BinaryOp, DType, Rng, Rope, ScatterMode, Tensor};
use joyrt_cpu::CpuBackend;

/// Tolerance presets: the output is rounded once to its storage dtype, so the bound is half an
/// ulp of the dtype plus f32 accumulation noise.
#[derive(Clone, Copy)]
struct Tol {
    abs: f64,
    rel: f64,
}
const F32: Tol = Tol { abs: 2e-5, rel: 2e-5 };
const BF16: Tol = Tol { abs: 2e-5, rel: 4.0 / 512.0 };
const F16: Tol = Tol { abs: 2e-5, rel: 1.0 / 1024.0 };

fn tol(dt: DType) -> Tol {
    match dt {
        DType::F32 => F32,
        DType::BF16 => BF16,
        DType::F16 => F16,
    }
}

struct Ctx {
    b: CpuBackend,
    rng: Rng,
    dt: DType,
}

impl Ctx {
    fn new(seed: u64, dt: DType) -> Ctx {
        Ctx { b: CpuBackend::default(), rng: Rng::new(seed), dt }
    }
    /// A random tensor and the f64 values it actually holds (rounded to the storage dtype).
    fn rand(&mut self, shape: &[usize], lo: f32, hi: f32) -> (Tensor<CpuBackend>, Vec<f64>) {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = self.rng.uniform_vec(n, lo, hi).into_iter().map(|x| self.dt.round_f32(x)).collect();
        (
            Tensor::from_f32(&self.b, shape.to_vec(), &v, self.dt).unwrap(),
            v.iter().map(|&x| x as f64).collect(),
        )
    }
    fn f32_table(&mut self, shape: &[usize], v: &[f64]) -> Tensor<CpuBackend> {
        let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        Tensor::from_f32(&self.b, shape.to_vec(), &f, DType::F32).unwrap()
    }
}

#[track_caller]
fn assert_close(what: &str, got: &Tensor<CpuBackend>, want: &[f64], t: Tol) {
    let g = got.to_f32_vec().unwrap();
    assert_eq!(g.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in g.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(err <= t.abs + t.rel * w.abs(), "{what}: element {i}: got {g}, want {w} (err {err:e})");
    }
}

fn each_dtype(mut f: impl FnMut(&mut Ctx)) {
    for (i, dt) in DType::ALL.into_iter().enumerate() {
        f(&mut Ctx::new(42 + i as u64, dt));
    }
}

// ---- independent f64 references ---------------------------------------------------------------

fn erf64(x: f64) -> f64 {
    // Maclaurin series for |x| < 3, continued fraction of erfc beyond: both exact to ~1e-15 here.
    if x.abs() < 3.0 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    } else {
        let z = x.abs();
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (z + f);
        }
        let erfc = (-z * z).exp() / std::f64::consts::PI.sqrt() / (z + f);
        x.signum() * (1.0 - erfc)
    }
}

fn act64(x: f64, a: Activation) -> f64 {
    match a {
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::GeluTanh => {
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }
        Activation::GeluErf => 0.5 * x * (1.0 + erf64(x / 2f64.sqrt())),
    }
}

// ---- tests ------------------------------------------------------------------------------------

#[test]
fn linear() {
    each_dtype(|c| {
        for &(m, k, n, bias) in &[(7, 13, 5, true), (33, 70, 19, false), (1, 9, 1, true), (17, 200, 40, true)]
        {
            let (x, xv) = c.rand(&[m, k], -1.0, 1.0);
            let (w, wv) = c.rand(&[n, k], -0.5, 0.5);
            let (b, bv) = c.rand(&[n], -1.0, 1.0);
            let mut want = vec![0f64; m * n];
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] = (0..k).map(|l| xv[i * k + l] * wv[j * k + l]).sum::<f64>()
                        + if bias { bv[j] } else { 0.0 };
                }
            }
            let got = x.linear(&w, bias.then_some(&b)).unwrap();
            assert_eq!(got.dims(), [m, n]);
            assert_close(&format!("linear {m}x{k}x{n} {}", c.dt), &got, &want, tol(c.dt));
        }
    });
}

#[test]
fn linear_batched_leading_dims() {
    let mut c = Ctx::new(3, DType::F32);
    let (x, _) = c.rand(&[2, 3, 4], -1.0, 1.0);
    let (w, _) = c.rand(&[5, 4], -1.0, 1.0);
    assert_eq!(x.linear(&w, None).unwrap().dims(), [2, 3, 5]);
}

#[test]
fn norms() {
    each_dtype(|c| {
        let (r, n) = (9, 67);
        let (x, xv) = c.rand(&[r, n], -3.0, 5.0);
        let (w, wv) = c.rand(&[n], 0.5, 1.5);
        let (bb, bv) = c.rand(&[n], -1.0, 1.0);
        let (sh, shv) = c.rand(&[n], -1.0, 1.0);
        let (sc, scv) = c.rand(&[n], -1.0, 1.0);
        let eps = 1e-6;
        let (mut ln, mut lnm, mut lnp, mut rms) = (vec![], vec![], vec![], vec![]);
        for row in xv.chunks(n) {
            let mean = row.iter().sum::<f64>() / n as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            let ms = row.iter().map(|v| v * v).sum::<f64>() / n as f64;
            for (j, v) in row.iter().enumerate() {
                let z = (v - mean) / (var + eps).sqrt();
                ln.push(z * wv[j] + bv[j]);
                lnp.push(z);
                lnm.push(z * (1.0 + scv[j]) + shv[j]);
                rms.push(v / (ms + eps).sqrt() * wv[j]);
            }
        }
        let t = tol(c.dt);
        assert_close("layer_norm affine", &x.layer_norm(Some(&w), Some(&bb), eps as f32).unwrap(), &ln, t);
        assert_close("layer_norm plain", &x.layer_norm(None, None, eps as f32).unwrap(), &lnp, t);
        assert_close("layer_norm_modulate", &x.layer_norm_modulate(&sh, &sc, eps as f32).unwrap(), &lnm, t);
        assert_close("rms_norm", &x.rms_norm(&w, eps as f32).unwrap(), &rms, t);
    });
}

#[test]
fn channel_rms_norm() {
    each_dtype(|c| {
        let (ch, h, w) = (24, 5, 7);
        let (x, xv) = c.rand(&[ch, h, w], -2.0, 2.0);
        let (g, gv) = c.rand(&[ch], 0.5, 1.5);
        let p = h * w;
        let mut want = vec![0f64; ch * p];
        for pos in 0..p {
            let norm = (0..ch).map(|k| xv[k * p + pos].powi(2)).sum::<f64>().sqrt().max(1e-12);
            for k in 0..ch {
                want[k * p + pos] = xv[k * p + pos] / norm * (ch as f64).sqrt() * gv[k];
            }
        }
        assert_close("channel_rms_norm", &x.channel_rms_norm(&g).unwrap(), &want, tol(c.dt));
    });
}

fn rope64(xv: &[f64], angles: &[f64], l: usize, h: usize, d: usize, pairing: RopePairing) -> Vec<f64> {
    let mut out = xv.to_vec();
    for t in 0..l {
        for hh in 0..h {
            let base = (t * h + hh) * d;
            for m in 0..d / 2 {
                let (i, j) =
                    if pairing == RopePairing::Interleaved { (2 * m, 2 * m + 1) } else { (m, m + d / 2) };
                let a = angles[t * d / 2 + m];
                let (x1, x2) = (xv[base + i], xv[base + j]);
                out[base + i] = x1 * a.cos() - x2 * a.sin();
                out[base + j] = x2 * a.cos() + x1 * a.sin();
            }
        }
    }
    out
}

#[test]
fn rope_and_rms_norm_rope() {
    each_dtype(|c| {
        for &(l, h, d, pairing) in &[(9, 3, 16, RopePairing::Interleaved), (7, 2, 72, RopePairing::HalfSplit)]
        {
            let (x, xv) = c.rand(&[l, h, d], -2.0, 2.0);
            let (w, wv) = c.rand(&[d], 0.5, 1.5);
            let angles: Vec<f64> =
                c.rng.uniform_vec(l * d / 2, -6.0, 6.0).iter().map(|&a| a as f64).collect();
            let cos: Vec<f64> = angles.iter().map(|a| (*a as f32).cos() as f64).collect();
            let sin: Vec<f64> = angles.iter().map(|a| (*a as f32).sin() as f64).collect();
            // The reference rotates by the angles whose f32 cos/sin the table holds.
            let exact: Vec<f64> = cos.iter().zip(&sin).map(|(c, s)| s.atan2(*c)).collect();
            let rope =
                Rope { cos: c.f32_table(&[l, d / 2], &cos), sin: c.f32_table(&[l, d / 2], &sin), pairing };
            let t = Tol { abs: 1e-5, rel: tol(c.dt).rel };
            assert_close("rope", &x.rope(&rope).unwrap(), &rope64(&xv, &exact, l, h, d, pairing), t);
            let mut normed = xv.clone();
            for head in normed.chunks_mut(d) {
                let r = 1.0 / (head.iter().map(|v| v * v).sum::<f64>() / d as f64 + 1e-6).sqrt();
                head.iter_mut().zip(&wv).for_each(|(v, g)| *v *= r * g);
            }
            let want = rope64(&normed, &exact, l, h, d, pairing);
            assert_close("rms_norm_rope", &x.rms_norm_rope(&w, &rope, 1e-6).unwrap(), &want, t);
        }
    });
}

#[test]
fn activations_and_swiglu() {
    each_dtype(|c| {
        let (x, xv) = c.rand(&[1001], -6.0, 6.0);
        for a in [Activation::Silu, Activation::GeluTanh, Activation::GeluErf] {
            let want: Vec<f64> = xv.iter().map(|&v| act64(v, a)).collect();
            assert_close(&format!("{a:?}"), &x.activation(a).unwrap(), &want, tol(c.dt));
        }
        let (u, uv) = c.rand(&[1001], -2.0, 2.0);
        let want: Vec<f64> = xv.iter().zip(&uv).map(|(g, u)| act64(*g, Activation::Silu) * u).collect();
        assert_close("swiglu", &x.swiglu(&u).unwrap(), &want, tol(c.dt));
    });
}

#[test]
fn binary_broadcasts() {
    each_dtype(|c| {
        let (a, av) = c.rand(&[6, 5, 7], -2.0, 2.0);
        let cases: [(&[usize], BinaryOp); 5] = [
            (&[6, 5, 7], BinaryOp::Add),
            (&[7], BinaryOp::Mul),
            (&[5, 7], BinaryOp::Sub),
            (&[6, 1, 1], BinaryOp::Mul),
            (&[6], BinaryOp::Add),
        ];
        for (bs, op) in cases {
            let (b, bv) = c.rand(bs, 0.5, 2.0);
            let n = bv.len();
            let want: Vec<f64> = av
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    // b matches either the trailing dims (index i mod n) or the leading dims.
                    let y = if [7, 35, 210].contains(&n) { bv[i % n] } else { bv[i / (210 / n)] };
                    match op {
                        BinaryOp::Add => x + y,
                        BinaryOp::Sub => x - y,
                        BinaryOp::Mul => x * y,
                    }
                })
                .collect();
            assert_close(&format!("binary {op:?} {bs:?}"), &a.binary(&b, op).unwrap(), &want, tol(c.dt));
        }
        let (bad, _) = c.rand(&[4], 0.0, 1.0);
        assert!(a.add(&bad).is_err());
    });
}

#[test]
fn residuals_and_cfg() {
    each_dtype(|c| {
        let (r, n) = (9, 40);
        let (x, xv) = c.rand(&[r, n], -2.0, 2.0);
        let (z, zv) = c.rand(&[r, n], -2.0, 2.0);
        let (g, gv) = c.rand(&[n], -1.0, 1.0);
        let want: Vec<f64> = (0..r * n).map(|i| xv[i] + gv[i % n] * zv[i]).collect();
        assert_close("gated_residual", &x.gated_residual(&z, &g).unwrap(), &want, tol(c.dt));
        let want: Vec<f64> = (0..r * n).map(|i| xv[i] + (-0.0371f32) as f64 * zv[i]).collect();
        assert_close("scaled_add", &x.scaled_add(&z, -0.0371).unwrap(), &want, tol(c.dt));

        let (ch, p) = (16, 35);
        let (cc, cv) = c.rand(&[ch, p], -2.0, 2.0);
        let (uu, uv) = c.rand(&[ch, p], -2.0, 2.0);
        let mut want = vec![0f64; ch * p];
        for pos in 0..p {
            let gsel: Vec<f64> =
                (0..ch).map(|k| uv[k * p + pos] + 4.0 * (cv[k * p + pos] - uv[k * p + pos])).collect();
            let nc = (0..ch).map(|k| cv[k * p + pos].powi(2)).sum::<f64>().sqrt();
            let ng = gsel.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-6);
            for k in 0..ch {
                want[k * p + pos] = gsel[k] * nc / ng;
            }
        }
        assert_close(
            "cfg_renorm",
            &cc.cfg_renorm(&uu, 4.0).unwrap(),
            &want,
            Tol { abs: 5e-5, rel: tol(c.dt).rel },
        );
    });
}

fn attention64(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (lq, lk, hq, hkv, d): (usize, usize, usize, usize, usize),
    causal: bool,
) -> Vec<f64> {
    let mut out = vec![0f64; lq * hq * d];
    let scale = 1.0 / (d as f64).sqrt();
    for h in 0..hq {
        let kh = h / (hq / hkv);
        for i in 0..lq {
            let s: Vec<f64> = (0..lk)
                .map(|j| {
                    if causal && j > i + lk - lq {
                        f64::NEG_INFINITY
                    } else {
                        scale
                            * (0..d).map(|e| q[(i * hq + h) * d + e] * k[(j * hkv + kh) * d + e]).sum::<f64>()
                    }
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
            for j in 0..lk {
                let p = (s[j] - m).exp() / z;
                for e in 0..d {
                    out[(i * hq + h) * d + e] += p * v[(j * hkv + kh) * d + e];
                }
            }
        }
    }
    out
}

#[test]
fn attention() {
    each_dtype(|c| {
        for &(lq, lk, hq, hkv, d, causal) in &[
            (19, 19, 4, 4, 16, false),
            (37, 37, 4, 2, 32, true),
            (5, 41, 4, 1, 32, true),
            (70, 90, 2, 2, 72, false),
            (3, 20, 2, 1, 128, false),
        ] {
            let (q, qv) = c.rand(&[lq, hq, d], -1.5, 1.5);
            let (k, kv) = c.rand(&[lk, hkv, d], -1.5, 1.5);
            let (v, vv) = c.rand(&[lk, hkv, d], -1.0, 1.0);
            let want = attention64(&qv, &kv, &vv, (lq, lk, hq, hkv, d), causal);
            let got = q.attention(&k, &v, causal, None).unwrap();
            assert_close(
                &format!("attention {lq}/{lk} {hq}/{hkv} d{d} causal={causal}"),
                &got,
                &want,
                tol(c.dt),
            );
        }
    });
}

#[test]
fn conv2d_and_upsample() {
    each_dtype(|c| {
        for &(ci, co, h, w, k, s, pad) in &[
            (5, 7, 9, 11, 3, 1, (1, 1, 1, 1)),
            (6, 6, 10, 13, 3, 2, (0, 1, 0, 1)),
            (8, 3, 6, 5, 1, 1, (0, 0, 0, 0)),
        ] {
            let (x, xv) = c.rand(&[ci, h, w], -1.0, 1.0);
            let (wt, wv) = c.rand(&[co, ci, k, k], -0.5, 0.5);
            let (b, bv) = c.rand(&[co], -0.5, 0.5);
            let ho = (h + pad.0 + pad.1 - k) / s + 1;
            let wo = (w + pad.2 + pad.3 - k) / s + 1;
            let mut want = vec![0f64; co * ho * wo];
            for o in 0..co {
                for y in 0..ho {
                    for xx in 0..wo {
                        let mut acc = bv[o];
                        for cc in 0..ci {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (y * s + ky) as isize - pad.0 as isize;
                                    let ix = (xx * s + kx) as isize - pad.2 as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                        acc += wv[((o * ci + cc) * k + ky) * k + kx]
                                            * xv[(cc * h + iy as usize) * w + ix as usize];
                                    }
                                }
                            }
                        }
                        want[(o * ho + y) * wo + xx] = acc;
                    }
                }
            }
            let got = x.conv2d(&wt, Some(&b), s, pad).unwrap();
            assert_eq!(got.dims(), [co, ho, wo]);
            assert_close(&format!("conv2d {ci}->{co} k{k} s{s}"), &got, &want, tol(c.dt));
        }
        let (x, xv) = c.rand(&[3, 5, 7], -1.0, 1.0);
        let want: Vec<f64> = (0..3 * 10 * 14)
            .map(|i| {
                let (ch, y, xx) = (i / 140, (i / 14) % 10, i % 14);
                xv[(ch * 5 + y / 2) * 7 + xx / 2]
            })
            .collect();
        assert_close("upsample", &x.upsample_nearest2x().unwrap(), &want, tol(c.dt));
    });
}

#[test]
fn layout_copies() {
    each_dtype(|c| {
        let exact = Tol { abs: 0.0, rel: 0.0 };
        // permute, ranks 2..6
        for (dims, perm) in [
            (vec![3, 5], vec![1, 0]),
            (vec![2, 3, 4], vec![2, 0, 1]),
            (vec![16, 2, 3, 2, 4, 2], vec![1, 2, 4, 0, 3, 5]),
            (vec![2, 3, 1, 4, 5], vec![4, 3, 2, 1, 0]),
        ] {
            let (x, xv) = c.rand(&dims, -1.0, 1.0);
            let out_dims: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
            let n = xv.len();
            let mut want = vec![0f64; n];
            for (flat, w) in want.iter_mut().enumerate() {
                let mut idx = vec![0; dims.len()];
                let mut r = flat;
                for a in (0..dims.len()).rev() {
                    idx[a] = r % out_dims[a];
                    r /= out_dims[a];
                }
                let mut in_idx = vec![0; dims.len()];
                for (oa, &ia) in perm.iter().enumerate() {
                    in_idx[ia] = idx[oa];
                }
                *w = xv[in_idx.iter().zip(&dims).fold(0, |acc, (i, d)| acc * d + i)];
            }
            let got = x.permute(&perm).unwrap();
            assert_eq!(got.dims(), out_dims.as_slice());
            assert_close(&format!("permute {dims:?} {perm:?}"), &got, &want, exact);
        }
        // slice on a middle axis
        let (x, xv) = c.rand(&[4, 9, 5], -1.0, 1.0);
        let want: Vec<f64> = (0..4)
            .flat_map(|a| (2..8).flat_map(move |b| (0..5).map(move |e| (a, b, e))))
            .map(|(a, b, e)| xv[(a * 9 + b) * 5 + e])
            .collect();
        assert_close("slice", &x.slice(1, 2, 6).unwrap(), &want, exact);
        assert!(x.slice(1, 5, 6).is_err());
        // concat on a middle axis
        let (a, av) = c.rand(&[3, 4, 5], -1.0, 1.0);
        let (b, bv) = c.rand(&[3, 2, 5], -1.0, 1.0);
        let mut want = vec![];
        for o in 0..3 {
            want.extend_from_slice(&av[o * 20..(o + 1) * 20]);
            want.extend_from_slice(&bv[o * 10..(o + 1) * 10]);
        }
        let got = Tensor::concat(&[&a, &b], 1).unwrap();
        assert_eq!(got.dims(), [3, 6, 5]);
        assert_close("concat", &got, &want, exact);
    });
}

#[test]
fn gather_and_scatter() {
    each_dtype(|c| {
        let (v, ch) = (16, 32);
        let (t, tv) = c.rand(&[v, ch], -1.0, 1.0);
        let idx: Vec<u32> = (0..24 * 4).map(|i| ((i * 7 + 3) % v) as u32).collect();
        let w: Vec<f32> = c.rng.uniform_vec(24 * 4, 0.0, 1.0);
        let mut want = vec![0f64; 24 * ch];
        for n in 0..24 {
            for j in 0..4 {
                for e in 0..ch {
                    want[n * ch + e] += w[n * 4 + j] as f64 * tv[idx[n * 4 + j] as usize * ch + e];
                }
            }
        }
        assert_close("gather weighted", &t.gather_rows(&idx, Some(&w), 4).unwrap(), &want, tol(c.dt));
        let want: Vec<f64> =
            idx[..5].iter().flat_map(|&i| tv[i as usize * ch..(i as usize + 1) * ch].to_vec()).collect();
        assert_close("embedding", &t.embedding(&idx[..5]).unwrap(), &want, Tol { abs: 0.0, rel: 0.0 });
        assert!(t.embedding(&[16]).is_err());

        let (src, sv) = c.rand(&[3, ch], -1.0, 1.0);
        let rows = [5u32, 0, 11];
        for mode in [ScatterMode::Assign, ScatterMode::Add] {
            let mut want = tv.clone();
            for (n, &r) in rows.iter().enumerate() {
                for e in 0..ch {
                    let s = sv[n * ch + e];
                    let d = &mut want[r as usize * ch + e];
                    *d = if mode == ScatterMode::Add { *d + s } else { s };
                }
            }
            assert_close(
                &format!("scatter {mode:?}"),
                &t.scatter_rows(&rows, &src, mode).unwrap(),
                &want,
                tol(c.dt),
            );
        }
        assert!(t.scatter_rows(&[1, 1, 2], &src, ScatterMode::Assign).is_err());
    });
}

#[test]
fn cast_upload_download() {
    let b = CpuBackend::default();
    let v: Vec<f32> = Rng::new(9).uniform_vec(333, -100.0, 100.0);
    let x = Tensor::from_f32(&b, [333], &v, DType::F32).unwrap();
    for to in DType::ALL {
        let y = x.cast(to).unwrap();
        assert_eq!(y.dtype(), to);
        let want: Vec<f64> = v.iter().map(|&e| to.round_f32(e) as f64).collect();
        assert_close(&format!("cast to {to}"), &y, &want, Tol { abs: 0.0, rel: 0.0 });
        assert_eq!(y.to_bytes().unwrap(), to.encode_f32(&v));
    }
    assert!(Tensor::from_bytes(&b, [3], DType::F32, &[0u8; 11]).is_err());
    assert!(joyrt_core::Backend::upload(&b, DType::BF16, &[0u8; 3]).is_err());
    let z = Tensor::zeros(&b, [2, 3], DType::BF16).unwrap();
    assert_eq!(z.to_f32_vec().unwrap(), vec![0.0; 6]);
}

#[test]
fn memory_is_counted_and_released() {
    let b = CpuBackend::default();
    {
        let _t = Tensor::zeros(&b, [1000], DType::F32).unwrap();
        assert_eq!(b.memory_stats().0, 4000);
    }
    assert_eq!(b.memory_stats(), (0, 4000));
}
