//! The context a network loads its weights through: the checkpoint, the backend the tensors go
//! to, a name prefix and a per-tensor dtype policy, so each layer's loader only names its own
//! tensors.

use crate::weights::Checkpoint;
use crate::{Backend, DType, QuantizedMatrix, Result, Shape, Tensor};
use std::fmt::Display;

/// The storage dtype of each tensor: one default, except the tensors under a prefix given a dtype
/// of their own (the first matching rule wins).
pub(crate) struct DTypePolicy {
    default: DType,
    rules: Vec<(String, DType)>,
}

impl DTypePolicy {
    pub(crate) fn uniform(default: DType) -> Self {
        DTypePolicy { default, rules: Vec::new() }
    }

    /// Stores the tensors named `prefix` or `prefix.…` as `dtype`.
    pub(crate) fn with(mut self, prefix: &str, dtype: DType) -> Self {
        self.rules.push((prefix.to_string(), dtype));
        self
    }

    fn dtype_of(&self, name: &str) -> DType {
        let under =
            |p: &str| name.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
        self.rules.iter().find(|(p, _)| under(p)).map_or(self.default, |(_, d)| *d)
    }
}

/// A view of a checkpoint at one name prefix (`double_blocks.3.`), uploading to one backend with
/// the dtype the policy gives each full name.
#[derive(Clone)]
pub(crate) struct Loader<'a, B: Backend> {
    ck: &'a Checkpoint,
    backend: &'a B,
    policy: &'a DTypePolicy,
    prefix: String,
}

impl<'a, B: Backend> Loader<'a, B> {
    pub(crate) fn new(ck: &'a Checkpoint, backend: &'a B, policy: &'a DTypePolicy) -> Self {
        Loader { ck, backend, policy, prefix: String::new() }
    }

    /// The same loader one level down: `pp("attn")` at `double_blocks.3` is `double_blocks.3.attn`.
    pub(crate) fn pp(&self, part: impl Display) -> Self {
        Loader { prefix: self.name(part), ..self.clone() }
    }

    fn name(&self, part: impl Display) -> String {
        if self.prefix.is_empty() {
            part.to_string()
        } else {
            format!("{}.{part}", self.prefix)
        }
    }

    /// Whether the checkpoint stores `{prefix}.{part}` (for optional tensors such as a bias).
    pub(crate) fn contains(&self, part: &str) -> bool {
        self.ck.info(&self.name(part)).is_some()
    }

    /// Uploads `{prefix}.{part}` as stored, in the policy's dtype for it.
    pub(crate) fn tensor(&self, part: &str) -> Result<Tensor<B>> {
        let name = self.name(part);
        self.ck.load(self.backend, &name, self.policy.dtype_of(&name))
    }

    /// `{prefix}.{part}` as a quantized matrix when it is stored as one (`None`: a float tensor).
    pub(crate) fn quantized(&self, part: &str) -> Result<Option<QuantizedMatrix<B>>> {
        crate::quant::load_quantized(self.ck, self.backend, &self.name(part))
    }

    /// A host f32 copy of `{prefix}.{part}` with its stored shape, for a layer that rearranges
    /// its weights before [`Loader::upload`].
    pub(crate) fn host_f32(&self, part: &str) -> Result<(Shape, Vec<f32>)> {
        let name = self.name(part);
        let (info, _) = self.ck.raw(&name)?;
        Ok((info.shape, self.ck.read_f32(&name)?))
    }

    /// Uploads host values derived from `{prefix}.{part}`, in the policy's dtype for it.
    pub(crate) fn upload(&self, part: &str, shape: impl Into<Shape>, values: &[f32]) -> Result<Tensor<B>> {
        Tensor::from_f32(self.backend, shape, values, self.policy.dtype_of(&self.name(part)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rules_match_whole_name_parts() {
        let p = DTypePolicy::uniform(DType::BF16).with("a.time", DType::F32);
        assert_eq!(p.dtype_of("a.time.linear_1.weight"), DType::F32);
        assert_eq!(p.dtype_of("a.time"), DType::F32);
        assert_eq!(p.dtype_of("a.time_proj.weight"), DType::BF16);
        assert_eq!(p.dtype_of("b.time.weight"), DType::BF16);
    }
}
