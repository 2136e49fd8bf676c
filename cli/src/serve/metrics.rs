//! The server's counters and their Prometheus text exposition (`GET /metrics`, format 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms: from a tiny CPU model's step to a full-size
/// edit on a slow device.
const BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (c, &b) in self.counts.iter_mut().zip(&BUCKETS) {
            if secs <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (c, b) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

#[derive(Default)]
pub struct Metrics {
    ready: AtomicBool,
    queued: AtomicI64,
    running: AtomicI64,
    cancelled: AtomicU64,
    /// Requests answered, by (route, status code).
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    edit_latency: Mutex<Histogram>,
    step_latency: Mutex<Histogram>,
    /// Mean seconds of an edit request, for `Retry-After` (0 before the first).
    mean_edit_ms: AtomicU64,
}

impl Metrics {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Adds `d` to the number of jobs waiting in the queue.
    pub fn queued(&self, d: i64) {
        self.queued.fetch_add(d, Ordering::SeqCst);
    }

    pub fn queue_depth(&self) -> u64 {
        self.queued.load(Ordering::SeqCst).max(0) as u64
    }

    pub fn running(&self, d: i64) {
        self.running.fetch_add(d, Ordering::SeqCst);
    }

    pub fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::SeqCst);
    }

    pub fn step(&self, took: Duration) {
        lock(&self.step_latency).observe(took.as_secs_f64());
    }

    /// One answered request; `edit_took` is set for the edit route.
    pub fn request(&self, route: &'static str, status: u16, edit_took: Option<Duration>) {
        *lock(&self.requests).entry((route, status)).or_default() += 1;
        if let Some(d) = edit_took.filter(|_| status == 200) {
            lock(&self.edit_latency).observe(d.as_secs_f64());
            // An exponential mean: recent edits count most.
            let ms = d.as_millis().min(u64::MAX as u128) as u64;
            let old = self.mean_edit_ms.load(Ordering::Relaxed);
            let new = if old == 0 { ms } else { (old * 7 + ms) / 8 };
            self.mean_edit_ms.store(new, Ordering::Relaxed);
        }
    }

    /// Seconds a refused client should wait: the time to work through the queue ahead of it.
    pub fn retry_after_secs(&self) -> u64 {
        let per_edit = self.mean_edit_ms.load(Ordering::Relaxed).max(1000);
        ((self.queue_depth() + 1) * per_edit).div_ceil(1000)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "joyrt_model_ready",
            "1 once the model is loaded",
            self.ready.load(Ordering::SeqCst) as i64,
        );
        gauge(
            &mut out,
            "joyrt_queue_depth",
            "Edit requests waiting for the device",
            self.queue_depth() as i64,
        );
        gauge(&mut out, "joyrt_edits_running", "Edit requests running", self.running.load(Ordering::SeqCst));
        let _ = writeln!(
            out,
            "# HELP joyrt_edits_cancelled_total Edits stopped because the client went away\n\
             # TYPE joyrt_edits_cancelled_total counter\njoyrt_edits_cancelled_total {}",
            self.cancelled.load(Ordering::SeqCst)
        );
        let _ = writeln!(
            out,
            "# HELP joyrt_requests_total HTTP requests answered, by route and status\n\
             # TYPE joyrt_requests_total counter"
        );
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(out, "joyrt_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        lock(&self.edit_latency).write(
            &mut out,
            "joyrt_edit_request_seconds",
            "Latency of successful edit requests, queueing included",
        );
        lock(&self.step_latency).write(
            &mut out,
            "joyrt_denoise_step_seconds",
            "Latency of one denoising step",
        );
        out
    }
}

/// The lock even if a thread panicked holding it: counters stay usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_series_and_cumulative_buckets() {
        let m = Metrics::default();
        m.queued(2);
        m.request("/v1/images/edits", 200, Some(Duration::from_millis(300)));
        m.request("/v1/images/edits", 429, Some(Duration::from_millis(1)));
        m.step(Duration::from_millis(20));
        let t = m.render();
        for line in [
            "joyrt_model_ready 0",
            "joyrt_queue_depth 2",
            "joyrt_requests_total{route=\"/v1/images/edits\",status=\"200\"} 1",
            "joyrt_requests_total{route=\"/v1/images/edits\",status=\"429\"} 1",
            "joyrt_edit_request_seconds_bucket{le=\"0.25\"} 0",
            "joyrt_edit_request_seconds_bucket{le=\"0.5\"} 1",
            "joyrt_edit_request_seconds_bucket{le=\"+Inf\"} 1",
            "joyrt_edit_request_seconds_count 1",
            "joyrt_denoise_step_seconds_bucket{le=\"0.025\"} 1",
        ] {
            assert!(t.lines().any(|l| l == line), "{line:?} missing in\n{t}");
        }
        // Three queued or running ahead at 1 s minimum each.
        assert_eq!(m.retry_after_secs(), 3);
    }
}
