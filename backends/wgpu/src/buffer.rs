//! Tensors in device memory: [`WgpuBuffer`] (one pooled buffer, or chunks past `max_buffer_size`),
//! the views ops bind ([`Span`], [`Bind`]) and the buffers the ops allocate.

use crate::pool::{Block, Kind};
use crate::WgpuBackend;
use joyrt_core::{Backend, DType, Error, Result, Tensor};

/// A device buffer holding one tensor.
///
/// A tensor is one device buffer up to `max_buffer_size`, however large its binding would be:
/// ops bind it in windows within `max_storage_buffer_binding_size` (see `split.rs`). Past
/// `max_buffer_size` it is held in several buffers of one binding each; only the kernels that run
/// over binding chunks (`linear`'s weight, `gather_rows`' table) accept that, and every other op
/// refuses it with an error that says so.
///
/// Binding chunks (`chunk`) split at word boundaries, not rows: the upload path does not know the
/// row length, so those kernels take the element range each chunk holds and handle rows that
/// straddle two chunks.
pub struct WgpuBuffer {
    pub(crate) blocks: Vec<Block>,
    /// Elements per block (all but the last).
    pub(crate) block_elems: usize,
    /// Elements per binding chunk: the binding limit's worth, so chunk offsets stay aligned.
    pub(crate) chunk_elems: usize,
    pub(crate) len: usize,
    pub(crate) dtype: DType,
}

impl WgpuBuffer {
    /// The number of binding-sized chunks of this tensor (more than one past the binding limit).
    pub fn chunk_count(&self) -> usize {
        self.len.div_ceil(self.chunk_elems).max(1)
    }

    /// The number of device buffers holding this tensor (more than one only past
    /// `max_buffer_size`).
    pub fn buffer_count(&self) -> usize {
        self.blocks.len()
    }

    /// Binding chunk `j` and the element range `[e0, e1)` of the tensor it holds.
    pub(crate) fn chunk(&self, j: usize) -> (Bind<'_>, usize, usize) {
        let e0 = j * self.chunk_elems;
        let e1 = (e0 + self.chunk_elems).min(self.len);
        if self.blocks.len() == 1 {
            (Span::of(&self.blocks[0], self.len, self.dtype).window(e0, e1).0, e0, e1)
        } else {
            (self.blocks[j].bind(), e0, e1)
        }
    }

    fn bytes(&self) -> u64 {
        (self.len * self.dtype.size()) as u64
    }
}

/// A bound range of a buffer: bytes `[offset, offset + size)`.
#[derive(Clone, Copy)]
pub(crate) struct Bind<'a> {
    pub(crate) buf: &'a wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// An input of a dispatch: a buffer and the dtype its loader decodes.
pub(crate) type Input<'a> = (Bind<'a>, DType);

impl Block {
    /// The whole block as bound by a dispatch.
    pub(crate) fn bind(&self) -> Bind<'_> {
        Bind { buf: self.buffer(), offset: 0, size: self.size() }
    }
}

/// `len` elements of `dtype` in one device buffer, which may be larger than one binding: what a
/// split dispatch binds in windows.
#[derive(Clone, Copy)]
pub(crate) struct Span<'a> {
    block: &'a Block,
    pub(crate) len: usize,
    pub(crate) dtype: DType,
}

