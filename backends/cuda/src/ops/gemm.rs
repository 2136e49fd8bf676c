//! `linear` (`kernels/gemm.cu`) on the block-tile GEMM of `kernels/gemm.cuh`, whose tiling this
//! file owns (conv uses it too): the tensor-core kernels for same-dtype 16-bit operands, the
//! exact-f32 SIMT kernel otherwise. `linear_quantized` (`kernels/gemm_quantized.cuh`): the same
//! two tilings with the weight decoded from its packed codes on the way into shared memory. Every
//! kernel stores through `kernels/epilogue.cuh` (bias, then GELU-tanh or the gated residual).

use super::dtype_or;
use crate::kernel::{Family, Kernel, KernelDesc, Spec};
use crate::launch::{addr, i32_of, opt_addr, GemmPath, Grid};
use crate::tensor_map::TileMap;
use crate::{CudaBackend, CudaBuffer};
use joyrt_core::backend::{Epilogue, LinearParams, QuantActivations, QuantLinearParams};
use joyrt_core::kernel_abi::{OpCode, QuantCode};
use joyrt_core::{Backend, DType, Error, QuantFormat, QuantizedMatrix, Result, Tensor};

type T = Tensor<CudaBackend>;

/// Threads per block of every GEMM kernel (8 warps).
const GEMM_THREADS: u32 = 256;
/// The SIMT kernels' square output tile.
pub(crate) const SIMT_TILE: usize = 64;
/// The tensor-core kernels' square output tile, K step, and padded shared row (16-bit elements).
pub(crate) const MMA_TILE: usize = 128;
const MMA_BK: u32 = 32;
const MMA_LDS: u32 = 40;
/// The pipelined tensor-core kernel (`linear_mma_pipelined`, `kernels/gemm.cu`): its square output
/// tile, K step (one 128-byte swizzled shared row), ring stages, threads (4 warps of 64 × 64),
/// and block rows per raster group.
const PIPE_TILE: usize = 128;
const PIPE_BK: u32 = 64;
const PIPE_STAGES: u32 = 3;
const PIPE_THREADS: u32 = 128;
const PIPE_GROUP_M: u32 = 8;
/// The most dynamic shared memory a block may opt into on sm_86 and sm_89 (99 KiB), the smallest
/// limit of the GPUs the pipelined kernel is for.
const SM89_MAX_DYNAMIC_SMEM: u32 = 99 * 1024;
/// The Hopper kernels (`kernels/gemm_wgmma.cuh`): block rows, K step (one 128-byte swizzled row),
/// ring stages, how many K tiles ahead copies run, and block rows per raster group.
const WG_BM: u32 = 128;
const WG_BN: u32 = 256;
const WG_BK: u32 = 64;
const WG_STAGES: u32 = 4;
const WG_PREFETCH: u32 = WG_STAGES - 1;
const WG_GROUP_M: u32 = 8;
/// The warp-specialised Hopper kernel (`kernels/gemm_wgmma_ws.cuh`): a producer and two consumer
/// warpgroups, its ring's stages, and each role's registers per thread after `setmaxnreg`.
const WS_THREADS: u32 = 384;
const WS_STAGES: u32 = 4;
const WS_PRODUCER_REGS: u32 = 40;
const WS_CONSUMER_REGS: u32 = 232;

/// The tiling as `kernels/gemm.cuh` reads it (gemm.cu and conv.cu are compiled with it).
pub(crate) const GEMM_DEFINES: &[(&str, u32)] = &[
    ("GEMM_THREADS", GEMM_THREADS),
    ("SIMT_TILE", SIMT_TILE as u32),
    ("MMA_BM", MMA_TILE as u32),
    ("MMA_BN", MMA_TILE as u32),
    ("MMA_BK", MMA_BK),
    ("MMA_LDS", MMA_LDS),
    ("PIPE_BM", PIPE_TILE as u32),
    ("PIPE_BN", PIPE_TILE as u32),
    ("PIPE_BK", PIPE_BK),
    ("PIPE_STAGES", PIPE_STAGES),
    ("PIPE_THREADS", PIPE_THREADS),
    ("PIPE_GROUP_M", PIPE_GROUP_M),
    ("WG_BM", WG_BM),
    ("WG_BK", WG_BK),
    ("WG_STAGES", WG_STAGES),
    ("WG_PREFETCH", WG_PREFETCH),
    ("WG_GROUP_M", WG_GROUP_M),
    ("WS_THREADS", WS_THREADS),
    ("WS_STAGES", WS_STAGES),
    ("WS_PRODUCER_REGS", WS_PRODUCER_REGS),
    ("WS_CONSUMER_REGS", WS_CONSUMER_REGS),
];

