//! `--model ORG/NAME` downloading into the Hugging Face cache, against a mock hub: an axum server on
//! 127.0.0.1 (an ephemeral port) in this test process that serves the tiny model under the hub's
//! two routes, counts every request, and can cut one file off midway. Each test has its own cache
//! and its own hub; the hub's runtime ends with the test.

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

mod support;
use support::*;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// What the mock hub holds and has been asked.
#[derive(Default)]
struct Hub {
    /// Repository path → bytes, for the one repository `org/tiny`.
    files: BTreeMap<String, Vec<u8>>,
    /// Every request: its path and its Range header.
    requests: Mutex<Vec<(String, Option<String>)>>,
    /// (file, bytes): the next response for that file stops after that many bytes.
    cut: Mutex<Option<(String, usize)>>,
}

/// A blob id for the listing: any stable alphanumeric name per content does.
fn blob_id(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}{:08x}", bytes.len())
}

async fn listing(
    State(hub): State<Arc<Hub>>,
    UrlPath((org, name, rev)): UrlPath<(String, String, String)>,
) -> Response {
    hub.requests.lock().unwrap().push((format!("api/models/{org}/{name}/revision/{rev}"), None));
    if (org.as_str(), name.as_str()) != ("org", "tiny") || rev != "main" {
        return (StatusCode::NOT_FOUND, "Repository not found").into_response();
    }
    let siblings: Vec<_> = hub
        .files
        .iter()
        .map(|(p, b)| serde_json::json!({"rfilename": p, "blobId": blob_id(b), "size": b.len()}))
        .collect();
    Json(serde_json::json!({"id": "org/tiny", "sha": COMMIT, "siblings": siblings})).into_response()
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    UrlPath((org, name, sha, file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
    hub.requests.lock().unwrap().push((format!("{org}/{name}/resolve/{sha}/{file}"), range.clone()));
    let Some(bytes) = hub.files.get(&file).filter(|_| org == "org" && name == "tiny" && sha == COMMIT) else {
        return (StatusCode::NOT_FOUND, "Entry not found").into_response();
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    let (status, body) = match start {
        Some(s) if s < bytes.len() => (StatusCode::PARTIAL_CONTENT, bytes[s..].to_vec()),
        _ => (StatusCode::OK, bytes.clone()),
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        let s = start.unwrap();
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {s}-{}/{}", bytes.len() - 1, bytes.len()));
    }
    let cut = {
        let mut c = hub.cut.lock().unwrap();
        match c.as_ref() {
            Some((f, n)) if *f == file => {
                let n = *n;
                *c = None;
                Some(n)
            }
            _ => None,
        }
    };
    let body = match cut {
        // The announced length, then part of it, then an error: hyper drops the connection.
        Some(n) => {
            let part = body[..n].to_vec();
            let stream = futures_util::stream::iter(vec![
                Ok::<_, std::io::Error>(axum::body::Bytes::from(part)),
                Err(std::io::Error::other("cut off by the test")),
            ]);
            Body::from_stream(stream)
        }
        None => Body::from(body),
    };
    resp.body(body).unwrap()
}

/// The mock hub serving `files`, on 127.0.0.1; its runtime lives as long as the returned value.
struct MockHub {
    hub: Arc<Hub>,
    url: String,
    _rt: tokio::runtime::Runtime,
}

impl MockHub {
    fn start(files: BTreeMap<String, Vec<u8>>) -> MockHub {
        let hub = Arc::new(Hub { files, ..Default::default() });
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let app = Router::new()
            .route("/api/models/{org}/{name}/revision/{rev}", get(listing))
            .route("/{org}/{name}/resolve/{sha}/{*file}", get(resolve))
            .with_state(hub.clone());
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        MockHub { hub, url, _rt: rt }
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.hub.requests.lock().unwrap().clone()
    }
}

/// The tiny model's files by repository path, plus a README that joyrt must not fetch.
fn tiny_files() -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(tiny_model(), tiny_model(), &mut files);
    files.insert("README.md".into(), b"# tiny\n".to_vec());
    files
}

/// A fresh, empty hub cache folder for one test.
fn cache(name: &str) -> PathBuf {
    let d = work().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `joyrt args…` with only the Hugging Face settings given here.
fn joyrt_hf(args: &[&str], cache: &Path, endpoint: &str, offline: bool) -> Output {
    let mut c = joyrt_cmd(args);
    for k in [
        "HF_HOME",
        "HF_TOKEN",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HUB_OFFLINE",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
    ] {
        c.env_remove(k);
    }
    c.env("HF_HUB_CACHE", cache).env("HF_ENDPOINT", endpoint).env("NO_PROXY", "127.0.0.1");
    if offline {
        c.env("HF_HUB_OFFLINE", "1");
    }
    c.output().unwrap()
}

/// Every file under `dir` (links as they are), relative, sorted.
fn listing_of(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn a_missing_model_is_downloaded_once_into_the_hub_layout() {
    let files = tiny_files();
    let hub = MockHub::start(files.clone());
    let cache = cache("full");
    let o = joyrt_hf(&["info", "org/tiny"], &cache, &hub.url, false);
    assert!(o.status.success(), "{}", text(&o));
    let first = hub.requests();
    assert!(!first.iter().any(|(p, _)| p.ends_with("README.md")), "fetched a file joyrt does not read");
    assert_eq!(first.len(), 1 + files.len() - 1, "{first:?}");

    let repo = cache.join("models--org--tiny");
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    let snap = repo.join("snapshots").join(COMMIT);
    for (path, bytes) in files.iter().filter(|(p, _)| p.as_str() != "README.md") {
        let f = snap.join(path);
        let link = std::fs::read_link(&f).unwrap();
        assert!(link.starts_with("..") && link.to_string_lossy().contains("blobs"), "{link:?}");
        assert_eq!(&std::fs::read(&f).unwrap(), bytes, "{path}");
    }
    assert!(!listing_of(&repo).iter().any(|p| p.contains("incomplete")), "{:?}", listing_of(&repo));

    // The same model again: from the cache, with no request at all; then as a commit.
    let o = joyrt_hf(&["info", "org/tiny"], &cache, &hub.url, false);
    assert!(o.status.success(), "{}", text(&o));
    let o = joyrt_hf(&["info", &format!("org/tiny@{COMMIT}")], &cache, &hub.url, false);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(hub.requests().len(), first.len(), "a cached model made requests");
    // And offline.
    let o = joyrt_hf(&["info", "org/tiny"], &cache, &hub.url, true);
    assert!(o.status.success(), "{}", text(&o));

    // An edit on the downloaded model runs.
    let out = work().join("full-out.png");
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/pipeline/input.png");
    let args = ["edit", "--model", "org/tiny", "--backend", "cpu", "--steps", "1", "--image", input];
    let mut args = args.to_vec();
    args.extend(["--base-size", "256", "--prompt", "red", "-o", out.to_str().unwrap()]);
    let o = joyrt_hf(&args, &cache, &hub.url, false);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.is_file());
    assert_eq!(hub.requests().len(), first.len());
}

#[test]
fn a_cut_off_download_leaves_nothing_complete_looking_and_resumes() {
    let files = tiny_files();
    let (big, big_bytes) = files.iter().max_by_key(|(_, b)| b.len()).unwrap();
    assert!(big.ends_with(".safetensors") && big_bytes.len() > 1000, "{big}");
    let hub = MockHub::start(files.clone());
    let cut_at = big_bytes.len() / 2;
    *hub.hub.cut.lock().unwrap() = Some((big.clone(), cut_at));
    let cache = cache("cut");

    let o = joyrt_hf(&["info", "org/tiny"], &cache, &hub.url, false);
    assert!(!o.status.success(), "a cut-off download passed: {}", text(&o));
    let e = text(&o);
    assert!(e.contains(big.as_str()) && e.contains("run again to resume"), "{e}");
    let repo = cache.join("models--org--tiny");
    assert!(!repo.join("refs/main").exists());
    assert!(!repo.join("snapshots").join(COMMIT).exists(), "{:?}", listing_of(&repo));
    let blob = repo.join("blobs").join(blob_id(big_bytes));
    assert!(!blob.exists(), "a partial blob has its final name");
    let partial = std::fs::metadata(blob.with_extension("incomplete")).unwrap().len();
    assert!(partial > 0 && partial <= cut_at as u64, "{partial}");
    // What the failed run leaves must not be taken for a model, offline either.
    let o = joyrt_hf(&["info", "org/tiny"], &cache, &hub.url, true);
    assert!(!o.status.success() && text(&o).contains("HF_HUB_OFFLINE"), "{}", text(&o));

    let before = hub.requests().len();
    let o = joyrt_hf(&["info", "org/tiny"], &cache, &hub.url, false);
    assert!(o.status.success(), "{}", text(&o));
    let again = &hub.requests()[before..];
    let resumed: Vec<_> = again.iter().filter(|(p, _)| p.ends_with(big.as_str())).collect();
    assert_eq!(resumed.len(), 1, "{again:?}");
    assert_eq!(resumed[0].1.as_deref(), Some(format!("bytes={partial}-").as_str()), "not resumed");
    // Only the one unfinished file is fetched again.
    assert_eq!(again.iter().filter(|(p, _)| p.contains("/resolve/")).count(), 1, "{again:?}");
    assert_eq!(&std::fs::read(&blob).unwrap(), big_bytes);
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    assert!(!listing_of(&repo).iter().any(|p| p.contains("incomplete")), "{:?}", listing_of(&repo));
}

#[test]
fn offline_with_nothing_cached_fails_without_a_request() {
    let hub = MockHub::start(tiny_files());
    let cache = cache("offline");
    let o = joyrt_hf(&["info", "org/tiny"], &cache, &hub.url, true);
    assert!(!o.status.success());
    let e = text(&o);
    assert!(e.contains("HF_HUB_OFFLINE") && e.contains("org/tiny") && !e.contains("panicked"), "{e}");
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
    assert!(listing_of(&cache).is_empty(), "{:?}", listing_of(&cache));
}

#[test]
fn an_unknown_repository_or_revision_is_a_clear_error() {
    let hub = MockHub::start(tiny_files());
    let cache = cache("missing");
    for (id, rev) in [("org/absent", "main"), ("org/tiny@dev", "dev")] {
        let o = joyrt_hf(&["info", id], &cache, &hub.url, false);
        assert!(!o.status.success());
        let e = text(&o);
        assert!(
            e.contains("404") && e.contains(&format!("revision {rev}")) && !e.contains("panicked"),
            "{e}"
        );
    }
    assert_eq!(hub.requests().len(), 2);
    assert!(!listing_of(&cache).iter().any(|p| p.contains("snapshots") || p.contains("refs")));
    // A hub that is not there is an error too, not a hang.
    let o = joyrt_hf(&["info", "org/tiny"], &cache, "http://127.0.0.1:9", false);
    assert!(!o.status.success() && text(&o).contains("cannot reach"), "{}", text(&o));
}

#[test]
fn a_partial_file_received_whole_is_kept_without_a_request() {
    let files = tiny_files();
    let hub = MockHub::start(files.clone());
    let cache = cache("whole");
    let blobs = cache.join("models--org--tiny/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let index = &files["model_index.json"];
    std::fs::write(blobs.join(format!("{}.incomplete", blob_id(index))), index).unwrap();
    let o = joyrt_hf(&["info", "org/tiny"], &cache, &hub.url, false);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!hub.requests().iter().any(|(p, _)| p.ends_with("model_index.json")), "{:?}", hub.requests());
    assert_eq!(&std::fs::read(blobs.join(blob_id(index))).unwrap(), index);
}
