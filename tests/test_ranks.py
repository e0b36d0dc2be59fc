"""The ops are rank-generic (1 to 3 spatial dims) ahead of the 1-D and 3-D
Python API: checked here through torch.ops against F.conv_transpose1d/3d."""

import pytest
import torch
from torch.autograd import gradcheck

from common_utils import DEVICES, REFERENCE, assert_close_to, forward_op, make_case

RANK_LAYERS = ["1d", "1d_grouped_dilated", "3d", "3d_depthwise"]


def make(name, device):
    return make_case(name, 2, torch.float64, device, seed=3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", RANK_LAYERS)
def test_rank_matches_torch(name, device, algorithm):
    x, w, b, p = make(name, device)
    reference = REFERENCE[w.dim() - 2]
    leaves = [t.requires_grad_() for t in (x, w, b)]
    out = forward_op(x, w, b, p)
    expected = reference(x, w, b, **p)
    assert_close_to(out, expected, torch.float64, "output")
    gy = torch.randn_like(out)
    for what, got, want in zip(("grad_input", "grad_weight", "grad_bias"),
                               torch.autograd.grad(out, leaves, gy),
                               torch.autograd.grad(expected, leaves, gy)):
        assert_close_to(got, want, torch.float64, what)


@pytest.mark.parametrize("name", RANK_LAYERS)
def test_rank_gradcheck(name):
    x, w, b, p = make(name, "cpu")
    assert gradcheck(lambda x, w, b: forward_op(x, w, b, p), tuple(t.requires_grad_() for t in (x, w, b)))