/// A GEMM kernel of `family` (linear's or conv's): 256 threads.
pub(crate) const fn gemm_kernel(name: &'static str, family: Family) -> KernelDesc {
    KernelDesc::new(name, family, GEMM_THREADS)
}

joyrt_core::kernel_params! {
    /// The scalars of the linear kernels: `y [M, N] = x [M, K]·w [N, K]ᵀ + bias`.
    pub struct GemmArgs {
        pub m: i32,
        pub n: i32,
        pub k: i32,
        /// 1 where K % 8 == 0: rows of 8 elements are aligned 16-byte loads.
        pub vec: i32,
        /// `linear_quantized` only (0 for `linear`): `u32` words per weight row, codes per scale
        /// along K, scales per weight row.
        pub row_words: i32,
        pub block: i32,
        pub scales_per_row: i32,
        /// The `EPI_*` code of the epilogue (`kernels/epilogue.cuh`).
        pub epilogue: i32,
    }
}

/// The epilogue's code and its two operands' addresses (the gated residual's residual and gate;
/// null otherwise), as every linear kernel takes them after the bias.
fn epilogue_operands(e: &Epilogue<'_, CudaBackend>) -> (i32, [u64; 2]) {
    let operands = match e {
        Epilogue::GatedResidual { residual, gate } => [addr(residual), addr(gate)],
        Epilogue::None | Epilogue::GeluTanh => [0, 0],
    };
    (e.kind().code() as i32, operands)
}

/// The pipelined kernel's ring: PIPE_STAGES × (A, B) tiles of PIPE_TILE rows × PIPE_BK 16-bit
/// elements (no padding: the rows are swizzled).
const PIPELINED_SMEM: u32 = PIPE_STAGES * 2 * PIPE_TILE as u32 * PIPE_BK * 2;
const _: () =
    assert!(PIPELINED_SMEM <= SM89_MAX_DYNAMIC_SMEM, "the pipelined GEMM must launch on sm_86/sm_89");
fn pipelined_smem(_: &Spec) -> u32 {
    PIPELINED_SMEM
}

/// A Hopper kernel's ring for `bn`-column tiles, plus the 1024 bytes it may skip to align the
/// swizzled tiles.
const fn wgmma_smem(bn: u32) -> u32 {
    WG_STAGES * (WG_BM + bn) * WG_BK * 2 + 1024
}
fn wgmma_smem_n256(_: &Spec) -> u32 {
    wgmma_smem(WG_BN)
}

/// The warp-specialised kernel's ring (WS_STAGES × a 128-row A box and a 256-row B box of 64
/// elements), its full and empty barriers, and the 1024 bytes it may skip to align the ring.
fn wgmma_ws_smem(_: &Spec) -> u32 {
    1024 + WS_STAGES * (WG_BM + WG_BN) * WG_BK * 2 + 2 * WS_STAGES * 8
}

const LINEAR_SIMT: Kernel<GemmArgs> = Kernel::new(gemm_kernel("linear_simt", Family::Gemm));
/// Register-staged tensor cores, for K % 8 ≠ 0.
const LINEAR_MMA: Kernel<GemmArgs> = Kernel::new(gemm_kernel("linear_mma", Family::Gemm).mma());
/// cp.async into a ring of swizzled shared tiles, 64 × 64 warp tiles, for K % 8 == 0 (every DiT
/// and Qwen GEMM; sm_80 … sm_89, and sm_90 with `JOYRT_CUDA_GEMM=mma`). A 1-D grid: the kernel
/// numbers its tiles in raster groups.
const LINEAR_MMA_PIPELINED: Kernel<GemmArgs> = Kernel::new(
    KernelDesc::new("linear_mma_pipelined", Family::Gemm, PIPE_THREADS).mma().dynamic_smem(pipelined_smem),
);

/// Warpgroup MMA from swizzled shared tiles (sm_90a), for K % 8 == 0: 128 × 256 tiles, a block
/// per tile.
const LINEAR_WGMMA: Kernel<GemmArgs> =
    Kernel::new(gemm_kernel("linear_wgmma", Family::Gemm).wgmma().dynamic_smem(wgmma_smem_n256));
