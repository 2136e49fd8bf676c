//! Attention (`kernels/attention.cu`): flash-style, one block per tile of queries of one head.
//! Tensor cores for same-dtype bf16/f16 with head dim 64 or 128 (the DiT's and Qwen's text
//! heads): on sm_90a at head dim 128, where `JOYRT_CUDA_ATTENTION` asks for it, `wgmma`
//! (`kernels/attention_wgmma.cuh`) or the warp-specialised FlashAttention-3-style kernel fed by
//! TMA (`kernels/attention_wgmma_ws.cuh`); else `mma.sync` FlashAttention-2 for a positive
//! scale; CUDA cores for every other shape up to head dim 512.

use crate::kernel::{Family, Kernel, KernelDesc, Spec};
use crate::launch::{addr, i32_of, AttentionPath, Grid};
use crate::tensor_map::TileMap;
use crate::{CudaBackend, CudaBuffer};
use joyrt_core::backend::AttentionParams;
use joyrt_core::{Backend, Error, Result, Tensor};

type T = Tensor<CudaBackend>;

/// Threads per block of the CUDA-core kernels (4 warps).
const ATT_THREADS: u32 = 128;
/// CUDA-core kernels: threads sharing one query, each holding 32 of its elements (so D ≤ 32·TPR).
const TPR_D128: u32 = 4;
const TPR_D512: u32 = 16;
/// Tensor-core kernels: 8 warps of 16 queries each, keys per shared tile, and the depth of the
/// cp.async ring of K/V tiles (kernels/attention.cu says why these).
const FA_THREADS: u32 = 256;
const FA_BR: u32 = FA_THREADS / 32 * 16;
const FA_BC: u32 = 64;
const FA_STAGES: u32 = 3;

/// The Hopper kernel (`kernels/attention_wgmma.cuh`, sm_90a): two warpgroups, 128 queries per
/// block, 128 keys per tile, head dim 128.
const WA_THREADS: u32 = 256;
const WA_BR: u32 = 128;
const WA_BC: u32 = 128;

/// The warp-specialised Hopper kernel (`kernels/attention_wgmma_ws.cuh`): a TMA producer
/// warpgroup and two consumer warpgroups of 64 queries, 128-key tiles, a K/V ring of two stages
/// (FlashAttention-3's choice at head dim 128: while the consumers read K of tile t and V of
/// t − 1, the producer fills K of t + 1 and V of t; a third stage, 225 KiB in all, would let it
/// run one tile further ahead), the register split of `setmaxnreg`, and the first of the two
/// named barriers the consumers take turns through.
const AWS_THREADS: u32 = 384;
const AWS_BR: u32 = 128;
const AWS_BC: u32 = 128;
const AWS_STAGES: u32 = 2;
const AWS_PRODUCER_REGS: u32 = 24;
const AWS_CONSUMER_REGS: u32 = 240;
const AWS_BAR_TURN: u32 = 1;

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

