"""The report of tests/gpu_check.sh: report.json and report.md from what its parts left behind.

    gpu_check_report.py write WORK OUTDIR MODE BUDGET_S   the report of one run
    gpu_check_report.py validate KIND FILE                 FILE is a document this writer can read
    gpu_check_report.py self-test                          a made-up run with every part passed, and the picker
    gpu_check_report.py fastest WORK                       the kernels for cfg-step-fastest

WORK holds `parts.tsv` (one line per part: name, status, seconds, limit or `-` where each of
its commands has its own, exit code, log, note), `planned` (the part names, one a line),
`data/env.tsv` (key, value), `data/PART.json`, the JSON that `joyrt bench --json`,
`joyrt conformance --json` and `tests/oracle/bench_peer_cuda.py --json` printed, and
`data/PART.log`, compute-sanitizer's own log. A missing or malformed document makes that part's
figures an error in the report; it never stops the report.
"""

import json
import re
import sys
import tempfile
from pathlib import Path

import gpu_check_profile

# Constants the report compares with; none is measured by the run.
SGLANG_H100_CFG_STEP_S = 0.673
BF16_DENSE_PEAK_TFLOPS = 989.0
# The DiT at 1024²: 40 double-stream blocks, hidden 4096, MLP 16384, two forwards per CFG step.
BLOCKS, HIDDEN, FORWARDS = 40, 4096, 2
DIT_TOKENS_1024 = 9231
# The DiT block's linear shapes (K, N), as `joyrt bench` and the peer time them.
GEMMS = [(4096, 12288), (4096, 4096), (4096, 16384), (16384, 4096)]
# `joyrt bench --full-dit`'s "weights" value.
FULL_SIZE_WEIGHTS = "synthetic full-size"
CONSTANTS = {
    "sglang_h100_cfg_step_s": {
        "value": SGLANG_H100_CFG_STEP_S,
        "source": "SGLang's CFG step at 1024² on an H100 (/work/shared/docs/model-spec.md); not measured here",
    },
    "bf16_dense_peak_tflops": {
        "value": BF16_DENSE_PEAK_TFLOPS,
        "source": "H100/H200 SXM dense bf16 peak, datasheet; not measured here",
    },
}

PASSING = ("passed", "skipped")


class DocError(Exception):
    """A document lacks what the report reads from it."""


def field(doc, *path):
    v = doc
    for key in path:
        if not isinstance(v, dict) or key not in v:
            raise DocError(f"missing {'.'.join(map(str, path))}")
        v = v[key]
    return v


def number(doc, *path):
    v = field(doc, *path)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise DocError(f"{'.'.join(map(str, path))} is not a number")
    return float(v)


def cfg_step_tflop(tokens):
    """FLOP (in T) of one CFG step: each block's GEMMs (QKV, proj, MLP up and down: 2·M·H²·12)
    and attention (4·M²·H), as counted in docs/benchmarks.md."""
    per_block = 2 * tokens * HIDDEN * HIDDEN * 12 + 4 * tokens * tokens * HIDDEN
    return per_block * BLOCKS * FORWARDS / 1e12


def op_key(rec):
    if field(rec, "op") == "linear":
        path = rec.get("gemm_path", "")
        if not isinstance(path, str):
            raise DocError("gemm_path is not a string")
        return ("linear", int(number(rec, "m")), int(number(rec, "k")), int(number(rec, "n")), path)
    if rec["op"] == "attention":
        path = rec.get("attention_path", "")
        if not isinstance(path, str):
            raise DocError("attention_path is not a string")
        return ("attention", int(number(rec, "tokens")), int(number(rec, "heads")), int(number(rec, "head_dim")), path)
    raise DocError(f"unknown op {rec['op']!r}")


def op_records(doc):
    """(key, ms, TFLOP/s) of each op record of a `joyrt bench` or peer document."""
    recs = field(doc, "ops")
    if not isinstance(recs, list) or not recs:
        raise DocError("ops is not a non-empty list")
    out = []
    for rec in recs:
        ms = number(rec, "ms")
        if ms <= 0:
            raise DocError(f"{op_key(rec)}: ms = {ms}")
        out.append((op_key(rec), ms, number(rec, "flop") / ms / 1e9))
    return out


def op_label(key):
    if key[0] == "linear":
        label = f"linear M={key[1]} {key[2]}x{key[3]}"
        return f"{label} ({key[4]})" if key[4] else label
    label = f"attention L={key[1]} {key[2]}x{key[3]}"
    return f"{label} ({key[4]})" if key[4] else label


def shape_label(label):
    """An op's label without the kernel `joyrt bench --gemm-paths` / `--attention-paths` names (the
    peer's label)."""
    return label.split(" (")[0]


# ---- per-kind readers: each returns the figures of one document -------------------------------


def read_probe(doc):
    return {
        "backend": field(doc, "backend"),
        "nvrtc": doc.get("nvrtc"),
        "ops": [{"op": op_label(k), "ms": ms, "tflops": t} for k, ms, t in op_records(doc)],
    }


def read_conformance(doc):
    fig = {k: int(number(doc, k)) for k in ("passed", "failed", "skipped")}
    fig["backend"] = field(doc, "backend")
    fails = field(doc, "failures")
    if not isinstance(fails, list):
        raise DocError("failures is not a list")
    fig["failures"] = [f"{field(f, 'layer')} {field(f, 'check')}: {field(f, 'detail')}" for f in fails]
    return fig


