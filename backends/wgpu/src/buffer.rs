//! Tensors in device memory: [`WgpuBuffer`] (one pooled buffer, or chunks past the binding
//! limit) and the buffers the ops bind.

use crate::pool::{Block, Kind};
use crate::WgpuBackend;
use joyrt_core::{Backend, DType, Error, Result, Tensor};

/// A device buffer holding one tensor.
///
/// A tensor larger than the storage binding limit is held in several chunks, each within the
/// limit, of `chunk_elems` elements (the last one shorter). Chunks split at word boundaries, not
/// rows: the upload path does not know the row length, so the kernels that accept chunked inputs
/// (`linear`'s weight, `gather_rows`' table) take the element range each chunk holds and handle rows
/// that straddle two chunks. Every other op refuses a chunked input with an error that says so.
pub struct WgpuBuffer {
    pub(crate) chunks: Vec<Block>,
    pub(crate) chunk_elems: usize,
    pub(crate) len: usize,
    pub(crate) dtype: DType,
}

impl WgpuBuffer {
    /// The number of device buffers holding this tensor (more than one only past the binding limit).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// A tensor of `len` elements of `dtype` in one buffer.
    pub(crate) fn whole(block: Block, len: usize, dtype: DType) -> WgpuBuffer {
        WgpuBuffer { chunks: vec![block], chunk_elems: len.max(1), len, dtype }
    }

    /// Chunk `j` and the element range `[e0, e1)` of the tensor it holds.
    pub(crate) fn chunk(&self, j: usize) -> (&Block, usize, usize) {
        let e0 = j * self.chunk_elems;
        (&self.chunks[j], e0, (e0 + self.chunk_elems).min(self.len))
    }
}

/// A bound range of a buffer: bytes `[0, size)`.
#[derive(Clone, Copy)]
pub(crate) struct Bind<'a> {
    pub(crate) buf: &'a wgpu::Buffer,
    pub(crate) size: u64,
}

/// An input of a dispatch: a buffer and the dtype its loader decodes.
pub(crate) type Input<'a> = (Bind<'a>, DType);

impl Block {
    /// The whole block as bound by a dispatch.
    pub(crate) fn bind(&self) -> Bind<'_> {
        Bind { buf: self.buffer(), size: self.size() }
    }
}

impl WgpuBackend {
    /// A pooled storage buffer of `bytes` (rounded up to a word), within the binding limit.
    pub(crate) fn storage(&self, bytes: u64, what: &str) -> Result<Block> {
        let gpu = self.gpu();
        let size = bytes.max(4).div_ceil(4) * 4;
        gpu.check_size(size, what)?;
        let b = self.inner.pool.take(Kind::Storage, size);
        if let Err(e) = gpu.check(what) {
            // Most likely this buffer's creation (out of memory): keep it out of the free lists.
            b.discard();
            return Err(e);
        }
        Ok(b)
    }

    /// Device memory for a tensor of `len` elements: one buffer, or chunks past the binding limit.
    pub(crate) fn tensor(&self, dtype: DType, len: usize, what: &str) -> Result<WgpuBuffer> {
        let bytes = (len * dtype.size()) as u64;
        let max_binding = self.gpu().max_binding;
        if bytes <= max_binding {
            return Ok(WgpuBuffer::whole(self.storage(bytes, what)?, len, dtype));
        }
        if len > u32::MAX as usize {
            return Err(Error::backend(
                self.name(),
                format!("{what}: {len} elements exceed the kernels' 32-bit element indices"),
            ));
        }
        // Whole words per chunk, so a packed 16-bit chunk starts at an even element.
        let chunk_bytes = max_binding / 4 * 4;
        let chunk_elems = (chunk_bytes / dtype.size() as u64) as usize;
        let chunks = (0..len.div_ceil(chunk_elems))
            .map(|j| {
                let n = (len - j * chunk_elems).min(chunk_elems);
                self.storage((n * dtype.size()) as u64, what)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WgpuBuffer { chunks, chunk_elems, len, dtype })
    }

    /// The single buffer of an op's input; a chunked tensor is refused with the reason.
    pub(crate) fn inp<'a>(&self, t: &'a Tensor<Self>, op: &str) -> Result<Input<'a>> {
        let b = t.buffer();
        if b.chunks.len() > 1 {
            return Err(Error::backend(
                self.name(),
                format!(
                    "{op}: an input of {} bytes is split into {} chunks (over the max_storage_buffer_binding_size \
                     of {} bytes); only linear weights and gather_rows tables may be that large",
                    b.len * b.dtype.size(),
                    b.chunks.len(),
                    self.gpu().max_binding
                ),
            ));
        }
        Ok((b.chunks[0].bind(), b.dtype))
    }

    /// An f32 work buffer of `n` elements.
    pub(crate) fn f32_buf(&self, n: usize) -> Result<Block> {
        self.storage(4 * n as u64, "f32 work buffer")
    }

    /// A buffer holding `v` (index lists, gather weights as f32 bits).
    pub(crate) fn u32_buf(&self, v: &[u32]) -> Result<Block> {
        let b = self.storage(4 * v.len() as u64, "index buffer")?;
        if !v.is_empty() {
            self.gpu().queue.write_buffer(b.buffer(), 0, bytemuck::cast_slice(v));
        }
        Ok(b)
    }
}
