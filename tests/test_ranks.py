"""The ops are rank-generic (1 to 3 spatial dims) ahead of the 1-D and 3-D
Python API: checked here through torch.ops against F.conv_transpose1d/3d."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from conftest import DEVICES, assert_close_to

ops = torch.ops.torch_tconv

# (C_in, C_out, groups, input spatial size, kernel, stride, padding, output_padding, dilation)
LAYERS = {
    "1d": (3, 4, 1, (7,), (3,), (2,), (1,), (1,), (1,)),
    "1d_grouped_dilated": (4, 6, 2, (5,), (2,), (3,), (0,), (2,), (2,)),
    "3d": (2, 3, 1, (3, 4, 2), (2, 3, 2), (2, 1, 2), (1, 0, 0), (1, 0, 1), (1, 2, 1)),
    "3d_depthwise": (3, 3, 3, (2, 3, 3), (3, 2, 2), (1, 2, 2), (1, 0, 1), (0, 1, 0), (2, 1, 1)),
}
REFERENCE = {1: F.conv_transpose1d, 3: F.conv_transpose3d}


def make(name, device, dtype=torch.float64, layers=LAYERS, batch=2, seed=3):
    """Input, weight, bias and keyword parameters of layers[name]."""
    c_in, c_out, groups, size, kernel, stride, padding, output_padding, dilation = layers[name]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, *size, generator=g, dtype=torch.float64).to(device, dtype)
    w = torch.randn(c_in, c_out // groups, *kernel, generator=g, dtype=torch.float64).to(device, dtype)
    b = torch.randn(c_out, generator=g, dtype=torch.float64).to(device, dtype)
    params = dict(stride=list(stride), padding=list(padding), output_padding=list(output_padding),
                  dilation=list(dilation), groups=groups)
    return x, w, b, params


def ours(x, w, b, p):
    return ops.conv_transpose(x, w, b, p["stride"], p["padding"], p["output_padding"],
                              p["dilation"], p["groups"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_rank_matches_torch(name, device, algorithm):
    x, w, b, p = make(name, device)
    reference = REFERENCE[w.dim() - 2]
    leaves = [t.requires_grad_() for t in (x, w, b)]
    out = ours(x, w, b, p)
    expected = reference(x, w, b, **p)
    assert_close_to(out, expected, torch.float64, "output")
    gy = torch.randn_like(out)
    for what, got, want in zip(("grad_input", "grad_weight", "grad_bias"),
                               torch.autograd.grad(out, leaves, gy),
                               torch.autograd.grad(expected, leaves, gy)):
        assert_close_to(got, want, torch.float64, what)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_rank_gradcheck(name):
    x, w, b, p = make(name, "cpu")
    assert gradcheck(lambda x, w, b: ours(x, w, b, p), tuple(t.requires_grad_() for t in (x, w, b)))
