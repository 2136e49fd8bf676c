#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, in one call of at most 8 minutes:
#   env          GPU, driver, CUDA toolkit, the NVRTC this script picks, compute-sanitizer, python/torch
#   probe        joyrt opens the GPU: the NVRTC version and file it loaded, one small GEMM and attention
#   conformance  the whole suite on --backend cuda, outputs poisoned (JOYRT_CUDA_POISON=1), every
#                launch synchronised (JOYRT_CUDA_SYNC=1)
#   bench-ops    linear at the DiT's QKV/proj/MLP shapes on every tensor-core GEMM kernel the GPU has
#                (mma; on sm_90a also wgmma, wgmma-persistent, wgmma-ws) and attention 9231×32×128 on
#                every tensor-core attention it has (mma; on sm_90a also wgmma, wgmma-ws), bf16
#                (M = 9231: the DiT's tokens at 1024²)
#   peer         the same shapes through PyTorch (cuBLAS F.linear, SDPA, and cuBLASLt's fp8 GEMM
#                torch._scaled_mm with row-wise scales on sm_89+; CUDA events), same run
#   cfg-step     one full-size CFG step on synthetic weights: two DiT forwards, the CFG combine, the
#                Euler update, 1024², bf16
#   profile      the same step once more with every kernel launch timed by CUDA events: time per
#                kernel, sorted, with its share of the step
#   bench-quantized  linear_quantized at the same GEMM shapes: int8, int4 and fp8 weights (W8A16)
#                against the dense linear, and fp8 W8A8 on every GEMM path (each path's fp8
#                kernel; its quantize and GEMM kernels timed by CUDA events)
#   memcheck     compute-sanitizer on a few op checks (GEMM, attention, conv), where it runs
#   racecheck    the same for shared-memory races (GEMM and tensor-core attention)
#   conformance-wgmma, conformance-ws   (sm_90a only) the whole suite again on the other Hopper
#                kernels: JOYRT_CUDA_GEMM=wgmma-persistent with JOYRT_CUDA_ATTENTION=wgmma, then
#                wgmma-ws with wgmma-ws (the fp8 W8A8 op checks on each path's fp8 kernel too)
#   cfg-step-fastest  the CFG step again on the GEMM and attention kernels bench-ops measured
#                fastest among those whose suite passed in this run (skipped where that is the default)
#   cfg-step-fp8 the CFG step with the block linears' weights in fp8, W8A8 (--dtype fp8), on those
#                same kernels: what an fp8 folder runs at
# Each part has its own time limit, cut to what is left of the run's budget; a failing or
# timed-out part does not stop the later ones. Exit status 0 only if every part passed (or was
# skipped for want of a tool, e.g. no compute-sanitizer).
#
# Run on a machine lent by the `device` tool (one H200, no network), from the checkout the
# session was started in:
#   1. here:  cargo build --release -p joyrt          (the binary travels; nothing is built there;
#             `strip` it if the carried tree would pass the tool's 64 MiB)
#   2. one `run` call, carry ["target/release/joyrt"], timeout_s 540:
#             tests/gpu_check.sh target/release/joyrt $OUT
#   3. commit $OUT/report.md and report.json under docs/gpu-runs/ (date and GPU in the names),
#      failures included, and give the machine back.
# `tests/gpu_check.sh --dry-run BINARY OUTDIR` checks, without a GPU, everything the real run
# relies on (paths, tools, every joyrt subcommand and flag below, the Python peer, the report
# writer) and writes the report with every GPU part skipped; CI runs it (cli/tests/gpu_check.rs).
#
# OUTDIR receives at most 8 files, each capped under 16 MiB (the device tool's limits):
#   report.md, report.json   every part's status, time, limit and key figures; the ratios
#                            joyrt/cuBLAS per GEMM shape, joyrt/SDPA, the CFG step against
#                            SGLang's 0.673 s (H100) and the 0.41 s floor at 989 TFLOP/s
#   env.txt                  the machine (nvidia-smi, nvcc, libraries, LD_LIBRARY_PATH)
#   conformance.txt          the error tables   bench.txt   probe, bench-ops, cfg-step, profile logs
#   peer.txt                 PyTorch's log             sanitizer.txt  compute-sanitizer's reports
#   checks.txt               the dry run's checks
set -uo pipefail