def read_bench_ops(doc):
    return {
        "backend": field(doc, "backend"),
        "dtype": field(doc, "dtype"),
        "ops": [{"op": op_label(k), "ms": ms, "tflops": t} for k, ms, t in op_records(doc)],
    }


def read_peer(doc):
    fig = {
        "torch": field(doc, "torch"),
        "gpu": field(doc, "gpu"),
        "ops": [{"op": op_label(k), "ms": ms, "tflops": t} for k, ms, t in op_records(doc)],
    }
    # cuBLASLt's FP8 GEMM, where the peer ran it (or why not).
    fp8 = doc.get("fp8")
    if isinstance(fp8, dict) and "error" in fp8:
        fig["fp8_error"] = str(fp8["error"])
    elif fp8 is not None:
        recs = field(fp8, "ops")
        if not isinstance(recs, list):
            raise DocError("fp8.ops is not a list")
        fig["fp8"] = [
            {"shape": gemm_shape(r), "ms": number(r, "ms"), "tflops": number(r, "flop") / number(r, "ms") / 1e9}
            for r in recs
        ]
    return fig


def gemm_shape(rec):
    return f"M={int(number(rec, 'm'))} {int(number(rec, 'k'))}x{int(number(rec, 'n'))}"


def read_quantized(doc):
    """`joyrt bench --parts quantized --json`: per GEMM shape, the dense linear and each quantized
    format's time in the same run, and W8A8 per GEMM path with its kernels' median launches."""
    recs = field(doc, "quantized")
    if not isinstance(recs, list) or not recs:
        raise DocError("quantized is not a non-empty list")
    rows = []
    for r in recs:
        row = {"shape": gemm_shape(r), "flop": 2.0 * number(r, "m") * number(r, "k") * number(r, "n")}
        row["dense_ms"] = number(r, "dense_ms")
        for f in ("int8", "int4", "fp8", "fp8_w8a8"):
            if f"{f}_ms" in r:
                row[f"{f}_ms"] = number(r, f"{f}_ms")
        paths = r.get("fp8_w8a8_paths", [])
        if not isinstance(paths, list):
            raise DocError("fp8_w8a8_paths is not a list")
        row["w8a8_paths"] = []
        for p in paths:
            kernels = field(p, "kernels")
            if not isinstance(kernels, list):
                raise DocError("fp8_w8a8_paths.kernels is not a list")
            gemm = [number(k, "median_us") for k in kernels if str(field(k, "kernel")).startswith("linear_fp8_w8a8")]
            quant = [number(k, "median_us") for k in kernels if field(k, "kernel") == "fp8_quantize_rows"]
            row["w8a8_paths"].append(
                {
                    "gemm_path": field(p, "gemm_path"),
                    "kernel": next((k["kernel"] for k in kernels if str(k["kernel"]).startswith("linear_fp8_w8a8")), None),
                    "ms": number(p, "ms"),
                    "gemm_ms": gemm[0] / 1e3 if gemm else None,
                    "quantize_ms": quant[0] / 1e3 if quant else None,
                }
            )
        rows.append(row)
    return {"backend": field(doc, "backend"), "dtype": field(doc, "dtype"), "shapes": rows}


def read_dit(doc):
    dit = field(doc, "dit")
    fig = {"backend": field(doc, "backend"), "dtype": field(doc, "dtype"), "iters": int(number(doc, "iters"))}
    fig["weights"] = field(dit, "weights")
    for k in ("tokens", "size", "params"):
        fig[k] = int(number(dit, k))
    fig["load_s"] = number(dit, "load_s")
    for k in ("forward_ms", "cfg_step_ms", "synthetic_weights_s"):
        if k in dit:
            fig[k] = number(dit, k)
    # The kernels and formats the run took (CUDA; older binaries did not say).
    for k in ("gemm_path", "attention_path", "fp8_activations"):
        if k in doc:
            fig[k] = doc[k]
    if "format" in dit:
        fig["format"] = dit["format"]
    if "forward_ms" not in fig and "cfg_step_ms" not in fig:
        raise DocError("dit has neither forward_ms nor cfg_step_ms")
    return fig


def read_profile(doc):
    """The kernel profile of one CFG step (`joyrt bench --profile --json`), and the unprofiled
    step's median of the same run."""
    fig = read_dit(doc)
    prof = field(doc, "dit", "profile")
    fig["timer"] = field(prof, "timer")
    for k in ("step_ms", "kernel_ms"):
        fig[f"profiled_{k}"] = number(prof, k)
    fig["launches"] = int(number(prof, "launches"))
    kernels = field(prof, "kernels")
    if not isinstance(kernels, list) or not kernels:
        raise DocError("dit.profile.kernels is not a non-empty list")
    fig["kernels"] = [
        {
            "kernel": field(k, "kernel"),
            "launches": int(number(k, "launches")),
            "total_ms": number(k, "total_ms"),
            "median_us": number(k, "median_us"),
            "share_of_step": number(k, "share_of_step"),
        }
        for k in kernels
    ]
    if fig["launches"] != sum(k["launches"] for k in fig["kernels"]):
        raise DocError("dit.profile.launches is not the sum of its kernels' launches")
    fig["groups"] = gpu_check_profile.groups(fig["kernels"])
    return fig


