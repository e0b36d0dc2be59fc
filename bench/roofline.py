#!/usr/bin/env python
"""How close each GEMM-bound layer's forward and gradients come to this CPU's
arithmetic peak, ours and PyTorch's, in one run: the roofline of the GEMM-bound
float32 cases, where `make bench`'s "% GEMM" is relative to `torch.mm`, which on
AMD processors runs MKL's AVX2 kernels and is not the machine's ceiling.

    python bench/roofline.py [--cases TEXT ...] [--out FILE]

It measures
  * the peak: every thread runs 12 independent chains of vector multiply-adds
    of the widest vectors the compiler targets here (-march=native), compiled
    at the first run through torch.utils.cpp_extension (cached afterwards);
  * three GEMM engines on 2048^3: torch.mm (MKL here), our register-blocked
    tiles (torch_tconv._C.blocked_gemm), and oneDNN's matmul where torch has
    it (torch.ops.mkldnn._linear_pointwise, an internal op of torch's own
    compiler: measured here only, never used by the library);
  * per case, the forward, input gradient, weight gradient and both gradients
    of ours (the ops as "auto" runs them) and of PyTorch's (the forward, and
    aten.convolution_backward), alternating, medians of the benchmark's policy;
    each side's best median of --rounds rounds, since a shared host slows
    single measurements by up to 2x.

Writes a markdown table (default bench/results/<date>[-<k>]-cpu-roofline.md,
never over an earlier run's) that names the processor.
"""

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # noqa: E402  (the in-place build of torch_tconv; imports torch after it)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch_tconv  # noqa: E402
from torch_tconv.cli import machine_info  # noqa: E402

DEFAULT_CASES = ["dcgan-512to256-4x4", "dcgan-256to128-8x8", "vae-512to256-16x16",
                 "vae-256to128-32x32", "decoder-k3s2op1-32x32", "unet-512to256-32x32"]

# Independent multiply-add chains per thread: enough to cover the latency of
# two pipes (4 cycles x 2 on AMD's and Intel's recent cores) with room.
PEAK_SOURCE = r"""
#include <torch/extension.h>
#include <thread>
#include <vector>

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
constexpr int kChains = 12;

template <typename T>
double chains(int64_t iterations) {
  typedef T V __attribute__((vector_size(kVectorBytes)));
  V acc[kChains];
  V a, b;
  for (int l = 0; l < int(kVectorBytes / sizeof(T)); ++l) {
    a[l] = T(1) - T(1e-7);
    b[l] = T(1e-7);
  }
  for (int c = 0; c < kChains; ++c) acc[c] = a * T(c);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * a + b;
  }
  double s = 0;
  for (int c = 0; c < kChains; ++c) s += double(acc[c][0]);
  return s;
}

// FLOPs done by `threads` threads of `iterations` rounds each (the result
// keeps the compiler from dropping the loops).
double peak_flops(int64_t threads, int64_t iterations, bool float64) {
  std::vector<std::thread> pool;
  std::vector<double> sink(threads);
  for (int64_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      sink[t] = float64 ? chains<double>(iterations) : chains<float>(iterations);
    });
  }
  for (auto& th : pool) th.join();
  const int lanes = kVectorBytes / (float64 ? 8 : 4);
  double flops = 2.0 * lanes * kChains * double(iterations) * double(threads);
  return sink[0] == 12345.678 ? 0.0 : flops;
}

int vector_bytes() { return kVectorBytes; }
"""


def compile_peak():
    from torch.utils.cpp_extension import load_inline
    return load_inline(name="torch_tconv_fma_peak", cpp_sources=[PEAK_SOURCE],
                       functions=["peak_flops", "vector_bytes"],
                       extra_cflags=["-O2", "-march=native", "-ffp-contract=fast"],
                       verbose=False)


def peak_gflops(module, float64, threads, repeats=5):
    """Best of `repeats` runs of about 0.3 s, GFLOP/s."""
    iterations = 20_000_000
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        flops = module.peak_flops(threads, iterations, float64)
        best = max(best, flops / (time.perf_counter() - start) / 1e9)
    return best


