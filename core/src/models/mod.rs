//! The three networks of JoyAI-Image-Edit, written once over the [`Backend`](crate::Backend) trait,
//! and the pieces they share: the weight loader, [`Linear`] and the RoPE table builder.

pub mod dit;
mod loader;
mod offload;
pub mod qwen;
pub mod vae;
pub mod vae_tiling;

use crate::backend::Epilogue;
use crate::{Backend, DType, Error, QuantizedMatrix, Result, Rope, RopePairing, Tensor};
use loader::Loader;

/// The weight matrix `[out, in]` of a linear layer, in whatever form the checkpoint stores it:
/// chosen by [`Weight::load`] from the tensors stored under the layer's name; the model graphs
/// only call [`Linear::fwd`] and never look inside.
pub(crate) enum Weight<B: Backend> {
    Dense(Tensor<B>),
    /// Codes + scales (`crate::quant`): `{prefix}.weight` stored as I8/U8/F8_E4M3 beside
    /// `{prefix}.weight_scale`.
    Quantized(QuantizedMatrix<B>),
}

impl<B: Backend> Weight<B> {
    /// `{prefix}.weight` as stored: quantized when it holds codes, dense otherwise.
    fn load(vb: &Loader<B>) -> Result<Self> {
        match vb.quantized("weight")? {
            Some(q) => Ok(Weight::Quantized(q)),
            None => Ok(Weight::Dense(vb.tensor("weight")?)),
        }
    }

    /// `{prefix}.weight` stored with extra trailing axes (a patch-embedding conv whose kernel
    /// covers its whole input patch), viewed as the matrix `[out, in·…]`.
    fn load_flattened(vb: &Loader<B>) -> Result<Self> {
        let w = vb.tensor("weight")?;
        let out = w.dims()[0];
        let w = w.reshape([out, w.numel() / out.max(1)])?;
        Ok(Weight::Dense(w))
    }
}

/// A linear layer `x·Wᵀ + b` whose bias is optional in the checkpoint.
pub(crate) struct Linear<B: Backend> {
    w: Weight<B>,
    b: Option<Tensor<B>>,
}

impl<B: Backend> Linear<B> {
    /// Loads `{prefix}.weight` and, when stored, `{prefix}.bias`.
    pub(crate) fn load(vb: &Loader<B>) -> Result<Self> {
        Ok(Linear { w: Weight::load(vb)?, b: Self::bias(vb)? })
    }

    /// A patch embedding stored as a conv over the whole patch (`[out, C, T, P, P]`), as a linear
    /// layer over flattened patch vectors.
    pub(crate) fn load_patch_embed(vb: &Loader<B>) -> Result<Self> {
        Ok(Linear { w: Weight::load_flattened(vb)?, b: Self::bias(vb)? })
    }

    fn bias(vb: &Loader<B>) -> Result<Option<Tensor<B>>> {
        if vb.contains("bias") {
            Ok(Some(vb.tensor("bias")?))
        } else {
            Ok(None)
        }
    }

    pub(crate) fn fwd(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        self.fwd_with(x, Epilogue::None)
    }

    /// [`Linear::fwd`] with `epilogue` fused into the GEMM's store.
    pub(crate) fn fwd_with(&self, x: &Tensor<B>, epilogue: Epilogue<'_, B>) -> Result<Tensor<B>> {
        match &self.w {
            Weight::Dense(w) => x.linear_with(w, self.b.as_ref(), epilogue),
            Weight::Quantized(w) => x.linear_quantized_with(w, self.b.as_ref(), epilogue),
        }
    }
}

impl<B: Backend> Rope<B> {
    /// The cos/sin table of `angles` (`rows` tokens × D/2 angles, row-major), uploaded as f32
    /// `[rows, D/2]`. cos and sin are taken in f64 and rounded, as torch computes them from f32
    /// angles on the CPU.
    pub fn from_angles(backend: &B, rows: usize, angles: &[f32], pairing: RopePairing) -> Result<Rope<B>> {
        let half = angles.len().checked_div(rows).unwrap_or(0);
        if half * rows != angles.len() {
            return Err(Error::shape(
                "rope table",
                format!("{} angles do not split into {rows} rows", angles.len()),
            ));
        }
        let cos: Vec<f32> = angles.iter().map(|&a| (a as f64).cos() as f32).collect();
        let sin: Vec<f32> = angles.iter().map(|&a| (a as f64).sin() as f32).collect();
        Ok(Rope {
            cos: Tensor::from_f32(backend, [rows, half], &cos, DType::F32)?,
            sin: Tensor::from_f32(backend, [rows, half], &sin, DType::F32)?,
            pairing,
        })
    }
}