READERS = {
    "probe": read_probe,
    "conformance": read_conformance,
    "bench-ops": read_bench_ops,
    "peer": read_peer,
    "cfg-step": read_dit,
    "profile": read_profile,
    "bench-quantized": read_quantized,
    "memcheck": read_conformance,
    "racecheck": read_conformance,
    "conformance-wgmma": read_conformance,
    "conformance-ws": read_conformance,
    "cfg-step-fastest": read_dit,
    "cfg-step-fp8": read_dit,
}
# The CFG-step parts beside the default one, and what each varies.
STEP_VARIANTS = {
    "cfg-step-fastest": "the fastest kernels that passed their suite",
    "cfg-step-fp8": "fp8 block linears, W8A8",
}
# The suite part that checked each non-default Hopper kernel (gpu_check.sh's WGMMA_PATHS, WS_PATHS).
SUITE_OF_GEMM = {"wgmma-persistent": "conformance-wgmma", "wgmma-ws": "conformance-ws"}
SUITE_OF_ATTENTION = {"wgmma": "conformance-wgmma", "wgmma-ws": "conformance-ws"}
# `validate` kinds: what the dry run can produce without a GPU, by reader.
KINDS = {
    "conformance": read_conformance,
    "dit": read_dit,
    "bench": read_bench_ops,
    "peer": read_peer,
    "profile": read_profile,
    "quantized": read_quantized,
}


