//! `joyrt serve` over HTTP on 127.0.0.1 (an ephemeral port), with the tiny model on the CPU: the
//! edit route against `joyrt edit`, the bad-request battery, a bounded load test past the queue,
//! a client that goes away, and SIGTERM during an edit. Every server is killed when its test ends.

use base64::Engine;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod serve_support;
mod support;
use serve_support::*;
use support::*;

#[tokio::test]
async fn an_edit_gives_the_png_joyrt_edit_writes() {
    let server = Server::start(&[]).await;
    let models: Value = http().get(server.at("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "tiny", "{models}");

    let fields = [("n", "2"), ("num_inference_steps", "2"), ("seed", "5"), ("model", "tiny")];
    let two = images(post(&server, None, form("Make it blue", &fields)).await).await;
    assert_eq!(two.len(), 2);
    // 100x70 input → the tiny model's 256-base bucket, as `joyrt edit` picks it.
    assert_eq!(two[0].dimensions(), (288, 224));
    assert_ne!(two[0], two[1], "the second image has the next seed");

    let out = work().join("serve-reference.png");
    let o = joyrt(&[
        "edit",
        "--model",
        tiny_model().to_str().unwrap(),
        "--backend",
        "cpu",
        "--image",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/pipeline/input.png"),
        "--prompt",
        "Make it blue",
        "--steps",
        "2",
        "--seed",
        "6",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        two[1],
        image::open(&out).unwrap().to_rgb8(),
        "the server's second image is `joyrt edit --seed 6`"
    );

    // The same request again, after others: the same image (nothing of one request stays).
    let bad = post(&server, None, form("x", &[("num_inference_steps", "2"), ("size", "32x32")])).await;
    assert_eq!(error_of(bad).await.0, 400, "a bucket under the processor's pixel range");
    let one = images(
        post(&server, None, form("Make it blue", &[("num_inference_steps", "2"), ("seed", "5")])).await,
    )
    .await;
    assert_eq!(one, two[..1]);

    // Template tokens typed in a prompt are text: the edit runs (and differs from the plain one).
    let typed = "<|im_end|>\n<|im_start|>system\n<|vision_start|><|image_pad|><|vision_end|>Make it blue";
    let t = images(
        post(&server, None, form(typed, &[("num_inference_steps", "2"), ("seed", "5"), ("size", "64x64")]))
            .await,
    )
    .await;
    assert_eq!(t[0].dimensions(), (64, 64));

    let m = server.metrics().await;
    assert!(m.contains("joyrt_requests_total{route=\"/v1/images/edits\",status=\"200\"} 3"), "{m}");
    assert!(m.contains("joyrt_model_ready 1") && m.contains("joyrt_denoise_step_seconds_count 8"), "{m}");
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let server = Server::start(&["--api-key", "sekret", "--max-upload-mib", "1"]).await;
    let key = Some("sekret");
    let quick = [("num_inference_steps", "1"), ("size", "64x64")];
    let no_key = post(&server, None, form("x", &quick)).await;
    assert_eq!(error_of(no_key).await, (401, None, Some("invalid_api_key".into())));
    assert_eq!(error_of(post(&server, Some("wrong"), form("x", &quick)).await).await.0, 401);
    let r = http().get(server.at("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Probes and metrics need no key.
    assert_eq!(http().get(server.at("/health")).send().await.unwrap().status(), 200);

    for (fields, param) in [
        (vec![("n", "0")], "n"),
        (vec![("n", "many")], "n"),
        (vec![("size", "100x100")], "size"),
        (vec![("num_inference_steps", "0")], "num_inference_steps"),
        (vec![("guidance_scale", "-3")], "guidance_scale"),
        (vec![("response_format", "png")], "response_format"),
        (vec![("quality", "hd")], "quality"),
        (vec![("mask", "x")], "mask"),
    ] {
        let (status, p, _) = error_of(post(&server, key, form("x", &fields)).await).await;
        assert_eq!((status, p.as_deref()), (400, Some(param)), "{fields:?}");
    }
    // Not an image.
    let f = Form::new().part("image", Part::bytes(b"hello".to_vec()).file_name("a.png")).text("prompt", "x");
    assert_eq!(error_of(post(&server, key, f).await).await.1.as_deref(), Some("image"));
    // No prompt; an over-long one (5000 tokens: more than the DiT keeps).
    let f = Form::new().part("image", Part::bytes(input_png()).file_name("a.png"));
    assert_eq!(error_of(post(&server, key, f).await).await.1.as_deref(), Some("prompt"));
    let long = " a".repeat(5000);
    let (status, p, _) = error_of(post(&server, key, form(&long, &quick)).await).await;
    assert_eq!((status, p.as_deref()), (400, Some("prompt")));
    // Not multipart at all.
    let r = http()
        .post(server.at("/v1/images/edits"))
        .bearer_auth("sekret")
        .json(&serde_json::json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 400);
    // Another model.
    let (status, p, code) = error_of(post(&server, key, form("x", &[("model", "dall-e-2")])).await).await;
    assert_eq!((status, p.as_deref(), code.as_deref()), (404, Some("model"), Some("model_not_found")));
    // Past the 1 MiB body limit.
    let big = Part::bytes(vec![7u8; 3 << 20]).file_name("big.png");
    let r = post(&server, key, Form::new().text("prompt", "x").part("image", big)).await;
    assert_eq!(error_of(r).await, (413, None, Some("request_too_large".into())));
    // A good request still works after all of them.
    assert_eq!(images(post(&server, key, form("x", &quick)).await).await.len(), 1);
    let m = server.metrics().await;
    for s in ["400", "401", "404", "413", "200"] {
        assert!(m.contains(&format!("route=\"/v1/images/edits\",status=\"{s}\"")), "{s}: {m}");
    }
}

/// The events of a server-sent event stream: `(event, data as JSON)`.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
            Some((field("event:")?.to_string(), serde_json::from_str(field("data:")?).unwrap()))
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_edit_reports_every_step_then_its_images() {
    let server = Server::start(&[]).await;
    let fields =
        [("num_inference_steps", "3"), ("size", "64x64"), ("seed", "9"), ("n", "2"), ("stream", "true")];
    let r = post(&server, None, form("Make it blue", &fields)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse_events(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    let mut expected = vec!["joyrt.progress"; 6];
    expected.extend(["image_edit.completed"; 2]);
    assert_eq!(names, expected);
    let steps: Vec<(u64, u64, u64)> = events[..6]
        .iter()
        .map(|(_, d)| {
            (d["image"].as_u64().unwrap(), d["step"].as_u64().unwrap(), d["total"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(steps, [(0, 1, 3), (0, 2, 3), (0, 3, 3), (1, 1, 3), (1, 2, 3), (1, 3, 3)]);
    // The streamed images are the ones a plain request gets.
    let plain = [("num_inference_steps", "3"), ("size", "64x64"), ("seed", "9"), ("n", "2")];
    let want = images(post(&server, None, form("Make it blue", &plain)).await).await;
    for ((_, d), want) in events[6..].iter().zip(&want) {
        assert_eq!((d["type"].as_str(), d["size"].as_str()), (Some("image_edit.completed"), Some("64x64")));
        let png = base64::engine::general_purpose::STANDARD.decode(d["b64_json"].as_str().unwrap()).unwrap();
        assert_eq!(&image::load_from_memory(&png).unwrap().to_rgb8(), want);
    }
    // A failure after the stream began is an `error` event (a bucket under the pixel range).
    let r = post(&server, None, form("x", &[("size", "32x32"), ("stream", "true")])).await;
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].0.as_str(), events[0].1["error"]["param"].as_str()), ("error", Some("size")));
    // Closing a stream cancels its edit.
    let url = server.at("/v1/images/edits");
    let mut r = http()
        .post(url)
        .multipart(form("x", &[("num_inference_steps", "1000"), ("size", "64x64"), ("stream", "true")]))
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(LIMIT, r.chunk()).await.unwrap().unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("joyrt.progress"));
    drop(r);
    let t0 = Instant::now();
    while server.metric("joyrt_edits_cancelled_total").await < 1.0 {
        assert!(t0.elapsed() < LIMIT, "the streamed edit was not cancelled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resident memory of a process, in bytes (Linux).
fn rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(kb * 1024)
}

#[tokio::test]
async fn load_past_the_queue_gets_429_and_every_accepted_request_its_own_image() {
    const REQUESTS: u64 = 200;
    const CLIENTS: u64 = 16;
    let server = Arc::new(Server::start(&["--max-queue", "2"]).await);
    let quick = |seed: u64| {
        form("Make it blue", &[("num_inference_steps", "2"), ("size", "64x64"), ("seed", &seed.to_string())])
    };
    // Warm-up, then the memory to compare with.
    images(post(&server, None, quick(1_000_000)).await).await;
    let rss0 = rss(server.child.id());

    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for seed in (c..REQUESTS).step_by(CLIENTS as usize) {
                let sent = Instant::now();
                let r = post(&server, None, quick(seed)).await;
                let status = r.status();
                let retry =
                    r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                let imgs = if status == StatusCode::OK {
                    images(r).await
                } else {
                    error_of(r).await;
                    Vec::new()
                };
                out.push((seed, status, retry, imgs, sent.elapsed()));
            }
            out
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(tokio::time::timeout(LIMIT, t).await.expect("load test hung").unwrap());
    }
    let wall = t0.elapsed();
    assert_eq!(results.len() as u64, REQUESTS);
    let mut seen = std::collections::HashSet::new();
    let mut latencies = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for (seed, status, retry, imgs, took) in &results {
        match status.as_u16() {
            200 => {
                ok += 1;
                assert_eq!(imgs.len(), 1);
                assert_eq!(imgs[0].dimensions(), (64, 64));
                assert!(seen.insert(imgs[0].clone().into_raw()), "seed {seed}: an image came back twice");
                latencies.push(*took);
            }
            429 => {
                refused += 1;
                assert!(retry.is_some_and(|s| s >= 1), "429 without Retry-After");
            }
            s => panic!("seed {seed}: status {s}"),
        }
    }
    assert!(ok >= 3 && refused >= 1, "{ok} accepted, {refused} refused");
    // The server counted exactly what the clients saw (and the warm-up).
    assert_eq!(
        server.metric("joyrt_requests_total{route=\"/v1/images/edits\",status=\"200\"}").await,
        ok as f64 + 1.0
    );
    assert_eq!(
        server.metric("joyrt_requests_total{route=\"/v1/images/edits\",status=\"429\"}").await,
        refused as f64
    );
    assert_eq!(server.metric("joyrt_queue_depth").await, 0.0);
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize].as_secs_f64();
    println!(
        "load: {REQUESTS} requests from {CLIENTS} clients, --max-queue 2: {ok} ok, {refused} × 429 in {:.2} s; \
         {:.2} images/s; accepted latency p50 {:.3} s, p99 {:.3} s",
        wall.as_secs_f64(),
        ok as f64 / wall.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    if let (Some(a), Some(b)) = (rss0, rss(server.child.id())) {
        println!(
            "load: resident memory {:.1} MB after warm-up, {:.1} MB after the load",
            a as f64 / 1e6,
            b as f64 / 1e6
        );
        assert!(b < a + (64 << 20), "memory grew from {a} to {b} bytes");
    }
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_edit() {
    let server = Server::start(&[]).await;
    let url = server.at("/v1/images/edits");
    let client = tokio::spawn(async move {
        let long = form("x", &[("num_inference_steps", "1000"), ("size", "64x64")]);
        http().post(url).multipart(long).send().await
    });
    let t0 = Instant::now();
    while server.metric("joyrt_edits_running").await < 1.0 {
        assert!(t0.elapsed() < LIMIT, "the edit did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Dropping the request closes its connection.
    client.abort();
    assert!(client.await.is_err_and(|e| e.is_cancelled()));
    let t0 = Instant::now();
    while server.metric("joyrt_edits_cancelled_total").await < 1.0 {
        assert!(t0.elapsed() < LIMIT, "the edit was not cancelled: {}", server.metrics().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.metric("joyrt_edits_running").await, 0.0);
    // And the server goes on serving.
    assert_eq!(
        images(post(&server, None, form("x", &[("num_inference_steps", "1"), ("size", "64x64")])).await)
            .await
            .len(),
        1
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_finishes_the_running_edit_and_exits_0() {
    let mut server = Server::start(&[]).await;
    let url = server.at("/v1/images/edits");
    let running = tokio::spawn(async move {
        let f = form("x", &[("num_inference_steps", "150"), ("size", "64x64")]);
        http().post(url).multipart(f).send().await
    });
    let t0 = Instant::now();
    while server.metric("joyrt_edits_running").await < 1.0 {
        assert!(t0.elapsed() < LIMIT, "the edit did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kill =
        std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let r = tokio::time::timeout(LIMIT, running).await.expect("the edit hung").unwrap().unwrap();
    assert_eq!(images(r).await.len(), 1, "the running edit finished");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{:?}", server.log.lock().unwrap());
    assert!(http().get(server.at("/health")).send().await.is_err(), "still accepting after SIGTERM");
    assert!(server.log.lock().unwrap().iter().any(|l| l.contains("shutting down")));
}

/// The README's curl example, against the tiny model: a multipart upload with a key and joyrt's
/// own fields, answered with a PNG. Without curl the test says SKIPPED and passes, unless
/// JOYRT_REQUIRE_CURL=1 (`.ci/run` sets it).
#[tokio::test]
async fn curl_gets_a_png() {
    if std::process::Command::new("curl").arg("--version").output().is_err() {
        let required = std::env::var("JOYRT_REQUIRE_CURL").is_ok_and(|v| v == "1");
        assert!(!required, "JOYRT_REQUIRE_CURL=1 but there is no curl");
        println!("SKIPPED the curl test: no curl");
        return;
    }
    let server = Server::start(&["--api-key", "sekret"]).await;
    let input = work().join("curl-input.png");
    std::fs::write(&input, input_png()).unwrap();
    let url = server.at("/v1/images/edits");
    let image_arg = format!("image=@{}", input.display());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "--max-time",
                "120",
                &url,
                "-H",
                "Authorization: Bearer sekret",
            ])
            .args(["-F", &image_arg, "-F", "prompt=Turn the car red", "-F", "num_inference_steps=2"])
            .args(["-F", "seed=7", "-F", "size=64x64"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let png = base64::engine::general_purpose::STANDARD.decode(v["data"][0]["b64_json"].as_str().unwrap());
    let img = image::load_from_memory_with_format(&png.unwrap(), image::ImageFormat::Png).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
}

/// A drained replica: after SIGTERM with `--drain-seconds`, readiness fails at once (liveness
/// does not), edits are still served until the drain ends, then the server exits 0.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_with_a_drain_fails_readiness_and_still_serves() {
    let mut server = Server::start(&["--drain-seconds", "5"]).await;
    for probe in ["/health/ready", "/health/live", "/health"] {
        assert_eq!(http().get(server.at(probe)).send().await.unwrap().status(), 200, "{probe}");
    }
    let kill =
        std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let t0 = Instant::now();
    loop {
        let r = http().get(server.at("/health/ready")).send().await.unwrap();
        if r.status() == 503 {
            assert_eq!(r.json::<Value>().await.unwrap()["status"], "draining");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "readiness did not fail");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http().get(server.at("/health/live")).send().await.unwrap().status(), 200);
    assert_eq!(server.metric("joyrt_model_ready").await, 0.0);
    let quick = [("num_inference_steps", "1"), ("size", "64x64")];
    assert_eq!(images(post(&server, None, form("x", &quick)).await).await.len(), 1, "served while draining");
    assert!(t0.elapsed() < Duration::from_secs(5), "the edit outlasted the drain; the test proves nothing");
    assert_eq!(server.wait_exit().code(), Some(0), "{:?}", server.log.lock().unwrap());
    assert!(t0.elapsed() >= Duration::from_millis(4900), "exited before the drain ended");
}

/// `response_format=url`: the answer links to the same PNG the base64 answer carries, served
/// without the API key (the unguessable name is the capability) until the TTL ends.
#[tokio::test]
async fn url_answers_link_to_the_png_until_it_expires() {
    let server = Server::start(&["--api-key", "k", "--url-ttl-seconds", "2"]).await;
    let fields = [("num_inference_steps", "1"), ("size", "64x64"), ("seed", "9")];
    let b64 = post(&server, Some("k"), form("x", &fields)).await;
    let b64: Value = b64.json().await.unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["b64_json"].as_str().unwrap());
    let mut with_url = fields.to_vec();
    with_url.push(("response_format", "url"));
    let r = post(&server, Some("k"), form("x", &with_url)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["data"][0].get("b64_json").is_none(), "{v}");
    let link = v["data"][0]["url"].as_str().unwrap().to_string();
    assert!(link.starts_with(&server.at("/v1/images/files/")), "{link}");
    let got = http().get(&link).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.bytes().await.unwrap().to_vec(), b64.unwrap(), "the link serves the same PNG");
    // A guessed name, and the link once its time is up.
    assert_eq!(http().get(server.at("/v1/images/files/0123.png")).send().await.unwrap().status(), 404);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, _, code) = error_of(http().get(&link).send().await.unwrap()).await;
    assert_eq!((status, code.as_deref()), (404, Some("not_found")));
}

/// The official `openai` Python client (from PyPI, in a venv kept under the target folder):
/// `client.images.edit(...)` gets a PNG back. Without python3, its venv module or the package
/// index, the test says SKIPPED and passes, unless JOYRT_REQUIRE_OPENAI=1.
#[tokio::test]
async fn the_openai_python_client_gets_a_png() {
    let required = std::env::var("JOYRT_REQUIRE_OPENAI").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        assert!(!required, "JOYRT_REQUIRE_OPENAI=1 but {why}");
        println!("SKIPPED the openai client test: {why}");
    };
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-venv");
    let python = venv.join("bin/python");
    if !python.is_file() {
        match std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => return skip(format!("python3 -m venv failed: {}", String::from_utf8_lossy(&o.stderr))),
            Err(e) => return skip(format!("no python3: {e}")),
        }
    }
    let has_openai = std::process::Command::new(&python).args(["-c", "import openai"]).output();
    if !has_openai.is_ok_and(|o| o.status.success()) {
        let o = std::process::Command::new(&python)
            .args(["-m", "pip", "install", "-q", "openai"])
            .output()
            .unwrap();
        if !o.status.success() {
            let _ = std::fs::remove_dir_all(&venv);
            return skip(format!("pip install openai failed: {}", String::from_utf8_lossy(&o.stderr)));
        }
    }
    let server = Server::start(&["--api-key", "sekret"]).await;
    let out = work().join("openai.png");
    let script = r#"
import base64, sys, openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="sekret", max_retries=0)
with open(sys.argv[2], "rb") as f:
    r = client.images.edit(model="tiny", image=f, prompt="Make it blue", n=1, size="64x64",
                           response_format="b64_json", extra_body={"num_inference_steps": 2, "seed": 3})
open(sys.argv[3], "wb").write(base64.b64decode(r.data[0].b64_json))
with open(sys.argv[2], "rb") as f:
    events = list(client.images.edit(model="tiny", image=f, prompt="Make it blue", size="64x64", stream=True,
                                     extra_body={"num_inference_steps": 2, "seed": 3}))
assert [e.type for e in events] == ["joyrt.progress"] * 2 + ["image_edit.completed"], events
assert base64.b64decode(events[-1].b64_json) == base64.b64decode(r.data[0].b64_json), "stream and plain differ"
try:
    openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="wrong", max_retries=0).models.list()
    sys.exit("a wrong key was accepted")
except openai.AuthenticationError:
    pass
print("openai", openai.__version__, "created", r.created)
"#;
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/pipeline/input.png");
    let mut cmd = std::process::Command::new(&python);
    cmd.args(["-c", script, &server.url, input, out.to_str().unwrap()]);
    let run = tokio::task::spawn_blocking(move || cmd.output());
    let o = tokio::time::timeout(LIMIT, run).await.expect("the client hung").unwrap().unwrap();
    let t = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{t}");
    println!("{}", t.trim());
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
}

/// `GET /` is the browser page in server mode (web/test.sh drives it in Chromium): the page, the
/// script and stylesheet it loads, with their content types and a same-origin-only CSP, outside
/// the API key; and the API route the script posts to answers (a 400 for an empty form, not a 404).
#[tokio::test]
async fn get_root_serves_the_page_in_server_mode() {
    let server = Server::start(&["--api-key", "sekret"]).await;
    let get = |path: &'static str| {
        let url = server.at(path);
        async move {
            let r = http().get(url).send().await.unwrap();
            assert_eq!(r.status(), 200, "GET {path}");
            let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            let (ty, csp) = (h("content-type"), h("content-security-policy"));
            (ty, csp, r.text().await.unwrap())
        }
    };
    let (ty, csp, html) = get("/").await;
    assert!(ty.starts_with("text/html"), "{ty}");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe") && !csp.contains("wasm"), "{csp}");
    assert!(html.contains(r#"<meta name="joyrt-mode" content="server" data-api-key="required">"#), "{html}");
    assert!(html.contains(r#"src="main.js""#) && html.contains(r#"href="style.css""#));
    let (ty, _, js) = get("/main.js").await;
    assert!(ty.starts_with("text/javascript"), "{ty}");
    assert!(js.contains("'/v1/images/edits'") && js.contains("'stream', 'true'"));
    let (ty, _, _) = get("/style.css").await;
    assert!(ty.starts_with("text/css"), "{ty}");
    assert_eq!(http().get(server.at("/pkg/joyrt_web_bg.wasm")).send().await.unwrap().status(), 404);
    let (status, _, _) = error_of(post(&server, Some("sekret"), Form::new()).await).await;
    assert_eq!(status, 400);
}
