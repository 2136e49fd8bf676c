//! `stream=true` edits: server-sent events as OpenAI's streamed image edits send them, with
//! joyrt's progress in between. Each finished denoising step is a `joyrt.progress` event
//! (`{"type", "image", "step", "total"}`); each image an `image_edit.completed` event
//! (`{"type", "b64_json", "created_at", "size", "output_format"}`, with `url` in place of
//! `b64_json` under `response_format=url`); a failure an `error` event
//! with OpenAI's error body. A client that closes the stream cancels the edit.

use super::api_error::ApiError;
use super::routes::{finish, unix_now, CancelOnDrop, Delivered, Delivery};
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
    delivery: Delivery,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Few events wait: the forwarding task keeps pace with the client or notices it gone.
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(forward(guard, steps, answer, delivery, tx));
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
    delivery: Delivery,
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
        Ok(images) => match delivery.deliver(images).await {
            Ok(images) => images.into_iter().map(completed_event).collect(),
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

fn completed_event(d: Delivered) -> Event {
    let mut data = serde_json::json!({
        "type": "image_edit.completed",
        "created_at": unix_now(),
        "size": d.size,
        "output_format": "png",
    });
    data[d.field] = d.value.into();
    Event::default().event("image_edit.completed").data(data.to_string())
}

fn error_event(e: ApiError) -> Event {
    let data = serde_json::json!({
        "type": "error",
        "error": {"message": &e.message, "type": e.kind(), "param": &e.param, "code": e.code},
    });
    Event::default().event("error").data(data.to_string())
}
