//! Reading the golden fixtures of `tests/fixtures` (see its README for every file and key).

use std::path::{Path, PathBuf};

/// A golden safetensors file, read whole (fixtures are small). Any dtype the oracle wrote is
/// readable: floats widen to f32, integers to i64.
pub struct Golden {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Golden {
    pub fn open(path: &Path) -> Result<Golden, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Golden { path: path.to_path_buf(), bytes })
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'_>, String> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).map_err(|e| e.to_string())?;
        st.tensor(name).map_err(|e| format!("{}: tensor {name}: {e}", self.path.display()))
    }

    pub fn shape(&self, name: &str) -> Result<Vec<usize>, String> {
        Ok(self.view(name)?.shape().to_vec())
    }

    /// A float tensor as f32.
    pub fn f32(&self, name: &str) -> Result<Vec<f32>, String> {
        use safetensors::Dtype;
        let v = self.view(name)?;
        let d = v.data();
        match v.dtype() {
            Dtype::F32 => Ok(joyrt_core::DType::F32.decode_f32(d)),
            Dtype::BF16 => Ok(joyrt_core::DType::BF16.decode_f32(d)),
            Dtype::F16 => Ok(joyrt_core::DType::F16.decode_f32(d)),
            other => Err(format!("{}: tensor {name} is {other:?}, not a float", self.path.display())),
        }
    }

    /// An integer tensor as i64.
    pub fn i64(&self, name: &str) -> Result<Vec<i64>, String> {
        use safetensors::Dtype;
        let v = self.view(name)?;
        let d = v.data();
        match v.dtype() {
            Dtype::I64 => Ok(d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
            Dtype::I32 => {
                Ok(d.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect())
            }
            Dtype::U8 => Ok(d.iter().map(|&b| b as i64).collect()),
            other => Err(format!("{}: tensor {name} is {other:?}, not an integer", self.path.display())),
        }
    }

    /// A uint8 tensor's bytes.
    pub fn u8(&self, name: &str) -> Result<Vec<u8>, String> {
        let v = self.view(name)?;
        if v.dtype() != safetensors::Dtype::U8 {
            return Err(format!("{}: tensor {name} is {:?}, not u8", self.path.display(), v.dtype()));
        }
        Ok(v.data().to_vec())
    }
}

/// A JSON fixture.
pub fn json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The real Qwen3 `tokenizer.json`, stored gzip-compressed.
pub fn qwen3_tokenizer_json(dir: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let p = dir.join("tokenizer/qwen3_tokenizer.json.gz");
    let f = std::fs::File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f).read_to_end(&mut out).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(out)
}

/// A bucket table stored as a JSON list of `[height, width]` pairs.
pub fn buckets(v: &serde_json::Value) -> joyrt_core::image::Buckets {
    let pair =
        |p: &serde_json::Value| (p[0].as_u64().unwrap_or(0) as usize, p[1].as_u64().unwrap_or(0) as usize);
    joyrt_core::image::Buckets(v.as_array().into_iter().flatten().map(pair).collect())
}
