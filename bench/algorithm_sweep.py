#!/usr/bin/env python
"""Times every algorithm and tile variant against torch, case by case: the
table that the default choices are read from (the rule of plan.cpp and
default_mma_variant in csrc/kernels/mma_tiles.h).

For each case of the benchmark suite (torch_tconv/bench.py) plus the cases
where cuDNN is known to be weak, and each dtype, the forward and the
forward+backward are timed for torch and for torch_tconv under each setting:

    auto         the default rule
    benchmark    benchmark mode's pick (torch_tconv.backends.benchmark)
    gemm, direct the paths forced
    phase/<v>    the implicit GEMMs with tile variant v: "scalar", and on CUDA
                 for float16/bfloat16 each tensor-core shape

each paired with torch's time measured alongside (ratio = torch / ours, > 1:
torch_tconv is faster). On CUDA the names of torch's (cuDNN's) kernels for the
case are recorded too (torch.profiler). Each result is also checked against
torch's forward; a setting that errs or differs is marked.

    python bench/algorithm_sweep.py [--device cuda|cpu] [--out DIR] [--quick]
                                    [--dtypes float16 ...] [--cases NAME ...]

Writes DIR/<date>-algorithms-<device>.{md,json}, rewritten after every case.
"""

import argparse
import json
import math
import statistics
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # noqa: E402  (the suite, timers, and the in-place build of torch_tconv)

torch = benchmark.torch
F = benchmark.F
torch_tconv = benchmark.torch_tconv
Case = benchmark.Case

# Cases the suite lacks where cuDNN is reported weak (pytorch/pytorch
# #31690: output_padding != 0; #47341, #95604: grouped and depthwise).
WEAK_SPOTS = [
    Case("output-padding-k3s2op1-64x64", 8, 64, 64, 64, 64, 3, 2, 1, 1, 1, 1),
    Case("grouped-g32-64x64", 8, 256, 256, 64, 64, 4, 2, 1, 0, 32, 1),
    Case("depthwise-g64-64x64", 8, 64, 64, 64, 64, 4, 2, 1, 0, 64, 1),
]
MMA_VARIANTS = ["mma128x64", "mma64x64", "mma64x32", "mma32x16"]
# A setting whose first call takes longer than this is recorded untimed.
SLOW_S = 1.0


def settings_for(device, dtype):
    settings = [("auto", {}), ("benchmark", {"benchmark": True}),
                ("gemm", {"algorithm": "gemm"}), ("direct", {"algorithm": "direct"}),
                ("phase/scalar", {"algorithm": "phase", "tile_variant": "scalar"})]
    if device == "cuda" and dtype in (torch.float16, torch.bfloat16):
        settings += [(f"phase/{v}", {"algorithm": "phase", "tile_variant": v})
                     for v in MMA_VARIANTS]
    return settings


def median_ms(timer, fn, input_sets, repeats):
    return statistics.median(timer(fn, input_sets[i % len(input_sets)]) for i in range(repeats))


def time_setting(timer, fn, input_sets, repeats):
    """Median milliseconds, or None with the first call's time when that
    call alone is over SLOW_S."""
    first = timer(fn, input_sets[0])
    if first / 1e3 > SLOW_S:
        return None, first
    timer(fn, input_sets[1])
    return median_ms(timer, fn, input_sets, repeats), first


def relative_error(case, s):
    with torch.no_grad():
        conv, reference_conv = case.functions()
        ours = conv(s.x, s.weight, s.bias, **case.conv_kwargs())
        reference = reference_conv(s.x.double(), s.weight.double(),
                                       None if s.bias is None else s.bias.double(),
                                       **case.conv_kwargs())
    scale = reference.abs().max().item()
    error = (ours.double() - reference).abs().max().item()
    return error / scale if scale > 0 else error


def torch_kernel_names(case, s, limit=4):
    """The CUDA kernels of torch's forward+backward, longest first."""
    from torch.profiler import ProfilerActivity, profile

    step = benchmark.forward_backward_fn(case.functions()[1], case)
    step(s)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step(s)
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    kernels.sort(key=lambda e: getattr(e, "device_time_total", 0.0), reverse=True)
    return [e.key for e in kernels[:limit]]


def run_case(case, dtype_name, device, timer, repeats):
    dtype = benchmark.DTYPES[dtype_name]
    input_sets = [benchmark.make_input_set(case, dtype, device) for _ in range(3)]
    row = {"case": case.name, "dtype": dtype_name, "settings": {}}
    for kind, make in (("fwd", benchmark.forward_fn), ("fwd_bwd", benchmark.forward_backward_fn)):
        reference_ms, _ = time_setting(timer, make(case.functions()[1], case), input_sets, repeats)
        row[f"torch_{kind}_ms"] = reference_ms
    for name, flags in settings_for(device, dtype):
        torch_tconv.backends.clear_benchmark_choices()
        entry = {}
        try:
            with torch_tconv.backends.flags(**flags):
                error = relative_error(case, input_sets[0])
                entry["rel_err"] = error if math.isfinite(error) else None
                entry["ok"] = math.isfinite(error) and error <= benchmark.TOLERANCE[dtype_name]
                for kind, make in (("fwd", benchmark.forward_fn),
                                   ("fwd_bwd", benchmark.forward_backward_fn)):
                    ms, first = time_setting(timer, make(case.functions()[0], case),
                                             input_sets, repeats)
                    entry[f"{kind}_ms"] = ms
                    entry[f"{kind}_first_ms"] = first
                if name == "benchmark":
                    entry["picked"] = sorted({f"{a}/{v}" for _, a, v in
                                              torch_tconv.backends.benchmark_choices()})
        except (RuntimeError, ValueError) as exc:
            entry = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
        row["settings"][name] = entry
    if device == "cuda":
        row["torch_kernels"] = torch_kernel_names(case, input_sets[0])
    return row


