//! The three networks of JoyAI-Image-Edit, written once over the [`Backend`](crate::Backend) trait.

pub mod dit;
pub mod qwen;
pub mod vae;

use crate::weights::Checkpoint;
use crate::{Backend, DType, Result, Tensor};

/// A linear layer `x·Wᵀ + b` whose bias is optional in the checkpoint.
pub(crate) struct Linear<B: Backend> {
    pub(crate) w: Tensor<B>,
    pub(crate) b: Option<Tensor<B>>,
}

impl<B: Backend> Linear<B> {
    /// Loads `{name}.weight` and, when stored, `{name}.bias`.
    pub(crate) fn load(ck: &Checkpoint, be: &B, name: &str, dtype: DType) -> Result<Self> {
        let bias = format!("{name}.bias");
        let b = if ck.info(&bias).is_some() { Some(ck.load(be, &bias, dtype)?) } else { None };
        Ok(Linear { w: ck.load(be, &format!("{name}.weight"), dtype)?, b })
    }

    pub(crate) fn fwd(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        x.linear(&self.w, self.b.as_ref())
    }
}
