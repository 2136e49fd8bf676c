//! The DiT's double blocks: resident on the device, or (past the first `keep`) streamed from host
//! memory, each uploaded while the block before it computes. A streamed block is uploaded from
//! the bytes its resident form held, so it computes exactly what that form does.

use super::Stream;
use crate::models::offload::Offload;
use crate::models::Linear;
use crate::{Backend, Result, Tensor};

/// A double block: the image and the text stream.
pub(super) type Block<B> = (Stream<B>, Stream<B>);
type HostStream<B> = <Stream<B> as Offload<B>>::Host;

pub(super) struct Blocks<B: Backend> {
    backend: B,
    resident: Vec<Block<B>>,
    /// The blocks after the resident ones, in order, in host memory.
    streamed: Vec<(HostStream<B>, HostStream<B>)>,
}

impl<B: Backend> Blocks<B> {
    pub(super) fn new(backend: &B) -> Self {
        Blocks { backend: backend.clone(), resident: Vec::new(), streamed: Vec::new() }
    }

    /// Appends the next block: kept on the device while fewer than `keep` are, else copied to
    /// host memory (and its device copy freed).
    pub(super) fn push(&mut self, block: Block<B>, keep: usize) -> Result<()> {
        if self.streamed.is_empty() && self.resident.len() < keep {
            self.resident.push(block);
        } else {
            self.streamed.push((block.0.to_host()?, block.1.to_host()?));
        }
        Ok(())
    }

    /// Blocks kept on the device, and blocks streamed.
    pub(super) fn counts(&self) -> (usize, usize) {
        (self.resident.len(), self.streamed.len())
    }

    fn upload(&self, (img, txt): &(HostStream<B>, HostStream<B>)) -> Result<Block<B>> {
        Ok((Stream::from_host(img, &self.backend)?, Stream::from_host(txt, &self.backend)?))
    }

    /// Runs `f` on every block in order. A streamed block's upload is started before the block
    /// ahead of it runs, and awaited just before it runs itself: at most two streamed blocks are
    /// on the device at once.
    pub(super) fn for_each(&self, mut f: impl FnMut(&Block<B>) -> Result<()>) -> Result<()> {
        let mut next = self.streamed.first().map(|h| self.upload(h)).transpose()?;
        for b in &self.resident {
            f(b)?;
        }
        for i in 0..self.streamed.len() {
            let current = next.take().expect("each streamed block is uploaded before its turn");
            self.backend.await_uploads()?;
            next = self.streamed.get(i + 1).map(|h| self.upload(h)).transpose()?;
            f(&current)?;
        }
        Ok(())
    }
}

type HostLinear<B> = <Linear<B> as Offload<B>>::Host;
type HostTensor<B> = <Tensor<B> as Offload<B>>::Host;

impl<B: Backend> Offload<B> for Stream<B> {
    type Host = ([HostTensor<B>; 3], [HostLinear<B>; 4]);

    fn to_host(&self) -> Result<Self::Host> {
        Ok((
            [self.table.to_host()?, self.q_norm.to_host()?, self.k_norm.to_host()?],
            [self.qkv.to_host()?, self.proj.to_host()?, self.fc1.to_host()?, self.fc2.to_host()?],
        ))
    }

    fn from_host((t, l): &Self::Host, backend: &B) -> Result<Self> {
        let tensor = |h| Tensor::from_host(h, backend);
        let linear = |h| Linear::from_host(h, backend);
        Ok(Stream {
            table: tensor(&t[0])?,
            q_norm: tensor(&t[1])?,
            k_norm: tensor(&t[2])?,
            qkv: linear(&l[0])?,
            proj: linear(&l[1])?,
            fc1: linear(&l[2])?,
            fc2: linear(&l[3])?,
        })
    }
}