/// The same, persistent (`JOYRT_CUDA_GEMM=wgmma-persistent`).
const LINEAR_WGMMA_PERSISTENT: Kernel<GemmArgs> =
    Kernel::new(gemm_kernel("linear_wgmma_persistent", Family::Gemm).wgmma().dynamic_smem(wgmma_smem_n256));

/// The same tiles, persistent and warp-specialised, reading x and w through tensor maps
/// (`JOYRT_CUDA_GEMM=wgmma-ws`).
const LINEAR_WGMMA_WS: Kernel<GemmArgs> = Kernel::new(
    KernelDesc::new("linear_wgmma_ws", Family::Gemm, WS_THREADS)
        .wgmma()
        .tensor_maps(2)
        .dynamic_smem(wgmma_ws_smem),
);

/// `linear_quantized`, one kernel per code format: the weight dequantized exactly into f32 shared
/// tiles (any activation dtype, any block)...
const LINEAR_INT8_SIMT: Kernel<GemmArgs> = Kernel::new(gemm_kernel("linear_int8_simt", Family::Gemm));
const LINEAR_INT4_SIMT: Kernel<GemmArgs> = Kernel::new(gemm_kernel("linear_int4_simt", Family::Gemm));
const LINEAR_FP8_SIMT: Kernel<GemmArgs> = Kernel::new(gemm_kernel("linear_fp8_simt", Family::Gemm));
/// ... or the codes decoded into 16-bit shared tiles for `mma.sync` and the scales applied in f32
/// per K tile (bf16/f16 activations, every K tile inside one scale block).
const LINEAR_INT8_MMA: Kernel<GemmArgs> = Kernel::new(gemm_kernel("linear_int8_mma", Family::Gemm).mma());
const LINEAR_INT4_MMA: Kernel<GemmArgs> = Kernel::new(gemm_kernel("linear_int4_mma", Family::Gemm).mma());
const LINEAR_FP8_MMA: Kernel<GemmArgs> = Kernel::new(gemm_kernel("linear_fp8_mma", Family::Gemm).mma());
/// W8A8 on fp8 weights (sm_89+, any activation dtype): each row of x quantized to E4M3 with its
/// scale (a block per row), then the E4M3 × E4M3 `mma.sync` GEMM.
const FP8_QUANTIZE_ROWS: Kernel<GemmArgs> =
    Kernel::new(gemm_kernel("fp8_quantize_rows", Family::Gemm).fp8_mma());
const LINEAR_FP8_W8A8_MMA: Kernel<GemmArgs> =
    Kernel::new(gemm_kernel("linear_fp8_w8a8_mma", Family::Gemm).fp8_mma());
/// ... or on FP8 warpgroup MMA (sm_90a, 16-bit activations, K % 16 == 0): 128 × 256 tiles.
const LINEAR_FP8_W8A8_WGMMA: Kernel<GemmArgs> = Kernel::new(
    gemm_kernel("linear_fp8_w8a8_wgmma", Family::Gemm).wgmma().fp8_mma().dynamic_smem(wgmma_smem_n256),
);
/// ... warp-specialised and persistent, the code matrices read through tensor maps
/// (`JOYRT_CUDA_GEMM=wgmma-ws`).
const LINEAR_FP8_W8A8_WGMMA_WS: Kernel<GemmArgs> = Kernel::new(
    KernelDesc::new("linear_fp8_w8a8_wgmma_ws", Family::Gemm, WS_THREADS)
        .wgmma()
        .fp8_mma()
        .tensor_maps(2)
        .dynamic_smem(wgmma_ws_smem),
);

family! {
    "gemm", GemmArgs,
    defines: GEMM_DEFINES,
    kernels: [
        LINEAR_SIMT, LINEAR_MMA, LINEAR_MMA_PIPELINED, LINEAR_WGMMA, LINEAR_WGMMA_PERSISTENT, LINEAR_WGMMA_WS,
        LINEAR_INT8_SIMT, LINEAR_INT4_SIMT, LINEAR_FP8_SIMT, LINEAR_INT8_MMA, LINEAR_INT4_MMA, LINEAR_FP8_MMA,
        FP8_QUANTIZE_ROWS, LINEAR_FP8_W8A8_MMA, LINEAR_FP8_W8A8_WGMMA, LINEAR_FP8_W8A8_WGMMA_WS,
    ],
}

