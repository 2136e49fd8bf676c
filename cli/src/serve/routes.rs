//! The HTTP API: the router, its handlers, and the middleware for the API key and the metrics.

use super::api_error::ApiError;
use super::edit_form::{Defaults, EditForm, ResponseFormat};
use super::image_store::ImageStore;
use super::metrics::Metrics;
use super::worker::{Job, JobError, JobResult, Queue, Readiness, Refused};
use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use joyrt_core::image::{Buckets, RgbImage};
use joyrt_core::pipeline::EditParams;
use joyrt_core::DType;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

/// What every handler shares.
pub struct App {
    pub queue: Queue,
    pub ready: watch::Receiver<Readiness>,
    pub metrics: Arc<Metrics>,
    /// The id `/v1/models` lists and requests may name.
    pub model_id: String,
    pub api_key: Option<String>,
    pub defaults: Defaults,
    pub dtype: DType,
    /// The buckets of `size=auto`.
    pub buckets: Buckets,
    /// Seconds since the epoch when the server started (the model's `created`).
    pub started: u64,
    pub max_body_bytes: usize,
    /// The images of `response_format=url` answers.
    pub images: ImageStore,
    /// The scheme and host the image links start with (`--public-url`); by default the request's
    /// own `Host`.
    pub public_url: Option<String>,
    /// Set when a signal arrives: readiness fails from then on, so a load balancer sends no more
    /// requests while the running ones finish.
    pub stopping: Arc<AtomicBool>,
}

pub const EDITS: &str = "/v1/images/edits";
pub const IMAGE_FILES: &str = "/v1/images/files/{name}";
/// Where a stored image is served, without its name.
const IMAGE_FILES_PREFIX: &str = "/v1/images/files/";
/// An oversized upload is read (and dropped) up to this size and for this long before the 413
/// goes out: a server that closes with the upload unread resets the connection, and the client
/// sees a broken pipe instead of the answer.
const LINGER_MAX_BYTES: u64 = 1 << 30;
const LINGER_TIME: Duration = Duration::from_secs(10);

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route(EDITS, post(edits))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_key));
    Router::new()
        .merge(api)
        .merge(super::page::routes())
        .route(IMAGE_FILES, get(image_file))
        .route("/health", get(ready))
        .route("/health/ready", get(ready))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(app.max_body_bytes))
        .layer(middleware::from_fn_with_state(app.clone(), refuse_oversized))
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
}

/// Counts every answer by route and status, and times the edits.
async fn count(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = match req.extensions().get::<MatchedPath>().map(|p| p.as_str()) {
        Some(EDITS) => EDITS,
        Some("/v1/models") => "/v1/models",
        Some(IMAGE_FILES) => IMAGE_FILES,
        Some("/health") => "/health",
        Some("/health/ready") => "/health/ready",
        Some("/health/live") => "/health/live",
        Some("/metrics") => "/metrics",
        Some("/") => "/",
        _ => "other",
    };
    let t0 = Instant::now();
    let r = next.run(req).await;
    // A stream's answer starts before its edit runs: only whole answers are timed.
    let streamed =
        r.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let took = (route == EDITS && !streamed).then(|| t0.elapsed());
    app.metrics.request(route, r.status().as_u16(), took);
    r
}

/// With `--api-key`, the `/v1` routes need `Authorization: Bearer KEY`.
async fn require_key(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(key) = &app.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| same_secret(g.trim().as_bytes(), key.as_bytes()));
        if !ok {
            let why = if given.is_none() {
                "no API key given (Authorization: Bearer KEY)"
            } else {
                "incorrect API key"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, why).code("invalid_api_key").into_response();
        }
    }
    next.run(req).await
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route {} {}", req.method(), req.uri().path()))
        .code("not_found")
}

/// A body declared larger than the limit gets its 413 here, after the upload was read and dropped
/// (within bounds), so that the client can read the answer.
async fn refuse_oversized(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n > app.max_body_bytes as u64);
    let Some(declared) = declared else {
        return next.run(req).await;
    };
    if declared <= LINGER_MAX_BYTES {
        use futures_util::StreamExt;
        let mut body = req.into_body().into_data_stream();
        let _ =
            tokio::time::timeout(LINGER_TIME, async { while let Some(Ok(_)) = body.next().await {} }).await;
    }
    let mut r = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is {declared} bytes; this server takes at most {} (--max-upload-mib)",
            app.max_body_bytes
        ),
    )
    .code("request_too_large")
    .into_response();
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Liveness: the process answers. It stays alive while the model loads, however long that takes.
async fn live() -> Response {
    Json(serde_json::json!({"status": "alive"})).into_response()
}

