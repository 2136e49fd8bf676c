//! The fused ops against the sequences of ops they replace, on the backend under test: `joint_qkv`
//! with both streams rotated computes what `slice`, `rms_norm_rope` and `concat` compute, with the
//! same kernel arithmetic, so the two agree to the bit on every backend. (A stream without a table
//! takes `rms_norm` unfused, whose GPU kernels reduce in another order: that case is held to the
//! CPU reference by the op presets instead, `crate::ops`.)

use crate::ops::{Op, QkvInputs};
use crate::report::Report;
use joyrt_core::{Backend, DType, Result, RopePairing, Tensor};

/// Q, K, V of `streams` as the DiT block computed them before `joint_qkv`: per stream, the three
/// column slices of its projection, q and k through `rms_norm_rope` (`rms_norm` without a
/// table), then each joined over the streams.
pub(crate) fn unfused_qkv<B: Backend>(
    streams: &[QkvInputs<B>],
    h: usize,
    d: usize,
) -> Result<[Tensor<B>; 3]> {
    let part = |j: usize| -> Result<Tensor<B>> {
        let per_stream = streams
            .iter()
            .map(|s| {
                let x = s.qkv.slice(1, j * h * d, h * d)?.reshape([s.qkv.dims()[0], h, d])?;
                match (s.gains.get(j), &s.rope) {
                    (None, _) => Ok(x),
                    (Some(g), Some(r)) => x.rms_norm_rope(g, r, 1e-6),
                    (Some(g), None) => x.rms_norm(g, 1e-6),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::concat(&per_stream.iter().collect::<Vec<_>>(), 0)
    };
    Ok([part(0)?, part(1)?, part(2)?])
}

/// The `joint_qkv` cases checked against their unfused sequence: both streams rotated, the
/// general kernels (head dim 16, 72) and the warp-per-row ones (128), both pairings.
fn identity_cases() -> Vec<Op> {
    let case = |l, h, d, pairing| Op::JointQkv { l, h, d, pairing, text_rope: true, fused: true };
    vec![
        case([9, 5], 3, 16, RopePairing::Interleaved),
        case([7, 4], 2, 72, RopePairing::HalfSplit),
        case([5, 3], 3, 128, RopePairing::Interleaved),
        case([6, 2], 2, 128, RopePairing::HalfSplit),
    ]
}

/// Each identity case at every storage dtype on `dut`: fused and unfused, bit for bit.
pub fn run_fusion_identities<B: Backend>(dut: &B, report: &mut Report) {
    run_fusion_identities_where(dut, report, |_| true);
}

/// [`run_fusion_identities`] for the checks whose label `keep` accepts.
pub fn run_fusion_identities_where<B: Backend>(dut: &B, report: &mut Report, keep: impl Fn(&str) -> bool) {
    for (i, op) in identity_cases().iter().enumerate() {
        let Op::JointQkv { l, h, d, pairing, text_rope, .. } = *op else { unreachable!("joint_qkv cases") };
        let unfused = Op::JointQkv { l, h, d, pairing, text_rope, fused: false };
        for dtype in DType::ALL {
            let label = format!("{} = the unfused ops", op.label(dtype));
            if !keep(&label) {
                continue;
            }
            let seed = 2000 + i as u64;
            let run = |o: &Op| o.run(dut, dtype, seed).and_then(|t| t.to_f32_vec());
            let Some(got) = report.attempt("ops", &label, run(op)) else { continue };
            let Some(want) = report.attempt("ops", &label, run(&unfused)) else { continue };
            let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            let same = got.len() == want.len() && differ == 0;
            report.check("ops", label, same, format!("{differ} of {} values differ", want.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_fused_qkv_is_its_unfused_sequence() {
        let mut report = Report::new("cpu");
        run_fusion_identities(&joyrt_cpu::CpuBackend::default(), &mut report);
        assert_eq!(report.rows.len(), identity_cases().len() * DType::ALL.len());
        assert!(report.failures().is_empty(), "{}", report.table());
    }
}