def sanitizer_summary(log_path):
    """compute-sanitizer's summary lines (`ERROR SUMMARY`, `RACECHECK SUMMARY`)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    return [m.group(0).strip() for m in re.finditer(r"^=+ *(?:ERROR|RACECHECK) SUMMARY:.*$", text, re.M)]


# ---- the run ------------------------------------------------------------------------------------


def read_parts(work):
    parts = []
    for line in (work / "parts.tsv").read_text().splitlines():
        cols = line.split("\t")
        if len(cols) != 7:
            continue
        name, status, secs, limit, rc, log, note = cols
        parts.append(
            {
                "name": name,
                "status": status,
                "seconds": float(secs),
                "limit_s": int(limit) if limit.isdigit() else None,
                "exit_code": int(rc) if rc.lstrip("-").isdigit() else None,
                "log": log,
                "note": note,
            }
        )
    return parts


def add_unfinished(parts, work):
    """Parts planned (`planned`, one name a line) but not recorded: the call ended first."""
    planned = work / "planned"
    names = planned.read_text().split() if planned.is_file() else []
    done = {p["name"] for p in parts}
    for name in names:
        if name not in done:
            parts.append(
                {
                    "name": name,
                    "status": "not-run",
                    "seconds": 0.0,
                    "limit_s": None,
                    "exit_code": None,
                    "log": "",
                    "note": "not reached: the run ended or is still going",
                }
            )


def read_env(work):
    env = {}
    path = work / "data" / "env.tsv"
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition("\t")
            if key:
                env[key] = value
    return env


def attach_figures(parts, work):
    for p in parts:
        reader = READERS.get(p["name"])
        doc_path = work / "data" / f"{p['name']}.json"
        if reader is None or p["status"] in ("skipped", "not-run"):
            continue
        if p["name"] in ("memcheck", "racecheck"):
            p["sanitizer"] = sanitizer_summary(work / "data" / f"{p['name']}.log")
        try:
            p["figures"] = reader(json.loads(doc_path.read_text()))
        except (OSError, ValueError, DocError) as e:
            p["figures_error"] = f"{doc_path.name}: {e}"


def comparisons(parts):
    """The ratios the issue asks for, from the parts that produced figures."""
    by = {p["name"]: p.get("figures") for p in parts}
    out = {"constants": CONSTANTS}
    ops, peer = by.get("bench-ops"), by.get("peer")
    if ops and peer:
        theirs = {r["op"]: r for r in peer["ops"]}
        rows = []
        for r in ops["ops"]:
            t = theirs.get(shape_label(r["op"]))
            if t is None:
                continue
            rows.append(
                {
                    "op": r["op"],
                    "peer": "cuBLAS F.linear" if r["op"].startswith("linear") else "torch SDPA",
                    "joyrt_ms": r["ms"],
                    "joyrt_tflops": r["tflops"],
                    "peer_ms": t["ms"],
                    "peer_tflops": t["tflops"],
                    "speed_vs_peer": t["ms"] / r["ms"],
                }
            )
        out["ops_vs_peer"] = rows
        if not rows:
            out["ops_vs_peer_error"] = "joyrt and the peer timed no op at the same shape"
    quantized = by.get("bench-quantized")
    if quantized:
        out["quantized"] = quantized_comparison(quantized, ops, peer)
    variants = step_variants(by)
    if variants:
        out["cfg_step_variants"] = variants
    step = by.get("cfg-step")
    if step and "cfg_step_ms" in step:
        s = step["cfg_step_ms"] / 1e3
        cfg = {"measured_s": s, "tokens": step["tokens"], "weights": step["weights"]}
        cfg.update({k: step[k] for k in ("gemm_path", "attention_path") if k in step})
        out["cfg_step"] = cfg
        if step["weights"] != FULL_SIZE_WEIGHTS:
            # The FLOP count and the comparisons are the full-size DiT's.
            return out
        tflop = cfg_step_tflop(step["tokens"])
        floor = tflop / BF16_DENSE_PEAK_TFLOPS
        cfg.update(
            {
                "flop_t": tflop,
                "achieved_tflops": tflop / s,
                "floor_s_at_peak": floor,
                "vs_floor": s / floor,
                "mfu": tflop / s / BF16_DENSE_PEAK_TFLOPS,
            }
        )
        if step["tokens"] == DIT_TOKENS_1024:
            cfg["sglang_h100_s"] = SGLANG_H100_CFG_STEP_S
            cfg["vs_sglang_h100"] = s / SGLANG_H100_CFG_STEP_S
        if peer:
            best = max(r["tflops"] for r in peer["ops"] if r["op"].startswith("linear"))
            cfg["floor_s_at_cublas_rate"] = tflop / best
            cfg["cublas_best_tflops"] = best
    return out


def step_variants(by):
    """The CFG step on other kernels or in fp8, against the default step of the same run."""
    base = by.get("cfg-step") or {}
    rows = []
    for name, what in STEP_VARIANTS.items():
        f = by.get(name)
        if not f or "cfg_step_ms" not in f:
            continue
        s = f["cfg_step_ms"] / 1e3
        row = {"part": name, "what": what, "measured_s": s, "tokens": f["tokens"], "weights": f["weights"]}
        row.update({k: f[k] for k in ("gemm_path", "attention_path", "format", "fp8_activations") if k in f})
        if "cfg_step_ms" in base and base.get("tokens") == f["tokens"]:
            row["vs_default_step"] = s / (base["cfg_step_ms"] / 1e3)
        if f["tokens"] == DIT_TOKENS_1024 and f["weights"] == FULL_SIZE_WEIGHTS:
            row["vs_sglang_h100"] = s / SGLANG_H100_CFG_STEP_S
        rows.append(row)
    return rows


def quantized_comparison(quantized, ops, peer):
    """Per shape: each format's time over the dense linear's of the same run (W8A16: the weight
    read in 8 or 4 bits), and W8A8 per GEMM path: its GEMM kernel's TFLOP/s, over cuBLASLt's FP8
    GEMM (the peer's torch._scaled_mm, which quantizes no activations: its GEMM against joyrt's
    GEMM kernel), and the whole W8A8 linear (row quantization + GEMM) over bench-ops' bf16 linear
    on the same path (the issue's target: twice the bf16 rate)."""
    dense_by_path = {}
    for r in (ops or {}).get("ops", []):
        if r["op"].startswith("linear") and " (" in r["op"]:
            dense_by_path[(shape_label(r["op"]), r["op"].split(" (")[1].rstrip(")"))] = r["ms"]
    cublas_fp8 = {r["shape"]: r for r in (peer or {}).get("fp8", [])}
    rows = []
    for q in quantized["shapes"]:
        row = {"shape": q["shape"], "dense_ms": q["dense_ms"]}
        for f in ("int8", "int4", "fp8", "fp8_w8a8"):
            if f"{f}_ms" in q:
                row[f"{f}_vs_dense"] = q[f"{f}_ms"] / q["dense_ms"]
        row["w8a8_paths"] = []
        for p in q["w8a8_paths"]:
            e = dict(p)
            if p["gemm_ms"]:
                e["gemm_tflops"] = q["flop"] / p["gemm_ms"] / 1e9
                if q["shape"] in cublas_fp8:
                    e["gemm_speed_vs_cublas_fp8"] = cublas_fp8[q["shape"]]["ms"] / p["gemm_ms"]
            bf16 = dense_by_path.get((f"linear {q['shape']}", p["gemm_path"]))
            if bf16:
                e["speedup_vs_bf16_same_path"] = bf16 / p["ms"]
            row["w8a8_paths"].append(e)
        rows.append(row)
    result = {"shapes": rows}
    if peer and "fp8_error" in peer:
        result["cublas_fp8_error"] = peer["fp8_error"]
    return result


def fastest(ops_doc, passed):
    """The `JOYRT_CUDA_GEMM=… JOYRT_CUDA_ATTENTION=…` assignments of the GEMM path with the least
    total time over bench-ops' shapes and the fastest attention path, each among the run's default
    and the paths whose suite is in `passed`; [] where that is the default pair."""
    own_gemm, own_attention = field(ops_doc, "gemm_path"), field(ops_doc, "attention_path")
    gemm, attention, shapes = {}, {}, set()
    for r in field(ops_doc, "ops"):
        if r.get("op") == "linear" and "gemm_path" in r:
            gemm.setdefault(r["gemm_path"], []).append(number(r, "ms"))
            shapes.add((r["k"], r["n"]))
        elif r.get("op") == "attention" and "attention_path" in r:
            attention[r["attention_path"]] = number(r, "ms")
    ok_gemm = {p: sum(t) for p, t in gemm.items() if len(t) == len(shapes) and (p == own_gemm or SUITE_OF_GEMM.get(p) in passed)}
    ok_attention = {p: t for p, t in attention.items() if p == own_attention or SUITE_OF_ATTENTION.get(p) in passed}
    best_gemm = min(ok_gemm, key=ok_gemm.get, default=own_gemm)
    best_attention = min(ok_attention, key=ok_attention.get, default=own_attention)
    if (best_gemm, best_attention) == (own_gemm, own_attention):
        return []
    return [f"JOYRT_CUDA_GEMM={best_gemm}", f"JOYRT_CUDA_ATTENTION={best_attention}"]


def fastest_of_run(work):
    parts = read_parts(work)
    passed = {p["name"] for p in parts if p["status"] == "passed"}
    if "bench-ops" not in passed:
        return []
    return fastest(json.loads((work / "data" / "bench-ops.json").read_text()), passed)


def self_test_fastest():
    def doc(gemm_ms, attention_ms):
        ops = [
            {"op": "linear", "k": k, "n": n, "gemm_path": p, "ms": ms}
            for p, ms in gemm_ms.items()
            for k, n in GEMMS
        ]
        ops += [{"op": "attention", "attention_path": p, "ms": ms} for p, ms in attention_ms.items()]
        return {"gemm_path": "wgmma", "attention_path": "mma", "ops": ops}

    d = doc({"mma": 3.0, "wgmma": 2.0, "wgmma-persistent": 1.9, "wgmma-ws": 1.5}, {"mma": 4.7, "wgmma": 5.0, "wgmma-ws": 2.5})
    checks = [
        (fastest(d, {"conformance-ws", "conformance-wgmma"}) == ["JOYRT_CUDA_GEMM=wgmma-ws", "JOYRT_CUDA_ATTENTION=wgmma-ws"], "both ws"),
        (fastest(d, {"conformance-wgmma"}) == ["JOYRT_CUDA_GEMM=wgmma-persistent", "JOYRT_CUDA_ATTENTION=mma"], "ws suite failed"),
        (fastest(d, set()) == [], "no other suite passed: the defaults"),
        (fastest(doc({"wgmma": 1.0, "wgmma-ws": 1.5}, {"mma": 2.0, "wgmma-ws": 2.5}), {"conformance-ws"}) == [], "defaults fastest"),
        # mma is never taken on Hopper: no suite of this run checked it there.
        (fastest(doc({"mma": 0.5, "wgmma": 1.0}, {"mma": 1.0}), {"conformance-ws"}) == [], "mma unchecked"),
    ]
    bad = [what for ok, what in checks if not ok]
    if bad:
        sys.exit(f"fastest self-test failed: {bad}")


def fmt(v, digits=3):
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def markdown(rep):
    env, parts, cmp_ = rep["env"], rep["parts"], rep["comparisons"]
    lines = [
        f"# joyrt GPU check, {rep['started']}: {env.get('gpu', 'no GPU')}",
        "",
        f"Mode: {rep['mode']}. Overall: **{'PASSED' if rep['passed'] else 'FAILED'}** "
        f"({sum(p['status'] == 'passed' for p in parts)} passed, "
        f"{sum(p['status'] == 'skipped' for p in parts)} skipped, "
        f"{sum(p['status'] not in PASSING for p in parts)} failed, timed out or not run; "
        f"{rep['total_s']:.0f} s of a {rep['budget_s']} s budget).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    probe = next((p.get("figures") for p in parts if p["name"] == "probe"), None)
    nv = (probe or {}).get("nvrtc")
    joyrt_nvrtc = f"{nv.get('version')} ({nv.get('library')})" if isinstance(nv, dict) else "not reported"
    for key, label in [
        ("gpu", "GPU"),
        ("driver", "driver"),
        ("driver_cuda", "CUDA version of the driver"),
        ("nvcc", "CUDA toolkit (nvcc)"),
        ("nvrtc_found", "NVRTC found by the script"),
        ("compute_sanitizer", "compute-sanitizer"),
        ("python", "python3, torch"),
        ("kernel", "kernel"),
        ("joyrt", "joyrt binary"),
    ]:
        lines.append(f"| {label} | {env.get(key, 'not recorded')} |")
    lines.append(f"| NVRTC as joyrt loads it | {joyrt_nvrtc} |")
    lines += [
        "",
        "## Parts",
        "",
        "| part | status | seconds | limit | note |",
        "|---|---|---:|---:|---|",
    ]
    for p in parts:
        note = p["note"] or p.get("figures_error", "")
        limit = p["limit_s"]
        if limit is None:
            limit = "" if p["status"] == "not-run" else "each command's own"
        lines.append(f"| {p['name']} | {p['status']} | {p['seconds']:.1f} | {limit} | {note} |")

    rows = cmp_.get("ops_vs_peer")
    ops_dtype = next((p["figures"]["dtype"] for p in parts if p["name"] == "bench-ops" and p.get("figures")), "")
    if rows:
        lines += [
            "",
            f"## GEMM and attention against the same-run peer (measured, {ops_dtype})",
            "",
            "speed = joyrt's TFLOP/s over the peer's (1.0: as fast as cuBLAS / SDPA).",
            "",
            "| op | joyrt ms | joyrt TFLOP/s | peer | peer ms | peer TFLOP/s | speed |",
            "|---|---:|---:|---|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['op']} | {r['joyrt_ms']:.3f} | {r['joyrt_tflops']:.1f} | {r['peer']} | "
                f"{r['peer_ms']:.3f} | {r['peer_tflops']:.1f} | {r['speed_vs_peer']:.2f} |"
            )
    if "ops_vs_peer_error" in cmp_:
        lines += ["", f"GEMM and attention against the peer: {cmp_['ops_vs_peer_error']}."]
    lines += quantized_markdown(cmp_.get("quantized"))
    c = cmp_.get("cfg_step")
    if c:
        lines += [
            "",
            f"## One CFG step, {c['tokens']} tokens, weights: {c['weights']}",
            "",
            "| figure | value | kind |",
            "|---|---:|---|",
            f"| CFG step (median) | {c['measured_s']:.3f} s | measured |",
        ]
    if c and "flop_t" in c:
        lines += [
            f"| FLOP per step | {c['flop_t']:.1f} T | counted (GEMMs + attention) |",
            f"| achieved | {c['achieved_tflops']:.0f} TFLOP/s, MFU {c['mfu']:.0%} | derived |",
            f"| floor at {BF16_DENSE_PEAK_TFLOPS:.0f} TFLOP/s | {c['floor_s_at_peak']:.3f} s "
            f"(step = {c['vs_floor']:.2f}× floor) | constant peak (datasheet) |",
        ]
        if "floor_s_at_cublas_rate" in c:
            lines.append(
                f"| floor at this run's best cuBLAS rate ({c['cublas_best_tflops']:.0f} TFLOP/s) | "
                f"{c['floor_s_at_cublas_rate']:.3f} s | derived from measured |"
            )
        if "sglang_h100_s" in c:
            lines.append(
                f"| SGLang on an H100 | {c['sglang_h100_s']:.3f} s (joyrt = {c['vs_sglang_h100']:.2f}× its time) "
                "| constant (model-spec), not measured here |"
            )
    variants = cmp_.get("cfg_step_variants")
    if variants:
        lines += [
            "",
            "## The CFG step on other kernels and in fp8 (measured, same run)",
            "",
            "| part | what | GEMM | attention | block linears | CFG step | over the default step | over SGLang's (H100) |",
            "|---|---|---|---|---|---:|---:|---:|",
        ]
        for v in variants:
            weights = f"{v['format']}{' W8A8' if v.get('fp8_activations') else ''}" if "format" in v else "bf16"
            rel = lambda k: f"{v[k]:.2f}×" if k in v else "—"
            lines.append(
                f"| {v['part']} | {v['what']} | {v.get('gemm_path', '?')} | {v.get('attention_path', '?')} | {weights} "
                f"| {v['measured_s']:.3f} s | {rel('vs_default_step')} | {rel('vs_sglang_h100')} |"
            )
    lines += gpu_check_profile.table(next((p.get("figures") for p in parts if p["name"] == "profile"), None))
    for p in parts:
        f = p.get("figures")
        if p["name"] in ("conformance", "conformance-wgmma", "conformance-ws") and f:
            title = "Conformance" if p["name"] == "conformance" else f"Conformance on the other Hopper kernels ({p['name']})"
            lines += ["", f"## {title}", "", f"{f['passed']} passed, {f['failed']} failed, {f['skipped']} skipped."]
            lines += [f"- {x}" for x in f["failures"][:40]]
            if len(f["failures"]) > 40:
                lines.append(f"- … {len(f['failures']) - 40} more in report.json")
        if p["name"] in ("memcheck", "racecheck") and p["status"] not in ("skipped", "not-run"):
            lines += ["", f"## {p['name']}", ""]
            lines += [f"- {s}" for s in p.get("sanitizer", [])] or ["- no compute-sanitizer summary in its log"]
    return "\n".join(lines) + "\n"


def quantized_markdown(q):
    if not q:
        return []
    ratio = lambda v: f"{v:.2f}" if isinstance(v, float) else "—"
    lines = [
        "",
        "## Quantized linears (measured, same run)",
        "",
        "Time over the dense bf16 linear of the same shape and run (below 1: faster). W8A16 formats "
        "decode the weight in the GEMM; W8A8 quantizes x's rows to E4M3, then multiplies codes.",
        "",
        "| shape | dense ms | int8 | int4 | fp8 W8A16 | fp8 W8A8 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in q["shapes"]:
        lines.append(
            f"| {r['shape']} | {r['dense_ms']:.3f} | {ratio(r.get('int8_vs_dense'))} | {ratio(r.get('int4_vs_dense'))} "
            f"| {ratio(r.get('fp8_vs_dense'))} | {ratio(r.get('fp8_w8a8_vs_dense'))} |"
        )
    paths = [(r["shape"], p) for r in q["shapes"] for p in r["w8a8_paths"]]
    if paths:
        lines += [
            "",
            "fp8 W8A8 per GEMM path: the GEMM kernel's median launch (CUDA events) against cuBLASLt's FP8 "
            "GEMM (torch._scaled_mm, row-wise scales, no activation quantization), and the whole W8A8 "
            "linear (quantize + GEMM) against bench-ops' bf16 linear on the same path (target: 2×).",
            "",
            "| shape | path | kernel | W8A8 ms | quantize ms | GEMM ms | GEMM TFLOP/s | GEMM vs cuBLASLt fp8 | speedup vs bf16 |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for shape, p in paths:
            ms = lambda v: f"{v:.3f}" if isinstance(v, float) else "—"
            tf = p.get("gemm_tflops")
            lines.append(
                f"| {shape} | {p['gemm_path']} | {p['kernel']} | {p['ms']:.3f} | {ms(p['quantize_ms'])} | "
                f"{ms(p['gemm_ms'])} | {f'{tf:.0f}' if tf else '—'} | {ratio(p.get('gemm_speed_vs_cublas_fp8'))} "
                f"| {ratio(p.get('speedup_vs_bf16_same_path'))} |"
            )
    if "cublas_fp8_error" in q:
        lines += ["", f"cuBLASLt fp8 peer: {q['cublas_fp8_error']}."]
    return lines


def write(work, out, mode, budget):
    parts = read_parts(work)
    attach_figures(parts, work)
    add_unfinished(parts, work)
    started = (work / "started").read_text().strip() if (work / "started").is_file() else "unknown"
    rep = {
        "schema": 1,
        "mode": mode,
        "started": started,
        "budget_s": budget,
        "total_s": sum(p["seconds"] for p in parts),
        "passed": bool(parts) and all(p["status"] in PASSING for p in parts),
        "env": read_env(work),
        "parts": parts,
    }
    rep["comparisons"] = comparisons(parts)
    # Whole files only (temporary name, then rename): the run may be cut short at any moment.
    for name, text in [("report.json", json.dumps(rep, indent=2, ensure_ascii=False) + "\n"), ("report.md", markdown(rep))]:
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    return rep


# ---- self-test ------------------------------------------------------------------------------------


def self_test():
    """Writes the report of a made-up run with every part passed and checks its figures; then
    `fastest` on made-up bench-ops documents."""

    def ops(ms, paths=("",), attention=("",)):
        recs = [
            {"op": "linear", "m": 9231, "k": k, "n": n, "ms": ms, "flop": 2.0 * 9231 * k * n}
            | ({"gemm_path": p} if p else {})
            for k, n in GEMMS
            for p in paths
        ]
        recs += [
            {"op": "attention", "tokens": 9231, "heads": 32, "head_dim": 128, "ms": ms, "flop": 1.0}
            | ({"attention_path": p} if p else {})
            for p in attention
        ]
        return recs

    conf = {"backend": "cuda:test", "passed": 3, "failed": 0, "skipped": 1, "failures": []}
    docs = {
        "probe": {"backend": "cuda:test", "dtype": "bf16", "iters": 1, "nvrtc": {"version": "13.0"}, "ops": ops(1.0)},
        "conformance": conf,
        "bench-ops": {"backend": "cuda:test", "dtype": "bf16", "iters": 10, "ops": ops(4.0, ("wgmma", "wgmma-ws"), ("mma", "wgmma-ws"))},
        "peer": {
            "torch": "t", "cuda": "13.0", "gpu": "test", "dtype": "bf16", "ops": ops(2.0),
            "fp8": {"ops": [{"m": 9231, "k": k, "n": n, "ms": 1.0, "flop": 2.0 * 9231 * k * n} for k, n in GEMMS]},
        },
        "cfg-step": {
            "backend": "cuda:test",
            "dtype": "bf16",
            "iters": 3,
            "dit": {"weights": FULL_SIZE_WEIGHTS, "params": 1, "load_s": 1.0, "size": 1024, "text_tokens": 1039, "tokens": 9231, "cfg_step_ms": 1346.0},
        },
        "profile": {
            "backend": "cuda:test",
            "dtype": "bf16",
            "iters": 1,
            "dit": {
                "weights": FULL_SIZE_WEIGHTS, "params": 1, "load_s": 1.0, "size": 1024, "text_tokens": 1039,
                "tokens": 9231, "cfg_step_ms": 1346.0,
                "profile": {
                    "timer": "cuda events", "step_ms": 1400.0, "kernel_ms": 1360.0, "launches": 3 + 2 * 16,
                    "kernels": [{"kernel": "linear_mma", "launches": 3, "total_ms": 1000.0, "median_us": 5.0, "share_of_step": 1000 / 1400}]
                    + [{"kernel": f"k{i}", "launches": 2, "total_ms": 22.5, "median_us": 1.0, "share_of_step": 22.5 / 1400} for i in range(16)],
                },
            },
        },
        "bench-quantized": {
            "backend": "cuda:test",
            "dtype": "bf16",
            "quantized": [
                {
                    "m": 9231, "k": k, "n": n, "dense_ms": 4.0, "int8_ms": 3.0, "int4_ms": 2.0, "fp8_ms": 3.0,
                    "fp8_w8a8_ms": 2.5,
                    "fp8_w8a8_paths": [
                        {
                            "gemm_path": path, "ms": 2.0,
                            "kernels": [
                                {"kernel": f"linear_fp8_w8a8_{path.replace('-', '_')}", "median_us": 1500.0},
                                {"kernel": "fp8_quantize_rows", "median_us": 500.0},
                            ],
                        }
                        for path in ("wgmma", "wgmma-ws")
                    ],
                }
                for k, n in GEMMS
            ],
        },
        "memcheck": conf,
        "racecheck": conf,
        "conformance-wgmma": conf,
        "conformance-ws": conf,
        "cfg-step-fastest": {
            "backend": "cuda:test", "dtype": "bf16", "iters": 3, "gemm_path": "wgmma-ws", "attention_path": "wgmma-ws",
            "dit": {"weights": FULL_SIZE_WEIGHTS, "params": 1, "load_s": 1.0, "size": 1024, "text_tokens": 1039, "tokens": 9231, "cfg_step_ms": 673.0},
        },
        "cfg-step-fp8": {
            "backend": "cuda:test", "dtype": "bf16", "iters": 3, "gemm_path": "wgmma-ws", "attention_path": "wgmma-ws",
            "fp8_activations": True,
            "dit": {"weights": FULL_SIZE_WEIGHTS, "format": "fp8", "params": 1, "load_s": 1.0, "size": 1024, "text_tokens": 1039, "tokens": 9231, "cfg_step_ms": 336.5},
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        work, out = Path(tmp, "work"), Path(tmp, "out")
        (work / "data").mkdir(parents=True)
        out.mkdir()
        rows = []
        for name, doc in docs.items():
            (work / "data" / f"{name}.json").write_text(json.dumps(doc))
            rows.append(f"{name}\tpassed\t1.0\t10\t0\tx.txt\t")
        (work / "data" / "memcheck.log").write_text("========= ERROR SUMMARY: 0 errors\n")
        (work / "parts.tsv").write_text("\n".join(rows) + "\n")
        rep = write(work, out, "self-test", 100)
        json.loads((out / "report.json").read_text())
        md = (out / "report.md").read_text()
    c = rep["comparisons"]
    checks = [
        (rep["passed"], "every part passed"),
        (len(c["ops_vs_peer"]) == 10, "four shapes on two GEMM paths and the attention on two compared"),
        (all(abs(r["speed_vs_peer"] - 0.5) < 1e-12 for r in c["ops_vs_peer"]), "speed = peer ms / joyrt ms"),
        (abs(c["cfg_step"]["vs_sglang_h100"] - 2.0) < 1e-3, "CFG step vs SGLang"),
        (abs(c["cfg_step"]["flop_t"] - 409.1) < 0.5, "CFG step FLOP at 9231 tokens"),
        (abs(c["cfg_step"]["floor_s_at_peak"] - 0.414) < 1e-3, "floor at 989 TFLOP/s"),
        (rep["parts"][7]["sanitizer"] == ["========= ERROR SUMMARY: 0 errors"], "sanitizer summary read"),
        (len(c["quantized"]["shapes"]) == 4, "quantized shapes read"),
        (abs(c["quantized"]["shapes"][0]["int4_vs_dense"] - 0.5) < 1e-12, "int4 time over dense"),
        (
            all(
                abs(p["gemm_speed_vs_cublas_fp8"] - 1 / 1.5) < 1e-12 and abs(p["speedup_vs_bf16_same_path"] - 2.0) < 1e-12
                for r in c["quantized"]["shapes"]
                for p in r["w8a8_paths"]
            ),
            "W8A8 GEMM vs cuBLASLt fp8 and vs bf16 on the same path",
        ),
        ("| M=9231 4096x12288 | wgmma-ws | linear_fp8_w8a8_wgmma_ws | 2.000 | 0.500 | 1.500 |" in md, "W8A8 table"),
        ([v["part"] for v in c["cfg_step_variants"]] == ["cfg-step-fastest", "cfg-step-fp8"], "CFG step variants read"),
        (abs(c["cfg_step_variants"][0]["vs_default_step"] - 0.5) < 1e-12, "variant over the default step"),
        (abs(c["cfg_step_variants"][1]["vs_sglang_h100"] - 0.5) < 1e-12, "variant over SGLang"),
        ("| cfg-step-fp8 | fp8 block linears, W8A8 | wgmma-ws | wgmma-ws | fp8 W8A8 | 0.337 s | 0.25× | 0.50× |" in md, "variants table"),
        (rep["parts"][5]["figures"]["launches"] == 35, "profile read"),
        ("| linear_mma | 3 | 1000.00 | 71.4% | 5.0 |" in md, "profile table"),
        ("| GEMM (linear*) | 3 | 1000.00 | 71.4% |" in md, "profile groups"),
        ("| everything else | 32 | 360.00 | 25.7% |" in md, "profile groups' remainder"),
        ("| 2 other kernels | 4 | 45.00 | 3.2% | |" in md, "profile table's remainder row"),
        ("| linear M=9231 4096x12288 (wgmma-ws) |" in md and "SGLang on an H100" in md, "markdown tables"),
    ]
    bad = [what for ok, what in checks if not ok]
    if bad:
        sys.exit(f"self-test failed: {bad}")
    self_test_fastest()
    print("report writer self-test: ok")


def main(argv):
    usage = __doc__.split("\n\n")[1]
    if argv[:1] == ["write"] and len(argv) == 5:
        rep = write(Path(argv[1]), Path(argv[2]), argv[3], int(argv[4]))
        return 0 if rep["parts"] else 1
    if argv[:1] == ["validate"] and len(argv) == 3 and argv[1] in KINDS:
        try:
            KINDS[argv[1]](json.loads(Path(argv[2]).read_text()))
        except (OSError, ValueError, DocError) as e:
            sys.exit(f"{argv[2]} is not a {argv[1]} document the report can read: {e}")
        return 0
    if argv == ["self-test"]:
        self_test()
        return 0
    if argv[:1] == ["fastest"] and len(argv) == 2:
        try:
            print(" ".join(fastest_of_run(Path(argv[1]))))
        except (OSError, ValueError, DocError) as e:
            sys.exit(f"fastest: {e}")
        return 0
    sys.exit(f"usage:\n{usage}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
