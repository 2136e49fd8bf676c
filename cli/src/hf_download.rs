//! Downloads a model that is missing from the Hugging Face cache into that cache, laid out as
//! huggingface_hub lays it out (`blobs/<blob id>`, `snapshots/<commit>/<file>` links to the blobs,
//! `refs/<branch>`), so diffusers and `huggingface-cli` find it too.
//!
//! The hub is `HF_ENDPOINT` (default <https://huggingface.co>); `HF_TOKEN`, when set, is sent as a
//! bearer token (private and gated repositories). Two request shapes are used:
//! `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true` (the commit and the file
//! list) and `GET {endpoint}/{repo}/resolve/{commit}/{file}` (one file).
//!
//! Only what joyrt reads is fetched ([`wanted`]): `.json` files (model_index.json, the components'
//! configs, tokenizer, processor and scheduler configs, safetensors index files), `.safetensors`
//! weights, and the tokenizer's `.txt` / `.jinja` side files. Other weight formats (`.bin`, `.pt`,
//! `.ckpt`, `.onnx`, `.msgpack`, `.h5`), images and documents are skipped.
//!
//! Nothing half-written ever looks complete: a file is received into `blobs/<blob>.incomplete` and
//! renamed to `blobs/<blob>` only once its size matches what the server announced; the snapshot's
//! links are made only after every blob is complete (in a temporary folder renamed into place);
//! `refs/<revision>` is written last. An interrupted `.incomplete` is resumed with a `Range`
//! request when the server honours it, else received again from the start.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether joyrt would read the repository file `path`.
pub fn wanted(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    matches!(ext, "json" | "safetensors" | "jinja")
        || (ext == "txt" && (name == "merges.txt" || name == "vocab.txt"))
}

/// One file of the listing that will be fetched.
#[derive(Debug)]
struct RemoteFile {
    path: String,
    /// The blob's name in the cache: the LFS sha256 or the git blob id the hub lists.
    blob: String,
    /// The size the listing gives, if any (checked against what the server sends).
    size: Option<u64>,
}

/// The commit `revision` names and the files joyrt needs from it.
#[derive(Debug)]
struct Listing {
    commit: String,
    files: Vec<RemoteFile>,
}

/// A name that is safe as one path component (a commit or blob id).
fn is_plain_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A repository-relative file path that stays inside the snapshot folder.
fn is_safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(':'))
}

/// Reads the hub's answer about one revision.
fn parse_listing(v: &Value, repo: &str) -> Result<Listing> {
    let commit = v["sha"].as_str().context("the hub's answer has no commit (sha)")?;
    if !is_plain_id(commit) {
        bail!("the hub gave {commit:?} as the commit of {repo}, which is not a commit id");
    }
    let siblings = v["siblings"].as_array().context("the hub's answer has no file list (siblings)")?;
    let mut files = Vec::new();
    for s in siblings {
        let path = s["rfilename"].as_str().context("a file of the hub's list has no rfilename")?;
        if !wanted(path) {
            continue;
        }
        if !is_safe_path(path) {
            bail!("the hub lists the file {path:?}, which is not a plain relative path");
        }
        let blob = s["lfs"]["sha256"]
            .as_str()
            .or_else(|| s["blobId"].as_str())
            .with_context(|| format!("the hub's list gives no blob id for {path}"))?;
        if !is_plain_id(blob) {
            bail!("the hub gave {blob:?} as the blob id of {path}, which is not an id");
        }
        let size = s["lfs"]["size"].as_u64().or_else(|| s["size"].as_u64());
        files.push(RemoteFile { path: path.to_string(), blob: blob.to_string(), size });
    }
    if files.is_empty() {
        bail!("{repo} at {commit} holds no file joyrt reads (configs, tokenizer files, .safetensors)");
    }
    Ok(Listing { commit: commit.to_string(), files })
}

/// `HF_HUB_OFFLINE` is set to a true value: the network must not be touched.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

