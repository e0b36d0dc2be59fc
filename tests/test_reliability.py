"""Long-run and production properties: NaN/Inf propagation, more than 2^31
elements, no leaks, thread safety, determinism, and autograd economy (only
what a gradient needs is saved or computed)."""

import gc
import threading

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import torch_tconv
from common_utils import DEVICES, make_case

ops = torch.ops.torch_tconv


# --- NaN and Inf ------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["dcgan_k4s2p1", "grouped", "depthwise", "nonsquare_all"])
def test_nan_and_inf_propagate_like_torch(name, device, algorithm):
    x, w, b, params = make_case(name, 2, torch.float64, device)
    x = x.clone()
    x[0, 0, 0, 0] = float("nan")
    x[1, -1, -1, -1] = float("inf")
    x[0, -1, 1, 0] = -float("inf")
    w = w.clone()
    w[0, 0, 0, 0] = float("inf")
    out = torch_tconv.conv_transpose2d(x, w, b, **params)
    expected = F.conv_transpose2d(x, w, b, **params)
    assert torch.equal(out.isnan(), expected.isnan())
    assert torch.equal(out.isposinf(), expected.isposinf())
    assert torch.equal(out.isneginf(), expected.isneginf())
    finite = expected.isfinite()
    torch.testing.assert_close(out[finite], expected[finite])


# --- more than 2^31 elements --------------------------------------------------
# These need 8-16 GB of memory; results are checked slice by slice so that no
# full-size temporary is made. Index products that overflow 32 bits are a known
# failure of such kernels: pytorch/pytorch#144611 is one in PyTorch's CUDA
# col2im. On the CPU they run the 64-bit instantiations of the kernel bodies,
# the same templates the CUDA kernels instantiate (compiled in every CI run);
# on a GPU, the CUDA kernels themselves.

# 2^20 elements: a slice's float64 temporaries (8 MiB) come back from malloc's
# heap. Slices of 2^26 took 2.7x as long to check (10.1 against 3.7 s for 2^28
# elements): every 512 MiB temporary was a fresh mapping, faulted in page by
# page.
SLICE = 2**20


def check_slices(out, expected_slice, length):
    """Checks |out[..., j] - expected| <= tol * (1 + |expected|) (assert_close's
    rule with rtol = atol = tol; a NaN fails) for j in slices, in place on
    float64 copies: assert_close's temporaries took 2.6 s per slice, most of
    these tests' time."""
    tol = 1e-6 if out.dtype == torch.float32 else 1e-2
    for start in range(0, length, SLICE):
        stop = min(start + SLICE, length)
        got, want = out[0, 0, 0, start:stop].double().cpu(), expected_slice(start, stop)
        assert got.shape == want.shape, f"[{start}:{stop}] shape {got.shape} != {want.shape}"
        error = (got - want).abs_()
        bad = ~(error <= want.abs().mul_(tol).add_(tol))
        if bad.any():
            i = int(bad.nonzero()[0])
            raise AssertionError(f"[{start}:{stop}] {int(bad.sum())} elements off, the first at "
                                 f"{start + i}: got {got[i].item()}, expected {want[i].item()}")


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_output_of_more_than_2_31_elements(device):
    """1 x 1 x 1 x (2^30 + 3) float32 input, 1 x 2 kernel, stride 2: the output
    has 2^31 + 6 elements. Output column 2i + k is x[i] * w[k] + b."""
    width = 2**30 + 3
    x = torch.randn(1, 1, 1, width)
    w = torch.randn(1, 1, 1, 2)
    b = torch.randn(1)
    out = torch_tconv.conv_transpose2d(x.to(device), w.to(device), b.to(device), stride=(1, 2))
    assert out.shape == (1, 1, 1, 2 * width)
    for k in range(2):
        expected = lambda start, stop: x[0, 0, 0, start:stop].double() * w[0, 0, 0, k].item() + b.item()
        check_slices(out[..., k::2], expected, width)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_input_of_more_than_2_31_elements(device):
    """A 1 x 1 x 1 x (2^31 + 5) bfloat16 input through a 1 x 1 kernel."""
    width = 2**31 + 5
    x = torch.empty(1, 1, 1, width, dtype=torch.bfloat16)
    for start in range(0, width, SLICE):
        x[..., start:start + SLICE] = torch.randn(min(SLICE, width - start))
    w = torch.tensor([[[[1.5]]]], dtype=torch.bfloat16)
    out = torch_tconv.conv_transpose2d(x.to(device), w.to(device))
    assert out.shape == (1, 1, 1, width)
    check_slices(out, lambda start, stop: x[0, 0, 0, start:stop].double() * 1.5, width)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_column_buffer_of_more_than_2_31_elements(device):
    """GEMM path, 1 x 4 kernel at stride 1 over 2^29 + 3 bfloat16 pixels: the
    column buffer holds 4 * (2^29 + 3) > 2^31 elements. On the CPU float32
    columns are forced: bfloat16 columns round every product before the sum,
    beyond this test's elementwise tolerance. CUDA's columns are bfloat16, so
    there the expected sum adds the products rounded to bfloat16 (each product
    of two bfloat16 values is exact in float32, the GEMM's accumulator)."""
    width = 2**29 + 3
    x = torch.randn(1, 1, 1, width, dtype=torch.bfloat16)
    w = torch.randn(1, 1, 1, 4, dtype=torch.bfloat16)
    with torch_tconv.backends.flags(algorithm="gemm", cpu_reduced_precision_gemm="never"):
        out = torch_tconv.conv_transpose2d(x.to(device), w.to(device))
    assert out.shape == (1, 1, 1, width + 3)
    xs, ws = x[0, 0, 0].double(), w[0, 0, 0].double()
    column_value = (lambda p: p.to(torch.bfloat16).double()) if device == "cuda" else (lambda p: p)

    def expected(start, stop):
        # out[j] = sum_k x[j - k] * w[k], over the taps that stay inside x.
        acc = torch.zeros(stop - start, dtype=torch.float64)
        for k in range(4):
            lo, hi = max(start - k, 0), min(stop - k, width)
            acc[lo + k - start:hi + k - start] += column_value(xs[lo:hi] * ws[k])
        return acc

    check_slices(out, expected, width + 3)


