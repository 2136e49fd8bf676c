//! Compiled modules on disk, so a run does not compile again what an earlier run compiled (NVRTC
//! takes seconds per family and dtype specialisation).
//!
//! An entry is found by a hash of its [`CacheKey`] (the source, the NVRTC options, which name the
//! architecture, and the NVRTC version) and trusted only after it checks out whole: the format's
//! magic, the section lengths against the file's, a checksum over everything, and the full key
//! stored in the entry against the one wanted (so a hash collision or an entry of another source
//! is a miss, not a wrong kernel). Anything else is compiled again and the entry replaced.
//! Entries are written to a temporary file and renamed into place, so a reader never sees half
//! of one.

use crate::nvrtc::Compiled;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The first bytes of every entry; the digit is the format's version.
const MAGIC: &[u8; 16] = b"joyrt-cubin-v1\n\0";
/// The magic, then the key, log and cubin lengths and the checksum, each a little-endian u64.
const HEADER_BYTES: usize = MAGIC.len() + 4 * 8;

/// What one compiled module depends on.
#[derive(Clone, Copy, Debug)]
pub struct CacheKey<'a> {
    /// The translation unit's name (`gemm.cu`): part of the file name, for people reading the
    /// folder; also in the compile log.
    pub file: &'a str,
    pub source: &'a str,
    /// Every NVRTC option, the architecture among them.
    pub options: &'a [String],
    pub nvrtc_version: (i32, i32),
}

impl CacheKey<'_> {
    /// The key as the bytes an entry stores and is compared by.
    fn bytes(&self) -> Vec<u8> {
        let (major, minor) = self.nvrtc_version;
        let mut k = format!("file {}\nnvrtc {major}.{minor}\n", self.file);
        for o in self.options {
            k += &format!("option {o}\n");
        }
        k += "source\n";
        k += self.source;
        k.into_bytes()
    }

    /// The entry's file name: the unit's stem and the key's hash.
    fn file_name(&self) -> String {
        let stem = self.file.rsplit_once('.').map_or(self.file, |(s, _)| s);
        let stem: String = stem.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        format!("{stem}-{:016x}.cubin", fnv1a(&[&self.bytes()]))
    }
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit(Compiled),
    /// No entry for the key.
    Miss,
    /// An entry that is not a whole, valid entry of this key (why): to be compiled again.
    Invalid(String),
}

/// A folder of compiled modules.
#[derive(Clone, Debug)]
pub struct CubinCache {
    dir: PathBuf,
}

impl CubinCache {
    pub fn new(dir: impl Into<PathBuf>) -> CubinCache {
        CubinCache { dir: dir.into() }
    }

