//! Reading the files of a model folder: only regular files, and small files with a size cap.
//!
//! The kind of file is checked by name before it is opened: opening a FIFO for reading blocks
//! until a writer appears, and a character device such as `/dev/zero` never ends.

use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Largest config or index JSON joyrt reads: 64 MiB. The released model's largest is the DiT's
/// shard index, about 100 KB; an index costs about 100 bytes per tensor, so this admits
/// checkpoints of half a million tensors while a parsed file still fits in well under 1 GB.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// Largest `tokenizer.json` joyrt reads: 256 MiB. Qwen's is 11 MB and the largest published
/// vocabularies (256k-token multilingual BPEs) about 35 MB, so this is 7× headroom while
/// refusing a device or a runaway file before it is read.
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// What a non-regular file is, for the error message.
fn kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// The size of `path` if it is a regular file (symbolic links followed); an error naming what it
/// is otherwise. Nothing is opened.
pub fn regular_file_len(path: &Path) -> Result<u64> {
    let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !m.is_file() {
        return Err(Error::Input(format!(
            "{} is {}, not a regular file",
            path.display(),
            kind(m.file_type())
        )));
    }
    Ok(m.len())
}

/// The contents of the regular file `path`, refused when larger than `cap` bytes (also when it
/// grows past the cap while being read).
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let too_big =
        |n: u64| Error::Input(format!("{} is {n} bytes, more than the {cap}-byte limit", path.display()));
    let len = regular_file_len(path)?;
    if len > cap {
        return Err(too_big(len));
    }
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(cap + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_devices_and_big_files_are_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("joyrt-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(read_capped(&dir, 10).unwrap_err().to_string().contains("is a directory"));
        #[cfg(unix)]
        assert!(read_capped(Path::new("/dev/zero"), 10).unwrap_err().to_string().contains("is a device"));
        let f = dir.join("big.json");
        std::fs::write(&f, [b' '; 11]).unwrap();
        assert!(read_capped(&f, 10).unwrap_err().to_string().contains("10-byte limit"));
        assert_eq!(read_capped(&f, 11).unwrap().len(), 11);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