readonly BUDGET_S=465          # the whole run; the `run` call's timeout_s leaves room above it
readonly REPORT_RESERVE_S=15   # kept back for the report (and a killed part's grace period)
readonly MIN_PART_S=20         # a part that would get less is not started
readonly LOG_CAP_BYTES=$((8 << 20))

usage() {
    echo "usage: tests/gpu_check.sh [--dry-run] BINARY OUTDIR" >&2
    exit 2
}
MODE=gpu
if [ "${1:-}" = --dry-run ]; then
    MODE=dry-run
    shift
fi
[ $# -eq 2 ] || usage
case $1 in
    /*) JOYRT=$1 ;;
    *) JOYRT=$PWD/$1 ;;
esac
mkdir -p "$2" || usage
OUT=$(cd "$2" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/joyrt-gpu-check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/data" "$WORK/lib"
for f in report.md report.json env.txt checks.txt conformance.txt bench.txt peer.txt sanitizer.txt; do
    rm -f "${OUT:?}/$f"
done
START=$(date +%s)
date -u +%Y-%m-%dT%H:%MZ > "$WORK/started"
: > "$WORK/parts.tsv"
export JOYRT_CACHE_DIR="${JOYRT_CACHE_DIR:-$WORK/cache}"
ORIGINAL_LD_LIBRARY_PATH=${LD_LIBRARY_PATH-}
PEER_PY=tests/oracle/bench_peer_cuda.py
REPORT_PY=tests/gpu_check_report.py
PROFILE_PY=tests/gpu_check_profile.py   # imported by the report writer

# ---- the commands, defined once: the real run executes them, the dry run checks them ------------
PROBE=(bench --backend cuda --dtype bf16 --parts ops --tokens 256 --attn-tokens 256 --iters 1 --json)
CONFORMANCE=(conformance --backend cuda --fixtures "$REPO/tests/fixtures" --json)
BENCH_OPS=(bench --backend cuda --dtype bf16 --parts ops --gemm-paths all --attention-paths all --tokens 9231
    --attn-tokens 9231 --iters 10 --json)
CFG_STEP=(bench --backend cuda --dtype bf16 --parts cfg-step --full-dit --size 1024 --text-tokens 1039
    --iters 3 --json)
PROFILE=(bench --backend cuda --dtype bf16 --parts cfg-step --full-dit --size 1024 --text-tokens 1039
    --iters 1 --profile --json)
QUANTIZED=(bench --backend cuda --dtype bf16 --parts quantized --gemm-paths all --tokens 9231 --iters 10 --json)
CFG_STEP_FP8=(bench --backend cuda --dtype fp8 --parts cfg-step --full-dit --full-dit-format fp8 --size 1024
    --text-tokens 1039 --iters 3 --json)
# The Hopper kernels the default run does not take, by suite: GEMM and attention paths.
WGMMA_PATHS=(JOYRT_CUDA_GEMM=wgmma-persistent JOYRT_CUDA_ATTENTION=wgmma)
WS_PATHS=(JOYRT_CUDA_GEMM=wgmma-ws JOYRT_CUDA_ATTENTION=wgmma-ws)
EMU_HOPPER=(JOYRT_CUDA_EMU_ARCH=sm_90)   # the dry run's stand-in for an sm_90a GPU
MEMCHECK_SUBSET=(conformance --backend cuda --layers ops --filter "bf16 Linear" --filter "bf16 Attention"
    --filter "bf16 Conv2d" --json)
RACECHECK_SUBSET=(conformance --backend cuda --layers ops --filter "bf16 Linear { m: 150"
    --filter "bf16 Attention { lq: 100" --filter "bf16 Attention { lq: 130" --filter "bf16 Attention { lq: 200" --json)
PEER=(python3 "$PEER_PY" --json)
CHECKED=(JOYRT_CUDA_SYNC=1 JOYRT_CUDA_POISON=1)   # correctness parts: errors named at their launch
TIMED=(-u JOYRT_CUDA_SYNC -u JOYRT_CUDA_POISON)    # benchmarks: neither

# ---- finding libraries and tools ------------------------------------------------------------------

# site-packages/nvidia of python3, where NVIDIA's wheels put their libraries and tools.
NVIDIA_PY_DIRS=()
while IFS= read -r d; do
    [ -n "$d" ] && NVIDIA_PY_DIRS+=("$d")
done < <(timeout 30 python3 -c 'import nvidia; print("\n".join(nvidia.__path__))' 2>/dev/null)

# The NVRTC library in folder $1: libnvrtc.so, else the newest libnvrtc.so.N[.M...].
nvrtc_in() {
    if [ -e "$1/libnvrtc.so" ]; then
        readlink -f "$1/libnvrtc.so"
        return 0
    fi
    local f
    f=$(printf '%s\n' "$1"/libnvrtc.so.[0-9]* | grep -E '/libnvrtc\.so\.[0-9.]+$' | sort -V | tail -n 1)
    [ -n "$f" ] && readlink -f "$f"
}

# Folders that may hold NVRTC, best first, as "where<TAB>folder": LD_LIBRARY_PATH (the caller's
# choice), the CUDA toolkit, NVIDIA's CUDA 13 wheel layout, the CUDA 12 one, the loader's cache.
nvrtc_candidates() {
    local d dirs=()
    IFS=: read -ra dirs <<< "${ORIGINAL_LD_LIBRARY_PATH}"
    for d in "${dirs[@]}"; do
        [ -n "$d" ] && printf 'LD_LIBRARY_PATH\t%s\n' "$d"
    done
    for d in ${CUDA_HOME:+"$CUDA_HOME/lib64"} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        printf 'CUDA toolkit\t%s\n' "$d"
    done
    printf '%s\n' /usr/local/cuda-*/lib64 /usr/local/cuda-*/targets/x86_64-linux/lib | sort -rV |
        sed 's/^/CUDA toolkit\t/'
    for d in "${NVIDIA_PY_DIRS[@]}"; do
        printf 'CUDA 13 wheel\t%s\n' "$d/cu13/lib"
    done
    for d in "${NVIDIA_PY_DIRS[@]}"; do
        printf 'CUDA 12 wheel\t%s\n' "$d/cu12/lib" "$d/cuda_nvrtc/lib"
    done
    ldconfig -p 2>/dev/null | grep -oE '/[^ ]*/libnvrtc\.so[.0-9]*$' | xargs -r -n 1 dirname |
        sed 's/^/loader cache\t/'
}

