//! The checked forms of the fused ops: `joint_qkv`, and the epilogues of `linear`.

use super::check;
use crate::backend::{Backend, Epilogue, JointQkvParams, QkvStream};
use crate::{DType, Result, Tensor};

impl<B: Backend> Tensor<B> {
    /// Joint attention's `[Q, K, V]`, each `[L₀ + L₁, heads, D]`, from two streams' fused QKV
    /// projections `[L_s, 3·heads·D]` (see [`Backend::joint_qkv`]); `D` is the gains' length.
    pub fn joint_qkv(streams: [QkvStream<'_, B>; 2], heads: usize, eps: f32) -> Result<[Self; 3]> {
        const OP: &str = "joint_qkv";
        let first = &streams[0];
        let d = first.q_norm.numel();
        let cols = 3 * heads * d;
        check(heads > 0 && d > 0, OP, || format!("{heads} heads of {d} elements"))?;
        let mut tokens = [0; 2];
        for (s, st) in streams.iter().enumerate() {
            let (x, gains) = (st.qkv, [st.q_norm, st.k_norm]);
            check(x.shape.rank() == 2 && x.shape.dim(1) == cols, OP, || {
                format!("stream {s}: qkv {} is not [L, {cols}] (3 × {heads} heads × {d})", x.shape)
            })?;
            check(x.dtype == first.qkv.dtype, OP, || {
                format!("stream {s}: qkv is {}, stream 0's {}", x.dtype, first.qkv.dtype)
            })?;
            for g in gains {
                check(g.numel() == d && g.dtype == first.q_norm.dtype, OP, || {
                    format!("stream {s}: gain {} {} is not {} [{d}]", g.dtype, g.shape, first.q_norm.dtype)
                })?;
            }
            tokens[s] = x.shape.dim(0);
            if let Some(r) = st.rope {
                check(d.is_multiple_of(2), OP, || format!("head dim {d} is odd"))?;
                for t in [&r.cos, &r.sin] {
                    check(t.dims() == [tokens[s], d / 2] && t.dtype == DType::F32, OP, || {
                        format!(
                            "stream {s}: rope table {} {} does not match f32 [{}, {}]",
                            t.dtype,
                            t.shape,
                            tokens[s],
                            d / 2
                        )
                    })?;
                }
            }
        }
        let p = JointQkvParams { tokens, heads, head_dim: d, eps };
        let be = &first.qkv.backend;
        let bufs = be.joint_qkv([&streams[0], &streams[1]], &p)?;
        let shape = [tokens[0] + tokens[1], heads, d];
        Ok(bufs.map(|b| first.qkv.wrap(b, shape, first.qkv.dtype)))
    }

    /// An epilogue's operands against the output `out` of a GEMM on `self`: a gated residual's
    /// `residual` has the output's shape and `gate` its last dim, both in `self`'s dtype.
    pub(super) fn check_epilogue(&self, op: &'static str, e: &Epilogue<'_, B>, out: &[usize]) -> Result<()> {
        let Epilogue::GatedResidual { residual, gate } = e else { return Ok(()) };
        let n = out.last().copied().unwrap_or(0);
        check(residual.dims() == out && residual.dtype == self.dtype, op, || {
            format!(
                "gated residual {} {} is not the output's {} {out:?}",
                residual.dtype, residual.shape, self.dtype
            )
        })?;
        check(gate.numel() == n && gate.dtype == self.dtype, op, || {
            format!("gate {} {} is not {} [{n}]", gate.dtype, gate.shape, self.dtype)
        })
    }
}
