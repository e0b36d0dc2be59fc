"""Times torch_tconv.conv_transpose1d/2d/3d against torch.nn.functional's.

For every case of a suite of layer shapes taken from real models, and every
dtype planned for it, the benchmark
  * checks our forward against torch's once (relative max-abs error),
  * times the forward alone and forward+backward, alternating ours and torch's
    call by call after a warm-up, and keeps the median of each,
  * measures the peak memory of one forward+backward of each (on the CPU,
    both what the allocator held and the resident set),
and relates the times to ceilings measured in the same run (a large GEMM for
GFLOP/s, a large copy for GB/s). Results go to DIR/<date>-<device>.{md,json,png},
or DIR/<date>-<k>-<device>.* when that day already has results there.

    python -m torch_tconv bench [--device cpu|cuda|all] [--out DIR] [--quick]
                                [--dtypes float32 ...] [--cases TEXT ...] [--repeats N]

(in a checkout, ``python bench/benchmark.py`` runs the same with DIR defaulting
to bench/results). The progress bar needs tqdm and the chart matplotlib:
``pip install 'torch_tconv[bench]'``.

ratio = torch time / our time, so a ratio above 1 means torch_tconv is faster.
See bench/NOTES.md for the method.
"""

import argparse
import contextlib
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

import torch_tconv

# Where results go when no --out is given: the working directory's
# bench-results/, never the installed package's directory.
DEFAULT_OUT = Path("bench-results")

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
# Relative forward error (max |ours - torch| / max |torch|) above which a case is WRONG.
TOLERANCE = {"float64": 1e-10, "float32": 1e-4, "bfloat16": 3e-2, "float16": 3e-2}