/// Readiness: 200 only while the model is loaded and no signal has arrived.
async fn ready(State(app): State<Arc<App>>) -> Response {
    let r = app.ready.borrow().clone();
    let (status, body) = match r {
        _ if app.stopping.load(Ordering::SeqCst) => {
            (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": "draining"}))
        }
        Readiness::Ready => (StatusCode::OK, serde_json::json!({"status": "ready"})),
        Readiness::Loading => (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": "loading"})),
        Readiness::Failed(e) => {
            (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": "failed", "error": e}))
        }
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}

async fn models(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "object": "list",
        "data": [{"id": app.model_id, "object": "model", "created": app.started, "owned_by": "joyrt"}],
    }))
}

/// Sets the job's cancel flag when dropped armed: the handler's future is dropped when the
/// client goes away, and the edit then stops at its next step.
pub struct CancelOnDrop(Option<Arc<AtomicBool>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.store(true, Ordering::SeqCst);
        }
    }
}

/// A stored image of a `response_format=url` answer.
async fn image_file(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    match app.images.get(&name) {
        Some((png, left)) => (
            [
                (header::CONTENT_TYPE, "image/png".to_string()),
                (header::CACHE_CONTROL, format!("private, max-age={}", left.as_secs())),
            ],
            png,
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no image {name:?}: images are kept for {} s after their edit",
                app.images.ttl().as_secs()
            ),
        )
        .code("not_found")
        .into_response(),
    }
}

/// Where this answer's image links point: `--public-url`, or the host the client asked for.
fn link_base(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(u) = &app.public_url {
        return Ok(u.trim_end_matches('/').to_string());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    match host {
        Some(h) => Ok(format!("http://{h}")),
        None => Err(ApiError::field(
            "response_format",
            "response_format `url` needs a valid Host header (or the server's --public-url)",
        )),
    }
}

async fn edits(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let multipart = multipart.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be multipart/form-data: {}", e.body_text()),
        )
    })?;
    let fields = read_fields(multipart).await?;
    let form = EditForm::parse(fields, &app.defaults)?;
    let delivery = Delivery {
        app: app.clone(),
        format: form.response_format,
        base: match form.response_format {
            ResponseFormat::Url => link_base(&app, &headers)?,
            ResponseFormat::B64Json => String::new(),
        },
    };
    if let Some(m) = form.model.as_deref().filter(|m| *m != app.model_id) {
        return Err(ApiError {
            param: Some("model".into()),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                format!("the model {m:?} is not served here; this server serves {:?}", app.model_id),
            )
            .code("model_not_found")
        });
    }
    match &*app.ready.borrow() {
        Readiness::Ready => {}
        Readiness::Loading => {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model is still loading")
                .code("loading")
                .retry_after(5))
        }
        Readiness::Failed(e) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the model failed to load: {e}"),
            ))
        }
    }
    let bytes = form.image.clone();
    let image = tokio::task::spawn_blocking(move || RgbImage::decode(&bytes, "the `image` file"))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding the image failed: {e}"))
        })?
        .map_err(|e| ApiError::field("image", e.to_string()))?;
    let buckets = match form.size {
        Some(hw) => Buckets(vec![hw]),
        None => app.buckets.clone(),
    };
    let params = EditParams {
        prompt: form.prompt,
        negative_prompt: form.negative_prompt,
        steps: form.steps,
        guidance: form.guidance,
        seed: form.seed.unwrap_or_else(fresh_seed),
        dtype: app.dtype,
        buckets: Some(buckets),
        ..Default::default()
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let (reply, answer) = oneshot::channel();
    let (progress, steps) = match form.stream {
        true => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    let job = Job { image, params, n: form.n, cancel: cancel.clone(), reply, progress };
    app.queue.submit(job).map_err(|r| match r {
        Refused::Full => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "the edit queue is full; retry later")
            .code("queue_full")
            .retry_after(app.metrics.retry_after_secs()),
        Refused::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"),
    })?;
    let guard = CancelOnDrop(Some(cancel));
    if let Some(steps) = steps {
        return Ok(super::stream::events(guard, steps, answer, delivery).into_response());
    }
    let images = finish(guard, answer).await?;
    let data = delivery.deliver(images).await?;
    let data: Vec<_> = data
        .into_iter()
        .map(|d| serde_json::Value::Object([(d.field.to_string(), d.value.into())].into_iter().collect()))
        .collect();
    Ok(Json(serde_json::json!({ "created": unix_now(), "data": data })).into_response())
}

