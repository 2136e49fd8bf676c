//! What the `joyrt serve` tests share: a server on the tiny model on 127.0.0.1 (killed when
//! dropped), the HTTP client, the edit form and the decoding of answers.

// serve.rs uses most of these; each test uses some.
#![allow(dead_code)]

use crate::support::*;
use base64::Engine;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest any one step of these tests may take before it counts as hung.
pub const LIMIT: Duration = Duration::from_secs(120);

/// The test's HTTP client. The binary's HTTPS downloads build reqwest without a default crypto
/// provider, and cargo unifies that feature into this crate's reqwest too: plain-HTTP clients
/// still need a provider installed before they are built.
pub fn http() -> reqwest::Client {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::new()
}

pub fn input_png() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/pipeline/input.png")).unwrap()
}

/// A running `joyrt serve` and its stderr lines.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the server on the tiny model and waits until /health says it is ready.
    pub async fn start(extra: &[&str]) -> Server {
        let model = tiny_model().to_str().unwrap().to_string();
        let mut args = vec!["serve", "--model", &model, "--backend", "cpu", "--port", "0"];
        args.extend_from_slice(extra);
        let mut child = joyrt_cmd(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        // Reads stderr to the end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("joyrt serve: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let url = match rx.recv_timeout(LIMIT) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start: {:?}", log.lock().unwrap());
            }
        };
        let server = Server { child, url, log };
        let t0 = Instant::now();
        loop {
            let r = http().get(server.at("/health")).send().await.unwrap();
            if r.status() == 200 {
                break;
            }
            assert_eq!(r.status(), 503, "{:?}", r.text().await);
            assert!(t0.elapsed() < LIMIT, "not ready: {:?}", server.log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn metrics(&self) -> String {
        http().get(self.at("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// The value of the metrics line that starts with `series `.
    pub async fn metric(&self, series: &str) -> f64 {
        let t = self.metrics().await;
        t.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .map_or(0.0, |v| v.parse().unwrap())
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(t0.elapsed() < LIMIT, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The edit form with the tiny model's fast settings.
pub fn form(prompt: &str, fields: &[(&str, &str)]) -> Form {
    let image = Part::bytes(input_png()).file_name("input.png").mime_str("image/png").unwrap();
    let mut f = Form::new().part("image", image).text("prompt", prompt.to_string());
    for (k, v) in fields {
        f = f.text(k.to_string(), v.to_string());
    }
    f
}

pub async fn post(server: &Server, key: Option<&str>, form: Form) -> reqwest::Response {
    let mut r = http().post(server.at("/v1/images/edits")).multipart(form);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    tokio::time::timeout(LIMIT, r.send()).await.expect("request hung").unwrap()
}

/// The images of a 200 answer, decoded.
pub async fn images(r: reqwest::Response) -> Vec<image::RgbImage> {
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let png =
                base64::engine::general_purpose::STANDARD.decode(d["b64_json"].as_str().unwrap()).unwrap();
            assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
            image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap().to_rgb8()
        })
        .collect()
}

/// A 4xx answer's OpenAI-style error: `(status, param, code)`.
pub async fn error_of(r: reqwest::Response) -> (u16, Option<String>, Option<String>) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    (status, e["param"].as_str().map(str::to_string), e["code"].as_str().map(str::to_string))
}