/// FA_STAGES × (K, V) × FA_BC keys × D 16-bit elements (rows swizzled, not padded): 96 KiB at
/// D = 128, within the 99 KiB of consumer sm_86/sm_89 cards.
const fn flash_smem(d: u32) -> u32 {
    FA_STAGES * 2 * FA_BC * d * 2
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

/// 1024 bytes to align the swizzled tiles, Q (AWS_BR rows), the ring (K and V tiles of AWS_BC
/// rows per stage), each 128-byte rows in two head-dim halves; then the mbarriers: Q's, and
/// full and empty for K and V per stage. 161 KiB at two stages, within sm_90's 227.
fn wgmma_ws_smem_d128(_: &Spec) -> u32 {
    1024 + (AWS_BR + 2 * AWS_STAGES * AWS_BC) * 2 * 128 + (1 + 4 * AWS_STAGES) * 8
}

const fn attention_kernel(name: &'static str) -> KernelDesc {
    KernelDesc::new(name, Family::Attention, ATT_THREADS)
}

const fn flash_kernel(name: &'static str, smem: fn(&Spec) -> u32) -> KernelDesc {
    KernelDesc::new(name, Family::Attention, FA_THREADS).mma().dynamic_smem(smem)
}

const ATTENTION_D128: Kernel<AttentionArgs> = Kernel::new(attention_kernel("attention_d128"));
const ATTENTION_D512: Kernel<AttentionArgs> = Kernel::new(attention_kernel("attention_d512"));
const ATTENTION_MMA_D64: Kernel<AttentionArgs> =
    Kernel::new(flash_kernel("attention_mma_d64", flash_smem_d64));
const ATTENTION_MMA_D128: Kernel<AttentionArgs> =
    Kernel::new(flash_kernel("attention_mma_d128", flash_smem_d128));
const ATTENTION_WGMMA_D128: Kernel<AttentionArgs> = Kernel::new(
    KernelDesc::new("attention_wgmma_d128", Family::Attention, WA_THREADS)
        .wgmma()
        .dynamic_smem(wgmma_smem_d128),
);

const ATTENTION_WGMMA_WS_D128: Kernel<AttentionArgs> = Kernel::new(
    KernelDesc::new("attention_wgmma_ws_d128", Family::Attention, AWS_THREADS)
        .wgmma()
        .tensor_maps(3)
        .dynamic_smem(wgmma_ws_smem_d128),
);

/// The block shapes the host launches with, as the kernels read them.
const ATTENTION_DEFINES: &[(&str, u32)] = &[
    ("ATT_THREADS", ATT_THREADS),
    ("ATT_TPR_D128", TPR_D128),
    ("ATT_TPR_D512", TPR_D512),
    ("FA_THREADS", FA_THREADS),
    ("FA_BR", FA_BR),
    ("FA_BC", FA_BC),
    ("FA_STAGES", FA_STAGES),
    ("WA_THREADS", WA_THREADS),
    ("WA_BR", WA_BR),
    ("WA_BC", WA_BC),
    ("AWS_THREADS", AWS_THREADS),
    ("AWS_BR", AWS_BR),
    ("AWS_BC", AWS_BC),
    ("AWS_STAGES", AWS_STAGES),
    ("AWS_PRODUCER_REGS", AWS_PRODUCER_REGS),
    ("AWS_CONSUMER_REGS", AWS_CONSUMER_REGS),
    ("AWS_BAR_TURN", AWS_BAR_TURN),
];

family! {
    "attention", AttentionArgs,
    defines: ATTENTION_DEFINES,
    kernels: [
        ATTENTION_D128,
        ATTENTION_D512,
        ATTENTION_MMA_D64,
        ATTENTION_MMA_D128,
        ATTENTION_WGMMA_D128,
        ATTENTION_WGMMA_WS_D128,
    ],
}

pub fn attention(be: &CudaBackend, q: &T, k: &T, v: &T, p: &AttentionParams) -> Result<CudaBuffer> {
    let spec = Spec { x: q.dtype(), w: k.dtype(), b: v.dtype(), c: q.dtype() };
    let tensor_cores = be.tensor_cores(&spec) && spec.b == spec.x;
    // attention_mma_* take the row maximum of the unscaled scores, which is the scaled maximum
    // only for scale > 0; any other scale goes to another kernel.
    let mma = tensor_cores && p.scale > 0.0;
    let path = be.attention_path();
    let args = AttentionArgs {
        q_len: i32_of("q_len", p.q_len)?,
        kv_len: i32_of("kv_len", p.kv_len)?,
        q_heads: i32_of("q_heads", p.q_heads)?,
        kv_heads: i32_of("kv_heads", p.kv_heads)?,
        head_dim: p.head_dim as i32,
        scale: p.scale,
        causal: p.causal as u32,
    };
    // A tensor map needs at least one row: empty operands go to the kernels below.
    if p.head_dim == 128 && tensor_cores && path == AttentionPath::WgmmaWs && p.q_len > 0 && p.kv_len > 0 {
        return attention_wgmma_ws(be, [q, k, v], spec, &args, p);
    }
    let (kernel, queries_per_block) = match p.head_dim {
        64 if mma => (&ATTENTION_MMA_D64, FA_BR),
        128 if tensor_cores && path == AttentionPath::Wgmma => (&ATTENTION_WGMMA_D128, WA_BR),
        128 if mma => (&ATTENTION_MMA_D128, FA_BR),
        0..=128 => (&ATTENTION_D128, ATT_THREADS / TPR_D128),
        129..=512 => (&ATTENTION_D512, ATT_THREADS / TPR_D512),
        d => {
            return Err(Error::backend(
                be.name(),
                format!("attention: head dim {d} > 512 is not supported by the CUDA kernel"),
            ))
        }
    };
    let grid = Grid::Blocks(p.q_len.div_ceil(queries_per_block as usize), p.q_heads);
    let output = (q.dtype(), p.q_len * p.q_heads * p.head_dim);
    be.launch_output(kernel, spec, grid, &[addr(q), addr(k), addr(v)], output, &args)
}

/// Attention on the warp-specialised kernel: q, k and v as tensor maps over their rows (a token's
/// heads side by side), boxes of 128 rows × one 64-element head-dim half.
fn attention_wgmma_ws(
    be: &CudaBackend,
    [q, k, v]: [&T; 3],
    spec: Spec,
    args: &AttentionArgs,
    p: &AttentionParams,
) -> Result<CudaBuffer> {
    let map = |t: &T, rows: usize, heads: usize| {
        let cols = heads * p.head_dim;
        be.tensor_map(&TileMap {
            address: addr(t),
            dtype: t.dtype(),
            rows,
            cols,
            box_rows: 128,
            box_cols: 64,
        })
    };
    let maps = [map(q, p.q_len, p.q_heads)?, map(k, p.kv_len, p.kv_heads)?, map(v, p.kv_len, p.kv_heads)?];
    let out = be.output(q.dtype(), p.q_len * p.q_heads * p.head_dim)?;
    let grid = Grid::Blocks(p.q_len.div_ceil(AWS_BR as usize), p.q_heads);
    be.launch_with_maps(&ATTENTION_WGMMA_WS_D128, spec, grid, &[out.ptr], &maps, args)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Family;
    use crate::limits::DeviceLimits;
    use crate::nvrtc::{compile_source, entry_reports, nvrtc_present, source};
    use joyrt_core::DType;

    /// ptxas' report of the tensor-core kernels for sm_80, sm_89 and sm_90a (printed: docs/benchmarks.md
    /// quotes it), held to what every sm_80+ card can run: no spills, at most 255 registers, and
    /// shared memory within the 99 KiB a block may opt in to on consumer Ampere/Ada (sm_86, sm_89).
    #[test]
    fn the_tensor_core_kernels_fit_every_sm80_plus_card() {
        if !nvrtc_present() {
            println!("SKIPPED: attention resource check: libnvrtc not found");
            return;
        }
        let mut failures = Vec::new();
        for arch in ["sm_80", "sm_89", "sm_90a"] {
            for dtype in [DType::BF16, DType::F16] {
                let spec = Spec::uniform(dtype);
                let compiled = compile_source(
                    "attention.cu",
                    &source(Family::Attention, &spec, arch),
                    arch,
                    &["--ptxas-options=-v"],
                )
                .unwrap();
                for r in entry_reports(&compiled.log).iter().filter(|r| r.name.starts_with("attention_mma")) {
                    let desc = [&ATTENTION_MMA_D64, &ATTENTION_MMA_D128]
                        .into_iter()
                        .map(|k| &k.desc)
                        .find(|d| d.name == r.name)
                        .unwrap();
                    let dynamic = (desc.dynamic_smem)(&spec);
                    println!(
                        "{arch} {dtype:?} {}: {} registers, {} B static + {dynamic} B dynamic shared memory, \
                         {} B spilled, {} threads",
                        r.name, r.resources.registers, r.resources.static_smem, r.spill_bytes, desc.threads
                    );
                    let at = format!("{arch} {dtype:?} {}", r.name);
                    if r.spill_bytes > 0 || r.resources.registers > 255 {
                        failures.push(format!(
                            "{at}: {} registers, {} B spilled",
                            r.resources.registers, r.spill_bytes
                        ));
                    }
                    if let Some(why) = DeviceLimits::SM86.opt_in_refusal(dynamic, r.resources.static_smem) {
                        failures.push(format!("{at}: {why}"));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
