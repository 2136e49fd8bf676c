//! Streamed weights (`Backend::to_host`, `upload_from_host`, `await_uploads`). On a GPU a host
//! copy is page-locked memory, and an upload runs on the copy stream: it waits for an event
//! recorded on the compute stream when it is issued (its destination comes from the stream-ordered
//! pool, which may hand out memory that kernels queued before still read), and records an event
//! that `await_uploads` makes the compute stream wait for. Between the two, the copy runs beside
//! the kernels queued meanwhile. In the emulation every launch and copy completes before it
//! returns, so a host copy is a plain byte vector and the same calls are plain copies.

use crate::device::{Device, Mem};
use crate::{CudaBackend, CudaBuffer};
use cudarc::driver::{CudaEvent, CudaSlice, PinnedHostSlice};
use joyrt_core::{DType, Result};

/// A tensor's bytes in host memory.
pub struct CudaHostBuffer {
    mem: HostMem,
    len: usize,
    dtype: DType,
}

enum HostMem {
    Pinned(PinnedHostSlice<u8>),
    Plain(Vec<u8>),
}

/// The GPU's copy stream and the uploads issued on it that the compute stream has not waited for.
pub(crate) struct CopyStream {
    pub(crate) stream: std::sync::Arc<cudarc::driver::CudaStream>,
    pending: std::sync::Mutex<Vec<CudaEvent>>,
}

impl CopyStream {
    pub(crate) fn new(stream: std::sync::Arc<cudarc::driver::CudaStream>) -> Self {
        CopyStream { stream, pending: Default::default() }
    }
}

fn byte_view(d: &CudaSlice<u8>, n: usize) -> cudarc::driver::CudaView<'_, u8> {
    d.slice(..n)
}

impl CudaBackend {
    pub(crate) fn buffer_to_host(&self, b: &CudaBuffer) -> Result<CudaHostBuffer> {
        let n = b.len() * b.dtype().size();
        let mem = match (&b.data, &self.inner.dev) {
            (Mem::Device(d), Device::Gpu { ctx, stream, .. }) => {
                // SAFETY: the copy below fills all `n` bytes before anything reads them; flags 0 is
                // plain page-locked memory (not write-combined: the copy reads it back).
                let mut host = unsafe { ctx.alloc_pinned_with_flags::<u8>(n, 0) }
                    .map_err(|e| self.driver_err("cuMemHostAlloc", e))?;
                stream
                    .memcpy_dtoh(&byte_view(d, n), &mut host)
                    .map_err(|e| self.driver_err("cuMemcpyDtoH", e))?;
                stream.synchronize().map_err(|e| self.driver_err("synchronize", e))?;
                HostMem::Pinned(host)
            }
            (Mem::Host(h), _) => HostMem::Plain(bytemuck::cast_slice::<u128, u8>(h)[..n].to_vec()),
            _ => unreachable!("buffers come from the backend's own device"),
        };
        Ok(CudaHostBuffer { mem, len: b.len(), dtype: b.dtype() })
    }

    pub(crate) fn upload_host(&self, h: &CudaHostBuffer) -> Result<CudaBuffer> {
        let mut out = self.alloc(h.dtype, h.len, false)?;
        let n = h.len * h.dtype.size();
        match (&mut out.data, &self.inner.dev, &h.mem) {
            (Mem::Device(d), Device::Gpu { stream, copy, .. }, HostMem::Pinned(src)) => {
                let err = |what, e| self.driver_err(what, e);
                let issued = stream.record_event(None).map_err(|e| err("cuEventRecord", e))?;
                copy.stream.wait(&issued).map_err(|e| err("cuStreamWaitEvent", e))?;
                copy.stream
                    .memcpy_htod(src, &mut d.slice_mut(..n))
                    .map_err(|e| err("cuMemcpyHtoDAsync", e))?;
                let done = copy.stream.record_event(None).map_err(|e| err("cuEventRecord", e))?;
                copy.pending.lock().expect("the pending uploads' lock is never poisoned").push(done);
            }
            (Mem::Host(dst), _, HostMem::Plain(src)) => {
                bytemuck::cast_slice_mut::<u128, u8>(dst)[..n].copy_from_slice(src)
            }
            _ => unreachable!("host copies come from the backend's own device"),
        }
        Ok(out)
    }

    pub(crate) fn await_host_uploads(&self) -> Result<()> {
        if let Device::Gpu { stream, copy, .. } = &self.inner.dev {
            let done = std::mem::take(
                &mut *copy.pending.lock().expect("the pending uploads' lock is never poisoned"),
            );
            for e in &done {
                stream.wait(e).map_err(|e| self.driver_err("cuStreamWaitEvent", e))?;
            }
        }
        Ok(())
    }
}