    /// `cuda-kernels/` in the joyrt cache folder ([`joyrt_core::cache_dir`]); none where
    /// `JOYRT_CUDA_CUBIN_CACHE=0` turns the cache off.
    pub fn default_location() -> Option<CubinCache> {
        if std::env::var("JOYRT_CUDA_CUBIN_CACHE").is_ok_and(|v| v == "0") {
            return None;
        }
        Some(CubinCache::new(joyrt_core::cache_dir().join("cuda-kernels")))
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// The module compiled for `key`, if a valid entry holds it.
    pub fn get(&self, key: &CacheKey) -> Lookup {
        match std::fs::read(self.path(key)) {
            Ok(bytes) => decode(&bytes, &key.bytes()).map_or_else(Lookup::Invalid, Lookup::Hit),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lookup::Miss,
            Err(e) => Lookup::Invalid(format!("{}: {e}", self.path(key).display())),
        }
    }

    /// Stores `compiled` as the module of `key`, replacing any entry, atomically.
    pub fn put(&self, key: &CacheKey, compiled: &Compiled) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(key);
        let tmp = temporary_beside(&path);
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&encode(&key.bytes(), compiled)).and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// A file name beside `path` that no other writer (thread or process) uses.
fn temporary_beside(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

fn encode(key: &[u8], compiled: &Compiled) -> Vec<u8> {
    let log = compiled.log.as_bytes();
    let mut out = Vec::with_capacity(HEADER_BYTES + key.len() + log.len() + compiled.cubin.len());
    out.extend_from_slice(MAGIC);
    for len in [key.len(), log.len(), compiled.cubin.len()] {
        out.extend_from_slice(&(len as u64).to_le_bytes());
    }
    out.extend_from_slice(&fnv1a(&[key, log, &compiled.cubin]).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(log);
    out.extend_from_slice(&compiled.cubin);
    out
}

/// The module an entry holds, if `bytes` is a whole entry of `key`; else why not.
fn decode(bytes: &[u8], key: &[u8]) -> Result<Compiled, String> {
    if bytes.len() < HEADER_BYTES || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a joyrt cubin cache entry of this version (magic)".into());
    }
    let word = |i: usize| {
        let at = MAGIC.len() + 8 * i;
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    };
    let lens = [word(0), word(1), word(2)];
    let body = &bytes[HEADER_BYTES..];
    if lens.iter().try_fold(0u64, |a, &l| a.checked_add(l)) != Some(body.len() as u64) {
        return Err(format!("{} bytes after the header, the header says {lens:?}", body.len()));
    }
    let (k, rest) = body.split_at(lens[0] as usize);
    let (log, cubin) = rest.split_at(lens[1] as usize);
    if fnv1a(&[k, log, cubin]) != word(3) {
        return Err("checksum mismatch".into());
    }
    if k != key {
        return Err("an entry of another key (source, options or NVRTC version)".into());
    }
    let log = String::from_utf8(log.to_vec()).map_err(|_| "the log is not UTF-8".to_string())?;
    Ok(Compiled { cubin: cubin.to_vec(), log })
}

/// FNV-1a, 64 bits, over `parts` in order: enough to find accidental damage and to spread file
/// names (entries are compared by their whole key, so no collision is ever trusted).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> CubinCache {
        let dir = std::env::temp_dir().join(format!("joyrt-cubin-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        CubinCache::new(dir)
    }

    fn options(arch: &str) -> Vec<String> {
        vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()]
    }

    fn compiled() -> Compiled {
        Compiled {
            cubin: (0..=255u8).cycle().take(5000).collect(),
            log: "ptxas info : Used 40 registers".into(),
        }
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // The FNV-1a test vectors: "" and "a".
        assert_eq!(fnv1a(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"abc"]));
    }

    #[test]
    fn a_stored_module_is_found_and_only_by_its_own_key() {
        let cache = scratch("hit");
        let sm80 = options("sm_80");
        let key = CacheKey { file: "gemm.cu", source: "kernel A", options: &sm80, nvrtc_version: (12, 9) };
        assert_eq!(cache.get(&key), Lookup::Miss);
        cache.put(&key, &compiled()).unwrap();
        assert_eq!(cache.get(&key), Lookup::Hit(compiled()));
        let sm90 = options("sm_90a");
        for other in [
            CacheKey { source: "kernel B", ..key },
            CacheKey { options: &sm90, ..key },
            CacheKey { nvrtc_version: (13, 0), ..key },
        ] {
            assert_eq!(cache.get(&other), Lookup::Miss, "{other:?}");
        }
        assert!(cache.path(&key).file_name().unwrap().to_string_lossy().starts_with("gemm-"));
        let _ = std::fs::remove_dir_all(&cache.dir);
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_refused_then_replaced() {
        let cache = scratch("corrupt");
        let sm80 = options("sm_80");
        let key = CacheKey { file: "norm.cu", source: "kernel", options: &sm80, nvrtc_version: (12, 9) };
        cache.put(&key, &compiled()).unwrap();
        let path = cache.path(&key);
        let good = std::fs::read(&path).unwrap();
        let invalid = |bytes: &[u8], why: &str| {
            std::fs::write(&path, bytes).unwrap();
            match cache.get(&key) {
                Lookup::Invalid(m) => assert!(m.contains(why), "{m}"),
                other => panic!("{why}: {other:?}"),
            }
        };
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        invalid(&flipped, "checksum");
        invalid(&good[..good.len() - 1], "header says");
        invalid(&good[..10], "magic");
        let mut magic = good.clone();
        magic[0] = b'J';
        invalid(&magic, "magic");
        // A valid entry of another key under this key's name (a collision, or a renamed file).
        let other = encode(&CacheKey { source: "other kernel", ..key }.bytes(), &compiled());
        invalid(&other, "another key");
        // Writing again replaces what was there, and leaves no temporary file.
        cache.put(&key, &compiled()).unwrap();
        assert_eq!(cache.get(&key), Lookup::Hit(compiled()));
        let names: Vec<_> = std::fs::read_dir(&cache.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let _ = std::fs::remove_dir_all(&cache.dir);
    }
}