# cudarc 0.19 (joyrt-cuda's loader) dlopens the first of libnvrtc.so, libnvrtc64*.so and
# libnvrtc.so.{12,11,10,9,1} that the dynamic loader finds, never libnvrtc.so.13 (CUDA 13's only
# name in its wheels and runtime packages). So the NVRTC picked here is linked as libnvrtc.so, its
# builtins beside it, in a folder put first on LD_LIBRARY_PATH: it is the one joyrt loads,
# whatever else the search path holds.
NVRTC_FOUND="not found (LD_LIBRARY_PATH, the CUDA toolkit, NVIDIA's cu13/cu12 wheels, ldconfig)"
while IFS=$'\t' read -r where dir; do
    lib=$(nvrtc_in "$dir") || continue
    [ -n "$lib" ] || continue
    ln -sf "$lib" "$WORK/lib/libnvrtc.so"
    for b in "$(dirname "$lib")"/libnvrtc-builtins*.so*; do
        [ -e "$b" ] && ln -sf "$(readlink -f "$b")" "$WORK/lib/$(basename "$b")"
    done
    export LD_LIBRARY_PATH="$WORK/lib${ORIGINAL_LD_LIBRARY_PATH:+:$ORIGINAL_LD_LIBRARY_PATH}"
    NVRTC_FOUND="$lib ($where)"
    break
done < <(nvrtc_candidates)

# Where the dynamic loader finds library $1: on LD_LIBRARY_PATH or in its cache.
library_path() {
    local d dirs=()
    IFS=: read -ra dirs <<< "${LD_LIBRARY_PATH-}"
    for d in "${dirs[@]}"; do
        if [ -n "$d" ] && [ -e "$d/$1" ]; then
            echo "$d/$1"
            return 0
        fi
    done
    ldconfig -p 2>/dev/null | grep -m 1 -oE "/[^ ]*/${1//./\\.}\$"
}
# The driver library, where the loader would not find it by itself.
if ! library_path libcuda.so.1 > /dev/null; then
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/wsl/lib; do
        if [ -e "$d/libcuda.so.1" ]; then
            export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            break
        fi
    done
fi