fn endpoint() -> String {
    let e = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.trim().is_empty());
    e.unwrap_or_else(|| "https://huggingface.co".into()).trim().trim_end_matches('/').to_string()
}

/// `s` percent-encoded as one URL path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_path(p: &str) -> String {
    p.split('/').map(encode_segment).collect::<Vec<_>>().join("/")
}

/// Downloads what joyrt needs of `repo` at `revision` into the hub cache `cache` and returns the
/// snapshot folder. The caller has checked that the network may be used.
pub fn download(repo: &str, revision: &str, cache: &Path) -> Result<PathBuf> {
    // A current-thread runtime of its own: this runs before any server runtime exists.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime for the download")?;
    rt.block_on(Download::new(repo, revision, cache)?.run())
}

struct Download {
    client: reqwest::Client,
    endpoint: String,
    repo: String,
    revision: String,
    repo_dir: PathBuf,
}

impl Download {
    fn new(repo: &str, revision: &str, cache: &Path) -> Result<Download> {
        // reqwest is built without a default crypto provider; ring is ours. An error here only
        // means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .context("HF_TOKEN is not a valid header value")?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("joyrt/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(30))
            // A server that stops sending is an error, not a hang.
            .read_timeout(Duration::from_secs(120))
            .build()
            .context("cannot make the HTTP client")?;
        Ok(Download {
            client,
            endpoint: endpoint(),
            repo: repo.to_string(),
            revision: revision.to_string(),
            repo_dir: cache.join(format!("models--{}", repo.replace('/', "--"))),
        })
    }

