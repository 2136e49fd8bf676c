//! Weight loading: safetensors files through a [`ByteSource`] (mmap natively), sharded checkpoints through
//! `*.safetensors.index.json`, dtype conversion on upload, key renaming, the exact-set check, and
//! writers for synthetic models and fixtures.
//!
//! The safetensors header is parsed and validated here (not trusted): a truncated file, bad header
//! JSON, offsets out of range or overlapping, a size that does not match the shape, or a dtype
//! joyrt does not load is an [`Error::Safetensors`] naming the file and tensor, never a panic.

mod byte_source;
mod synthetic_quantized;
pub use byte_source::{checked_range, ByteSource, SourceFile};

use crate::{Backend, DType, Error, Result, Shape, StoredDType, Tensor};
use memmap2::Mmap;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Dtype and shape of one stored tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: StoredDType,
    pub shape: Shape,
}

/// A tensor a network expects: its stored name and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Shape,
}

impl ParamSpec {
    pub fn new(name: impl Into<String>, shape: impl Into<Shape>) -> ParamSpec {
        ParamSpec { name: name.into(), shape: shape.into() }
    }
}

/// Total element count of a list of specs.
pub fn param_count(specs: &[ParamSpec]) -> u64 {
    specs.iter().map(|s| s.shape.numel() as u64).sum()
}

/// Fills `bytes` with `dtype` values uniform in ±0.02·√3 (xorshift64*; bf16 by truncation).
fn fill_uniform(bytes: &mut [u8], dtype: DType, seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let u = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * 0.034_641
    };
    match dtype {
        DType::F32 => bytes.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&next().to_le_bytes())),
        DType::BF16 => bytes
            .chunks_exact_mut(2)
            .for_each(|c| c.copy_from_slice(&((next().to_bits() >> 16) as u16).to_le_bytes())),
        DType::F16 => bytes
            .chunks_exact_mut(2)
            .for_each(|c| c.copy_from_slice(&half::f16::from_f32(next()).to_le_bytes())),
    }
}

/// One safetensors file and where its bytes come from.
struct File {
    path: PathBuf,
    bytes: Box<dyn ByteSource>,
    /// Start of the data section.
    data_start: usize,
}

#[derive(Clone)]
struct Entry {
    file: Arc<File>,
    info: TensorInfo,
    /// Byte range inside the data section.
    begin: usize,
    end: usize,
}

/// A checkpoint: one safetensors file or several shards; each tensor is read when it is loaded.
#[derive(Clone)]
pub struct Checkpoint {
    origin: PathBuf,
    entries: BTreeMap<String, Entry>,
}

fn corrupt(path: &Path, msg: impl Into<String>) -> Error {
    Error::Safetensors { path: path.to_path_buf(), msg: msg.into() }
}

/// Largest safetensors header read (the `safetensors` crate's limit too): about a million
/// tensors' entries.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A tensor's name, info and byte range as read from a header.
type HeaderEntry = (String, TensorInfo, usize, usize);

fn open_file(path: &Path) -> Result<(Arc<File>, Vec<HeaderEntry>)> {
    crate::files::regular_file_len(path)?;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the file is opened read-only; joyrt does not modify checkpoints while they are
    // mapped (a concurrent writer from outside is the usual mmap caveat).
    let map = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
    read_header(path, Box::new(map))
}

