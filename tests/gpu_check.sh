#!/usr/bin/env bash
# The CUDA backend's GPU checks in one run, for a machine lent by the `device` tool (or any Linux
# box with an NVIDIA GPU): the conformance suite on the CUDA backend, then joyrt's benchmarks at
# the DiT's full-size shapes beside the same-run PyTorch peer (cuBLAS GEMM, SDPA attention).
#
# Build the binary on a machine with Rust (same x86-64), then run this from the repository root:
#   cargo build --release -p joyrt
#   tests/gpu_check.sh target/release/joyrt OUTDIR
# It needs the NVIDIA driver and libnvrtc (the CUDA toolkit's lib64, or the PyPI wheel
# nvidia-cuda-nvrtc-cu12 on LD_LIBRARY_PATH). Results land in OUTDIR/*.txt.
set -uo pipefail
JOYRT="${1:?usage: tests/gpu_check.sh path/to/joyrt OUTDIR}"
OUT="${2:?usage: tests/gpu_check.sh path/to/joyrt OUTDIR}"
mkdir -p "$OUT"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
# cudarc looks for libnvrtc.so or libnvrtc.so.{12,11,...}; a CUDA 13 Python wheel ships only
# libnvrtc.so.13, so give it an unversioned name in a scratch folder when nothing else is found.
if ! ls $(echo "${LD_LIBRARY_PATH:-}" | tr ':' ' ') 2>/dev/null | grep -q '^libnvrtc.so'; then
    wheel_lib="$(python3 -c 'import nvidia.cuda_nvrtc, os; print(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib"))' 2>/dev/null)"
    so="$(ls "$wheel_lib"/libnvrtc.so.* 2>/dev/null | grep -v builtins | head -n 1)"
    if [ -n "$so" ]; then
        mkdir -p "$OUT/nvrtc-link" && ln -sf "$so" "$OUT/nvrtc-link/libnvrtc.so"
        export LD_LIBRARY_PATH="$OUT/nvrtc-link:$wheel_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" > "$OUT/env.txt"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1

echo "== conformance (ops vs CPU reference, networks and pipeline vs diffusers goldens)"
JOYRT_CUDA_POISON=1 "$JOYRT" conformance --backend cuda --fixtures tests/fixtures > "$OUT/conformance.txt" 2>&1 || status=1
tail -n 3 "$OUT/conformance.txt"

echo "== joyrt bench (bf16, DiT shapes at 1024²: 9231 tokens; full-size DiT on synthetic weights)"
"$JOYRT" bench --backend cuda --dtype bf16 --tokens 9231 --attn-tokens 9231 --size 1024 --text-tokens 1039 \
    --full-dit --iters 5 > "$OUT/bench.txt" 2>&1 || status=1
cat "$OUT/bench.txt"

echo "== same-run peer (PyTorch: cuBLAS, SDPA)"
python3 tests/oracle/bench_peer_cuda.py > "$OUT/peer.txt" 2>&1 || status=1
cat "$OUT/peer.txt"
exit $status
