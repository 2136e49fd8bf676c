//! The opt-in per-kernel profile: how long each kernel ran, summed per kernel name, over the
//! launches made between [`CudaBackend::profile_start`] and [`CudaBackend::profile_finish`].
//!
//! On a GPU each launch is bracketed by a pair of CUDA events recorded on the stream; the pairs
//! come from a pool and go back to it once read, so a long profile does not create an event per
//! launch. Pairs are read (and recycled) as the GPU passes them: each new launch first takes
//! those already complete, without waiting, and only when [`MAX_PENDING`] pairs are in flight
//! does the host wait for the oldest. The emulation has no events; its launches are synchronous,
//! so it times each one with the host clock and fills the same table (the code path is the same;
//! the figures say nothing about a GPU).
//!
//! Profiling off costs one relaxed atomic load per launch. On, it adds two event records per
//! launch (each a small gap on the GPU's timeline), so the step it is taken on runs a little
//! slower than an unprofiled one; the results of the kernels are unchanged.

use crate::device::Device;
use crate::CudaBackend;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream};
use joyrt_core::{Error, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Event pairs in flight before a launch waits for the oldest (a CFG step at 1024² makes
/// about 4000 launches; this bounds the events alive, not the launches profiled).
const MAX_PENDING: usize = 1024;

/// What the kernels' durations were measured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// CUDA events around each launch, on the GPU's clock.
    CudaEvents,
    /// The host's clock around each (synchronous) emulated launch.
    HostClock,
}

impl Timer {
    pub fn label(self) -> &'static str {
        match self {
            Timer::CudaEvents => "cuda events",
            Timer::HostClock => "host clock (emulation)",
        }
    }
}

/// One kernel's launches in a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub kernel: &'static str,
    pub launches: usize,
    pub total_ms: f64,
    /// The median launch, in microseconds.
    pub median_us: f64,
}

/// A finished profile: every kernel launched while it ran, the longest total first.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelProfile {
    pub timer: Timer,
    pub kernels: Vec<KernelTime>,
}

impl KernelProfile {
    pub fn launches(&self) -> usize {
        self.kernels.iter().map(|k| k.launches).sum()
    }

    pub fn total_ms(&self) -> f64 {
        self.kernels.iter().map(|k| k.total_ms).sum()
    }

    /// The table of `durations_ms` per kernel, sorted by total time (then name).
    fn from_durations(timer: Timer, durations_ms: HashMap<&'static str, Vec<f64>>) -> KernelProfile {
        let mut kernels: Vec<KernelTime> = durations_ms
            .into_iter()
            .map(|(kernel, mut d)| {
                d.sort_by(f64::total_cmp);
                let median_ms = if d.len() % 2 == 1 {
                    d[d.len() / 2]
                } else {
                    (d[d.len() / 2 - 1] + d[d.len() / 2]) / 2.0
                };
                KernelTime { kernel, launches: d.len(), total_ms: d.iter().sum(), median_us: median_ms * 1e3 }
            })
            .collect();
        kernels.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then(a.kernel.cmp(b.kernel)));
        KernelProfile { timer, kernels }
    }
}

/// A launch being timed.
pub(crate) enum Stamp {
    Events(EventPair),
    Host(Instant),
}

/// A start and an end event, both with timing enabled.
pub(crate) struct EventPair {
    start: CudaEvent,
    end: CudaEvent,
}

#[derive(Default)]
struct State {
    /// Launched, not yet read: (kernel, its events), oldest first.
    pending: VecDeque<(&'static str, EventPair)>,
    /// Read pairs, ready for the next launches.
    free: Vec<EventPair>,
    durations_ms: HashMap<&'static str, Vec<f64>>,
}

/// The backend's profiler: off until [`CudaBackend::profile_start`].
#[derive(Default)]
pub(crate) struct Profiler {
    on: AtomicBool,
    state: Mutex<State>,
}

fn driver_error(what: &str, e: cudarc::driver::DriverError) -> Error {
    Error::backend("cuda", format!("kernel profile: {what}: {e:?}"))
}

impl State {
    /// Reads the pairs at the front of `pending` whose end has passed; with `wait`, waits for
    /// all of them.
    fn collect(&mut self, wait: bool) -> Result<()> {
        while let Some((_, pair)) = self.pending.front() {
            if wait {
                pair.end.synchronize().map_err(|e| driver_error("cuEventSynchronize", e))?;
            } else if !pair.end.try_is_complete().map_err(|e| driver_error("cuEventQuery", e))? {
                break;
            }
            let (kernel, pair) = self.pending.pop_front().expect("front exists");
            let ms = pair.start.elapsed_ms(&pair.end).map_err(|e| driver_error("cuEventElapsedTime", e))?;
            self.durations_ms.entry(kernel).or_default().push(ms as f64);
            self.free.push(pair);
        }
        Ok(())
    }