# --- no leaks ------------------------------------------------------------------

def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_no_memory_growth_over_2000_steps():
    layer = torch_tconv.ConvTranspose2d(32, 16, 4, stride=2, padding=1)
    x = torch.randn(4, 32, 16, 16, requires_grad=True)

    def step():
        layer(x).square().mean().backward()

    for _ in range(200):
        step()
    gc.collect()
    before = resident_bytes()
    for _ in range(2000):
        step()
    gc.collect()
    growth = resident_bytes() - before
    assert growth < 5 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MB"


# --- threads and determinism ---------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_concurrent_calls_match_serial_calls(device):
    cases = [make_case(name, 3, torch.float32, device, seed=i)
             for i, name in enumerate(["dcgan_k4s2p1", "grouped", "depthwise", "nonsquare_all"])]

    def compute(case):
        x, w, b, params = case
        x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
        out = torch_tconv.conv_transpose2d(x, w, b, **params)
        return (out.detach(), *torch.autograd.grad(out.square().sum(), (x, w, b)))

    serial = [compute(case) for case in cases]
    results = [[None] * len(cases) for _ in range(5)]

    def worker(i):
        for r in range(5):
            results[r][i] = compute(cases[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for repeat in results:
        for got, want in zip(repeat, serial):
            assert all(torch.equal(a, b) for a, b in zip(got, want))


# --- autograd economy ------------------------------------------------------------

class OpLog(TorchDispatchMode):
    """Records the torch_tconv ops that run."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "torch_tconv":
            self.ops.append(func._opname)
        return func(*args, **(kwargs or {}))


def saved_and_run(requires, grad_mode=True):
    """Runs forward+backward with requires_grad on the named tensors; returns
    the ids of the saved tensors (by role) and the ops the backward ran."""
    x, w, b, params = make_case("grouped", 2, torch.float64, "cpu")
    tensors = {"input": x, "weight": w, "bias": b}
    for name in requires:
        tensors[name].requires_grad_()
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.set_grad_enabled(grad_mode), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = torch_tconv.conv_transpose2d(tensors["input"], tensors["weight"], tensors["bias"], **params)
    roles = sorted(name for name, t in tensors.items() for s in saved if s is t)
    log = OpLog()
    if out.requires_grad:
        with log:
            out.sum().backward()
    return roles, sorted(set(log.ops))


@pytest.mark.parametrize("requires, saved, ran", [
    (["input"], ["weight"], ["conv_transpose_input_grad"]),
    (["weight"], ["input"], ["conv_transpose_weight_grad"]),
    (["bias"], [], ["conv_transpose_bias_grad"]),
    (["input", "weight", "bias"], ["input", "weight"],
     ["conv_transpose_backward", "conv_transpose_bias_grad"]),
])
def test_only_needed_tensors_saved_and_gradients_computed(requires, saved, ran):
    assert saved_and_run(requires) == (saved, ran)


def test_no_grad_saves_nothing():
    assert saved_and_run(["input", "weight", "bias"], grad_mode=False) == ([], [])


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_under_autocast(device):
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    ours = torch_tconv.ConvTranspose2d(4, 6, 3, stride=2, padding=1).to(device)
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1).to(device)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 6, 6, device=device)
    grads = []
    for layer in (ours, theirs):
        xi = x.clone().requires_grad_()
        with torch.autocast(device, dtype=dtype):
            out = layer(xi)
        assert out.dtype == dtype
        out.float().square().sum().backward()
        grads.append((xi.grad, layer.weight.grad, layer.bias.grad))
    for got, want in zip(*grads):
        assert got.dtype == want.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=3e-2, atol=3e-2 * want.abs().max().item())
