"""CUDA-only checks: parity with cuDNN in every dtype, autocast, devices."""

import pytest
import torch
import torch.nn.functional as F

import torch_tconv
from common_utils import TOLERANCE, layer_names, make_case, oracle

pytestmark = pytest.mark.cuda


def relative_error(actual, expected):
    return ((actual.double().cpu() - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", layer_names(2))
def test_parity_with_cudnn(name, dtype, algorithm):
    """Ours and cuDNN against the float64 oracle: ours must be within the
    dtype's tolerance, and no less accurate than cuDNN (with slack)."""
    torch.backends.cudnn.allow_tf32 = False
    x, w, b, params = make_case(name, 4, dtype, "cuda")
    ours = [t.detach().requires_grad_() for t in (x, w, b)]
    theirs = [t.detach().requires_grad_() for t in (x, w, b)]
    out = torch_tconv.conv_transpose2d(*ours, **params)
    ref_out = F.conv_transpose2d(*theirs, **params)
    gy = torch.randn_like(out)
    expected = oracle(x, w, b, gy, **params)
    got = (out, *torch.autograd.grad(out, ours, gy))
    cudnn = (ref_out, *torch.autograd.grad(ref_out, theirs, gy))
    for what, g, c, e in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, cudnn, expected):
        ours_err, cudnn_err = relative_error(g, e), relative_error(c, e)
        assert ours_err <= max(TOLERANCE[dtype], 2 * cudnn_err), (what, ours_err, cudnn_err)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_like_nn_conv_transpose(dtype):
    layer = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1).cuda()
    ours = torch_tconv.ConvTranspose2d(4, 6, 3, stride=2, padding=1).cuda()
    ours.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 8, 8, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        expected = layer(x)
        out = ours(x)
    assert out.dtype == expected.dtype == dtype
    torch.testing.assert_close(out.float(), expected.float(), rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * 4)
    out.float().sum().backward()
    assert ours.weight.grad.dtype == torch.float32


def test_second_device_guard():
    """Work runs on the input's device even when another is current."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    x, w, b, params = make_case("grouped", 2, torch.float32, "cuda:1")
    with torch.cuda.device(0):
        out = torch_tconv.conv_transpose2d(x, w, b, **params)
    assert out.device == torch.device("cuda:1")
    torch.testing.assert_close(out, F.conv_transpose2d(x, w, b, **params))


def test_large_batch_is_chunked_and_correct():
    """Column workspace per sample of 8 MiB x 40 samples exceeds the 128 MiB
    budget: several chunks, one result."""
    x = torch.randn(40, 8, 64, 64, device="cuda")
    w = torch.randn(8, 32, 4, 4, device="cuda")
    out = torch_tconv.conv_transpose2d(x, w, stride=2, padding=1)
    expected = F.conv_transpose2d(x.double(), w.double(), stride=2, padding=1)
    assert relative_error(out, expected.cpu()) < TOLERANCE[torch.float32]
