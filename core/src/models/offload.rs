//! Weights that wait in host memory between their uses (the streamed DiT blocks): each part of a
//! layer says how it is copied to the host ([`Backend::to_host`]) and brought back
//! ([`Backend::upload_from_host`]) with the same bytes, so a streamed layer computes exactly what
//! the resident one does.

use super::{Linear, Weight};
use crate::{Backend, DType, QuantFormat, QuantizedMatrix, Result, Shape, Tensor};

/// A device-side weight structure and its host-side twin.
pub(crate) trait Offload<B: Backend>: Sized {
    type Host;
    /// The host copy (waits for pending work on the weights).
    fn to_host(&self) -> Result<Self::Host>;
    /// The weights back on `backend`; their copy may still run (see [`Backend::await_uploads`]).
    fn from_host(host: &Self::Host, backend: &B) -> Result<Self>;
}

pub(crate) struct HostTensor<B: Backend> {
    shape: Shape,
    dtype: DType,
    buf: B::HostBuffer,
}

impl<B: Backend> Offload<B> for Tensor<B> {
    type Host = HostTensor<B>;
    fn to_host(&self) -> Result<HostTensor<B>> {
        Ok(HostTensor {
            shape: self.shape().clone(),
            dtype: self.dtype(),
            buf: self.backend().to_host(self.buffer())?,
        })
    }
    fn from_host(h: &HostTensor<B>, backend: &B) -> Result<Self> {
        Ok(Tensor::from_buffer(backend, backend.upload_from_host(&h.buf)?, h.shape.clone(), h.dtype))
    }
}

pub(crate) struct HostQuantized<B: Backend> {
    format: QuantFormat,
    rows: usize,
    cols: usize,
    data: B::HostBuffer,
    scales: HostTensor<B>,
}

impl<B: Backend> Offload<B> for QuantizedMatrix<B> {
    type Host = HostQuantized<B>;
    fn to_host(&self) -> Result<HostQuantized<B>> {
        Ok(HostQuantized {
            format: self.format(),
            rows: self.rows(),
            cols: self.cols(),
            data: self.scales().backend().to_host(self.data())?,
            scales: self.scales().to_host()?,
        })
    }
    fn from_host(h: &HostQuantized<B>, backend: &B) -> Result<Self> {
        let data = backend.upload_from_host(&h.data)?;
        Ok(QuantizedMatrix::from_parts(
            h.format,
            h.rows,
            h.cols,
            data,
            Tensor::from_host(&h.scales, backend)?,
        ))
    }
}

pub(crate) enum HostWeight<B: Backend> {
    Dense(HostTensor<B>),
    Quantized(HostQuantized<B>),
}

impl<B: Backend> Offload<B> for Linear<B> {
    type Host = (HostWeight<B>, Option<HostTensor<B>>);
    fn to_host(&self) -> Result<Self::Host> {
        let w = match &self.w {
            Weight::Dense(t) => HostWeight::Dense(t.to_host()?),
            Weight::Quantized(q) => HostWeight::Quantized(q.to_host()?),
        };
        Ok((w, self.b.as_ref().map(Offload::to_host).transpose()?))
    }
    fn from_host((w, b): &Self::Host, backend: &B) -> Result<Self> {
        let w = match w {
            HostWeight::Dense(t) => Weight::Dense(Tensor::from_host(t, backend)?),
            HostWeight::Quantized(q) => Weight::Quantized(QuantizedMatrix::from_host(q, backend)?),
        };
        Ok(Linear { w, b: b.as_ref().map(|b| Tensor::from_host(b, backend)).transpose()? })
    }
}