# --- the suite ---------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    N: int
    C_in: int
    C_out: int
    H: int
    W: int
    kernel: int
    stride: int
    padding: int
    output_padding: int
    groups: int
    dilation: int
    bias: bool = True
    # 1: a signal of length W (H unused); 3: a D x H x W volume.
    dims: int = 2
    D: int = 1
    channels_last: bool = False

    def conv_kwargs(self):
        return dict(stride=self.stride, padding=self.padding,
                    output_padding=self.output_padding, groups=self.groups,
                    dilation=self.dilation)

    def input_sizes(self):
        return {1: (self.W,), 2: (self.H, self.W), 3: (self.D, self.H, self.W)}[self.dims]

    def output_sizes(self):
        def size(n):
            return ((n - 1) * self.stride - 2 * self.padding
                    + self.dilation * (self.kernel - 1) + self.output_padding + 1)
        return tuple(size(n) for n in self.input_sizes())

    def weight_shape(self):
        return (self.C_in, self.C_out // self.groups) + (self.kernel,) * self.dims

    def functions(self):
        """(torch_tconv's functional, torch's) for this rank."""
        return ({1: torch_tconv.conv_transpose1d, 2: torch_tconv.conv_transpose2d,
                 3: torch_tconv.conv_transpose3d}[self.dims],
                {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[self.dims])

    def forward_flops(self):
        # Every input pixel multiplies one kernel slice per output channel of its group.
        return (2 * self.N * self.C_in * math.prod(self.input_sizes())
                * (self.C_out // self.groups) * self.kernel ** self.dims)

    def forward_bytes(self, element_size):
        # A lower bound: each of input, weight and output crosses memory once.
        elements = (self.N * self.C_in * math.prod(self.input_sizes())
                    + math.prod(self.weight_shape())
                    + self.N * self.C_out * math.prod(self.output_sizes()))
        return elements * element_size


SUITE = [
    # DCGAN generator, batch 64, k4 s2 p1.
    Case("dcgan-512to256-4x4", 64, 512, 256, 4, 4, 4, 2, 1, 0, 1, 1),
    Case("dcgan-256to128-8x8", 64, 256, 128, 8, 8, 4, 2, 1, 0, 1, 1),
    Case("dcgan-128to64-16x16", 64, 128, 64, 16, 16, 4, 2, 1, 0, 1, 1),
    Case("dcgan-64to3-32x32", 64, 64, 3, 32, 32, 4, 2, 1, 0, 1, 1),
    # U-Net up-convolutions, batch 8, k2 s2 p0.
    Case("unet-512to256-32x32", 8, 512, 256, 32, 32, 2, 2, 0, 0, 1, 1),
    Case("unet-256to128-64x64", 8, 256, 128, 64, 64, 2, 2, 0, 0, 1, 1),
    # FCN score upsamplers over the 21 VOC classes, batch 4.
    Case("fcn-k4s2-32x32", 4, 21, 21, 32, 32, 4, 2, 1, 0, 1, 1),
    Case("fcn-k16s8-16x16", 4, 21, 21, 16, 16, 16, 8, 4, 0, 1, 1),
    # Decoder layer with output_padding, batch 16.
    Case("decoder-k3s2op1-32x32", 16, 128, 64, 32, 32, 3, 2, 1, 1, 1, 1),
    # Grouped and depthwise, batch 16, k4 s2 p1.
    Case("grouped-g8-32x32", 16, 128, 128, 32, 32, 4, 2, 1, 0, 8, 1),
    Case("depthwise-g128-32x32", 16, 128, 128, 32, 32, 4, 2, 1, 0, 128, 1),
    # One large image, mostly a memory check.
    Case("large-64to32-512x512", 1, 64, 32, 512, 512, 4, 2, 1, 0, 1, 1),
    # A HiFi-GAN vocoder upsampler (k16 s8) on 8192 frames, batch 4.
    Case("vocoder-1d-512to256-k16s8", 4, 512, 256, 1, 8192, 16, 8, 4, 0, 1, 1, dims=1),
    # A 3-D medical U-Net up-convolution (k2 s2) on a 32^3 volume, batch 2.
    Case("unet3d-128to64-32cubed", 2, 128, 64, 32, 32, 2, 2, 0, 0, 1, 1, dims=3, D=32),
    # Channels-last input: the U-Net and decoder layers again.
    Case("unet-256to128-64x64-nhwc", 8, 256, 128, 64, 64, 2, 2, 0, 0, 1, 1, channels_last=True),
    Case("decoder-k3s2op1-32x32-nhwc", 16, 128, 64, 32, 32, 3, 2, 1, 1, 1, 1,
         channels_last=True),
    # The grouped layer at the small batches of inference and fine-tuning.
    Case("grouped-g8-32x32-b8", 8, 128, 128, 32, 32, 4, 2, 1, 0, 8, 1),
    Case("grouped-g8-32x32-b2", 2, 128, 128, 32, 32, 4, 2, 1, 0, 8, 1),
    # A VAE decoder's upsampling stack (k4 s2 p1, then k3 s2 p1 op1 at full size).
    Case("vae-512to256-16x16", 8, 512, 256, 16, 16, 4, 2, 1, 0, 1, 1),
    Case("vae-256to128-32x32", 8, 256, 128, 32, 32, 4, 2, 1, 0, 1, 1),
    Case("vae-128to64-k3s2op1-64x64", 4, 128, 64, 64, 64, 3, 2, 1, 1, 1, 1),
    # A super-resolution head: 4x upsampling to RGB in one layer (k8 s4 p2).
    Case("sr-head-64to3-k8s4-64x64", 4, 64, 3, 64, 64, 8, 4, 2, 0, 1, 1),
    # Audio inference at batch 1, where one row is a whole signal: a codec
    # decoder's last upsampler (k4 s2) on 4 s of 24 kHz audio, and a learned 8x
    # interpolation (k16 s8) of a one-channel signal.
    Case("codec-1d-64to32-k4s2-b1", 1, 64, 32, 1, 48000, 4, 2, 1, 0, 1, 1, dims=1),
    Case("interp-1d-1ch-k16s8-b1", 1, 1, 1, 1, 262144, 16, 8, 4, 0, 1, 1, dims=1),
]
# Cases also run in float64 (and in bfloat16 on the CPU, where every case in
# every extra dtype would make a full run too long).
EXTRA_DTYPE_CASES = {"dcgan-256to128-8x8", "unet-256to128-64x64",
                     "decoder-k3s2op1-32x32", "depthwise-g128-32x32"}
# Cases run in float32 only, on every device: the later additions, which keep
# a full run's time (and the GPU check's benchmark stage) within bounds.
FLOAT32_ONLY_CASES = {"grouped-g8-32x32-b8", "grouped-g8-32x32-b2", "vae-512to256-16x16",
                      "vae-256to128-32x32", "vae-128to64-k3s2op1-64x64",
                      "sr-head-64to3-k8s4-64x64", "codec-1d-64to32-k4s2-b1",
                      "interp-1d-1ch-k16s8-b1"}
QUICK_CASES = {"fcn-k4s2-32x32", "dcgan-64to3-32x32", "decoder-k3s2op1-32x32"}


def planned_dtypes(case, device):
    if case.name in FLOAT32_ONLY_CASES:
        return ["float32"]
    if device == "cuda":
        every_case = ["float32", "float16", "bfloat16"]
        subset = ["float64"]
    else:
        every_case = ["float32"]
        subset = ["float64", "bfloat16"]
    return every_case + (subset if case.name in EXTRA_DTYPE_CASES else [])


# --- timing --------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """How many calls to time. Repeats adapt to the case so that slow cases
    stay within budget and fast ones still get many samples."""
    warmup_rounds: int
    target_s: float  # wall time aimed at per measurement, ours and torch's together
    min_repeats: int
    max_repeats: int
    fixed_repeats: int = 0  # from --repeats; overrides the adaptive count

    def repeats_for(self, pair_s):
        if self.fixed_repeats:
            return self.fixed_repeats
        wanted = math.ceil(self.target_s / max(pair_s, 1e-9))
        return max(self.min_repeats, min(self.max_repeats, wanted))


def make_policy(device, quick, fixed_repeats):
    if device == "cuda":
        # GPU calls take micro- to milliseconds: many samples are cheap.
        policy = (Policy(2, 0.05, 5, 10) if quick else Policy(5, 0.25, 10, 50))
    else:
        # Tuned so a full run on a 2-core machine stays near 5-10 minutes.
        policy = Policy(1, 0.3, 3, 5) if quick else Policy(2, 1.0, 3, 30)
    return Policy(policy.warmup_rounds, policy.target_s, policy.min_repeats,
                  policy.max_repeats, fixed_repeats or 0)


class CpuTimer:
    def __call__(self, fn, *args):
        """Milliseconds taken by fn(*args)."""
        start = time.perf_counter()
        fn(*args)
        return (time.perf_counter() - start) * 1e3


class CudaTimer:
    def __init__(self):
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn, *args):
        """Milliseconds of GPU time between fn(*args) being entered and left."""
        torch.cuda.synchronize()
        self.start.record()
        fn(*args)
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end)


def time_alternating(timer, ours, reference, input_sets, policy):
    """Median milliseconds of ours and of reference, called alternately.

    Call number c uses input set c % len(input_sets); with an odd number of
    sets neither side always gets the buffers the other has just pulled into
    cache, and no call reuses the previous call's buffers."""
    call = 0

    def timed(fn):
        nonlocal call
        ms = timer(fn, input_sets[call % len(input_sets)])
        call += 1
        return ms

    pair_ms = 0.0
    for round_number in range(policy.warmup_rounds):
        pair_ms = timed(ours) + timed(reference)
        # The first round can carry one-time costs (lazy library loading, cuDNN
        # handles), so only a later round that is slow on its own cuts warm-up
        # short, which keeps slow cases within budget.
        if round_number >= 1 and pair_ms / 1e3 > policy.target_s:
            break
    repeats = policy.repeats_for(pair_ms / 1e3)
    ours_ms, reference_ms = [], []
    for _ in range(repeats):
        ours_ms.append(timed(ours))
        reference_ms.append(timed(reference))
    return statistics.median(ours_ms), statistics.median(reference_ms), repeats


# --- inputs and the two measured functions ---------------------------------------

@dataclass
class InputSet:
    x: torch.Tensor
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    grad_out: torch.Tensor

    def leaves(self):
        return (self.x, self.weight) + ((self.bias,) if self.bias is not None else ())


def make_input_set(case, dtype, device):
    def leaf(*shape, layout=torch.contiguous_format):
        t = torch.randn(*shape, dtype=dtype, device=device)
        return t.contiguous(memory_format=layout).requires_grad_()

    layout = ({2: torch.channels_last, 3: torch.channels_last_3d}[case.dims]
              if case.channels_last else torch.contiguous_format)
    grad_out = torch.randn(case.N, case.C_out, *case.output_sizes(), dtype=dtype, device=device)
    return InputSet(
        x=leaf(case.N, case.C_in, *case.input_sizes(), layout=layout),
        weight=leaf(*case.weight_shape()),
        bias=leaf(case.C_out) if case.bias else None,
        grad_out=grad_out.contiguous(memory_format=layout),
    )


def forward_fn(conv, case):
    kwargs = case.conv_kwargs()

    def run(s):
        with torch.no_grad():
            conv(s.x, s.weight, s.bias, **kwargs)
    return run


def forward_backward_fn(conv, case):
    kwargs = case.conv_kwargs()

    def run(s):
        out = conv(s.x, s.weight, s.bias, **kwargs)
        # autograd.grad rather than backward(): the same gradients, but nothing
        # accumulates into .grad across repeats, so nothing needs clearing.
        torch.autograd.grad(out, s.leaves(), s.grad_out)
    return run


def forward_error(case, s):
    """Relative max-abs difference of our forward from torch's."""
    conv, reference_conv = case.functions()
    with torch.no_grad():
        ours = conv(s.x, s.weight, s.bias, **case.conv_kwargs())
        reference = reference_conv(s.x, s.weight, s.bias, **case.conv_kwargs())
    if ours.shape != reference.shape:
        raise RuntimeError(f"output shape {tuple(ours.shape)}, torch's {tuple(reference.shape)}")
    diff = (ours.double() - reference.double()).abs().max().item()
    scale = reference.double().abs().max().item()
    return diff / scale if scale > 0 else diff


# --- peak memory -----------------------------------------------------------------

def cuda_peak_mb(fn, s):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn(s)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE_SIZE


def _release_free_heap():
    # Memory freed by earlier cases can stay resident in malloc's heap and be
    # reused without raising RSS; handing it back first makes the increase
    # reflect what this call needs.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_peak_mb(fn, s):
    """Peak RSS increase during fn(s), sampled every ~1 ms by a thread.
    Allocations that live shorter than a sample interval can be missed."""
    if not os.path.exists("/proc/self/statm"):
        return None
    gc.collect()
    _release_free_heap()
    before = _rss_bytes()
    peak = before
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn(s)
    finally:
        done.set()
        sampler.join()
    return (max(peak, _rss_bytes()) - before) / 2**20


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 sent to /dev/null: the profiler's library logs its
    start and stop there (and, on a machine without a GPU, a failed device
    count), two lines per case that would bury the progress bar. fn has
    already run once in the timings, so nothing of its own is lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_allocated_peak_mb(fn, s):
    """Peak increase of the bytes held through PyTorch's CPU allocator during
    fn(s), from the profiler's allocation and free events in time order: what
    CUDA's max_memory_allocated measures, the tensors alone. Unlike RSS it
    does not depend on where malloc places blocks in its heap, which earlier
    cases shape (the same case's RSS peak moved from 48.8 MB in a full run to
    28.3 in a process of its own). Memory that bypasses the allocator (a
    BLAS's own buffers, std::vector) is not seen; the RSS column sees it."""
    from torch.profiler import ProfilerActivity, profile
    gc.collect()
    with _stderr_silenced(), profile(activities=[ProfilerActivity.CPU],
                                     profile_memory=True) as prof:
        fn(s)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak / 2**20


# --- ceilings ------------------------------------------------------------------------

def gemm_gflops(device, dtype, n, timer, repeats):
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    c = torch.empty(n, n, dtype=dtype, device=device)
    for _ in range(2):
        torch.mm(a, b, out=c)
    ms = statistics.median(timer(lambda: torch.mm(a, b, out=c)) for _ in range(repeats))
    return 2 * n**3 / (ms / 1e3) / 1e9


def blocked_gemm_gflops(dtype, n, timer, repeats):
    """GFLOP/s of torch_tconv's own CPU GEMM (cpu_gemm "blocked"), n^3."""
    a = torch.randn(1, n, n, dtype=dtype)
    b = torch.randn(1, n, n, dtype=dtype)
    c = torch.empty(1, n, n, dtype=dtype)
    for _ in range(2):
        torch_tconv._C.blocked_gemm(a, b, c, False)
    ms = statistics.median(timer(lambda: torch_tconv._C.blocked_gemm(a, b, c, False))
                           for _ in range(repeats))
    return 2 * n**3 / (ms / 1e3) / 1e9


def reduced_gemm_usable(name, timer):
    """Whether torch.mm in a reduced-precision dtype is fast enough on this CPU
    to time at full size: with oneDNN's AMX/AVX512-BF16 kernels it beats
    float32, in builds without them it runs at a fraction of a GFLOP/s (a
    2048^3 product would take a minute)."""
    small = gemm_gflops("cpu", DTYPES[name], 256, timer, 3)
    return small > gemm_gflops("cpu", torch.float32, 256, timer, 3) / 4


def measure_ceilings(device, dtype_names, timer, quick):
    """GFLOP/s of a large torch.mm per dtype, with how it was obtained. On
    the CPU, float16/bfloat16 take the faster of their own torch.mm and
    float32's: the float32 GEMM is what a layer can fall back to; and
    float32/float64 take torch_tconv's own GEMM where it is faster and the
    library runs it (cpu_gemm "auto" on AMD processors with AVX-512), so
    that the ceiling is the best GEMM on the machine, not MKL's."""
    repeats = 3 if quick else (10 if device == "cuda" else 5)
    n = 8192 if device == "cuda" else 2048
    measured, ceilings = {}, {}

    def gflops(name):
        if name not in measured:
            measured[name] = gemm_gflops(device, DTYPES[name], n, timer, repeats)
        return measured[name]

    for name in dtype_names:
        candidates = [name]
        if device == "cpu" and name in ("bfloat16", "float16"):
            candidates = ["float32"] + ([name] if reduced_gemm_usable(name, timer) else [])
        best = max(candidates, key=gflops)
        source = f"torch.mm {best} {n}x{n}x{n}"
        if best != name:
            source += f" (stands in for {name}: faster than {name} torch.mm on this CPU)"
        ceilings[name] = {"gflops": gflops(best), "source": source}
        if (device == "cpu" and name in ("float32", "float64")
                and torch_tconv._C.blocked_gemm_preferred(n, n, n)):
            own = blocked_gemm_gflops(DTYPES[name], n, timer, repeats)
            if own > ceilings[name]["gflops"]:
                ceilings[name] = {"gflops": own, "source": (
                    f"torch_tconv's blocked GEMM {name} {n}x{n}x{n}, which this library's GEMMs "
                    f"run on this CPU (torch.mm: {gflops(best):.1f} GFLOP/s)")}
    return ceilings


def last_level_cache_bytes():
    """The largest CPU cache's size from sysfs (Linux), or None."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        match = re.fullmatch(r"(\d+)([KMG]?)", path.read_text().strip())
        if match:
            sizes.append(int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20,
                                                 "G": 2**30}[match.group(2)])
    return max(sizes) if sizes else None


def copy_bandwidth(device, timer, quick):
    """(GB/s, description) of a large tensor copy, counting bytes read plus
    written: the memory-bandwidth ceiling of the GB/s columns. On CUDA a 1 GiB
    device-to-device copy; on the CPU torch's (multi-threaded) copy_ of at
    least 1 GiB, and of at least twice the last-level cache so that source
    and destination together are 4x the cache and the copy runs from DRAM.
    --quick copies 256 MiB: a smoke test, on the CPU not a DRAM figure."""
    repeats = 5 if quick else (20 if device == "cuda" else 10)
    nbytes = 2**30
    if device == "cpu":
        cache = last_level_cache_bytes() or 0
        nbytes = min(max(nbytes, 2 * cache), 4 * 2**30)
    if quick:
        nbytes = 2**28
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch of dst's pages, and warm-up
    ms = statistics.median(timer(dst.copy_, src) for _ in range(repeats))
    gbs = 2 * nbytes / (ms / 1e3) / 1e9
    what = "device-to-device" if device == "cuda" else "host memory"
    source = (f"{what} copy of {nbytes / 2**30:.3g} GiB (torch copy_), bytes read + written, "
              f"median of {repeats}")
    if device == "cpu":
        source += (f"; last-level cache {cache / 2**20:.0f} MiB" if cache
                   else "; last-level cache size unknown")
    del src, dst
    return gbs, source


# --- one device -------------------------------------------------------------------------

def cpu_info():
    """(model name, ISA extensions) of this machine's CPU, from /proc/cpuinfo
    where there is one: the extensions that decide which CPU kernels torch
    (oneDNN, MKL) can use."""
    cpu_model, isa = platform.processor() or "unknown", []
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            text = f.read()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if match:
            cpu_model = match.group(1).strip()
        match = re.search(r"^flags\s*:(.*)$", text, re.M)
        flags = set(match.group(1).split()) if match else set()
        isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16",
                           "amx_tile", "amx_bf16") if f in flags]
    return cpu_model, isa


def cpu_microarchitecture():
    """The CPU's microarchitecture as archspec (Spack's CPU detection) names
    it, e.g. "zen3", "zen5" or "sapphirerapids": the model name alone does
    not tell them apart (an "AMD EPYC" may be a Zen 3 or a Zen 5). None where
    archspec is not installed (the bench extra) or cannot tell."""
    try:
        import archspec.cpu
    except ImportError:
        return None
    try:
        return archspec.cpu.host().name
    except Exception:  # a label must not stop a benchmark: archspec parses /proc/cpuinfo
        return None


def transparent_huge_pages():
    """The kernel's transparent-huge-page mode ("always", "madvise" or
    "never"; None off Linux): with "madvise", large CPU results get huge
    pages only where they are advised (backends.cpu_huge_pages for ours,
    THP_MEM_ALLOC_ENABLE=1 for PyTorch's allocations), and the first write
    of a fresh result costs several times less."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return None
    match = re.search(r"\[(\w+)\]", text)
    return match.group(1) if match else None


def machine_info(device, label, policy):
    cpu_model, isa = cpu_info()
    info = {
        "date": datetime.date.today().isoformat(),
        "device": label,
        "cpu_model": cpu_model,
        "cpu_microarchitecture": cpu_microarchitecture(),
        "cpu_isa": isa,
        "cpu_count": os.cpu_count(),
        "cpu_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "torch_tconv": torch_tconv.__version__,
        "policy": asdict(policy),
    }
    if device == "cpu":
        info.update({
            "transparent_huge_pages": transparent_huge_pages(),
            "cpu_huge_pages": torch_tconv.backends.cpu_huge_pages,
            "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE"),
        })
    if device == "cuda":
        info.update({
            "gpu": torch.cuda.get_device_name(),
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
        })
    return info


def device_label(device):
    if device == "cpu":
        return "cpu"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"cuda-{torch.cuda.get_device_name()}").strip("-")


def derived_metrics(times_ms, flops, bytes_moved, ceiling_gflops, bandwidth_gbs):
    ours_ms, torch_ms = times_ms
    metrics = {"ours_ms": ours_ms, "torch_ms": torch_ms, "ratio": torch_ms / ours_ms,
               "bytes": bytes_moved}
    for who, ms in (("ours", ours_ms), ("torch", torch_ms)):
        gflops = flops / (ms / 1e3) / 1e9
        metrics[f"{who}_gflops"] = gflops
        metrics[f"{who}_gemm_fraction"] = gflops / ceiling_gflops
        if bandwidth_gbs is not None:
            gbs = bytes_moved / (ms / 1e3) / 1e9
            metrics[f"{who}_gbs"] = gbs
            metrics[f"{who}_bandwidth_fraction"] = gbs / bandwidth_gbs
    return metrics


def run_case(case, dtype_name, device, timer, policy, ceilings, bandwidth_gbs):
    dtype = DTYPES[dtype_name]
    result = {"case": case.name, "dtype": dtype_name, **asdict(case)}
    del result["name"]
    try:
        input_sets = [make_input_set(case, dtype, device) for _ in range(3)]
        error = forward_error(case, input_sets[0])
        # A NaN or inf error is stored as None (JSON has no NaN) and is WRONG.
        finite = math.isfinite(error)
        result.update(rel_err=error if finite else None, tolerance=TOLERANCE[dtype_name],
                      status="ok" if finite and error <= TOLERANCE[dtype_name] else "WRONG")

        ceiling = ceilings[dtype_name]["gflops"]
        fwd_bytes = case.forward_bytes(dtype.itemsize)
        flops = case.forward_flops()
        conv, reference_conv = case.functions()
        fwd = time_alternating(timer, forward_fn(conv, case),
                               forward_fn(reference_conv, case), input_sets, policy)
        result["fwd"] = {**derived_metrics(fwd[:2], flops, fwd_bytes, ceiling, bandwidth_gbs),
                         "repeats": fwd[2]}
        ours_fb = forward_backward_fn(conv, case)
        torch_fb = forward_backward_fn(reference_conv, case)
        fb = time_alternating(timer, ours_fb, torch_fb, input_sets, policy)
        # The input and weight gradients each cost, and move, what the forward does.
        result["fwd_bwd"] = {**derived_metrics(fb[:2], 3 * flops, 3 * fwd_bytes, ceiling,
                                               bandwidth_gbs),
                             "repeats": fb[2]}

        peak_mb = cuda_peak_mb if device == "cuda" else cpu_allocated_peak_mb
        result["peak_mb"] = {"ours": peak_mb(ours_fb, input_sets[0]),
                             "torch": peak_mb(torch_fb, input_sets[0])}
        if device == "cpu":
            result["peak_rss_mb"] = {"ours": cpu_peak_mb(ours_fb, input_sets[0]),
                                     "torch": cpu_peak_mb(torch_fb, input_sets[0])}
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        # One failing case (an unsupported dtype, out of memory) should not
        # cost the rest of the run.
        result.update(status="ERROR", error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        if device == "cuda":
            torch.cuda.empty_cache()
    return result


def run_device(device, args):
    policy = make_policy(device, args.quick, args.repeats)
    if device == "cuda":
        # Both sides in full fp32: TF32 would trade accuracy for speed in
        # torch's kernels only.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        timer = CudaTimer()
    else:
        timer = CpuTimer()

    plan = [(case, dtype) for case in SUITE
            if not args.quick or case.name in QUICK_CASES
            if not args.cases or any(part in case.name for part in args.cases)
            for dtype in planned_dtypes(case, device)
            if not args.dtypes or dtype in args.dtypes]
    if not plan:
        warnings.warn(f"{device}: nothing to run for dtypes {args.dtypes}, cases {args.cases}")
        return

    label = device_label(device)
    info = machine_info(device, label, policy)
    dtype_names = sorted({dtype for _, dtype in plan}, key=list(DTYPES).index)
    print(f"[{label}] measuring ceilings ...", flush=True)
    info["ceilings"] = measure_ceilings(device, dtype_names, timer, args.quick)
    print(f"[{label}] measuring memory bandwidth ...", flush=True)
    bandwidth, bandwidth_source = copy_bandwidth(device, timer, args.quick)
    info["copy_bandwidth_gbs"] = bandwidth
    info["copy_bandwidth_source"] = bandwidth_source

    torch.manual_seed(0)
    results = []
    progress = progress_bar(plan, desc=label, unit="case")
    for case, dtype in progress:
        progress.set_postfix_str(f"{case.name} {dtype}")
        results.append(run_case(case, dtype, device, timer, policy, info["ceilings"], bandwidth))
    progress.close()

    table = results_table(results, bandwidth is not None)
    print()
    print("\n".join(table))
    write_outputs(Path(args.out), info, results, table)


# --- reporting -----------------------------------------------------------------------------

def _pair(metrics, key, fmt):
    return f"{metrics['ours_' + key]:{fmt}} / {metrics['torch_' + key]:{fmt}}"


def _percent_pair(metrics, key):
    return f"{100 * metrics['ours_' + key]:.1f} / {100 * metrics['torch_' + key]:.1f}"


def results_table(results, with_bandwidth):
    header = ["case", "dtype", "rel err", "fwd ms ours / torch", "fwd ratio",
              "fwd+bwd ms ours / torch", "fwd+bwd ratio",
              "fwd GFLOP/s ours / torch", "fwd % GEMM ours / torch",
              "fwd+bwd GFLOP/s ours / torch", "fwd+bwd % GEMM ours / torch"]
    if with_bandwidth:
        header += ["fwd MB moved", "fwd GB/s ours / torch", "fwd % copy BW ours / torch"]
    header += ["peak MB ours / torch"]
    with_rss = any("peak_rss_mb" in r for r in results)
    if with_rss:
        header += ["peak RSS MB ours / torch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        if r["status"] == "ERROR":
            cells = [r["case"], r["dtype"], "**ERROR**", r["error"]] + [""] * (len(header) - 4)
        else:
            fwd, fb = r["fwd"], r["fwd_bwd"]
            error = "non-finite" if r["rel_err"] is None else f"{r['rel_err']:.1e}"
            cells = [r["case"], r["dtype"],
                     f"**WRONG** {error}" if r["status"] == "WRONG" else error,
                     _pair(fwd, "ms", ".3g"), f"{fwd['ratio']:.2f}",
                     _pair(fb, "ms", ".3g"), f"{fb['ratio']:.2f}",
                     _pair(fwd, "gflops", ".1f"),
                     _percent_pair(fwd, "gemm_fraction"),
                     _pair(fb, "gflops", ".1f"),
                     _percent_pair(fb, "gemm_fraction")]
            if with_bandwidth:
                cells += [f"{fwd['bytes'] / 1e6:.1f}", _pair(fwd, "gbs", ".1f"),
                          f"{100 * fwd['ours_bandwidth_fraction']:.1f} / "
                          f"{100 * fwd['torch_bandwidth_fraction']:.1f}"]
            for key in ("peak_mb", "peak_rss_mb") if with_rss else ("peak_mb",):
                peak = r.get(key, {"ours": None})
                cells.append("n/a" if peak["ours"] is None
                             else f"{peak['ours']:.1f} / {peak['torch']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def geomean(values):
    return math.exp(statistics.fmean(math.log(v) for v in values))


def summary_lines(results):
    lines = ["| dtype | cases | geomean fwd ratio | geomean fwd+bwd ratio "
             "| min ratio (case, measurement) |",
             "|---|---|---|---|---|"]
    for dtype in DTYPES:
        # WRONG cases are left out: the speed of a wrong answer means nothing.
        valid = [r for r in results if r["dtype"] == dtype and r["status"] == "ok"]
        if not valid:
            continue
        worst = min(((r[m]["ratio"], r["case"], m) for r in valid for m in ("fwd", "fwd_bwd")))
        lines.append(f"| {dtype} | {len(valid)} | "
                     f"{geomean(r['fwd']['ratio'] for r in valid):.2f} | "
                     f"{geomean(r['fwd_bwd']['ratio'] for r in valid):.2f} | "
                     f"{worst[0]:.2f} ({worst[1]}, {worst[2].replace('_', '+')}) |")
    lines.append("")
    wrong = [r for r in results if r["status"] == "WRONG"]
    failed = [r for r in results if r["status"] == "ERROR"]
    if not wrong and not failed:
        lines.append("All cases match torch's forward within tolerance.")
    for r in wrong:
        error = "non-finite" if r["rel_err"] is None else f"{r['rel_err']:.2e}"
        lines.append(f"- **WRONG**: {r['case']} {r['dtype']}: relative error {error} "
                     f"> tolerance {r['tolerance']:.0e} (left out of the geomeans)")
    for r in failed:
        lines.append(f"- **ERROR**: {r['case']} {r['dtype']}: {r['error']}")
    return lines


def results_stem(out_dir, date, device):
    """DIR/<date>-<device>, or for a later run of the same day the first free
    DIR/<date>-<k>-<device>: a run never overwrites an earlier one's files."""
    stem, k = out_dir / f"{date}-{device}", 0
    while any(Path(f"{stem}.{ext}").exists() for ext in ("md", "json", "png")):
        k += 1
        stem = out_dir / f"{date}-{k}-{device}"
    return stem


def write_outputs(out_dir, info, results, table):
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = results_stem(out_dir, info["date"], info["device"])
    with open(f"{stem}.json", "w") as f:
        json.dump({"machine": info, "results": results}, f, indent=2)
    chart = write_chart(Path(f"{stem}.png"), info, results)

    ceilings = [f"- {dtype}: {c['gflops']:.1f} GFLOP/s ({c['source']})"
                for dtype, c in info["ceilings"].items()]
    if info.get("copy_bandwidth_gbs") is not None:
        ceilings.append(f"- memory bandwidth: {info['copy_bandwidth_gbs']:.1f} GB/s "
                        f"({info['copy_bandwidth_source']})")
    skip = {"date", "device", "ceilings", "copy_bandwidth_gbs", "copy_bandwidth_source", "policy"}
    machine = [f"- {key}: {value}" for key, value in info.items() if key not in skip]
    policy = info["policy"]
    text = [
        f"# torch_tconv benchmark: {info['device']}, {info['date']}",
        "",
        "ratio = torch time / torch_tconv time (> 1: torch_tconv is faster). "
        "Medians of alternating calls; GFLOP/s count 2 FLOPs per multiply-add, "
        "fwd+bwd = 3x the forward; % GEMM is relative to the ceiling of the same dtype below. "
        "MB moved is a lower bound (input, weight and output once each); "
        "% copy BW is its GB/s relative to the memory-bandwidth ceiling below.",
        "",
        "## Summary",
        "",
        *summary_lines(results),
        "",
        "## Machine",
        "",
        *machine,
        f"- timing: {policy['warmup_rounds']} warm-up rounds; "
        + (f"{policy['fixed_repeats']} repeats" if policy["fixed_repeats"] else
           f"repeats adapted to ~{policy['target_s']} s per measurement, "
           f"between {policy['min_repeats']} and {policy['max_repeats']}"),
        "",
        "## Ceilings",
        "",
        *ceilings,
        "",
        "## Results",
        "",
        *table,
        "",
    ]
    if chart:
        text += [f"![ratio per case]({chart.name})", ""]
    with open(f"{stem}.md", "w") as f:
        f.write("\n".join(text))
    print(f"\nwrote {stem}.md, {stem}.json" + (f", {chart}" if chart else ""))


def write_chart(path, info, results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        warnings.warn("matplotlib is not installed; skipping the chart: "
                      + MISSING_EXTRA.format(name="matplotlib"))
        return None

    timed = [r for r in results if r["status"] != "ERROR"]
    if not timed:
        return None
    # One row per dtype keeps the chart readable when a GPU run has ~40 entries.
    rows = [[r for r in timed if r["dtype"] == dtype] for dtype in DTYPES]
    rows = [row for row in rows if row]
    every_ratio = [r[m]["ratio"] for r in timed for m in ("fwd", "fwd_bwd")]
    # Never narrower than 0.8..1.25, so ratios near 1 don't look dramatic.
    low, high = min(every_ratio + [0.8]) / 1.2, max(every_ratio + [1.25]) * 1.2
    # 0.8 and 1.25 only where the range is narrow enough for them not to crowd 1.
    fine_ticks = (0.8, 1.25) if high / low < 4 else ()
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) + fine_ticks
             if low <= t <= high]
    width = 0.4
    widest = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), 1, squeeze=False,
                             figsize=(max(6.0, 0.6 * widest + 2), 4.2 * len(rows)))
    for ax, row in zip(axes[:, 0], rows):
        measurements = (("fwd", "forward"), ("fwd_bwd", "forward+backward"))
        for offset, (measurement, name) in zip((-width / 2, width / 2), measurements):
            # Bars grow from 1.0, so slower than torch points down and faster up.
            ax.bar([i + offset for i in range(len(row))],
                   [r[measurement]["ratio"] - 1 for r in row], width, bottom=1.0, label=name)
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_yscale("log")
        ax.set_ylim(low, high)
        ax.set_yticks(ticks)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(-0.5, widest - 0.5)
        ax.set_xticks(range(len(row)))
        ax.set_xticklabels([r["case"] + (" (WRONG)" if r["status"] == "WRONG" else "")
                            for r in row], rotation=45, ha="right", fontsize=8)
        ax.set_title(row[0]["dtype"], fontsize=10)
        ax.set_ylabel("torch time / our time")
        ax.legend(fontsize=8)
    fig.suptitle(f"torch_tconv vs torch: {info['device']}, {info['date']} "
                 "(> 1: torch_tconv faster)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- entry point ---------------------------------------------------------------------

MISSING_EXTRA = "pip install 'torch_tconv[bench]' (or pip install {name})"


def _tqdm():
    """tqdm's progress bar class; tqdm is an optional dependency (the bench extra)."""
    try:
        from tqdm import tqdm
    except ImportError:
        sys.exit("torch_tconv bench: the benchmark's progress display needs tqdm, which is not "
                 "installed: " + MISSING_EXTRA.format(name="tqdm"))
    return tqdm


def progress_bar(iterable, **kwargs):
    return _tqdm()(iterable, **kwargs)


def add_arguments(parser, default_out=DEFAULT_OUT):
    """The benchmark's options, on parser (its own, or the CLI's subcommand)."""
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="all: the CPU, and CUDA when available (default)")
    parser.add_argument("--out", default=str(default_out),
                        help="directory for the .md, .json and .png results "
                             f"(default {default_out})")
    parser.add_argument("--quick", action="store_true",
                        help="a few small cases with few repeats: a smoke test, not a measurement")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES),
                        help="run only these of each case's planned dtypes")
    parser.add_argument("--cases", nargs="+", metavar="TEXT",
                        help="run only the cases whose name contains one of these "
                             "(names: " + ", ".join(case.name for case in SUITE) + ")")
    parser.add_argument("--repeats", type=int,
                        help="fixed number of timed calls per side instead of the adaptive count")
    return parser


def check_arguments(parser, args):
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")


def parse_args(argv=None, default_out=DEFAULT_OUT):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, default_out)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return args


def run(args):
    """Runs the benchmark for parsed arguments (add_arguments' options)."""
    _tqdm()  # fail before measuring anything, not after the ceilings
    cuda_usable = torch.cuda.is_available() and torch_tconv.has_cuda_kernels()
    if args.device == "cuda" and not cuda_usable:
        sys.exit("CUDA requested, but " + ("torch sees no GPU" if not torch.cuda.is_available()
                                           else "this torch_tconv build has no CUDA kernels"))
    if args.device == "all" and torch.cuda.is_available() and not cuda_usable:
        warnings.warn("a GPU is present but this torch_tconv build has no CUDA kernels; CPU only")
    devices = {"cpu": ["cpu"], "cuda": ["cuda"],
               "all": ["cpu", "cuda"] if cuda_usable else ["cpu"]}[args.device]
    for device in devices:
        run_device(device, args)


def main(argv=None, default_out=DEFAULT_OUT):
    run(parse_args(argv, default_out))


if __name__ == "__main__":
    main()
