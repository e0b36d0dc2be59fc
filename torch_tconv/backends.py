"""Settings of torch_tconv's kernels, in the manner of torch.backends.cudnn:

    torch_tconv.backends.algorithm = "direct"
    with torch_tconv.backends.flags(algorithm="gemm", column_budget_bytes=1 << 20):
        ...  # restored on exit

    algorithm                   "auto" (the direct kernels for one input channel
                                per group, else GEMM + col2im), "gemm", "direct",
                                or "phase": implicit GEMMs with no column buffer
                                (the forward by output phase, the input gradient
                                as a strided convolution, the weight gradient
                                split along batch x positions)
    tile_variant                engine of the "phase" GEMMs: "auto" (on CUDA,
                                tensor-core tiles for float16/bfloat16 with a
                                shape chosen per GEMM; on the CPU, register-
                                blocked tiles for float32/float64, which
                                "auto" also runs for the gradients of layers
                                of 2 to 32 input channels per group and at
                                most 64 taps, and for their forwards on AMD
                                processors with AVX2 alone; scalar
                                tiles otherwise), "scalar", "blocked" (the
                                CPU's register-blocked tiles; "scalar"
                                elsewhere), or a tensor-core tile shape
                                "mma128x64", "mma64x64", "mma64x32", "mma32x16"
                                (float16/bfloat16 only; the CPU runs an
                                emulation of the CUDA kernel, for tests)
    column_budget_bytes         upper bound of one chunk's column workspace
                                (default 128 MiB; the CPU's own preference is
                                4 MiB); a sample over it runs in windows of rows
    int32_indices               32-bit index arithmetic where every tensor has
                                fewer than 2^31 elements (default True)
    cpu_row_kernels             CPU launchers run row bodies (default True) or
                                the element bodies that CUDA runs (for tests:
                                in the "base" variant whatever cpu_isa says,
                                as the emulated tensor-core tiles)
    benchmark                   when algorithm is "auto": time the algorithms
                                and tile variants at the first call of each
                                shape (op, device, dtype, sizes, settings) and
                                keep the fastest for the process, like
                                torch.backends.cudnn.benchmark (default False:
                                a rule of the shape decides, so results never
                                depend on a timing); nothing is timed while a
                                CUDA graph is being captured
    cpu_reduced_precision_gemm  "auto": float16/bfloat16 GEMMs (and so column
                                buffers) in their own dtype where oneDNN has
                                fast kernels for that dtype (AMX; for bfloat16
                                also AVX512-BF16), else in float32;
                                "always" or "never" force one
    cpu_isa                     which compiled variant of the CPU kernels runs:
                                "auto" (the one the environment variable
                                TORCH_TCONV_CPU_ISA names, else "avx2" where
                                the processor has it, "avx512" having
                                measured slower, but with AVX-512's
                                register-blocked tiles where it has those),
                                "base", "avx2" (AVX2 and FMA) or "avx512"
                                (AVX-512 F/BW/VL/DQ); all give the same bits,
                                only their speed differs, except the
                                register-blocked tiles, whose multiply-adds
                                are fused where the variant has FMA
    cpu_gemm                    the GEMM of the GEMM path's float32/float64
                                products on the CPU: "auto" (on AMD processors
                                with AVX-512, where MKL runs its AVX2 kernels:
                                the register-blocked tiles for the forward's
                                products, and for the gradients' where
                                AVX-512 runs at full width, from family 26
                                (Zen 5) on, else oneDNN's matmul for the
                                gradients' float32 ones; elsewhere ATen's),
                                "aten" (MKL/oneDNN through at::bmm),
                                "blocked" (the tiles, with fused multiply-adds
                                where the variant has FMA, and AVX-512's tiles
                                where the processor has AVX-512) or "onednn"
                                (float32 products through oneDNN's matmul,
                                torch's mkldnn::_linear_pointwise, where torch
                                has it; float64 and narrower columns: ATen's)
    cpu_huge_pages              ask Linux for transparent huge pages (madvise)
                                for CPU results of 32 MiB and more (default
                                True): malloc maps such results afresh on
                                every call, and their 4 KiB pages' first-write
                                faults cost more than a depthwise layer's
                                arithmetic (33 MiB: 11-15 ms of faults, 3 ms
                                with huge pages, on a Zen 3). A hint only: where
                                the kernel has them off ("never") or none is
                                free, nothing changes. False leaves the pages
                                as the allocator gives them (PyTorch's own
                                allocator advises them where the environment
                                sets THP_MEM_ALLOC_ENABLE=1)

The settings are process-wide. Each op takes one snapshot of all of them
when it starts, so a call in flight keeps its settings when another thread
changes them, and a change made by flags() (several settings at once) is
seen whole or not at all.

benchmark_choices() lists benchmark mode's choices so far, as (key,
algorithm, tile_variant); clear_benchmark_choices() forgets them.
supported_cpu_isas() lists the CPU variants this processor runs, and
cpu_isa_in_use() the one calls run now.
"""

