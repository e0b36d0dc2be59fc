"""Builds torch_tconv's native extension against the installed torch.

The CUDA sources are compiled when torch is a CUDA build and a CUDA toolkit is
found; that is decided from torch.version.cuda and CUDA_HOME, never from
torch.cuda.is_available(), because build machines need no GPU.
Overrides: TORCH_TCONV_FORCE_CUDA=1, TORCH_TCONV_NO_CUDA=1.
Honoured: CUDA_HOME, TORCH_CUDA_ARCH_LIST, MAX_JOBS.
TORCH_TCONV_SANITIZE=1 builds the host code with AddressSanitizer and
UndefinedBehaviorSanitizer (scripts/sanitize.sh).
"""

import glob
import os
import shutil

from setuptools import setup

# torch guesses the toolkit from `which nvcc`; where nvcc is a wrapper outside
# the toolkit (/usr/local/bin/nvcc) the guess is wrong and linking fails with
# "cannot find -lcudart". Prefer the standard location when nothing is set.
if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")):
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;9.0"


def cuda_decision():
    """Returns (build_cuda, reason)."""
    if os.environ.get("TORCH_TCONV_NO_CUDA") == "1":
        return False, "TORCH_TCONV_NO_CUDA=1"
    if os.environ.get("TORCH_TCONV_FORCE_CUDA") == "1":
        return True, "TORCH_TCONV_FORCE_CUDA=1"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU-only build"
    if CUDA_HOME is None or shutil.which(os.path.join(CUDA_HOME, "bin", "nvcc")) is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    return True, f"torch {torch.__version__} (CUDA {torch.version.cuda}), toolkit at {CUDA_HOME}"


class BuildExtensionWithInfo(BuildExtension):
    """BuildExtension that also writes _build_info.py next to the built
    extension (in place, or into the build directory that a wheel is made
    from): what was compiled, for `python -m torch_tconv info`. Generated,
    not in git."""

    def run(self):
        super().run()
        build_cuda, reason = cuda_decision()
        archs = os.environ.get("TORCH_CUDA_ARCH_LIST") if build_cuda else None
        package_dir = os.path.dirname(self.get_ext_fullpath("torch_tconv._C"))
        with open(os.path.join(package_dir, "_build_info.py"), "w") as f:
            f.write('"""Written by setup.py when the extension was built."""\n\n'
                    f"WITH_CUDA = {build_cuda!r}\n"
                    f"CUDA_ARCH_LIST = {archs!r}\n"
                    f"TORCH_VERSION = {torch.__version__!r}\n"
                    f"CUDA_VERSION = {torch.version.cuda if build_cuda else None!r}\n"
                    f"SANITIZE = {os.environ.get('TORCH_TCONV_SANITIZE') == '1'!r}\n"
                    f"REASON = {reason!r}\n")


def sources(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


def extension():
    build_cuda, reason = cuda_decision()
    cpp_sources = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
    # at::parallel_for is an OpenMP loop in torch's headers: without -fopenmp
    # it silently runs on one thread. No contraction of a * b + c into FMAs:
    # the CPU variants of cpu_isa.h, with and without FMA, then give the same
    # bits. -g0: Python's compiler flags ask for debug information, which
    # made the launcher files' compile 1.25x as long (bench/NOTES.md).
    cxx_flags = ["-O3", "-g0", "-fno-fast-math", "-ffp-contract=off", "-fopenmp"]
    link_flags = ["-fopenmp"]
    if os.environ.get("TORCH_TCONV_SANITIZE") == "1":
        sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                    "-fno-omit-frame-pointer", "-g"]
        cxx_flags = ["-O1", "-fno-fast-math", "-ffp-contract=off", "-fopenmp"] + sanitize
        link_flags += sanitize
        print("torch_tconv: building with AddressSanitizer and UndefinedBehaviorSanitizer")
    if not build_cuda:
        print(f"torch_tconv: building CPU kernels only ({reason})")
        return CppExtension(
            "torch_tconv._C",
            cpp_sources,
            include_dirs=[os.path.join(HERE, "csrc")],
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    # Without a GPU, torch cannot detect the architecture (an IndexError in
    # _get_cuda_arch_flags), so a default list is set for such machines.
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    print(
        f"torch_tconv: building CPU and CUDA kernels ({reason}); "
        f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}, "
        f"MAX_JOBS={os.environ.get('MAX_JOBS', 'default')}"
    )
    return CUDAExtension(
        "torch_tconv._C",
        cpp_sources + sources("csrc/cuda/*.cpp") + sources("csrc/cuda/*.cu"),
        include_dirs=[os.path.join(HERE, "csrc")],
        define_macros=[("TORCH_TCONV_WITH_CUDA", "1")],
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
        extra_link_args=link_flags,
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtensionWithInfo},
)