    async fn run(self) -> Result<PathBuf> {
        let listing = self.listing().await?;
        let blobs = self.repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).with_context(|| format!("cannot create {}", blobs.display()))?;
        let missing: Vec<&RemoteFile> =
            listing.files.iter().filter(|f| !blobs.join(&f.blob).is_file()).collect();
        if !missing.is_empty() {
            let bytes: u64 = missing.iter().filter_map(|f| f.size).sum();
            eprintln!(
                "joyrt: downloading {} file(s), {:.1} MB, of {} at {} from {} into {}",
                missing.len(),
                bytes as f64 / 1e6,
                self.repo,
                listing.commit,
                self.endpoint,
                self.repo_dir.display()
            );
        }
        for f in missing {
            self.fetch_blob(&listing.commit, f, &blobs).await?;
        }
        let snapshot = self.link_snapshot(&listing)?;
        if self.revision != listing.commit {
            let ref_file = self.repo_dir.join("refs").join(&self.revision);
            write_atomically(&ref_file, listing.commit.as_bytes())?;
        }
        Ok(snapshot)
    }

    async fn listing(&self) -> Result<Listing> {
        let url = format!(
            "{}/api/models/{}/revision/{}?blobs=true",
            self.endpoint,
            encode_path(&self.repo),
            encode_segment(&self.revision)
        );
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach the Hugging Face hub at {}", self.endpoint))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            bail!(
                "{} has no model {} at revision {} (404): check the id and the revision; a private or gated \
                 repository needs HF_TOKEN",
                self.endpoint,
                self.repo,
                self.revision
            );
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            bail!(
                "{} refused access to {} ({status}): set HF_TOKEN to a token that may read it",
                self.endpoint,
                self.repo
            );
        }
        if !status.is_success() {
            bail!("{} answered {status} when asked for the files of {}", self.endpoint, self.repo);
        }
        let body =
            resp.bytes().await.with_context(|| format!("cannot read the file list of {}", self.repo))?;
        let v: Value = serde_json::from_slice(&body)
            .with_context(|| format!("the hub's file list of {} is not JSON", self.repo))?;
        parse_listing(&v, &self.repo)
    }

    /// Receives one file into `blobs/<blob>`, resuming `blobs/<blob>.incomplete` if it is there.
    async fn fetch_blob(&self, commit: &str, f: &RemoteFile, blobs: &Path) -> Result<()> {
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            encode_path(&self.repo),
            commit,
            encode_path(&f.path)
        );
        let part = blobs.join(format!("{}.incomplete", f.blob));
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let done = blobs.join(&f.blob);
        if have > 0 && f.size == Some(have) {
            // Received whole before the run stopped short of the rename; a range request for
            // nothing would only get a 416.
            return std::fs::rename(&part, &done)
                .with_context(|| format!("cannot rename {} to {}", part.display(), done.display()));
        }
        let mut req = self.client.get(&url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut resp = req.send().await.with_context(|| format!("cannot fetch {}", f.path))?;
        let status = resp.status();
        let (start, total) = match status {
            reqwest::StatusCode::PARTIAL_CONTENT if have > 0 => {
                let range = resp.headers().get(reqwest::header::CONTENT_RANGE).and_then(|v| v.to_str().ok());
                match range.and_then(parse_content_range) {
                    Some((s, total)) if s == have => {
                        (have, total.or(resp.content_length().map(|n| n + have)))
                    }
                    _ => {
                        bail!("the server answered {} with a range it was not asked for ({range:?})", f.path)
                    }
                }
            }
            reqwest::StatusCode::OK => (0, resp.content_length()),
            reqwest::StatusCode::RANGE_NOT_SATISFIABLE => {
                // The partial file is not a prefix of this blob: start it again on the next run.
                let _ = std::fs::remove_file(&part);
                bail!(
                    "the server refused to resume {} (416); the partial file was removed: run again",
                    f.path
                )
            }
            s => bail!("{} answered {s} for {} of {}", self.endpoint, f.path, self.repo),
        };
        let total = match (total, f.size) {
            (Some(t), Some(s)) if t != s => {
                bail!("the server sends {} as {t} bytes but the hub lists it as {s} bytes", f.path)
            }
            (Some(t), _) => t,
            (None, Some(s)) => s,
            (None, None) => bail!("the server did not say the size of {}, so it cannot be checked", f.path),
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(start > 0)
            .truncate(start == 0)
            .open(&part)
            .with_context(|| format!("cannot write {}", part.display()))?;
        let bar = progress_bar(&f.path, total, start);
        let mut got = start;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    bar.abandon();
                    bail!(
                        "the download of {} stopped after {got} of {total} bytes ({e}); run again to resume it",
                        f.path
                    )
                }
            };
            got += chunk.len() as u64;
            if got > total {
                drop(file);
                let _ = std::fs::remove_file(&part);
                bar.abandon();
                bail!("the server sent more than the {total} bytes it announced for {}", f.path);
            }
            file.write_all(&chunk).with_context(|| format!("cannot write {}", part.display()))?;
            bar.set_position(got);
        }
        file.sync_all().with_context(|| format!("cannot write {}", part.display()))?;
        drop(file);
        if got != total {
            bar.abandon();
            bail!("the download of {} stopped after {got} of {total} bytes; run again to resume it", f.path);
        }
        bar.finish_and_clear();
        std::fs::rename(&part, &done)
            .with_context(|| format!("cannot rename {} to {}", part.display(), done.display()))
    }

    /// `snapshots/<commit>/` with a link per file to its blob, made in a temporary folder and
    /// renamed into place; a snapshot already there only gets its missing links.
    fn link_snapshot(&self, listing: &Listing) -> Result<PathBuf> {
        let snapshots = self.repo_dir.join("snapshots");
        let snapshot = snapshots.join(&listing.commit);
        let exists = snapshot.is_dir();
        let dir =
            if exists { snapshot.clone() } else { snapshots.join(format!(".{}.incomplete", listing.commit)) };
        if !exists {
            let _ = std::fs::remove_dir_all(&dir);
        }
        for f in &listing.files {
            let to = dir.join(&f.path);
            if to.exists() {
                continue;
            }
            let parent = to.parent().context("a snapshot file has no folder")?;
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            link_blob(&self.repo_dir.join("blobs").join(&f.blob), &f.path, &to)?;
        }
        if !exists {
            std::fs::rename(&dir, &snapshot)
                .with_context(|| format!("cannot rename {} to {}", dir.display(), snapshot.display()))?;
        }
        Ok(snapshot)
    }
}

