//! Attention (`kernels/attention.cu`): flash-style, one block per tile of queries of one head.
//! Tensor cores for same-dtype bf16/f16 with head dim 64 or 128 (the DiT's and Qwen's text
//! heads); CUDA cores for every other shape up to head dim 512.

use crate::kernel::{Family, Kernel, KernelDesc, Spec};
use crate::launch::{addr, i32_of, Grid};
use crate::{CudaBackend, CudaBuffer};
use joyrt_core::backend::AttentionParams;
use joyrt_core::{Backend, Error, Result, Tensor};

type T = Tensor<CudaBackend>;

/// Threads per block of every attention kernel (4 warps).
const ATT_THREADS: u32 = 128;
/// CUDA-core kernels: threads sharing one query, each holding 32 of its elements (so D ≤ 32·TPR).
const TPR_D128: u32 = 4;
const TPR_D512: u32 = 16;
/// Tensor-core kernels: queries per block (4 warps × 16), keys per shared tile, and the padding
/// of a shared key row (16-bit elements).
const FA_BR: u32 = 64;
const FA_BC: u32 = 64;
const FA_ROW_PAD: u32 = 8;

/// The Hopper kernel (`kernels/attention_wgmma.cuh`, sm_90a): two warpgroups, 128 queries per
/// block, 128 keys per tile, head dim 128.
const WA_THREADS: u32 = 256;
const WA_BR: u32 = 128;
const WA_BC: u32 = 128;

joyrt_core::kernel_params! {
    /// The scalars of the attention kernels: `q [q_len, q_heads, head_dim]`,
    /// `k, v [kv_len, kv_heads, head_dim]`.
    pub struct AttentionArgs {
        pub q_len: i32,
        pub kv_len: i32,
        pub q_heads: i32,
        pub kv_heads: i32,
        pub head_dim: i32,
        pub scale: f32,
        /// 1: key j is visible to query i iff j ≤ i + kv_len − q_len.
        pub causal: u32,
    }
}

/// Two stages × (K, V) × FA_BC keys × (D + FA_ROW_PAD) 16-bit elements.
const fn flash_smem(d: u32) -> u32 {
    2 * 2 * FA_BC * (d + FA_ROW_PAD) * 2
}

fn flash_smem_d64(_: &Spec) -> u32 {
    flash_smem(64)
}

fn flash_smem_d128(_: &Spec) -> u32 {
    flash_smem(128)
}

/// Q (WA_BR rows), then two stages of K (WA_BC rows) and Vᵀ (128 rows): 128-byte rows, two
/// halves of the head dim (keys for Vᵀ) each; plus 1024 bytes to align the swizzled tiles.
fn wgmma_smem_d128(_: &Spec) -> u32 {
    (WA_BR + 2 * (WA_BC + 128)) * 2 * 128 + 1024
}

const fn attention_kernel(name: &'static str) -> KernelDesc {
    KernelDesc::new(name, Family::Attention, ATT_THREADS)
}

const ATTENTION_D128: Kernel<AttentionArgs> = Kernel::new(attention_kernel("attention_d128"));
const ATTENTION_D512: Kernel<AttentionArgs> = Kernel::new(attention_kernel("attention_d512"));
const ATTENTION_MMA_D64: Kernel<AttentionArgs> =
    Kernel::new(attention_kernel("attention_mma_d64").mma().dynamic_smem(flash_smem_d64));
const ATTENTION_MMA_D128: Kernel<AttentionArgs> =
    Kernel::new(attention_kernel("attention_mma_d128").mma().dynamic_smem(flash_smem_d128));
const ATTENTION_WGMMA_D128: Kernel<AttentionArgs> = Kernel::new(
    KernelDesc::new("attention_wgmma_d128", Family::Attention, WA_THREADS)
        .wgmma()
        .dynamic_smem(wgmma_smem_d128),
);

/// The block shapes the host launches with, as the kernels read them.
const ATTENTION_DEFINES: &[(&str, u32)] = &[
    ("ATT_THREADS", ATT_THREADS),
    ("ATT_TPR_D128", TPR_D128),
    ("ATT_TPR_D512", TPR_D512),
    ("FA_BR", FA_BR),
    ("FA_BC", FA_BC),
    ("FA_ROW_PAD", FA_ROW_PAD),
    ("WA_THREADS", WA_THREADS),
    ("WA_BR", WA_BR),
    ("WA_BC", WA_BC),
];

family! {
    "attention", AttentionArgs,
    defines: ATTENTION_DEFINES,
    kernels: [ATTENTION_D128, ATTENTION_D512, ATTENTION_MMA_D64, ATTENTION_MMA_D128, ATTENTION_WGMMA_D128],
}

pub fn attention(be: &CudaBackend, q: &T, k: &T, v: &T, p: &AttentionParams) -> Result<CudaBuffer> {
    let spec = Spec { x: q.dtype(), w: k.dtype(), b: v.dtype(), c: q.dtype() };
    let tensor_cores = be.tensor_cores(&spec) && spec.b == spec.x;
    let (kernel, queries_per_block) = match p.head_dim {
        64 if tensor_cores => (&ATTENTION_MMA_D64, FA_BR),
        128 if tensor_cores && be.wgmma() => (&ATTENTION_WGMMA_D128, WA_BR),
        128 if tensor_cores => (&ATTENTION_MMA_D128, FA_BR),
        0..=128 => (&ATTENTION_D128, ATT_THREADS / TPR_D128),
        129..=512 => (&ATTENTION_D512, ATT_THREADS / TPR_D512),
        d => {
            return Err(Error::backend(
                be.name(),
                format!("attention: head dim {d} > 512 is not supported by the CUDA kernel"),
            ))
        }
    };
    let args = AttentionArgs {
        q_len: i32_of("q_len", p.q_len)?,
        kv_len: i32_of("kv_len", p.kv_len)?,
        q_heads: i32_of("q_heads", p.q_heads)?,
        kv_heads: i32_of("kv_heads", p.kv_heads)?,
        head_dim: p.head_dim as i32,
        scale: p.scale,
        causal: p.causal as u32,
    };
    let grid = Grid::Blocks(p.q_len.div_ceil(queries_per_block as usize), p.q_heads);
    let output = (q.dtype(), p.q_len * p.q_heads * p.head_dim);
    be.launch_output(kernel, spec, grid, &[addr(q), addr(k), addr(v)], output, &args)
}
