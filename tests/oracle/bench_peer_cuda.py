# Same-run GPU peer for `joyrt bench --backend cuda --dtype bf16 --parts ops,quantized --tokens
# 9231 --attn-tokens 9231`: cuBLAS (torch.nn.functional.linear) at the DiT's GEMM shapes and
# PyTorch's scaled_dot_product_attention at 9231 tokens x 32 heads x 128, bf16; and, where the GPU
# has FP8 tensor cores (sm_89+), cuBLASLt's FP8 GEMM (torch._scaled_mm, E4M3 x E4M3 with one f32
# scale per row of x and per row of w, bf16 out: joyrt's W8A8 without its activation quantization)
# at the same GEMM shapes. Timed with CUDA events (median of 10 after 3 warm-ups). Needs only
# PyTorch with CUDA (the device machine has it).
#
# The table goes to stdout; with --json it goes to stderr and stdout carries one JSON object in
# the shape of `joyrt bench --json`'s "ops" records, plus "fp8": {"ops": [...]} or {"error": why}
# (tests/gpu_check.sh reads it).
import argparse
import json
import sys

M = 9231
GEMMS = [(4096, 12288), (4096, 4096), (4096, 16384), (16384, 4096)]
HEADS, HEAD_DIM = 32, 128


def median_ms(torch, f, warm=3, iters=10):
    for _ in range(warm):
        f()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def fp8_gemms(torch, dev, gen, say):
    """torch._scaled_mm at the GEMM shapes, row-wise scales: {"ops": records} or {"error": why}."""
    if torch.cuda.get_device_capability(0) < (8, 9):
        return {"error": "no FP8 tensor cores (sm_89 or later)"}
    records = []
    try:
        for k, n in GEMMS:
            x = torch.randn(M, k, device=dev, dtype=torch.float32, generator=gen)
            w = torch.randn(n, k, device=dev, dtype=torch.float32, generator=gen)
            sx = x.abs().amax(dim=1, keepdim=True) / 448.0
            sw = w.abs().amax(dim=1, keepdim=True) / 448.0
            xq = (x / sx).to(torch.float8_e4m3fn)
            # cuBLASLt takes the second operand column-major: wᵀ of a row-major w is.
            wq = (w / sw).to(torch.float8_e4m3fn).t()
            del x, w
            sw = sw.t().contiguous()

            def gemm():
                return torch._scaled_mm(xq, wq, scale_a=sx, scale_b=sw, out_dtype=torch.bfloat16)

            ms = median_ms(torch, gemm)
            flop = 2 * M * k * n
            say(f"cublas fp8 W8A8 M={M} {k}x{n:<6} {ms:9.3f} ms {flop / ms / 1e9:8.1f} TFLOP/s")
            records.append({"m": M, "k": k, "n": n, "ms": ms, "flop": flop})
            del xq, wq
    except Exception as e:  # an older torch or cuBLASLt without row-wise scales: say so, go on
        say(f"peer: torch._scaled_mm (row-wise fp8) failed: {type(e).__name__}: {e}")
        return {"error": f"torch._scaled_mm: {type(e).__name__}: {e}"[:300]}
    return {"ops": records}


def main():
    parser = argparse.ArgumentParser(description="cuBLAS and SDPA at the DiT's 1024² shapes, bf16")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    args = parser.parse_args()
    # Imported here so that `--help` works on a machine without PyTorch (the dry run checks it).
    import torch

    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    if not torch.cuda.is_available():
        sys.exit("peer: PyTorch sees no CUDA device")
    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(0)
    say(f"peer: torch {torch.__version__} (CUDA {torch.version.cuda}), {gpu}, bf16")
    gen = torch.Generator(device=dev).manual_seed(0)
    records = []
    for k, n in GEMMS:
        x = torch.randn(M, k, device=dev, dtype=torch.bfloat16, generator=gen)
        w = torch.randn(n, k, device=dev, dtype=torch.bfloat16, generator=gen)
        ms = median_ms(torch, lambda: torch.nn.functional.linear(x, w))
        flop = 2 * M * k * n
        say(f"cublas linear M={M} {k}x{n:<6} {ms:9.3f} ms {flop / ms / 1e9:8.1f} TFLOP/s")
        records.append({"op": "linear", "m": M, "k": k, "n": n, "ms": ms, "flop": flop})
        del x, w
    fp8 = fp8_gemms(torch, dev, gen, say)
    q, k_, v = (
        torch.randn(1, HEADS, M, HEAD_DIM, device=dev, dtype=torch.bfloat16, generator=gen) for _ in range(3)
    )
    ms = median_ms(torch, lambda: torch.nn.functional.scaled_dot_product_attention(q, k_, v))
    flop = 4 * M * M * HEADS * HEAD_DIM
    say(f"sdpa attention L={M} {HEADS}x{HEAD_DIM}      {ms:9.3f} ms {flop / ms / 1e9:8.1f} TFLOP/s")
    records.append({"op": "attention", "tokens": M, "heads": HEADS, "head_dim": HEAD_DIM, "ms": ms, "flop": flop})
    if args.json:
        doc = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu, "dtype": "bf16", "ops": records}
        doc["fp8"] = fp8
        print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