# The first executable among the arguments.
first_executable() {
    local c
    for c in "$@"; do
        if [ -n "$c" ] && [ -f "$c" ] && [ -x "$c" ]; then
            echo "$c"
            return 0
        fi
    done
    return 1
}
wheel_tools=()
for d in "${NVIDIA_PY_DIRS[@]}"; do
    wheel_tools+=("$d/cu13/bin/compute-sanitizer" "$d/cu13/compute-sanitizer/compute-sanitizer"
        "$d/cuda_sanitizer_api/compute-sanitizer/compute-sanitizer")
done
SANITIZER=$(first_executable "$(command -v compute-sanitizer)" ${CUDA_HOME:+"$CUDA_HOME/bin/compute-sanitizer"} \
    /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer \
    /usr/local/cuda-*/bin/compute-sanitizer "${wheel_tools[@]}") || SANITIZER=""
NVCC=$(first_executable "$(command -v nvcc)" ${CUDA_HOME:+"$CUDA_HOME/bin/nvcc"} /usr/local/cuda/bin/nvcc \
    /usr/local/cuda-*/bin/nvcc) || NVCC=""

# ---- parts ---------------------------------------------------------------------------------------

# Keeps a log under the size the device tool returns: its head and its tail.
cap_log() {
    local f=$1 size
    size=$(stat -c %s "$f" 2>/dev/null) || return 0
    ((size > LOG_CAP_BYTES)) || return 0
    { head -c $((LOG_CAP_BYTES / 4)) "$f"
      printf '\n[... %s bytes cut by gpu_check.sh ...]\n' "$((size - LOG_CAP_BYTES * 3 / 4))"
      tail -c $((LOG_CAP_BYTES / 2)) "$f"; } > "$WORK/cap" && mv "$WORK/cap" "$f"
}

# One line, no tabs: a note in parts.tsv.
one_line() {
    tr '\t\n' '  ' | cut -c 1-300
}

# Records the part described by the PART_* variables and prints its outcome.
finish_part() {
    PART_NOTE=$(printf '%s' "$PART_NOTE" | one_line)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$PART_NAME" "$PART_STATUS" "$PART_SECS" "$PART_LIMIT" \
        "${PART_RC:--}" "$PART_LOG" "$PART_NOTE" >> "$WORK/parts.tsv"
    echo "   $PART_STATUS in $PART_SECS s${PART_NOTE:+: $PART_NOTE}"
    if [ "$PART_STATUS" = failed ] || [ "$PART_STATUS" = timed-out ]; then
        tail -c +$((PART_OFFSET + 1)) "$OUT/$PART_LOG" 2>/dev/null | tail -n 15 | sed 's/^/   | /'
    fi
    [ -e "$OUT/$PART_LOG" ] && cap_log "$OUT/$PART_LOG"
    # The report so far: if the whole call is cut short, OUTDIR still says how far it got.
    timeout 30 python3 "$REPORT_PY" write "$WORK" "$OUT" "$MODE" "$BUDGET_S" 2> /dev/null
    return 0
}

skip_part() { # NAME LIMIT LOG WHY
    PART_NAME=$1 PART_LIMIT=$2 PART_LOG=$3 PART_NOTE=$4 PART_STATUS=skipped PART_SECS=0 PART_RC="" PART_OFFSET=0
    echo "== $1: skipped"
    finish_part
}

