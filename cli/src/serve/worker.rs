//! The edit thread: it opens the backend, loads the resident session, then runs the queued edits
//! one at a time. The queue between the HTTP handlers and this thread is bounded: a request that
//! finds it full is refused at once (429) instead of waiting without limit.

use super::metrics::Metrics;
use crate::backends::{AnyBackend, BackendChoice};
use joyrt_core::image::RgbImage;
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::pipeline::{EditParams, Progress, Session};
use joyrt_core::{Backend, DType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};

/// One request's edit: `n` images from seeds `params.seed`, `params.seed + 1`, …
pub struct Job {
    pub image: RgbImage,
    pub params: EditParams,
    pub n: usize,
    /// Set when the client went away: the edit stops at its next step.
    pub cancel: Arc<AtomicBool>,
    pub reply: oneshot::Sender<JobResult>,
    /// Where each finished denoising step is reported (`stream=true` requests).
    pub progress: Option<mpsc::UnboundedSender<StepDone>>,
}

/// Denoising step `step` (1-based) of `total` of image `image` (0-based) finished.
#[derive(Clone, Copy, Debug)]
pub struct StepDone {
    pub image: usize,
    pub step: usize,
    pub total: usize,
}

pub type JobResult = Result<Vec<RgbImage>, JobError>;

#[derive(Debug)]
pub enum JobError {
    /// The edit failed or was refused by the pipeline.
    Edit(joyrt_core::Error),
    /// The server began shutting down before this job started.
    ShuttingDown,
}

/// Where the model is: `Loading` until the session is loaded, then `Ready` for good, or `Failed`.
#[derive(Clone, Debug, PartialEq)]
pub enum Readiness {
    Loading,
    Ready,
    Failed(String),
}

/// Why a job was not queued.
pub enum Refused {
    Full,
    Stopped,
}

/// The handlers' side of the queue.
#[derive(Clone)]
pub struct Queue {
    jobs: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// Queues `job`, or refuses it at once when `--max-queue` jobs are already waiting.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        // Counted before the send: the worker may take the job before this thread runs again.
        self.metrics.queued(1);
        self.jobs.try_send(job).map_err(|e| {
            self.metrics.queued(-1);
            match e {
                TrySendError::Full(_) => Refused::Full,
                TrySendError::Disconnected(_) => Refused::Stopped,
            }
        })
    }
}

/// What the edit thread needs to start.
pub struct WorkerConfig {
    pub backend: BackendChoice,
    pub model: ModelFolder,
    pub dtype: DType,
    pub max_memory_gb: Option<f64>,
    pub max_queue: usize,
}

/// Starts the edit thread. It reports its readiness on the returned watch and ends when every
/// [`Queue`] is dropped; `draining` set makes it refuse the jobs it has not started.
pub fn start(
    cfg: WorkerConfig,
    metrics: Arc<Metrics>,
    draining: Arc<AtomicBool>,
) -> std::io::Result<(Queue, watch::Receiver<Readiness>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(cfg.max_queue);
    let (ready_tx, ready_rx) = watch::channel(Readiness::Loading);
    let m = metrics.clone();
    let handle = std::thread::Builder::new().name("joyrt-edit".into()).spawn(move || {
        if let Err(e) = run(cfg, &m, &draining, &ready_tx, rx) {
            let _ = ready_tx.send(Readiness::Failed(format!("{e:#}")));
        }
    })?;
    Ok((Queue { jobs: tx, metrics }, ready_rx, handle))
}

fn run(
    cfg: WorkerConfig,
    metrics: &Metrics,
    draining: &AtomicBool,
    ready: &watch::Sender<Readiness>,
    jobs: Receiver<Job>,
) -> anyhow::Result<()> {
    let backend = AnyBackend::open(cfg.backend)?;
    crate::backends::check_memory(&backend, &cfg.model, cfg.dtype, cfg.max_memory_gb, true)?;
    eprintln!("joyrt serve: loading the model on {} in {}", backend.name(), cfg.dtype);
    let t0 = Instant::now();
    crate::with_backend!(&backend, b => {
        // A signal during the load stops it between networks.
        let session = Session::load(b, cfg.model, cfg.dtype, &mut |_| !draining.load(Ordering::SeqCst))?;
        eprintln!("joyrt serve: model loaded in {:.2} s", t0.elapsed().as_secs_f64());
        let _ = ready.send(Readiness::Ready);
        metrics.set_ready(true);
        serve_jobs(&session, metrics, draining, jobs);
    });
    Ok(())
}

/// Runs the jobs in arrival order until the queue closes.
fn serve_jobs<B: Backend>(
    session: &Session<B>,
    metrics: &Metrics,
    draining: &AtomicBool,
    jobs: Receiver<Job>,
) {
    while let Ok(job) = jobs.recv() {
        metrics.queued(-1);
        if draining.load(Ordering::SeqCst) {
            let _ = job.reply.send(Err(JobError::ShuttingDown));
            continue;
        }
        if job.cancel.load(Ordering::SeqCst) || job.reply.is_closed() {
            metrics.cancelled();
            continue;
        }
        metrics.running(1);
        let result = run_job(session, &job, metrics);
        metrics.running(-1);
        if matches!(result, Err(JobError::Edit(joyrt_core::Error::Cancelled))) {
            metrics.cancelled();
        }
        let _ = job.reply.send(result);
    }
}

fn run_job<B: Backend>(session: &Session<B>, job: &Job, metrics: &Metrics) -> JobResult {
    let mut images = Vec::with_capacity(job.n);
    for i in 0..job.n {
        let params = EditParams { seed: job.params.seed.wrapping_add(i as u64), ..job.params.clone() };
        // A panic in one edit is that request's error; the session's networks are read-only
        // during an edit, so the next request finds them as they were.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            session.edit(&job.image, &params, &mut |p| {
                if let Progress::Step { index, total, elapsed } = p {
                    metrics.step(elapsed);
                    if let Some(tx) = &job.progress {
                        let _ = tx.send(StepDone { image: i, step: index + 1, total });
                    }
                }
                !job.cancel.load(Ordering::SeqCst)
            })
        }))
        .unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("unknown");
            Err(joyrt_core::Error::backend(
                "joyrt serve",
                format!("the edit failed with an internal error: {what}"),
            ))
        });
        images.push(out.map_err(JobError::Edit)?.image);
    }
    Ok(images)
}
