#!/usr/bin/env python
"""Host time per call: what a layer costs when its arithmetic is negligible.

Small layers (the first DCGAN layers, FCN heads, anything at batch 1) wait for
the host, not for the device: Python, the dispatcher, argument checks and
kernel launches. This times a layer so small that the device work is a few
microseconds, a loop of calls at a time, for torch_tconv and for
torch.nn.functional.conv_transpose2d, alternating, and prints the median
microseconds per call of

  forward     under torch.no_grad()
  grad fwd    a forward that records the graph (inputs require grad)
  fwd+bwd     that forward and torch.autograd.grad of all three leaves

On CUDA the loop ends with a synchronize, so a device slower than the host
would show; at this size it is not.

    python bench/host_overhead.py [--device cpu|cuda] [--out FILE]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # noqa: E402  (the in-place build of torch_tconv; imports torch after it)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch_tconv = benchmark.torch_tconv

CALLS_PER_LOOP = 200
LOOPS = 15


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def per_call_us(fn, device):
    sync(device)
    start = time.perf_counter()
    for _ in range(CALLS_PER_LOOP):
        fn()
    sync(device)
    return (time.perf_counter() - start) / CALLS_PER_LOOP * 1e6


def measurements(conv, x, w, b):
    kwargs = dict(stride=2, padding=1)
    leaves = (x, w, b)
    grad = torch.ones_like(conv(x, w, b, **kwargs))

    def forward():
        with torch.no_grad():
            conv(x, w, b, **kwargs)

    def grad_forward():
        conv(x, w, b, **kwargs)

    def forward_backward():
        torch.autograd.grad(conv(x, w, b, **kwargs), leaves, grad)

    return {"forward": forward, "grad fwd": grad_forward, "fwd+bwd": forward_backward}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = args.device
    if device == "cpu":
        torch.set_num_threads(1)  # the host path, not the thread pool's wake-up

    def leaf(*shape):
        return torch.randn(*shape, device=device).requires_grad_()

    x, w, b = leaf(1, 8, 8, 8), leaf(8, 8, 4, 4), leaf(8)
    ours = measurements(torch_tconv.conv_transpose2d, x, w, b)
    theirs = measurements(F.conv_transpose2d, x, w, b)
    lines = [f"# Host time per call, {device}, 1x8x8x8 -> 8 channels, k4 s2 p1",
             f"torch {torch.__version__}; median of {LOOPS} loops of {CALLS_PER_LOOP} calls",
             "",
             "| call | torch_tconv us | torch us | ratio |",
             "|---|---|---|---|"]
    for name in ours:
        for fn in (ours[name], theirs[name]):
            per_call_us(fn, device)  # warm-up
        samples = {"ours": [], "torch": []}
        for _ in range(LOOPS):
            samples["ours"].append(per_call_us(ours[name], device))
            samples["torch"].append(per_call_us(theirs[name], device))
        mine, ref = (statistics.median(samples[k]) for k in ("ours", "torch"))
        lines.append(f"| {name} | {mine:.1f} | {ref:.1f} | {ref / mine:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
