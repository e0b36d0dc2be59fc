"""Memory formats: channels-last input (torch.channels_last, channels_last_3d)
gives channels-last output and input gradients, with the same values as
contiguous input (the forward and the bias gradient to the bit), on every
algorithm; torch.compile sees the same strides
(the fake kernels apply the ops' rule); channels-last weights give the
results of contiguous ones (pytorch/pytorch#99519)."""

import pytest
import torch

import torch_tconv
from common_utils import DEVICES, forward_op, make_case

FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["grouped", "dcgan_k4s2p1", "3d_strided_dilated", "3d_depthwise"])
def test_channels_last_in_channels_last_out(name, device, algorithm):
    x, w, b, p = make_case(name, 2, torch.float32, device)
    fmt = FORMATS[x.dim()]
    x_cl = x.contiguous(memory_format=fmt)
    out = forward_op(x_cl, w, b, p)
    assert out.is_contiguous(memory_format=fmt) and not out.is_contiguous()
    assert torch.equal(out, forward_op(x, w, b, p))
    gy = torch.randn_like(out).contiguous(memory_format=fmt)
    leaves = [t.detach().requires_grad_() for t in (x_cl, w, b)]
    grads = torch.autograd.grad(forward_op(*leaves, p), leaves, gy)
    assert grads[0].is_contiguous(memory_format=fmt)
    leaves = [t.detach().requires_grad_() for t in (x, w, b)]
    expected = torch.autograd.grad(forward_op(*leaves, p), leaves, gy.contiguous())
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
    # The bias gradient sums each channel in the same order from either layout.
    assert torch.equal(grads[2], expected[2])


def test_unbatched_and_contiguous_stay_contiguous():
    x, w, b, p = make_case("grouped", None, torch.float32, "cpu")
    assert forward_op(x, w, b, p).is_contiguous()
    x, w, b, p = make_case("grouped", 2, torch.float32, "cpu")
    assert forward_op(x, w, b, p).is_contiguous()


@pytest.mark.parametrize("name", ["grouped", "3d_strided_dilated"])
def test_compile_sees_the_same_strides(name):
    x, w, b, p = make_case(name, 2, torch.float32, "cpu")
    x = x.contiguous(memory_format=FORMATS[x.dim()])
    layer = {4: torch_tconv.ConvTranspose2d, 5: torch_tconv.ConvTranspose3d}[x.dim()](
        w.shape[0], w.shape[1] * p["groups"], w.shape[2:], stride=p["stride"],
        padding=p["padding"], output_padding=p["output_padding"], groups=p["groups"],
        dilation=p["dilation"])

    def model(t):
        return layer(t) * 2 + 1  # an elementwise consumer indexes by the strides

    eager = model(x)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)(x)
    assert compiled.stride() == eager.stride()
    torch.testing.assert_close(compiled, eager)


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_weight(device, algorithm):
    x, w, b, p = make_case("dcgan_k4s2p1", 2, torch.float32, device)
    w_cl = w.contiguous(memory_format=torch.channels_last)
    assert not w_cl.is_contiguous()
    torch.testing.assert_close(forward_op(x, w_cl, b, p), forward_op(x, w, b, p))