# run_part NAME LIMIT LOG DATA CMD...: CMD under `timeout`, its limit cut to what is left of the
# budget. Its stdout goes to WORK/data/DATA when DATA is set (the JSON documents), else to
# OUT/LOG with its stderr. Leaves the outcome in PART_*; finish_part records it.
run_part() {
    local limit=$2 data=$4 left t0 t1
    PART_NAME=$1 PART_LOG=$3 PART_RC="" PART_SECS=0 PART_NOTE=""
    shift 4
    left=$((START + BUDGET_S - REPORT_RESERVE_S - $(date +%s)))
    PART_OFFSET=$(stat -c %s "$OUT/$PART_LOG" 2>/dev/null || echo 0)
    if ((left < MIN_PART_S)); then
        PART_LIMIT=$limit PART_STATUS=not-run PART_NOTE="no time left of the ${BUDGET_S} s budget"
        echo "== $PART_NAME: not run"
        return
    fi
    PART_LIMIT=$((limit < left ? limit : left))
    echo "== $PART_NAME (limit $PART_LIMIT s)"
    printf '\n== %s (limit %s s): %s\n' "$PART_NAME" "$PART_LIMIT" "$*" >> "$OUT/$PART_LOG"
    t0=$(date +%s%N)
    if [ -n "$data" ]; then
        timeout -k 5 "$PART_LIMIT" "$@" > "$WORK/data/$data" 2>> "$OUT/$PART_LOG"
    else
        timeout -k 5 "$PART_LIMIT" "$@" >> "$OUT/$PART_LOG" 2>&1
    fi
    PART_RC=$?
    t1=$(date +%s%N)
    PART_SECS=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
    if ((PART_RC == 0)); then
        PART_STATUS=passed
    elif { ((PART_RC == 124)) || ((PART_RC == 137)); } && (((t1 - t0) / 1000000000 >= PART_LIMIT)); then
        PART_STATUS=timed-out PART_NOTE="stopped at its $PART_LIMIT s limit"
    else
        PART_STATUS=failed
        PART_NOTE="exit $PART_RC: $(tail -c +$((PART_OFFSET + 1)) "$OUT/$PART_LOG" | grep -v '^[[:space:]]*$' | tail -n 1)"
    fi
}

# A GPU part: run (and recorded) on the GPU, recorded as skipped in the dry run.
gpu_part() { # NAME LIMIT LOG DATA CMD...
    if [ "$MODE" = dry-run ]; then
        skip_part "$1" "$2" "$3" "dry run: needs the GPU"
        return
    fi
    run_part "$@"
    finish_part
}

# A GPU part for sm_90a only (the Hopper kernels): skipped on other GPUs.
hopper_part() { # NAME LIMIT LOG DATA CMD...
    local cap
    cap=$(timeout 20 nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | head -n 1)
    if [ "$MODE" = gpu ] && [ "$cap" != 9.0 ]; then
        skip_part "$1" "$2" "$3" "needs sm_90a (compute capability 9.0; this GPU: ${cap:-unknown})"
        return
    fi
    gpu_part "$@"
}

# compute-sanitizer's TOOL over the joyrt command ARGS...; its own report goes to sanitizer.txt.
sanitizer_part() { # TOOL LIMIT ARGS...
    local tool=$1 limit=$2 slog="$WORK/data/$1.log"
    shift 2
    if [ "$MODE" = dry-run ]; then
        skip_part "$tool" "$limit" sanitizer.txt "dry run: needs the GPU"
        return
    fi
    if [ -z "$SANITIZER" ]; then
        skip_part "$tool" "$limit" sanitizer.txt "compute-sanitizer not found (PATH, CUDA toolkit, wheels)"
        return
    fi
    run_part "$tool" "$limit" sanitizer.txt "$tool.json" env "${CHECKED[@]}" \
        "$SANITIZER" --tool "$tool" --error-exitcode 86 --log-file "$slog" "$JOYRT" "$@"
    if [ -f "$slog" ]; then
        cat "$slog" >> "$OUT/sanitizer.txt"
        if grep -q 'Device not supported' "$slog"; then
            PART_STATUS=skipped PART_NOTE="compute-sanitizer does not support the device here (as on gVisor machines)"
        elif [ "$PART_RC" = 86 ]; then
            PART_NOTE=$(grep -m 1 -E '(ERROR|RACECHECK) SUMMARY' "$slog")
        fi
    fi
    finish_part
}

# A part that is a shell function of this script (its commands carry their own time limits).
function_part() { # NAME LOG FUNCTION
    local t0 t1
    PART_NAME=$1 PART_LOG=$2 PART_LIMIT=- PART_NOTE="" PART_OFFSET=0
    echo "== $PART_NAME"
    t0=$(date +%s%N)
    ("$3") >> "$OUT/$PART_LOG" 2>&1
    PART_RC=$?
    t1=$(date +%s%N)
    PART_SECS=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
    if ((PART_RC == 0)); then
        PART_STATUS=passed
    else
        PART_STATUS=failed PART_NOTE=$(grep -E '^FAIL' "$OUT/$PART_LOG" | head -n 3 | tr '\n' ';')
    fi
    finish_part
}

# ---- env -----------------------------------------------------------------------------------------

