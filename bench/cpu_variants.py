#!/usr/bin/env python
"""The CPU kernels' instruction-set variants (csrc/cpu/cpu_isa.h) against
PyTorch, in one run: each variant this processor supports and torch, called
alternately on a few suite cases (forward, and forward+backward), medians of
the benchmark's policy; and what a fresh output costs before any arithmetic
(filling a newly allocated tensor of the depthwise layer's output size,
against filling the same tensor again), the floor of memory-bound layers.

    python bench/cpu_variants.py [--cases TEXT ...] [--out FILE]

Writes a markdown table (default bench/results/<date>-cpu-variants.md) that
names the processor.
"""

import argparse
import datetime
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # noqa: E402  (the in-place build of torch_tconv; imports torch after it)

import torch  # noqa: E402
import torch_tconv  # noqa: E402

DEFAULT_CASES = ["depthwise-g128-32x32", "fcn-k16s8-16x16", "decoder-k3s2op1-32x32",
                 "dcgan-256to128-8x8"]


def time_variants(case, variants, timer, policy):
    """{measurement: {variant or 'torch': median ms}} for one float32 case."""
    sets = [benchmark.make_input_set(case, torch.float32, "cpu") for _ in range(3)]
    conv, reference = case.functions()
    results = {}
    for measurement, make in (("fwd", benchmark.forward_fn),
                              ("fwd+bwd", benchmark.forward_backward_fn)):
        row = {}
        for isa in variants:
            def ours(s, isa=isa, run=make(conv, case)):
                with torch_tconv.backends.flags(cpu_isa=isa):
                    run(s)
            ours_ms, torch_ms, _ = benchmark.time_alternating(
                timer, ours, make(reference, case), sets, policy)
            row[isa] = ours_ms
            row.setdefault("torch", []).append(torch_ms)
        row["torch"] = statistics.median(row["torch"])
        results[measurement] = row
    return results


def fresh_output_ms(numel, repeats=15):
    """Median ms to fill a newly allocated float32 tensor of numel elements,
    and to fill one already touched."""
    timer = benchmark.CpuTimer()
    kept = torch.empty(numel)
    kept.fill_(1.0)
    fresh = statistics.median(timer(lambda: torch.empty(numel).fill_(1.0)) for _ in range(repeats))
    reused = statistics.median(timer(lambda: kept.fill_(1.0)) for _ in range(repeats))
    return fresh, reused


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES,
                        help="suite cases (exact names) to time")
    parser.add_argument("--out", help="markdown file to write")
    args = parser.parse_args(argv)
    by_name = {case.name: case for case in benchmark.SUITE}
    unknown = [name for name in args.cases if name not in by_name]
    if unknown:
        parser.error(f"unknown cases {unknown}; the suite has {sorted(by_name)}")
    variants = torch_tconv.backends.supported_cpu_isas()
    policy = benchmark.make_policy("cpu", False, None)
    timer = benchmark.CpuTimer()
    cpu_model, isa = benchmark.cpu_info()
    lines = [f"# CPU kernel variants against torch, {datetime.date.today().isoformat()}", "",
             f"- cpu_model: {cpu_model}",
             f"- cpu_microarchitecture: {benchmark.cpu_microarchitecture()}",
             f"- cpu_isa: {isa}",
             f"- torch: {torch.__version__}, threads: {torch.get_num_threads()}",
             f"- variants: {variants} (auto runs {torch_tconv.backends.cpu_isa_in_use()})",
             "- float32, ms, medians of alternating calls (each variant against torch); "
             "ratio = torch / ours", "",
             "| case | measurement | " + " | ".join(variants) + " | torch | "
             + " | ".join(f"ratio {v}" for v in variants) + " |",
             "|---|---|" + "---|" * (2 * len(variants) + 1)]
    for name in args.cases:
        print(f"timing {name} ...", flush=True)
        for measurement, row in time_variants(by_name[name], variants, timer, policy).items():
            lines.append(f"| {name} | {measurement} | "
                         + " | ".join(f"{row[v]:.3g}" for v in variants)
                         + f" | {row['torch']:.3g} | "
                         + " | ".join(f"{row['torch'] / row[v]:.2f}" for v in variants) + " |")
    depthwise = by_name["depthwise-g128-32x32"]
    numel = depthwise.N * depthwise.C_out * math.prod(depthwise.output_sizes())
    fresh, reused = fresh_output_ms(numel)
    lines += ["", f"Filling the depthwise layer's output ({numel * 4 / 2**20:.1f} MiB of float32): "
              f"{fresh:.3g} ms into a fresh tensor, {reused:.3g} ms into one already touched "
              "(medians of 15)."]
    out = Path(args.out) if args.out else (
        benchmark.RESULTS_DIR / f"{datetime.date.today().isoformat()}-cpu-variants.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
