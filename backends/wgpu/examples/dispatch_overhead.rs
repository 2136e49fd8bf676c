//! Dispatch overhead of the wgpu backend: a chain of small `binary` adds (4096 elements each) with
//! one synchronize at the end, so the time is host-side dispatch cost (shader lookup, params,
//! bind group, submit) plus tiny kernels. Prints the median of several rounds, per op.
//!
//! ```sh
//! WGPU_BACKEND=vulkan cargo run --release -p joyrt-wgpu --example dispatch_overhead -- [ops] [rounds]
//! ```

use joyrt_core::{Backend, DType, Rng, Tensor};
use joyrt_wgpu::WgpuBackend;
use std::time::Instant;

fn main() -> joyrt_core::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("counts are integers"));
    let ops = args.next().unwrap_or(1000);
    let rounds = args.next().unwrap_or(7).max(1);
    let b = WgpuBackend::new()?;
    println!("{}: {ops} adds of 4096 elements per round, median of {rounds} rounds", b.name());
    let mut rng = Rng::new(1);
    for dtype in [DType::F32, DType::BF16] {
        let x = Tensor::from_f32(&b, vec![4096], &rng.normal_vec(4096, 1.0), dtype)?;
        let y = Tensor::from_f32(&b, vec![4096], &rng.normal_vec(4096, 1.0), dtype)?;
        let round = || -> joyrt_core::Result<f64> {
            let t0 = Instant::now();
            let mut z = x.add(&y)?;
            for _ in 1..ops {
                z = z.add(&y)?;
            }
            b.synchronize()?;
            Ok(t0.elapsed().as_secs_f64())
        };
        round()?; // warm-up: pipelines compiled, pool filled
        let mut t = (0..rounds).map(|_| round()).collect::<joyrt_core::Result<Vec<_>>>()?;
        t.sort_by(f64::total_cmp);
        let med = t[t.len() / 2];
        println!(
            "{dtype}: {:.1} ms per round, {:.1} µs per add (min {:.1}, max {:.1} ms)",
            med * 1e3,
            med * 1e6 / ops as f64,
            t[0] * 1e3,
            t[t.len() - 1] * 1e3
        );
    }
    Ok(())
}