    /// A pair for the next launch: a recycled one where the GPU has passed it.
    fn pair(&mut self, ctx: &Arc<CudaContext>) -> Result<EventPair> {
        self.collect(false)?;
        if self.pending.len() >= MAX_PENDING {
            let (_, oldest) = &self.pending[0];
            oldest.end.synchronize().map_err(|e| driver_error("cuEventSynchronize", e))?;
            self.collect(false)?;
        }
        if let Some(pair) = self.free.pop() {
            return Ok(pair);
        }
        let event = || {
            ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(|e| driver_error("cuEventCreate", e))
        };
        Ok(EventPair { start: event()?, end: event()? })
    }
}

impl Profiler {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before a launch on `stream`: a started stamp, or none when profiling is off.
    pub(crate) fn begin_gpu(&self, ctx: &Arc<CudaContext>, stream: &CudaStream) -> Result<Option<Stamp>> {
        if !self.on.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let pair = self.state().pair(ctx)?;
        pair.start.record(stream).map_err(|e| driver_error("cuEventRecord", e))?;
        Ok(Some(Stamp::Events(pair)))
    }

    /// Before an emulated launch.
    pub(crate) fn begin_host(&self) -> Option<Stamp> {
        self.on.load(Ordering::Relaxed).then(|| Stamp::Host(Instant::now()))
    }

    /// After the launch `stamp` was begun for; `stream` records the end on the GPU.
    pub(crate) fn end(
        &self,
        kernel: &'static str,
        stamp: Option<Stamp>,
        stream: Option<&CudaStream>,
    ) -> Result<()> {
        match (stamp, stream) {
            (None, _) => Ok(()),
            (Some(Stamp::Host(t0)), _) => {
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                self.state().durations_ms.entry(kernel).or_default().push(ms);
                Ok(())
            }
            (Some(Stamp::Events(pair)), Some(stream)) => {
                pair.end.record(stream).map_err(|e| driver_error("cuEventRecord", e))?;
                self.state().pending.push_back((kernel, pair));
                Ok(())
            }
            (Some(Stamp::Events(_)), None) => unreachable!("event stamps come from GPU launches"),
        }
    }
}

impl CudaBackend {
    /// Starts a per-kernel profile (discarding any unfinished one): every later launch is timed
    /// until [`CudaBackend::profile_finish`].
    pub fn profile_start(&self) -> Result<()> {
        if let Device::Gpu { .. } = self.inner.dev {
            // SAFETY: a GPU device was opened, so the driver library is present.
            if let Some(symbol) = unsafe { crate::driver::missing_profile_symbol() } {
                return Err(Error::backend(
                    self.inner.name.clone(),
                    format!("kernel profile: the CUDA driver lacks {symbol}"),
                ));
            }
        }
        let profiler = &self.inner.profiler;
        profiler.on.store(false, Ordering::Relaxed);
        self.sync()?;
        let mut s = profiler.state();
        let pending: Vec<_> = s.pending.drain(..).map(|(_, pair)| pair).collect();
        s.free.extend(pending);
        s.durations_ms.clear();
        profiler.on.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for the device, stops profiling and returns the profile of the launches since
    /// [`CudaBackend::profile_start`] (an empty one if it was never started).
    pub fn profile_finish(&self) -> Result<KernelProfile> {
        let profiler = &self.inner.profiler;
        profiler.on.store(false, Ordering::Relaxed);
        self.sync()?;
        let mut s = profiler.state();
        s.collect(true)?;
        let timer = match self.inner.dev {
            Device::Gpu { .. } => Timer::CudaEvents,
            Device::Emu(_) => Timer::HostClock,
        };
        Ok(KernelProfile::from_durations(timer, std::mem::take(&mut s.durations_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_sorted_by_total_with_their_median() {
        let d = HashMap::from([("a", vec![1.0, 3.0, 2.0]), ("b", vec![4.0, 0.5]), ("c", vec![6.0])]);
        let p = KernelProfile::from_durations(Timer::HostClock, d);
        let names: Vec<_> = p.kernels.iter().map(|k| k.kernel).collect();
        assert_eq!(names, ["a", "c", "b"]);
        assert_eq!((p.kernels[0].launches, p.kernels[0].total_ms, p.kernels[0].median_us), (3, 6.0, 2000.0));
        assert_eq!(p.kernels[2].median_us, 2250.0);
        assert_eq!((p.launches(), p.total_ms()), (6, 16.5));
    }
}
