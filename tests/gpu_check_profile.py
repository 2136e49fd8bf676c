"""The kernel profile's part of the report of tests/gpu_check.sh (gpu_check_report.py reads the
document, `joyrt bench --profile --json`; this groups its kernels and writes its section of
report.md)."""

# Rows of the kernel profile's table in report.md (report.json keeps every kernel).
PROFILE_ROWS = 15
# The profile's groups, by kernel-name prefix (the CUDA backend's kernels are named by family).
PROFILE_GROUPS = (("linear", "GEMM (linear*)"), ("attention", "attention (attention*)"))


def groups(kernels):
    """Total ms and launches of the GEMM kernels, the attention kernels and everything else."""
    other = "everything else"
    totals = {label: [0.0, 0] for _, label in PROFILE_GROUPS}
    totals[other] = [0.0, 0]
    for k in kernels:
        label = next((lab for prefix, lab in PROFILE_GROUPS if k["kernel"].startswith(prefix)), other)
        totals[label][0] += k["total_ms"]
        totals[label][1] += k["launches"]
    return [{"group": g, "total_ms": ms, "launches": n} for g, (ms, n) in totals.items()]


def table(f):
    """The kernel profile's section of report.md: the PROFILE_ROWS kernels of the longest total
    time, the rest summed in one row."""
    if not f:
        return []
    step = f["profiled_step_ms"]
    lines = [
        "",
        f"## Kernel profile of one CFG step, {f['tokens']} tokens (measured, {f['timer']})",
        "",
        f"{f['launches']} launches; the kernels ran {f['profiled_kernel_ms']:.1f} ms of the profiled step's "
        f"{step:.1f} ms (timing each launch adds to it; the unprofiled step's median in the same run: "
        f"{f.get('cfg_step_ms', float('nan')):.1f} ms). share = the total over the profiled step.",
    ]
    lines += ["", "| group (by kernel name) | launches | total ms | share |", "|---|---:|---:|---:|"]
    for g in f["groups"]:
        lines.append(f"| {g['group']} | {g['launches']} | {g['total_ms']:.2f} | {g['total_ms'] / step:.1%} |")
    lines += ["", "| kernel | launches | total ms | share | median µs |", "|---|---:|---:|---:|---:|"]
    top, rest = f["kernels"][:PROFILE_ROWS], f["kernels"][PROFILE_ROWS:]
    for k in top:
        lines.append(
            f"| {k['kernel']} | {k['launches']} | {k['total_ms']:.2f} | {k['share_of_step']:.1%} | {k['median_us']:.1f} |"
        )
    if rest:
        ms = sum(k["total_ms"] for k in rest)
        lines.append(
            f"| {len(rest)} other kernels | {sum(k['launches'] for k in rest)} | {ms:.2f} | {ms / step:.1%} | |"
        )
    return lines