fact() { # KEY VALUE: one line of env.tsv (for the report) and of env.txt
    local value
    value=$(printf '%s' "$2" | one_line)
    printf '%s\t%s\n' "$1" "$value" >> "$WORK/data/env.tsv"
    printf '%-18s %s\n' "$1" "$value"
}

collect_env() {
    local smi gpu_ok=1
    if command -v nvidia-smi > /dev/null; then
        smi=$(timeout 20 nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>&1) ||
            gpu_ok=0
        fact gpu "$(head -n 1 <<< "$smi")"
        fact driver "$(timeout 20 nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>&1 | head -n 1)"
        fact driver_cuda "$(timeout 20 nvidia-smi 2>&1 | grep -oE 'CUDA Version: *[0-9.]+' | grep -oE '[0-9.]+$')"
    else
        gpu_ok=0
        fact gpu "none (no nvidia-smi)"
    fi
    if [ "$MODE" = gpu ] && ((!gpu_ok)); then
        echo "FAIL  nvidia-smi shows no GPU"
    fi
    if [ -n "$NVCC" ]; then
        fact nvcc "$NVCC, $(timeout 20 "$NVCC" --version 2>&1 | grep -oE 'release [0-9.]+, V[0-9.]+')"
    else
        fact nvcc "not found"
    fi
    fact nvrtc_found "$NVRTC_FOUND"
    fact libcuda "$(library_path libcuda.so.1 || echo 'not found')"
    if [ -n "$SANITIZER" ]; then
        fact compute_sanitizer "$SANITIZER, $(timeout 20 "$SANITIZER" --version 2>&1 | grep -m 1 -iE 'version')"
    else
        fact compute_sanitizer "not found"
    fi
    fact python "$(timeout 40 python3 -c 'import sys
try:
    import torch
    t = f"torch {torch.__version__} (CUDA {torch.version.cuda})"
except Exception as e:
    t = f"no torch ({type(e).__name__})"
print(sys.executable, sys.version.split()[0], t)' 2>&1 | tail -n 1)"
    fact kernel "$(uname -srm)"
    fact cpus "$(nproc), $(grep -m 1 MemTotal /proc/meminfo | tr -s ' ')"
    fact joyrt "$JOYRT ($("$JOYRT" --version 2>&1 | head -n 1); $(stat -c %s "$JOYRT" 2>/dev/null) bytes)"
    fact ld_library_path "${LD_LIBRARY_PATH-}"
    if command -v nvidia-smi > /dev/null; then
        echo
        timeout 20 nvidia-smi 2>&1
    fi
    [ "$MODE" = dry-run ] || ((gpu_ok))
}

# ---- the dry run's checks ------------------------------------------------------------------------

FAILED_CHECKS=0
check() { # WHAT CMD...: runs CMD, prints ok/FAIL with WHAT
    local what=$1
    shift
    if "$@" > "$WORK/check.out" 2>&1; then
        echo "ok    $what"
    else
        echo "FAIL  $what"
        sed 's/^/      /' "$WORK/check.out" | tail -n 20
        FAILED_CHECKS=1
    fi
}

# The GPU command line parses and gets as far as opening the CUDA backend (no device is visible).
reaches_backend() {
    local out
    out=$(CUDA_VISIBLE_DEVICES="" timeout 120 "$JOYRT" "$@" 2>&1)
    grep -q 'backend cuda is not available' <<< "$out" || { echo "$out" | tail -n 20; return 1; }
}

lists_checks() { # the op-check filter of a subset selects at least one check
    local n
    n=$("$JOYRT" "$@" --list | wc -l) && ((n > 0)) && echo "$n op checks"
}

compiles() {
    python3 -c 'import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)' \
        "$1" "$WORK/compiled.pyc"
}

mentions() { # TEXT CMD...: CMD's output contains TEXT
    local text=$1
    shift
    "$@" 2>&1 | grep -qF -- "$text"
}

tools_present() {
    local t missing=0
    for t in timeout python3 awk sed grep sort stat readlink mktemp; do
        command -v "$t" > /dev/null || { echo "missing: $t"; missing=1; }
    done
    return $missing
}

# A document joyrt prints on the CPU backend, read back by the report writer.
document_reads() { # KIND ARGS...
    local kind=$1
    shift
    timeout 120 "$JOYRT" "$@" > "$WORK/sample.json" && python3 "$REPORT_PY" validate "$kind" "$WORK/sample.json"
}

