#!/usr/bin/env python
"""Where the time of a CUDA forward+backward goes, kernel by kernel.

For a few layers of the benchmark suite, profiles one forward+backward of
torch_tconv (after warm-up) with torch.profiler and prints each kernel's
total CUDA time, so that the GEMMs, the col2im/im2col passes, the layout
copies and the launch gaps can be told apart.

    python bench/profile_cuda.py [--out FILE]
"""

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # noqa: E402  (the suite, and the in-place build of torch_tconv)

torch_tconv = benchmark.torch_tconv
PROFILED = ["dcgan-512to256-4x4", "unet-256to128-64x64", "decoder-k3s2op1-32x32",
            "depthwise-g128-32x32", "large-64to32-512x512"]


def profile_case(case, dtype, out):
    x = torch.randn(case.N, case.C_in, *case.input_sizes(), device="cuda", dtype=dtype,
                    requires_grad=True)
    w = torch.randn(*case.weight_shape(), device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(case.C_out, device="cuda", dtype=dtype, requires_grad=True)

    def step():
        y = case.functions()[0](x, w, b, **case.conv_kwargs())
        torch.autograd.grad(y, (x, w, b), torch.ones_like(y))

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60)
    print(f"\n## {case.name} {dtype} (5 x forward+backward)\n{table}", file=out, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cases = {case.name: case for case in benchmark.SUITE}
    with (args.out.open("w") if args.out else sys.stdout) as out:
        for name in PROFILED:
            for dtype in (torch.float32, torch.float16):
                profile_case(cases[name], dtype, out)


if __name__ == "__main__":
    main()