/// Parses and validates the header of the safetensors file `bytes` (named `path` in errors).
fn read_header(path: &Path, bytes: Box<dyn ByteSource>) -> Result<(Arc<File>, Vec<HeaderEntry>)> {
    let size = bytes.size();
    if size < 8 {
        return Err(corrupt(path, format!("file is {size} bytes, shorter than the 8-byte header length")));
    }
    let n = u64::from_le_bytes(bytes.read(0, 8)?[..].try_into().unwrap());
    if n > MAX_HEADER_BYTES {
        return Err(corrupt(path, format!("header length {n} is over the {MAX_HEADER_BYTES}-byte limit")));
    }
    if n > size - 8 {
        return Err(corrupt(
            path,
            format!("header length {n} exceeds the file size {size} (truncated file?)"),
        ));
    }
    let json: Value = serde_json::from_slice(&bytes.read(8, n as usize)?)
        .map_err(|e| corrupt(path, format!("header is not valid JSON: {e}")))?;
    let obj = json.as_object().ok_or_else(|| corrupt(path, "header is not a JSON object"))?;
    let data_start = 8 + n as usize;
    let data_len = (size - 8 - n) as usize;
    let mut tensors = Vec::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let bad = |m: &str| corrupt(path, format!("tensor {name}: {m}"));
        let dt = v.get("dtype").and_then(Value::as_str).ok_or_else(|| bad("no dtype"))?;
        let dtype = StoredDType::from_tag(dt).ok_or_else(|| {
            bad(&format!(
                "unsupported dtype {dt} (joyrt loads F32, BF16, F16, and I8, U8, F8_E4M3 quantized weights)"
            ))
        })?;
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| bad("shape is not a list of non-negative integers"))?;
        let offs: Vec<u64> = v
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect())
            .ok_or_else(|| bad("data_offsets is not a pair of integers"))?;
        let [begin, end] = offs[..] else { return Err(bad("data_offsets is not a pair of integers")) };
        if begin > end || end > data_len as u64 {
            return Err(bad(&format!(
                "data_offsets [{begin}, {end}] out of range of the {data_len}-byte data section"
            )));
        }
        // Checked: a shape such as [2⁶³] would otherwise wrap to a byte size of 0.
        let bytes = shape
            .iter()
            .try_fold(dtype.size() as u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| bad(&format!("shape {shape:?} overflows a 64-bit byte size")))?;
        if bytes != end - begin {
            return Err(bad(&format!("{} bytes stored for {dt} {shape:?} ({bytes} expected)", end - begin)));
        }
        tensors.push((
            name.clone(),
            TensorInfo { dtype, shape: Shape::new(shape) },
            begin as usize,
            end as usize,
        ));
    }
    let mut ranges: Vec<(usize, usize, &str)> =
        tensors.iter().map(|(n, _, b, e)| (*b, *e, n.as_str())).collect();
    ranges.sort();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(corrupt(
                path,
                format!("tensors {} and {} overlap in the data section", w[0].2, w[1].2),
            ));
        }
    }
    Ok((Arc::new(File { path: path.to_path_buf(), bytes, data_start }), tensors))
}

