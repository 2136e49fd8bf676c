//! Where a safetensors file's bytes come from: a memory mapping natively; in a browser, memory the
//! page handed over (a generated model, a fetched or picked file). The checkpoint reads the header
//! once and then each tensor's range when that tensor is loaded, so a source that is not in wasm
//! memory (a file the page holds) is copied in one tensor at a time.

use crate::backend::{MaybeSend, MaybeSync};
use crate::{Error, Result};
use std::borrow::Cow;

/// The bytes of one file, read by range.
pub trait ByteSource: MaybeSend + MaybeSync {
    /// The file's size in bytes.
    fn size(&self) -> u64;
    /// `len` bytes from `offset`: borrowed when the source holds them in addressable memory, a
    /// copy otherwise. A range past the end is an error.
    fn read(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>>;
}

/// A safetensors file that is not on disk: its path (named in messages) and its bytes.
pub type SourceFile = (std::path::PathBuf, Box<dyn ByteSource>);

/// The range `[offset, offset + len)` of a `size`-byte source as `usize` bounds, or an error.
pub fn checked_range(size: u64, offset: u64, len: usize) -> Result<std::ops::Range<usize>> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(offset as usize..end as usize),
        _ => Err(Error::Input(format!(
            "read of {len} bytes at {offset} is past the end of a {size}-byte file"
        ))),
    }
}

impl ByteSource for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(&self[checked_range(self.size(), offset, len)?]))
    }
}

impl ByteSource for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().size()
    }
    fn read(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        self.as_slice().read(offset, len)
    }
}

impl ByteSource for memmap2::Mmap {
    fn size(&self) -> u64 {
        self[..].size()
    }
    fn read(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        self[..].read(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ranges_and_refuses_past_the_end() {
        let v: Vec<u8> = (0..10).collect();
        assert_eq!(&*v.read(2, 3).unwrap(), &[2, 3, 4]);
        assert_eq!(&*v.read(10, 0).unwrap(), &[] as &[u8]);
        let e = v.read(8, 3).unwrap_err().to_string();
        assert!(e.contains("past the end of a 10-byte file"), "{e}");
        assert!(v.read(u64::MAX, 2).is_err());
    }
}