impl<'a> Span<'a> {
    pub(crate) fn of(block: &'a Block, len: usize, dtype: DType) -> Span<'a> {
        Span { block, len, dtype }
    }

    /// An f32 work buffer of `len` elements (or, for the pack pass, `len` u32 words).
    pub(crate) fn f32(block: &'a Block, len: usize) -> Span<'a> {
        Span::of(block, len, DType::F32)
    }

    pub(crate) fn bytes(&self) -> u64 {
        (self.len * self.dtype.size()) as u64
    }

    /// Elements `[e0, e1)` (`e1` clamped to the span) as one binding, rounded up to whole words.
    /// The caller keeps `e0`'s byte offset a multiple of the offset alignment (`split.rs`).
    pub(crate) fn window(&self, e0: usize, e1: usize) -> Input<'a> {
        let s = self.dtype.size() as u64;
        let e1 = e1.min(self.len).max(e0);
        // An empty window binds the first word (a binding is never empty); kernels read none of it.
        let offset = if e1 > e0 { e0 as u64 * s } else { 0 };
        let size = ((e1 - e0) as u64 * s).div_ceil(4).max(1) * 4;
        (Bind { buf: self.block.buffer(), offset, size }, self.dtype)
    }
}

impl WgpuBackend {
    /// A pooled storage buffer of `bytes` (rounded up to a word), within `max_buffer_size`;
    /// bindings of it are checked against the binding limit where they are made.
    pub(crate) fn storage(&self, bytes: u64, what: &str) -> Result<Block> {
        let gpu = self.gpu();
        let size = bytes.max(4).div_ceil(4) * 4;
        gpu.check_buffer(size, what)?;
        let b = self.inner.pool.take(Kind::Storage, size);
        if let Err(e) = gpu.check(what) {
            // Most likely this buffer's creation (out of memory): keep it out of the free lists.
            b.discard();
            return Err(e);
        }
        Ok(b)
    }

    /// `block` as a tensor of `len` elements of `dtype`.
    pub(crate) fn wrap(&self, block: Block, len: usize, dtype: DType) -> WgpuBuffer {
        let chunk_elems = (self.gpu().max_binding / dtype.size() as u64) as usize;
        WgpuBuffer { blocks: vec![block], block_elems: len.max(1), chunk_elems, len, dtype }
    }

    /// Device memory for a tensor of `len` elements: one buffer, or binding-sized chunks past
    /// `max_buffer_size`.
    pub(crate) fn tensor(&self, dtype: DType, len: usize, what: &str) -> Result<WgpuBuffer> {
        let gpu = self.gpu();
        let bytes = (len * dtype.size()) as u64;
        if len > u32::MAX as usize {
            return Err(Error::backend(
                self.name(),
                format!("{what}: {len} elements exceed the kernels' 32-bit element indices"),
            ));
        }
        if bytes <= gpu.max_buffer {
            return Ok(self.wrap(self.storage(bytes, what)?, len, dtype));
        }
        // The binding limit is a multiple of the offset alignment (device.rs), so a chunk holds
        // whole words and a packed 16-bit chunk starts at an even element.
        let chunk_elems = (gpu.max_binding / dtype.size() as u64) as usize;
        let blocks = (0..len.div_ceil(chunk_elems))
            .map(|j| {
                let n = (len - j * chunk_elems).min(chunk_elems);
                self.storage((n * dtype.size()) as u64, what)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WgpuBuffer { blocks, block_elems: chunk_elems, chunk_elems, len, dtype })
    }

    /// A tensor's single buffer as a [`Span`]; a tensor held in several buffers (past
    /// `max_buffer_size`) is refused with the reason.
    pub(crate) fn span<'a>(&self, t: &'a Tensor<Self>, what: &str) -> Result<Span<'a>> {
        let b = t.buffer();
        if b.blocks.len() > 1 {
            return Err(Error::backend(
                self.name(),
                format!(
                    "{what}: a tensor of {} bytes is held in {} buffers (over the max_buffer_size of {} \
                     bytes); only linear weights and gather_rows tables may be that large",
                    b.bytes(),
                    b.blocks.len(),
                    self.gpu().max_buffer
                ),
            ));
        }
        Ok(Span::of(&b.blocks[0], b.len, b.dtype))
    }

    /// An operand bound whole (one that is not split): refused past the binding limit.
    pub(crate) fn inp<'a>(&self, t: &'a Tensor<Self>, what: &str) -> Result<Input<'a>> {
        self.whole(self.span(t, what)?, what)
    }

    /// `s` as one binding, refused with the numbers past the binding limit.
    pub(crate) fn whole<'a>(&self, s: Span<'a>, what: &str) -> Result<Input<'a>> {
        self.gpu().check_binding(s.bytes(), &format!("{what} (an operand this op binds whole)"))?;
        Ok(s.window(0, s.len))
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