impl Checkpoint {
    /// Opens a `.safetensors` file, a `*.safetensors.index.json`, or a directory holding an index
    /// (or a single file, or several shard files without an index).
    pub fn open(path: &Path) -> Result<Checkpoint> {
        if path.is_dir() {
            let mut indexes = Vec::new();
            let mut files = Vec::new();
            for e in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                let p = e.map_err(|e| Error::io(path, e))?.path();
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.ends_with(".safetensors.index.json") {
                    indexes.push(p);
                } else if name.ends_with(".safetensors") {
                    files.push(p);
                }
            }
            indexes.sort();
            files.sort();
            return match (indexes.len(), files.len()) {
                (1, _) => Self::open(&indexes[0]),
                (0, 0) => Err(Error::Input(format!("{} holds no .safetensors file", path.display()))),
                (0, _) => Self::from_files(path, &files),
                _ => Err(Error::Input(format!(
                    "{} holds several *.safetensors.index.json files",
                    path.display()
                ))),
            };
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".json") {
            return Self::open_index(path);
        }
        Self::from_files(path, &[path.to_path_buf()])
    }

    /// A checkpoint over safetensors files that are not on disk (in a browser: generated, fetched
    /// or picked by the visitor), each named by its path in messages; every tensor of every file
    /// is loaded (an index file is not needed: a tensor stored twice is refused).
    pub fn from_sources(origin: &Path, files: Vec<SourceFile>) -> Result<Checkpoint> {
        Self::from_opened(origin, files.into_iter().map(|(p, bytes)| read_header(&p, bytes)))
    }

    fn from_files(origin: &Path, files: &[PathBuf]) -> Result<Checkpoint> {
        Self::from_opened(origin, files.iter().map(|p| open_file(p)))
    }

    fn from_opened(
        origin: &Path,
        files: impl Iterator<Item = Result<(Arc<File>, Vec<HeaderEntry>)>>,
    ) -> Result<Checkpoint> {
        let mut entries = BTreeMap::new();
        for opened in files {
            let (file, tensors) = opened?;
            for (name, info, begin, end) in tensors {
                if let Some(prev) =
                    entries.insert(name.clone(), Entry { file: file.clone(), info, begin, end })
                {
                    return Err(Error::Input(format!(
                        "tensor {name} is stored twice: in {} and {}",
                        prev.file.path.display(),
                        file.path.display()
                    )));
                }
            }
        }
        Ok(Checkpoint { origin: origin.to_path_buf(), entries })
    }

    fn open_index(index: &Path) -> Result<Checkpoint> {
        let v = crate::model_folder::read_json(index)?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::config(index, "no `weight_map` object"))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<String> = Vec::new();
        for (name, f) in map {
            let f = f
                .as_str()
                .ok_or_else(|| Error::config(index, format!("weight_map entry {name} is not a file name")))?;
            if f.contains('/') || f.contains('\\') {
                return Err(Error::config(
                    index,
                    format!("weight_map entry {name} points outside the folder: {f}"),
                ));
            }
            if !shards.iter().any(|s| s == f) {
                shards.push(f.to_string());
            }
        }
        shards.sort();
        let mut paths = Vec::new();
        for s in &shards {
            let p = dir.join(s);
            if !p.exists() {
                return Err(Error::config(index, format!("shard {s} is missing")));
            }
            crate::files::regular_file_len(&p)?;
            paths.push(p);
        }
        let ck = Self::from_files(index, &paths)?;
        for (name, f) in map {
            match ck.entries.get(name) {
                Some(e) if e.file.path.file_name().and_then(|n| n.to_str()) == f.as_str() => {}
                Some(e) => {
                    return Err(Error::config(
                        index,
                        format!("tensor {name} is listed in {f} but stored in {}", e.file.path.display()),
                    ))
                }
                None => {
                    return Err(Error::config(
                        index,
                        format!("tensor {name} is listed in {f} but that shard does not hold it"),
                    ))
                }
            }
        }
        Ok(ck)
    }

    /// The file or folder the checkpoint was opened from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Renames every stored tensor with `f`; two tensors mapping to one name is an error.
    pub fn with_renames(self, f: impl Fn(&str) -> String) -> Result<Checkpoint> {
        let mut entries = BTreeMap::new();
        let mut from: HashMap<String, String> = HashMap::new();
        for (name, e) in self.entries {
            let new = f(&name);
            if let Some(other) = from.insert(new.clone(), name.clone()) {
                return Err(Error::Input(format!(
                    "{}: tensors {other} and {name} both map to {new}",
                    self.origin.display()
                )));
            }
            entries.insert(new, e);
        }
        Ok(Checkpoint { origin: self.origin, entries })
    }

    /// Stored tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    pub fn info(&self, name: &str) -> Option<TensorInfo> {
        self.entries.get(name).map(|e| e.info.clone())
    }

    /// A checkpoint holding exactly `specs` as random `dtype` weights in anonymous memory (no
    /// file): full-size benchmarks without a 32 GB download. Values are uniform with standard
    /// deviation 0.02 (a transformer's usual init scale), from a fixed `seed`. Filled on all cores.
    pub fn synthetic(label: &str, specs: &[ParamSpec], dtype: DType, seed: u64) -> Result<Checkpoint> {
        let total: usize = specs.iter().map(|p| p.shape.numel() * dtype.size()).sum();
        let mut map = memmap2::MmapMut::map_anon(total.max(1)).map_err(|e| Error::OutOfMemory {
            backend: "host".into(),
            bytes: total as u64,
            what: format!("synthetic weights for {label}: {e}"),
        })?;
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        let chunk = ((total / dtype.size()).div_ceil(threads).max(1)) * dtype.size();
        std::thread::scope(|scope| {
            for (i, part) in map.chunks_mut(chunk).enumerate() {
                scope.spawn(move || fill_uniform(part, dtype, seed.wrapping_add(i as u64)));
            }
        });
        let map =
            map.make_read_only().map_err(|e| Error::Input(format!("synthetic weights for {label}: {e}")))?;
        let path = PathBuf::from(format!("<synthetic {label}>"));
        let file = Arc::new(File { path, bytes: Box::new(map), data_start: 0 });
        let mut entries = BTreeMap::new();
        let mut at = 0;
        for p in specs {
            let end = at + p.shape.numel() * dtype.size();
            let info = TensorInfo { dtype: dtype.into(), shape: p.shape.clone() };
            entries.insert(p.name.clone(), Entry { file: file.clone(), info, begin: at, end });
            at = end;
        }
        Ok(Checkpoint { origin: file.path.clone(), entries })
    }

    /// Bytes of tensor data.
    pub fn total_bytes(&self) -> u64 {
        self.entries.values().map(|e| (e.end - e.begin) as u64).sum()
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| Error::Weights {
            component: self.origin.display().to_string(),
            problems: vec![format!("missing tensor {name}")],
        })
    }

    /// The stored little-endian bytes of a tensor (borrowed from a mapping or from memory, copied
    /// from a source that holds the file elsewhere).
    pub fn raw(&self, name: &str) -> Result<(TensorInfo, Cow<'_, [u8]>)> {
        let e = self.entry(name)?;
        let bytes = e.file.bytes.read((e.file.data_start + e.begin) as u64, e.end - e.begin)?;
        Ok((e.info.clone(), bytes))
    }

    /// A host f32 copy of a float tensor.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (info, bytes) = self.raw(name)?;
        Ok(self.float_dtype(name, &info)?.decode_f32(&bytes))
    }

    /// The float dtype of a tensor; a quantized weight's codes are an error naming it.
    fn float_dtype(&self, name: &str, info: &TensorInfo) -> Result<DType> {
        info.dtype.float().ok_or_else(|| Error::Weights {
            component: self.origin.display().to_string(),
            problems: vec![format!(
                "tensor {name} holds {} codes of a quantized weight, where a {} float tensor is expected",
                info.dtype.tag(),
                info.shape
            )],
        })
    }

    /// Uploads a float tensor to `backend` stored as `dtype` (converted on the host when it
    /// differs).
    pub fn load<B: Backend>(&self, backend: &B, name: &str, dtype: DType) -> Result<Tensor<B>> {
        let (info, bytes) = self.raw(name)?;
        let stored = self.float_dtype(name, &info)?;
        if stored == dtype {
            Tensor::from_bytes(backend, info.shape, dtype, &bytes)
        } else {
            Tensor::from_bytes(backend, info.shape, dtype, &dtype.encode_f32(&stored.decode_f32(&bytes)))
        }
    }

    /// Checks that the checkpoint holds exactly `expected` (names and shapes); names in `ignore`
    /// may be present and are not used. A quantized weight counts as its dense matrix
    /// (`crate::quant::logical_shape`), with its scale tensors. Reports every problem at once.
    pub fn check_exact(&self, component: &str, expected: &[ParamSpec], ignore: &[&str]) -> Result<()> {
        let mut problems = Vec::new();
        let want: HashMap<&str, &Shape> = expected.iter().map(|p| (p.name.as_str(), &p.shape)).collect();
        for p in expected {
            match self.entries.get(&p.name) {
                None => problems.push(format!("missing tensor {} {}", p.name, p.shape)),
                Some(e) if crate::quant::logical_shape(&e.info) != p.shape => problems.push(format!(
                    "tensor {} has shape {}, expected {}",
                    p.name,
                    crate::quant::logical_shape(&e.info),
                    p.shape
                )),
                Some(_) => {}
            }
        }
        for name in self.entries.keys() {
            if !want.contains_key(name.as_str())
                && !ignore.contains(&name.as_str())
                && !crate::quant::is_quantized_companion(name, |n| self.info(n))
            {
                problems.push(format!("unexpected tensor {name}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Weights { component: format!("{component} ({})", self.origin.display()), problems })
        }
    }
}

// ---- writing ----------------------------------------------------------------------------------

/// Writes one safetensors file whose tensors are streamed in order after the header, so a large
/// shard never has to sit in memory.
pub struct ShardWriter {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    pending: std::collections::VecDeque<(String, u64)>,
}

impl ShardWriter {
    /// Creates `path` with a header for `tensors` (written in this order).
    pub fn create<D: Copy + Into<StoredDType>>(
        path: &Path,
        tensors: &[(String, D, Shape)],
    ) -> Result<ShardWriter> {
        Self::create_with_metadata(path, tensors, &BTreeMap::new())
    }

    /// [`ShardWriter::create`] with a `__metadata__` string map in the header.
    pub fn create_with_metadata<D: Copy + Into<StoredDType>>(
        path: &Path,
        tensors: &[(String, D, Shape)],
        metadata: &BTreeMap<String, String>,
    ) -> Result<ShardWriter> {
        let pending = tensors
            .iter()
            .map(|(n, d, s)| (n.clone(), s.numel() as u64 * (*d).into().size() as u64))
            .collect();
        let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
        out.write_all(&safetensors_header(tensors, metadata)).map_err(|e| Error::io(path, e))?;
        Ok(ShardWriter { path: path.to_path_buf(), out, pending })
    }

    /// Appends part of the next tensor's bytes; a tensor may arrive in several pieces.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some((_, left)) = self.pending.front_mut() else {
                return Err(Error::Input(format!(
                    "{}: more bytes written than the header declares",
                    self.path.display()
                )));
            };
            let n = (*left).min(rest.len() as u64) as usize;
            self.out.write_all(&rest[..n]).map_err(|e| Error::io(&self.path, e))?;
            *left -= n as u64;
            rest = &rest[n..];
            if *left == 0 {
                self.pending.pop_front();
            }
        }
        Ok(())
    }

    /// Checks that every declared byte was written and flushes.
    pub fn finish(mut self) -> Result<()> {
        self.pending.retain(|(_, left)| *left > 0);
        if let Some((name, left)) = self.pending.front() {
            return Err(Error::Input(format!(
                "{}: tensor {name} is missing {left} bytes",
                self.path.display()
            )));
        }
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// The start of a safetensors file holding `tensors` in this order: the header's length and the
/// header, padded so that the data section that follows is 8-byte aligned.
pub fn safetensors_header<D: Copy + Into<StoredDType>>(
    tensors: &[(String, D, Shape)],
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut off = 0u64;
    for (name, dtype, shape) in tensors {
        let dtype: StoredDType = (*dtype).into();
        let bytes = shape.numel() as u64 * dtype.size() as u64;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.tag(), "shape": shape.dims(), "data_offsets": [off, off + bytes]}),
        );
        off += bytes;
    }
    let mut text = serde_json::to_string(&Value::Object(header)).expect("JSON of plain values");
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// Writes a whole safetensors file from in-memory tensors (sorted by name).
pub fn write_safetensors<D: Copy + Into<StoredDType>>(
    path: &Path,
    tensors: &[(String, D, Shape, Vec<u8>)],
) -> Result<()> {
    let mut sorted: Vec<&(String, D, Shape, Vec<u8>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let header: Vec<(String, StoredDType, Shape)> =
        sorted.iter().map(|t| (t.0.clone(), t.1.into(), t.2.clone())).collect();
    let mut w = ShardWriter::create(path, &header)?;
    for t in sorted {
        let dtype: StoredDType = t.1.into();
        if t.3.len() != t.2.numel() * dtype.size() {
            return Err(Error::shape(
                "write_safetensors",
                format!("tensor {}: {} bytes for {} {}", t.0, t.3.len(), dtype, t.2),
            ));
        }
        w.write(&t.3)?;
    }
    w.finish()
}

/// Writes a diffusers/transformers `*.safetensors.index.json` for shards already written.
pub fn write_index(path: &Path, weight_map: &BTreeMap<String, String>, total_size: u64) -> Result<()> {
    let v = serde_json::json!({"metadata": {"total_size": total_size}, "weight_map": weight_map});
    std::fs::write(path, serde_json::to_string_pretty(&v).expect("JSON of plain values"))
        .map_err(|e| Error::io(path, e))
}

// ---- key spellings ----------------------------------------------------------------------------

/// The DiT's original keys (`double_blocks.N.img_attn_qkv.weight`) → diffusers keys
/// (`double_blocks.N.attn.img_attn_qkv.weight`); diffusers keys are unchanged.
pub fn dit_key_to_diffusers(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() >= 3 && parts[0] == "double_blocks" {
        let is_attn = ["img_attn_", "txt_attn_"].iter().any(|p| parts[2].starts_with(p));
        if is_attn {
            return format!("{}.{}.attn.{}", parts[0], parts[1], parts[2..].join("."));
        }
    }
    name.to_string()
}

/// The original Wan 2.1 VAE keys → diffusers `AutoencoderKLWan` keys (model-spec §4.7);
/// diffusers keys are unchanged. `num_res_blocks` fixes the decoder's per-block layout (each
/// decoder up block holds `num_res_blocks + 1` residual blocks then, except the last, an
/// upsampler).
pub fn wan_vae_key_to_diffusers(name: &str, num_res_blocks: usize) -> String {
    let resnet = |rest: &str| -> String {
        let map = [
            ("residual.0.", "norm1."),
            ("residual.2.", "conv1."),
            ("residual.3.", "norm2."),
            ("residual.6.", "conv2."),
            ("shortcut.", "conv_shortcut."),
        ];
        for (a, b) in map {
            if let Some(r) = rest.strip_prefix(a) {
                return format!("{b}{r}");
            }
        }
        rest.to_string()
    };
    let p: Vec<&str> = name.splitn(4, '.').collect();
    match p[..] {
        ["conv1", ..] => name.replacen("conv1", "quant_conv", 1),
        ["conv2", ..] => name.replacen("conv2", "post_quant_conv", 1),
        [side @ ("encoder" | "decoder"), "conv1", ..] => format!("{side}.conv_in.{}", p[2..].join(".")),
        [side @ ("encoder" | "decoder"), "head", "0", rest] => format!("{side}.norm_out.{rest}"),
        [side @ ("encoder" | "decoder"), "head", "2", rest] => format!("{side}.conv_out.{rest}"),
        [side @ ("encoder" | "decoder"), "middle", i, rest] => match i {
            "0" | "2" => {
                format!("{side}.mid_block.resnets.{}.{}", if i == "0" { 0 } else { 1 }, resnet(rest))
            }
            _ => format!("{side}.mid_block.attentions.0.{rest}"),
        },
        ["encoder", "downsamples", k, rest] => format!("encoder.down_blocks.{k}.{}", resnet(rest)),
        ["decoder", "upsamples", k, rest] => {
            let Ok(k) = k.parse::<usize>() else { return name.to_string() };
            let per = num_res_blocks + 2; // resnets + upsampler per up block (the last has none)
            let (block, j) = (k / per, k % per);
            if j <= num_res_blocks {
                format!("decoder.up_blocks.{block}.resnets.{j}.{}", resnet(rest))
            } else {
                format!("decoder.up_blocks.{block}.upsamplers.0.{rest}")
            }
        }
        _ => name.to_string(),
    }
}
