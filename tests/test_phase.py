"""The phase path of the forward (torch_tconv.backends.algorithm = "phase"):
one implicit GEMM per output phase, no column buffer. Its tile iteration is
the host/device code a tensor-core kernel runs; on the CPU a scalar
multiply-add stands in for the MMA. Checked against the float64 oracle over
the whole layer table (1-D to 3-D, groups, dilation, padding, output
padding, phases without taps), batched and unbatched, and with the outputs
poisoned, so an element no tile writes fails."""

import pytest
import torch
import torch.nn.functional as F

import torch_tconv
from common_utils import DEVICES, REFERENCE, assert_close_to, forward_op, layer_names, make_case

ops = torch.ops.torch_tconv


@pytest.fixture(autouse=True)
def phase_path():
    with torch_tconv.backends.flags(algorithm="phase"):
        yield


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("name", layer_names())
def test_forward_matches_oracle(name, batch, dtype, device):
    """CPU: the tiles with scalar multiply-adds. CUDA: the same tiles, one
    thread each."""
    x, w, b, p = make_case(name, batch, dtype, device)
    expected = REFERENCE[w.dim() - 2](*(t.double().cpu() for t in (x, w, b)), **p)
    assert_close_to(forward_op(x, w, b, p), expected, dtype, name)


@pytest.mark.parametrize("index_bits", [32, 64])
def test_both_index_widths(index_bits):
    x, w, b, p = make_case("nonsquare_all", 2, torch.float64, "cpu")
    with torch_tconv.backends.flags(int32_indices=index_bits == 32):
        out = forward_op(x, w, b, p)
    assert_close_to(out, F.conv_transpose2d(x, w, b, **p), torch.float64, "output")


def test_gradients_take_the_gemm_path():
    """The phase path is the forward's; the gradient ops run GEMMs, so the
    whole layer trains under algorithm="phase"."""
    x, w, b, p = make_case("grouped", 2, torch.float64, "cpu")
    leaves = [t.requires_grad_() for t in (x, w, b)]
    out = torch_tconv.conv_transpose2d(*leaves, **p)
    expected = F.conv_transpose2d(*leaves, **p)
    gy = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, leaves, gy), torch.autograd.grad(expected, leaves, gy)):
        torch.testing.assert_close(got, want)


def test_nan_and_inf_propagate_like_torch():
    """Input positions outside the image contribute nothing, not a zero: an
    infinite weight times a zero fill would be a NaN torch does not make."""
    x, w, b, p = make_case("dcgan_k4s2p1", 2, torch.float64, "cpu")
    x[0, 0, 0, 0] = float("nan")
    x[1, -1, -1, -1] = float("inf")
    w[0, 0, 0, 0] = float("inf")
    out = torch_tconv.conv_transpose2d(x, w, b, **p)
    expected = F.conv_transpose2d(x, w, b, **p)
    for check in (torch.isnan, torch.isposinf, torch.isneginf):
        assert torch.equal(check(out), check(expected)), check.__name__


def test_every_phase_and_tile_edge():
    """Output sizes that are no multiple of the stride (phases of different
    lengths), a kernel smaller than the stride (phases with no tap: bias
    only), and channel and row counts that do not fill the last tile."""
    g = torch.Generator().manual_seed(0)
    for stride, kernel, size, channels in [(3, 2, (5, 7), 11), (4, 3, (3, 4), 9), (2, 5, (6, 5), 13)]:
        x = torch.randn(3, 5, *size, generator=g, dtype=torch.float64)
        w = torch.randn(5, channels, kernel, kernel, generator=g, dtype=torch.float64)
        b = torch.randn(channels, generator=g, dtype=torch.float64)
        for output_padding in range(stride):
            p = dict(stride=stride, padding=1, output_padding=output_padding)
            out = torch_tconv.conv_transpose2d(x, w, b, **p)
            assert_close_to(out, F.conv_transpose2d(x, w, b, **p), torch.float64,
                            f"stride {stride}, kernel {kernel}, output_padding {output_padding}")
