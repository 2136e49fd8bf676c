# Same-run GPU peer for `joyrt bench --backend cuda --dtype bf16 --tokens 9231 --attn-tokens 9231`:
# cuBLAS (torch.nn.functional.linear) at the DiT's GEMM shapes and PyTorch's
# scaled_dot_product_attention at 9231 tokens x 32 heads x 128, bf16, timed with CUDA events
# (median of 10 after 3 warm-ups). Needs only PyTorch with CUDA (the device machine has it).
import torch

assert torch.cuda.is_available(), "no CUDA device"
dev = torch.device("cuda")
print(f"peer: torch {torch.__version__}, {torch.cuda.get_device_name(0)}, bf16")


def median_ms(f, warm=3, iters=10):
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


m = 9231
for k, n in [(4096, 12288), (4096, 4096), (4096, 16384), (16384, 4096)]:
    x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
    w = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
    ms = median_ms(lambda: torch.nn.functional.linear(x, w))
    print(f"cublas linear M={m} {k}x{n:<6} {ms:9.3f} ms {2 * m * k * n / ms / 1e9:8.1f} TFLOP/s")

l = 9231
q, k_, v = (torch.randn(1, 32, l, 128, device=dev, dtype=torch.bfloat16) for _ in range(3))
ms = median_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k_, v))
print(f"sdpa attention L={l} 32x128      {ms:9.3f} ms {4 * l * l * 4096 / ms / 1e9:8.1f} TFLOP/s")