pub fn linear(
    be: &CudaBackend,
    x: &T,
    w: &T,
    bias: Option<&T>,
    epilogue: Epilogue<'_, CudaBackend>,
    p: &LinearParams,
) -> Result<CudaBuffer> {
    let spec = Spec { x: x.dtype(), w: w.dtype(), b: dtype_or(bias, x.dtype()), c: x.dtype() };
    let aligned = p.k.is_multiple_of(8);
    let (code, [residual, gate]) = epilogue_operands(&epilogue);
    let args = GemmArgs {
        m: i32_of("M", p.m)?,
        n: i32_of("N", p.n)?,
        k: i32_of("K", p.k)?,
        vec: aligned as i32,
        epilogue: code,
        ..GemmArgs::default()
    };
    let grid = |tile: usize| Grid::Blocks(p.n.div_ceil(tile), p.m.div_ceil(tile));
    // The Hopper kernels number their tiles themselves (grouped rasterisation): a 1-D grid, of
    // at most one block per multiprocessor for the persistent one.
    let wgmma_tiles = p.m.div_ceil(WG_BM as usize) * p.n.div_ceil(WG_BN as usize);
    let (kernel, grid) = match (be.tensor_cores(&spec), aligned, be.gemm_path()) {
        (true, true, GemmPath::WgmmaWs) => {
            return linear_wgmma_ws(be, (x, w, bias), [residual, gate], spec, &args, wgmma_tiles)
        }
        (true, true, GemmPath::Wgmma) => (&LINEAR_WGMMA, Grid::Blocks(wgmma_tiles, 1)),
        (true, true, GemmPath::WgmmaPersistent) => {
            (&LINEAR_WGMMA_PERSISTENT, Grid::Blocks(wgmma_tiles.min(be.persistent_blocks() as usize), 1))
        }
        (true, true, _) => {
            (&LINEAR_MMA_PIPELINED, Grid::Blocks(p.m.div_ceil(PIPE_TILE) * p.n.div_ceil(PIPE_TILE), 1))
        }
        (true, false, _) => (&LINEAR_MMA, grid(MMA_TILE)),
        (false, _, _) => (&LINEAR_SIMT, grid(SIMT_TILE)),
    };
    let buffers = [addr(x), addr(w), opt_addr(bias), residual, gate];
    be.launch_output(kernel, spec, grid, &buffers, (x.dtype(), p.m * p.n), &args)
}

/// `linear` on the warp-specialised kernel: x and w as tensor maps of 128- and 256-row boxes of
/// one 128-byte K tile, a persistent grid over `tiles` output tiles.
fn linear_wgmma_ws(
    be: &CudaBackend,
    (x, w, bias): (&T, &T, Option<&T>),
    [residual, gate]: [u64; 2],
    spec: Spec,
    args: &GemmArgs,
    tiles: usize,
) -> Result<CudaBuffer> {
    let map = |t: &T, rows: i32, box_rows: u32| {
        let (rows, cols) = (rows as usize, args.k as usize);
        be.tensor_map(&TileMap { address: addr(t), dtype: t.dtype(), rows, cols, box_rows, box_cols: WG_BK })
    };
    let maps = [map(x, args.m, WG_BM)?, map(w, args.n, WG_BN)?];
    let out = be.output(x.dtype(), args.m as usize * args.n as usize)?;
    let grid = Grid::Blocks(tiles.min(be.persistent_blocks() as usize), 1);
    be.launch_with_maps(
        &LINEAR_WGMMA_WS,
        spec,
        grid,
        &[opt_addr(bias), residual, gate, out.ptr],
        &maps,
        args,
    )?;
    Ok(out)
}

