//! Streamed weights (`Backend::to_host`, `upload_from_host`): a host copy is the buffer's bytes,
//! and its upload an ordinary `queue.write_buffer` into a pooled buffer. Every dispatch is
//! submitted to the one queue as it is made, and a write lands before the next submission, so
//! the copy of the next block is ordered after the dispatches already queued (which may still
//! read a recycled buffer) and before the ones that read it: no fence is needed
//! (`await_uploads` keeps the trait's no-op). The host side of the copy (wgpu's staging memcpy)
//! runs while the GPU works through the queue.

use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::{Backend, DType, Result};

/// A tensor's bytes in host memory, with what its upload needs.
pub struct WgpuHostBuffer {
    dtype: DType,
    bytes: Vec<u8>,
}

impl WgpuBackend {
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn buffer_to_host(&self, b: &WgpuBuffer) -> Result<WgpuHostBuffer> {
        Ok(WgpuHostBuffer { dtype: b.dtype, bytes: pollster::block_on(self.read_back(b))? })
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn buffer_to_host(&self, _: &WgpuBuffer) -> Result<WgpuHostBuffer> {
        Err(joyrt_core::Error::backend(
            self.name(),
            "streamed weights need a blocking read back, which a browser does not allow",
        ))
    }

    pub(crate) fn upload_host(&self, h: &WgpuHostBuffer) -> Result<WgpuBuffer> {
        self.upload(h.dtype, &h.bytes)
    }
}