/// How one request's images go back to its client.
pub struct Delivery {
    app: Arc<App>,
    format: ResponseFormat,
    /// The links' scheme and host (`response_format=url` only).
    base: String,
}

/// One delivered image: `field` is `b64_json` or `url`.
pub struct Delivered {
    pub field: &'static str,
    pub value: String,
    /// `WIDTHxHEIGHT`.
    pub size: String,
}

impl Delivery {
    /// Each image as PNG, in the answer as base64 or stored behind a link; encoded off the async
    /// threads.
    pub async fn deliver(self, images: Vec<RgbImage>) -> Result<Vec<Delivered>, ApiError> {
        tokio::task::spawn_blocking(move || images.iter().map(|i| self.one(i)).collect()).await.map_err(
            |e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the result failed: {e}")),
        )?
    }

    fn one(&self, img: &RgbImage) -> Result<Delivered, ApiError> {
        let size = format!("{}x{}", img.width, img.height);
        let png = png_bytes(img)?;
        Ok(match self.format {
            ResponseFormat::B64Json => Delivered {
                field: "b64_json",
                value: base64::engine::general_purpose::STANDARD.encode(png),
                size,
            },
            ResponseFormat::Url => {
                let name = self
                    .app
                    .images
                    .put(png)
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
                Delivered { field: "url", value: format!("{}{IMAGE_FILES_PREFIX}{name}", self.base), size }
            }
        })
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The job's images once it is done; `guard` is disarmed then (a client that goes away before
/// drops it armed).
pub async fn finish(
    mut guard: CancelOnDrop,
    answer: oneshot::Receiver<JobResult>,
) -> Result<Vec<RgbImage>, ApiError> {
    let result = answer.await;
    guard.0 = None;
    match result {
        Ok(Ok(images)) => Ok(images),
        Ok(Err(JobError::Edit(e))) => Err(edit_error(e)),
        Ok(Err(JobError::ShuttingDown)) | Err(_) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down").retry_after(1))
        }
    }
}

/// Every field of the form, in order. An upload past the body limit is a 413.
async fn read_fields(mut multipart: Multipart) -> Result<Vec<(String, Bytes)>, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        let e = ApiError::new(status, format!("cannot read the multipart body: {}", e.body_text()));
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            e.code("request_too_large")
        } else {
            e
        }
    };
    let mut fields = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        let value = field.bytes().await.map_err(bad)?;
        fields.push((name, value));
    }
    Ok(fields)
}

/// A pipeline error as an API error: the request's fault (400) or the server's (500).
fn edit_error(e: joyrt_core::Error) -> ApiError {
    use joyrt_core::Error as E;
    match e {
        E::Input(m) => {
            let param = ["negative prompt", "prompt", "bucket"]
                .into_iter()
                .find(|p| m.contains(&format!("the {p}")) || m.starts_with(p));
            let param = param.map(|p| match p {
                "negative prompt" => "negative_prompt",
                "bucket" => "size",
                p => p,
            });
            ApiError { param: param.map(str::to_string), ..ApiError::new(StatusCode::BAD_REQUEST, m) }
        }
        E::Cancelled => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the edit was cancelled"),
        e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the edit failed: {e}")),
    }
}

fn png_bytes(img: &RgbImage) -> Result<Vec<u8>, ApiError> {
    let fail = |what: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, what);
    let buf = image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data.clone())
        .ok_or_else(|| fail("the result's buffer does not match its size".into()))?;
    let mut png = Vec::new();
    buf.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| fail(format!("encoding the PNG failed: {e}")))?;
    Ok(png)
}

/// A seed for a request that gives none: different for every request and every server run.
fn fresh_seed() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let x = now ^ COUNT.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64's finaliser: nearby inputs give unrelated seeds.
    let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert_ne!(fresh_seed(), fresh_seed());
    }

    #[test]
    fn pipeline_errors_name_the_field() {
        let e = edit_error(joyrt_core::Error::Input("the prompt is too long: 5000 text tokens".into()));
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("prompt")));
        let e = edit_error(joyrt_core::Error::Input("the negative prompt is too long".into()));
        assert_eq!(e.param.as_deref(), Some("negative_prompt"));
        let e = edit_error(joyrt_core::Error::Input(
            "bucket 64x32 is outside the processor's pixel range".into(),
        ));
        assert_eq!(e.param.as_deref(), Some("size"));
        let e = edit_error(joyrt_core::Error::NonFinite { what: "step 1".into() });
        assert_eq!(e.status.as_u16(), 500);
    }
}
