//! `joyrt serve`: an OpenAI-compatible image-edit server. The model is loaded once into a resident
//! session ([`joyrt_core::pipeline::Session`]) owned by one edit thread ([`worker`]); the HTTP
//! side (axum on tokio, [`routes`]) checks each request, queues it (bounded) and waits for its
//! images. SIGTERM or ctrl-c: readiness fails at once; after `--drain-seconds` of serving as
//! before (time for a load balancer to stop sending), the server stops accepting, refuses the
//! queued edits that have not started (503), finishes the running one, and exits 0.

mod api_error;
mod edit_form;
mod image_store;
mod metrics;
mod page;
mod routes;
mod stream;
mod worker;

use crate::backends::BackendChoice;
use anyhow::{bail, Context, Result};
use clap::Args;
use joyrt_core::model_folder::ModelFolder;
use joyrt_core::DType;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use worker::Readiness;

#[derive(Args)]
pub struct ServeArgs {
    /// Model folder in the published diffusers layout, or a Hugging Face repository id
    /// (`ORG/NAME[@REVISION]`), downloaded into the Hugging Face cache when missing. Without it the built-in tiny
    /// random-weight model is served (it proves the server; it does not edit well).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to listen on. Anything but a loopback address exposes the server to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on; 0 takes a free one (the address is printed on stderr).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Weight and activation dtype: bf16, f16 or f32.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Require `Authorization: Bearer KEY` on the /v1 routes (/health and /metrics stay open).
    /// From the environment, the key stays out of the process list.
    #[arg(long, value_name = "KEY", env = "JOYRT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Edit requests that may wait while one runs; past it a request gets 429 with Retry-After.
    #[arg(long, default_value_t = 8)]
    pub max_queue: usize,
    /// Largest request body, in MiB; a larger upload gets 413.
    #[arg(long, default_value_t = 64)]
    pub max_upload_mib: usize,
    /// Denoising steps of a request that does not give `num_inference_steps`.
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    /// Guidance scale of a request that does not give `guidance_scale`.
    #[arg(long, default_value_t = 4.0)]
    pub guidance: f32,
    /// Base size of the buckets of `size=auto` (as `joyrt edit --base-size`).
    #[arg(long)]
    pub base_size: Option<usize>,
    /// The model id listed by /v1/models and accepted in requests (default: the folder's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Memory the server may use, in GB (default: what the system reports available). All three
    /// networks stay loaded, so they must fit at once.
    #[arg(long)]
    pub max_memory_gb: Option<f64>,
    /// Seconds a `response_format=url` image stays downloadable.
    #[arg(long, default_value_t = 3600)]
    pub url_ttl_seconds: u64,
    /// Memory for those images, in MiB; past it the oldest go first.
    #[arg(long, default_value_t = 512)]
    pub url_store_mib: usize,
    /// The scheme and host image links start with, as clients reach this server (behind a load
    /// balancer or an ingress: `https://images.example.com`). Default: the request's Host.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// After SIGTERM, seconds to keep serving with readiness failed before the server stops
    /// accepting: a load balancer's time to take this replica out of rotation.
    #[arg(long, default_value_t = 0)]
    pub drain_seconds: u64,
}

