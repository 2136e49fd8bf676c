//! The one error type of joyrt. Every message names the tensor, file, op or shape at fault.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An op was called with shapes that do not fit together.
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },

    /// An op or a backend does not handle this dtype.
    #[error("{op}: unsupported dtype {dtype}")]
    DType { op: &'static str, dtype: crate::DType },

    /// A device could not allocate memory.
    #[error("{backend}: out of memory allocating {bytes} bytes ({what}); free memory or use a smaller image/dtype")]
    OutOfMemory { backend: String, bytes: u64, what: String },

    /// A backend failure (driver error, kernel compile error, lost device, ...).
    #[error("{backend}: {msg}")]
    Backend { backend: String, msg: String },

    /// A backend has no kernel for an op (it names the op and the backend).
    #[error("{backend}: the op {op} has no kernel on this backend")]
    Unsupported { backend: String, op: &'static str },

    /// A backend that is not available on this machine was requested.
    #[error("backend {backend} is not available: {why}")]
    BackendUnavailable { backend: String, why: String },

    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// A safetensors file is malformed (truncated, bad header, offsets out of range, unknown dtype).
    #[error("{}: corrupt safetensors file: {msg}", path.display())]
    Safetensors { path: PathBuf, msg: String },

    /// A checkpoint does not hold exactly the expected tensors. `problems` lists every missing,
    /// unexpected or mis-shaped tensor, one per line.
    #[error("{component}: {} weight problem(s):\n{}", problems.len(), listed(problems))]
    Weights { component: String, problems: Vec<String> },

    /// A model folder has several problems (layout, configs, tokenizer), all found before any
    /// weight is read.
    #[error("model folder {}: {} problem(s):\n{}", root.display(), problems.len(), listed(problems))]
    Folder { root: PathBuf, problems: Vec<String> },

    /// A computation produced NaN or Inf; `what` names the stage (and step).
    #[error("{what} produced non-finite values (NaN or Inf); the weights may hold some: check them with `joyrt info --check-weights MODEL`")]
    NonFinite { what: String },

    /// A configuration file is missing a field or has an invalid value.
    #[error("{}: {msg}", path.display())]
    Config { path: PathBuf, msg: String },

    /// Bad user input (image, prompt, arguments).
    #[error("{0}")]
    Input(String),

    /// The caller cancelled a running job.
    #[error("cancelled")]
    Cancelled,
}

/// At most this many problems are printed in one error; the rest are counted.
pub const MAX_LISTED_PROBLEMS: usize = 20;

/// The first [`MAX_LISTED_PROBLEMS`] problems, one per line, and a count of the rest.
pub fn listed(problems: &[String]) -> String {
    let mut out = problems.iter().take(MAX_LISTED_PROBLEMS).cloned().collect::<Vec<_>>().join("\n");
    if problems.len() > MAX_LISTED_PROBLEMS {
        out.push_str(&format!("\n… and {} more", problems.len() - MAX_LISTED_PROBLEMS));
    }
    out
}

impl Error {
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Error {
        Error::Shape { op, msg: msg.into() }
    }

    pub fn backend(backend: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Backend { backend: backend.into(), msg: msg.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }

    pub fn config(path: impl Into<PathBuf>, msg: impl Into<String>) -> Error {
        Error::Config { path: path.into(), msg: msg.into() }
    }
}
