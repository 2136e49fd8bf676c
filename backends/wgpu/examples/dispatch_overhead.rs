//! Dispatch overhead of the wgpu backend: a chain of small `binary` adds (4096 elements each) with
//! one synchronize at the end. Prints, per add, the host time to enqueue it (shader lookup,
//! params, bind group, submit) and the time until the device has run them all, as the median
//! (and minimum) of several rounds after a warm-up.
//!
//! ```sh
//! WGPU_BACKEND=vulkan cargo run --release -p joyrt-wgpu --example dispatch_overhead -- [adds] [rounds]
//! ```

use joyrt_core::{Backend, DType, Rng, Tensor};
use joyrt_wgpu::WgpuBackend;
use std::time::Instant;

/// Median and minimum.
fn summary(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

fn main() -> joyrt_core::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("counts are integers"));
    let adds = args.next().unwrap_or(1000).max(1);
    let rounds = args.next().unwrap_or(15).max(1);
    let b = WgpuBackend::new()?;
    println!("{}: {adds} adds of 4096 elements per round, {rounds} rounds", b.name());
    let mut rng = Rng::new(1);
    for dtype in [DType::F32, DType::BF16] {
        let x = Tensor::from_f32(&b, vec![4096], &rng.normal_vec(4096, 1.0), dtype)?;
        let y = Tensor::from_f32(&b, vec![4096], &rng.normal_vec(4096, 1.0), dtype)?;
        // (enqueue, total) seconds of one round.
        let round = || -> joyrt_core::Result<(f64, f64)> {
            let t0 = Instant::now();
            let mut z = x.add(&y)?;
            for _ in 1..adds {
                z = z.add(&y)?;
            }
            let enqueued = t0.elapsed().as_secs_f64();
            b.synchronize()?;
            Ok((enqueued, t0.elapsed().as_secs_f64()))
        };
        round()?; // warm-up: pipelines compiled, pool filled
        let times = (0..rounds).map(|_| round()).collect::<joyrt_core::Result<Vec<_>>>()?;
        let per_add = |v: f64| v * 1e6 / adds as f64;
        let (enq, enq_min) = summary(times.iter().map(|t| t.0).collect());
        let (all, all_min) = summary(times.iter().map(|t| t.1).collect());
        println!(
            "{dtype}: µs per add: enqueue {:.1} (min {:.1}), until done {:.1} (min {:.1})",
            per_add(enq),
            per_add(enq_min),
            per_add(all),
            per_add(all_min)
        );
    }
    Ok(())
}