def gemm_engines(timer, n=2048, repeats=7):
    """{engine: GFLOP/s} of float32 (n x n) by (n x n), best of repeats."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    engines = {
        "torch.mm": lambda: torch.mm(a, b, out=c),
        "torch_tconv blocked tiles": lambda: torch_tconv._C.blocked_gemm(
            a[None], b[None], c[None], False),
    }
    linear = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if linear is not None:
        b_t = b.t().contiguous()  # the op's weight is (out, in)
        engines["oneDNN matmul"] = lambda: linear(a, b_t, None, "none", [], "")
    out = {}
    for name, fn in engines.items():
        try:
            fn()
        except (RuntimeError, NotImplementedError) as error:
            out[name] = f"n/a ({str(error).splitlines()[0][:60]})"
            continue
        fn()
        out[name] = 2 * n ** 3 / min(timer(fn) for _ in range(repeats)) / 1e6
    return out


def case_parts(case):
    """{part: (ours, torch's)} of one float32 2-D case, each taking an input set."""
    ops = torch.ops.torch_tconv
    stride, padding = [case.stride] * 2, [case.padding] * 2
    dilation, out_pad = [case.dilation] * 2, [case.output_padding] * 2
    groups = case.groups

    def ours_backward(mask):
        def run(s):
            x, w, gy = s.x.detach(), s.weight.detach(), s.grad_out
            if mask == "input":
                ops.conv_transpose_input_grad(gy, w, list(x.shape[2:]), stride, padding,
                                              dilation, groups)
            elif mask == "weight":
                ops.conv_transpose_weight_grad(x, gy, list(w.shape[2:]), stride, padding,
                                               dilation, groups)
            else:
                ops.conv_transpose_backward(gy, x, w, stride, padding, dilation, groups)
        return run

    def torch_backward(mask):
        output_mask = {"input": [True, False, False], "weight": [False, True, False],
                       "both": [True, True, False]}[mask]

        def run(s):
            torch.ops.aten.convolution_backward(
                s.grad_out, s.x.detach(), s.weight.detach(), None, stride, padding, dilation,
                True, out_pad, groups, output_mask)
        return run

    def forward(conv):
        def run(s):
            with torch.no_grad():
                conv(s.x, s.weight, s.bias, **case.conv_kwargs())
        return run

    return {
        "forward": (forward(torch_tconv.conv_transpose2d), forward(F.conv_transpose2d)),
        "input gradient": (ours_backward("input"), torch_backward("input")),
        "weight gradient": (ours_backward("weight"), torch_backward("weight")),
        "both gradients": (ours_backward("both"), torch_backward("both")),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES,
                        help="2-D suite cases (exact names) to time, float32")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds over the cases; each side keeps its best median")
    parser.add_argument("--out", help="markdown file to write")
    args = parser.parse_args(argv)
    by_name = {case.name: case for case in benchmark.SUITE}
    unknown = [name for name in args.cases
               if name not in by_name or by_name[name].dims != 2]
    if unknown:
        parser.error(f"not 2-D suite cases: {unknown}")
    threads = torch.get_num_threads()
    timer = benchmark.CpuTimer()
    policy = benchmark.make_policy("cpu", False, None)
    print("compiling the peak's loop ...", flush=True)
    module = compile_peak()
    peak32 = peak_gflops(module, False, threads)
    peak64 = peak_gflops(module, True, threads)
    engines = gemm_engines(timer)
    cpu_model, isa = benchmark.cpu_info()
    gemms = machine_info()
    lines = [f"# CPU roofline of the GEMM-bound layers, {datetime.date.today().isoformat()}", "",
             f"- cpu_model: {cpu_model}",
             f"- cpu_microarchitecture: {benchmark.cpu_microarchitecture()}",
             f"- cpu_isa: {isa}",
             f"- torch: {torch.__version__}, threads: {threads}; torch_tconv's CPU variant: "
             f"{torch_tconv.backends.cpu_isa_in_use()}; its float32 GEMMs (cpu_gemm \"auto\"): "
             f"forward {gemms['cpu_gemm_in_use']}, gradients {gemms['cpu_gradient_gemm_in_use']}",
             f"- peak (multiply-add chains of {module.vector_bytes()}-byte vectors on "
             f"{threads} threads, best of 5): float32 {peak32:.1f} GFLOP/s, "
             f"float64 {peak64:.1f}",
             "- float32 GEMM 2048^3, best of 7: " + ", ".join(
                 f"{name} {v:.1f} GFLOP/s ({100 * v / peak32:.0f}% of peak)"
                 if isinstance(v, float) else f"{name} {v}" for name, v in engines.items()),
             "- cases: float32, ms, medians of alternating calls (the benchmark's policy), "
             f"each side's best of {args.rounds} rounds; GFLOP/s count 2 FLOPs per "
             "multiply-add, the forward's FLOPs for each gradient and twice them for both", "",
             "| case | part | ms ours / torch | GFLOP/s ours / torch | % of peak ours / torch |",
             "|---|---|---|---|---|"]
    best = {}
    for round_number in range(args.rounds):
        for name in args.cases:
            case = by_name[name]
            print(f"round {round_number + 1}: timing {name} ...", flush=True)
            sets = [benchmark.make_input_set(case, torch.float32, "cpu") for _ in range(3)]
            for part, (ours, theirs) in case_parts(case).items():
                times = benchmark.time_alternating(timer, ours, theirs, sets, policy)[:2]
                previous = best.get((name, part), times)
                best[name, part] = tuple(min(a, b) for a, b in zip(previous, times))
    for name in args.cases:
        flops = by_name[name].forward_flops()
        for part in case_parts(by_name[name]):
            ours_ms, torch_ms = best[name, part]
            part_flops = 2 * flops if part == "both gradients" else flops
            rates = [part_flops / ms / 1e6 for ms in (ours_ms, torch_ms)]
            lines.append(f"| {name} | {part} | {ours_ms:.3g} / {torch_ms:.3g} | "
                         f"{rates[0]:.1f} / {rates[1]:.1f} | "
                         f"{100 * rates[0] / peak32:.0f} / {100 * rates[1] / peak32:.0f} |")
    stem = benchmark.results_stem(benchmark.RESULTS_DIR, datetime.date.today().isoformat(),
                                  "cpu-roofline")
    out = Path(args.out) if args.out else stem.with_name(stem.name + ".md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