# The same on the emulated sm_90 (its FP8 tensor cores and every GEMM path).
sm90_document_reads() {
    JOYRT_CUDA_EMU_ARCH=sm_90 document_reads "$@"
}

dry_checks() {
    check "tools: timeout, python3, awk, sed, grep, sort, stat, readlink, mktemp" tools_present
    check "fixtures: tests/fixtures/golden and tiny_model" test -d tests/fixtures/golden -a -d tests/fixtures/tiny_model
    check "binary $JOYRT is executable" test -x "$JOYRT"
    check "joyrt --help lists conformance" mentions conformance "$JOYRT" --help
    check "joyrt --help lists bench" mentions bench "$JOYRT" --help
    check "probe: ${PROBE[*]}" reaches_backend "${PROBE[@]}"
    check "conformance: ${CONFORMANCE[*]}" reaches_backend "${CONFORMANCE[@]}"
    check "bench-ops: ${BENCH_OPS[*]}" reaches_backend "${BENCH_OPS[@]}"
    check "cfg-step: ${CFG_STEP[*]}" reaches_backend "${CFG_STEP[@]}"
    check "profile: ${PROFILE[*]}" reaches_backend "${PROFILE[@]}"
    check "bench-quantized: ${QUANTIZED[*]}" reaches_backend "${QUANTIZED[@]}"
    check "cfg-step-fp8: ${CFG_STEP_FP8[*]}" reaches_backend "${CFG_STEP_FP8[@]}"
    check "the Hopper paths parse: ${WGMMA_PATHS[*]}" env "${EMU_HOPPER[@]}" "${WGMMA_PATHS[@]}" "$JOYRT" conformance \
        --backend cuda-emulated --layers host --fixtures "$REPO/tests/fixtures"
    check "the Hopper paths parse: ${WS_PATHS[*]}" env "${EMU_HOPPER[@]}" "${WS_PATHS[@]}" "$JOYRT" conformance \
        --backend cuda-emulated --layers host --fixtures "$REPO/tests/fixtures"
    check "memcheck subset: ${MEMCHECK_SUBSET[*]}" reaches_backend "${MEMCHECK_SUBSET[@]}"
    check "racecheck subset: ${RACECHECK_SUBSET[*]}" reaches_backend "${RACECHECK_SUBSET[@]}"
    check "memcheck subset selects op checks" lists_checks "${MEMCHECK_SUBSET[@]}"
    check "racecheck subset selects op checks" lists_checks "${RACECHECK_SUBSET[@]}"
    check "peer compiles: $PEER_PY" compiles "$PEER_PY"
    check "peer takes --json: ${PEER[*]}" mentions --json python3 "$PEER_PY" --help
    check "report writer compiles: $REPORT_PY" compiles "$REPORT_PY"
    check "report writer's profile section compiles: $PROFILE_PY" compiles "$PROFILE_PY"
    check "report writer self-test" python3 "$REPORT_PY" self-test
    check "report writer reads joyrt conformance --json" document_reads conformance \
        conformance --backend cpu --layers host --fixtures "$REPO/tests/fixtures" --json
    check "report writer reads joyrt bench --json (forward, cfg-step)" document_reads dit \
        bench --backend cpu --parts forward,cfg-step --size 32 --text-tokens 8 --iters 1 --json
    # The profile's code path without a GPU: the emulation times its launches with the host clock.
    check "report writer reads joyrt bench --profile --json (emulated CUDA)" document_reads profile \
        bench --backend cuda-emulated --parts cfg-step --size 32 --text-tokens 8 --iters 1 --profile --json
    # W8A8 per GEMM path with its kernels needs FP8 tensor cores: the sm_90 emulation, one small shape.
    check "report writer reads joyrt bench --parts quantized --gemm-paths all --json (emulated sm_90)" \
        sm90_document_reads quantized bench --backend cuda-emulated --dtype bf16 --parts quantized \
        --gemm-paths all --gemm-shapes 256x64 --tokens 16 --iters 1 --json
    return $FAILED_CHECKS
}

# ---- the run -------------------------------------------------------------------------------------

# Parts the report lists as not run if the call ends before them.
PLANNED=(env probe conformance bench-ops peer cfg-step profile bench-quantized memcheck racecheck
    conformance-wgmma conformance-ws cfg-step-fastest cfg-step-fp8)