/// `linear_quantized`: the tensor-core kernel of the weight's format where the activations take
/// tensor cores and each 32-wide K tile lies inside one scale block, else its SIMT kernel. The
/// module is the one of `linear` for the same activation and bias dtypes (the weight operand is
/// `u32` words, not `TW`). Hopper runs the `mma.sync` kernel too (no `wgmma` form).
pub fn linear_quantized(
    be: &CudaBackend,
    x: &T,
    w: &QuantizedMatrix<CudaBackend>,
    bias: Option<&T>,
    epilogue: Epilogue<'_, CudaBackend>,
    p: &QuantLinearParams,
) -> Result<CudaBuffer> {
    let spec = Spec { x: x.dtype(), w: x.dtype(), b: dtype_or(bias, x.dtype()), c: x.dtype() };
    let (code, [residual, gate]) = epilogue_operands(&epilogue);
    let args = GemmArgs {
        m: i32_of("M", p.m)?,
        n: i32_of("N", p.n)?,
        k: i32_of("K", p.k)?,
        vec: p.k.is_multiple_of(8) as i32,
        row_words: i32_of("words per weight row", p.row_words)?,
        block: i32_of("the scale block", p.block)?,
        scales_per_row: i32_of("scales per weight row", p.scales_per_row)?,
        epilogue: code,
    };
    if p.activations == QuantActivations::Fp8PerRow {
        return linear_fp8_w8a8(be, x, w, bias, [residual, gate], spec, args);
    }
    let tiles_in_one_block = p.format == QuantFormat::Fp8E4M3 || p.block.is_multiple_of(MMA_BK as usize);
    let (simt, mma) = match QuantCode::from(p.format) {
        QuantCode::Int8 => (&LINEAR_INT8_SIMT, &LINEAR_INT8_MMA),
        QuantCode::Int4 => (&LINEAR_INT4_SIMT, &LINEAR_INT4_MMA),
        QuantCode::Fp8E4M3 => (&LINEAR_FP8_SIMT, &LINEAR_FP8_MMA),
    };
    let (kernel, tile) =
        if be.tensor_cores(&spec) && tiles_in_one_block { (mma, MMA_TILE) } else { (simt, SIMT_TILE) };
    let grid = Grid::Blocks(p.n.div_ceil(tile), p.m.div_ceil(tile));
    let buffers = [addr(x), w.data().ptr, addr(w.scales()), opt_addr(bias), residual, gate];
    be.launch_output(kernel, spec, grid, &buffers, (x.dtype(), p.m * p.n), &args)
}

/// `linear_quantized` W8A8 (`QuantActivations::Fp8PerRow`, an fp8 weight): x's rows quantized to
/// E4M3 codes (packed as the weight's rows, `row_words` words each) and f32 scales, then the FP8
/// tensor-core GEMM over 128 × 128 tiles.
fn linear_fp8_w8a8(
    be: &CudaBackend,
    x: &T,
    w: &QuantizedMatrix<CudaBackend>,
    bias: Option<&T>,
    [residual, gate]: [u64; 2],
    spec: Spec,
    mut args: GemmArgs,
) -> Result<CudaBuffer> {
    if !be.has_fp8_mma() {
        return Err(Error::Unsupported {
            backend: be.name(),
            op: "linear_quantized with fp8 activations (W8A8 needs FP8 mma.sync: sm_89 or later)",
        });
    }
    let (m, n) = (args.m as usize, args.n as usize);
    // 16 codes from a multiple of 16 are one aligned 16-byte load of a row.
    args.vec = (args.k % 16 == 0) as i32;
    // The codes are u32 words in a buffer of 4-byte elements (the kernels never read them as f32).
    let codes = be.output(DType::F32, m * args.row_words as usize)?;
    let row_scales = be.output(DType::F32, m)?;
    be.launch(&FP8_QUANTIZE_ROWS, spec, Grid::Blocks(m, 1), &[addr(x), codes.ptr, row_scales.ptr], &args)?;
    // Hopper takes its wgmma kernels unless JOYRT_CUDA_GEMM=mma (or simt) asks for the mma.sync
    // path every other GPU runs: the warp-specialised one for wgmma-ws, else the block-per-tile one.
    let wgmma = be.has_wgmma() && be.tensor_cores(&spec) && args.vec == 1 && be.gemm_path().needs_wgmma();
    let tiles = m.div_ceil(WG_BM as usize) * n.div_ceil(WG_BN as usize);
    if wgmma && be.gemm_path() == GemmPath::WgmmaWs {
        // The codes as rows of K / 2 16-bit pairs (K % 16 == 0: rows of whole 16-byte chunks).
        let map = |address: u64, rows: usize, box_rows: u32| {
            let cols = args.k as usize / 2;
            be.tensor_map(&TileMap { address, dtype: DType::BF16, rows, cols, box_rows, box_cols: WG_BK })
        };
        let maps = [map(codes.ptr, m, WG_BM)?, map(w.data().ptr, n, WG_BN)?];
        let out = be.output(x.dtype(), m * n)?;
        let grid = Grid::Blocks(tiles.min(be.persistent_blocks() as usize), 1);
        let buffers = [row_scales.ptr, addr(w.scales()), opt_addr(bias), residual, gate, out.ptr];
        be.launch_with_maps(&LINEAR_FP8_W8A8_WGMMA_WS, spec, grid, &buffers, &maps, &args)?;
        return Ok(out);
    }
    let (kernel, grid) = if wgmma {
        (&LINEAR_FP8_W8A8_WGMMA, Grid::Blocks(tiles, 1))
    } else {
        (&LINEAR_FP8_W8A8_MMA, Grid::Blocks(n.div_ceil(MMA_TILE), m.div_ceil(MMA_TILE)))
    };
    let buffers = [codes.ptr, row_scales.ptr, w.data().ptr, addr(w.scales()), opt_addr(bias), residual, gate];
    be.launch_output(kernel, spec, grid, &buffers, (x.dtype(), m * n), &args)
}