def ratio(row, name, kind):
    entry = row["settings"].get(name, {})
    ours, reference = entry.get(f"{kind}_ms"), row.get(f"torch_{kind}_ms")
    if not entry.get("ok") or ours is None or reference is None:
        return None
    return reference / ours


def table(rows, kind):
    names = list(dict.fromkeys(n for r in rows for n in r["settings"]))
    lines = [f"| case | dtype | torch ms | {' | '.join(names)} | best |",
             "|" + "---|" * (len(names) + 4)]
    for r in rows:
        cells = []
        best, best_ratio = "-", 0.0
        for n in names:
            value = ratio(r, n, kind)
            entry = r["settings"].get(n)
            if entry is None:
                cells.append("")
            elif value is None:
                cells.append("WRONG" if "rel_err" in entry and not entry["ok"] else
                             "ERROR" if "error" in entry else "slow")
            else:
                cells.append(f"{value:.2f}")
                if value > best_ratio:
                    best, best_ratio = n, value
        reference = r.get(f"torch_{kind}_ms")
        lines.append(f"| {r['case']} | {r['dtype']} | "
                     f"{'-' if reference is None else f'{reference:.3f}'} | "
                     f"{' | '.join(cells)} | {best} |")
    return lines


def write(out_dir, info, rows, announce=False):
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{info['date']}-algorithms-{info['device']}"
    with open(f"{stem}.json", "w") as f:
        json.dump({"machine": info, "results": rows}, f, indent=2)
    text = [f"# torch_tconv algorithm sweep: {info['device']}, {info['date']}", "",
            "Each cell: torch time / torch_tconv time with that setting (> 1: ours faster); "
            "WRONG: the forward differs from torch's beyond the dtype's tolerance; "
            f"slow: first call over {SLOW_S:.0f} s, not timed.", "",
            "## Machine", "", *[f"- {k}: {v}" for k, v in info.items() if k != "policy"], "",
            "## Forward", "", *table(rows, "fwd"), "",
            "## Forward + backward", "", *table(rows, "fwd_bwd"), ""]
    picks = [f"- {r['case']} {r['dtype']}: {', '.join(r['settings']['benchmark'].get('picked', []))}"
             for r in rows if "benchmark" in r["settings"]]
    text += ["## Benchmark mode's picks", "", *picks, ""]
    kernels = [f"- {r['case']} {r['dtype']}: " + "; ".join(k[:90] for k in r["torch_kernels"])
               for r in rows if r.get("torch_kernels")]
    if kernels:
        text += ["## torch's kernels (longest first)", "", *kernels, ""]
    with open(f"{stem}.md", "w") as f:
        f.write("\n".join(text))
    if announce:
        print(f"wrote {stem}.md, {stem}.json")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--out", type=Path, default=benchmark.RESULTS_DIR)
    parser.add_argument("--quick", action="store_true", help="few cases and repeats: a smoke test")
    parser.add_argument("--dtypes", nargs="+", choices=list(benchmark.DTYPES))
    parser.add_argument("--cases", nargs="+", help="only these cases")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not (torch.cuda.is_available() and torch_tconv.has_cuda_kernels()):
        sys.exit("CUDA requested, but there is no GPU or this build has no CUDA kernels")
    timer = benchmark.CudaTimer() if args.device == "cuda" else benchmark.CpuTimer()
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    # The suite's float32-only additions (small-batch grouped, VAE, super-
    # resolution) are swept only when named: the GPU check's time limit.
    cases = [c for c in benchmark.SUITE + WEAK_SPOTS
             if args.cases or c.name not in benchmark.FLOAT32_ONLY_CASES]
    if args.quick:
        cases = [c for c in cases if c.name in benchmark.QUICK_CASES]
        cases = [replace(c, N=min(c.N, 4)) for c in cases]
    if args.cases:
        cases = [c for c in cases if c.name in args.cases]
    dtypes = args.dtypes or (["float16", "bfloat16", "float32"] if args.device == "cuda"
                             else ["float32"])
    repeats = 3 if args.quick else (10 if args.device == "cuda" else 5)
    policy = benchmark.Policy(1, 0.0, repeats, repeats, repeats)
    info = benchmark.machine_info(args.device, benchmark.device_label(args.device), policy)
    info["repeats"] = repeats
    torch.manual_seed(0)
    rows = []
    for case in benchmark.progress_bar(cases, desc="cases"):
        for dtype in dtypes:
            rows.append(run_case(case, dtype, args.device, timer, repeats))
            # After every case: a run stopped by its time limit keeps what it measured.
            write(args.out, info, rows)
    print("\n".join(table(rows, "fwd_bwd")))
    write(args.out, info, rows, announce=True)


if __name__ == "__main__":
    main()