[ "$MODE" = dry-run ] && PLANNED=(env checks "${PLANNED[@]:1}")
printf '%s\n' "${PLANNED[@]}" > "$WORK/planned"
echo "joyrt GPU check ($MODE): $JOYRT -> $OUT"
echo "NVRTC: $NVRTC_FOUND"
function_part env env.txt collect_env
sed 's/^\([^\t]*\)\t/   \1: /' "$WORK/data/env.tsv"
if [ "$MODE" = dry-run ]; then
    function_part checks checks.txt dry_checks
fi
gpu_part probe 60 bench.txt probe.json env "${CHECKED[@]}" "$JOYRT" "${PROBE[@]}"
grep -m 1 '^NVRTC ' "$OUT/bench.txt" 2> /dev/null | sed 's/^/   as joyrt loads it: /'
gpu_part conformance 150 conformance.txt conformance.json env "${CHECKED[@]}" "$JOYRT" "${CONFORMANCE[@]}"
gpu_part bench-ops 60 bench.txt bench-ops.json env "${TIMED[@]}" "$JOYRT" "${BENCH_OPS[@]}"
# PyTorch gets the caller's library path: the NVRTC folder made for joyrt is not for it.
if [ -n "${ORIGINAL_LD_LIBRARY_PATH}" ]; then
    PEER_ENV=(LD_LIBRARY_PATH="$ORIGINAL_LD_LIBRARY_PATH")
else
    PEER_ENV=(-u LD_LIBRARY_PATH)
fi
gpu_part peer 60 peer.txt peer.json env "${PEER_ENV[@]}" PYTHONUNBUFFERED=1 "${PEER[@]}"
gpu_part cfg-step 150 bench.txt cfg-step.json env "${TIMED[@]}" "$JOYRT" "${CFG_STEP[@]}"
gpu_part profile 40 bench.txt profile.json env "${TIMED[@]}" "$JOYRT" "${PROFILE[@]}"
gpu_part bench-quantized 60 bench.txt bench-quantized.json env "${TIMED[@]}" "$JOYRT" "${QUANTIZED[@]}"
sanitizer_part memcheck 90 "${MEMCHECK_SUBSET[@]}"
sanitizer_part racecheck 90 "${RACECHECK_SUBSET[@]}"
# The Hopper kernels' own suites, then the step on the fastest of them and in fp8.
hopper_part conformance-wgmma 120 conformance.txt conformance-wgmma.json env "${CHECKED[@]}" "${WGMMA_PATHS[@]}" \
    "$JOYRT" "${CONFORMANCE[@]}"
hopper_part conformance-ws 120 conformance.txt conformance-ws.json env "${CHECKED[@]}" "${WS_PATHS[@]}" \
    "$JOYRT" "${CONFORMANCE[@]}"
FASTEST=()
if [ "$MODE" = gpu ]; then
    read -ra FASTEST < <(timeout 30 python3 "$REPORT_PY" fastest "$WORK" 2>> "$OUT/bench.txt")
fi
if [ "$MODE" = dry-run ] || ((${#FASTEST[@]})); then
    gpu_part cfg-step-fastest 150 bench.txt cfg-step-fastest.json env "${TIMED[@]}" "${FASTEST[@]}" "$JOYRT" \
        "${CFG_STEP[@]}"
else
    skip_part cfg-step-fastest 150 bench.txt "the default kernels measured fastest, or no other path passed its suite"
fi
gpu_part cfg-step-fp8 200 bench.txt cfg-step-fp8.json env "${TIMED[@]}" "${FASTEST[@]}" "$JOYRT" "${CFG_STEP_FP8[@]}"

echo "== report"
if ! timeout 60 python3 "$REPORT_PY" write "$WORK" "$OUT" "$MODE" "$BUDGET_S" 2> "$WORK/report.err"; then
    # The parts' own records, so that a broken writer still leaves the outcome behind.
    { echo "# joyrt GPU check: the report writer failed"
      echo
      sed 's/^/    /' "$WORK/report.err"
      echo
      sed 's/^/    /' "$WORK/parts.tsv"; } > "$OUT/report.md"
    cat "$OUT/report.md"
    exit 1
fi
cat "$OUT/report.md"
awk -F '\t' '$2 != "passed" && $2 != "skipped" { bad = 1 } END { exit bad }' "$WORK/parts.tsv"
