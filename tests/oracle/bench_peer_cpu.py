# Same-run CPU peer for `joyrt bench --tokens 256`: PyTorch f32 linear and SDPA at the DiT block shapes.
# Run with the oracle venv (tests/oracle/requirements.txt) right after joyrt bench.
import torch, time
torch.set_num_threads(2)
m=256
def med(f):
    f(); ts=[]
    for _ in range(3):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return sorted(ts)[1]
for k,n in [(4096,12288),(4096,4096),(4096,16384),(16384,4096)]:
    x=torch.randn(m,k); w=torch.randn(n,k)
    s=med(lambda: torch.nn.functional.linear(x,w))
    print(f"torch linear M={m} {k}x{n} {s*1e3:.2f} ms {2*m*k*n/s/1e9:.1f} GFLOP/s")
q=torch.randn(1,32,m,128)
s=med(lambda: torch.nn.functional.scaled_dot_product_attention(q,q,q))
print(f"torch sdpa L={m} 32x128 {s*1e3:.2f} ms {4*m*m*4096/s/1e9:.1f} GFLOP/s")
