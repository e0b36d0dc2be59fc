"""gradcheck and gradgradcheck in float64, on both kernel paths. Since each
op's backward is written with the other ops, second-order checks exercise
every op's backward too."""

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import torch_tconv
from common_utils import DEVICES, layer_names, make_case

GRADCHECK_CONFIGS = layer_names(2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", GRADCHECK_CONFIGS)
def test_gradcheck_and_gradgradcheck(name, device, algorithm):
    if algorithm == "auto":
        pytest.skip("auto picks one of the forced paths; both are checked")
    x, w, b, params = make_case(name, 2, torch.float64, device)
    inputs = tuple(t.detach().requires_grad_() for t in (x, w, b))

    def f(x, w, b):
        return torch_tconv.conv_transpose2d(x, w, b, **params)

    # Non-deterministic-op checks are irrelevant here; only poisoning matters.
    assert gradcheck(f, inputs, fast_mode=False)
    assert gradgradcheck(f, inputs, fast_mode=True)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_unbatched(device):
    x, w, b, params = make_case("nonsquare_all", None, torch.float64, device)
    inputs = tuple(t.detach().requires_grad_() for t in (x, w, b))
    assert gradgradcheck(lambda x, w, b: torch_tconv.conv_transpose2d(x, w, b, **params), inputs)


def third_order(conv, x, w, b, params):
    """d/dx of the weight gradient of the squared input gradient: three
    levels of differentiation through the ops."""
    (gx,) = torch.autograd.grad(conv(x, w, b, **params).pow(2).sum(), x, create_graph=True)
    (gw,) = torch.autograd.grad(gx.pow(2).sum(), w, create_graph=True)
    (gxx,) = torch.autograd.grad(gw.sum(), x)
    return gxx


@pytest.mark.parametrize("device", DEVICES)
def test_third_order_matches_torch(device):
    x, w, b, params = make_case("dcgan_k4s2p1", 1, torch.float64, device)
    x, w = x.requires_grad_(), w.requires_grad_()
    torch.testing.assert_close(
        third_order(torch_tconv.conv_transpose2d, x, w, b, params),
        third_order(torch.nn.functional.conv_transpose2d, x, w, b, params))


@pytest.mark.parametrize("device", DEVICES)
def test_third_order_with_output_padding(device):
    """PyTorch's own third derivative fails here ("output_padding is not
    supported for non-transposed convolutions"); ours is checked numerically."""
    x, w, b, params = make_case("grouped", 1, torch.float64, device)
    w = w.requires_grad_()

    def input_grad(x):
        (gx,) = torch.autograd.grad(
            torch_tconv.conv_transpose2d(x, w, b, **params).pow(2).sum(), x, create_graph=True)
        return gx

    assert gradgradcheck(input_grad, (x.requires_grad_(),))
