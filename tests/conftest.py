"""Shared fixtures: devices, dtypes and tolerances, the float64 oracle, and
poisoned allocations.

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
import torch.nn.functional as F  # noqa: E402

import torch_tconv  # noqa: E402

HAS_CUDA = torch.cuda.is_available() and torch_tconv.has_cuda_kernels()

DEVICES = ["cpu"] + [pytest.param("cuda", marks=pytest.mark.cuda)]

# Relative tolerance of each dtype against the float64 oracle (scaled by the
# magnitude of the reference). Low precision: one rounding of the output plus,
# on CUDA, of the column buffer.
TOLERANCE = {
    torch.float64: 1e-10,
    torch.float32: 2e-5,
    torch.float16: 4e-3,
    torch.bfloat16: 3e-2,
}


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


@pytest.fixture(params=["auto", "gemm", "direct"])
def algorithm(request):
    """Runs a test on each kernel path: the automatic choice, then each path
    forced, so the GEMM and the direct kernels are both checked everywhere."""
    with torch_tconv.backends.flags(algorithm=request.param):
        yield request.param


@pytest.fixture(params=["always", "never"])
def reduced_precision_gemm(request):
    """Runs a float16/bfloat16 test with the CPU's GEMMs in that dtype, then in
    float32, whichever of the two this machine would pick by itself."""
    with torch_tconv.backends.flags(cpu_reduced_precision_gemm=request.param):
        yield request.param


def assert_close_to(actual, expected, dtype, what):
    """Compares with the float64 oracle at the dtype's tolerance, relative to
    the magnitude of the expected values. NaN (a poisoned, unwritten element)
    always fails."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {dtype}"
    tol = TOLERANCE[dtype]
    scale = expected.abs().max().item() if expected.numel() else 1.0
    torch.testing.assert_close(
        actual.double().cpu(), expected.double().cpu(), rtol=tol, atol=tol * max(scale, 1e-30),
        msg=lambda m: f"{what} ({dtype}): {m}",
    )


def oracle(input, weight, bias, grad_output, **params):
    """F.conv_transpose2d in float64 on the CPU, on upcast copies of the very
    values the op under test receives. Returns (out, grad_input, grad_weight,
    grad_bias)."""
    x = input.detach().double().cpu().requires_grad_()
    w = weight.detach().double().cpu().requires_grad_()
    b = None if bias is None else bias.detach().double().cpu().requires_grad_()
    out = F.conv_transpose2d(x, w, b, **params)
    grads = torch.autograd.grad(out, [t for t in (x, w, b) if t is not None],
                                grad_output.detach().double().cpu())
    return (out, *grads) + ((None,) if b is None else ())