pub fn run(a: ServeArgs) -> Result<()> {
    let dtype = DType::parse(&a.dtype)
        .with_context(|| format!("unknown dtype {:?}: use bf16, f16 or f32", a.dtype))?;
    let defaults = edit_form::Defaults { steps: a.steps, guidance: a.guidance };
    joyrt_core::limits::in_range("--steps", a.steps, joyrt_core::limits::STEPS)
        .map_err(anyhow::Error::msg)?;
    joyrt_core::limits::in_range("--guidance", a.guidance, joyrt_core::limits::GUIDANCE)
        .map_err(anyhow::Error::msg)?;
    if a.max_upload_mib == 0 || a.max_upload_mib > 4096 {
        bail!("--max-upload-mib must be from 1 to 4096, got {}", a.max_upload_mib);
    }
    if a.url_ttl_seconds == 0 || a.url_ttl_seconds > 7 * 24 * 3600 {
        bail!("--url-ttl-seconds must be from 1 to 604800 (a week), got {}", a.url_ttl_seconds);
    }
    if a.url_store_mib == 0 || a.url_store_mib > 65536 {
        bail!("--url-store-mib must be from 1 to 65536, got {}", a.url_store_mib);
    }
    if a.drain_seconds > 3600 {
        bail!("--drain-seconds must be at most 3600, got {}", a.drain_seconds);
    }
    if let Some(u) = &a.public_url {
        let ok = (u.starts_with("http://") || u.starts_with("https://"))
            && !u.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
        if !ok {
            bail!("--public-url must be an http:// or https:// address without query or fragment, got {u:?}");
        }
    }
    let (model, model_id) = match &a.model {
        Some(arg) => {
            let folder = ModelFolder::open(&crate::hf_cache::resolve(arg)?)?;
            (folder, crate::hf_cache::model_id(arg).unwrap_or_else(|| "joyrt".into()))
        }
        None => (crate::builtin::model_folder()?, "joyrt-builtin-tiny".to_string()),
    };
    let base_size = match a.base_size {
        Some(b) => b,
        None => crate::base_size::folder_default(&model.root)?.unwrap_or(1024),
    };
    let buckets = crate::base_size::buckets_for(base_size)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let metrics = Arc::new(metrics::Metrics::default());
    let draining = Arc::new(AtomicBool::new(false));
    let stopping = Arc::new(AtomicBool::new(false));
    let cfg = worker::WorkerConfig {
        backend: a.backend,
        model,
        dtype,
        max_memory_gb: a.max_memory_gb,
        max_queue: a.max_queue,
    };
    let (queue, ready, edit_thread) =
        worker::start(cfg, metrics.clone(), draining.clone()).context("cannot start the edit thread")?;
    let app = Arc::new(routes::App {
        queue,
        ready: ready.clone(),
        metrics: metrics.clone(),
        model_id: a.served_model_name.unwrap_or(model_id),
        api_key: a.api_key,
        defaults,
        dtype,
        buckets,
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        max_body_bytes: a.max_upload_mib << 20,
        images: image_store::ImageStore::new(
            std::time::Duration::from_secs(a.url_ttl_seconds),
            a.url_store_mib << 20,
        ),
        public_url: a.public_url,
        stopping: stopping.clone(),
    });

    let served = runtime.block_on(async move {
        let addr = SocketAddr::new(a.host, a.port);
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        eprintln!("joyrt serve: listening on http://{local}");
        let router = routes::router(app);
        // Ends the server on a signal, or when the edit thread ends on its own (the model could
        // not be loaded).
        let signalled = Arc::new(AtomicBool::new(false));
        let stop = {
            let (mut ready, draining, signalled) = (ready.clone(), draining.clone(), signalled.clone());
            let drain = std::time::Duration::from_secs(a.drain_seconds);
            async move {
                let failed = async {
                    let _ = ready.wait_for(|r| matches!(r, Readiness::Failed(_))).await;
                };
                let by_signal = tokio::select! {
                    _ = shutdown_signal() => true,
                    _ = failed => false,
                };
                if by_signal {
                    signalled.store(true, Ordering::SeqCst);
                    stopping.store(true, Ordering::SeqCst);
                    metrics.set_ready(false);
                    if !drain.is_zero() {
                        eprintln!("joyrt serve: signalled: not ready; serving {} s more", drain.as_secs());
                        tokio::time::sleep(drain).await;
                    }
                    eprintln!("joyrt serve: shutting down: finishing the running edit");
                }
                draining.store(true, Ordering::SeqCst);
            }
        };
        axum::serve(listener, router).with_graceful_shutdown(stop).await.context("the server failed")?;
        if signalled.load(Ordering::SeqCst) {
            return Ok(());
        }
        let why = match &*ready.borrow() {
            Readiness::Failed(e) => format!("the model could not be loaded: {e}"),
            _ => "the edit thread stopped unexpectedly".to_string(),
        };
        bail!(why)
    });
    // The router (and with it the queue) is gone: the edit thread ends after its current edit.
    let _ = edit_thread.join();
    served
}

/// ctrl-c, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
