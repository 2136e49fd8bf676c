//! `stream=true` edits: server-sent events as OpenAI's streamed image edits send them, with
//! joyrt's progress in between. Each finished denoising step is a `joyrt.progress` event
//! (`{"type", "image", "step", "total"}`); each image an `image_edit.completed` event
//! (`{"type", "b64_json", "created_at", "size", "output_format"}`); a failure an `error` event
//! with OpenAI's error body. A client that closes the stream cancels the edit.

use super::api_error::ApiError;
use super::routes::{encode_all, finish, unix_now, CancelOnDrop};
use super::worker::{JobResult, StepDone};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{unfold, Stream};
use std::convert::Infallible;
use tokio::sync::{mpsc, oneshot};

/// The event stream of one queued job: `steps` reports its progress, `answer` its images.
pub fn events(
    guard: CancelOnDrop,
    steps: mpsc::UnboundedReceiver<StepDone>,
    answer: oneshot::Receiver<JobResult>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Few events wait: the forwarding task keeps pace with the client or notices it gone.
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(forward(guard, steps, answer, tx));
    let stream = unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    // Comments while a job waits in the queue: a closed connection shows on the next one.
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Sends the job's events to `tx`. When the client goes away `tx` closes, this returns, and
/// `guard` is dropped armed: the edit stops at its next step (or is skipped if still queued).
async fn forward(
    guard: CancelOnDrop,
    mut steps: mpsc::UnboundedReceiver<StepDone>,
    answer: oneshot::Receiver<JobResult>,
    tx: mpsc::Sender<Event>,
) {
    // The worker drops its sender with the job: after the last step, or when the job is refused.
    loop {
        tokio::select! {
            s = steps.recv() => match s {
                Some(s) => {
                    if tx.send(progress_event(s)).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            _ = tx.closed() => return,
        }
    }
    let events = match finish(guard, answer).await {
        Ok(images) => match encode_all(images).await {
            Ok(pngs) => pngs.into_iter().map(|(b64, size)| completed_event(b64, size)).collect(),
            Err(e) => vec![error_event(e)],
        },
        Err(e) => vec![error_event(e)],
    };
    for e in events {
        if tx.send(e).await.is_err() {
            return;
        }
    }
}

fn progress_event(s: StepDone) -> Event {
    let data =
        serde_json::json!({"type": "joyrt.progress", "image": s.image, "step": s.step, "total": s.total});
    Event::default().event("joyrt.progress").data(data.to_string())
}

fn completed_event(b64: String, size: String) -> Event {
    let data = serde_json::json!({
        "type": "image_edit.completed",
        "b64_json": b64,
        "created_at": unix_now(),
        "size": size,
        "output_format": "png",
    });
    Event::default().event("image_edit.completed").data(data.to_string())
}

fn error_event(e: ApiError) -> Event {
    let data = serde_json::json!({
        "type": "error",
        "error": {"message": &e.message, "type": e.kind(), "param": &e.param, "code": e.code},
    });
    Event::default().event("error").data(data.to_string())
}
