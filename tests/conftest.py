"""Shared fixtures (kernel paths, settings restored after every test, poisoned
allocations) and the CUDA skip; shared helpers are in common_utils.py.

Poisoning: with torch.use_deterministic_algorithms(True), every torch.empty
(also the ones the C++ ops make) is filled with NaN, so an output element that
a kernel never writes fails the comparison instead of passing by luck.
"""

import os

# cuBLAS refuses deterministic mode without a fixed workspace configuration;
# it must be set before CUDA initialises.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402

import torch_tconv  # noqa: E402
from common_utils import HAS_CUDA  # noqa: E402


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA device and a CUDA build of torch_tconv")
    for item in items:
        if "cuda" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def restored_backends():
    """Every test starts from, and leaves, the configuration it found: tests
    may set torch_tconv.backends' settings without restoring them."""
    with torch_tconv.backends.flags():
        yield


@pytest.fixture(autouse=True)
def poisoned_allocations():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


@pytest.fixture(params=["auto", "gemm", "direct", "phase"])
def algorithm(request):
    """Runs a test on each kernel path: the automatic choice, then each path
    forced, so that GEMM + col2im, the direct kernels and the implicit GEMMs
    (with their default tiles; test_implicit_gemm.py forces each tile
    variant) are all checked everywhere."""
    with torch_tconv.backends.flags(algorithm=request.param):
        yield request.param


@pytest.fixture(params=["always", "never"])
def reduced_precision_gemm(request):
    """Runs a float16/bfloat16 test with the CPU's GEMMs in that dtype, then in
    float32, whichever of the two this machine would pick by itself."""
    with torch_tconv.backends.flags(cpu_reduced_precision_gemm=request.param):
        yield request.param
