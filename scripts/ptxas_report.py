#!/usr/bin/env python
"""Registers and spills of the implicit-GEMM kernels, from ptxas.

Compiles csrc/cuda/implicit_gemm_launchers.cu alone for one architecture
with `-Xptxas -v` (the flags of the extension's build), prints one line per
kernel (registers, spill stores/loads, shared memory), and fails when a hot
kernel spills: the tensor-core kernels with 32-bit indices, which every
problem under 2^31 elements per tensor runs.

    python scripts/ptxas_report.py [--arch 90] [--out FILE]
"""

import argparse
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import torch
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "csrc" / "cuda" / "implicit_gemm_launchers.cu"


def compile_verbose(arch):
    nvcc = Path(cpp_extension.CUDA_HOME or "/usr/local/cuda") / "bin" / "nvcc"
    includes = [f"-I{p}" for p in cpp_extension.include_paths(device_type="cuda")]
    includes += [f"-I{ROOT / 'csrc'}", f"-I{sysconfig.get_paths()['include']}"]
    with tempfile.TemporaryDirectory() as tmp:
        command = [str(nvcc), "-c", str(SOURCE), "-o", os.path.join(tmp, "k.o"), *includes,
                   "-DTORCH_TCONV_WITH_CUDA=1", "-DTORCH_API_INCLUDE_EXTENSION_H",
                   "-DTORCH_EXTENSION_NAME=_C", "-D__CUDA_NO_HALF_OPERATORS__",
                   "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
                   "-D__CUDA_NO_HALF2_OPERATORS__", "--expt-relaxed-constexpr", "-O3",
                   "-std=c++20", "-Xcompiler", "-fPIC",
                   f"-gencode=arch=compute_{arch},code=sm_{arch}", "-Xptxas", "-v"]
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"nvcc failed:\n{done.stderr[-4000:]}")
    return done.stderr


def short_name(mangled):
    name = subprocess.run(["c++filt"], input=mangled, capture_output=True, text=True).stdout.strip()
    name = name.replace("(anonymous namespace)::", "").replace("torch_tconv::", "")
    name = name.replace("cuda::", "").replace("c10::", "")
    name = re.sub(r"\(.*", "", name)
    name = re.sub(r"MmaTileShape<(\d+), (\d+), \d+, \d+>", r"\1x\2", name)
    return re.sub(r"(\w+Gemm)<([^,<>]+), (int|long)>", r"\1<\2, \3>", name)


def parse(log):
    kernels, current = [], None
    for line in log.splitlines():
        match = re.search(r"Compiling entry function '(\S+)'", line)
        if match:
            current = {"name": short_name(match.group(1)), "spill_stores": 0, "spill_loads": 0,
                       "registers": None, "shared": 0}
            kernels.append(current)
            continue
        if current is None:
            continue
        match = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if match:
            current["spill_stores"], current["spill_loads"] = map(int, match.groups())
        match = re.search(r"Used (\d+) registers", line)
        if match:
            current["registers"] = int(match.group(1))
            match = re.search(r"(\d+) bytes smem", line)
            current["shared"] = int(match.group(1)) if match else 0
    return kernels


def is_hot(kernel):
    return kernel["name"].startswith("void mma_gemm_kernel") and ", int>" in kernel["name"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="90", help="compute capability without the dot")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    kernels = parse(compile_verbose(args.arch))
    lines = [f"# ptxas, sm_{args.arch}, torch {torch.__version__}: registers, spills "
             "(bytes stored/loaded), shared memory", ""]
    for k in sorted(kernels, key=lambda k: k["name"]):
        lines.append(f"{k['registers']:4d} regs  spill {k['spill_stores']:4d}/{k['spill_loads']:<4d}"
                     f"  smem {k['shared']:6d}  {k['name']}")
    spilling = [k["name"] for k in kernels if is_hot(k) and (k["spill_stores"] or k["spill_loads"])]
    lines += ["", f"hot kernels (tensor cores, 32-bit indices): {sum(map(is_hot, kernels))}, "
              f"spilling: {len(spilling)}"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if not kernels:
        sys.exit("no kernels found in ptxas's report")
    if spilling:
        sys.exit("hot kernels spill: " + ", ".join(spilling))


if __name__ == "__main__":
    main()