/// `bytes START-END/TOTAL`: the start and, unless `*`, the total.
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// As huggingface_hub does: a relative symbolic link `snapshots/<commit>/<path>` → `blobs/<blob>`
/// (a copy where links cannot be made).
fn link_blob(blob: &Path, path: &str, to: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let blob_name = blob.file_name().context("a blob has no name")?;
        let up = "../".repeat(path.split('/').count() + 1);
        let target = PathBuf::from(up).join("blobs").join(blob_name);
        std::os::unix::fs::symlink(&target, to).with_context(|| format!("cannot link {}", to.display()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        std::fs::copy(blob, to)
            .map(|_| ())
            .with_context(|| format!("cannot copy {} to {}", blob.display(), to.display()))
    }
}

/// Writes `path` through a temporary file renamed over it, so it is never seen half-written.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().context("a ref file has no folder")?;
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".{}.incomplete", path.file_name().unwrap_or_default().to_string_lossy()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// A byte bar for one file on a terminal; hidden elsewhere (the summary line says enough in logs).
fn progress_bar(name: &str, total: u64, start: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar.set_message(name.to_string());
    bar.set_position(start);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_joyrt_reads_is_wanted() {
        for yes in [
            "model_index.json",
            "transformer/config.json",
            "transformer/diffusion_pytorch_model.safetensors.index.json",
            "vae/diffusion_pytorch_model.safetensors",
            "tokenizer/tokenizer.json",
            "tokenizer/merges.txt",
            "processor/chat_template.jinja",
        ] {
            assert!(wanted(yes), "{yes}");
        }
        for no in [
            "README.md",
            ".gitattributes",
            "vae/diffusion_pytorch_model.bin",
            "x.pt",
            "demo.png",
            "notes.txt",
        ] {
            assert!(!wanted(no), "{no}");
        }
    }

    #[test]
    fn listings_are_checked() {
        let v = serde_json::json!({"sha": "abc1", "siblings": [
            {"rfilename": "model_index.json", "blobId": "b1", "size": 5},
            {"rfilename": "README.md", "blobId": "b2"},
            {"rfilename": "vae/w.safetensors", "blobId": "b3", "lfs": {"sha256": "c0ffee", "size": 9}},
        ]});
        let l = parse_listing(&v, "o/n").unwrap();
        assert_eq!(l.commit, "abc1");
        let got: Vec<_> = l.files.iter().map(|f| (f.path.as_str(), f.blob.as_str(), f.size)).collect();
        assert_eq!(got, [("model_index.json", "b1", Some(5)), ("vae/w.safetensors", "c0ffee", Some(9))]);
        let bad = |v: Value| format!("{:#}", parse_listing(&v, "o/n").unwrap_err());
        assert!(bad(serde_json::json!({"sha": "../x", "siblings": []})).contains("not a commit id"));
        let e = bad(serde_json::json!({"sha": "a", "siblings": [{"rfilename": "../a.json", "blobId": "b"}]}));
        assert!(e.contains("not a plain relative path"), "{e}");
        let e = bad(serde_json::json!({"sha": "a", "siblings": [{"rfilename": "a.json", "blobId": "../b"}]}));
        assert!(e.contains("not an id"), "{e}");
        assert!(bad(serde_json::json!({"sha": "a", "siblings": [{"rfilename": "a.md"}]}))
            .contains("no file joyrt reads"));
    }

    #[test]
    fn content_ranges_and_segments() {
        assert_eq!(parse_content_range("bytes 10-99/100"), Some((10, Some(100))));
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(encode_path("a b/c%d.json"), "a%20b/c%25d.json");
    }
}
