//! The conformance suite on the wgpu backend (a software Vulkan adapter, lavapipe, in CI).

joyrt_conformance::conformance_suite!(wgpu, joyrt_wgpu::WgpuBackend::new(), ops_layer = true);

/// Every op that splits its work past the binding limit, on an adapter capped at
/// `SPLIT_BINDING_LIMIT` so that the split cases run in several pieces: against the CPU reference
/// with the op presets, and bit for bit against the same ops unsplit (the kernels are the same,
/// run on sub-ranges).
#[test]
fn ops_split_past_a_small_binding_limit() {
    use joyrt_conformance::ops::{run_cases, split_cases, SPLIT_BINDING_LIMIT};
    use joyrt_core::{Backend, DType};
    use joyrt_wgpu::{WgpuBackend, WgpuOptions};
    let capped = WgpuOptions { binding_limit: Some(SPLIT_BINDING_LIMIT), ..WgpuOptions::from_env() };
    let (split, whole) = match (WgpuBackend::with_options(capped), WgpuBackend::new()) {
        (Ok(s), Ok(w)) => (s, w),
        (Err(e), _) | (_, Err(e)) => {
            println!("SKIPPED: backend wgpu not available for the split ops: {e}");
            return;
        }
    };
    assert_eq!(split.binding_limit(), SPLIT_BINDING_LIMIT);
    let mut report =
        joyrt_conformance::Report::new(format!("{} capped at {SPLIT_BINDING_LIMIT} bytes", split.name()));
    run_cases(&split, &mut report, &split_cases(), |_| true);
    joyrt_conformance::finish(&report);
    for (i, op) in split_cases().iter().enumerate() {
        for dtype in DType::ALL {
            let run =
                |b: &WgpuBackend| op.run(b, dtype, 1000 + i as u64).and_then(|t| t.to_f32_vec()).unwrap();
            let (got, want) = (run(&split), run(&whole));
            let same =
                got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{}: split and unsplit results differ", op.label(dtype));
        }
    }
}