import contextlib
import sys
import types

import torch

from . import _C

_NAMES = ("algorithm", "column_budget_bytes", "int32_indices", "cpu_row_kernels",
          "cpu_reduced_precision_gemm", "tile_variant", "benchmark", "cpu_isa", "cpu_gemm",
          "cpu_huge_pages")


def _set(**changes):
    unknown = set(changes) - set(_NAMES)
    if unknown:
        raise AttributeError(
            f"torch_tconv.backends has no setting {sorted(unknown)[0]!r}; the settings are "
            + ", ".join(_NAMES))
    _C.set_config(**{**_C.get_config(), **changes})


def _machine_facts():
    """Whether this CPU's bfloat16 and float16 GEMMs outrun float32 ones,
    from torch's CPU capability report (False where this torch has none):
    oneDNN's bfloat16 GEMM with AMX, or with AVX512-BF16's dot products
    (AMD Zen 5: torch.mm 610-700 GFLOP/s against 106-180 in float32), and
    its float16 GEMM with AMX-FP16 only (AVX512-FP16 alone measured 1.07x
    float32's time)."""
    report = getattr(torch._C._cpu, "_get_cpu_capability", None)
    capabilities = report() if report is not None else {}
    if not isinstance(capabilities, dict):
        capabilities = {}
    bfloat16_fast = bool(capabilities.get("amx_bf16") or capabilities.get("avx512_bf16"))
    return bfloat16_fast, bool(capabilities.get("amx_fp16"))


@contextlib.contextmanager
def flags(**settings):
    """Sets the given settings for the duration of the block, and restores
    all of them on exit (also when the block raises)."""
    previous = _C.get_config()
    _set(**settings)
    try:
        yield
    finally:
        _C.set_config(**previous)


def benchmark_choices():
    """Benchmark mode's choices: a list of (key, algorithm, tile_variant), one
    per shape key timed in this process."""
    return _C.benchmark_choices()


def clear_benchmark_choices():
    """Forgets benchmark mode's choices; each key is timed again at its next call."""
    _C.clear_benchmark_choices()


def supported_cpu_isas():
    """The compiled CPU kernel variants this processor runs, narrowest first:
    a sublist of ["base", "avx2", "avx512"]."""
    return list(_C.supported_cpu_isas())


def cpu_isa_in_use():
    """The CPU kernel variant that calls made now run: the current cpu_isa,
    with "auto" resolved."""
    return _C.cpu_isa_in_use()


def _property(name):
    return property(lambda self: _C.get_config()[name],
                    lambda self, value: _set(**{name: value}))


class _BackendsModule(types.ModuleType):
    """This module, with its settings as attributes that read and write the
    current configuration."""


for _name in _NAMES:
    setattr(_BackendsModule, _name, _property(_name))


_C.set_machine_facts(*_machine_facts())
sys.modules[__name__].__class__ = _BackendsModule