#[cfg(test)]
mod tests {
    use crate::limits::DeviceLimits;
    use crate::{AttentionPath, CudaBackend, GemmPath};
    use joyrt_core::backend::{Epilogue, QuantActivations};
    use joyrt_core::quant::codec;
    use joyrt_core::{DType, QuantFormat, QuantizedMatrix, Rng, Tensor};

    /// `JOYRT_CUDA_GEMM=wgmma-ws` on the sm_90 emulation: `linear` takes the warp-specialised
    /// kernel where K % 8 == 0 (here 9 K steps over a 4-stage ring, so the ring wraps) and falls
    /// back to `linear_mma` otherwise, agreeing with the CPU reference either way.
    #[test]
    fn the_warp_specialised_gemm_is_taken_where_k_allows_it() {
        let b = match CudaBackend::emulated_hopper(GemmPath::WgmmaWs, AttentionPath::Mma) {
            Ok(b) => b,
            Err(e) => return println!("SKIPPED: no sm_90 CUDA emulation: {e}"),
        };
        let cpu = joyrt_cpu::CpuBackend::default();
        let mut rng = Rng::new(17);
        for (m, k, n, kernel) in [(150, 520, 37, "linear_wgmma_ws"), (9, 70, 5, "linear_mma")] {
            let (xv, wv, bv) =
                (rng.normal_vec(m * k, 1.0), rng.normal_vec(n * k, 0.1), rng.normal_vec(n, 1.0));
            let on_cuda = || {
                let x = Tensor::from_f32(&b, [m, k], &xv, DType::BF16).ok()?;
                let w = Tensor::from_f32(&b, [n, k], &wv, DType::BF16).ok()?;
                let bias = Tensor::from_f32(&b, [n], &bv, DType::BF16).ok()?;
                b.profile_start().ok()?;
                let y = x.linear(&w, Some(&bias)).ok()?.to_f32_vec().ok()?;
                let launched: Vec<_> = b.profile_finish().ok()?.kernels.iter().map(|k| k.kernel).collect();
                assert_eq!(launched, [kernel], "M={m} K={k} N={n}");
                Some(y)
            };
            let on_cpu = || {
                let x = Tensor::from_f32(&cpu, [m, k], &xv, DType::BF16).ok()?;
                let w = Tensor::from_f32(&cpu, [n, k], &wv, DType::BF16).ok()?;
                let bias = Tensor::from_f32(&cpu, [n], &bv, DType::BF16).ok()?;
                x.linear(&w, Some(&bias)).ok()?.to_f32_vec().ok()
            };
            let (got, want) = (on_cuda().expect("the emulated call"), on_cpu().expect("the CPU call"));
            assert_eq!(got.len(), m * n);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-2 * w.abs().max(1.0), "M={m} K={k} N={n}: {g} vs {w}");
            }
        }
    }

    /// Which `linear_quantized` kernel a call takes on the (sm_80) emulation: tensor cores for
    /// 16-bit activations when each K tile lies in one scale block, SIMT otherwise; and it agrees
    /// with the CPU reference.
    #[test]
    fn linear_quantized_takes_the_kernel_its_operands_allow() {
        let b = match CudaBackend::emulated() {
            Ok(b) => b,
            Err(e) => return println!("SKIPPED: linear_quantized kernel choice: no CUDA emulation: {e}"),
        };
        let cpu = joyrt_cpu::CpuBackend::default();
        let (m, n) = (5, 9);
        let cases = [
            (DType::BF16, QuantFormat::Int8 { block: 32 }, 64, "linear_int8_mma"),
            (DType::F16, QuantFormat::Int4 { block: 64 }, 128, "linear_int4_mma"),
            (DType::BF16, QuantFormat::Fp8E4M3, 45, "linear_fp8_mma"),
            (DType::F32, QuantFormat::Int8 { block: 32 }, 64, "linear_int8_simt"),
            (DType::F32, QuantFormat::Fp8E4M3, 45, "linear_fp8_simt"),
            (DType::BF16, QuantFormat::Int4 { block: 16 }, 48, "linear_int4_simt"),
        ];
        let mut rng = Rng::new(5);
        for (dtype, format, k, kernel) in cases {
            let q = codec::quantize_rows(format, k, &rng.normal_vec(n * k, 0.5)).unwrap();
            let xv = rng.normal_vec(m * k, 1.0);
            let on_cuda = || {
                let w = QuantizedMatrix::upload(&b, format, n, k, &q.codes, &q.scales).ok()?;
                let x = Tensor::from_f32(&b, [m, k], &xv, dtype).ok()?;
                b.profile_start().ok()?;
                let y = x.linear_quantized(&w, None).ok()?.to_f32_vec().ok()?;
                let launched: Vec<_> = b.profile_finish().ok()?.kernels.iter().map(|k| k.kernel).collect();
                assert_eq!(launched, [kernel], "{dtype} {format} K={k}");
                Some(y)
            };
            let on_cpu = || {
                let w = QuantizedMatrix::upload(&cpu, format, n, k, &q.codes, &q.scales).ok()?;
                Tensor::from_f32(&cpu, [m, k], &xv, dtype)
                    .ok()?
                    .linear_quantized(&w, None)
                    .ok()?
                    .to_f32_vec()
                    .ok()
            };
            let (got, want) = (on_cuda().expect("the emulated call"), on_cpu().expect("the CPU call"));
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= tol * w.abs().max(1.0), "{dtype} {format} K={k}: {g} vs {w}");
            }
        }
    }

    /// W8A8 (`QuantActivations::Fp8PerRow`) of `[m, k] × [n, k]` on `b`, with row 3 of x all
    /// zero: the kernels launched, and the output against the CPU reference (which quantizes
    /// the rows the same way) at bf16's op tolerance. The zero row comes out zero.
    fn check_w8a8(b: &CudaBackend, (m, k, n): (usize, usize, usize), kernels: [&str; 2]) {
        let cpu = joyrt_cpu::CpuBackend::default();
        let mut rng = Rng::new(89);
        let f = QuantFormat::Fp8E4M3;
        let q = codec::quantize_rows(f, k, &rng.normal_vec(n * k, 0.5)).unwrap();
        let mut xv = rng.normal_vec(m * k, 1.0);
        xv[3 * k..4 * k].fill(0.0);
        let on_cuda = || -> joyrt_core::Result<Vec<f32>> {
            let w = QuantizedMatrix::upload(b, f, n, k, &q.codes, &q.scales)?;
            let x = Tensor::from_f32(b, [m, k], &xv, DType::BF16)?;
            b.profile_start()?;
            let y =
                x.linear_quantized_as(&w, None, Epilogue::None, QuantActivations::Fp8PerRow)?.to_f32_vec()?;
            // (The profile lists kernels by time, not in launch order.)
            let mut launched: Vec<_> = b.profile_finish()?.kernels.iter().map(|k| k.kernel).collect();
            launched.sort_unstable();
            assert_eq!(launched, kernels, "K={k}");
            Ok(y)
        };
        let on_cpu = || -> joyrt_core::Result<Vec<f32>> {
            let w = QuantizedMatrix::upload(&cpu, f, n, k, &q.codes, &q.scales)?;
            let x = Tensor::from_f32(&cpu, [m, k], &xv, DType::BF16)?;
            x.linear_quantized_as(&w, None, Epilogue::None, QuantActivations::Fp8PerRow)?.to_f32_vec()
        };
        let (got, want) = (on_cuda().expect("the emulated call"), on_cpu().expect("the CPU call"));
        assert!(got[3 * n..4 * n].iter().chain(&want[3 * n..4 * n]).all(|&v| v == 0.0));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-2 * w.abs().max(1.0), "K={k}: {g} vs {w}");
        }
    }

    /// W8A8 runs on FP8 `mma.sync` from sm_89 (any K), on FP8 `wgmma` on sm_90 where K % 16 == 0
    /// (block per tile, or warp-specialised with `wgmma-ws`; `mma.sync` otherwise); sm_80 has
    /// neither and says so.
    #[test]
    fn w8a8_takes_the_fp8_tensor_cores_of_its_architecture() {
        let quantize = "fp8_quantize_rows";
        match CudaBackend::emulated_on(DeviceLimits::SM89) {
            Ok(ada) => {
                check_w8a8(&ada, (130, 100, 20), [quantize, "linear_fp8_w8a8_mma"]);
                assert!(ada.set_fp8_activations(true).is_ok() && ada.fp8_activations());
            }
            Err(e) => println!("SKIPPED: no sm_89 CUDA emulation: {e}"),
        }
        match CudaBackend::emulated_hopper(GemmPath::Wgmma, AttentionPath::Mma) {
            Ok(hopper) => {
                check_w8a8(&hopper, (130, 272, 20), [quantize, "linear_fp8_w8a8_wgmma"]);
                check_w8a8(&hopper, (9, 100, 5), [quantize, "linear_fp8_w8a8_mma"]);
            }
            Err(e) => println!("SKIPPED: no sm_90 CUDA emulation: {e}"),
        }
        // Warp-specialised: 10 K steps of 128 codes over the 4-stage ring (it wraps; the last
        // step is the map's zero fill past K), two row tiles, a column tail.
        match CudaBackend::emulated_hopper(GemmPath::WgmmaWs, AttentionPath::Mma) {
            Ok(hopper) => {
                check_w8a8(&hopper, (150, 1168, 37), [quantize, "linear_fp8_w8a8_wgmma_ws"]);
                check_w8a8(&hopper, (9, 100, 5), [quantize, "linear_fp8_w8a8_mma"]);
            }
            Err(e) => println!("SKIPPED: no sm_90 CUDA emulation: {e}"),
        }
        match CudaBackend::emulated_on(DeviceLimits::SM80) {
            Ok(ampere) => {
                let f = QuantFormat::Fp8E4M3;
                let q = codec::quantize_rows(f, 32, &[0.5; 64]).unwrap();
                let w = QuantizedMatrix::upload(&ampere, f, 2, 32, &q.codes, &q.scales).unwrap();
                let x = Tensor::from_f32(&ampere, [1, 32], &[1.0; 32], DType::BF16).unwrap();
                let e =
                    x.linear_quantized_as(&w, None, Epilogue::None, QuantActivations::Fp8PerRow).unwrap_err();
                assert!(matches!(e, joyrt_core::Error::Unsupported { .. }), "{e}");
                assert!(ampere.set_fp8_activations(true).is_err());
            }
            Err(e) => println!("SKIPPED: no sm_80 CUDA emulation: {e}"),
        }
    }

    /// Which `linear` kernel a bf16 call takes on the sm_90 emulation: with `JOYRT_CUDA_GEMM=mma`
    /// (the path of every GPU before Hopper) the cp.async kernel for K % 8 == 0 and the
    /// register-staged one otherwise; by default the `wgmma` kernel. Each agrees with the CPU.
    #[test]
    fn linear_takes_the_kernel_its_path_and_k_allow() {
        let cpu = joyrt_cpu::CpuBackend::default();
        let (m, n) = (130, 36);
        let cases = [
            (GemmPath::Mma, &[(72, "linear_mma_pipelined"), (36, "linear_mma")][..]),
            (GemmPath::Wgmma, &[(72, "linear_wgmma")][..]),
        ];
        let mut rng = Rng::new(17);
        for (path, by_k) in cases {
            let b = match CudaBackend::emulated_hopper(path, AttentionPath::Mma) {
                Ok(b) => b,
                Err(e) => return println!("SKIPPED: linear kernel choice: no CUDA emulation: {e}"),
            };
            for &(k, kernel) in by_k {
                let (xv, wv) = (rng.normal_vec(m * k, 1.0), rng.normal_vec(n * k, 0.5));
                let on_cuda = || {
                    let x = Tensor::from_f32(&b, [m, k], &xv, DType::BF16).ok()?;
                    let w = Tensor::from_f32(&b, [n, k], &wv, DType::BF16).ok()?;
                    b.profile_start().ok()?;
                    let y = x.linear(&w, None).ok()?.to_f32_vec().ok()?;
                    let launched: Vec<_> =
                        b.profile_finish().ok()?.kernels.iter().map(|k| k.kernel).collect();
                    assert_eq!(launched, [kernel], "{path:?} K={k}");
                    Some(y)
                };
                let on_cpu = || {
                    let x = Tensor::from_f32(&cpu, [m, k], &xv, DType::BF16).ok()?;
                    x.linear(&Tensor::from_f32(&cpu, [n, k], &wv, DType::BF16).ok()?, None)
                        .ok()?
                        .to_f32_vec()
                        .ok()
                };
                let (got, want) = (on_cuda().expect("the emulated call"), on_cpu().expect("the CPU call"));
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-2 * w.abs().max(1.0), "{path:?} K={k}: {g} vs {w}");
                }
            }
        }
    }
}
